//! The `processes` backend: `workers` child processes of the worker binary
//! (this program by default), on the worker [`pool`](super::pool). This
//! file is only the local transport: how a worker is started (its own
//! process group, a parent-death signal, three pipes), read, killed and
//! reaped. A model that aborts, segfaults or exits kills only its worker:
//! that point fails with the signal or status named, and the slot starts a
//! new worker; a worker SIGKILLed under its point has the point run again
//! (`retries`).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::config::Backend;
use crate::core::{Ending, Location};
use crate::error::Error;
use crate::model::Model;
use crate::worker::protocol::{decode_frame, read_frame, read_greeting, FromWorker};

use super::pool::{self, News, Transport, WorkerId};
use super::{Event, Executor, Job};

/// The most points sent ahead to one worker (when points are short: see
/// the pool), so a worker never idles while the driver answers and the
/// requests of several points share a write.
const DEPTH: usize = 8;

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
        let exe = super::worker_exe(job.settings.worker_exe.as_deref()).map_err(|message| {
            Error::Backend {
                backend: "processes",
                message,
            }
        })?;
        let mut transport = Local::new(exe, job.settings.workers);
        pool::run(job, &mut transport, DEPTH, sink)
    }
}

/// Worker processes on this machine.
pub(crate) struct Local {
    exe: PathBuf,
    slots: usize,
    workers: Vec<Option<Running>>,
}

/// A started worker process.
struct Running {
    id: WorkerId,
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    /// How it ended, once reaped.
    ended: Option<Ending>,
    /// Kills the worker's group on interruption; dropped before reaping.
    interrupt: Option<crate::interrupt::GroupRegistration>,
}

impl Local {
    pub(crate) fn new(exe: PathBuf, slots: usize) -> Local {
        Local {
            exe,
            slots: slots.max(1),
            workers: Vec::new(),
        }
    }

    fn running(&mut self, id: WorkerId) -> Option<&mut Running> {
        self.workers
            .get_mut(id.slot)?
            .as_mut()
            .filter(|r| r.id == id)
    }

    fn spawn(&self, id: WorkerId, news: &Sender<(WorkerId, News)>) -> Result<Running, String> {
        let exe = &self.exe;
        let crate::worker::Spawned {
            mut child,
            stdin,
            stdout,
            stderr,
        } = crate::worker::spawn(exe)?;
        let pid = child.id();
        let interrupt = i32::try_from(pid)
            .ok()
            .map(crate::interrupt::register_group);
        let tx = news.clone();
        let reader = std::thread::Builder::new()
            .name(format!("otwrap-read-{pid}"))
            .spawn(move || read_worker(stdout, id, tx));
        if let Err(e) = reader {
            crate::host::kill_group(pid);
            let _ = child.wait();
            return Err(format!("cannot start a reader thread: {e}"));
        }
        let tx = news.clone();
        let stderr_thread = std::thread::Builder::new()
            .name(format!("otwrap-stderr-{pid}"))
            .spawn(move || forward_stderr(stderr, pid, id, tx))
            .ok();
        Ok(Running {
            id,
            child,
            pid,
            stdin,
            stderr_thread,
            ended: None,
            interrupt,
        })
    }
}

impl Transport for Local {
    fn slots(&self) -> usize {
        self.slots
    }

    fn start(
        &mut self,
        workers: &[WorkerId],
        news: &Sender<(WorkerId, News)>,
    ) -> Vec<(WorkerId, Result<(), String>)> {
        workers
            .iter()
            .map(|&id| {
                if self.workers.len() <= id.slot {
                    self.workers.resize_with(id.slot + 1, || None);
                }
                if let Some(old) = self.workers[id.slot].take() {
                    reap(old);
                }
                match self.spawn(id, news) {
                    Ok(running) => {
                        self.workers[id.slot] = Some(running);
                        (id, Ok(()))
                    }
                    Err(message) => (id, Err(message)),
                }
            })
            .collect()
    }

    fn send(&mut self, id: WorkerId, bytes: &[u8]) -> Result<(), String> {
        let running = self.running(id).ok_or("the worker is gone")?;
        running
            .stdin
            .write_all(bytes)
            .map_err(|e| format!("cannot write to the worker: {e}"))
    }

    fn kill(&mut self, id: WorkerId) {
        if let Some(running) = self.running(id) {
            if running.ended.is_none() {
                crate::host::kill_group(running.pid);
            }
        }
    }

