//! Durability of a disk store: group commit, and the entry count kept beside
//! the store.
//!
//! One background thread per open [`DiskStore`](super::store::DiskStore)
//! flushes sled as soon as the previous flush ends, covering every insert
//! that arrived meanwhile (group commit). A result is thus written to the
//! kernel one flush after it is inserted: a process killed at any moment
//! (SIGKILL, the OOM killer) loses only the results inserted during the
//! flush under way, not a time window. sled's flush also calls fsync, but the
//! guarantee made is against a process kill, not a power loss.
//!
//! After a successful flush the thread records how many entries the store
//! holds in [`COUNT_FILE_NAME`] (written to a temporary file, then renamed
//! over it): after every flush when results arrive slower than flushes, at
//! most every 100 ms in a flood of cheap results. The number written never exceeds what the flushed store
//! holds: inserts count only when they add a key (sled returns the replaced
//! value), and a removal (`clear`, a damaged entry) lowers the file before it
//! is applied. On the next open, a store holding fewer entries than the file
//! says has lost some: the store warns instead of recomputing in silence.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Name of the file, inside a disk cache directory, that records how many
/// entries the store held after its last flush.
pub const COUNT_FILE_NAME: &str = "otwrap.entries";
/// The temporary file renamed over [`COUNT_FILE_NAME`]; one fixed name, so a
/// process killed between write and rename leaves one stale file, not many.
const COUNT_TEMP_NAME: &str = "otwrap.entries.tmp";
/// How often the count file is rewritten while flushes follow each other
/// without a pause (a flood of cheap results).
const COUNT_EVERY: Duration = Duration::from_millis(100);
/// First line of the count file: what it is and its format version.
const COUNT_HEADER: &str = "otwrap cache entry count, format 1";

/// What the count file says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Recorded {
    /// No count file: a new store, or one written by an otwrap before it.
    Missing,
    /// The entries the store held after its last flush.
    Entries(u64),
    /// The file exists but does not hold a count this otwrap reads.
    Unreadable(String),
}

/// Reads the count file of the store in `dir`.
pub(super) fn read_count(dir: &Path) -> Recorded {
    let text = match fs::read_to_string(dir.join(COUNT_FILE_NAME)) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Recorded::Missing,
        Err(e) => return Recorded::Unreadable(e.to_string()),
    };
    let mut lines = text.lines();
    if lines.next() != Some(COUNT_HEADER) {
        return Recorded::Unreadable("it does not start with the expected header".into());
    }
    match lines.next().and_then(|l| l.trim().parse().ok()) {
        Some(n) => Recorded::Entries(n),
        None => Recorded::Unreadable("no entry count in it".into()),
    }
}

/// Writes the count file atomically (temporary file, then rename). No fsync:
/// like the flushes, it guards against a process kill, not a power loss.
pub(super) fn write_count(dir: &Path, entries: u64) -> io::Result<()> {
    let temp = dir.join(COUNT_TEMP_NAME);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&temp)?;
    file.write_all(format!("{COUNT_HEADER}\n{entries}\n").as_bytes())?;
    drop(file);
    fs::rename(&temp, dir.join(COUNT_FILE_NAME))
}

/// sled's error as an `io::Error` that displays well: an I/O error as
/// itself ("No space left on device"), not sled's debug rendering of it.
pub(super) fn sled_to_io(err: sled::Error) -> io::Error {
    match err {
        sled::Error::Io(err) => match os_error_code(&err.to_string()) {
            // sled hands out copies of a failed write as `Os { code: 28, .. }`
            // text (its errors are cloned through their debug form).
            Some(code) => io::Error::from_raw_os_error(code),
            None => err,
        },
        other => io::Error::other(other.to_string()),
    }
}

/// The `N` of a debug-printed `Os { code: N, .. }`.
fn os_error_code(text: &str) -> Option<i32> {
    let rest = text.strip_prefix("Os { code: ")?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    rest[..end].parse().ok()
}

/// Why a flush failed, kept so that every waiter and the next insert can
/// report it (an `io::Error` cannot be cloned).
#[derive(Debug)]
struct Failure {
    attempt: u64,
    kind: io::ErrorKind,
    message: String,
}

impl Failure {
    fn to_error(&self) -> io::Error {
        io::Error::new(self.kind, self.message.clone())
    }
}

