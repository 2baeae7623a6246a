//! `cargo bench`: how close a deploy comes to its physical floor and how hard it leans on the AWS
//! API (the engine's own cost at scale is `platform-core`'s scale bench).
//!
//! It brings up its own emulator through the local-cloud harness and puts the recording proxy in
//! front of it with a fixed latency per call (`BENCH_LATENCY_MS`, default 100), the way real AWS's
//! latency dominates a real deploy. Both accounts it uses are warmed first. The floor is the seed's
//! calls ordered only by AWS's own dependencies (`floor.rs`), each taking the time it took in the
//! sequential program; the deploy measured against it is the median of five from nothing. Each
//! figure is printed as `bench: NAME VALUE UNIT`, then a table with the targets.
//!
//! To compare builds of the production binary: `BENCH_ONLY=binary` measures only its figures,
//! `BENCH_BINARY=PATH` takes that binary instead of building one, and `BENCH_BINARY_RUNS=N` deploys
//! N times instead of five (the figures stay the median run's).
//!
//! Exit status: 0 when every figure was measured (targets missed are reported, not failed), 1 when
//! the benchmark could not run (no emulator, an AWS error).

mod binary;
#[path = "../../../platform-core/benches/support/figures.rs"]
mod figures;
mod floor;
mod sequential;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use examples::Platform;
use examples::measure::{CallTime, critical_path, recorded_edges, reversed};
use figures::{Figures, Target, ms};
use local_cloud::TestCloud;
use platform_core::{Engine, Event, MemoryStateStore, events::AwsCall, state::StackState};

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

/// Makes the emulator ready for `config`'s account before anything is timed: moto loads the AWS
/// managed policies on an account's first IAM call (about a second) and sets up each service's
/// backend on its first call. Both measured sides pay this before their clock starts, not inside it.
async fn warm(config: &aws_types::SdkConfig) -> BenchResult<()> {
    aws_sdk_sts::Client::new(config)
        .get_caller_identity()
        .send()
        .await?;
    aws_sdk_iam::Client::new(config)
        .list_policies()
        .max_items(1)
        .send()
        .await?;
    aws_sdk_ec2::Client::new(config)
        .describe_availability_zones()
        .send()
        .await?;
    aws_sdk_ecs::Client::new(config)
        .list_clusters()
        .send()
        .await?;
    aws_sdk_cloudwatchlogs::Client::new(config)
        .describe_log_groups()
        .send()
        .await?;
    Ok(())
}

/// How many calls of each operation `operations` holds.
fn count_by_operation<'a>(operations: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    for op in operations {
        *by.entry(op.to_owned()).or_default() += 1;
    }
    by
}

