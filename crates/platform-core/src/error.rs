//! Errors: one enum for the engine ([`Error`]), one for what a resource operation can report
//! ([`ResourceError`]), one for the state store ([`StateError`]), and the classified AWS error
//! ([`AwsError`]) that keeps the SDK's typed error as its source.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::types::ProviderInfo;

/// A boxed error, the source type kept where the concrete type varies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How an AWS error is treated. Decided once, from the error code and HTTP status, by [`classify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The thing asked about does not exist. On a read this means "gone", on a delete "already done".
    NotFound,
    /// AWS asked us to slow down. Retried with backoff.
    Throttling,
    /// A just-made change is not visible everywhere yet (a new role ECS cannot assume yet, a concurrent
    /// modification). Retried with backoff.
    EventualConsistency,
    /// The request conflicts with the current state (already exists, still in use).
    Conflict,
    /// AWS refused the request as invalid. Not retried.
    Validation,
    /// A server-side or network failure (5xx, timeout, dropped connection). Retried with backoff.
    Transient,
    /// Anything else (access denied, quota). Not retried.
    Other,
}

impl ErrorClass {
    /// Whether the engine retries errors of this class by itself.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Throttling | Self::EventualConsistency | Self::Transient
        )
    }
}

/// Classifies an AWS error from its code and HTTP status.
///
/// The codes are AWS's own (EC2's dotted `InvalidVpcID.NotFound`, IAM's `NoSuchEntity`, ECS's
/// `ClusterNotFoundException`, ...). A resource that knows better for one call (a VPC delete's
/// `DependencyViolation` is eventual consistency while its subnets go) says so with
/// [`Idempotent::retrying`](crate::resource::Idempotent::retrying).
pub fn classify(code: Option<&str>, status: Option<u16>) -> ErrorClass {
    let Some(code) = code else {
        return match status {
            Some(404) => ErrorClass::NotFound,
            Some(429) => ErrorClass::Throttling,
            Some(s) if s >= 500 => ErrorClass::Transient,
            None => ErrorClass::Transient,
            _ => ErrorClass::Other,
        };
    };
    const THROTTLING: &[&str] = &[
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    ];
    const CONSISTENCY: &[&str] = &[
        "ConcurrentModification",
        "ConcurrentModificationException",
        "OperationAbortedException",
        "IncorrectState",
    ];
    const TRANSIENT: &[&str] = &[
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "ServerException",
        "RequestTimeout",
        "RequestTimeoutException",
        "Unavailable",
    ];
    const NOT_FOUND: &[&str] = &[
        "NoSuchEntity",
        "ResourceNotFoundException",
        "NotFoundException",
        "ClusterNotFoundException",
        "ServiceNotFoundException",
        // Application Auto Scaling's.
        "ObjectNotFoundException",
        "NoSuchBucket",
        "NoSuchKey",
    ];
    const CONFLICT: &[&str] = &[
        "EntityAlreadyExists",
        "ResourceAlreadyExistsException",
        "DeleteConflict",
        "DependencyViolation",
        "ResourceInUse",
        "ResourceInUseException",
        "ClusterContainsServicesException",
        "ClusterContainsTasksException",
        "ConditionalCheckFailedException",
        "PreconditionFailed",
    ];
    // Elastic Load Balancing's "exists": a name or port taken (by this create's own earlier send,
    // or by someone else), a rule priority in use.
    const ELB_EXISTS: &[&str] = &[
        "DuplicateLoadBalancerName",
        "DuplicateTargetGroupName",
        "DuplicateListener",
        "PriorityInUse",
    ];
    if THROTTLING.contains(&code) {
        ErrorClass::Throttling
    } else if CONSISTENCY.contains(&code) {
        ErrorClass::EventualConsistency
    } else if TRANSIENT.contains(&code) {
        ErrorClass::Transient
    } else if NOT_FOUND.contains(&code) || code.ends_with(".NotFound") || code.ends_with("NotFound")
    {
        ErrorClass::NotFound
    } else if CONFLICT.contains(&code)
        || ELB_EXISTS.contains(&code)
        || code.ends_with("AlreadyExists")
        || code.ends_with(".Duplicate")
        || code.ends_with(".InUse")
        || code.ends_with("AlreadyAssociated")
        || code.ends_with("Conflict")
    {
        ErrorClass::Conflict
    } else if code.starts_with("Invalid")
        || code.starts_with("Validation")
        || code.starts_with("Malformed")
        || code.starts_with("MissingParameter")
        || code == "ClientException"
    {
        ErrorClass::Validation
    } else {
        match status {
            Some(s) if s >= 500 => ErrorClass::Transient,
            _ => ErrorClass::Other,
        }
    }
}

