//! The default store: a directory on this machine.

use crate::sync::Locked;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{Change, Journal, StackLock, StackState, StateStore, parse_state, validate_stack_name};
use crate::error::StateError;
use crate::types::{BoxFuture, LockInfo};

/// How many earlier versions of each stack's state [`LocalStateStore`] keeps by default.
pub const DEFAULT_BACKUPS: usize = 10;

/// The default store: a directory with `<stack>.json` and `<stack>.lock` per stack, and the last
/// versions of each stack's state in `backups/<stack>/<serial>.json`.
///
/// - Writes are atomic: a temporary file in the same directory, fsync, rename, fsync of the directory.
///   The version being replaced is kept as a backup first (a hard link: no copy), and only the newest
///   [`backups`](Self::backups) are kept. A corrupt state file's error names the newest good backup.
/// - Files are created readable and writable by the owner only (0600), the directories 0700.
/// - The lock is an OS file lock (`flock`), so it is released if the process dies; the lock file holds
///   the holder's [`LockInfo`], shown to whoever is refused.
#[derive(Clone, Debug)]
pub struct LocalStateStore {
    dir: PathBuf,
    backups: usize,
}

impl LocalStateStore {
    /// Opens (creating if needed) the state directory `dir`.
    ///
    /// # Errors
    /// [`StateError::Io`] when the directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        create_private_dir(&dir)?;
        Ok(Self {
            dir,
            backups: DEFAULT_BACKUPS,
        })
    }

    /// Keeps the last `n` versions of each stack's state (0: none). Default [`DEFAULT_BACKUPS`].
    #[must_use]
    pub fn backups(mut self, n: usize) -> Self {
        self.backups = n;
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn state_path(&self, stack: &str) -> PathBuf {
        self.dir.join(format!("{stack}.json"))
    }

    fn journal_path(&self, stack: &str) -> PathBuf {
        self.dir.join(format!("{stack}.journal"))
    }

    fn backup_dir(&self, stack: &str) -> PathBuf {
        self.dir.join("backups").join(stack)
    }

    /// The kept versions of `stack`'s state, newest first.
    ///
    /// # Errors
    /// [`StateError::Io`] when the backup directory cannot be read.
    pub fn backup_files(&self, stack: &str) -> Result<Vec<PathBuf>, StateError> {
        validate_stack_name(stack)?;
        backups_newest_first(&self.backup_dir(stack))
    }

    fn open_lock_file(&self, stack: &str) -> Result<(File, PathBuf), StateError> {
        let path = self.dir.join(format!("{stack}.lock"));
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(|source| StateError::Io {
            path: path.clone(),
            source,
        })?;
        Ok((file, path))
    }

    fn lock_sync(&self, stack: &str, operation: &str) -> Result<LocalLock, StateError> {
        validate_stack_name(stack)?;
        let (mut file, path) = self.open_lock_file(stack)?;
        let io = |source| StateError::Io {
            path: path.clone(),
            source,
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(locked(stack, read_holder(&mut file)));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let info = LockInfo::current(operation);
        let text = serde_json::to_vec(&info).map_err(|e| io(std::io::Error::other(e)))?;
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(&text).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(LocalLock(Arc::new(LockState {
            stack: stack.to_owned(),
            file: Mutex::new(Some(file)),
            journal: LocalJournal::new(self.journal_path(stack)),
            state_path: self.state_path(stack),
            backup_dir: self.backup_dir(stack),
            backups: self.backups,
            dir: self.dir.clone(),
            last_serial: Mutex::new(None),
        })))
    }

    /// `stack`'s document with its journal replayed.
    fn read_sync(&self, stack: &str) -> Result<Option<StackState>, StateError> {
        validate_stack_name(stack)?;
        let path = self.state_path(stack);
        let doc = match fs::read(&path) {
            Ok(bytes) => match parse_state(&path.display().to_string(), &bytes) {
                Ok(state) => Some(state),
                Err(StateError::Corrupt {
                    location, source, ..
                }) => {
                    return Err(StateError::Corrupt {
                        location,
                        backup: self.newest_good_backup(stack),
                        source,
                    });
                }
                Err(e) => return Err(e),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let had_doc = doc.is_some();
        let journal = self.journal_path(stack);
        replay(stack, doc, &journal).map_err(|e| match e {
            // The journal's steps cannot be read: the newest good copy is the document as of
            // its last whole write (or, with none, the newest backup), the journal set aside.
            StateError::Corrupt {
                location, source, ..
            } => {
                let set_aside = format!("mv {0} {0}.corrupt", journal.display());
                let backup = if had_doc {
                    Some(set_aside)
                } else {
                    self.newest_good_backup(stack)
                        .map(|restore| format!("{restore} && {set_aside}"))
                };
                StateError::Corrupt {
                    location,
                    backup,
                    source,
                }
            }
            e => e,
        })
    }

    /// The stacks that have a state document.
    fn list_sync(&self) -> Result<Vec<String>, StateError> {
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
    }
    /// Whether someone holds `stack`'s lock now: `None`, or the refusal that names the holder.
    fn held(&self, stack: &str) -> Result<Option<StateError>, StateError> {
        validate_stack_name(stack)?;
        let (mut file, path) = self.open_lock_file(stack)?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                Ok(None)
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                Ok(Some(locked(stack, read_holder(&mut file))))
            }
            Err(std::fs::TryLockError::Error(source)) => Err(StateError::Io { path, source }),
        }
    }

    /// The newest backup of `stack` that parses, as a command that restores it.
    fn newest_good_backup(&self, stack: &str) -> Option<String> {
        let target = self.state_path(stack);
        backups_newest_first(&self.backup_dir(stack))
            .ok()?
            .into_iter()
            .find(|b| {
                fs::read(b)
                    .ok()
                    .is_some_and(|bytes| parse_state(&b.display().to_string(), &bytes).is_ok())
            })
            .map(|b| format!("cp {} {}", b.display(), target.display()))
    }
}

/// Runs `f`, file I/O, on tokio's blocking threads: an engine embedded in a server never stalls its
/// async workers on the disk.
async fn off_runtime<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StateError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?
}

