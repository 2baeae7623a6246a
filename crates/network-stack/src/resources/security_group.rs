//! `ec2:security-group`: a security group whose rules are a set, diffed into authorize / revoke calls.

use platform_core::resource::{Idempotent, Once};
use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, UserIdGroupPair,
};
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::ec2;
use crate::ids::{SecurityGroupId, VpcId};
use crate::validate;

/// A rule's protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// Every protocol (AWS's `-1`); no ports.
    All,
}

impl Protocol {
    fn aws(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::All => "-1",
        }
    }

    fn from_aws(s: &str) -> Option<Self> {
        match s {
            "tcp" | "6" => Some(Self::Tcp),
            "udp" | "17" => Some(Self::Udp),
            "-1" | "all" => Some(Self::All),
            _ => None,
        }
    }
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    /// First port.
    pub from: u16,
    /// Last port.
    pub to: u16,
}

/// Who a rule admits (ingress) or reaches (egress): an IPv4 block, or the members of another
/// security group (a load balancer's, say), which may be declared in the same stack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// An IPv4 block (`0.0.0.0/0`); in state as `"cidr": BLOCK`.
    Cidr(String),
    /// The network interfaces in another security group; in state as `"source_group": ID`.
    SourceGroup(Input<SecurityGroupId>),
}

impl Peer {
    /// What orders and identifies a peer: blocks first, then groups by id (or by the reference
    /// before it is resolved).
    fn key(&self) -> (u8, std::borrow::Cow<'_, str>) {
        match self {
            Self::Cidr(c) => (0, c.into()),
            Self::SourceGroup(Input::Value(id)) => (1, id.as_str().into()),
            Self::SourceGroup(Input::Ref(r)) => (2, r.target().to_string().into()),
        }
    }
}

impl Eq for Peer {}

impl PartialOrd for Peer {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Peer {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

impl std::hash::Hash for Peer {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cidr(c) => f.write_str(c),
            Self::SourceGroup(Input::Value(id)) => write!(f, "security group {id}"),
            Self::SourceGroup(Input::Ref(r)) => write!(f, "security group {}", r.target()),
        }
    }
}

/// One rule: a protocol, a port range (none for [`Protocol::All`]), one peer.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SgRule {
    /// The protocol.
    pub protocol: Protocol,
    /// The ports, for TCP and UDP.
    pub ports: Option<PortRange>,
    /// The peer: a block (`0.0.0.0/0`) or a security group.
    #[serde(flatten)]
    pub peer: Peer,
}

impl SgRule {
    /// TCP on one port from (or to) `cidr`.
    pub fn tcp(port: u16, cidr: &str) -> Self {
        Self::tcp_from(port, Peer::Cidr(cidr.to_owned()))
    }

    /// TCP on one port from (or to) the members of security group `group`.
    pub fn tcp_from_group(port: u16, group: impl Into<Input<SecurityGroupId>>) -> Self {
        Self::tcp_from(port, Peer::SourceGroup(group.into()))
    }

    fn tcp_from(port: u16, peer: Peer) -> Self {
        Self {
            protocol: Protocol::Tcp,
            ports: Some(PortRange {
                from: port,
                to: port,
            }),
            peer,
        }
    }

    /// Every protocol and port to (or from) `cidr`.
    pub fn all(cidr: &str) -> Self {
        Self {
            protocol: Protocol::All,
            ports: None,
            peer: Peer::Cidr(cidr.to_owned()),
        }
    }

