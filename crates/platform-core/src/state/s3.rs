//! A store in an S3 bucket, shared by a team and its deploy bots: no lock table, only S3's
//! conditional writes (as Terraform and OpenTofu 1.10+ do).
//!
//! - `<prefix>/<stack>.json`: the stack's state. Every write carries `If-Match` with the ETag this
//!   lock holder last saw (`If-None-Match: *` for a stack with no state yet), so a concurrent writer
//!   is detected ([`StateError::Conflict`]) and never overwritten.
//! - `<prefix>/<stack>.lock`: the lock, created with `If-None-Match: *` (only one creator wins) and
//!   holding its holder's [`LockInfo`]. It is deleted when the holder releases it, on success and on
//!   failure; a holder killed with -9 leaves it, shown to the next run, and removed by
//!   [`force_unlock`](StateStore::force_unlock).
//! - A versioned bucket keeps every write: a corrupt state's error names the newest good version and
//!   the command that restores it.
//!
//! Every call may be retried by the SDK after a lost answer; each is safe to repeat: a lock create
//! refused because it already exists is ours when the lock holds our id, and a state write refused
//! because the ETag moved is ours when the object holds exactly our bytes.

use crate::sync::Locked;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use aws_types::SdkConfig;

use super::{StackLock, StackState, StateStore, parse_state, validate_stack_name};
use crate::error::{StateError, ValidationError};
use crate::types::{BoxFuture, LockInfo};

/// State in an S3 bucket: the layout and the locking protocol are described at the top of its source,
/// `crates/platform-core/src/state/s3.rs`.
///
/// ```no_run
/// # async fn f(aws: aws_types::SdkConfig) -> Result<(), platform_core::Error> {
/// use platform_core::{Engine, S3StateStore};
/// let store = S3StateStore::from_url(&aws, "s3://acme-platform-state/prod")?;
/// assert!(store.check().await?, "the bucket keeps versions");
/// let engine = Engine::builder(store).aws(aws).build();
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct S3StateStore {
    client: Client,
    bucket: String,
    prefix: String,
    take_over: bool,
}

