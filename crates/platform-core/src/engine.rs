//! The engine: preview, up, refresh, destroy, over a state store, with events and bounded parallelism.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_types::SdkConfig;
use serde_json::Value;
use tokio::sync::{OnceCell, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::StateError;
use crate::error::{Error, ResourceError};
use crate::events::{CallRecorder, CallStats, Event, EventSink, Subscriber};
use crate::group::Board;
use crate::plan::{Action, ActionKind, Counts, ExternalOutputs, Plan, plan_with};
use crate::provider::{IdentitySource, ProviderInfo};
use crate::resource::{BoxFuture, Context, KindOps, Published, Registry, RetryPolicy, Shared};
use crate::stack::{Declared, Desired, OutputValues, Produced, Stack};
use crate::state::{
    Change, Deposed, Pending, PendingOp, Producer, ResourceState, StackLock, StackResource,
    StackState, StateStore, validate_stack_name,
};
use crate::value::{RefTarget, Resolved, collect_refs, resolve};

/// Builds an [`Engine`].
pub struct EngineBuilder {
    store: Arc<dyn StateStore>,
    sdk_config: Option<SdkConfig>,
    identity: Option<IdentitySource>,
    interceptors: Vec<SharedInterceptor>,
    extensions: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    subscribers: Vec<Subscriber>,
    concurrency: usize,
    service_limits: HashMap<String, usize>,
    default_service_limit: usize,
    retry: RetryPolicy,
    cancel: CancellationToken,
    lock_timeout: Duration,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("store", &self.store)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Uses this AWS configuration for every client, and STS for the current account.
    /// Build it once at the entry point; an emulator is only an endpoint URL and test credentials.
    #[must_use]
    pub fn aws(mut self, config: SdkConfig) -> Self {
        self.identity = Some(IdentitySource::Aws(Box::new(config.clone())));
        self.sdk_config = Some(config);
        self
    }

    /// Fixes the account and region instead of asking STS: for fakes and tests, or when the caller
    /// has already resolved the identity these credentials belong to.
    #[must_use]
    pub fn provider(mut self, provider: ProviderInfo) -> Self {
        self.identity = Some(IdentitySource::Fixed(provider));
        self
    }

    /// Adds an SDK interceptor to every client the engine's resources build.
    #[must_use]
    pub fn interceptor(mut self, interceptor: impl Intercept + 'static) -> Self {
        self.interceptors.push(SharedInterceptor::new(interceptor));
        self
    }

    /// Makes `value` available to resources through [`Context::extension`].
    #[must_use]
    pub fn extension<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(TypeId::of::<T>(), Arc::new(value));
        self
    }

    /// Calls `f` with every [`Event`].
    #[must_use]
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.subscribers.push(Arc::new(f));
        self
    }

    /// At most `n` resource operations at once (default 16).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// At most `n` operations at once on AWS service `service` (e.g. `iam`).
    #[must_use]
    pub fn service_limit(mut self, service: impl Into<String>, n: usize) -> Self {
        self.service_limits.insert(service.into(), n.max(1));
        self
    }

    /// At most `n` operations at once on any one service without its own limit (default 8).
    #[must_use]
    pub fn default_service_limit(mut self, n: usize) -> Self {
        self.default_service_limit = n.max(1);
        self
    }

    /// How retryable errors are retried.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Cancelling `token` stops starting new operations; those in flight finish and are recorded, and
    /// the run ends with [`Error::Cancelled`]. Wire Ctrl-C to it.
    #[must_use]
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// How long to wait for a stack's lock held by someone else before failing with
    /// [`StateError::Locked`](crate::StateError::Locked) (default: not at all). While waiting, an
    /// [`Event::LockWait`] says who holds it.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Builds the engine.
    pub fn build(self) -> Engine {
        let limits = Limits::new(
            self.concurrency,
            &self.service_limits,
            self.default_service_limit,
        );
        let events = EventSink::new(self.subscribers);
        let mut interceptors = vec![SharedInterceptor::new(CallRecorder::new(events.clone()))];
        interceptors.extend(self.interceptors);
        Engine {
            store: self.store,
            identity: self.identity,
            shared: Arc::new(Shared {
                sdk_config: self.sdk_config,
                interceptors,
                extensions: self.extensions,
                clients: Mutex::default(),
                events,
                retry: self.retry,
                identity: OnceCell::new(),
            }),
            concurrency: self.concurrency,
            limits,
            cancel: self.cancel,
            lock_timeout: self.lock_timeout,
        }
    }
}

/// What [`Engine::up_with`] did.
#[derive(Debug)]
pub struct UpReport<O> {
    /// The stack's outputs.
    pub outputs: O,
    /// The stack, where it was applied and the write of its state that recorded the outputs.
    pub producer: Producer,
    /// The plan that was applied.
    pub plan: Plan,
    /// AWS calls made by this run.
    pub calls: CallStats,
    /// Wall time.
    pub elapsed: Duration,
}

/// What [`Engine::import`] recorded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ImportReport {
    /// The stack.
    pub stack: String,
    /// The resource's logical name.
    pub resource: String,
    /// Its kind.
    pub kind: String,
    /// Its outputs, as read.
    pub outputs: Value,
}

/// What [`Engine::refresh_report`] and [`Engine::preview_refreshed`] found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RefreshReport {
    /// The plan `up` would make against the live resources.
    pub plan: Plan,
    /// What differed between the recorded state and the live resources, by resource name.
    pub drift: Vec<Drift>,
}

/// A recorded resource that is not as recorded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Drift {
    /// Its logical name.
    pub resource: String,
    /// Its kind.
    pub kind: String,
    /// It no longer exists.
    pub gone: bool,
    /// The inputs that differ: as recorded and as found.
    pub fields: Vec<DriftField>,
}

/// One input of a resource that differs from what was recorded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DriftField {
    /// The input's name.
    pub field: String,
    /// As recorded.
    pub recorded: Value,
    /// As found.
    pub live: Value,
}

/// The top-level inputs that differ between `recorded` and `live` (an absent input reads as null).
fn drifted_fields(recorded: &Value, live: &Value) -> Vec<DriftField> {
    let empty = serde_json::Map::new();
    let (r, l) = (
        recorded.as_object().unwrap_or(&empty),
        live.as_object().unwrap_or(&empty),
    );
    let keys: std::collections::BTreeSet<&String> = r.keys().chain(l.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (
                r.get(k).unwrap_or(&Value::Null),
                l.get(k).unwrap_or(&Value::Null),
            );
            (a != b).then(|| DriftField {
                field: k.clone(),
                recorded: a.clone(),
                live: b.clone(),
            })
        })
        .collect()
}

impl<O: Clone> UpReport<O> {
    /// The outputs with who produced them, to build a consumer stack from.
    pub fn produced(&self) -> Produced<O> {
        Produced::new(self.producer.clone(), self.outputs.clone())
    }
}

/// Options for [`Engine::up_with`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct UpOptions {
    /// Read every resource live first, so that changes made outside the engine are corrected.
    pub refresh: bool,
    /// Cancels this run only (the engine's own token, [`EngineBuilder::cancellation`], cancels
    /// every run). A deploy bot cancels one run with it and keeps using the engine.
    pub cancel: Option<CancellationToken>,
}

impl UpOptions {
    /// With a refresh first.
    #[must_use]
    pub fn with_refresh(mut self, refresh: bool) -> Self {
        self.refresh = refresh;
        self
    }

    /// Cancelling `token` stops this run as Ctrl-C would: nothing new starts, in-flight calls finish
    /// and are recorded, waits end; the run returns [`Error::Cancelled`]. A token already cancelled
    /// starts nothing, not even the identity check.
    #[must_use]
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }
}

/// What [`Engine::destroy`] did.
#[derive(Clone, Debug)]
pub struct DestroyReport {
    /// Resources deleted (deposed instances included).
    pub deleted: usize,
    /// AWS calls made.
    pub calls: CallStats,
    /// Wall time.
    pub elapsed: Duration,
}

/// The engine. Cheap to share behind an `Arc`; every method can run concurrently for different stacks.
pub struct Engine {
    store: Arc<dyn StateStore>,
    identity: Option<IdentitySource>,
    shared: Arc<Shared>,
    concurrency: usize,
    /// Shared by every run of this engine: the bounds hold across stacks applied concurrently.
    limits: Limits,
    cancel: CancellationToken,
    lock_timeout: Duration,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("store", &self.store)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A builder over state store `store`.
    pub fn builder(store: impl StateStore + 'static) -> EngineBuilder {
        Self::builder_shared(Arc::new(store))
    }

    /// A builder over a shared state store.
    pub fn builder_shared(store: Arc<dyn StateStore>) -> EngineBuilder {
        EngineBuilder {
            store,
            sdk_config: None,
            identity: None,
            interceptors: Vec::new(),
            extensions: HashMap::new(),
            subscribers: Vec::new(),
            concurrency: 16,
            service_limits: HashMap::new(),
            default_service_limit: 8,
            retry: RetryPolicy::default(),
            cancel: CancellationToken::new(),
            lock_timeout: Duration::ZERO,
        }
    }

    /// The state store.
    pub fn store(&self) -> &dyn StateStore {
        self.store.as_ref()
    }

    /// The AWS calls counted since the engine was built.
    pub fn calls(&self) -> CallStats {
        self.shared.events.stats()
    }

    /// The engine's event sink (to emit from outside, e.g. a CLI's own steps).
    pub fn events(&self) -> &EventSink {
        &self.shared.events
    }

