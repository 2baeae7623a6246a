//! How a resource sends its AWS calls: [`Context::call`] with a policy that says whether the call
//! may be sent twice ([`Idempotent`] or [`Once`]), what else AWS refuses without acting
//! ([`Idempotent::retrying`]) and for how long ([`CallPolicy::within`]); [`Context::retry`] and
//! [`Context::retry_within`] for waits that are not one call.

use crate::sync::Locked;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use backon::{ExponentialBuilder, Retryable};

use super::Context;
use crate::error::{AwsError, ErrorClass, ResourceError};
use crate::events::Event;
use crate::types::BoxFuture;

/// How calls that fail with a retryable error are retried: exponential backoff with jitter, bounded.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first wait.
    pub min_delay: Duration,
    /// The longest single wait.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// A policy with `max_attempts` attempts and waits between `min_delay` and `max_delay`.
    pub fn new(max_attempts: u32, min_delay: Duration, max_delay: Duration) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            min_delay,
            max_delay,
        }
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .with_jitter()
    }
}

/// A call that may be sent again when its outcome is unknown (a timeout, a closed connection, a 5xx):
/// a read, a delete, a put, a create with an idempotency token. Throttling and eventual-consistency
/// refusals are retried with the engine's backoff.
#[derive(Clone, Copy, Debug)]
pub struct Idempotent;

/// A call that must not be sent twice: a create that AWS would carry out again (a twin VPC) or
/// refuse as already done. Throttling and eventual-consistency refusals are retried (AWS did
/// nothing); a timeout, a closed connection or a 5xx is not: the outcome is unknown, and the engine
/// settles it with [`Resource::find`](super::Resource::find) instead of sending it again.
#[derive(Clone, Copy, Debug)]
pub struct Once;

/// How [`Context::call`] sends a call: [`Idempotent`] or [`Once`], with what else is retried.
///
/// ```
/// use std::time::Duration;
/// use platform_core::resource::{CallPolicy, Idempotent, Once};
/// // A delete that AWS refuses while dependents go, for minutes.
/// let delete = Idempotent
///     .retrying(|e| e.has_code("DependencyViolation"))
///     .within(Duration::from_secs(600));
/// assert!(delete.is_repeatable());
/// // A create ECS refuses until IAM has shown it the role.
/// let create: CallPolicy = Once.retrying(|e| e.has_code("InvalidParameterException"));
/// assert!(!create.is_repeatable());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct CallPolicy {
    repeatable: bool,
    also_retry: Option<fn(&AwsError) -> bool>,
    within: Option<Duration>,
}

impl Idempotent {
    /// Also retries the errors for which `also_retry` is true: what is eventual consistency for this
    /// one call (a VPC delete's `DependencyViolation` while its dependents go).
    pub fn retrying(self, also_retry: fn(&AwsError) -> bool) -> CallPolicy {
        CallPolicy::from(self).retrying(also_retry)
    }
}

impl Once {
    /// Also retries the errors for which `also_retry` is true, which AWS answers without acting (ECS
    /// refusing a role it cannot assume yet).
    pub fn retrying(self, also_retry: fn(&AwsError) -> bool) -> CallPolicy {
        CallPolicy::from(self).retrying(also_retry)
    }
}

impl From<Idempotent> for CallPolicy {
    fn from(_: Idempotent) -> Self {
        CallPolicy {
            repeatable: true,
            also_retry: None,
            within: None,
        }
    }
}

impl From<Once> for CallPolicy {
    fn from(_: Once) -> Self {
        CallPolicy {
            repeatable: false,
            also_retry: None,
            within: None,
        }
    }
}

impl CallPolicy {
    /// Also retries the errors for which `also_retry` is true.
    pub fn retrying(mut self, also_retry: fn(&AwsError) -> bool) -> Self {
        self.also_retry = Some(also_retry);
        self
    }

    /// Retries the [`retrying`](Self::retrying) errors until `budget` has passed since the first
    /// attempt, however many attempts that takes: for what AWS refuses for minutes and then does (a
    /// subnet or security group delete while Fargate releases a stopped task's network interface).
    /// Each wait is reported with [`Context::progress`] and ends at once when the run is cancelled.
    pub fn within(mut self, budget: Duration) -> Self {
        self.within = Some(budget);
        self
    }

