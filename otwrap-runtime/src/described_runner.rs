//! Batches of a model described by data ([`ModelDescription`]) on any
//! backend, through the same engine as compiled models ([`Runner`]): the
//! same options, cache, progress, results and failure classes.

use std::path::PathBuf;
use std::time::Duration;

use crate::batch::{Batch, Completed, Summary};
use crate::cache::{CacheLocation, CacheSpec};
use crate::config::{self, Backend, Options, ProgressMode, Settings};
use crate::described::{prepared_data, Described, ModelDescription};
use crate::error::Error;
use crate::progress::Progress;
use crate::runner::{Instance, ResultStream, Runner};
use crate::worker::protocol::ModelRef;

/// Runs batches of a [`ModelDescription`]: each point is a `Vec<f64>` of one
/// value per input, each result a `Vec<f64>` of one value per output.
///
/// In process (`serial`, `rayon`) the description is compiled once per
/// batch; worker processes receive its bytes and compile it once each. Every
/// evaluation runs in a fresh work directory named `<model name>-...` under
/// `OTWRAP_WORKDIR_BASE` (or the system's temporary directory), removed when
/// the point succeeds and kept, and named in the point's error, when it
/// fails.
///
/// A description that does not validate is an [`Error::Description`] before
/// any point runs.
///
/// With [`cache`](Self::cache), results are keyed by the function id
/// [`MODEL_ID`](crate::described::MODEL_ID) and a hash of the description's
/// bytes: the same description always finds its results, and any change to
/// it (a template's text, a step, a reader) starts afresh. The contents of
/// its copied resources and of the programs it runs are not part of the key.
///
/// ```
/// use otwrap_runtime::described::{InputTemplate, ModelDescription, OutputReader, ReadRule, Step};
/// use otwrap_runtime::{Backend, DescribedRunner};
///
/// let model = ModelDescription::new("double", ["x"], ["y"])
///     .template(InputTemplate::inline("input.txt", "x = @x@\n").variable("x"))
///     .step(Step::new("awk").args(["/^x = / { print \"y =\", 2 * $3 }", "input.txt"]).stdout_file("output.txt"))
///     .read(OutputReader::new("y", "output.txt", ReadRule::token("y =")));
///
/// let batch = DescribedRunner::new(&model)
///     .backend(Backend::Serial)
///     .map(&[vec![1.5], vec![-2.0]])?;
/// assert_eq!(batch.values()?, vec![vec![3.0], vec![-4.0]]);
/// # Ok::<(), otwrap_runtime::Error>(())
/// ```
pub struct DescribedRunner {
    description: ModelDescription,
    runner: Runner<Described>,
    cache: Option<CacheLocation>,
    cache_errors: bool,
}

