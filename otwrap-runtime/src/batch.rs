//! The result of a batch: one `Result` per point in input order, and a
//! summary.

use std::fmt;
use std::time::Duration;

use crate::error::PointError;

/// One point's outcome, as delivered in completion order by
/// [`Runner::stream`](crate::Runner::stream) and
/// [`Runner::for_each`](crate::Runner::for_each).
#[derive(Debug, Clone, PartialEq)]
pub struct Completed<T> {
    /// The index of the point in the inputs.
    pub index: usize,
    /// Its value or its error.
    pub result: Result<T, PointError>,
}

/// Counts and timing of a batch.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Summary {
    /// The number of points in the batch.
    pub total: usize,
    /// Points evaluated by the model in this batch (successfully or not).
    pub evaluated: usize,
    /// Points answered from the cache.
    pub cached: usize,
    /// Points that failed (including those not run).
    pub failed: usize,
    /// Points never started (fail-fast or interruption).
    pub not_run: usize,
    /// Results that could not be stored in the cache (they are still in
    /// the batch).
    pub cache_store_failures: usize,
    /// Wall time of the batch.
    pub wall_time: Duration,
    /// The backend that ran it.
    pub backend: String,
    /// The number of workers: threads (`serial`, `rayon`), worker processes
    /// (`processes`), slots of the hosts (`ssh`), array tasks submitted
    /// (`slurm`).
    pub workers: usize,
}

impl Summary {
    /// Points that succeeded.
    pub fn succeeded(&self) -> usize {
        self.total - self.failed
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.wall_time.as_secs_f64();
        write!(
            f,
            "{} points: {} succeeded, {} failed ({} not run); {} evaluated, {} from cache; {:.3} s on {} with {} {}{}",
            self.total,
            self.succeeded(),
            self.failed,
            self.not_run,
            self.evaluated,
            self.cached,
            secs,
            self.backend,
            self.workers,
            match self.backend.as_str() {
                "ssh" => "slot",
                "slurm" => "array task",
                _ => "worker",
            },
            if self.workers == 1 { "" } else { "s" }
        )?;
        if self.evaluated > 0 && secs > 0.0 {
            write!(f, " ({:.1} evaluations/s)", self.evaluated as f64 / secs)?;
        }
        if self.evaluated == 0 && self.cached > 0 {
            write!(f, "; nothing evaluated, every result came from the cache")?;
        }
        if self.cache_store_failures > 0 {
            write!(
                f,
                "; {} results could not be stored in the cache",
                self.cache_store_failures
            )?;
        }
        Ok(())
    }
}

/// The results of a batch, in input order, one `Result` per point.
///
/// ```
/// # use otwrap_runtime::{Batch, Summary};
/// let batch = Batch::from_parts(vec![Ok(1.0), Ok(2.0)], Summary::default());
/// assert_eq!(batch.values()?, vec![1.0, 2.0]);
/// # Ok::<(), otwrap_runtime::PointError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Batch<T> {
    results: Vec<Result<T, PointError>>,
    summary: Summary,
}

impl<T> Batch<T> {
    /// Builds a batch from its results and summary.
    pub fn from_parts(results: Vec<Result<T, PointError>>, summary: Summary) -> Self {
        Batch { results, summary }
    }

    /// Every point's result, in input order.
    pub fn results(&self) -> &[Result<T, PointError>] {
        &self.results
    }

    /// Takes the results out.
    pub fn into_results(self) -> Vec<Result<T, PointError>> {
        self.results
    }

    /// The summary counts.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The number of points.
    pub fn len(&self) -> usize {
        self.results.len()
    }

    /// `true` for a batch of no point.
    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    /// `true` when every point succeeded.
    pub fn is_complete(&self) -> bool {
        self.results.iter().all(Result::is_ok)
    }

    /// The failed points, in input order.
    pub fn errors(&self) -> impl Iterator<Item = &PointError> {
        self.results.iter().filter_map(|r| r.as_ref().err())
    }

    /// All values, or the error of the first failed point (in input order).
    pub fn values(&self) -> Result<Vec<T>, PointError>
    where
        T: Clone,
    {
        self.results.iter().cloned().collect()
    }

    /// All values, or the error of the first failed point, without cloning.
    pub fn into_values(self) -> Result<Vec<T>, PointError> {
        self.results.into_iter().collect()
    }
}