    /// The cancellation token (cancel it to stop every run gracefully).
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// The token of one run: cancelled with the engine's token or with `extra`. The guard cancels it
    /// when the run ends, which also ends the task that watches `extra`.
    fn run_token(
        &self,
        extra: Option<&CancellationToken>,
    ) -> (CancellationToken, tokio_util::sync::DropGuard) {
        let token = self.cancel.child_token();
        if let Some(extra) = extra {
            if extra.is_cancelled() {
                token.cancel();
            } else {
                let (extra, run) = (extra.clone(), token.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = extra.cancelled() => run.cancel(),
                        () = run.cancelled() => {}
                    }
                });
            }
        }
        let guard = token.clone().drop_guard();
        (token, guard)
    }

    /// The account and region of the current credentials (asked once, then remembered).
    ///
    /// # Errors
    /// [`Error::NotConfigured`] without `aws` or `provider` on the builder; [`Error::Identity`] when STS fails.
    pub async fn identity(&self) -> Result<ProviderInfo, Error> {
        let source = self.identity.as_ref().ok_or_else(|| {
            Error::NotConfigured(
                "neither EngineBuilder::aws nor EngineBuilder::provider was given".into(),
            )
        })?;
        self.shared
            .identity
            .get_or_try_init(|| source.resolve())
            .await
            .cloned()
    }

    /// Takes `stack`'s lock for `operation`; while someone else holds it, waits up to the lock
    /// timeout (saying who holds it), checking every second.
    pub(crate) async fn lock_stack(
        &self,
        stack: &str,
        operation: &str,
        cancel: &CancellationToken,
    ) -> Result<Box<dyn StackLock>, Error> {
        validate_stack_name(stack).map_err(|source| Error::Invalid {
            stack: stack.to_owned(),
            resource: "stack".into(),
            source,
        })?;
        let started = Instant::now();
        let mut announced = false;
        loop {
            match self.store.lock(stack, operation).await {
                Err(StateError::Locked { holder, .. })
                    if started.elapsed() < self.lock_timeout && !cancel.is_cancelled() =>
                {
                    if !announced {
                        announced = true;
                        self.shared.events.emit(Event::LockWait {
                            stack: stack.to_owned(),
                            holder,
                            timeout: self.lock_timeout,
                        });
                    }
                    let left = self.lock_timeout.saturating_sub(started.elapsed());
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = tokio::time::sleep(left.min(LOCK_POLL)) => {}
                    }
                }
                other => return other.map_err(Error::from),
            }
        }
    }

    async fn check_provider(&self, state: &StackState) -> Result<ProviderInfo, Error> {
        let current = self.identity().await?;
        if let Some(recorded) = &state.provider
            && recorded != &current
        {
            return Err(Error::ProviderMismatch {
                stack: state.stack.clone(),
                recorded: recorded.clone(),
                current,
            });
        }
        Ok(current)
    }

    /// Checks that every referenced stack has outputs, applied where the consumer runs (`here`),
    /// and returns who produced them: as recorded for a stack applied before, or this group run's
    /// member.
    async fn check_references(
        &self,
        references: &[String],
        group: Option<&Arc<Board>>,
        here: &ProviderInfo,
    ) -> Result<Vec<Producer>, Error> {
        let mut producers = Vec::new();
        for r in references {
            // A member of the same group is recorded by the group's run itself.
            if group.is_some_and(|g| g.is_member(r)) {
                producers.push(Producer {
                    stack: r.clone(),
                    provider: Some(here.clone()),
                    serial: None,
                    schema: None,
                });
                continue;
            }
            let Some(found) = self.store.read(r).await?.filter(|s| s.outputs.is_some()) else {
                return Err(Error::StackNotFound { stack: r.clone() });
            };
            if let Some(producer) = &found.provider
                && producer != here
            {
                return Err(Error::ForeignOutputs {
                    stack: r.clone(),
                    producer: producer.clone(),
                    consumer: here.clone(),
                });
            }
            producers.push(Producer {
                stack: r.clone(),
                provider: found.provider,
                serial: Some(found.serial),
                schema: Some(found.outputs_schema.unwrap_or(1)),
            });
        }
        Ok(producers)
    }

    /// The producers `stack` says it was built from, refused when applied elsewhere than `here`,
    /// with the ones the engine read (`read`) that they do not name.
    fn producers<S: Stack>(
        stack: &S,
        here: &ProviderInfo,
        read: Vec<Producer>,
    ) -> Result<Vec<Producer>, Error> {
        let mut producers = stack.producers();
        for p in &producers {
            if let Some(producer) = &p.provider
                && producer != here
            {
                return Err(Error::ForeignOutputs {
                    stack: p.stack.clone(),
                    producer: producer.clone(),
                    consumer: here.clone(),
                });
            }
        }
        for r in read {
            if !producers.iter().any(|p| p.stack == r.stack) {
                producers.push(r);
            }
        }
        producers.sort_by(|a, b| a.stack.cmp(&b.stack));
        Ok(producers)
    }

    /// What `desired`'s references to other stacks' resources read when it is planned: for a member
    /// of `group`, what that member's plan keeps (waiting for it); otherwise the producer's recorded
    /// outputs (unknown when not recorded).
    async fn external_outputs(
        &self,
        desired: &Desired,
        group: Option<&Arc<Board>>,
    ) -> Result<ExternalOutputs, Error> {
        let mut external = ExternalOutputs::new();
        let mut states: HashMap<String, Option<StackState>> = HashMap::new();
        for (decl, r) in desired.external_refs() {
            let producer = r.stack.clone().unwrap_or_default();
            if external.get(&producer, &r.resource).is_some() {
                continue;
            }
            let outputs =
                match group.filter(|g| g.is_member(&producer)) {
                    Some(g) => g.kept(&producer, &r.resource).await.map_err(|()| {
                        Error::DependencyFailed {
                            stack: desired.stack().to_owned(),
                            resource: decl.name.clone(),
                            reference: r.to_string(),
                            producer: producer.clone(),
                        }
                    })?,
                    None => {
                        if !states.contains_key(&producer) {
                            let state = self.store.read(&producer).await?;
                            states.insert(producer.clone(), state);
                        }
                        states
                            .get(&producer)
                            .and_then(Option::as_ref)
                            .and_then(|s| s.resources.get(&r.resource))
                            .and_then(|s| s.outputs.clone())
                    }
                };
            external.insert(&producer, &r.resource, outputs);
        }
        Ok(external)
    }

    /// Plans `stack` against its recorded state: what `up` would do. Validates inputs and the graph
    /// first; reads state; makes no change and no AWS call but the identity check.
    ///
    /// # Errors
    /// Validation and graph errors, state errors, a provider mismatch.
    pub async fn preview<S: Stack>(&self, stack: &S) -> Result<Plan, Error> {
        let desired = Desired::of(stack)?;
        let state = self
            .store
            .read(stack.name())
            .await?
            .unwrap_or_else(|| StackState::new(stack.name()));
        self.check_provider(&state).await?;
        let external = self.external_outputs(&desired, None).await?;
        let plan = plan_with(&desired, &state, None, &external)?;
        self.shared.events.emit(Event::Planned {
            stack: stack.name().to_owned(),
            counts: plan.counts(),
        });
        Ok(plan)
    }

    /// Brings `stack` to its declared state and returns its outputs.
    ///
    /// # Errors
    /// As [`up_with`](Self::up_with).
    pub async fn up<S: Stack>(&self, stack: &S) -> Result<S::Outputs, Error> {
        Ok(self.up_with(stack, UpOptions::default()).await?.outputs)
    }

    /// Brings `stack` to its declared state: validates, locks, checks the provider and references,
    /// plans, applies the plan over the dependency graph in parallel, records outputs.
    ///
    /// # Errors
    /// Validation and graph errors (before any call), [`Error::ProviderMismatch`],
    /// [`Error::StackNotFound`] for a missing reference, the first [`Error::Resource`] that failed
    /// (what completed is recorded), [`Error::Cancelled`], state errors.
    ///
    /// # Guarantees
    /// Every mutating call is preceded by a durable intent and followed by a durable result; a second
    /// run after any failure completes the work without creating anything twice.
    pub async fn up_with<S: Stack>(
        &self,
        stack: &S,
        options: UpOptions,
    ) -> Result<UpReport<S::Outputs>, Error> {
        self.up_declared(stack, Desired::declare(stack)?, options, None, None)
            .await
    }

    /// [`up_with`](Self::up_with) on a declared stack, alone or as a member of `group` (which took
    /// the stack's lock already, with every other member's, before any AWS call).
    pub(crate) async fn up_declared<S: Stack>(
        &self,
        stack: &S,
        (desired, declared): (Desired, Declared<S::Outputs>),
        options: UpOptions,
        group: Option<&Arc<Board>>,
        lock: Option<Box<dyn StackLock>>,
    ) -> Result<UpReport<S::Outputs>, Error> {
        let started = Instant::now();
        let calls_before = self.calls();
        let name = stack.name().to_owned();
        let (cancel, _cancel_guard) = self.run_token(options.cancel.as_ref());
        if cancel.is_cancelled() {
            return Err(Error::Cancelled {
                stack: name,
                completed: 0,
                remaining: desired.resources.len(),
            });
        }
        let lock: Arc<dyn StackLock> = match lock {
            Some(lock) => Arc::from(lock),
            None => Arc::from(self.lock_stack(&name, "up", &cancel).await?),
        };
        let result = self
            .up_locked(
                stack,
                (desired, declared),
                options,
                group,
                lock.clone(),
                cancel,
            )
            .await
            .map(|(outputs, plan, producer)| UpReport {
                outputs,
                producer,
                plan,
                calls: self.calls().since(&calls_before),
                elapsed: started.elapsed(),
            });
        released(lock.as_ref(), result).await
    }

    /// [`up_declared`](Self::up_declared) once the lock is held: the outputs and the plan applied.
    async fn up_locked<S: Stack>(
        &self,
        stack: &S,
        (desired, declared): (Desired, Declared<S::Outputs>),
        options: UpOptions,
        group: Option<&Arc<Board>>,
        lock: Arc<dyn StackLock>,
        cancel: CancellationToken,
    ) -> Result<(S::Outputs, Plan, Producer), Error> {
        let name = stack.name().to_owned();
        let mut state = self
            .store
            .read(&name)
            .await?
            .unwrap_or_else(|| StackState::new(&name));
        let provider = self.check_provider(&state).await?;
        let references = stack.references();
        let read = self.check_references(&references, group, &provider).await?;
        let producers = Self::producers(stack, &provider, read)?;
        if options.refresh {
            (state, _) = self.read_live(&desired.registry, state, &cancel).await?;
            state.serial += 1;
            lock.write(&state).await?;
        }
        let external = self.external_outputs(&desired, group).await?;
        let plan = plan_with(&desired, &state, None, &external)?;
        if let Some(g) = group {
            // What this plan keeps, for the members whose plans read it.
            let kept = plan
                .steps
                .iter()
                .map(|step| {
                    let outputs = match step.action {
                        Action::Same => state
                            .resources
                            .get(&step.resource)
                            .and_then(|r| r.outputs.clone()),
                        _ => None,
                    };
                    (step.resource.clone(), outputs)
                })
                .collect();
            g.planned(&name, kept);
        }
        self.shared.events.emit(Event::Planned {
            stack: name.clone(),
            counts: plan.counts(),
        });
        // What the state says of the stack as a whole; a run that changes no resource and would
        // record the same writes nothing.
        let recorded = Summary::of(&state);
        state.provider = Some(provider.clone());
        state.references = references;
        state.producers = producers;
        let links = Links {
            external,
            group: group.cloned(),
            users: HashMap::new(),
        };
        let run = Run::new(
            self,
            name.clone(),
            state,
            lock,
            desired.registry.clone(),
            links,
            cancel,
        );
        let outputs_map = run.apply(&desired, &plan).await?;
        let values = OutputValues {
            outputs: &outputs_map,
        };
        let outputs = declared.build(&values).map_err(|source| Error::Outputs {
            stack: name.clone(),
            source: Box::new(source),
        })?;
        let json = serde_json::to_value(&outputs).map_err(|source| Error::Serialize {
            stack: name.clone(),
            resource: "outputs".into(),
            source,
        })?;
        // With nothing changed and nothing new to record, the outputs were produced by the state
        // as it is: its serial.
        let unchanged_at = if plan.has_changes() {
            None
        } else {
            let state = run.inner.state.lock().await;
            let mut now = Summary::of(&state);
            now.outputs = Some(json.clone());
            now.outputs_schema = Some(S::OUTPUTS_SCHEMA);
            (now == recorded).then_some(state.serial)
        };
        let serial = if let Some(serial) = unchanged_at {
            serial
        } else {
            let mut serial = 0;
            run.record_whole(|s| {
                s.outputs = Some(json);
                s.outputs_schema = Some(S::OUTPUTS_SCHEMA);
                // The serial this write is recorded under (`record` increments it after `f`).
                serial = s.serial + 1;
            })
            .await?;
            serial
        };
        let producer = Producer {
            stack: name,
            provider: Some(provider),
            serial: Some(serial),
            schema: Some(S::OUTPUTS_SCHEMA),
        };
        Ok((outputs, plan, producer))
    }

    /// Reads every recorded resource live, records what it found (drift, and resources deleted outside
    /// the engine), and returns the plan `up` would now make.
    ///
    /// # Errors
    /// As [`preview`](Self::preview), plus read failures.
    pub async fn refresh<S: Stack>(&self, stack: &S) -> Result<Plan, Error> {
        Ok(self.refresh_report(stack).await?.plan)
    }

    /// [`refresh`](Self::refresh), with what differed between the recorded state and the live
    /// resources ([`RefreshReport::drift`]): what `refresh --detailed-exitcode` gates on.
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh).
    pub async fn refresh_report<S: Stack>(&self, stack: &S) -> Result<RefreshReport, Error> {
        let desired = Desired::of(stack)?;
        let name = stack.name();
        let (cancel, _cancel_guard) = self.run_token(None);
        if cancel.is_cancelled() {
            return Err(Error::Cancelled {
                stack: name.to_owned(),
                completed: 0,
                remaining: desired.resources.len(),
            });
        }
        let lock = self.lock_stack(name, "refresh", &cancel).await?;
        let result = async {
            let state = self
                .store
                .read(name)
                .await?
                .unwrap_or_else(|| StackState::new(name));
            self.check_provider(&state).await?;
            let (mut state, drift) = self.read_live(&desired.registry, state, &cancel).await?;
            state.serial += 1;
            lock.write(&state).await?;
            let external = self.external_outputs(&desired, None).await?;
            let plan = plan_with(&desired, &state, None, &external)?;
            Ok(RefreshReport { plan, drift })
        }
        .await;
        released(lock.as_ref(), result).await
    }

    /// [`preview`](Self::preview) against the live resources: reads every recorded resource first
    /// (in parallel, within the engine's bounds) and plans against what it found. Records nothing
    /// and takes no lock.
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh).
    pub async fn preview_refreshed<S: Stack>(&self, stack: &S) -> Result<RefreshReport, Error> {
        let desired = Desired::of(stack)?;
        let (cancel, _cancel_guard) = self.run_token(None);
        let state = self
            .store
            .read(stack.name())
            .await?
            .unwrap_or_else(|| StackState::new(stack.name()));
        self.check_provider(&state).await?;
        let (state, drift) = self.read_live(&desired.registry, state, &cancel).await?;
        let external = self.external_outputs(&desired, None).await?;
        let plan = plan_with(&desired, &state, None, &external)?;
        self.shared.events.emit(Event::Planned {
            stack: stack.name().to_owned(),
            counts: plan.counts(),
        });
        Ok(RefreshReport { plan, drift })
    }

    /// Brings an existing resource under management as `resource` of `stack`: looks it up by `id`
    /// (its id, name or ARN, as its kind says), tags it as this stack's, reads it, and records it.
    /// The next `up` makes it match the declaration, and `preview` shows only the differences.
    ///
    /// # Errors
    /// [`Error::Invalid`] when `stack` declares no `resource` (naming those it declares) or its
    /// kind cannot be imported; [`Error::AlreadyManaged`] when the state records it already;
    /// [`Error::ImportNotFound`] when nothing has that id. In each case the state is untouched.
    pub async fn import<S: Stack>(
        &self,
        stack: &S,
        resource: &str,
        id: &str,
    ) -> Result<ImportReport, Error> {
        let desired = Desired::of(stack)?;
        let name = stack.name();
        let Some(decl) = desired.resources.iter().find(|d| d.name == resource) else {
            let declared: Vec<&str> = desired.resources.iter().map(|d| d.name.as_str()).collect();
            return Err(Error::Invalid {
                stack: name.to_owned(),
                resource: resource.to_owned(),
                source: crate::ValidationError::new(
                    "resource",
                    format!("{name}/{resource}"),
                    format!(
                        "stack {name} declares no such resource (it declares {})",
                        declared.join(", ")
                    ),
                ),
            });
        };
        let ops = *desired.ops(decl.kind).ok_or_else(|| Error::UnknownKind {
            stack: name.to_owned(),
            resource: resource.to_owned(),
            kind: decl.kind.to_owned(),
        })?;
        let (cancel, _cancel_guard) = self.run_token(None);
        let lock = self.lock_stack(name, "import", &cancel).await?;
        let result = async {
            let mut state = self
                .store
                .read(name)
                .await?
                .unwrap_or_else(|| StackState::new(name));
            let provider = self.check_provider(&state).await?;
            if state
                .resources
                .get(resource)
                .is_some_and(|r| r.outputs.is_some())
            {
                return Err(Error::AlreadyManaged {
                    stack: name.to_owned(),
                    resource: resource.to_owned(),
                });
            }
            let failed = |source| Error::Resource {
                stack: name.to_owned(),
                resource: resource.to_owned(),
                action: "import",
                source: Box::new(source),
            };
            let not_found = || Error::ImportNotFound {
                stack: name.to_owned(),
                resource: resource.to_owned(),
                kind: decl.kind.to_owned(),
                id: id.to_owned(),
            };
            let ctx = Context::new(self.shared.clone(), name, resource, cancel.clone());
            let Some(outputs) = (ops.import)(ctx.clone(), decl.inputs.clone(), id.to_owned())
                .await
                .map_err(|e| match e {
                    ResourceError::Invalid(source) => Error::Invalid {
                        stack: name.to_owned(),
                        resource: resource.to_owned(),
                        source,
                    },
                    other => failed(other),
                })?
            else {
                return Err(not_found());
            };
            let Some((inputs, outputs)) = (ops.read)(ctx, decl.inputs.clone(), outputs)
                .await
                .map_err(failed)?
            else {
                return Err(not_found());
            };
            state.resources.insert(
                resource.to_owned(),
                ResourceState {
                    kind: decl.kind.to_owned(),
                    inputs,
                    outputs: Some(outputs.clone()),
                    dependencies: decl.dependencies.clone(),
                    uses: decl.uses(),
                    instance: None,
                    pending: None,
                    deposed: Vec::new(),
                },
            );
            state.provider = Some(provider);
            state.serial += 1;
            lock.write(&state).await?;
            Ok(ImportReport {
                stack: name.to_owned(),
                resource: resource.to_owned(),
                kind: decl.kind.to_owned(),
                outputs,
            })
        }
        .await;
        released(lock.as_ref(), result).await
    }

    /// Reads every recorded resource in parallel and returns the state as found, with what
    /// differed; writes nothing. A cancellation stops the reads (they change nothing).
    async fn read_live(
        &self,
        registry: &Registry,
        mut state: StackState,
        cancel: &CancellationToken,
    ) -> Result<(StackState, Vec<Drift>), Error> {
        let mut drift = Vec::new();
        let mut set = JoinSet::new();
        let limits = self.limits.clone();
        for (name, r) in &state.resources {
            let Some(outputs) = r.outputs.clone() else {
                continue;
            };
            let ops = *registry.get(&r.kind).ok_or_else(|| Error::UnknownKind {
                stack: state.stack.clone(),
                resource: name.clone(),
                kind: r.kind.clone(),
            })?;
            let ctx = Context::new(self.shared.clone(), &state.stack, name, cancel.clone())
                .for_instance(r.instance.as_deref());
            let inputs = r.inputs.clone();
            let name = name.clone();
            let limits = limits.clone();
            set.spawn(async move {
                let _permits = limits.acquire(ops.service).await;
                let res = (ops.read)(ctx, inputs, outputs).await;
                (name, res)
            });
        }
        let mut first_error = None;
        let total = set.len();
        let mut read = 0;
        loop {
            let joined = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    set.abort_all();
                    return Err(Error::Cancelled {
                        stack: state.stack.clone(),
                        completed: read,
                        remaining: total - read,
                    });
                }
                joined = set.join_next() => joined,
            };
            let Some(joined) = joined else { break };
            read += 1;
            let (name, res) = joined.map_err(join_error)?;
            match res {
                Ok(Some((inputs, outputs))) => {
                    if let Some(r) = state.resources.get_mut(&name) {
                        let fields = drifted_fields(&r.inputs, &inputs);
                        if !fields.is_empty() {
                            drift.push(Drift {
                                resource: name.clone(),
                                kind: r.kind.clone(),
                                gone: false,
                                fields,
                            });
                        }
                        r.inputs = inputs;
                        r.outputs = Some(outputs);
                    }
                }
                Ok(None) => {
                    if let Some(r) = state.resources.remove(&name) {
                        drift.push(Drift {
                            resource: name,
                            kind: r.kind,
                            gone: true,
                            fields: Vec::new(),
                        });
                    }
                }
                Err(source) => {
                    first_error.get_or_insert(Error::Resource {
                        stack: state.stack.clone(),
                        resource: name,
                        action: "read",
                        source: Box::new(source),
                    });
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        drift.sort_by(|a, b| a.resource.cmp(&b.resource));
        Ok((state, drift))
    }

    /// Deletes every resource recorded for the stack `name`, from state alone, dependents first and in
    /// parallel, then removes its state.
    ///
    /// # Errors
    /// [`Error::ReferencedBy`] while another stack records a reference to it (nothing is deleted);
    /// [`Error::ProviderMismatch`]; the first delete that failed (what was deleted is recorded).
    pub async fn destroy<S: Stack>(&self, name: &str) -> Result<DestroyReport, Error> {
        self.destroy_in::<S>(name, None).await
    }

    /// [`destroy`](Self::destroy), alone or as a member of `group`: then consumers in the group
    /// do not block it, and each resource that their resources use waits until those are deleted.
    pub(crate) async fn destroy_in<S: Stack>(
        &self,
        name: &str,
        group: Option<&Arc<Board>>,
    ) -> Result<DestroyReport, Error> {
        let started = Instant::now();
        let calls_before = self.calls();
        let (cancel, _cancel_guard) = self.run_token(None);
        if cancel.is_cancelled() {
            return Err(Error::Cancelled {
                stack: name.to_owned(),
                completed: 0,
                remaining: 0,
            });
        }
        let lock: Arc<dyn StackLock> = match group {
            // A group takes its members' locks in name order, before this.
            Some(g) => Arc::from(
                g.locked(name, self.lock_stack(name, "destroy", &cancel))
                    .await?,
            ),
            None => Arc::from(self.lock_stack(name, "destroy", &cancel).await?),
        };
        let result = self
            .destroy_locked::<S>(name, group, lock.clone(), cancel)
            .await
            .map(|deleted| DestroyReport {
                deleted,
                calls: self.calls().since(&calls_before),
                elapsed: started.elapsed(),
            });
        released(lock.as_ref(), result).await
    }

    /// [`destroy_in`](Self::destroy_in) once the lock is held: how many resources were deleted.
    async fn destroy_locked<S: Stack>(
        &self,
        name: &str,
        group: Option<&Arc<Board>>,
        lock: Arc<dyn StackLock>,
        cancel: CancellationToken,
    ) -> Result<usize, Error> {
        let Some(state) = self.store.read(name).await? else {
            return Ok(0);
        };
        let mut consumers = Vec::new();
        // Per resource of this stack, the resources of group members that use it.
        let mut users: HashMap<String, Vec<StackResource>> = HashMap::new();
        for other in self.store.list().await? {
            if other == name {
                continue;
            }
            let Some(s) = self.store.read(&other).await? else {
                continue;
            };
            if !s.references.iter().any(|r| r == name) {
                continue;
            }
            if !group.is_some_and(|g| g.is_member(&other)) {
                consumers.push(other);
                continue;
            }
            for (resource, r) in &s.resources {
                for u in r.uses.iter().filter(|u| u.stack == name) {
                    users
                        .entry(u.resource.clone())
                        .or_default()
                        .push(StackResource {
                            stack: other.clone(),
                            resource: resource.clone(),
                        });
                }
            }
        }
        if !consumers.is_empty() {
            return Err(Error::ReferencedBy {
                stack: name.to_owned(),
                consumers,
            });
        }
        self.check_provider(&state).await?;
        let mut registry = Registry::new();
        S::register(&mut registry);
        let deleted = state
            .resources
            .values()
            .map(|r| usize::from(r.outputs.is_some()) + r.deposed.len())
            .sum();
        let links = Links {
            external: ExternalOutputs::new(),
            group: group.cloned(),
            users,
        };
        let run = Run::new(self, name.to_owned(), state, lock, registry, links, cancel);
        run.destroy_all().await?;
        run.lock.remove().await?;
        Ok(deleted)
    }

    /// The recorded outputs of stack `name` as `S::Outputs` (see [`StackRef`](crate::StackRef)).
    ///
    /// # Errors
    /// As [`StackRef::read`](crate::StackRef::read).
    pub async fn outputs<S: Stack>(&self, name: &str) -> Result<S::Outputs, Error> {
        let here = self.identity().await?;
        crate::StackRef::<S>::new(name)
            .read(self.store.as_ref(), &here)
            .await
            .map(Produced::into_outputs)
    }
}

