//! An in-memory store, for tests and for tools that keep state elsewhere.

use crate::sync::Locked;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::{Change, Journal, StackLock, StackState, StateStore, validate_stack_name};
use crate::error::StateError;
use crate::types::{BoxFuture, LockInfo};

/// An in-memory store, for tests and for tools that keep state elsewhere.
#[derive(Clone, Debug, Default)]
pub struct MemoryStateStore {
    inner: Arc<Mutex<MemoryInner>>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    states: HashMap<String, StackState>,
    locked: HashMap<String, LockInfo>,
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
        self.inner.locked().writes
    }

    /// Simulates a process killed at a step boundary: the `n`-th write from now (1 = the next) and
    /// every write after it fail, so nothing more is recorded, until [`revive`](Self::revive). What
    /// the run did in the cloud before that stays done.
    pub fn crash_at_write(&self, n: u64) {
        let mut inner = self.inner.locked();
        inner.crash_at = Some(inner.writes + n.max(1));
    }

    /// Ends a simulated crash: writes are taken again (the next process).
    pub fn revive(&self) {
        self.inner.locked().crash_at = None;
    }
}

#[derive(Debug)]
struct MemoryLock {
    store: MemoryStateStore,
    stack: String,
    id: String,
}

impl MemoryLock {
    /// Removes the lock if it is still this one (not forced and taken by another since).
    fn unlock(&self) {
        let mut inner = self.store.inner.locked();
        if inner
            .locked
            .get(&self.stack)
            .is_some_and(|l| l.id == self.id)
        {
            inner.locked.remove(&self.stack);
        }
    }
}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        self.unlock();
    }
}

impl MemoryLock {
    /// Counts a write (a whole one or a journal append) once it is allowed: refused when the lock
    /// was forced, or when a simulated crash has happened.
    fn admit(&self, inner: &mut MemoryInner) -> Result<(), StateError> {
        if inner
            .locked
            .get(&self.stack)
            .is_none_or(|l| l.id != self.id)
        {
            // The lock was forced: whoever holds it now may have written.
            return Err(StateError::Conflict {
                stack: self.stack.clone(),
                location: format!("memory:{}", self.stack),
            });
        }
        if inner.crash_at.is_some_and(|at| inner.writes + 1 >= at) {
            return Err(StateError::Io {
                path: PathBuf::from(format!("memory:{}", self.stack)),
                source: std::io::Error::other("simulated crash: nothing more is recorded"),
            });
        }
        inner.writes += 1;
        Ok(())
    }
}

/// The memory store's journal applies each change to the kept state at once (it is already as
/// durable as it will be): a step costs one resource's record, not a copy of the whole state.
impl Journal for MemoryLock {
    fn append(&self, change: &Change) -> Result<u64, StateError> {
        let mut inner = self.store.inner.locked();
        self.admit(&mut inner)?;
        let writes = inner.writes;
        let state = inner
            .states
            .entry(self.stack.clone())
            .or_insert_with(|| StackState::new(&self.stack));
        change.clone().apply_to(state);
        Ok(writes)
    }

    fn sync(&self, _ticket: u64) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async { Ok(()) })
    }
}

impl StackLock for MemoryLock {
    fn write<'a>(&'a self, state: &'a StackState) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let mut inner = self.store.inner.locked();
            self.admit(&mut inner)?;
            inner.states.insert(self.stack.clone(), state.clone());
            Ok(())
        })
    }

    fn journal(&self) -> Option<&dyn Journal> {
        Some(self)
    }

    fn remove(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let mut inner = self.store.inner.locked();
            inner.states.remove(&self.stack);
            Ok(())
        })
    }

    fn release(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            self.unlock();
            Ok(())
        })
    }
}

impl StateStore for MemoryStateStore {
    fn lock<'a>(
        &'a self,
        stack: &'a str,
        operation: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn StackLock>, StateError>> {
        Box::pin(async move {
            validate_stack_name(stack)?;
            let mut inner = self.inner.locked();
            if let Some(holder) = inner.locked.get(stack) {
                return Err(StateError::Locked {
                    stack: stack.to_owned(),
                    holder: format!("{holder} (in memory)"),
                    info: Some(Box::new(holder.clone())),
                });
            }
            let info = LockInfo::current(operation);
            let id = info.id.clone();
            inner.locked.insert(stack.to_owned(), info);
            Ok(Box::new(MemoryLock {
                store: self.clone(),
                stack: stack.to_owned(),
                id,
            }) as Box<dyn StackLock>)
        })
    }

    fn read<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<StackState>, StateError>> {
        Box::pin(async move {
            validate_stack_name(stack)?;
            Ok(self.inner.locked().states.get(stack).cloned())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
        Box::pin(async move {
            let mut names: Vec<String> = self.inner.locked().states.keys().cloned().collect();
            names.sort();
            Ok(names)
        })
    }

    fn holder<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<LockInfo>, StateError>> {
        Box::pin(async move { Ok(self.inner.locked().locked.get(stack).cloned()) })
    }

    fn force_unlock<'a>(
        &'a self,
        stack: &'a str,
    ) -> BoxFuture<'a, Result<Option<LockInfo>, StateError>> {
        Box::pin(async move { Ok(self.inner.locked().locked.remove(stack)) })
    }

    fn location(&self) -> String {
        "memory".into()
    }
}
