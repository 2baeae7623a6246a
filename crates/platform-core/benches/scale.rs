//! `cargo bench -p platform-core`: the engine's own cost at scale, with no AWS and no latency, on
//! random graphs of fake resources (`platform_core::testing`).
//!
//! - Planning: declare, validate, order and plan graphs of 1k, 10k and 100k resources in memory
//!   (what `preview` does before it reads state), the median of three runs each, with the peak
//!   memory of the largest.
//! - Applying 10,000 resources to the fake cloud with a real [`LocalStateStore`] in a temporary
//!   directory: the create, the bytes the process wrote meanwhile (the state: its journal and whole
//!   writes; nothing else writes), a second `up` with nothing to do (with its parts, as the run
//!   measured them: `UpReport::phases`), and the destroy.
//!
//! `cargo bench -p platform-core -- plan` (or `apply`) runs one part.
//!
//! Each figure is printed as `bench: NAME VALUE UNIT`, then as a table against its target.

#[path = "support/figures.rs"]
#[allow(
    dead_code,
    reason = "shared with the platform bench, which uses all of it"
)]
mod figures;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use figures::{Figures, Target, ms};
use platform_core::testing::{FakeCloud, FakeStack, fake_engine};
use platform_core::{LocalStateStore, UpOptions, plan::plan, stack::Desired, state::StackState};

/// Layers of the random graphs: every edge goes to an earlier layer, so no chain is longer.
const DEPTH: usize = 20;
/// At most this many dependencies per resource.
const MAX_DEPS: usize = 3;

/// `n` nodes in [`DEPTH`] layers, each with 0 to [`MAX_DEPS`] dependencies drawn from the earlier
/// layers (seeded: every run uses the same graphs).
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

