//! Where cached results live: a sled database per cache directory
//! ([`DiskStore`]) or a map in memory ([`MemoryStore`]), both behind
//! [`CacheStore`] so the batch engine holds an `Arc<dyn CacheStore>`.
//!
//! This module owns:
//! - the stored value format (a checksummed, versioned header before the
//!   payload), so a damaged entry is detected and becomes a warning and a miss;
//! - the process-wide registry of open disk stores: sled takes an exclusive
//!   lock on its directory, so a path is opened once per process and shared;
//! - the cross-process lock (`otwrap.lock` in the cache directory), so a
//!   second otwrap process is told clearly which cache is busy;
//! - durability: group commit (see [`DiskStore`]), so a killed process
//!   loses only the results inserted during the flush under way;
//! - noticing lost entries: the entry count kept beside the store
//!   ([`COUNT_FILE_NAME`]) is checked when the store opens.
//!
//! sled stays behind this module: no sled type appears in the public API.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::flusher::{self, Flusher, Recorded};
use super::key::{CacheKey, KeyPrefix, PREFIX_LEN};

pub use super::flusher::COUNT_FILE_NAME;

/// Name of the lock file otwrap keeps inside every disk cache directory.
pub const LOCK_FILE_NAME: &str = "otwrap.lock";

/// How long `open` waits for sled's own lock after taking otwrap's. sled
/// releases its file lock from background threads a little after a `Db` is
/// dropped (spacejam/sled#1234), so a close-then-reopen in one process can
/// briefly see its own lock.
const SLED_LOCK_WAIT: Duration = Duration::from_secs(2);

/// How long `open` waits for a handle of the same path that is being closed
/// (its last `Arc` dropped, sled still flushing) before giving up.
const CLOSING_WAIT: Duration = Duration::from_secs(60);

/// Keys removed per sled batch by `clear`, to bound memory on huge caches.
const CLEAR_CHUNK: usize = 10_000;

/// One cached evaluation result.
///
/// ```
/// use otwrap_runtime::cache::store::Entry;
///
/// let ok = Entry::Value(vec![0, 0, 0, 0, 0, 0, 240, 63]); // bincode of 1.0f64
/// let failed = Entry::Error("solver diverged".to_owned());
/// assert_ne!(ok, failed);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The encoded output of a successful evaluation.
    Value(Vec<u8>),
    /// The message of a failed evaluation (only stored when failures are cached).
    Error(String),
}

/// Why the cache could not be opened, read or written.
///
/// A damaged entry is not an error: it is a warning and a miss.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The files a cached model depends on (`#[cached(depends = [...])]`)
    /// could not be hashed: one is missing or unreadable.
    #[error(transparent)]
    Depends(#[from] super::depends::DependsError),
    /// The entries could not be exported to, or imported from, a sample.
    #[error("{message}")]
    Sample {
        /// What could not be converted, and what to do.
        message: String,
    },
    /// Another process holds the cache directory.
    #[error(
        "the cache at {} is in use by another otwrap process; wait for that run to finish, \
         or point this run at another cache directory (set OTWRAP_CACHE_DIR, \
         or use #[cached(disk = \"...\")])",
        path.display()
    )]
    Locked {
        /// The cache directory, canonicalized.
        path: PathBuf,
    },
    /// The cache path is a symbolic link, which otwrap refuses to follow.
    #[error(
        "refusing to open the cache at {}: it is a symbolic link; \
         point the cache at the real directory instead",
        path.display()
    )]
    Symlink {
        /// The cache path as given.
        path: PathBuf,
    },
    /// The cache directory, or a directory otwrap creates for it, belongs to
    /// another user (or is their symlink), or anyone may write to it.
    #[error(
        "refusing to open the cache at {}: {reason}; point the cache at a directory you own \
         (OTWRAP_CACHE_DIR, or #[cached(disk = \"...\")])",
        path.display()
    )]
    Unsafe {
        /// The offending directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The cache directory could not be created or the database opened.
    #[error("cannot open the cache at {}: {source}", path.display())]
    Open {
        /// The cache path.
        path: PathBuf,
        /// The underlying cause.
        #[source]
        source: io::Error,
    },
    /// Reading the store failed (an I/O error, not a damaged entry).
    #[error("cannot read the cache at {}: {source}", path.display())]
    Read {
        /// The cache directory.
        path: PathBuf,
        /// The underlying cause.
        #[source]
        source: io::Error,
    },
    /// Storing or flushing a result failed (disk full, I/O error).
    #[error(
        "cannot write to the cache at {} (is the disk full?): {source}",
        path.display()
    )]
    Write {
        /// The cache directory.
        path: PathBuf,
        /// The underlying cause.
        #[source]
        source: io::Error,
    },
}

/// Iterator over `(input_bytes, entry)` of one function version, from [`CacheStore::iter`].
pub type EntryIter<'a> = Box<dyn Iterator<Item = Result<(Vec<u8>, Entry), CacheError>> + Send + 'a>;

/// What the batch engine needs from a cache store, on disk or in memory.
///
/// ```
/// use std::sync::Arc;
/// use otwrap_runtime::cache::key::CacheKey;
/// use otwrap_runtime::cache::store::{CacheStore, Entry, MemoryStore};
///
/// # fn main() -> Result<(), otwrap_runtime::cache::store::CacheError> {
/// let store: Arc<dyn CacheStore> = Arc::new(MemoryStore::new());
/// let key = CacheKey::new("beam::deflection", 1u64, "", b"x=1");
/// assert_eq!(store.get(&key)?, None);
/// store.insert(&key, Entry::Value(b"42".to_vec()))?;
/// assert_eq!(store.get(&key)?, Some(Entry::Value(b"42".to_vec())));
/// assert_eq!(store.count(&key.prefix())?, 1);
/// # Ok(()) }
/// ```
pub trait CacheStore: Send + Sync + fmt::Debug {
    /// The entry stored under `key`, or `None` on a miss (including a damaged entry).
    fn get(&self, key: &CacheKey) -> Result<Option<Entry>, CacheError>;

