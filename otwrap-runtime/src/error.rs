//! The error types: [`Error`] for a batch or a call that could not be run at
//! all, and [`PointError`] for one point that failed inside a batch.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An error that stops a batch (or a single call) before or outside the
/// evaluation of its points: a bad configuration, a worker binary that cannot
/// be started, a point error taken out of a batch with [`Batch::values`].
///
/// A failing *point* never produces this type inside a batch: it becomes a
/// [`PointError`] in the batch results, and the other points go on.
///
/// [`Batch::values`]: crate::Batch::values
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration file, an environment variable or a run-time option is
    /// invalid. The message names the source and the valid values.
    #[error("otwrap configuration error: {0}")]
    Config(String),

    /// A backend could not start its workers.
    #[error("otwrap could not start the {backend} backend: {message}")]
    Backend {
        /// The backend (`processes`, `ssh`, ...).
        backend: &'static str,
        /// What went wrong and what to do.
        message: String,
    },

    /// This process was started as a worker by an otwrap driver, but its
    /// `main` function does not carry `#[otwrap::main]`.
    #[error(
        "this process was started as an otwrap worker (the {var} environment variable is set) \
         but its `main` function does not carry `#[otwrap::main]`, so it cannot evaluate points; \
         add `#[otwrap::main]` to `fn main` of this binary"
    )]
    NotAWorker {
        /// The environment variable that marks worker processes.
        var: &'static str,
    },

    /// An earlier batch of this process was interrupted (Ctrl-C, SIGTERM),
    /// so no new batch starts: the program should end.
    #[error(
        "otwrap: a batch of this process was interrupted by {cause}, so no new batch starts; \
         end the program (its finished results were kept), or call `otwrap::interrupt::clear()` first \
         if this program handles interruptions itself"
    )]
    Interrupted {
        /// What interrupted the earlier batch.
        cause: &'static str,
    },

    /// A point failed; returned by [`Batch::values`] and by single-point calls.
    ///
    /// [`Batch::values`]: crate::Batch::values
    #[error(transparent)]
    Point(#[from] PointError),

    /// The cache could not be opened, read or written.
    #[error(transparent)]
    Cache(#[from] crate::cache::store::CacheError),

    /// The files a cached model depends on (`#[cached(depends = [...])]`)
    /// could not be hashed: one is missing or unreadable.
    #[error(transparent)]
    Depends(#[from] crate::cache::depends::DependsError),

    /// An I/O error on a named path.
    #[error("otwrap I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Why one point failed.
///
/// The variants travel between workers and the driver, so they carry only
/// plain data (messages, statuses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PointFailure {
    /// The model returned an error; the message is its `Display`.
    Model {
        /// The error message.
        message: String,
    },
    /// The model panicked.
    Panic {
        /// The panic message, with its source location when known.
        message: String,
    },
    /// The worker process running the point died (abort, segfault, exit).
    WorkerCrashed {
        /// How it ended, e.g. `killed by signal 6 (SIGABRT)` or `exited with status 3`.
        status: String,
        /// The last lines the worker wrote on stderr.
        stderr_tail: String,
    },
    /// The point ran longer than the per-point timeout and was killed.
    Timeout {
        /// The timeout that was exceeded.
        after: Duration,
    },
    /// The point was never started (fail-fast after another failure, or the
    /// batch was interrupted).
    NotRun {
        /// Why it was not started.
        reason: String,
    },
    /// The evaluation could not be prepared (its work directory could not
    /// be created or filled).
    Setup {
        /// What went wrong.
        message: String,
    },
    /// The worker and the driver could not understand each other for this
    /// point (an input or output that does not decode).
    Protocol {
        /// What could not be decoded.
        message: String,
    },
}

impl fmt::Display for PointFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointFailure::Model { message } => write!(f, "the model returned an error: {message}"),
            PointFailure::Panic { message } => write!(f, "the model panicked: {message}"),
            PointFailure::WorkerCrashed {
                status,
                stderr_tail,
            } => {
                write!(f, "the worker process {status}")?;
                if !stderr_tail.is_empty() {
                    write!(f, "; last lines of its stderr:\n{stderr_tail}")?;
                }
                Ok(())
            }
            PointFailure::Timeout { after } => {
                write!(
                    f,
                    "timed out after {:.3} s and was killed",
                    after.as_secs_f64()
                )
            }
            PointFailure::NotRun { reason } => write!(f, "not run: {reason}"),
            PointFailure::Setup { message } => write!(f, "could not be set up: {message}"),
            PointFailure::Protocol { message } => write!(f, "worker protocol error: {message}"),
        }
    }
}

