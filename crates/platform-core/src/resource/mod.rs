//! The resource abstraction: what a resource type states and what the engine calls.
//!
//! A resource type is a serde struct of its inputs that implements [`Resource`]: its outputs type, its
//! kind and AWS service, which input fields force a replacement, validation, and create / read / update
//! / delete (plus `find`, which heals an interrupted create). The engine works on a type-erased form
//! ([`Registry`]) so that a stack can hold many kinds and so that destroy works from recorded state.
//!
//! - this file: the author's trait, its outputs, the replacement rules ([`ForceNew`]), [`Handle`];
//! - `context`: what an operation gets ([`Context`]): identity, tags, clients, early outputs;
//! - `call`: how it sends AWS calls ([`Context::call`] with a [`CallPolicy`]) and waits;
//! - `registry`: the kinds a stack uses, type-erased ([`Registry`]).

use std::fmt;
use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ResourceError, ValidationError};

mod call;
mod context;
mod registry;

pub use crate::tags::{ENGINE_TAG_PREFIX, TagChanges, user_tags};
pub use crate::types::BoxFuture;
pub use crate::validate::{is_lowercase_name, validate_name, validate_tags};
pub use call::{CallPolicy, Idempotent, Once, RetryPolicy};
pub use context::Context;
pub(crate) use context::{Published, Shared};
pub(crate) use registry::KindOps;
pub use registry::Registry;
pub use tokio_util::sync::CancellationToken;

/// Tag key carrying the stack name on every resource the engine creates.
pub const STACK_TAG: &str = "platform:stack";
/// Tag key carrying the resource's logical name on every resource the engine creates.
pub const RESOURCE_TAG: &str = "platform:resource";
/// Tag key carrying the instance token of a create: tells one instance of a logical resource from
/// another (a replacement's new instance from the deposed one) and settles a create whose outcome
/// was unknown.
pub const INSTANCE_TAG: &str = "platform:instance";

/// A resource's outputs: a serde struct plus a matching struct of typed references to its fields.
///
/// Write both with [`resource_outputs!`](crate::resource_outputs), which keeps field names in step.
pub trait ResourceOutputs: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// One [`Ref`](crate::Ref) per output field; what a [`Handle`](crate::Handle) dereferences to.
    type Refs: Clone + Send + Sync + 'static;
    /// The references to resource `resource`'s outputs.
    fn refs(resource: &str) -> Self::Refs;
}

/// The live state of a resource as [`Resource::read`] found it.
#[derive(Clone, Debug)]
pub struct Observed<R: Resource> {
    /// The inputs as they are now in AWS (what a refresh records, so that drift shows in a plan).
    pub inputs: R,
    /// The outputs as they are now.
    pub outputs: R::Outputs,
}

