//! Acquiring an AWS emulator: an endpoint you run, a container through testcontainers, or a local
//! `moto_server` process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_types::SdkConfig;
use testcontainers_modules::localstack::LocalStack;
use testcontainers_modules::testcontainers::core::{ContainerPort, WaitFor};
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{
    ContainerAsync, GenericImage, Image, ImageExt, TestcontainersError,
};

use crate::account::AccountHeaderClient;
use crate::error::HarnessError;

/// The moto version the harness runs, as an image tag and as a PyPI pin. Keep in step with
/// `scripts/build-emulator-image.sh`.
pub const MOTO_VERSION: &str = "5.2.5";
/// The moto image the harness asks Docker for.
pub const MOTO_IMAGE: &str = "motoserver/moto";
/// The region every emulator config uses.
pub const REGION: &str = "us-east-1";
/// moto's default account (it has a default VPC: filter by tag, never take "the only VPC").
pub const DEFAULT_ACCOUNT: &str = "123456789012";

/// Which emulator to run (`PLATFORM_EMULATOR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// moto: IAM, EC2, ECS, CloudWatch Logs, STS. The default.
    Moto,
    /// LocalStack (Pro when `LOCALSTACK_AUTH_TOKEN` is set; community has no ECS).
    LocalStack,
}

/// How the emulator was acquired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `AWS_ENDPOINT_URL` pointed at an emulator the user runs.
    Endpoint,
    /// A container started through testcontainers.
    Docker,
    /// A `moto_server` process from the harness's Python venv (no Docker daemon).
    Process,
}

/// Where to get an emulator from, in order. Default: the environment decides (see [`Emulator::start`]).
#[derive(Clone, Debug, Default)]
pub struct EmulatorOptions {
    force: Option<Backend>,
    flavor: Option<Flavor>,
}

impl EmulatorOptions {
    /// Only this backend, no fallback (tests of one acquisition path).
    #[must_use]
    pub fn only(mut self, backend: Backend) -> Self {
        self.force = Some(backend);
        self
    }

    /// This emulator flavor instead of `PLATFORM_EMULATOR`.
    #[must_use]
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = Some(flavor);
        self
    }
}

/// What the emulator handle owns; dropping it stops the container or the process.
enum Guard {
    None,
    Moto(Container<GenericImage>),
    LocalStack(Container<LocalStack>),
    Process(tokio::process::Child),
}

/// A container the harness started, removed when dropped from a thread and a runtime of its own.
/// testcontainers removes a dropped container by blocking on the current runtime; when that runtime
/// is shutting down (the last handle held by a task it cancels, as when a test's task panics) the
/// removal never returns and the test binary hangs instead of reporting the failure.
struct Container<I: Image>(Option<Box<ContainerAsync<I>>>);

impl<I: Image + 'static> Container<I> {
    fn new(container: ContainerAsync<I>) -> Self {
        Self(Some(Box::new(container)))
    }

    /// Leaves the container running; returns its id.
    fn release(mut self) -> String {
        let container = self
            .0
            .take()
            .expect("a container is held until dropped or released");
        let id = container.id().to_owned();
        // Released on purpose: its Drop would remove the container.
        std::mem::forget(container);
        id
    }
}

impl<I: Image> Drop for Container<I> {
    fn drop(&mut self) {
        let Some(container) = self.0.take() else {
            return;
        };
        let removal = std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime.block_on(async move { drop(container) });
                    Ok::<(), std::io::Error>(())
                })
                .join()
        });
        if let Ok(Err(e)) = removal {
            eprintln!("local-cloud: the emulator's container could not be removed: {e}");
        }
    }
}

/// A running AWS emulator. Dropping it stops what the harness started (container, process).
pub struct Emulator {
    endpoint: String,
    backend: Backend,
    flavor: Flavor,
    ecs: bool,
    _guard: Guard,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("endpoint", &self.endpoint)
            .field("backend", &self.backend)
            .field("flavor", &self.flavor)
            .finish()
    }
}

fn flavor_from_env() -> Result<Flavor, HarnessError> {
    match std::env::var("PLATFORM_EMULATOR").as_deref() {
        Err(_) | Ok("") | Ok("moto") => Ok(Flavor::Moto),
        Ok("localstack") => Ok(Flavor::LocalStack),
        Ok(other) => Err(HarnessError::BadSetting {
            name: "PLATFORM_EMULATOR",
            value: other.to_owned(),
            expected: "moto or localstack",
        }),
    }
}

