//! The production binary as users run it (`cargo run --example production`: the dev profile, a
//! process of its own), deploying through the proxy: its wall time from spawn to exit against the
//! time its necessary calls took in that very run.
//!
//! The necessary calls are the floor's chain (`floor.rs`), each taking the mean time its operation
//! took in the run: what is left of the wall time is the binary's own, from process start to the
//! first call (runtime, config, credentials, clients, state, declaring and planning), between an
//! answer and the call that needed it, and from the last answer to exit. Ordering calls later than
//! AWS requires counts as overhead too.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use local_cloud::{Call, Proxy};

use crate::BenchResult;
use crate::figures::ms;
use crate::floor;

/// Builds the example in the dev profile (nothing to do when `cargo test` built it) and returns its
/// path. Cargo gives the build directory up while benchmarks run, so this does not wait on it.
pub(crate) fn build() -> BenchResult<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "examples",
            "--example",
            "production",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("building the production example failed: {}", out.status).into());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["target"]["name"] == "production")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo named no production executable".into())
}

/// One run of the binary: its wall time and the calls the proxy saw meanwhile.
pub(crate) struct Run {
    /// From spawn to exit.
    pub(crate) wall: Duration,
    /// The calls, their start from the spawn.
    pub(crate) calls: Vec<Call>,
    /// The floor's chain with each call taking its operation's mean time in this run, and its
    /// calls.
    pub(crate) necessary: (Duration, Vec<&'static str>),
}

impl Run {
    /// The wall time left beside the necessary calls.
    pub(crate) fn overhead(&self) -> Duration {
        self.wall.saturating_sub(self.necessary.0)
    }

    /// From spawn to the first call, and from the last answer to exit.
    pub(crate) fn ends(&self) -> (Duration, Duration) {
        let first = self.calls.first().map_or(self.wall, |c| c.started);
        let last = self
            .calls
            .iter()
            .map(|c| c.started + c.duration)
            .max()
            .unwrap_or_default();
        (first, self.wall.saturating_sub(last))
    }

    /// Every call, its start and end from the spawn.
    pub(crate) fn print_timeline(&self) {
        for c in &self.calls {
            println!(
                "  {:>6.0} {:>6.0}  {}",
                ms(c.started),
                ms(c.started + c.duration),
                c.operation
            );
        }
        println!("  {:>6.0}         exit", ms(self.wall));
    }
}

/// Runs `production ARGS` against `proxy` with its state in `state` and returns its run; fails on a
/// non-zero exit, with its output.
pub(crate) async fn run(
    bin: &Path,
    proxy: &Proxy,
    state: &Path,
    args: &[&str],
) -> BenchResult<Run> {
    proxy.clear_calls();
    let spawned = proxy.now();
    let out = tokio::process::Command::new(bin)
        .arg("--endpoint")
        .arg(proxy.endpoint_url())
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .await?;
    let wall = proxy.now().saturating_sub(spawned);
    if !out.status.success() {
        return Err(format!(
            "production {} exited {}:\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let mut calls = proxy.calls();
    for c in &mut calls {
        c.started = c.started.saturating_sub(spawned);
    }
    let necessary = floor::floor(&crate::mean_by_operation(&calls));
    Ok(Run {
        wall,
        calls,
        necessary,
    })
}