/// How often a held lock is tried again while waiting for it.
const LOCK_POLL: Duration = Duration::from_secs(1);

/// Gives `lock` up however the run ended. A failure to release is the run's error only when the run
/// succeeded; after a failure, the run's own error is the one to see (the lock left is named by the
/// next run).
async fn released<T>(lock: &dyn StackLock, result: Result<T, Error>) -> Result<T, Error> {
    match (result, lock.release().await) {
        (Ok(value), Ok(())) => Ok(value),
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(release)) => {
            tracing::warn!("the lock was not released after the failure: {release}");
            Err(e)
        }
    }
}

fn join_error(e: tokio::task::JoinError) -> Error {
    if e.is_panic() {
        std::panic::resume_unwind(e.into_panic());
    }
    Error::NotConfigured(format!("a task was aborted: {e}"))
}

#[derive(Clone)]
struct Limits {
    global: Arc<Semaphore>,
    services: Arc<HashMap<String, Arc<Semaphore>>>,
    default: usize,
    extra: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Limits {
    fn new(global: usize, services: &HashMap<String, usize>, default: usize) -> Self {
        Self {
            global: Arc::new(Semaphore::new(global)),
            services: Arc::new(
                services
                    .iter()
                    .map(|(k, v)| (k.clone(), Arc::new(Semaphore::new(*v))))
                    .collect(),
            ),
            default,
            extra: Arc::default(),
        }
    }

    /// Takes the service's permit, then the global one (always in that order: no deadlock, and a task
    /// waiting on a busy service does not hold a global slot).
    async fn acquire(
        &self,
        service: &str,
    ) -> (
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    ) {
        let sem = match self.services.get(service) {
            Some(s) => s.clone(),
            None => self
                .extra
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(service.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(self.default)))
                .clone(),
        };
        // The semaphores are never closed, so acquiring cannot fail.
        let s = sem
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("semaphore closed"));
        let g = self
            .global
            .clone()
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("semaphore closed"));
        (s, g)
    }
}

