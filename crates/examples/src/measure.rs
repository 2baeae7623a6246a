//! Measuring a run against its physical limit.
//!
//! Against real AWS almost all of a deploy's time is API latency, so no tool can be faster than the
//! longest chain of calls where each had to wait for the previous one's result: the **critical path**.
//! It is computed here from what was recorded, not from what the engine intended:
//!
//! - each resource's weight is the time of the AWS calls it made itself (its calls are sequential:
//!   a create waits for the id it then tags or attaches), as the engine's call recorder attributed
//!   them ([`AwsCall::step`]);
//! - the edges are the dependencies recorded in each stack's state, plus, across stacks, an edge
//!   from a resource whose recorded output a consumer's recorded input holds verbatim (the subnet id
//!   in the service's network configuration, the role ARN in the task definition).
//!
//! ```
//! use std::collections::{BTreeMap, BTreeSet};
//! use std::time::Duration;
//! use examples::measure::{StepId, critical_path};
//! let ms = Duration::from_millis;
//! let (a, b, c) = (StepId::new("s", "a"), StepId::new("s", "b"), StepId::new("s", "c"));
//! let weights = BTreeMap::from([(a.clone(), ms(300)), (b.clone(), ms(100)), (c.clone(), ms(100))]);
//! // a and b run in parallel, c waits for both.
//! let edges = BTreeSet::from([(a.clone(), c.clone()), (b.clone(), c.clone())]);
//! let path = critical_path(&weights, &edges);
//! assert_eq!(path.length, ms(400));
//! assert_eq!(path.steps, [a, c]);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use platform_core::{events::AwsCall, state::StackState};
use serde_json::Value;

/// A resource of a stack: a node of the run's dependency graph.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepId {
    /// The stack.
    pub stack: String,
    /// The resource's logical name.
    pub resource: String,
}

impl StepId {
    /// Resource `resource` of stack `stack`.
    pub fn new(stack: &str, resource: &str) -> Self {
        Self {
            stack: stack.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.stack, self.resource)
    }
}

/// The time of the AWS calls each step made, and of the calls made outside any step (the identity
/// check before the first stack starts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallTime {
    /// Per step, the sum of its calls' durations.
    pub by_step: BTreeMap<StepId, Duration>,
    /// Calls made outside a step.
    pub outside: Duration,
}

impl CallTime {
    /// Sums `calls` by the step that made them.
    pub fn of<'a>(calls: impl IntoIterator<Item = &'a AwsCall>) -> Self {
        let mut t = Self::default();
        for c in calls {
            match &c.step {
                Some((stack, resource)) => {
                    *t.by_step.entry(StepId::new(stack, resource)).or_default() += c.duration;
                }
                None => t.outside += c.duration,
            }
        }
        t
    }
}

/// The longest chain of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriticalPath {
    /// Its length: the sum of its steps' weights.
    pub length: Duration,
    /// Its steps, first to last.
    pub steps: Vec<StepId>,
}

/// The longest weighted path through the DAG of `weights`' nodes and `edges` (from, to). A node
/// without weight weighs nothing; edges to unknown nodes are ignored. Ties are broken by node order,
/// so the answer is deterministic.
///
/// # Panics
/// Never for a DAG; a cycle's nodes are left out (they cannot be ordered).
pub fn critical_path(
    weights: &BTreeMap<StepId, Duration>,
    edges: &BTreeSet<(StepId, StepId)>,
) -> CriticalPath {
    let mut nodes: BTreeSet<&StepId> = weights.keys().collect();
    for (a, b) in edges {
        nodes.insert(a);
        nodes.insert(b);
    }
    let mut indegree: BTreeMap<&StepId, usize> = nodes.iter().map(|n| (*n, 0)).collect();
    let mut next: BTreeMap<&StepId, Vec<&StepId>> = BTreeMap::new();
    for (a, b) in edges {
        *indegree.entry(b).or_default() += 1;
        next.entry(a).or_default().push(b);
    }
    let weight = |n: &StepId| weights.get(n).copied().unwrap_or_default();
    // best[n]: the longest path ending at n, and n's predecessor on it.
    let mut best: BTreeMap<&StepId, (Duration, Option<&StepId>)> = BTreeMap::new();
    let mut ready: Vec<&StepId> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(n, _)| *n)
        .collect();
    for n in &ready {
        best.insert(n, (weight(n), None));
    }
    while let Some(n) = ready.pop() {
        let here = best[n].0;
        for &m in next.get(n).map(Vec::as_slice).unwrap_or_default() {
            let through = here + weight(m);
            let entry = best.entry(m).or_insert((Duration::ZERO, None));
            if entry.1.is_none() || through > entry.0 {
                *entry = (through, Some(n));
            }
            let d = indegree.get_mut(m).expect("every edge end is a node");
            *d -= 1;
            if *d == 0 {
                ready.push(m);
            }
        }
    }
    let Some((&end, &(length, _))) = best
        .iter()
        .max_by(|a, b| a.1.0.cmp(&b.1.0).then(b.0.cmp(a.0)))
    else {
        return CriticalPath {
            length: Duration::ZERO,
            steps: Vec::new(),
        };
    };
    let mut steps = vec![end.clone()];
    let mut at = end;
    while let Some(prev) = best[at].1 {
        steps.push(prev.clone());
        at = prev;
    }
    steps.reverse();
    CriticalPath { length, steps }
}

