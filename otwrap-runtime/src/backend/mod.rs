//! Backends: where the evaluations of a batch run. Each one is a file behind
//! the [`Executor`] trait; the batch engine (`runner.rs`) is the same for all.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::config::{Backend, Settings};
use crate::core::model::ModelData;
use crate::error::{Error, Location, PointFailure};
use crate::model::{EvalContext, Model};
use crate::worker::protocol::ModelRef;

pub(crate) mod pool;
pub(crate) mod processes;
pub(crate) mod rayon_pool;
mod serial;
pub(crate) mod slurm;
mod ssh;

/// One point's outcome as a backend reports it.
pub(crate) struct Event<T> {
    pub(crate) index: usize,
    pub(crate) outcome: Result<T, (PointFailure, Location)>,
    /// How many times the point was started (its last attempt included).
    pub(crate) attempts: u32,
}

impl<T> Event<T> {
    /// A point's outcome after its first and only attempt.
    pub(crate) fn once(index: usize, outcome: Result<T, (PointFailure, Location)>) -> Self {
        Event {
            index,
            outcome,
            attempts: 1,
        }
    }
}

/// The work a backend is given.
pub(crate) struct Job<'a, M: Model> {
    /// Every input of the batch.
    pub(crate) inputs: &'a [M::Input],
    /// The indices to evaluate (the cache's misses).
    pub(crate) todo: &'a [usize],
    pub(crate) settings: &'a Settings,
    /// Set by the engine to stop starting new points (fail-fast, a dropped
    /// stream); points already running finish and are reported.
    pub(crate) cancel: &'a AtomicBool,
    /// Set by backends whose parallelism is not `workers`: the slots of the
    /// SSH hosts, the array tasks submitted to SLURM, the worker processes
    /// started. 0 means `workers`.
    pub(crate) used: &'a AtomicUsize,
    /// The model workers are asked to load: `Compiled(M::ID)`, or a
    /// description given as data.
    pub(crate) model: ModelRef,
    /// What in-process evaluations find in their [`EvalContext`] (a
    /// described model's interpreter); `None` for compiled-in models.
    pub(crate) data: Option<ModelData>,
}

impl<M: Model> Job<'_, M> {
    /// The context of an in-process evaluation of point `index`.
    pub(crate) fn context(&self, index: usize) -> EvalContext {
        EvalContext::with_data(index, self.data.clone())
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || crate::interrupt::requested()
    }

    /// Called by a backend's worker thread as soon as a point fails, so that
    /// fail-fast stops the other slots without waiting for the driver.
    pub(crate) fn note_outcome<T, E>(&self, outcome: &Result<T, E>) {
        if outcome.is_err() && self.settings.fail_fast {
            self.cancel.store(true, Ordering::Relaxed);
        }
    }
}

/// A place where evaluations run.
///
/// `execute` is called on the driving thread and must call `sink` on that
/// same thread, once per point of `job.todo` that it started. It returns an
/// error only when it could not start at all, before any point was reported:
/// afterwards every problem becomes a point failure, so nothing already
/// computed is lost.
pub(crate) trait Executor<M: Model> {
    fn execute(
        &self,
        job: &Job<'_, M>,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), Error>;
}

/// Runs `job` on the backend its settings name.
pub(crate) fn execute<M: Model>(
    job: &Job<'_, M>,
    sink: &mut dyn FnMut(Event<M::Output>),
) -> Result<(), Error> {
    match job.settings.backend {
        Backend::Serial => serial::Serial.execute(job, sink),
        Backend::Rayon => rayon_pool::RayonPool.execute(job, sink),
        Backend::Processes => processes::Processes.execute(job, sink),
        Backend::Ssh => ssh::Ssh.execute(job, sink),
        Backend::Slurm => slurm::Slurm.execute(job, sink),
    }
}

/// The location of an in-process evaluation.
pub(crate) fn local_location(backend: Backend) -> Location {
    local_location_named(backend.name())
}

/// The location of an evaluation in this process, under any label.
pub(crate) fn local_location_named(backend: &str) -> Location {
    Location {
        host: crate::host::hostname().to_string(),
        backend: backend.to_string(),
        pid: None,
        workdir: None,
        log: None,
    }
}

/// The worker executable: the one configured, else this program.
pub(crate) fn worker_exe(configured: Option<&Path>) -> Result<PathBuf, String> {
    match configured {
        Some(path) => Ok(path.to_path_buf()),
        None => std::env::current_exe().map_err(|e| {
            format!("cannot find this program's own executable to start workers: {e}")
        }),
    }
}
