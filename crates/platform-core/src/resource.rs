//! The resource abstraction: what a resource type states and what the engine calls.
//!
//! A resource type is a serde struct of its inputs that implements [`Resource`]: its outputs type, its
//! kind and AWS service, which input fields force a replacement, validation, and create / read / update
//! / delete (plus `find`, which heals an interrupted create). The engine works on a type-erased form
//! ([`Registry`]) so that a stack can hold many kinds and so that destroy works from recorded state.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::interceptors::SharedInterceptor;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::SdkConfig;
use backon::{ExponentialBuilder, Retryable};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{AwsError, ErrorClass, ResourceError, ValidationError};
use crate::events::{Event, EventSink};
use crate::types::BoxFuture;

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
///   is given to `update`.
///
/// # What implementations must do
/// - Tag what they create with [`Context::tags`] where the AWS API allows tags, and pass
///   [`Context::instance_token`] as the API's idempotency token where it has one, so `find` can work.
/// - Send a create that must not be repeated with [`Context::call_once`].
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

/// How calls that fail with a retryable error are retried: exponential backoff with jitter, bounded.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first wait.
    pub min_delay: Duration,
    /// The longest single wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A policy with `max_attempts` attempts and waits between `min_delay` and `max_delay`.
    pub fn new(max_attempts: u32, min_delay: Duration, max_delay: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            min_delay,
            max_delay,
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
    }
}

type AnyBox = Box<dyn Any + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) sdk_config: Option<SdkConfig>,
    pub(crate) interceptors: Vec<SharedInterceptor>,
    pub(crate) extensions: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    pub(crate) clients: Mutex<HashMap<TypeId, AnyBox>>,
    pub(crate) events: EventSink,
    pub(crate) retry: RetryPolicy,
    /// How long an interrupted create's instance is looked for (see
    /// [`EngineBuilder::settle_window`](crate::EngineBuilder::settle_window)).
    pub(crate) settle_window: Duration,
    /// The account and region the engine applies to, once it has resolved them (before any step).
    pub(crate) identity: tokio::sync::OnceCell<crate::ProviderInfo>,
}

/// What a resource operation gets from the engine: its identity, AWS clients, retries, events.
#[derive(Clone)]
pub struct Context {
    shared: Arc<Shared>,
    stack: Arc<str>,
    resource: Arc<str>,
    instance: Option<Arc<str>>,
    cancel: crate::CancellationToken,
    /// In a create: where [`publish`](Context::publish) sends the outputs (with the answer's way back).
    publisher: Option<Publisher>,
    /// Until when AWS may not show the instance yet (made within the settle window): a not-found
    /// answer about it is asked again until then, not believed.
    unseen_until: Option<tokio::time::Instant>,
}

/// A create's early outputs, sent to the engine with a way to tell the create they are recorded.
pub(crate) type Published = (Value, tokio::sync::oneshot::Sender<Result<(), String>>);

/// The engine's end of [`Context::publish`].
pub(crate) type Publisher = tokio::sync::mpsc::UnboundedSender<Published>;

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("stack", &self.stack)
            .field("resource", &self.resource)
            .field("instance", &self.instance)
            .finish()
    }
}

impl Context {
    pub(crate) fn new(
        shared: Arc<Shared>,
        stack: &str,
        resource: &str,
        cancel: crate::CancellationToken,
    ) -> Self {
        Self {
            shared,
            stack: stack.into(),
            resource: resource.into(),
            instance: None,
            cancel,
            publisher: None,
            unseen_until: None,
        }
    }

    /// This context for an instance that AWS may not show until `until` (made within the settle
    /// window): every call's not-found answer is asked again until then. A delete that read the
    /// instance first and found nothing would otherwise leave it behind.
    pub(crate) fn unseen_until(mut self, until: Option<tokio::time::Instant>) -> Self {
        self.unseen_until = until;
        self
    }

    /// This context for instance `token` of the resource (a create, or the find that settles one).
    pub(crate) fn for_instance(mut self, token: Option<&str>) -> Self {
        self.instance = token.map(Into::into);
        self
    }

    /// This context for a create whose [`publish`](Self::publish) goes to `publisher`.
    pub(crate) fn publishing_to(mut self, publisher: Publisher) -> Self {
        self.publisher = Some(publisher);
        self
    }

