//! `cargo run --example production`: brings up the production ECS platform (IAM, network, cluster)
//! and shows what happened. With no flags it runs on a local AWS emulator that outlives the command
//! (so that `preview`, `outputs` and `destroy` later see the same resources); `--endpoint URL` uses an
//! emulator you run; `--aws` uses real AWS with the default credential chain.
//!
//! ```text
//! production [--endpoint URL | --aws] [--state-dir DIR | --state s3://BUCKET/PREFIX]
//!            [--lock-timeout DURATION] [--take-over-dead-locks] [--json] [--yes] [COMMAND]
//!            [--call-timeout DURATION] [--settle-window DURATION]
//!            [--config FILE] [--policy PATH]... [--env NAME]
//! COMMAND: up [--refresh] (default)
//!          | preview [--refresh] [--detailed-exitcode] [--format text|markdown] [--against ENV]
//!          | envs
//!          | refresh [--detailed-exitcode] | destroy | outputs | graph [--format mermaid|dot]
//!          | force-unlock [STACK...] | import STACK/RESOURCE ID | init [--force] | emulator stop
//! ```
//!
//! Exit codes: 0 success; 1 failure (the failing resource, AWS's error code, what was kept in
//! state); 2 usage error, invalid config file or policy (before any AWS call), and with
//! `--detailed-exitcode`: `preview` with changes, `refresh` with drift; 3 a mandatory policy
//! violation: `up` changed nothing, `preview` (whatever `--detailed-exitcode` says), `refresh
//! --detailed-exitcode` over what is live.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_types::SdkConfig;
use clap::{Parser, Subcommand, ValueEnum};
use examples::config::{DEFAULT_ENV, PlatformConfig};
use examples::graph::{self, Format};
use examples::{Platform, PlatformOutputs};
use indicatif::{ProgressBar, ProgressStyle};
use local_cloud::{Detached, Emulator};
use platform_core::policy::{self, Violation};
use platform_core::{
    Engine, Error, Event, LocalStateStore, Plan, S3StateStore, StateStore, engine::CallTimeouts,
    engine::DEFAULT_SETTLE_WINDOW, engine::RefreshReport, engine::total_counts, error::StateError,
    plan::ActionKind, plan::Counts, resource::CancellationToken,
};
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(
    name = "production",
    about = "Bring up the production ECS platform (IAM, network, cluster) on a local emulator or AWS",
    after_help = "With no target flag, a local AWS emulator is started (Docker, else a moto_server \
                  process) and kept running for later commands; `emulator stop` removes it."
)]
struct Cli {
    /// An AWS-compatible endpoint you run (e.g. http://localhost:5000) instead of a local emulator.
    #[arg(long, value_name = "URL", conflicts_with = "aws", global = true)]
    endpoint: Option<String>,
    /// Real AWS, with the default credential chain (environment, profile, SSO, instance role).
    #[arg(long, global = true)]
    aws: bool,
    /// Where state is kept: one directory per target and account inside it.
    #[arg(long, value_name = "DIR", default_value = ".platform", global = true)]
    state_dir: PathBuf,
    /// Keep state in S3 instead (shared by a team; locked with conditional writes): the bucket must
    /// exist, with versioning on. Nothing is written to local disk but the local emulator's record.
    #[arg(long, value_name = "s3://BUCKET/PREFIX", global = true)]
    state: Option<String>,
    /// Wait this long (e.g. 30s, 5m) for a stack's lock held by another run, instead of failing at once.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, global = true)]
    lock_timeout: Option<Duration>,
    /// Give up on one AWS call after this long (e.g. 20s, 2m; default 60s, and 30s for an answer to
    /// start): a timed-out create is settled by looking for what it made, never sent again blindly.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, global = true)]
    call_timeout: Option<Duration>,
    /// How long to look for what an interrupted create made before creating it again, counted
    /// from when it was sent (default 2m: how late AWS may show a new resource). Shorter is for
    /// emulators.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, global = true)]
    settle_window: Option<Duration>,
    /// Take over an S3 lock whose holder ran on this host and is gone (killed), saying so.
    #[arg(long, global = true)]
    take_over_dead_locks: bool,
    /// The platform's config (TOML; `production init` writes the default one). Without it, the
    /// seed's values.
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// A Rego policy file or directory, checked with the built-in rules before any change
    /// (repeatable; added to the config's `[policy] paths`).
    #[arg(long = "policy", value_name = "PATH", global = true)]
    policies: Vec<PathBuf>,
    /// The environment: its stacks are `NAME-iam`, `NAME-network`, `NAME-cluster` and every AWS
    /// name it makes starts with `NAME-` (the config's `[env.NAME]` keys apply); `production`
    /// keeps the seed's names.
    #[arg(long, value_name = "NAME", default_value = "production", global = true)]
    env: String,
    /// Print exactly one JSON object on stdout (progress and messages go to stderr).
    #[arg(long, global = true)]
    json: bool,
    /// Do not ask before changing real AWS.
    #[arg(long, short = 'y', global = true)]
    yes: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug, Clone)]
