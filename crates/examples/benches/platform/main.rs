//! `cargo bench`: how close a deploy comes to its physical limit, how hard it leans on the AWS API,
//! and how planning scales.
//!
//! It brings up its own emulator through the local-cloud harness and puts the recording proxy in
//! front of it with a fixed latency per call (`BENCH_LATENCY_MS`, default 100), the way real AWS's
//! latency dominates a real deploy. Each figure is printed as `bench: NAME VALUE UNIT`, then a table
//! with the targets. The critical path is computed from the recorded run (see `examples::measure`).
//!
//! Exit status: 0 when every figure was measured (targets missed are reported, not failed), 1 when
//! the benchmark could not run (no emulator, an AWS error).

#[path = "../../../platform-core/benches/support/figures.rs"]
mod figures;
mod sequential;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use examples::Platform;
use figures::{Figures, Target, ms};
use examples::measure::{CallTime, StepId, critical_path, recorded_edges, reversed};
use local_cloud::TestCloud;
use platform_core::{AwsCall, Engine, Event, MemoryStateStore, StackState};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() -> ExitCode {
    let latency = std::env::var("BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    println!(
        "platform benchmark: {} CPU(s), injected latency {latency} ms per AWS call",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let mut figures = Figures::default();
    if let Err(e) = aws_figures(Duration::from_millis(latency), &mut figures).await {
        eprintln!("benchmark failed: {e}");
        figures.table();
        return ExitCode::FAILURE;
    }
    figures.table();
    ExitCode::SUCCESS
}

/// The calls the engine reports, collected.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<AwsCall>>>);

impl Calls {
    fn take(&self) -> Vec<AwsCall> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

async fn states(platform: &Platform) -> BenchResult<Vec<StackState>> {
    let mut out = Vec::new();
    for name in platform.stack_names() {
        let state = platform
            .engine()
            .store()
            .read(name)
            .await?
            .ok_or_else(|| format!("stack {name} has no state after up"))?;
        out.push(state);
    }
    Ok(out)
}

/// The run's wall time, its critical path (the recorded calls of each step along `edges`, plus the
/// calls made outside any step), and their ratio (target: at most 1.2), as figures `names`.
fn against_critical_path(
    figures: &mut Figures,
    names: [&'static str; 3],
    wall: Duration,
    calls: &[AwsCall],
    edges: &BTreeSet<(StepId, StepId)>,
) {
    let time = CallTime::of(calls);
    let path = critical_path(&time.by_step, edges);
    let critical = path.length + time.outside;
    let steps: Vec<String> = path.steps.iter().map(ToString::to_string).collect();
    println!(
        "  {} critical path: {:.0} ms in steps + {:.0} ms outside steps: {}",
        names[0].trim_end_matches("_ms"),
        ms(path.length),
        ms(time.outside),
        steps.join(" -> ")
    );
    figures.add(names[0], ms(wall), "ms", None);
    figures.add(names[1], ms(critical), "ms", None);
    figures.add(
        names[2],
        wall.as_secs_f64() / critical.as_secs_f64(),
        "x",
        Some(Target::AtMost(1.2)),
    );
}

async fn aws_figures(latency: Duration, figures: &mut Figures) -> BenchResult<()> {
    let cloud = TestCloud::start().await?;
    cloud.emulator.require_ecs()?;
    cloud.proxy.set_latency(latency);
    let calls = Calls::default();
    let sink = calls.clone();
    let engine = Engine::builder(MemoryStateStore::new())
        .aws(cloud.config.clone())
        .on_event(move |e| {
            if let Event::AwsCall(c) = e {
                sink.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(c.clone());
            }
        })
        .build();
    let platform = Platform::new(engine);

    // 1. The full deploy from nothing.
    let started = Instant::now();
    let up = platform.up().await?;
    let deploy = started.elapsed();
    let up_calls = calls.take();
    let edges = recorded_edges(&states(&platform).await?);
    let ratio = ["deploy_ms", "critical_path_ms", "deploy_ratio"];
    against_critical_path(figures, ratio, deploy, &up_calls, &edges);

    // 6. The calls the deploy made against the minimum.
    let mut by_op: BTreeMap<String, u64> = BTreeMap::new();
    for c in &up_calls {
        *by_op.entry(c.operation.clone()).or_default() += 1;
    }
    figures.add(
        "api_calls_up",
        up_calls.len() as f64,
        "calls",
        Some(Target::AtMost(sequential::minimum_total() as f64)),
    );
    figures.add(
        "api_calls_minimum",
        sequential::minimum_total() as f64,
        "calls",
        None,
    );
    println!("  {:<32} {:>5} {:>5}  why", "operation", "made", "min");
    let minimum: BTreeMap<&str, (u64, &str)> = sequential::MINIMUM
        .iter()
        .map(|(op, n, why)| (*op, (*n, *why)))
        .collect();
    let mut ops: Vec<&str> = by_op.keys().map(String::as_str).collect();
    ops.extend(minimum.keys().filter(|op| !by_op.contains_key(**op)));
    for op in ops {
        let made = by_op.get(op).copied().unwrap_or(0);
        let (min, why) = minimum
            .get(op)
            .copied()
            .unwrap_or((0, "not required to create these resources"));
        println!("  {op:<32} {made:>5} {min:>5}  {why}");
    }

    // 3. A second up with nothing changed.
    let before = platform.engine().calls();
    let started = Instant::now();
    let again = platform.up().await?;
    let noop = started.elapsed();
    let noop_calls = platform.engine().calls().since(&before);
    calls.take();
    let resources: usize = again
        .stacks
        .iter()
        .map(|s| s.changes.same + s.changes.update + s.changes.create)
        .sum();
    if again.outputs != up.outputs {
        return Err("the second up changed the outputs".into());
    }
    figures.add(
        "noop_mutating_calls",
        noop_calls.mutating as f64,
        "calls",
        Some(Target::AtMost(0.0)),
    );
    figures.add(
        "noop_read_calls",
        noop_calls.read as f64,
        "calls",
        Some(Target::AtMost(resources as f64)),
    );
    figures.add("noop_ms", ms(noop), "ms", None);

    // 4. Destroy everything, against its own critical path (dependents first).
    let edges = reversed(&recorded_edges(&states(&platform).await?));
    let started = Instant::now();
    platform.destroy().await?;
    let destroy = started.elapsed();
    let ratio = ["destroy_ms", "destroy_critical_path_ms", "destroy_ratio"];
    against_critical_path(figures, ratio, destroy, &calls.take(), &edges);

    // 2. The sequential program, in an account of its own, through the same proxy.
    let config = cloud.proxy.wrap(&cloud.emulator.isolated());
    cloud.clear();
    let started = Instant::now();
    sequential::deploy(&config).await?;
    let sequential = started.elapsed();
    let mut made: BTreeMap<String, u64> = BTreeMap::new();
    for op in cloud.operations() {
        *made.entry(op).or_default() += 1;
    }
    let expected: BTreeMap<String, u64> = sequential::MINIMUM
        .iter()
        .map(|(op, n, _)| ((*op).to_owned(), *n))
        .collect();
    if made != expected {
        return Err(format!(
            "the sequential program made {made:?}, not the minimum listed ({expected:?})"
        )
        .into());
    }
    figures.add("sequential_ms", ms(sequential), "ms", None);
    figures.add(
        "speedup_vs_sequential",
        sequential.as_secs_f64() / deploy.as_secs_f64(),
        "x",
        Some(Target::AtLeast(3.0)),
    );
    Ok(())
}
