//! Validation of the network's inputs, before any AWS call. Errors name the field and the value.

use ipnet::Ipv4Net;
use platform_core::ValidationError;

/// Parses an IPv4 CIDR block written in canonical form (`10.0.0.0/16`, not `10.0.0.1/16`).
///
/// # Errors
/// A [`ValidationError`] naming `field` and the value.
pub fn parse_cidr(field: &str, value: &str) -> Result<Ipv4Net, ValidationError> {
    let net: Ipv4Net = value.parse().map_err(|_| {
        ValidationError::new(field, value, "not an IPv4 CIDR block like 10.0.0.0/16")
    })?;
    if net.trunc() != net {
        return Err(ValidationError::new(
            field,
            value,
            format!("host bits are set; the block is {}", net.trunc()),
        ));
    }
    Ok(net)
}

/// A VPC or subnet block: AWS allows prefix lengths /16 to /28.
///
/// # Errors
/// A [`ValidationError`] naming `field` and the value.
pub fn block(field: &str, value: &str) -> Result<Ipv4Net, ValidationError> {
    let net = parse_cidr(field, value)?;
    if !(16..=28).contains(&net.prefix_len()) {
        return Err(ValidationError::new(
            field,
            value,
            "AWS allows prefix lengths from /16 to /28",
        ));
    }
    Ok(net)
}

/// Subnets must lie inside the VPC and not overlap each other.
///
/// # Errors
/// A [`ValidationError`] naming the first offending subnet field and its value.
pub fn subnets_fit(vpc: Ipv4Net, subnets: &[(String, Ipv4Net)]) -> Result<(), ValidationError> {
    for (i, (field, net)) in subnets.iter().enumerate() {
        if !vpc.contains(net) {
            return Err(ValidationError::new(
                field.as_str(),
                net,
                format!("not inside the VPC block {vpc}"),
            ));
        }
        for (other_field, other) in &subnets[..i] {
            if net.contains(other) || other.contains(net) {
                return Err(ValidationError::new(
                    field.as_str(),
                    net,
                    format!("overlaps {other_field} = {other}"),
                ));
            }
        }
    }
    Ok(())
}

pub use platform_core::resource::validate_tags as tags;

/// An EC2 name (security group, `Name` prefix): 1 to `max` letters, digits, spaces and
/// `._-:/()#,@[]+=&;{}!$*`.
///
/// # Errors
/// A [`ValidationError`] naming `field` and the value.
pub fn name(field: &str, value: &str, max: usize) -> Result<(), ValidationError> {
    platform_core::resource::validate_name(field, value, max, " ._-:/()#,@[]+=&;{}!$*")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn errors_name_the_field_and_the_value() {
        let e = block("vpc_cidr", "10.0.0.0/8").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid vpc_cidr = 10.0.0.0/8: AWS allows prefix lengths from /16 to /28"
        );
        let e = parse_cidr("vpc_cidr", "10.0.0.1/16").unwrap_err();
        assert!(e.to_string().contains("10.0.0.0/16"), "{e}");
        let e = parse_cidr("x", "ten").unwrap_err();
        assert_eq!(e.field, "x");
        let vpc = block("vpc", "10.0.0.0/16").unwrap();
        let e = subnets_fit(
            vpc,
            &[
                (
                    "public_subnets[0].cidr".into(),
                    "10.0.1.0/24".parse().unwrap(),
                ),
                (
                    "public_subnets[1].cidr".into(),
                    "10.0.1.128/25".parse().unwrap(),
                ),
            ],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid public_subnets[1].cidr = 10.0.1.128/25: overlaps public_subnets[0].cidr = 10.0.1.0/24"
        );
        let e = subnets_fit(vpc, &[("s".into(), "10.1.0.0/24".parse().unwrap())]).unwrap_err();
        assert!(
            e.to_string()
                .contains("not inside the VPC block 10.0.0.0/16"),
            "{e}"
        );
    }

    proptest! {
        #[test]
        fn any_canonical_block_from_16_to_28_is_accepted(addr in any::<u32>(), len in 16u8..=28) {
            let net = Ipv4Net::new(std::net::Ipv4Addr::from(addr), len).unwrap().trunc();
            prop_assert_eq!(block("f", &net.to_string()).unwrap(), net);
        }

        #[test]
        fn blocks_outside_the_range_or_with_host_bits_are_refused(addr in any::<u32>(), len in 0u8..=32) {
            let net = Ipv4Net::new(std::net::Ipv4Addr::from(addr), len).unwrap();
            let ok = (16..=28).contains(&len) && net.trunc() == net;
            prop_assert_eq!(block("f", &net.to_string()).is_ok(), ok);
        }

        #[test]
        fn subnets_are_accepted_exactly_when_inside_and_disjoint(
            a in 0u32..256, b in 0u32..256, la in 20u8..=28, lb in 20u8..=28, outside in any::<bool>(),
        ) {
            let vpc: Ipv4Net = "10.0.0.0/16".parse().unwrap();
            let base = if outside { 0x0a01_0000 } else { 0x0a00_0000 };
            let na = Ipv4Net::new(std::net::Ipv4Addr::from(base | (a << 8)), la).unwrap().trunc();
            let nb = Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 | (b << 8)), lb).unwrap().trunc();
            let expected = vpc.contains(&na) && vpc.contains(&nb) && !na.contains(&nb) && !nb.contains(&na);
            let got = subnets_fit(vpc, &[("a".into(), na), ("b".into(), nb)]).is_ok();
            prop_assert_eq!(got, expected);
        }
    }
}
