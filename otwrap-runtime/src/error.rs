//! The error types: [`Error`] for a batch or a call that could not be run at
//! all, and [`PointError`] for one point that failed inside a batch.

use std::path::PathBuf;

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

    /// A model description that cannot be run: it does not validate (the
    /// message names the variable, file, step or output to change).
    #[error("otwrap cannot run this model description: {0}")]
    Description(#[from] crate::described::DescriptionError),

    /// The cache could not be opened, read or written.
    #[error(transparent)]
    Cache(#[from] crate::cache::store::CacheError),

    /// An I/O error on a named path.
    #[error("otwrap I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

pub(crate) use crate::core::render_input;
pub use crate::core::{Attempts, Ending, FailureClass, Location, PointError, PointFailure};
