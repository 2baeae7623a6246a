//! `ec2:internet-gateway`: an internet gateway attached to a VPC.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::ResourceType;
use platform_core::{
    Context, GoneExt, Input, Observed, Resource, ResourceError, ValidationError, resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::ec2;
use crate::ids::{InternetGatewayId, VpcId};
use crate::validate;

/// An internet gateway, attached to its VPC. Moving it to another VPC replaces it; tags change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InternetGateway {
    /// The VPC it is attached to.
    pub vpc_id: Input<VpcId>,
    /// User tags.
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// An internet gateway's outputs.
    pub struct InternetGatewayOutputs / InternetGatewayRefs {
        /// The gateway id.
        pub internet_gateway_id: InternetGatewayId,
    }
}

impl Resource for InternetGateway {
    type Outputs = InternetGatewayOutputs;
    const KIND: &'static str = "ec2:internet-gateway";
    const SERVICE: &'static str = "ec2";
    const REPLACE_ON: &'static [&'static str] = &["vpc_id"];

    fn validate(&self) -> Result<(), ValidationError> {
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<InternetGatewayOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let out = ctx
            .call_once("CreateInternetGateway", || {
                client
                    .create_internet_gateway()
                    .tag_specifications(ec2::tag_spec(
                        ctx,
                        ResourceType::InternetGateway,
                        &self.tags,
                    ))
                    .send()
            })
            .await?;
        let id = out
            .internet_gateway()
            .and_then(|g| g.internet_gateway_id())
            .ok_or_else(|| ResourceError::missing("CreateInternetGateway", "a gateway id"))?
            .to_owned();
        self.attach(ctx, &client, &id).await?;
        Ok(InternetGatewayOutputs {
            internet_gateway_id: InternetGatewayId(id),
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &InternetGatewayOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.internet_gateway_id.as_str();
        let Some(g) = describe(ctx, &client, id).await? else {
            return Ok(None);
        };
        let vpc = g
            .attachments()
            .iter()
            .find_map(|a| a.vpc_id())
            .unwrap_or_default();
        Ok(Some(Observed {
            inputs: InternetGateway {
                vpc_id: Input::Value(VpcId(vpc.to_owned())),
                tags: ec2::user_tags(g.tags()),
            },
            outputs: outputs.clone(),
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &InternetGatewayOutputs,
        _changed: &[String],
    ) -> Result<InternetGatewayOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.internet_gateway_id.as_str();
        ec2::update_tags(ctx, &client, id, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    async fn delete(
        &self,
        ctx: &Context,
        outputs: &InternetGatewayOutputs,
    ) -> Result<(), ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.internet_gateway_id.as_str();
        let Some(g) = describe(ctx, &client, id).await? else {
            return Ok(());
        };
        let attached: Vec<String> = g
            .attachments()
            .iter()
            .filter_map(|a| a.vpc_id().map(str::to_owned))
            .collect();
        for vpc in attached {
            // DependencyViolation while public IPs in the VPC are still mapped (tasks stopping).
            ctx.call_retrying(
                "DetachInternetGateway",
                |e| e.has_code("DependencyViolation"),
                || {
                    client
                        .detach_internet_gateway()
                        .internet_gateway_id(id)
                        .vpc_id(&vpc)
                        .send()
                },
            )
            .await
            .gone_is_ok()?;
        }
        ctx.call("DeleteInternetGateway", || {
            client
                .delete_internet_gateway()
                .internet_gateway_id(id)
                .send()
        })
        .await
        .gone_is_ok()
    }

    /// By internet gateway id (`igw-...`).
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<InternetGatewayOutputs>, ResourceError> {
        let client = ec2::client(ctx)?;
        if describe(ctx, &client, id).await?.is_none() {
            return Ok(None);
        }
        ec2::tag_as_ours(ctx, &client, id).await?;
        Ok(Some(InternetGatewayOutputs {
            internet_gateway_id: InternetGatewayId(id.to_owned()),
        }))
    }

    async fn find(&self, ctx: &Context) -> Result<Option<InternetGatewayOutputs>, ResourceError> {
        let client = ec2::client(ctx)?;
        let out = ctx
            .call("DescribeInternetGateways", || {
                client
                    .describe_internet_gateways()
                    .set_filters(Some(ec2::own_filters(ctx)))
                    .send()
            })
            .await?;
        let Some(gateway) = platform_core::found_one(
            "internet gateway",
            out.internet_gateways()
                .iter()
                .filter_map(|g| Some((g.internet_gateway_id()?.to_owned(), g))),
        )?
        else {
            return Ok(None);
        };
        let id = gateway.internet_gateway_id().unwrap_or_default().to_owned();
        let attached = !gateway.attachments().is_empty();
        if !attached {
            self.attach(ctx, &ec2::client(ctx)?, &id).await?;
        }
        Ok(Some(InternetGatewayOutputs {
            internet_gateway_id: InternetGatewayId(id),
        }))
    }
}

impl InternetGateway {
    async fn attach(
        &self,
        ctx: &Context,
        client: &aws_sdk_ec2::Client,
        id: &str,
    ) -> Result<(), ResourceError> {
        let vpc = self.vpc_id.get()?;
        let attached = ctx
            .call_retrying(
                "AttachInternetGateway",
                |e| e.is_not_found(),
                || {
                    client
                        .attach_internet_gateway()
                        .internet_gateway_id(id)
                        .vpc_id(vpc.as_str())
                        .send()
                },
            )
            .await;
        match attached {
            Ok(_) => Ok(()),
            // `Resource.AlreadyAssociated` after a repeat of an attach whose response was lost: done
            // when the gateway is attached to this VPC, a conflict otherwise.
            Err(e) if e.outcome_unknown() => {
                let gateway = describe(ctx, client, id).await?;
                let to_ours = gateway.is_some_and(|g| {
                    g.attachments()
                        .iter()
                        .any(|a| a.vpc_id() == Some(vpc.as_str()))
                });
                if to_ours { Ok(()) } else { Err(e) }
            }
            Err(e) => Err(e),
        }
    }
}

/// The gateway `id` as EC2 describes it; `None` when it is gone.
async fn describe(
    ctx: &Context,
    client: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<Option<aws_sdk_ec2::types::InternetGateway>, ResourceError> {
    let out = ctx
        .call("DescribeInternetGateways", || {
            client
                .describe_internet_gateways()
                .internet_gateway_ids(id)
                .send()
        })
        .await
        .gone_is_none()?;
    Ok(out.and_then(|o| o.internet_gateways().first().cloned()))
}
