//! Stacks applied together as one graph.
//!
//! Applied one after another, a consumer stack waits for the whole of each stack it references. In a
//! [`StackGroup`], each stack keeps its own state, lock and outputs, but a resource that refers to
//! another member's resource ([`Ref::in_stack`](crate::Ref::in_stack)) starts as soon as that one
//! resource exists: the deploy follows the resources' dependency graph across stacks, not the stacks'.
//!
//! The members coordinate through a board: each publishes that it declared (validated) its
//! resources, what its plan keeps, each resource's outputs as it is applied, and that it ended. No
//! member makes an AWS call before every member has declared without error.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{OnceCell, watch};

use crate::engine::{Approval, Approver, DestroyReport, Engine, UpOptions, UpReport};
use crate::error::Error;
use crate::plan::Plan;
use crate::policy::{PlanDocument, PlannedResource, Policies, Violation};
use crate::stack::{Desired, Stack};
use crate::state::StackLock;

/// Stacks applied together, each resource as soon as what it refers to exists, across stacks.
///
/// Made by [`Engine::group`] with the names of its members; every member must then be applied
/// with [`up`](Self::up), concurrently (a member waits for the others to have declared their
/// resources before it makes any call).
///
/// ```
/// use platform_core::testing::{FakeCloud, FakeStack};
/// use platform_core::{Engine, MemoryStateStore, ProviderInfo, UpOptions};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let engine = Engine::builder(MemoryStateStore::new())
///     .provider(ProviderInfo { account_id: "000000000000".into(), region: "local".into() })
///     .extension(FakeCloud::new())
///     .build();
/// let producer = FakeStack::chain("network", 2);
/// // r0 of "app" uses r1 of "network": it starts when that one resource exists.
/// let consumer = FakeStack::chain("app", 1).using(0, "network", "r1");
/// let group = engine.group(["network", "app"]);
/// let (net, app) = tokio::join!(
///     group.up(&producer, UpOptions::default()),
///     group.up(&consumer, UpOptions::default())
/// );
/// assert_eq!(net.unwrap().outputs.len(), 2);
/// assert_eq!(app.unwrap().outputs.len(), 1);
/// # });
/// ```
pub struct StackGroup<'e> {
    engine: &'e Engine,
    board: Arc<Board>,
}

impl std::fmt::Debug for StackGroup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StackGroup")
            .field("members", &self.board.members)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// A group of the stacks named `stacks`, to be applied together with [`StackGroup::up`].
    pub fn group<I, T>(&self, stacks: I) -> StackGroup<'_>
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        let members: Vec<String> = stacks.into_iter().map(Into::into).collect();
        StackGroup {
            engine: self,
            board: Arc::new(Board::new(members, DEFAULT_JOIN)),
        }
    }
}

/// How long the members of a group wait for each other to start (see [`StackGroup::join_within`]).
const DEFAULT_JOIN: Duration = Duration::from_secs(30);

