//! Why a point failed ([`PointFailure`], and its class), the traces a failed
//! evaluation leaves ([`Failed`]), where it ran ([`Location`]), and the
//! error of one point of a batch ([`PointError`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The two classes of point failures (see "Failure classes" in the design):
/// what the model did, which running it again would only repeat, and what
/// happened to the machinery under it, which a new attempt may fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureClass {
    /// The model returned an error, panicked, crashed its worker (SIGSEGV,
    /// SIGABRT, SIGBUS, SIGFPE, SIGILL, an exit), ran past its timeout, or
    /// could not be set up: not retried unless asked.
    Model,
    /// The worker, its host, its connection or its SLURM task was lost under
    /// the point (SIGKILL, OOM killer, node failure, preemption): retried up
    /// to `retries` times.
    Infrastructure,
    /// The point was never started (fail-fast, interruption, nowhere left
    /// to run it).
    NotRun,
}

impl FailureClass {
    /// `model failure`, `infrastructure loss`, `not run`.
    pub const fn describe(self) -> &'static str {
        match self {
            FailureClass::Model => "model failure",
            FailureClass::Infrastructure => "infrastructure loss",
            FailureClass::NotRun => "not run",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// How a worker process ended while it was evaluating a point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    /// Killed by this signal.
    Signal(i32),
    /// Exited with this status.
    Exit(i32),
    /// Gone without a status the driver could read: its connection or
    /// channel closed, or it could not be waited for (what is known).
    Vanished(String),
}

impl Ending {
    /// The ending of a reaped child process.
    pub fn of(status: std::process::ExitStatus) -> Ending {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Ending::Exit(code),
            (None, Some(signal)) => Ending::Signal(signal),
            (None, None) => Ending::Vanished(format!("ended with {status}")),
        }
    }

    /// The class of a point whose worker ended so: a crash signal or an
    /// exit is the model's doing (a native model crashed or called `exit`);
    /// SIGKILL, another signal or a vanished worker is a loss.
    pub fn class(&self) -> FailureClass {
        match self {
            Ending::Signal(
                libc::SIGSEGV | libc::SIGABRT | libc::SIGBUS | libc::SIGFPE | libc::SIGILL,
            )
            | Ending::Exit(_) => FailureClass::Model,
            Ending::Signal(_) | Ending::Vanished(_) => FailureClass::Infrastructure,
        }
    }
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Signal(signal) => write!(
                f,
                "was killed by signal {signal} ({})",
                super::host::signal_name(*signal)
            ),
            Ending::Exit(code) => write!(f, "exited with status {code}"),
            Ending::Vanished(what) => write!(f, "was lost ({what})"),
        }
    }
}