/// One run over one locked stack.
/// What a stack's state records of the stack as a whole, beside its resources.
#[derive(PartialEq)]
struct Summary {
    provider: Option<ProviderInfo>,
    references: Vec<String>,
    producers: Vec<Producer>,
    outputs: Option<Value>,
    outputs_schema: Option<u32>,
}

impl Summary {
    fn of(state: &StackState) -> Self {
        Self {
            provider: state.provider.clone(),
            references: state.references.clone(),
            producers: state.producers.clone(),
            outputs: state.outputs.clone(),
            outputs_schema: state.outputs_schema,
        }
    }
}

struct Run {
    inner: Arc<RunInner>,
    lock: Arc<dyn StackLock>,
}

struct RunInner {
    stack: String,
    shared: Arc<Shared>,
    registry: Registry,
    state: tokio::sync::Mutex<StackState>,
    lock: Arc<dyn StackLock>,
    outputs: Mutex<HashMap<String, Value>>,
    limits: Limits,
    cancel: CancellationToken,
    links: Links,
    /// While ops execute: where a create that published its outputs early names its resource, so
    /// that its dependents start then (see [`Context::publish`]).
    early: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

/// What links a run to other stacks.
struct Links {
    /// Known outputs of other stacks' resources (for references outside a group).
    external: ExternalOutputs,
    /// The group this run is a member of: where other members' outputs appear, and this one's go.
    group: Option<Arc<Board>>,
    /// In a group's destroy: per resource, the other members' resources that use it (deleted first).
    users: HashMap<String, Vec<StackResource>>,
}

#[derive(Clone, Debug)]
enum OpKind {
    /// Create / update / replace / keep a declared resource (index into desired resources).
    Forward(usize, Action),
    /// Delete-before-replace: delete the current instance first.
    DeleteCurrent,
    /// Delete a resource no longer declared (or, in destroy, every resource).
    Delete,
    /// Delete the deposed instances.
    DeleteDeposed,
}

#[derive(Clone, Debug)]
struct Op {
    resource: String,
    kind: OpKind,
    deps: Vec<usize>,
}

impl Run {
    fn new(
        engine: &Engine,
        stack: String,
        state: StackState,
        lock: Arc<dyn StackLock>,
        registry: Registry,
        links: Links,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            inner: Arc::new(RunInner {
                stack,
                shared: engine.shared.clone(),
                registry,
                state: tokio::sync::Mutex::new(state),
                lock: lock.clone(),
                outputs: Mutex::default(),
                limits: engine.limits.clone(),
                cancel,
                links,
                early: Mutex::new(None),
            }),
            lock,
        }
    }

