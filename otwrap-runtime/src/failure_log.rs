//! The failure log and the process logger: the runtime side of
//! `#[debug_log("beam.log", all = false)]` and of [`create_logger`].
//!
//! This module owns the on-disk format of the failure log (one line per
//! evaluation record, `key=value` fields, see [`LogRecord`]) and the rules
//! that keep it whole when many threads and processes append at once: the
//! file is opened with `O_APPEND` and never truncated (otwrapy's `Debug`
//! truncated it when decorating, losing earlier runs), each record is
//! formatted into one buffer and written with one `write(2)` under an
//! exclusive `flock`, and one handle per path is shared by the whole process.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::secure_fs::Refused;

/// Why a log could not be opened, written or installed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file's parent directory could not be created.
    #[error("cannot create the directory `{path}` of a log file: {source}; check permissions or choose another log path")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The log file, or a directory otwrap would create for it, belongs to
    /// another user or is their symlink.
    #[error("refusing to open log file `{path}`: {reason}")]
    Unsafe {
        /// The offending path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The log file could not be opened for appending.
    #[error("cannot open log file `{path}` for appending: {source}; check permissions or choose another log path")]
    Open {
        /// The log file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Locking or writing a record failed.
    #[error("cannot append to log file `{path}`: {source}; check free space and that the file system supports flock")]
    Write {
        /// The log file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// [`create_logger`] was already called in this process.
    #[error("the otwrap logger is already installed in this process; call create_logger once (a second subscriber would duplicate every message)")]
    LoggerAlreadyInstalled,
    /// Another global tracing subscriber was installed by someone else.
    #[error(
        "another global tracing subscriber is already installed; remove it or skip create_logger"
    )]
    OtherSubscriberInstalled,
    /// The logger configuration writes nowhere.
    #[error("logger configuration has neither a file nor stderr; set `file` or `stderr: true`")]
    NoOutput,
}

/// The outcome of one evaluation, as recorded in the failure log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The evaluation returned an error or panicked; `message` says why.
    Failed {
        /// The error or panic message (may span several lines).
        message: &'a str,
    },
    /// The evaluation succeeded (recorded only when logging every evaluation).
    Succeeded,
}

/// One evaluation, as written to the failure log.
///
/// It becomes one line:
/// `2026-11-25T18:00:00.123Z FAILED function=beam point=17 host=node1 pid=123
/// duration=0.004000s workdir=/tmp/beam-17-123-0-abcdef input="[1.0, 2.0]"
/// error="..."`. Values are written bare when they contain no space, `"`,
/// `=`, `\` or control character, and quoted otherwise, with `\n`, `\r`,
/// `\t`, `\"`, `\\` and `\u{..}` escapes so that a record stays on one line
/// (the logfmt convention). `workdir` is present only when one was kept,
/// `error` only for failures.
#[derive(Debug, Clone, Copy)]
pub struct LogRecord<'a> {
    /// When the evaluation ended.
    pub time: SystemTime,
    /// The model function's name.
    pub function: &'a str,
    /// The point's index in the batch.
    pub index: usize,
    /// The input point, already formatted (for instance with `{:?}`).
    pub input: &'a str,
    /// Failure or success.
    pub outcome: Outcome<'a>,
    /// How long the evaluation took.
    pub duration: Duration,
    /// The host it ran on (see [`hostname`]).
    pub host: &'a str,
    /// The process it ran in.
    pub pid: u32,
    /// The work directory, when one was kept.
    pub workdir: Option<&'a Path>,
}

