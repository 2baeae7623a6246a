//! # network-stack
//!
//! The network foundation of the production ECS platform: a VPC (10.0.0.0/16, DNS support and
//! hostnames on), public subnets (10.0.1.0/24 in the region's first zone by default, public IPs on
//! launch), an attached internet gateway, a route table with `0.0.0.0/0` to the gateway associated with
//! each public subnet, and a security group allowing TCP 80 in from anywhere and all traffic out.
//!
//! ```no_run
//! use network_stack::{NetworkConfig, NetworkOutputs, NetworkStack};
//! use platform_core::{Engine, LocalStateStore, StackRef};
//! # async fn run(config: aws_types::SdkConfig) -> Result<(), platform_core::Error> {
//! let engine = Engine::builder(LocalStateStore::open(".platform/state")?).aws(config).build();
//! let net: NetworkOutputs = engine.up(&NetworkStack::new(NetworkConfig::default())).await?;
//! println!("VPC {} with subnets {:?}", net.vpc_id, net.public_subnet_ids);
//!
//! // Elsewhere (another process, another team), the same typed outputs from the state store:
//! // (refused when it was applied to another account or region than this engine's).
//! let here = engine.identity().await?;
//! let net = StackRef::<NetworkStack>::new("network").read(engine.store(), &here).await?;
//! println!("read from write {:?} of stack {}", net.producer.serial, net.producer.stack);
//! # Ok(()) }
//! ```

mod ec2;
mod ids;
pub mod resources;
pub mod validate;

use std::collections::BTreeMap;

use platform_core::{
    Error, Input, Ref, ResourceOutputs, Scope, Stack, ValidationError, resource::Registry,
    stack::Declared,
};
use serde::{Deserialize, Serialize};

pub use ec2::stack_filter;
pub use ids::{AssociationId, InternetGatewayId, RouteTableId, SecurityGroupId, SubnetId, VpcId};
use resources::{
    AvailabilityZones, Az, InternetGateway, InternetGatewayAttachment, Route, RouteTable,
    RouteTableAssociation, SecurityGroup, SecurityGroupOutputs, SgRule, Subnet, SubnetOutputs, Vpc,
    VpcOutputs,
};

/// What kind of subnet. Only public subnets exist today; private subnets (with a NAT gateway) are the
/// seed's next expansion and will be a new variant, so matching code must have a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum SubnetKind {
    /// Routed to the internet gateway, public IPs on launch.
    Public,
}

/// One subnet of the network.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubnetSpec {
    /// Its block, inside the VPC's.
    pub cidr: String,
    /// Its zone.
    pub availability_zone: Az,
    /// Public (today the only kind).
    pub kind: SubnetKind,
}

impl SubnetSpec {
    /// A public subnet with block `cidr` in the region's `az_index`-th zone (0 is the first).
    pub fn public(cidr: &str, az_index: usize) -> Self {
        Self {
            cidr: cidr.to_owned(),
            availability_zone: Az::Index(az_index),
            kind: SubnetKind::Public,
        }
    }

    /// In zone `name` instead (`us-east-1b`).
    #[must_use]
    pub fn in_zone(mut self, name: &str) -> Self {
        self.availability_zone = Az::Name(name.to_owned());
        self
    }
}

/// The network's typed config. `Default` reproduces the seed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetworkConfig {
    /// The stack's name in the state store (default `network`).
    pub stack_name: String,
    /// Prefix of the `Name` tags (default `ecs`: `ecs-vpc`, `ecs-public-0`, ...).
    pub name_prefix: String,
    /// The VPC block (default `10.0.0.0/16`).
    pub vpc_cidr: String,
    /// DNS support (default on).
    pub dns_support: bool,
    /// DNS hostnames (default on).
    pub dns_hostnames: bool,
    /// The public subnets, one per zone usually (default: `10.0.1.0/24` in the first zone).
    pub public_subnets: Vec<SubnetSpec>,
    /// Inbound rules of the service security group (default: TCP 80 from `0.0.0.0/0`).
    pub ingress: Vec<SgRule>,
    /// Outbound rules (default: everything to `0.0.0.0/0`).
    pub egress: Vec<SgRule>,
    /// A load balancer's security group in front of the services (default none): see
    /// [`BalancerAccess`].
    pub balancer: Option<BalancerAccess>,
    /// Tags on every resource, besides `Name` and the engine's own.
    pub tags: BTreeMap<String, String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            stack_name: "network".into(),
            name_prefix: "ecs".into(),
            vpc_cidr: "10.0.0.0/16".into(),
            dns_support: true,
            dns_hostnames: true,
            public_subnets: vec![SubnetSpec::public("10.0.1.0/24", 0)],
            ingress: vec![SgRule::tcp(80, "0.0.0.0/0")],
            egress: vec![SgRule::all("0.0.0.0/0")],
            balancer: None,
            tags: BTreeMap::new(),
        }
    }
}

