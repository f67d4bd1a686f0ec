//! The `processes` backend: `workers` child processes of the worker binary
//! (this program by default), each serving one point at a time over the
//! worker protocol. A model that aborts, segfaults or exits kills only its
//! worker: that point fails with the signal or status named, and the slot
//! starts a new worker for the next point.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Backend;
use crate::core::Ending;
use crate::error::{Error, Location, PointFailure};
use crate::layers::Failed;
use crate::model::Model;
use crate::worker::protocol::{
    read_frame, read_greeting, write_frame, FromWorker, ToWorker, PROTOCOL_VERSION, WORKER_ENV,
};

use super::{Event, Executor, Job};

/// How long a new worker has to greet and load its model.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How many stderr lines of a worker are kept for crash reports.
const STDERR_TAIL_LINES: usize = 30;
/// Consecutive failures to start a worker after which a slot gives up.
const MAX_SPAWN_FAILURES: usize = 3;

pub(crate) struct Processes;

impl<M: Model> Executor<M> for Processes {
    fn execute(
        &self,
        job: &Job<'_, M>,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), Error> {
        if job.todo.is_empty() {
            return Ok(());
        }
        let exe = match &job.settings.worker_exe {
            Some(path) => path.clone(),
            None => std::env::current_exe().map_err(|e| Error::Backend {
                backend: "processes",
                message: format!("cannot find this program's own executable to start workers: {e}"),
            })?,
        };
        // The first worker is started here so that a binary that cannot be a
        // worker is a clear error before anything runs.
        let first = WorkerProcess::spawn(&exe, M::ID).map_err(|message| Error::Backend {
            backend: "processes",
            message,
        })?;
        let slots = job.settings.workers.min(job.todo.len());
        job.used.store(slots, Ordering::Relaxed);
        let next = AtomicUsize::new(0);
        let (tx, rx) = mpsc::channel::<Event<M::Output>>();
        std::thread::scope(|scope| {
            let mut first = Some(first);
            for slot in 0..slots {
                let tx = tx.clone();
                let (exe, next, worker) = (&exe, &next, first.take());
                std::thread::Builder::new()
                    .name(format!("otwrap-proc-{slot}"))
                    .spawn_scoped(scope, move || run_slot::<M>(job, exe, next, worker, tx))
                    .map(|_| ())
                    .unwrap_or_else(|e| {
                        tracing::error!("cannot start the thread of worker slot {slot}: {e}")
                    });
            }
            drop(tx);
            for event in rx {
                sink(event);
            }
        });
        Ok(())
    }
}

/// One worker slot: takes the next point, evaluates it in its worker process,
/// reports it, and replaces the worker when it dies.
fn run_slot<M: Model>(
    job: &Job<'_, M>,
    exe: &Path,
    next: &AtomicUsize,
    mut worker: Option<WorkerProcess>,
    tx: Sender<Event<M::Output>>,
) {
    let mut spawn_failures = 0;
    loop {
        if job.cancelled() {
            break;
        }
        let k = next.fetch_add(1, Ordering::Relaxed);
        let Some(&index) = job.todo.get(k) else { break };
        let w = match worker.as_mut() {
            Some(w) => w,
            None => match WorkerProcess::spawn(exe, M::ID) {
                Ok(w) => {
                    spawn_failures = 0;
                    worker.insert(w)
                }
                Err(message) => {
                    spawn_failures += 1;
                    let failure = PointFailure::Unstarted { message };
                    let _ = tx.send(Event::once(index, Err((failure, location(None)))));
                    if spawn_failures >= MAX_SPAWN_FAILURES {
                        break;
                    }
                    continue;
                }
            },
        };
        let pid = w.pid;
        let outcome = match crate::codec::encode(&job.inputs[index]) {
            Err(message) => Err(Failed::from(PointFailure::Protocol {
                message: format!("cannot encode the input: {message}"),
            })),
            Ok(bytes) => match w.evaluate(index, bytes, job.settings.timeout) {
                Reply::Interrupted => {
                    // Killed by the interruption: the point is not run, and
                    // no other starts.
                    worker = None;
                    break;
                }
                Reply::Done(Ok(bytes)) => {
                    crate::codec::decode::<M::Output>(&bytes).map_err(|message| {
                        Failed::from(PointFailure::Protocol {
                            message: format!("cannot decode the output: {message}"),
                        })
                    })
                }
                Reply::Done(Err(failure)) => Err(failure),
                Reply::Lost(failure) => {
                    // The worker is gone (or was killed): reap it, start a new one next time.
                    worker = None;
                    Err(crate::layers::lost_evaluation(
                        M::NAME,
                        M::layers(),
                        index,
                        &job.inputs[index],
                        failure,
                        pid,
                    ))
                }
            },
        };
        let outcome = outcome.map_err(|failed| failed.into_parts(location(Some(pid))));
        job.note_outcome(&outcome);
        if tx.send(Event::once(index, outcome)).is_err() {
            break;
        }
    }
    if let Some(w) = worker {
        w.shutdown();
    }
}

