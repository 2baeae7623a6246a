//! What the engine's runs return: reports, drift, options.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::events::CallStats;
use crate::plan::Plan;
use crate::policy::{PlanDocument, Policies, Violation};
use crate::stack::Produced;
use crate::state::Producer;
use crate::types::{BoxFuture, Counts};

/// What [`Engine::up_with`](crate::Engine::up_with) did.
#[derive(Debug)]
#[non_exhaustive]
pub struct UpReport<O> {
    /// The stack's outputs.
    pub outputs: O,
    /// The stack, where it was applied and the write of its state that recorded the outputs.
    pub producer: Producer,
    /// The plan that was applied.
    pub plan: Plan,
    /// The advisory policy violations of the plan (a mandatory one refuses the run).
    pub violations: Vec<Violation>,
    /// AWS calls made by this run.
    pub calls: CallStats,
    /// Wall time.
    pub elapsed: Duration,
    /// Where the wall time went.
    pub phases: Phases,
}

/// Where an [`UpReport`]'s wall time went, phase by phase. Phases that run at the same time (the
/// account's identity is asked while the lock is taken) each count their own time, so the sum may
/// exceed the wall time; a phase the run did not have is zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Phases {
    /// Declaring the stack and checking its graph (zero in a [`StackGroup`](crate::StackGroup),
    /// which declares its members first).
    pub declare: Duration,
    /// Taking the stack's lock, waiting for another run's included.
    pub lock: Duration,
    /// The account and region (`GetCallerIdentity`, once per engine), asked while the lock is
    /// taken.
    pub identity: Duration,
    /// Reading the recorded state, the referenced stacks' outputs and, with a refresh, every
    /// resource live.
    pub read: Duration,
    /// Planning, the policy check included (in a group: waiting for the members this stack reads).
    pub plan: Duration,
    /// Applying the plan: the resources' calls and their state writes.
    pub apply: Duration,
    /// Building the outputs and recording them (nothing is written when nothing changed).
    pub outputs: Duration,
    /// Giving the lock back.
    pub unlock: Duration,
}

/// What [`Engine::import`](crate::Engine::import) recorded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
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

/// What [`Engine::refresh_report`](crate::Engine::refresh_report) and [`Engine::preview_refreshed`](crate::Engine::preview_refreshed) found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct RefreshReport {
    /// The plan `up` would make against the live resources.
    pub plan: Plan,
    /// What differed between the recorded state and the live resources, by resource name.
    pub drift: Vec<Drift>,
    /// The plan as policies see it.
    #[serde(skip)]
    pub document: PlanDocument,
    /// The live resources as read, each `same`: what policies check of what exists (a port opened
    /// by hand is a violation as well as a drift).
    #[serde(skip)]
    pub live: PlanDocument,
}

/// A recorded resource that is not as recorded.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[non_exhaustive]
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
#[non_exhaustive]
pub struct DriftField {
    /// The input's name.
    pub field: String,
    /// As recorded.
    pub recorded: Value,
    /// As found.
    pub live: Value,
}

/// The top-level inputs that differ between `recorded` and `live` (an absent input reads as null).
pub(super) fn drifted_fields(recorded: &Value, live: &Value) -> Vec<DriftField> {
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

/// Options for [`Engine::up_with`](crate::Engine::up_with).
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct UpOptions {
    /// Read every resource live first, so that changes made outside the engine are corrected.
    pub refresh: bool,
    /// Cancels this run only (the engine's own token, [`EngineBuilder::cancellation`](crate::EngineBuilder::cancellation), cancels
    /// every run). A deploy bot cancels one run with it and keeps using the engine.
    pub cancel: Option<CancellationToken>,
    /// The policies this run is checked against, instead of the engine's
    /// ([`EngineBuilder::policies`](crate::EngineBuilder::policies)).
    pub policies: Option<Policies>,
    /// Asked, with the plans the run will apply, before it changes anything (see
    /// [`with_approval`](Self::with_approval)).
    pub approval: Option<Approver>,
}

/// What a run shows its [`Approver`] before it changes anything: the plans it will apply, made
/// under the locks it holds until it ends.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Approval {
    /// One plan per stack: the stack's alone, or every member's of a
    /// [`StackGroup`](crate::StackGroup) that has one, in the group's order.
    pub plans: Vec<Plan>,
    /// The policies' violations of those plans, checked as one document.
    pub violations: Vec<Violation>,
}

impl Approval {
    /// Whether a mandatory violation refuses the run, whatever the answer: the run then fails with
    /// [`Error::PolicyViolation`](crate::Error::PolicyViolation).
    pub fn refused(&self) -> bool {
        crate::policy::mandatory(&self.violations).next().is_some()
    }

    /// Whether any plan changes anything.
    pub fn has_changes(&self) -> bool {
        self.plans.iter().any(Plan::has_changes)
    }
}

/// Decides whether a run applies its plans (a person at a prompt, a deploy bot's review): given
/// the [`Approval`], answers `true` to go on. Asked once per run, once per
/// [`StackGroup`](crate::StackGroup) run for all its members, after planning and the policy check
/// and before any change, while the run holds its locks: what it approves is what is applied,
/// since no other run can change the state in between. A `false` answer ends the run with
/// [`Error::Declined`](crate::Error::Declined); nothing is changed. In a group, give every member the
/// same approver: a member run without one does not wait for the answer.
#[derive(Clone)]
pub struct Approver(Arc<dyn Fn(Approval) -> BoxFuture<'static, bool> + Send + Sync>);

impl Approver {
    /// An approver that answers with `decide`'s future.
    pub fn new<F, Fut>(decide: F) -> Self
    where
        F: Fn(Approval) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = bool> + Send + 'static,
    {
        Self(Arc::new(move |approval| Box::pin(decide(approval))))
    }

    pub(crate) async fn ask(&self, approval: Approval) -> bool {
        (self.0)(approval).await
    }
}

impl std::fmt::Debug for Approver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Approver")
    }
}

impl UpOptions {
    /// With a refresh first.
    #[must_use]
    pub fn with_refresh(mut self, refresh: bool) -> Self {
        self.refresh = refresh;
        self
    }

    /// Checked against `policies` instead of the engine's.
    #[must_use]
    pub fn with_policies(mut self, policies: Policies) -> Self {
        self.policies = Some(policies);
        self
    }

    /// Asks `approver` before any change, with the plans the run will apply (see [`Approver`]).
    #[must_use]
    pub fn with_approval(mut self, approver: Approver) -> Self {
        self.approval = Some(approver);
        self
    }

    /// Cancelling `token` stops this run as Ctrl-C would: nothing new starts, in-flight calls finish
    /// and are recorded, waits end; the run returns [`Error::Cancelled`](crate::Error::Cancelled). A token already cancelled
    /// starts nothing, not even the identity check.
    #[must_use]
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }
}

/// What [`Engine::destroy`](crate::Engine::destroy) did.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DestroyReport {
    /// Resources deleted (deposed instances included).
    pub deleted: usize,
    /// AWS calls made.
    pub calls: CallStats,
    /// Wall time.
    pub elapsed: Duration,
}

/// Totals over several plans.
pub fn total_counts<'a>(plans: impl IntoIterator<Item = &'a Plan>) -> Counts {
    let mut c = Counts::default();
    for p in plans {
        c.add(&p.counts());
    }
    c
}
