//! The batch engine: resolves the options, hands the points to the backend,
//! and turns what comes back into results in input order, progress, and
//! completion-order streams.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::{self, Event, Job};
use crate::batch::{Batch, Completed, Summary};
use crate::cache::store::Entry;
use crate::cache::{CacheSpec, ModelCache};
use crate::config::{self, Backend, Options, ProgressMode, Settings};
use crate::core::model::ModelData;
use crate::core::{Attempts, FailureClass};
use crate::error::{render_input, Error, Location, PointError, PointFailure};
use crate::model::Model;
use crate::progress::{Bar, Progress, Tracker};
use crate::worker::handshake_in_env;
use crate::worker::protocol::{ModelRef, WORKER_ENV};

type ProgressCallback = Box<dyn FnMut(&Progress) + Send>;

/// Runs batches of a model, with options that override the attribute
/// defaults, the configuration file and the environment.
///
/// The companion module of an annotated function makes one:
/// `beam::runner().backend(Backend::Processes).workers(8).map(&points)`.
pub struct Runner<M: Model> {
    overrides: Options,
    config_file: Option<PathBuf>,
    on_progress: Option<ProgressCallback>,
    instance: Option<Instance>,
    model: PhantomData<fn() -> M>,
}

/// What a batch of a model given at run time (a described model) needs
/// besides the model's type, which is the same for every such model.
pub(crate) struct Instance {
    /// What workers are asked to load instead of `Compiled(M::ID)`.
    pub(crate) model: ModelRef,
    /// What in-process evaluations find in their context.
    pub(crate) data: ModelData,
    /// The cache, opened under `M::ID`, instead of `M::cache()`.
    pub(crate) cache: Option<CacheSpec>,
}

impl<M: Model> Default for Runner<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Model> std::fmt::Debug for Runner<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("model", &M::ID)
            .field("overrides", &self.overrides)
            .field("config_file", &self.config_file)
            .finish_non_exhaustive()
    }
}

impl<M: Model> Runner<M> {
    /// A runner with no override: the attributes, `otwrap.toml` and the
    /// `OTWRAP_*` variables decide.
    pub fn new() -> Self {
        Runner {
            overrides: Options::default(),
            config_file: None,
            on_progress: None,
            instance: None,
            model: PhantomData,
        }
    }

    /// A runner of a model given at run time: its workers load
    /// `instance.model`, its in-process evaluations see `instance.data`, its
    /// cache is `instance.cache`.
    pub(crate) fn set_instance(&mut self, instance: Instance) {
        self.instance = Some(instance);
    }

    /// The model's cache, if it has one.
    fn open_cache(&self) -> Result<Option<ModelCache>, Error> {
        Ok(match &self.instance {
            Some(instance) => instance
                .cache
                .map(|spec| ModelCache::open(M::ID, spec))
                .transpose()?,
            None => ModelCache::of::<M>()?,
        })
    }

