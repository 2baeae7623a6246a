//! Checks made before any AWS call. Each error names the field and the value.

use platform_core::ValidationError;

/// The retention periods CloudWatch Logs accepts, in days.
pub const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Fargate's task sizes: for each CPU value, the memory values (MiB) allowed with it.
pub fn fargate_memory_for(cpu: u32) -> Option<Vec<u32>> {
    let range = |from: u32, to: u32, step: u32| (from..=to).step_by(step as usize).collect();
    Some(match cpu {
        256 => vec![512, 1024, 2048],
        512 => range(1024, 4096, 1024),
        1024 => range(2048, 8192, 1024),
        2048 => range(4096, 16384, 1024),
        4096 => range(8192, 30720, 1024),
        8192 => range(16384, 61440, 4096),
        16384 => range(32768, 122880, 8192),
        _ => return None,
    })
}

/// A CPU / memory pair Fargate runs.
///
/// # Errors
/// Names `PREFIXcpu` when it is not a Fargate size, `PREFIXmemory` when it is not allowed with
/// that CPU.
pub fn fargate_size(prefix: &str, cpu: u32, memory: u32) -> Result<(), ValidationError> {
    let Some(allowed) = fargate_memory_for(cpu) else {
        return Err(ValidationError::new(
            format!("{prefix}cpu"),
            cpu,
            "Fargate CPU is one of 256, 512, 1024, 2048, 4096, 8192, 16384",
        ));
    };
    if allowed.contains(&memory) {
        Ok(())
    } else {
        Err(ValidationError::new(
            format!("{prefix}memory"),
            memory,
            format!(
                "with cpu {cpu}, Fargate memory is one of {}",
                allowed
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ))
    }
}

/// A retention CloudWatch Logs accepts.
///
/// # Errors
/// When `days` is not one of [`RETENTION_DAYS`].
pub fn retention_days(field: &str, days: i32) -> Result<(), ValidationError> {
    if RETENTION_DAYS.contains(&days) {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            days,
            format!("CloudWatch Logs keeps events for one of {RETENTION_DAYS:?} days"),
        ))
    }
}

/// A TCP port a container can listen on.
///
/// # Errors
/// When it is 0.
pub fn port(field: &str, port: u16) -> Result<(), ValidationError> {
    if port == 0 {
        Err(ValidationError::new(field, port, "a port is 1 to 65535"))
    } else {
        Ok(())
    }
}

/// An ECS name (cluster, service, family, container): 1 to 255 letters, digits, `-` and `_`.
///
/// # Errors
/// When it is empty, too long or has another character.
pub fn ecs_name(field: &str, value: &str) -> Result<(), ValidationError> {
    platform_core::resource::validate_name(field, value, 255, "-_")
}

/// An image reference: 1 to 255 characters, no whitespace.
///
/// # Errors
/// When it is empty, too long or has whitespace.
pub fn image(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() || value.len() > 255 || value.chars().any(char::is_whitespace) {
        Err(ValidationError::new(
            field,
            format!("{value:?}"),
            "an image is a reference like nginx:latest or 123456789012.dkr.ecr.us-east-1.amazonaws.com/app:1.2",
        ))
    } else {
        Ok(())
    }
}

/// A log group name: 1 to 512 of letters, digits, `.`, `-`, `_`, `/`, `#`.
///
/// # Errors
/// When it is empty, too long or has another character.
pub fn log_group_name(field: &str, value: &str) -> Result<(), ValidationError> {
    platform_core::resource::validate_name(field, value, 512, ".-_/#")
}

pub use platform_core::resource::validate_tags as tags;

