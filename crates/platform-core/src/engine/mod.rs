//! The engine: preview, up, refresh, destroy, over a state store, with events and bounded parallelism.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use self::group::Board;
use crate::error::Error;
use crate::error::StateError;
use crate::events::{CallStats, Event, EventSink};
use crate::plan::{Action, ExternalOutputs, Plan, plan_with};
use crate::policy::{self, PlanDocument, PlannedResource, Policies, Violation};
use crate::provider::IdentitySource;
use crate::resource::{Registry, RetryPolicy, Shared};
use crate::stack::{Declared, Desired, OutputValues, Produced, Stack};
use crate::state::{
    Header, Producer, StackLock, StackResource, StackState, StateStore, validate_stack_name,
};
use crate::types::ProviderInfo;

mod builder;
mod executor;
mod group;
mod limits;
mod refresh;
mod report;
mod schedule;
mod steps;

pub use builder::{CallTimeouts, EngineBuilder};
use executor::{Links, Run, Summary};
pub use group::StackGroup;
use limits::Limits;
pub use report::{
    Approval, Approver, DestroyReport, Drift, DriftField, ImportReport, Phases, RefreshReport,
    UpOptions, UpReport, total_counts,
};
pub use steps::DEFAULT_SETTLE_WINDOW;

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
    policies: Policies,
    environment: Option<String>,
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
            settle_window: steps::DEFAULT_SETTLE_WINDOW,
            call_timeouts: CallTimeouts::default(),
            policies: Policies::new(),
            environment: None,
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

    /// Stack `name`'s recorded state (empty when there is none), once it is known to belong to the
    /// current account and region; with that provider.
    pub(super) async fn recorded(&self, name: &str) -> Result<(StackState, ProviderInfo), Error> {
        let state = self.state_of(name).await?;
        let provider = self.check_provider(&state).await?;
        Ok((state, provider))
    }

    /// Stack `name`'s recorded state, empty when there is none.
    async fn state_of(&self, name: &str) -> Result<StackState, Error> {
        Ok(self
            .store
            .read(name)
            .await?
            .unwrap_or_else(|| StackState::new(name)))
    }

    async fn check_provider(&self, state: &StackState) -> Result<ProviderInfo, Error> {
        provider_of(state, self.identity().await?)
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
        self.planned(stack, None).await
    }

    /// `stack`'s plan against its recorded state, with its document's entries into `document`.
    async fn planned<S: Stack>(
        &self,
        stack: &S,
        document: Option<&mut Vec<PlannedResource>>,
    ) -> Result<Plan, Error> {
        let desired = Desired::of(stack)?;
        let (state, _) = self.recorded(stack.name()).await?;
        let external = self.external_outputs(&desired, None).await?;
        let plan = plan_with(&desired, &state, None, &external, document)?;
        self.shared.events.emit(Event::Planned {
            stack: stack.name().to_owned(),
            counts: plan.counts(),
        });
        Ok(plan)
    }

    /// [`preview`](Self::preview), with the plan as policies see it (every resource's full planned
    /// inputs: see [`PlanDocument`]). The documents of several stacks
    /// ([`PlanDocument::extend`]) are checked together with [`check`](Self::check).
    ///
    /// # Errors
    /// As [`preview`](Self::preview).
    pub async fn preview_document<S: Stack>(
        &self,
        stack: &S,
    ) -> Result<(Plan, PlanDocument), Error> {
        let mut resources = Vec::new();
        let plan = self.planned(stack, Some(&mut resources)).await?;
        Ok((plan, PlanDocument::new(resources)))
    }

    /// The environment recorded in the states this engine applies ([`EngineBuilder::environment`]).
    pub fn environment(&self) -> Option<&str> {
        self.environment.as_deref()
    }

    /// The engine's policies ([`EngineBuilder::policies`]).
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The violations of the engine's policies in `document`, mandatory first.
    pub fn check(&self, document: &PlanDocument) -> Vec<Violation> {
        self.policies.check(document)
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
        let started = Instant::now();
        let declared = Desired::declare(stack)?;
        let declare = started.elapsed();
        let mut report = self
            .up_declared(stack, declared, options, None, None)
            .await?;
        report.phases.declare = declare;
        report.elapsed += declare;
        Ok(report)
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
        let mut phases = Phases::default();
        // The account is asked while the lock is taken: neither waits for the other.
        let ((lock, lock_time), (identity, identity_time)) = tokio::join!(
            timed(async {
                match lock {
                    Some(lock) => Ok(lock),
                    None => self.lock_stack(&name, "up", &cancel).await,
                }
            }),
            timed(self.identity())
        );
        (phases.lock, phases.identity) = (lock_time, identity_time);
        let lock: Arc<dyn StackLock> = Arc::from(lock?);
        let result = self
            .up_locked(
                stack,
                (desired, declared),
                options,
                group,
                Locked {
                    lock: lock.clone(),
                    identity,
                    cancel,
                },
                &mut phases,
            )
            .await;
        let unlocking = Instant::now();
        let result = released(lock.as_ref(), result).await;
        phases.unlock = unlocking.elapsed();
        result.map(|(outputs, plan, producer, violations)| UpReport {
            outputs,
            producer,
            plan,
            violations,
            calls: self.calls().since(&calls_before),
            elapsed: started.elapsed(),
            phases,
        })
    }

    /// [`up_declared`](Self::up_declared) once the lock is held: the outputs and the plan applied.
    async fn up_locked<S: Stack>(
        &self,
        stack: &S,
        (desired, declared): (Desired, Declared<S::Outputs>),
        options: UpOptions,
        group: Option<&Arc<Board>>,
        Locked {
            lock,
            identity,
            cancel,
        }: Locked,
        phases: &mut Phases,
    ) -> Result<(S::Outputs, Plan, Producer, Vec<Violation>), Error> {
        let name = stack.name().to_owned();
        let reading = Instant::now();
        let mut state = self.state_of(&name).await?;
        let provider = provider_of(&state, identity?)?;
        let references = stack.references();
        let read = self.check_references(&references, group, &provider).await?;
        let producers = Self::producers(stack, &provider, read)?;
        if options.refresh {
            (state, _) = self.read_live(&desired.registry, state, &cancel).await?;
            state.serial += 1;
            lock.write(&state).await?;
        }
        phases.read = reading.elapsed();
        let planning = Instant::now();
        let external = self.external_outputs(&desired, group).await?;
        let policies = options.policies.as_ref().unwrap_or(&self.policies);
        // In a group, every member publishes its part: a member with policies checks them all.
        let mut document = (group.is_some() || !policies.is_empty()).then(Vec::new);
        let plan = plan_with(&desired, &state, None, &external, document.as_mut())?;
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
        // Checked, and approved, before any change: in a group, every member's plan as one.
        let approver = options.approval.as_ref();
        let review = async {
            match group {
                Some(g) => {
                    let resources = document.unwrap_or_default();
                    g.reviewed(&name, &plan, resources, policies, approver)
                        .await
                }
                None => {
                    let violations = document
                        .map(|resources| policies.check(&PlanDocument::new(resources)))
                        .unwrap_or_default();
                    let approved = match approver {
                        Some(approver) => {
                            approver
                                .ask(Approval {
                                    plans: vec![plan.clone()],
                                    violations: violations.clone(),
                                })
                                .await
                        }
                        None => true,
                    };
                    (violations, approved)
                }
            }
        };
        // An answer that never comes (a prompt left open) does not outlast a cancellation.
        let (violations, approved) = tokio::select! {
            reviewed = review => reviewed,
            () = cancel.cancelled() => {
                return Err(Error::Cancelled {
                    stack: name,
                    completed: 0,
                    remaining: plan.counts().changes(),
                });
            }
        };
        let refused: Vec<Violation> = policy::mandatory(&violations).cloned().collect();
        if !refused.is_empty() {
            return Err(Error::PolicyViolation {
                stack: name,
                violations: refused,
            });
        }
        if !approved {
            return Err(Error::Declined { stack: name });
        }
        phases.plan = planning.elapsed();
        // What the state says of the stack as a whole; a run that changes no resource and would
        // record the same writes nothing.
        let recorded = Summary::of(&state);
        Header {
            provider: Some(provider.clone()),
            environment: self.environment.clone(),
            references,
            producers,
        }
        .apply_to(&mut state);
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
        let applying = Instant::now();
        let outputs_map = run.apply(&desired, &plan).await?;
        phases.apply = applying.elapsed();
        let recording = Instant::now();
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
                s.applied_at = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs());
                // The serial this write is recorded under (`record` increments it after `f`).
                serial = s.serial + 1;
            })
            .await?;
            serial
        };
        phases.outputs = recording.elapsed();
        let producer = Producer {
            stack: name,
            provider: Some(provider),
            serial: Some(serial),
            schema: Some(S::OUTPUTS_SCHEMA),
        };
        Ok((outputs, plan, producer, violations))
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
            // A group takes its members' locks in name order, before this, and deletes nothing
            // until every member holds its own.
            Some(g) => {
                let lock = g
                    .locked(name, self.lock_stack(name, "destroy", &cancel))
                    .await?;
                if let Err(e) = g.all_locked(name).await {
                    let _ = lock.release().await;
                    return Err(e);
                }
                Arc::from(lock)
            }
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
        let deleted: usize = state
            .resources
            .values()
            .map(|r| usize::from(r.outputs.is_some()) + r.deposed.len())
            .sum();
        let links = Links {
            external: ExternalOutputs::new(),
            group: group.cloned(),
            users,
        };
        let recorded: Vec<steps::Swept> = state
            .resources
            .iter()
            .filter(|(_, r)| !r.inputs.is_null())
            .map(|(name, r)| steps::Swept::of(name, r))
            .collect();
        let run = Run::new(self, name.to_owned(), state, lock, registry, links, cancel);
        let swept = run.inner.sweep(&recorded).await?;
        run.destroy_all().await?;
        run.lock.remove().await?;
        Ok(deleted + swept)
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

/// `current`, the account and region the engine runs in, when `state` was recorded there or nowhere.
///
/// # Errors
/// [`Error::ProviderMismatch`] when `state` was recorded in another account or region.
fn provider_of(state: &StackState, current: ProviderInfo) -> Result<ProviderInfo, Error> {
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

/// A stack's lock, held, with what was learnt while it was taken.
struct Locked {
    lock: Arc<dyn StackLock>,
    /// The account and region, asked while the lock was taken.
    identity: Result<ProviderInfo, Error>,
    cancel: CancellationToken,
}

/// `f`'s output and how long it took.
async fn timed<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = f.await;
    (out, started.elapsed())
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

pub(super) fn join_error(e: tokio::task::JoinError) -> Error {
    if e.is_panic() {
        std::panic::resume_unwind(e.into_panic());
    }
    Error::NotConfigured(format!("a task was aborted: {e}"))
}