    /// Runs on this backend.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.overrides.backend = Some(backend);
        self
    }

    /// Uses this many workers (threads or processes).
    pub fn workers(mut self, workers: usize) -> Self {
        self.overrides.workers = Some(workers);
        self
    }

    /// Stops starting new points after the first failure; the points already
    /// finished are kept, the others are reported as not run.
    pub fn fail_fast(mut self, on: bool) -> Self {
        self.overrides.fail_fast = Some(on);
        self
    }

    /// Kills and fails a point that runs longer than `timeout`
    /// (out-of-process backends only: a thread cannot be killed safely).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.overrides.timeout = Some(timeout);
        self
    }

    /// Chooses when the progress bar is drawn.
    pub fn progress(mut self, mode: ProgressMode) -> Self {
        self.overrides.progress = Some(mode);
        self
    }

    /// Starts this executable in worker mode instead of the current one.
    pub fn worker_exe(mut self, path: impl Into<PathBuf>) -> Self {
        self.overrides.worker_exe = Some(path.into());
        self
    }

    /// Re-runs a point up to `retries` times when its worker, host or array
    /// task is lost under it (default 2). A failure of the model itself is
    /// not retried.
    pub fn retries(mut self, retries: u32) -> Self {
        self.overrides.retries = Some(retries);
        self
    }

    /// Sets a backend option by the key used in attributes and in the
    /// `[ssh]`/`[slurm]` sections, e.g. `.set("hosts", "4/alice@node1")` or
    /// `.set("partition", "debug")`. A wrong key or value is reported when
    /// the batch starts.
    pub fn set(mut self, key: &str, value: impl Into<config::RawValue>) -> Self {
        self.overrides.set(key, value.into(), "Runner::set");
        self
    }

    /// Applies every option set in `options` (over those set before).
    pub fn options(mut self, options: Options) -> Self {
        self.overrides = options.over(self.overrides);
        self
    }

    /// Reads this configuration file instead of `OTWRAP_CONFIG` or
    /// `./otwrap.toml`.
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Calls `callback` after each point with the batch's progress.
    pub fn on_progress(mut self, callback: impl FnMut(&Progress) + Send + 'static) -> Self {
        self.on_progress = Some(Box::new(callback));
        self
    }

    /// The options a batch would run with now, every layer applied.
    pub fn settings(&self) -> Result<Settings, Error> {
        let attribute = M::attribute_options();
        let file = config::load_file(self.config_file.as_deref(), M::ID, M::NAME)?;
        let env = config::from_env()?;
        let settings = self
            .overrides
            .clone()
            .over(env.over(file.over(attribute)))
            .resolve()?;
        if settings.timeout.is_some() && !settings.backend.out_of_process() {
            return Err(Error::Config(format!(
                "a per-point timeout needs an out-of-process backend (processes), but {} runs on the {} backend, \
                 where a running thread cannot be stopped safely; choose backend = \"processes\" or remove the timeout",
                M::NAME,
                settings.backend
            )));
        }
        Ok(settings)
    }

    /// Evaluates every point and returns the results in input order.
    ///
    /// Returns an error only when the batch could not start (invalid
    /// configuration, no worker could be started); a failing point is a
    /// [`PointError`] in the batch, and the other points go on.
    pub fn map(&mut self, inputs: &[M::Input]) -> Result<Batch<M::Output>, Error> {
        let settings = self.settings()?;
        if let Some(batch) = self.map_in_bulk(inputs, &settings)? {
            return Ok(batch);
        }
        let mut slots: Vec<Option<Result<M::Output, PointError>>> = Vec::new();
        slots.resize_with(inputs.len(), || None);
        let summary = self.run(inputs, &settings, &mut |index, result| {
            slots[index] = Some(result)
        })?;
        // `run` delivers every index exactly once.
        let results = slots
            .into_iter()
            .enumerate()
            .map(|(index, slot)| {
                slot.unwrap_or_else(|| {
                    Err(PointError::new(
                        index,
                        render_input(&inputs[index]),
                        PointFailure::NotRun {
                            reason: "no result was delivered for this point".into(),
                        },
                        Location::default(),
                    ))
                })
            })
            .collect();
        Ok(Batch::from_parts(results, summary))
    }

    /// `map` on the rayon backend when nothing needs a result as it arrives
    /// (no cache, progress bar, callback or fail-fast): the pool's threads
    /// write each result straight into its place, as a hand-written
    /// `par_iter().map().collect()` does. Same results, same errors, no
    /// per-point message to the driver. `None` when the batch is not
    /// eligible.
    fn map_in_bulk(
        &self,
        inputs: &[M::Input],
        settings: &Settings,
    ) -> Result<Option<Batch<M::Output>>, Error> {
        if settings.backend != Backend::Rayon
            || settings.fail_fast
            || self.on_progress.is_some()
            || crate::progress::would_draw(settings.progress)
            || handshake_in_env().is_some()
            // Whether the model is cached at all (opening the store is
            // `run`'s job, once).
            || M::cache().is_some()
            // A model given at run time needs its data in each context.
            || self.instance.is_some()
        {
            return Ok(None);
        }
        use rayon::prelude::*;
        use std::mem::MaybeUninit;
        if crate::interrupt::requested() {
            return Err(Error::Interrupted {
                cause: crate::interrupt::cause(),
            });
        }
        // Points already running in-process cannot be stopped; the programs
        // they run are, and no new chunk starts.
        let _interrupt = crate::interrupt::Guard::install();
        let not_run = |index: usize, input: &M::Input| {
            PointError::new(
                index,
                render_input(input),
                PointFailure::NotRun {
                    reason: interrupted_reason(),
                },
                backend::local_location(Backend::Rayon),
            )
        };
        let start = std::time::Instant::now();
        let pool = backend::rayon_pool::pool(settings.workers)?;
        let chunk = backend::rayon_pool::chunk_len(inputs.len(), settings.workers);
        let mut slots: Vec<MaybeUninit<Result<M::Output, PointError>>> =
            Vec::with_capacity(inputs.len());
        slots.resize_with(inputs.len(), MaybeUninit::uninit);
        pool.install(|| {
            slots
                .par_chunks_mut(chunk)
                .zip(inputs.par_chunks(chunk))
                .enumerate()
                .for_each(|(c, (out, points))| {
                    let base = c * chunk;
                    if crate::interrupt::requested() {
                        for (k, slot) in out.iter_mut().enumerate() {
                            slot.write(Err(not_run(base + k, &points[k])));
                        }
                        return;
                    }
                    crate::model::evaluate_run::<M>(points, base, |k, outcome| {
                        let result = outcome.map_err(|failed| {
                            if crate::interrupt::requested() {
                                return not_run(base + k, &points[k]);
                            }
                            let (failure, location) =
                                failed.into_parts(backend::local_location(Backend::Rayon));
                            PointError::new(base + k, render_input(&points[k]), failure, location)
                        });
                        out[k].write(result);
                    });
                });
        });
        // SAFETY: `evaluate_run` calls `put` exactly once for every point of
        // its run, in order, and returns only when all are done (a panic in
        // the model is caught and written as that point's failure; any other
        // panic propagates out of `install` before this line, leaking the
        // written slots but never reading an unwritten one). So every slot
        // is initialised here; MaybeUninit<T> has T's layout.
        let results: Vec<Result<M::Output, PointError>> = unsafe {
            let mut slots = std::mem::ManuallyDrop::new(slots);
            Vec::from_raw_parts(
                slots.as_mut_ptr().cast::<Result<M::Output, PointError>>(),
                slots.len(),
                slots.capacity(),
            )
        };
        let not_run = results
            .iter()
            .filter(|r| r.as_ref().is_err_and(PointError::is_not_run))
            .count();
        let failed = results.iter().filter(|r| r.is_err()).count();
        let summary = Summary {
            total: inputs.len(),
            evaluated: inputs.len() - not_run,
            cached: 0,
            failed,
            not_run,
            cache_store_failures: 0,
            wall_time: start.elapsed(),
            backend: settings.backend.name().to_string(),
            workers: settings.workers,
        };
        Ok(Some(Batch::from_parts(results, summary)))
    }

    /// Evaluates every point and gives each result to `f` as soon as it is
    /// known (completion order). Keeps nothing: memory stays flat however
    /// many points there are.
    pub fn for_each(
        &mut self,
        inputs: &[M::Input],
        mut f: impl FnMut(Completed<M::Output>),
    ) -> Result<Summary, Error> {
        let settings = self.settings()?;
        self.run(inputs, &settings, &mut |index, result| {
            f(Completed { index, result })
        })
    }

    /// Starts the batch in the background and returns an iterator over its
    /// results in completion order. Dropping the stream stops starting new
    /// points.
    pub fn stream(mut self, inputs: Vec<M::Input>) -> Result<ResultStream<M::Output>, Error> {
        let settings = self.settings()?;
        let (tx, rx) = mpsc::sync_channel::<Completed<M::Output>>(1024);
        let handle = std::thread::Builder::new()
            .name(format!("otwrap-stream-{}", M::NAME))
            .spawn(move || {
                self.run(&inputs, &settings, &mut |index, result| {
                    // A closed receiver means the stream was dropped: the
                    // result has nowhere to go.
                    let _ = tx.send(Completed { index, result });
                })
            })
            .map_err(|e| Error::Backend {
                backend: "stream",
                message: format!("cannot start the background thread: {e}"),
            })?;
        Ok(ResultStream {
            rx,
            handle: Some(handle),
            outcome: None,
        })
    }

    /// The engine shared by `map`, `for_each` and `stream`.
    fn run(
        &mut self,
        inputs: &[M::Input],
        settings: &Settings,
        deliver: &mut dyn FnMut(usize, Result<M::Output, PointError>),
    ) -> Result<Summary, Error> {
        match handshake_in_env() {
            Some(Ok(_)) => return Err(Error::NotAWorker { var: WORKER_ENV }),
            // A user's OTWRAP_WORKER=4 in a program without #[otwrap::main].
            Some(Err(refused)) => return Err(Error::Config(refused.to_string())),
            None => {}
        }
        let total = inputs.len();
        let cache = self.open_cache()?;
        let (model, data) = match &self.instance {
            Some(instance) => (instance.model.clone(), Some(Arc::clone(&instance.data))),
            None => (ModelRef::Compiled(M::ID.to_string()), None),
        };
        if crate::interrupt::requested() {
            return Err(Error::Interrupted {
                cause: crate::interrupt::cause(),
            });
        }
        // Every batch catches SIGINT and SIGTERM: it stops its workers and
        // the programs they run, and returns every finished result.
        let _interrupt = crate::interrupt::Guard::install();
        let mut delivered = vec![false; total];
        let cancel = AtomicBool::new(false);
        let mut books = Books {
            tracker: Tracker::new(total),
            bar: Bar::new(settings.progress, total, M::NAME),
            first_failure: None,
            fail_fast: settings.fail_fast,
            cancel: &cancel,
            on_progress: &mut self.on_progress,
            deliver,
        };
        // Look every point up first; only misses are dispatched, and a point
        // repeated in the batch is evaluated once.
        let mut repeats: HashMap<usize, Vec<usize>> = HashMap::new();
        let todo: Vec<usize> = match &cache {
            None => (0..total).collect(),
            Some(cache) => {
                let mut todo = Vec::new();
                // Keyed by a 128-bit hash of the encoded input (not the bytes:
                // memory must not grow with copies of the inputs), confirmed
                // byte for byte when two points share a hash.
                let mut first_of: HashMap<u128, usize> = HashMap::new();
                for (index, input) in inputs.iter().enumerate() {
                    let Ok(bytes) = crate::codec::encode(input) else {
                        todo.push(index);
                        continue;
                    };
                    if let Some(result) = cached_result::<M>(cache, &bytes)? {
                        delivered[index] = true;
                        books.tracker.cached += 1;
                        let result = result
                            .map_err(|message| cached_error(index, inputs, settings, message));
                        books.accept(index, result);
                        continue;
                    }
                    let hash = xxhash_rust::xxh3::xxh3_128(&bytes);
                    let same = first_of.get(&hash).copied().filter(|&first| {
                        crate::codec::encode(&inputs[first]).is_ok_and(|b| b == bytes)
                    });
                    match same {
                        Some(first) => repeats.entry(first).or_default().push(index),
                        None => {
                            first_of.entry(hash).or_insert(index);
                            todo.push(index);
                        }
                    }
                }
                todo
            }
        };
        let used = std::sync::atomic::AtomicUsize::new(0);
        let job = Job::<M> {
            inputs,
            todo: &todo,
            settings,
            cancel: &cancel,
            used: &used,
            model,
            data,
        };
        let mut evaluated = 0;
        let mut store_failures = 0;
        backend::execute(&job, &mut |Event {
                                         index,
                                         outcome,
                                         attempts,
                                     }| {
            // A point that failed once the batch was interrupted was most
            // likely stopped by it (its program or worker killed): not run.
            if outcome.is_err() && crate::interrupt::requested() {
                return;
            }
            if index >= total || std::mem::replace(&mut delivered[index], true) {
                tracing::error!(
                    index,
                    "backend reported point {index} twice or out of range; ignored"
                );
                return;
            }
            evaluated += 1;
            let result = outcome.map_err(|(failure, location)| {
                let retries = retry_budget(settings, failure.class());
                PointError::new(index, render_input(&inputs[index]), failure, location)
                    .with_attempts(Attempts {
                        made: attempts,
                        retries,
                    })
            });
            let stored = cache.as_ref().and_then(|cache| {
                store_result::<M>(cache, &inputs[index], &result, &mut store_failures)
            });
            // (No hash lookup per point when the batch has no repeats.)
            let copies = if repeats.is_empty() {
                None
            } else {
                repeats.get(&index)
            };
            for &repeat in copies.into_iter().flatten() {
                delivered[repeat] = true;
                let copy = match (&result, &stored) {
                    (Ok(_), Some(bytes)) => crate::codec::decode::<M::Output>(bytes)
                        .map_err(|e| PointFailure::Protocol { message: e }),
                    (Ok(_), None) => Err(PointFailure::Protocol {
                        message: format!(
                            "the result of the identical point {index} could not be copied"
                        ),
                    }),
                    (Err(e), _) => Err(e.failure().clone()),
                };
                let copy = copy.map_err(|failure| {
                    PointError::new(
                        repeat,
                        render_input(&inputs[repeat]),
                        failure,
                        Location {
                            backend: settings.backend.name().to_string(),
                            ..Location::default()
                        },
                    )
                });
                books.accept(repeat, copy);
            }
            books.accept(index, result);
        })?;
        if let Some(cache) = &cache {
            if let Err(e) = cache.flush() {
                // Usually the same failure (a full disk) the inserts already
                // reported: said once per batch, counted.
                store_failures += 1;
                if store_failures == 1 {
                    report_store_failure(&e);
                }
            }
        }
        let reason = match (settings.fail_fast, books.first_failure) {
            _ if crate::interrupt::requested() => interrupted_reason(),
            (true, Some(first)) => {
                format!("fail-fast: the batch stopped after point {first} failed")
            }
            _ => "no worker was left to run it (see the errors of the other points)".to_string(),
        };
        for index in (0..total).filter(|&i| !delivered[i]) {
            let error = PointError::new(
                index,
                render_input(&inputs[index]),
                PointFailure::NotRun {
                    reason: reason.clone(),
                },
                Location {
                    backend: settings.backend.name().to_string(),
                    ..Location::default()
                },
            );
            books.accept(index, Err(error));
            books.tracker.not_run += 1;
        }
        books.bar.finish(&books.tracker);
        let tracker = books.tracker;
        Ok(Summary {
            total,
            evaluated,
            cached: tracker.cached,
            failed: tracker.failed,
            not_run: tracker.not_run,
            cache_store_failures: store_failures,
            wall_time: tracker.start.elapsed(),
            backend: settings.backend.name().to_string(),
            workers: match used.into_inner() {
                0 => settings.workers,
                used => used,
            },
        })
    }
}

