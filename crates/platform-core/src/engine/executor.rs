//! The executor: one run over a locked stack; ops started as their dependencies allow, bounded by the
//! limits, until done, failed or cancelled.

use crate::sync::Locked;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, ResourceError};
use crate::events::Event;
use crate::plan::{ExternalOutputs, Plan};
use crate::resource::{Context, KindOps, Registry, Shared};
use crate::stack::Desired;
use crate::state::{Change, Header, StackLock, StackResource, StackState};
use crate::types::ActionKind;
use crate::value::{RefTarget, Resolved, collect_refs, resolve};

use super::Engine;
use super::group::Board;
use super::join_error;
use super::limits::Limits;
use super::schedule::{self, Op, OpKind, Release, Schedule};

/// What a stack's state records of the stack as a whole, beside its resources: its header and its
/// outputs.
#[derive(PartialEq)]
pub(super) struct Summary {
    pub(super) header: Header,
    pub(super) outputs: Option<Value>,
    pub(super) outputs_schema: Option<u32>,
}

impl Summary {
    pub(super) fn of(state: &StackState) -> Self {
        Self {
            header: Header::of(state),
            outputs: state.outputs.clone(),
            outputs_schema: state.outputs_schema,
        }
    }
}

/// One run over one locked stack.
pub(super) struct Run {
    pub(super) inner: Arc<RunInner>,
    pub(super) lock: Arc<dyn StackLock>,
}

pub(super) struct RunInner {
    pub(super) stack: String,
    pub(super) shared: Arc<Shared>,
    pub(super) registry: Registry,
    pub(super) state: tokio::sync::Mutex<StackState>,
    pub(super) lock: Arc<dyn StackLock>,
    pub(super) outputs: Mutex<HashMap<String, Value>>,
    pub(super) limits: Limits,
    pub(super) cancel: CancellationToken,
    pub(super) links: Links,
    /// While ops execute: where a create that published its outputs early names its resource, so
    /// that its dependents start then (see [`Context::publish`]).
    pub(super) early: Mutex<Option<mpsc::UnboundedSender<String>>>,
    /// Whether a change carrying the run's [`Header`] was journaled: the first one carries it.
    pub(super) headed: AtomicBool,
}

/// What links a run to other stacks.
pub(super) struct Links {
    /// Known outputs of other stacks' resources (for references outside a group).
    pub(super) external: ExternalOutputs,
    /// The group this run is a member of: where other members' outputs appear, and this one's go.
    pub(super) group: Option<Arc<Board>>,
    /// In a group's destroy: per resource, the other members' resources that use it (deleted first).
    pub(super) users: HashMap<String, Vec<StackResource>>,
}

impl Run {
    pub(super) fn new(
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
                headed: AtomicBool::new(false),
            }),
            lock,
        }
    }

    pub(super) async fn record_whole(&self, f: impl FnOnce(&mut StackState)) -> Result<(), Error> {
        self.inner.record_whole(f).await
    }

    /// Applies `plan`; returns every declared resource's outputs.
    pub(super) async fn apply(
        &self,
        desired: &Desired,
        plan: &Plan,
    ) -> Result<HashMap<String, Value>, Error> {
        // Held (not copied) while the ops are built: nothing else runs yet.
        let guard = self.inner.state.lock().await;

        let state = &*guard;
        let Schedule { ops, kept } = schedule::apply(desired, plan, state);
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
            self.inner.outputs.locked().insert(name.to_owned(), outputs);
        }
        drop(guard);
        if !ops.is_empty() {
            // The run's header (provider, references, producers) goes with its first step: in the
            // first journal line, or in the whole write of a store without a journal.
            let resources = Arc::new(desired.resources.clone());
            self.execute(ops, resources).await?;
        }
        let outputs = self.inner.outputs.locked().clone();
        Ok(outputs)
    }

    pub(super) async fn destroy_all(&self) -> Result<(), Error> {
        let ops = schedule::destroy(&*self.inner.state.lock().await);
        self.execute(ops, Arc::new(Vec::new())).await
    }

    /// Runs ops as their dependencies complete, bounded by the limits, until done, failed or cancelled.
    pub(super) async fn execute(
        &self,
        ops: Vec<Op>,
        resources: Arc<Vec<crate::stack::Declaration>>,
    ) -> Result<(), Error> {
        let n = ops.len();
        let mut release = Release::new(&ops);
        let mut ready: VecDeque<usize> = release.ready().collect();
        // The op that creates or changes each declared resource: its dependents may start before
        // it ends, when its create publishes the outputs early.
        let forward_op: HashMap<String, usize> = ops
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o.kind, OpKind::Forward(..)))
            .map(|(i, o)| (o.resource.clone(), i))
            .collect();
        let (early_tx, mut early_rx) = mpsc::unbounded_channel::<String>();
        *self.inner.early.locked() = Some(early_tx);
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
                        ready.extend(release.published(i));
                    }
                }
                joined = set.join_next() => {
                    let Some(joined) = joined else { break };
                    let (i, res) = joined.map_err(join_error)?;
                    match res {
                        Ok(()) => {
                            completed += 1;
                            ready.extend(release.ended(i));
                        }
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
            }
        }
        *self.inner.early.locked() = None;
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