/// The dependency edges of applied stacks, from their recorded states: each resource's recorded
/// dependencies and its recorded uses of other stacks' resources; and, for states recorded without
/// uses, producer to consumer where a consumer's recorded input holds a producer's recorded output
/// verbatim (ids and ARNs; strings shorter than 12 characters are too common to tell anything).
pub fn recorded_edges(states: &[StackState]) -> BTreeSet<(StepId, StepId)> {
    let mut edges = BTreeSet::new();
    let mut produced: BTreeMap<String, StepId> = BTreeMap::new();
    for state in states {
        for (name, r) in &state.resources {
            let me = StepId::new(&state.stack, name);
            for dep in &r.dependencies {
                edges.insert((StepId::new(&state.stack, dep), me.clone()));
            }
            for u in &r.uses {
                edges.insert((StepId::new(&u.stack, &u.resource), me.clone()));
            }
            if let Some(outputs) = &r.outputs {
                for s in strings(outputs) {
                    produced.entry(s.to_owned()).or_insert_with(|| me.clone());
                }
            }
        }
    }
    for state in states {
        for (name, r) in &state.resources {
            let me = StepId::new(&state.stack, name);
            for s in strings(&r.inputs) {
                if let Some(producer) = produced.get(s)
                    && producer.stack != state.stack
                    && state.references.contains(&producer.stack)
                {
                    edges.insert((producer.clone(), me.clone()));
                }
            }
        }
    }
    edges
}

/// Every string of 12 characters or more in `v`.
fn strings(v: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) if s.len() >= 12 => out.push(s.as_str()),
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    out
}

/// The edges of `edges` reversed: destroy runs dependents first.
pub fn reversed(edges: &BTreeSet<(StepId, StepId)>) -> BTreeSet<(StepId, StepId)> {
    edges.iter().map(|(a, b)| (b.clone(), a.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform_core::state::ResourceState;
    use serde_json::json;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn resource(inputs: Value, outputs: Value, deps: &[&str]) -> ResourceState {
        serde_json::from_value(json!({
            "kind": "test:thing",
            "inputs": inputs,
            "outputs": outputs,
            "dependencies": deps,
        }))
        .unwrap()
    }

    #[test]
    fn the_longest_chain_wins_over_the_one_with_most_steps() {
        let id = |n: &str| StepId::new("s", n);
        let weights = BTreeMap::from([
            (id("a"), ms(100)),
            (id("b"), ms(100)),
            (id("c"), ms(100)),
            (id("d"), ms(500)),
            (id("e"), ms(100)),
        ]);
        // a -> b -> c -> e (300 + 100) against d -> e (600).
        let edges = BTreeSet::from([
            (id("a"), id("b")),
            (id("b"), id("c")),
            (id("c"), id("e")),
            (id("d"), id("e")),
        ]);
        let p = critical_path(&weights, &edges);
        assert_eq!(p.length, ms(600));
        assert_eq!(p.steps, [id("d"), id("e")]);
        let back = critical_path(&weights, &reversed(&edges));
        assert_eq!(back.steps, [id("e"), id("d")]);
        assert_eq!(
            critical_path(&BTreeMap::new(), &BTreeSet::new()).length,
            ms(0)
        );
    }

    #[test]
    fn edges_come_from_recorded_dependencies_and_values_passed_across_stacks() {
        let mut net = StackState::new("network");
        net.resources.insert(
            "vpc".into(),
            resource(json!({}), json!({"vpc_id": "vpc-0123456789"}), &[]),
        );
        net.resources.insert(
            "subnet".into(),
            resource(
                json!({"vpc_id": "vpc-0123456789"}),
                json!({"subnet_id": "subnet-0123456789"}),
                &["vpc"],
            ),
        );
        let mut cluster = StackState::new("cluster");
        cluster.references = vec!["network".into()];
        cluster.resources.insert(
            "service".into(),
            resource(
                json!({"subnets": ["subnet-0123456789"], "port": 80, "name": "x"}),
                json!({}),
                &[],
            ),
        );
        let edges = recorded_edges(&[net, cluster]);
        assert_eq!(
            edges,
            BTreeSet::from([
                (
                    StepId::new("network", "vpc"),
                    StepId::new("network", "subnet")
                ),
                (
                    StepId::new("network", "subnet"),
                    StepId::new("cluster", "service")
                ),
            ])
        );
    }
}