/// An AWS call that failed, classified, with the SDK's typed error kept as its source.
#[derive(Debug, thiserror::Error)]
#[error("{operation}: {}{}", code.as_deref().unwrap_or("no error code"), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
pub struct AwsError {
    /// The operation, e.g. `CreateVpc`.
    pub operation: String,
    /// AWS's error code, when the response had one.
    pub code: Option<String>,
    /// AWS's error message.
    pub message: Option<String>,
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// How the engine treats it.
    pub class: ErrorClass,
    /// The SDK error itself.
    #[source]
    pub source: BoxError,
}

impl AwsError {
    /// Classifies an SDK error from operation `operation`.
    pub fn from_sdk<E>(operation: impl Into<String>, err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = err.code().map(str::to_owned);
        let message = err.message().map(str::to_owned);
        let status = err.raw_response().map(|r| r.status().as_u16());
        let class = match &err {
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => ErrorClass::Transient,
            _ => classify(code.as_deref(), status),
        };
        Self {
            operation: operation.into(),
            code,
            message,
            status,
            class,
            source: Box::new(err),
        }
    }

    /// Whether the error means the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        self.class == ErrorClass::NotFound
    }

    /// Whether AWS refused a create because the thing already exists (`EntityAlreadyExists`,
    /// `InvalidGroup.Duplicate`, `RouteAlreadyExists`, `Resource.AlreadyAssociated`, ...). After a
    /// create this engine may already have sent, it is no failure but an unknown outcome.
    pub fn is_already_exists(&self) -> bool {
        self.class == ErrorClass::Conflict
            && self.code.as_deref().is_some_and(|c| {
                c.ends_with("AlreadyExists")
                    || c.ends_with("AlreadyExistsException")
                    || c.ends_with(".Duplicate")
                    || c.ends_with("AlreadyAssociated")
                    || matches!(
                        c,
                        "DuplicateLoadBalancerName"
                            | "DuplicateTargetGroupName"
                            | "DuplicateListener"
                            | "PriorityInUse"
                    )
            })
    }

    /// Whether AWS may have carried out the call although it failed: a timeout, a closed connection
    /// or a 5xx ([`ErrorClass::Transient`]), or an "already exists" answer.
    pub fn outcome_unknown(&self) -> bool {
        self.class == ErrorClass::Transient || self.is_already_exists()
    }

    /// Whether AWS answered with this error code.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

/// A field that failed validation, named with its value, found before any AWS call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} = {value}: {reason}")]
pub struct ValidationError {
    /// The field, as a user wrote it in config (`network.vpc_cidr`, `subnets[1].cidr`).
    pub field: String,
    /// The value given, rendered.
    pub value: String,
    /// Why it is refused.
    pub reason: String,
}

