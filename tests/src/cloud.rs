//! What a stack's test needs in one value: an emulator, a recording proxy in front of it, and an AWS
//! config for an account of the test's own that goes through the proxy.

use aws_types::SdkConfig;

use crate::emulator::Emulator;
use crate::error::HarnessError;
use crate::proxy::Proxy;

/// An emulator, a recording proxy in front of it, and a config for a fresh account through the proxy.
///
/// ```no_run
/// # async fn f() -> Result<(), local_cloud::HarnessError> {
/// let cloud = local_cloud::TestCloud::start().await?;
/// let logs = aws_sdk_cloudwatchlogs::Client::new(&cloud.config);
/// // ... apply a stack with an engine built on `cloud.config` ...
/// assert!(cloud.mutating_calls().is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestCloud {
    /// The emulator (stopped when this is dropped).
    pub emulator: Emulator,
    /// The proxy every call of `config` goes through.
    pub proxy: Proxy,
    /// Credentials, region and endpoint for an account of this test's own, through the proxy.
    pub config: SdkConfig,
}

impl TestCloud {
    /// Starts (or joins) an emulator, a proxy in front of it, and makes a fresh account.
    ///
    /// # Errors
    /// When no emulator can be had ([`HarnessError`] says what to install) or the proxy cannot bind.
    pub async fn start() -> Result<Self, HarnessError> {
        let emulator = Emulator::start().await?;
        let proxy = Proxy::start(emulator.endpoint_url()).await?;
        let config = proxy.wrap(&emulator.isolated());
        Ok(Self {
            emulator,
            proxy,
            config,
        })
    }

    /// The operations of every call recorded since the last [`clear`](Self::clear), in order.
    pub fn operations(&self) -> Vec<String> {
        self.proxy
            .calls()
            .into_iter()
            .map(|c| c.operation)
            .collect()
    }

    /// The mutating operations among them (anything but `Describe*`, `Get*`, `List*`, ...).
    pub fn mutating_calls(&self) -> Vec<String> {
        self.operations()
            .into_iter()
            .filter(|op| !platform_core::events::is_read_operation(op))
            .collect()
    }

    /// Forgets the recorded calls.
    pub fn clear(&self) {
        self.proxy.clear_calls();
    }
}
