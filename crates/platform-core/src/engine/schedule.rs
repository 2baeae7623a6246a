//! The schedule: what a run does, as a graph of ops built from the plan and the recorded state, and
//! which ops each finished or published op releases. Pure: no I/O, no clock, no AWS.
//!
//! - [`apply`]: one op per step that does something (a kept resource is none), each waiting for
//!   what it needs: a create or update for the creates and updates of the resources it refers to;
//!   a delete (of a resource no longer declared, of a replaced instance) for the ops of the
//!   resources that used it, as recorded.
//! - [`destroy`]: one delete per recorded resource (and one for its deposed instances), dependents
//!   first.
//! - [`Release`]: as ops end (or a create publishes its outputs early), the ops whose last
//!   dependency that was.

use std::collections::{HashMap, HashSet};

use crate::plan::{Action, Plan};
use crate::stack::Desired;
use crate::state::StackState;

/// What an op does to its resource.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum OpKind {
    /// Create / update / replace a declared resource (index into the desired resources).
    Forward(usize, Action),
    /// Delete-before-replace: delete the current instance first.
    DeleteCurrent,
    /// Delete a resource no longer declared (or, in destroy, every resource).
    Delete,
    /// Delete the deposed instances.
    DeleteDeposed,
}

/// One step of a run: what it does to which resource, and the ops (by index) it waits for.
#[derive(Clone, Debug)]
pub(super) struct Op {
    pub(super) resource: String,
    pub(super) kind: OpKind,
    pub(super) deps: Vec<usize>,
}

/// The ops of an `up`, and the resources it keeps as recorded (no op: their recorded outputs are
/// published at once).
#[derive(Debug)]
pub(super) struct Schedule<'a> {
    pub(super) ops: Vec<Op>,
    pub(super) kept: Vec<&'a str>,
}

