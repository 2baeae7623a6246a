//! Events: every step and every AWS call, for progress displays and call counting.
//!
//! The engine emits an [`Event`] for each step (planned, started, done, failed, retried) and each AWS
//! call. Subscribers registered with [`EngineBuilder::on_event`](crate::EngineBuilder::on_event) see
//! all of them, in order per resource; every event is also logged with `tracing`. AWS calls are seen by
//! one SDK interceptor ([`CallRecorder`]) that the engine gives to every client it builds
//! ([`Context::client`](crate::Context::client)), so counting is done once, here.

use crate::sync::Locked;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

use crate::types::{ActionKind, Counts};

/// Something the engine did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A plan was computed for a stack.
    Planned {
        /// The stack.
        stack: String,
        /// How many resources each action touches.
        counts: Counts,
    },
    /// A resource step started.
    Started {
        /// The stack.
        stack: String,
        /// The resource.
        resource: String,
        /// What is being done.
        action: ActionKind,
    },
    /// A resource step finished.
    Done {
        /// The stack.
        stack: String,
        /// The resource.
        resource: String,
        /// What was done.
        action: ActionKind,
        /// How long it took.
        elapsed: Duration,
    },
    /// A resource step failed.
    Failed {
        /// The stack.
        stack: String,
        /// The resource.
        resource: String,
        /// What was being done.
        action: ActionKind,
        /// The error, rendered.
        error: String,
    },
    /// An interrupted create was healed: the resource was found by its tags and adopted.
    Adopted {
        /// The stack.
        stack: String,
        /// The resource.
        resource: String,
    },
    /// A call failed with a retryable error and will be tried again.
    Retrying {
        /// The stack.
        stack: String,
        /// The resource.
        resource: String,
        /// The operation.
        operation: String,
        /// Which attempt failed (1 for the first).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// AWS's error code, if any.
        code: Option<String>,
    },
    /// A resource reports progress on long work (waiting for a service to reach steady state).
    Progress {
        /// The stack.
        stack: String,
        /// The resource.
        resource: String,
        /// What is happening, for people.
        message: String,
    },
    /// A stack's lock is held by someone else; the run waits for it up to `timeout`
    /// ([`EngineBuilder::lock_timeout`](crate::EngineBuilder::lock_timeout)).
    LockWait {
        /// The stack.
        stack: String,
        /// Who holds the lock.
        holder: String,
        /// How long the run waits at most.
        timeout: Duration,
    },
    /// An AWS call completed (successfully or not).
    AwsCall(AwsCall),
}

/// One AWS call, as the SDK interceptor saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsCall {
    /// The service, e.g. `EC2`.
    pub service: String,
    /// The operation, e.g. `CreateVpc`.
    pub operation: String,
    /// Whether the operation changes anything (anything but Describe/Get/List/Head).
    pub mutating: bool,
    /// How long the call took, retries included.
    pub duration: Duration,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The error, rendered, when the call failed.
    pub error: Option<String>,
    /// The engine step that made the call, as (stack, resource); `None` for calls made outside a
    /// step (the identity check, a refresh, a client used directly).
    pub step: Option<(String, String)>,
}

tokio::task_local! {
    static STEP: (String, String);
}

/// Runs `f` as resource `resource` of stack `stack`: the AWS calls it makes are attributed to it.
pub(crate) async fn in_step<F: Future>(stack: &str, resource: &str, f: F) -> F::Output {
    STEP.scope((stack.to_owned(), resource.to_owned()), f).await
}

/// Whether an AWS operation name is a read (Describe, Get, List, Head, ...).
pub fn is_read_operation(operation: &str) -> bool {
    [
        "Describe", "Get", "List", "Head", "Lookup", "Search", "Simulate",
    ]
    .iter()
    .any(|p| operation.starts_with(p))
}

/// A subscriber callback.
pub type Subscriber = Arc<dyn Fn(&Event) + Send + Sync>;

/// Counts of AWS calls, by kind and by operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallStats {
    /// Read calls.
    pub read: u64,
    /// Mutating calls.
    pub mutating: u64,
    /// Calls per `Service:Operation`.
    pub by_operation: BTreeMap<String, u64>,
}

impl CallStats {
    /// All calls.
    pub fn total(&self) -> u64 {
        self.read + self.mutating
    }

    /// The calls made since `earlier` was taken.
    pub fn since(&self, earlier: &CallStats) -> CallStats {
        let mut by_operation = BTreeMap::new();
        for (op, n) in &self.by_operation {
            let d = n - earlier.by_operation.get(op).copied().unwrap_or(0);
            if d > 0 {
                by_operation.insert(op.clone(), d);
            }
        }
        CallStats {
            read: self.read - earlier.read,
            mutating: self.mutating - earlier.mutating,
            by_operation,
        }
    }
}

/// Where events go: subscribers, tracing, and the call counters.
#[derive(Clone, Default)]
pub struct EventSink {
    subscribers: Arc<Vec<Subscriber>>,
    stats: Arc<Mutex<CallStats>>,
}

impl fmt::Debug for EventSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSink")
            .field("subscribers", &self.subscribers.len())
            .finish()
    }
}

