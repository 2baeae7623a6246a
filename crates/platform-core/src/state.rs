//! State: what the engine recorded about each stack, and where it is kept.
//!
//! # Format (version 1)
//! One JSON document per stack:
//! ```json
//! {
//!   "version": 1,                      // format version; a newer one is refused, never overwritten
//!   "stack": "network",
//!   "serial": 42,                      // +1 on every write
//!   "provider": {"account_id": "123456789012", "region": "us-east-1"},
//!   "references": ["iam"],             // stacks whose outputs this stack consumes
//!   "outputs": { ... },                // the stack's typed outputs, once applied
//!   "resources": {
//!     "ecs-vpc": {
//!       "kind": "ec2:vpc",
//!       "inputs": { ... },             // resolved inputs last applied (or read, after a refresh)
//!       "outputs": { ... },            // null while a create is in flight
//!       "dependencies": ["..."],       // resources whose outputs the inputs used
//!       "uses": [{"stack": "network", "resource": "public-subnet-0"}],  // other stacks' resources the
//!                                      // inputs used (absent when none): destroyed in a group, those wait
//!       "instance": "5f0c...",         // the current instance's token (absent for state written before
//!                                      // tokens): tagged `platform:instance` on the resource
//!       "pending": {"op": "create", "since": "2026-11-26T02:00:00Z", "instance": "9a1b..."},
//!                                      // an intent not yet completed; a create names the new
//!                                      // instance's token, given to AWS before the call
//!       "deposed": [{"kind": "..", "inputs": {..}, "outputs": {..}, "instance": "5f0c...",
//!                    "pending": {"op": "delete", ..}}]   // replaced instances not yet deleted
//!     }
//!   }
//! }
//! ```
//! The engine writes an intent (`pending`) before every mutating call and the result after it, so a
//! crash leaves a record of what may exist; the next run heals it (`find` by the instance token's tag,
//! or the natural key, before a create). Fields added since version 1 was first written (`instance`,
//! a deposed instance's `pending`) are optional: older files read as before.
//!
//! # Stores
//! [`StateStore`] is the seam; [`LocalStateStore`] (a directory, the default) and [`MemoryStateStore`]
//! (tests) implement it. Only a [`StackLock`] holder writes a stack's state.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StateError;
use crate::provider::ProviderInfo;
use crate::resource::BoxFuture;

/// The state format version this build writes and the newest it reads.
pub const STATE_VERSION: u32 = 1;

/// Everything recorded about one stack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StackState {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// The stack's name.
    pub stack: String,
    /// Incremented on every write.
    pub serial: u64,
    /// The account and region the stack was applied to.
    pub provider: Option<ProviderInfo>,
    /// Stacks whose outputs this stack consumes.
    #[serde(default)]
    pub references: Vec<String>,
    /// The stack's outputs, once applied.
    pub outputs: Option<Value>,
    /// The resources, by logical name.
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceState>,
}

impl StackState {
    /// An empty state for stack `stack`.
    pub fn new(stack: impl Into<String>) -> Self {
        Self {
            version: STATE_VERSION,
            stack: stack.into(),
            serial: 0,
            provider: None,
            references: Vec::new(),
            outputs: None,
            resources: BTreeMap::new(),
        }
    }

    /// Whether nothing is recorded (no resource, no outputs).
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty() && self.outputs.is_none()
    }
}

/// What is recorded about one resource.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceState {
    /// The resource kind.
    pub kind: String,
    /// The resolved inputs last applied.
    pub inputs: Value,
    /// The outputs; `None` while a create is in flight or after one was interrupted.
    pub outputs: Option<Value>,
    /// The resources this one depends on.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// The resources of other stacks whose outputs its inputs used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uses: Vec<StackResource>,
    /// The token of the current instance (tagged on it as `platform:instance`), so that it is told
    /// apart from a replaced twin; `None` in state written before tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// A mutating call started and not yet recorded as finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// Previous instances of a replaced resource, still to be deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deposed: Vec<Deposed>,
}