/// A cache hit decoded: the value, or a stored failure message. An entry
/// whose value no longer decodes (the output type changed) is a miss.
fn cached_result<M: Model>(
    cache: &ModelCache,
    input: &[u8],
) -> Result<Option<Result<M::Output, String>>, Error> {
    Ok(match cache.lookup(input)? {
        None => None,
        Some(Entry::Error(message)) => Some(Err(message)),
        Some(Entry::Value(bytes)) => match crate::codec::decode::<M::Output>(&bytes) {
            Ok(value) => Some(Ok(value)),
            Err(e) => {
                tracing::warn!(
                    model = M::ID,
                    "a cached value does not decode ({e}); evaluating again"
                );
                None
            }
        },
    })
}

fn cached_error<T: serde::Serialize>(
    index: usize,
    inputs: &[T],
    settings: &Settings,
    message: String,
) -> PointError {
    PointError::new(
        index,
        render_input(&inputs[index]),
        PointFailure::Model { message },
        Location {
            host: "cache".to_string(),
            backend: settings.backend.name().to_string(),
            ..Location::default()
        },
    )
}

/// Stores one result as soon as it arrives; returns the encoded value. A
/// store that fails is reported loudly once per batch and counted; the
/// result itself is still delivered.
fn store_result<M: Model>(
    cache: &ModelCache,
    input: &M::Input,
    result: &Result<M::Output, PointError>,
    failures: &mut usize,
) -> Option<Vec<u8>> {
    let input = crate::codec::encode(input).ok()?;
    let (entry, value) = match result {
        Ok(value) => {
            let bytes = crate::codec::encode(value).ok()?;
            (Entry::Value(bytes.clone()), Some(bytes))
        }
        Err(e) if cache.spec().cache_errors => match e.failure() {
            PointFailure::Model { message } | PointFailure::Panic { message } => {
                (Entry::Error(message.clone()), None)
            }
            _ => return None,
        },
        Err(_) => return None,
    };
    if let Err(e) = cache.store(&input, entry) {
        *failures += 1;
        if *failures == 1 {
            report_store_failure(&e);
        }
    }
    value
}