impl S3StateStore {
    /// A store in `bucket` under `prefix` (may be empty), with the credentials, region and endpoint of
    /// `config`. An endpoint set in `config` (an emulator, MinIO) is addressed path-style.
    ///
    /// # Errors
    /// [`StateError::Invalid`] naming a bucket or prefix that S3 or this store cannot use.
    pub fn new(
        config: &SdkConfig,
        bucket: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Result<Self, StateError> {
        let bucket = bucket.into();
        let prefix = prefix.into().trim_matches('/').to_owned();
        validate_bucket(&bucket)?;
        validate_prefix(&prefix)?;
        let s3 = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .build();
        Ok(Self {
            client: Client::from_conf(s3),
            bucket,
            prefix,
            take_over: false,
        })
    }

    /// A store at `url`, `s3://BUCKET/PREFIX` (the prefix may be empty).
    ///
    /// # Errors
    /// [`StateError::Invalid`] for another form, or as [`new`](Self::new).
    pub fn from_url(config: &SdkConfig, url: &str) -> Result<Self, StateError> {
        let rest = url.strip_prefix("s3://").ok_or_else(|| {
            ValidationError::new("state", format!("{url:?}"), "expected s3://BUCKET/PREFIX")
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        Self::new(config, bucket, prefix)
    }

    /// Takes over a lock whose holder is [provably dead](LockInfo::is_provably_dead) (same host, its
    /// process gone), with a warning, instead of refusing. Off by default: a container that shares
    /// this host's name in another pid namespace would look dead.
    #[must_use]
    pub fn take_over_dead_locks(mut self, yes: bool) -> Self {
        self.take_over = yes;
        self
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The prefix (no leading or trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Checks that the bucket exists and can be read; returns whether it keeps versions (the
    /// history of every state write, and what restores a corrupt one).
    ///
    /// # Errors
    /// [`StateError::Backend`] when the bucket is missing or not readable with these credentials.
    pub async fn check(&self) -> Result<bool, StateError> {
        let location = format!("s3://{}", self.bucket);
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| {
                let missing = status(&e) == Some(404);
                let mut err = backend(location.clone(), "HeadBucket", e);
                if missing && let StateError::Backend { message, .. } = &mut err {
                    *message = format!(
                        "the bucket does not exist: create it, with versioning on (README: \"Team state in S3\") ({message})"
                    );
                }
                err
            })?;
        match self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(v) => Ok(v.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled)),
            // Some S3-compatible servers (moto 5.2.5) answer 200 under another root element than
            // `VersioningConfiguration`, which the SDK refuses to parse: read the status from it.
            Err(e) if status(&e) == Some(200) => Ok(e
                .raw_response()
                .and_then(|r| r.body().bytes())
                .is_some_and(|b| String::from_utf8_lossy(b).contains("<Status>Enabled</Status>"))),
            Err(e) => Err(backend(location, "GetBucketVersioning", e)),
        }
    }

    fn key(&self, stack: &str, ext: &str) -> String {
        if self.prefix.is_empty() {
            format!("{stack}.{ext}")
        } else {
            format!("{}/{stack}.{ext}", self.prefix)
        }
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// The object's bytes and ETag; `None` when it does not exist.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Option<String>)>, StateError> {
        get_object(&self.client, &self.bucket, key, None).await
    }

    /// The lock's holder and the lock object's ETag; `None` when it is not held.
    async fn get_lock(
        &self,
        stack: &str,
    ) -> Result<Option<(LockInfo, Option<String>)>, StateError> {
        let key = self.key(stack, "lock");
        let Some((bytes, etag)) = self.get(&key).await? else {
            return Ok(None);
        };
        let info = serde_json::from_slice(&bytes).unwrap_or_else(|_| LockInfo {
            id: String::new(),
            host: "unknown".into(),
            pid: 0,
            pid_start: None,
            user: "unknown".into(),
            operation: format!(
                "a holder that wrote no holder record ({} bytes)",
                bytes.len()
            ),
            since: "unknown".into(),
        });
        Ok(Some((info, etag)))
    }

    async fn lock_inner(&self, stack: &str, operation: &str) -> Result<S3Lock, StateError> {
        validate_stack_name(stack)?;
        let info = LockInfo::current(operation);
        let body = serde_json::to_vec_pretty(&info).map_err(|source| StateError::Corrupt {
            location: "lock".into(),
            backup: None,
            source,
        })?;
        let key = self.key(stack, "lock");
        let location = self.url(&key);
        for attempt in 1..=5u64 {
            let put = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .if_none_match("*")
                .content_type("application/json")
                .body(ByteStream::from(body.clone()))
                .send()
                .await;
            let refused = match put {
                Ok(_) => return self.held(stack, info).await,
                Err(e) if precondition_failed(&e) => e,
                // Two conditional writes of the same key at once: S3 asks to try again.
                Err(e) if status(&e) == Some(409) => {
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    continue;
                }
                Err(e) => return Err(backend(location, "PutObject", e)),
            };
            let Some((held, etag)) = self.get_lock(stack).await? else {
                // Released between our write and our read: try again.
                drop(refused);
                continue;
            };
            if held.id == info.id {
                // Our own create: its answer was lost and the SDK sent it again.
                return self.held(stack, info).await;
            }
            if self.take_over && held.is_provably_dead() {
                let mut put = self
                    .client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .content_type("application/json")
                    .body(ByteStream::from(body.clone()));
                if let Some(etag) = &etag {
                    put = put.if_match(etag);
                }
                match put.send().await {
                    Ok(_) => {
                        tracing::warn!(
                            stack,
                            "took over the lock of stack {stack} from {} (that process is gone)",
                            held.describe()
                        );
                        return self.held(stack, info).await;
                    }
                    Err(e) if precondition_failed(&e) || status(&e) == Some(404) => continue,
                    Err(e) => return Err(backend(location, "PutObject", e)),
                }
            }
            return Err(StateError::Locked {
                stack: stack.to_owned(),
                holder: held.describe(),
                info: Some(Box::new(held)),
            });
        }
        Err(StateError::Backend {
            location,
            operation: "PutObject",
            message: "the lock kept changing hands; try again".into(),
            source: "lock contention".into(),
        })
    }

    /// The lock is ours: notes the state's ETag as it is now, which every write must still match.
    async fn held(&self, stack: &str, info: LockInfo) -> Result<S3Lock, StateError> {
        let state_key = self.key(stack, "json");
        let etag = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&state_key)
            .send()
            .await
        {
            Ok(out) => out.e_tag().map(str::to_owned),
            Err(e) if status(&e) == Some(404) => None,
            Err(e) => {
                let err = backend(self.url(&state_key), "HeadObject", e);
                release_lock(
                    &self.client,
                    &self.bucket,
                    &self.key(stack, "lock"),
                    &info.id,
                )
                .await;
                return Err(err);
            }
        };
        Ok(S3Lock {
            inner: Arc::new(LockInner {
                client: self.client.clone(),
                bucket: self.bucket.clone(),
                stack: stack.to_owned(),
                state_key,
                lock_key: self.key(stack, "lock"),
                id: info.id,
                state_etag: Mutex::new(etag),
                released: AtomicBool::new(false),
            }),
        })
    }

    /// The newest earlier version of `key` that parses, as the command that restores it.
    async fn newest_good_version(&self, key: &str) -> Option<String> {
        let out = self
            .client
            .list_object_versions()
            .bucket(&self.bucket)
            .prefix(key)
            .send()
            .await
            .ok()?;
        let mut versions: Vec<_> = out
            .versions()
            .iter()
            .filter(|v| v.key() == Some(key) && v.is_latest() != Some(true))
            .collect();
        versions.sort_by(|a, b| b.last_modified().cmp(&a.last_modified()));
        for v in versions {
            let id = v.version_id()?;
            let Ok(Some((bytes, _))) = get_object(&self.client, &self.bucket, key, Some(id)).await
            else {
                continue;
            };
            if parse_state(key, &bytes).is_ok() {
                return Some(format!(
                    "aws s3api copy-object --bucket {b} --key {key} --copy-source '{b}/{key}?versionId={id}'",
                    b = self.bucket
                ));
            }
        }
        None
    }
}

impl StateStore for S3StateStore {
    fn lock<'a>(
        &'a self,
        stack: &'a str,
        operation: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn StackLock>, StateError>> {
        Box::pin(async move {
            Ok(Box::new(self.lock_inner(stack, operation).await?) as Box<dyn StackLock>)
        })
    }

    fn read<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<StackState>, StateError>> {
        Box::pin(async move {
            validate_stack_name(stack)?;
            let key = self.key(stack, "json");
            let Some((bytes, _)) = self.get(&key).await? else {
                return Ok(None);
            };
            match parse_state(&self.url(&key), &bytes) {
                Ok(state) => Ok(Some(state)),
                Err(StateError::Corrupt {
                    location, source, ..
                }) => Err(StateError::Corrupt {
                    location,
                    backup: self.newest_good_version(&key).await,
                    source,
                }),
                Err(e) => Err(e),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
        Box::pin(async move {
            let prefix = if self.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", self.prefix)
            };
            let mut names = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&prefix)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| backend(self.url(&prefix), "ListObjectsV2", e))?;
                names.extend(out.contents().iter().filter_map(|o| {
                    let name = o.key()?.strip_prefix(&prefix)?.strip_suffix(".json")?;
                    (!name.contains('/')).then(|| name.to_owned())
                }));
                match out.next_continuation_token() {
                    Some(t) if out.is_truncated() == Some(true) => token = Some(t.to_owned()),
                    _ => break,
                }
            }
            names.sort();
            Ok(names)
        })
    }

    fn holder<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<LockInfo>, StateError>> {
        Box::pin(async move {
            validate_stack_name(stack)?;
            Ok(self.get_lock(stack).await?.map(|(info, _)| info))
        })
    }

    fn force_unlock<'a>(
        &'a self,
        stack: &'a str,
    ) -> BoxFuture<'a, Result<Option<LockInfo>, StateError>> {
        Box::pin(async move {
            validate_stack_name(stack)?;
            let Some((info, _)) = self.get_lock(stack).await? else {
                return Ok(None);
            };
            let key = self.key(stack, "lock");
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| backend(self.url(&key), "DeleteObject", e))?;
            Ok(Some(info))
        })
    }

    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