impl ValidationError {
    /// A validation error for `field` with `value`.
    pub fn new(
        field: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// What a resource's create / read / update / delete can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// An AWS call failed (after the retries its class allows).
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The resource's inputs are invalid.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// An input was still a reference when the resource needed its value (an engine bug).
    #[error("input {reference} was not resolved before use")]
    Unresolved {
        /// The reference, `resource.output`.
        reference: String,
    },
    /// Waiting for something took longer than allowed.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound that ran out.
        after: Duration,
    },
    /// The engine was built without the configuration this resource needs (e.g. no `SdkConfig`).
    #[error("not configured: {what}")]
    NotConfigured {
        /// What is missing.
        what: String,
    },
    /// AWS answered, but without something the resource needs (a create with no id).
    #[error("{operation} answered without {what}")]
    MissingInResponse {
        /// The operation.
        operation: String,
        /// The missing field.
        what: String,
    },
    /// Recorded inputs or outputs could not be decoded as this resource's types.
    #[error("cannot decode {what}")]
    Decode {
        /// What was being decoded.
        what: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A resource-specific failure with its explanation (e.g. the reasons ECS stopped tasks).
    #[error("{message}")]
    Failed {
        /// The explanation.
        message: String,
    },
    /// A resource with this resource's natural key (its name) exists but carries another owner's
    /// tags: it is never adopted.
    #[error(
        "{what} already exists and belongs to {owner}; it is not adopted (delete or rename it, or \
         change this resource's name)"
    )]
    NotOurs {
        /// The resource found (`IAM role ecs-cluster-role`).
        what: String,
        /// Whose tags it carries (`stack network, resource vpc`), or that it carries none.
        owner: String,
    },
    /// A resource with this resource's natural key carries this stack's and resource's tags but
    /// another instance token: an instance this create did not make (the deleted instance of a
    /// replacement AWS still shows, or another deployment's). It is never adopted for the create.
    #[error(
        "{what} holds the name and is another instance of this resource ({other}), not the one \
         being created ({token}): it is not adopted"
    )]
    OtherInstance {
        /// The resource found (`IAM role ecs-cluster-role`).
        what: String,
        /// The instance token it carries.
        other: String,
        /// The token of the create that looked.
        token: String,
    },
    /// A create that AWS refused because the name exists, while no instance with the create's token
    /// holds it, still refused after the settle window: AWS keeps the name for an instance that is
    /// not this create's.
    #[error(
        "{source}; the name is still held after {} by an instance that is not this create's (one \
         deleted that AWS still shows, or one another deployment made): nothing was adopted",
        humantime::format_duration(*waited)
    )]
    NameHeld {
        /// AWS's refusal.
        #[source]
        source: Box<ResourceError>,
        /// How long the create was retried.
        waited: std::time::Duration,
    },
    /// More than one live resource carries this resource's tags: which one is ours cannot be told.
    #[error("{} resources carry the tags of {what}: {}; delete the extra ones", found.len(), found.join(", "))]
    Ambiguous {
        /// What was looked for.
        what: String,
        /// The ids found.
        found: Vec<String>,
    },
    /// The run was cancelled (Ctrl-C) while this operation waited.
    #[error("cancelled while waiting")]
    Cancelled,
    /// A create failed in a way that leaves open whether AWS carried it out (a lost response, a
    /// 5xx), and nothing carrying its instance token was found. It is not sent again in this run:
    /// the next run looks for the instance again before it creates anything.
    #[error(
        "outcome unknown: {source}; no instance with its token was found yet, so the create is not \
         sent again now (the next run looks for it first)"
    )]
    OutcomeUnknown {
        /// The error the create ended with.
        #[source]
        source: Box<ResourceError>,
    },
}

impl ResourceError {
    /// The AWS error code behind this error, if there is one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Self::Aws(e) => e.code.as_deref(),
            Self::OutcomeUnknown { source } | Self::NameHeld { source, .. } => source.aws_code(),
            _ => None,
        }
    }

    /// Whether this is an AWS answer meaning the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Aws(e) if e.is_not_found())
    }

    /// Whether AWS refused a create because the thing exists ([`AwsError::is_already_exists`]).
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Self::Aws(e) if e.is_already_exists())
    }

    /// Whether AWS may have carried out the failed call ([`AwsError::outcome_unknown`]).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::Aws(e) if e.outcome_unknown())
    }

    /// The error for an AWS answer that lacks a field the resource needs.
    pub fn missing(operation: &str, what: &str) -> Self {
        Self::MissingInResponse {
            operation: operation.to_owned(),
            what: what.to_owned(),
        }
    }
}