/// The security group of a load balancer in front of the services (`PREFIX-lb`): it admits its
/// listener ports from anywhere and reaches the services' ports inside the VPC, and the service
/// group admits those ports from the balancer's group (besides its own [`ingress`](NetworkConfig::ingress)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BalancerAccess {
    /// The ports the balancer listens on (80, and 443 with HTTPS).
    pub listener_ports: Vec<u16>,
    /// The services' container ports it forwards to.
    pub service_ports: Vec<u16>,
}

impl BalancerAccess {
    /// A balancer listening on `listener_ports` and forwarding to `service_ports`.
    pub fn new(listener_ports: Vec<u16>, service_ports: Vec<u16>) -> Self {
        Self {
            listener_ports,
            service_ports,
        }
    }
}

impl NetworkConfig {
    /// Records the stack under `name`.
    #[must_use]
    pub fn with_stack_name(mut self, name: &str) -> Self {
        self.stack_name = name.to_owned();
        self
    }

    /// The VPC block.
    #[must_use]
    pub fn with_vpc_cidr(mut self, cidr: &str) -> Self {
        self.vpc_cidr = cidr.to_owned();
        self
    }

    /// DNS hostnames on or off.
    #[must_use]
    pub fn with_dns_hostnames(mut self, on: bool) -> Self {
        self.dns_hostnames = on;
        self
    }

    /// The public subnets.
    #[must_use]
    pub fn with_public_subnets(mut self, subnets: Vec<SubnetSpec>) -> Self {
        self.public_subnets = subnets;
        self
    }

    /// `n` public subnets over the region's first `n` zones: `10.0.1.0/24`, `10.0.2.0/24`, ...
    /// (inside the default VPC block).
    #[must_use]
    pub fn with_public_subnets_across_zones(mut self, n: usize) -> Self {
        self.public_subnets = (0..n)
            .map(|i| SubnetSpec::public(&format!("10.0.{}.0/24", i + 1), i))
            .collect();
        self
    }

    /// The security group's inbound rules.
    #[must_use]
    pub fn with_ingress(mut self, rules: Vec<SgRule>) -> Self {
        self.ingress = rules;
        self
    }

    /// A tag on every resource.
    #[must_use]
    pub fn with_tag(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    /// A load balancer's security group in front of the services.
    #[must_use]
    pub fn with_balancer(mut self, balancer: Option<BalancerAccess>) -> Self {
        self.balancer = balancer;
        self
    }

    /// Checks the whole config: blocks parse, subnets lie inside the VPC and do not overlap, rules and
    /// tags fit AWS's limits.
    ///
    /// # Errors
    /// The first problem, naming the field and the value.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate::name("stack_name", &self.stack_name, 64)?;
        validate::name("name_prefix", &self.name_prefix, 64)?;
        let vpc = validate::block("vpc_cidr", &self.vpc_cidr)?;
        if self.public_subnets.is_empty() {
            return Err(ValidationError::new(
                "public_subnets",
                "[]",
                "at least one public subnet is needed",
            ));
        }
        let mut nets = Vec::with_capacity(self.public_subnets.len());
        for (i, s) in self.public_subnets.iter().enumerate() {
            let field = format!("public_subnets[{i}].cidr");
            let net = validate::block(&field, &s.cidr)?;
            nets.push((field, net));
        }
        validate::subnets_fit(vpc, &nets)?;
        if let Some(b) = &self.balancer {
            for (key, ports) in [
                ("listener_ports", &b.listener_ports),
                ("service_ports", &b.service_ports),
            ] {
                let field = format!("balancer.{key}");
                if ports.is_empty() {
                    return Err(ValidationError::new(field, "[]", "a balancer needs a port"));
                }
                if ports.contains(&0) {
                    return Err(ValidationError::new(field, 0, "ports are 1 to 65535"));
                }
            }
        }
        if self.dns_hostnames && !self.dns_support {
            return Err(ValidationError::new(
                "dns_hostnames",
                true,
                "DNS hostnames need DNS support on",
            ));
        }
        validate::tags("tags", &self.tags)
    }