/// What a refused locker is told; the lock file holds the holder's [`LockInfo`] as JSON (or, from
/// an older build, a line of text).
fn locked(stack: &str, holder: String) -> StateError {
    let info: Option<LockInfo> = serde_json::from_str(&holder).ok();
    StateError::Locked {
        stack: stack.to_owned(),
        holder: match &info {
            Some(i) => i.describe(),
            None if holder.trim().is_empty() => {
                "another process (it has not written its name yet)".into()
            }
            None => holder.trim().to_owned(),
        },
        info: info.map(Box::new),
    }
}

fn read_holder(file: &mut File) -> String {
    let mut holder = String::new();
    let _ = file.rewind();
    let _ = file.read_to_string(&mut holder);
    holder
}

fn create_private_dir(dir: &Path) -> Result<(), StateError> {
    let io = |source| StateError::Io {
        path: dir.to_owned(),
        source,
    };
    fs::create_dir_all(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// `<serial>.json` files of a backup directory, newest (highest serial) first.
fn backups_newest_first(dir: &Path) -> Result<Vec<PathBuf>, StateError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateError::Io {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let serial = name.strip_suffix(".json")?.parse().ok()?;
            Some((serial, e.path()))
        })
        .collect();
    found.sort_by_key(|(serial, _)| std::cmp::Reverse(*serial));
    Ok(found.into_iter().map(|(_, p)| p).collect())
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

/// `<stack>.journal`: one JSON [`Change`] per line, appended between whole writes of the state and
/// removed by the next one. A line cut short by a crash (no newline) was never synced, so never
/// acknowledged: it is ignored by readers, and cut off before this lock's first append, so that every
/// append starts on a line boundary. A write that fails part way is cut off too, and the journal
/// refuses every later append (the run stops with the state still readable).
#[derive(Debug)]
struct LocalJournal {
    path: PathBuf,
    /// Opened (append-only) at the first change.
    file: Mutex<JournalFile>,
    /// Changes appended so far (the tickets).
    appended: AtomicU64,
    /// Changes known durable; held while a flush runs, so that waiters queue behind it and find
    /// their change covered by it.
    synced: tokio::sync::Mutex<u64>,
    /// Flushes made (group commit makes them fewer than the changes).
    flushes: AtomicU64,
}

impl LocalJournal {
    fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: Mutex::new(JournalFile::default()),
            appended: AtomicU64::new(0),
            synced: tokio::sync::Mutex::new(0),
            flushes: AtomicU64::new(0),
        }
    }

    fn io(&self, source: std::io::Error) -> StateError {
        StateError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Forgets the journal once a whole write holds everything in it.
    async fn clear(&self) -> Result<(), StateError> {
        let mut synced = self.synced.lock().await;
        let mut file = self.file.locked();
        file.file = None;
        file.len = 0;
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io(e)),
        }
        *synced = self.appended.load(Ordering::SeqCst);
        Ok(())
    }
}

