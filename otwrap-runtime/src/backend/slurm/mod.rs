//! The `slurm` backend: the points of a batch go to SLURM job arrays, and
//! their results come back through a run directory on the shared
//! filesystem.
//!
//! The driver (this process, on a login node) writes the run directory
//! (`run_dir.rs`), submits one array per group of points with a generated
//! job script (`script.rs`, `commands.rs`), and then loops: every
//! [`TICK`] it reads the records the array tasks appended (so each finished
//! point reaches the batch within a second), and at a growing interval it
//! asks `squeue` for the state of every task of the run at once
//! (`poll.rs`). A task that ends without recording all its points (time
//! limit, out of memory, node failure, cancellation, crash) has its
//! missing points resubmitted, a bounded number of times; a model failure
//! is a result and is not retried unless asked. A driver started again on
//! the same batch finds the same run directory, reports what is recorded
//! there, follows the jobs still running, and submits only the rest.
//!
//! The array-task side is `worker/task.rs`.

mod check;
mod commands;
mod poll;

mod script;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Location, PointFailure};
use crate::layers::Failed;
use crate::model::Model;

use super::{Event, Executor, Job};
use crate::core::paths::absolute;
use crate::worker::run_dir::{self, JobLine, RecordReader, TaskRecord};
use commands::Cli;
use poll::{Backoff, Pending, Seen};

/// How often result logs are read.
const TICK: Duration = Duration::from_millis(250);
/// How long lost points wait for other losses to share one resubmission,
/// while other tasks of the run still run.
const RESUBMIT_DELAY: Duration = Duration::from_secs(5);
/// How long records of a task that SLURM reports ended may take to show
/// (shared filesystems make writes visible late).
const COMPLETED_GRACE: Duration = Duration::from_secs(10);
const FAILED_GRACE: Duration = Duration::from_secs(1);
/// How long a run may be held only by limits or holds when `start_timeout`
/// is not set.
const BLOCKED_TIMEOUT: Duration = Duration::from_secs(300);
/// Array size below which `MaxArraySize` need not be asked (SLURM's
/// default allows indices up to 1000).
const SAFE_ARRAY_SIZE: usize = 1001;
/// Array tasks aimed at per CPU slot of the partition when
/// `points_per_task` is not set.
const TASKS_PER_SLOT: u64 = 3;
/// The partition size assumed when `sinfo` cannot tell.
const FALLBACK_CPUS: u64 = 16;
/// An upper bound on the tasks of one submission chosen automatically.
const MAX_AUTO_TASKS: u64 = 5000;
/// Lines of a task's `.err` file shown in point errors.
const STDERR_TAIL_LINES: usize = 20;
/// The default parent of run directories.
const DEFAULT_RUN_DIR: &str = ".otwrap/runs";

pub(crate) struct Slurm;

impl<M: Model> Executor<M> for Slurm {
    fn execute(
        &self,
        job: &Job<'_, M>,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), Error> {
        if job.todo.is_empty() {
            return Ok(());
        }
        let mut driver = Driver::<M>::prepare(job)?;
        let outcome = driver.drive(sink);
        driver.finish(&outcome);
        outcome
    }
}

fn backend_error(message: impl Into<String>) -> Error {
    Error::Backend {
        backend: "slurm",
        message: message.into(),
    }
}

/// Where a point's record came from.
#[derive(Debug, Clone, Default)]
struct TaskStart {
    host: String,
    pid: u32,
}

/// One point of the batch, as the driver follows it.
#[derive(Debug, Clone, Default)]
struct PointTrack {
    /// In the backend's todo list.
    wanted: bool,
    /// Given to the batch.
    reported: bool,
    /// The array task `(submission, task)` that should evaluate it now.
    assigned: Option<(u32, u32)>,
    /// The assigned task recorded it.
    recorded: bool,
    /// Losses charged to it (its task died while it ran).
    attempts: u32,
    /// Model failures retried (with `retry_model_failures`).
    model_retries: u32,
}

/// One array task.
#[derive(Debug, Default)]
struct TaskTrack {
    points: Vec<usize>,
    /// Its last state from squeue or scontrol.
    seen: Option<Seen>,
    /// When a final state was first seen.
    final_since: Option<Instant>,
    /// Consecutive polls that did not list it.
    missing: u32,
    /// SLURM no longer knows it.
    vanished: bool,
    started: Option<TaskStart>,
    /// Its end record: `Some(stopped)`.
    ended: Option<bool>,
    exit_code: Option<String>,
    settled: bool,
}

/// One sbatch: an array job.
#[derive(Debug)]
struct Submission {
    job_id: String,
    tasks: Vec<TaskTrack>,
}

/// One result log being read.
struct LogReader {
    reader: RecordReader,
    start: Option<TaskStart>,
}

