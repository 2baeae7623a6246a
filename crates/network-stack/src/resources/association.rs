//! `ec2:route-table-association`: which route table a subnet uses.

use aws_sdk_ec2::types::Filter;
use platform_core::resource::{Idempotent, Once};
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, error::GoneExt, resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::ec2;
use crate::ids::{AssociationId, RouteTableId, SubnetId};

/// Associates a subnet with a route table. Another subnet replaces it; another route table is an
/// in-place `ReplaceRouteTableAssociation`. Associations carry no tags: `find` looks them up by the
/// subnet and the route table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteTableAssociation {
    /// The route table.
    pub route_table_id: Input<RouteTableId>,
    /// The subnet.
    pub subnet_id: Input<SubnetId>,
}

resource_outputs! {
    /// An association's outputs.
    pub struct RouteTableAssociationOutputs / RouteTableAssociationRefs {
        /// The association id.
        pub association_id: AssociationId,
    }
}

/// Which association of the route tables a filter found is meant: DescribeRouteTables answers
/// whole tables, with every association of each, whichever one the filter matched.
#[derive(Clone, Copy)]
enum Wanted<'a> {
    /// The association with this id.
    Id(&'a str),
    /// The subnet's explicit association.
    Subnet(&'a str),
}

impl RouteTableAssociation {
    /// (association id, route table id, subnet id) of the association `wanted`, if any.
    async fn lookup(
        ctx: &Context,
        client: &aws_sdk_ec2::Client,
        filter: Filter,
        wanted: Wanted<'_>,
    ) -> Result<Option<(String, String, String)>, ResourceError> {
        let out = ctx
            .call("DescribeRouteTables", Idempotent, || {
                client
                    .describe_route_tables()
                    .filters(filter.clone())
                    .send()
            })
            .await?;
        Ok(out
            .route_tables()
            .iter()
            .flat_map(|t| t.associations())
            .filter(|a| !a.main().unwrap_or(false))
            .filter(|a| match wanted {
                Wanted::Id(id) => a.route_table_association_id() == Some(id),
                Wanted::Subnet(subnet) => a.subnet_id() == Some(subnet),
            })
            .find_map(|a| {
                Some((
                    a.route_table_association_id()?.to_owned(),
                    a.route_table_id()?.to_owned(),
                    a.subnet_id()?.to_owned(),
                ))
            }))
    }
}

impl RouteTableAssociation {
    /// (association id, route table id, subnet id) of the subnet's explicit association, if any: a
    /// subnet has at most one, whichever id it has now.
    async fn subnet_association(
        &self,
        ctx: &Context,
        client: &aws_sdk_ec2::Client,
    ) -> Result<Option<(String, String, String)>, ResourceError> {
        let subnet = self.subnet_id.get()?;
        let filter = Filter::builder()
            .name("association.subnet-id")
            .values(subnet.as_str())
            .build();
        Self::lookup(ctx, client, filter, Wanted::Subnet(subnet.as_str())).await
    }
}

impl Resource for RouteTableAssociation {
    type Outputs = RouteTableAssociationOutputs;
    const KIND: &'static str = "ec2:route-table-association";
    const SERVICE: &'static str = "ec2";
    const UPDATES_IN_PLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; subnet_id)
    }

    async fn create(&self, ctx: &Context) -> Result<RouteTableAssociationOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let (rt, subnet) = (self.route_table_id.get()?, self.subnet_id.get()?);
        let out = ctx
            .call(
                "AssociateRouteTable",
                Once.retrying(|e| e.is_not_found()),
                || {
                    client
                        .associate_route_table()
                        .route_table_id(rt.as_str())
                        .subnet_id(subnet.as_str())
                        .send()
                },
            )
            .await?;
        let id = out
            .association_id()
            .ok_or_else(|| ResourceError::missing("AssociateRouteTable", "an association id"))?;
        Ok(RouteTableAssociationOutputs {
            association_id: AssociationId::new(id.to_owned()),
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &RouteTableAssociationOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = ec2::client(ctx)?;
        let filter = Filter::builder()
            .name("association.route-table-association-id")
            .values(outputs.association_id.as_str())
            .build();
        let id = outputs.association_id.as_str();
        let found = match Self::lookup(ctx, &client, filter, Wanted::Id(id)).await? {
            Some(found) => Some(found),
            // A replace whose answer was lost retired the recorded id: the subnet's association
            // now has another one, and it is this resource (a subnet has one association).
            None if self.subnet_id.get().is_ok() => self.subnet_association(ctx, &client).await?,
            None => None,
        };
        Ok(found.map(|(id, rt, subnet)| Observed {
            inputs: RouteTableAssociation {
                route_table_id: Input::Value(RouteTableId::new(rt)),
                subnet_id: Input::Value(SubnetId::new(subnet)),
            },
            outputs: RouteTableAssociationOutputs {
                association_id: AssociationId::new(id),
            },
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        _previous: &Self,
        outputs: &RouteTableAssociationOutputs,
    ) -> Result<RouteTableAssociationOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let rt = self.route_table_id.get()?;
        // Not idempotent: carried out, it retires the association id it was given, so a second
        // send fails with InvalidAssociationID.NotFound. Sent once; an unknown outcome is settled by
        // reading the subnet's association.
        let sent = ctx
            .call("ReplaceRouteTableAssociation", Once, || {
                client
                    .replace_route_table_association()
                    .association_id(outputs.association_id.as_str())
                    .route_table_id(rt.as_str())
                    .send()
            })
            .await;
        let id = match sent {
            Ok(out) => out
                .new_association_id()
                .ok_or_else(|| {
                    ResourceError::missing("ReplaceRouteTableAssociation", "an association id")
                })?
                .to_owned(),
            Err(e) if e.outcome_unknown() => match self.subnet_association(ctx, &client).await? {
                Some((id, table, _)) if table == rt.as_str() => id,
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        };
        Ok(RouteTableAssociationOutputs {
            association_id: AssociationId::new(id),
        })
    }

    async fn delete(
        &self,
        ctx: &Context,
        outputs: &RouteTableAssociationOutputs,
    ) -> Result<(), ResourceError> {
        let client = ec2::client(ctx)?;
        ctx.call("DisassociateRouteTable", Idempotent, || {
            client
                .disassociate_route_table()
                .association_id(outputs.association_id.as_str())
                .send()
        })
        .await
        .gone_is_ok()
    }

    /// By association id (`rtbassoc-...`); associations carry no tags.
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<RouteTableAssociationOutputs>, ResourceError> {
        let client = ec2::client(ctx)?;
        let filter = Filter::builder()
            .name("association.route-table-association-id")
            .values(id)
            .build();
        Ok(Self::lookup(ctx, &client, filter, Wanted::Id(id))
            .await?
            .map(|_| RouteTableAssociationOutputs {
                association_id: AssociationId::new(id.to_owned()),
            }))
    }

    async fn find(
        &self,
        ctx: &Context,
    ) -> Result<Option<RouteTableAssociationOutputs>, ResourceError> {
        // An association takes no tags: it is found by its natural key, the (route table, subnet)
        // pair, which AWS allows once.
        let client = ec2::client(ctx)?;
        let (rt, subnet) = (self.route_table_id.get()?, self.subnet_id.get()?);
        let filter = Filter::builder()
            .name("route-table-id")
            .values(rt.as_str())
            .build();
        let found = Self::lookup(ctx, &client, filter, Wanted::Subnet(subnet.as_str())).await?;
        Ok(found.map(|(id, _, _)| RouteTableAssociationOutputs {
            association_id: AssociationId::new(id),
        }))
    }
}