/// Where a point ran: enough to find its traces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// The host name (`localhost` for local backends).
    pub host: String,
    /// The backend that ran the point.
    pub backend: String,
    /// The process id of the worker, for out-of-process backends.
    pub pid: Option<u32>,
    /// The work directory kept for inspection, if any.
    pub workdir: Option<PathBuf>,
    /// The log file where the failure was recorded, if any.
    pub log: Option<PathBuf>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} backend on {}", self.backend, self.host)?;
        if let Some(pid) = self.pid {
            write!(f, " (worker pid {pid})")?;
        }
        if let Some(dir) = &self.workdir {
            write!(f, ", work dir kept at {}", dir.display())?;
        }
        if let Some(log) = &self.log {
            write!(f, ", logged in {}", log.display())?;
        }
        Ok(())
    }
}

/// One failed point of a batch: its index, its input, the cause and where it
/// ran.
///
/// Boxed inside, so a `Result<T, PointError>` stays small in a batch of a
/// million points.
#[derive(Clone, PartialEq)]
pub struct PointError {
    inner: Box<PointErrorInner>,
}

#[derive(Debug, Clone, PartialEq)]
struct PointErrorInner {
    index: usize,
    input: String,
    failure: PointFailure,
    location: Location,
}

impl PointError {
    /// Builds a point error.
    pub fn new(index: usize, input: String, failure: PointFailure, location: Location) -> Self {
        PointError {
            inner: Box::new(PointErrorInner {
                index,
                input,
                failure,
                location,
            }),
        }
    }

    /// The index of the point in the batch inputs.
    pub fn index(&self) -> usize {
        self.inner.index
    }

    /// The point's input, rendered as JSON-like text (truncated when long).
    pub fn input(&self) -> &str {
        &self.inner.input
    }

    /// Why the point failed.
    pub fn failure(&self) -> &PointFailure {
        &self.inner.failure
    }

    /// Where the point ran.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// `true` when the point was never started (fail-fast or interruption).
    pub fn is_not_run(&self) -> bool {
        matches!(self.inner.failure, PointFailure::NotRun { .. })
    }
}

impl fmt::Debug for PointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PointError")
            .field("index", &self.inner.index)
            .field("input", &self.inner.input)
            .field("failure", &self.inner.failure)
            .field("location", &self.inner.location)
            .finish()
    }
}

impl fmt::Display for PointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "point {} (input {}) failed on the {}: {}",
            self.inner.index, self.inner.input, self.inner.location, self.inner.failure
        )
    }
}

impl std::error::Error for PointError {}

/// Renders an input for an error message: JSON-like, cut after a few hundred
/// characters so a huge input does not flood the terminal.
pub(crate) fn render_input<T: Serialize + ?Sized>(input: &T) -> String {
    const MAX: usize = 300;
    match serde_json::to_string(input) {
        Ok(mut text) => {
            if text.len() > MAX {
                let mut cut = MAX;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str("...");
            }
            text
        }
        Err(e) => format!("<input not printable: {e}>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn point_error_names_index_input_cause_and_place() {
        let e = PointError::new(
            17,
            render_input(&[1.5, -2.0]),
            PointFailure::Panic {
                message: "boom".into(),
            },
            Location {
                host: "localhost".into(),
                backend: "rayon".into(),
                ..Location::default()
            },
        );
        let text = e.to_string();
        assert!(text.contains("point 17"), "{text}");
        assert!(text.contains("[1.5,-2.0]"), "{text}");
        assert!(text.contains("panicked: boom"), "{text}");
        assert!(text.contains("rayon backend on localhost"), "{text}");
    }

    #[test]
    fn long_inputs_are_truncated() {
        let long = vec![1.0_f64; 1000];
        let text = render_input(&long);
        assert!(text.len() < 310);
        assert!(text.ends_with("..."));
    }
}
