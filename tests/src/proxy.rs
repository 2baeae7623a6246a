//! A recording, fault-injecting HTTP proxy between the SDK and the emulator.
//!
//! It records every call (service, operation, status, start and duration), can add a fixed latency to
//! each call (to make a local emulator behave like a distant AWS region for benchmarks), and can fail
//! chosen calls by rule: a throttling error, an HTTP 500, a dropped connection, a lost response (the
//! call is carried out, then the connection closes without an answer), or any AWS error. A request is
//! forwarded in a task of its own, so a client that dies mid-call does not stop it: AWS finishes what it
//! was sent. [`Proxy::trip_after`] holds the answer to the k-th call from now, for a test to kill the
//! client at that moment.
//!
//! Where moto is kinder than AWS, it behaves like AWS on request: [`Proxy::hold`] carries a call out
//! seconds after it arrived (a request AWS carries out after its sender died), [`Proxy::refuse_for`]
//! answers a delete with `DependencyViolation` for a while (Fargate releasing a network interface),
//! [`Proxy::refuse_with`] any error for a while (a name still held), [`Proxy::lag_reads`] hides what
//! an EC2 create made from describes for a while, [`Fault::Hang`] never answers.
//!
//! ```no_run
//! # async fn f() -> Result<(), local_cloud::HarnessError> {
//! use local_cloud::{Emulator, Fault, Proxy, Rule};
//! let emulator = Emulator::start().await?;
//! let proxy = Proxy::start(emulator.endpoint_url()).await?;
//! proxy.add_rule(Rule::new(Fault::Throttle).operation("CreateVpc").times(1));
//! let config = proxy.wrap(&emulator.isolated());
//! // ... SDK calls with `config`; then:
//! let calls = proxy.calls();
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_types::SdkConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::account::ACCOUNT_HEADER;
use crate::error::HarnessError;

mod lag;

/// One call that went through the proxy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The service, from the request's signing scope (`ec2`, `iam`, `ecs`, `logs`, `sts`).
    pub service: String,
    /// The operation (`CreateVpc`), from the query `Action` or the JSON `X-Amz-Target`.
    pub operation: String,
    /// The HTTP status returned to the SDK (0 for a dropped connection).
    pub status: u16,
    /// When the call arrived, from the proxy's start.
    pub started: Duration,
    /// How long it took, injected latency included.
    pub duration: Duration,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
}

/// A failure to inject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// A throttling error in the service's protocol (`RequestLimitExceeded` for EC2, `Throttling` for
    /// IAM/STS, `ThrottlingException` for JSON services).
    Throttle,
    /// HTTP 500 with an `InternalError` body.
    ServerError,
    /// The connection is closed without a response, and the call is not forwarded.
    DropConnection,
    /// The call is forwarded and carried out, then the connection is closed without its response
    /// (a timeout or a reset after AWS acted).
    LoseResponse,
    /// The call is carried out and its JSON answer rewritten by the function before the client sees
    /// it: the shapes AWS gives that the emulator never does (a failed ECS rollout, a stopped task).
    Rewrite(Rewriter),
    /// The call is carried out and its XML answer (EC2, IAM, Elastic Load Balancing: the query
    /// protocols) replaced by the function's before the client sees it: a target health AWS gives
    /// and the emulator never does.
    RewriteXml(XmlRewriter),
    /// The call is never answered, nor forwarded: a request that hangs (a black-holed connection).
    Hang,
    /// An AWS error of your choice.
    AwsError {
        /// HTTP status.
        status: u16,
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
}

/// A named rewrite of a JSON answer (named, so that rules and recorded calls compare by name).
#[derive(Clone, Copy)]
pub struct Rewriter {
    /// What the rewrite makes of the answer (`failed rollout`).
    pub name: &'static str,
    /// The rewrite.
    pub apply: fn(&mut serde_json::Value),
}

/// A named rewrite of an XML answer, for [`Fault::RewriteXml`].
#[derive(Clone, Copy)]
pub struct XmlRewriter {
    /// What the rewrite makes of the answer (`unhealthy target`).
    pub name: &'static str,
    /// The answer the client gets instead of the emulator's.
    pub apply: fn(&str) -> String,
}

impl std::fmt::Debug for XmlRewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "XmlRewriter({})", self.name)
    }
}

impl PartialEq for XmlRewriter {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for XmlRewriter {}

impl std::fmt::Debug for Rewriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Rewriter({})", self.name)
    }
}

