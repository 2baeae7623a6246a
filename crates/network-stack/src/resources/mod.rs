//! The network's resources, one file each with its create / read / update / delete / find.

mod association;
mod gateway_attachment;
mod internet_gateway;
mod route_table;
mod security_group;
mod subnet;
mod vpc;
mod zones;

pub use association::{
    RouteTableAssociation, RouteTableAssociationOutputs, RouteTableAssociationRefs,
};
pub use gateway_attachment::{
    InternetGatewayAttachment, InternetGatewayAttachmentOutputs, InternetGatewayAttachmentRefs,
};
pub use internet_gateway::{InternetGateway, InternetGatewayOutputs, InternetGatewayRefs};
pub use route_table::{OtherRoute, Route, RouteTable, RouteTableOutputs, RouteTableRefs};
pub use security_group::{
    OtherRule, Peer, PortRange, Protocol, RuleDiff, SecurityGroup, SecurityGroupOutputs,
    SecurityGroupRefs, SgRule, diff_rules,
};
pub use subnet::{Az, Subnet, SubnetOutputs, SubnetRefs};
pub use vpc::{Vpc, VpcOutputs, VpcRefs};
pub use zones::{AvailabilityZones, AvailabilityZonesOutputs, AvailabilityZonesRefs};

/// Each kind's replacement rule: what its `force_new` names, and that the fields changed in place
/// are not among them.
#[cfg(test)]
mod force_new {
    use platform_core::ForceNew;
    use platform_core::testing::{forced_by as forced, inputs as sample, replaces};
    use serde_json::json;

    use super::*;

    #[test]
    fn vpc() {
        let v: Vpc = sample(
            json!({"cidr_block": "10.0.0.0/16", "enable_dns_support": true,
            "enable_dns_hostnames": true, "tags": {}}),
        );
        assert_eq!(
            forced(&v, "cidr_block", json!("10.1.0.0/16")),
            replaces("cidr_block")
        );
        assert_eq!(
            forced(&v, "enable_dns_hostnames", json!(false)),
            ForceNew::none()
        );
        assert_eq!(forced(&v, "tags", json!({"a": "b"})), ForceNew::none());
    }

    #[test]
    fn subnet() {
        let s: Subnet = sample(json!({"vpc_id": "vpc-1", "cidr_block": "10.0.1.0/24",
            "availability_zone": {"index": 0}, "map_public_ip_on_launch": true, "tags": {}}));
        assert_eq!(forced(&s, "vpc_id", json!("vpc-2")), replaces("vpc_id"));
        assert_eq!(
            forced(&s, "cidr_block", json!("10.0.2.0/24")),
            replaces("cidr_block")
        );
        // The same block in another zone, or an overlapping block: the old subnet goes first.
        assert_eq!(
            forced(&s, "availability_zone", json!({"index": 1})),
            replaces("availability_zone").delete_first(true)
        );
        let overlapping = forced(&s, "cidr_block", json!("10.0.1.0/25"));
        assert_eq!(overlapping, replaces("cidr_block").delete_first(true));
        assert!(overlapping.deletes_first());
        assert!(!forced(&s, "cidr_block", json!("10.0.2.0/24")).deletes_first());
        assert!(!forced(&s, "vpc_id", json!("vpc-2")).deletes_first());
        assert_eq!(
            forced(&s, "map_public_ip_on_launch", json!(false)),
            ForceNew::none()
        );
    }

    #[test]
    fn security_group() {
        let g: SecurityGroup = sample(json!({"vpc_id": "vpc-1", "name": "web",
            "description": "web", "ingress": [], "egress": [], "tags": {}}));
        assert_eq!(forced(&g, "vpc_id", json!("vpc-2")), replaces("vpc_id"));
        assert_eq!(forced(&g, "name", json!("api")), replaces("name"));
        // The same name in the same VPC: the old group goes first.
        assert_eq!(
            forced(&g, "description", json!("api")),
            replaces("description").delete_first(true)
        );
        assert!(forced(&g, "description", json!("api")).deletes_first());
        assert_eq!(
            forced(
                &g,
                "ingress",
                json!([{"protocol": "tcp", "ports": {"from": 80, "to": 80},
                "cidr": "0.0.0.0/0"}])
            ),
            ForceNew::none()
        );
    }

    #[test]
    fn route_table_and_its_association() {
        let t: RouteTable = sample(json!({"vpc_id": "vpc-1", "routes": [], "tags": {}}));
        assert_eq!(forced(&t, "vpc_id", json!("vpc-2")), replaces("vpc_id"));
        assert_eq!(
            forced(
                &t,
                "routes",
                json!([{"destination_cidr_block": "0.0.0.0/0",
                "gateway_id": "igw-1"}])
            ),
            ForceNew::none()
        );
        let a: RouteTableAssociation =
            sample(json!({"route_table_id": "rtb-1", "subnet_id": "subnet-1"}));
        assert_eq!(
            forced(&a, "subnet_id", json!("subnet-2")),
            replaces("subnet_id")
        );
        assert_eq!(
            forced(&a, "route_table_id", json!("rtb-2")),
            ForceNew::none()
        );
    }

    #[test]
    fn gateway_attachment() {
        let a: InternetGatewayAttachment =
            sample(json!({"internet_gateway_id": "igw-1", "vpc_id": "vpc-1"}));
        assert_eq!(
            forced(&a, "internet_gateway_id", json!("igw-2")),
            replaces("internet_gateway_id")
        );
        assert_eq!(forced(&a, "vpc_id", json!("vpc-2")), replaces("vpc_id"));
    }
}
