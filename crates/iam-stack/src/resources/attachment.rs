//! `iam:role-policy-attachment`: a managed policy attached to a role.

use platform_core::resource::Idempotent;
use platform_core::{
    Context, Input, Observed, Resource, ResourceError, error::GoneExt, resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::PolicyArn;
use crate::iam;

/// A managed policy attached to a role. Any change replaces it (detach, attach).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolePolicyAttachment {
    /// The role's name.
    pub role_name: Input<String>,
    /// The policy's ARN.
    pub policy_arn: Input<PolicyArn>,
}

resource_outputs! {
    /// An attachment's outputs.
    pub struct AttachmentOutputs / AttachmentRefs {
        /// The role's name.
        pub role_name: String,
        /// The policy's ARN.
        pub policy_arn: PolicyArn,
    }
}

/// Whether `policy_arn` is attached to `role`; `None` when the role is gone.
async fn attached(
    ctx: &Context,
    client: &aws_sdk_iam::Client,
    role: &str,
    policy_arn: &str,
) -> Result<Option<bool>, ResourceError> {
    let Some(out) = ctx
        .call("ListAttachedRolePolicies", Idempotent, || {
            client
                .list_attached_role_policies()
                .role_name(role)
                .max_items(1000)
                .send()
        })
        .await
        .gone_is_none()?
    else {
        return Ok(None);
    };
    Ok(Some(
        out.attached_policies()
            .iter()
            .any(|p| p.policy_arn() == Some(policy_arn)),
    ))
}

impl Resource for RolePolicyAttachment {
    type Outputs = AttachmentOutputs;
    const KIND: &'static str = "iam:role-policy-attachment";
    const SERVICE: &'static str = "iam";

    fn force_new(&self, _previous: &Self) -> platform_core::ForceNew {
        platform_core::ForceNew::any_change()
    }

    async fn create(&self, ctx: &Context) -> Result<AttachmentOutputs, ResourceError> {
        let client = iam::client(ctx)?;
        let (role, arn) = (self.role_name.get()?, self.policy_arn.get()?);
        ctx.call(
            "AttachRolePolicy",
            Idempotent.retrying(iam::not_visible_yet),
            || {
                client
                    .attach_role_policy()
                    .role_name(role)
                    .policy_arn(arn.as_str())
                    .send()
            },
        )
        .await?;
        Ok(AttachmentOutputs {
            role_name: role.clone(),
            policy_arn: arn.clone(),
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &AttachmentOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = iam::client(ctx)?;
        let found = attached(
            ctx,
            &client,
            &outputs.role_name,
            outputs.policy_arn.as_str(),
        )
        .await?;
        Ok((found == Some(true)).then(|| Observed {
            inputs: RolePolicyAttachment {
                role_name: Input::Value(outputs.role_name.clone()),
                policy_arn: Input::Value(outputs.policy_arn.clone()),
            },
            outputs: outputs.clone(),
        }))
    }

    async fn delete(
        &self,
        ctx: &Context,
        outputs: &AttachmentOutputs,
    ) -> Result<(), ResourceError> {
        let client = iam::client(ctx)?;
        ctx.call("DetachRolePolicy", Idempotent, || {
            client
                .detach_role_policy()
                .role_name(&outputs.role_name)
                .policy_arn(outputs.policy_arn.as_str())
                .send()
        })
        .await
        .gone_is_ok()
    }

    async fn find(&self, ctx: &Context) -> Result<Option<AttachmentOutputs>, ResourceError> {
        // An attachment takes no tags: it is found by its natural key, the (role, policy) pair.
        let client = iam::client(ctx)?;
        let (role, arn) = (self.role_name.get()?, self.policy_arn.get()?);
        Ok(
            (attached(ctx, &client, role, arn.as_str()).await? == Some(true)).then(|| {
                AttachmentOutputs {
                    role_name: role.clone(),
                    policy_arn: arn.clone(),
                }
            }),
        )
    }
}