    /// Stores `entry` under `key`, replacing any previous entry. A disk store
    /// writes it out in the background with the next flush (group commit);
    /// [`flush`](CacheStore::flush) waits for it.
    ///
    /// Fails if the entry cannot be stored, or if a background flush of
    /// earlier entries failed since the last insert that said so (those
    /// entries are then not on disk).
    fn insert(&self, key: &CacheKey, entry: Entry) -> Result<(), CacheError>;

    /// Stores several entries at once (atomically on disk).
    fn insert_batch(&self, entries: Vec<(CacheKey, Entry)>) -> Result<(), CacheError> {
        entries
            .into_iter()
            .try_for_each(|(key, entry)| self.insert(&key, entry))
    }

    /// Waits until every entry inserted before the call is written out
    /// (survives the process being killed). Call it once a batch is done.
    fn flush(&self) -> Result<(), CacheError>;

    /// Number of entries stored for one function version (damaged entries not
    /// yet read count too).
    fn count(&self, prefix: &KeyPrefix) -> Result<usize, CacheError>;

    /// Removes every entry of one function version; returns how many.
    fn clear(&self, prefix: &KeyPrefix) -> Result<usize, CacheError>;

    /// Every `(input_bytes, entry)` of one function version, for export.
    /// Damaged entries are skipped with a warning.
    fn iter(&self, prefix: &KeyPrefix) -> EntryIter<'_>;

    /// Number of entries of all functions.
    fn len(&self) -> Result<usize, CacheError>;

    /// Whether the store holds no entry at all.
    fn is_empty(&self) -> Result<bool, CacheError> {
        self.len().map(|n| n == 0)
    }

    /// The cache directory, or `None` for an in-memory store.
    fn location(&self) -> Option<&Path>;
}

/// A cache directory on disk, backed by sled.
///
/// Opening the same directory twice in one process returns the same handle;
/// a second process gets [`CacheError::Locked`].
///
/// Durability (group commit): a background thread, one per open store,
/// flushes sled as soon as its previous flush ends, covering every insert
/// that arrived meanwhile. A process killed at any moment (SIGKILL, the OOM
/// killer, a crash) keeps every result inserted before the flush under way
/// began; it loses only the results still being evaluated and those inserted
/// during that last flush. The guarantee is against a process kill (the
/// write has reached the kernel), not against a power loss or a kernel
/// crash. The thread ends when the store is dropped, after a last flush.
///
/// Lost entries are noticed: after its flushes (at most every 100 ms while
/// flushes follow each other without a pause) the store records how many
/// entries it holds in [`COUNT_FILE_NAME`] beside sled's files. If a store
/// is opened holding fewer entries than recorded (its files were truncated
/// or damaged and sled recovered what it could), a warning names the path,
/// the entries expected and found, and what to do; the missing results are
/// recomputed. A store sled cannot open at all is a [`CacheError::Open`].
///
/// ```
/// use otwrap_runtime::cache::key::CacheKey;
/// use otwrap_runtime::cache::store::{CacheStore, DiskStore, Entry};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = DiskStore::open(dir.path().join("cache"))?;
/// let key = CacheKey::new("beam::deflection", 1u64, "", b"x=1");
/// store.insert(&key, Entry::Value(b"42".to_vec()))?;
/// store.flush()?;
/// assert!(std::sync::Arc::ptr_eq(&store, &DiskStore::open(dir.path().join("cache"))?));
/// assert_eq!(store.get(&key)?, Some(Entry::Value(b"42".to_vec())));
/// # Ok(()) }
/// ```
pub struct DiskStore {
    // Field order is drop order: sled closes, then otwrap's lock is released,
    // then the registry forgets the path, so a waiting `open` finds it free.
    // The flusher goes first: it flushes what is left and ends its thread
    // (which holds a clone of the sled handle) before sled closes.
    path: PathBuf,
    flusher: Flusher,
    db: sled::Db,
    _lock: File,
    _registration: Registration,
}

type Registry = Mutex<HashMap<PathBuf, Weak<DiskStore>>>;

fn registry() -> MutexGuard<'static, HashMap<PathBuf, Weak<DiskStore>>> {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    // A panic while holding the map cannot leave it half-updated.
    REGISTRY
        .get_or_init(Registry::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// Removes a closed store's path from the registry once sled has let go.
struct Registration {
    path: PathBuf,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = registry();
        // Only a dead entry can be ours: `open` never replaces a dead entry.
        if map.get(&self.path).is_some_and(|w| w.strong_count() == 0) {
            map.remove(&self.path);
        }
    }
}