/// A resource type. The implementing struct *is* the resource's inputs.
///
/// Inputs that come from other resources are [`Input<T>`](crate::Input); the engine resolves them before
/// any method below runs, so implementations call [`Input::get`](crate::Input::get) freely.
///
/// # Guarantees the engine gives implementations
/// - `create`, `update`, `read`, `delete` and `find` only run after `validate` passed and every
///   reference was resolved.
/// - An intent is recorded durably before `create`, `update` and `delete`, and the result after; when a
///   `create` was interrupted, the next run calls `find` before creating again.
/// - Only the changes [`force_new`](Self::force_new) names lead to delete-and-create; every other change
///   is given to `update`. A kind that does not set [`UPDATES_IN_PLACE`](Self::UPDATES_IN_PLACE) is
///   replaced on any change, and its `update` is never called.
///
/// # What implementations must do
/// - Tag what they create with [`Context::tags`] where the AWS API allows tags, and pass
///   [`Context::instance_token`] as the API's idempotency token where it has one, so `find` can work.
/// - Send a create that must not be repeated with [`Context::call`] and the [`Once`] policy.
/// - Treat "not found" as success in `delete` and as `Ok(None)` in `read`.
/// - Return from `read` the inputs normalised the way they are declared (sorted sets, decoded
///   documents), so that an unchanged resource plans as `Same`.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The outputs the resource has once it exists.
    type Outputs: ResourceOutputs;

    /// A stable name for the kind, recorded in state, e.g. `ec2:vpc`. Never change it once released.
    const KIND: &'static str;
    /// The AWS service the resource's calls go to (`ec2`, `iam`, ...): the per-service concurrency bound.
    const SERVICE: &'static str;
    /// Whether a replacement deletes the old resource before creating the new one (for unique names
    /// that cannot exist twice). By default the new one is created first and the old one deleted after
    /// everything that used it has been re-pointed.
    const DELETE_BEFORE_REPLACE: bool = false;
    /// Whether [`update`](Self::update) changes the resource in place. Off by default: a kind that
    /// does not write `update` plans every change as a replacement (seen in the plan, never refused
    /// at apply time). A kind that writes `update` sets it, and names in
    /// [`force_new`](Self::force_new) the fields AWS cannot change in place.
    const UPDATES_IN_PLACE: bool = false;

    /// The changes from `previous` to `self` that cannot be made in place, so that the resource is
    /// replaced (a new one made, the old one deleted). Written with [`force_new!`](crate::force_new),
    /// which compares the named fields (a misspelt field does not compile), or
    /// [`ForceNew::any_change`] for a resource that is never updated. The default: none, every change
    /// is an update.
    ///
    /// In a plan, an input that refers to an output not known yet (of a resource being replaced) is
    /// still a reference in `self`, and so differs from the recorded value.
    ///
    /// ```
    /// # use platform_core::{ForceNew, force_new};
    /// # #[derive(PartialEq)] struct Role { name: String, path: String, policy: String }
    /// # impl Role {
    /// fn force_new(&self, previous: &Self) -> ForceNew {
    ///     force_new!(self, previous; name, path)
    /// }
    /// # }
    /// ```
    fn force_new(&self, previous: &Self) -> ForceNew {
        let _ = previous;
        ForceNew::none()
    }

    /// Checks the inputs before any AWS call. References are not known yet: check only known values.
    ///
    /// # Errors
    /// A [`ValidationError`] naming the field and the value.
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }

    /// Creates the resource.
    ///
    /// # Errors
    /// Any [`ResourceError`]; the engine records that nothing exists unless `find` later finds it.
    fn create(
        &self,
        ctx: &Context,
    ) -> impl Future<Output = Result<Self::Outputs, ResourceError>> + Send;

    /// Reads the live resource; `Ok(None)` when it no longer exists.
    ///
    /// # Errors
    /// Any [`ResourceError`] other than not-found.
    fn read(
        &self,
        ctx: &Context,
        outputs: &Self::Outputs,
    ) -> impl Future<Output = Result<Option<Observed<Self>>, ResourceError>> + Send;

    /// Changes the live resource from `previous` to `self` in place. Nothing [`force_new`](Self::force_new)
    /// names differs; compare `self` with `previous` to see what does.
    ///
    /// The default refuses, naming the kind: right for a kind with nothing to change in place (its
    /// `force_new` is [`ForceNew::any_change`], or it has no inputs), which the engine never asks to
    /// update. Every other kind writes it.
    ///
    /// # Errors
    /// Any [`ResourceError`]; the engine keeps the previous inputs recorded, so the next run retries.
    fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &Self::Outputs,
    ) -> impl Future<Output = Result<Self::Outputs, ResourceError>> + Send {
        let _ = (ctx, previous, outputs);
        let refused = ResourceError::Failed {
            message: format!(
                "{} cannot be changed in place (its force_new must name every change)",
                Self::KIND
            ),
        };
        async move { Err(refused) }
    }

    /// Deletes the resource. Already gone is success.
    ///
    /// # Errors
    /// Any [`ResourceError`]; the resource stays recorded and the next run retries.
    fn delete(
        &self,
        ctx: &Context,
        outputs: &Self::Outputs,
    ) -> impl Future<Output = Result<(), ResourceError>> + Send;

    /// Finds the instance that an interrupted create, or one whose outcome is unknown, may have made,
    /// so that it is adopted instead of created twice: by its tags ([`Context::tags`], the instance
    /// token included), or by its natural key (a name) where AWS keys it so or takes no tags.
    ///
    /// Required: without it a crash between a create and its record would leave a twin.
    ///
    /// # Errors
    /// [`ResourceError::NotOurs`] when the natural key is taken by a resource with other owner tags
    /// ([`Context::claim`]); [`ResourceError::Ambiguous`] when several carry the tags
    /// ([`found_one`]); any other [`ResourceError`].
    fn find(
        &self,
        ctx: &Context,
    ) -> impl Future<Output = Result<Option<Self::Outputs>, ResourceError>> + Send;

    /// Every live resource of this kind that carries the tags of `ctx` ([`Context::tags`]: the stack
    /// and the resource, and the instance token when `ctx` has one), for kinds that AWS lists by
    /// tag. The engine uses it twice: a settle that finds several instances with the create's token
    /// adopts one and deletes the others (a create AWS carried out twice, late), and a `destroy`
    /// ends by deleting whatever still carries the stack's and a resource's tags (the *sweep*). The
    /// default lists nothing: a kind found by its name (unique in AWS) has no twin to sweep.
    ///
    /// # Errors
    /// Any [`ResourceError`] of the lookup.
    fn find_all(
        &self,
        ctx: &Context,
    ) -> impl Future<Output = Result<Vec<Self::Outputs>, ResourceError>> + Send {
        let _ = ctx;
        async { Ok(Vec::new()) }
    }

    /// Looks up an existing resource by `id` (its id, name or ARN: each kind says which), tags it with
    /// the engine's ownership tags ([`Context::tags`]) so that it is known as this stack's resource,
    /// and returns its outputs: what [`Engine::import`](crate::Engine::import) records. `None` when
    /// nothing has that id. The default refuses: the kind cannot be imported.
    ///
    /// # Errors
    /// [`ResourceError::Invalid`] naming `id` for a kind that cannot be imported or an id of the
    /// wrong form; any other [`ResourceError`].
    fn import(
        &self,
        ctx: &Context,
        id: &str,
    ) -> impl Future<Output = Result<Option<Self::Outputs>, ResourceError>> + Send {
        let _ = ctx;
        let refused = ResourceError::Invalid(ValidationError::new(
            "id",
            id,
            format!("{} resources cannot be imported", Self::KIND),
        ));
        async move { Err(refused) }
    }

    /// Runs after an instance made by an earlier, unfinished create was found and adopted (and
    /// brought to the declared inputs), before it is recorded: what `create` does after the call
    /// that made the resource and an adoption must not skip, such as waiting for an ECS service's
    /// rollout. The default does nothing.
    ///
    /// # Errors
    /// Any [`ResourceError`]; the resource then stays unrecorded and the next run adopts it again.
    fn adopted(
        &self,
        ctx: &Context,
        outputs: &Self::Outputs,
    ) -> impl Future<Output = Result<(), ResourceError>> + Send {
        let _ = (ctx, outputs);
        async { Ok(()) }
    }
}