impl LogRecord<'_> {
    /// Formats the record as one line, newline included.
    ///
    /// ```
    /// use otwrap_runtime::failure_log::{LogRecord, Outcome};
    /// use std::time::{Duration, UNIX_EPOCH};
    ///
    /// let rec = LogRecord {
    ///     time: UNIX_EPOCH + Duration::from_millis(1_764_093_600_123),
    ///     function: "beam",
    ///     index: 17,
    ///     input: "[1.0, 2.0]",
    ///     outcome: Outcome::Failed { message: "solver diverged\nat step 3" },
    ///     duration: Duration::from_millis(4),
    ///     host: "node1",
    ///     pid: 123,
    ///     workdir: None,
    /// };
    /// assert_eq!(
    ///     rec.to_line(),
    ///     "2025-11-25T18:00:00.123Z FAILED function=beam point=17 host=node1 pid=123 \
    ///      duration=0.004000s input=\"[1.0, 2.0]\" error=\"solver diverged\\nat step 3\"\n"
    /// );
    /// ```
    pub fn to_line(&self) -> String {
        let mut line = String::with_capacity(160 + self.input.len());
        line.push_str(&format_utc(self.time));
        line.push_str(match self.outcome {
            Outcome::Failed { .. } => " FAILED",
            Outcome::Succeeded => " OK",
        });
        push_field(&mut line, "function", self.function);
        let _ = write!(line, " point={} ", self.index);
        push_field_raw(&mut line, "host", self.host);
        let _ = write!(
            line,
            " pid={} duration={}.{:06}s",
            self.pid,
            self.duration.as_secs(),
            self.duration.subsec_micros()
        );
        if let Some(wd) = self.workdir {
            push_field(&mut line, "workdir", &wd.to_string_lossy());
        }
        push_field(&mut line, "input", self.input);
        if let Outcome::Failed { message } = self.outcome {
            push_field(&mut line, "error", message);
        }
        line.push('\n');
        line
    }
}

fn push_field(line: &mut String, key: &str, value: &str) {
    line.push(' ');
    push_field_raw(line, key, value);
}