impl RunInner {
    /// Records a step: `f` changes resource `name`'s record (and nothing else), under the next
    /// serial. With a journal, only that record is appended, and the flush is waited for once the
    /// state is let go, so that concurrent steps share it; without one, the whole state is written.
    /// Either way the change is durable when this returns.
    pub(super) async fn record(
        &self,
        name: &str,
        f: impl FnOnce(&mut StackState),
    ) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        f(&mut state);
        state.serial += 1;
        match self.lock.journal() {
            Some(journal) => {
                let change = Change {
                    serial: state.serial,
                    resource: name.to_owned(),
                    record: state.resources.get(name).cloned(),
                    header: (!self.headed.swap(true, Ordering::SeqCst))
                        .then(|| Box::new(Header::of(&state))),
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
    pub(super) async fn record_whole(&self, f: impl FnOnce(&mut StackState)) -> Result<(), Error> {
        let mut state = self.state.lock().await;
        f(&mut state);
        state.serial += 1;
        self.lock.write(&state).await?;
        Ok(())
    }

    pub(super) fn ops_for(&self, resource: &str, kind: &str) -> Result<KindOps, Error> {
        self.registry
            .get(kind)
            .copied()
            .ok_or_else(|| Error::UnknownKind {
                stack: self.stack.clone(),
                resource: resource.to_owned(),
                kind: kind.to_owned(),
            })
    }

    pub(super) fn fail(
        &self,
        resource: &str,
        action: &'static str,
        source: ResourceError,
    ) -> Error {
        Error::Resource {
            stack: self.stack.clone(),
            resource: resource.to_owned(),
            action,
            source: Box::new(source),
        }
    }

    pub(super) async fn run_op(
        &self,
        op: &Op,
        resources: &[crate::stack::Declaration],
    ) -> Result<(), Error> {
        let name = op.resource.as_str();
        // Kept resources are no ops (see `schedule::apply`): every op changes something.
        let action = match &op.kind {
            OpKind::Forward(_, a) => a.kind(),
            _ => ActionKind::Delete,
        };
        self.shared.events.emit(Event::Started {
            stack: self.stack.clone(),
            resource: name.to_owned(),
            action,
        });
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
            let outputs = self.outputs.locked().get(name).cloned();
            if let Some(outputs) = outputs {
                group.applied(&self.stack, name, outputs);
            }
        }
        match &result {
            Ok(()) => self.shared.events.emit(Event::Done {
                stack: self.stack.clone(),
                resource: name.to_owned(),
                action,
                elapsed: started.elapsed(),
            }),
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
    pub(super) async fn wait_for_users(&self, name: &str) -> Result<(), Error> {
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
    pub(super) async fn external_inputs(
        &self,
        decl: &crate::stack::Declaration,
    ) -> Result<HashMap<(String, String), Value>, Error> {
        let mut found = HashMap::new();
        for r in &decl.external {
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

    pub(super) async fn resolve_inputs(
        &self,
        decl: &crate::stack::Declaration,
    ) -> Result<Value, Error> {
        let external = self.external_inputs(decl).await?;
        let outputs = self.outputs.locked();
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
        let inputs = decl.inputs(&self.stack)?;
        match resolve(&inputs, &mut lookup)? {
            Resolved::Known(v) => Ok(v),
            Resolved::Unknown => {
                let mut refs = Vec::new();
                collect_refs(&inputs, &mut refs);
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

    pub(super) fn ctx(&self, resource: &str) -> Context {
        Context::new(
            self.shared.clone(),
            &self.stack,
            resource,
            self.cancel.clone(),
        )
    }
}