enum Command {
    /// Create or update everything (the default).
    Up {
        /// Read every resource live first (and record it), then plan and apply against that.
        #[arg(long)]
        refresh: bool,
    },
    /// Show what `up` would do, changing nothing.
    Preview {
        /// Exit 0 with no changes, 2 with changes, 1 on error (3 with a mandatory policy
        /// violation, with or without this flag).
        #[arg(long)]
        detailed_exitcode: bool,
        /// Read every resource live first and plan against that (records nothing).
        #[arg(long)]
        refresh: bool,
        /// `text`, or `markdown`: the violations and a table of changes per stack, for a pull
        /// request comment.
        #[arg(long, value_enum, default_value = "text")]
        format: PreviewFormat,
        /// Instead of a plan, how this environment's declared platform differs from environment
        /// ENV's, resource by resource and field by field, names aside (exit 2 with
        /// --detailed-exitcode when they differ).
        #[arg(long, value_name = "ENV", conflicts_with = "refresh")]
        against: Option<String>,
    },
    /// List the environments the state store holds: each stack's serial and last apply.
    Envs,
    /// Read every resource live, record it, and show what drifted from what was applied, and what
    /// breaks a policy.
    Refresh {
        /// Exit 0 with no drift, 2 with drift, 3 with a mandatory policy violation live, 1 on error.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Bring a resource that already exists under management: it is tagged as the stack's and
    /// recorded; the next `up` makes it match the declaration.
    Import {
        /// The stack and the resource it declares, e.g. network/vpc.
        address: String,
        /// The resource's id, name or ARN (vpc-..., a role name, a service ARN, ...).
        id: String,
    },
    /// Write the default config file (--config FILE, else platform.toml), a comment per key.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Delete everything: the cluster first, then IAM and the network.
    Destroy,
    /// Print the stacks' outputs.
    Outputs,
    /// Print a diagram of the deployed platform.
    Graph {
        /// Mermaid (as in the seed's overview) or Graphviz dot.
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
    /// Remove stacks' locks left by runs that died (all of the platform's stacks when none is named).
    /// Shows each holder and asks first, unless --yes.
    ForceUnlock {
        /// The stacks.
        stacks: Vec<String>,
    },
    /// The local emulator.
    Emulator {
        #[command(subcommand)]
        action: EmulatorAction,
    },
}

#[derive(Subcommand, Debug, Clone, Copy)]
enum EmulatorAction {
    /// Stop and remove the local emulator this tool started.
    Stop,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum PreviewFormat {
    Text,
    Markdown,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum GraphFormat {
    Mermaid,
    Dot,
}

/// Where the platform goes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Local,
    Endpoint(String),
    Aws,
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Endpoint(_) => "endpoint",
            Self::Aws => "aws",
        }
    }
}

/// A failure and the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
    error: Option<Box<Error>>,
    /// The mandatory policy violations that refused the run.
    violations: Vec<Violation>,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self {
            code: if matches!(e, Error::PolicyViolation { .. }) {
                POLICY_EXIT
            } else {
                1
            },
            message: describe_error(&e),
            violations: match &e {
                Error::PolicyViolation { violations, .. } => violations.clone(),
                _ => Vec::new(),
            },
            error: Some(Box::new(e)),
        }
    }
}

fn failure(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
        error: None,
        violations: Vec::new(),
    }
}

/// The exit code of a run refused by a mandatory policy violation.
const POLICY_EXIT: u8 = 3;

/// The failing resource, AWS's code, and what the state keeps.
fn describe_error(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    if let Some(code) = e.aws_code() {
        text.push_str(&format!("\nAWS error code: {code}"));
    }
    if matches!(e, Error::Resource { .. }) {
        text.push_str(
            "\nWhat completed is recorded in state; run the command again to finish the work.",
        );
    }
    if let Error::State(StateError::Locked { stack, .. }) = e
        && let Some(command) = UNLOCK_COMMAND.get()
    {
        text.push_str(&format!(
            "\nIf that run is gone (killed, its machine lost), remove its lock: {command} {stack}\n\
             (or wait for it: --lock-timeout 5m)"
        ));
    }
    text
}

