//! `iam:policy`: a customer-managed policy and its versions.

use platform_core::resource::{Idempotent, Once};
use std::collections::BTreeMap;

use aws_sdk_iam::types::PolicyVersion;
use platform_core::{
    Context, Observed, Resource, ResourceError, ValidationError, error::GoneExt, resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::iam::{self, Tagged};
use crate::policy::PolicyDocument;
use crate::validate;

/// How many versions AWS keeps of a managed policy.
pub const MAX_POLICY_VERSIONS: usize = 5;

/// A customer-managed policy. A document change makes a new default version (pruning the oldest
/// non-default version when AWS's five are used up; the default is never deleted). A name, path or
/// description change replaces it (AWS cannot change them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManagedPolicy {
    /// The policy's name, unique in the account.
    pub name: String,
    /// The IAM path (`/` by default).
    pub path: String,
    /// What the policy grants and why.
    pub description: String,
    /// The permissions.
    pub document: PolicyDocument,
    /// User tags (the engine adds its own).
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// A managed policy's outputs.
    pub struct PolicyOutputs / PolicyRefs {
        /// The policy's ARN.
        pub arn: crate::PolicyArn,
        /// The policy's name.
        pub name: String,
        /// The default version (`v1`, `v2`, ...).
        pub default_version_id: String,
    }
}

/// A version's number (`v3` is 3), for ordering when dates are missing.
/// Policy `arn` as IAM describes it; `None` when it does not exist.
async fn get(
    ctx: &Context,
    client: &aws_sdk_iam::Client,
    arn: &str,
) -> Result<Option<aws_sdk_iam::types::Policy>, ResourceError> {
    let out = ctx
        .call("GetPolicy", Idempotent, || {
            client.get_policy().policy_arn(arn).send()
        })
        .await
        .gone_is_none()?;
    Ok(out.and_then(|o| o.policy().cloned()))
}

fn version_number(v: &PolicyVersion) -> u64 {
    v.version_id()
        .and_then(|id| id.trim_start_matches('v').parse().ok())
        .unwrap_or(0)
}

/// The version to delete before a new one can be made: the oldest non-default one, when all five
/// slots are taken. Never the default.
pub fn version_to_prune(versions: &[PolicyVersion]) -> Option<&PolicyVersion> {
    if versions.len() < MAX_POLICY_VERSIONS {
        return None;
    }
    versions
        .iter()
        .filter(|v| !v.is_default_version())
        .min_by_key(|v| (v.create_date().map(|d| d.as_nanos()), version_number(v)))
}

impl ManagedPolicy {
    async fn versions(
        ctx: &Context,
        client: &aws_sdk_iam::Client,
        arn: &str,
    ) -> Result<Vec<PolicyVersion>, ResourceError> {
        let out = ctx
            .call("ListPolicyVersions", Idempotent, || {
                client.list_policy_versions().policy_arn(arn).send()
            })
            .await?;
        Ok(out.versions().to_vec())
    }
}