impl PartialEq for Rewriter {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Rewriter {}

/// Which calls fail, how, and how many times.
#[derive(Clone, Debug)]
pub struct Rule {
    service: Option<String>,
    operation: Option<String>,
    fault: Fault,
    remaining: Option<usize>,
}

impl Rule {
    /// Every call fails with `fault` (narrow it with the methods below).
    pub fn new(fault: Fault) -> Self {
        Self {
            service: None,
            operation: None,
            fault,
            remaining: None,
        }
    }

    /// Only calls to `service` (`ec2`, `iam`, ...).
    #[must_use]
    pub fn service(mut self, service: &str) -> Self {
        self.service = Some(service.to_owned());
        self
    }

    /// Only calls of `operation` (`CreateVpc`).
    #[must_use]
    pub fn operation(mut self, operation: &str) -> Self {
        self.operation = Some(operation.to_owned());
        self
    }

    /// Only the next `n` matching calls.
    #[must_use]
    pub fn times(mut self, n: usize) -> Self {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, service: &str, operation: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
            && self.operation.as_deref().is_none_or(|o| o == operation)
            && self.remaining != Some(0)
    }
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    rules: Vec<Rule>,
    latency: Duration,
    /// Calls still to forward before the trip, and what to notify then.
    trip: Option<(usize, Arc<tokio::sync::Notify>)>,
    /// The next call of this operation is held until its release before it is forwarded, and what
    /// to notify when it arrives.
    hold: Option<(String, (Release, Arc<tokio::sync::Notify>))>,
    /// Calls of these operations answer the fault given until the instant given.
    refuse_until: Vec<(String, Instant, Fault)>,
    /// How long what an EC2 create makes stays invisible to describes ([`Proxy::lag_reads`]).
    lag: Duration,
    /// Ids made by creates, invisible to describes until the instant given.
    hidden: Vec<(String, Instant)>,
    /// The moto account every forwarded call is made in (`x-moto-account-id`), when the client does
    /// not name one.
    account: Option<String>,
    /// Before the next call of this operation is forwarded, this runs ([`Proxy::before_next`]).
    before: Option<(String, Hook)>,
}

/// What runs before a call is forwarded: another client acting in between two of the engine's calls.
type Hook = Box<dyn FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What `slot` holds for the next call of `operation`, taken; left in place for another operation.
fn take_for<T>(slot: &mut Option<(String, T)>, operation: &str) -> Option<T> {
    match slot.take() {
        Some((op, value)) if op == operation => Some(value),
        other => {
            *slot = other;
            None
        }
    }
}

/// When a held call is forwarded.
#[derive(Clone)]
enum Release {
    /// After this long.
    After(Duration),
    /// When this is notified.
    On(Arc<tokio::sync::Notify>),
}

struct Shared {
    upstream: String,
    started: Instant,
    state: Mutex<State>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// The proxy; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The connector to the emulator, without Nagle's delay (see [`Proxy::start`]).
fn no_delay_connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http
}

impl Proxy {
    /// Starts a proxy on a free loopback port, forwarding to `upstream` (an `http://` URL).
    ///
    /// # Errors
    /// [`HarnessError::Proxy`] when it cannot bind.
    pub async fn start(upstream: &str) -> Result<Self, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(HarnessError::Proxy)?;
        let addr = listener.local_addr().map_err(HarnessError::Proxy)?;
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            started: Instant::now(),
            state: Mutex::default(),
            client: Client::builder(TokioExecutor::new()).build(no_delay_connector()),
        });
        let s2 = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                // Answers go out at once: with Nagle's algorithm, a response written as headers then
                // body waits for the SDK's delayed ACK (about 40 ms), a cost that is not AWS's.
                let _ = stream.set_nodelay(true);
                let shared = s2.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The proxy's clock: the time since it started, as [`Call::started`] counts it.
    pub fn now(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// The proxy's URL.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `config` with its endpoint pointed at the proxy (credentials, region, account kept).
    pub fn wrap(&self, config: &SdkConfig) -> SdkConfig {
        config
            .to_builder()
            .endpoint_url(self.endpoint_url())
            .build()
    }

    /// Every call waits `latency` before it is forwarded.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Adds a fault rule; the first matching rule applies.
    pub fn add_rule(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }

    /// Removes every rule.
    pub fn clear_rules(&self) {
        self.lock().rules.clear();
    }

    /// The calls recorded so far.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The `k`-th call from now (1 = the next) is forwarded and carried out upstream, then `notify`
    /// fires and its answer is held back for good: the moment to kill the client, with AWS having acted
    /// and the client never told. Calls after it are served as usual.
    pub fn trip_after(&self, k: usize) -> Arc<tokio::sync::Notify> {
        let notify = Arc::new(tokio::sync::Notify::new());
        self.lock().trip = Some((k.max(1), notify.clone()));
        notify
    }

    /// The next call of `operation` arrives, `notify` fires (the moment to kill the client), and
    /// the call is held `hold` before it is forwarded and carried out: AWS carrying out a request
    /// seconds after its sender died. Its answer is never given.
    pub fn hold(&self, operation: &str, hold: Duration) -> Arc<tokio::sync::Notify> {
        let notify = Arc::new(tokio::sync::Notify::new());
        self.lock().hold = Some((operation.to_owned(), (Release::After(hold), notify.clone())));
        notify
    }

    /// As [`hold`](Self::hold), the call held until `release` is notified rather than for a time:
    /// for a test that must have the next run look before the create lands, however slow the
    /// machine.
    pub fn hold_until(
        &self,
        operation: &str,
        release: Arc<tokio::sync::Notify>,
    ) -> Arc<tokio::sync::Notify> {
        let notify = Arc::new(tokio::sync::Notify::new());
        self.lock().hold = Some((operation.to_owned(), (Release::On(release), notify.clone())));
        notify
    }

    /// Calls of `operation` answer `DependencyViolation` (HTTP 400, EC2's shape) for `d` from now,
    /// then are served: what AWS answers a subnet or security group delete while Fargate releases a
    /// stopped task's network interface.
    pub fn refuse_for(&self, operation: &str, d: Duration) {
        self.refuse_with(
            operation,
            Fault::AwsError {
                status: 400,
                code: "DependencyViolation".into(),
                message: "resource has a dependent object".into(),
            },
            d,
        );
    }

    /// Before the next call of `operation` is forwarded, `hook` runs and is awaited: another client
    /// (or AWS carrying out a late call) acting between two of the engine's calls.
    pub fn before_next(
        &self,
        operation: &str,
        hook: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static,
    ) {
        self.lock().before = Some((operation.to_owned(), Box::new(hook)));
    }

    /// Calls of `operation` fail with `fault` for `d` from now, then are served: AWS refusing a
    /// create while it still holds the name of an instance just deleted (`EntityAlreadyExists`).
    pub fn refuse_with(&self, operation: &str, fault: Fault, d: Duration) {
        self.lock()
            .refuse_until
            .push((operation.to_owned(), Instant::now() + d, fault));
    }

    /// From now on, what an EC2 create makes (a VPC, subnet, security group, internet gateway,
    /// route table) stays invisible to the describe calls of its kind for `lag` after AWS carried
    /// the create out, as EC2's eventual consistency allows
    /// (<https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html>): a describe
    /// that names it by id answers its `Invalid...ID.NotFound`, one by filters leaves it out.
    pub fn lag_reads(&self, lag: Duration) {
        self.lock().lag = lag;
    }

    /// Makes every forwarded call that names no account a call in moto account `account` (the
    /// `x-moto-account-id` header): isolates a client this test does not configure, such as a child
    /// process.
    pub fn set_account(&self, account: &str) {
        self.lock().account = Some(account.to_owned());
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.lock().calls.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// (service, operation) of a request.
fn identify(
    method: &hyper::Method,
    headers: &hyper::HeaderMap,
    uri: &hyper::Uri,
    body: &[u8],
) -> (String, String) {
    let path = uri.path();
    let service = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|cred| cred.split('/').nth(3))
        .map(str::to_owned)
        .unwrap_or_else(|| "unknown".into());
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        let op = target.rsplit('.').next().unwrap_or(target);
        return (service, op.to_owned());
    }
    if service == "s3" {
        let copy = headers.contains_key("x-amz-copy-source");
        return (service, s3_operation(method, uri, copy).to_owned());
    }
    let body = String::from_utf8_lossy(body);
    let action = body
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "Action")
        .map(|(_, v)| v.to_owned());
    (service, action.unwrap_or_else(|| path.to_owned()))
}