/// How this invocation's store removes a lock (`production --state s3://.. force-unlock`), for the
/// held-lock message; unset for a local directory, whose locks die with their process.
static UNLOCK_COMMAND: OnceLock<String> = OnceLock::new();

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("production: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    let command = cli
        .command
        .clone()
        .unwrap_or(Command::Up { refresh: false });
    match runtime.block_on(run(cli, command.clone())) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if json {
                let mut doc = json!({
                    "command": command_name(&command),
                    "error": f.message,
                    "aws_code": f.error.as_ref().and_then(|e| e.aws_code()),
                });
                if !f.violations.is_empty() {
                    doc["violations"] = json!(f.violations);
                }
                println!("{doc}");
            }
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Up { .. } => "up",
        Command::Preview { .. } => "preview",
        Command::Envs => "envs",
        Command::Refresh { .. } => "refresh",
        Command::Init { .. } => "init",
        Command::Import { .. } => "import",
        Command::Destroy => "destroy",
        Command::Outputs => "outputs",
        Command::Graph { .. } => "graph",
        Command::ForceUnlock { .. } => "force-unlock",
        Command::Emulator { .. } => "emulator",
    }
}

async fn run(cli: Cli, command: Command) -> Result<u8, Failure> {
    let target = match (&cli.endpoint, cli.aws) {
        (Some(url), _) => Target::Endpoint(url.clone()),
        (None, true) => Target::Aws,
        (None, false) => Target::Local,
    };
    if let Command::Emulator {
        action: EmulatorAction::Stop,
    } = command
    {
        return stop_emulator(&cli);
    }
    if let Command::Init { force } = command {
        return init(&cli, force);
    }
    // The config file and the policies are checked before anything else: exit 2, no AWS call.
    let mut file = match &cli.config {
        Some(path) => Some((
            path.clone(),
            PlatformConfig::load(path).map_err(|e| failure(2, e.to_string()))?,
        )),
        None if !cli.policies.is_empty() || cli.env != DEFAULT_ENV => {
            Some((PathBuf::from("--env"), PlatformConfig::default()))
        }
        None => None,
    };
    // As written, for `preview --against` (another environment of the same file).
    let written = file.clone();
    if let Some((path, config)) = &mut file {
        *config = config
            .environment(path, &cli.env)
            .map_err(|e| failure(2, e.to_string()))?;
    }
    if let Some((_, file)) = &mut file {
        let here = std::env::current_dir()
            .map_err(|e| failure(1, format!("the current directory: {e}")))?;
        file.policy
            .paths
            .extend(cli.policies.iter().map(|p| here.join(p)));
    }
    if let Some((path, file)) = &file {
        let probe = Engine::builder(platform_core::MemoryStateStore::new()).build();
        file.apply(path, &mut Platform::new(probe))
            .map_err(|e| failure(2, e.to_string()))?;
    }
    let mutates = matches!(
        command,
        Command::Up { .. } | Command::Destroy | Command::Import { .. }
    );
    // Refuse before any AWS call: there is no one to ask.
    if target == Target::Aws && mutates && !cli.yes && !std::io::stdin().is_terminal() {
        return Err(failure(
            2,
            "refusing to change real AWS without confirmation: no terminal to ask on. Review \
             `production --aws preview`, then run again with --yes",
        ));
    }

    let config = connect(&cli, &target).await?;
    let progress = Reporter::new(cli.json);
    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "\ninterrupted: letting in-flight AWS calls finish and recording them (Ctrl-C again to abort)"
                );
                cancel.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }
    // The account is part of the state's path: local and real AWS state can never mix.
    let probe = Engine::builder(platform_core::MemoryStateStore::new())
        .aws(config.clone())
        .build();
    let identity = probe.identity().await?;
    let store: Arc<dyn StateStore> = match &cli.state {
        Some(url) => {
            let store = S3StateStore::from_url(&config, url)
                .map_err(|e| failure(2, format!("--state {url:?}: {e}")))?
                .take_over_dead_locks(cli.take_over_dead_locks);
            if !store.check().await.map_err(Error::from)? {
                eprintln!(
                    "warning: bucket {} does not keep versions: no history of the state is kept, \
                     and a corrupt state cannot be restored (aws s3api put-bucket-versioning --bucket {} \
                     --versioning-configuration Status=Enabled)",
                    store.bucket(),
                    store.bucket()
                );
            }
            let _ = UNLOCK_COMMAND.set(format!("production --state {url} force-unlock"));
            Arc::new(store)
        }
        None => {
            let state_dir = cli.state_dir.join(format!(
                "{}-{}-{}",
                target.name(),
                identity.account_id,
                identity.region
            ));
            Arc::new(LocalStateStore::open(&state_dir).map_err(Error::from)?)
        }
    };
    let engine = || {
        let sink = progress.clone();
        Engine::builder_shared(store.clone())
            .aws(config.clone())
            // Already asked once, above: the same credentials, no second STS call.
            .provider(identity.clone())
            .cancellation(cancel.clone())
            .lock_timeout(cli.lock_timeout.unwrap_or_default())
            .call_timeouts(call_timeouts(cli.call_timeout))
            .settle_window(cli.settle_window.unwrap_or(DEFAULT_SETTLE_WINDOW))
            .environment(cli.env.clone())
            .on_event(move |e| sink.event(e))
            .build()
    };
    let mut platform = Platform::new(engine());
    if let Some((path, file)) = &file {
        file.apply(path, &mut platform)
            .map_err(|e| failure(2, e.to_string()))?;
    }
    let started = Instant::now();
    let out = Output {
        json: cli.json,
        target: target.clone(),
    };
    if !cli.json {
        eprintln!(
            "target: {} ({identity}); state in {}",
            target.name(),
            store.location()
        );
    }

    match command {
        Command::Up { refresh } => {
            if refresh {
                // Read live and record it; the plan below is then against what exists.
                let reports = platform.refresh().await?;
                if !cli.json {
                    print_drift(&reports);
                }
            }
            let checked = platform.preview_checked().await?;
            let plans = checked.plans;
            if !cli.json {
                print_plans(&plans);
                print_violations(&checked.violations);
            }
            refuse_mandatory(&checked.violations)?;
            if target == Target::Aws && !cli.yes && plans.iter().any(Plan::has_changes) {
                confirm("Apply these changes to AWS")?;
            }
            progress.start(
                plans
                    .iter()
                    .map(|p| {
                        let c = p.counts();
                        c.create + c.update + c.replace + c.delete
                    })
                    .sum(),
            );
            let result = platform.up().await;
            progress.finish();
            let summary = result?;
            let totals = sum(summary.stacks.iter().map(|s| s.changes));
            out.emit(
                "up",
                json!({
                    "stacks": summary.stacks,
                    "totals": totals,
                    "api_calls": {"read": summary.calls.read, "mutating": summary.calls.mutating},
                    "wall_ms": started.elapsed().as_millis() as u64,
                    "outputs": outputs_json(&summary.outputs),
                    "violations": summary.violations,
                }),
                || {
                    print_summary(
                        &totals,
                        summary.calls.read,
                        summary.calls.mutating,
                        started.elapsed(),
                    );
                    print_outputs(&summary.outputs);
                },
            );
            Ok(0)
        }
        Command::Preview {
            detailed_exitcode,
            against: Some(other),
            ..
        } => {
            // The other environment, from the same file (or the seed's values).
            let (path, config) = match &written {
                Some((path, config)) => (path.clone(), config.clone()),
                None => (PathBuf::from("--env"), PlatformConfig::default()),
            };
            let mut theirs = Platform::new(engine());
            config
                .environment(&path, &other)
                .and_then(|c| c.apply(&path, &mut theirs))
                .map_err(|e| failure(2, e.to_string()))?;
            let mine = platform.declared().await?;
            let them = theirs.declared().await?;
            let plans = examples::promote::against(&mine, &cli.env, &them, &other);
            let differ = plans.iter().any(Plan::has_changes);
            let calls = platform.engine().calls();
            let mut doc = plans_json(&plans, calls.read, calls.mutating, started.elapsed());
            doc["env"] = json!(cli.env);
            doc["against"] = json!(other);
            out.emit("preview", doc, || {
                println!("{} against {other} (names aside):", cli.env);
                print_plans(&plans);
            });
            Ok(if detailed_exitcode && differ { 2 } else { 0 })
        }
        Command::Envs => {
            let mut envs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
            for name in store.list().await.map_err(Error::from)? {
                let Some(state) = store.read(&name).await.map_err(Error::from)? else {
                    continue;
                };
                let env = state.environment.clone().unwrap_or_else(|| {
                    ["iam", "network", "cluster"]
                        .iter()
                        .find_map(|s| name.strip_suffix(&format!("-{s}")))
                        .unwrap_or(DEFAULT_ENV)
                        .to_owned()
                });
                let applied = state.applied_at.map(|t| {
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + Duration::from_secs(t),
                    )
                    .to_string()
                });
                envs.entry(env).or_default().push(json!({
                    "stack": name,
                    "serial": state.serial,
                    "applied_at": applied,
                    "resources": state.resources.len(),
                }));
            }
            out.emit(
                "envs",
                json!({"environments": envs.iter().map(|(e, s)| json!({"name": e, "stacks": s})).collect::<Vec<_>>()}),
                || {
                    if envs.is_empty() {
                        println!("no environment: the state store holds no stack");
                    }
                    for (env, stacks) in &envs {
                        println!("{env}");
                        for s in stacks {
                            println!(
                                "  {:<24} serial {:<4} {} resources, last applied {}",
                                s["stack"].as_str().unwrap_or_default(),
                                s["serial"],
                                s["resources"],
                                s["applied_at"].as_str().unwrap_or("never")
                            );
                        }
                    }
                },
            );
            Ok(0)
        }
        Command::Preview {
            detailed_exitcode,
            refresh,
            format,
            against: None,
        } => {
            let (checked, reports) = if refresh {
                let reports = platform.preview_refreshed().await?;
                (platform.checked(&reports), Some(reports))
            } else {
                (platform.preview_checked().await?, None)
            };
            let plans = &checked.plans;
            let changes = plans.iter().any(Plan::has_changes);
            let calls = platform.engine().calls();
            let mut doc = plans_json(plans, calls.read, calls.mutating, started.elapsed());
            if let Some(reports) = &reports {
                doc["drift"] = drift_json(reports);
            }
            doc["plan"] = serde_json::to_value(&checked.document).unwrap_or_default();
            doc["violations"] = serde_json::to_value(&checked.violations).unwrap_or_default();
            out.emit("preview", doc, || {
                if format == PreviewFormat::Markdown {
                    print!("{}", examples::review::markdown(&checked));
                    return;
                }
                if let Some(reports) = &reports {
                    print_drift(reports);
                }
                print_plans(plans);
                print_violations(&checked.violations);
            });
            if policy::mandatory(&checked.violations).next().is_some() {
                return Ok(POLICY_EXIT);
            }
            Ok(if detailed_exitcode && changes { 2 } else { 0 })
        }
        Command::Refresh { detailed_exitcode } => {
            let reports = platform.refresh().await?;
            let plans: Vec<Plan> = reports.iter().map(|r| r.plan.clone()).collect();
            // Drift since the last record, or live resources that differ from the declared
            // platform (an earlier refresh may have recorded them): either fails the gate.
            let drifted = reports
                .iter()
                .any(|r| !r.drift.is_empty() || r.plan.has_changes());
            // What is live, checked as a plan would be: a port opened by hand is a violation too.
            let violations = platform.live_violations(&reports);
            let calls = platform.engine().calls();
            let mut doc = plans_json(&plans, calls.read, calls.mutating, started.elapsed());
            doc["drift"] = drift_json(&reports);
            doc["violations"] = serde_json::to_value(&violations).unwrap_or_default();
            out.emit("refresh", doc, || {
                print_drift(&reports);
                print_plans(&plans);
                print_violations(&violations);
            });
            Ok(
                if detailed_exitcode && policy::mandatory(&violations).next().is_some() {
                    POLICY_EXIT
                } else if detailed_exitcode && drifted {
                    2
                } else {
                    0
                },
            )
        }
        Command::Destroy => {
            if target == Target::Aws && !cli.yes {
                confirm("Delete every resource of the platform from AWS")?;
            }
            progress.start(0);
            let result = platform.destroy().await;
            progress.finish();
            let deleted = result?;
            let calls = platform.engine().calls();
            out.emit(
                "destroy",
                json!({
                    "stacks": deleted.iter().map(|(name, n)| json!({"name": name, "deleted": n})).collect::<Vec<_>>(),
                    "api_calls": {"read": calls.read, "mutating": calls.mutating},
                    "wall_ms": started.elapsed().as_millis() as u64,
                }),
                || {
                    for (name, n) in &deleted {
                        println!("{name}: {n} resources deleted");
                    }
                    println!(
                        "{} AWS calls ({} mutating) in {:.1}s",
                        calls.read + calls.mutating,
                        calls.mutating,
                        started.elapsed().as_secs_f64()
                    );
                },
            );
            Ok(0)
        }
        Command::Outputs => {
            let outputs = platform.outputs().await?;
            out.emit(
                "outputs",
                json!({"outputs": outputs_json(&outputs)}),
                || print_outputs(&outputs),
            );
            Ok(0)
        }
        Command::Graph { format } => {
            let mut stacks = Vec::new();
            for name in platform.stack_names() {
                if let Some(s) = platform
                    .engine()
                    .store()
                    .read(name)
                    .await
                    .map_err(Error::from)?
                {
                    stacks.push(s);
                }
            }
            if stacks.is_empty() {
                return Err(failure(1, "nothing is deployed: run `production up` first"));
            }
            let format = match format {
                GraphFormat::Mermaid => Format::Mermaid,
                GraphFormat::Dot => Format::Dot,
            };
            let text = graph::render(&stacks, format);
            out.emit("graph", json!({"graph": text}), || print!("{text}"));
            Ok(0)
        }
        Command::Import { address, id } => {
            if target == Target::Aws && !cli.yes {
                confirm(&format!(
                    "Import {id} as {address} and tag it as the platform's"
                ))?;
            }
            let report = platform.import(&address, &id).await?;
            out.emit(
                "import",
                json!({
                    "stack": report.stack,
                    "resource": report.resource,
                    "kind": report.kind,
                    "outputs": report.outputs,
                }),
                || {
                    println!(
                        "imported {id} as {}/{} ({}); `preview` shows what `up` will change",
                        report.stack, report.resource, report.kind
                    );
                },
            );
            Ok(0)
        }
        Command::ForceUnlock { stacks } => {
            force_unlock(&cli, store.as_ref(), &platform, stacks).await
        }
        Command::Emulator { .. } | Command::Init { .. } => Ok(0),
    }
}

