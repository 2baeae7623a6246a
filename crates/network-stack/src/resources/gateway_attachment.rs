//! `ec2:internet-gateway-attachment`: an internet gateway attached to a VPC.
//!
//! A resource of its own, as in EC2's API: the gateway can be made while the VPC is, and only the
//! routes through the gateway wait for the attachment.

use platform_core::resource::Idempotent;
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, resource_outputs,
};
use serde::{Deserialize, Serialize};

use super::InternetGateway;
use crate::ec2;
use crate::ids::{InternetGatewayId, VpcId};

/// Gateway `internet_gateway_id` attached to VPC `vpc_id`. Either changing replaces the
/// attachment (detached first: a gateway is attached to one VPC at most, and a VPC has one
/// gateway at most).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InternetGatewayAttachment {
    /// The gateway.
    pub internet_gateway_id: Input<InternetGatewayId>,
    /// The VPC.
    pub vpc_id: Input<VpcId>,
}

resource_outputs! {
    /// An attachment's outputs: what is attached to what. A route through the gateway takes the
    /// gateway id from here, so that it waits for the attachment (EC2 refuses a route to a gateway
    /// that is not attached to the table's VPC).
    pub struct InternetGatewayAttachmentOutputs / InternetGatewayAttachmentRefs {
        /// The gateway, attached.
        pub internet_gateway_id: InternetGatewayId,
        /// The VPC it is attached to.
        pub vpc_id: VpcId,
    }
}

impl InternetGatewayAttachment {
    fn ids(&self) -> Result<(&str, &str), ResourceError> {
        Ok((
            self.internet_gateway_id.get()?.as_str(),
            self.vpc_id.get()?.as_str(),
        ))
    }

    /// The outputs when gateway `gateway` is attached to `vpc` now; `None` when it is not (or the
    /// gateway is gone).
    async fn attached(
        ctx: &Context,
        gateway: &str,
        vpc: &str,
    ) -> Result<Option<InternetGatewayAttachmentOutputs>, ResourceError> {
        let Some(g) = ec2::describe_id::<InternetGateway>(ctx, gateway).await? else {
            return Ok(None);
        };
        let attached = g.attachments().iter().any(|a| {
            a.vpc_id() == Some(vpc)
                && !matches!(
                    a.state(),
                    Some(
                        aws_sdk_ec2::types::AttachmentStatus::Detached
                            | aws_sdk_ec2::types::AttachmentStatus::Detaching
                    )
                )
        });
        Ok(attached.then(|| InternetGatewayAttachmentOutputs {
            internet_gateway_id: InternetGatewayId::new(gateway.to_owned()),
            vpc_id: VpcId::new(vpc.to_owned()),
        }))
    }
}

impl Resource for InternetGatewayAttachment {
    type Outputs = InternetGatewayAttachmentOutputs;
    const KIND: &'static str = "ec2:internet-gateway-attachment";
    const SERVICE: &'static str = "ec2";
    const DELETE_BEFORE_REPLACE: bool = true;

    /// Nothing changes in place: a change of either side replaces the attachment.
    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; internet_gateway_id, vpc_id)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    async fn create(
        &self,
        ctx: &Context,
    ) -> Result<InternetGatewayAttachmentOutputs, ResourceError> {
        let client = ec2::client(ctx)?;
        let (gateway, vpc) = self.ids()?;
        let attach = ctx
            .call(
                "AttachInternetGateway",
                Idempotent.retrying(
                    // A just-made gateway or VPC may not be visible yet.
                    |e| e.is_not_found(),
                ),
                || {
                    client
                        .attach_internet_gateway()
                        .internet_gateway_id(gateway)
                        .vpc_id(vpc)
                        .send()
                },
            )
            .await;
        match attach {
            Ok(_) => Ok(InternetGatewayAttachmentOutputs {
                internet_gateway_id: InternetGatewayId::new(gateway.to_owned()),
                vpc_id: VpcId::new(vpc.to_owned()),
            }),
            // `Resource.AlreadyAssociated`: a repeat of an attach whose response was lost, or a
            // gateway attached by a build that attached it as part of the gateway: done when it is
            // attached to this VPC, a conflict otherwise.
            Err(e) if e.outcome_unknown() => Self::attached(ctx, gateway, vpc).await?.ok_or(e),
            Err(e) => Err(e),
        }
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &InternetGatewayAttachmentOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let (gateway, vpc) = (
            outputs.internet_gateway_id.as_str(),
            outputs.vpc_id.as_str(),
        );
        Ok(Self::attached(ctx, gateway, vpc)
            .await?
            .map(|outputs| Observed {
                inputs: InternetGatewayAttachment {
                    internet_gateway_id: Input::Value(outputs.internet_gateway_id.clone()),
                    vpc_id: Input::Value(outputs.vpc_id.clone()),
                },
                outputs,
            }))
    }

    async fn delete(
        &self,
        ctx: &Context,
        outputs: &InternetGatewayAttachmentOutputs,
    ) -> Result<(), ResourceError> {
        let (gateway, vpc) = (&outputs.internet_gateway_id, &outputs.vpc_id);
        detach(ctx, gateway.as_str(), vpc.as_str()).await
    }

    /// By `GATEWAY:VPC` (`igw-0abc:vpc-0def`), as Terraform names an attachment.
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<InternetGatewayAttachmentOutputs>, ResourceError> {
        let Some((gateway, vpc)) = id.split_once(':') else {
            return Err(ValidationError::new(
                "id",
                id,
                "an internet gateway attachment is imported as GATEWAY:VPC (igw-0abc:vpc-0def)",
            )
            .into());
        };
        Self::attached(ctx, gateway, vpc).await
    }

    /// The gateway attached to the VPC, whoever attached it (an attachment has no tags: the
    /// declared gateway and VPC are the stack's own).
    async fn find(
        &self,
        ctx: &Context,
    ) -> Result<Option<InternetGatewayAttachmentOutputs>, ResourceError> {
        let (gateway, vpc) = self.ids()?;
        Self::attached(ctx, gateway, vpc).await
    }
}

/// Detaches gateway `id` from `vpc`; done when it is not attached (any more).
pub(super) async fn detach(ctx: &Context, id: &str, vpc: &str) -> Result<(), ResourceError> {
    let client = ec2::client(ctx)?;
    // DependencyViolation while public IPs in the VPC are still mapped (tasks stopping).
    let detached = ec2::delete_when_free(
        ctx,
        "DetachInternetGateway",
        ec2::delete_budget::GATEWAY_DETACH,
        || {
            let detach = client.detach_internet_gateway().internet_gateway_id(id);
            detach.vpc_id(vpc).send()
        },
    )
    .await;
    match detached {
        Err(e) if e.aws_code() == Some("Gateway.NotAttached") => Ok(()),
        other => other,
    }
}