fn push_field_raw(line: &mut String, key: &str, value: &str) {
    line.push_str(key);
    line.push('=');
    let needs_quotes = value.is_empty()
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'));
    if !needs_quotes {
        line.push_str(value);
        return;
    }
    line.push('"');
    for c in value.chars() {
        match c {
            '\n' => line.push_str("\\n"),
            '\r' => line.push_str("\\r"),
            '\t' => line.push_str("\\t"),
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            // Also catches U+2028/U+2029 and other separators some tools
            // treat as line breaks.
            c if c.is_control() || (c.is_whitespace() && c != ' ') => {
                let _ = write!(line, "\\u{{{:x}}}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push('"');
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds).
///
/// ```
/// use otwrap_runtime::failure_log::format_utc;
/// use std::time::{Duration, UNIX_EPOCH};
/// assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
/// assert_eq!(
///     format_utc(UNIX_EPOCH + Duration::from_millis(951_782_400_007)),
///     "2000-02-29T00:00:00.007Z"
/// );
/// ```
pub fn format_utc(time: SystemTime) -> String {
    // Whole milliseconds since the epoch, negative before it.
    let millis: i128 = match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => {
            let d = e.duration();
            // Round away from the epoch so that floor division stays right.
            -(d.as_millis() as i128) - i128::from(d.subsec_nanos() % 1_000_000 != 0)
        }
    };
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub use crate::host::hostname;

#[derive(Debug)]
struct Shared {
    path: PathBuf,
    // The mutex orders this process's threads: flock is held per open file
    // description, so it does not exclude threads sharing this handle.
    file: Mutex<File>,
}

/// An append-only failure log file, shared by every thread of the process.
///
/// ```
/// use otwrap_runtime::failure_log::{hostname, FailureLog, LogRecord, Outcome};
/// use std::time::{Duration, SystemTime};
///
/// let dir = tempfile::tempdir()?;
/// let log = FailureLog::open(dir.path().join("logs/beam.log"))?;
/// log.record(&LogRecord {
///     time: SystemTime::now(),
///     function: "beam",
///     index: 3,
///     input: "[1.0]",
///     outcome: Outcome::Failed { message: "exit code 1" },
///     duration: Duration::from_millis(12),
///     host: hostname(),
///     pid: std::process::id(),
///     workdir: None,
/// })?;
/// let text = std::fs::read_to_string(log.path())?;
/// assert!(text.contains("FAILED function=beam point=3"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct FailureLog {
    shared: Arc<Shared>,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Arc<Shared>>> {
    static OPEN_LOGS: OnceLock<Mutex<HashMap<PathBuf, Arc<Shared>>>> = OnceLock::new();
    OPEN_LOGS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Creates the missing directories of a log path (mode 0700).
fn create_parent(path: &Path) -> Result<(), LogError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            crate::secure_fs::create_private_dir(parent, 0).map_err(|refused| match refused {
                Refused::Io { path, source } => LogError::CreateDir { path, source },
                Refused::NotADirectory { path } => LogError::CreateDir {
                    path,
                    source: io::Error::other("it exists and is not a directory"),
                },
                Refused::Unsafe { path, reason } => LogError::Unsafe { path, reason },
            })
        }
        _ => Ok(()),
    }
}

/// Opens a log for appending. A symlink or a file of another user at its
/// path is refused (it could send our records into their file, or ours into
/// a file they chose); a link of the user's own is followed.
fn open_append(path: &Path) -> Result<File, LogError> {
    create_parent(path)?;
    let follow = crate::secure_fs::check_file(path).map_err(|refused| match refused {
        Refused::Unsafe { path, reason } => LogError::Unsafe { path, reason },
        Refused::Io { path, source } => LogError::Open { path, source },
        Refused::NotADirectory { path } => LogError::Open {
            path,
            source: io::Error::other("a directory is in the way"),
        },
    })?;
    let mut options = OpenOptions::new();
    options.append(true).create(true);
    // Nothing was there, or a regular file: a link appearing meanwhile is
    // refused by the kernel (ELOOP) rather than followed.
    if !follow || !fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options.open(path).map_err(|source| LogError::Open {
        path: path.to_path_buf(),
        source,
    })
}

impl FailureLog {
    /// Opens (creating it and its parent directories if needed) the log at
    /// `path` for appending; it is never truncated. Opening the same file
    /// twice in a process returns the same shared handle.
    pub fn open(path: impl AsRef<Path>) -> Result<FailureLog, LogError> {
        let path = path.as_ref();
        let file = open_append(path)?;
        // Key by the canonical path, so `a/../beam.log` and `beam.log` share.
        let key = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let mut open = registry().lock().unwrap_or_else(PoisonError::into_inner);
        let shared = open
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Shared {
                    path: path.to_path_buf(),
                    file: Mutex::new(file),
                })
            })
            .clone();
        Ok(FailureLog { shared })
    }

    /// The path the log was first opened with.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Appends one record as one line (see [`LogRecord`] for the format).
    pub fn record(&self, rec: &LogRecord<'_>) -> Result<(), LogError> {
        self.write_line(rec.to_line().as_bytes())
    }

    fn write_line(&self, buf: &[u8]) -> Result<(), LogError> {
        let file = self
            .shared
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let err = |source| LogError::Write {
            path: self.shared.path.clone(),
            source,
        };
        // The lock is between processes (a worker and its driver may log to
        // the same file); the mutex above is between threads.
        lock_exclusive(&file).map_err(err)?;
        let written = write_whole(&file, buf);
        let unlocked = file.unlock();
        written.map_err(err)?;
        unlocked.map_err(err)
    }
}