/// A resource of a stack, named from another stack.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct StackResource {
    /// The stack.
    pub stack: String,
    /// The resource's logical name.
    pub resource: String,
}

/// An intent recorded before a mutating call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The operation.
    pub op: PendingOp,
    /// When it started (RFC 3339).
    pub since: String,
    /// For a create: the token of the instance being created, recorded before the call so that a
    /// create whose outcome is unknown is settled by finding exactly that instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// The mutating operations the engine records intents for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingOp {
    /// A create.
    Create,
    /// An in-place update.
    Update,
    /// A delete.
    Delete,
}

/// A replaced resource's old instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deposed {
    /// Its kind.
    pub kind: String,
    /// Its inputs.
    pub inputs: Value,
    /// Its outputs.
    pub outputs: Value,
    /// Its instance token, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// A delete of it started and not yet recorded as finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
}

/// The exclusive right to write one stack's state; released on drop.
pub trait StackLock: Send + Sync + fmt::Debug {
    /// Writes the stack's state atomically and durably.
    fn write<'a>(&'a self, state: &'a StackState) -> BoxFuture<'a, Result<(), StateError>>;
    /// Removes the stack's state (after a complete destroy).
    fn remove(&self) -> BoxFuture<'_, Result<(), StateError>>;
}

/// Where stack state is kept.
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Takes the stack's exclusive lock, or fails at once with [`StateError::Locked`] naming the holder.
    fn lock<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Box<dyn StackLock>, StateError>>;
    /// Reads the stack's state; `None` when nothing is recorded.
    fn read<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<StackState>, StateError>>;
    /// The names of the stacks with recorded state.
    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>>;
}

/// Parses a state document, refusing newer versions and corrupt files.
///
/// # Errors
/// [`StateError::Corrupt`] or [`StateError::UnsupportedVersion`].
pub fn parse_state(path: &Path, bytes: &[u8]) -> Result<StackState, StateError> {
    let corrupt = |source| StateError::Corrupt {
        path: path.to_owned(),
        source,
    };
    let value: Value = serde_json::from_slice(bytes).map_err(corrupt)?;
    if let Some(found) = value.get("version").and_then(Value::as_u64)
        && found > u64::from(STATE_VERSION)
    {
        return Err(StateError::UnsupportedVersion {
            path: path.to_owned(),
            found,
            supported: STATE_VERSION,
        });
    }
    serde_json::from_value(value).map_err(corrupt)
}

/// The default store: a directory with `<stack>.json` and `<stack>.lock` per stack.
///
/// - Writes are atomic: a temporary file in the same directory, fsync, rename, fsync of the directory.
/// - Files are created readable and writable by the owner only (0600), the directory 0700.
/// - The lock is an OS file lock (`flock`), so it is released if the process dies; the lock file holds
///   the holder's host, pid and start time, shown to whoever is refused.
#[derive(Clone, Debug)]
pub struct LocalStateStore {
    dir: PathBuf,
}