    async fn record_whole(&self, f: impl FnOnce(&mut StackState)) -> Result<(), Error> {
        self.inner.record_whole(f).await
    }

    /// Applies `plan`; returns every declared resource's outputs.
    async fn apply(&self, desired: &Desired, plan: &Plan) -> Result<HashMap<String, Value>, Error> {
        // Held (not copied) while the ops are built: nothing else runs yet.
        let guard = self.inner.state.lock().await;
        let state = &*guard;
        let mut ops: Vec<Op> = Vec::new();
        let mut forward: HashMap<&str, usize> = HashMap::new();
        let mut delete_current: HashMap<&str, usize> = HashMap::new();
        let mut delete_removed: HashMap<&str, usize> = HashMap::new();
        let mut delete_deposed: HashMap<&str, usize> = HashMap::new();

        let mut kept: Vec<&str> = Vec::new();
        // Delete-before-replace spreads to replaced dependents (their old instance must go first).
        let mut dbr: HashSet<&str> = HashSet::new();
        for step in &plan.steps {
            if let Action::Replace { .. } = step.action {
                let own = desired
                    .ops(&step.kind)
                    .is_some_and(|o| o.delete_before_replace);
                let inherited = state
                    .resources
                    .get(&step.resource)
                    .is_some_and(|r| r.dependencies.iter().any(|d| dbr.contains(d.as_str())));
                if own || inherited {
                    dbr.insert(step.resource.as_str());
                }
            }
        }
        for step in &plan.steps {
            let name = step.resource.as_str();
            match &step.action {
                Action::Delete => {
                    delete_removed.insert(name, ops.len());
                    ops.push(Op {
                        resource: name.to_owned(),
                        kind: OpKind::Delete,
                        deps: vec![],
                    });
                }
                Action::DeleteDeposed => {}
                // Kept as recorded: no op, its outputs are known now (see below).
                Action::Same => kept.push(name),
                action => {
                    if dbr.contains(name) {
                        delete_current.insert(name, ops.len());
                        ops.push(Op {
                            resource: name.to_owned(),
                            kind: OpKind::DeleteCurrent,
                            deps: vec![],
                        });
                    }
                    let idx = desired.index[name];
                    forward.insert(name, ops.len());
                    ops.push(Op {
                        resource: name.to_owned(),
                        kind: OpKind::Forward(idx, action.clone()),
                        deps: vec![],
                    });
                }
            }
        }
        // Deposed instances: those left by an earlier run and those this run's replacements make.
        for step in &plan.steps {
            let name = step.resource.as_str();
            let replaced_now = matches!(step.action, Action::Replace { .. }) && !dbr.contains(name);
            if (matches!(step.action, Action::DeleteDeposed) || replaced_now)
                && !delete_deposed.contains_key(name)
            {
                delete_deposed.insert(name, ops.len());
                ops.push(Op {
                    resource: name.to_owned(),
                    kind: OpKind::DeleteDeposed,
                    deps: vec![],
                });
            }
        }
        // Recorded dependents of each resource (who used its current instance).
        let mut recorded_dependents: HashMap<&str, Vec<&str>> = HashMap::new();
        for (n, r) in &state.resources {
            for d in &r.dependencies {
                recorded_dependents
                    .entry(d.as_str())
                    .or_default()
                    .push(n.as_str());
            }
        }
        let all_deps: Vec<Vec<usize>> = ops
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let name = op.resource.clone();
                let mut deps = Vec::new();
                let dependents = recorded_dependents
                    .get(name.as_str())
                    .cloned()
                    .unwrap_or_default();
                match &op.kind {
                    OpKind::Forward(idx, _) => {
                        for d in &desired.resources[*idx].dependencies {
                            deps.extend(forward.get(d.as_str()));
                        }
                        deps.extend(delete_current.get(name.as_str()));
                    }
                    OpKind::DeleteCurrent => {
                        for d in dependents {
                            deps.extend(delete_current.get(d));
                            deps.extend(delete_removed.get(d));
                        }
                    }
                    OpKind::Delete | OpKind::DeleteDeposed => {
                        if matches!(op.kind, OpKind::DeleteDeposed) {
                            deps.extend(forward.get(name.as_str()));
                        }
                        for d in dependents {
                            deps.extend(forward.get(d));
                            deps.extend(delete_removed.get(d));
                            deps.extend(delete_deposed.get(d));
                            deps.extend(delete_current.get(d));
                        }
                    }
                }
                deps.retain(|&d| d != i);
                deps.sort_unstable();
                deps.dedup();
                deps
            })
            .collect();
        for (op, deps) in ops.iter_mut().zip(all_deps) {
            op.deps = deps;
        }
        // What is kept needs no step: its recorded outputs are published at once, so that nothing
        // waits on it (and a run with nothing to do starts no task at all).
        for name in kept {
            let outputs = state
                .resources
                .get(name)
                .and_then(|r| r.outputs.clone())
                .ok_or_else(|| Error::StackNotFound {
                    stack: format!("{}/{name} (recorded outputs)", self.inner.stack),
                })?;
            if let Some(group) = &self.inner.links.group {
                group.applied(&self.inner.stack, name, outputs.clone());
            }
            self.inner
                .outputs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.to_owned(), outputs);
        }
        drop(guard);
        if !ops.is_empty() {
            // The run's header (provider, references, producers) is written whole before the first
            // step, so that the journal's changes always have a document to apply to.
            self.record_whole(|_| {}).await?;
            let resources = Arc::new(desired.resources.clone());
            self.execute(ops, resources).await?;
        }
        let outputs = self
            .inner
            .outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Ok(outputs)
    }

    async fn destroy_all(&self) -> Result<(), Error> {
        let state = self.inner.state.lock().await.clone();
        let mut ops = Vec::new();
        let mut del: HashMap<&str, usize> = HashMap::new();
        let mut dep: HashMap<&str, usize> = HashMap::new();
        for (name, r) in &state.resources {
            if r.outputs.is_some() || r.pending.is_some() {
                del.insert(name, ops.len());
                ops.push(Op {
                    resource: name.clone(),
                    kind: OpKind::Delete,
                    deps: vec![],
                });
            }
            if !r.deposed.is_empty() {
                dep.insert(name, ops.len());
                ops.push(Op {
                    resource: name.clone(),
                    kind: OpKind::DeleteDeposed,
                    deps: vec![],
                });
            }
        }
        for (name, r) in &state.resources {
            for d in &r.dependencies {
                // `name` depends on `d`: d's deletes wait for name's.
                for target in [del.get(d.as_str()), dep.get(d.as_str())]
                    .into_iter()
                    .flatten()
                {
                    ops[*target].deps.extend(
                        del.get(name.as_str())
                            .into_iter()
                            .chain(dep.get(name.as_str())),
                    );
                }
            }
        }
        self.execute(ops, Arc::new(Vec::new())).await
    }

    /// Runs ops as their dependencies complete, bounded by the limits, until done, failed or cancelled.
    async fn execute(
        &self,
        ops: Vec<Op>,
        resources: Arc<Vec<crate::stack::Declaration>>,
    ) -> Result<(), Error> {
        let n = ops.len();
        let mut waiting: Vec<usize> = ops.iter().map(|o| o.deps.len()).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, o) in ops.iter().enumerate() {
            for &d in &o.deps {
                dependents[d].push(i);
            }
        }
        let mut ready: VecDeque<usize> = (0..n).filter(|&i| waiting[i] == 0).collect();
        // The op that creates or changes each declared resource: its dependents may start before
        // it ends, when its create publishes the outputs early.
        let forward_op: HashMap<String, usize> = ops
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o.kind, OpKind::Forward(..)))
            .map(|(i, o)| (o.resource.clone(), i))
            .collect();
        let (early_tx, mut early_rx) = mpsc::unbounded_channel::<String>();
        *self.inner.early.lock().unwrap_or_else(|p| p.into_inner()) = Some(early_tx);
        // An op's dependents are released once: the creates and updates that read its outputs when
        // it publishes them (or ends), the deletes that must follow it (a replaced instance's, a
        // user's) only when it ends.
        let is_forward: Vec<bool> = ops
            .iter()
            .map(|o| matches!(o.kind, OpKind::Forward(..)))
            .collect();
        let mut published = vec![false; n];
        let mut release = |i: usize, ended: bool, ready: &mut VecDeque<usize>| {
            let early = std::mem::replace(&mut published[i], true);
            for &d in &dependents[i] {
                let now = if is_forward[d] { !early } else { ended };
                if now {
                    waiting[d] -= 1;
                    if waiting[d] == 0 {
                        ready.push_back(d);
                    }
                }
            }
        };
        let ops = Arc::new(ops);
        let mut set: JoinSet<(usize, Result<(), Error>)> = JoinSet::new();
        let mut completed = 0usize;
        let mut first_error: Option<Error> = None;
        let mut cancelled = false;
        loop {
            while first_error.is_none() && !cancelled {
                let Some(i) = ready.pop_front() else { break };
                let inner = self.inner.clone();
                let ops = ops.clone();
                let resources = resources.clone();
                set.spawn(async move { (i, inner.run_op(&ops[i], &resources).await) });
            }
            if set.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                () = self.inner.cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                }
                Some(name) = early_rx.recv() => {
                    if let Some(&i) = forward_op.get(&name) {
                        release(i, false, &mut ready);
                    }
                }
                joined = set.join_next() => {
                    let Some(joined) = joined else { break };
                    let (i, res) = joined.map_err(join_error)?;
                    match res {
                        Ok(()) => {
                            completed += 1;
                            release(i, true, &mut ready);
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
            }
        }
        *self.inner.early.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let cancelled = self.inner.cancel.is_cancelled();
        // A wait that ended because of the cancellation is the cancellation, not a failure.
        if let Some(e) = first_error.filter(|e| !(cancelled && e.is_cancelled_wait())) {
            return Err(e);
        }
        if cancelled && completed < n {
            return Err(Error::Cancelled {
                stack: self.inner.stack.clone(),
                completed,
                remaining: n - completed,
            });
        }
        Ok(())
    }
}

