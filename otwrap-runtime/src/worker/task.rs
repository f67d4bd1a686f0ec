//! Array-task mode: the worker binary started by a SLURM job script (with
//! `OTWRAP_WORKER=otwrap-task:<protocol>:<token>`) evaluates the points of its array task, read from
//! the run directory, and appends one checksummed record per finished point
//! to its own result log, then an end record. There is no driver to talk
//! to: the run directory is the only channel.
//!
//! SIGTERM (sent by SLURM before it kills a task at its time limit or on
//! scancel) lets the point being evaluated finish, if it can within SLURM's
//! grace period, and stops the task before the next one.
//!
//! With a per-point `timeout`, each point runs in its own thread; a point
//! over time is recorded as timed out and the task ends at once (a thread
//! cannot be stopped), its other points going back to the driver.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::PointFailure;
use crate::layers::Failed;
use crate::model::{find_registered, registered_ids, EvalContext, InvokeFn};
use crate::worker::run_dir::{
    self, frame_record, read_task, result_file, tasks_file, InputsFile, RecordReader, TaskRecord,
};

use super::protocol::WORKER_ENV;

/// The run directory.
pub(crate) const RUN_ENV: &str = "OTWRAP_TASK_RUN";
/// The submission whose tasks file lists this task's points.
pub(crate) const SUBMISSION_ENV: &str = "OTWRAP_TASK_SUBMISSION";
/// The model's id.
pub(crate) const MODEL_ENV: &str = "OTWRAP_TASK_MODEL";
/// The per-point timeout in seconds (the batch's `timeout`), if any.
pub(crate) const TIMEOUT_ENV: &str = "OTWRAP_TASK_TIMEOUT";

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Runs the array task and exits: 0 when every point has a record (model
/// failures included), 70 when the task could not do its work.
pub(crate) fn run() -> ! {
    let run = std::env::var_os(RUN_ENV).map(PathBuf::from);
    let submission = std::env::var(SUBMISSION_ENV).ok();
    let model = std::env::var(MODEL_ENV).ok();
    let timeout = std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|t| t.trim().parse::<f64>().ok())
        .and_then(|t| Duration::try_from_secs_f64(t).ok())
        .filter(|t| !t.is_zero());
    // Programs the model starts must not believe they are workers too.
    for var in [WORKER_ENV, RUN_ENV, SUBMISSION_ENV, MODEL_ENV, TIMEOUT_ENV] {
        std::env::remove_var(var);
    }
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGTERM,
            on_sigterm as extern "C" fn(libc::c_int) as libc::sighandler_t,
        );
    }
    let code = match serve(run, submission, model, timeout) {
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
    timeout: Option<Duration>,
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
    let mut inputs = InputsFile::open(&run.join(run_dir::INPUTS))?;
    let points = read_task(&tasks_file(&run, submission), task, inputs.len())?;
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
            Ok(bytes) => match timeout {
                None => (reg.invoke)(&bytes, &context(index)),
                Some(limit) => match evaluate_within(reg.invoke, bytes, index, limit) {
                    Some(outcome) => outcome,
                    None => {
                        let failure = PointFailure::Timeout { after: limit };
                        append(&TaskRecord::Point {
                            index,
                            outcome: Err(Failed::from(failure)),
                        })?;
                        // The evaluation still runs in its thread: end the
                        // task now; its other points go back to the driver.
                        append(&TaskRecord::End {
                            evaluated: evaluated + 1,
                            stopped: true,
                        })?;
                        std::process::exit(0);
                    }
                },
            },
            Err(message) => Err(Failed::from(PointFailure::Protocol { message })),
        };
        append(&TaskRecord::Point { index, outcome })?;
        evaluated += 1;
    }
    append(&TaskRecord::End { evaluated, stopped })
}

fn context(index: u64) -> EvalContext {
    EvalContext::new(usize::try_from(index).unwrap_or(usize::MAX))
}

/// Evaluates one point in its own thread; `None` when it runs past `limit`.
fn evaluate_within(
    invoke: InvokeFn,
    bytes: Vec<u8>,
    index: u64,
    limit: Duration,
) -> Option<Result<Vec<u8>, Failed>> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("otwrap-point-{index}"))
        .spawn(move || {
            let _ = tx.send(invoke(&bytes, &context(index)));
        });
    if let Err(e) = spawned {
        return Some(Err(Failed::from(PointFailure::Setup {
            message: format!("cannot start the evaluation thread: {e}"),
        })));
    }
    match rx.recv_timeout(limit) {
        Ok(outcome) => Some(outcome),
        Err(mpsc::RecvTimeoutError::Timeout) => None,
        Err(mpsc::RecvTimeoutError::Disconnected) => Some(Err(Failed::from(PointFailure::Panic {
            message: "the evaluation thread ended without a result".to_string(),
        }))),
    }
}
