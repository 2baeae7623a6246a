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
//!                                      // instance's token, given to AWS before the call, and
//!                                      // "answered": true once AWS answered it with an error
//!       "deposed": [{"kind": "..", "inputs": {..}, "outputs": {..}, "instance": "5f0c...",
//!                    "pending": {"op": "delete", ..}}]   // replaced instances not yet deleted
//!     }
//!   }
//! }
//! ```
//! The engine writes an intent (`pending`) before every mutating call and the result after it, so a
//! crash leaves a record of what may exist; the next run heals it (`find` by the instance token's tag,
//! or the natural key, before a create, over the settle window counted from `since` unless
//! `answered`). Fields added since version 1 was first written (`instance`, a deposed instance's
//! `pending`, `answered`) are optional: older files read as before.
//!
//! # Journal
//! Between two whole writes, a store with a [`Journal`] keeps each step as one JSON line, a
//! [`Change`]: `{"serial": 43, "resource": "ecs-vpc", "record": {...}}` (`"record": null` when the
//! resource was forgotten). The first change of a run also carries the run's [`Header`] (`"header":
//! {"provider": {..}, "references": [..], ..}`: what the run records of the stack as a whole), so
//! that no step is durable without it. The engine writes the whole document at the end of a run;
//! until then, a step costs one resource's record, not the whole state, and concurrent steps share
//! one flush. Reading a stack returns the document with the journal's
//! changes newer than its serial applied; a last line without its newline (cut short by a crash,
//! never flushed) is ignored. [`LocalStateStore`] keeps it in `<stack>.journal`.
//!
//! # Stores
//! [`StateStore`] is the seam. [`LocalStateStore`] (a directory, the default: one person, one
//! machine), [`S3StateStore`] (a bucket: a team and its deploy bots, locked with S3's conditional
//! writes) and [`MemoryStateStore`] (tests) implement it. Only a [`StackLock`] holder writes a stack's
//! state; the lock records who holds it ([`LockInfo`]), shown to whoever is refused.
//!
//! # Stack names
//! A stack's name becomes a file or object name, so it is checked ([`validate_stack_name`]) by the
//! engine before anything else and by every store: letters, digits, `-` and `_`.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{StateError, ValidationError};
use crate::types::BoxFuture;
use crate::types::ProviderInfo;

pub use crate::types::LockInfo;

mod local;
mod memory;
mod s3;

pub use local::{DEFAULT_BACKUPS, LocalStateStore};
pub use memory::MemoryStateStore;
pub use s3::S3StateStore;

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
    /// The version of the outputs' schema ([`Stack::OUTPUTS_SCHEMA`](crate::Stack::OUTPUTS_SCHEMA))
    /// that wrote `outputs`; absent in state written before it was recorded (read as 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_schema: Option<u32>,
    /// The producers whose outputs this stack's inputs were read from, as they were when read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub producers: Vec<Producer>,
    /// The resources, by logical name.
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceState>,
    /// The environment of the engine that applied it ([`EngineBuilder::environment`](crate::EngineBuilder::environment)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// When the last `up` that recorded a change finished writing it (seconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<u64>,
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
            outputs_schema: None,
            producers: Vec::new(),
            resources: BTreeMap::new(),
            environment: None,
            applied_at: None,
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
    /// When the current instance was recorded as made (RFC 3339): until the settle window has
    /// passed, a read that does not see it yet (AWS's describes are eventually consistent) reads
    /// again rather than report it gone. `None` for an imported instance and in older state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made: Option<String>,
    /// A mutating call started and not yet recorded as finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// Previous instances of a replaced resource, still to be deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deposed: Vec<Deposed>,
}

impl ResourceState {
    /// A record of kind `kind` with `inputs`, nothing made yet: no outputs, dependencies, instance,
    /// intent or deposed instances.
    pub fn new(kind: impl Into<String>, inputs: Value) -> Self {
        Self {
            kind: kind.into(),
            inputs,
            outputs: None,
            dependencies: Vec::new(),
            uses: Vec::new(),
            instance: None,
            made: None,
            pending: None,
            deposed: Vec::new(),
        }
    }
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
    /// For a create: its answer came back, an error. Whatever it made was made by calls that were
    /// answered, so nothing of it can land late: the next run looks for it briefly instead of over
    /// the whole settle window. False while the outcome is unknown (no answer, a timeout, a kill).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub answered: bool,
}