/// What `read` and `delete` do with "not found": it means gone, which is not an error for them.
///
/// ```
/// use platform_core::{error::GoneExt, ResourceError};
/// let gone: Result<u8, ResourceError> = Err(ResourceError::missing("Op", "x"));
/// assert!(gone.gone_is_none().is_err()); // only AWS not-found answers count as gone
/// assert_eq!(Ok::<u8, ResourceError>(1).gone_is_none().unwrap(), Some(1));
/// ```
pub trait GoneExt<T> {
    /// `Ok(None)` when the call failed with not-found; the value otherwise.
    ///
    /// # Errors
    /// Any error other than not-found.
    fn gone_is_none(self) -> Result<Option<T>, ResourceError>;
    /// `Ok(())` when the call succeeded or failed with not-found.
    ///
    /// # Errors
    /// Any error other than not-found.
    fn gone_is_ok(self) -> Result<(), ResourceError>;
}

impl<T> GoneExt<T> for Result<T, ResourceError> {
    fn gone_is_none(self) -> Result<Option<T>, ResourceError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn gone_is_ok(self) -> Result<(), ResourceError> {
        self.gone_is_none().map(|_| ())
    }
}

/// What the state store can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// A file operation failed.
    #[error("state I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A call to the store's service (S3) failed.
    #[error("state store {location}: {operation} failed: {message}")]
    Backend {
        /// The object or bucket (`s3://bucket/key`).
        location: String,
        /// The call (`PutObject`).
        operation: &'static str,
        /// What the service said, with its error code.
        message: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The state document is not valid JSON of the documented format. It is left untouched.
    #[error("state {location} is corrupt (left untouched; {}): {source}", restore_hint(backup.as_deref()))]
    Corrupt {
        /// The file or object.
        location: String,
        /// How to restore the newest good copy the store keeps (a command), if it keeps one.
        backup: Option<String>,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The state was written by a newer version of this toolkit. It is left untouched.
    #[error(
        "state {location} has format version {found}; this build reads up to {supported} (upgrade the toolkit; the state is left untouched)"
    )]
    UnsupportedVersion {
        /// The file or object.
        location: String,
        /// The version found.
        found: u64,
        /// The newest version this build understands.
        supported: u32,
    },
    /// Another process holds the stack's lock.
    #[error("stack {stack} is locked by {holder}")]
    Locked {
        /// The stack.
        stack: String,
        /// Who holds it (operation, user, host, pid, since when), as the holder wrote it.
        holder: String,
        /// The same, parsed, when the holder wrote it in this toolkit's format.
        info: Option<Box<crate::types::LockInfo>>,
    },
    /// Someone else wrote the stack's state while this run held its lock (the lock was forced).
    /// Nothing was overwritten.
    #[error(
        "state of stack {stack} at {location} was written by someone else since this run read it (was its lock forced?); nothing was overwritten: run again to start from what they recorded"
    )]
    Conflict {
        /// The stack.
        stack: String,
        /// The object.
        location: String,
    },
    /// A stack name that cannot name a file or object, or a store setting (bucket, prefix) that
    /// cannot be used; nothing was called.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

fn restore_hint(backup: Option<&str>) -> String {
    match backup {
        Some(b) => format!("restore the newest good copy: {b}"),
        None => "no good earlier copy is kept: move it away, then import or rebuild".into(),
    }
}