#[derive(Debug)]
struct S3Lock {
    inner: Arc<LockInner>,
}

#[derive(Debug)]
struct LockInner {
    client: Client,
    bucket: String,
    stack: String,
    state_key: String,
    lock_key: String,
    /// Our holder record's id: the lock object is deleted only while it still holds it.
    id: String,
    /// The state object's ETag as this holder last saw it; `None`: no state object.
    state_etag: Mutex<Option<String>>,
    released: AtomicBool,
}

impl LockInner {
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

impl StackLock for S3Lock {
    fn write<'a>(&'a self, state: &'a StackState) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let l = &self.inner;
            let location = l.url(&l.state_key);
            let bytes = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
                location: location.clone(),
                backup: None,
                source,
            })?;
            let expected = l.state_etag.locked().clone();
            let put = l
                .client
                .put_object()
                .bucket(&l.bucket)
                .key(&l.state_key)
                .content_type("application/json")
                .body(ByteStream::from(bytes.clone()));
            let put = match &expected {
                Some(etag) => put.if_match(etag),
                None => put.if_none_match("*"),
            };
            let etag = match put.send().await {
                Ok(out) => out.e_tag().map(str::to_owned),
                Err(e) if precondition_failed(&e) => {
                    // Ours, if the object is exactly what we wrote (an answer lost, the call sent
                    // again); anyone else's write is never overwritten.
                    match get_object(&l.client, &l.bucket, &l.state_key, None).await? {
                        Some((found, etag)) if found == bytes => etag,
                        _ => {
                            return Err(StateError::Conflict {
                                stack: l.stack.clone(),
                                location,
                            });
                        }
                    }
                }
                Err(e) => return Err(backend(location, "PutObject", e)),
            };
            *l.state_etag.locked() = etag;
            Ok(())
        })
    }

    fn remove(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let l = &self.inner;
            l.client
                .delete_object()
                .bucket(&l.bucket)
                .key(&l.state_key)
                .send()
                .await
                .map_err(|e| backend(l.url(&l.state_key), "DeleteObject", e))?;
            *l.state_etag.locked() = None;
            Ok(())
        })
    }

    fn release(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let l = &self.inner;
            if l.released.swap(true, Ordering::SeqCst) {
                return Ok(());
            }
            match get_object(&l.client, &l.bucket, &l.lock_key, None).await? {
                Some((bytes, _)) if is_ours(&bytes, &l.id) => {
                    l.client
                        .delete_object()
                        .bucket(&l.bucket)
                        .key(&l.lock_key)
                        .send()
                        .await
                        .map_err(|e| backend(l.url(&l.lock_key), "DeleteObject", e))?;
                }
                // Forced away (and maybe taken by someone else since): not ours to delete.
                _ => {}
            }
            Ok(())
        })
    }
}

