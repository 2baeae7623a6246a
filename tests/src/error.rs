//! The harness's errors.

/// Why no emulator (or proxy) could be had.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// No emulator could be started by any path.
    #[error(
        "no AWS emulator available: {details}.\nTo fix, do one of: set AWS_ENDPOINT_URL to a running emulator; \
install and start Docker (Debian: apt-get install docker.io && dockerd &) and build the image with \
scripts/build-emulator-image.sh if no registry is reachable; or install python3 with venv and pip \
(Debian: apt-get install python3-venv) so the harness can run moto_server itself"
    )]
    Unavailable {
        /// What was tried and how it failed.
        details: String,
    },
    /// The Docker daemon cannot be reached (testcontainers' client error).
    #[error("Docker is not reachable: {reason}")]
    NoDocker {
        /// testcontainers' error.
        reason: String,
    },
    /// Docker answered, but the container failed.
    #[error("the emulator container failed: {0}")]
    Container(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A process (python, pip, moto_server) could not be run.
    #[error("{what}: {source}")]
    Process {
        /// What was being run.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An environment setting has a value the harness does not understand.
    #[error("{name}={value:?} is not understood; expected {expected}")]
    BadSetting {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it may be.
        expected: &'static str,
    },
    /// The emulator cannot serve ECS.
    #[error(
        "this emulator cannot serve ECS: LocalStack's community edition answers every ECS call with \
'not included in your current license plan'. Use moto (PLATFORM_EMULATOR=moto, the default) or set \
LOCALSTACK_AUTH_TOKEN for LocalStack Pro"
    )]
    NoEcs,
    /// The proxy could not bind or forward.
    #[error("proxy: {0}")]
    Proxy(#[source] std::io::Error),
}
