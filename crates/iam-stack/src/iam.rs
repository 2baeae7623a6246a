//! What every IAM resource shares: the client, tags, and not-found handling.

use std::collections::BTreeMap;

use aws_sdk_iam::Client;
use aws_sdk_iam::types::Tag;
use platform_core::{Context, ResourceError};

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
    user.iter()
        .map(|(k, v)| tag(k, v))
        .chain(ctx.tags().iter().map(|(k, v)| tag(k, v)))
        .collect()
}

/// The user's tags among `tags` (the engine's own `platform:` tags left out).
pub(crate) fn user_tags(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter(|t| !t.key().starts_with("platform:"))
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

/// Whether `tags` carry this context's stack and resource tags: the resource is ours to adopt.
pub(crate) fn is_ours(ctx: &Context, tags: &[Tag]) -> bool {
    ctx.tags()
        .iter()
        .all(|(k, v)| tags.iter().any(|t| t.key() == *k && t.value() == v))
}

/// The tag changes from `old` to `new`: tags to set, keys to remove.
pub(crate) fn tag_diff(
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<(Vec<Tag>, Vec<String>), ResourceError> {
    let changes = platform_core::TagChanges::between(old, new);
    let set = changes
        .set
        .iter()
        .map(|(k, v)| tag(k, v))
        .collect::<Result<_, _>>()?;
    Ok((set, changes.removed))
}
