//! What every EC2 resource shares: the client, tags, and lookups by the engine's tags.

use platform_core::resource::Idempotent;
use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use platform_core::{Context, Resource, ResourceError, error::GoneExt, resource::STACK_TAG};

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
    for (k, v) in ctx.tags_with(tags) {
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
    ctx.call("CreateTags", Idempotent, || {
        client
            .create_tags()
            .resources(id)
            .set_tags(Some(tags.clone()))
            .send()
    })
    .await?;
    Ok(())
}

/// The user's tags among `tags` (the engine's own tags left out).
pub(crate) fn user_tags(tags: &[Tag]) -> BTreeMap<String, String> {
    platform_core::resource::user_tags(
        tags.iter()
            .filter_map(|t| Some((t.key()?, t.value().unwrap_or_default()))),
    )
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
    id: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Result<(), ResourceError> {
    let client = &client(ctx)?;
    let untag = async |keys: Vec<String>| {
        let tags: Vec<Tag> = keys.iter().map(|k| Tag::builder().key(k).build()).collect();
        ctx.call("DeleteTags", Idempotent, || {
            client
                .delete_tags()
                .resources(id)
                .set_tags(Some(tags.clone()))
                .send()
        })
        .await
        .map(drop)
    };
    let tag = async |set: BTreeMap<String, String>| {
        let tags: Vec<Tag> = set
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        ctx.call("CreateTags", Idempotent, || {
            client
                .create_tags()
                .resources(id)
                .set_tags(Some(tags.clone()))
                .send()
        })
        .await
        .map(drop)
    };
    platform_core::resource::TagChanges::between(old, new)
        .apply(untag, tag)
        .await
}

/// Sends delete call `f`; an object already gone is deleted.
pub(crate) async fn delete<T, E, F, Fut>(
    ctx: &Context,
    operation: &str,
    f: F,
) -> Result<(), ResourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    ctx.call(operation, Idempotent, f).await.gone_is_ok()
}

/// How long AWS may refuse to delete (or detach) what a stopped Fargate task's network interface
/// still uses, with `DependencyViolation`: releasing the interface routinely takes minutes. The
/// budgets are the delete timeouts Terraform's AWS provider documents for the same resources
/// (`aws_subnet` 20m, `aws_security_group` 15m, `aws_internet_gateway` 20m, `aws_vpc` and
/// `aws_route_table` 5m).
pub(crate) mod delete_budget {
    use std::time::Duration;

    /// A subnet: its interfaces go first.
    pub(crate) const SUBNET: Duration = Duration::from_secs(20 * 60);
    /// A security group: interfaces that use it go first.
    pub(crate) const SECURITY_GROUP: Duration = Duration::from_secs(15 * 60);
    /// An internet gateway's detach: public addresses in the VPC are unmapped first.
    pub(crate) const GATEWAY_DETACH: Duration = Duration::from_secs(20 * 60);
    /// A VPC: its subnets, gateways and groups are deleted first (by this engine).
    pub(crate) const VPC: Duration = Duration::from_secs(5 * 60);
    /// A route table: its associations are deleted first (by this engine).
    pub(crate) const ROUTE_TABLE: Duration = Duration::from_secs(5 * 60);
}

/// Deletes with `f`, retrying `DependencyViolation` (dependents still going away: ENIs of stopping
/// tasks, subnets, gateways) until `budget` has passed (see [`delete_budget`]), with a progress
/// line at each wait; already gone is done.
pub(crate) async fn delete_when_free<T, E, F, Fut>(
    ctx: &Context,
    operation: &str,
    budget: std::time::Duration,
    f: F,
) -> Result<(), ResourceError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    ctx.call(
        operation,
        Idempotent
            .retrying(|e| e.has_code("DependencyViolation"))
            .within(budget),
        f,
    )
    .await
    .gone_is_ok()
}

/// How an EC2 object is looked up: by its id, or by filters (the engine's tags, a name).
#[derive(Clone, Debug)]
pub(crate) enum Lookup<'a> {
    /// The one object with this id (none when EC2 answers that it does not exist).
    Id(&'a str),
    /// Every object the filters select.
    Filters(Vec<Filter>),
}

impl Lookup<'_> {
    /// The ids to describe, for the `Describe*` call's id list.
    pub(crate) fn ids(&self) -> Option<Vec<String>> {
        match self {
            Self::Id(id) => Some(vec![(*id).to_owned()]),
            Self::Filters(_) => None,
        }
    }

    /// The filters, for the `Describe*` call's filter list.
    pub(crate) fn filters(&self) -> Option<Vec<Filter>> {
        match self {
            Self::Id(_) => None,
            Self::Filters(f) => Some(f.clone()),
        }
    }
}