    fn permission(&self) -> Result<IpPermission, ResourceError> {
        let mut b = IpPermission::builder().ip_protocol(self.protocol.aws());
        b = match &self.peer {
            Peer::Cidr(c) => b.ip_ranges(IpRange::builder().cidr_ip(c).build()),
            Peer::SourceGroup(g) => b.user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id(g.get()?.as_str())
                    .build(),
            ),
        };
        if let Some(p) = self.ports {
            b = b.from_port(i32::from(p.from)).to_port(i32::from(p.to));
        }
        Ok(b.build())
    }

    fn validate(&self, field: &str) -> Result<(), ValidationError> {
        match &self.peer {
            Peer::Cidr(c) => {
                validate::parse_cidr(&format!("{field}.cidr"), c)?;
            }
            Peer::SourceGroup(Input::Value(id)) if !id.as_str().starts_with("sg-") => {
                return Err(ValidationError::new(
                    format!("{field}.source_group"),
                    id.as_str(),
                    "a security group id starts with sg-",
                ));
            }
            Peer::SourceGroup(_) => {}
        }
        match (self.protocol, self.ports) {
            (Protocol::All, Some(p)) => Err(ValidationError::new(
                format!("{field}.ports"),
                format!("{}-{}", p.from, p.to),
                "the all-protocols rule has no ports",
            )),
            (Protocol::Tcp | Protocol::Udp, None) => Err(ValidationError::new(
                format!("{field}.ports"),
                "none",
                "TCP and UDP rules need a port range",
            )),
            (_, Some(p)) if p.from > p.to => Err(ValidationError::new(
                format!("{field}.ports"),
                format!("{}-{}", p.from, p.to),
                "the first port is after the last",
            )),
            _ => Ok(()),
        }
    }
}

/// A rule the declared rule sets do not express: an IPv6 block or a prefix list as the peer, or a protocol other than TCP, UDP and all (ICMP, ...). Never declared;
/// seen when a group is read (so drift shows), and revoked by the next update: the stack manages its
/// groups' rules exclusively.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OtherRule {
    /// AWS's protocol: `tcp`, `udp`, `icmp`, `icmpv6`, a number, `-1`.
    pub protocol: String,
    /// The first port; for ICMP, the type (-1: any).
    pub from_port: Option<i32>,
    /// The last port; for ICMP, the code (-1: any).
    pub to_port: Option<i32>,
    /// The peer: `cidr:BLOCK`, `ipv6:BLOCK`, `group:sg-..`, `prefix-list:pl-..`.
    pub peer: String,
}

impl OtherRule {
    fn permission(&self) -> IpPermission {
        let mut b = IpPermission::builder()
            .ip_protocol(&self.protocol)
            .set_from_port(self.from_port)
            .set_to_port(self.to_port);
        let (kind, value) = self.peer.split_once(':').unwrap_or(("cidr", &self.peer));
        b = match kind {
            "ipv6" => b.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(value).build()),
            "group" => b.user_id_group_pairs(UserIdGroupPair::builder().group_id(value).build()),
            "prefix-list" => {
                b.prefix_list_ids(PrefixListId::builder().prefix_list_id(value).build())
            }
            _ => b.ip_ranges(IpRange::builder().cidr_ip(value).build()),
        };
        b.build()
    }
}

/// Rules flattened from AWS's permissions: one per protocol, ports and peer; those the declared
/// rule sets cannot express apart.
fn rules_from(perms: &[IpPermission]) -> (Vec<SgRule>, Vec<OtherRule>) {
    let mut out = BTreeSet::new();
    let mut other = BTreeSet::new();
    for p in perms {
        let raw = p.ip_protocol().unwrap_or("-1");
        let (from_port, to_port) = (p.from_port(), p.to_port());
        let groups = p.user_id_group_pairs().iter().filter_map(|g| g.group_id());
        let mut peers: Vec<String> = p
            .ipv6_ranges()
            .iter()
            .filter_map(|r| Some(format!("ipv6:{}", r.cidr_ipv6()?)))
            .chain(
                p.prefix_list_ids()
                    .iter()
                    .filter_map(|l| Some(format!("prefix-list:{}", l.prefix_list_id()?))),
            )
            .collect();
        match Protocol::from_aws(raw) {
            Some(protocol) => {
                let ports = match (protocol, from_port, to_port) {
                    (Protocol::All, _, _) => None,
                    (_, Some(f), Some(t)) => Some(PortRange {
                        from: u16::try_from(f).unwrap_or(0),
                        to: u16::try_from(t).unwrap_or(u16::MAX),
                    }),
                    _ => None,
                };
                let blocks = p.ip_ranges().iter().filter_map(|r| r.cidr_ip());
                let blocks = blocks.map(|c| Peer::Cidr(c.to_owned()));
                let groups =
                    groups.map(|g| Peer::SourceGroup(Input::Value(SecurityGroupId::new(g))));
                for peer in blocks.chain(groups) {
                    out.insert(SgRule {
                        protocol,
                        ports,
                        peer,
                    });
                }
            }
            None => peers.extend(
                p.ip_ranges()
                    .iter()
                    .filter_map(|r| Some(format!("cidr:{}", r.cidr_ip()?)))
                    .chain(groups.map(|g| format!("group:{g}"))),
            ),
        }
        for peer in peers {
            other.insert(OtherRule {
                protocol: raw.to_owned(),
                from_port,
                to_port,
                peer,
            });
        }
    }
    (out.into_iter().collect(), other.into_iter().collect())
}