    /// In a [`Resource::create`]: the resource exists and `outputs` are its final outputs; what the
    /// create still has to do is configuration that the resources using these outputs do not need
    /// (a VPC's DNS attributes, a subnet's public-IP setting, a security group's rules, a route
    /// table's routes). The engine records the outputs, with that configuration marked pending,
    /// and starts the dependents now, while the create goes on.
    ///
    /// The create must return the same outputs. If it fails or the process dies after this, the
    /// resource is recorded as existing with its configuration unfinished: the next run reads it
    /// and updates what differs, as after an interrupted update. Outside a create (an update, a
    /// settle), or a second time, this does nothing.
    ///
    /// # Errors
    /// When the outputs could not be recorded (the state store failed): the create should stop.
    pub async fn publish<O: Serialize>(&self, outputs: &O) -> Result<(), ResourceError> {
        let Some(publisher) = &self.publisher else {
            return Ok(());
        };
        let value = serde_json::to_value(outputs).map_err(|e| ResourceError::Failed {
            message: format!("the outputs of {} do not serialize: {e}", self.resource),
        })?;
        let (ack, recorded) = tokio::sync::oneshot::channel();
        if publisher.send((value, ack)).is_err() {
            return Ok(());
        }
        match recorded.await {
            Ok(Err(message)) => Err(ResourceError::Failed { message }),
            // Recorded, or the engine no longer listens (the outputs are recorded at the end).
            Ok(Ok(())) | Err(_) => Ok(()),
        }
    }

    /// The account and region being applied to, as the engine resolved them before the run's first
    /// step (`None` outside a run, as in a unit test's context). A resource can build an ARN from
    /// it that a call would otherwise have to read back.
    pub fn provider(&self) -> Option<&crate::ProviderInfo> {
        self.shared.identity.get()
    }

    /// Cancelled when the run is (Ctrl-C): long waits end early with [`ResourceError::Cancelled`].
    pub fn cancellation(&self) -> &crate::CancellationToken {
        &self.cancel
    }

    /// Sleeps `d`, or returns [`ResourceError::Cancelled`] as soon as the run is cancelled.
    ///
    /// # Errors
    /// [`ResourceError::Cancelled`].
    pub async fn sleep(&self, d: Duration) -> Result<(), ResourceError> {
        tokio::select! {
            () = self.cancel.cancelled() => Err(ResourceError::Cancelled),
            () = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// The stack being applied.
    pub fn stack(&self) -> &str {
        &self.stack
    }

    /// The resource's logical name.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The tags every created resource carries: its stack, its logical name and, for a create (and
    /// the find that settles it), its instance token.
    pub fn tags(&self) -> Vec<(&'static str, String)> {
        let mut tags = vec![
            (STACK_TAG, self.stack.to_string()),
            (RESOURCE_TAG, self.resource.to_string()),
        ];
        if let Some(token) = &self.instance {
            tags.push((INSTANCE_TAG, token.to_string()));
        }
        tags
    }

    /// The instance token of the create in progress (32 hex characters, fits every AWS idempotency
    /// field: EC2 `ClientToken` up to 64, ECS `clientToken` up to 36): pass it as the API's own
    /// idempotency token where there is one.
    pub fn instance_token(&self) -> Option<&str> {
        self.instance.as_deref()
    }

    /// Decides whether a resource found by its natural key (a name) may be adopted: only when its
    /// tags name this stack and this resource, and, for a create (a context with an instance
    /// token), only when it carries no other instance token. Nobody else's resource is ever taken,
    /// nor the instance a replacement deletes.
    ///
    /// ```
    /// # use platform_core::testing::context;
    /// let ctx = context("network", "vpc");
    /// assert!(ctx.claim("VPC vpc-1", [("platform:stack", "network"), ("platform:resource", "vpc")]).is_ok());
    /// let err = ctx.claim("VPC vpc-2", [("platform:stack", "other"), ("platform:resource", "vpc")]);
    /// assert!(err.unwrap_err().to_string().contains("belongs to stack other, resource vpc"));
    /// ```
    ///
    /// # Errors
    /// [`ResourceError::NotOurs`], naming the owner its tags give (or that it has none);
    /// [`ResourceError::OtherInstance`] for another instance of this resource.
    pub fn claim<'t>(
        &self,
        what: &str,
        tags: impl IntoIterator<Item = (&'t str, &'t str)>,
    ) -> Result<(), ResourceError> {
        let (mut stack, mut resource, mut instance) = (None, None, None);
        for (k, v) in tags {
            match k {
                STACK_TAG => stack = Some(v),
                RESOURCE_TAG => resource = Some(v),
                INSTANCE_TAG => instance = Some(v),
                _ => {}
            }
        }
        if stack == Some(&*self.stack) && resource == Some(&*self.resource) {
            return match (self.instance.as_deref(), instance) {
                (Some(token), Some(other)) if token != other => Err(ResourceError::OtherInstance {
                    what: what.to_owned(),
                    other: other.to_owned(),
                    token: token.to_owned(),
                }),
                _ => Ok(()),
            };
        }
        let owner = match (stack, resource) {
            (None, None) => "nobody this engine knows (it has no platform:stack tag)".to_owned(),
            (s, r) => format!(
                "stack {}, resource {}",
                s.unwrap_or("(none)"),
                r.unwrap_or("(none)")
            ),
        };
        Err(ResourceError::NotOurs {
            what: what.to_owned(),
            owner,
        })
    }

    /// The AWS configuration the engine was built with.
    ///
    /// # Errors
    /// [`ResourceError::NotConfigured`] when the engine has none.
    pub fn sdk_config(&self) -> Result<&SdkConfig, ResourceError> {
        self.shared
            .sdk_config
            .as_ref()
            .ok_or_else(|| ResourceError::NotConfigured {
                what: "an AWS SdkConfig (EngineBuilder::aws)".into(),
            })
    }

    /// An AWS service client, built once per engine by `make` from the engine's `SdkConfig` and the
    /// interceptors every client must carry (the engine's call recorder among them), then shared.
    ///
    /// ```no_run
    /// # use platform_core::{Context, ResourceError};
    /// # fn ec2(ctx: &Context) -> Result<(), ResourceError> {
    /// // with aws-sdk-ec2:
    /// // let client = ctx.client(|config, interceptors| {
    /// //     let mut b = aws_sdk_ec2::config::Builder::from(config);
    /// //     for i in interceptors { b.push_interceptor(i.clone()); }
    /// //     aws_sdk_ec2::Client::from_conf(b.build())
    /// // })?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`ResourceError::NotConfigured`] when the engine has no `SdkConfig`.
    pub fn client<C>(
        &self,
        make: impl FnOnce(&SdkConfig, &[SharedInterceptor]) -> C,
    ) -> Result<C, ResourceError>
    where
        C: Clone + Send + Sync + 'static,
    {
        let mut clients = self
            .shared
            .clients
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients
            .get(&TypeId::of::<C>())
            .and_then(|c| c.downcast_ref::<C>())
        {
            return Ok(c.clone());
        }
        let client = make(self.sdk_config()?, &self.shared.interceptors);
        clients.insert(TypeId::of::<C>(), Box::new(client.clone()));
        Ok(client)
    }

    /// A value given to the engine with [`EngineBuilder::extension`](crate::EngineBuilder::extension)
    /// (a fake cloud in tests, a custom client).
    ///
    /// # Errors
    /// [`ResourceError::NotConfigured`] when no value of that type was given.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Result<Arc<T>, ResourceError> {
        self.shared
            .extensions
            .get(&TypeId::of::<T>())
            .and_then(|v| v.clone().downcast::<T>().ok())
            .ok_or_else(|| ResourceError::NotConfigured {
                what: format!("extension {}", std::any::type_name::<T>()),
            })
    }