impl Emulator {
    /// Acquires an emulator, in this order:
    /// 1. `AWS_ENDPOINT_URL` set: that endpoint, as is.
    /// 2. A Docker daemon answers: the emulator in a container (`PLATFORM_EMULATOR=moto`, the default:
    ///    `motoserver/moto` at [`MOTO_VERSION`]; `localstack`: LocalStack, Pro with `LOCALSTACK_AUTH_TOKEN`).
    /// 3. No Docker: a `moto_server` process from a venv the harness creates under `target/` (said on
    ///    stderr, with the reason).
    ///
    /// # Errors
    /// [`HarnessError::Unavailable`] when none is possible, saying what to install.
    pub async fn start() -> Result<Self, HarnessError> {
        Self::start_with(EmulatorOptions::default()).await
    }

    /// Acquires an emulator as [`start`](Self::start) does, with options.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub async fn start_with(options: EmulatorOptions) -> Result<Self, HarnessError> {
        let flavor = match options.flavor {
            Some(f) => f,
            None => flavor_from_env()?,
        };
        let env_endpoint = std::env::var("AWS_ENDPOINT_URL")
            .ok()
            .filter(|s| !s.is_empty());
        match options.force {
            Some(Backend::Endpoint) => {
                let endpoint = env_endpoint.ok_or(HarnessError::BadSetting {
                    name: "AWS_ENDPOINT_URL",
                    value: String::new(),
                    expected: "the URL of a running emulator",
                })?;
                return Ok(Self::endpoint(endpoint, flavor));
            }
            Some(Backend::Docker) => return Self::docker(flavor).await,
            Some(Backend::Process) => return Self::process().await,
            None => {}
        }
        if let Some(endpoint) = env_endpoint {
            return Ok(Self::endpoint(endpoint, flavor));
        }
        let docker_err = match Self::docker(flavor).await {
            Ok(e) => return Ok(e),
            Err(HarnessError::NoDocker { reason }) => reason,
            Err(e) => return Err(e),
        };
        if flavor == Flavor::LocalStack {
            return Err(HarnessError::Unavailable {
                details: format!(
                    "PLATFORM_EMULATOR=localstack needs Docker, which is not reachable ({docker_err})"
                ),
            });
        }
        eprintln!(
            "local-cloud: no Docker daemon ({docker_err}); falling back to a moto_server {MOTO_VERSION} process"
        );
        match Self::process().await {
            Ok(e) => Ok(e),
            Err(e) => Err(HarnessError::Unavailable {
                details: format!("Docker: {docker_err}; moto_server fallback: {e}"),
            }),
        }
    }

    fn endpoint(endpoint: String, flavor: Flavor) -> Self {
        Self {
            endpoint,
            backend: Backend::Endpoint,
            flavor,
            ecs: flavor == Flavor::Moto,
            _guard: Guard::None,
        }
    }

    async fn docker(flavor: Flavor) -> Result<Self, HarnessError> {
        let classify = |e: TestcontainersError| match e {
            TestcontainersError::Client(c) => HarnessError::NoDocker {
                reason: c.to_string(),
            },
            other => HarnessError::Container(Box::new(other)),
        };
        match flavor {
            Flavor::Moto => {
                let container = GenericImage::new(MOTO_IMAGE, MOTO_VERSION)
                    .with_exposed_port(ContainerPort::Tcp(5000))
                    .with_wait_for(WaitFor::message_on_stderr("Running on"))
                    .with_env_var("MOTO_ECS_SERVICE_RUNNING", "1")
                    .with_env_var("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                    .with_startup_timeout(Duration::from_secs(60))
                    .start()
                    .await
                    .map_err(classify)?;
                let host = container.get_host().await.map_err(classify)?;
                let port = container
                    .get_host_port_ipv4(ContainerPort::Tcp(5000))
                    .await
                    .map_err(classify)?;
                Ok(Self {
                    endpoint: format!("http://{host}:{port}"),
                    backend: Backend::Docker,
                    flavor,
                    ecs: true,
                    _guard: Guard::Moto(Container::new(container)),
                })
            }
            Flavor::LocalStack => {
                let token = std::env::var("LOCALSTACK_AUTH_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty());
                let mut request =
                    LocalStack::default().with_env_var("SERVICES", "iam,ec2,ecs,logs,sts");
                if let Some(t) = &token {
                    request = request.with_env_var("LOCALSTACK_AUTH_TOKEN", t.clone());
                }
                let container = request.start().await.map_err(classify)?;
                let host = container.get_host().await.map_err(classify)?;
                let port = container
                    .get_host_port_ipv4(ContainerPort::Tcp(4566))
                    .await
                    .map_err(classify)?;
                Ok(Self {
                    endpoint: format!("http://{host}:{port}"),
                    backend: Backend::Docker,
                    flavor,
                    ecs: token.is_some(),
                    _guard: Guard::LocalStack(Container::new(container)),
                })
            }
        }
    }

    async fn process() -> Result<Self, HarnessError> {
        let venv = ensure_venv().await?;
        let port = free_port()?;
        let child = tokio::process::Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ECS_SERVICE_RUNNING", "1")
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C meant for the command that started it (or for a later
            // one, once detached) does not reach it.
            .process_group(0)
            .spawn()
            .map_err(|e| HarnessError::Process {
                what: format!("starting {}", venv.join("bin/moto_server").display()),
                source: e,
            })?;
        let endpoint = format!("http://127.0.0.1:{port}");
        // Generous: a loaded 2-core machine has taken over 30 s to start moto_server.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Unavailable {
                    details: format!("moto_server did not listen on {endpoint} within 120 s"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            endpoint,
            backend: Backend::Process,
            flavor: Flavor::Moto,
            ecs: true,
            _guard: Guard::Process(child),
        })
    }

    /// An emulator already running at `endpoint` (moto), e.g. one [`detach`](Self::detach)ed by an
    /// earlier process. Dropping it stops nothing.
    pub fn at(endpoint: &str) -> Self {
        Self::endpoint(endpoint.to_owned(), Flavor::Moto)
    }

    /// Leaves the emulator running after this value (and this process) is gone, for a later process
    /// to use through [`Emulator::at`]; [`Detached::stop`] stops it. What the harness would have
    /// stopped on drop (container, process) is released instead.
    pub fn detach(self) -> Detached {
        let Self {
            endpoint, _guard, ..
        } = self;
        let (container_id, pid) = match _guard {
            Guard::None => (None, None),
            Guard::Moto(c) => (Some(c.release()), None),
            Guard::LocalStack(c) => (Some(c.release()), None),
            Guard::Process(child) => {
                let pid = child.id();
                // Released on purpose: kill_on_drop would stop it.
                std::mem::forget(child);
                (None, pid)
            }
        };
        Detached {
            endpoint,
            container_id,
            pid,
        }
    }

    /// The endpoint URL.
    pub fn endpoint_url(&self) -> &str {
        &self.endpoint
    }

    /// How the emulator was acquired.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Which emulator it is.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Fails with an explanation when the emulator cannot serve ECS (LocalStack community).
    ///
    /// # Errors
    /// [`HarnessError::NoEcs`].
    pub fn require_ecs(&self) -> Result<(), HarnessError> {
        if self.ecs {
            Ok(())
        } else {
            Err(HarnessError::NoEcs)
        }
    }

    /// An `SdkConfig` for the emulator's default account.
    pub fn sdk_config(&self) -> SdkConfig {
        self.config_for(None)
    }

    /// An `SdkConfig` for a fresh AWS account of its own (moto's `x-moto-account-id` header), so that
    /// tests sharing one emulator never see each other's resources. On LocalStack, the default account.
    pub fn isolated(&self) -> SdkConfig {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        if self.flavor != Flavor::Moto {
            return self.config_for(None);
        }
        let seed = u64::from(std::process::id()) * 1_000 + NEXT.fetch_add(1, Ordering::SeqCst);
        let account = format!("{:012}", 100_000_000_000 + seed % 900_000_000_000);
        self.config_for(Some(account))
    }

    /// An `SdkConfig` for account `account_id` (12 digits) on moto.
    pub fn account(&self, account_id: &str) -> SdkConfig {
        self.config_for(Some(account_id.to_owned()))
    }

    fn config_for(&self, account: Option<String>) -> SdkConfig {
        let mut b =
            SdkConfig::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new(REGION))
                .endpoint_url(&self.endpoint)
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(
                        Credentials::new("test", "test", None, None, "local-cloud"),
                    ),
                );
        let http = crate::account::http_client(!self.endpoint.starts_with("http://"));
        b = match account {
            Some(account) => b.http_client(AccountHeaderClient::over(http, account)),
            None => b.http_client(http),
        };
        b.build()
    }
}