    fn tags_named(&self, name: String) -> BTreeMap<String, String> {
        let mut t = self.tags.clone();
        t.insert("Name".into(), name);
        t
    }
}

/// What the network gives the cluster stack (and anyone else), recorded in state.
///
/// Read it in the same process from [`Engine::up`](platform_core::Engine::up), or from another process
/// with [`StackRef<NetworkStack>`](platform_core::StackRef):
///
/// ```no_run
/// # async fn f(store: &dyn platform_core::StateStore, here: &platform_core::ProviderInfo) -> Result<(), platform_core::Error> {
/// use network_stack::{NetworkOutputs, NetworkStack};
/// let net: NetworkOutputs = platform_core::StackRef::<NetworkStack>::new("network").read(store, here).await?.outputs;
/// let subnets: Vec<&str> = net.public_subnet_ids.iter().map(|s| s.as_str()).collect();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkOutputs {
    /// The VPC.
    pub vpc_id: VpcId,
    /// The VPC's block.
    pub vpc_cidr: String,
    /// The public subnets, in config order.
    pub public_subnet_ids: Vec<SubnetId>,
    /// The zone of each public subnet, in the same order.
    pub availability_zones: Vec<String>,
    /// The security group for the services.
    pub security_group_id: SecurityGroupId,
    /// The load balancer's security group, when [`NetworkConfig::balancer`] is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer_security_group_id: Option<SecurityGroupId>,
    /// The public route table.
    pub route_table_id: RouteTableId,
    /// The internet gateway.
    pub internet_gateway_id: InternetGatewayId,
}

/// Typed references to the network's resources, for a stack applied together with it in a
/// [`StackGroup`](platform_core::StackGroup): a resource given one of these starts as soon as that
/// one resource of the network exists, not when the whole network is done. Applied alone, the
/// consumer reads them from the network's recorded state.
#[derive(Clone, Debug)]
pub struct NetworkExports {
    /// The network stack's name.
    pub stack: String,
    /// The VPC.
    pub vpc_id: Ref<VpcId>,
    /// The public subnets, in config order.
    pub public_subnet_ids: Vec<Ref<SubnetId>>,
    /// The security group for the services.
    pub security_group_id: Ref<SecurityGroupId>,
    /// The load balancer's security group, when [`NetworkConfig::balancer`] is set.
    pub balancer_security_group_id: Option<Ref<SecurityGroupId>>,
}

/// The logical names of the network's resources (its state's keys).
const VPC: &str = "vpc";
const SECURITY_GROUP: &str = "service-security-group";
const BALANCER_SECURITY_GROUP: &str = "balancer-security-group";

fn public_subnet(i: usize) -> String {
    format!("public-subnet-{i}")
}

/// The network stack.
#[derive(Clone, Debug)]
pub struct NetworkStack {
    config: NetworkConfig,
}

impl NetworkStack {
    /// The stack for `config`.
    pub fn new(config: NetworkConfig) -> Self {
        Self { config }
    }

    /// Its config.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// Typed references to its resources, for the stacks built on it (see [`NetworkExports`]).
    pub fn exports(&self) -> NetworkExports {
        let stack = &self.config.stack_name;
        NetworkExports {
            stack: stack.clone(),
            vpc_id: VpcOutputs::refs(VPC).vpc_id.in_stack(stack),
            public_subnet_ids: (0..self.config.public_subnets.len())
                .map(|i| {
                    SubnetOutputs::refs(&public_subnet(i))
                        .subnet_id
                        .in_stack(stack)
                })
                .collect(),
            security_group_id: SecurityGroupOutputs::refs(SECURITY_GROUP)
                .group_id
                .in_stack(stack),
            balancer_security_group_id: self.config.balancer.as_ref().map(|_| {
                SecurityGroupOutputs::refs(BALANCER_SECURITY_GROUP)
                    .group_id
                    .in_stack(stack)
            }),
        }
    }
}

impl Stack for NetworkStack {
    type Outputs = NetworkOutputs;

    fn name(&self) -> &str {
        &self.config.stack_name
    }