    fn ending(&mut self, id: WorkerId) -> Ending {
        let Some(running) = self.running(id) else {
            return Ending::Vanished("the worker is gone".into());
        };
        if let Some(ending) = &running.ended {
            return ending.clone();
        }
        // The group id may be reused once the worker is reaped.
        running.interrupt = None;
        // It closed its output: give it a moment to end by itself.
        let (status, _) = end_within(&mut running.child, running.pid, Duration::from_millis(500));
        let ending = match status {
            Ok(status) => Ending::of(status),
            Err(e) => Ending::Vanished(format!("could not be waited for: {e}")),
        };
        // Let its stderr thread pass on the last lines before they are
        // quoted in the point's failure.
        if let Some(handle) = running.stderr_thread.take() {
            let deadline = Instant::now() + Duration::from_millis(300);
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        running.ended = Some(ending.clone());
        ending
    }

    fn retire(&mut self, id: WorkerId) {
        if let Some(running) = self.workers.get_mut(id.slot).and_then(Option::take) {
            reap(running);
        }
    }

    fn location(&self, _id: WorkerId, pid: Option<u32>) -> Location {
        Location {
            host: crate::host::hostname().to_string(),
            backend: Backend::Processes.name().to_string(),
            pid,
            workdir: None,
            log: None,
        }
    }

    fn local_workdirs(&self) -> bool {
        true
    }

    fn program(&self, _worker: WorkerId) -> String {
        format!("the worker program {}", self.exe.display())
    }

    fn nowhere_left(&self) -> (&'static str, &'static str) {
        (
            "no worker process could be started",
            "no worker process was left to run it",
        )
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        for running in self.workers.drain(..).flatten() {
            reap(running);
        }
    }
}

/// Waits for a worker asked to end (its input closed), killing its group
/// after a grace period.
fn reap(mut running: Running) {
    if running.ended.is_some() {
        return;
    }
    running.interrupt = None;
    drop(running.stdin);
    let (_, killed) = end_within(&mut running.child, running.pid, Duration::from_secs(2));
    if killed {
        tracing::warn!(
            pid = running.pid,
            "worker did not exit after shutdown; it was killed"
        );
    }
}

/// Waits up to `grace` for a worker to end by itself, then kills its group
/// and reaps it: its status, and whether it had to be killed.
fn end_within(
    child: &mut Child,
    pid: u32,
    grace: Duration,
) -> (std::io::Result<std::process::ExitStatus>, bool) {
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (Ok(status), false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(1)),
            Ok(None) => {
                crate::host::kill_group(pid);
                return (child.wait(), true);
            }
            Err(e) => {
                crate::host::kill_group(pid);
                return (Err(e), true);
            }
        }
    }
}

/// The reader thread: the greeting, then frames, until the stream ends.
fn read_worker(stdout: std::process::ChildStdout, id: WorkerId, tx: Sender<(WorkerId, News)>) {
    let mut reader = BufReader::with_capacity(64 << 10, stdout);
    let greeting = read_greeting(&mut reader);
    let greeted = greeting.is_ok();
    if tx.send((id, News::Greeting(greeting))).is_err() {
        return;
    }
    if !greeted {
        let _ = tx.send((id, News::Closed("no greeting".into())));
        return;
    }
    loop {
        let news = match read_frame::<FromWorker>(&mut reader) {
            Ok(Some(frame)) => {
                // The frames already whole in the buffer go with it.
                let mut frames = vec![frame];
                while let Ok(Some((frame, used))) = decode_frame::<FromWorker>(reader.buffer()) {
                    reader.consume(used);
                    frames.push(frame);
                }
                match frames.len() {
                    1 => News::Message(frames.remove(0)),
                    _ => News::Messages(frames),
                }
            }
            Ok(None) => News::Closed("end of output".to_string()),
            Err(e) => News::Closed(e.to_string()),
        };
        let closed = matches!(news, News::Closed(_));
        if tx.send((id, news)).is_err() || closed {
            return;
        }
    }
}

/// The stderr thread: forwards the worker's lines to ours and to the pool
/// (which keeps the last ones for failure reports).
fn forward_stderr(
    stderr: std::process::ChildStderr,
    pid: u32,
    id: WorkerId,
    tx: Sender<(WorkerId, News)>,
) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                eprintln!("[otwrap worker {pid}] {line}");
                if tx.send((id, News::Stderr(line))).is_err() {
                    return;
                }
            }
        }
    }
}