/// What to revoke and what to authorize to go from one rule set to another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleDiff {
    /// Rules present now and not wanted.
    pub revoke: Vec<SgRule>,
    /// Rules wanted and not present.
    pub authorize: Vec<SgRule>,
}

/// Diffs two rule sets (order and repeats do not matter).
pub fn diff_rules(current: &[SgRule], desired: &[SgRule]) -> RuleDiff {
    let cur: BTreeSet<&SgRule> = current.iter().collect();
    let want: BTreeSet<&SgRule> = desired.iter().collect();
    RuleDiff {
        revoke: cur.difference(&want).map(|r| (*r).clone()).collect(),
        authorize: want.difference(&cur).map(|r| (*r).clone()).collect(),
    }
}

/// A security group. Its VPC, name and description cannot change in place (a change replaces it);
/// ingress and egress rules are sets (kept sorted), changed with authorize / revoke calls; tags in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// The VPC.
    pub vpc_id: Input<VpcId>,
    /// The group name, unique in the VPC.
    pub name: String,
    /// The description.
    pub description: String,
    /// Inbound rules.
    pub ingress: Vec<SgRule>,
    /// Outbound rules.
    pub egress: Vec<SgRule>,
    /// Inbound rules found that the declared ones cannot express ([`OtherRule`]): empty when
    /// declared, so that an update revokes any found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_ingress: Vec<OtherRule>,
    /// Outbound rules found that the declared ones cannot express.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_egress: Vec<OtherRule>,
    /// User tags.
    pub tags: BTreeMap<String, String>,
}

impl SecurityGroup {
    /// A group with its rule sets normalised (sorted, without repeats).
    pub fn new(
        vpc_id: impl Into<Input<VpcId>>,
        name: &str,
        description: &str,
        ingress: Vec<SgRule>,
        egress: Vec<SgRule>,
    ) -> Self {
        let norm = |v: Vec<SgRule>| v.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        Self {
            vpc_id: vpc_id.into(),
            name: name.to_owned(),
            description: description.to_owned(),
            ingress: norm(ingress),
            egress: norm(egress),
            other_ingress: Vec::new(),
            other_egress: Vec::new(),
            tags: BTreeMap::new(),
        }
    }

    /// Revokes the rules of `found` that are not in `wanted`, ingress or egress.
    async fn revoke_others(
        ctx: &Context,
        client: &aws_sdk_ec2::Client,
        id: &str,
        egress: bool,
        found: &[OtherRule],
        wanted: &[OtherRule],
    ) -> Result<(), ResourceError> {
        let p: Vec<IpPermission> = found
            .iter()
            .filter(|r| !wanted.contains(r))
            .map(OtherRule::permission)
            .collect();
        Self::revoke(ctx, client, id, egress, p).await
    }

    /// Revokes permissions `p` of group `id`, ingress or egress; nothing when there are none.
    async fn revoke(
        ctx: &Context,
        client: &aws_sdk_ec2::Client,
        id: &str,
        egress: bool,
        p: Vec<IpPermission>,
    ) -> Result<(), ResourceError> {
        if p.is_empty() {
            return Ok(());
        }
        if egress {
            ctx.call("RevokeSecurityGroupEgress", Idempotent, || {
                client
                    .revoke_security_group_egress()
                    .group_id(id)
                    .set_ip_permissions(Some(p.clone()))
                    .send()
            })
            .await?;
        } else {
            ctx.call("RevokeSecurityGroupIngress", Idempotent, || {
                client
                    .revoke_security_group_ingress()
                    .group_id(id)
                    .set_ip_permissions(Some(p.clone()))
                    .send()
            })
            .await?;
        }
        Ok(())
    }