/// An emulator that outlives the process that started it ([`Emulator::detach`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Detached {
    /// Its endpoint URL.
    pub endpoint: String,
    /// The Docker container it runs in, if any.
    pub container_id: Option<String>,
    /// The `moto_server` process, if any.
    pub pid: Option<u32>,
}

impl Detached {
    /// Whether it still answers on its endpoint.
    pub async fn is_alive(&self) -> bool {
        let Some(addr) = self
            .endpoint
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'))
        else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                .await,
            Ok(Ok(_))
        )
    }

    /// Stops it: removes its container (`docker rm -f`) or ends its process (`kill`).
    ///
    /// # Errors
    /// When the command to stop it fails for another reason than it being gone already.
    pub fn stop(&self) -> Result<(), HarnessError> {
        let mut cmd = if let Some(id) = &self.container_id {
            let mut c = std::process::Command::new("docker");
            c.args(["rm", "-f", id]);
            c
        } else if let Some(pid) = self.pid {
            let mut c = std::process::Command::new("kill");
            c.arg(pid.to_string());
            c
        } else {
            return Ok(());
        };
        let out = cmd.output().map_err(|e| HarnessError::Process {
            what: format!("{cmd:?}"),
            source: e,
        })?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let gone = stderr.contains("No such container") || stderr.contains("No such process");
        if out.status.success() || gone {
            Ok(())
        } else {
            Err(HarnessError::Unavailable {
                details: format!("{cmd:?} failed: {}", stderr.trim()),
            })
        }
    }
}