impl StackGroup<'_> {
    /// Members wait at most `bound` for every other member to start (`up` or `destroy` called and
    /// polled); past it, a member that never started fails the others with
    /// [`Error::GroupMemberInvalid`] instead of leaving them waiting forever. Default 30 s: declaring
    /// and locking take milliseconds, so only a member that is never called takes longer.
    #[must_use]
    pub fn join_within(self, bound: Duration) -> Self {
        StackGroup {
            engine: self.engine,
            board: Arc::new(Board::new(self.board.members.clone(), bound)),
        }
    }

    /// The members' names.
    pub fn members(&self) -> &[String] {
        &self.board.members
    }

    /// Brings member `stack` to its declared state, as [`Engine::up_with`] does, with its references
    /// to other members' resources resolved as those resources are applied.
    ///
    /// # Errors
    /// As [`Engine::up_with`]; [`Error::GroupMemberInvalid`] when another member cannot be applied
    /// (nothing was called); [`Error::DependencyFailed`] when a resource of another member that one
    /// of this stack's resources refers to was never produced; [`Error::NotConfigured`] when `stack`
    /// is not a member.
    pub async fn up<S: Stack>(
        &self,
        stack: &S,
        options: UpOptions,
    ) -> Result<UpReport<S::Outputs>, Error> {
        let name = stack.name().to_owned();
        let _end = self.enter(&name)?;
        // Declared and locked, or why not: no member calls AWS unless every member is both.
        let ready = match Desired::declare(stack) {
            Ok(declared) => {
                let lock = self
                    .engine
                    .lock_stack(&name, "up", self.engine.cancellation());
                match self.board.locked(&name, lock).await {
                    Ok(lock) => Ok((declared, lock)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => {
                self.board
                    .update(&name, |m| m.locked = Some(Err(e.to_string())));
                Err(e)
            }
        };
        self.board.declared(
            &name,
            match &ready {
                Ok(_) => Ok(stack.references()),
                Err(e) => Err(e.to_string()),
            },
        );
        let (declared, lock) = ready?;
        if let Err(e) = self.board.all_declared(&name).await {
            // Nobody calls AWS: give the lock up at once rather than leave it to a drop.
            let _ = lock.release().await;
            return Err(e);
        }
        self.engine
            .up_declared(stack, declared, options, Some(&self.board), Some(lock))
            .await
    }
}

impl StackGroup<'_> {
    /// Deletes every resource recorded for member `name`, as [`Engine::destroy`] does, with the
    /// other members destroyed at the same time: their references to it do not block it, and each of
    /// its resources that their resources use waits until those are deleted (a security group until
    /// the service whose tasks used it is gone).
    ///
    /// # Errors
    /// As [`Engine::destroy`]; [`Error::DependencyFailed`] for a resource whose users in another
    /// member were not deleted (that member failed first).
    pub async fn destroy<S: Stack>(&self, name: &str) -> Result<DestroyReport, Error> {
        let _end = self.enter(name)?;
        self.engine.destroy_in::<S>(name, Some(&self.board)).await
    }
}

impl StackGroup<'_> {
    /// Starts member `name`'s run: [`Error::NotConfigured`] when it is not a member, else the guard
    /// that marks it ended when the run returns.
    fn enter(&self, name: &str) -> Result<EndGuard<'_>, Error> {
        if !self.board.is_member(name) {
            return Err(Error::NotConfigured(format!(
                "stack {name} is not a member of this group ({})",
                self.board.members.join(", ")
            )));
        }
        self.board.update(name, |m| m.entered = true);
        Ok(EndGuard {
            board: &self.board,
            stack: name.to_owned(),
        })
    }
}

/// Marks a member ended however its `up` returns (or is dropped), so that nobody waits on it.
struct EndGuard<'a> {
    board: &'a Board,
    stack: String,
}

impl Drop for EndGuard<'_> {
    fn drop(&mut self) {
        self.board.ended(&self.stack);
    }
}

/// What the members of a group have published.
pub(crate) struct Board {
    members: Vec<String>,
    tx: watch::Sender<HashMap<String, Member>>,
    /// How long a member waits for another to start.
    join: Duration,
    /// The approver's answer, asked once for the whole group.
    approval: OnceCell<bool>,
    /// The group's document checked, once per set of policies the members were given.
    checked: tokio::sync::Mutex<Vec<(Policies, Vec<Violation>)>>,
}

#[derive(Clone, Debug, Default)]
struct Member {
    /// Once declared: the stacks it references, or why it cannot be applied.
    declared: Option<Result<Vec<String>, String>>,
    /// Once planned: per resource, its outputs when the plan keeps it, `None` when it changes.
    planned: Option<HashMap<String, Option<Value>>>,
    /// Once planned: its resources as policies see them.
    document: Option<Vec<PlannedResource>>,
    /// Once planned, when the run asks an approver: its plan.
    plan: Option<Plan>,
    /// The outputs of the resources applied so far.
    applied: HashMap<String, Value>,
    /// The resources deleted so far (in a destroy).
    deleted: std::collections::HashSet<String>,
    /// Its `up` or `destroy` was called (and polled).
    entered: bool,
    /// Once it tried to take its stack's lock: whether it holds it, or why not.
    locked: Option<Result<(), String>>,
    /// Its `up` returned.
    ended: bool,
}