/// The changes a resource cannot take in place: what [`Resource::force_new`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForceNew {
    /// Every change replaces.
    any: bool,
    /// The fields that changed and cannot change in place.
    fields: Vec<&'static str>,
    /// The new instance would collide with the old one: the old one is deleted first.
    delete_first: bool,
}

impl ForceNew {
    /// Nothing forces a replacement.
    pub fn none() -> Self {
        Self::default()
    }

    /// This rule, and every other change replaces the resource too: what a kind without an in-place
    /// update gets (its delete-first rule kept).
    pub(crate) fn or_any_change(mut self) -> Self {
        self.any = true;
        self
    }

    /// Every change replaces the resource (an immutable one: a task definition revision, a policy
    /// attachment).
    pub fn any_change() -> Self {
        Self {
            any: true,
            fields: Vec::new(),
            delete_first: false,
        }
    }

    /// A replacement for this change deletes the old instance before it creates the new one, when
    /// `collides`: AWS would refuse the new one while the old one exists (a security group's name
    /// in its VPC, a subnet's block that overlaps the old one). Its dependents that are replaced
    /// too go first; a plan shows it as `replace (delete first)`. For a kind whose every
    /// replacement collides, [`Resource::DELETE_BEFORE_REPLACE`] says it once.
    ///
    /// ```
    /// # use platform_core::{ForceNew, force_new};
    /// #[derive(PartialEq)]
    /// struct Group { name: String, description: String }
    /// let old = Group { name: "web".into(), description: "HTTP".into() };
    /// let new = Group { name: "web".into(), description: "HTTP in".into() };
    /// let rule = force_new!(new, old; name, description).delete_first(new.name == old.name);
    /// assert!(rule.deletes_first());
    /// ```
    #[must_use]
    pub fn delete_first(mut self, collides: bool) -> Self {
        // Only a change that replaces can collide: without one, this is `none()` still.
        self.delete_first |= collides && (self.any || !self.fields.is_empty());
        self
    }

