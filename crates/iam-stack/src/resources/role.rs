//! `iam:role`: a role, its trust policy, description, session length and tags.

use platform_core::resource::{Idempotent, Once};
use std::collections::BTreeMap;

use platform_core::{
    Context, Observed, Resource, ResourceError, ValidationError, error::GoneExt, resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::iam::{self, Tagged};
use crate::policy::PolicyDocument;
use crate::validate;

/// An IAM role. A name or path change replaces it (deleting the old one first: names are unique in an
/// account); the trust policy, description, session length and tags change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Role {
    /// The role's name, unique in the account.
    pub name: String,
    /// The IAM path (`/` by default).
    pub path: String,
    /// What the role is for.
    pub description: String,
    /// Who may assume it: exactly one service principal per statement.
    pub assume_role_policy: PolicyDocument,
    /// The longest session, in seconds (3600 to 43200).
    pub max_session_duration: i32,
    /// User tags (the engine adds its own).
    pub tags: BTreeMap<String, String>,
}

impl Role {
    /// A role named `name` that `service` (e.g. `ecs-tasks.amazonaws.com`) may assume.
    pub fn for_service(name: &str, service: &str, description: &str) -> Self {
        Self {
            name: name.to_owned(),
            path: "/".into(),
            description: description.to_owned(),
            assume_role_policy: PolicyDocument::trust(service),
            max_session_duration: 3600,
            tags: BTreeMap::new(),
        }
    }
}

resource_outputs! {
    /// A role's outputs.
    pub struct RoleOutputs / RoleRefs {
        /// The role's name.
        pub name: String,
        /// The role's ARN.
        pub arn: crate::RoleArn,
        /// The role's stable id (`AROA...`).
        pub role_id: String,
    }
}

/// Role `name` as IAM describes it; `None` when it does not exist.
async fn get(
    ctx: &Context,
    client: &aws_sdk_iam::Client,
    name: &str,
) -> Result<Option<aws_sdk_iam::types::Role>, ResourceError> {
    let out = ctx
        .call("GetRole", Idempotent, || {
            client.get_role().role_name(name).send()
        })
        .await
        .gone_is_none()?;
    Ok(out.and_then(|o| o.role().cloned()))
}

fn outputs_of(role: &aws_sdk_iam::types::Role) -> RoleOutputs {
    RoleOutputs {
        name: role.role_name().to_owned(),
        arn: crate::RoleArn::new(role.arn()),
        role_id: role.role_id().to_owned(),
    }
}

