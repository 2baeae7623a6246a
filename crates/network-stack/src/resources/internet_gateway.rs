//! `ec2:internet-gateway`: an internet gateway. Its attachment to a VPC is a resource of its own
//! ([`InternetGatewayAttachment`](super::InternetGatewayAttachment)), so that the gateway is made
//! while the VPC is.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::ResourceType;
use platform_core::resource::Once;
use platform_core::{Context, Observed, Resource, ResourceError, ValidationError};
use serde::{Deserialize, Serialize};

use super::gateway_attachment::detach;
use crate::ec2::{self, Ec2Object};
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

platform_core::resource_outputs! {
    /// An internet gateway's outputs.
    pub struct InternetGatewayOutputs / InternetGatewayRefs {
        /// The gateway id.
        pub internet_gateway_id: InternetGatewayId,
    }
}

impl Ec2Object for InternetGateway {
    const NOUN: &'static str = "internet gateway";
    type Described = aws_sdk_ec2::types::InternetGateway;

    ec2::describe_call!(
        "DescribeInternetGateways",
        describe_internet_gateways,
        set_internet_gateway_ids,
        internet_gateways
    );

    fn outputs_of(g: &Self::Described) -> Option<(String, InternetGatewayOutputs)> {
        let id = g.internet_gateway_id()?;
        Some((id.to_owned(), InternetGatewayOutputs::new(id.into())))
    }
}

impl Resource for InternetGateway {
    type Outputs = InternetGatewayOutputs;
    const KIND: &'static str = "ec2:internet-gateway";
    const SERVICE: &'static str = "ec2";
    const UPDATES_IN_PLACE: bool = true;

    fn validate(&self) -> Result<(), ValidationError> {
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<InternetGatewayOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let tags = ec2::tag_spec(ctx, ResourceType::InternetGateway, &self.tags);
        let create = client.create_internet_gateway().tag_specifications(tags);
        let out = ctx
            .call("CreateInternetGateway", Once, || create.clone().send())
            .await?;
        ec2::created::<Self>("CreateInternetGateway", out.internet_gateway())
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &InternetGatewayOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let id = outputs.internet_gateway_id.as_str();
        let found = ec2::describe_id::<Self>(ctx, id).await?;
        Ok(found.map(|g| Observed {
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
        let id = outputs.internet_gateway_id.as_str();
        ec2::update_tags(ctx, id, &previous.tags, &self.tags).await?;
        Ok(outputs.clone())
    }

    async fn delete(
        &self,
        ctx: &Context,
        outputs: &InternetGatewayOutputs,
    ) -> Result<(), ResourceError> {
        let id = outputs.internet_gateway_id.as_str();
        let Some(g) = ec2::describe_id::<Self>(ctx, id).await? else {
            return Ok(());
        };
        // Its attachment is deleted first (it depends on the gateway); one made outside the stack
        // would refuse the delete, so it goes too.
        for vpc in g.attachments().iter().filter_map(|a| a.vpc_id()) {
            detach(ctx, id, vpc).await?;
        }
        let delete = ec2::client(ctx)?
            .delete_internet_gateway()
            .internet_gateway_id(id);
        ec2::delete(ctx, "DeleteInternetGateway", || delete.clone().send()).await
    }

    platform_core::lookups!(ec2);
}