    /// Sends an event (for progress a resource reports itself, e.g. waiting for steady state).
    pub fn emit(&self, event: Event) {
        self.shared.events.emit(event);
    }

    /// Reports progress on long work as an [`Event::Progress`] for this resource.
    pub fn progress(&self, message: impl Into<String>) {
        self.emit(Event::Progress {
            stack: self.stack.to_string(),
            resource: self.resource.to_string(),
            message: message.into(),
        });
    }

    /// Runs one AWS call, classifying its error and retrying the retryable classes (throttling,
    /// eventual consistency, transient) with the engine's bounded backoff.
    ///
    /// # Errors
    /// The classified [`AwsError`] once it is not retryable or the attempts are used up.
    pub async fn call<T, E, F, Fut>(&self, operation: &str, f: F) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.call_retrying(operation, |_| false, f).await
    }

    /// Like [`call`](Self::call), and also retries errors for which `also_retry` is true: what is
    /// eventual consistency for this one call (a VPC delete's `DependencyViolation` while its
    /// dependents go; ECS refusing a role it cannot assume yet).
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub async fn call_retrying<T, E, F, Fut>(
        &self,
        operation: &str,
        also_retry: impl Fn(&AwsError) -> bool,
        f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.send(operation, true, also_retry, f).await
    }

    /// Like [`call`](Self::call), and also retries errors for which `also_retry` is true until
    /// `budget` has passed since the first attempt, however many attempts that takes: for what AWS
    /// refuses for minutes and then does (a subnet or security group delete while Fargate releases a
    /// stopped task's network interface). Each wait is reported with [`progress`](Self::progress)
    /// and ends at once when the run is cancelled.
    ///
    /// # Errors
    /// As [`call`](Self::call); the `also_retry` error once the budget is spent;
    /// [`ResourceError::Cancelled`] when the run is cancelled while it waits.
    pub async fn call_within<T, E, F, Fut>(
        &self,
        operation: &str,
        budget: Duration,
        also_retry: impl Fn(&AwsError) -> bool,
        f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let refused = |e: &ResourceError| matches!(e, ResourceError::Aws(e) if also_retry(e));
        // Each attempt's calls share `f`, one at a time.
        let f = Mutex::new(f);
        let send = || (f.lock().unwrap_or_else(|p| p.into_inner()))();
        self.retry_within(operation, budget, refused, || self.call(operation, send))
            .await
    }

    /// Retries `f` (any fallible step: a call with its own retries, a wait) while `retry_if` says
    /// so, until `budget` has passed since the first attempt, with the engine's backoff between
    /// attempts and a progress line at each wait. For refusals that AWS keeps up for minutes and
    /// then lifts (a name still held by a service that drains).
    ///
    /// # Errors
    /// The last error once it is not retried or the budget is spent; [`ResourceError::Cancelled`]
    /// when the run is cancelled while it waits.
    pub async fn retry_within<T, F, Fut>(
        &self,
        what: &str,
        budget: Duration,
        retry_if: impl Fn(&ResourceError) -> bool,
        mut f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ResourceError>>,
    {
        let started = tokio::time::Instant::now();
        let mut delay = self.shared.retry.min_delay;
        loop {
            let e = match f().await {
                Err(e) if retry_if(&e) => e,
                done => return done,
            };
            let waited = started.elapsed();
            if waited >= budget {
                return Err(e);
            }
            self.progress(format!(
                "{what}: {}; AWS may take minutes: retrying (waited {}, up to {})",
                e.aws_code().unwrap_or("refused"),
                humantime::format_duration(Duration::from_secs(waited.as_secs())),
                humantime::format_duration(budget),
            ));
            self.sleep(delay.min(budget - waited)).await?;
            delay = (delay * 2).min(self.shared.retry.max_delay);
        }
    }

    /// Sends a call that must not be sent twice: a create that AWS would carry out again (a twin VPC)
    /// or refuse as already done. Throttling and eventual-consistency refusals are retried (AWS did
    /// nothing); a timeout, a closed connection or a 5xx is not: the outcome is unknown, and the engine
    /// settles it with [`Resource::find`] instead of sending it again.
    ///
    /// # Errors
    /// As [`call`](Self::call); a transient error is returned at once.
    pub async fn call_once<T, E, F, Fut>(&self, operation: &str, f: F) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.send(operation, false, |_| false, f).await
    }

    /// [`call_once`](Self::call_once), also retrying what `also_retry` says AWS refused without
    /// acting (ECS refusing a role it cannot assume yet).
    ///
    /// # Errors
    /// As [`call_once`](Self::call_once).
    pub async fn call_once_retrying<T, E, F, Fut>(
        &self,
        operation: &str,
        also_retry: impl Fn(&AwsError) -> bool,
        f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.send(operation, false, also_retry, f).await
    }

    /// [`send_retried`](Self::send_retried); while the instance may not show yet
    /// ([`unseen_until`](Self::unseen_until)), a not-found answer is asked again until it may.
    async fn send<T, E, F, Fut>(
        &self,
        operation: &str,
        repeatable: bool,
        also_retry: impl Fn(&AwsError) -> bool,
        f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let Some(until) = self.unseen_until else {
            return self
                .send_retried(operation, repeatable, &also_retry, f)
                .await;
        };
        // Each attempt's calls share `f`, one at a time.
        let f = Mutex::new(f);
        let send = || (f.lock().unwrap_or_else(|p| p.into_inner()))();
        let budget = until.saturating_duration_since(tokio::time::Instant::now());
        self.retry_within(operation, budget, ResourceError::is_not_found, || {
            self.send_retried(operation, repeatable, &also_retry, send)
        })
        .await
    }

    /// Sends a call, retrying what its class (and `also_retry`) says to with the engine's backoff.
    async fn send_retried<T, E, F, Fut>(
        &self,
        operation: &str,
        repeatable: bool,
        also_retry: &impl Fn(&AwsError) -> bool,
        mut f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 0u32;
        let op = || {
            let fut = f();
            async move { fut.await.map_err(|e| AwsError::from_sdk(operation, e)) }
        };
        let retryable = |e: &AwsError| {
            let class_retried = match e.class {
                ErrorClass::Transient => repeatable,
                class => class.is_retryable(),
            };
            (class_retried || also_retry(e)) && !self.cancel.is_cancelled()
        };
        op.retry(self.shared.retry.backoff())
            .sleep(self.backoff_sleep())
            .when(retryable)
            .notify(|e: &AwsError, delay| {
                attempt += 1;
                self.emit(Event::Retrying {
                    stack: self.stack.to_string(),
                    resource: self.resource.to_string(),
                    operation: operation.to_owned(),
                    attempt,
                    delay,
                    code: e.code.clone(),
                });
            })
            .await
            .map_err(ResourceError::from)
    }

    /// Retries `f` (any fallible step, not only one SDK call) while `retry_if` says so, with the
    /// engine's backoff. For waits on eventual consistency that are not a single call.
    ///
    /// # Errors
    /// The last error once it is not retried or the attempts are used up.
    pub async fn retry<T, F, Fut>(
        &self,
        what: &str,
        retry_if: impl Fn(&ResourceError) -> bool,
        f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ResourceError>>,
    {
        let mut attempt = 0u32;
        f.retry(self.shared.retry.backoff())
            .sleep(self.backoff_sleep())
            .when(|e: &ResourceError| retry_if(e) && !self.cancel.is_cancelled())
            .notify(|e: &ResourceError, delay| {
                attempt += 1;
                self.emit(Event::Retrying {
                    stack: self.stack.to_string(),
                    resource: self.resource.to_string(),
                    operation: what.to_owned(),
                    attempt,
                    delay,
                    code: e.aws_code().map(str::to_owned),
                });
            })
            .await
    }
}