/// Shows each held lock of `stacks` (the platform's, when none is named), asks, removes them, and
/// checks that none remains.
async fn force_unlock(
    cli: &Cli,
    store: &dyn StateStore,
    platform: &Platform,
    stacks: Vec<String>,
) -> Result<u8, Failure> {
    let stacks = if stacks.is_empty() {
        platform.stack_names().map(str::to_owned).to_vec()
    } else {
        stacks
    };
    let mut held = Vec::new();
    for stack in &stacks {
        platform_core::state::validate_stack_name(stack)
            .map_err(|e| failure(2, format!("force-unlock: {e}")))?;
        if let Some(info) = store.holder(stack).await.map_err(Error::from)? {
            held.push((stack.clone(), info));
        }
    }
    if !cli.json {
        if held.is_empty() {
            println!("no lock is held on {}", stacks.join(", "));
        }
        for (stack, info) in &held {
            println!("{stack}: locked by {}", info.describe());
        }
    }
    if !held.is_empty() && !cli.yes {
        if !std::io::stdin().is_terminal() {
            return Err(failure(
                2,
                "refusing to remove locks without confirmation: no terminal to ask on; pass --yes",
            ));
        }
        eprint!(
            "Remove these locks? A run that still holds one would have its next write refused. Type yes to go on: "
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        std::io::stdin()
            .read_line(&mut answer)
            .map_err(|e| failure(1, format!("reading the answer: {e}")))?;
        if answer.trim() != "yes" {
            return Err(failure(1, "not confirmed; no lock was removed"));
        }
    }
    let mut removed = Vec::new();
    for (stack, _) in &held {
        if let Some(info) = store.force_unlock(stack).await.map_err(Error::from)? {
            if !cli.json {
                println!("{stack}: lock removed ({})", info.describe());
            }
            removed.push(json!({"stack": stack, "holder": info}));
        }
    }
    let mut remaining = Vec::new();
    for stack in &stacks {
        if let Some(info) = store.holder(stack).await.map_err(Error::from)? {
            remaining.push((stack.clone(), info));
        }
    }
    if cli.json {
        println!(
            "{}",
            json!({
                "command": "force-unlock",
                "removed": removed,
                "remaining": remaining.iter().map(|(s, i)| json!({"stack": s, "holder": i})).collect::<Vec<_>>(),
            })
        );
    }
    match remaining.first() {
        None => Ok(0),
        Some((stack, info)) => Err(failure(
            1,
            format!("the lock of {stack} is held again, by {}", info.describe()),
        )),
    }
}

/// Writes the default config file, refusing to overwrite one unless `force`.
fn init(cli: &Cli, force: bool) -> Result<u8, Failure> {
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from("platform.toml"));
    if path.exists() && !force {
        return Err(failure(
            2,
            format!("{} exists; pass --force to overwrite it", path.display()),
        ));
    }
    std::fs::write(&path, examples::config::template())
        .map_err(|e| failure(1, format!("writing {}: {e}", path.display())))?;
    if cli.json {
        println!("{}", json!({"command": "init", "config": path}));
    } else {
        println!(
            "wrote {}: the seed's values, a comment per key; use it with --config {}",
            path.display(),
            path.display()
        );
    }
    Ok(0)
}

