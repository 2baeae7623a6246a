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
use std::pin::Pin;
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

use crate::error::{AwsError, ResourceError, ValidationError};
use crate::events::{Event, EventSink};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Tag key carrying the stack name on every resource the engine creates.
pub const STACK_TAG: &str = "platform:stack";
/// Tag key carrying the resource's logical name on every resource the engine creates.
pub const RESOURCE_TAG: &str = "platform:resource";

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
/// - Only fields named in [`REPLACE_ON`](Self::REPLACE_ON) lead to delete-and-create; every other change
///   is given to `update` with the names of the changed fields.
///
/// # What implementations must do
/// - Tag what they create with [`Context::tags`] where the AWS API allows tags, so `find` can work.
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
    /// Input fields (as serialised) whose change forces a replacement; `"*"` means every field.
    const REPLACE_ON: &'static [&'static str] = &[];
    /// Whether a replacement deletes the old resource before creating the new one (for unique names
    /// that cannot exist twice). By default the new one is created first and the old one deleted after
    /// everything that used it has been re-pointed.
    const DELETE_BEFORE_REPLACE: bool = false;

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

    /// Changes the live resource from `previous` to `self` in place. `changed` names the changed fields,
    /// none of which is in [`REPLACE_ON`](Self::REPLACE_ON).
    ///
    /// # Errors
    /// Any [`ResourceError`]; the engine keeps the previous inputs recorded, so the next run retries.
    fn update(
        &self,
        ctx: &Context,
        previous: &Self,
        outputs: &Self::Outputs,
        changed: &[String],
    ) -> impl Future<Output = Result<Self::Outputs, ResourceError>> + Send;

    /// Deletes the resource. Already gone is success.
    ///
    /// # Errors
    /// Any [`ResourceError`]; the resource stays recorded and the next run retries.
    fn delete(
        &self,
        ctx: &Context,
        outputs: &Self::Outputs,
    ) -> impl Future<Output = Result<(), ResourceError>> + Send;

    /// Finds a resource that an interrupted create may have made (by its tags or natural key), so
    /// that it is adopted instead of created twice. The default finds nothing.
    ///
    /// # Errors
    /// Any [`ResourceError`].
    fn find(
        &self,
        ctx: &Context,
    ) -> impl Future<Output = Result<Option<Self::Outputs>, ResourceError>> + Send {
        let _ = ctx;
        async { Ok(None) }
    }
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
}

/// What a resource operation gets from the engine: its identity, AWS clients, retries, events.
#[derive(Clone)]
pub struct Context {
    shared: Arc<Shared>,
    stack: Arc<str>,
    resource: Arc<str>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("stack", &self.stack)
            .field("resource", &self.resource)
            .finish()
    }
}

impl Context {
    pub(crate) fn new(shared: Arc<Shared>, stack: &str, resource: &str) -> Self {
        Self {
            shared,
            stack: stack.into(),
            resource: resource.into(),
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

    /// The tags every created resource carries: its stack and its logical name.
    pub fn tags(&self) -> [(&'static str, String); 2] {
        [
            (STACK_TAG, self.stack.to_string()),
            (RESOURCE_TAG, self.resource.to_string()),
        ]
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
        op.retry(self.shared.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|e: &AwsError| e.class.is_retryable() || also_retry(e))
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
            .sleep(tokio::time::sleep)
            .when(|e: &ResourceError| retry_if(e))
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
/// `update(ctx, inputs, previous inputs, outputs, changed fields)`, erased.
type UpdateFn = fn(Context, Value, Value, Value, Vec<String>) -> Fut<Value>;
/// `read(ctx, inputs, outputs)`, erased: live (inputs, outputs) or gone.
type ReadFn = fn(Context, Value, Value) -> Fut<Option<(Value, Value)>>;

/// The type-erased operations of one resource kind, on JSON inputs and outputs.
#[derive(Clone, Copy)]
pub(crate) struct KindOps {
    pub(crate) service: &'static str,
    pub(crate) replace_on: &'static [&'static str],
    pub(crate) delete_before_replace: bool,
    pub(crate) create: fn(Context, Value) -> Fut<Value>,
    pub(crate) find: fn(Context, Value) -> Fut<Option<Value>>,
    pub(crate) read: ReadFn,
    pub(crate) update: UpdateFn,
    pub(crate) delete: fn(Context, Value, Value) -> Fut<()>,
}

impl KindOps {
    /// Whether a change to `field` forces a replacement.
    pub(crate) fn forces_replace(&self, field: &str) -> bool {
        self.replace_on.iter().any(|f| *f == "*" || *f == field)
    }
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
            replace_on: R::REPLACE_ON,
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
            update: |ctx, inputs, previous, outputs, changed| {
                Box::pin(async move {
                    let r: R = decode("inputs", inputs)?;
                    let p: R = decode("previous inputs", previous)?;
                    let o: R::Outputs = decode("outputs", outputs)?;
                    let out = r.update(&ctx, &p, &o, &changed).await?;
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