    async fn apply_diff(
        ctx: &Context,
        client: &aws_sdk_ec2::Client,
        id: &str,
        ingress: RuleDiff,
        egress: RuleDiff,
    ) -> Result<(), ResourceError> {
        let perms = |rules: &[SgRule]| {
            rules
                .iter()
                .map(SgRule::permission)
                .collect::<Result<Vec<_>, _>>()
        };
        Self::revoke(ctx, client, id, false, perms(&ingress.revoke)?).await?;
        Self::revoke(ctx, client, id, true, perms(&egress.revoke)?).await?;
        if !ingress.authorize.is_empty() {
            let p = perms(&ingress.authorize)?;
            ctx.call(
                "AuthorizeSecurityGroupIngress",
                Once.retrying(|e| e.is_not_found()),
                || {
                    client
                        .authorize_security_group_ingress()
                        .group_id(id)
                        .set_ip_permissions(Some(p.clone()))
                        .send()
                },
            )
            .await?;
        }
        if !egress.authorize.is_empty() {
            let p = perms(&egress.authorize)?;
            ctx.call(
                "AuthorizeSecurityGroupEgress",
                Once.retrying(|e| e.is_not_found()),
                || {
                    client
                        .authorize_security_group_egress()
                        .group_id(id)
                        .set_ip_permissions(Some(p.clone()))
                        .send()
                },
            )
            .await?;
        }
        Ok(())
    }
}

resource_outputs! {
    /// A security group's outputs.
    pub struct SecurityGroupOutputs / SecurityGroupRefs {
        /// The group id.
        pub group_id: SecurityGroupId,
    }
}

impl ec2::Ec2Object for SecurityGroup {
    const NOUN: &'static str = "security group";
    type Described = aws_sdk_ec2::types::SecurityGroup;

    ec2::describe_call!(
        "DescribeSecurityGroups",
        describe_security_groups,
        set_group_ids,
        security_groups
    );

    fn outputs_of(g: &Self::Described) -> Option<(String, SecurityGroupOutputs)> {
        let id = g.group_id()?.to_owned();
        Some((
            id.clone(),
            SecurityGroupOutputs {
                group_id: SecurityGroupId::new(id),
            },
        ))
    }
}

impl Resource for SecurityGroup {
    type Outputs = SecurityGroupOutputs;
    const KIND: &'static str = "ec2:security-group";
    const SERVICE: &'static str = "ec2";
    const UPDATES_IN_PLACE: bool = true;