    fn register(registry: &mut Registry) {
        registry
            .add::<Vpc>()
            .add::<AvailabilityZones>()
            .add::<InternetGateway>()
            .add::<InternetGatewayAttachment>()
            .add::<Subnet>()
            .add::<RouteTable>()
            .add::<RouteTableAssociation>()
            .add::<SecurityGroup>();
    }

    fn declare(&self, s: &mut Scope) -> Result<Declared<NetworkOutputs>, Error> {
        let c = &self.config;
        c.validate()
            .map_err(|source| Error::invalid_config(&c.stack_name, source))?;
        let p = &c.name_prefix;
        let vpc = s.add(
            VPC,
            Vpc {
                cidr_block: c.vpc_cidr.clone(),
                enable_dns_support: c.dns_support,
                enable_dns_hostnames: c.dns_hostnames,
                tags: c.tags_named(format!("{p}-vpc")),
            },
        );
        // The gateway needs nothing: it is made while the VPC is, and attached once both exist.
        let igw = s.add(
            "internet-gateway",
            InternetGateway {
                tags: c.tags_named(format!("{p}-igw")),
            },
        );
        let attachment = s.add(
            "internet-gateway-attachment",
            InternetGatewayAttachment {
                internet_gateway_id: Input::from(&igw.internet_gateway_id),
                vpc_id: Input::from(&vpc.vpc_id),
            },
        );
        // The route to the gateway waits for the attachment (EC2 refuses it before).
        let mut rt = RouteTable::new(
            &vpc.vpc_id,
            vec![Route {
                destination_cidr_block: "0.0.0.0/0".into(),
                gateway_id: Input::from(&attachment.internet_gateway_id),
            }],
        );
        rt.tags = c.tags_named(format!("{p}-public-rt"));
        let rt = s.add("public-route-table", rt);
        // Subnets placed by zone index take the zone names from a lookup made while the VPC is.
        let by_index = c
            .public_subnets
            .iter()
            .any(|s| matches!(s.availability_zone, Az::Index(_)));
        let zones = by_index.then(|| s.add("availability-zones", AvailabilityZones::default()));
        let mut subnets = Vec::with_capacity(c.public_subnets.len());
        for (i, spec) in c.public_subnets.iter().enumerate() {
            let subnet = s.add(
                public_subnet(i),
                Subnet {
                    vpc_id: Input::from(&vpc.vpc_id),
                    cidr_block: spec.cidr.clone(),
                    availability_zone: spec.availability_zone.clone(),
                    map_public_ip_on_launch: true,
                    tags: c.tags_named(format!("{p}-public-{i}")),
                    zone_names: match (&spec.availability_zone, &zones) {
                        (Az::Index(_), Some(z)) => Some(Input::from(&z.names)),
                        _ => None,
                    },
                },
            );
            s.add(
                format!("public-subnet-{i}-route"),
                RouteTableAssociation {
                    route_table_id: Input::from(&rt.route_table_id),
                    subnet_id: Input::from(&subnet.subnet_id),
                },
            );
            subnets.push(subnet);
        }
        // The balancer's group: its listeners from anywhere, out to the services' ports in the VPC.
        let balancer = c.balancer.as_ref().map(|b| {
            let tcp = |ports: &[u16], peer: &str| -> Vec<SgRule> {
                ports.iter().map(|p| SgRule::tcp(*p, peer)).collect()
            };
            let mut lb = SecurityGroup::new(
                &vpc.vpc_id,
                &format!("{p}-lb"),
                "Load balancer: listeners in from anywhere, out to the services",
                tcp(&b.listener_ports, "0.0.0.0/0"),
                tcp(&b.service_ports, &c.vpc_cidr),
            );
            lb.tags = c.tags_named(format!("{p}-lb-sg"));
            s.add(BALANCER_SECURITY_GROUP, lb)
        });
        let mut ingress = c.ingress.clone();
        if let (Some(b), Some(lb)) = (&c.balancer, &balancer) {
            let from_balancer = |port: &u16| SgRule::tcp_from_group(*port, &lb.group_id);
            ingress.extend(b.service_ports.iter().map(from_balancer));
        }
        let mut sg = SecurityGroup::new(
            &vpc.vpc_id,
            &format!("{p}-service"),
            "ECS services: HTTP in, all out",
            ingress,
            c.egress.clone(),
        );
        sg.tags = c.tags_named(format!("{p}-service-sg"));
        let sg = s.add(SECURITY_GROUP, sg);

        Ok(s.outputs(move |o| {
            Ok(NetworkOutputs {
                vpc_id: o.get(&vpc.vpc_id)?,
                vpc_cidr: o.get(&vpc.cidr_block)?,
                public_subnet_ids: subnets
                    .iter()
                    .map(|s| o.get(&s.subnet_id))
                    .collect::<Result<_, _>>()?,
                availability_zones: subnets
                    .iter()
                    .map(|s| o.get(&s.availability_zone))
                    .collect::<Result<_, _>>()?,
                security_group_id: o.get(&sg.group_id)?,
                balancer_security_group_id: match &balancer {
                    Some(lb) => Some(o.get(&lb.group_id)?),
                    None => None,
                },
                route_table_id: o.get(&rt.route_table_id)?,
                internet_gateway_id: o.get(&igw.internet_gateway_id)?,
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_the_seed_and_valid() {
        let c = NetworkConfig::default();
        c.validate().unwrap();
        assert_eq!(c.vpc_cidr, "10.0.0.0/16");
        assert_eq!(c.public_subnets, vec![SubnetSpec::public("10.0.1.0/24", 0)]);
        assert_eq!(c.ingress, vec![SgRule::tcp(80, "0.0.0.0/0")]);
    }

    #[test]
    fn bad_configs_name_the_field_and_value() {
        let c = NetworkConfig::default()
            .with_public_subnets(vec![SubnetSpec::public("10.1.0.0/24", 0)]);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "invalid public_subnets[0].cidr = 10.1.0.0/24: not inside the VPC block 10.0.0.0/16"
        );
        let c = NetworkConfig::default().with_vpc_cidr("10.0.0.0/33");
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("invalid vpc_cidr = 10.0.0.0/33")
        );
        let c = NetworkConfig::default().with_tag("aws:owner", "me");
        assert!(c.validate().unwrap_err().to_string().contains("reserved"));
    }

    #[test]
    fn a_balancers_ports_are_named_when_missing_or_zero() {
        let with = |listeners: Vec<u16>, services: Vec<u16>| {
            NetworkConfig::default()
                .with_balancer(Some(BalancerAccess::new(listeners, services)))
                .validate()
        };
        assert!(with(vec![80, 443], vec![8080]).is_ok());
        let e = with(vec![], vec![80]).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("balancer.listener_ports", "[]")
        );
        let e = with(vec![80], vec![0]).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("balancer.service_ports", "0")
        );
        let e = with(vec![80], vec![]).unwrap_err();
        assert_eq!(e.field, "balancer.service_ports");
    }

    #[test]
    fn n_subnets_over_n_zones() {
        let c = NetworkConfig::default().with_public_subnets_across_zones(3);
        c.validate().unwrap();
        let zones: Vec<_> = c
            .public_subnets
            .iter()
            .map(|s| s.availability_zone.clone())
            .collect();
        assert_eq!(zones, vec![Az::Index(0), Az::Index(1), Az::Index(2)]);
    }
}

/// The compatibility rule of [`Stack::OUTPUTS_SCHEMA`](platform_core::Stack::OUTPUTS_SCHEMA): what a
/// producer of schema 1 recorded stays readable by this build (a field added without a default,
/// or renamed, fails here).
#[cfg(test)]
mod outputs_compatibility {
    use super::*;

    /// `NetworkOutputs` as schema 1 recorded them.
    const SCHEMA_1: &str = r#"{
        "vpc_id": "vpc-0a1b2c3d", "vpc_cidr": "10.0.0.0/16",
        "public_subnet_ids": ["subnet-0a1b2c3d"], "availability_zones": ["us-east-1a"],
        "security_group_id": "sg-0a1b2c3d", "route_table_id": "rtb-0a1b2c3d",
        "internet_gateway_id": "igw-0a1b2c3d"
    }"#;

    #[test]
    fn outputs_recorded_by_schema_1_are_read_by_this_build() {
        let read: NetworkOutputs = serde_json::from_str(SCHEMA_1).unwrap();
        assert_eq!(read.public_subnet_ids[0].as_str(), "subnet-0a1b2c3d");
        assert_eq!(<NetworkStack as Stack>::OUTPUTS_SCHEMA, 1);
    }
}