impl Drop for S3Lock {
    fn drop(&mut self) {
        let l = &self.inner;
        if l.released.swap(true, Ordering::SeqCst) {
            return;
        }
        // Not released by the engine (a panic, a dropped future): release it on the runtime, if any.
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let (client, bucket, key, id) = (
                    l.client.clone(),
                    l.bucket.clone(),
                    l.lock_key.clone(),
                    l.id.clone(),
                );
                handle.spawn(async move { release_lock(&client, &bucket, &key, &id).await });
            }
            Err(_) => tracing::warn!(
                "the lock of stack {} stays in s3://{}/{}: remove it with force-unlock",
                l.stack,
                l.bucket,
                l.lock_key
            ),
        }
    }
}

fn is_ours(lock: &[u8], id: &str) -> bool {
    serde_json::from_slice::<LockInfo>(lock).is_ok_and(|info| info.id == id)
}

/// Deletes the lock object if it still holds holder `id` (best effort: the next run names a lock
/// left behind).
async fn release_lock(client: &Client, bucket: &str, key: &str, id: &str) {
    if let Ok(Some((bytes, _))) = get_object(client, bucket, key, None).await
        && is_ours(&bytes, id)
    {
        let _ = client.delete_object().bucket(bucket).key(key).send().await;
    }
}