    /// A new VPC, name or description is a new group. A group's name is unique in its VPC
    /// (`CreateSecurityGroup` answers `InvalidGroup.Duplicate`): a replacement that keeps both
    /// deletes the old group first.
    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; vpc_id, name, description)
            .delete_first(self.vpc_id == previous.vpc_id && self.name == previous.name)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::name("name", &self.name, 255)?;
        if self.name.starts_with("sg-") {
            return Err(ValidationError::new(
                "name",
                &self.name,
                "names cannot start with sg-",
            ));
        }
        validate::name("description", &self.description, 255)?;
        for (i, r) in self.ingress.iter().enumerate() {
            r.validate(&format!("ingress[{i}]"))?;
        }
        for (i, r) in self.egress.iter().enumerate() {
            r.validate(&format!("egress[{i}]"))?;
        }
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<SecurityGroupOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let vpc = self.vpc_id.get()?;
        let out = ctx
            .call(
                "CreateSecurityGroup",
                Once.retrying(|e| e.is_not_found()),
                || {
                    client
                        .create_security_group()
                        .vpc_id(vpc.as_str())
                        .group_name(&self.name)
                        .description(&self.description)
                        .tag_specifications(ec2::tag_spec(
                            ctx,
                            ResourceType::SecurityGroup,
                            &self.tags,
                        ))
                        .send()
                },
            )
            .await?;
        let id = out
            .group_id()
            .ok_or_else(|| ResourceError::missing("CreateSecurityGroup", "a group id"))?
            .to_owned();
        let outputs = SecurityGroupOutputs {
            group_id: SecurityGroupId::new(id.clone()),
        };
        // A service can be placed in the group before its rules are in: they apply when they are.
        ctx.publish(&outputs).await?;
        // AWS gives a new group one egress rule (all traffic to 0.0.0.0/0) and no ingress; read what
        // this endpoint actually gave rather than assume it.
        let created = ctx
            .call(
                "DescribeSecurityGroups",
                Idempotent.retrying(|e| e.is_not_found()),
                || client.describe_security_groups().group_ids(&id).send(),
            )
            .await?;
        let ((ingress, other_in), (egress, other_out)) = created
            .security_groups()
            .first()
            .map(|g| {
                (
                    rules_from(g.ip_permissions()),
                    rules_from(g.ip_permissions_egress()),
                )
            })
            .unwrap_or_default();
        // AWS's default IPv6 egress rule (a VPC with an IPv6 block) is not declared: revoked too.
        Self::revoke_others(ctx, &client, &id, false, &other_in, &self.other_ingress).await?;
        Self::revoke_others(ctx, &client, &id, true, &other_out, &self.other_egress).await?;
        Self::apply_diff(
            ctx,
            &client,
            &id,
            diff_rules(&ingress, &self.ingress),
            diff_rules(&egress, &self.egress),
        )
        .await?;
        Ok(outputs)
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &SecurityGroupOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let id = outputs.group_id.as_str();
        let Some(g) = ec2::describe_id::<SecurityGroup>(ctx, id).await? else {
            return Ok(None);
        };
        let (ingress, other_ingress) = rules_from(g.ip_permissions());
        let (egress, other_egress) = rules_from(g.ip_permissions_egress());
        let mut live = SecurityGroup::new(
            Input::Value(VpcId::new(g.vpc_id().unwrap_or_default().to_owned())),
            g.group_name().unwrap_or_default(),
            g.description().unwrap_or_default(),
            ingress,
            egress,
        );
        live.other_ingress = other_ingress;
        live.other_egress = other_egress;
        live.tags = ec2::user_tags(g.tags());
        Ok(Some(Observed {
            inputs: live,
            outputs: outputs.clone(),
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &SecurityGroupOutputs,
    ) -> Result<SecurityGroupOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.group_id.as_str();
        Self::revoke_others(
            ctx,
            &client,
            id,
            false,
            &previous.other_ingress,
            &self.other_ingress,
        )
        .await?;
        Self::revoke_others(
            ctx,
            &client,
            id,
            true,
            &previous.other_egress,
            &self.other_egress,
        )
        .await?;
        Self::apply_diff(
            ctx,
            &client,
            id,
            diff_rules(&previous.ingress, &self.ingress),
            diff_rules(&previous.egress, &self.egress),
        )
        .await?;
        ec2::update_tags(ctx, id, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    async fn delete(
        &self,
        ctx: &Context,
        outputs: &SecurityGroupOutputs,
    ) -> Result<(), ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.group_id.as_str();
        // DependencyViolation while network interfaces (Fargate tasks) still use the group.
        ec2::delete_when_free(
            ctx,
            "DeleteSecurityGroup",
            ec2::delete_budget::SECURITY_GROUP,
            || client.delete_security_group().group_id(id).send(),
        )
        .await
    }

    /// By group id (`sg-...`).
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<SecurityGroupOutputs>, ResourceError> {
        ec2::import::<Self>(ctx, id).await
    }

    /// By the engine's tags only (a group's name is unique in its VPC: no twin has it).
    async fn find_all(&self, ctx: &Context) -> Result<Vec<SecurityGroupOutputs>, ResourceError> {
        ec2::find_all::<Self>(ctx).await
    }

    async fn find(&self, ctx: &Context) -> Result<Option<SecurityGroupOutputs>, ResourceError> {
        if let Some(tagged) = ec2::find::<Self>(ctx).await? {
            return Ok(Some(tagged));
        }
        let client = ec2::client(ctx)?;
        // A group's name is unique in its VPC (a create answers `InvalidGroup.Duplicate`): a group of
        // this name is adopted only when it is ours, and otherwise named with its owner.
        let vpc = self.vpc_id.get()?;
        let by_name: Vec<Filter> = [("group-name", self.name.as_str()), ("vpc-id", vpc.as_str())]
            .into_iter()
            .map(|(k, v)| Filter::builder().name(k).values(v).build())
            .collect();
        let named =
            <Self as ec2::Ec2Object>::describe(ctx, &client, ec2::Lookup::Filters(by_name)).await?;
        let Some(g) = named.first() else {
            return Ok(None);
        };
        let id = g.group_id().unwrap_or_default();
        let tags = g
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())));
        // Ours, but another instance of this resource (one being replaced) is never taken for the
        // instance a create made.
        ctx.claim(&format!("security group {} ({id})", self.name), tags)?;
        Ok(Some(SecurityGroupOutputs {
            group_id: SecurityGroupId::new(id.to_owned()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule() -> impl Strategy<Value = SgRule> {
        (0u8..3, 0u16..5, 0u16..3, 0u8..3).prop_map(|(p, from, span, c)| {
            let protocol = [Protocol::Tcp, Protocol::Udp, Protocol::All][usize::from(p)];
            SgRule {
                protocol,
                ports: (protocol != Protocol::All).then_some(PortRange {
                    from,
                    to: from + span,
                }),
                peer: Peer::Cidr(
                    ["0.0.0.0/0", "10.0.0.0/16", "192.168.1.0/24"][usize::from(c)].into(),
                ),
            }
        })
    }

    proptest! {
        #[test]
        fn applying_the_diff_gives_the_desired_set(
            current in proptest::collection::vec(rule(), 0..8),
            desired in proptest::collection::vec(rule(), 0..8),
        ) {
            let d = diff_rules(&current, &desired);
            let mut result: BTreeSet<SgRule> = current.iter().cloned().collect();
            for r in &d.revoke {
                prop_assert!(result.remove(r), "revoked a rule that was not there");
            }
            for r in &d.authorize {
                prop_assert!(result.insert(r.clone()), "authorized a rule already there");
            }
            let want: BTreeSet<SgRule> = desired.iter().cloned().collect();
            prop_assert_eq!(&result, &want);
            // Minimal: nothing both revoked and authorized, nothing kept is touched.
            prop_assert!(d.revoke.iter().all(|r| !want.contains(r)));
            prop_assert!(d.authorize.iter().all(|r| !current.contains(r)));
        }

        #[test]
        fn the_same_set_in_any_order_is_no_change(rules in proptest::collection::vec(rule(), 0..8)) {
            let mut shuffled = rules.clone();
            shuffled.reverse();
            prop_assert_eq!(diff_rules(&rules, &shuffled), RuleDiff::default());
        }
    }

    #[test]
    fn a_group_peer_is_kept_in_state_beside_blocks_and_refused_when_not_a_group_id() {
        let rule = SgRule::tcp_from_group(80, SecurityGroupId::new("sg-1"));
        let json = serde_json::to_value(&rule).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"protocol": "tcp", "ports": {"from": 80, "to": 80}, "source_group": "sg-1"})
        );
        assert_eq!(serde_json::from_value::<SgRule>(json).unwrap(), rule);
        // A block reads back as it was written before groups were peers.
        let old = serde_json::json!({"protocol": "tcp", "ports": {"from": 80, "to": 80}, "cidr": "0.0.0.0/0"});
        assert_eq!(
            serde_json::from_value::<SgRule>(old).unwrap(),
            SgRule::tcp(80, "0.0.0.0/0")
        );
        let e = SgRule::tcp_from_group(80, SecurityGroupId::new("vpc-1"))
            .validate("ingress[0]")
            .unwrap_err();
        assert_eq!(e.field, "ingress[0].source_group");
        assert_eq!(e.value, "vpc-1");
        // Blocks order before groups; a group by id before one not resolved yet.
        let r = platform_core::Ref::<SecurityGroupId>::new("lb", "group_id");
        let mut rules = [
            SgRule::tcp_from_group(80, &r),
            SgRule::tcp_from_group(80, SecurityGroupId::new("sg-2")),
            SgRule::tcp(80, "10.0.0.0/8"),
        ];
        rules.sort();
        assert_eq!(rules[0].peer, Peer::Cidr("10.0.0.0/8".into()));
        assert_eq!(rules[1].peer.to_string(), "security group sg-2");
        assert!(rules[2].peer.to_string().starts_with("security group "));
    }

    #[test]
    fn permissions_round_trip_through_the_aws_shape() {
        let rules = vec![
            SgRule::tcp(80, "0.0.0.0/0"),
            SgRule::all("10.0.0.0/16"),
            SgRule::tcp_from_group(8080, SecurityGroupId::new("sg-lb")),
        ];
        let perms: Vec<_> = rules.iter().map(|r| r.permission().unwrap()).collect();
        let (mut back, other) = rules_from(&perms);
        back.sort();
        let mut want = rules;
        want.sort();
        assert_eq!(back, want);
        assert_eq!(other, []);
    }

    #[test]
    fn rules_of_every_other_kind_are_seen_and_revoked_as_they_were_found() {
        let found = vec![
            // TCP 22 from a block, an IPv6 block, another group and a prefix list, in one permission.
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(22)
                .to_port(22)
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
                .user_id_group_pairs(UserIdGroupPair::builder().group_id("sg-other").build())
                .prefix_list_ids(PrefixListId::builder().prefix_list_id("pl-1234").build())
                .build(),
            // ICMP echo from a block: a protocol the declared rules do not have.
            IpPermission::builder()
                .ip_protocol("icmp")
                .from_port(8)
                .to_port(-1)
                .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
                .build(),
        ];
        let (rules, other) = rules_from(&found);
        assert_eq!(
            rules,
            [
                SgRule::tcp(22, "0.0.0.0/0"),
                SgRule::tcp_from_group(22, SecurityGroupId::new("sg-other"))
            ]
        );
        let peers: Vec<(&str, &str)> = other
            .iter()
            .map(|r| (r.protocol.as_str(), r.peer.as_str()))
            .collect();
        assert_eq!(
            peers,
            [
                ("icmp", "cidr:10.0.0.0/8"),
                ("tcp", "ipv6:::/0"),
                ("tcp", "prefix-list:pl-1234"),
            ]
        );
        assert_eq!((other[0].from_port, other[0].to_port), (Some(8), Some(-1)));
        // Each revokes exactly what was found.
        for r in &other {
            let (again_rules, again) = rules_from(&[r.permission()]);
            assert_eq!(again_rules, []);
            assert_eq!(again, std::slice::from_ref(r));
        }
    }

    #[test]
    fn protocols_are_read_by_name_or_number_and_others_are_not_declared_ones() {
        for (aws, p) in [
            ("tcp", Some(Protocol::Tcp)),
            ("6", Some(Protocol::Tcp)),
            ("udp", Some(Protocol::Udp)),
            ("17", Some(Protocol::Udp)),
            ("-1", Some(Protocol::All)),
            ("all", Some(Protocol::All)),
            ("icmp", None),
            ("58", None),
        ] {
            assert_eq!(Protocol::from_aws(aws), p, "{aws}");
        }
        // AWS may give the all-protocols rule ports of -1: it has none.
        let all = IpPermission::builder()
            .ip_protocol("-1")
            .from_port(-1)
            .to_port(-1)
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build();
        assert_eq!(rules_from(&[all]).0, [SgRule::all("0.0.0.0/0")]);
    }

    #[test]
    fn good_rules_pass_and_each_bad_shape_is_named() {
        let mut udp = SgRule::tcp(53, "10.0.0.0/16");
        udp.protocol = Protocol::Udp;
        for ok in [SgRule::tcp(80, "0.0.0.0/0"), SgRule::all("10.0.0.0/8"), udp] {
            assert_eq!(ok.validate("ingress[0]"), Ok(()), "{ok:?}");
        }
        let mut all_with_ports = SgRule::all("0.0.0.0/0");
        all_with_ports.ports = Some(PortRange { from: 1, to: 2 });
        assert_eq!(
            all_with_ports
                .validate("egress[0]")
                .unwrap_err()
                .to_string(),
            "invalid egress[0].ports = 1-2: the all-protocols rule has no ports"
        );
        let mut tcp_without_ports = SgRule::tcp(80, "0.0.0.0/0");
        tcp_without_ports.ports = None;
        assert_eq!(
            tcp_without_ports
                .validate("ingress[2]")
                .unwrap_err()
                .to_string(),
            "invalid ingress[2].ports = none: TCP and UDP rules need a port range"
        );
    }

    #[test]
    fn bad_rules_name_their_field() {
        let mut r = SgRule::tcp(80, "0.0.0.0/0");
        r.ports = Some(PortRange { from: 90, to: 80 });
        assert_eq!(
            r.validate("ingress[0]").unwrap_err().to_string(),
            "invalid ingress[0].ports = 90-80: the first port is after the last"
        );
        let r = SgRule::tcp(80, "0.0.0.0/33");
        assert!(
            r.validate("ingress[1]")
                .unwrap_err()
                .to_string()
                .contains("ingress[1].cidr")
        );
    }
}