/// Per stack, what drifted: resources gone, and each changed input with its recorded and live value.
fn print_drift(reports: &[RefreshReport]) {
    let drifted: Vec<_> = reports
        .iter()
        .flat_map(|r| r.drift.iter().map(move |d| (&r.plan.stack, d)))
        .collect();
    if drifted.is_empty() {
        println!("no drift: every resource is as recorded");
        if reports.iter().any(|r| r.plan.has_changes()) {
            println!("but the live resources differ from the declared platform: see the plan");
        }
        return;
    }
    println!("drift:");
    for (stack, d) in drifted {
        if d.gone {
            println!(
                "  {stack}/{} ({}): deleted outside the platform",
                d.resource, d.kind
            );
            continue;
        }
        for f in &d.fields {
            println!(
                "  {stack}/{} ({}): {}: recorded {}, live {}",
                d.resource, d.kind, f.field, f.recorded, f.live
            );
        }
    }
}

fn drift_json(reports: &[RefreshReport]) -> Value {
    Value::Array(
        reports
            .iter()
            .flat_map(|r| {
                r.drift.iter().map(move |d| {
                    json!({
                        "stack": r.plan.stack,
                        "resource": d.resource,
                        "kind": d.kind,
                        "gone": d.gone,
                        "fields": d.fields,
                    })
                })
            })
            .collect(),
    )
}