/// A loopback port that is free now.
fn free_port() -> Result<u16, HarnessError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| HarnessError::Process {
        what: "finding a free port".into(),
        source: e,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| HarnessError::Process {
            what: "finding a free port".into(),
            source: e,
        })
}

/// The workspace's target directory (`CARGO_TARGET_DIR`, else `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."))
                .join("target")
        })
}

/// Creates (once, under a file lock) the venv with `moto[server]==MOTO_VERSION`; returns its path.
/// `PLATFORM_MOTO_VENV` names an existing venv to use instead.
async fn ensure_venv() -> Result<PathBuf, HarnessError> {
    if let Some(v) = std::env::var_os("PLATFORM_MOTO_VENV") {
        return Ok(PathBuf::from(v));
    }
    let dir = target_dir().join(format!("moto-venv-{MOTO_VERSION}"));
    let marker = dir.join(".complete");
    if marker.exists() {
        return Ok(dir);
    }
    let parent = target_dir();
    tokio::task::spawn_blocking(move || -> Result<PathBuf, HarnessError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |e| HarnessError::Process { what, source: e }
        };
        std::fs::create_dir_all(&parent).map_err(io("creating the target directory"))?;
        let lock = std::fs::File::create(parent.join(format!("moto-venv-{MOTO_VERSION}.lock")))
            .map_err(io("creating the venv lock"))?;
        lock.lock().map_err(io("locking the venv"))?;
        if marker.exists() {
            return Ok(dir);
        }
        eprintln!(
            "local-cloud: creating a Python venv with moto[server]=={MOTO_VERSION} in {} (once; about a minute)",
            dir.display()
        );
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        run(std::process::Command::new(&python).args(["-m", "venv"]).arg(&dir))?;
        run(std::process::Command::new(dir.join("bin/pip"))
            .args(["install", "--quiet"])
            .arg(format!("moto[server]=={MOTO_VERSION}")))?;
        std::fs::write(&marker, MOTO_VERSION).map_err(io("marking the venv complete"))?;
        Ok(dir)
    })
    .await
    .map_err(|e| HarnessError::Unavailable {
        details: format!("venv task failed: {e}"),
    })?
}

fn run(cmd: &mut std::process::Command) -> Result<(), HarnessError> {
    let what = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| HarnessError::Process {
        what: what.clone(),
        source: e,
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(HarnessError::Unavailable {
            details: format!(
                "{what} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}