impl std::fmt::Debug for DescribedRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DescribedRunner")
            .field("model", &self.description.name)
            .field("runner", &self.runner)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl DescribedRunner {
    /// A runner of `description` with no override: `otwrap.toml` and the
    /// `OTWRAP_*` variables decide the backend and its options; no cache.
    pub fn new(description: &ModelDescription) -> Self {
        DescribedRunner {
            description: description.clone(),
            runner: Runner::new(),
            cache: None,
            cache_errors: false,
        }
    }

    /// Caches the results here (see the type's documentation for the keys).
    pub fn cache(mut self, location: CacheLocation) -> Self {
        self.cache = Some(location);
        self
    }

    /// Also caches failures (their message), and answers them from the cache.
    pub fn cache_errors(mut self, on: bool) -> Self {
        self.cache_errors = on;
        self
    }

    /// Runs on this backend ([`Runner::backend`]).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.runner = self.runner.backend(backend);
        self
    }

    /// Uses this many workers ([`Runner::workers`]).
    pub fn workers(mut self, workers: usize) -> Self {
        self.runner = self.runner.workers(workers);
        self
    }

    /// Stops starting new points after the first failure ([`Runner::fail_fast`]).
    pub fn fail_fast(mut self, on: bool) -> Self {
        self.runner = self.runner.fail_fast(on);
        self
    }

    /// Kills and fails a point that runs longer than `timeout`
    /// ([`Runner::timeout`]; steps have their own timeouts too).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.runner = self.runner.timeout(timeout);
        self
    }

    /// Chooses when the progress bar is drawn ([`Runner::progress`]).
    pub fn progress(mut self, mode: ProgressMode) -> Self {
        self.runner = self.runner.progress(mode);
        self
    }

    /// Starts this executable in worker mode ([`Runner::worker_exe`]); any
    /// otwrap worker serves any description.
    pub fn worker_exe(mut self, path: impl Into<PathBuf>) -> Self {
        self.runner = self.runner.worker_exe(path);
        self
    }

    /// Re-runs a point whose worker or host is lost under it ([`Runner::retries`]).
    pub fn retries(mut self, retries: u32) -> Self {
        self.runner = self.runner.retries(retries);
        self
    }

    /// Sets a backend option by key ([`Runner::set`]).
    pub fn set(mut self, key: &str, value: impl Into<config::RawValue>) -> Self {
        self.runner = self.runner.set(key, value);
        self
    }

    /// Applies every option set in `options` ([`Runner::options`]).
    pub fn options(mut self, options: Options) -> Self {
        self.runner = self.runner.options(options);
        self
    }

    /// Reads this configuration file ([`Runner::config_file`]).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.runner = self.runner.config_file(path);
        self
    }

    /// Calls `callback` after each point ([`Runner::on_progress`]).
    pub fn on_progress(mut self, callback: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.runner = self.runner.on_progress(callback);
        self
    }

    /// The options a batch would run with now ([`Runner::settings`]).
    pub fn settings(&self) -> Result<Settings, Error> {
        self.runner.settings()
    }

    /// Evaluates every point and returns the results in input order
    /// ([`Runner::map`]).
    pub fn map(&mut self, points: &[Vec<f64>]) -> Result<Batch<Vec<f64>>, Error> {
        self.prepare()?.map(points)
    }

    /// Gives each result to `f` as soon as it is known ([`Runner::for_each`]).
    pub fn for_each(
        &mut self,
        points: &[Vec<f64>],
        f: impl FnMut(Completed<Vec<f64>>),
    ) -> Result<Summary, Error> {
        self.prepare()?.for_each(points, f)
    }

    /// Starts the batch in the background and returns its results in
    /// completion order ([`Runner::stream`]).
    pub fn stream(mut self, points: Vec<Vec<f64>>) -> Result<ResultStream<Vec<f64>>, Error> {
        self.prepare()?;
        self.runner.stream(points)
    }

    /// Validates and compiles the description, and gives the engine what a
    /// batch of it needs beyond its type.
    fn prepare(&mut self) -> Result<&mut Runner<Described>, Error> {
        let backend = self.runner.settings()?.backend;
        if !runs_described(backend) {
            return Err(Error::Config(format!(
                "model `{}` is described by data, which the {backend} backend does not run yet; \
                 choose backend = \"serial\", \"rayon\" or \"processes\"",
                self.description.name
            )));
        }
        let prepared = prepared_data(&self.description)?;
        let bytes = self.description.to_bytes();
        let cache = self
            .cache
            .map(|location| cache_spec(&bytes, location, self.cache_errors));
        self.runner.set_instance(Instance {
            model: ModelRef::Described(bytes),
            data: prepared,
            cache,
        });
        Ok(&mut self.runner)
    }
}

/// The backends that pass a description to where points are evaluated.
fn runs_described(backend: Backend) -> bool {
    match backend {
        Backend::Serial | Backend::Rayon | Backend::Processes | Backend::Ssh => true,
        // SLURM array tasks find their model by id in the run directory.
        Backend::Slurm => false,
    }
}

/// The cache settings of a description whose bytes are `bytes`: they play
/// the part of a compiled function's body, so any change to the description
/// gives other keys, and the same description the same ones.
fn cache_spec(bytes: &[u8], location: CacheLocation, cache_errors: bool) -> CacheSpec {
    CacheSpec {
        location,
        body_hash: xxhash_rust::xxh3::xxh3_64(bytes),
        version: "",
        cache_errors,
        depends: &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::KeyPrefix;
    use crate::described::{InputTemplate, OutputReader, ReadRule, Step, MODEL_ID};

    fn model(template: &str, arg: &str, token: &str) -> ModelDescription {
        ModelDescription::new("m", ["x"], ["y"])
            .template(InputTemplate::inline("in.txt", template).variable("x"))
            .step(Step::new("solver").args([arg]))
            .read(OutputReader::new("y", "out.txt", ReadRule::token(token)))
    }

    fn prefix(description: &ModelDescription) -> KeyPrefix {
        let spec = cache_spec(&description.to_bytes(), CacheLocation::Memory, false);
        KeyPrefix::with_depends(MODEL_ID, spec.body_hash, spec.version, None)
    }

    #[test]
    fn every_part_of_the_description_is_in_the_key() {
        let base = prefix(&model("x = @x@", "in.txt", "y ="));
        assert_eq!(base, prefix(&model("x = @x@", "in.txt", "y =")));
        assert_ne!(base, prefix(&model("x  = @x@", "in.txt", "y =")));
        assert_ne!(base, prefix(&model("x = @x@", "in2.txt", "y =")));
        assert_ne!(base, prefix(&model("x = @x@", "in.txt", "y:")));
    }

    #[test]
    fn backends_that_cannot_pass_a_description_are_refused_by_name() {
        let mut runner =
            DescribedRunner::new(&model("x = @x@", "in.txt", "y =")).backend(Backend::Slurm);
        let error = runner.map(&[vec![1.0]]).unwrap_err().to_string();
        assert!(error.contains("the slurm backend does not run"), "{error}");
    }
}