impl Context {
    /// A backoff sleep that ends at once when the run is cancelled; the retry loop then tries once
    /// more and returns that answer, which is not retried again.
    fn backoff_sleep(&self) -> impl Fn(Duration) -> BoxFuture<'static, ()> + use<> {
        let cancel = self.cancel.clone();
        move |d| {
            let cancel = cancel.clone();
            Box::pin(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(d) => {}
                }
            })
        }
    }
}

/// The one live resource among `found` that carries a resource's tags, or none.
///
/// ```
/// use platform_core::found_one;
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

type Fut<T> = BoxFuture<'static, Result<T, ResourceError>>;
/// `update(ctx, inputs, previous inputs, outputs)`, erased.
type UpdateFn = fn(Context, Value, Value, Value) -> Fut<Value>;
/// `force_new(inputs, previous inputs)`, erased.
type ForceNewFn = fn(&Value, &Value) -> Result<ForceNew, ResourceError>;
/// `read(ctx, inputs, outputs)`, erased: live (inputs, outputs) or gone.
type ReadFn = fn(Context, Value, Value) -> Fut<Option<(Value, Value)>>;

/// The type-erased operations of one resource kind, on JSON inputs and outputs.
#[derive(Clone, Copy)]
pub(crate) struct KindOps {
    pub(crate) service: &'static str,
    pub(crate) force_new: ForceNewFn,
    pub(crate) delete_before_replace: bool,
    pub(crate) create: fn(Context, Value) -> Fut<Value>,
    pub(crate) find: fn(Context, Value) -> Fut<Option<Value>>,
    pub(crate) find_all: fn(Context, Value) -> Fut<Vec<Value>>,
    pub(crate) import: fn(Context, Value, String) -> Fut<Option<Value>>,
    pub(crate) adopted: fn(Context, Value, Value) -> Fut<()>,
    pub(crate) read: ReadFn,
    pub(crate) update: UpdateFn,
    pub(crate) delete: fn(Context, Value, Value) -> Fut<()>,
}