/// The output mode: one JSON object on stdout, or text.
struct Output {
    json: bool,
    target: Target,
}

impl Output {
    fn emit(&self, command: &str, fields: Value, human: impl FnOnce()) {
        if self.json {
            let mut doc = json!({"command": command, "target": self.target.name()});
            if let (Some(d), Value::Object(extra)) = (doc.as_object_mut(), fields) {
                d.extend(extra);
            }
            println!("{doc}");
        } else {
            human();
        }
    }
}

fn plans_json(plans: &[Plan], read: u64, mutating: u64, wall: Duration) -> Value {
    json!({
        "stacks": plans.iter().map(|p| json!({"name": p.stack, "changes": p.counts(), "steps": p.steps})).collect::<Vec<_>>(),
        "totals": total_counts(plans),
        "api_calls": {"read": read, "mutating": mutating},
        "wall_ms": wall.as_millis() as u64,
    })
}

fn sum(counts: impl Iterator<Item = Counts>) -> Counts {
    let mut total = Counts::default();
    for c in counts {
        total.add(&c);
    }
    total
}

fn outputs_json(o: &PlatformOutputs) -> Value {
    json!({
        "iam": o.iam,
        "network": o.network,
        "cluster": o.cluster,
    })
}

fn print_plans(plans: &[Plan]) {
    for p in plans {
        println!("{p}");
    }
}