/// Why the points an interruption stopped were not run.
fn interrupted_reason() -> String {
    format!(
        "interrupted by {}: the batch stopped; finished results are kept",
        crate::interrupt::cause()
    )
}

fn report_store_failure(e: &crate::cache::store::CacheError) {
    tracing::error!("cannot store a result in the cache: {e}");
    eprintln!("otwrap: cannot store results in the cache ({e}); the batch goes on and keeps its results in memory");
}

/// Evaluates one point directly (the single-point call of a model with
/// layers): the cache first, then the layers around `body`.
pub fn call_single<M: Model, I: serde::Serialize + ?Sized>(
    input: &I,
    body: impl FnOnce(Option<&std::path::Path>) -> Result<M::Output, PointFailure>,
) -> Result<M::Output, Error> {
    let cache = ModelCache::of::<M>()?;
    let bytes =
        match &cache {
            Some(_) => Some(crate::codec::encode(input).map_err(|e| {
                Error::Config(format!("cannot encode the input of {}: {e}", M::NAME))
            })?),
            None => None,
        };
    if let (Some(cache), Some(bytes)) = (&cache, &bytes) {
        if let Some(hit) = cached_result::<M>(cache, bytes)? {
            return hit.map_err(|message| {
                Error::Point(PointError::new(
                    0,
                    render_input(input),
                    PointFailure::Model { message },
                    Location {
                        host: "cache".to_string(),
                        backend: "direct call".to_string(),
                        ..Location::default()
                    },
                ))
            });
        }
    }
    let outcome = crate::layers::evaluate_layers(M::NAME, M::layers(), 0, input, body);
    let location = crate::backend::local_location_named("direct call");
    let result = outcome.map_err(|failed| {
        let (failure, location) = failed.into_parts(location);
        PointError::new(0, render_input(input), failure, location)
    });
    if let (Some(cache), Some(bytes)) = (&cache, &bytes) {
        let entry = match &result {
            Ok(value) => crate::codec::encode(value).ok().map(Entry::Value),
            Err(e) if cache.spec().cache_errors => match e.failure() {
                PointFailure::Model { message } | PointFailure::Panic { message } => {
                    Some(Entry::Error(message.clone()))
                }
                _ => None,
            },
            Err(_) => None,
        };
        if let Some(entry) = entry {
            cache.store(bytes, entry).and_then(|()| cache.flush())?;
        }
    }
    result.map_err(Error::Point)
}