fn location(pid: Option<u32>) -> Location {
    Location {
        host: crate::host::hostname().to_string(),
        backend: Backend::Processes.name().to_string(),
        pid,
        workdir: None,
        log: None,
    }
}

/// What the reader thread of a worker passes on.
enum Incoming {
    Greeting(Result<FromWorker, String>),
    Frame(FromWorker),
    Closed(String),
}

/// The answer to one point.
enum Reply {
    /// The worker answered: the encoded output or the model's failure.
    Done(Result<Vec<u8>, Failed>),
    /// The worker died or was killed while evaluating.
    Lost(PointFailure),
    /// The batch was interrupted (SIGINT, SIGTERM) while the point ran: the
    /// worker was killed, or died of the same signal.
    Interrupted,
}

/// How often a slot waiting for its worker looks for an interruption.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);
/// How long a worker that died of SIGINT/SIGTERM/SIGHUP waits for the
/// driver's own handler to see the same signal (a whole process group or
/// job signalled at once): then its point is not run rather than lost.
const SIGNAL_GRACE: Duration = Duration::from_millis(500);

/// A running worker process and the threads that read its output.
struct WorkerProcess {
    child: Child,
    pid: u32,
    exe: PathBuf,
    stdin: BufWriter<ChildStdin>,
    incoming: Receiver<Incoming>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_thread: Option<JoinHandle<()>>,
    /// The signal that ended the process, once reaped.
    ended_by: Option<i32>,
    /// Kills the worker's group on interruption; dropped before reaping.
    interrupt: Option<crate::interrupt::GroupRegistration>,
}