    /// Whether a call whose outcome is unknown may be sent again.
    pub fn is_repeatable(&self) -> bool {
        self.repeatable
    }

    fn also_retries(&self, e: &AwsError) -> bool {
        self.also_retry.is_some_and(|f| f(e))
    }
}

impl Context {
    /// Runs one AWS call the way `policy` says: its error classified, throttling and
    /// eventual-consistency refusals retried with the engine's bounded backoff, a call whose outcome
    /// is unknown sent again only when it is [`Idempotent`].
    ///
    /// ```no_run
    /// # async fn f(ctx: &platform_core::Context, s3: &aws_sdk_s3::Client) -> Result<(), platform_core::ResourceError> {
    /// use platform_core::resource::{Idempotent, Once};
    /// // A create that must not be sent twice: a lost answer is settled by looking, not re-sent.
    /// let create = || s3.put_object().bucket("b").key("lock").if_none_match("*").send();
    /// ctx.call("PutObject", Once, create).await?;
    /// ctx.call("GetObject", Idempotent, || s3.get_object().bucket("b").key("lock").send()).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// The classified [`AwsError`] once it is not retried or the attempts (or the policy's budget)
    /// are used up; [`ResourceError::Cancelled`] when the run is cancelled while a budgeted wait
    /// waits.
    pub async fn call<T, E, F, Fut>(
        &self,
        operation: &str,
        policy: impl Into<CallPolicy>,
        f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let policy = policy.into();
        let Some(budget) = policy.within else {
            return self.send(operation, policy, f).await;
        };
        // Each attempt retries only its class's retryable errors (with the bounded backoff); the
        // policy's own errors are retried here, for the budget, with a progress line at each wait.
        let counted = CallPolicy {
            within: None,
            also_retry: None,
            ..policy
        };
        let refused =
            |e: &ResourceError| matches!(e, ResourceError::Aws(e) if policy.also_retries(e));
        // Each attempt's calls share `f`, one at a time.
        let f = Mutex::new(f);
        let send = || (f.locked())();
        self.retry_within(operation, budget, refused, || {
            self.send(operation, counted, send)
        })
        .await
    }