/// An EC2 object the network stack makes and tags (VPC, subnet, internet gateway, route table,
/// security group): one `Describe*` call looks it up by id or by filters, and its outputs are read
/// off its description. Its `read`, `find` (by the engine's tags) and `import` (by id) are built on
/// that: [`describe_id`], [`find`], [`import`].
pub(crate) trait Ec2Object: Resource {
    /// What messages call it (`VPC`).
    const NOUN: &'static str;
    /// How EC2 describes one.
    type Described: Send + Sync;

    /// The `Describe*` call: what `lookup` selects; empty when nothing is (an unknown id included).
    fn describe(
        ctx: &Context,
        client: &Client,
        lookup: Lookup<'_>,
    ) -> impl Future<Output = Result<Vec<Self::Described>, ResourceError>> + Send;

    /// Its id and outputs, from its description; `None` when EC2 left out what they need.
    fn outputs_of(described: &Self::Described) -> Option<(String, Self::Outputs)>;
}

/// The [`Ec2Object::describe`] of a kind: its `Describe*` call (operation name, client method, id
/// list setter, list in the answer), by ids or filters; an unknown id is an empty list.
macro_rules! describe_call {
    ($op:literal, $call:ident, $ids:ident, $list:ident) => {
        async fn describe(
            ctx: &platform_core::Context,
            client: &aws_sdk_ec2::Client,
            lookup: $crate::ec2::Lookup<'_>,
        ) -> Result<Vec<Self::Described>, platform_core::ResourceError> {
            use platform_core::error::GoneExt as _;
            let out = ctx
                .call($op, platform_core::resource::Idempotent, || {
                    client
                        .$call()
                        .$ids(lookup.ids())
                        .set_filters(lookup.filters())
                        .send()
                })
                .await
                .gone_is_none()?;
            Ok(out.map(|o| o.$list().to_vec()).unwrap_or_default())
        }
    };
}
pub(crate) use describe_call;

/// Object `id` of kind `R` as EC2 describes it; `None` when it does not exist.
pub(crate) async fn describe_id<R: Ec2Object>(
    ctx: &Context,
    id: &str,
) -> Result<Option<R::Described>, ResourceError> {
    Ok(R::describe(ctx, &client(ctx)?, Lookup::Id(id))
        .await?
        .into_iter()
        .next())
}

/// The object of kind `R` that carries this resource's tags (one an interrupted create made): what
/// `find` returns. [`ResourceError::Ambiguous`] when several do.
pub(crate) async fn find<R: Ec2Object>(ctx: &Context) -> Result<Option<R::Outputs>, ResourceError> {
    let client = client(ctx)?;
    let found = R::describe(ctx, &client, Lookup::Filters(own_filters(ctx))).await?;
    platform_core::resource::found_one(R::NOUN, found.iter().filter_map(R::outputs_of))
}

/// Every object of kind `R` that carries this resource's tags (the instance token included when the
/// context has one), by id: what `find_all` returns (the engine deletes twins and sweeps with it).
pub(crate) async fn find_all<R: Ec2Object>(
    ctx: &Context,
) -> Result<Vec<R::Outputs>, ResourceError> {
    let client = client(ctx)?;
    let found = R::describe(ctx, &client, Lookup::Filters(own_filters(ctx))).await?;
    let mut all: Vec<(String, R::Outputs)> = found.iter().filter_map(R::outputs_of).collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all.into_iter().map(|(_, outputs)| outputs).collect())
}

/// Object `id` of kind `R`, tagged with the engine's tags so that it is this stack's: what `import`
/// returns. `None` when nothing has that id.
pub(crate) async fn import<R: Ec2Object>(
    ctx: &Context,
    id: &str,
) -> Result<Option<R::Outputs>, ResourceError> {
    let Some((_, outputs)) = describe_id::<R>(ctx, id)
        .await?
        .as_ref()
        .and_then(R::outputs_of)
    else {
        return Ok(None);
    };
    tag_as_ours(ctx, &client(ctx)?, id).await?;
    Ok(Some(outputs))
}

/// The outputs of the object a create call answered with (`described`, from its answer).
///
/// # Errors
/// [`ResourceError::MissingInResponse`] when the answer left out the object or its id.
pub(crate) fn created<R: Ec2Object>(
    operation: &str,
    described: Option<&R::Described>,
) -> Result<R::Outputs, ResourceError> {
    described
        .and_then(R::outputs_of)
        .map(|(_, outputs)| outputs)
        .ok_or_else(|| ResourceError::missing(operation, &format!("the new {}'s id", R::NOUN)))
}