/// The driver of one batch on SLURM.
struct Driver<'j, 'a, M: Model> {
    job: &'j Job<'a, M>,
    cli: Cli,
    run: PathBuf,
    log_dir: PathBuf,
    exe: PathBuf,
    job_name: String,
    points: Vec<PointTrack>,
    remaining: usize,
    reported: usize,
    submissions: BTreeMap<u32, Submission>,
    next_seq: u32,
    readers: BTreeMap<(u32, u32, u32), LogReader>,
    results_mtime: Option<SystemTime>,
    last_listing: Instant,
    retry_queue: Vec<usize>,
    lost_since: Option<Instant>,
    backoff: Backoff,
    next_poll: Instant,
    /// Last time something of the run ran or was submitted.
    last_activity: Instant,
    max_array: Option<usize>,
    target_tasks: Option<u64>,
    worker_checked: bool,
    warned: HashSet<String>,
    squeue_failures: u32,
    started: Instant,
    _lock: Option<run_dir::DriverLock>,
}

impl<'j, 'a, M: Model> Driver<'j, 'a, M> {
    /// Resolves the options, names the run directory (creating it, or
    /// finding it again), and locks it.
    fn prepare(job: &'j Job<'a, M>) -> Result<Self, Error> {
        let o = &job.settings.slurm;
        let exe = super::worker_exe(job.settings.worker_exe.as_deref()).map_err(backend_error)?;
        let exe = absolute(&exe);
        let base = absolute(o.run_dir.as_deref().unwrap_or(Path::new(DEFAULT_RUN_DIR)));
        let salt = match M::cache() {
            Some(spec) => [&spec.body_hash.to_le_bytes()[..], spec.version.as_bytes()].concat(),
            None => Vec::new(),
        };
        let hash = run_dir::encode_inputs(M::ID, &salt, job.inputs, None).map_err(backend_error)?;
        // A hand-written `Model::NAME` could hold `/` or `..`: the run
        // directory's name keeps only plain characters.
        let name: String = M::NAME
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let run = base.join(format!("{name}-{:020x}", hash >> 48));
        let log_dir = o
            .log_dir
            .as_deref()
            .map(absolute)
            .unwrap_or_else(|| run.join(run_dir::LOGS));
        let job_name = o.job_name.clone().unwrap_or_else(|| M::NAME.to_string());
        let mut points = vec![PointTrack::default(); job.inputs.len()];
        for &i in job.todo {
            points[i].wanted = true;
        }
        let now = Instant::now();
        let mut driver = Driver {
            job,
            cli: Cli::default(),
            run,
            log_dir,
            exe,
            job_name,
            points,
            remaining: job.todo.len(),
            reported: 0,
            submissions: BTreeMap::new(),
            next_seq: 0,
            readers: BTreeMap::new(),
            results_mtime: None,
            last_listing: now,
            retry_queue: Vec::new(),
            lost_since: None,
            backoff: Backoff::new(),
            next_poll: now,
            last_activity: now,
            max_array: None,
            target_tasks: None,
            worker_checked: false,
            warned: HashSet::new(),
            squeue_failures: 0,
            started: now,
            _lock: None,
        };
        if o.dry_run == Some(true) {
            return Err(driver.dry_run());
        }
        driver.open_run_dir()?;
        Ok(driver)
    }

    /// Creates the run directory and its inputs file, or checks the one a
    /// previous driver left.
    fn open_run_dir(&mut self) -> Result<(), Error> {
        let io = |path: &Path, e: std::io::Error| Error::Io {
            path: path.to_path_buf(),
            source: e,
        };
        run_dir::create_private_dir(&self.run).map_err(|e| io(&self.run, e))?;
        self._lock = Some(run_dir::DriverLock::take(&self.run).map_err(backend_error)?);
        let inputs = self.run.join(run_dir::INPUTS);
        let usable = run_dir::InputsFile::open(&inputs)
            .is_ok_and(|f| f.len() == self.job.inputs.len() as u64);
        if !usable {
            let tmp = self.run.join("inputs.bin.tmp");
            run_dir::encode_inputs(M::ID, b"", self.job.inputs, Some(&tmp))
                .map_err(|e| backend_error(format!("cannot write the run's inputs: {e}")))?;
            std::fs::rename(&tmp, &inputs).map_err(|e| io(&inputs, e))?;
        }
        for dir in [self.run.join(run_dir::RESULTS), self.log_dir.clone()] {
            run_dir::create_private_dir(&dir).map_err(|e| io(&dir, e))?;
        }
        self.next_seq = run_dir::next_submission(&self.run);
        run_dir::log_driver(
            &self.run,
            &format!(
                "{} driver pid {} on {}: {} of {} points to do{}",
                unix_time(),
                std::process::id(),
                crate::host::hostname(),
                self.job.todo.len(),
                self.job.inputs.len(),
                if usable { " (resuming)" } else { "" }
            ),
        );
        Ok(())
    }

    /// The dry run: the script of the first submission and the sbatch
    /// command, printed; nothing is written or submitted.
    fn dry_run(&mut self) -> Error {
        let points: Vec<usize> = self.job.todo.to_vec();
        let tasks = self.plan_tasks(&points);
        self.job
            .used
            .fetch_add(tasks.len(), std::sync::atomic::Ordering::Relaxed);
        let seq = 0;
        let spec = self.script_spec(seq, tasks.len().min(SAFE_ARRAY_SIZE) as u32);
        match script::render(&spec) {
            Err(e) => backend_error(e),
            Ok(text) => {
                let script = run_dir::script_file(&self.run, seq);
                println!(
                    "# otwrap slurm dry run: {} points in {} array tasks",
                    points.len(),
                    tasks.len()
                );
                println!("# would run: sbatch --parsable {}", script.display());
                println!("# script {}:", script.display());
                print!("{text}");
                backend_error(format!(
                    "dry run: the job script for {} points ({} array tasks) was printed on stdout; \
                     nothing was written or submitted (unset `dry_run` to submit)",
                    points.len(),
                    tasks.len()
                ))
            }
        }
    }

