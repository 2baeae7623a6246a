//! The provider: the AWS account and region a stack is bound to.
//!
//! Each stack's state records the [`ProviderInfo`] it was applied to. Before any change, the engine asks
//! who the current credentials belong to and refuses to apply (or destroy) state recorded for another
//! account or region ([`Error::ProviderMismatch`](crate::Error::ProviderMismatch)).

use std::fmt;

use aws_types::SdkConfig;
use serde::{Deserialize, Serialize};

use crate::error::{AwsError, Error};

/// An AWS account and region.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderInfo {
    /// The 12-digit account id.
    pub account_id: String,
    /// The region, e.g. `us-east-1`.
    pub region: String,
}

impl ProviderInfo {
    /// The ARN partition of the region: `aws-cn` for China, `aws-us-gov` for GovCloud, `aws`
    /// elsewhere.
    pub fn partition(&self) -> &'static str {
        if self.region.starts_with("cn-") {
            "aws-cn"
        } else if self.region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        }
    }

    /// The ARN of `resource` (`log-group:/ecs/frontend`) of `service` in this account and region.
    pub fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{}:{}:{resource}",
            self.partition(),
            self.region,
            self.account_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arn_is_in_the_regions_partition() {
        let p = |region: &str| ProviderInfo {
            account_id: "123456789012".into(),
            region: region.into(),
        };
        assert_eq!(
            p("us-east-1").arn("logs", "log-group:/ecs/x"),
            "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/x"
        );
        assert_eq!(p("cn-north-1").partition(), "aws-cn");
        assert_eq!(p("us-gov-west-1").partition(), "aws-us-gov");
        assert_eq!(p("eu-west-1").partition(), "aws");
    }
}

impl fmt::Display for ProviderInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "account {} in {}", self.account_id, self.region)
    }
}

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