/// The driver's bookkeeping of one batch: counts, progress, fail-fast, and
/// handing each result over.
struct Books<'a, T> {
    tracker: Tracker,
    bar: Bar,
    first_failure: Option<usize>,
    fail_fast: bool,
    cancel: &'a AtomicBool,
    on_progress: &'a mut Option<ProgressCallback>,
    deliver: &'a mut dyn FnMut(usize, Result<T, PointError>),
}

impl<T> Books<'_, T> {
    fn accept(&mut self, index: usize, result: Result<T, PointError>) {
        let failed = result.is_err();
        self.tracker.done += 1;
        if failed {
            self.tracker.failed += 1;
            self.first_failure.get_or_insert(index);
            if self.fail_fast {
                self.cancel.store(true, Ordering::Relaxed);
            }
        }
        self.bar.advance(&self.tracker);
        if let Some(callback) = self.on_progress.as_mut() {
            callback(&self.tracker.snapshot());
        }
        (self.deliver)(index, result);
    }
}

/// The results of a batch in completion order (see [`Runner::stream`]).
pub struct ResultStream<T> {
    rx: mpsc::Receiver<Completed<T>>,
    handle: Option<JoinHandle<Result<Summary, Error>>>,
    outcome: Option<Result<Summary, Error>>,
}