/// The engine's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A resource's inputs or a stack's config failed validation; nothing was called.
    #[error("{stack}/{resource}: {source}")]
    Invalid {
        /// The stack.
        stack: String,
        /// The resource, or `config` for the stack's own config.
        resource: String,
        /// What is wrong.
        #[source]
        source: ValidationError,
    },
    /// Two resources share a logical name.
    #[error("{stack}: resource name {resource:?} is declared twice")]
    DuplicateResource {
        /// The stack.
        stack: String,
        /// The name.
        resource: String,
    },
    /// A resource refers to a resource that is not declared in the stack.
    #[error("{stack}/{resource}: refers to {reference}, which is not declared in this stack")]
    DanglingRef {
        /// The stack.
        stack: String,
        /// The resource holding the reference.
        resource: String,
        /// The reference, `resource.output`.
        reference: String,
    },
    /// A resource refers to another stack's resource, but its stack does not list that stack in
    /// [`Stack::references`](crate::Stack::references) (which keeps the producer from being destroyed
    /// under it).
    #[error(
        "{stack}/{resource}: refers to {reference}, but stack {stack} does not list that stack in its references"
    )]
    UndeclaredReference {
        /// The stack.
        stack: String,
        /// The resource holding the reference.
        resource: String,
        /// The reference, `stack/resource.output`.
        reference: String,
    },
    /// A reference to another stack's resource that its stack has not recorded.
    #[error(
        "{stack}/{resource}: refers to {reference}, which is not recorded (apply that stack first)"
    )]
    MissingExternal {
        /// The stack.
        stack: String,
        /// The resource holding the reference.
        resource: String,
        /// The reference, `stack/resource.output`.
        reference: String,
    },
    /// In a [`StackGroup`](crate::StackGroup), a resource was not applied because the resource of
    /// another stack that it refers to was never produced: that stack failed or stopped first.
    #[error(
        "{stack}/{resource}: not applied: {reference} was not produced (stack {producer} stopped first; see its error)"
    )]
    DependencyFailed {
        /// The stack.
        stack: String,
        /// The resource that was not applied.
        resource: String,
        /// The reference it waited for, `stack/resource.output`.
        reference: String,
        /// The stack that did not produce it.
        producer: String,
    },
    /// In a [`StackGroup`](crate::StackGroup), a stack was not applied because another member could
    /// not start (invalid inputs, a reference cycle between members): nothing was called.
    #[error("{stack}: not applied, because {member}, in the same group, cannot be applied: {why}")]
    GroupMemberInvalid {
        /// The stack.
        stack: String,
        /// The member that cannot be applied.
        member: String,
        /// Why.
        why: String,
    },
    /// The references form a cycle.
    #[error("{stack}: dependency cycle among {}", resources.join(", "))]
    Cycle {
        /// The stack.
        stack: String,
        /// The resources on or behind the cycle.
        resources: Vec<String>,
    },
    /// State holds a resource kind that the stack did not register: it cannot be read or deleted.
    #[error("{stack}/{resource}: kind {kind} is not registered by this stack")]
    UnknownKind {
        /// The stack.
        stack: String,
        /// The resource.
        resource: String,
        /// The kind recorded.
        kind: String,
    },
    /// The stack declares a kind that its [`Stack::register`](crate::Stack::register) leaves
    /// out: once recorded, a resource of that kind could not be deleted from state alone. A bug of
    /// the stack's code, caught on its first preview.
    #[error(
        "{stack}: declares resources of kind {kind}, which Stack::register does not list (destroy from \
         state alone could not delete them): add it to register"
    )]
    UnregisteredKind {
        /// The stack.
        stack: String,
        /// The kind declared.
        kind: String,
    },
    /// Inputs could not be serialised.
    #[error("{stack}/{resource}: cannot serialise inputs")]
    Serialize {
        /// The stack.
        stack: String,
        /// The resource.
        resource: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A resource operation failed.
    #[error("{stack}/{resource}: {action} failed: {source}")]
    Resource {
        /// The stack.
        stack: String,
        /// The resource.
        resource: String,
        /// `create`, `update`, `read`, `delete` or `find`.
        action: &'static str,
        /// What went wrong.
        #[source]
        source: Box<ResourceError>,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The state was applied to another account or region than the current credentials'.
    #[error(
        "{stack}: state was applied to {recorded}, but the current credentials are for {current}; refusing before any change (use the state of that target, or other credentials)"
    )]
    ProviderMismatch {
        /// The stack.
        stack: String,
        /// The account and region recorded in state.
        recorded: ProviderInfo,
        /// The account and region of the current credentials.
        current: ProviderInfo,
    },
    /// Finding out which account the credentials belong to failed.
    #[error("cannot determine the AWS account of the current credentials: {0}")]
    Identity(#[source] AwsError),
    /// The engine was built without something the operation needs.
    #[error("engine not configured: {0}")]
    NotConfigured(String),
    /// A referenced stack has no recorded state.
    #[error("stack {stack} has no recorded state (apply it first)")]
    StackNotFound {
        /// The stack.
        stack: String,
    },
    /// An import names a resource the state already records.
    #[error(
        "{stack}/{resource} is already managed (recorded in state); nothing was imported (destroy it, or remove it from the stack, to import another)"
    )]
    AlreadyManaged {
        /// The stack.
        stack: String,
        /// The resource's logical name.
        resource: String,
    },
    /// An import's id names nothing that exists.
    #[error("{stack}/{resource}: no {kind} {id:?} exists; nothing was imported")]
    ImportNotFound {
        /// The stack.
        stack: String,
        /// The resource's logical name.
        resource: String,
        /// Its kind.
        kind: String,
        /// The id, name or ARN given.
        id: String,
    },
    /// A stack's recorded outputs were applied to another account or region than the consumer's.
    #[error(
        "stack {stack}: its outputs were applied to {producer}, but this consumer runs in {consumer}; refusing to use another account's or region's resources"
    )]
    ForeignOutputs {
        /// The producer.
        stack: String,
        /// Where the producer was applied.
        producer: ProviderInfo,
        /// Where the consumer runs.
        consumer: ProviderInfo,
    },
    /// A stack's recorded outputs have a newer schema than the consumer was built with.
    #[error(
        "stack {stack}: its outputs have schema version {found}, newer than the {supported} this consumer reads (upgrade the consumer)"
    )]
    NewerOutputs {
        /// The producer.
        stack: String,
        /// The schema version recorded.
        found: u32,
        /// The newest this consumer reads (`Stack::OUTPUTS_SCHEMA`).
        supported: u32,
    },
    /// A stack's recorded outputs are not of the expected type.
    #[error("stack {stack}: recorded outputs do not match {expected}: {source}")]
    IncompatibleOutputs {
        /// The stack.
        stack: String,
        /// The Rust type expected.
        expected: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// Building the stack's outputs from its resources failed.
    #[error("{stack}: cannot build outputs: {source}")]
    Outputs {
        /// The stack.
        stack: String,
        /// What failed.
        #[source]
        source: Box<ResourceError>,
    },
    /// A stack cannot be destroyed while other stacks reference it.
    #[error("stack {stack} is referenced by {}; destroy those first", consumers.join(", "))]
    ReferencedBy {
        /// The stack.
        stack: String,
        /// The stacks that reference it.
        consumers: Vec<String>,
    },
    /// The plan breaks a mandatory policy: nothing was changed.
    #[error("{stack}: {} refused by policy, nothing was changed: {}", count(violations.len()), list(violations))]
    PolicyViolation {
        /// The stack whose run was refused.
        stack: String,
        /// The mandatory violations (of every stack of a group, checked as one).
        violations: Vec<crate::policy::Violation>,
    },
    /// The run's [`Approver`](crate::engine::Approver) declined its plans: nothing was changed.
    #[error("{stack}: the plan was not approved; nothing was changed")]
    Declined {
        /// The stack.
        stack: String,
    },
    /// The run was cancelled; in-flight operations finished and were recorded.
    #[error(
        "{stack}: cancelled; {completed} operations completed and recorded, {remaining} not started"
    )]
    Cancelled {
        /// The stack.
        stack: String,
        /// Operations that completed.
        completed: usize,
        /// Operations never started.
        remaining: usize,
    },
}