impl Resource for ManagedPolicy {
    type Outputs = PolicyOutputs;
    const KIND: &'static str = "iam:policy";
    const SERVICE: &'static str = "iam";
    const UPDATES_IN_PLACE: bool = true;
    const DELETE_BEFORE_REPLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; name, path, description)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::name("name", &self.name, 128)?;
        validate::path("path", &self.path)?;
        validate::description("description", &self.description)?;
        validate::permissions_policy("document", &self.document)?;
        let size = self.document.to_json().len();
        if size > 6144 {
            return Err(ValidationError::new(
                "document",
                format!("{size} characters"),
                "a managed policy is at most 6144 characters",
            ));
        }
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<PolicyOutputs, ResourceError> {
        let client = iam::client(ctx)?;
        let tags = iam::create_tags(ctx, &self.tags)?;
        let out = ctx
            .call("CreatePolicy", Once, || {
                client
                    .create_policy()
                    .policy_name(&self.name)
                    .path(&self.path)
                    .description(&self.description)
                    .policy_document(self.document.to_json())
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?;
        let p = out
            .policy()
            .ok_or_else(|| ResourceError::missing("CreatePolicy", "a policy"))?;
        Ok(PolicyOutputs {
            arn: crate::PolicyArn::new(
                p.arn()
                    .ok_or_else(|| ResourceError::missing("CreatePolicy", "an ARN"))?,
            ),
            name: self.name.clone(),
            default_version_id: p.default_version_id().unwrap_or("v1").to_owned(),
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &PolicyOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = iam::client(ctx)?;
        let arn = outputs.arn.as_str();
        let Some(p) = get(ctx, &client, arn).await? else {
            return Ok(None);
        };
        let version = p
            .default_version_id()
            .ok_or_else(|| ResourceError::missing("GetPolicy", "a default version"))?
            .to_owned();
        let v = ctx
            .call("GetPolicyVersion", Idempotent, || {
                client
                    .get_policy_version()
                    .policy_arn(arn)
                    .version_id(&version)
                    .send()
            })
            .await?;
        let text = v
            .policy_version()
            .and_then(|v| v.document())
            .ok_or_else(|| ResourceError::missing("GetPolicyVersion", "a document"))?;
        let document = PolicyDocument::parse_aws(text).map_err(|e| ResourceError::Failed {
            message: format!("policy {arn} {version}: {e}"),
        })?;
        Ok(Some(Observed {
            inputs: ManagedPolicy {
                name: p.policy_name().unwrap_or(&outputs.name).to_owned(),
                path: p.path().unwrap_or("/").to_owned(),
                // GetPolicy only returns the description on some endpoints; keep ours when absent.
                description: p.description().unwrap_or(&self.description).to_owned(),
                document,
                tags: iam::user_tags(p.tags()),
            },
            outputs: PolicyOutputs {
                arn: outputs.arn.clone(),
                name: outputs.name.clone(),
                default_version_id: version,
            },
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &PolicyOutputs,
    ) -> Result<PolicyOutputs, ResourceError> {
        let client = iam::client(ctx)?;
        let arn = outputs.arn.as_str();
        let mut result = outputs.clone();
        if self.document != previous.document {
            let versions = Self::versions(ctx, &client, arn).await?;
            if let Some(old) = version_to_prune(&versions).and_then(|v| v.version_id()) {
                ctx.call("DeletePolicyVersion", Idempotent, || {
                    client
                        .delete_policy_version()
                        .policy_arn(arn)
                        .version_id(old)
                        .send()
                })
                .await
                .gone_is_ok()?;
            }
            let out = ctx
                .call("CreatePolicyVersion", Once, || {
                    client
                        .create_policy_version()
                        .policy_arn(arn)
                        .policy_document(self.document.to_json())
                        .set_as_default(true)
                        .send()
                })
                .await?;
            result.default_version_id = out
                .policy_version()
                .and_then(|v| v.version_id())
                .ok_or_else(|| ResourceError::missing("CreatePolicyVersion", "a version id"))?
                .to_owned();
        }
        Tagged::Policy(arn)
            .converge_tags(ctx, &client, &previous.tags, &self.tags)
            .await?;
        Ok(result)
    }

    /// Deletes the non-default versions first: AWS refuses to delete a policy that has any.
    async fn delete(&self, ctx: &Context, outputs: &PolicyOutputs) -> Result<(), ResourceError> {
        let client = iam::client(ctx)?;
        let arn = outputs.arn.as_str();
        let Some(versions) = Self::versions(ctx, &client, arn).await.gone_is_none()? else {
            return Ok(());
        };
        for v in versions.iter().filter(|v| !v.is_default_version()) {
            let Some(id) = v.version_id() else { continue };
            ctx.call("DeletePolicyVersion", Idempotent, || {
                client
                    .delete_policy_version()
                    .policy_arn(arn)
                    .version_id(id)
                    .send()
            })
            .await
            .gone_is_ok()?;
        }
        ctx.call("DeletePolicy", Idempotent, || {
            client.delete_policy().policy_arn(arn).send()
        })
        .await
        .gone_is_ok()
    }

    /// The local policy of this name and path, if it carries this resource's tags.
    /// By policy ARN.
    async fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> Result<Option<PolicyOutputs>, ResourceError> {
        if !id.starts_with("arn:") {
            return Err(ResourceError::Invalid(ValidationError::new(
                "id",
                id,
                "a managed policy is imported by its ARN",
            )));
        }
        let client = iam::client(ctx)?;
        let Some(p) = get(ctx, &client, id).await? else {
            return Ok(None);
        };
        let outputs = PolicyOutputs {
            arn: crate::PolicyArn::new(id),
            name: p.policy_name().unwrap_or_default().to_owned(),
            default_version_id: p.default_version_id().unwrap_or_default().to_owned(),
        };
        Tagged::Policy(id)
            .tag(ctx, &client, iam::ownership_tags(ctx)?)
            .await?;
        Ok(Some(outputs))
    }

    async fn find(&self, ctx: &Context) -> Result<Option<PolicyOutputs>, ResourceError> {
        let client = iam::client(ctx)?;
        let mut marker: Option<String> = None;
        loop {
            let page = ctx
                .call("ListPolicies", Idempotent, || {
                    client
                        .list_policies()
                        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
                        .path_prefix(&self.path)
                        .set_marker(marker.clone())
                        .send()
                })
                .await?;
            if let Some(p) = page
                .policies()
                .iter()
                .find(|p| p.policy_name() == Some(self.name.as_str()))
            {
                let Some(arn) = p.arn() else { return Ok(None) };
                let tags = ctx
                    .call("ListPolicyTags", Idempotent, || {
                        client.list_policy_tags().policy_arn(arn).send()
                    })
                    .await?;
                iam::claim(ctx, &format!("IAM policy {arn}"), tags.tags())?;
                return Ok(Some(PolicyOutputs {
                    arn: crate::PolicyArn::new(arn),
                    name: self.name.clone(),
                    default_version_id: p.default_version_id().unwrap_or("v1").to_owned(),
                }));
            }
            match page.marker() {
                Some(m) if page.is_truncated() => marker = Some(m.to_owned()),
                _ => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iam::primitives::DateTime;

    fn version(id: &str, default: bool, secs: i64) -> PolicyVersion {
        PolicyVersion::builder()
            .version_id(id)
            .is_default_version(default)
            .create_date(DateTime::from_secs(secs))
            .build()
    }

    #[test]
    fn prunes_the_oldest_non_default_version_only_when_five_exist() {
        let four: Vec<_> = (1..=4)
            .map(|i| version(&format!("v{i}"), i == 4, i))
            .collect();
        assert!(version_to_prune(&four).is_none());
        // v1 is the default (rolled back to), so v2 is the oldest that may go.
        let five: Vec<_> = (1..=5)
            .map(|i| version(&format!("v{i}"), i == 1, i))
            .collect();
        assert_eq!(
            version_to_prune(&five).and_then(|v| v.version_id()),
            Some("v2")
        );
        let five: Vec<_> = (1..=5)
            .map(|i| version(&format!("v{i}"), i == 5, i))
            .collect();
        assert_eq!(
            version_to_prune(&five).and_then(|v| v.version_id()),
            Some("v1")
        );
    }

    #[test]
    fn versions_made_in_the_same_second_are_pruned_lowest_number_first() {
        // Listed newest first, as IAM may; v10 is newer than v9 (numbers, not text).
        let five = [
            version("v12", true, 7),
            version("v10", false, 7),
            version("v11", false, 7),
            version("v9", false, 7),
            version("v13", false, 7),
        ];
        assert_eq!(
            version_to_prune(&five).and_then(|v| v.version_id()),
            Some("v9")
        );
    }
}
