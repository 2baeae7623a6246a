//! Planning at scale: random DAGs of bounded depth on the in-memory fake provider, no I/O. What is
//! timed is what `preview` does before it reads state: declare the stack, validate and order its
//! graph, and plan it against an empty state.

use std::time::Instant;

use platform_core::testing::FakeStack;
use platform_core::{Desired, StackState, plan};

use crate::{Figures, Target, ms};

/// Layers of the random graphs: every edge goes to an earlier layer, so no chain is longer.
const DEPTH: usize = 20;
/// At most this many dependencies per resource.
const MAX_DEPS: usize = 3;

/// `n` nodes in [`DEPTH`] layers, each with 0 to [`MAX_DEPS`] dependencies drawn from the earlier
/// layers (seeded: every run plans the same graphs).
fn random_dag(n: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let layer = n.div_ceil(DEPTH).max(1);
    (0..n)
        .map(|i| {
            let earlier = (i / layer) * layer;
            if earlier == 0 {
                return Vec::new();
            }
            let mut deps: Vec<usize> = (0..rng.usize(0..=MAX_DEPS))
                .map(|_| rng.usize(0..earlier))
                .collect();
            deps.sort_unstable();
            deps.dedup();
            deps
        })
        .collect()
}

/// Resets the peak resident set size (Linux: `clear_refs` 5), so a phase's own peak can be read.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set size in MB since the last reset (Linux), `None` elsewhere.
fn peak_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Plans graphs of 1,000, 10,000 and 100,000 resources.
pub(crate) fn plan_figures(figures: &mut Figures) {
    let sizes: [(usize, &'static str, Option<f64>); 3] = [
        (1_000, "plan_1k_ms", None),
        (10_000, "plan_10k_ms", Some(100.0)),
        (100_000, "plan_100k_ms", Some(1500.0)),
    ];
    let mut per_resource = Vec::new();
    for (n, name, target) in sizes {
        let stack = FakeStack::from_deps("scale", random_dag(n, n as u64));
        reset_peak();
        let started = Instant::now();
        let desired = Desired::of(&stack).expect("a random DAG is a valid stack");
        let plan = plan(&desired, &StackState::new("scale"), None).expect("it plans");
        let elapsed = started.elapsed();
        assert_eq!(plan.counts().create, n, "every resource is to be created");
        figures.add(name, ms(elapsed), "ms", target.map(Target::AtMost));
        per_resource.push((n, elapsed.as_secs_f64() * 1e6 / n as f64));
        if n == 100_000 {
            match peak_mb() {
                Some(mb) => figures.add("plan_100k_peak_mb", mb, "MB", Some(Target::AtMost(500.0))),
                None => println!("bench: plan_100k_peak_mb unavailable (no /proc on this system)"),
            }
        }
        drop(plan);
        drop(desired);
    }
    let shown: Vec<String> = per_resource
        .iter()
        .map(|(n, us)| format!("{n}: {us:.2} us"))
        .collect();
    println!(
        "  planning time per resource (flat means linear growth): {}",
        shown.join(", ")
    );
}
