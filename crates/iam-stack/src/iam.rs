//! What every IAM resource shares: the client, tags, and not-found handling.

use platform_core::resource::Idempotent;
use std::collections::BTreeMap;

use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;
use platform_core::{Context, ResourceError};

/// IAM is eventually consistent: a role, policy or profile created a moment ago can still be unknown
/// to the next call that names it (`NoSuchEntity` from `AttachRolePolicy` or
/// `AddRoleToInstanceProfile`), for a few seconds. AWS: "changes ... take time to become visible"
/// (<https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency>).
/// Retried within the engine's retry bound (`RetryPolicy`, by default 10 attempts over about a
/// minute; Terraform's AWS provider allows 2 minutes for the same race).
pub(crate) fn not_visible_yet(e: &platform_core::error::AwsError) -> bool {
    e.is_not_found()
}

/// The IAM client, built once per engine with the engine's interceptors (call counting).
pub(crate) fn client(ctx: &Context) -> Result<Client, ResourceError> {
    platform_core::aws_client!(ctx, aws_sdk_iam)
}

fn tag(key: &str, value: &str) -> Result<Tag, ResourceError> {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .map_err(|e| ResourceError::Failed {
            message: format!("tag {key}: {e}"),
        })
}

/// The tags a create sends: the user's plus the engine's (stack, logical name).
pub(crate) fn create_tags(
    ctx: &Context,
    user: &BTreeMap<String, String>,
) -> Result<Vec<Tag>, ResourceError> {
    ctx.tags_with(user).iter().map(|(k, v)| tag(k, v)).collect()
}

/// The engine's ownership tags, for an imported role or policy.
pub(crate) fn ownership_tags(ctx: &Context) -> Result<Vec<Tag>, ResourceError> {
    create_tags(ctx, &BTreeMap::new())
}

/// The name at the end of an IAM ARN (`arn:aws:iam::1:role/path/name` is `name`), or `id` itself.
pub(crate) fn name_of(id: &str) -> &str {
    if id.starts_with("arn:") {
        id.rsplit('/').next().unwrap_or(id)
    } else {
        id
    }
}

/// The user's tags among `tags` (the engine's own tags left out).
pub(crate) fn user_tags(tags: &[Tag]) -> BTreeMap<String, String> {
    platform_core::resource::user_tags(tags.iter().map(|t| (t.key(), t.value())))
}

/// Adopts what was found by its name only when its tags name this stack and resource
/// ([`Context::claim`]): IAM names are unique per account, so a create that finds the name taken
/// either made it itself (a lost response, a kill) or met somebody else's resource.
pub(crate) fn claim(ctx: &Context, what: &str, tags: &[Tag]) -> Result<(), ResourceError> {
    ctx.claim(what, tags.iter().map(|t| (t.key(), t.value())))
}

/// An IAM resource that takes tags, by the name (or ARN) its tag calls want.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Tagged<'a> {
    /// A role, by name.
    Role(&'a str),
    /// A managed policy, by ARN.
    Policy(&'a str),
    /// An instance profile, by name.
    InstanceProfile(&'a str),
}

impl Tagged<'_> {
    /// Sets `tags` on it (TagRole / TagPolicy / TagInstanceProfile).
    pub(crate) async fn tag(
        self,
        ctx: &Context,
        client: &Client,
        tags: Vec<Tag>,
    ) -> Result<(), ResourceError> {
        let tags = Some(tags);
        match self {
            Self::Role(name) => {
                ctx.call("TagRole", Idempotent, || {
                    client
                        .tag_role()
                        .role_name(name)
                        .set_tags(tags.clone())
                        .send()
                })
                .await?;
            }
            Self::Policy(arn) => {
                ctx.call("TagPolicy", Idempotent, || {
                    client
                        .tag_policy()
                        .policy_arn(arn)
                        .set_tags(tags.clone())
                        .send()
                })
                .await?;
            }
            Self::InstanceProfile(name) => {
                ctx.call("TagInstanceProfile", Idempotent, || {
                    client
                        .tag_instance_profile()
                        .instance_profile_name(name)
                        .set_tags(tags.clone())
                        .send()
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Removes the tags `keys` (UntagRole / UntagPolicy / UntagInstanceProfile).
    async fn untag(
        self,
        ctx: &Context,
        client: &Client,
        keys: Vec<String>,
    ) -> Result<(), ResourceError> {
        let keys = Some(keys);
        match self {
            Self::Role(name) => {
                ctx.call("UntagRole", Idempotent, || {
                    client
                        .untag_role()
                        .role_name(name)
                        .set_tag_keys(keys.clone())
                        .send()
                })
                .await?;
            }
            Self::Policy(arn) => {
                ctx.call("UntagPolicy", Idempotent, || {
                    client
                        .untag_policy()
                        .policy_arn(arn)
                        .set_tag_keys(keys.clone())
                        .send()
                })
                .await?;
            }
            Self::InstanceProfile(name) => {
                ctx.call("UntagInstanceProfile", Idempotent, || {
                    client
                        .untag_instance_profile()
                        .instance_profile_name(name)
                        .set_tag_keys(keys.clone())
                        .send()
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Brings its user tags from `old` to `new`: the keys no longer wanted removed first, then what
    /// is new or changed set.
    pub(crate) async fn converge_tags(
        self,
        ctx: &Context,
        client: &Client,
        old: &BTreeMap<String, String>,
        new: &BTreeMap<String, String>,
    ) -> Result<(), ResourceError> {
        let set_tags = async |set: BTreeMap<String, String>| {
            let tags = set
                .iter()
                .map(|(k, v)| tag(k, v))
                .collect::<Result<_, _>>()?;
            self.tag(ctx, client, tags).await
        };
        platform_core::resource::TagChanges::between(old, new)
            .apply(|keys| self.untag(ctx, client, keys), set_tags)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> Tag {
        tag(k, v).unwrap()
    }

    #[test]
    fn the_name_is_the_last_part_of_an_arn_and_a_plain_name_is_itself() {
        assert_eq!(
            name_of("arn:aws:iam::123:role/service/ecs-cluster"),
            "ecs-cluster"
        );
        assert_eq!(name_of("arn:aws:iam::123:policy/ecs-policy"), "ecs-policy");
        assert_eq!(name_of("ecs-cluster"), "ecs-cluster");
        // Not an ARN: a name with a slash stays whole.
        assert_eq!(name_of("a/b"), "a/b");
    }

    #[test]
    fn user_tags_leave_out_the_engines_own() {
        let tags = [t("team", "web"), t("platform:stack", "iam"), t("Name", "x")];
        let user = user_tags(&tags);
        assert_eq!(
            user,
            BTreeMap::from([("Name".into(), "x".into()), ("team".into(), "web".into())])
        );
    }
}
