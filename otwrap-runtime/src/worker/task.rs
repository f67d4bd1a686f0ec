//! Array-task mode: the worker binary started by a SLURM job script (with
//! `OTWRAP_WORKER=task`) evaluates the points of its array task, read from
//! the run directory, and appends one checksummed record per finished point
//! to its own result log, then an end record. There is no driver to talk
//! to: the run directory is the only channel.
//!
//! SIGTERM (sent by SLURM before it kills a task at its time limit or on
//! scancel) lets the point being evaluated finish, if it can within SLURM's
//! grace period, and stops the task before the next one.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::slurm::run_dir::{
    self, frame_record, read_task, result_file, tasks_file, InputsFile, RecordReader, TaskRecord,
};
use crate::error::PointFailure;
use crate::layers::Failed;
use crate::model::{find_registered, registered_ids, EvalContext};

use super::protocol::WORKER_ENV;

/// The value of `OTWRAP_WORKER` that starts array-task mode.
pub(crate) const TASK_MODE: &str = "task";
/// The run directory.
pub(crate) const RUN_ENV: &str = "OTWRAP_TASK_RUN";
/// The submission whose tasks file lists this task's points.
pub(crate) const SUBMISSION_ENV: &str = "OTWRAP_TASK_SUBMISSION";
/// The model's id.
pub(crate) const MODEL_ENV: &str = "OTWRAP_TASK_MODEL";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// `true` when this process was started as a SLURM array task.
pub(crate) fn requested() -> bool {
    std::env::var_os(WORKER_ENV).is_some_and(|v| v == TASK_MODE)
}

/// Runs the array task and exits: 0 when every point has a record (model
/// failures included), 70 when the task could not do its work.
pub(crate) fn run() -> ! {
    let run = std::env::var_os(RUN_ENV).map(PathBuf::from);
    let submission = std::env::var(SUBMISSION_ENV).ok();
    let model = std::env::var(MODEL_ENV).ok();
    // Programs the model starts must not believe they are workers too.
    for var in [WORKER_ENV, RUN_ENV, SUBMISSION_ENV, MODEL_ENV] {
        std::env::remove_var(var);
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    let code = match serve(run, submission, model) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "otwrap array task (pid {} on {}): {e}",
                std::process::id(),
                crate::host::hostname()
            );
            70
        }
    };
    std::process::exit(code)
}

fn env_number(name: &str) -> Result<Option<u32>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name}={v:?} is not a number")),
    }
}

fn serve(
    run: Option<PathBuf>,
    submission: Option<String>,
    model: Option<String>,
) -> Result<(), String> {
    let missing = |var: &str| {
        format!(
            "{var} is not set: array-task mode is started by the otwrap slurm backend's job script"
        )
    };
    let run = run.ok_or_else(|| missing(RUN_ENV))?;
    let submission: u32 = submission
        .ok_or_else(|| missing(SUBMISSION_ENV))?
        .trim()
        .parse()
        .map_err(|_| format!("{SUBMISSION_ENV} is not a number"))?;
    let model = model.ok_or_else(|| missing(MODEL_ENV))?;
    let task = env_number("SLURM_ARRAY_TASK_ID")?.ok_or_else(|| {
        "SLURM_ARRAY_TASK_ID is not set: this must run as a SLURM array task".to_string()
    })?;
    let restart = env_number("SLURM_RESTART_COUNT")?.unwrap_or(0);
    let job = std::env::var("SLURM_ARRAY_JOB_ID").unwrap_or_else(|_| "?".to_string());
    let reg = find_registered(&model).ok_or_else(|| {
        format!(
            "this program does not contain the model `{model}` (it knows: {}); \
             point `worker_exe` at the binary that defines it",
            registered_ids().join(", ")
        )
    })?;
    let points = read_task(&tasks_file(&run, submission), task)?;
    let mut inputs = InputsFile::open(&run.join(run_dir::INPUTS))?;
    // A task SLURM ran again (requeue) skips what its earlier runs recorded.
    let mut done = HashSet::new();
    for earlier in 0..restart {
        let mut reader = RecordReader::new(result_file(&run, submission, task, earlier));
        for record in reader.read_new() {
            if let TaskRecord::Point { index, .. } = record {
                done.insert(index);
            }
        }
    }
    let path = result_file(&run, submission, task, restart);
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open the result log {}: {e}", path.display()))?;
    let mut append = |record: &TaskRecord| -> Result<(), String> {
        let frame = frame_record(record)?;
        // One write per record on an append-only file: a kill leaves at
        // worst a torn last record, which readers ignore.
        log.write_all(&frame)
            .map_err(|e| format!("cannot write to {}: {e}", path.display()))
    };
    append(&TaskRecord::Start {
        host: crate::host::hostname().to_string(),
        pid: std::process::id(),
        slurm_id: format!("{job}_{task}"),
    })?;
    let mut evaluated = 0;
    let mut stopped = false;
    for index in points {
        if done.contains(&index) {
            continue;
        }
        if STOP.load(Ordering::SeqCst) {
            stopped = true;
            break;
        }
        let outcome = match inputs.get(index) {
            Ok(bytes) => (reg.invoke)(
                &bytes,
                &EvalContext::new(usize::try_from(index).unwrap_or(usize::MAX)),
            ),
            Err(message) => Err(Failed::from(PointFailure::Protocol { message })),
        };
        append(&TaskRecord::Point { index, outcome })?;
        evaluated += 1;
    }
    append(&TaskRecord::End { evaluated, stopped })
}