/// The violations, mandatory first, each with its policy, resource and fix.
fn print_violations(violations: &[Violation]) {
    if violations.is_empty() {
        return;
    }
    println!("policy violations:");
    for v in violations {
        println!("  {v}");
    }
}

/// A mandatory violation stops the run before any change: exit 3.
fn refuse_mandatory(violations: &[Violation]) -> Result<(), Failure> {
    let mandatory: Vec<String> = policy::mandatory(violations)
        .map(ToString::to_string)
        .collect();
    if mandatory.is_empty() {
        return Ok(());
    }
    let mut refused = failure(
        POLICY_EXIT,
        format!(
            "refused by policy, nothing was changed: {} (change the config, or the rule's enforcement in [policy] rules)",
            mandatory.join("; ")
        ),
    );
    refused.violations = policy::mandatory(violations).cloned().collect();
    Err(refused)
}

fn print_summary(t: &Counts, read: u64, mutating: u64, wall: Duration) {
    println!(
        "\n{} created, {} updated, {} replaced, {} deleted, {} unchanged; {} AWS calls ({} mutating); {:.1}s",
        t.create,
        t.update,
        t.replace,
        t.delete,
        t.same,
        read + mutating,
        mutating,
        wall.as_secs_f64()
    );
}

fn print_outputs(o: &PlatformOutputs) {
    let c = &o.cluster;
    let n = &o.network;
    let i = &o.iam;
    println!("\noutputs:");
    println!("  account / region   {} / {}", i.account_id, i.region);
    println!(
        "  cluster            {} ({})",
        c.cluster_name, c.cluster_arn
    );
    for (name, svc) in &c.services {
        println!(
            "  service {name:<10} {} ({})",
            svc.service_name, svc.service_arn
        );
        println!("    task definition  {}", svc.task_definition_arn);
        println!("    log group        {}", svc.log_group_name);
        if let Some(role) = i.service_role_arn(name) {
            println!("    task role        {role}");
        }
    }
    println!("  vpc                {} ({})", n.vpc_id, n.vpc_cidr);
    let subnets: Vec<&str> = n.public_subnet_ids.iter().map(|s| s.as_str()).collect();
    println!(
        "  public subnets     {} in {}",
        subnets.join(", "),
        n.availability_zones.join(", ")
    );
    println!("  security group     {}", n.security_group_id);
}

fn confirm(question: &str) -> Result<(), Failure> {
    if !std::io::stdin().is_terminal() {
        return Err(failure(
            2,
            "refusing to change real AWS without confirmation: no terminal to ask on; pass --yes",
        ));
    }
    eprint!("{question}? Type yes to go on: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| failure(1, format!("reading the answer: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(failure(1, "not confirmed; nothing was changed"))
    }
}

/// The AWS configuration for `target`; for the local target, starts the emulator once and reuses it.
async fn connect(cli: &Cli, target: &Target) -> Result<SdkConfig, Failure> {
    match target {
        Target::Aws => {
            let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .load()
                .await;
            if config.region().is_none() {
                return Err(failure(
                    2,
                    "no AWS region: set AWS_REGION (or a region in your profile) for --aws",
                ));
            }
            Ok(config)
        }
        Target::Endpoint(url) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(failure(
                    2,
                    format!("--endpoint {url:?}: expected an http:// or https:// URL"),
                ));
            }
            Ok(Emulator::at(url).sdk_config())
        }
        Target::Local => {
            let record = emulator_record(&cli.state_dir);
            if let Some(d) = read_record(&record)
                && d.is_alive().await
            {
                return Ok(Emulator::at(&d.endpoint).sdk_config());
            }
            eprintln!(
                "starting a local AWS emulator (kept running; `production emulator stop` removes it)"
            );
            let emulator = Emulator::start()
                .await
                .map_err(|e| failure(1, format!("no local AWS emulator could be started: {e}")))?;
            let detached = emulator.detach();
            std::fs::create_dir_all(&cli.state_dir)
                .and_then(|()| {
                    std::fs::write(
                        &record,
                        serde_json::to_vec_pretty(&detached).unwrap_or_default(),
                    )
                })
                .map_err(|e| {
                    failure(
                        1,
                        format!("recording the emulator in {}: {e}", record.display()),
                    )
                })?;
            eprintln!("local AWS emulator at {}", detached.endpoint);
            Ok(Emulator::at(&detached.endpoint).sdk_config())
        }
    }
}

