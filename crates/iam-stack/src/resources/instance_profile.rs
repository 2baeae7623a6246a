//! `iam:instance-profile`: the instance profile that carries a role to EC2 container instances.

use platform_core::resource::{Idempotent, Once};
use std::collections::BTreeMap;

use platform_core::{
    Context, Input, Observed, Resource, ResourceError, ValidationError, error::GoneExt,
    resource_outputs,
};
use serde::{Deserialize, Serialize};

use crate::iam::{self, Tagged};
use crate::validate;

/// An instance profile holding one role. A name or path change replaces it; the role is swapped in
/// place (remove, add); tags change in place.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceProfile {
    /// The profile's name, unique in the account.
    pub name: String,
    /// The IAM path.
    pub path: String,
    /// The role it carries.
    pub role_name: Input<String>,
    /// Other roles found in it (empty when declared, so that an update removes any found): the
    /// stack manages a profile's roles exclusively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_roles: Vec<String>,
    /// User tags (the engine adds its own).
    pub tags: BTreeMap<String, String>,
}

resource_outputs! {
    /// An instance profile's outputs.
    pub struct InstanceProfileOutputs / InstanceProfileRefs {
        /// The profile's name.
        pub name: String,
        /// The profile's ARN.
        pub arn: crate::InstanceProfileArn,
    }
}

impl InstanceProfile {
    async fn add_role(
        ctx: &Context,
        client: &aws_sdk_iam::Client,
        profile: &str,
        role: &str,
    ) -> Result<(), ResourceError> {
        ctx.call(
            "AddRoleToInstanceProfile",
            Once.retrying(iam::not_visible_yet),
            || {
                client
                    .add_role_to_instance_profile()
                    .instance_profile_name(profile)
                    .role_name(role)
                    .send()
            },
        )
        .await?;
        Ok(())
    }

    async fn remove_role(
        ctx: &Context,
        client: &aws_sdk_iam::Client,
        profile: &str,
        role: &str,
    ) -> Result<(), ResourceError> {
        ctx.call("RemoveRoleFromInstanceProfile", Idempotent, || {
            client
                .remove_role_from_instance_profile()
                .instance_profile_name(profile)
                .role_name(role)
                .send()
        })
        .await
        .gone_is_ok()
    }
}

/// The role a profile holds as read: the declared one when it is among `roles`, else the first
/// (empty: none); and every other role.
fn split_roles(
    declared: Option<&str>,
    roles: &[aws_sdk_iam::types::Role],
) -> (String, Vec<String>) {
    let names: Vec<&str> = roles.iter().map(|r| r.role_name()).collect();
    let main = declared
        .filter(|d| names.contains(d))
        .or_else(|| names.first().copied())
        .unwrap_or_default()
        .to_owned();
    let mut others: Vec<String> = names
        .into_iter()
        .filter(|n| *n != main)
        .map(str::to_owned)
        .collect();
    others.sort();
    (main, others)
}

impl Resource for InstanceProfile {
    type Outputs = InstanceProfileOutputs;
    const KIND: &'static str = "iam:instance-profile";
    const SERVICE: &'static str = "iam";
    const UPDATES_IN_PLACE: bool = true;
    const DELETE_BEFORE_REPLACE: bool = true;

    fn force_new(&self, previous: &Self) -> platform_core::ForceNew {
        platform_core::force_new!(self, previous; name, path)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        validate::name("name", &self.name, 128)?;
        validate::path("path", &self.path)?;
        if let Some(role) = self.role_name.known() {
            validate::name("role_name", role, 64)?;
        }
        validate::tags("tags", &self.tags)
    }