    /// Retries `f` (any fallible step: a call with its own retries, a wait) while `retry_if` says
    /// so, until `budget` has passed since the first attempt, with the engine's backoff between
    /// attempts and a progress line at each wait. For refusals that AWS keeps up for minutes and
    /// then lifts (a name still held by a service that drains).
    ///
    /// # Errors
    /// The last error once it is not retried or the budget is spent; [`ResourceError::Cancelled`]
    /// when the run is cancelled while it waits.
    pub async fn retry_within<T, F, Fut>(
        &self,
        what: &str,
        budget: Duration,
        retry_if: impl Fn(&ResourceError) -> bool,
        mut f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ResourceError>>,
    {
        let started = tokio::time::Instant::now();
        let mut delay = self.shared.retry.min_delay;
        loop {
            let e = match f().await {
                Err(e) if retry_if(&e) => e,
                done => return done,
            };
            let waited = started.elapsed();
            if waited >= budget {
                return Err(e);
            }
            self.progress(format!(
                "{what}: {}; AWS may take minutes: retrying (waited {}, up to {})",
                e.aws_code().unwrap_or("refused"),
                humantime::format_duration(Duration::from_secs(waited.as_secs())),
                humantime::format_duration(budget),
            ));
            self.sleep(delay.min(budget - waited)).await?;
            delay = (delay * 2).min(self.shared.retry.max_delay);
        }
    }

    /// [`send_retried`](Self::send_retried); while the instance may not show yet
    /// ([`unseen_until`](Self::unseen_until)), a not-found answer is asked again until it may.
    async fn send<T, E, F, Fut>(
        &self,
        operation: &str,
        policy: CallPolicy,
        f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let Some(until) = self.unseen_until else {
            return self.send_retried(operation, policy, f).await;
        };
        // Each attempt's calls share `f`, one at a time.
        let f = Mutex::new(f);
        let send = || (f.locked())();
        let budget = until.saturating_duration_since(tokio::time::Instant::now());
        self.retry_within(operation, budget, ResourceError::is_not_found, || {
            self.send_retried(operation, policy, send)
        })
        .await
    }

    /// Sends a call, retrying what its class (and the policy) says to with the engine's backoff.
    async fn send_retried<T, E, F, Fut>(
        &self,
        operation: &str,
        policy: CallPolicy,
        mut f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut attempt = 0u32;
        let op = || {
            let fut = f();
            async move { fut.await.map_err(|e| AwsError::from_sdk(operation, e)) }
        };
        let retryable = |e: &AwsError| {
            let class_retried = match e.class {
                ErrorClass::Transient => policy.repeatable,
                class => class.is_retryable(),
            };
            (class_retried || policy.also_retries(e)) && !self.cancel.is_cancelled()
        };
        op.retry(self.shared.retry.backoff())
            .sleep(self.backoff_sleep())
            .when(retryable)
            .notify(|e: &AwsError, delay| {
                attempt += 1;
                self.emit(Event::Retrying {
                    stack: self.stack.to_string(),
                    resource: self.resource.to_string(),
                    operation: operation.to_owned(),
                    attempt,
                    delay,
                    code: e.code.clone(),
                });
            })
            .await
            .map_err(ResourceError::from)
    }

    /// Retries `f` (any fallible step, not only one SDK call) while `retry_if` says so, with the
    /// engine's backoff. For waits on eventual consistency that are not a single call.
    ///
    /// # Errors
    /// The last error once it is not retried or the attempts are used up.
    pub async fn retry<T, F, Fut>(
        &self,
        what: &str,
        retry_if: impl Fn(&ResourceError) -> bool,
        f: F,
    ) -> Result<T, ResourceError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ResourceError>>,
    {
        let mut attempt = 0u32;
        f.retry(self.shared.retry.backoff())
            .sleep(self.backoff_sleep())
            .when(|e: &ResourceError| retry_if(e) && !self.cancel.is_cancelled())
            .notify(|e: &ResourceError, delay| {
                attempt += 1;
                self.emit(Event::Retrying {
                    stack: self.stack.to_string(),
                    resource: self.resource.to_string(),
                    operation: what.to_owned(),
                    attempt,
                    delay,
                    code: e.aws_code().map(str::to_owned),
                });
            })
            .await
    }
}

impl Context {
    /// A backoff sleep that ends at once when the run is cancelled; the retry loop then tries once
    /// more and returns that answer, which is not retried again.
    fn backoff_sleep(&self) -> impl Fn(Duration) -> BoxFuture<'static, ()> + use<> {
        let cancel = self.cancel.clone();
        move |d| {
            let cancel = cancel.clone();
            Box::pin(async move {
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(d) => {}
                }
            })
        }
    }
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "the SDK's own error type, as the SDK returns it to Context::call"
)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_smithy_runtime_api::client::result::SdkError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::events::{Event, EventSink};
    use crate::resource::{CancellationToken, Shared};

    type Answer = Result<(), SdkError<ErrorMetadata, HttpResponse>>;

    fn ctx_with(cancel: CancellationToken) -> Context {
        ctx_seeing(cancel, Arc::default())
    }

    #[test]
    fn a_policy_is_repeatable_exactly_when_it_started_idempotent() {
        let not_found = |e: &AwsError| e.is_not_found();
        assert!(CallPolicy::from(Idempotent).is_repeatable());
        assert!(Idempotent.retrying(not_found).is_repeatable());
        assert!(
            Idempotent
                .retrying(not_found)
                .within(Duration::from_secs(1))
                .is_repeatable()
        );
        assert!(!CallPolicy::from(Once).is_repeatable());
        assert!(!Once.retrying(not_found).is_repeatable());
        assert!(
            !Once
                .retrying(not_found)
                .within(Duration::from_secs(1))
                .is_repeatable()
        );
    }

    #[test]
    fn a_context_sees_the_identity_once_the_engine_resolved_it() {
        let ctx = ctx();
        assert_eq!(ctx.provider(), None);
        let p = crate::ProviderInfo {
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
        };
        ctx.shared.identity.set(p.clone()).unwrap();
        assert_eq!(ctx.provider(), Some(&p));
    }

    /// A context whose events are pushed to `seen`.
    fn ctx_seeing(cancel: CancellationToken, seen: Arc<Mutex<Vec<Event>>>) -> Context {
        // Three attempts: not the backoff crate's default (four), so the bound is seen to hold.
        let retry = RetryPolicy::new(3, Duration::from_millis(1), Duration::from_millis(2));
        ctx_retrying(cancel, seen, retry)
    }

    /// A context with retry policy `retry`, whose events are pushed to `seen`.
    fn ctx_retrying(
        cancel: CancellationToken,
        seen: Arc<Mutex<Vec<Event>>>,
        retry: RetryPolicy,
    ) -> Context {
        let subscriber: crate::events::Subscriber = Arc::new(move |e: &Event| {
            seen.lock().unwrap().push(e.clone());
        });
        let shared = Shared {
            sdk_config: None,
            interceptors: Vec::new(),
            extensions: HashMap::new(),
            clients: Mutex::default(),
            events: EventSink::new(vec![subscriber]),
            retry,
            settle_window: Duration::ZERO,
            identity: tokio::sync::OnceCell::new(),
        };
        Context::new(Arc::new(shared), "net", "vpc", cancel)
    }

    fn ctx() -> Context {
        ctx_with(CancellationToken::new())
    }

    fn aws(code: &str, status: u16) -> Answer {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        let raw = Response::new(StatusCode::try_from(status).unwrap(), SdkBody::empty());
        Err(SdkError::service_error(meta, raw))
    }

    fn timeout() -> Answer {
        Err(SdkError::timeout_error("no answer"))
    }

    /// Sends `answer` until `ok_after` attempts failed, then succeeds; returns the result and the
    /// attempts made.
    async fn attempts(
        send: impl AsyncFnOnce(&dyn Fn() -> std::future::Ready<Answer>) -> Result<(), ResourceError>,
        answer: fn() -> Answer,
        ok_after: u32,
    ) -> (Result<(), ResourceError>, u32) {
        let n = AtomicU32::new(0);
        let f = || {
            let i = n.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if i < ok_after { answer() } else { Ok(()) })
        };
        let r = send(&f).await;
        (r, n.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn call_repeats_throttling_and_transient_failures() {
        let c = ctx();
        let (r, n) = attempts(
            async |f| c.call("Op", Idempotent, f).await,
            || aws("Throttling", 400),
            2,
        )
        .await;
        assert!(r.is_ok());
        assert_eq!(n, 3);
        let (r, n) = attempts(async |f| c.call("Op", Idempotent, f).await, timeout, 2).await;
        assert!(r.is_ok());
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn call_once_repeats_throttling_but_never_a_call_whose_outcome_is_unknown() {
        let c = ctx();
        let (r, n) = attempts(
            async |f| c.call("Op", Once, f).await,
            || aws("Throttling", 400),
            2,
        )
        .await;
        assert!(r.is_ok());
        assert_eq!(n, 3);
        let (r, n) = attempts(async |f| c.call("Op", Once, f).await, timeout, 2).await;
        assert!(r.unwrap_err().outcome_unknown());
        assert_eq!(n, 1);
        let (r, n) = attempts(
            async |f| c.call("Op", Once, f).await,
            || aws("InternalError", 500),
            2,
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn a_call_retries_what_its_caller_names_and_nothing_else() {
        let c = ctx();
        let dep = |e: &AwsError| e.has_code("DependencyViolation");
        let (r, n) = attempts(
            async |f| c.call("Op", Idempotent.retrying(dep), f).await,
            || aws("DependencyViolation", 400),
            2,
        )
        .await;
        assert!(r.is_ok());
        assert_eq!(n, 3);
        let (r, n) = attempts(
            async |f| c.call("Op", Once.retrying(dep), f).await,
            || aws("InvalidParameterValue", 400),
            2,
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
        let (r, n) = attempts(
            async |f| c.call("Op", Once.retrying(dep), f).await,
            || aws("DependencyViolation", 400),
            5,
        )
        .await;
        assert!(r.is_err(), "the bound holds");
        assert_eq!(n, 3);
    }

    /// The wait before the last attempt is cut to what is left of the budget, not the backoff's
    /// next delay: a step that takes 0.5 s, refused, with 10 s of backoff and a 1 s budget, ends
    /// after two attempts and 1.5 s.
    #[tokio::test(start_paused = true)]
    async fn a_budgeted_retry_never_waits_past_its_budget() {
        let retry = RetryPolicy::new(3, Duration::from_secs(10), Duration::from_secs(20));
        let ctx = ctx_retrying(CancellationToken::new(), Arc::default(), retry);
        let tries = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let out: Result<(), ResourceError> = ctx
            .retry_within(
                "Op",
                Duration::from_secs(1),
                |_| true,
                || async {
                    tries.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Err(ResourceError::Failed {
                        message: "refused".into(),
                    })
                },
            )
            .await;
        assert!(out.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 2);
        assert_eq!(started.elapsed(), Duration::from_millis(1500));
    }

    #[tokio::test(start_paused = true)]
    async fn call_within_retries_what_its_caller_names_for_a_time_not_a_count() {
        let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
        let c = ctx_seeing(CancellationToken::new(), seen.clone());
        let dep = |e: &AwsError| e.has_code("DependencyViolation");
        let budget = Duration::from_secs(60);
        // Twenty refusals: far more than the retry policy's three attempts, well within a minute.
        let started = tokio::time::Instant::now();
        let (r, n) = attempts(
            async |f| {
                c.call("Op", Idempotent.retrying(dep).within(budget), f)
                    .await
            },
            || aws("DependencyViolation", 400),
            20,
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(n, 21);
        assert!(started.elapsed() < budget, "{:?}", started.elapsed());
        let progress = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                matches!(e, Event::Progress { message, .. }
                    if message.starts_with("Op: DependencyViolation; AWS may take minutes"))
            })
            .count();
        assert_eq!(progress, 20);
        // Past the budget, the refusal is the answer: the last wait is cut to what is left of it
        // (the default policy's waits grow to 10 s), and what it does not name is not retried.
        let d = ctx();
        let budget = Duration::from_secs(15);
        let started = tokio::time::Instant::now();
        let (r, _) = attempts(
            async |f| {
                d.call("Op", Idempotent.retrying(dep).within(budget), f)
                    .await
            },
            || aws("DependencyViolation", 400),
            u32::MAX,
        )
        .await;
        assert_eq!(r.unwrap_err().aws_code(), Some("DependencyViolation"));
        let waited = started.elapsed();
        assert!(
            waited >= budget && waited < budget + Duration::from_millis(100),
            "{waited:?}"
        );
        let (r, n) = attempts(
            async |f| {
                c.call("Op", Idempotent.retrying(dep).within(budget), f)
                    .await
            },
            || aws("InvalidParameterValue", 400),
            2,
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_not_found_about_an_instance_aws_may_not_show_yet_is_asked_again_until_it_may() {
        let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
        let window = Duration::from_secs(1);
        let c = ctx_seeing(CancellationToken::new(), seen.clone())
            .unseen_until(Some(tokio::time::Instant::now() + window));
        let not_found = || aws("InvalidInternetGatewayID.NotFound", 400);
        // Shown after ten not-found answers: the call gets its answer, each wait reported.
        let (r, n) = attempts(
            async |f| c.call("Describe", Idempotent, f).await,
            not_found,
            10,
        )
        .await;
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(n, 11);
        let retried = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|e| {
                matches!(e, Event::Progress { message, .. }
                if message.starts_with("Describe: InvalidInternetGatewayID.NotFound; AWS may"))
            })
            .count();
        assert_eq!(retried, 10);
        // Never shown: not-found is the answer once the window has passed, not before.
        let started = tokio::time::Instant::now();
        let (r, _) = attempts(
            async |f| c.call("Delete", Once, f).await,
            not_found,
            u32::MAX,
        )
        .await;
        assert!(r.unwrap_err().is_not_found());
        let deadline = started.elapsed();
        assert!(deadline > Duration::from_millis(900), "{deadline:?}");
        assert!(deadline <= window, "{deadline:?}");
        let (r, n) = attempts(
            async |f| c.call("Describe", Idempotent, f).await,
            not_found,
            1,
        )
        .await;
        assert!(r.is_err() && n == 1, "past the window: believed at once");
        // Other errors are not asked again; without the window, not-found is believed at once.
        let c = ctx_seeing(CancellationToken::new(), seen.clone())
            .unseen_until(Some(tokio::time::Instant::now() + window));
        let (r, n) = attempts(
            async |f| c.call("Delete", Once, f).await,
            || aws("InvalidParameterValue", 400),
            2,
        )
        .await;
        assert!(r.is_err() && n == 1, "{r:?} after {n}");
        let (r, n) = attempts(
            async |f| ctx().call("Describe", Idempotent, f).await,
            not_found,
            1,
        )
        .await;
        assert!(r.unwrap_err().is_not_found());
        assert_eq!(n, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_within_a_budget_ends_at_once_when_the_run_is_cancelled() {
        let cancel = CancellationToken::new();
        let c = ctx_with(cancel.clone());
        let stop = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            stop.cancel();
        });
        let dep = |e: &AwsError| e.has_code("DependencyViolation");
        let (r, _) = attempts(
            async |f| {
                c.call(
                    "Op",
                    Idempotent.retrying(dep).within(Duration::from_secs(600)),
                    f,
                )
                .await
            },
            || aws("DependencyViolation", 400),
            u32::MAX,
        )
        .await;
        assert!(matches!(r, Err(ResourceError::Cancelled)), "{r:?}");
    }

    #[tokio::test]
    async fn retries_and_progress_are_reported_as_events_of_the_resource() {
        let seen: Arc<Mutex<Vec<Event>>> = Arc::default();
        let c = ctx_seeing(CancellationToken::new(), seen.clone());
        let (r, _) = attempts(
            async |f| c.call("Op", Idempotent, f).await,
            || aws("Throttling", 400),
            2,
        )
        .await;
        assert!(r.is_ok());
        let tries = AtomicU32::new(0);
        c.retry(
            "wait",
            |_| true,
            || {
                let i = tries.fetch_add(1, Ordering::SeqCst);
                std::future::ready(if i < 2 {
                    Err(ResourceError::missing("Op", "x"))
                } else {
                    Ok(())
                })
            },
        )
        .await
        .unwrap();
        c.progress("halfway");
        let seen: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|e| match e {
                Event::Retrying {
                    stack,
                    resource,
                    operation,
                    attempt,
                    code,
                    ..
                } => format!("{stack}/{resource} {operation} #{attempt} {code:?}"),
                Event::Progress {
                    stack,
                    resource,
                    message,
                } => format!("{stack}/{resource}: {message}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            seen,
            [
                "net/vpc Op #1 Some(\"Throttling\")",
                "net/vpc Op #2 Some(\"Throttling\")",
                "net/vpc wait #1 None",
                "net/vpc wait #2 None",
                "net/vpc: halfway",
            ]
        );
    }

    #[tokio::test]
    async fn nothing_is_retried_once_the_run_is_cancelled() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let c = ctx_with(cancel);
        let (r, n) = attempts(
            async |f| c.call("Op", Idempotent, f).await,
            || aws("Throttling", 400),
            2,
        )
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
        let tries = AtomicU32::new(0);
        let r: Result<(), ResourceError> = c
            .retry(
                "wait",
                |_| true,
                || {
                    tries.fetch_add(1, Ordering::SeqCst);
                    std::future::ready(Err(ResourceError::missing("Op", "x")))
                },
            )
            .await;
        assert!(r.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retry_repeats_while_asked_within_the_bound() {
        let c = ctx();
        let tries = AtomicU32::new(0);
        let r: Result<(), ResourceError> = c
            .retry(
                "wait",
                |e| e.aws_code().is_none(),
                || {
                    tries.fetch_add(1, Ordering::SeqCst);
                    std::future::ready(Err(ResourceError::missing("Op", "x")))
                },
            )
            .await;
        assert!(r.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn sleep_ends_at_once_when_cancelled_and_waits_otherwise() {
        let c = ctx();
        let started = std::time::Instant::now();
        c.sleep(Duration::from_millis(30)).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(30));
        c.cancellation().cancel();
        let started = std::time::Instant::now();
        let r = c.sleep(Duration::from_secs(8)).await;
        assert!(matches!(r, Err(ResourceError::Cancelled)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