/// A measured time, the time it is held against, and their ratio (at most `target`), as figures
/// `names`.
fn against(
    figures: &mut Figures,
    names: [&'static str; 3],
    measured: Duration,
    limit: Duration,
    target: f64,
) {
    figures.add(names[0], ms(measured), "ms", None);
    figures.add(names[1], ms(limit), "ms", None);
    figures.add(
        names[2],
        measured.as_secs_f64() / limit.as_secs_f64(),
        "x",
        Some(Target::AtMost(target)),
    );
}

/// The mean time of each operation's calls.
pub(crate) fn mean_by_operation(calls: &[local_cloud::Call]) -> BTreeMap<String, Duration> {
    let mut sums: BTreeMap<String, (Duration, u32)> = BTreeMap::new();
    for c in calls {
        let e = sums.entry(c.operation.clone()).or_default();
        e.0 += c.duration;
        e.1 += 1;
    }
    sums.into_iter()
        .map(|(op, (sum, n))| (op, sum / n.max(1)))
        .collect()
}

async fn aws_figures(latency: Duration, figures: &mut Figures) -> BenchResult<()> {
    let cloud = TestCloud::start().await?;
    cloud.emulator.require_ecs()?;
    let expected: BTreeMap<String, u64> = sequential::MINIMUM
        .iter()
        .map(|(op, n, _)| ((*op).to_owned(), *n))
        .collect();
    if expected != count_by_operation(floor::operations()) {
        return Err("the minimum calls and the floor's table disagree".into());
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|only| only == "binary") {
        return binary_figures(&cloud, latency, figures).await;
    }
    // The sequential program works in an account of its own, through the same proxy. Both
    // accounts are warmed first, with no latency.
    let sequential_config = cloud.proxy.wrap(&cloud.emulator.isolated());
    warm(&cloud.config).await?;
    warm(&sequential_config).await?;
    cloud.clear();
    cloud.proxy.set_latency(latency);

    let calls = Calls::default();
    // A new engine for each deploy, as each command is a new process: none knows the account yet.
    let platform = || {
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
        Platform::new(engine)
    };

    // 1. The full deploy from nothing, DEPLOY_RUNS times: each but the last is destroyed after
    // (untimed); the deploy's time is their median, what follows looks at the last.
    let mut deploys = Vec::new();
    for _ in 1..DEPLOY_RUNS {
        let platform = platform();
        let started = Instant::now();
        platform.up().await?;
        deploys.push(started.elapsed());
        platform.destroy().await?;
        calls.take();
        cloud.clear();
    }
    let platform = platform();
    let started = Instant::now();
    let up = platform.up().await?;
    deploys.push(started.elapsed());
    let up_calls = calls.take();
    deploys.sort();
    let deploy = deploys[deploys.len() / 2];
    println!(
        "  deploys from nothing: {} ms (the median is the figure)",
        deploys
            .iter()
            .map(|d| format!("{:.0}", ms(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if std::env::var_os("BENCH_TIMELINE").is_some() {
        // Every call of the deploy as the proxy saw it: start and end from the deploy's start.
        let t0 = cloud
            .proxy
            .calls()
            .first()
            .map(|c| c.started)
            .unwrap_or_default();
        for c in cloud.proxy.calls() {
            let start = c.started.saturating_sub(t0);
            println!(
                "  {:>6.0} {:>6.0}  {}",
                ms(start),
                ms(start + c.duration),
                c.operation
            );
        }
    }
    cloud.clear();
    // Where its time went: the chain of recorded calls each waiting for the last (a diagnosis, not
    // the limit: it is the engine's own ordering).
    let edges = recorded_edges(&states(&platform).await?);
    let time = CallTime::of(&up_calls);
    let path = critical_path(&time.by_step, &edges);
    let steps: Vec<String> = path.steps.iter().map(ToString::to_string).collect();
    println!(
        "  deploy's recorded chain: {:.0} ms in steps + {:.0} ms outside steps: {}",
        ms(path.length),
        ms(time.outside),
        steps.join(" -> ")
    );

    // 2. The calls the deploy made against the minimum.
    let by_op = count_by_operation(up_calls.iter().map(|c| c.operation.as_str()));
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

    // 4. Destroy everything, against its own recorded critical path (dependents first).
    let edges = reversed(&recorded_edges(&states(&platform).await?));
    let started = Instant::now();
    platform.destroy().await?;
    let destroy = started.elapsed();
    let destroy_calls = calls.take();
    let time = CallTime::of(&destroy_calls);
    let critical = critical_path(&time.by_step, &edges).length + time.outside;
    against(
        figures,
        ["destroy_ms", "destroy_critical_path_ms", "destroy_ratio"],
        destroy,
        critical,
        1.2,
    );

    // 5. The production binary as users run it, deploying from nothing five times (each destroyed
    // after, untimed), in an account of its own, warmed first.
    binary_figures(&cloud, latency, figures).await?;

    // 6. The sequential program, then the floor from its calls' times.
    cloud.clear();
    let started = Instant::now();
    sequential::deploy(&sequential_config).await?;
    let sequential = started.elapsed();
    let sequential_calls = cloud.proxy.calls();
    let made = count_by_operation(sequential_calls.iter().map(|c| c.operation.as_str()));
    if made != expected {
        return Err(format!(
            "the sequential program made {made:?}, not the minimum listed ({expected:?})"
        )
        .into());
    }
    let (floor, chain) = floor::floor(&mean_by_operation(&sequential_calls));
    println!(
        "  floor: {:.0} ms along {} (AWS's own dependencies after the account check, \
         benches/platform/floor.rs)",
        ms(floor),
        chain.join(" -> ")
    );
    against(
        figures,
        ["deploy_ms", "floor_ms", "deploy_vs_floor"],
        deploy,
        floor,
        1.15,
    );
    figures.add("sequential_ms", ms(sequential), "ms", None);
    figures.add(
        "speedup_vs_sequential",
        sequential.as_secs_f64() / deploy.as_secs_f64(),
        "x",
        Some(Target::AtLeast(5.0)),
    );
    Ok(())
}

/// How many times the engine deploys from nothing in process; `deploy_ms` is their median.
const DEPLOY_RUNS: usize = 5;

/// The account the production binary deploys in.
const BINARY_ACCOUNT: &str = "300000000033";

/// How many times the production binary deploys (unless `BENCH_BINARY_RUNS` says); its figures are
/// the median run's.
const BINARY_RUNS: usize = 5;

/// The production binary's own time beside its calls, as the median of [`BINARY_RUNS`] deploys.
async fn binary_figures(
    cloud: &TestCloud,
    latency: Duration,
    figures: &mut Figures,
) -> BenchResult<()> {
    let bin = match std::env::var_os("BENCH_BINARY") {
        Some(bin) => bin.into(),
        None => binary::build()?,
    };
    let state = tempfile::tempdir()?;
    cloud.proxy.set_latency(Duration::ZERO);
    warm(&cloud.proxy.wrap(&cloud.emulator.account(BINARY_ACCOUNT))).await?;
    // The binary names no account: the proxy makes its calls in this one.
    cloud.proxy.set_account(BINARY_ACCOUNT);
    cloud.proxy.set_latency(latency);
    let mut runs = Vec::new();
    let n = std::env::var("BENCH_BINARY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(BINARY_RUNS);
    for _ in 0..n {
        let up = binary::run(&bin, &cloud.proxy, state.path(), &["--yes", "up"]).await?;
        binary::run(&bin, &cloud.proxy, state.path(), &["--yes", "destroy"]).await?;
        let (first, exit) = up.ends();
        println!(
            "  production up: {:.0} ms, necessary calls {:.0} ms, overhead {:.0} ms (first call \
             after {:.0} ms, exit {:.0} ms after the last answer)",
            ms(up.wall),
            ms(up.necessary.0),
            ms(up.overhead()),
            ms(first),
            ms(exit)
        );
        runs.push(up);
    }
    cloud.clear();
    runs.sort_by_key(binary::Run::overhead);
    let median = &runs[runs.len() / 2];
    if std::env::var_os("BENCH_TIMELINE").is_some() {
        println!("  the median run's calls, from the spawn:");
        median.print_timeline();
    }
    let (necessary, chain) = &median.necessary;
    println!("  the median run's necessary calls: {}", chain.join(" -> "));
    figures.add("binary_up_ms", ms(median.wall), "ms", None);
    figures.add("binary_necessary_calls_ms", ms(*necessary), "ms", None);
    figures.add(
        "engine_overhead_ms",
        ms(median.overhead()),
        "ms",
        Some(Target::AtMost(40.0)),
    );
    Ok(())
}