impl Error {
    /// A stack's own config is invalid ([`Error::Invalid`] with resource `config`): what a
    /// [`Stack::declare`](crate::Stack::declare) returns when its config does not validate.
    pub fn invalid_config(stack: &str, source: ValidationError) -> Self {
        Self::Invalid {
            stack: stack.to_owned(),
            resource: "config".into(),
            source,
        }
    }

    /// Whether a resource's wait ended because its run was cancelled.
    pub fn is_cancelled_wait(&self) -> bool {
        matches!(self, Self::Resource { source, .. } if matches!(**source, ResourceError::Cancelled))
    }

    /// The AWS error code behind this error, if there is one.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Self::Resource { source, .. } | Self::Outputs { source, .. } => source.aws_code(),
            Self::Identity(e) => e.code.as_deref(),
            _ => None,
        }
    }
}

/// "1 mandatory violation", "2 mandatory violations".
fn count(n: usize) -> String {
    format!("{n} mandatory violation{}", if n == 1 { "" } else { "s" })
}

/// The violations, `; `-separated.
fn list(violations: &[crate::policy::Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_aws_codes() {
        let c = |code| classify(Some(code), Some(400));
        assert_eq!(c("InvalidVpcID.NotFound"), ErrorClass::NotFound);
        assert_eq!(c("NoSuchEntity"), ErrorClass::NotFound);
        assert_eq!(c("ClusterNotFoundException"), ErrorClass::NotFound);
        assert_eq!(c("ObjectNotFoundException"), ErrorClass::NotFound);
        assert_eq!(c("Throttling"), ErrorClass::Throttling);
        assert_eq!(c("RequestLimitExceeded"), ErrorClass::Throttling);
        assert_eq!(c("EntityAlreadyExists"), ErrorClass::Conflict);
        assert_eq!(c("DependencyViolation"), ErrorClass::Conflict);
        assert_eq!(c("InvalidParameterValue"), ErrorClass::Validation);
        assert_eq!(c("MalformedPolicyDocument"), ErrorClass::Validation);
        assert_eq!(c("ConcurrentModification"), ErrorClass::EventualConsistency);
        assert_eq!(c("AccessDenied"), ErrorClass::Other);
        assert_eq!(classify(None, Some(503)), ErrorClass::Transient);
        assert_eq!(classify(Some("Weird"), Some(500)), ErrorClass::Transient);
        assert_eq!(c("Resource.AlreadyAssociated"), ErrorClass::Conflict);
        assert!(ErrorClass::Throttling.is_retryable());
        assert!(!ErrorClass::Validation.is_retryable());
    }

    #[test]
    fn codes_are_classified_by_their_suffixes_and_prefixes_too() {
        let c = |code| classify(Some(code), Some(400));
        assert_eq!(c("DBInstanceNotFound"), ErrorClass::NotFound);
        assert_eq!(c("InvalidSubnetID.NotFound"), ErrorClass::NotFound);
        assert_eq!(c("ClientException"), ErrorClass::Validation);
        assert_eq!(c("MissingParameter"), ErrorClass::Validation);
        assert_eq!(c("InvalidGroup.InUse"), ErrorClass::Conflict);
        assert_eq!(c("RequestTimeout"), ErrorClass::Transient);
    }

    #[test]
    fn a_timeout_or_a_dispatch_failure_is_transient_whatever_else_it_says() {
        use aws_smithy_runtime_api::client::result::SdkError;
        let timeout: SdkError<aws_smithy_types::error::ErrorMetadata, HttpResponse> =
            SdkError::timeout_error("no answer");
        let e = AwsError::from_sdk("CreateVpc", timeout);
        assert_eq!(e.class, ErrorClass::Transient);
        assert_eq!((e.code, e.status), (None, None));
        assert_eq!(e.operation, "CreateVpc");
    }

    #[test]
    fn not_found_means_gone_to_reads_and_done_to_deletes() {
        let gone = || {
            Err::<u8, _>(ResourceError::Aws(aws(
                Some("NoSuchEntity"),
                ErrorClass::NotFound,
            )))
        };
        let other = || {
            Err::<u8, _>(ResourceError::Aws(aws(
                Some("AccessDenied"),
                ErrorClass::Other,
            )))
        };
        assert!(aws(None, ErrorClass::NotFound).is_not_found());
        assert!(!aws(None, ErrorClass::Conflict).is_not_found());
        assert!(gone().unwrap_err().is_not_found());
        assert!(!other().unwrap_err().is_not_found());
        assert!(!ResourceError::missing("Op", "x").is_not_found());
        assert_eq!(gone().gone_is_none().unwrap(), None);
        assert_eq!(Ok::<u8, ResourceError>(7).gone_is_none().unwrap(), Some(7));
        assert!(other().gone_is_none().is_err());
        assert!(gone().gone_is_ok().is_ok());
        assert!(other().gone_is_ok().is_err());
    }

    #[test]
    fn without_a_code_the_http_status_decides() {
        assert_eq!(classify(None, Some(404)), ErrorClass::NotFound);
        assert_eq!(classify(None, Some(429)), ErrorClass::Throttling);
        assert_eq!(classify(None, Some(500)), ErrorClass::Transient);
        assert_eq!(classify(None, Some(503)), ErrorClass::Transient);
        assert_eq!(
            classify(None, None),
            ErrorClass::Transient,
            "no response at all"
        );
        assert_eq!(classify(None, Some(400)), ErrorClass::Other);
        assert_eq!(classify(None, Some(403)), ErrorClass::Other);
        assert_eq!(classify(Some("Weird"), Some(400)), ErrorClass::Other);
    }

    fn aws(code: Option<&str>, class: ErrorClass) -> AwsError {
        AwsError {
            operation: "Op".into(),
            code: code.map(str::to_owned),
            message: None,
            status: None,
            class,
            source: "x".into(),
        }
    }

    #[test]
    fn already_exists_is_a_conflict_that_names_the_thing_as_existing() {
        for code in [
            "EntityAlreadyExists",
            "ResourceAlreadyExistsException",
            "InvalidGroup.Duplicate",
            "RouteAlreadyExists",
            "Resource.AlreadyAssociated",
            "DuplicateLoadBalancerName",
            "DuplicateTargetGroupName",
            "DuplicateListener",
            "PriorityInUse",
        ] {
            let e = aws(Some(code), classify(Some(code), Some(400)));
            assert!(e.is_already_exists(), "{code}");
            assert!(e.outcome_unknown(), "{code}");
        }
        for code in [
            "DependencyViolation",
            "DeleteConflict",
            "ResourceInUse",
            "DuplicateTagKeys",
        ] {
            let e = aws(Some(code), ErrorClass::Conflict);
            assert!(!e.is_already_exists(), "{code}");
            assert!(!e.outcome_unknown(), "{code}");
        }
        // The class decides first: an "already exists" code in another class is not one.
        assert!(!aws(Some("EntityAlreadyExists"), ErrorClass::Other).is_already_exists());
        assert!(!aws(None, ErrorClass::Conflict).is_already_exists());
    }

    #[test]
    fn only_transient_failures_and_already_exists_leave_the_outcome_unknown() {
        assert!(aws(None, ErrorClass::Transient).outcome_unknown());
        for class in [
            ErrorClass::NotFound,
            ErrorClass::Throttling,
            ErrorClass::EventualConsistency,
            ErrorClass::Validation,
            ErrorClass::Other,
        ] {
            assert!(!aws(Some("X"), class).outcome_unknown(), "{class:?}");
        }
        let unknown = ResourceError::Aws(aws(None, ErrorClass::Transient));
        assert!(unknown.outcome_unknown());
        assert!(!ResourceError::missing("Op", "x").outcome_unknown());
    }

    #[test]
    fn the_aws_code_is_found_through_wrappers() {
        let e = ResourceError::Aws(aws(Some("InternalError"), ErrorClass::Transient));
        assert_eq!(e.aws_code(), Some("InternalError"));
        let wrapped = ResourceError::OutcomeUnknown {
            source: Box::new(e),
        };
        assert_eq!(wrapped.aws_code(), Some("InternalError"));
        assert_eq!(ResourceError::Cancelled.aws_code(), None);
        let err = Error::Resource {
            stack: "s".into(),
            resource: "r".into(),
            action: "create",
            source: Box::new(wrapped),
        };
        assert_eq!(err.aws_code(), Some("InternalError"));
        let identity = Error::Identity(aws(Some("ExpiredToken"), ErrorClass::Other));
        assert_eq!(identity.aws_code(), Some("ExpiredToken"));
        assert_eq!(Error::NotConfigured("x".into()).aws_code(), None);
    }

    #[test]
    fn a_cancelled_wait_is_told_from_a_failure() {
        let of = |source| Error::Resource {
            stack: "s".into(),
            resource: "r".into(),
            action: "create",
            source: Box::new(source),
        };
        assert!(of(ResourceError::Cancelled).is_cancelled_wait());
        assert!(!of(ResourceError::missing("Op", "x")).is_cancelled_wait());
        let cancelled = Error::Cancelled {
            stack: "s".into(),
            completed: 0,
            remaining: 1,
        };
        assert!(!cancelled.is_cancelled_wait());
    }
}
