//! `ec2:route-table`: a route table in a VPC and its routes to internet gateways.

use platform_core::resource::{Idempotent, Once};
use std::collections::BTreeMap;

use aws_sdk_ec2::types::{ResourceType, RouteOrigin};
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, error::GoneExt,
    resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::ec2;
use crate::ids::{InternetGatewayId, RouteTableId, VpcId};
use crate::validate;

/// A route to an internet gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Where the route goes (`0.0.0.0/0` for the default route).
    pub destination_cidr_block: String,
    /// The gateway that takes the traffic.
    pub gateway_id: Input<InternetGatewayId>,
}

/// A route the declared routes do not express: to another target than an internet gateway (a NAT
/// gateway, an instance, a peering, ...) or to an IPv6 block or a prefix list. Never declared; seen
/// when a table is read (so drift shows), and deleted by the next update: the stack manages its
/// tables' routes exclusively.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OtherRoute {
    /// Where it goes: `cidr:BLOCK`, `ipv6:BLOCK` or `prefix-list:pl-..`.
    pub destination: String,
    /// What takes the traffic (`nat-..`, `i-..`, `pcx-..`, ...).
    pub target: String,
}

/// The routes of an AWS table that the stack may manage, and the others.
fn routes_from(routes: &[aws_sdk_ec2::types::Route]) -> (Vec<Route>, Vec<OtherRoute>) {
    let mut managed = Vec::new();
    let mut other = Vec::new();
    for r in routes
        .iter()
        .filter(|r| r.origin() != Some(&RouteOrigin::CreateRouteTable))
        .filter(|r| r.gateway_id() != Some("local"))
    {
        if let (Some(dest), Some(gw)) = (r.destination_cidr_block(), r.gateway_id())
            && gw.starts_with("igw-")
        {
            managed.push(Route {
                destination_cidr_block: dest.to_owned(),
                gateway_id: Input::Value(InternetGatewayId::new(gw.to_owned())),
            });
            continue;
        }
        let destination = r
            .destination_cidr_block()
            .map(|d| format!("cidr:{d}"))
            .or_else(|| r.destination_ipv6_cidr_block().map(|d| format!("ipv6:{d}")))
            .or_else(|| {
                r.destination_prefix_list_id()
                    .map(|d| format!("prefix-list:{d}"))
            });
        let target = [
            r.gateway_id(),
            r.nat_gateway_id(),
            r.instance_id(),
            r.network_interface_id(),
            r.vpc_peering_connection_id(),
            r.transit_gateway_id(),
            r.egress_only_internet_gateway_id(),
            r.local_gateway_id(),
            r.carrier_gateway_id(),
            r.core_network_arn(),
        ]
        .into_iter()
        .flatten()
        .next()
        .unwrap_or("unknown");
        if let Some(destination) = destination {
            other.push(OtherRoute {
                destination,
                target: target.to_owned(),
            });
        }
    }
    other.sort();
    (managed, other)
}

/// A route table. Moving it to another VPC replaces it; routes (kept sorted by destination) and tags
/// change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteTable {
    /// The VPC.
    pub vpc_id: Input<VpcId>,
    /// The routes besides the VPC's local route.
    pub routes: Vec<Route>,
    /// Routes found that the declared ones cannot express ([`OtherRoute`]): empty when declared, so
    /// that an update deletes any found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_routes: Vec<OtherRoute>,
    /// User tags.
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A route table's outputs.
    pub struct RouteTableOutputs / RouteTableRefs {
        /// The route table id.
        pub route_table_id: RouteTableId,
    }
}

impl RouteTable {
    /// A route table in `vpc_id` with `routes`, sorted so that order never shows as a change.
    pub fn new(vpc_id: impl Into<Input<VpcId>>, mut routes: Vec<Route>) -> Self {
        routes.sort_by(|a, b| a.destination_cidr_block.cmp(&b.destination_cidr_block));
        Self {
            vpc_id: vpc_id.into(),
            routes,
            other_routes: Vec::new(),
            tags: BTreeMap::new(),
        }
    }

