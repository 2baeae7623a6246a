//! What the cluster's resources share: clients, tags, and the IAM propagation race.

use platform_core::resource::Idempotent;
use std::collections::BTreeMap;

use aws_sdk_ecs::types::Tag;
use platform_core::{Context, ResourceError, error::AwsError, resource::TagChanges};

/// The ECS client, built once per engine with the engine's interceptors.
pub(crate) fn ecs(ctx: &Context) -> Result<aws_sdk_ecs::Client, ResourceError> {
    platform_core::aws_client!(ctx, aws_sdk_ecs)
}

/// The CloudWatch Logs client, built once per engine with the engine's interceptors.
pub(crate) fn logs(ctx: &Context) -> Result<aws_sdk_cloudwatchlogs::Client, ResourceError> {
    platform_core::aws_client!(ctx, aws_sdk_cloudwatchlogs)
}

/// Tags ECS resource `arn` with the engine's ownership tags: an imported resource becomes ours.
pub(crate) async fn tag_ecs_as_ours(
    ctx: &Context,
    client: &aws_sdk_ecs::Client,
    arn: &str,
) -> Result<(), ResourceError> {
    let ours = ctx.tags_with(&BTreeMap::new());
    update_ecs_tags(ctx, client, arn, &BTreeMap::new(), &ours).await
}

/// As ECS tags.
pub(crate) fn ecs_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// ECS tags as the (key, value) pairs the engine's tag rules read ([`Context::claim`],
/// [`Context::carries_own_tags`], [`user_tags`](platform_core::resource::user_tags)).
pub(crate) fn pairs(tags: &[Tag]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter()
        .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default())))
}

/// Brings an ECS resource's user tags from `old` to `new` (TagResource / UntagResource).
pub(crate) async fn update_ecs_tags(
    ctx: &Context,
    client: &aws_sdk_ecs::Client,
    arn: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<(), ResourceError> {
    let untag = async |keys: Vec<String>| {
        ctx.call("UntagResource", Idempotent, || {
            client
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(keys.clone()))
                .send()
        })
        .await
        .map(drop)
    };
    let tag = async |set: BTreeMap<String, String>| {
        ctx.call("TagResource", Idempotent, || {
            client
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(ecs_tags(&set)))
                .send()
        })
        .await
        .map(drop)
    };
    TagChanges::between(old, new).apply(untag, tag).await
}

/// Brings a CloudWatch Logs resource's tags from `old` to `new` (UntagResource / TagResource).
pub(crate) async fn update_log_tags(
    ctx: &Context,
    client: &aws_sdk_cloudwatchlogs::Client,
    arn: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<(), ResourceError> {
    let untag = async |keys: Vec<String>| {
        ctx.call("UntagResource", Idempotent, || {
            client
                .untag_resource()
                .resource_arn(arn)
                .set_tag_keys(Some(keys.clone()))
                .send()
        })
        .await
        .map(drop)
    };
    let tag = async |set: BTreeMap<String, String>| {
        let set: std::collections::HashMap<String, String> = set.into_iter().collect();
        ctx.call("TagResource", Idempotent, || {
            client
                .tag_resource()
                .resource_arn(arn)
                .set_tags(Some(set.clone()))
                .send()
        })
        .await
        .map(drop)
    };
    TagChanges::between(old, new).apply(untag, tag).await
}

/// Whether ECS refused a role it cannot assume yet: a role created seconds ago has not reached every
/// IAM endpoint (the well-known propagation race). Worth retrying within the engine's bound.
/// ECS refusing to create a service under the name of one it is still deleting (a replacement
/// deletes the old service first): `InvalidParameterException` "Unable to Start a service that is
/// still Draining." until the old service's tasks have stopped.
pub(crate) fn is_still_draining(e: &AwsError) -> bool {
    e.has_code("InvalidParameterException")
        && e.message
            .as_deref()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("still draining")
}

/// How long a service of the same name may drain: its tasks stop after the target group's
/// deregistration delay (300 s by default) and the container's stop timeout (30 s by default); twice
/// that, with margin.
pub(crate) const SERVICE_DRAIN_BUDGET: std::time::Duration =
    std::time::Duration::from_secs(12 * 60);

pub(crate) fn is_role_not_ready(e: &AwsError) -> bool {
    let code_fits = matches!(
        e.code.as_deref(),
        Some("InvalidParameterException" | "ClientException" | "AccessDeniedException")
    );
    let message = e
        .message
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    // ECS gives these races no code of their own, only InvalidParameterException / ClientException /
    // AccessDeniedException with a message: matching on text is all AWS leaves us here.
    code_fits
        && (message.contains("unable to assume")
            || message.contains("cannot assume")
            || message.contains("not authorized to perform: sts:assumerole")
            || message.contains("role is not valid")
            // iam:PassRole refused for a role created a moment ago, before IAM propagated it.
            || message.contains("not authorized to perform: iam:passrole"))
}

/// An SDK build error (a required field missing) as a resource error.
pub(crate) fn build_error(what: &str, e: impl std::fmt::Display) -> ResourceError {
    ResourceError::Failed {
        message: format!("{what}: {e}"),
    }
}