/// The journal's open file, as one lock holds it.
#[derive(Debug, Default)]
struct JournalFile {
    file: Option<File>,
    /// Bytes in the file that end on a line boundary: where the next line starts.
    len: u64,
    /// Why an append failed, once one has.
    broken: Option<String>,
}

/// Appends `line` (a test can make it fail after part of it, as a full disk does).
fn write_line(f: &mut File, line: &[u8]) -> std::io::Result<()> {
    #[cfg(test)]
    if let Some(n) = tests::FAIL_WRITE_AFTER.with(std::cell::Cell::take) {
        f.write_all(&line[..n.min(line.len())])?;
        return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
    }
    f.write_all(line)
}

impl LocalJournal {
    /// Opens the journal for appending (creating it, 0600), first cutting off a line left short by
    /// a crash: returns the file and its length, which ends on a line boundary.
    fn open_at_line_boundary(&self) -> Result<(File, u64), StateError> {
        let mut options = OpenOptions::new();
        options.read(true).append(true).create(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut opened = options.open(&self.path).map_err(|e| self.io(e))?;
        // The new file's name must survive a crash as well as its lines.
        if let Some(dir) = self.path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        let mut bytes = Vec::new();
        opened.read_to_end(&mut bytes).map_err(|e| self.io(e))?;
        let boundary = bytes
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |last| last + 1);
        if boundary < bytes.len() {
            opened
                .set_len(boundary as u64)
                .and_then(|()| opened.sync_data())
                .map_err(|e| self.io(e))?;
        }
        Ok((opened, boundary as u64))
    }
}

impl Journal for LocalJournal {
    fn append(&self, change: &Change) -> Result<u64, StateError> {
        let mut line = serde_json::to_vec(change).map_err(|e| self.io(std::io::Error::other(e)))?;
        line.push(b'\n');
        let mut journal = self.file.locked();
        if let Some(broken) = &journal.broken {
            return Err(self.io(std::io::Error::other(format!(
                "an earlier append failed ({broken}); nothing more is appended in this run"
            ))));
        }
        if journal.file.is_none() {
            let (opened, len) = self.open_at_line_boundary()?;
            journal.file = Some(opened);
            journal.len = len;
        }
        let good = journal.len;
        let written = match journal.file.as_mut() {
            Some(f) => write_line(f, &line),
            None => Ok(()),
        };
        if let Err(e) = written {
            // Whatever part of the line was written is cut off, so that the journal stays readable.
            let cut = journal.file.as_ref().map(|f| f.set_len(good));
            journal.broken = Some(match cut {
                Some(Err(cut)) => format!("{e}; cutting it off failed too: {cut}"),
                _ => e.to_string(),
            });
            journal.file = None;
            return Err(self.io(e));
        }
        journal.len = good + line.len() as u64;
        Ok(self.appended.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn sync(&self, ticket: u64) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            // The steps that became ready with this one append theirs first: one flush for them all.
            tokio::task::yield_now().await;
            let mut synced = self.synced.lock().await;
            if *synced >= ticket {
                // A flush that started after this change was appended covered it.
                return Ok(());
            }
            // Everything appended until now is covered by this flush.
            let upto = self.appended.load(Ordering::SeqCst);
            let file = self
                .file
                .locked()
                .file
                .as_ref()
                .map(File::try_clone)
                .transpose()
                .map_err(|e| self.io(e))?;
            if let Some(file) = file {
                tokio::task::spawn_blocking(move || file.sync_data())
                    .await
                    .map_err(|e| self.io(std::io::Error::other(e)))?
                    .map_err(|e| self.io(e))?;
                self.flushes.fetch_add(1, Ordering::SeqCst);
            }
            *synced = upto;
            Ok(())
        })
    }
}

