//! Building an [`Engine`]: the AWS configuration, limits, retries, extensions, subscribers.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_types::SdkConfig;
use aws_types::sdk_config::TimeoutConfig;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::events::{CallRecorder, Event, EventSink, Subscriber};
use crate::policy::Policies;
use crate::provider::IdentitySource;
use crate::resource::{RetryPolicy, Shared};
use crate::state::StateStore;
use crate::types::ProviderInfo;

use super::Engine;
use super::limits::Limits;

/// Builds an [`Engine`].
pub struct EngineBuilder {
    pub(super) store: Arc<dyn StateStore>,
    pub(super) sdk_config: Option<SdkConfig>,
    pub(super) identity: Option<IdentitySource>,
    pub(super) interceptors: Vec<SharedInterceptor>,
    pub(super) extensions: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    pub(super) subscribers: Vec<Subscriber>,
    pub(super) concurrency: usize,
    pub(super) service_limits: HashMap<String, usize>,
    pub(super) default_service_limit: usize,
    pub(super) retry: RetryPolicy,
    pub(super) cancel: CancellationToken,
    pub(super) lock_timeout: Duration,
    pub(super) settle_window: Duration,
    pub(super) call_timeouts: CallTimeouts,
    pub(super) policies: Policies,
    pub(super) environment: Option<String>,
}

/// How long one AWS call may take before the engine gives up on it: a call that never answers
/// must not hold a run forever. A create that times out is an unknown outcome: it is settled by
/// looking for what it made, never sent again blindly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallTimeouts {
    /// How long to wait for the first byte of an answer once the request is sent (default 30 s).
    pub read: Duration,
    /// How long one whole operation may take, its retries by the SDK included (default 60 s).
    pub operation: Duration,
}

impl Default for CallTimeouts {
    fn default() -> Self {
        Self {
            read: Duration::from_secs(30),
            operation: Duration::from_secs(60),
        }
    }
}

impl CallTimeouts {
    /// Timeouts of `read` for an answer's first byte and `operation` for a whole call.
    pub fn new(read: Duration, operation: Duration) -> Self {
        Self { read, operation }
    }

    /// `config` with these timeouts (its connect timeout, and any other it sets, kept).
    pub(crate) fn apply_to(self, config: &SdkConfig) -> SdkConfig {
        let ours = TimeoutConfig::builder()
            .read_timeout(self.read)
            .operation_timeout(self.operation);
        let merged = match config.timeout_config() {
            Some(theirs) => ours.take_unset_from(theirs.to_builder()),
            None => ours,
        };
        config.to_builder().timeout_config(merged.build()).build()
    }
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("store", &self.store)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Uses this AWS configuration for every client, and STS for the current account.
    /// Build it once at the entry point; an emulator is only an endpoint URL and test credentials.
    #[must_use]
    pub fn aws(mut self, config: SdkConfig) -> Self {
        self.identity = Some(IdentitySource::Aws(Box::new(config.clone())));
        self.sdk_config = Some(config);
        self
    }

    /// Fixes the account and region instead of asking STS: for fakes and tests, or when the caller
    /// has already resolved the identity these credentials belong to.
    #[must_use]
    pub fn provider(mut self, provider: ProviderInfo) -> Self {
        self.identity = Some(IdentitySource::Fixed(provider));

        self
    }

    /// Adds an SDK interceptor to every client the engine's resources build.
    #[must_use]
    pub fn interceptor(mut self, interceptor: impl Intercept + 'static) -> Self {
        self.interceptors.push(SharedInterceptor::new(interceptor));
        self
    }