/// The mutating operations the engine records intents for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
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

/// Another stack whose outputs a stack read: which one, where it was applied, and which write of its
/// state. Recorded in the consumer's state ([`StackState::producers`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producer {
    /// The producer's stack name.
    pub stack: String,
    /// The account and region it was applied to.
    pub provider: Option<ProviderInfo>,
    /// Its state's serial when its outputs were read; `None` for a member of the same
    /// [`StackGroup`](crate::StackGroup) run, whose outputs are read as they are applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// The schema version of its outputs as recorded; `None` for a member of the same group run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<u32>,
}

/// The exclusive right to write one stack's state.
///
/// The engine calls [`release`](Self::release) when its run ends, however it ends; dropping a lock
/// that was not released releases it as well as a synchronous drop can (a local file lock at once; a
/// store that must call out does it on the async runtime, when there is one).
pub trait StackLock: Send + Sync + fmt::Debug {
    /// Writes the stack's state atomically and durably.
    fn write<'a>(&'a self, state: &'a StackState) -> BoxFuture<'a, Result<(), StateError>>;
    /// Removes the stack's state (after a complete destroy).
    fn remove(&self) -> BoxFuture<'_, Result<(), StateError>>;
    /// Gives the lock up. A second call does nothing.
    fn release(&self) -> BoxFuture<'_, Result<(), StateError>>;
    /// The store's journal, when it keeps one: the engine then records each step as one [`Change`]
    /// appended to it (the first carrying the run's [`Header`]), and writes the whole state at the end
    /// of a run. Without one
    /// (the default), every step writes the whole state: fine for a remote store whose writes cost
    /// a round trip anyway, quadratic in bytes for a large stack.
    fn journal(&self) -> Option<&dyn Journal> {
        None
    }
}

/// One step's record: resource `resource`'s whole record after the step (`None`: forgotten), under
/// the state's new `serial`. A journal line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The state's serial after this change.
    pub serial: u64,
    /// The resource's logical name.
    pub resource: String,
    /// Its record after the change; `None` when it was removed from the state.
    pub record: Option<ResourceState>,
    /// What the run records of the stack as a whole, carried by the first change it journals (so
    /// that the change is never durable without it, at no write of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Box<Header>>,
}

/// What a run records of its stack as a whole, beside the resources: where it applies and what it
/// reads. The first [`Change`] of a run carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// [`StackState::provider`].
    pub provider: Option<ProviderInfo>,
    /// [`StackState::environment`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// [`StackState::references`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// [`StackState::producers`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub producers: Vec<Producer>,
}

impl Header {
    /// `state`'s header.
    pub fn of(state: &StackState) -> Self {
        Self {
            provider: state.provider.clone(),
            environment: state.environment.clone(),
            references: state.references.clone(),
            producers: state.producers.clone(),
        }
    }

    /// Records it in `state`.
    pub(crate) fn apply_to(self, state: &mut StackState) {
        let Self {
            provider,
            environment,
            references,
            producers,
        } = self;
        state.provider = provider;
        state.environment = environment;
        state.references = references;
        state.producers = producers;
    }
}

impl Change {
    /// Applies the change to `state` (what replaying a journal does): its header, then its record.
    /// A change older than the state (its serial not above the state's) is already in it and
    /// changes nothing.
    pub fn apply_to(self, state: &mut StackState) {
        if self.serial <= state.serial {
            return;
        }
        state.serial = self.serial;
        if let Some(header) = self.header {
            header.apply_to(state);
        }
        match self.record {
            Some(r) => {
                state.resources.insert(self.resource, r);
            }
            None => {
                state.resources.remove(&self.resource);
            }
        }
    }
}

/// An append-only log of [`Change`]s between two whole writes of a stack's state, so that the bytes
/// written stay linear in the work done. A [`StackLock::write`] of the whole state compacts it
/// (the journal starts empty again); [`StateStore::read`] returns the state with the journal
/// replayed, so a crash is healed from it as from a whole write.
///
/// The engine calls [`append`](Self::append) with the run's state held (so changes are appended in
/// the order they were made) and [`sync`](Self::sync) after letting it go, so concurrent steps share
/// one flush (group commit).
pub trait Journal: Send + Sync {
    /// Appends `change`; returns a ticket for [`sync`](Self::sync). It should not wait for the
    /// change to be durable.
    ///
    /// # Errors
    /// When the change cannot be appended.
    fn append(&self, change: &Change) -> Result<u64, StateError>;
    /// Returns once every change up to `ticket` is durable. One flush serves every change appended
    /// before it started.
    fn sync(&self, ticket: u64) -> BoxFuture<'_, Result<(), StateError>>;
}