/// The ops that apply `plan` (made from `desired` against `state`).
pub(super) fn apply<'a>(desired: &Desired, plan: &'a Plan, state: &StackState) -> Schedule<'a> {
    let mut ops: Vec<Op> = Vec::new();
    let mut forward: HashMap<&str, usize> = HashMap::new();
    let mut delete_current: HashMap<&str, usize> = HashMap::new();
    let mut delete_removed: HashMap<&str, usize> = HashMap::new();
    let mut delete_deposed: HashMap<&str, usize> = HashMap::new();

    let mut kept: Vec<&str> = Vec::new();
    // Delete-before-replace spreads to replaced dependents (their old instance must go first).
    let mut dbr: HashSet<&str> = HashSet::new();
    for step in &plan.steps {
        if let Action::Replace { delete_first, .. } = step.action {
            let own = delete_first
                || desired
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
    Schedule { ops, kept }
}

/// The ops that delete everything `state` records, dependents first.
pub(super) fn destroy(state: &StackState) -> Vec<Op> {
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
    ops
}

/// Which ops are ready as others end or publish. An op's dependents are released once: the creates
/// and updates that read its outputs when it publishes them (or ends), the deletes that must follow
/// it (a replaced instance's, a user's) only when it ends.
#[derive(Debug)]
pub(super) struct Release {
    /// Per op: the dependencies not yet released.
    waiting: Vec<usize>,
    /// Per op: the ops that wait for it.
    dependents: Vec<Vec<usize>>,
    /// Per op: whether it is a create or update (released by a publish).
    forward: Vec<bool>,
    /// Per op: whether it published (or ended) already.
    published: Vec<bool>,
}

impl Release {
    pub(super) fn new(ops: &[Op]) -> Self {
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); ops.len()];
        for (i, o) in ops.iter().enumerate() {
            for &d in &o.deps {
                dependents[d].push(i);
            }
        }
        Self {
            waiting: ops.iter().map(|o| o.deps.len()).collect(),
            dependents,
            forward: ops
                .iter()
                .map(|o| matches!(o.kind, OpKind::Forward(..)))
                .collect(),
            published: vec![false; ops.len()],
        }
    }

    /// The ops that wait for nothing.
    pub(super) fn ready(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.waiting.len()).filter(|&i| self.waiting[i] == 0)
    }

    /// Op `i` published its resource's outputs: the creates and updates waiting only for it.
    pub(super) fn published(&mut self, i: usize) -> Vec<usize> {
        self.release(i, false)
    }

    /// Op `i` ended: every op waiting only for it (the creates and updates not yet released by a
    /// publish, and the deletes).
    pub(super) fn ended(&mut self, i: usize) -> Vec<usize> {
        self.release(i, true)
    }

    fn release(&mut self, i: usize, ended: bool) -> Vec<usize> {
        let early = std::mem::replace(&mut self.published[i], true);
        let mut ready = Vec::new();
        for &d in &self.dependents[i] {
            let now = if self.forward[d] { !early } else { ended };
            if now {
                self.waiting[d] -= 1;
                if self.waiting[d] == 0 {
                    ready.push(d);
                }
            }
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::plan::plan;
    use crate::state::StateStore;
    use crate::testing::{FakeCloud, FakeStack};
    use crate::{Engine, MemoryStateStore, ProviderInfo};

    /// What `up` of `stack` records, on a fake cloud.
    async fn recorded(stack: &FakeStack) -> StackState {
        let store = Arc::new(MemoryStateStore::new());
        let engine = Engine::builder_shared(store.clone())
            .provider(ProviderInfo {
                account_id: "000000000000".into(),
                region: "local".into(),
            })
            .extension(FakeCloud::new())
            .build();
        engine.up(stack).await.unwrap();
        store.read(&stack.name).await.unwrap().unwrap()
    }

    fn desired(stack: &FakeStack) -> Desired {
        Desired::declare(stack).unwrap().0
    }

    /// Each op as (resource, kind, the resources and kinds it waits for), for readable assertions.
    fn shape(ops: &[Op]) -> Vec<(String, &'static str, Vec<String>)> {
        let kind = |k: &OpKind| match k {
            OpKind::Forward(..) => "forward",
            OpKind::DeleteCurrent => "delete-current",
            OpKind::Delete => "delete",
            OpKind::DeleteDeposed => "delete-deposed",
        };
        ops.iter()
            .map(|o| {
                let deps = o
                    .deps
                    .iter()
                    .map(|&d| format!("{} {}", kind(&ops[d].kind), ops[d].resource))
                    .collect();
                (o.resource.clone(), kind(&o.kind), deps)
            })
            .collect()
    }

    fn op(
        resource: &str,
        kind: &'static str,
        deps: &[&str],
    ) -> (String, &'static str, Vec<String>) {
        (
            resource.to_owned(),
            kind,
            deps.iter().map(|d| (*d).to_owned()).collect(),
        )
    }

    #[tokio::test]
    async fn a_new_stack_is_one_create_per_resource_each_after_what_it_refers_to() {
        let stack = FakeStack::from_deps("s", vec![vec![], vec![0], vec![0, 1]]);
        let (desired, state) = (desired(&stack), StackState::new("s"));
        let plan = plan(&desired, &state, None).unwrap();
        let s = apply(&desired, &plan, &state);
        assert!(s.kept.is_empty());
        assert_eq!(
            shape(&s.ops),
            [
                op("r0", "forward", &[]),
                op("r1", "forward", &["forward r0"]),
                op("r2", "forward", &["forward r0", "forward r1"]),
            ]
        );
    }

    #[tokio::test]
    async fn an_unchanged_stack_is_no_op_and_every_resource_kept() {
        let stack = FakeStack::chain("s", 3);
        let state = recorded(&stack).await;
        let desired = desired(&stack);
        let plan = plan(&desired, &state, None).unwrap();
        let s = apply(&desired, &plan, &state);
        assert!(s.ops.is_empty());
        assert_eq!(s.kept, ["r0", "r1", "r2"]);
    }

    #[tokio::test]
    async fn removed_resources_are_deleted_users_first_and_an_update_waits_for_nothing_kept() {
        let state = recorded(&FakeStack::chain("s", 3)).await;
        let mut stack = FakeStack::chain("s", 2);
        stack.nodes[1].value = "v2".into();
        let desired = desired(&stack);
        let plan = plan(&desired, &state, None).unwrap();
        let s = apply(&desired, &plan, &state);
        assert_eq!(s.kept, ["r0"]);
        // r1 is updated (it was used by r2, which goes: no wait either way), r2 deleted.
        assert_eq!(
            shape(&s.ops),
            [op("r1", "forward", &[]), op("r2", "delete", &[])]
        );
    }

    #[tokio::test]
    async fn a_replaced_resource_is_created_first_and_its_old_instance_deleted_after_its_users_moved()
     {
        let state = recorded(&FakeStack::chain("s", 3)).await;
        let mut stack = FakeStack::chain("s", 3);
        stack.nodes[0].fixed = "new".into();
        let desired = desired(&stack);
        let plan = plan(&desired, &state, None).unwrap();
        let s = apply(&desired, &plan, &state);
        // r1 is updated to the new id; r2 refers to r1's id, which an update keeps.
        assert_eq!(s.kept, ["r2"]);
        assert_eq!(
            shape(&s.ops),
            [
                op("r0", "forward", &[]),
                op("r1", "forward", &["forward r0"]),
                op("r0", "delete-deposed", &["forward r0", "forward r1"]),
            ]
        );
    }

    #[tokio::test]
    async fn delete_before_replace_deletes_the_current_instance_first_and_spreads_to_replaced_users()
     {
        let mut old = FakeStack::chain("s", 3);
        for n in &mut old.nodes {
            n.unique = true;
        }
        let state = recorded(&old).await;
        let mut stack = old.clone();
        // r0 and r1 are replaced (r1 of its own accord, r0 deleting first): r1's old instance, which
        // uses r0's, must go before r0's does; r2 is only updated.
        stack.nodes[0].fixed = "new".into();
        stack.nodes[1].fixed = "new".into();
        let desired = desired(&stack);
        let plan = plan(&desired, &state, None).unwrap();
        let s = apply(&desired, &plan, &state);
        assert_eq!(
            shape(&s.ops),
            [
                op("r0", "delete-current", &["delete-current r1"]),
                op("r0", "forward", &["delete-current r0"]),
                op("r1", "delete-current", &[]),
                op("r1", "forward", &["forward r0", "delete-current r1"]),
                op("r2", "forward", &["forward r1"]),
            ]
        );
    }

    #[tokio::test]
    async fn destroy_deletes_every_recorded_resource_after_its_users() {
        let stack = FakeStack::from_deps("s", vec![vec![], vec![0], vec![0]]);
        let state = recorded(&stack).await;
        assert_eq!(
            shape(&destroy(&state)),
            [
                op("r0", "delete", &["delete r1", "delete r2"]),
                op("r1", "delete", &[]),
                op("r2", "delete", &[]),
            ]
        );
        assert!(destroy(&StackState::new("s")).is_empty());
    }

    fn ops(kinds: &[(&str, OpKind, &[usize])]) -> Vec<Op> {
        kinds
            .iter()
            .map(|(r, k, d)| Op {
                resource: (*r).to_owned(),
                kind: k.clone(),
                deps: d.to_vec(),
            })
            .collect()
    }

    fn forward() -> OpKind {
        OpKind::Forward(0, Action::Same)
    }

    #[test]
    fn a_publish_releases_the_creates_that_read_it_and_the_end_releases_the_deletes() {
        // 0: a create; 1: a create that reads it; 2: the deletion of a replaced instance that must
        // follow it; 3: a create that waits for 0 and 1.
        let ops = ops(&[
            ("a", forward(), &[]),
            ("b", forward(), &[0]),
            ("a", OpKind::DeleteDeposed, &[0]),
            ("c", forward(), &[0, 1]),
        ]);
        let mut r = Release::new(&ops);
        assert_eq!(r.ready().collect::<Vec<_>>(), [0]);
        assert_eq!(r.published(0), [1]);
        // Ending after the publish releases the delete, not the create a second time.
        assert_eq!(r.ended(0), [2]);
        assert_eq!(r.ended(1), [3]);
    }

    #[test]
    fn an_end_without_a_publish_releases_every_dependent_once() {
        let ops = ops(&[
            ("a", forward(), &[]),
            ("b", forward(), &[0]),
            ("a", OpKind::DeleteDeposed, &[0, 1]),
            ("old", OpKind::Delete, &[]),
        ]);
        let mut r = Release::new(&ops);
        assert_eq!(r.ready().collect::<Vec<_>>(), [0, 3]);
        assert_eq!(r.ended(0), [1]);
        assert_eq!(r.ended(3), Vec::<usize>::new());
        assert_eq!(r.published(1), Vec::<usize>::new());
        assert_eq!(r.ended(1), [2]);
    }
}
