//! Building an [`Engine`]: the AWS configuration, limits, retries, extensions, subscribers.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_types::SdkConfig;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::events::{CallRecorder, Event, EventSink, Subscriber};
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
    /// [`StateError::Locked`](crate::StateError::Locked) (default: not at all). While waiting, an
    /// [`Event::LockWait`] says who holds it.
    #[must_use]
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Builds the engine.
    pub fn build(self) -> Engine {
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
                identity: OnceCell::new(),
            }),
            concurrency: self.concurrency,
            limits,
            cancel: self.cancel,
            lock_timeout: self.lock_timeout,
        }
    }
}
