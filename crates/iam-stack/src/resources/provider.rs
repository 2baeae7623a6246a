//! `aws:provider`: the account and region the stack is bound to, as STS reports them.

use platform_core::resource::Idempotent;
use platform_core::{
    Context, Observed, Resource, ResourceError, ValidationError, resource_outputs,
};
use serde::{Deserialize, Serialize};

/// The provider: binds the stack to one account and region. Creating it asks STS who the credentials
/// belong to and records the answer; it makes no change in AWS. When `account_id` or `region` is set,
/// credentials for another account or region are refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    /// The account the stack must be applied to, when pinned.
    pub account_id: Option<String>,
    /// The region the stack must be applied in, when pinned.
    pub region: Option<String>,
}

resource_outputs! {
    /// The provider's outputs.
    pub struct ProviderOutputs / ProviderRefs {
        /// The 12-digit account id.
        pub account_id: String,
        /// The region.
        pub region: String,
        /// The ARN of the identity that applied the stack.
        pub caller_arn: String,
    }
}

impl Provider {
    async fn identify(&self, ctx: &Context) -> Result<ProviderOutputs, ResourceError> {
        let region = ctx
            .sdk_config()?
            .region()
            .map(|r| r.to_string())
            .ok_or_else(|| ResourceError::NotConfigured {
                what: "an AWS region (AWS_REGION or the SdkConfig's region)".into(),
            })?;
        let sts = platform_core::aws_client!(ctx, aws_sdk_sts)?;
        let me = ctx
            .call("GetCallerIdentity", Idempotent, || {
                sts.get_caller_identity().send()
            })
            .await?;
        let account_id = me
            .account()
            .ok_or_else(|| ResourceError::missing("GetCallerIdentity", "an account"))?
            .to_owned();
        for (what, pinned, actual) in [
            ("account", &self.account_id, &account_id),
            ("region", &self.region, &region),
        ] {
            if let Some(p) = pinned.as_ref().filter(|p| *p != actual) {
                return Err(ResourceError::Failed {
                    message: format!(
                        "the stack is pinned to {what} {p}, but the credentials are for {what} {actual}"
                    ),
                });
            }
        }
        Ok(ProviderOutputs {
            account_id,
            region,
            caller_arn: me.arn().unwrap_or_default().to_owned(),
        })
    }
}

impl Resource for Provider {
    type Outputs = ProviderOutputs;
    const KIND: &'static str = "aws:provider";
    const SERVICE: &'static str = "sts";

    fn force_new(&self, _previous: &Self) -> platform_core::ForceNew {
        platform_core::ForceNew::any_change()
    }

    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(a) = &self.account_id
            && !(a.len() == 12 && a.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(ValidationError::new("account_id", a, "must be 12 digits"));
        }
        Ok(())
    }

    async fn create(&self, ctx: &Context) -> Result<ProviderOutputs, ResourceError> {
        self.identify(ctx).await
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &ProviderOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let now = self.identify(ctx).await?;
        Ok(Some(Observed {
            inputs: self.clone(),
            outputs: ProviderOutputs {
                caller_arn: outputs.caller_arn.clone(),
                ..now
            },
        }))
    }

    async fn delete(
        &self,
        _ctx: &Context,
        _outputs: &ProviderOutputs,
    ) -> Result<(), ResourceError> {
        // Nothing exists in AWS for a provider.
        Ok(())
    }

    /// Nothing is created for a provider: "finding" it is asking STS again (its natural key is the
    /// account the credentials belong to).
    async fn find(&self, ctx: &Context) -> Result<Option<ProviderOutputs>, ResourceError> {
        self.identify(ctx).await.map(Some)
    }
}