    fn route_map(&self) -> Result<BTreeMap<&str, &str>, ResourceError> {
        self.routes
            .iter()
            .map(|r| {
                Ok((
                    r.destination_cidr_block.as_str(),
                    r.gateway_id.get()?.as_str(),
                ))
            })
            .collect()
    }
}

impl ec2::Ec2Object for RouteTable {
    const NOUN: &'static str = "route table";
    type Described = aws_sdk_ec2::types::RouteTable;

    ec2::describe_call!(
        "DescribeRouteTables",
        describe_route_tables,
        set_route_table_ids,
        route_tables
    );

    fn outputs_of(t: &Self::Described) -> Option<(String, RouteTableOutputs)> {
        let id = t.route_table_id()?.to_owned();
        Some((
            id.clone(),
            RouteTableOutputs {
                route_table_id: RouteTableId::new(id),
            },
        ))
    }
}

impl Resource for RouteTable {
    type Outputs = RouteTableOutputs;
    const KIND: &'static str = "ec2:route-table";
    const SERVICE: &'static str = "ec2";
    const UPDATES_IN_PLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; vpc_id)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        for (i, r) in self.routes.iter().enumerate() {
            validate::parse_cidr(
                &format!("routes[{i}].destination_cidr_block"),
                &r.destination_cidr_block,
            )?;
            if self.routes[..i]
                .iter()
                .any(|o| o.destination_cidr_block == r.destination_cidr_block)
            {
                return Err(ValidationError::new(
                    format!("routes[{i}].destination_cidr_block"),
                    &r.destination_cidr_block,
                    "a destination can have one route only",
                ));
            }
        }
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<RouteTableOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let vpc = self.vpc_id.get()?;
        let out = ctx
            .call(
                "CreateRouteTable",
                Once.retrying(|e| e.is_not_found()),
                || {
                    client
                        .create_route_table()
                        .vpc_id(vpc.as_str())
                        // EC2\'s own idempotency: a repeat with this token answers the same table.
                        .set_client_token(ctx.instance_token().map(str::to_owned))
                        .tag_specifications(ec2::tag_spec(
                            ctx,
                            ResourceType::RouteTable,
                            &self.tags,
                        ))
                        .send()
                },
            )
            .await?;
        let id = out
            .route_table()
            .and_then(|t| t.route_table_id())
            .ok_or_else(|| ResourceError::missing("CreateRouteTable", "a route table id"))?
            .to_owned();
        let outputs = RouteTableOutputs {
            route_table_id: RouteTableId::new(id.clone()),
        };
        // Subnets can be associated with the table while its routes go in.
        ctx.publish(&outputs).await?;
        self.converge_routes(ctx, &client, &id, &BTreeMap::new())
            .await?;
        Ok(outputs)
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &RouteTableOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let id = outputs.route_table_id.as_str();
        let Some(t) = ec2::describe_id::<RouteTable>(ctx, id).await? else {
            return Ok(None);
        };
        let (routes, other_routes) = routes_from(t.routes());
        let mut live = RouteTable::new(
            Input::Value(VpcId::new(t.vpc_id().unwrap_or_default().to_owned())),
            routes,
        );
        live.other_routes = other_routes;
        live.tags = ec2::user_tags(t.tags());
        Ok(Some(Observed {
            inputs: live,
            outputs: outputs.clone(),
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &RouteTableOutputs,
    ) -> Result<RouteTableOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.route_table_id.as_str();
        // First the routes found that are not declared: one may hold a declared destination.
        for r in previous
            .other_routes
            .iter()
            .filter(|r| !self.other_routes.contains(r))
        {
            let (kind, dest) = r.destination.split_once(':').unwrap_or(("cidr", ""));
            ctx.call("DeleteRoute", Idempotent, || {
                let call = client.delete_route().route_table_id(id);
                match kind {
                    "ipv6" => call.destination_ipv6_cidr_block(dest),
                    "prefix-list" => call.destination_prefix_list_id(dest),
                    _ => call.destination_cidr_block(dest),
                }
                .send()
            })
            .await
            .gone_is_ok()?;
        }
        self.converge_routes(ctx, &client, id, &previous.route_map()?)
            .await?;
        ec2::update_tags(ctx, id, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    async fn delete(
        &self,
        ctx: &Context,
        outputs: &RouteTableOutputs,
    ) -> Result<(), ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.route_table_id.as_str();
        ec2::delete_when_free(
            ctx,
            "DeleteRouteTable",
            ec2::delete_budget::ROUTE_TABLE,
            || client.delete_route_table().route_table_id(id).send(),
        )
        .await
    }

    platform_core::lookups!(ec2);
}

impl RouteTable {
    /// Creates, replaces and deletes routes so that table `id` goes from `current` to `self.routes`
    /// (a destination whose found route was not declared was deleted first: it is created).
    async fn converge_routes(
        &self,
        ctx: &Context,
        client: &aws_sdk_ec2::Client,
        id: &str,
        current: &BTreeMap<&str, &str>,
    ) -> Result<(), ResourceError> {
        let desired = self.route_map()?;
        for (dest, gw) in &desired {
            match current.get(dest) {
                Some(old) if old == gw => {}
                Some(_) => {
                    ctx.call("ReplaceRoute", Idempotent, || {
                        client
                            .replace_route()
                            .route_table_id(id)
                            .destination_cidr_block(*dest)
                            .gateway_id(*gw)
                            .send()
                    })
                    .await?;
                }
                None => {
                    ctx.call("CreateRoute", Once.retrying(|e| e.is_not_found()), || {
                        client
                            .create_route()
                            .route_table_id(id)
                            .destination_cidr_block(*dest)
                            .gateway_id(*gw)
                            .send()
                    })
                    .await?;
                }
            }
        }
        for dest in current.keys().filter(|d| !desired.contains_key(*d)) {
            ctx.call("DeleteRoute", Idempotent, || {
                client
                    .delete_route()
                    .route_table_id(id)
                    .destination_cidr_block(*dest)
                    .send()
            })
            .await
            .gone_is_ok()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::types::Route as AwsRoute;

    #[test]
    fn routes_to_every_other_target_are_seen_and_the_local_one_is_not() {
        let routes = [
            AwsRoute::builder()
                .destination_cidr_block("10.0.0.0/16")
                .gateway_id("local")
                .build(),
            AwsRoute::builder()
                .destination_cidr_block("0.0.0.0/0")
                .gateway_id("igw-1")
                .build(),
            AwsRoute::builder()
                .destination_cidr_block("192.168.0.0/16")
                .nat_gateway_id("nat-1")
                .build(),
            AwsRoute::builder()
                .destination_ipv6_cidr_block("::/0")
                .egress_only_internet_gateway_id("eigw-1")
                .build(),
            AwsRoute::builder()
                .destination_prefix_list_id("pl-1")
                .vpc_peering_connection_id("pcx-1")
                .build(),
            AwsRoute::builder()
                .destination_cidr_block("172.16.0.0/12")
                .gateway_id("vgw-1")
                .build(),
        ];
        let (managed, other) = routes_from(&routes);
        assert_eq!(
            managed,
            [Route {
                destination_cidr_block: "0.0.0.0/0".into(),
                gateway_id: Input::Value(InternetGatewayId::new("igw-1")),
            }]
        );
        let found: Vec<(&str, &str)> = other
            .iter()
            .map(|r| (r.destination.as_str(), r.target.as_str()))
            .collect();
        assert_eq!(
            found,
            [
                ("cidr:172.16.0.0/12", "vgw-1"),
                ("cidr:192.168.0.0/16", "nat-1"),
                ("ipv6:::/0", "eigw-1"),
                ("prefix-list:pl-1", "pcx-1"),
            ]
        );
    }
}