impl LocalStateStore {
    /// Opens (creating if needed) the state directory `dir`.
    ///
    /// # Errors
    /// [`StateError::Io`] when the directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        let io = |source| StateError::Io {
            path: dir.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
        }
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state_path(&self, stack: &str) -> PathBuf {
        self.dir.join(format!("{stack}.json"))
    }

    fn lock_sync(&self, stack: &str) -> Result<LocalLock, StateError> {
        let path = self.dir.join(format!("{stack}.lock"));
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StateError::Locked {
                    stack: stack.to_owned(),
                    holder: if holder.is_empty() {
                        "another process (it has not written its name yet)".into()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let holder = format!(
            "host {} pid {} since {}",
            gethostname::gethostname().to_string_lossy(),
            std::process::id(),
            humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(holder.as_bytes()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(LocalLock {
            file: Mutex::new(Some(file)),
            state_path: self.state_path(stack),
            dir: self.dir.clone(),
        })
    }
}

/// Writes `bytes` to `path` atomically: temp file in the same directory (0600), fsync, `before_rename`
/// (a test seam standing for a crash), rename, fsync of the directory.
pub(crate) fn write_atomic(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce() -> std::io::Result<()>,
) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |source| StateError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".state-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    before_rename().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[derive(Debug)]
struct LocalLock {
    file: Mutex<Option<File>>,
    state_path: PathBuf,
    dir: PathBuf,
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        if let Some(file) = self.file.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = file.set_len(0);
            let _ = file.unlock();
        }
    }
}

impl StackLock for LocalLock {
    fn write<'a>(&'a self, state: &'a StackState) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let bytes = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
                path: self.state_path.clone(),
                source,
            })?;
            let path = self.state_path.clone();
            tokio::task::spawn_blocking(move || write_atomic(&path, &bytes, || Ok(())))
                .await
                .map_err(|e| StateError::Io {
                    path: self.state_path.clone(),
                    source: std::io::Error::other(e),
                })?
        })
    }

    fn remove(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            match fs::remove_file(&self.state_path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StateError::Io {
                        path: self.state_path.clone(),
                        source,
                    });
                }
            }
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })
    }
}

impl StateStore for LocalStateStore {
    fn lock<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Box<dyn StackLock>, StateError>> {
        Box::pin(async move { Ok(Box::new(self.lock_sync(stack)?) as Box<dyn StackLock>) })
    }

    fn read<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<StackState>, StateError>> {
        Box::pin(async move {
            let path = self.state_path(stack);
            match fs::read(&path) {
                Ok(bytes) => parse_state(&path, &bytes).map(Some),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(StateError::Io { path, source }),
            }
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
        Box::pin(async move {
            let entries = fs::read_dir(&self.dir).map_err(|source| StateError::Io {
                path: self.dir.clone(),
                source,
            })?;
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_suffix(".json")
                        .filter(|s| !s.starts_with('.'))
                        .map(str::to_owned)
                })
                .collect();
            names.sort();
            Ok(names)
        })
    }
}

/// An in-memory store, for tests and for tools that keep state elsewhere.
#[derive(Clone, Debug, Default)]
pub struct MemoryStateStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    states: HashMap<String, StackState>,
    locked: HashMap<String, String>,
    writes: u64,
    crash_at: Option<u64>,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many writes the store has taken (to check that an intent was recorded).
    pub fn writes(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).writes
    }

    /// Simulates a process killed at a step boundary: the `n`-th write from now (1 = the next) and
    /// every write after it fail, so nothing more is recorded, until [`revive`](Self::revive). What
    /// the run did in the cloud before that stays done.
    pub fn crash_at_write(&self, n: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.crash_at = Some(inner.writes + n.max(1));
    }

    /// Ends a simulated crash: writes are taken again (the next process).
    pub fn revive(&self) {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .crash_at = None;
    }
}

#[derive(Debug)]
struct MemoryLock {
    store: MemoryStateStore,
    stack: String,
}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        self.store
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .locked
            .remove(&self.stack);
    }
}

impl StackLock for MemoryLock {
    fn write<'a>(&'a self, state: &'a StackState) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut inner = self.store.inner.lock().unwrap_or_else(|p| p.into_inner());
            if inner.crash_at.is_some_and(|at| inner.writes + 1 >= at) {
                return Err(StateError::Io {
                    path: PathBuf::from(format!("memory:{}", self.stack)),
                    source: std::io::Error::other("simulated crash: nothing more is recorded"),
                });
            }
            inner.writes += 1;
            inner.states.insert(self.stack.clone(), state.clone());
            Ok(())
        })
    }

    fn remove(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let mut inner = self.store.inner.lock().unwrap_or_else(|p| p.into_inner());
            inner.states.remove(&self.stack);
            Ok(())
        })
    }
}