/// A secret ECS injects: a variable name (`[A-Za-z_][A-Za-z0-9_]*`) and the full ARN of a Secrets
/// Manager secret or an SSM parameter.
///
/// # Errors
/// When the name is not a variable name, or the ARN is not one of those two kinds.
pub fn secret(field: &str, name: &str, arn: &str) -> Result<(), ValidationError> {
    let mut chars = name.chars();
    let variable = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !variable {
        return Err(ValidationError::new(
            field,
            name,
            "a variable name: letters, digits and _, not starting with a digit",
        ));
    }
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let kind = match parts.as_slice() {
        ["arn", _, "secretsmanager", region, account, rest]
            if !region.is_empty() && !account.is_empty() && rest.starts_with("secret:") =>
        {
            Some(())
        }
        ["arn", _, "ssm", region, account, rest]
            if !region.is_empty() && !account.is_empty() && rest.starts_with("parameter/") =>
        {
            Some(())
        }
        _ => None,
    };
    if kind.is_none() {
        return Err(ValidationError::new(
            field,
            arn,
            "the full ARN of a Secrets Manager secret (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-xxxxxx) or an SSM parameter (arn:aws:ssm:REGION:ACCOUNT:parameter/NAME)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_secret_is_a_variable_name_and_the_full_arn_of_a_secret_or_parameter() {
        for (name, arn) in [
            (
                "DB_PASSWORD",
                "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf",
            ),
            (
                "_KEY",
                "arn:aws:ssm:eu-west-1:123456789012:parameter/app/key",
            ),
        ] {
            secret("secrets.x", name, arn).unwrap();
        }
        for (name, arn, bad) in [
            ("1X", "arn:aws:ssm:r:1:parameter/p", "1X"),
            ("A-B", "arn:aws:ssm:r:1:parameter/p", "A-B"),
            ("", "arn:aws:ssm:r:1:parameter/p", ""),
            ("K", "db-password", "db-password"),
            ("K", "arn:aws:s3:::bucket/key", "arn:aws:s3:::bucket/key"),
            (
                "K",
                "arn:aws:secretsmanager:r:1:db",
                "arn:aws:secretsmanager:r:1:db",
            ),
            (
                "K",
                "arn:aws:ssm:::parameter/p",
                "arn:aws:ssm:::parameter/p",
            ),
            (
                "K",
                "arn:aws:ssm:r::parameter/p",
                "arn:aws:ssm:r::parameter/p",
            ),
            (
                "K",
                "arn:aws:ssm::1:parameter/p",
                "arn:aws:ssm::1:parameter/p",
            ),
            (
                "K",
                "arn:aws:secretsmanager:r::secret:d",
                "arn:aws:secretsmanager:r::secret:d",
            ),
            (
                "K",
                "arn:aws:secretsmanager::1:secret:d",
                "arn:aws:secretsmanager::1:secret:d",
            ),
        ] {
            let e = secret("secrets.K", name, arn).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.value.as_str()),
                ("secrets.K", bad),
                "{name} {arn}"
            );
        }
    }

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_fargate_cpu_has_its_memory_range() {
        let ends = |cpu| {
            let m = fargate_memory_for(cpu).unwrap();
            (m[0], *m.last().unwrap(), m.len())
        };
        assert_eq!(ends(256), (512, 2048, 3));
        assert_eq!(ends(512), (1024, 4096, 4));
        assert_eq!(ends(1024), (2048, 8192, 7));
        assert_eq!(ends(2048), (4096, 16384, 13));
        assert_eq!(ends(4096), (8192, 30720, 23));
        assert_eq!(ends(8192), (16384, 61440, 12));
        assert_eq!(ends(16384), (32768, 122880, 12));
        assert_eq!(fargate_memory_for(128), None);
    }

    #[test]
    fn an_image_is_one_to_255_characters_without_whitespace() {
        image("image", "nginx:latest").unwrap();
        image("image", &"a".repeat(255)).unwrap();
        for bad in [String::new(), "a".repeat(256), "nginx latest".into()] {
            let e = image("containers[0].image", &bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid containers[0].image = "), "{e}");
        }
    }

    #[test]
    fn the_seed_size_is_valid_and_bad_pairs_name_the_field() {
        fargate_size("", 256, 512).unwrap();
        fargate_size("", 16384, 122880).unwrap();
        assert_eq!(
            fargate_size("", 256, 4096).unwrap_err().to_string(),
            "invalid memory = 4096: with cpu 256, Fargate memory is one of 512, 1024, 2048"
        );
        assert!(
            fargate_size("", 300, 512)
                .unwrap_err()
                .to_string()
                .starts_with("invalid cpu = 300")
        );
        assert!(fargate_size("", 8192, 17000).is_err());
    }

    #[test]
    fn retention_ports_and_names() {
        retention_days("retention", 30).unwrap();
        assert!(
            retention_days("retention", 10)
                .unwrap_err()
                .to_string()
                .starts_with("invalid retention = 10")
        );
        port("port", 80).unwrap();
        assert!(port("port", 0).is_err());
        ecs_name("name", "my-ecs-cluster").unwrap();
        assert!(ecs_name("name", "my cluster").is_err());
        assert!(ecs_name("name", "").is_err());
        image("image", "nginx:latest").unwrap();
        assert!(image("image", "nginx latest").is_err());
        log_group_name("log", "/ecs/frontend").unwrap();
        assert!(log_group_name("log", "/ecs/front*").is_err());
    }

    proptest! {
        /// Fargate's published rule: memory between 2 and 8 GiB per vCPU, in whole GiB (512 MiB
        /// only for the smallest size).
        #[test]
        fn accepted_sizes_follow_fargates_rule(cpu in prop::sample::select(vec![256u32, 512, 1024, 2048, 4096, 8192, 16384]), memory in 0u32..130_000) {
            if fargate_size("", cpu, memory).is_ok() {
                prop_assert!(memory >= 2 * cpu && memory <= 8 * cpu, "{cpu}/{memory}");
                prop_assert!(memory % 1024 == 0 || (cpu == 256 && memory == 512), "{cpu}/{memory}");
            }
        }
    }
}