/// Where stack state is kept.
pub trait StateStore: Send + Sync + fmt::Debug {
    /// Takes the stack's exclusive lock for `operation` (`up`, `destroy`, ..., recorded for whoever
    /// is refused), or fails at once with [`StateError::Locked`] naming the holder.
    fn lock<'a>(
        &'a self,
        stack: &'a str,
        operation: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn StackLock>, StateError>>;
    /// Reads the stack's state; `None` when nothing is recorded.
    fn read<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<StackState>, StateError>>;
    /// The names of the stacks with recorded state.
    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>>;
    /// Who holds the stack's lock now; `None` when nobody does.
    fn holder<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<LockInfo>, StateError>>;
    /// Removes the stack's lock whoever holds it, and returns who did (`None`: it was not held).
    /// For a holder that died without releasing it; a live holder's next write is then refused if
    /// someone else wrote in between ([`StateError::Conflict`]).
    ///
    /// # Errors
    /// [`StateError::Locked`] from a store whose locks die with their holder (a live holder's lock
    /// is not removed: stop that process).
    fn force_unlock<'a>(
        &'a self,
        stack: &'a str,
    ) -> BoxFuture<'a, Result<Option<LockInfo>, StateError>>;
    /// Where the state is, for messages: a directory, `s3://bucket/prefix`, `memory`.
    fn location(&self) -> String;
}

/// Checks a stack name before it becomes a file or object name: 1 to 100 characters, each a letter,
/// a digit, `-` or `_`.
///
/// ```
/// use platform_core::state::validate_stack_name;
/// validate_stack_name("network").unwrap();
/// assert_eq!(
///     validate_stack_name("../iam").unwrap_err().to_string(),
///     "invalid stack name = \"../iam\": '.' is not allowed (letters, digits and -_ are)"
/// );
/// ```
///
/// # Errors
/// A [`ValidationError`] naming the value and its first bad character.
pub fn validate_stack_name(name: &str) -> Result<(), ValidationError> {
    crate::validate::validate_name("stack name", name, 100, "-_")
}

