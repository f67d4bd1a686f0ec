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

    /// The inputs and results as one [`Sample`](crate::Sample): input
    /// columns then output columns, NaN in the outputs of failed points; for
    /// models whose inputs and outputs are numbers (see
    /// [`Sample::from_batch`](crate::Sample::from_batch)). `inputs` are
    /// those the batch was run on.
    ///
    /// ```
    /// use otwrap_runtime::{EvalContext, Failed, Model, Options, PointFailure, Runner};
    ///
    /// struct Beam;
    /// impl Model for Beam {
    ///     type Input = (f64, [f64; 2]);
    ///     type Output = [f64; 2];
    ///     const ID: &'static str = "doc::beam";
    ///     const NAME: &'static str = "beam";
    ///     const PARAMETER_NAMES: &'static [&'static str] = &["load", "x"];
    ///     fn attribute_options() -> Options {
    ///         Options::default()
    ///     }
    ///     fn evaluate(&(load, x): &Self::Input, _: &EvalContext) -> Result<[f64; 2], Failed> {
    ///         if load < 0.0 {
    ///             return Err(PointFailure::Model { message: "negative load".into() }.into());
    ///         }
    ///         Ok([load * x[0], load * x[1]])
    ///     }
    /// }
    ///
    /// let inputs = [(2.0, [1.0, 3.0]), (-1.0, [1.0, 1.0])];
    /// let batch = Runner::<Beam>::new().map(&inputs)?;
    /// let sample = batch.to_sample::<Beam>(&inputs)?;
    /// assert_eq!(sample.names(), &["load", "x0", "x1", "y0", "y1"]);
    /// assert_eq!(sample.row(0), &[2.0, 1.0, 3.0, 2.0, 6.0]);
    /// assert!(sample.row(1)[3].is_nan() && sample.row(1)[4].is_nan());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_sample<M: crate::Model<Output = T>>(
        &self,
        inputs: &[M::Input],
    ) -> Result<crate::Sample, crate::sample::SampleError> {
        crate::Sample::from_batch::<M>(inputs, self)
    }

    /// All values, or the error of the first failed point, without cloning.
    pub fn into_values(self) -> Result<Vec<T>, PointError> {
        self.results.into_iter().collect()
    }
}