    /// Makes `value` available to resources through [`Context::extension`](crate::Context::extension).
    #[must_use]
    pub fn extension<T: Send + Sync + 'static>(mut self, value: T) -> Self {
        self.extensions.insert(TypeId::of::<T>(), Arc::new(value));
        self
    }

    /// Calls `f` with every [`Event`].
    #[must_use]
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.subscribers.push(Arc::new(f));
        self
    }

    /// At most `n` resource operations at once (default 16).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// At most `n` operations at once on AWS service `service` (e.g. `iam`).
    #[must_use]
    pub fn service_limit(mut self, service: impl Into<String>, n: usize) -> Self {
        self.service_limits.insert(service.into(), n.max(1));
        self
    }

    /// At most `n` operations at once on any one service without its own limit (default 8).
    #[must_use]
    pub fn default_service_limit(mut self, n: usize) -> Self {
        self.default_service_limit = n.max(1);
        self
    }

    /// How retryable errors are retried.
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Cancelling `token` stops starting new operations; those in flight finish and are recorded, and
    /// the run ends with [`Error::Cancelled`](crate::Error::Cancelled). Wire Ctrl-C to it.
    #[must_use]
    pub fn cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// How long to wait for a stack's lock held by someone else before failing with
    /// [`StateError::Locked`](crate::error::StateError::Locked) (default: not at all). While waiting, an
    /// [`Event::LockWait`] says who holds it.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How long the next run looks for the instance of a create that was interrupted (the process
    /// killed, the answer lost) before it creates one, counted from the interrupted create's intent
    /// (default [`DEFAULT_SETTLE_WINDOW`](crate::engine::DEFAULT_SETTLE_WINDOW), 2 minutes). AWS may show a
    /// new resource to its list and describe calls late, and may carry out a request after its
    /// sender died: an instance that appears within the window is adopted, not made twice. A run
    /// that starts after the window has passed looks once. Shorter windows are for emulators.
    #[must_use]
    pub fn settle_window(mut self, window: Duration) -> Self {
        self.settle_window = window;
        self
    }

    /// How long one AWS call of the engine's clients may take (default [`CallTimeouts::default`]:
    /// 30 s for an answer to start, 60 s for a whole call). Applied to the configuration given to
    /// [`aws`](Self::aws), whichever order the two are called in.
    #[must_use]
    pub fn call_timeouts(mut self, timeouts: CallTimeouts) -> Self {
        self.call_timeouts = timeouts;
        self
    }

    /// Every run's plan is checked against `policies` before any change (see
    /// [`policy`](crate::policy)); a run's [`UpOptions::with_policies`](crate::UpOptions::with_policies)
    /// replaces them. None by default.
    #[must_use]
    pub fn policies(mut self, policies: Policies) -> Self {
        self.policies = policies;
        self
    }

    /// The environment (`staging`, `production`) recorded in every stack state an `up` of this
    /// engine writes, so that a store shared by several environments says which stack is whose.
    #[must_use]
    pub fn environment(mut self, name: impl Into<String>) -> Self {
        self.environment = Some(name.into());
        self
    }

    /// Builds the engine.
    pub fn build(mut self) -> Engine {
        let timeouts = self.call_timeouts;
        self.sdk_config = self.sdk_config.map(|c| timeouts.apply_to(&c));
        if let Some(IdentitySource::Aws(config)) = &mut self.identity {
            **config = timeouts.apply_to(config);
        }
        let limits = Limits::new(
            self.concurrency,
            &self.service_limits,
            self.default_service_limit,
        );
        let events = EventSink::new(self.subscribers);
        let mut interceptors = vec![SharedInterceptor::new(CallRecorder::new(events.clone()))];
        interceptors.extend(self.interceptors);
        Engine {
            store: self.store,
            identity: self.identity,
            shared: Arc::new(Shared {
                sdk_config: self.sdk_config,
                interceptors,
                extensions: self.extensions,
                clients: Mutex::default(),
                events,
                retry: self.retry,
                settle_window: self.settle_window,
                identity: OnceCell::new(),
            }),
            concurrency: self.concurrency,
            limits,
            cancel: self.cancel,
            lock_timeout: self.lock_timeout,
            policies: self.policies,
            environment: self.environment,
        }
    }
}
