//! What every EC2 resource shares: the client, tags, and lookups by the engine's tags.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use platform_core::{Context, GoneExt, ResourceError, STACK_TAG};

/// The EC2 client, built once per engine with the engine's interceptors (call counting).
pub(crate) fn client(ctx: &Context) -> Result<Client, ResourceError> {
    platform_core::aws_client!(ctx, aws_sdk_ec2)
}

/// The tag specification for a create: the user's tags plus the engine's (stack, logical name).
pub(crate) fn tag_spec(
    ctx: &Context,
    kind: ResourceType,
    tags: &BTreeMap<String, String>,
) -> TagSpecification {
    let mut b = TagSpecification::builder().resource_type(kind);
    for (k, v) in tags {
        b = b.tags(Tag::builder().key(k).value(v).build());
    }
    for (k, v) in ctx.tags() {
        b = b.tags(Tag::builder().key(k).value(v).build());
    }
    b.build()
}

/// Tags resource `id` with the engine's ownership tags: an imported resource becomes this stack's.
pub(crate) async fn tag_as_ours(
    ctx: &Context,
    client: &Client,
    id: &str,
) -> Result<(), ResourceError> {
    let tags: Vec<Tag> = ctx
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    ctx.call("CreateTags", || {
        client
            .create_tags()
            .resources(id)
            .set_tags(Some(tags.clone()))
            .send()
    })
    .await?;
    Ok(())
}

/// The user's tags among `tags` (the engine's own `platform:` tags left out).
pub(crate) fn user_tags(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .filter(|(k, _)| !k.starts_with("platform:"))
        .collect()
}

/// Filters that select what the engine created for this context's resource.
pub(crate) fn own_filters(ctx: &Context) -> Vec<Filter> {
    ctx.tags()
        .into_iter()
        .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
        .collect()
}

/// Filter on the stack tag alone (every resource of a stack).
pub fn stack_filter(stack: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{STACK_TAG}"))
        .values(stack)
        .build()
}

/// Brings the user tags of resource `id` from `old` to `new` (CreateTags / DeleteTags as needed).
pub(crate) async fn update_tags(
    ctx: &Context,
    client: &Client,
    id: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<(), ResourceError> {
    let changes = platform_core::TagChanges::between(old, new);
    let removed: Vec<Tag> = changes
        .removed
        .iter()
        .map(|k| Tag::builder().key(k).build())
        .collect();
    let set: Vec<Tag> = changes
        .set
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    if !removed.is_empty() {
        ctx.call("DeleteTags", || {
            client
                .delete_tags()
                .resources(id)
                .set_tags(Some(removed.clone()))
                .send()
        })
        .await?;
    }
    if !set.is_empty() {
        ctx.call("CreateTags", || {
            client
                .create_tags()
                .resources(id)
                .set_tags(Some(set.clone()))
                .send()
        })
        .await?;
    }
    Ok(())
}

/// Deletes with `f`, retrying `DependencyViolation` (dependents still going away: ENIs of stopping
/// tasks, subnets, gateways) within the engine's retry bound; already gone is done.
pub(crate) async fn delete_when_free<T, E, F, Fut>(
    ctx: &Context,
    operation: &str,
    f: F,
) -> Result<(), ResourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<
            Output = Result<
                T,
                aws_smithy_runtime_api::client::result::SdkError<
                    E,
                    aws_smithy_runtime_api::http::Response,
                >,
            >,
        >,
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata
        + std::error::Error
        + Send
        + Sync
        + 'static,
{
    ctx.call_retrying(operation, |e| e.has_code("DependencyViolation"), f)
        .await
        .gone_is_ok()
}