impl Board {
    fn new(members: Vec<String>, join: Duration) -> Self {
        let (tx, _) = watch::channel(
            members
                .iter()
                .map(|m| (m.clone(), Member::default()))
                .collect(),
        );
        Self {
            members,
            tx,
            join,
            approval: OnceCell::new(),
            checked: tokio::sync::Mutex::default(),
        }
    }

    /// Whether `stack` started within the join bound (or is no member).
    async fn started(&self, stack: &str) -> bool {
        let mut rx = self.tx.subscribe();
        let wait = rx.wait_for(|m| m.get(stack).is_none_or(|x| x.entered));
        matches!(tokio::time::timeout(self.join, wait).await, Ok(Ok(_)))
    }

    pub(crate) fn is_member(&self, stack: &str) -> bool {
        self.members.iter().any(|m| m == stack)
    }

    fn update(&self, stack: &str, f: impl FnOnce(&mut Member)) {
        self.tx.send_modify(|m| {
            if let Some(member) = m.get_mut(stack) {
                f(member);
            }
        });
    }

    fn declared(&self, stack: &str, result: Result<Vec<String>, String>) {
        self.update(stack, |m| m.declared = Some(result));
    }

    pub(crate) fn planned(&self, stack: &str, kept: HashMap<String, Option<Value>>) {
        self.update(stack, |m| m.planned = Some(kept));
    }

    /// Publishes member `me`'s plan and planned resources and, with `policies` or an `approver`,
    /// waits until every member has published its own (or ended), then checks them as one
    /// document; the approver is asked once for the whole group, with every member's plan. No
    /// member changes anything before every member's plan is checked and approved. Returns the
    /// violations and the answer (`true` without an approver).
    pub(crate) async fn reviewed(
        &self,
        me: &str,
        plan: &Plan,
        part: Vec<PlannedResource>,
        policies: &Policies,
        approver: Option<&Approver>,
    ) -> (Vec<Violation>, bool) {
        let plan = approver.map(|_| plan.clone());
        self.update(me, |m| {
            m.document = Some(part);
            m.plan = plan;
        });
        if policies.is_empty() && approver.is_none() {
            return (Vec::new(), true);
        }
        let mut rx = self.tx.subscribe();
        let (resources, plans): (Vec<PlannedResource>, Vec<Plan>) = {
            let seen = rx
                .wait_for(|m| m.values().all(|x| x.document.is_some() || x.ended))
                .await;
            let members = match &seen {
                Ok(m) => &**m,
                Err(_) => &*self.tx.borrow(),
            };
            let published = || self.members.iter().filter_map(|n| members.get(n));
            (
                published()
                    .filter_map(|m| m.document.as_ref())
                    .flatten()
                    .cloned()
                    .collect(),
                published().filter_map(|m| m.plan.clone()).collect(),
            )
        };
        let violations = {
            // Every member sees the same document: its first checker's answer is every member's.
            let mut checked = self.checked.lock().await;
            match checked.iter().find(|(p, _)| p.same_as(policies)) {
                Some((_, violations)) => violations.clone(),
                None => {
                    let violations = policies.check(&PlanDocument::new(resources));
                    checked.push((policies.clone(), violations.clone()));
                    violations
                }
            }
        };
        let Some(approver) = approver else {
            return (violations, true);
        };
        // The first member here asks; the others wait for its answer.
        let approval = Approval {
            plans,
            violations: violations.clone(),
        };
        let approved = *self.approval.get_or_init(|| approver.ask(approval)).await;
        (violations, approved)
    }

    pub(crate) fn applied(&self, stack: &str, resource: &str, outputs: Value) {
        self.update(stack, |m| {
            m.applied.insert(resource.to_owned(), outputs);
        });
    }

    pub(crate) fn deleted(&self, stack: &str, resource: &str) {
        self.update(stack, |m| {
            m.deleted.insert(resource.to_owned());
        });
    }

    /// Waits until member `stack` deleted `resource`; `false` when it ended without.
    pub(crate) async fn gone(&self, stack: &str, resource: &str) -> bool {
        if !self.started(stack).await {
            return false;
        }
        let mut rx = self.tx.subscribe();
        let Ok(m) = rx
            .wait_for(|m| {
                m.get(stack)
                    .is_none_or(|x| x.deleted.contains(resource) || x.ended)
            })
            .await
        else {
            return false;
        };
        m.get(stack).is_some_and(|x| x.deleted.contains(resource))
    }