    fn script_spec(&self, seq: u32, tasks: u32) -> script::ScriptSpec<'_> {
        script::ScriptSpec {
            options: &self.job.settings.slurm,
            job_name: &self.job_name,
            tasks,
            log_dir: &self.log_dir,
            run_dir: &self.run,
            submission: seq,
            model_id: M::ID,
            exe: &self.exe,
            timeout: self.job.settings.timeout,
        }
    }

    /// Splits points into array tasks: `points_per_task`, or enough tasks
    /// to keep the partition's CPUs busy a few times over.
    fn plan_tasks(&mut self, points: &[usize]) -> Vec<Vec<usize>> {
        let o = &self.job.settings.slurm;
        let per_task = match o.points_per_task {
            Some(n) => n.max(1),
            None => {
                let target = match self.target_tasks {
                    Some(t) => t,
                    None => {
                        let cpus = self
                            .cli
                            .partition_cpus(o.partition.as_deref())
                            .unwrap_or_else(|e| {
                                tracing::debug!("sinfo could not size the partition ({e}); assuming {FALLBACK_CPUS} CPUs");
                                FALLBACK_CPUS
                            });
                        let mut slots =
                            (cpus / u64::from(o.cpus_per_task.unwrap_or(1).max(1))).max(1);
                        if let Some(n) = o.array_parallelism {
                            slots = slots.min(u64::from(n.max(1)));
                        }
                        let t = (slots * TASKS_PER_SLOT).clamp(1, MAX_AUTO_TASKS);
                        self.target_tasks = Some(t);
                        t
                    }
                };
                (points.len() as u64).div_ceil(target).max(1) as usize
            }
        };
        points.chunks(per_task).map(<[usize]>::to_vec).collect()
    }

    // ------------------------------------------------------------ driving

    fn drive(&mut self, sink: &mut dyn FnMut(Event<M::Output>)) -> Result<(), Error> {
        self.adopt_previous_jobs();
        self.read_results(sink, true);
        if !self.submissions.is_empty() {
            if let Some(problem) = self.poll(sink) {
                return self.abort(sink, problem);
            }
        }
        // Points no task of a previous driver holds any more.
        let fresh: Vec<usize> = self
            .job
            .todo
            .iter()
            .copied()
            .filter(|&i| !self.points[i].reported && self.points[i].assigned.is_none())
            .collect();
        if !fresh.is_empty() {
            if let Err((message, _)) = self.submit(fresh, 0) {
                return self.abort(sink, message);
            }
        }
        loop {
            self.read_results(sink, false);
            if self.remaining == 0 {
                return Ok(());
            }
            if self.job.cancelled() {
                self.cancel_all();
                self.read_results(sink, true);
                return Ok(());
            }
            if Instant::now() >= self.next_poll {
                if let Some(problem) = self.poll(sink) {
                    return self.abort(sink, problem);
                }
            }
            self.settle_tasks(sink);
            self.resubmit_lost(sink)?;
            std::thread::sleep(TICK);
        }
    }

    /// Follows the jobs a previous driver submitted for this run.
    fn adopt_previous_jobs(&mut self) {
        for line in run_dir::read_jobs(&self.run) {
            let path = run_dir::tasks_file(&self.run, line.seq);
            let tasks = match run_dir::read_all_tasks(&path, self.job.inputs.len() as u64) {
                Ok(tasks) => tasks,
                Err(e) => {
                    tracing::warn!(
                        "cannot read {} ({e}); its points will be submitted again",
                        path.display()
                    );
                    continue;
                }
            };
            let tasks = tasks
                .into_iter()
                .enumerate()
                .map(|(k, points)| {
                    let points: Vec<usize> = points
                        .into_iter()
                        .filter_map(|p| usize::try_from(p).ok())
                        .filter(|&p| p < self.points.len())
                        .collect();
                    for &p in &points {
                        if self.points[p].wanted {
                            self.points[p].assigned = Some((line.seq, k as u32));
                            self.points[p].recorded = false;
                        }
                    }
                    TaskTrack {
                        points,
                        ..TaskTrack::default()
                    }
                })
                .collect();
            self.submissions.insert(
                line.seq,
                Submission {
                    job_id: line.job_id,
                    tasks,
                },
            );
        }
    }

    /// Submits `points` as one array (split at MaxArraySize). On failure,
    /// the points not submitted are in the error.
    fn submit(&mut self, points: Vec<usize>, attempt: u32) -> Result<(), (String, Vec<usize>)> {
        if !self.worker_checked {
            check::check_worker(&self.exe, M::ID).map_err(|e| (e, points.clone()))?;
            self.worker_checked = true;
        }
        let tasks = self.plan_tasks(&points);
        let max_array = if tasks.len() >= SAFE_ARRAY_SIZE {
            *self
                .max_array
                .get_or_insert_with(|| match self.cli.config_value("MaxArraySize") {
                    Ok(Some(v)) => v.parse::<usize>().unwrap_or(SAFE_ARRAY_SIZE).max(1),
                    _ => SAFE_ARRAY_SIZE,
                })
        } else {
            SAFE_ARRAY_SIZE
        };
        let chunks: Vec<&[Vec<usize>]> = tasks.chunks(max_array).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let unsubmitted = || -> Vec<usize> {
                chunks[i..]
                    .iter()
                    .copied()
                    .flatten()
                    .flatten()
                    .copied()
                    .collect()
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            let tasks_path = run_dir::tasks_file(&self.run, seq);
            run_dir::write_tasks(&tasks_path, chunk).map_err(|e| (e, unsubmitted()))?;
            let text = script::render(&self.script_spec(seq, chunk.len() as u32))
                .map_err(|e| (e, unsubmitted()))?;
            let script_path = run_dir::script_file(&self.run, seq);
            run_dir::write_atomic(&script_path, text.as_bytes()).map_err(|e| {
                (
                    format!("cannot write {}: {e}", script_path.display()),
                    unsubmitted(),
                )
            })?;
            let job_id = self.cli.sbatch(&script_path).map_err(|e| {
                (
                    format!(
                        "sbatch refused the job script {}: {e}",
                        script_path.display()
                    ),
                    unsubmitted(),
                )
            })?;
            let line = JobLine {
                seq,
                job_id: job_id.clone(),
                tasks: chunk.len() as u32,
                attempt,
            };
            if let Err(e) = run_dir::append_job(&self.run, &line) {
                tracing::warn!("cannot record job {job_id} in the run directory: {e}; a restarted driver will not follow it");
            }
            tracing::info!(
                job = %job_id,
                tasks = chunk.len(),
                attempt,
                run = %self.run.display(),
                "submitted a SLURM array"
            );
            let tracks = chunk
                .iter()
                .enumerate()
                .map(|(k, points)| {
                    for &p in points {
                        self.points[p].assigned = Some((seq, k as u32));
                        self.points[p].recorded = false;
                    }
                    TaskTrack {
                        points: points.clone(),
                        ..TaskTrack::default()
                    }
                })
                .collect();
            self.submissions.insert(
                seq,
                Submission {
                    job_id,
                    tasks: tracks,
                },
            );
        }
        self.backoff = Backoff::new();
        self.next_poll = Instant::now() + Backoff::MIN;
        self.last_activity = Instant::now();
        Ok(())
    }

    // ------------------------------------------------------------ results

    /// Reads the records appended since the last call. `all` lists the
    /// results directory even if it looks unchanged.
    fn read_results(&mut self, sink: &mut dyn FnMut(Event<M::Output>), all: bool) {
        let dir = self.run.join(run_dir::RESULTS);
        let mtime = std::fs::metadata(&dir).and_then(|m| m.modified()).ok();
        if all
            || mtime != self.results_mtime
            || self.last_listing.elapsed() > Duration::from_secs(5)
        {
            self.results_mtime = mtime;
            self.last_listing = Instant::now();
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.filter_map(Result::ok) {
                    let name = entry.file_name();
                    let Some(key) = name.to_str().and_then(run_dir::parse_result_name) else {
                        continue;
                    };
                    self.readers.entry(key).or_insert_with(|| LogReader {
                        reader: RecordReader::new(entry.path()),
                        start: None,
                    });
                }
            }
        }
        let keys: Vec<(u32, u32, u32)> = self
            .readers
            .keys()
            .copied()
            .filter(|&(seq, task, _)| !self.task_settled(seq, task))
            .collect();
        for key in keys {
            self.read_log(key, sink);
        }
    }

    fn task_settled(&self, seq: u32, task: u32) -> bool {
        self.submissions
            .get(&seq)
            .and_then(|s| s.tasks.get(task as usize))
            .is_some_and(|t| t.settled)
    }

    fn task_mut(&mut self, seq: u32, task: u32) -> Option<&mut TaskTrack> {
        self.submissions
            .get_mut(&seq)
            .and_then(|s| s.tasks.get_mut(task as usize))
    }

    fn read_log(&mut self, key: (u32, u32, u32), sink: &mut dyn FnMut(Event<M::Output>)) {
        let (seq, task, _) = key;
        let Some(log) = self.readers.get_mut(&key) else {
            return;
        };
        let records = log.reader.read_new();
        if records.is_empty() {
            return;
        }
        self.last_activity = Instant::now();
        for record in records {
            match record {
                TaskRecord::Start { host, pid, .. } => {
                    let start = TaskStart { host, pid };
                    if let Some(log) = self.readers.get_mut(&key) {
                        log.start = Some(start.clone());
                    }
                    if let Some(t) = self.task_mut(seq, task) {
                        t.started = Some(start);
                        t.ended = None;
                    }
                }
                TaskRecord::Point { index, outcome } => {
                    let start = self.readers.get(&key).and_then(|l| l.start.clone());
                    self.on_point(seq, task, index, outcome, start, sink);
                }
                TaskRecord::End { stopped, .. } => {
                    if let Some(t) = self.task_mut(seq, task) {
                        t.ended = Some(stopped);
                    }
                }
            }
        }
    }

    fn on_point(
        &mut self,
        seq: u32,
        task: u32,
        index: u64,
        outcome: Result<Vec<u8>, Failed>,
        start: Option<TaskStart>,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) {
        let Some(index) = usize::try_from(index)
            .ok()
            .filter(|&i| i < self.points.len())
        else {
            tracing::warn!(
                "a result record names point {index}, which is not in the batch; ignored"
            );
            return;
        };
        let from_assigned = self.points[index].assigned == Some((seq, task));
        if from_assigned {
            self.points[index].recorded = true;
        }
        let p = &self.points[index];
        if !p.wanted || p.reported {
            return;
        }
        let location = self.location(start.as_ref());
        let outcome = match outcome {
            Ok(bytes) => crate::codec::decode::<M::Output>(&bytes).map_err(|message| {
                (
                    PointFailure::Protocol {
                        message: format!("cannot decode the output: {message}"),
                    },
                    location,
                )
            }),
            Err(failed) => {
                let settings = self.job.settings;
                let retry = settings.slurm.retry_model_failures == Some(true)
                    && p.model_retries < settings.retries;
                if retry {
                    if from_assigned {
                        let p = &mut self.points[index];
                        p.model_retries += 1;
                        p.assigned = None;
                        self.retry_queue.push(index);
                        self.lost_since.get_or_insert_with(Instant::now);
                    }
                    // A failure from an older attempt: the new one decides.
                    return;
                }
                Err(failed.into_parts(location))
            }
        };
        self.report(index, outcome, sink);
    }

    fn report(
        &mut self,
        index: usize,
        outcome: Result<M::Output, (PointFailure, Location)>,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) {
        let p = &mut self.points[index];
        if p.reported || !p.wanted {
            return;
        }
        p.reported = true;
        self.remaining -= 1;
        self.reported += 1;
        // `attempts` counts the losses charged to the point: one more
        // attempt was made unless the last loss is what is reported.
        let lost = matches!(&outcome, Err((PointFailure::TaskEnded { .. }, _)));
        let attempts = p.attempts + u32::from(!lost);
        sink(Event {
            index,
            outcome,
            attempts,
        });
    }

    fn location(&self, start: Option<&TaskStart>) -> Location {
        Location {
            host: start
                .map(|s| s.host.clone())
                .unwrap_or_else(|| "?".to_string()),
            backend: "slurm".to_string(),
            pid: start.map(|s| s.pid),
            workdir: None,
            log: None,
        }
    }

    // ------------------------------------------------------------ polling

    /// One squeue for every unsettled job of the run; returns a problem
    /// that stops the run (a job that can never start).
    fn poll(&mut self, sink: &mut dyn FnMut(Event<M::Output>)) -> Option<String> {
        let ids: Vec<String> = self
            .submissions
            .values()
            .filter(|s| s.tasks.iter().any(|t| !t.settled))
            .map(|s| s.job_id.clone())
            .collect();
        if ids.is_empty() {
            self.next_poll = Instant::now() + self.backoff.current();
            return None;
        }
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let listed = match self.cli.squeue(&refs) {
            Ok(Some(text)) => poll::parse_squeue(&text),
            Ok(None) => HashMap::new(),
            Err(e) => {
                self.squeue_failures += 1;
                if self.squeue_failures == 1 || self.squeue_failures.is_multiple_of(10) {
                    tracing::warn!(
                        "squeue failed ({e}); results still arrive through the run directory"
                    );
                }
                self.backoff.after_poll(false);
                self.next_poll = Instant::now() + self.backoff.current();
                return None;
            }
        };
        self.squeue_failures = 0;
        let mut changed = false;
        let mut unlisted: Vec<(u32, u32)> = Vec::new();
        let now = Instant::now();
        for (&seq, sub) in self.submissions.iter_mut() {
            for (k, task) in sub.tasks.iter_mut().enumerate() {
                if task.settled {
                    continue;
                }
                match listed.get(&(sub.job_id.clone(), k as u32)) {
                    Some(seen) => {
                        task.missing = 0;
                        if task.seen.as_ref() != Some(seen) {
                            changed = true;
                            if poll::is_final(&seen.state) {
                                task.final_since.get_or_insert(now);
                            }
                            task.seen = Some(seen.clone());
                        }
                        if seen.state == "RUNNING" {
                            self.last_activity = now;
                        }
                    }
                    None => {
                        task.missing += 1;
                        if task.missing >= 2 && !task.vanished {
                            unlisted.push((seq, k as u32));
                        }
                    }
                }
            }
        }
        if !unlisted.is_empty() {
            changed = true;
            self.ask_scontrol(&unlisted);
        }
        self.backoff.after_poll(changed);
        self.next_poll = Instant::now() + self.backoff.current();
        self.settle_tasks(sink);
        self.pending_problem()
    }

    /// Tasks squeue no longer lists: scontrol may still know their end;
    /// otherwise they vanished (cancelled while pending, or forgotten
    /// after MinJobAge).
    fn ask_scontrol(&mut self, unlisted: &[(u32, u32)]) {
        let mut by_job: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for &(seq, task) in unlisted {
            by_job.entry(seq).or_default().push(task);
        }
        let now = Instant::now();
        for (seq, tasks) in by_job {
            let Some(job_id) = self.submissions.get(&seq).map(|s| s.job_id.clone()) else {
                continue;
            };
            let known = match self.cli.show_job(&job_id) {
                Ok(Some(text)) => poll::parse_scontrol(&text),
                Ok(None) => HashMap::new(),
                Err(e) => {
                    tracing::warn!("scontrol show job {job_id} failed: {e}");
                    continue;
                }
            };
            for task in tasks {
                let Some(t) = self.task_mut(seq, task) else {
                    continue;
                };
                match known.get(&(job_id.clone(), task)) {
                    Some((seen, code)) => {
                        if poll::is_final(&seen.state) {
                            t.final_since.get_or_insert(now);
                        }
                        t.seen = Some(seen.clone());
                        t.exit_code = Some(code.clone());
                    }
                    None => {
                        t.vanished = true;
                        t.final_since.get_or_insert(now);
                    }
                }
            }
        }
    }

    /// A pending reason that the user must act on, or a start timeout.
    fn pending_problem(&mut self) -> Option<String> {
        let settings = &self.job.settings.slurm;
        let mut running = false;
        let mut blocked: Option<String> = None;
        let mut pending: Option<String> = None;
        for sub in self.submissions.values() {
            for (k, task) in sub.tasks.iter().enumerate() {
                if task.settled {
                    continue;
                }
                let Some(seen) = &task.seen else { continue };
                if !poll::is_pending(&seen.state) {
                    running |= !poll::is_final(&seen.state);
                    continue;
                }
                let what = format!(
                    "SLURM job {} (array task {}_{k}) is pending with reason {}",
                    sub.job_id, sub.job_id, seen.reason
                );
                match poll::classify_reason(&seen.reason) {
                    Pending::Fatal => {
                        return Some(format!(
                            "{what}, which SLURM will never resolve by itself: the job cannot run as \
                             submitted (check partition, account, qos, wckey, time, mem, cpus_per_task, \
                             constraint and the extra sbatch directives); it was cancelled"
                        ))
                    }
                    Pending::Blocked => {
                        if self.warned.insert(format!("{}:{}", sub.job_id, seen.reason)) {
                            tracing::warn!("{what}: a limit or hold keeps it waiting");
                            eprintln!("otwrap: {what}: a limit or hold keeps it waiting");
                        }
                        blocked.get_or_insert(what);
                    }
                    Pending::Normal => {
                        pending.get_or_insert(what);
                    }
                }
            }
        }
        if running {
            return None;
        }
        let waited = self.last_activity.elapsed();
        if let Some(what) = blocked {
            let limit = settings.start_timeout.unwrap_or(BLOCKED_TIMEOUT);
            if waited > limit {
                return Some(format!(
                    "{what}, and nothing of the run has run for {} s (start_timeout); the jobs were cancelled",
                    waited.as_secs()
                ));
            }
        }
        if let (Some(what), Some(limit)) = (pending, settings.start_timeout) {
            if waited > limit {
                return Some(format!(
                    "{what}, and nothing of the run has started for {} s (start_timeout = {} s); the jobs were cancelled",
                    waited.as_secs(),
                    limit.as_secs()
                ));
            }
        }
        None
    }

    // ------------------------------------------------------------ endings

    /// Settles the tasks that are over: their missing points are lost.
    fn settle_tasks(&mut self, sink: &mut dyn FnMut(Event<M::Output>)) {
        let mut over: Vec<(u32, u32)> = Vec::new();
        for (&seq, sub) in &self.submissions {
            for (k, task) in sub.tasks.iter().enumerate() {
                if task.settled {
                    continue;
                }
                let holds_points = task.points.iter().any(|&p| {
                    let p = &self.points[p];
                    p.assigned == Some((seq, k as u32)) && !p.reported
                });
                let done = !holds_points
                    || task.ended.is_some()
                    || task.vanished
                    || match (&task.seen, task.final_since) {
                        (Some(seen), Some(since)) if poll::is_final(&seen.state) => {
                            let grace = if seen.state == "COMPLETED" {
                                COMPLETED_GRACE
                            } else {
                                FAILED_GRACE
                            };
                            since.elapsed() >= grace
                        }
                        _ => false,
                    };
                if done {
                    over.push((seq, k as u32));
                }
            }
        }
        for (seq, task) in over {
            // The last records, written just before the task ended.
            let keys: Vec<_> = self
                .readers
                .keys()
                .copied()
                .filter(|&(s, t, _)| s == seq && t == task)
                .collect();
            for key in keys {
                self.read_log(key, sink);
            }
            self.settle(seq, task, sink);
        }
    }

    fn settle(&mut self, seq: u32, task: u32, sink: &mut dyn FnMut(Event<M::Output>)) {
        let Some(sub) = self.submissions.get_mut(&seq) else {
            return;
        };
        let job_id = sub.job_id.clone();
        let Some(t) = sub.tasks.get_mut(task as usize) else {
            return;
        };
        t.settled = true;
        let lost: Vec<usize> = t
            .points
            .iter()
            .copied()
            .filter(|&p| {
                let p = &self.points[p];
                p.assigned == Some((seq, task)) && !p.recorded && !p.reported
            })
            .collect();
        if lost.is_empty() {
            return;
        }
        // The point the task was evaluating when it died takes the blame;
        // points it never started are not charged, unless nothing tells
        // which point was running.
        let culprit = match (&t.started, t.ended) {
            (Some(_), None) => lost.first().copied(),
            _ => None,
        };
        // SLURM's name for the state, for the point's failure (its class
        // follows it); the phrase below is for the log.
        let state_name = match (&t.seen, t.vanished, t.ended) {
            (Some(seen), false, _) | (Some(seen), _, Some(true)) => seen.state.clone(),
            (None, _, Some(true)) => "TERMINATED".to_string(),
            _ => "VANISHED".to_string(),
        };
        let stopped = t.ended == Some(true);
        let (state, why) = match (&t.seen, t.vanished, t.ended) {
            (seen, _, Some(true)) => (
                match seen {
                    Some(s) => format!("was stopped by SIGTERM and ended {}", s.state),
                    None => "was stopped by SIGTERM".to_string(),
                },
                seen.as_ref()
                    .map(|s| poll::explain_state(&s.state))
                    .unwrap_or(""),
            ),
            (Some(seen), false, _) => (
                format!("ended {}", seen.state),
                poll::explain_state(&seen.state),
            ),
            _ => (
                "ended without its end record".to_string(),
                "SLURM no longer lists it: cancelled while pending, or ended more than MinJobAge ago",
            ),
        };
        let why = poll::with_exit_code(
            t.exit_code.as_deref().filter(|c| *c != "0:0"),
            why.to_string(),
        );
        let started = t.started.clone();
        let (out_log, err_log) = script::task_logs(&self.log_dir, &job_id, task);
        tracing::info!(
            task = %format!("{job_id}_{task}"),
            lost = lost.len(),
            "array task {state}; its points without a result will be retried"
        );
        let retries = self.job.settings.retries;
        let mut exhausted = Vec::new();
        for &p in &lost {
            let point = &mut self.points[p];
            point.assigned = None;
            if culprit.is_none() || culprit == Some(p) {
                point.attempts += 1;
            }
            if point.attempts > retries {
                exhausted.push(p);
            } else {
                self.retry_queue.push(p);
                self.lost_since.get_or_insert_with(Instant::now);
            }
        }
        if exhausted.is_empty() {
            return;
        }
        let why = self.with_exit_code(seq, task, &job_id, why);
        let stderr_tail = tail_lines(&err_log, STDERR_TAIL_LINES);
        for p in exhausted {
            let attempts = self.points[p].attempts;
            let when = if Some(p) == culprit {
                "while evaluating this point"
            } else {
                "before this point started"
            };
            let why = if why.is_empty() {
                String::new()
            } else {
                format!(" ({why})")
            };
            let stopped = if stopped {
                "it was stopped by SIGTERM "
            } else {
                ""
            };
            let mut detail = format!(
                "{stopped}{when}{why}; attempt {attempts} of {}; task logs {} and {}",
                retries + 1,
                out_log.display(),
                err_log.display()
            );
            if !stderr_tail.is_empty() {
                detail.push_str(&format!("; last lines of its stderr:\n{stderr_tail}"));
            }
            let failure = PointFailure::TaskEnded {
                task: format!("{job_id}_{task}"),
                state: state_name.clone(),
                detail,
            };
            let failed = match (&started, Some(p) == culprit) {
                (Some(start), true) => crate::layers::lost_evaluation(
                    M::NAME,
                    M::layers(),
                    p,
                    &self.job.inputs[p],
                    failure,
                    start.pid,
                ),
                _ => Failed::from(failure),
            };
            let (failure, mut location) = failed.into_parts(self.location(started.as_ref()));
            location.log = location.log.or_else(|| Some(err_log.clone()));
            self.report(p, Err((failure, location)), sink);
        }
    }

    /// Adds the exit code SLURM recorded for a failed task to `why` (one
    /// scontrol call, made only for points that fail for good).
    fn with_exit_code(&mut self, seq: u32, task: u32, job_id: &str, why: String) -> String {
        let needs = self
            .submissions
            .get(&seq)
            .and_then(|s| s.tasks.get(task as usize))
            .is_some_and(|t| {
                t.exit_code.is_none()
                    && !t.vanished
                    && t.seen.as_ref().is_some_and(|s| poll::is_final(&s.state))
            });
        if !needs {
            return why;
        }
        let code = match self.cli.show_job(&format!("{job_id}_{task}")) {
            Ok(Some(text)) => poll::parse_scontrol(&text)
                .remove(&(job_id.to_string(), task))
                .map(|(_, code)| code),
            _ => None,
        };
        poll::with_exit_code(
            code.as_deref().filter(|c| *c != "0:0" && !c.is_empty()),
            why,
        )
    }

    /// Resubmits lost points together, once the other tasks are over or
    /// the first loss has waited a little.
    fn resubmit_lost(&mut self, sink: &mut dyn FnMut(Event<M::Output>)) -> Result<(), Error> {
        self.retry_queue
            .retain(|&p| !self.points[p].reported && self.points[p].assigned.is_none());
        if self.retry_queue.is_empty() {
            self.lost_since = None;
            let active = self.active_tasks();
            if active == 0 && self.remaining > 0 {
                // Points no task holds (should not happen): submit them.
                let orphans: Vec<usize> = self
                    .job
                    .todo
                    .iter()
                    .copied()
                    .filter(|&i| !self.points[i].reported && self.points[i].assigned.is_none())
                    .collect();
                if orphans.is_empty() {
                    return Ok(());
                }
                self.retry_queue = orphans;
            } else {
                return Ok(());
            }
        }
        let waited = self.lost_since.map(|t| t.elapsed()).unwrap_or_default();
        if self.active_tasks() > 0 && waited < RESUBMIT_DELAY {
            return Ok(());
        }
        let mut points = std::mem::take(&mut self.retry_queue);
        points.sort_unstable();
        points.dedup();
        self.lost_since = None;
        let attempt = points
            .iter()
            .map(|&p| self.points[p].attempts + self.points[p].model_retries)
            .max()
            .unwrap_or(1);
        if let Err((message, unsubmitted)) = self.submit(points, attempt) {
            if self.reported == 0 {
                self.cancel_all();
                return Err(backend_error(message));
            }
            for p in unsubmitted {
                let failure = PointFailure::NotRun {
                    reason: format!(
                        "its array task was lost and resubmitting it failed: {message}"
                    ),
                };
                self.report(p, Err((failure, self.location(None))), sink);
            }
        }
        Ok(())
    }

    /// Unsettled tasks that still hold points of the batch.
    fn active_tasks(&self) -> usize {
        self.submissions
            .iter()
            .flat_map(|(&seq, s)| {
                s.tasks
                    .iter()
                    .enumerate()
                    .map(move |(k, t)| (seq, k as u32, t))
            })
            .filter(|&(seq, k, t)| {
                !t.settled
                    && t.points.iter().any(|&p| {
                        let p = &self.points[p];
                        p.assigned == Some((seq, k)) && !p.reported
                    })
            })
            .count()
    }

    /// Stops the run: cancels its jobs and fails what is left (or returns
    /// the error when nothing was reported yet).
    fn abort(
        &mut self,
        sink: &mut dyn FnMut(Event<M::Output>),
        message: String,
    ) -> Result<(), Error> {
        self.cancel_all();
        if self.reported == 0 {
            return Err(backend_error(message));
        }
        let left: Vec<usize> = self
            .job
            .todo
            .iter()
            .copied()
            .filter(|&i| !self.points[i].reported)
            .collect();
        for p in left {
            let failure = PointFailure::NotRun {
                reason: message.clone(),
            };
            self.report(p, Err((failure, self.location(None))), sink);
        }
        Ok(())
    }

    /// `scancel` of every job of the run that may still run.
    fn cancel_all(&mut self) {
        let ids: Vec<String> = self
            .submissions
            .values()
            .filter(|s| s.tasks.iter().any(|t| !t.settled))
            .map(|s| s.job_id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        match self.cli.scancel(&ids) {
            Ok(()) => tracing::info!("cancelled SLURM jobs {}", ids.join(",")),
            Err(e) => {
                tracing::error!("scancel {} failed: {e}", ids.join(" "));
                eprintln!(
                    "otwrap: could not cancel SLURM jobs {} ({e}); cancel them by hand",
                    ids.join(" ")
                );
            }
        }
    }

    /// Records the session in `driver.log` and the trace.
    fn finish(&mut self, outcome: &Result<(), Error>) {
        let how = match outcome {
            Ok(()) if self.job.cancelled() => "cancelled".to_string(),
            Ok(()) => "finished".to_string(),
            Err(e) => format!("failed: {e}"),
        };
        let line = format!(
            "{} driver pid {} {how}: {} points reported in {:.1} s; calls {}",
            unix_time(),
            std::process::id(),
            self.reported,
            self.started.elapsed().as_secs_f64(),
            self.cli.calls
        );
        if self._lock.is_some() {
            run_dir::log_driver(&self.run, &line);
        }
        tracing::debug!(
            run = %self.run.display(),
            sbatch = self.cli.calls.sbatch,
            squeue = self.cli.calls.squeue,
            scontrol = self.cli.calls.scontrol,
            sinfo = self.cli.calls.sinfo,
            scancel = self.cli.calls.scancel,
            "slurm driver {how}"
        );
    }
}

fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The last `n` lines of a text file (at most its last 16 KiB).
fn tail_lines(path: &Path, n: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(16 << 10);
    let mut buf = Vec::new();
    if file
        .seek(SeekFrom::Start(from))
        .and_then(|_| file.read_to_end(&mut buf))
        .is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
