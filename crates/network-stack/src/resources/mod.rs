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
    OtherRule, PortRange, Protocol, RuleDiff, SecurityGroup, SecurityGroupOutputs,
    SecurityGroupRefs, SgRule, diff_rules,
};
pub use subnet::{Az, Subnet, SubnetOutputs, SubnetRefs};
pub use vpc::{Vpc, VpcOutputs, VpcRefs};
pub use zones::{AvailabilityZones, AvailabilityZonesOutputs, AvailabilityZonesRefs};