impl DiskStore {
    /// Opens (creating it with mode 0700 if missing) the cache directory at
    /// `path`, or returns the handle this process already has for it.
    ///
    /// Fails with [`CacheError::Symlink`] if `path` is a symbolic link,
    /// [`CacheError::Locked`] if another process uses it, and
    /// [`CacheError::Open`] otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<DiskStore>, CacheError> {
        DiskStore::open_owned(path.as_ref(), 1)
    }

    /// [`open`](Self::open), where the last `owned` components of `path` are
    /// otwrap's own (2 for `.otwrap/cache`): each that exists must belong to
    /// the current user and not be a symlink of another user's
    /// ([`CacheError::Unsafe`]).
    pub(crate) fn open_owned(path: &Path, owned: usize) -> Result<Arc<DiskStore>, CacheError> {
        let dir = prepare_dir(path, owned)?;
        let closing_deadline = Instant::now() + CLOSING_WAIT;
        loop {
            let mut map = registry();
            if let Some(weak) = map.get(&dir) {
                if let Some(store) = weak.upgrade() {
                    return Ok(store);
                }
                // The last handle is being dropped; wait for it to let go.
                drop(map);
                if Instant::now() >= closing_deadline {
                    return Err(CacheError::Locked { path: dir });
                }
                thread::sleep(Duration::from_millis(2));
                continue;
            }
            // Opening under the registry lock makes open-or-share atomic;
            // opens are rare, so serialising them across paths costs nothing.
            let lock = take_process_lock(&dir)?;
            let db = open_sled(&dir)?;
            let entries = count_entries(&dir, &db)?;
            check_entry_count(&dir, entries);
            let flusher = Flusher::start(db.clone(), dir.clone(), entries).map_err(|source| {
                CacheError::Open {
                    path: dir.clone(),
                    source: io::Error::new(
                        source.kind(),
                        format!("cannot start writing its entry count: {source}"),
                    ),
                }
            })?;
            let store = Arc::new(DiskStore {
                path: dir.clone(),
                flusher,
                db,
                _lock: lock,
                _registration: Registration { path: dir.clone() },
            });
            map.insert(dir, Arc::downgrade(&store));
            return Ok(store);
        }
    }

    /// The cache directory (canonicalized).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tells the flusher about `changes` changes applied, `added` of them new
    /// keys; a background flush failure not yet reported becomes the error.
    fn note_applied(&self, changes: usize, added: usize) -> Result<(), CacheError> {
        match self.flusher.applied(changes as u64, added as u64) {
            None => Ok(()),
            Some(source) => Err(CacheError::Write {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Lowers the recorded entry count before `n` entries are removed.
    fn note_removing(&self, n: usize) -> Result<(), CacheError> {
        self.flusher
            .removing(n as u64)
            .map_err(|source| CacheError::Write {
                path: self.path.clone(),
                source,
            })
    }

    fn read_error(&self, err: sled::Error) -> CacheError {
        CacheError::Read {
            path: self.path.clone(),
            source: flusher::sled_to_io(err),
        }
    }

    fn write_error(&self, err: sled::Error) -> CacheError {
        CacheError::Write {
            path: self.path.clone(),
            source: flusher::sled_to_io(err),
        }
    }

    /// Warns about an entry that cannot be decoded and removes it, unless it
    /// was written by a newer otwrap (then a new result simply overwrites it).
    fn discard_damaged(&self, key: &[u8], raw: &[u8], damage: &Damage) {
        tracing::warn!(
            cache = %self.path.display(),
            %damage,
            "damaged entry in the cache at {} ignored ({damage}); it will be recomputed",
            self.path.display(),
        );
        if matches!(damage, Damage::NewerFormat(_)) {
            return;
        }
        if let Err(err) = self.note_removing(1) {
            tracing::debug!(cache = %self.path.display(), %err, "could not lower the entry count");
            return;
        }
        // Compare-and-swap so a good entry written meanwhile is kept.
        match self.db.compare_and_swap(key, Some(raw), None::<&[u8]>) {
            Ok(Ok(())) => {
                // A failed flush is reported by the next insert or flush.
                let _ = self.flusher.applied(1, 0);
            }
            Ok(Err(_)) => self.flusher.not_removed(1),
            Err(err) => {
                self.flusher.not_removed(1);
                tracing::debug!(cache = %self.path.display(), %err, "could not remove damaged entry");
            }
        }
    }
}

impl fmt::Debug for DiskStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiskStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl CacheStore for DiskStore {
    fn get(&self, key: &CacheKey) -> Result<Option<Entry>, CacheError> {
        let raw = match self.db.get(key.as_bytes()) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(None),
            Err(sled::Error::Corruption { .. }) => {
                tracing::warn!(
                    cache = %self.path.display(),
                    "sled reported corrupted data in the cache at {}; treating the entry as a miss",
                    self.path.display(),
                );
                return Ok(None);
            }
            Err(err) => return Err(self.read_error(err)),
        };
        match decode(&raw) {
            Ok(entry) => Ok(Some(entry)),
            Err(damage) => {
                self.discard_damaged(key.as_bytes(), &raw, &damage);
                Ok(None)
            }
        }
    }

    fn insert(&self, key: &CacheKey, entry: Entry) -> Result<(), CacheError> {
        let old = self
            .db
            .insert(key.as_bytes(), encode(&entry))
            .map_err(|err| self.write_error(err))?;
        // A replaced entry adds nothing to the count.
        self.note_applied(1, usize::from(old.is_none()))
    }

    fn insert_batch(&self, entries: Vec<(CacheKey, Entry)>) -> Result<(), CacheError> {
        let n = entries.len();
        let encoded: Vec<(Vec<u8>, Vec<u8>)> = entries
            .into_iter()
            .map(|(key, entry)| (key.into_bytes(), encode(&entry)))
            .collect();
        // A transaction, unlike `apply_batch`, tells which keys are new.
        let added = self
            .db
            .transaction(|tx| {
                let mut added = 0;
                for (key, value) in &encoded {
                    added += usize::from(tx.insert(key.as_slice(), value.as_slice())?.is_none());
                }
                Ok(added)
            })
            .map_err(|err: sled::transaction::TransactionError<()>| match err {
                sled::transaction::TransactionError::Storage(err) => self.write_error(err),
                sled::transaction::TransactionError::Abort(()) => CacheError::Write {
                    path: self.path.clone(),
                    source: io::Error::other("the batch insert was aborted"),
                },
            })?;
        self.note_applied(n, added)
    }

    fn flush(&self) -> Result<(), CacheError> {
        self.flusher.flush().map_err(|source| CacheError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn count(&self, prefix: &KeyPrefix) -> Result<usize, CacheError> {
        self.db
            .scan_prefix(prefix.as_bytes())
            .keys()
            .try_fold(0, |n, key| key.map(|_| n + 1))
            .map_err(|err| self.read_error(err))
    }

    fn clear(&self, prefix: &KeyPrefix) -> Result<usize, CacheError> {
        let mut removed = 0;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for key in self.db.scan_prefix(prefix.as_bytes()).keys() {
            batch.remove(key.map_err(|err| self.read_error(err))?);
            in_batch += 1;
            if in_batch == CLEAR_CHUNK {
                self.note_removing(in_batch)?;
                self.db
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(|err| self.write_error(err))?;
                self.note_applied(in_batch, 0)?;
                removed += in_batch;
                in_batch = 0;
            }
        }
        self.note_removing(in_batch)?;
        self.db
            .apply_batch(batch)
            .map_err(|err| self.write_error(err))?;
        self.note_applied(in_batch, 0)?;
        removed += in_batch;
        self.flush()?;
        Ok(removed)
    }

    fn iter(&self, prefix: &KeyPrefix) -> EntryIter<'_> {
        Box::new(
            self.db
                .scan_prefix(prefix.as_bytes())
                .filter_map(move |item| match item {
                    Err(err) => Some(Err(self.read_error(err))),
                    Ok((key, raw)) => match decode(&raw) {
                        Ok(entry) => Some(Ok((key[PREFIX_LEN..].to_vec(), entry))),
                        Err(damage) => {
                            self.discard_damaged(&key, &raw, &damage);
                            None
                        }
                    },
                }),
        )
    }

    fn len(&self) -> Result<usize, CacheError> {
        self.db
            .iter()
            .keys()
            .try_fold(0, |n, key| key.map(|_| n + 1))
            .map_err(|err| self.read_error(err))
    }

    fn location(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

/// Refuses a symlink, creates the directory and its missing parents (0700)
/// or checks that the existing ones otwrap owns are the user's, and returns
/// its canonical path, the registry's key.
fn prepare_dir(path: &Path, owned: usize) -> Result<PathBuf, CacheError> {
    use crate::secure_fs::Refused;
    let open_error = |source| CacheError::Open {
        path: path.to_path_buf(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(CacheError::Symlink {
                path: path.to_path_buf(),
            })
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(open_error(io::Error::other(
                "the path exists and is not a directory",
            )))
        }
        _ => {}
    }
    crate::secure_fs::create_private_dir(path, owned).map_err(|refused| match refused {
        Refused::Unsafe { path, reason } => CacheError::Unsafe { path, reason },
        Refused::NotADirectory { path } => CacheError::Open {
            path,
            source: io::Error::other("the path exists and is not a directory"),
        },
        Refused::Io { source, .. } => open_error(source),
    })?;
    fs::canonicalize(path).map_err(open_error)
}

/// Takes otwrap's own lock on the directory, so that another process is
/// refused before it touches sled's files, with a message we control.
fn take_process_lock(dir: &Path) -> Result<File, CacheError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dir.join(LOCK_FILE_NAME))
        .map_err(|source| CacheError::Open {
            path: dir.to_path_buf(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(CacheError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(source)) => Err(CacheError::Open {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// The error for a store sled cannot read: say what to do; never delete it
/// behind the user's back.
fn damaged_store(dir: &Path, why: &str) -> CacheError {
    CacheError::Open {
        path: dir.to_path_buf(),
        source: io::Error::other(format!(
            "the store is damaged or not an otwrap cache ({why}); move it away \
             (or delete it) to start an empty cache, or point OTWRAP_CACHE_DIR elsewhere"
        )),
    }
}

/// The message of a caught panic.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

fn open_sled(dir: &Path) -> Result<sled::Db, CacheError> {
    let deadline = Instant::now() + SLED_LOCK_WAIT;
    loop {
        // sled may panic on files it does not expect (its recovery asserts):
        // that is a damaged store, not a reason to abort the program.
        let opened = std::panic::catch_unwind(|| sled::Config::new().path(dir).open()).map_err(
            |payload| {
                damaged_store(
                    dir,
                    &format!(
                        "sled panicked while opening it: {}",
                        panic_message(&*payload)
                    ),
                )
            },
        )?;
        let err = match opened {
            Ok(db) => return Ok(db),
            Err(err @ (sled::Error::Corruption { .. } | sled::Error::Unsupported(_))) => {
                return Err(damaged_store(dir, &err.to_string()))
            }
            Err(err) => io::Error::from(err),
        };
        // sled reports its flock failure only as text.
        if !err.to_string().contains("could not acquire lock") {
            return Err(CacheError::Open {
                path: dir.to_path_buf(),
                source: err,
            });
        }
        if Instant::now() >= deadline {
            tracing::debug!(cache = %dir.display(), "sled kept its lock; giving up");
            return Err(CacheError::Locked {
                path: dir.to_path_buf(),
            });
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Counts the entries of a freshly opened store (sled has no stored count).
/// An error or a panic here means sled recovered a store it cannot read.
fn count_entries(dir: &Path, db: &sled::Db) -> Result<u64, CacheError> {
    let counted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        db.iter().keys().try_fold(0u64, |n, key| key.map(|_| n + 1))
    }));
    match counted {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(err)) => Err(damaged_store(
            dir,
            &format!("reading its keys failed: {err}"),
        )),
        Err(payload) => Err(damaged_store(
            dir,
            &format!(
                "sled panicked while reading its keys: {}",
                panic_message(&*payload)
            ),
        )),
    }
}

/// Compares the entries found in a store being opened with the count
/// recorded after its last flush, and warns once when some are missing
/// (the next flush records what is there, so the next open is quiet).
fn check_entry_count(dir: &Path, found: u64) {
    match flusher::read_count(dir) {
        Recorded::Entries(expected) if found < expected => warn_store(&format!(
            "the cache at {} holds {found} entries but {expected} were stored: its files \
             were truncated or damaged (a full disk, a copy cut short, a crash of the machine), \
             so {} missing. They will be recomputed and stored again. To keep the \
             damaged store for inspection, stop this run and move {} away.",
            dir.display(),
            match expected - found {
                1 => "1 result is".to_owned(),
                n => format!("{n} results are"),
            },
            dir.display(),
        )),
        Recorded::Unreadable(why) => warn_store(&format!(
            "the entry count of the cache at {} ({}) cannot be read ({why}), so lost entries \
             cannot be detected this time; the store holds {found} entries and the count is \
             written again.",
            dir.display(),
            dir.join(COUNT_FILE_NAME).display(),
        )),
        _ => {}
    }
}

/// A warning about the store itself, which a user must see even without a
/// tracing subscriber: logged, and printed on stderr like a store failure.
fn warn_store(message: &str) {
    tracing::warn!("{message}");
    eprintln!("otwrap: warning: {message}");
}

/// An in-memory cache, for `#[cached]` without `disk`; lost when the process ends.
///
/// Entries are grouped by function version, so `count` and `clear` do not
/// scan other functions' entries; hits take a shared read lock.
///
/// ```
/// use otwrap_runtime::cache::key::CacheKey;
/// use otwrap_runtime::cache::store::{CacheStore, Entry, MemoryStore};
///
/// # fn main() -> Result<(), otwrap_runtime::cache::store::CacheError> {
/// let store = MemoryStore::new();
/// let key = CacheKey::new("f", 1u64, "", b"x");
/// store.insert(&key, Entry::Error("diverged".into()))?;
/// assert_eq!(store.clear(&key.prefix())?, 1);
/// assert!(store.is_empty()?);
/// # Ok(()) }
/// ```
#[derive(Default)]
pub struct MemoryStore {
    by_version: RwLock<HashMap<KeyPrefix, HashMap<Vec<u8>, Entry>>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<KeyPrefix, HashMap<Vec<u8>, Entry>>> {
        self.by_version
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<KeyPrefix, HashMap<Vec<u8>, Entry>>> {
        self.by_version
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len: usize = self.read().values().map(HashMap::len).sum();
        f.debug_struct("MemoryStore").field("len", &len).finish()
    }
}

impl CacheStore for MemoryStore {
    fn get(&self, key: &CacheKey) -> Result<Option<Entry>, CacheError> {
        Ok(self
            .read()
            .get(&key.prefix())
            .and_then(|inputs| inputs.get(key.input_bytes()))
            .cloned())
    }

    fn insert(&self, key: &CacheKey, entry: Entry) -> Result<(), CacheError> {
        self.write()
            .entry(key.prefix())
            .or_default()
            .insert(key.input_bytes().to_vec(), entry);
        Ok(())
    }

    fn insert_batch(&self, entries: Vec<(CacheKey, Entry)>) -> Result<(), CacheError> {
        let mut map = self.write();
        for (key, entry) in entries {
            map.entry(key.prefix())
                .or_default()
                .insert(key.input_bytes().to_vec(), entry);
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), CacheError> {
        Ok(())
    }

    fn count(&self, prefix: &KeyPrefix) -> Result<usize, CacheError> {
        Ok(self.read().get(prefix).map_or(0, HashMap::len))
    }

    fn clear(&self, prefix: &KeyPrefix) -> Result<usize, CacheError> {
        Ok(self.write().remove(prefix).map_or(0, |inputs| inputs.len()))
    }

    fn iter(&self, prefix: &KeyPrefix) -> EntryIter<'_> {
        // A snapshot: exporting must not hold the lock against the workers.
        let snapshot: Vec<(Vec<u8>, Entry)> = self
            .read()
            .get(prefix)
            .map(|inputs| inputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Box::new(snapshot.into_iter().map(Ok))
    }

    fn len(&self) -> Result<usize, CacheError> {
        Ok(self.read().values().map(HashMap::len).sum())
    }

    fn location(&self) -> Option<&Path> {
        None
    }
}

// Stored value format, version 1 (all integers little endian):
//
//   0..4   magic b"OTWC"
//   4      format version (1)
//   5      kind: 0 = value, 1 = cached error (UTF-8 message)
//   6..14  xxh3_64 of the payload, seeded with (version << 8 | kind)
//   14..   payload
//
// The seed binds version and kind into the checksum, so a flipped kind byte is
// caught like a flipped payload byte; sled stores the exact length, so a
// truncated value fails the checksum.
const MAGIC: [u8; 4] = *b"OTWC";
const FORMAT_VERSION: u8 = 1;
const KIND_VALUE: u8 = 0;
const KIND_ERROR: u8 = 1;
const HEADER_LEN: usize = 14;

/// Why a stored value could not be decoded.
#[derive(Debug, PartialEq, Eq)]
enum Damage {
    Truncated(usize),
    BadMagic,
    NewerFormat(u8),
    UnknownKind(u8),
    BadChecksum,
    ErrorNotUtf8,
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Truncated(len) => write!(f, "truncated: {len} bytes, shorter than the header"),
            Damage::BadMagic => f.write_str("not an otwrap cache entry (bad magic)"),
            Damage::NewerFormat(v) => {
                write!(f, "written in format {v} by a newer otwrap; this one reads format {FORMAT_VERSION}")
            }
            Damage::UnknownKind(k) => write!(f, "unknown entry kind {k}"),
            Damage::BadChecksum => f.write_str("checksum mismatch"),
            Damage::ErrorNotUtf8 => f.write_str("cached error message is not UTF-8"),
        }
    }
}

fn checksum(kind: u8, payload: &[u8]) -> u64 {
    let seed = (u64::from(FORMAT_VERSION) << 8) | u64::from(kind);
    xxhash_rust::xxh3::xxh3_64_with_seed(payload, seed)
}

fn encode(entry: &Entry) -> Vec<u8> {
    let (kind, payload) = match entry {
        Entry::Value(bytes) => (KIND_VALUE, bytes.as_slice()),
        Entry::Error(message) => (KIND_ERROR, message.as_bytes()),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(kind);
    out.extend_from_slice(&checksum(kind, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn decode(raw: &[u8]) -> Result<Entry, Damage> {
    let (header, payload) = raw
        .split_at_checked(HEADER_LEN)
        .ok_or(Damage::Truncated(raw.len()))?;
    if header[..4] != MAGIC {
        return Err(Damage::BadMagic);
    }
    let (version, kind) = (header[4], header[5]);
    if version != FORMAT_VERSION {
        return Err(Damage::NewerFormat(version));
    }
    if kind != KIND_VALUE && kind != KIND_ERROR {
        return Err(Damage::UnknownKind(kind));
    }
    let mut stored = [0u8; 8];
    stored.copy_from_slice(&header[6..HEADER_LEN]);
    if u64::from_le_bytes(stored) != checksum(kind, payload) {
        return Err(Damage::BadChecksum);
    }
    if kind == KIND_VALUE {
        Ok(Entry::Value(payload.to_vec()))
    } else {
        String::from_utf8(payload.to_vec())
            .map(Entry::Error)
            .map_err(|_| Damage::ErrorNotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    fn key(function: &str, salt: &str, input: &[u8]) -> CacheKey {
        CacheKey::new(function, 7u64, salt, input)
    }

    /// Runs `f` with a subscriber capturing warnings, returns `f`'s result and the log.
    fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        (out, log)
    }

    #[test]
    fn format_round_trips_and_detects_damage() {
        for entry in [
            Entry::Value(vec![]),
            Entry::Value(vec![1, 2, 3]),
            Entry::Error("boom ✗".into()),
        ] {
            assert_eq!(decode(&encode(&entry)), Ok(entry));
        }
        let good = encode(&Entry::Value(vec![1, 2, 3]));
        assert_eq!(decode(&good[..5]), Err(Damage::Truncated(5)));
        assert_eq!(decode(&good[..good.len() - 1]), Err(Damage::BadChecksum));
        let mut flipped_kind = good.clone();
        flipped_kind[5] = KIND_ERROR;
        assert_eq!(decode(&flipped_kind), Err(Damage::BadChecksum));
        let mut magic = good.clone();
        magic[0] = b'X';
        assert_eq!(decode(&magic), Err(Damage::BadMagic));
        let mut newer = good;
        newer[4] = 9;
        assert_eq!(decode(&newer), Err(Damage::NewerFormat(9)));
    }

    fn exercise_round_trip(store: &dyn CacheStore) {
        let ok = key("f", "", b"x=1");
        let failed = key("f", "", b"x=2");
        assert_eq!(store.get(&ok).unwrap(), None);
        store.insert(&ok, Entry::Value(b"1.0".to_vec())).unwrap();
        store
            .insert(&failed, Entry::Error("diverged".into()))
            .unwrap();
        assert_eq!(store.get(&ok).unwrap(), Some(Entry::Value(b"1.0".to_vec())));
        assert_eq!(
            store.get(&failed).unwrap(),
            Some(Entry::Error("diverged".into()))
        );
        store.insert(&ok, Entry::Value(b"2.0".to_vec())).unwrap();
        assert_eq!(store.get(&ok).unwrap(), Some(Entry::Value(b"2.0".to_vec())));
        store
            .insert_batch(vec![
                (key("f", "", b"x=3"), Entry::Value(vec![3])),
                (key("f", "", b"x=4"), Entry::Value(vec![4])),
            ])
            .unwrap();
        store.flush().unwrap();
        assert_eq!(store.len().unwrap(), 4);
        let mut exported: Vec<_> = store.iter(&ok.prefix()).map(Result::unwrap).collect();
        exported.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            exported[0],
            (b"x=1".to_vec(), Entry::Value(b"2.0".to_vec()))
        );
        assert_eq!(exported[3], (b"x=4".to_vec(), Entry::Value(vec![4])));
    }

    #[test]
    fn disk_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path().join("cache")).unwrap();
        exercise_round_trip(&*store);
    }

    #[test]
    fn memory_round_trip() {
        exercise_round_trip(&MemoryStore::new());
    }

    fn exercise_prefix_management(store: &dyn CacheStore) {
        for i in 0..5u8 {
            store
                .insert(&key("f", "v1", &[i]), Entry::Value(vec![i]))
                .unwrap();
            store
                .insert(&key("f", "v2", &[i]), Entry::Value(vec![i]))
                .unwrap();
        }
        store
            .insert(&key("g", "v1", &[0]), Entry::Value(vec![]))
            .unwrap();
        let (f1, f2, g1) = (
            key("f", "v1", b"").prefix(),
            key("f", "v2", b"").prefix(),
            key("g", "v1", b"").prefix(),
        );
        assert_eq!(store.count(&f1).unwrap(), 5);
        assert_eq!(store.clear(&f1).unwrap(), 5);
        assert_eq!(store.count(&f1).unwrap(), 0);
        assert_eq!(store.count(&f2).unwrap(), 5);
        assert_eq!(store.count(&g1).unwrap(), 1);
        assert_eq!(store.len().unwrap(), 6);
        assert_eq!(store.clear(&f1).unwrap(), 0);
    }

    #[test]
    fn disk_prefix_count_and_clear_touch_one_version() {
        let dir = tempfile::tempdir().unwrap();
        exercise_prefix_management(&*DiskStore::open(dir.path()).unwrap());
    }

    #[test]
    fn memory_prefix_count_and_clear_touch_one_version() {
        exercise_prefix_management(&MemoryStore::new());
    }

    #[test]
    fn clear_handles_more_than_one_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let prefix = key("f", "", b"").prefix();
        let entries = (0..CLEAR_CHUNK as u32 + 3)
            .map(|i| (prefix.key(&i.to_be_bytes()), Entry::Value(vec![])))
            .collect();
        store.insert_batch(entries).unwrap();
        assert_eq!(store.clear(&prefix).unwrap(), CLEAR_CHUNK + 3);
        assert!(store.is_empty().unwrap());
    }

    #[test]
    fn a_planted_otwrap_directory_is_refused_where_otwrap_owns_it() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // needs root to act as another user
        }
        let dir = tempfile::tempdir().unwrap();
        let dot = dir.path().join(".otwrap");
        fs::create_dir(&dot).unwrap();
        std::os::unix::fs::lchown(&dot, Some(65534), None).unwrap();
        let cache = dot.join("cache");
        // `.otwrap/cache` is otwrap's own: another user's `.otwrap` is refused.
        let err = DiskStore::open_owned(&cache, 2).unwrap_err();
        assert!(
            matches!(&err, CacheError::Unsafe { path, .. } if *path == dot),
            "{err}"
        );
        assert!(!cache.exists());
        // A directory the user names is judged alone (the parent is theirs to pick).
        drop(DiskStore::open_owned(&cache, 1).unwrap());
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&cache).unwrap().permissions())
                & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn reopen_after_drop_finds_entries() {
        let dir = tempfile::tempdir().unwrap();
        let k = key("f", "", b"x");
        for round in 0..5u8 {
            let store = DiskStore::open(dir.path()).unwrap();
            if round > 0 {
                assert_eq!(store.get(&k).unwrap(), Some(Entry::Value(vec![round - 1])));
            }
            store.insert(&k, Entry::Value(vec![round])).unwrap();
            store.flush().unwrap();
        }
    }

    #[test]
    fn same_path_twice_shares_one_handle() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let a = DiskStore::open(dir.path().join("cache")).unwrap();
        let b = DiskStore::open(dir.path().join("sub/../cache")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c = thread::spawn({
            let path = dir.path().join("cache");
            move || DiskStore::open(path).unwrap()
        })
        .join()
        .unwrap();
        assert!(Arc::ptr_eq(&a, &c));
        assert_eq!(
            a.path(),
            fs::canonicalize(dir.path().join("cache")).unwrap()
        );
    }

    #[test]
    fn new_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path().join("a/cache")).unwrap();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = DiskStore::open(&link).unwrap_err();
        assert!(
            matches!(&err, CacheError::Symlink { path } if *path == link),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&link.display().to_string()),
            "{err}"
        );
        assert!(!real.join("db").exists());
    }

    #[test]
    fn file_at_cache_path_is_an_open_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache");
        fs::write(&file, b"").unwrap();
        let err = DiskStore::open(&file).unwrap_err();
        assert!(matches!(err, CacheError::Open { .. }), "{err:?}");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn damaged_entries_are_a_warning_and_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let good = encode(&Entry::Value(vec![1, 2, 3, 4]));
        let mut bad_checksum = good.clone();
        bad_checksum[HEADER_LEN] ^= 0xff;
        let cases: [(&str, Vec<u8>); 4] = [
            ("garbage", b"definitely not a cache entry".to_vec()),
            ("truncated", good[..HEADER_LEN - 2].to_vec()),
            ("checksum", bad_checksum),
            ("cut payload", good[..good.len() - 1].to_vec()),
        ];
        for (name, raw) in cases {
            let k = key("f", "", name.as_bytes());
            store.db.insert(k.as_bytes(), raw).unwrap();
            let (got, log) = capture_logs(|| store.get(&k));
            assert_eq!(got.unwrap(), None, "{name}");
            assert!(log.contains("WARN"), "{name}: {log}");
            assert!(
                log.contains(&store.path().display().to_string()),
                "{name}: {log}"
            );
            assert_eq!(store.count(&k.prefix()).unwrap(), 0, "{name} not removed");
            // The recomputed result then overwrites it normally.
            store.insert(&k, Entry::Value(vec![9])).unwrap();
            assert_eq!(store.get(&k).unwrap(), Some(Entry::Value(vec![9])));
            store.clear(&k.prefix()).unwrap();
        }
    }

    #[test]
    fn newer_format_is_a_miss_and_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let k = key("f", "", b"x");
        let mut newer = encode(&Entry::Value(vec![1]));
        newer[4] = FORMAT_VERSION + 1;
        store.db.insert(k.as_bytes(), newer).unwrap();
        let (got, log) = capture_logs(|| store.get(&k));
        assert_eq!(got.unwrap(), None);
        assert!(log.contains("newer otwrap"), "{log}");
        assert_eq!(store.count(&k.prefix()).unwrap(), 1);
    }

    #[test]
    fn iter_skips_damaged_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let prefix = key("f", "", b"").prefix();
        store
            .insert(&prefix.key(b"a"), Entry::Value(vec![1]))
            .unwrap();
        store
            .db
            .insert(prefix.key(b"b").as_bytes(), &b"junk"[..])
            .unwrap();
        let (items, log) = capture_logs(|| store.iter(&prefix).collect::<Vec<_>>());
        let items: Vec<_> = items.into_iter().map(Result::unwrap).collect();
        assert_eq!(items, vec![(b"a".to_vec(), Entry::Value(vec![1]))]);
        assert!(log.contains("WARN"), "{log}");
    }

    fn recorded(store: &DiskStore) -> Recorded {
        flusher::read_count(store.path())
    }

    #[test]
    fn entry_count_covers_replacements_clear_and_several_models() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        assert_eq!(recorded(&store), Recorded::Entries(0));
        exercise_prefix_management(&*store);
        // Replacing an entry of another model leaves the count alone.
        store
            .insert(&key("f", "v2", &[0]), Entry::Value(vec![42]))
            .unwrap();
        store
            .insert_batch(vec![
                (key("f", "v2", &[1]), Entry::Value(vec![43])),
                (key("h", "", &[1]), Entry::Value(vec![1])),
            ])
            .unwrap();
        store.flush().unwrap();
        assert_eq!(store.len().unwrap(), 7);
        assert_eq!(recorded(&store), Recorded::Entries(7));
        assert_eq!(store.clear(&key("f", "v2", b"").prefix()).unwrap(), 5);
        assert_eq!(recorded(&store), Recorded::Entries(2));
        drop(store);

        // The count matches: no word on reopening.
        let (store, log) = capture_logs(|| DiskStore::open(dir.path()).unwrap());
        assert!(!log.contains("WARN"), "{log}");
        assert_eq!(store.len().unwrap(), 2);
        drop(store);

        // Entries lost behind the store's back: one warning naming the path,
        // the counts and what to do; then the store is used as it is.
        flusher::write_count(dir.path(), 9).unwrap();
        let (store, log) = capture_logs(|| DiskStore::open(dir.path()).unwrap());
        let path = store.path().display().to_string();
        assert!(log.contains("WARN"), "{log}");
        assert!(log.contains(&path), "{log}");
        assert!(log.contains("holds 2 entries but 9 were stored"), "{log}");
        assert!(log.contains("recomputed"), "{log}");
        assert!(log.contains("move"), "{log}");
        assert_eq!(recorded(&store), Recorded::Entries(2));
        drop(store);
        let (_store, log) = capture_logs(|| DiskStore::open(dir.path()).unwrap());
        assert!(!log.contains("WARN"), "warned twice: {log}");
    }

    #[test]
    fn a_damaged_entry_removed_lowers_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let k = key("f", "", b"x");
        store.insert(&k, Entry::Value(vec![1])).unwrap();
        store.flush().unwrap();
        assert_eq!(recorded(&store), Recorded::Entries(1));
        store.db.insert(k.as_bytes(), &b"junk"[..]).unwrap();
        let (got, _) = capture_logs(|| store.get(&k));
        assert_eq!(got.unwrap(), None);
        store.flush().unwrap();
        assert_eq!(recorded(&store), Recorded::Entries(0));
        store.insert(&k, Entry::Value(vec![2])).unwrap();
        store.flush().unwrap();
        assert_eq!(recorded(&store), Recorded::Entries(1));
    }

    #[test]
    fn an_unreadable_count_is_a_warning_then_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        drop(DiskStore::open(dir.path()).unwrap());
        fs::write(dir.path().join(COUNT_FILE_NAME), "nonsense").unwrap();
        let (store, log) = capture_logs(|| DiskStore::open(dir.path()).unwrap());
        assert!(log.contains("cannot be read"), "{log}");
        assert_eq!(recorded(&store), Recorded::Entries(0));
    }

    #[test]
    fn flush_waits_for_every_insert_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let prefix = key("f", "", b"").prefix();
        thread::scope(|s| {
            for t in 0..2u32 {
                let store = &store;
                s.spawn(move || {
                    for i in 0..500u32 {
                        let k = prefix.key(&(t * 1000 + i).to_be_bytes());
                        store.insert(&k, Entry::Value(vec![])).unwrap();
                        if i % 100 == 0 {
                            store.flush().unwrap();
                        }
                    }
                });
            }
        });
        store.flush().unwrap();
        // The count is written after the flush that covered the last insert.
        assert_eq!(recorded(&store), Recorded::Entries(1000));
    }

    const HOLD_ENV: &str = "OTWRAP_TEST_HOLD_CACHE_AT";
    const HOLDING: &str = "otwrap-test-child-holds-the-cache";

    /// Not a test on its own: the child half of `second_process_gets_locked`.
    #[test]
    fn child_holds_store_until_stdin_closes() {
        let Some(path) = std::env::var_os(HOLD_ENV) else {
            return;
        };
        let store = DiskStore::open(path).unwrap();
        println!("{HOLDING}");
        io::stdout().flush().unwrap();
        let mut line = String::new();
        io::stdin().read_line(&mut line).unwrap();
        drop(store);
    }

    #[test]
    fn second_process_gets_locked() {
        let dir = tempfile::tempdir().unwrap();
        let canonical = fs::canonicalize(dir.path()).unwrap();
        let module = module_path!().split_once("::").unwrap().1;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("{module}::child_holds_store_until_stdin_closes"),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLD_ENV, dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert!(
            lines.any(|line| line.unwrap().contains(HOLDING)),
            "child exited before opening the cache"
        );

        let err = DiskStore::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, CacheError::Locked { path } if *path == canonical),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains(&canonical.display().to_string()),
            "{message}"
        );
        assert!(message.contains("another otwrap process"), "{message}");
        assert!(message.contains("OTWRAP_CACHE_DIR"), "{message}");

        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
        // Once the other process is gone, the cache is ours.
        DiskStore::open(dir.path()).unwrap();
    }

    fn rate(n: usize, elapsed: Duration) -> String {
        format!("{:.0}/s", n as f64 / elapsed.as_secs_f64())
    }

    /// `cargo test --release -- --ignored --nocapture bench_` to print the numbers.
    #[test]
    #[ignore]
    fn bench_store_throughput() {
        use std::hint::black_box;
        const N: usize = 100_000;
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path()).unwrap();
        let prefix = key("bench", "", b"").prefix();
        // A point of 3 f64 and a result of 2 f64, as bincode would give.
        let input = |i: usize| {
            let mut b = Vec::with_capacity(24);
            for x in [i as f64, 0.5, -1.0] {
                b.extend_from_slice(&x.to_le_bytes());
            }
            b
        };
        let keys: Vec<CacheKey> = (0..N).map(|i| prefix.key(&input(i))).collect();
        let value = Entry::Value(vec![7; 16]);

        let t = Instant::now();
        for k in &keys {
            store.insert(k, value.clone()).unwrap();
        }
        let insert = t.elapsed();
        let t = Instant::now();
        store.flush().unwrap();
        println!(
            "disk insert (no flush): {} ; one flush after {N}: {:?}",
            rate(N, insert),
            t.elapsed()
        );

        // Visit keys in a scattered order so the B-tree is not walked sequentially.
        let order: Vec<usize> = (0..N).map(|i| (i * 7919) % N).collect();
        for pass in 0..3 {
            let t = Instant::now();
            for &i in &order {
                black_box(store.get(&keys[i]).unwrap().unwrap());
            }
            println!("disk get hits, pass {pass}: {}", rate(N, t.elapsed()));
        }
        let t = Instant::now();
        for &i in &order {
            black_box(store.db.get(keys[i].as_bytes()).unwrap().unwrap());
        }
        println!("raw sled get (no decode): {}", rate(N, t.elapsed()));
        let t = Instant::now();
        let threads = 2;
        thread::scope(|s| {
            for part in order.chunks(N / threads) {
                let (store, keys) = (&store, &keys);
                s.spawn(move || {
                    for &i in part {
                        black_box(store.get(&keys[i]).unwrap().unwrap());
                    }
                });
            }
        });
        println!("disk get hits, {threads} threads: {}", rate(N, t.elapsed()));

        let memory = MemoryStore::new();
        for k in &keys {
            memory.insert(k, value.clone()).unwrap();
        }
        let t = Instant::now();
        for &i in &order {
            black_box(memory.get(&keys[i]).unwrap().unwrap());
        }
        println!("memory get hits: {}", rate(N, t.elapsed()));

        let durable = 300;
        let t = Instant::now();
        for i in 0..durable {
            store
                .insert(&prefix.key(&input(N + i)), value.clone())
                .unwrap();
            store.flush().unwrap();
        }
        let per = t.elapsed() / durable as u32;
        println!(
            "insert + flush each: {per:?} per entry ({:.0}/s)",
            1.0 / per.as_secs_f64()
        );

        let t = Instant::now();
        for i in 0..N {
            store
                .insert(&prefix.key(&input(2 * N + i)), value.clone())
                .unwrap();
        }
        store.flush().unwrap();
        println!(
            "insert with group commit, then flush: {}",
            rate(N, t.elapsed())
        );

        // Opening: sled's recovery, then the entry count check's scan.
        let entries = store.len().unwrap();
        drop(store);
        let t = Instant::now();
        let db = open_sled(dir.path()).unwrap();
        let sled_open = t.elapsed();
        let t = Instant::now();
        assert_eq!(count_entries(dir.path(), &db).unwrap() as usize, entries);
        println!(
            "open with {entries} entries: sled {sled_open:?}, counting them {:?}",
            t.elapsed()
        );
    }
}