/// `state` (or a new one, when there is no document) with the journal at `path` replayed.
fn replay(
    stack: &str,
    state: Option<StackState>,
    path: &Path,
) -> Result<Option<StackState>, StateError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(state),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // The piece after the last newline: empty, or a line cut short by a crash (never acknowledged).
    lines.pop();
    if lines.is_empty() {
        return Ok(state);
    }
    let mut state = state.unwrap_or_else(|| StackState::new(stack));
    for line in lines {
        let change: Change =
            serde_json::from_slice(line).map_err(|source| StateError::Corrupt {
                location: path.display().to_string(),
                backup: None,
                source,
            })?;
        change.apply_to(&mut state);
    }
    Ok(Some(state))
}

/// A held lock: [`LockState`] shared with the blocking threads that do its file I/O.
#[derive(Debug)]
struct LocalLock(Arc<LockState>);

impl std::ops::Deref for LocalLock {
    type Target = LockState;

    fn deref(&self) -> &LockState {
        &self.0
    }
}

#[derive(Debug)]
struct LockState {
    stack: String,
    file: Mutex<Option<File>>,
    journal: LocalJournal,
    state_path: PathBuf,
    backup_dir: PathBuf,
    backups: usize,
    dir: PathBuf,
    /// The serial of the version on disk, once known (read once, then what this lock wrote).
    last_serial: Mutex<Option<u64>>,
}

impl LockState {
    fn unlock(&self) {
        if let Some(file) = self.file.locked().take() {
            let _ = file.set_len(0);
            let _ = file.unlock();
        }
    }

    /// Keeps the version on disk as `backups/<stack>/<serial>.json` (a hard link), then drops all but
    /// the newest `backups`.
    fn keep_backup(&self) -> Result<(), StateError> {
        if self.backups == 0 {
            return Ok(());
        }
        let mut last = self.last_serial.locked();
        let serial = match *last {
            Some(s) => s,
            None => match fs::read(&self.state_path) {
                Ok(bytes) => match parse_state(&self.state_path.display().to_string(), &bytes) {
                    Ok(s) => s.serial,
                    // Never taken for a good backup: the corrupt file stays where it is.
                    Err(_) => return Ok(()),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(source) => {
                    return Err(StateError::Io {
                        path: self.state_path.clone(),
                        source,
                    });
                }
            },
        };
        *last = Some(serial);
        create_private_dir(&self.backup_dir)?;
        let backup = self.backup_dir.join(format!("{serial}.json"));
        let io = |source| StateError::Io {
            path: backup.clone(),
            source,
        };
        match fs::hard_link(&self.state_path, &backup) {
            Ok(()) => {}
            // No version on disk (removed): nothing to keep, and the backup of it stays.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            // The same serial kept before (a write that failed after its backup): this version.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                fs::remove_file(&backup).map_err(io)?;
                fs::hard_link(&self.state_path, &backup).map_err(io)?;
            }
            Err(source) => return Err(io(source)),
        }
        for old in backups_newest_first(&self.backup_dir)?
            .into_iter()
            .skip(self.backups)
        {
            let _ = fs::remove_file(old);
        }
        Ok(())
    }
}

impl Drop for LockState {
    fn drop(&mut self) {
        self.unlock();
    }
}

impl StackLock for LocalLock {
    fn write<'a>(&'a self, state: &'a StackState) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(async move {
            let bytes = serde_json::to_vec_pretty(state).map_err(|source| StateError::Corrupt {
                location: self.state_path.display().to_string(),
                backup: None,
                source,
            })?;
            let (lock, serial) = (self.0.clone(), state.serial);
            off_runtime(&self.state_path, move || {
                lock.keep_backup()?;
                write_atomic(&lock.state_path, &bytes, || Ok(()))?;
                *lock.last_serial.locked() = Some(serial);
                Ok(())
            })
            .await?;
            self.journal.clear().await
        })
    }

    fn journal(&self) -> Option<&dyn Journal> {
        Some(&self.journal)
    }

    fn remove(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let lock = self.0.clone();
            off_runtime(&self.state_path, move || {
                lock.keep_backup()?;
                match fs::remove_file(&lock.state_path) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(source) => Err(StateError::Io {
                        path: lock.state_path.clone(),
                        source,
                    }),
                }
            })
            .await?;
            self.journal.clear().await?;
            let dir = self.dir.clone();
            off_runtime(&self.dir, move || {
                if let Ok(d) = File::open(&dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            })
            .await
        })
    }

    /// Compacts a journal left by a run that did not end with a whole write (a failure), then
    /// gives the lock up.
    fn release(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move {
            let compacted = self.compact().await;
            self.unlock();
            compacted
        })
    }
}