#[derive(Debug, Default)]
struct State {
    /// Changes applied to sled so far (inserts and removals): the sequence
    /// number a flush covers.
    applied: u64,
    /// Entries in the store (sled's memory, flushed or not).
    entries: u64,
    /// Entries removed since the store was opened.
    removed: u64,
    /// The `applied` covered by the latest flush started.
    attempted: u64,
    /// The `applied` covered by the latest flush that succeeded.
    durable: u64,
    /// Flushes started so far.
    attempts: u64,
    /// The latest failed flush.
    failure: Option<Failure>,
    /// The attempt of the latest failure handed to an insert.
    reported: u64,
    /// A waiter wants one more flush even if nothing new was applied (after
    /// a failure).
    retry: bool,
    /// The thread is waiting for work (so an insert must wake it).
    idle: bool,
    /// The store is being dropped: flush what is left and stop.
    closing: bool,
    /// The thread has ended.
    stopped: bool,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// Wakes the thread: something was applied, a retry, or closing.
    work: Condvar,
    /// Wakes waiters: a flush ended.
    done: Condvar,
    /// The count last written to the file; held while writing it, so that
    /// writes never cross.
    written: Mutex<u64>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn written(&self) -> MutexGuard<'_, u64> {
        self.written.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the count after a flush that covered `entries` (taken when
    /// `removed` removals were known): removals begun since are subtracted,
    /// so the file never says more than the flushed store holds.
    fn record_count(&self, entries: u64, removed: u64) -> io::Result<()> {
        let mut written = self.written();
        let removed_since = self.state().removed.saturating_sub(removed);
        let count = entries.saturating_sub(removed_since);
        write_count(&self.dir, count)?;
        *written = count;
        Ok(())
    }
}

/// The group-commit thread of one open disk store, and the bookkeeping its
/// users share with it. Dropping it flushes what is left and joins the thread.
#[derive(Debug)]
pub(super) struct Flusher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Starts the thread for the store `db` in `dir`, which holds `entries`
    /// entries (also written to the count file now).
    pub(super) fn start(db: sled::Db, dir: PathBuf, entries: u64) -> io::Result<Flusher> {
        write_count(&dir, entries)?;
        let shared = Arc::new(Shared {
            dir,
            state: Mutex::new(State {
                entries,
                ..State::default()
            }),
            work: Condvar::new(),
            done: Condvar::new(),
            written: Mutex::new(entries),
        });
        let thread = thread::Builder::new()
            .name("otwrap-cache-flush".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || flush_loop(&shared, &db)
            })?;
        Ok(Flusher {
            shared,
            thread: Some(thread),
        })
    }

    /// Records `changes` changes just applied to sled, `added` of them new
    /// keys, and wakes the thread. Returns a flush failure no insert has
    /// reported yet (the results inserted since the last good flush are not
    /// on disk).
    pub(super) fn applied(&self, changes: u64, added: u64) -> Option<io::Error> {
        let mut state = self.shared.state();
        state.applied += changes;
        state.entries += added;
        if state.idle {
            // Only when it sleeps: a notify is a system call, and a flood of
            // inserts finds the thread busy flushing.
            state.idle = false;
            self.shared.work.notify_one();
        }
        match &state.failure {
            Some(failure) if failure.attempt > state.reported => {
                let error = failure.to_error();
                state.reported = failure.attempt;
                Some(error)
            }
            _ => None,
        }
    }

    /// To call before removing `n` entries from sled: lowers the count (in
    /// memory and in the file) first, so that the file never says more than
    /// the store holds, whenever sled writes the removal.
    pub(super) fn removing(&self, n: u64) -> io::Result<()> {
        {
            let mut state = self.shared.state();
            state.entries = state.entries.saturating_sub(n);
            state.removed += n;
        }
        let mut written = self.shared.written();
        let count = written.saturating_sub(n);
        write_count(&self.shared.dir, count)?;
        *written = count;
        Ok(())
    }

    /// Undoes [`removing`](Self::removing) for `n` entries that were not
    /// removed after all (the count file stays lower, which is safe).
    pub(super) fn not_removed(&self, n: u64) {
        self.shared.state().entries += n;
    }

    /// Waits until every change applied before the call is flushed, or a
    /// flush that started after the call failed.
    pub(super) fn flush(&self) -> io::Result<()> {
        let mut state = self.shared.state();
        let target = state.applied;
        if state.durable >= target {
            return Ok(());
        }
        let floor = state.attempts;
        // One more attempt even if nothing new comes (the one under way may
        // not cover `target`, or may fail).
        state.retry = true;
        if state.idle {
            state.idle = false;
            self.shared.work.notify_one();
        }
        loop {
            if state.durable >= target {
                return Ok(());
            }
            if let Some(failure) = state.failure.as_ref().filter(|f| f.attempt > floor) {
                return Err(failure.to_error());
            }
            if state.stopped {
                return Err(io::Error::other("the cache's flush thread has stopped"));
            }
            state = self
                .shared
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        {
            let mut state = self.shared.state();
            state.closing = true;
            self.shared.work.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            // The thread catches sled's panics; a join error would be ours.
            if thread.join().is_err() {
                tracing::error!(cache = %self.shared.dir.display(), "the cache's flush thread panicked");
            }
        }
    }
}

/// Marks the thread stopped however it ends, so no waiter waits forever.
struct StopGuard<'a>(&'a Shared);

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        self.0.state().stopped = true;
        self.0.done.notify_all();
    }
}