impl EventSink {
    pub(crate) fn new(subscribers: Vec<Subscriber>) -> Self {
        Self {
            subscribers: Arc::new(subscribers),
            stats: Arc::default(),
        }
    }

    /// Sends an event to every subscriber and to tracing.
    pub fn emit(&self, event: Event) {
        match &event {
            Event::AwsCall(c) => {
                tracing::debug!(service = %c.service, operation = %c.operation, mutating = c.mutating,
                    duration_ms = c.duration.as_millis() as u64, status = ?c.status, error = ?c.error, "aws call");
                let mut stats = self.stats.locked();
                if c.mutating {
                    stats.mutating += 1;
                } else {
                    stats.read += 1;
                }
                *stats
                    .by_operation
                    .entry(format!("{}:{}", c.service, c.operation))
                    .or_default() += 1;
            }
            Event::Failed {
                stack,
                resource,
                error,
                ..
            } => tracing::warn!(%stack, %resource, %error, "step failed"),
            Event::Retrying {
                stack,
                resource,
                operation,
                attempt,
                delay,
                code,
            } => {
                tracing::info!(%stack, %resource, %operation, attempt, delay_ms = delay.as_millis() as u64, code = ?code, "retrying")
            }
            other => tracing::info!(event = ?other, "engine"),
        }
        for s in self.subscribers.iter() {
            s(&event);
        }
    }

    /// The AWS calls counted so far.
    pub fn stats(&self) -> CallStats {
        self.stats.locked().clone()
    }
}

/// The SDK interceptor that reports every AWS call to an [`EventSink`].
#[derive(Clone, Debug)]
pub struct CallRecorder {
    sink: EventSink,
}

impl CallRecorder {
    /// A recorder reporting to `sink`.
    pub fn new(sink: EventSink) -> Self {
        Self { sink }
    }
}

#[derive(Debug, Clone)]
struct CallStart(Instant);

impl Storable for CallStart {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CallRecorder {
    fn name(&self) -> &'static str {
        "platform-core::CallRecorder"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(CallStart(Instant::now()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_owned(), m.name().to_owned()))
            .unwrap_or_else(|| ("unknown".into(), "unknown".into()));
        let duration = cfg
            .load::<CallStart>()
            .map(|s| s.0.elapsed())
            .unwrap_or_default();
        let status = context.response().map(|r| r.status().as_u16());
        let error = match context.output_or_error() {
            Some(Err(e)) => Some(match e.as_operation_error() {
                Some(op) => op.to_string(),
                None => e.to_string(),
            }),
            _ => None,
        };
        self.sink.emit(Event::AwsCall(AwsCall {
            mutating: !is_read_operation(&operation),
            service,
            operation,
            duration,
            status,
            error,
            step: STEP.try_with(Clone::clone).ok(),
        }));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_inside_a_step_are_attributed_to_it() {
        let current = || STEP.try_with(Clone::clone).ok();
        assert_eq!(current(), None);
        let seen = in_step("network", "vpc", async move { current() }).await;
        assert_eq!(seen, Some(("network".to_owned(), "vpc".to_owned())));
        assert_eq!(current(), None);
    }

    #[test]
    fn call_stats_since_an_earlier_count_are_the_difference() {
        let ops = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<_, _>>()
        };
        let earlier = CallStats {
            read: 2,
            mutating: 1,
            by_operation: ops(&[("EC2:DescribeVpcs", 2), ("EC2:CreateVpc", 1)]),
        };
        let now = CallStats {
            read: 5,
            mutating: 4,
            by_operation: ops(&[
                ("EC2:DescribeVpcs", 5),
                ("EC2:CreateVpc", 1),
                ("IAM:CreateRole", 3),
            ]),
        };
        let d = now.since(&earlier);
        assert_eq!((d.read, d.mutating, d.total()), (3, 3, 6));
        assert_eq!(
            d.by_operation,
            ops(&[("EC2:DescribeVpcs", 3), ("IAM:CreateRole", 3)]),
            "operations with no new call are left out"
        );
        assert_eq!(now.total(), 9);
    }

    #[test]
    fn reads_and_writes_are_told_apart_by_operation_name() {
        assert!(is_read_operation("DescribeVpcs"));
        assert!(is_read_operation("GetRole"));
        assert!(is_read_operation("ListAttachedRolePolicies"));
        assert!(!is_read_operation("CreateVpc"));
        assert!(!is_read_operation("AuthorizeSecurityGroupIngress"));
    }

    #[test]
    fn stats_count_by_kind_and_operation() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let sink = EventSink::new(vec![Arc::new(move |e: &Event| {
            s2.lock().unwrap().push(e.clone())
        })]);
        let before = sink.stats();
        for op in ["CreateVpc", "DescribeVpcs", "CreateVpc"] {
            sink.emit(Event::AwsCall(AwsCall {
                service: "EC2".into(),
                operation: op.into(),
                mutating: !is_read_operation(op),
                duration: Duration::ZERO,
                status: Some(200),
                error: None,
                step: None,
            }));
        }
        let d = sink.stats().since(&before);
        assert_eq!((d.read, d.mutating), (1, 2));
        assert_eq!(d.by_operation["EC2:CreateVpc"], 2);
        assert_eq!(seen.lock().unwrap().len(), 3);
    }
}
