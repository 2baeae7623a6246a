//! `ec2:internet-gateway`: an internet gateway. Its attachment to a VPC is a resource of its own
//! ([`InternetGatewayAttachment`](super::InternetGatewayAttachment)), so that the gateway is made
//! while the VPC is.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::ResourceType;
use platform_core::{
    Context, GoneExt, Observed, Resource, ResourceError, ValidationError, resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::ec2;
use crate::ids::InternetGatewayId;
use crate::validate;

/// An internet gateway. Tags change in place.
///
/// State written before the attachment was a resource of its own recorded the VPC here
/// (`vpc_id`): it is ignored when read, and the next `up` records the gateway without it (an
/// update with no call) and adopts the attachment it made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InternetGateway {
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

impl ec2::Ec2Object for InternetGateway {
    const NOUN: &'static str = "internet gateway";
    type Described = aws_sdk_ec2::types::InternetGateway;

    ec2::describe_call!(
        "DescribeInternetGateways",
        describe_internet_gateways,
        set_internet_gateway_ids,
        internet_gateways
    );

    fn outputs_of(g: &Self::Described) -> Option<(String, InternetGatewayOutputs)> {
        let id = g.internet_gateway_id()?.to_owned();
        Some((
            id.clone(),
            InternetGatewayOutputs {
                internet_gateway_id: InternetGatewayId::new(id),
            },
        ))
    }
}

impl Resource for InternetGateway {
    type Outputs = InternetGatewayOutputs;
    const KIND: &'static str = "ec2:internet-gateway";
    const SERVICE: &'static str = "ec2";

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
        Ok(InternetGatewayOutputs {
            internet_gateway_id: InternetGatewayId::new(id),
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &InternetGatewayOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = ec2::client(ctx)?;
        let id = outputs.internet_gateway_id.as_str();
        let Some(g) = ec2::describe_id::<InternetGateway>(ctx, &client, id).await? else {
            return Ok(None);
        };
        Ok(Some(Observed {
            inputs: InternetGateway {
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
        let Some(g) = ec2::describe_id::<InternetGateway>(ctx, &client, id).await? else {
            return Ok(());
        };
        // Its attachment is deleted first (it depends on the gateway); one made outside the stack
        // would refuse the delete, so it goes too.
        for vpc in g.attachments().iter().filter_map(|a| a.vpc_id()) {
            detach(ctx, &client, id, vpc).await?;
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
        ec2::import::<Self>(ctx, id).await
    }

    async fn find(&self, ctx: &Context) -> Result<Option<InternetGatewayOutputs>, ResourceError> {
        ec2::find::<Self>(ctx).await
    }

    async fn find_all(&self, ctx: &Context) -> Result<Vec<InternetGatewayOutputs>, ResourceError> {
        ec2::find_all::<Self>(ctx).await
    }
}

/// Detaches gateway `id` from `vpc`; done when it is not attached (any more).
pub(super) async fn detach(
    ctx: &Context,
    client: &aws_sdk_ec2::Client,
    id: &str,
    vpc: &str,
) -> Result<(), ResourceError> {
    // DependencyViolation while public IPs in the VPC are still mapped (tasks stopping).
    let detached = ctx
        .call_within(
            "DetachInternetGateway",
            ec2::delete_budget::GATEWAY_DETACH,
            |e| e.has_code("DependencyViolation"),
            || {
                client
                    .detach_internet_gateway()
                    .internet_gateway_id(id)
                    .vpc_id(vpc)
                    .send()
            },
        )
        .await
        .gone_is_ok();
    match detached {
        Err(e) if e.aws_code() == Some("Gateway.NotAttached") => Ok(()),
        other => other.map(|_| ()),
    }
}
