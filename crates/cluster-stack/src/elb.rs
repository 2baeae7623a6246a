//! What the load balancer's resources share: the Elastic Load Balancing client, tags by ARN, and
//! names within ELB's 32 characters.

use std::collections::BTreeMap;

use aws_sdk_elasticloadbalancingv2::types::Tag;
use platform_core::resource::{Idempotent, TagChanges};
use platform_core::{Context, Resource, ResourceError, ValidationError, error::GoneExt};

/// The Elastic Load Balancing (v2) client, built once per engine with the engine's interceptors.
pub(crate) fn client(
    ctx: &Context,
) -> Result<aws_sdk_elasticloadbalancingv2::Client, ResourceError> {
    platform_core::aws_client!(ctx, aws_sdk_elasticloadbalancingv2)
}

/// As ELB tags.
pub(crate) fn elb_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// The tags of the load balancer, target group, listener or rule `arn` (`DescribeTags`), as
/// (key, value) pairs; `None` when it is gone.
pub(crate) async fn tags_of(
    ctx: &Context,
    arn: &str,
) -> Result<Option<Vec<(String, String)>>, ResourceError> {
    let client = client(ctx)?;
    let out = ctx
        .call("DescribeTags", Idempotent, || {
            client.describe_tags().resource_arns(arn).send()
        })
        .await
        .gone_is_none()?;
    Ok(out.map(|o| {
        o.tag_descriptions()
            .iter()
            .flat_map(|d| d.tags())
            .filter_map(|t| {
                Some((
                    t.key()?.to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect()
    }))
}

/// Pairs as the engine's tag rules read them.
pub(crate) fn pairs(tags: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    tags.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

/// Adopts `arn`, found by its name, when its tags say it is this resource's ([`Context::claim`]).
pub(crate) async fn claim(ctx: &Context, what: &str, arn: &str) -> Result<(), ResourceError> {
    let tags = tags_of(ctx, arn).await?.unwrap_or_default();
    ctx.claim(what, pairs(&tags))
}

/// Brings the user tags of `arn` from `old` to `new` (`RemoveTags` / `AddTags`).
pub(crate) async fn update_tags(
    ctx: &Context,
    arn: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<(), ResourceError> {
    let client = client(ctx)?;
    let untag = async |keys: Vec<String>| {
        ctx.call("RemoveTags", Idempotent, || {
            client
                .remove_tags()
                .resource_arns(arn)
                .set_tag_keys(Some(keys.clone()))
                .send()
        })
        .await
        .map(drop)
    };
    let tag = async |set: BTreeMap<String, String>| {
        ctx.call("AddTags", Idempotent, || {
            client
                .add_tags()
                .resource_arns(arn)
                .set_tags(Some(elb_tags(&set)))
                .send()
        })
        .await
        .map(drop)
    };
    TagChanges::between(old, new).apply(untag, tag).await
}

/// Tags `arn` with the engine's ownership tags: an imported resource becomes ours.
pub(crate) async fn tag_as_ours(ctx: &Context, arn: &str) -> Result<(), ResourceError> {
    update_tags(ctx, arn, &BTreeMap::new(), &ctx.tags_with(&BTreeMap::new())).await
}

/// How an ELB kind is looked up: by its natural key (a balancer's or group's name, unique in the
/// region; a listener's port on its balancer; a rule's priority on its listener) and by id. What
/// `find`, `import` and a create's look-first share.
pub(crate) trait Lookup: Resource {
    /// It in an error (`load balancer my-ecs-cluster-alb`).
    fn what(&self) -> String;
    /// Its ARN.
    fn arn(outputs: &Self::Outputs) -> &str;
    /// The one that holds this resource's natural key, if any.
    fn natural(
        &self,
        ctx: &Context,
    ) -> impl Future<Output = Result<Option<Self::Outputs>, ResourceError>> + Send;
    /// The one with ARN (or, where names are unique, name) `id`, if any.
    fn by_id(
        ctx: &Context,
        id: &str,
    ) -> impl Future<Output = Result<Option<Self::Outputs>, ResourceError>> + Send;
}

/// The holder of `r`'s natural key when its tags say it is `r`'s ([`Context::claim`]).
pub(crate) async fn find<R: Lookup>(
    r: &R,
    ctx: &Context,
) -> Result<Option<R::Outputs>, ResourceError> {
    let Some(outputs) = r.natural(ctx).await? else {
        return Ok(None);
    };
    claim(ctx, &r.what(), R::arn(&outputs)).await?;
    Ok(Some(outputs))
}

/// The one with id `id`, tagged as this stack's.
pub(crate) async fn import<R: Lookup>(
    ctx: &Context,
    id: &str,
) -> Result<Option<R::Outputs>, ResourceError> {
    let Some(outputs) = R::by_id(ctx, id).await? else {
        return Ok(None);
    };
    tag_as_ours(ctx, R::arn(&outputs)).await?;
    Ok(Some(outputs))
}

/// What a create does first where AWS answers a repeat with the existing resource: the holder of
/// the natural key, when it is `r`'s (an earlier create whose answer was lost), brought to the
/// declared settings; one of someone else's is refused ([`Context::claim`]); `None` when there is
/// none.
pub(crate) async fn adopt<R: Lookup>(
    r: &R,
    ctx: &Context,
) -> Result<Option<R::Outputs>, ResourceError> {
    let Some(outputs) = find(r, ctx).await? else {
        return Ok(None);
    };
    let live = r
        .read(ctx, &outputs)
        .await?
        .ok_or_else(|| ResourceError::missing("a lookup", &r.what()))?;
    r.update(ctx, &live.inputs, &outputs).await.map(Some)
}

/// ELB's longest load balancer and target group name.
pub(crate) const MAX_NAME: usize = 32;

/// `name` when it fits ELB's 32 characters; else its first 25 characters (without a trailing
/// hyphen) and a hyphen and 6 hex digits of a hash of the whole name, the same on every run and
/// machine, so that two long names that share a prefix stay apart.
pub(crate) fn short_name(name: &str) -> String {
    if name.len() <= MAX_NAME {
        return name.to_owned();
    }
    let hash = crc32fast::hash(name.as_bytes()) & 0x00ff_ffff;
    let head = name[..25].trim_end_matches('-');
    format!("{head}-{hash:06x}")
}

/// A load balancer or target group name: 1 to 32 letters, digits and hyphens, not starting or
/// ending with a hyphen, and (a load balancer's) not starting with `internal-`.
///
/// # Errors
/// Naming `field` and the value.
pub(crate) fn validate_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let reason = if name.is_empty() || name.len() > MAX_NAME {
        "is 1 to 32 characters"
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        "has only letters, digits and hyphens"
    } else if name.starts_with('-') || name.ends_with('-') {
        "does not start or end with a hyphen"
    } else if name.starts_with("internal-") {
        "does not start with internal-"
    } else {
        return Ok(());
    };
    Err(ValidationError::new(
        field,
        name,
        format!("an Elastic Load Balancing name {reason}"),
    ))
}

/// A balancer's idle timeout: 1 to 4000 seconds.
///
/// # Errors
/// Naming `field` and the value.
pub(crate) fn validate_idle_timeout(field: &str, secs: u32) -> Result<(), ValidationError> {
    if (1..=4000).contains(&secs) {
        return Ok(());
    }
    Err(ValidationError::new(field, secs, "is 1 to 4000 seconds"))
}

/// A target group's deregistration delay: 0 to 3600 seconds.
///
/// # Errors
/// Naming `field` and the value.
pub(crate) fn validate_deregistration_delay(field: &str, secs: u32) -> Result<(), ValidationError> {
    if secs <= 3600 {
        return Ok(());
    }
    Err(ValidationError::new(field, secs, "is 0 to 3600 seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_name_is_shortened_the_same_way_every_time_and_two_stay_apart() {
        assert_eq!(short_name("my-ecs-cluster-alb"), "my-ecs-cluster-alb");
        let a = short_name("staging-my-ecs-cluster-frontend-tg");
        let b = short_name("staging-my-ecs-cluster-frontend-tg2");
        assert_eq!(a.len(), 32);
        assert_eq!(a, short_name("staging-my-ecs-cluster-frontend-tg"));
        assert!(a.starts_with("staging-my-ecs-cluster-fr-"), "{a}");
        assert_ne!(a, b);
        assert!(validate_name("name", &a).is_ok());
        // Exactly 32 is kept; a cut that ends on a hyphen does not leave two.
        let exact = "a".repeat(32);
        assert_eq!(short_name(&exact), exact);
        let cut = short_name("abcdefghijklmnopqrstuvwx-yzabcdefghij");
        assert!(
            cut.starts_with("abcdefghijklmnopqrstuvwx-") && !cut.contains("--"),
            "{cut}"
        );
    }

    #[test]
    fn names_are_refused_with_the_rule_they_break() {
        let e = |n: &str| validate_name("load_balancer.name", n).unwrap_err().reason;
        assert!(e("").contains("1 to 32"));
        assert!(e(&"a".repeat(33)).contains("1 to 32"));
        assert!(e("a_b").contains("letters, digits and hyphens"));
        assert!(e("-ab").contains("hyphen"));
        assert!(e("ab-").contains("hyphen"));
        assert!(e("internal-ab").contains("internal-"));
        assert!(validate_name("n", "my-alb-1").is_ok());
    }
}