/// Why one point failed.
///
/// The variants travel between workers and the driver, so they carry only
/// plain data (messages, statuses). [`PointFailure::class`] sorts them into
/// the classes every backend shares.
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
    /// The worker process evaluating the point ended (a signal, an exit
    /// status, or vanished with its connection).
    WorkerDied {
        /// How it ended.
        ending: Ending,
        /// The last lines the worker wrote on stderr.
        stderr_tail: String,
    },
    /// The point ran longer than the per-point timeout and was killed.
    Timeout {
        /// The timeout that was exceeded.
        after: Duration,
    },
    /// The SLURM array task running the point ended in a state that is not
    /// success (TIMEOUT, CANCELLED, NODE_FAIL, OUT_OF_MEMORY, FAILED...).
    TaskEnded {
        /// The job and task, `1234_7`.
        task: String,
        /// SLURM's state.
        state: String,
        /// What else is known (log files, the task's stderr tail).
        detail: String,
    },
    /// No worker could be started to run the point.
    Unstarted {
        /// Why.
        message: String,
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

impl PointFailure {
    /// The failure's class: whether a new attempt may help.
    pub fn class(&self) -> FailureClass {
        match self {
            PointFailure::WorkerDied { ending, .. } => ending.class(),
            PointFailure::TaskEnded { state, .. } => match state.as_str() {
                "OUT_OF_MEMORY" | "FAILED" => FailureClass::Model,
                _ => FailureClass::Infrastructure,
            },
            PointFailure::Unstarted { .. } => FailureClass::Infrastructure,
            PointFailure::NotRun { .. } => FailureClass::NotRun,
            PointFailure::Model { .. }
            | PointFailure::Panic { .. }
            | PointFailure::Timeout { .. }
            | PointFailure::Setup { .. }
            | PointFailure::Protocol { .. } => FailureClass::Model,
        }
    }
}

impl fmt::Display for PointFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointFailure::Model { message } => write!(f, "the model returned an error: {message}"),
            PointFailure::Panic { message } => write!(f, "the model panicked: {message}"),
            PointFailure::WorkerDied {
                ending,
                stderr_tail,
            } => {
                write!(f, "the worker process {ending}")?;
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
            PointFailure::TaskEnded {
                task,
                state,
                detail,
            } => {
                write!(f, "the SLURM array task {task} ended {state}")?;
                if !detail.is_empty() {
                    write!(f, " {detail}")?;
                }
                Ok(())
            }
            PointFailure::Unstarted { message } => {
                write!(f, "no worker could be started for it: {message}")
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
    attempts: Attempts,
}

/// How many times a point was started, and how many new attempts its
/// failure's class allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attempts {
    /// Evaluations started (0 for a point never run).
    pub made: u32,
    /// The re-runs its class allowed (`retries` for an infrastructure
    /// loss, 0 for a model failure unless model failures are retried).
    pub retries: u32,
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
                attempts: Attempts {
                    made: 1,
                    retries: 0,
                },
            }),
        }
    }

    /// The same error with the attempts that were made.
    pub fn with_attempts(mut self, attempts: Attempts) -> Self {
        self.inner.attempts = attempts;
        self
    }

    /// How many times the point was started, and the re-runs its class
    /// allowed.
    pub fn attempts(&self) -> Attempts {
        self.inner.attempts
    }

    /// The failure's class.
    pub fn class(&self) -> FailureClass {
        self.inner.failure.class()
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
            .field("attempts", &self.inner.attempts)
            .finish()
    }
}

impl fmt::Display for PointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "point {} (input {}) failed on the {}: {} [{}",
            self.inner.index,
            self.inner.input,
            self.inner.location,
            self.inner.failure,
            self.class()
        )?;
        let Attempts { made, retries } = self.inner.attempts;
        match (self.class(), made) {
            (FailureClass::NotRun, _) => {}
            (_, made) if retries == 0 => {
                write!(f, ", {made} attempt{}, not retried", plural(made))?
            }
            (_, made) => {
                let left = retries.saturating_sub(made.saturating_sub(1));
                write!(
                    f,
                    ", {made} attempt{}, {left} of {retries} retries left",
                    plural(made)
                )?
            }
        }
        f.write_str("]")
    }
}

impl std::error::Error for PointError {}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

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
        assert!(
            text.contains("[model failure, 1 attempt, not retried]"),
            "{text}"
        );
        let lost = PointError::new(
            3,
            "3".into(),
            PointFailure::WorkerDied {
                ending: Ending::Signal(libc::SIGKILL),
                stderr_tail: String::new(),
            },
            Location::default(),
        )
        .with_attempts(Attempts {
            made: 3,
            retries: 2,
        });
        let text = lost.to_string();
        assert!(text.contains("killed by signal 9 (SIGKILL)"), "{text}");
        assert!(
            text.contains("[infrastructure loss, 3 attempts, 0 of 2 retries left]"),
            "{text}"
        );
    }

    #[test]
    fn long_inputs_are_truncated() {
        let long = vec![1.0_f64; 1000];
        let text = render_input(&long);
        assert!(text.len() < 310);
        assert!(text.ends_with("..."));
    }
}