    /// Whether a replacement deletes the old instance first (see [`delete_first`](Self::delete_first)).
    pub fn deletes_first(&self) -> bool {
        self.delete_first
    }

    /// Adds `field` when `changed`. Called by [`force_new!`](crate::force_new), which names the
    /// field from the struct's own field (use that).
    #[doc(hidden)]
    #[must_use]
    pub fn field(mut self, field: &'static str, changed: bool) -> Self {
        if changed {
            self.fields.push(field);
        }
        self
    }

    /// The fields among `changed` (the inputs that differ) that force a replacement.
    pub(crate) fn forced(&self, changed: impl IntoIterator<Item = String>) -> Vec<String> {
        changed
            .into_iter()
            .filter(|c| self.any || self.fields.contains(&c.as_str()))
            .collect()
    }
}

/// The [`ForceNew`] of the named fields of two values of a resource type: each field whose values
/// differ. A name that is not a field of the type does not compile.
///
/// ```
/// use platform_core::{ForceNew, force_new};
/// #[derive(Clone, PartialEq)]
/// struct Subnet { vpc_id: String, cidr_block: String, public: bool }
/// let old = Subnet { vpc_id: "vpc-1".into(), cidr_block: "10.0.1.0/24".into(), public: false };
/// // Making it public is an update; moving it to another VPC is a new subnet.
/// let public = Subnet { public: true, ..old.clone() };
/// assert_eq!(force_new!(public, old; vpc_id, cidr_block), ForceNew::none());
/// let moved = Subnet { vpc_id: "vpc-2".into(), ..old.clone() };
/// assert_eq!(force_new!(moved, old; vpc_id, cidr_block), ForceNew::none().field("vpc_id", true));
/// ```
///
/// ```compile_fail,E0609
/// # use platform_core::force_new;
/// # struct Subnet { vpc_id: String }
/// # let (a, b) = (Subnet { vpc_id: String::new() }, Subnet { vpc_id: String::new() });
/// force_new!(&a, &b; vpc_idd);
/// ```
#[macro_export]
macro_rules! force_new {
    ($new:expr, $old:expr; $($field:ident),+ $(,)?) => {{
        let (new, old) = (&$new, &$old);
        $crate::ForceNew::none()$(.field(stringify!($field), new.$field != old.$field))+
    }};
}

/// The one live resource among `found` that carries a resource's tags, or none.
///
/// ```
/// use platform_core::resource::found_one;
/// assert_eq!(found_one("VPC", Vec::<(String, u8)>::new()).unwrap(), None);
/// assert_eq!(found_one("VPC", [("vpc-1".to_owned(), 1)]).unwrap(), Some(1));
/// assert!(found_one("VPC", [("vpc-1".to_owned(), 1), ("vpc-2".to_owned(), 2)]).is_err());
/// ```
///
/// # Errors
/// [`ResourceError::Ambiguous`] when there are several: taking the first would adopt a stranger.
pub fn found_one<T>(
    what: &str,
    found: impl IntoIterator<Item = (String, T)>,
) -> Result<Option<T>, ResourceError> {
    let mut found: Vec<(String, T)> = found.into_iter().collect();
    if found.len() > 1 {
        return Err(ResourceError::Ambiguous {
            what: what.to_owned(),
            found: found.into_iter().map(|(id, _)| id).collect(),
        });
    }
    Ok(found.pop().map(|(_, t)| t))
}

/// A handle to a declared resource: its logical name, and (through `Deref`) typed refs to its outputs.
pub struct Handle<R: Resource> {
    name: String,
    refs: <R::Outputs as ResourceOutputs>::Refs,
}

impl<R: Resource> Handle<R> {
    pub(crate) fn new(name: String) -> Self {
        let refs = <R::Outputs as ResourceOutputs>::refs(&name);
        Self { name, refs }
    }

    /// The resource's logical name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<R: Resource> Clone for Handle<R> {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            refs: self.refs.clone(),
        }
    }
}

impl<R: Resource> std::ops::Deref for Handle<R> {
    type Target = <R::Outputs as ResourceOutputs>::Refs;
    fn deref(&self) -> &Self::Target {
        &self.refs
    }
}

impl<R: Resource> fmt::Debug for Handle<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle<{}>({})", R::KIND, self.name)
    }
}