/// Parses a state document read from `location`, refusing newer versions and corrupt documents.
///
/// # Errors
/// [`StateError::Corrupt`] (with no backup named: the store adds it) or
/// [`StateError::UnsupportedVersion`].
pub fn parse_state(location: &str, bytes: &[u8]) -> Result<StackState, StateError> {
    let corrupt = |source| StateError::Corrupt {
        location: location.to_owned(),
        backup: None,
        source,
    };
    /// The document's version alone: read first, so that a newer document is refused, not misread;
    /// the rest is skipped without being built.
    #[derive(serde::Deserialize)]
    struct Version {
        version: Option<Value>,
    }
    let Version { version } = serde_json::from_slice(bytes).map_err(corrupt)?;
    if let Some(found) = version.as_ref().and_then(Value::as_u64)
        && found > u64::from(STATE_VERSION)
    {
        return Err(StateError::UnsupportedVersion {
            location: location.to_owned(),
            found,
            supported: STATE_VERSION,
        });
    }
    serde_json::from_slice(bytes).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};

    use super::*;

    #[tokio::test]
    async fn a_simulated_crash_refuses_the_nth_write_from_now_and_every_later_one() {
        let store = MemoryStateStore::new();
        let lock = store.lock("s", "up").await.unwrap();
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

    fn change(serial: u64, resource: &str, value: Option<&str>) -> Change {
        Change {
            serial,
            resource: resource.to_owned(),
            record: value.map(|v| ResourceState::new("fake", serde_json::json!({ "value": v }))),
            header: None,
        }
    }

    /// Appends `changes` through `lock`'s journal and waits for each to be durable.
    async fn journaled(lock: &dyn StackLock, changes: &[Change]) {
        let journal = lock.journal().expect("the store keeps a journal");
        for c in changes {
            let ticket = journal.append(c).unwrap();
            journal.sync(ticket).await.unwrap();
        }
    }

    fn value_of(state: &StackState, resource: &str) -> String {
        state.resources[resource].inputs["value"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[tokio::test]
    async fn a_step_is_one_journal_line_read_back_replayed_and_a_whole_write_compacts_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let lock = store.lock("s", "up").await.unwrap();
        lock.write(&sample(1)).await.unwrap();
        let changes = [
            change(2, "a", Some("a1")),
            change(3, "b", Some("b1")),
            change(4, "a", Some("a2")),
            change(5, "b", None),
        ];
        journaled(lock.as_ref(), &changes).await;
        let journal = dir.path().join("s.journal");
        let text = fs::read_to_string(&journal).unwrap();
        assert_eq!(text.lines().count(), 4, "one line per step: {text}");
        // The document is untouched; a read replays the journal over it.
        assert_eq!(
            parse_state("s.json", &fs::read(dir.path().join("s.json")).unwrap())
                .unwrap()
                .serial,
            1
        );
        let read = store.read("s").await.unwrap().unwrap();
        assert_eq!(read.serial, 5);
        assert_eq!(value_of(&read, "a"), "a2");
        assert!(!read.resources.contains_key("b"), "b was removed");
        // A whole write holds everything: the journal is gone, and stays gone.
        lock.write(&read).await.unwrap();
        assert!(!journal.exists());
        assert_eq!(store.read("s").await.unwrap(), Some(read));
    }

    /// A first run's journal, with no document under it: its first line's header is read back as
    /// the stack's, and a line without one leaves the header as it was.
    #[tokio::test]
    async fn a_journal_without_a_document_reads_back_with_the_header_of_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let lock = store.lock("s", "up").await.unwrap();
        let header = Header {
            provider: Some(ProviderInfo {
                account_id: "123456789012".into(),
                region: "eu-west-1".into(),
            }),
            environment: Some("prod".into()),
            references: vec!["iam".into()],
            producers: vec![Producer {
                stack: "iam".into(),
                provider: None,
                serial: Some(7),
                schema: None,
            }],
        };
        let mut first = change(1, "a", Some("a1"));
        first.header = Some(Box::new(header.clone()));
        journaled(lock.as_ref(), &[first, change(2, "b", Some("b1"))]).await;
        drop(lock);
        assert!(!dir.path().join("s.json").exists());
        let read = store.read("s").await.unwrap().unwrap();
        assert_eq!(Header::of(&read), header);
        assert_eq!((read.serial, value_of(&read, "b").as_str()), (2, "b1"));
        // A header older than the state is in it already: nothing of it is applied again.
        let mut stale = change(2, "c", Some("c1"));
        stale.header = Some(Box::new(Header::of(&StackState::new("s"))));
        let mut again = read.clone();
        stale.apply_to(&mut again);
        assert_eq!(again, read);
    }

    #[tokio::test]
    async fn a_run_that_dies_leaves_its_journal_and_the_next_reader_sees_every_synced_step() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let lock = store.lock("s", "up").await.unwrap();
        lock.write(&sample(1)).await.unwrap();
        journaled(lock.as_ref(), &[change(2, "a", Some("a1"))]).await;
        // The process dies: no release (dropping the OS lock is what its death does).
        drop(lock);
        // A line cut short by the crash (never synced, so never acknowledged) is ignored.
        let journal = dir.path().join("s.journal");
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        std::io::Write::write_all(&mut f, br#"{"serial":3,"resource":"b","rec"#).unwrap();
        let read = store.read("s").await.unwrap().unwrap();
        assert_eq!((read.serial, value_of(&read, "a")), (2, "a1".to_owned()));
        assert!(!read.resources.contains_key("b"));
        // The next holder compacts what it found when it lets go.
        let lock = store.lock("s", "up").await.unwrap();
        lock.release().await.unwrap();
        assert!(!journal.exists(), "compacted on release");
        assert_eq!(store.read("s").await.unwrap(), Some(read));
    }

    #[tokio::test]
    async fn a_bad_line_before_the_end_of_a_journal_is_corruption_naming_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        store
            .lock("s", "up")
            .await
            .unwrap()
            .write(&sample(1))
            .await
            .unwrap();
        let good = serde_json::to_string(&change(2, "a", Some("a1"))).unwrap();
        fs::write(dir.path().join("s.journal"), format!("{{oops\n{good}\n")).unwrap();
        let err = store.read("s").await.unwrap_err();
        assert!(
            matches!(&err, StateError::Corrupt { location, .. } if location.ends_with("s.journal")),
            "{err}"
        );
    }

    #[test]
    fn changes_already_in_the_document_are_not_applied_again() {
        // A crash between the whole write and the journal's removal leaves both.
        let mut state = sample(5);
        change(4, "a", Some("old")).apply_to(&mut state);
        assert!(state.resources.is_empty());
        assert_eq!(state.serial, 5);
        change(6, "a", Some("new")).apply_to(&mut state);
        assert_eq!((state.serial, value_of(&state, "a")), (6, "new".to_owned()));
    }

    #[tokio::test]
    async fn concurrent_steps_are_all_durable_and_removing_the_state_removes_its_journal() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let lock: std::sync::Arc<dyn StackLock> =
            std::sync::Arc::from(store.lock("s", "up").await.unwrap());
        lock.write(&sample(1)).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50u64 {
            let lock = lock.clone();
            tasks.spawn(async move {
                let journal = lock.journal().unwrap();
                let ticket = journal
                    .append(&change(2 + i, &format!("r{i}"), Some("v")))
                    .unwrap();
                journal.sync(ticket).await.unwrap();
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        let read = store.read("s").await.unwrap().unwrap();
        assert_eq!(read.resources.len(), 50);
        assert_eq!(read.serial, 51);
        lock.remove().await.unwrap();
        assert_eq!(store.read("s").await.unwrap(), None);
        assert!(!dir.path().join("s.journal").exists());
    }

    #[tokio::test]
    async fn the_memory_store_applies_each_change_and_counts_it_as_a_write() {
        let store = MemoryStateStore::new();
        let lock = store.lock("s", "up").await.unwrap();
        lock.write(&sample(1)).await.unwrap();
        journaled(lock.as_ref(), &[change(2, "a", Some("a1"))]).await;
        assert_eq!(store.writes(), 2);
        store.crash_at_write(1);
        let journal = lock.journal().unwrap();
        assert!(journal.append(&change(3, "a", Some("a2"))).is_err());
        let read = store.read("s").await.unwrap().unwrap();
        assert_eq!((read.serial, value_of(&read, "a")), (2, "a1".to_owned()));
    }

    #[tokio::test]
    async fn local_store_round_trips_with_owner_only_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path().join("state")).unwrap();
        assert_eq!(store.read("network").await.unwrap(), None);
        let lock = store.lock("network", "up").await.unwrap();
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
        let held = a.lock("iam", "up").await.unwrap();
        let err = b.lock("iam", "up").await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, StateError::Locked { .. }), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains("up by ") && msg.contains(" pid "), "{msg}");
        // The holder is a live process of this host: named, never forced away.
        let forced = b.force_unlock("iam").await.unwrap_err().to_string();
        assert!(forced.contains("a live process"), "{forced}");
        assert_eq!(
            b.holder("iam").await.unwrap().unwrap().pid,
            std::process::id()
        );
        drop(held);
        // Released: the holder's name is wiped from the lock file, and the lock can be taken again.
        assert_eq!(fs::read(dir.path().join("iam.lock")).unwrap(), b"");
        b.lock("iam", "up").await.unwrap();
    }

    #[test]
    fn a_crash_between_temp_file_and_rename_leaves_the_old_state_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("network.json");
        let old = serde_json::to_vec(&sample(1)).unwrap();
        local::write_atomic(&path, &old, || Ok(())).unwrap();
        let new = serde_json::to_vec(&sample(2)).unwrap();
        let crash = local::write_atomic(&path, &new, || Err(std::io::Error::other("power cut")));
        assert!(crash.is_err());
        let read = parse_state("network.json", &fs::read(&path).unwrap()).unwrap();
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

    #[tokio::test]
    async fn a_stack_removed_and_written_again_under_one_lock_keeps_its_backups_working() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        assert_eq!(store.location(), dir.path().display().to_string());
        assert_eq!(MemoryStateStore::new().location(), "memory");
        let lock = store.lock("app", "up").await.unwrap();
        // Nothing recorded yet: removing is a no-op, not an error.
        lock.remove().await.unwrap();
        lock.write(&sample(1)).await.unwrap();
        lock.write(&sample(2)).await.unwrap();
        lock.remove().await.unwrap();
        lock.remove().await.unwrap();
        assert_eq!(store.read("app").await.unwrap(), None);
        // Written again after its removal (the version before it is gone: nothing to keep).
        lock.write(&sample(3)).await.unwrap();
        lock.write(&sample(4)).await.unwrap();
        assert_eq!(store.read("app").await.unwrap(), Some(sample(4)));
        let kept: Vec<String> = store
            .backup_files("app")
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(kept, ["3.json", "2.json", "1.json"]);
    }

    #[tokio::test]
    async fn an_io_error_other_than_not_found_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        // A directory where the state file should be, a file where the backups should be.
        fs::create_dir(dir.path().join("app.json")).unwrap();
        fs::create_dir(dir.path().join("backups")).unwrap();
        fs::write(dir.path().join("backups/app"), b"not a directory").unwrap();
        assert!(matches!(
            store.read("app").await,
            Err(StateError::Io { .. })
        ));
        assert!(matches!(
            store.backup_files("app"),
            Err(StateError::Io { .. })
        ));
        // Without backups, `remove` goes straight to the state file.
        let bare = LocalStateStore::open(dir.path()).unwrap().backups(0);
        let lock = bare.lock("app", "up").await.unwrap();
        assert!(matches!(lock.remove().await, Err(StateError::Io { .. })));
    }

    #[tokio::test]
    async fn a_backup_left_under_the_same_serial_is_replaced_by_this_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("backups/app")).unwrap();
        fs::write(
            dir.path().join("backups/app/1.json"),
            b"left by a failed write",
        )
        .unwrap();
        let lock = store.lock("app", "up").await.unwrap();
        lock.write(&sample(1)).await.unwrap();
        lock.write(&sample(2)).await.unwrap();
        let one = fs::read(dir.path().join("backups/app/1.json")).unwrap();
        assert_eq!(parse_state("1.json", &one).unwrap(), sample(1));
    }

    #[tokio::test]
    async fn a_lock_file_from_an_older_build_or_not_yet_written_is_still_shown() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let path = dir.path().join("net.lock");
        let file = fs::File::create(&path).unwrap();
        file.try_lock().unwrap();
        // Held, nothing written yet.
        let err = store.lock("net", "up").await.unwrap_err().to_string();
        assert_eq!(
            err,
            "stack net is locked by another process (it has not written its name yet)"
        );
        // Held by an older build, which wrote a line of text.
        fs::write(&path, "host old pid 7 since 2026-01-01T00:00:00Z\n").unwrap();
        let err = store.lock("net", "up").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "stack net is locked by host old pid 7 since 2026-01-01T00:00:00Z"
        );
        assert!(matches!(err, StateError::Locked { info: None, .. }));
        let holder = store.holder("net").await.unwrap().unwrap();
        assert_eq!(
            holder.operation,
            "host old pid 7 since 2026-01-01T00:00:00Z"
        );
        drop(file);
        assert_eq!(store.holder("net").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_last_n_versions_are_kept_and_a_corrupt_file_names_the_newest_good_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap().backups(3);
        let lock = store.lock("network", "up").await.unwrap();
        for serial in 1..=6 {
            lock.write(&sample(serial)).await.unwrap();
        }
        lock.release().await.unwrap();
        // The five earlier versions were kept in turn; the newest three remain.
        let kept = store.backup_files("network").unwrap();
        let names: Vec<String> = kept
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["5.json", "4.json", "3.json"]);
        let five = parse_state("5", &fs::read(&kept[0]).unwrap()).unwrap();
        assert_eq!(five, sample(5));
        // The newest backup is itself damaged: the error names the newest good one.
        fs::write(&kept[0], b"{").unwrap();
        fs::write(
            dir.path().join("network.json"),
            b"{\"version\": 1, \"stack\": ",
        )
        .unwrap();
        let err = store.read("network").await.unwrap_err();
        let StateError::Corrupt { backup, .. } = &err else {
            panic!("{err}");
        };
        let expected = format!(
            "cp {} {}",
            kept[1].display(),
            dir.path().join("network.json").display()
        );
        assert_eq!(backup.as_deref(), Some(expected.as_str()));
        assert!(err.to_string().contains(&expected), "{err}");
        // Doing what it says restores the state.
        fs::copy(&kept[1], dir.path().join("network.json")).unwrap();
        assert_eq!(store.read("network").await.unwrap(), Some(sample(4)));
    }

    #[tokio::test]
    async fn without_backups_a_corrupt_file_says_none_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap().backups(0);
        let lock = store.lock("iam", "up").await.unwrap();
        lock.write(&sample(1)).await.unwrap();
        lock.write(&sample(2)).await.unwrap();
        assert_eq!(
            store.backup_files("iam").unwrap(),
            Vec::<std::path::PathBuf>::new()
        );
        fs::write(dir.path().join("iam.json"), b"garbage").unwrap();
        let err = store.read("iam").await.unwrap_err().to_string();
        assert!(err.contains("no good earlier copy is kept"), "{err}");
    }

    #[tokio::test]
    async fn stack_names_that_would_escape_the_store_are_refused_by_every_store() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStateStore::open(dir.path().join("state")).unwrap();
        let memory = MemoryStateStore::new();
        for bad in ["../iam", "a/b", "", ".hidden", "x y"] {
            for store in [&local as &dyn StateStore, &memory] {
                let err = store.lock(bad, "up").await.unwrap_err();
                assert!(matches!(err, StateError::Invalid(_)), "{bad}: {err}");
                assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
                assert!(matches!(store.read(bad).await, Err(StateError::Invalid(_))));
            }
        }
        // Nothing was created outside the state directory.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test]
    async fn a_forced_memory_lock_is_not_released_by_its_old_holder_and_its_writes_conflict() {
        let store = MemoryStateStore::new();
        let old = store.lock("net", "up").await.unwrap();
        let forced = store.force_unlock("net").await.unwrap().unwrap();
        assert_eq!(forced.operation, "up");
        assert_eq!(store.force_unlock("net").await.unwrap(), None);
        let new = store.lock("net", "destroy").await.unwrap();
        new.write(&sample(1)).await.unwrap();
        let err = old.write(&sample(9)).await.unwrap_err();
        assert!(matches!(err, StateError::Conflict { .. }), "{err}");
        old.release().await.unwrap();
        drop(old);
        // The new holder's lock survived the old one's release and drop.
        assert_eq!(
            store.holder("net").await.unwrap().unwrap().operation,
            "destroy"
        );
        assert_eq!(store.read("net").await.unwrap(), Some(sample(1)));
        new.release().await.unwrap();
        assert_eq!(store.holder("net").await.unwrap(), None);
    }

    #[test]
    fn a_holder_names_this_host_and_this_process_with_its_start_time() {
        let me = LockInfo::current("destroy");
        assert_eq!(me.host, gethostname::gethostname().to_string_lossy());
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.operation, "destroy");
        assert_eq!(me.id.len(), 32);
        assert_ne!(me.id, LockInfo::current("destroy").id);
        if cfg!(target_os = "linux") {
            // Field 22 of /proc/self/stat, counted after the command name's closing parenthesis.
            let stat = fs::read_to_string("/proc/self/stat").unwrap();
            let after = stat.rsplit_once(") ").unwrap().1;
            let start: u64 = after.split(' ').nth(19).unwrap().parse().unwrap();
            assert_eq!(me.pid_start, Some(start));
        }
    }

    #[test]
    fn a_lock_holder_on_this_host_is_dead_only_when_its_process_is_gone() {
        let me = LockInfo::current("up");
        assert!(!me.is_provably_dead());
        assert!(!me.describe().contains("gone"), "{}", me.describe());
        let reused = LockInfo {
            pid_start: me.pid_start.map(|s| s + 1),
            ..me.clone()
        };
        assert_eq!(reused.is_provably_dead(), cfg!(target_os = "linux"));
        let elsewhere = LockInfo {
            host: format!("{}-other", me.host),
            pid: u32::MAX,
            ..me.clone()
        };
        assert!(!elsewhere.is_provably_dead());
        let gone = LockInfo {
            pid: u32::MAX - 1,
            ..me
        };
        assert_eq!(gone.is_provably_dead(), cfg!(target_os = "linux"));
        if cfg!(target_os = "linux") {
            assert!(
                gone.describe().ends_with("; that process is gone)"),
                "{}",
                gone.describe()
            );
        }
    }
}