/// The S3 REST operation of a path-style request: a key after the bucket is an object operation.
fn s3_operation(method: &hyper::Method, uri: &hyper::Uri, copy: bool) -> &'static str {
    let query = uri.query().unwrap_or("");
    let has = |k: &str| query.split('&').any(|kv| kv.split('=').next() == Some(k));
    let object = uri
        .path()
        .trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(_, key)| !key.is_empty());
    match (method.as_str(), object) {
        ("PUT", true) if copy => "CopyObject",
        ("PUT", true) => "PutObject",
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("DELETE", true) => "DeleteObject",
        ("GET", false) if has("versions") => "ListObjectVersions",
        ("GET", false) if has("versioning") => "GetBucketVersioning",
        ("PUT", false) if has("versioning") => "PutBucketVersioning",
        ("GET", false) => "ListObjectsV2",
        ("HEAD", false) => "HeadBucket",
        ("PUT", false) => "CreateBucket",
        ("DELETE", false) => "DeleteBucket",
        _ => "S3",
    }
}

fn fault_response(fault: &Fault, service: &str, json: bool) -> Response<Full<Bytes>> {
    let (status, code, message) = match fault {
        Fault::Throttle if json => (
            400,
            "ThrottlingException".to_owned(),
            "Rate exceeded".to_owned(),
        ),
        Fault::Throttle if service == "ec2" => (
            503,
            "RequestLimitExceeded".to_owned(),
            "Request limit exceeded.".to_owned(),
        ),
        Fault::Throttle => (400, "Throttling".to_owned(), "Rate exceeded".to_owned()),
        Fault::ServerError => (
            500,
            "InternalError".to_owned(),
            "An internal error has occurred".to_owned(),
        ),
        Fault::AwsError {
            status,
            code,
            message,
        } => (*status, code.clone(), message.clone()),
        Fault::DropConnection
        | Fault::LoseResponse
        | Fault::Rewrite(_)
        | Fault::RewriteXml(_)
        | Fault::Hang => (0, String::new(), String::new()),
    };
    let (content_type, body) = if json {
        (
            "application/x-amz-json-1.1",
            format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
        )
    } else if service == "ec2" {
        (
            "text/xml",
            format!(
                "<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>proxy</RequestID></Response>"
            ),
        )
    } else {
        (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
            ),
        )
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    if json && let Ok(v) = hyper::header::HeaderValue::from_str(&code) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

#[derive(Debug, thiserror::Error)]
#[error("connection dropped by a fault rule")]
struct Dropped;

#[derive(Debug, thiserror::Error)]
enum ProxyFailure {
    #[error(transparent)]
    Dropped(#[from] Dropped),
    #[error("reading the request: {0}")]
    Body(#[from] hyper::Error),
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ProxyFailure> {
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let (service, operation) = identify(&parts.method, &parts.headers, &parts.uri, &body);
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let json = parts.headers.contains_key("x-amz-target");
    let (latency, fault, trip, hold, account, before) = {
        let mut st = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let latency = st.latency;
        let trip = match st.trip.as_mut() {
            Some((1, notify)) => {
                let notify = notify.clone();
                st.trip = None;
                Some(notify)
            }
            Some((n, _)) => {
                *n -= 1;
                None
            }
            None => None,
        };
        let account = st.account.clone();
        let refused = st
            .refuse_until
            .iter()
            .find(|(op, until, _)| *op == operation && Instant::now() < *until)
            .map(|(_, _, fault)| fault.clone());
        let fault = st
            .rules
            .iter_mut()
            .find(|r| r.matches(&service, &operation))
            .map(|r| {
                if let Some(n) = r.remaining.as_mut() {
                    *n -= 1;
                }
                r.fault.clone()
            })
            .or(refused);
        let hold = take_for(&mut st.hold, &operation);
        let before = take_for(&mut st.before, &operation);
        (latency, fault, trip, hold, account, before)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let record = |status: u16, fault: Option<Fault>| {
        let call = Call {
            service: service.clone(),
            operation: operation.clone(),
            status,
            started: arrived - shared.started,
            duration: arrived.elapsed(),
            fault,
        };
        shared
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .calls
            .push(call);
    };
    let lose_response = fault == Some(Fault::LoseResponse);
    // A rewrite applies to the answer; every other fault but a lost response replaces the call.
    let rewrite = fault
        .clone()
        .filter(|f| matches!(f, Fault::Rewrite(_) | Fault::RewriteXml(_)));
    if let Some(fault) = fault.filter(|f| f != &Fault::LoseResponse && rewrite.is_none()) {
        if fault == Fault::DropConnection {
            record(0, Some(fault));
            return Err(Dropped.into());
        }
        if fault == Fault::Hang {
            record(0, Some(Fault::Hang));
            return std::future::pending().await;
        }
        let resp = fault_response(&fault, &service, json);
        record(resp.status().as_u16(), Some(fault));
        return Ok(resp);
    }
    let uri = format!(
        "{}{}",
        shared.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut forward = Request::builder().method(parts.method).uri(&uri);
    for (k, v) in &parts.headers {
        if k != hyper::header::HOST {
            forward = forward.header(k, v);
        }
    }
    if let Some(account) = account.filter(|_| !parts.headers.contains_key(ACCOUNT_HEADER)) {
        forward = forward.header(ACCOUNT_HEADER, account);
    }
    let request = match forward.body(Full::new(body)) {
        Ok(r) => r,
        Err(e) => {
            record(502, None);
            return Ok(bad_gateway(&e.to_string()));
        }
    };
    // In a task of its own: if the client dies (its connection closes, and hyper drops this handler),
    // the call still reaches the emulator and completes, as AWS completes what it was sent.
    let client = shared.client.clone();
    let release = hold.as_ref().map(|(r, _)| r.clone());
    if let Some((_, notify)) = &hold {
        record(0, None);
        notify.notify_one();
    }
    let lagging = shared.clone();
    let (create, describe) = (operation.clone(), operation.clone());
    let request_body = body_text.clone();
    if let Some(hook) = before {
        hook().await;
    }
    let upstream = tokio::spawn(async move {
        match release {
            Some(Release::After(d)) => tokio::time::sleep(d).await,
            Some(Release::On(n)) => n.notified().await,
            None => {}
        }
        let resp = client.request(request).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        if parts.status.is_success() {
            // Carried out now: what it made is invisible from now on (held or not).
            lag::made(&lagging.state, &create, &bytes);
        }
        Ok::<_, String>((parts, bytes))
    });
    if hold.is_some() {
        // The client is killed while the call is held; the call goes on without it.
        std::future::pending::<()>().await;
    }
    let answered = upstream
        .await
        .unwrap_or_else(|e| Err(format!("forwarding task: {e}")));
    if let Some(notify) = trip {
        record(0, None);
        notify.notify_one();
        // The answer is never given: the client is killed while it waits.
        std::future::pending::<()>().await;
    }
    match answered {
        Ok(_) if lose_response => {
            record(0, Some(Fault::LoseResponse));
            Err(Dropped.into())
        }
        Ok((parts, bytes)) => {
            let status = parts.status.as_u16();
            let rewritten = match &rewrite {
                Some(Fault::Rewrite(f)) if parts.status.is_success() => {
                    let mut doc: serde_json::Value =
                        serde_json::from_slice(&bytes).unwrap_or_default();
                    (f.apply)(&mut doc);
                    Some(doc.to_string())
                }
                Some(Fault::RewriteXml(f)) if parts.status.is_success() => {
                    Some((f.apply)(&String::from_utf8_lossy(&bytes)))
                }
                _ => None,
            };
            match rewritten {
                Some(body) => {
                    let mut parts = parts;
                    parts.headers.remove(hyper::header::CONTENT_LENGTH);
                    record(status, rewrite);
                    Ok(Response::from_parts(parts, Full::new(Bytes::from(body))))
                }
                _ => match lag::hide(&shared.state, &describe, &request_body, &bytes) {
                    Some(lag::Hidden::NotFound(fault)) => {
                        let resp = fault_response(&fault, &service, json);
                        record(resp.status().as_u16(), Some(fault));
                        Ok(resp)
                    }
                    Some(lag::Hidden::Rewritten(body)) => {
                        let mut parts = parts;
                        parts.headers.remove(hyper::header::CONTENT_LENGTH);
                        record(status, None);
                        Ok(Response::from_parts(parts, Full::new(Bytes::from(body))))
                    }
                    None => {
                        record(status, None);
                        Ok(Response::from_parts(parts, Full::new(bytes)))
                    }
                },
            }
        }
        Err(e) => {
            record(502, None);
            Ok(bad_gateway(&e))
        }
    }
}

fn bad_gateway(msg: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(format!(
        "proxy: upstream failed: {msg}"
    ))));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r
}