/// Declares a resource's outputs struct and its typed refs struct in one go.
///
/// ```
/// use platform_core::resource_outputs;
/// resource_outputs! {
///     /// What a VPC has once created.
///     pub struct VpcOutputs / VpcRefs {
///         /// The VPC id.
///         pub vpc_id: String,
///     }
/// }
/// let refs = <VpcOutputs as platform_core::ResourceOutputs>::refs("ecs-vpc");
/// assert_eq!(refs.vpc_id.target().to_string(), "ecs-vpc.vpc_id");
/// assert_eq!(VpcOutputs::new("vpc-1".into()).vpc_id, "vpc-1");
/// ```
#[macro_export]
macro_rules! resource_outputs {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident / $refs:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
        }

        #[doc = concat!("Typed references to the fields of [`", stringify!($name), "`].")]
        #[derive(Clone, Debug)]
        $vis struct $refs {
            $( $(#[$fmeta])* $fvis $field: $crate::Ref<$ty>, )*
        }

        impl $name {
            #[doc = concat!("A [`", stringify!($name), "`] of its fields, in their order.")]
            #[allow(clippy::too_many_arguments, reason = "one argument per field, in order")]
            $vis fn new($( $field: $ty ),*) -> Self {
                Self { $( $field, )* }
            }
        }

        impl $crate::ResourceOutputs for $name {
            type Refs = $refs;
            fn refs(resource: &str) -> $refs {
                $refs { $( $field: $crate::Ref::new(resource, stringify!($field)), )* }
            }
        }
    };
}

/// `find`, `find_all` and `import` of a kind whose service module looks instances up: inside
/// `impl Resource for K`, `platform_core::lookups!(ec2);` calls `ec2::find::<Self>(ctx)` (the one
/// instance that carries this resource's tags), `ec2::find_all::<Self>(ctx)` (every one, for the
/// sweep of twins) and `ec2::import::<Self>(ctx, id)` (an existing resource by its id, tagged as
/// this stack's). A service module writes those three once for all its kinds.
#[macro_export]
macro_rules! lookups {
    ($service:ident) => {
        /// The instance that carries this resource's tags (after an interrupted create).
        async fn find(
            &self,
            ctx: &$crate::Context,
        ) -> ::std::result::Result<::std::option::Option<Self::Outputs>, $crate::ResourceError> {
            $service::find::<Self>(ctx).await
        }

        /// Every instance that carries this resource's tags.
        async fn find_all(
            &self,
            ctx: &$crate::Context,
        ) -> ::std::result::Result<::std::vec::Vec<Self::Outputs>, $crate::ResourceError> {
            $service::find_all::<Self>(ctx).await
        }

        /// An existing resource, by its id.
        async fn import(
            &self,
            ctx: &$crate::Context,
            id: &str,
        ) -> ::std::result::Result<::std::option::Option<Self::Outputs>, $crate::ResourceError> {
            $service::import::<Self>(ctx, id).await
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacement_deletes_first_only_when_it_collides_and_something_forces_it() {
        let forced = || ForceNew::none().field("name", true);
        assert!(forced().delete_first(true).deletes_first());
        assert!(!forced().delete_first(false).deletes_first());
        assert!(!forced().deletes_first());
        assert!(ForceNew::any_change().delete_first(true).deletes_first());
        // Nothing replaced, nothing to delete first: still `none()`.
        assert_eq!(ForceNew::none().delete_first(true), ForceNew::none());
        assert!(!ForceNew::none().delete_first(true).deletes_first());
        assert!(
            !ForceNew::none()
                .field("name", false)
                .delete_first(true)
                .deletes_first()
        );
        // Several conditions: any one that collides is enough.
        assert!(
            forced()
                .delete_first(true)
                .delete_first(false)
                .deletes_first()
        );
        assert!(
            forced()
                .delete_first(false)
                .delete_first(true)
                .deletes_first()
        );
    }

    #[test]
    fn found_one_refuses_to_guess_between_several() {
        assert_eq!(found_one("VPC", Vec::<(String, u8)>::new()).unwrap(), None);
        assert_eq!(found_one("VPC", [("a".to_owned(), 1)]).unwrap(), Some(1));
        match found_one("VPC", [("a".to_owned(), 1), ("b".to_owned(), 2)]) {
            Err(ResourceError::Ambiguous { what, found }) => {
                assert_eq!(what, "VPC");
                assert_eq!(found, ["a", "b"]);
            }
            other => panic!("{other:?}"),
        }
    }
}