/// Updates a settle sends, each after reading what is still different.
const SETTLE_UPDATES: u32 = 2;

/// Finds after a create whose outcome is unknown: 4 over 0.25 + 0.5 + 1 s.
const SETTLE_ATTEMPTS: u32 = 4;
const SETTLE_FIRST_DELAY: Duration = Duration::from_millis(250);

/// A new instance token: 128 random bits as 32 hex characters.
fn new_token() -> String {
    format!("{:032x}", fastrand::u128(..))
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl RunInner {
    /// Records a step: `f` changes resource `name`'s record (and nothing else), under the next
    /// serial. With a journal, only that record is appended, and the flush is waited for once the
    /// state is let go, so that concurrent steps share it; without one, the whole state is written.
    /// Either way the change is durable when this returns.
    async fn record(&self, name: &str, f: impl FnOnce(&mut StackState)) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        f(&mut state);
        state.serial += 1;
        match self.lock.journal() {
            Some(journal) => {
                let change = Change {
                    serial: state.serial,
                    resource: name.to_owned(),
                    record: state.resources.get(name).cloned(),
                };
                let ticket = journal.append(&change)?;
                drop(state);
                journal.sync(ticket).await?;
            }
            None => self.lock.write(&state).await?,
        }
        Ok(())
    }

    /// Records a change to the whole state (`f` may change anything) as a whole write, which also
    /// compacts the journal.
    async fn record_whole(&self, f: impl FnOnce(&mut StackState)) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        f(&mut state);
        state.serial += 1;
        self.lock.write(&state).await?;
        Ok(())
    }

    fn ops_for(&self, resource: &str, kind: &str) -> Result<KindOps, Error> {
        self.registry
            .get(kind)
            .copied()
            .ok_or_else(|| Error::UnknownKind {
                stack: self.stack.clone(),
                resource: resource.to_owned(),
                kind: kind.to_owned(),
            })
    }

    fn fail(&self, resource: &str, action: &'static str, source: ResourceError) -> Error {
        Error::Resource {
            stack: self.stack.clone(),
            resource: resource.to_owned(),
            action,
            source: Box::new(source),
        }
    }

    async fn run_op(&self, op: &Op, resources: &[crate::stack::Declaration]) -> Result<(), Error> {
        let name = op.resource.as_str();
        let action = match &op.kind {
            OpKind::Forward(_, a) => a.kind(),
            _ => ActionKind::Delete,
        };
        if action != ActionKind::Same {
            self.shared.events.emit(Event::Started {
                stack: self.stack.clone(),
                resource: name.to_owned(),
                action,
            });
        }
        let started = Instant::now();
        let step = async {
            match &op.kind {
                OpKind::Forward(idx, a) => self.forward(&resources[*idx], a).await,
                OpKind::DeleteCurrent => self.delete_current(name).await,
                OpKind::Delete => {
                    self.wait_for_users(name).await?;
                    self.delete_current(name).await
                }
                OpKind::DeleteDeposed => self.delete_deposed(name).await,
            }
        };
        let result = crate::events::in_step(&self.stack, name, step).await;
        if let (Ok(()), OpKind::Delete, Some(group)) = (&result, &op.kind, &self.links.group) {
            group.deleted(&self.stack, name);
        }
        if let (Ok(()), OpKind::Forward(..), Some(group)) = (&result, &op.kind, &self.links.group) {
            let outputs = self
                .outputs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(name)
                .cloned();
            if let Some(outputs) = outputs {
                group.applied(&self.stack, name, outputs);
            }
        }
        match &result {
            Ok(()) if action != ActionKind::Same => self.shared.events.emit(Event::Done {
                stack: self.stack.clone(),
                resource: name.to_owned(),
                action,
                elapsed: started.elapsed(),
            }),
            Ok(()) => {}
            Err(e) => self.shared.events.emit(Event::Failed {
                stack: self.stack.clone(),
                resource: name.to_owned(),
                action,
                error: e.to_string(),
            }),
        }
        result
    }

    /// In a group's destroy, waits until the other members' resources that use `name` are deleted.
    async fn wait_for_users(&self, name: &str) -> Result<(), Error> {
        let (Some(group), Some(users)) = (&self.links.group, self.links.users.get(name)) else {
            return Ok(());
        };
        for user in users {
            if !group.gone(&user.stack, &user.resource).await {
                return Err(Error::DependencyFailed {
                    stack: self.stack.clone(),
                    resource: name.to_owned(),
                    reference: format!("{}/{} (deleted first)", user.stack, user.resource),
                    producer: user.stack.clone(),
                });
            }
        }
        Ok(())
    }

    /// The outputs of the other stacks' resources that `decl` refers to: in a group, once the
    /// member applied them; otherwise as recorded.
    async fn external_inputs(
        &self,
        decl: &crate::stack::Declaration,
    ) -> Result<HashMap<(String, String), Value>, Error> {
        let mut refs = Vec::new();
        collect_refs(&decl.inputs, &mut refs);
        let mut found = HashMap::new();
        for r in refs {
            let Some(producer) = r.stack.clone() else {
                continue;
            };
            let key = (producer.clone(), r.resource.clone());
            if found.contains_key(&key) {
                continue;
            }
            let outputs = match self.links.group.as_ref().filter(|g| g.is_member(&producer)) {
                Some(group) => group.outputs(&producer, &r.resource).await.ok_or_else(|| {
                    Error::DependencyFailed {
                        stack: self.stack.clone(),
                        resource: decl.name.clone(),
                        reference: r.to_string(),
                        producer: producer.clone(),
                    }
                })?,
                None => self
                    .links
                    .external
                    .get(&producer, &r.resource)
                    .flatten()
                    .cloned()
                    .ok_or_else(|| Error::MissingExternal {
                        stack: self.stack.clone(),
                        resource: decl.name.clone(),
                        reference: r.to_string(),
                    })?,
            };
            found.insert(key, outputs);
        }
        Ok(found)
    }

    async fn resolve_inputs(&self, decl: &crate::stack::Declaration) -> Result<Value, Error> {
        let external = self.external_inputs(decl).await?;
        let outputs = self.outputs.lock().unwrap_or_else(|p| p.into_inner());
        let value_of = |t: &RefTarget| -> Option<Value> {
            match &t.stack {
                Some(stack) => external
                    .get(&(stack.clone(), t.resource.clone()))
                    .and_then(|o| o.get(&t.output))
                    .cloned(),
                None => outputs
                    .get(&t.resource)
                    .and_then(|o| o.get(&t.output))
                    .cloned(),
            }
        };
        let mut lookup = |t: &RefTarget| -> Result<Option<Value>, Error> { Ok(value_of(t)) };
        match resolve(&decl.inputs, &mut lookup)? {
            Resolved::Known(v) => Ok(v),
            Resolved::Unknown => {
                let mut refs = Vec::new();
                collect_refs(&decl.inputs, &mut refs);
                let missing = refs
                    .into_iter()
                    .find(|r| value_of(r).is_none())
                    .unwrap_or_else(|| RefTarget {
                        stack: None,
                        resource: String::new(),
                        output: String::new(),
                    });
                let (stack, resource, reference) =
                    (self.stack.clone(), decl.name.clone(), missing.to_string());
                Err(if missing.stack.is_some() {
                    Error::MissingExternal {
                        stack,
                        resource,
                        reference,
                    }
                } else {
                    Error::DanglingRef {
                        stack,
                        resource,
                        reference,
                    }
                })
            }
        }
    }

    fn ctx(&self, resource: &str) -> Context {
        Context::new(
            self.shared.clone(),
            &self.stack,
            resource,
            self.cancel.clone(),
        )
    }

    async fn forward(
        &self,
        decl: &crate::stack::Declaration,
        action: &Action,
    ) -> Result<(), Error> {
        let name = decl.name.as_str();
        let ops = self.ops_for(name, decl.kind)?;
        let inputs = self.resolve_inputs(decl).await?;
        let recorded = self.state.lock().await.resources.get(name).cloned();
        let outputs = match action {
            Action::Update { .. } => {
                let Some(rec) = recorded.filter(|r| r.outputs.is_some()) else {
                    return self.create(&ops, decl, inputs, None).await;
                };
                let previous_outputs = rec.outputs.clone().unwrap_or(Value::Null);
                let changed = changed_fields(&rec.inputs, &inputs);
                // A create that published its outputs and did not finish configuring the resource
                // (see `Context::publish`) left an update pending with the inputs it was given.
                let unfinished = rec
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.op == PendingOp::Update);
                if changed.is_empty() && !unfinished {
                    previous_outputs
                } else {
                    self.intent(name, PendingOp::Update).await?;
                    let _permits = self.limits.acquire(ops.service).await;
                    let out = if changed.is_empty() {
                        // What it did is not known: read it and update what differs.
                        self.converge(&ops, name, &inputs, previous_outputs, None)
                            .await?
                    } else {
                        self.update(
                            &ops,
                            name,
                            &inputs,
                            rec.inputs.clone(),
                            previous_outputs,
                            changed,
                        )
                        .await?
                    };
                    let deps = decl.dependencies.clone();
                    let uses = decl.uses();
                    let (i2, o2) = (inputs, out.clone());
                    self.record(name, |s| {
                        if let Some(r) = s.resources.get_mut(name) {
                            r.inputs = i2;
                            r.outputs = Some(o2);
                            r.dependencies = deps;
                            r.uses = uses;
                            r.pending = None;
                        }
                    })
                    .await?;
                    out
                }
            }
            Action::Create { .. } | Action::Replace { .. } => {
                return self.create(&ops, decl, inputs, recorded).await;
            }
            // Kept resources are published by `apply`; deletes are steps of their own.
            Action::Same | Action::Delete | Action::DeleteDeposed => return Ok(()),
        };
        self.outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), outputs);
        Ok(())
    }

    async fn intent(&self, name: &str, op: PendingOp) -> Result<(), Error> {
        self.record(name, |s| {
            if let Some(r) = s.resources.get_mut(name) {
                r.pending = Some(Pending {
                    op,
                    since: now(),
                    instance: None,
                });
            }
        })
        .await
    }

    /// Creates `decl` (a new resource, or the new instance of a replaced one).
    ///
    /// # Guarantees
    /// - The new instance's token is recorded in the intent before the create is sent; the resource
    ///   is tagged with it and gets it as the API's idempotency token where there is one.
    /// - A create whose intent was recorded but not its result (a crash) is settled by `find`, with
    ///   the recorded token, before anything is sent.
    /// - A create whose outcome is unknown (lost response, 5xx, "already exists") is settled by
    ///   `find`, never sent again in the same run.
    async fn create(
        &self,
        ops: &KindOps,
        decl: &crate::stack::Declaration,
        inputs: Value,
        recorded: Option<ResourceState>,
    ) -> Result<(), Error> {
        let name = decl.name.as_str();
        // A create whose intent was recorded but whose result was not: the instance may exist. It is
        // looked for with the token it was given (none in state written before tokens). (A pending
        // create never has outputs: its intent moves the current instance to `deposed`.)
        let interrupted: Option<Option<String>> = recorded
            .as_ref()
            .and_then(|r| r.pending.as_ref())
            .filter(|p| p.op == PendingOp::Create)
            .map(|p| p.instance.clone());
        // The same token again: an instance the interrupted create makes late carries it.
        let token = interrupted.clone().flatten().unwrap_or_else(new_token);
        let deps = decl.dependencies.clone();
        let uses = decl.uses();
        let kind = decl.kind.to_owned();
        let intent_inputs = inputs.clone();
        let intent_token = token.clone();
        self.record(name, |s| {
            let entry = s
                .resources
                .entry(name.to_owned())
                .or_insert_with(|| ResourceState::new(kind.clone(), Value::Null));
            // The current instance, if any, is deposed: deleted once dependents are re-pointed.
            if let Some(old) = entry.outputs.take() {
                entry.deposed.push(Deposed {
                    kind: entry.kind.clone(),
                    inputs: std::mem::take(&mut entry.inputs),
                    outputs: old,
                    instance: entry.instance.take(),
                    pending: None,
                });
            }
            entry.kind = kind;
            entry.inputs = intent_inputs;
            entry.dependencies = deps;
            entry.uses = uses;
            entry.instance = None;
            entry.pending = Some(Pending {
                op: PendingOp::Create,
                since: now(),
                instance: Some(intent_token),
            });
        })
        .await?;
        let ctx = self.ctx(name).for_instance(Some(&token));
        let _permits = self.limits.acquire(ops.service).await;
        let earlier = match &interrupted {
            Some(token) => {
                let find_ctx = self.ctx(name).for_instance(token.as_deref());
                (ops.find)(find_ctx, inputs.clone())
                    .await
                    .map_err(|e| self.fail(name, "find", e))?
            }
            None => None,
        };
        let found = match earlier {
            Some(found) => found,
            None => match self
                .create_publishing(ops, name, &token, &ctx, &inputs)
                .await?
            {
                (Ok(outputs), early) => {
                    if early.as_ref().is_some_and(|early| *early != outputs) {
                        let e = ResourceError::Failed {
                            message: format!(
                                "the {} create published outputs other than those it returned \
                                 (a bug in the resource kind): {} then {outputs}",
                                decl.kind,
                                early.unwrap_or_default()
                            ),
                        };
                        return Err(self.fail(name, "create", e));
                    }
                    return self.created(name, &token, outputs).await;
                }
                (Err(e), _) if e.outcome_unknown() => {
                    match self.settle(ops, name, &ctx, &inputs).await? {
                        Some(found) => found,
                        None => {
                            let source = Box::new(e);
                            let e = ResourceError::OutcomeUnknown { source };
                            return Err(self.fail(name, "create", e));
                        }
                    }
                }
                (Err(e), _) => return Err(self.fail(name, "create", e)),
            },
        };
        self.shared.events.emit(Event::Adopted {
            stack: self.stack.clone(),
            resource: name.to_owned(),
        });
        // An adopted resource may be half-configured (the create failed after the first call):
        // bring what can change in place to the declared inputs.
        let outputs = self.converge(ops, name, &inputs, found, None).await?;
        (ops.adopted)(self.ctx(name), inputs, outputs.clone())
            .await
            .map_err(|e| self.fail(name, "create", e))?;
        self.created(name, &token, outputs).await
    }

    /// Sends the create of `name` (instance `token`), recording the outputs it publishes early
    /// (see [`Context::publish`]) while it goes on. Returns the create's result and the outputs
    /// published, if any; an error when recording them failed (the create was told to stop).
    async fn create_publishing(
        &self,
        ops: &KindOps,
        name: &str,
        token: &str,
        ctx: &Context,
        inputs: &Value,
    ) -> Result<(Result<Value, ResourceError>, Option<Value>), Error> {
        let (publisher, mut published) = mpsc::unbounded_channel::<Published>();
        let mut call: BoxFuture<'static, Result<Value, ResourceError>> =
            (ops.create)(ctx.clone().publishing_to(publisher), inputs.clone());
        let mut early: Option<Value> = None;
        let mut failed: Option<Error> = None;
        let result = loop {
            tokio::select! {
                result = &mut call => break result,
                Some((outputs, ack)) = published.recv() => {
                    if let Some(e) = &failed {
                        let _ = ack.send(Err(e.to_string()));
                    } else if early.is_some() {
                        // A second publish does nothing.
                        let _ = ack.send(Ok(()));
                    } else {
                        match self.published(name, token, &outputs).await {
                            Ok(()) => {
                                let _ = ack.send(Ok(()));
                                early = Some(outputs);
                            }
                            Err(e) => {
                                let _ = ack.send(Err(e.to_string()));
                                failed = Some(e);
                            }
                        }
                    }
                }
            }
        };
        match failed {
            Some(e) => Err(e),
            None => Ok((result, early)),
        }
    }

    /// Records the outputs a create of instance `token` published before it ended, with its
    /// configuration pending (an update), and starts what depends on them.
    async fn published(&self, name: &str, token: &str, outputs: &Value) -> Result<(), Error> {
        let o2 = outputs.clone();
        self.record(name, |s| {
            if let Some(r) = s.resources.get_mut(name) {
                r.outputs = Some(o2);
                r.instance = Some(token.to_owned());
                r.pending = Some(Pending {
                    op: PendingOp::Update,
                    since: now(),
                    instance: None,
                });
            }
        })
        .await?;
        self.outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), outputs.clone());
        if let Some(group) = &self.links.group {
            group.applied(&self.stack, name, outputs.clone());
        }
        if let Some(early) = self
            .early
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = early.send(name.to_owned());
        }
        Ok(())
    }

    /// Records the outputs of a create (or an adoption) of instance `token` and publishes them.
    async fn created(&self, name: &str, token: &str, outputs: Value) -> Result<(), Error> {
        let o2 = outputs.clone();
        self.record(name, |s| {
            if let Some(r) = s.resources.get_mut(name) {
                r.outputs = Some(o2);
                r.instance = Some(token.to_owned());
                r.pending = None;
            }
        })
        .await?;
        self.outputs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), outputs);
        Ok(())
    }

    /// After a create whose outcome is unknown: looks for the instance it may have made, a few times
    /// over about two seconds, since a just-created resource can take that long to show in AWS's
    /// list and describe calls (EC2's `Describe*` are eventually consistent:
    /// <https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>).
    async fn settle(
        &self,
        ops: &KindOps,
        name: &str,
        ctx: &Context,
        inputs: &Value,
    ) -> Result<Option<Value>, Error> {
        let mut delay = SETTLE_FIRST_DELAY;
        for attempt in 1..=SETTLE_ATTEMPTS {
            let found = (ops.find)(ctx.clone(), inputs.clone())
                .await
                .map_err(|e| self.fail(name, "find", e))?;
            if found.is_some() || attempt == SETTLE_ATTEMPTS {
                return Ok(found);
            }
            if ctx.sleep(delay).await.is_err() {
                return Ok(None);
            }
            delay *= 2;
        }
        Ok(None)
    }

    /// Updates `name` in place from `previous` to `inputs`. An update whose outcome is unknown (a
    /// lost response, a 5xx, "already exists") is settled by reading the resource and updating only
    /// what is still different, once: a sub-step AWS already carried out is not sent again.
    async fn update(
        &self,
        ops: &KindOps,
        name: &str,
        inputs: &Value,
        previous: Value,
        outputs: Value,
        changed: Vec<String>,
    ) -> Result<Value, Error> {
        match (ops.update)(
            self.ctx(name),
            inputs.clone(),
            previous,
            outputs.clone(),
            changed,
        )
        .await
        {
            Ok(out) => Ok(out),
            Err(e) if e.outcome_unknown() => {
                self.converge(ops, name, inputs, outputs, Some(e)).await
            }
            Err(e) => Err(self.fail(name, "update", e)),
        }
    }

    /// Reads `name` live and updates in place what differs from `inputs` (fields that force a
    /// replacement are left as they are), reading again after an update whose outcome is unknown:
    /// at most [`SETTLE_UPDATES`] updates. `after` is the error that made a settle necessary: it is
    /// returned when the resource turns out to be gone.
    async fn converge(
        &self,
        ops: &KindOps,
        name: &str,
        inputs: &Value,
        mut outputs: Value,
        mut after: Option<ResourceError>,
    ) -> Result<Value, Error> {
        let mut updates = 0;
        loop {
            let live = (ops.read)(self.ctx(name), inputs.clone(), outputs.clone())
                .await
                .map_err(|e| self.fail(name, "read", e))?;
            let Some((live_inputs, live_outputs)) = live else {
                return match after {
                    Some(e) => Err(self.fail(name, "update", e)),
                    None => Ok(outputs),
                };
            };
            let changed: Vec<String> = changed_fields(&live_inputs, inputs)
                .into_iter()
                .filter(|f| !ops.forces_replace(f))
                .collect();
            if changed.is_empty() {
                return Ok(live_outputs);
            }
            if updates == SETTLE_UPDATES
                && let Some(e) = after
            {
                return Err(self.fail(name, "update", e));
            }
            updates += 1;
            let update = (ops.update)(
                self.ctx(name),
                inputs.clone(),
                live_inputs,
                live_outputs.clone(),
                changed,
            );
            match update.await {
                Ok(out) => return Ok(out),
                Err(e) if e.outcome_unknown() => {
                    after = Some(e);
                    outputs = live_outputs;
                }
                Err(e) => return Err(self.fail(name, "update", e)),
            }
        }
    }

    /// Deletes the current instance of `name` and forgets it.
    async fn delete_current(&self, name: &str) -> Result<(), Error> {
        let Some(rec) = self.state.lock().await.resources.get(name).cloned() else {
            return Ok(());
        };
        let ops = self.ops_for(name, &rec.kind)?;
        if let Some(outputs) = rec.outputs.clone() {
            self.intent(name, PendingOp::Delete).await?;
            let _permits = self.limits.acquire(ops.service).await;
            (ops.delete)(self.ctx(name), rec.inputs.clone(), outputs)
                .await
                .map_err(|e| self.fail(name, "delete", e))?;
        } else if rec.pending.is_some() {
            // An interrupted create: delete what it may have made.
            let _permits = self.limits.acquire(ops.service).await;
            let token = rec.pending.as_ref().and_then(|p| p.instance.as_deref());
            if let Some(outputs) =
                (ops.find)(self.ctx(name).for_instance(token), rec.inputs.clone())
                    .await
                    .map_err(|e| self.fail(name, "find", e))?
            {
                (ops.delete)(self.ctx(name), rec.inputs.clone(), outputs)
                    .await
                    .map_err(|e| self.fail(name, "delete", e))?;
            }
        }
        self.record(name, |s| {
            if let Some(r) = s.resources.get_mut(name) {
                if r.deposed.is_empty() {
                    s.resources.remove(name);
                } else {
                    r.outputs = None;
                    r.pending = None;
                }
            }
        })
        .await
    }

    /// Deletes the deposed (replaced) instances of `name`.
    async fn delete_deposed(&self, name: &str) -> Result<(), Error> {
        let deposed = self
            .state
            .lock()
            .await
            .resources
            .get(name)
            .map(|r| r.deposed.clone())
            .unwrap_or_default();
        for old in deposed {
            let ops = self.ops_for(name, &old.kind)?;
            // The intent, as for any delete: a crash now leaves a record that this delete started.
            self.record(name, |s| {
                if let Some(d) = s
                    .resources
                    .get_mut(name)
                    .and_then(|r| r.deposed.iter_mut().find(|d| d.outputs == old.outputs))
                {
                    d.pending = Some(Pending {
                        op: PendingOp::Delete,
                        since: now(),
                        instance: None,
                    });
                }
            })
            .await?;
            {
                let _permits = self.limits.acquire(ops.service).await;
                let ctx = self.ctx(name).for_instance(old.instance.as_deref());
                (ops.delete)(ctx, old.inputs.clone(), old.outputs.clone())
                    .await
                    .map_err(|e| self.fail(name, "delete", e))?;
            }
            self.record(name, |s| {
                if let Some(r) = s.resources.get_mut(name) {
                    if let Some(pos) = r.deposed.iter().position(|d| d.outputs == old.outputs) {
                        r.deposed.remove(pos);
                    }
                    if r.deposed.is_empty() && r.outputs.is_none() && r.pending.is_none() {
                        s.resources.remove(name);
                    }
                }
            })
            .await?;
        }
        Ok(())
    }
}