fn decode<T: DeserializeOwned>(what: &str, v: Value) -> Result<T, ResourceError> {
    serde_json::from_value(v).map_err(|source| ResourceError::Decode {
        what: what.to_owned(),
        source,
    })
}

fn encode<T: Serialize>(what: &str, v: &T) -> Result<Value, ResourceError> {
    serde_json::to_value(v).map_err(|source| ResourceError::Decode {
        what: what.to_owned(),
        source,
    })
}

impl KindOps {
    pub(crate) fn of<R: Resource>() -> Self {
        Self {
            service: R::SERVICE,
            force_new: |inputs, previous| {
                let r: R = decode("inputs", inputs.clone())?;
                let p: R = decode("previous inputs", previous.clone())?;
                Ok(r.force_new(&p))
            },
            delete_before_replace: R::DELETE_BEFORE_REPLACE,
            create: |ctx, inputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    let out = r.create(&ctx).await?;
                    encode("outputs", &out)
                })
            },
            find: |ctx, inputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    match r.find(&ctx).await? {
                        Some(out) => Ok(Some(encode("outputs", &out)?)),
                        None => Ok(None),
                    }
                })
            },
            find_all: |ctx, inputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    r.find_all(&ctx)
                        .await?
                        .iter()
                        .map(|out| encode("outputs", out))
                        .collect()
                })
            },
            import: |ctx, inputs, id| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    match r.import(&ctx, &id).await? {
                        Some(out) => Ok(Some(encode("outputs", &out)?)),
                        None => Ok(None),
                    }
                })
            },
            adopted: |ctx, inputs, outputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    let o: R::Outputs = decode("outputs", outputs)?;
                    r.adopted(&ctx, &o).await
                })
            },
            read: |ctx, inputs, outputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    let o: R::Outputs = decode("outputs", outputs)?;
                    match r.read(&ctx, &o).await? {
                        Some(obs) => Ok(Some((
                            encode("inputs", &obs.inputs)?,
                            encode("outputs", &obs.outputs)?,
                        ))),
                        None => Ok(None),
                    }
                })
            },
            update: |ctx, inputs, previous, outputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    let p: R = decode("previous inputs", previous)?;
                    let o: R::Outputs = decode("outputs", outputs)?;
                    let out = r.update(&ctx, &p, &o).await?;
                    encode("outputs", &out)
                })
            },
            delete: |ctx, inputs, outputs| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    let o: R::Outputs = decode("outputs", outputs)?;
                    r.delete(&ctx, &o).await
                })
            },
        }
    }
}