fn emulator_record(state_dir: &Path) -> PathBuf {
    state_dir.join("emulator.json")
}

fn read_record(path: &Path) -> Option<Detached> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn stop_emulator(cli: &Cli) -> Result<u8, Failure> {
    let record = emulator_record(&cli.state_dir);
    let Some(d) = read_record(&record) else {
        if !cli.json {
            println!("no local emulator recorded in {}", cli.state_dir.display());
        } else {
            println!("{}", json!({"command": "emulator stop", "stopped": false}));
        }
        return Ok(0);
    };
    d.stop()
        .map_err(|e| failure(1, format!("stopping the emulator: {e}")))?;
    std::fs::remove_file(&record)
        .map_err(|e| failure(1, format!("removing {}: {e}", record.display())))?;
    // Local state describes resources that went with the emulator.
    if let Ok(entries) = std::fs::read_dir(&cli.state_dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with("local-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    if cli.json {
        println!(
            "{}",
            json!({"command": "emulator stop", "stopped": true, "endpoint": d.endpoint})
        );
    } else {
        println!(
            "stopped the local emulator at {} and removed its local state",
            d.endpoint
        );
    }
    Ok(0)
}

/// Live progress: one line per resource with its state and elapsed time, and an overall bar when
/// stderr is a terminal; plain lines otherwise. In JSON mode, lines go to stderr.
#[derive(Clone)]
struct Reporter {
    inner: Arc<Mutex<ReporterState>>,
}

struct ReporterState {
    bar: Option<ProgressBar>,
    json: bool,
    tty: bool,
}

impl Reporter {
    fn new(json: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        Self {
            inner: Arc::new(Mutex::new(ReporterState {
                bar: None,
                json,
                tty,
            })),
        }
    }

    fn start(&self, total: usize) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if s.tty {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            s.bar = Some(bar);
        }
    }

    fn finish(&self) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = s.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn line(&self, text: String) {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match &s.bar {
            Some(bar) => bar.println(text),
            None if s.json => eprintln!("{text}"),
            None => println!("{text}"),
        }
    }

    fn event(&self, e: &Event) {
        let verb = |a: &ActionKind| match a {
            ActionKind::Create => "creating",
            ActionKind::Update => "updating",
            ActionKind::Replace => "replacing",
            ActionKind::Delete => "deleting",
            ActionKind::Same => "checking",
            _ => "applying",
        };
        let done = |a: &ActionKind| match a {
            ActionKind::Create => "created",
            ActionKind::Update => "updated",
            ActionKind::Replace => "replaced",
            ActionKind::Delete => "deleted",
            ActionKind::Same => "unchanged",
            _ => "applied",
        };
        match e {
            Event::Started {
                stack,
                resource,
                action,
            } => {
                let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(bar) = &s.bar {
                    bar.set_message(format!("{} {stack}/{resource}", verb(action)));
                }
            }
            Event::Done {
                stack,
                resource,
                action,
                elapsed,
            } => {
                self.line(format!(
                    "  {:<9} {stack}/{resource} ({:.1}s)",
                    done(action),
                    elapsed.as_secs_f64()
                ));
                let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(bar) = &s.bar {
                    bar.inc(1);
                }
            }
            Event::Failed {
                stack,
                resource,
                action,
                error,
            } => self.line(format!("  FAILED    {stack}/{resource} while {}: {error}", verb(action))),
            Event::Retrying {
                stack,
                resource,
                operation,
                attempt,
                delay,
                code,
            } => self.line(format!(
                "  retrying  {stack}/{resource} {operation} (attempt {attempt} failed with {}; next in {:.1}s)",
                code.as_deref().unwrap_or("an error"),
                delay.as_secs_f64()
            )),
            Event::Progress {
                stack,
                resource,
                message,
            } => self.line(format!("  ...       {stack}/{resource}: {message}")),
            Event::LockWait {
                stack,
                holder,
                timeout,
            } => self.line(format!(
                "  waiting   for the lock of stack {stack}, held by {holder} (up to {})",
                humantime::format_duration(*timeout)
            )),
            _ => {}
        }
    }
}

/// The engine's call timeouts for `--call-timeout`: that long per call, and an answer's start
/// within the default read timeout or the call's own, whichever is shorter.
fn call_timeouts(operation: Option<Duration>) -> CallTimeouts {
    let default = CallTimeouts::default();
    match operation {
        Some(op) => CallTimeouts::new(default.read.min(op), op),
        None => default,
    }
}