async fn get_object(
    client: &Client,
    bucket: &str,
    key: &str,
    version: Option<&str>,
) -> Result<Option<(Vec<u8>, Option<String>)>, StateError> {
    let location = format!("s3://{bucket}/{key}");
    let out = match client
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_version_id(version.map(str::to_owned))
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) if status(&e) == Some(404) => return Ok(None),
        Err(e) => return Err(backend(location, "GetObject", e)),
    };
    let etag = out.e_tag().map(str::to_owned);
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| StateError::Backend {
            location,
            operation: "GetObject",
            message: format!("reading the body: {e}"),
            source: Box::new(e),
        })?
        .into_bytes()
        .to_vec();
    Ok(Some((bytes, etag)))
}

fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

fn precondition_failed<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    status(e) == Some(412) || e.code() == Some("PreconditionFailed")
}

fn backend<E>(location: String, operation: &'static str, e: SdkError<E, HttpResponse>) -> StateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(&e).to_string(),
    };
    StateError::Backend {
        location,
        operation,
        message,
        source: Box::new(e),
    }
}

/// A bucket name S3 accepts: 3 to 63 lowercase letters, digits, `.` and `-`.
fn validate_bucket(bucket: &str) -> Result<(), ValidationError> {
    crate::validate::validate_name("bucket", bucket, 63, ".-")?;
    if bucket.len() < 3 || bucket.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ValidationError::new(
            "bucket",
            format!("{bucket:?}"),
            "S3 bucket names are 3 to 63 lowercase letters, digits, '.' and '-'",
        ));
    }
    Ok(())
}

/// A key prefix of path segments of letters, digits, `-`, `_` and `.`, none of them `.` or `..`.
fn validate_prefix(prefix: &str) -> Result<(), ValidationError> {
    if prefix.is_empty() {
        return Ok(());
    }
    crate::validate::validate_name("prefix", prefix, 512, "-_./")?;
    if prefix
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(ValidationError::new(
            "prefix",
            format!("{prefix:?}"),
            "empty, '.' and '..' path segments are not allowed",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_and_prefix_are_checked_before_any_call() {
        assert!(validate_bucket("acme-platform-state").is_ok());
        for bad in ["ab", "Acme", "a_b", "a b"] {
            let err = validate_bucket(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("teams/prod").is_ok());
        for bad in ["a//b", "../x", "a/./b", "a b"] {
            let err = validate_prefix(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid prefix"), "{err}");
        }
    }

    #[test]
    fn urls_give_bucket_and_prefix_and_keys_sit_under_it() {
        let config = SdkConfig::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .build();
        let s = S3StateStore::from_url(&config, "s3://state-bucket/teams/prod/").unwrap();
        assert_eq!((s.bucket(), s.prefix()), ("state-bucket", "teams/prod"));
        assert_eq!(s.key("network", "lock"), "teams/prod/network.lock");
        assert_eq!(s.location(), "s3://state-bucket/teams/prod");
        let s = S3StateStore::from_url(&config, "s3://state-bucket").unwrap();
        assert_eq!(s.key("iam", "json"), "iam.json");
        assert_eq!(s.location(), "s3://state-bucket");
        let err = S3StateStore::from_url(&config, "state-bucket/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected s3://BUCKET/PREFIX"), "{err}");
    }

    #[test]
    fn only_our_own_holder_record_is_ours() {
        let info = LockInfo::current("up");
        let bytes = serde_json::to_vec(&info).unwrap();
        assert!(is_ours(&bytes, &info.id));
        assert!(!is_ours(&bytes, "someone-else"));
        assert!(!is_ours(b"not json", &info.id));
    }
}
