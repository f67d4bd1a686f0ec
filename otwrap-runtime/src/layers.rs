//! The layers that wrap each single evaluation wherever it runs (a thread,
//! a worker process, a remote node): the work directory of
//! `#[temp_workdir]`, panic capture, and the log of `#[debug_log]`.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use serde::Serialize;

use crate::core::catch_panic;
use crate::core::paths::absolute;
use crate::core::{render_input, PointFailure};
pub use crate::core::{Failed, Layers, LogSpec};
use crate::failure_log::{FailureLog, LogRecord, Outcome};
use crate::workdir::WorkDir;

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
        workdir: kept.map(|p| absolute(&p)),
        log: log.map(|p| absolute(&p)),
    })
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
        workdir: workdir.map(|p| absolute(&p)),
        log: log.map(|p| absolute(&p)),
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
