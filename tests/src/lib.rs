//! # local-cloud
//!
//! The local cloud for tests and the example: an AWS emulator acquired the best way this machine allows,
//! per-test AWS accounts, and a recording, fault-injecting proxy.
//!
//! ```no_run
//! # async fn f() -> Result<(), local_cloud::HarnessError> {
//! let emulator = local_cloud::Emulator::start().await?;
//! let config = emulator.isolated(); // an SdkConfig in an account of this test's own
//! let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
//! # Ok(()) }
//! ```
//!
//! How an emulator is acquired, in order:
//! 1. `AWS_ENDPOINT_URL` is set: that endpoint, as is (an emulator you already run).
//! 2. A Docker daemon answers: testcontainers starts `motoserver/moto:5.2.5` (or LocalStack with
//!    `PLATFORM_EMULATOR=localstack`). With no registry, build the image with
//!    `scripts/build-emulator-image.sh`.
//! 3. No Docker: a `moto_server` process from a Python venv created under `target/` on first use.
//!
//! If none works the error says what to install. Tests never skip: no emulator is a failure.

mod account;
mod cloud;
mod emulator;
mod error;
mod proxy;

pub use account::{ACCOUNT_HEADER, AccountHeaderClient};
pub use cloud::TestCloud;
pub use emulator::{
    Backend, DEFAULT_ACCOUNT, Detached, Emulator, EmulatorOptions, Flavor, MOTO_IMAGE,
    MOTO_VERSION, REGION, target_dir,
};
pub use error::HarnessError;
pub use proxy::{Call, Fault, Proxy, Rewriter, Rule, XmlRewriter};
