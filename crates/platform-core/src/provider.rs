//! The provider: the AWS account and region a stack is bound to.
//!
//! Each stack's state records the [`ProviderInfo`] it was applied to. Before any change, the engine asks
//! who the current credentials belong to and refuses to apply (or destroy) state recorded for another
//! account or region ([`Error::ProviderMismatch`](crate::Error::ProviderMismatch)).

use aws_types::SdkConfig;

use crate::error::{AwsError, Error};
use crate::types::ProviderInfo;

/// Where the engine learns the current account and region.
#[derive(Clone, Debug)]
pub(crate) enum IdentitySource {
    /// STS `GetCallerIdentity` with the engine's `SdkConfig`, and the config's region.
    Aws(Box<SdkConfig>),
    /// A fixed identity (tests, fakes).
    Fixed(ProviderInfo),
}

impl IdentitySource {
    pub(crate) async fn resolve(&self) -> Result<ProviderInfo, Error> {
        match self {
            Self::Fixed(p) => Ok(p.clone()),
            Self::Aws(config) => {
                let region = config.region().map(|r| r.to_string()).ok_or_else(|| {
                    Error::NotConfigured(
                        "no AWS region: set AWS_REGION or a region in the SdkConfig".into(),
                    )
                })?;
                let sts = aws_sdk_sts::Client::new(config);
                let out = sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| Error::Identity(AwsError::from_sdk("GetCallerIdentity", e)))?;
                let account_id = out.account().map(str::to_owned).ok_or_else(|| {
                    Error::NotConfigured("GetCallerIdentity answered without an account".into())
                })?;
                Ok(ProviderInfo { account_id, region })
            }
        }
    }
}