impl StateStore for MemoryStateStore {
    fn lock<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Box<dyn StackLock>, StateError>> {
        Box::pin(async move {
            let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(holder) = inner.locked.get(stack) {
                return Err(StateError::Locked {
                    stack: stack.to_owned(),
                    holder: holder.clone(),
                });
            }
            inner.locked.insert(
                stack.to_owned(),
                format!("pid {} (in memory)", std::process::id()),
            );
            Ok(Box::new(MemoryLock {
                store: self.clone(),
                stack: stack.to_owned(),
            }) as Box<dyn StackLock>)
        })
    }

    fn read<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<StackState>, StateError>> {
        Box::pin(async move {
            Ok(self
                .inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .states
                .get(stack)
                .cloned())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
        Box::pin(async move {
            let mut names: Vec<String> = self
                .inner
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .states
                .keys()
                .cloned()
                .collect();
            names.sort();
            Ok(names)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_simulated_crash_refuses_the_nth_write_from_now_and_every_later_one() {
        let store = MemoryStateStore::new();
        let lock = store.lock("s").await.unwrap();
        for serial in 1..=3 {
            lock.write(&sample(serial)).await.unwrap();
        }
        store.crash_at_write(2);
        lock.write(&sample(4)).await.unwrap();
        assert!(lock.write(&sample(5)).await.is_err());
        assert!(lock.write(&sample(6)).await.is_err());
        assert_eq!(store.writes(), 4);
        assert_eq!(store.read("s").await.unwrap(), Some(sample(4)));
        store.revive();
        lock.write(&sample(7)).await.unwrap();
        assert_eq!(store.writes(), 5);
    }

    fn sample(serial: u64) -> StackState {
        let mut s = StackState::new("network");
        s.serial = serial;
        s
    }

    #[tokio::test]
    async fn local_store_round_trips_with_owner_only_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path().join("state")).unwrap();
        assert_eq!(store.read("network").await.unwrap(), None);
        let lock = store.lock("network").await.unwrap();
        lock.write(&sample(3)).await.unwrap();
        assert_eq!(store.read("network").await.unwrap(), Some(sample(3)));
        assert_eq!(store.list().await.unwrap(), vec!["network".to_string()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(store.dir().join("network.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = fs::metadata(store.dir().join("network.lock"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        lock.remove().await.unwrap();
        assert_eq!(store.read("network").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_second_locker_is_refused_and_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = LocalStateStore::open(dir.path()).unwrap();
        let b = LocalStateStore::open(dir.path()).unwrap();
        let held = a.lock("iam").await.unwrap();
        let err = b.lock("iam").await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::Locked { .. }), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("host "), "{msg}");
        drop(held);
        // Released: the holder's name is wiped from the lock file, and the lock can be taken again.
        assert_eq!(fs::read(dir.path().join("iam.lock")).unwrap(), b"");
        b.lock("iam").await.unwrap();
    }

    #[test]
    fn a_crash_between_temp_file_and_rename_leaves_the_old_state_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network.json");
        let old = serde_json::to_vec(&sample(1)).unwrap();
        write_atomic(&path, &old, || Ok(())).unwrap();
        let new = serde_json::to_vec(&sample(2)).unwrap();
        let crash = write_atomic(&path, &new, || Err(std::io::Error::other("power cut")));
        assert!(crash.is_err());
        let read = parse_state(&path, &fs::read(&path).unwrap()).unwrap();
        assert_eq!(read.serial, 1);
        // The temporary file is gone (dropped) and is never taken for a stack.
        let store = LocalStateStore::open(dir.path()).unwrap();
        let names = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(store.list())
            .unwrap();
        assert_eq!(names, vec!["network".to_string()]);
    }

    #[tokio::test]
    async fn corrupt_and_newer_state_are_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("a.json"), b"{not json").unwrap();
        let err = store.read("a").await.unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        fs::write(
            dir.path().join("b.json"),
            br#"{"version": 99, "stack": "b", "serial": 1}"#,
        )
        .unwrap();
        let err = store.read("b").await.unwrap_err();
        assert!(
            matches!(err, StateError::UnsupportedVersion { found: 99, .. }),
            "{err}"
        );
        assert_eq!(fs::read(dir.path().join("a.json")).unwrap(), b"{not json");
    }
}