/// The resource kinds a stack uses, so that state can be read and destroyed without the program.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: HashMap<&'static str, KindOps>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<_> = self.kinds.keys().collect();
        kinds.sort();
        f.debug_struct("Registry").field("kinds", &kinds).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers resource type `R`.
    pub fn add<R: Resource>(&mut self) -> &mut Self {
        self.kinds.entry(R::KIND).or_insert_with(KindOps::of::<R>);
        self
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&KindOps> {
        self.kinds.get(kind)
    }

    pub(crate) fn merge(&mut self, other: &Registry) {
        for (k, v) in &other.kinds {
            self.kinds.entry(k).or_insert(*v);
        }
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

        impl $crate::ResourceOutputs for $name {
            type Refs = $refs;
            fn refs(resource: &str) -> $refs {
                $refs { $( $field: $crate::Ref::new(resource, stringify!($field)), )* }
            }
        }
    };
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "the SDK's own error type, as the SDK returns it to Context::call"
)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_smithy_runtime_api::client::result::SdkError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;
    use crate::CancellationToken;

    type Answer = Result<(), SdkError<ErrorMetadata, HttpResponse>>;

    fn ctx_with(cancel: CancellationToken) -> Context {
        ctx_seeing(cancel, Arc::default())
    }

    #[test]
    fn a_context_sees_the_identity_once_the_engine_resolved_it() {
        let ctx = ctx();
        assert_eq!(ctx.provider(), None);
        let p = crate::ProviderInfo {
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
        };
        ctx.shared.identity.set(p.clone()).unwrap();
        assert_eq!(ctx.provider(), Some(&p));
    }

    /// A context whose events are pushed to `seen`.
    fn ctx_seeing(cancel: CancellationToken, seen: Arc<Mutex<Vec<Event>>>) -> Context {
        let subscriber: crate::Subscriber = Arc::new(move |e: &Event| {
            seen.lock().unwrap().push(e.clone());
        });
        let shared = Shared {
            sdk_config: None,
            interceptors: Vec::new(),
            extensions: HashMap::new(),
            clients: Mutex::default(),
            events: EventSink::new(vec![subscriber]),
            // Three attempts: not the backoff crate's default (four), so the bound is seen to hold.
            retry: RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(2)),
            settle_window: Duration::ZERO,
            identity: tokio::sync::OnceCell::new(),
        };
        Context::new(Arc::new(shared), "net", "vpc", cancel)
    }

    fn ctx() -> Context {
        ctx_with(CancellationToken::new())
    }

    fn aws(code: &str, status: u16) -> Answer {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        Err(SdkError::service_error(meta, raw))
    }

    fn timeout() -> Answer {
        Err(SdkError::timeout_error("no answer"))
    }

    /// Sends `answer` until `ok_after` attempts failed, then succeeds; returns the result and the
    /// attempts made.
    async fn attempts(
        send: impl AsyncFnOnce(&dyn Fn() -> std::future::Ready<Answer>) -> Result<(), ResourceError>,
        answer: fn() -> Answer,
        ok_after: u32,
    ) -> (Result<(), ResourceError>, u32) {
        let n = AtomicU32::new(0);
        let f = || {
            let i = n.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if i < ok_after { answer() } else { Ok(()) })
        };
        let r = send(&f).await;
        (r, n.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn call_repeats_throttling_and_transient_failures() {
        let c = ctx();
        let (r, n) = attempts(
            async |f| c.call("Op", f).await,
            || aws("Throttling", 400),
            2,
        )
        .await;
        assert!(r.is_ok());
        assert_eq!(n, 3);
        let (r, n) = attempts(async |f| c.call("Op", f).await, timeout, 2).await;
        assert!(r.is_ok());
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn call_once_repeats_throttling_but_never_a_call_whose_outcome_is_unknown() {
        let c = ctx();
        let (r, n) = attempts(
            async |f| c.call_once("Op", f).await,
            || aws("Throttling", 400),
            2,
        )
        .await;
        assert!(r.is_ok());
        assert_eq!(n, 3);
        let (r, n) = attempts(async |f| c.call_once("Op", f).await, timeout, 2).await;
        assert!(r.unwrap_err().outcome_unknown());
        assert_eq!(n, 1);
        let (r, n) = attempts(
            async |f| c.call_once("Op", f).await,
            || aws("InternalError", 500),
            2,
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn a_call_retries_what_its_caller_names_and_nothing_else() {
        let c = ctx();
        let dep = |e: &AwsError| e.has_code("DependencyViolation");
        let (r, n) = attempts(
            async |f| c.call_retrying("Op", dep, f).await,
            || aws("DependencyViolation", 400),
            2,
        )
        .await;
        assert!(r.is_ok());
        assert_eq!(n, 3);
        let (r, n) = attempts(
            async |f| c.call_once_retrying("Op", dep, f).await,
            || aws("InvalidParameterValue", 400),
            2,
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
        let (r, n) = attempts(
            async |f| c.call_once_retrying("Op", dep, f).await,
            || aws("DependencyViolation", 400),
            5,
        )
        .await;
        assert!(r.is_err(), "the bound holds");
        assert_eq!(n, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn call_within_retries_what_its_caller_names_for_a_time_not_a_count() {
        let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
        let c = ctx_seeing(CancellationToken::new(), seen.clone());
        let dep = |e: &AwsError| e.has_code("DependencyViolation");
        let budget = Duration::from_secs(60);
        // Twenty refusals: far more than the retry policy's three attempts, well within a minute.
        let started = tokio::time::Instant::now();
        let (r, n) = attempts(
            async |f| c.call_within("Op", budget, dep, f).await,
            || aws("DependencyViolation", 400),
            20,
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(n, 21);
        assert!(started.elapsed() < budget, "{:?}", started.elapsed());
        let progress = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                matches!(e, Event::Progress { message, .. }
                    if message.starts_with("Op: DependencyViolation; AWS may take minutes"))
            })
            .count();
        assert_eq!(progress, 20);
        // Past the budget, the refusal is the answer: the last wait is cut to what is left of it
        // (the default policy's waits grow to 10 s), and what it does not name is not retried.
        let d = ctx();
        let budget = Duration::from_secs(15);
        let started = tokio::time::Instant::now();
        let (r, _) = attempts(
            async |f| d.call_within("Op", budget, dep, f).await,
            || aws("DependencyViolation", 400),
            u32::MAX,
        )
        .await;
        assert_eq!(r.unwrap_err().aws_code(), Some("DependencyViolation"));
        let waited = started.elapsed();
        assert!(
            waited >= budget && waited < budget + Duration::from_millis(100),
            "{waited:?}"
        );
        let (r, n) = attempts(
            async |f| c.call_within("Op", budget, dep, f).await,
            || aws("InvalidParameterValue", 400),
            2,
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_not_found_about_an_instance_aws_may_not_show_yet_is_asked_again_until_it_may() {
        let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
        let window = Duration::from_secs(1);
        let c = ctx_seeing(CancellationToken::new(), seen.clone())
            .unseen_until(Some(tokio::time::Instant::now() + window));
        let not_found = || aws("InvalidInternetGatewayID.NotFound", 400);
        // Shown after ten not-found answers: the call gets its answer, each wait reported.
        let (r, n) = attempts(async |f| c.call("Describe", f).await, not_found, 10).await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(n, 11);
        let retried = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                matches!(e, Event::Progress { message, .. }
                if message.starts_with("Describe: InvalidInternetGatewayID.NotFound; AWS may"))
            })
            .count();
        assert_eq!(retried, 10);
        // Never shown: not-found is the answer once the window has passed, not before.
        let started = tokio::time::Instant::now();
        let (r, _) = attempts(
            async |f| c.call_once("Delete", f).await,
            not_found,
            u32::MAX,
        )
        .await;
        assert!(r.unwrap_err().is_not_found());
        let deadline = started.elapsed();
        assert!(deadline > Duration::from_millis(900), "{deadline:?}");
        assert!(deadline <= window, "{deadline:?}");
        let (r, n) = attempts(async |f| c.call("Describe", f).await, not_found, 1).await;
        assert!(r.is_err() && n == 1, "past the window: believed at once");
        // Other errors are not asked again; without the window, not-found is believed at once.
        let c = ctx_seeing(CancellationToken::new(), seen.clone())
            .unseen_until(Some(tokio::time::Instant::now() + window));
        let (r, n) = attempts(
            async |f| c.call_once("Delete", f).await,
            || aws("InvalidParameterValue", 400),
            2,
        )
        .await;
        assert!(r.is_err() && n == 1, "{r:?} after {n}");
        let (r, n) = attempts(async |f| ctx().call("Describe", f).await, not_found, 1).await;
        assert!(r.unwrap_err().is_not_found());
        assert_eq!(n, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_within_a_budget_ends_at_once_when_the_run_is_cancelled() {
        let cancel = CancellationToken::new();
        let c = ctx_with(cancel.clone());
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            stop.cancel();
        });
        let dep = |e: &AwsError| e.has_code("DependencyViolation");
        let (r, _) = attempts(
            async |f| c.call_within("Op", Duration::from_secs(600), dep, f).await,
            || aws("DependencyViolation", 400),
            u32::MAX,
        )
        .await;
        assert!(matches!(r, Err(ResourceError::Cancelled)), "{r:?}");
    }

    #[tokio::test]
    async fn retries_and_progress_are_reported_as_events_of_the_resource() {
        let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
        let c = ctx_seeing(CancellationToken::new(), seen.clone());
        let (r, _) = attempts(
            async |f| c.call("Op", f).await,
            || aws("Throttling", 400),
            2,
        )
        .await;
        assert!(r.is_ok());
        let tries = AtomicU32::new(0);
        c.retry(
            "wait",
            |_| true,
            || {
                let i = tries.fetch_add(1, Ordering::SeqCst);
                std::future::ready(if i < 2 {
                    Err(ResourceError::missing("Op", "x"))
                } else {
                    Ok(())
                })
            },
        )
        .await
        .unwrap();
        c.progress("halfway");
        let seen: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                Event::Retrying {
                    stack,
                    resource,
                    operation,
                    attempt,
                    code,
                    ..
                } => format!("{stack}/{resource} {operation} #{attempt} {code:?}"),
                Event::Progress {
                    stack,
                    resource,
                    message,
                } => format!("{stack}/{resource}: {message}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            seen,
            [
                "net/vpc Op #1 Some(\"Throttling\")",
                "net/vpc Op #2 Some(\"Throttling\")",
                "net/vpc wait #1 None",
                "net/vpc wait #2 None",
                "net/vpc: halfway",
            ]
        );
    }

    #[tokio::test]
    async fn nothing_is_retried_once_the_run_is_cancelled() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let c = ctx_with(cancel);
        let (r, n) = attempts(
            async |f| c.call("Op", f).await,
            || aws("Throttling", 400),
            2,
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
        let tries = AtomicU32::new(0);
        let r: Result<(), ResourceError> = c
            .retry(
                "wait",
                |_| true,
                || {
                    tries.fetch_add(1, Ordering::SeqCst);
                    std::future::ready(Err(ResourceError::missing("Op", "x")))
                },
            )
            .await;
        assert!(r.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retry_repeats_while_asked_within_the_bound() {
        let c = ctx();
        let tries = AtomicU32::new(0);
        let r: Result<(), ResourceError> = c
            .retry(
                "wait",
                |e| e.aws_code().is_none(),
                || {
                    tries.fetch_add(1, Ordering::SeqCst);
                    std::future::ready(Err(ResourceError::missing("Op", "x")))
                },
            )
            .await;
        assert!(r.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn sleep_ends_at_once_when_cancelled_and_waits_otherwise() {
        let c = ctx();
        let started = std::time::Instant::now();
        c.sleep(Duration::from_millis(30)).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(30));
        c.cancellation().cancel();
        let started = std::time::Instant::now();
        let r = c.sleep(Duration::from_secs(8)).await;
        assert!(matches!(r, Err(ResourceError::Cancelled)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn tags_and_token_name_the_instance_being_created() {
        let c = ctx();
        assert_eq!((c.stack(), c.resource()), ("net", "vpc"));
        assert_eq!(c.instance_token(), None);
        assert_eq!(
            c.tags(),
            [
                (STACK_TAG, "net".to_owned()),
                (RESOURCE_TAG, "vpc".to_owned())
            ]
        );
        let c = c.for_instance(Some("0123abcd"));
        assert_eq!(c.instance_token(), Some("0123abcd"));
        assert_eq!(c.tags()[2], (INSTANCE_TAG, "0123abcd".to_owned()));
    }

    #[test]
    fn claim_adopts_only_what_names_this_stack_and_resource() {
        let c = ctx();
        let ok = c.claim(
            "VPC vpc-1",
            [
                (STACK_TAG, "net"),
                (RESOURCE_TAG, "vpc"),
                (INSTANCE_TAG, "old"),
                ("team", "x"),
            ],
        );
        assert!(ok.is_ok());
        let owner = |tags: &[(&str, &str)]| match c.claim("VPC vpc-1", tags.iter().copied()) {
            Err(ResourceError::NotOurs { what, owner }) => {
                assert_eq!(what, "VPC vpc-1");
                owner
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(
            owner(&[(STACK_TAG, "other"), (RESOURCE_TAG, "vpc")]),
            "stack other, resource vpc"
        );
        assert_eq!(
            owner(&[(STACK_TAG, "net"), (RESOURCE_TAG, "subnet")]),
            "stack net, resource subnet"
        );
        assert_eq!(owner(&[(STACK_TAG, "net")]), "stack net, resource (none)");
        assert_eq!(
            owner(&[(RESOURCE_TAG, "vpc")]),
            "stack (none), resource vpc"
        );
        assert!(owner(&[("team", "x")]).starts_with("nobody"));
    }

    #[test]
    fn a_create_claims_no_other_instance_of_its_resource() {
        let c = ctx().for_instance(Some("new"));
        let ours = [(STACK_TAG, "net"), (RESOURCE_TAG, "vpc")];
        let with = |token| ours.into_iter().chain([(INSTANCE_TAG, token)]);
        assert!(c.claim("VPC vpc-1", with("new")).is_ok());
        // Made before instance tokens: adopted.
        assert!(c.claim("VPC vpc-1", ours).is_ok());
        match c.claim("VPC vpc-1", with("old")) {
            Err(e @ ResourceError::OtherInstance { .. }) => assert_eq!(
                e.to_string(),
                "VPC vpc-1 holds the name and is another instance of this resource (old), not the \
                 one being created (new): it is not adopted"
            ),
            other => panic!("{other:?}"),
        }
        // Another owner is named as such, whatever its token.
        let foreign = [
            (STACK_TAG, "x"),
            (RESOURCE_TAG, "vpc"),
            (INSTANCE_TAG, "old"),
        ];
        assert!(matches!(
            c.claim("VPC vpc-1", foreign),
            Err(ResourceError::NotOurs { .. })
        ));
    }

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