impl Resource for Role {
    type Outputs = RoleOutputs;
    const KIND: &'static str = "iam:role";
    const SERVICE: &'static str = "iam";
    const UPDATES_IN_PLACE: bool = true;
    const DELETE_BEFORE_REPLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; name, path)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::name("name", &self.name, 64)?;
        validate::path("path", &self.path)?;
        validate::description("description", &self.description)?;
        validate::trust_policy("assume_role_policy", &self.assume_role_policy)?;
        if !(3600..=43200).contains(&self.max_session_duration) {
            return Err(ValidationError::new(
                "max_session_duration",
                self.max_session_duration,
                "must be 3600 to 43200 seconds",
            ));
        }
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<RoleOutputs, ResourceError> {
        let client = iam::client(ctx)?;
        let tags = iam::create_tags(ctx, &self.tags)?;
        let out = ctx
            .call("CreateRole", Once, || {
                client
                    .create_role()
                    .role_name(&self.name)
                    .path(&self.path)
                    .description(&self.description)
                    .assume_role_policy_document(self.assume_role_policy.to_json())
                    .max_session_duration(self.max_session_duration)
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?;
        out.role()
            .map(outputs_of)
            .ok_or_else(|| ResourceError::missing("CreateRole", "a role"))
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &RoleOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = iam::client(ctx)?;
        let Some(role) = get(ctx, &client, &outputs.name).await? else {
            return Ok(None);
        };
        let trust = role.assume_role_policy_document().unwrap_or("{}");
        let assume_role_policy =
            PolicyDocument::parse_aws(trust).map_err(|e| ResourceError::Failed {
                message: format!("role {}: trust policy: {e}", role.role_name()),
            })?;
        Ok(Some(Observed {
            inputs: Role {
                name: role.role_name().to_owned(),
                path: role.path().to_owned(),
                description: role.description().unwrap_or_default().to_owned(),
                assume_role_policy,
                max_session_duration: role.max_session_duration().unwrap_or(3600),
                tags: iam::user_tags(role.tags()),
            },
            outputs: outputs_of(&role),
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &RoleOutputs,
    ) -> Result<RoleOutputs, ResourceError> {
        let client = iam::client(ctx)?;
        let name = outputs.name.as_str();
        if self.assume_role_policy != previous.assume_role_policy {
            ctx.call("UpdateAssumeRolePolicy", Idempotent, || {
                client
                    .update_assume_role_policy()
                    .role_name(name)
                    .policy_document(self.assume_role_policy.to_json())
                    .send()
            })
            .await?;
        }
        if self.description != previous.description
            || self.max_session_duration != previous.max_session_duration
        {
            ctx.call("UpdateRole", Idempotent, || {
                client
                    .update_role()
                    .role_name(name)
                    .description(&self.description)
                    .max_session_duration(self.max_session_duration)
                    .send()
            })
            .await?;
        }
        Tagged::Role(name)
            .converge_tags(ctx, &client, &previous.tags, &self.tags)
            .await?;
        Ok(outputs.clone())
    }

    /// Detaches managed policies, deletes inline policies and leaves instance profiles first: AWS
    /// refuses to delete a role that still has any of them (`DeleteConflict`).
    async fn delete(&self, ctx: &Context, outputs: &RoleOutputs) -> Result<(), ResourceError> {
        let client = iam::client(ctx)?;
        let name = outputs.name.as_str();
        let Some(attached) = ctx
            .call("ListAttachedRolePolicies", Idempotent, || {
                client
                    .list_attached_role_policies()
                    .role_name(name)
                    .max_items(1000)
                    .send()
            })
            .await
            .gone_is_none()?
        else {
            return Ok(());
        };
        for arn in attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn())
        {
            ctx.call("DetachRolePolicy", Idempotent, || {
                client
                    .detach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
            })
            .await
            .gone_is_ok()?;
        }
        let inline = ctx
            .call("ListRolePolicies", Idempotent, || {
                client
                    .list_role_policies()
                    .role_name(name)
                    .max_items(1000)
                    .send()
            })
            .await?;
        for policy in inline.policy_names() {
            ctx.call("DeleteRolePolicy", Idempotent, || {
                client
                    .delete_role_policy()
                    .role_name(name)
                    .policy_name(policy)
                    .send()
            })
            .await
            .gone_is_ok()?;
        }
        let profiles = ctx
            .call("ListInstanceProfilesForRole", Idempotent, || {
                client
                    .list_instance_profiles_for_role()
                    .role_name(name)
                    .max_items(1000)
                    .send()
            })
            .await?;
        for profile in profiles.instance_profiles() {
            ctx.call("RemoveRoleFromInstanceProfile", Idempotent, || {
                client
                    .remove_role_from_instance_profile()
                    .instance_profile_name(profile.instance_profile_name())
                    .role_name(name)
                    .send()
            })
            .await
            .gone_is_ok()?;
        }
        ctx.call("DeleteRole", Idempotent, || {
            client.delete_role().role_name(name).send()
        })
        .await
        .gone_is_ok()
    }

    /// The role of this name, if it carries this resource's tags (one an interrupted create made).
    /// By role name or ARN.
    async fn import(&self, ctx: &Context, id: &str) -> Result<Option<RoleOutputs>, ResourceError> {
        let client = iam::client(ctx)?;
        let name = iam::name_of(id);
        let Some(role) = get(ctx, &client, name).await? else {
            return Ok(None);
        };
        let outputs = outputs_of(&role);
        Tagged::Role(name)
            .tag(ctx, &client, iam::ownership_tags(ctx)?)
            .await?;
        Ok(Some(outputs))
    }

    async fn find(&self, ctx: &Context) -> Result<Option<RoleOutputs>, ResourceError> {
        let client = iam::client(ctx)?;
        let out = ctx
            .call("GetRole", Idempotent, || {
                client.get_role().role_name(&self.name).send()
            })
            .await
            .gone_is_none()?;
        let Some(role) = out.as_ref().and_then(|o| o.role()) else {
            return Ok(None);
        };
        iam::claim(ctx, &format!("IAM role {}", self.name), role.tags())?;
        Ok(Some(outputs_of(role)))
    }
}