/// A counter of `/proc/self/<file>` (Linux), `None` elsewhere.
fn proc_counter(file: &str, key: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/self/{file}")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resets the peak resident set size (Linux: `clear_refs` 5), so a phase's own peak can be read.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// How many times each graph is planned: its figures are the median run's (a shared machine's
/// noise moves single runs by a third).
const PLAN_RUNS: usize = 3;

/// Plans graphs of 1,000, 10,000 and 100,000 resources.
fn plan_figures(figures: &mut Figures) {
    let sizes: [(usize, &'static str, Option<f64>); 3] = [
        (1_000, "plan_1k_ms", None),
        (10_000, "plan_10k_ms", None),
        (100_000, "plan_100k_ms", Some(800.0)),
    ];
    let mut per_resource = Vec::new();
    for (n, name, target) in sizes {
        let stack = FakeStack::from_deps("scale", random_dag(n, n as u64));
        reset_peak();
        // (declaring, declaring and planning) of each run.
        let mut runs: Vec<(Duration, Duration)> = (0..PLAN_RUNS)
            .map(|_| {
                let started = Instant::now();
                let desired = Desired::of(&stack).expect("a random DAG is a valid stack");
                let declared = started.elapsed();
                let plan = plan(&desired, &StackState::new("scale"), None).expect("it plans");
                let elapsed = started.elapsed();
                assert_eq!(plan.counts().create, n, "every resource is to be created");
                (declared, elapsed)
            })
            .collect();
        runs.sort_by_key(|(_, elapsed)| *elapsed);
        let (declared, elapsed) = runs[PLAN_RUNS / 2];
        println!(
            "  {n} resources, median of {PLAN_RUNS}: declaring {:.0} ms, planning {:.0} ms",
            ms(declared),
            ms(elapsed - declared)
        );
        figures.add(name, ms(elapsed), "ms", target.map(Target::AtMost));
        per_resource.push((n, elapsed.as_secs_f64() * 1e6 / n as f64));
        if n == 100_000 {
            match proc_counter("status", "VmHWM:") {
                Some(kb) => figures.add(
                    "plan_100k_peak_mb",
                    kb / 1024.0,
                    "MB",
                    Some(Target::AtMost(300.0)),
                ),
                None => println!("bench: plan_100k_peak_mb unavailable (no /proc on this system)"),
            }
        }
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

/// Creates, re-applies and destroys 10,000 fake resources with the local store.
async fn apply_figures(figures: &mut Figures) -> Result<(), Box<dyn std::error::Error>> {
    const N: usize = 10_000;
    let dir = tempfile::tempdir()?;
    let store = LocalStateStore::open(dir.path())?;
    let cloud = FakeCloud::new();
    let engine = fake_engine(store, &cloud);
    let stack = FakeStack::from_deps("scale", random_dag(N, 7));

    let written = proc_counter("io", "wchar:");
    let started = Instant::now();
    let outputs = engine.up(&stack).await?;
    let apply = started.elapsed();
    if outputs.len() != N || cloud.live().len() != N {
        return Err(format!(
            "{} outputs, {} live after the apply",
            outputs.len(),
            cloud.live().len()
        )
        .into());
    }
    figures.add(
        "apply_10k_ms",
        ms(apply),
        "ms",
        Some(Target::AtMost(3000.0)),
    );
    match (written, proc_counter("io", "wchar:")) {
        (Some(before), Some(after)) => figures.add(
            "state_mb_written_10k",
            (after - before) / 1e6,
            "MB",
            Some(Target::AtMost(50.0)),
        ),
        _ => println!("bench: state_mb_written_10k unavailable (no /proc on this system)"),
    }
    let state_mb = std::fs::metadata(dir.path().join("scale.json"))?.len() as f64 / 1e6;
    println!("  the state document at the end: {state_mb:.2} MB");

    let calls = cloud.calls();
    let started = Instant::now();
    let noop = engine.up_with(&stack, UpOptions::default()).await?;
    let elapsed = started.elapsed();
    if cloud.calls() != calls || noop.plan.has_changes() {
        return Err("the second up had changes or called the cloud".into());
    }
    figures.add(
        "noop_10k_ms",
        ms(elapsed),
        "ms",
        Some(Target::AtMost(300.0)),
    );
    // Where a no-op's time goes, as the run itself measured it.
    let p = noop.phases;
    let parts = [
        ("noop_10k_lock_ms", p.lock + p.unlock),
        ("noop_10k_read_ms", p.read),
        ("noop_10k_declare_ms", p.declare),
        ("noop_10k_plan_ms", p.plan),
        ("noop_10k_apply_ms", p.apply),
        ("noop_10k_outputs_ms", p.outputs),
    ];
    let counted: std::time::Duration = parts.iter().map(|(_, took)| *took).sum();
    for (name, took) in parts {
        figures.add(name, ms(took), "ms", None);
    }
    // The identity is the fake's (no call), and was asked while the lock was taken.
    figures.add(
        "noop_10k_other_ms",
        ms(elapsed.saturating_sub(counted)),
        "ms",
        None,
    );

    let started = Instant::now();
    let report = engine.destroy::<FakeStack>("scale").await?;
    let destroy = started.elapsed();
    if report.deleted != N || !cloud.live().is_empty() {
        return Err(format!("{} deleted, {} left", report.deleted, cloud.live().len()).into());
    }
    figures.add("destroy_10k_ms", ms(destroy), "ms", None);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    println!(
        "platform-core scale benchmark: {} CPU(s), the fake cloud, no latency",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    // `cargo bench -p platform-core -- plan` runs the phases whose name holds `plan` (`plan`,
    // `apply`): a profile of one phase without the others.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let runs = |phase: &str| only.is_empty() || only.iter().any(|o| phase.contains(o.as_str()));
    let mut figures = Figures::default();
    // Planning first: its peak memory is measured before anything else is allocated.
    if runs("plan") {
        plan_figures(&mut figures);
    }
    let result = if runs("apply") {
        apply_figures(&mut figures).await
    } else {
        Ok(())
    };
    figures.table();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            ExitCode::FAILURE
        }
    }
}
