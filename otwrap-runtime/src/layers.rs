//! The layers that wrap each single evaluation wherever it runs (a thread,
//! a worker process, a remote node): the work directory of
//! `#[temp_workdir]`, panic capture, and the log of `#[debug_log]`.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{render_input, Location, PointFailure};
use crate::failure_log::{FailureLog, LogRecord, Outcome};
use crate::model::catch_panic;
use crate::workdir::{WorkDir, WorkDirSpec};

/// Where `#[debug_log]` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSpec {
    /// The log file (relative paths are relative to the current directory).
    pub path: &'static str,
    /// Log every evaluation with its duration, not only failures.
    pub all: bool,
}

/// The per-evaluation layers of a model; built in a `static` by the macros.
#[derive(Debug, Clone)]
pub struct Layers {
    /// The work directory to create for each evaluation.
    pub workdir: Option<WorkDirSpec>,
    /// The failure log.
    pub log: Option<LogSpec>,
}

impl Layers {
    /// No layer: the model is called as it is.
    pub const NONE: Layers = Layers {
        workdir: None,
        log: None,
    };
}

/// A failed evaluation and the traces it left: what travels from wherever
/// the point ran back to the driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    /// Why it failed.
    pub failure: PointFailure,
    /// The work directory kept for inspection.
    pub workdir: Option<PathBuf>,
    /// The log file the failure was written to.
    pub log: Option<PathBuf>,
}

impl From<PointFailure> for Failed {
    fn from(failure: PointFailure) -> Self {
        Failed {
            failure,
            workdir: None,
            log: None,
        }
    }
}

impl Failed {
    /// The failure, and `base` completed with the kept work dir and log.
    pub fn into_parts(self, mut base: Location) -> (PointFailure, Location) {
        base.workdir = self.workdir;
        base.log = self.log;
        (self.failure, base)
    }
}

/// Runs one evaluation inside the layers: creates the work directory and
/// hands its path to `body`, turns a panic into a failure, cleans up by
/// policy, and logs the failure (or every evaluation).
pub fn evaluate_layers<I: Serialize + ?Sized, T>(
    function: &str,
    layers: &Layers,
    index: usize,
    input: &I,
    body: impl FnOnce(Option<&Path>) -> Result<T, PointFailure>,
) -> Result<T, Failed> {
    let start = Instant::now();
    let (outcome, kept) = match &layers.workdir {
        None => (catch_panic(|| body(None)), None),
        Some(spec) => match WorkDir::create(spec, index) {
            Err(e) => {
                let failure = PointFailure::Setup {
                    message: e.to_string(),
                };
                (Err(failure), None)
            }
            Ok(dir) => {
                let outcome = catch_panic(|| body(Some(dir.path())));
                let kept = dir.finish(outcome.is_ok());
                (outcome, kept)
            }
        },
    };
    let log = layers.log.and_then(|spec| {
        if outcome.is_ok() && !spec.all {
            return None;
        }
        let message = outcome.as_ref().err().map(PointFailure::to_string);
        write_log(
            spec,
            function,
            index,
            input,
            message.as_deref(),
            start,
            kept.as_deref(),
        )
    });
    outcome.map_err(|failure| Failed {
        failure,
        workdir: kept.map(absolute),
        log: log.map(absolute),
    })
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// The layers' part of a point whose worker process died under it (crash,
/// timeout kill): the worker could not report its work directory nor log
/// the failure, so the driver finds the directory the worker made for this
/// point (by its name: prefix, point, worker pid), applies the cleanup
/// policy, and writes the log record.
pub fn lost_evaluation<I: Serialize + ?Sized>(
    function: &str,
    layers: &Layers,
    index: usize,
    input: &I,
    failure: PointFailure,
    worker_pid: u32,
) -> Failed {
    let start = Instant::now();
    let workdir = layers.workdir.as_ref().and_then(|spec| {
        let base = spec.resolved_base();
        let stem = format!("{}{index}-{worker_pid}-", spec.prefix());
        let found = std::fs::read_dir(&base)
            .ok()?
            .filter_map(Result::ok)
            .find(|entry| entry.file_name().to_string_lossy().starts_with(&stem))?
            .path();
        if spec.cleanup_policy().removes(false) {
            if let Err(e) = std::fs::remove_dir_all(&found) {
                tracing::warn!(dir = %found.display(), "cannot remove the work dir of a lost worker: {e}");
                return Some(found);
            }
            return None;
        }
        Some(found)
    });
    let log = layers.log.and_then(|spec| {
        let message = failure.to_string();
        write_log(
            spec,
            function,
            index,
            input,
            Some(&message),
            start,
            workdir.as_deref(),
        )
    });
    Failed {
        failure,
        workdir: workdir.map(absolute),
        log: log.map(absolute),
    }
}

/// Appends one record; returns the log's path when a failure was written.
fn write_log<I: Serialize + ?Sized>(
    spec: LogSpec,
    function: &str,
    index: usize,
    input: &I,
    failure: Option<&str>,
    start: Instant,
    workdir: Option<&Path>,
) -> Option<PathBuf> {
    let input = render_input(input);
    let record = LogRecord {
        time: SystemTime::now(),
        function,
        index,
        input: &input,
        outcome: match failure {
            Some(message) => Outcome::Failed { message },
            None => Outcome::Succeeded,
        },
        duration: start.elapsed(),
        host: crate::host::hostname(),
        pid: std::process::id(),
        workdir,
    };
    // A log that cannot be written must not fail the point: the failure is
    // still in the batch results; say so loudly.
    match FailureLog::open(spec.path).and_then(|log| log.record(&record).map(|()| log)) {
        Ok(log) => failure.map(|_| log.path().to_path_buf()),
        Err(e) => {
            tracing::error!(log = spec.path, "cannot write the debug log: {e}");
            eprintln!("otwrap: cannot write the debug log {}: {e}", spec.path);
            None
        }
    }
}