/// Top-level fields that differ between two input objects.
fn changed_fields(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut fields: Vec<String> = n
        .iter()
        // A new field that is null is no change (an optional field added to the type).
        .filter(|(k, v)| (o.contains_key(*k) || !v.is_null()) && o.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(
            o.iter()
                .filter(|(k, v)| !n.contains_key(*k) && !v.is_null())
                .map(|(k, _)| k.clone()),
        )
        .collect();
    fields.sort();
    fields
}

/// Totals over several plans.
pub fn total_counts<'a>(plans: impl IntoIterator<Item = &'a Plan>) -> Counts {
    let mut c = Counts::default();
    for p in plans {
        c.add(&p.counts());
    }
    c
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::changed_fields;

    #[test]
    fn changed_fields_are_the_top_level_fields_whose_values_differ() {
        let old = json!({"a": 1, "b": [1, 2], "c": "x"});
        assert!(changed_fields(&old, &old).is_empty());
        let new = json!({"a": 2, "b": [1, 2], "c": "y"});
        assert_eq!(changed_fields(&old, &new), ["a", "c"]);
    }

    #[test]
    fn an_added_field_changes_unless_null_and_a_removed_one_unless_it_was_null() {
        let old = json!({"a": 1, "gone": "x", "was_null": null});
        let new = json!({"a": 1, "added": 5, "added_null": null});
        assert_eq!(changed_fields(&old, &new), ["added", "gone"]);
        assert!(changed_fields(&json!({"a": 1}), &json!({"a": 1, "n": null})).is_empty());
        assert_eq!(
            changed_fields(&json!({"a": 1, "n": 2}), &json!({"a": 1, "n": null})),
            ["n"]
        );
    }
}