impl<T> ResultStream<T> {
    fn join(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.outcome = Some(handle.join().unwrap_or_else(|_| {
                Err(Error::Backend {
                    backend: "stream",
                    message: "the background batch thread panicked".into(),
                })
            }));
        }
    }

    /// Consumes the rest of the stream and returns the batch summary.
    pub fn finish(mut self) -> Result<Summary, Error> {
        for _ in self.by_ref() {}
        self.join();
        self.outcome.take().unwrap_or_else(|| {
            Err(Error::Backend {
                backend: "stream",
                message: "the summary was already taken".into(),
            })
        })
    }
}

impl<T> Iterator for ResultStream<T> {
    type Item = Completed<T>;

    fn next(&mut self) -> Option<Completed<T>> {
        match self.rx.recv() {
            Ok(item) => Some(item),
            Err(_) => {
                self.join();
                None
            }
        }
    }
}

impl<T> std::fmt::Debug for ResultStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultStream").finish_non_exhaustive()
    }
}

/// The re-runs a failure of this class is allowed: `retries` for a loss of
/// infrastructure, none for a model failure (unless SLURM's
/// `retry_model_failures` asks).
fn retry_budget(settings: &Settings, class: FailureClass) -> u32 {
    match class {
        FailureClass::Infrastructure => settings.retries,
        FailureClass::Model if settings.slurm.retry_model_failures == Some(true) => {
            settings.retries
        }
        FailureClass::Model | FailureClass::NotRun => 0,
    }
}