/// `flock(LOCK_EX)` through std, waiting again when a signal interrupts it.
fn lock_exclusive(file: &File) -> io::Result<()> {
    loop {
        match file.lock() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// One `write(2)` of the whole buffer in the normal case; a short write
/// (signal, full disk) is completed while the lock is still held.
fn write_whole(mut file: &File, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write(buf) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Where [`create_logger`] sends tracing output, and from which level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerConfig {
    /// A file to append to (created with its parent directories, never truncated).
    pub file: Option<PathBuf>,
    /// Whether to also write to stderr.
    pub stderr: bool,
    /// The most verbose level written.
    pub level: tracing::Level,
}

impl Default for LoggerConfig {
    /// Stderr only, at `INFO`.
    fn default() -> Self {
        LoggerConfig {
            file: None,
            stderr: true,
            level: tracing::Level::INFO,
        }
    }
}

static LOGGER_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs the process-wide tracing subscriber: plain-text lines to the
/// file and/or stderr at `config.level` and above.
///
/// It can be installed once per process; a second call returns
/// [`LogError::LoggerAlreadyInstalled`] and changes nothing, so messages are
/// never duplicated (otwrapy's `create_logger` added a handler per call).
///
/// ```no_run
/// use otwrap_runtime::failure_log::{create_logger, LoggerConfig};
///
/// create_logger(LoggerConfig {
///     file: Some("run/otwrap.log".into()),
///     stderr: true,
///     level: tracing::Level::INFO,
/// })?;
/// tracing::info!("batch started");
/// # Ok::<(), otwrap_runtime::failure_log::LogError>(())
/// ```
pub fn create_logger(config: LoggerConfig) -> Result<(), LogError> {
    use tracing_subscriber::filter::LevelFilter;
    use tracing_subscriber::layer::SubscriberExt;

    if config.file.is_none() && !config.stderr {
        return Err(LogError::NoOutput);
    }
    if LOGGER_INSTALLED.load(Ordering::SeqCst) {
        return Err(LogError::LoggerAlreadyInstalled);
    }
    let file_layer = match &config.file {
        Some(path) => {
            let file = open_append(path)?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(Mutex::new(file))
                    // Colour codes have no place in a file, whatever the
                    // crate features say.
                    .with_ansi(false)
                    .with_target(true),
            )
        }
        None => None,
    };
    let stderr_layer = config
        .stderr
        .then(|| tracing_subscriber::fmt::layer().with_writer(io::stderr));
    let subscriber = tracing_subscriber::registry()
        .with(LevelFilter::from_level(config.level))
        .with(file_layer)
        .with(stderr_layer);
    // Checked again here: two racing first calls must not both succeed.
    if LOGGER_INSTALLED.swap(true, Ordering::SeqCst) {
        return Err(LogError::LoggerAlreadyInstalled);
    }
    tracing::subscriber::set_global_default(subscriber).map_err(|_| {
        LOGGER_INSTALLED.store(false, Ordering::SeqCst);
        LogError::OtherSubscriberInstalled
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::process::Command;
    use std::sync::Barrier;

    const CHILD_ENV: &str = "OTWRAP_TEST_FAILURE_LOG_CHILD";

    /// Parses a line written by `to_line` back into (status, fields), checking
    /// that it is whole: every field well-formed, quotes closed.
    fn parse_line(line: &str) -> Option<(String, HashMap<String, String>)> {
        let mut rest = line;
        let (time, r) = rest.split_once(' ')?;
        if time.len() != 24 || !time.ends_with('Z') {
            return None;
        }
        let (status, r) = r.split_once(' ')?;
        rest = r;
        let mut fields = HashMap::new();
        while !rest.is_empty() {
            let (key, r) = rest.split_once('=')?;
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase()) {
                return None;
            }
            let mut value = String::new();
            let mut chars = r.chars();
            let mut consumed;
            if r.starts_with('"') {
                chars.next();
                consumed = 1;
                loop {
                    let c = chars.next()?;
                    consumed += c.len_utf8();
                    match c {
                        '"' => break,
                        '\\' => {
                            let e = chars.next()?;
                            consumed += e.len_utf8();
                            value.push(match e {
                                'n' => '\n',
                                'r' => '\r',
                                't' => '\t',
                                '"' => '"',
                                '\\' => '\\',
                                _ => return None,
                            });
                        }
                        c => value.push(c),
                    }
                }
            } else {
                consumed = r.find(' ').unwrap_or(r.len());
                value.push_str(&r[..consumed]);
            }
            rest = &r[consumed..];
            if let Some(r) = rest.strip_prefix(' ') {
                rest = r;
            } else if !rest.is_empty() {
                return None;
            }
            if fields.insert(key.to_owned(), value).is_some() {
                return None;
            }
        }
        Some((status.to_owned(), fields))
    }

    fn failed<'a>(index: usize, input: &'a str, message: &'a str) -> LogRecord<'a> {
        LogRecord {
            time: SystemTime::now(),
            function: "beam",
            index,
            input,
            outcome: Outcome::Failed { message },
            duration: Duration::from_micros(1234),
            host: "testhost",
            pid: std::process::id(),
            workdir: None,
        }
    }

    /// Checks every line is whole, and returns the (pid, writer, point) triples.
    fn check_lines(text: &str) -> HashSet<(String, String, usize)> {
        let mut seen = HashSet::new();
        for line in text.lines() {
            let (status, f) =
                parse_line(line).unwrap_or_else(|| panic!("torn or malformed line: {line:?}"));
            assert_eq!(status, "FAILED");
            let point: usize = f["point"].parse().unwrap();
            let (writer, p) = f["input"].split_once(':').unwrap();
            assert_eq!(p.parse::<usize>().unwrap(), point);
            assert!(f["error"].starts_with("line one\nline two"), "{line}");
            assert!(
                seen.insert((f["pid"].clone(), writer.to_owned(), point)),
                "duplicate {line}"
            );
        }
        seen
    }

    /// Long enough that a torn write would show, still one record.
    fn long_message() -> String {
        format!("line one\nline two \"quoted\" {}", "x".repeat(5000))
    }

    #[test]
    fn concurrent_threads_write_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("threads.log");
        let threads = 16;
        let per_thread = 500;
        let barrier = Arc::new(Barrier::new(threads));
        let msg = Arc::new(long_message());
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let path = path.clone();
                let barrier = Arc::clone(&barrier);
                let msg = Arc::clone(&msg);
                std::thread::spawn(move || {
                    // Each thread opens on its own: the registry must share.
                    let log = FailureLog::open(&path).unwrap();
                    barrier.wait();
                    for i in 0..per_thread {
                        let input = format!("t{t}:{i}");
                        log.record(&failed(i, &input, &msg)).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let text = fs::read_to_string(&path).unwrap();
        let seen = check_lines(&text);
        assert_eq!(seen.len(), threads * per_thread);
        assert_eq!(text.lines().count(), threads * per_thread);
    }

    /// Runs only as a child of `concurrent_processes_write_whole_lines`.
    #[test]
    fn child_process_writer() {
        let Ok(path) = std::env::var(CHILD_ENV) else {
            return;
        };
        let writer = std::env::var("OTWRAP_TEST_WRITER").unwrap();
        let log = FailureLog::open(&path).unwrap();
        let msg = long_message();
        for i in 0..500 {
            let input = format!("{writer}:{i}");
            log.record(&failed(i, &input, &msg)).unwrap();
        }
    }

    #[test]
    fn concurrent_processes_write_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("procs.log");
        let exe = std::env::current_exe().unwrap();
        // The test's own name, wherever this module is mounted in the crate.
        let module = module_path!().split_once("::").map_or("", |(_, m)| m);
        let child_test = format!("{module}::child_process_writer");
        let processes = 4;
        let children: Vec<_> = (0..processes)
            .map(|p| {
                Command::new(&exe)
                    .args([child_test.as_str(), "--exact", "--test-threads=1"])
                    .env(CHILD_ENV, &path)
                    .env("OTWRAP_TEST_WRITER", format!("proc{p}"))
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut c in children {
            assert!(c.wait().unwrap().success());
        }
        let text = fs::read_to_string(&path).unwrap();
        let seen = check_lines(&text);
        assert_eq!(seen.len(), processes * 500);
        let pids: HashSet<_> = seen.iter().map(|(pid, _, _)| pid.clone()).collect();
        assert_eq!(pids.len(), processes);
    }

    #[test]
    fn reopen_appends_never_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/app.log");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "earlier run\n").unwrap();
        FailureLog::open(&path)
            .unwrap()
            .record(&failed(1, "a", "line one\nline two"))
            .unwrap();
        // Bypass the shared handle, as a new process would.
        let _ = File::options().append(true).open(&path).unwrap();
        let again = FailureLog::open(&path).unwrap();
        again.record(&failed(2, "b", "line one\nline two")).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "earlier run");
        assert!(lines[1].contains("point=1"));
        assert!(lines[2].contains("point=2"));
    }

    #[test]
    fn open_creates_parent_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c.log");
        let log = FailureLog::open(&path).unwrap();
        assert!(path.is_file());
        assert_eq!(log.path(), path);
    }

    #[test]
    fn open_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, "").unwrap();
        let err = FailureLog::open(file.join("x.log")).unwrap_err();
        assert!(err.to_string().contains("plain"), "{err}");
    }

    #[test]
    fn escaping_keeps_one_line() {
        let wd = PathBuf::from("/tmp/with space/wd");
        let rec = LogRecord {
            workdir: Some(&wd),
            outcome: Outcome::Failed {
                message: "a\nb\r\nc\t\"d\" \\ e\u{2028}f\u{1b}",
            },
            ..failed(5, "[1.0,\n2.0]", "")
        };
        let line = rec.to_line();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        assert!(
            line.contains(r#"error="a\nb\r\nc\t\"d\" \\ e\u{2028}f\u{1b}""#),
            "{line}"
        );
        assert!(line.contains(r#"input="[1.0,\n2.0]""#), "{line}");
        assert!(line.contains(r#"workdir="/tmp/with space/wd""#), "{line}");
        assert!(line.contains(" host=testhost "), "{line}");
        let ok = LogRecord {
            outcome: Outcome::Succeeded,
            input: "",
            ..rec
        }
        .to_line();
        assert!(ok.contains(" OK function=beam point=5 "), "{ok}");
        assert!(ok.contains(r#"input="""#), "{ok}");
        assert!(!ok.contains("error="), "{ok}");
        let (status, f) = parse_line(ok.trim_end()).unwrap();
        assert_eq!(status, "OK");
        assert_eq!(f["workdir"], "/tmp/with space/wd");
        assert_eq!(f["duration"], "0.001234s");
    }

    #[test]
    fn time_format() {
        let at = |ms: u64| format_utc(UNIX_EPOCH + Duration::from_millis(ms));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_764_093_600_123), "2025-11-25T18:00:00.123Z");
        assert_eq!(at(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(at(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(at(1_709_251_199_000), "2024-02-29T23:59:59.000Z");
        assert_eq!(
            format_utc(UNIX_EPOCH - Duration::from_millis(1)),
            "1969-12-31T23:59:59.999Z"
        );
        assert_eq!(
            format_utc(UNIX_EPOCH - Duration::from_secs(86_400 * 365)),
            "1969-01-01T00:00:00.000Z"
        );
        // Sub-millisecond times are truncated toward the past.
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_micros(1_999)),
            "1970-01-01T00:00:00.001Z"
        );
        assert_eq!(
            format_utc(UNIX_EPOCH - Duration::from_micros(1)),
            "1969-12-31T23:59:59.999Z"
        );
        // Cross-check the civil conversion day by day over 1970..2400.
        let mut expected = (1970i64, 1u32, 1u32);
        for day in 0..(430 * 366) {
            assert_eq!(civil_from_days(day), expected, "day {day}");
            let (y, m, d) = expected;
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            expected = if d < len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }

    /// The only test that installs the global subscriber.
    #[test]
    fn create_logger_once_without_duplicates() {
        assert!(matches!(
            create_logger(LoggerConfig {
                file: None,
                stderr: false,
                level: tracing::Level::INFO
            }),
            Err(LogError::NoOutput)
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/run.log");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "kept\n").unwrap();
        let config = LoggerConfig {
            file: Some(path.clone()),
            stderr: false,
            level: tracing::Level::INFO,
        };
        create_logger(config.clone()).unwrap();
        let second = create_logger(config).unwrap_err();
        assert!(
            matches!(second, LogError::LoggerAlreadyInstalled),
            "{second}"
        );
        tracing::info!("unique-marker-4711");
        tracing::debug!("below-level-marker");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("kept\n"));
        assert_eq!(text.matches("unique-marker-4711").count(), 1, "{text}");
        assert!(!text.contains("below-level-marker"));
        assert!(!text.contains('\u{1b}'), "ANSI codes in {text:?}");
    }
}