fn flush_loop(shared: &Shared, db: &sled::Db) {
    let _stop = StopGuard(shared);
    let mut last_count = Instant::now();
    let mut state = shared.state();
    loop {
        while !(state.closing || state.retry || state.applied > state.attempted) {
            state.idle = true;
            state = shared
                .work
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.idle = false;
        if state.closing && state.applied <= state.durable {
            return;
        }
        let closing = state.closing;
        let requested = state.retry;
        let target = state.applied;
        let (entries, removed) = (state.entries, state.removed);
        state.retry = false;
        state.attempted = target;
        state.attempts += 1;
        let attempt = state.attempts;
        drop(state);

        let result = match panic::catch_unwind(AssertUnwindSafe(|| db.flush())) {
            Ok(Ok(_)) => {
                // In a flood of inserts the next flush starts at once: the
                // count is then written at most every COUNT_EVERY (a count
                // behind the store only checks less, never warns wrongly).
                // When the store goes quiet, a flush is asked for or the
                // store closes, it is written after every flush.
                let quiet = shared.state().applied == target;
                if quiet || requested || closing || last_count.elapsed() >= COUNT_EVERY {
                    last_count = Instant::now();
                    shared.record_count(entries, removed)
                } else {
                    Ok(())
                }
            }
            Ok(Err(e)) => Err(sled_to_io(e)),
            Err(_) => Err(io::Error::other("sled panicked while flushing")),
        };

        state = shared.state();
        match result {
            Ok(()) => state.durable = state.durable.max(target),
            Err(e) => {
                tracing::debug!(cache = %shared.dir.display(), %e, "flush failed");
                state.failure = Some(Failure {
                    attempt,
                    kind: e.kind(),
                    message: e.to_string(),
                });
            }
        }
        shared.done.notify_all();
        if closing {
            if let Some(failure) = &state.failure {
                if failure.attempt == attempt {
                    tracing::error!(
                        cache = %shared.dir.display(),
                        "the last results could not be written to the cache at {} as it closed: {}",
                        shared.dir.display(),
                        failure.message
                    );
                }
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sled_io_errors_display_as_the_os_error() {
        let copied = sled::Error::Io(io::Error::other(format!(
            "{:?}",
            io::Error::from_raw_os_error(libc::ENOSPC)
        )));
        let err = sled_to_io(copied);
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(err.to_string().contains("No space left"), "{err}");
        let plain = sled_to_io(sled::Error::Io(io::Error::other("could not acquire lock")));
        assert_eq!(plain.to_string(), "could not acquire lock");
    }

    #[test]
    fn count_file_round_trips_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_count(dir.path()), Recorded::Missing);
        write_count(dir.path(), 1234).unwrap();
        assert_eq!(read_count(dir.path()), Recorded::Entries(1234));
        assert!(!dir.path().join(COUNT_TEMP_NAME).exists());
        fs::write(dir.path().join(COUNT_FILE_NAME), "12\n").unwrap();
        assert!(matches!(read_count(dir.path()), Recorded::Unreadable(_)));
        fs::write(
            dir.path().join(COUNT_FILE_NAME),
            format!("{COUNT_HEADER}\nmany\n"),
        )
        .unwrap();
        assert!(matches!(read_count(dir.path()), Recorded::Unreadable(_)));
    }

    fn open_db(dir: &Path) -> sled::Db {
        sled::Config::new().path(dir.join("db")).open().unwrap()
    }

    #[test]
    fn flush_covers_every_change_before_it_and_records_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let flusher = Flusher::start(db.clone(), dir.path().to_path_buf(), 0).unwrap();
        for i in 0..100u32 {
            let old = db.insert(i.to_be_bytes(), &[1u8][..]).unwrap();
            assert!(flusher.applied(1, u64::from(old.is_none())).is_none());
        }
        // Replacing a key changes nothing in the count.
        let old = db.insert(7u32.to_be_bytes(), &[2u8][..]).unwrap();
        assert!(flusher.applied(1, u64::from(old.is_none())).is_none());
        flusher.flush().unwrap();
        assert_eq!(read_count(dir.path()), Recorded::Entries(100));
        flusher.removing(10).unwrap();
        assert_eq!(read_count(dir.path()), Recorded::Entries(90));
        for i in 0..10u32 {
            db.remove(i.to_be_bytes()).unwrap();
        }
        flusher.applied(10, 0);
        flusher.flush().unwrap();
        assert_eq!(read_count(dir.path()), Recorded::Entries(90));
        // Nothing applied since: returns at once.
        flusher.flush().unwrap();
    }

    #[test]
    fn dropping_flushes_and_ends_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path());
        let flusher = Flusher::start(db.clone(), dir.path().to_path_buf(), 0).unwrap();
        db.insert(b"k", &b"v"[..]).unwrap();
        flusher.applied(1, 1);
        let shared = Arc::clone(&flusher.shared);
        drop(flusher);
        assert_eq!(read_count(dir.path()), Recorded::Entries(1));
        // Dropped means joined: the thread has ended, not merely been told to.
        assert!(shared.state().stopped);
        assert_eq!(Arc::strong_count(&shared), 1);
    }
}