impl WorkerProcess {
    /// Starts a worker and completes the handshake for model `model`.
    fn spawn(exe: &Path, model: &str) -> Result<WorkerProcess, String> {
        let mut cmd = Command::new(exe);
        cmd.env(WORKER_ENV, crate::worker::protocol::worker_env_value())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C goes to the driver
            // only, and a kill reaches the programs the model started.
            .process_group(0);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // A worker must not outlive its driver.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start the worker program {}: {e}", exe.display()))?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the worker program {} started without its pipes",
                exe.display()
            ));
        };
        let (tx, incoming) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("otwrap-read-{pid}"))
            .spawn(move || read_replies(stdout, tx))
            .map_err(|e| format!("cannot start a reader thread: {e}"))?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr_tail);
        let stderr_thread = std::thread::Builder::new()
            .name(format!("otwrap-stderr-{pid}"))
            .spawn(move || forward_stderr(stderr, pid, tail))
            .ok();
        let mut worker = WorkerProcess {
            child,
            pid,
            exe: exe.to_path_buf(),
            stdin: BufWriter::new(stdin),
            incoming,
            stderr_tail,
            stderr_thread,
            ended_by: None,
            interrupt: i32::try_from(pid)
                .ok()
                .map(crate::interrupt::register_group),
        };
        match worker.handshake(model) {
            Ok(()) => Ok(worker),
            Err(message) => {
                let (status, tail) = worker.kill_and_reap();
                let mut text = format!(
                    "the worker program {} {message}; the process {status}",
                    exe.display()
                );
                if !tail.is_empty() {
                    text.push_str(&format!("; its stderr ended with:\n{tail}"));
                }
                Err(text)
            }
        }
    }

    fn handshake(&mut self, model: &str) -> Result<(), String> {
        let not_a_worker = "(a worker binary's `main` must carry `#[otwrap::main]`; \
                            set `worker_exe` / OTWRAP_WORKER_EXE if the model lives in another binary)";
        match self.incoming.recv_timeout(HANDSHAKE_TIMEOUT) {
            Ok(Incoming::Greeting(Ok(FromWorker::Hello {
                protocol, version, ..
            }))) => {
                if protocol != PROTOCOL_VERSION {
                    return Err(format!(
                        "speaks otwrap worker protocol {protocol} (otwrap {version}) but this driver speaks \
                         {PROTOCOL_VERSION} (otwrap {}): rebuild both with the same otwrap version",
                        env!("CARGO_PKG_VERSION")
                    ));
                }
            }
            Ok(Incoming::Greeting(Ok(other))) => return Err(format!("greeted with {other:?}")),
            Ok(Incoming::Greeting(Err(message))) => {
                return Err(format!("is not an otwrap worker: {message} {not_a_worker}"))
            }
            Ok(_) => return Err(format!("is not an otwrap worker {not_a_worker}")),
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "did not greet within {} s {not_a_worker}",
                    HANDSHAKE_TIMEOUT.as_secs()
                ))
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!("is not an otwrap worker {not_a_worker}"))
            }
        }
        let init = ToWorker::Init {
            protocol: PROTOCOL_VERSION,
            model: model.to_string(),
        };
        write_frame(&mut self.stdin, &init)
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("closed its input during the handshake ({e})"))?;
        match self.incoming.recv_timeout(HANDSHAKE_TIMEOUT) {
            Ok(Incoming::Frame(FromWorker::Ready)) => Ok(()),
            Ok(Incoming::Frame(FromWorker::UnknownModel { model, known })) => Err(format!(
                "does not contain the model `{model}` (it knows: {}); point `worker_exe` at the binary that defines it",
                if known.is_empty() { "no model".to_string() } else { known.join(", ") }
            )),
            Ok(Incoming::Frame(other)) => Err(format!("answered {other:?} to the handshake")),
            Ok(Incoming::Closed(why)) => Err(format!("stopped during the handshake ({why})")),
            Ok(Incoming::Greeting(_)) => Err("greeted twice".to_string()),
            Err(_) => Err(format!("did not answer the handshake within {} s", HANDSHAKE_TIMEOUT.as_secs())),
        }
    }

    /// Sends one point and waits for its answer (at most `timeout`).
    fn evaluate(&mut self, index: usize, input: Vec<u8>, timeout: Option<Duration>) -> Reply {
        let request = ToWorker::Evaluate {
            index: index as u64,
            input,
        };
        if write_frame(&mut self.stdin, &request)
            .and_then(|()| self.stdin.flush())
            .is_err()
        {
            return Reply::Lost(self.crash_failure());
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let answer = loop {
            let slice = match deadline {
                Some(until) => until
                    .saturating_duration_since(Instant::now())
                    .min(INTERRUPT_POLL),
                None => INTERRUPT_POLL,
            };
            match self.incoming.recv_timeout(slice) {
                Err(RecvTimeoutError::Timeout) => {
                    if crate::interrupt::requested() {
                        self.kill_and_reap();
                        return Reply::Interrupted;
                    }
                    if deadline.is_some_and(|until| Instant::now() >= until) {
                        break Err(RecvTimeoutError::Timeout);
                    }
                }
                other => break other,
            }
        };
        match answer {
            Ok(Incoming::Frame(FromWorker::Result {
                index: got,
                outcome,
            })) if got == index as u64 => Reply::Done(outcome),
            Ok(Incoming::Frame(other)) => {
                let (status, _) = self.kill_and_reap();
                Reply::Lost(PointFailure::Protocol {
                    message: format!(
                        "the worker answered {other:?} to point {index} and was stopped ({status})"
                    ),
                })
            }
            Err(RecvTimeoutError::Timeout) => {
                self.kill_and_reap();
                Reply::Lost(PointFailure::Timeout {
                    after: timeout.unwrap_or_default(),
                })
            }
            Ok(Incoming::Closed(_) | Incoming::Greeting(_))
            | Err(RecvTimeoutError::Disconnected) => {
                let failure = self.crash_failure();
                if self.ended_by_interruption() {
                    Reply::Interrupted
                } else {
                    Reply::Lost(failure)
                }
            }
        }
    }

    /// Whether the worker's end belongs to an interruption of the batch: it
    /// was requested, or the worker died of a signal that is about to
    /// interrupt the driver too (the whole job or group was signalled).
    fn ended_by_interruption(&self) -> bool {
        if crate::interrupt::requested() {
            return true;
        }
        if !matches!(
            self.ended_by,
            Some(libc::SIGINT | libc::SIGTERM | libc::SIGHUP)
        ) {
            return false;
        }
        let deadline = Instant::now() + SIGNAL_GRACE;
        while Instant::now() < deadline {
            if crate::interrupt::requested() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    fn crash_failure(&mut self) -> PointFailure {
        let (ending, stderr_tail) = self.kill_and_reap();
        PointFailure::WorkerDied {
            ending,
            stderr_tail,
        }
    }

    /// Waits briefly for the process to end by itself (it closed its output),
    /// kills its process group otherwise, and returns how it ended and the
    /// tail of its stderr.
    fn kill_and_reap(&mut self) -> (Ending, String) {
        // The group id may be reused once the worker is reaped.
        self.interrupt = None;
        let deadline = Instant::now() + Duration::from_millis(500);
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                _ => break None,
            }
        };
        let status = match status {
            Some(s) => Ok(s),
            None => {
                self.kill_group();
                self.child.wait()
            }
        };
        let status = match status {
            Ok(s) => {
                self.ended_by = std::os::unix::process::ExitStatusExt::signal(&s);
                Ending::of(s)
            }
            Err(e) => Ending::Vanished(format!("could not be waited for: {e}")),
        };
        // Let the stderr thread drain what the process wrote last.
        if let Some(handle) = self.stderr_thread.take() {
            let deadline = Instant::now() + Duration::from_millis(300);
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let tail = self
            .stderr_tail
            .lock()
            .map(|lines| lines.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default();
        (status, tail)
    }

    fn kill_group(&self) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // SAFETY: sends a signal to the worker's own process group.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
    }

    /// Asks the worker to exit and reaps it.
    fn shutdown(mut self) {
        self.interrupt = None;
        let _ = write_frame(&mut self.stdin, &ToWorker::Shutdown).and_then(|()| self.stdin.flush());
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                _ => break,
            }
        }
        tracing::warn!(pid = self.pid, exe = %self.exe.display(), "worker did not exit after shutdown; killing it");
        self.kill_group();
        let _ = self.child.wait();
    }
}

/// The reader thread: the greeting, then frames, until the stream ends.
fn read_replies(stdout: std::process::ChildStdout, tx: Sender<Incoming>) {
    let mut reader = BufReader::new(stdout);
    let greeting = read_greeting(&mut reader);
    let greeted = greeting.is_ok();
    if tx.send(Incoming::Greeting(greeting)).is_err() || !greeted {
        return;
    }
    loop {
        let incoming = match read_frame::<FromWorker>(&mut reader) {
            Ok(Some(frame)) => Incoming::Frame(frame),
            Ok(None) => Incoming::Closed("end of output".to_string()),
            Err(e) => Incoming::Closed(e.to_string()),
        };
        let closed = matches!(incoming, Incoming::Closed(_));
        if tx.send(incoming).is_err() || closed {
            return;
        }
    }
}

/// The stderr thread: forwards the worker's lines to ours and keeps the last
/// ones for crash reports.
fn forward_stderr(stderr: std::process::ChildStderr, pid: u32, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                eprintln!("[otwrap worker {pid}] {line}");
                if let Ok(mut lines) = tail.lock() {
                    if lines.len() == STDERR_TAIL_LINES {
                        lines.pop_front();
                    }
                    lines.push_back(line);
                }
            }
        }
    }
}
