//! `ec2:route-table`: a route table in a VPC and its routes to internet gateways.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{ResourceType, RouteOrigin};
use platform_core::{
    Context, GoneExt, Input, Observed, Resource, ResourceError, ValidationError, resource_outputs,
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

/// A route table. Moving it to another VPC replaces it; routes (kept sorted by destination) and tags
/// change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteTable {
    /// The VPC.
    pub vpc_id: Input<VpcId>,
    /// The routes besides the VPC's local route.
    pub routes: Vec<Route>,
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

impl Resource for RouteTable {
    type Outputs = RouteTableOutputs;
    const KIND: &'static str = "ec2:route-table";
    const SERVICE: &'static str = "ec2";
    const REPLACE_ON: &'static [&'static str] = &["vpc_id"];

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
            .call_once_retrying(
                "CreateRouteTable",
                |e| e.is_not_found(),
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
        self.converge_routes(ctx, &client, &id, &BTreeMap::new())
            .await?;
        Ok(RouteTableOutputs {
            route_table_id: RouteTableId(id),
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &RouteTableOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.route_table_id.as_str();
        let Some(out) = ctx
            .call("DescribeRouteTables", || {
                client.describe_route_tables().route_table_ids(id).send()
            })
            .await
            .gone_is_none()?
        else {
            return Ok(None);
        };
        let Some(t) = out.route_tables().first() else {
            return Ok(None);
        };
        let routes = t
            .routes()
            .iter()
            .filter(|r| r.origin() != Some(&RouteOrigin::CreateRouteTable))
            .filter(|r| r.gateway_id() != Some("local"))
            .filter_map(|r| {
                Some(Route {
                    destination_cidr_block: r.destination_cidr_block()?.to_owned(),
                    gateway_id: Input::Value(InternetGatewayId(r.gateway_id()?.to_owned())),
                })
            })
            .collect();
        let mut live = RouteTable::new(
            Input::Value(VpcId(t.vpc_id().unwrap_or_default().to_owned())),
            routes,
        );
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
        _changed: &[String],
    ) -> Result<RouteTableOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.route_table_id.as_str();
        self.converge_routes(ctx, &client, id, &previous.route_map()?)
            .await?;
        ec2::update_tags(ctx, &client, id, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    async fn delete(
        &self,
        ctx: &Context,
        outputs: &RouteTableOutputs,
    ) -> Result<(), ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.route_table_id.as_str();
        ec2::delete_when_free(ctx, "DeleteRouteTable", || {
            client.delete_route_table().route_table_id(id).send()
        })
        .await
    }

    async fn find(&self, ctx: &Context) -> Result<Option<RouteTableOutputs>, ResourceError> {
        let client = ec2::client(ctx)?;
        let out = ctx
            .call("DescribeRouteTables", || {
                client
                    .describe_route_tables()
                    .set_filters(Some(ec2::own_filters(ctx)))
                    .send()
            })
            .await?;
        platform_core::found_one(
            "route table",
            out.route_tables().iter().filter_map(|t| {
                let id = t.route_table_id()?.to_owned();
                Some((
                    id.clone(),
                    RouteTableOutputs {
                        route_table_id: RouteTableId(id),
                    },
                ))
            }),
        )
    }
}

impl RouteTable {
    /// Creates, replaces and deletes routes so that table `id` goes from `current` to `self.routes`.
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
                    ctx.call("ReplaceRoute", || {
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
                    ctx.call_once_retrying(
                        "CreateRoute",
                        |e| e.is_not_found(),
                        || {
                            client
                                .create_route()
                                .route_table_id(id)
                                .destination_cidr_block(*dest)
                                .gateway_id(*gw)
                                .send()
                        },
                    )
                    .await?;
                }
            }
        }
        for dest in current.keys().filter(|d| !desired.contains_key(*d)) {
            ctx.call("DeleteRoute", || {
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