    async fn create(&self, ctx: &Context) -> Result<InstanceProfileOutputs, ResourceError> {
        let client = iam::client(ctx)?;
        let tags = iam::create_tags(ctx, &self.tags)?;
        let out = ctx
            .call("CreateInstanceProfile", Once, || {
                client
                    .create_instance_profile()
                    .instance_profile_name(&self.name)
                    .path(&self.path)
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?;
        let arn = out
            .instance_profile()
            .map(|p| crate::InstanceProfileArn::new(p.arn()))
            .ok_or_else(|| ResourceError::missing("CreateInstanceProfile", "a profile"))?;
        Self::add_role(ctx, &client, &self.name, self.role_name.get()?).await?;
        Ok(InstanceProfileOutputs {
            name: self.name.clone(),
            arn,
        })
    }

    async fn read(
        &self,
        ctx: &Context,
        outputs: &InstanceProfileOutputs,
    ) -> Result<Option<Observed<Self>>, ResourceError> {
        let client = iam::client(ctx)?;
        let Some(out) = ctx
            .call("GetInstanceProfile", Idempotent, || {
                client
                    .get_instance_profile()
                    .instance_profile_name(&outputs.name)
                    .send()
            })
            .await
            .gone_is_none()?
        else {
            return Ok(None);
        };
        let Some(p) = out.instance_profile() else {
            return Ok(None);
        };
        let (role_name, other_roles) =
            split_roles(self.role_name.known().map(String::as_str), p.roles());
        Ok(Some(Observed {
            inputs: InstanceProfile {
                name: p.instance_profile_name().to_owned(),
                path: p.path().to_owned(),
                role_name: Input::Value(role_name),
                other_roles,
                tags: iam::user_tags(p.tags()),
            },
            outputs: InstanceProfileOutputs {
                name: p.instance_profile_name().to_owned(),
                arn: crate::InstanceProfileArn::new(p.arn()),
            },
        }))
    }

    async fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &InstanceProfileOutputs,
    ) -> Result<InstanceProfileOutputs, ResourceError> {
        let client = iam::client(ctx)?;
        let name = outputs.name.as_str();
        // Roles found that are not declared leave first (a profile holds one role at most).
        for role in previous
            .other_roles
            .iter()
            .filter(|r| !self.other_roles.contains(r))
        {
            Self::remove_role(ctx, &client, name, role).await?;
        }
        let (old_role, new_role) = (previous.role_name.get()?, self.role_name.get()?);
        if old_role != new_role {
            // A profile holds one role: the old one leaves before the new one joins.
            if !old_role.is_empty() {
                Self::remove_role(ctx, &client, name, old_role).await?;
            }
            Self::add_role(ctx, &client, name, new_role).await?;
        }
        Tagged::InstanceProfile(name)
            .converge_tags(ctx, &client, &previous.tags, &self.tags)
            .await?;
        Ok(outputs.clone())
    }

    /// Removes its roles first: AWS refuses to delete a profile that still holds one. A role added
    /// meanwhile (an `AddRoleToInstanceProfile` AWS carried out late, after its sender died) makes
    /// the delete answer `DeleteConflict`: the roles are read and removed again.
    async fn delete(
        &self,
        ctx: &Context,
        outputs: &InstanceProfileOutputs,
    ) -> Result<(), ResourceError> {
        let client = iam::client(ctx)?;
        let name = outputs.name.as_str();
        let client = &client;
        ctx.retry(
            "DeleteInstanceProfile",
            |e| e.aws_code() == Some("DeleteConflict"),
            || async move {
                let Some(out) = ctx
                    .call("GetInstanceProfile", Idempotent, || {
                        client
                            .get_instance_profile()
                            .instance_profile_name(name)
                            .send()
                    })
                    .await
                    .gone_is_none()?
                else {
                    return Ok(());
                };
                for role in out
                    .instance_profile()
                    .map(|p| p.roles())
                    .unwrap_or_default()
                {
                    Self::remove_role(ctx, client, name, role.role_name()).await?;
                }
                ctx.call("DeleteInstanceProfile", Idempotent, || {
                    client
                        .delete_instance_profile()
                        .instance_profile_name(name)
                        .send()
                })
                .await
                .gone_is_ok()
            },
        )
        .await
    }

    async fn find(&self, ctx: &Context) -> Result<Option<InstanceProfileOutputs>, ResourceError> {
        let client = iam::client(ctx)?;
        let out = ctx
            .call("GetInstanceProfile", Idempotent, || {
                client
                    .get_instance_profile()
                    .instance_profile_name(&self.name)
                    .send()
            })
            .await
            .gone_is_none()?;
        let Some(p) = out.as_ref().and_then(|o| o.instance_profile()) else {
            return Ok(None);
        };
        iam::claim(
            ctx,
            &format!("IAM instance profile {}", self.name),
            p.tags(),
        )?;
        // An interrupted create may have stopped between the two calls: the engine reads what it
        // adopts and adds the role through `update`, so finding changes nothing.
        Ok(Some(InstanceProfileOutputs {
            name: self.name.clone(),
            arn: crate::InstanceProfileArn::new(p.arn()),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> aws_sdk_iam::types::Role {
        aws_sdk_iam::types::Role::builder()
            .role_name(name)
            .path("/")
            .role_id("AROA")
            .arn(format!("arn:aws:iam::1:role/{name}"))
            .create_date(aws_smithy_types::DateTime::from_secs(0))
            .build()
            .unwrap()
    }

    #[test]
    fn every_role_of_a_profile_is_seen_the_declared_one_first() {
        let roles = [role("intruder"), role("ecs-instance-role")];
        assert_eq!(
            split_roles(Some("ecs-instance-role"), &roles),
            ("ecs-instance-role".to_owned(), vec!["intruder".to_owned()])
        );
        // The declared role gone: the first found stands in its place, so the drift shows as a
        // role change, and the rest as other roles.
        assert_eq!(
            split_roles(Some("ecs-instance-role"), &[role("b"), role("a")]),
            ("b".to_owned(), vec!["a".to_owned()])
        );
        assert_eq!(split_roles(Some("x"), &[]), (String::new(), vec![]));
        assert_eq!(split_roles(None, &[role("a")]), ("a".to_owned(), vec![]));
    }
}
