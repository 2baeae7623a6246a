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
    Engine, Error, Event, LocalStateStore, Plan, S3StateStore, StateStore, UpOptions,
    engine::Approval, engine::Approver, engine::CallTimeouts, engine::DEFAULT_SETTLE_WINDOW,
    engine::RefreshReport, engine::total_counts, error::StateError, plan::ActionKind, plan::Counts,
    resource::CancellationToken,
};
use serde_json::{Value, json};

use crate::connect::*;
use crate::output::*;
use crate::progress::*;

mod commands;
mod connect;
mod output;
mod progress;

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

/// What every command after the setup gets: the checked config applied to the platform, its
/// engine, the state store, and where output goes.
pub(crate) struct Session {
    pub(crate) cli: Cli,
    pub(crate) target: Target,
    pub(crate) platform: Platform,
    pub(crate) store: Arc<dyn StateStore>,
    pub(crate) out: Output,
    pub(crate) progress: Reporter,
    pub(crate) started: Instant,
    /// The config file as written (every environment), for `preview --against`.
    pub(crate) written: Option<(PathBuf, PlatformConfig)>,
    /// A new engine on the same store, provider and options (for another environment's platform).
    pub(crate) engine: Box<dyn Fn() -> Engine>,
}

/// Sets up what the command needs (the config and policies checked first: exit 2 before any AWS
/// call), then runs it.
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
        return commands::init::init(&cli, force);
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
    let engine = {
        let (store, progress, identity) = (store.clone(), progress.clone(), identity.clone());
        let (lock_timeout, env) = (cli.lock_timeout.unwrap_or_default(), cli.env.clone());
        let (timeouts, settle) = (call_timeouts(cli.call_timeout), cli.settle_window);
        move || {
            let sink = progress.clone();
            Engine::builder_shared(store.clone())
                .aws(config.clone())
                // Already asked once, above: the same credentials, no second STS call.
                .provider(identity.clone())
                .cancellation(cancel.clone())
                .lock_timeout(lock_timeout)
                .call_timeouts(timeouts)
                .settle_window(settle.unwrap_or(DEFAULT_SETTLE_WINDOW))
                .environment(env.clone())
                .on_event(move |e| sink.event(e))
                .build()
        }
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

    let mut session = Session {
        cli,
        target,
        platform,
        store,
        out,
        progress,
        started,
        written,
        engine: Box::new(engine),
    };
    let session = &mut session;
    match command {
        Command::Up { refresh } => commands::up::run(session, refresh).await,
        Command::Preview {
            detailed_exitcode,
            against: Some(other),
            ..
        } => commands::preview::against(session, detailed_exitcode, other).await,
        Command::Preview {
            detailed_exitcode,
            refresh,
            format,
            against: None,
        } => commands::preview::run(session, detailed_exitcode, refresh, format).await,
        Command::Envs => commands::envs::run(session).await,
        Command::Refresh { detailed_exitcode } => {
            commands::refresh::run(session, detailed_exitcode).await
        }
        Command::Destroy => commands::destroy::run(session).await,
        Command::Outputs => commands::outputs::run(session).await,
        Command::Graph { format } => commands::graph::run(session, format).await,
        Command::Import { address, id } => commands::import::run(session, address, id).await,
        Command::ForceUnlock { stacks } => {
            let Session {
                cli,
                store,
                platform,
                ..
            } = session;
            commands::unlock::force_unlock(cli, store.as_ref(), platform, stacks).await
        }
        Command::Emulator { .. } | Command::Init { .. } => Ok(0),
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