impl LocalLock {
    /// Writes the state with the journal replayed, when the journal holds anything.
    async fn compact(&self) -> Result<(), StateError> {
        if self.file.locked().is_none() {
            return Ok(());
        }
        let lock = self.0.clone();
        let replayed = off_runtime(&self.journal.path, move || {
            let has_lines = fs::metadata(&lock.journal.path).is_ok_and(|m| m.len() > 0);
            if !has_lines {
                return Ok(None);
            }
            let doc = match fs::read(&lock.state_path) {
                Ok(bytes) => Some(parse_state(&lock.state_path.display().to_string(), &bytes)?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(StateError::Io {
                        path: lock.state_path.clone(),
                        source,
                    });
                }
            };
            replay(&lock.stack, doc, &lock.journal.path).map(Some)
        })
        .await?;
        let Some(replayed) = replayed else {
            return Ok(());
        };
        match replayed {
            Some(state) => self.write(&state).await,
            None => self.journal.clear().await,
        }
    }
}

impl StateStore for LocalStateStore {
    fn lock<'a>(
        &'a self,
        stack: &'a str,
        operation: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn StackLock>, StateError>> {
        let (store, stack, operation) = (self.clone(), stack.to_owned(), operation.to_owned());
        Box::pin(async move {
            let lock = off_runtime(&self.dir, move || store.lock_sync(&stack, &operation)).await?;
            Ok(Box::new(lock) as Box<dyn StackLock>)
        })
    }