    /// Takes member `me`'s lock with `lock` once every member before it in name order has taken
    /// its own: two runs of the same group never each hold a part of it (they would refuse each
    /// other, or with a lock timeout wait for each other). When an earlier member could not take
    /// its lock, `me` does not try.
    pub(crate) async fn locked(
        &self,
        me: &str,
        lock: impl Future<Output = Result<Box<dyn StackLock>, Error>>,
    ) -> Result<Box<dyn StackLock>, Error> {
        let result = match self.lock_turn(me).await {
            Ok(()) => lock.await,
            Err(e) => Err(e),
        };
        self.update(me, |m| {
            m.locked = Some(result.as_ref().map(|_| ()).map_err(ToString::to_string));
        });
        result
    }

    async fn lock_turn(&self, me: &str) -> Result<(), Error> {
        let mut earlier: Vec<&String> = self.members.iter().filter(|m| m.as_str() < me).collect();
        earlier.sort();
        for member in earlier {
            if !self.started(member).await {
                return Err(Error::GroupMemberInvalid {
                    stack: me.to_owned(),
                    member: member.clone(),
                    why: format!(
                        "it was not started within {:?}: run up (or destroy) for every member \
                         of the group concurrently",
                        self.join
                    ),
                });
            }
            let mut rx = self.tx.subscribe();
            let seen = rx
                .wait_for(|m| m.get(member).is_none_or(|x| x.locked.is_some() || x.ended))
                .await
                .map_err(|_| closed())?
                .get(member)
                .and_then(|x| x.locked.clone());
            match seen {
                Some(Ok(())) => {}
                Some(Err(why)) => {
                    return Err(Error::GroupMemberInvalid {
                        stack: me.to_owned(),
                        member: member.clone(),
                        why,
                    });
                }
                None => {
                    return Err(Error::GroupMemberInvalid {
                        stack: me.to_owned(),
                        member: member.clone(),
                        why: "it ended before taking its lock".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Waits until every member has tried to take its lock; fails when one could not (or ended, or
    /// never started within the join bound), naming it: a group's destroy deletes nothing unless
    /// it holds the whole group, as its `up` changes nothing unless it does.
    pub(crate) async fn all_locked(&self, me: &str) -> Result<(), Error> {
        let mut rx = self.tx.subscribe();
        let wait = rx.wait_for(|m| m.values().all(|x| x.locked.is_some() || x.ended));
        let members = match tokio::time::timeout(self.join, wait).await {
            Ok(seen) => seen.map(|m| m.clone()).map_err(|_| closed())?,
            Err(_) => self.tx.borrow().clone(),
        };
        for name in self.members.iter().filter(|m| m.as_str() != me) {
            let why = match members.get(name).map(|m| (&m.locked, m.entered)) {
                Some((Some(Ok(())), _)) => continue,
                Some((Some(Err(why)), _)) => why.clone(),
                Some((None, true)) => "it ended before taking its lock".into(),
                _ => format!(
                    "it was not started within {:?}: run up (or destroy) for every member of the \
                     group concurrently",
                    self.join
                ),
            };
            return Err(Error::GroupMemberInvalid {
                stack: me.to_owned(),
                member: name.clone(),
                why,
            });
        }
        Ok(())
    }

    fn ended(&self, stack: &str) {
        self.update(stack, |m| m.ended = true);
    }

    /// Waits until every member has declared (or ended without); fails when one cannot be applied
    /// or the members' references form a cycle.
    async fn all_declared(&self, me: &str) -> Result<(), Error> {
        let mut rx = self.tx.subscribe();
        let wait = rx.wait_for(|m| m.values().all(|x| x.declared.is_some() || x.ended));
        let members = match tokio::time::timeout(self.join, wait).await {
            Ok(seen) => seen.map(|m| m.clone()).map_err(|_| closed())?,
            Err(_) => {
                let now = self.tx.borrow().clone();
                let absent = self.members.iter().find(|m| {
                    now.get(*m)
                        .is_some_and(|x| x.declared.is_none() && !x.ended)
                });
                return Err(Error::GroupMemberInvalid {
                    stack: me.to_owned(),
                    member: absent.cloned().unwrap_or_default(),
                    why: format!(
                        "it was not started within {:?}: run up (or destroy) for every member \
                         of the group concurrently",
                        self.join
                    ),
                });
            }
        };
        let mut references: HashMap<&str, Vec<&str>> = HashMap::new();
        for name in &self.members {
            match members.get(name).and_then(|m| m.declared.as_ref()) {
                Some(Ok(refs)) => {
                    references.insert(
                        name,
                        refs.iter()
                            .map(String::as_str)
                            .filter(|r| self.is_member(r))
                            .collect(),
                    );
                }
                Some(Err(why)) if name != me => {
                    return Err(Error::GroupMemberInvalid {
                        stack: me.to_owned(),
                        member: name.clone(),
                        why: why.clone(),
                    });
                }
                Some(Err(_)) => {}
                None => {
                    return Err(Error::GroupMemberInvalid {
                        stack: me.to_owned(),
                        member: name.clone(),
                        why: "it stopped before declaring its resources".into(),
                    });
                }
            }
        }
        if let Some(cycle) = reference_cycle(&references) {
            return Err(Error::Cycle {
                stack: format!("group of {}", self.members.join(", ")),
                resources: cycle,
            });
        }
        Ok(())
    }

    /// What member `stack`'s plan keeps of `resource`: its outputs, or `None` when it changes.
    /// Waits for that plan; `Err` when the member ended without planning.
    pub(crate) async fn kept(&self, stack: &str, resource: &str) -> Result<Option<Value>, ()> {
        let mut rx = self.tx.subscribe();
        let m = rx
            .wait_for(|m| m.get(stack).is_none_or(|x| x.planned.is_some() || x.ended))
            .await
            .map_err(|_| ())?;
        match m.get(stack).and_then(|x| x.planned.as_ref()) {
            Some(planned) => Ok(planned.get(resource).cloned().flatten()),
            None => Err(()),
        }
    }

    /// The outputs of member `stack`'s `resource` once it is applied; `None` when the member
    /// ended without applying it.
    pub(crate) async fn outputs(&self, stack: &str, resource: &str) -> Option<Value> {
        let mut rx = self.tx.subscribe();
        let m = rx
            .wait_for(|m| {
                m.get(stack)
                    .is_none_or(|x| x.applied.contains_key(resource) || x.ended)
            })
            .await
            .ok()?;
        m.get(stack).and_then(|x| x.applied.get(resource).cloned())
    }
}

fn closed() -> Error {
    Error::NotConfigured("the stack group was dropped".into())
}

/// The stacks on a cycle of `references` (stack → the members it references), if there is one.
fn reference_cycle(references: &HashMap<&str, Vec<&str>>) -> Option<Vec<String>> {
    // Kahn's algorithm: what cannot be ordered is on or behind a cycle.
    let mut indegree: HashMap<&str, usize> = references.keys().map(|k| (*k, 0)).collect();
    for targets in references.values() {
        for t in targets {
            *indegree.entry(t).or_default() += 1;
        }
    }
    let mut ready: Vec<&str> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut seen = 0;
    while let Some(k) = ready.pop() {
        seen += 1;
        for t in references.get(k).into_iter().flatten() {
            let d = indegree.entry(t).or_default();
            *d -= 1;
            if *d == 0 {
                ready.push(t);
            }
        }
    }
    (seen < indegree.len()).then(|| {
        indegree
            .into_iter()
            .filter(|(_, d)| *d > 0)
            .map(|(k, _)| k.to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_cycle_of_references_is_found_and_a_chain_is_not() {
        let chain = HashMap::from([("c", vec!["a", "b"]), ("b", vec!["a"]), ("a", vec![])]);
        assert_eq!(reference_cycle(&chain), None);
        let cycle = HashMap::from([("a", vec!["b"]), ("b", vec!["a"]), ("c", vec![])]);
        assert_eq!(
            reference_cycle(&cycle),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
    }
}