    fn read<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<StackState>, StateError>> {
        let (store, name) = (self.clone(), stack.to_owned());
        Box::pin(off_runtime(&self.dir, move || store.read_sync(&name)))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<String>, StateError>> {
        let store = self.clone();
        Box::pin(off_runtime(&self.dir, move || store.list_sync()))
    }

    fn holder<'a>(&'a self, stack: &'a str) -> BoxFuture<'a, Result<Option<LockInfo>, StateError>> {
        let (store, name) = (self.clone(), stack.to_owned());
        Box::pin(async move {
            match off_runtime(&self.dir, move || store.held(&name)).await? {
                None => Ok(None),
                Some(StateError::Locked {
                    info: Some(info), ..
                }) => Ok(Some(*info)),
                // A holder record from an older build: a line of text.
                Some(StateError::Locked { holder, .. }) => Ok(Some(LockInfo {
                    id: String::new(),
                    host: String::new(),
                    pid: 0,
                    pid_start: None,
                    user: String::new(),
                    operation: holder,
                    since: String::new(),
                })),
                Some(e) => Err(e),
            }
        })
    }

    /// A local lock is an OS file lock: it dies with its holder, so a held one belongs to a live
    /// process and is not removed ([`StateError::Locked`] names it).
    fn force_unlock<'a>(
        &'a self,
        stack: &'a str,
    ) -> BoxFuture<'a, Result<Option<LockInfo>, StateError>> {
        let (store, name) = (self.clone(), stack.to_owned());
        Box::pin(async move {
            match off_runtime(&self.dir, move || store.held(&name)).await? {
                None => Ok(None),
                Some(StateError::Locked {
                    stack,
                    holder,
                    info,
                }) => Err(StateError::Locked {
                    stack,
                    holder: format!(
                        "{holder}, a live process (a local lock is released when its process exits: stop that process)"
                    ),
                    info,
                }),
                Some(e) => Err(e),
            }
        })
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// The next journal write on this thread writes this many bytes of its line, then fails as a
        /// full disk does.
        pub(super) static FAIL_WRITE_AFTER: std::cell::Cell<Option<usize>> =
            const { std::cell::Cell::new(None) };
    }

    /// A read whose file blocks (a FIFO no one writes yet) leaves the async thread free: on a
    /// one-thread runtime, the task that writes the FIFO still runs, and the read gets its state.
    #[test]
    fn file_io_runs_off_the_async_threads() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let fifo = dir.path().join("s.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let doc = serde_json::to_vec(&StackState::new("s")).unwrap();
        // Were the read on the async thread, the writer task could not run: this thread then
        // writes instead, after a while, so that the test fails rather than hangs.
        // Whichever of the two claims the write first writes; the other does not open the FIFO.
        let claimed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let rescued = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let (fifo, doc) = (fifo.clone(), doc.clone());
            let (claimed, rescued) = (claimed.clone(), rescued.clone());
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_secs(3));
                if !claimed.swap(true, Ordering::SeqCst) {
                    rescued.store(true, Ordering::SeqCst);
                    let _ = std::fs::write(fifo, doc);
                }
            });
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let read = rt.block_on(async {
            let writer = tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                // Opening the FIFO for writing is what lets the reader's open return.
                tokio::task::spawn_blocking(move || {
                    if claimed.swap(true, Ordering::SeqCst) {
                        return Ok(());
                    }
                    std::fs::write(fifo, doc)
                })
                .await
            });
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(10), store.read("s")).await;
            writer.await.unwrap().unwrap().unwrap();
            read
        });
        assert!(
            !rescued.load(Ordering::SeqCst),
            "the read blocked the runtime's thread"
        );
        let state = read.unwrap().unwrap().unwrap();
        assert_eq!(state.stack, "s");
    }

    fn resource_change(serial: u64, resource: &str) -> Change {
        Change {
            serial,
            resource: resource.to_owned(),
            record: Some(super::super::ResourceState::new(
                "fake",
                serde_json::json!({ "serial": serial }),
            )),
            header: None,
        }
    }

    /// Appends `changes` through a new lock's journal, syncs them and drops the lock without a whole
    /// write (a run that dies).
    async fn append_and_die(store: &LocalStateStore, changes: &[Change]) {
        let lock = store.lock("s", "destroy").await.unwrap();
        let journal = lock.journal().unwrap();
        for c in changes {
            let ticket = journal.append(c).unwrap();
            journal.sync(ticket).await.unwrap();
        }
        drop(lock);
    }

    #[tokio::test]
    async fn an_append_after_a_line_cut_short_by_a_crash_starts_on_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        append_and_die(&store, &[resource_change(1, "a")]).await;
        // The run dies in the middle of its second line.
        let path = dir.path().join("s.journal");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"serial":2,"resource":"b","rec"#).unwrap();
        drop(f);
        // The next run (a destroy: no whole write first) appends.
        append_and_die(&store, &[resource_change(2, "c")]).await;
        let read = store.read("s").await.unwrap().unwrap();
        assert_eq!(read.serial, 2);
        let names: Vec<&String> = read.resources.keys().collect();
        assert_eq!(names, ["a", "c"]);
        assert!(fs::read(&path).unwrap().ends_with(b"}\n"));
    }

    #[tokio::test]
    async fn a_write_that_fails_half_way_is_cut_off_and_stops_every_later_append() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let lock = store.lock("s", "up").await.unwrap();
        let journal = lock.journal().unwrap();
        journal.append(&resource_change(1, "a")).unwrap();
        FAIL_WRITE_AFTER.with(|f| f.set(Some(10)));
        let err = journal.append(&resource_change(2, "b")).unwrap_err();
        assert!(err.to_string().contains("s.journal"), "{err}");
        // Another step of the same run: refused, not written after the cut line.
        let later = journal.append(&resource_change(3, "c")).unwrap_err();
        assert!(
            later.to_string().contains("an earlier append failed"),
            "{later}"
        );
        drop(lock);
        let bytes = fs::read(dir.path().join("s.journal")).unwrap();
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(bytes.ends_with(b"\n"), "the half line is cut off");
        let read = store.read("s").await.unwrap().unwrap();
        assert_eq!(read.resources.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[tokio::test]
    async fn a_journal_that_cannot_be_read_names_how_to_set_it_aside_or_restore_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let path = dir.path().join("s.journal");
        // No document: the hint is the newest good backup, and the journal set aside.
        for serial in [1, 2] {
            let lock = store.lock("s", "up").await.unwrap();
            let mut state = StackState::new("s");
            state.serial = serial;
            lock.write(&state).await.unwrap();
        }
        fs::remove_file(dir.path().join("s.json")).unwrap();
        fs::write(&path, "{oops\n").unwrap();
        let err = store.read("s").await.unwrap_err();
        let backup = dir.path().join("backups/s/1.json");
        let StateError::Corrupt {
            backup: Some(hint), ..
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(
            hint,
            &format!(
                "cp {} {} && mv {p} {p}.corrupt",
                backup.display(),
                dir.path().join("s.json").display(),
                p = path.display()
            )
        );
        // With the document: setting the journal aside keeps it, and the hint works.
        let lock = store.lock("s", "up").await.unwrap();
        lock.write(&StackState::new("s")).await.unwrap();
        drop(lock);
        fs::write(&path, "{oops\n").unwrap();
        let err = store.read("s").await.unwrap_err();
        let StateError::Corrupt {
            backup: Some(hint), ..
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!(hint, &format!("mv {0} {0}.corrupt", path.display()));
        fs::rename(&path, format!("{}.corrupt", path.display())).unwrap();
        assert!(store.read("s").await.unwrap().is_some());
    }

    fn change(serial: u64) -> Change {
        Change {
            serial,
            resource: format!("r{serial}"),
            record: None,
            header: None,
        }
    }

    #[tokio::test]
    async fn tickets_count_the_changes_and_one_flush_covers_every_change_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let journal = LocalJournal::new(dir.path().join("s.journal"));
        let tickets: Vec<u64> = (1..=3)
            .map(|i| journal.append(&change(i)).unwrap())
            .collect();
        assert_eq!(tickets, [1, 2, 3]);
        journal.sync(3).await.unwrap();
        assert_eq!(journal.flushes.load(Ordering::SeqCst), 1);
        // Changes 1 and 2 were covered by that flush.
        journal.sync(1).await.unwrap();
        journal.sync(2).await.unwrap();
        assert_eq!(journal.flushes.load(Ordering::SeqCst), 1);
        assert_eq!(journal.append(&change(4)).unwrap(), 4);
        journal.sync(4).await.unwrap();
        assert_eq!(journal.flushes.load(Ordering::SeqCst), 2);
    }

    /// Steps that become ready together (a run's first wave) each append, then sync: the first to
    /// sync lets the others append before it flushes, so that one flush covers them all.
    #[tokio::test]
    async fn steps_ready_together_share_one_flush() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(LocalJournal::new(dir.path().join("s.journal")));
        let steps: Vec<_> = (1..=5)
            .map(|i| {
                let journal = journal.clone();
                tokio::spawn(async move {
                    let ticket = journal.append(&change(i)).unwrap();
                    journal.sync(ticket).await.unwrap();
                })
            })
            .collect();
        for step in steps {
            step.await.unwrap();
        }
        assert_eq!(journal.flushes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_journal_without_a_document_is_compacted_into_one_when_the_lock_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let lock = store.lock("s", "up").await.unwrap();
        let journal = lock.journal().unwrap();
        let ticket = journal.append(&change(1)).unwrap();
        journal.sync(ticket).await.unwrap();
        lock.release().await.unwrap();
        assert!(!dir.path().join("s.journal").exists());
        let doc = fs::read(dir.path().join("s.json")).unwrap();
        let state = parse_state("s.json", &doc).unwrap();
        assert_eq!(state.serial, 1);
        assert!(state.resources.is_empty(), "change 1 removes r1");
    }

    #[tokio::test]
    async fn a_journal_that_cannot_be_read_or_removed_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStateStore::open(dir.path()).unwrap();
        let lock = store.lock("s", "up").await.unwrap();
        // A directory where the journal goes: reading it and removing it fail, and say so.
        fs::create_dir(dir.path().join("s.journal")).unwrap();
        assert!(matches!(store.read("s").await, Err(StateError::Io { .. })));
        assert!(matches!(
            lock.write(&StackState::new("s")).await,
            Err(StateError::Io { .. })
        ));
    }
}
