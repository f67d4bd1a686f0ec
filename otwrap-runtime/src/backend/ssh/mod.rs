//! The `ssh` backend: one long-lived worker process per slot on each host,
//! started over SSH (ssh2) from a copy of this program, fed the next point
//! as soon as it returns the last (dynamic scheduling: a host with twice the
//! slots gets about twice the points). A worker or host lost mid-point has
//! its point re-run on the remaining slots (at most `retries` times); a host
//! unreachable at the start is reported and skipped.

mod deploy;
mod pipe;
mod session;

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ssh2::Session;

use crate::config::{Backend, HostSpec};
use crate::error::{Error, Location, PointFailure};
use crate::layers::{Failed, Layers};
use crate::model::Model;
use crate::worker::protocol::{FromWorker, ToWorker, PROTOCOL_VERSION, WORKER_ENV};

use super::{Event, Executor, Job};
use deploy::{shell_quote, LocalBinary};
use pipe::{Pipe, Recv};
use session::Access;

/// How long a new worker has to greet and load its model.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Consecutive failures to (re)start a worker after which a slot gives up.
const MAX_RESTARTS: usize = 3;

pub(crate) struct Ssh;

/// One host of the batch and what its first connection established.
struct Host {
    spec: HostSpec,
    /// The worker's path on the host, or why the host cannot be used.
    ready: OnceLock<Result<PathBuf, String>>,
}

/// What slot threads tell the driver.
enum Msg<T> {
    /// A slot has a running worker.
    Up,
    /// A slot stopped for good; `at_start` when it never ran a point.
    Down {
        host: usize,
        why: String,
        at_start: bool,
    },
    Event {
        host: usize,
        event: Event<T>,
    },
}

impl<M: Model> Executor<M> for Ssh {
    fn execute(
        &self,
        job: &Job<'_, M>,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), Error> {
        if job.todo.is_empty() {
            return Ok(());
        }
        let fail = |message: String| Error::Backend {
            backend: "ssh",
            message,
        };
        let settings = job.settings;
        let hosts: Vec<Host> = settings
            .ssh
            .hosts
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|spec| Host {
                spec,
                ready: OnceLock::new(),
            })
            .collect();
        if hosts.is_empty() {
            return Err(fail("no host to run on: set `hosts`".into()));
        }
        let binary = match &settings.ssh.worker_path {
            Some(_) => None,
            None => {
                let exe = match &settings.worker_exe {
                    Some(p) => p.clone(),
                    None => std::env::current_exe()
                        .map_err(|e| fail(format!("cannot find this program's executable: {e}")))?,
                };
                Some(LocalBinary::open(&exe).map_err(fail)?)
            }
        };
        let plan = Plan {
            access: Access::from_options(&settings.ssh),
            binary,
            shared_path: settings.ssh.worker_path.clone(),
            remote_dir: settings
                .ssh
                .remote_dir
                .clone()
                .unwrap_or_else(|| ".cache/otwrap/workers".to_string()),
        };
        let slots: usize = hosts.iter().map(|h| h.spec.slots).sum();
        let queue = Queue::new(job.todo, job.inputs.len(), slots);
        let (tx, rx) = mpsc::channel::<Msg<M::Output>>();
        let mut outcome = Ok(());
        let mut counts = vec![0usize; hosts.len()];
        std::thread::scope(|scope| {
            for (h, host) in hosts.iter().enumerate() {
                for slot in 0..host.spec.slots {
                    let tx = tx.clone();
                    let (plan, queue) = (&plan, &queue);
                    let spawned = std::thread::Builder::new()
                        .name(format!("otwrap-ssh-{}-{slot}", host.spec.host))
                        .spawn_scoped(scope, move || {
                            Slot {
                                job,
                                host,
                                host_index: h,
                                plan,
                                queue,
                                tx,
                                started: false,
                            }
                            .run()
                        });
                    if let Err(e) = spawned {
                        queue.slot_died();
                        tracing::error!("cannot start the thread of an ssh slot: {e}");
                    }
                }
            }
            drop(tx);
            let mut any_up = false;
            let mut reported = vec![false; hosts.len()];
            let mut reasons: Vec<String> = Vec::new();
            for msg in rx {
                match msg {
                    Msg::Up => any_up = true,
                    Msg::Down {
                        host,
                        why,
                        at_start,
                    } => {
                        if !reported[host] {
                            reported[host] = true;
                            let when = if at_start { "skipped" } else { "lost" };
                            eprintln!("otwrap: ssh host {} {when}: {why}", hosts[host].spec);
                            tracing::warn!(host = %hosts[host].spec, "ssh host {when}: {why}");
                            reasons.push(format!("{}: {why}", hosts[host].spec));
                        }
                    }
                    Msg::Event { host, event } => {
                        if event.outcome.is_ok() {
                            counts[host] += 1;
                        }
                        sink(event);
                    }
                }
            }
            if !any_up {
                outcome = Err(fail(format!(
                    "no host could start a worker:\n  {}",
                    reasons.join("\n  ")
                )));
            }
        });
        let share: Vec<String> = hosts
            .iter()
            .zip(&counts)
            .map(|(h, n)| format!("{}: {n}", h.spec))
            .collect();
        tracing::info!(target: "otwrap::ssh", "points evaluated per host: {}", share.join(", "));
        outcome
    }
}

/// How workers are started on the hosts of one batch.
struct Plan {
    access: Access,
    binary: Option<LocalBinary>,
    shared_path: Option<PathBuf>,
    remote_dir: String,
}

/// The points still to run, shared by every slot.
struct Queue {
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    pending: VecDeque<usize>,
    /// Losses per point (index into the batch).
    losses: Vec<u8>,
    in_flight: usize,
    live_slots: usize,
}

/// What a slot should do next.
enum Take {
    Point(usize),
    Stop,
}

impl Queue {
    fn new(todo: &[usize], total: usize, slots: usize) -> Queue {
        Queue {
            state: Mutex::new(State {
                pending: todo.iter().copied().collect(),
                losses: vec![0; total],
                in_flight: 0,
                live_slots: slots,
            }),
            wake: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next point; waits while other slots may still give points back.
    fn take(&self, cancelled: &dyn Fn() -> bool) -> Take {
        let mut state = self.lock();
        loop {
            if cancelled() {
                return Take::Stop;
            }
            if let Some(index) = state.pending.pop_front() {
                state.in_flight += 1;
                return Take::Point(index);
            }
            if state.in_flight == 0 {
                return Take::Stop;
            }
            state = self
                .wake
                .wait_timeout(state, Duration::from_millis(200))
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn finished(&self) {
        let mut state = self.lock();
        state.in_flight -= 1;
        drop(state);
        self.wake.notify_all();
    }

    /// A point's worker was lost: gives it back unless it was lost too often
    /// (then returns how many times).
    fn lost(&self, index: usize, retries: u32) -> Option<u32> {
        let mut state = self.lock();
        state.in_flight -= 1;
        state.losses[index] = state.losses[index].saturating_add(1);
        let losses = u32::from(state.losses[index]);
        let result = if losses <= retries {
            state.pending.push_back(index);
            None
        } else {
            Some(losses)
        };
        drop(state);
        self.wake.notify_all();
        result
    }

    /// A slot is gone; the last one takes the points nobody can run.
    fn slot_died(&self) -> Vec<usize> {
        let mut state = self.lock();
        state.live_slots -= 1;
        let orphans = if state.live_slots == 0 {
            state.pending.drain(..).collect()
        } else {
            Vec::new()
        };
        drop(state);
        self.wake.notify_all();
        orphans
    }
}

/// One worker slot on one host.
struct Slot<'a, 'j, M: Model> {
    job: &'a Job<'j, M>,
    host: &'a Host,
    host_index: usize,
    plan: &'a Plan,
    queue: &'a Queue,
    tx: Sender<Msg<M::Output>>,
    started: bool,
}

/// A connected, authenticated session and its socket.
struct Conn {
    session: Session,
    fd: RawFd,
}

/// A running worker.
struct Worker {
    pipe: Pipe,
    pid: u32,
}

impl<M: Model> Slot<'_, '_, M> {
    fn run(mut self) {
        let mut conn: Option<Conn> = None;
        let mut worker: Option<Worker> = None;
        let mut restarts = 0;
        let settings = self.job.settings;
        loop {
            if worker.is_none() {
                match self.start_worker(&mut conn) {
                    Ok(w) => {
                        if !self.started {
                            self.started = true;
                            let _ = self.tx.send(Msg::Up);
                        }
                        restarts = 0;
                        worker = Some(w);
                    }
                    Err(why) => {
                        restarts += 1;
                        // A host that failed at its first connection is not retried.
                        if !self.started || restarts >= MAX_RESTARTS {
                            self.die(why);
                            return;
                        }
                        conn = None;
                        std::thread::sleep(Duration::from_millis(200 * restarts as u64));
                        continue;
                    }
                }
            }
            let Some(w) = worker.as_mut() else { continue };
            let index = match self.queue.take(&|| self.job.cancelled()) {
                Take::Point(index) => index,
                Take::Stop => break,
            };
            let pid = w.pid;
            let bytes = match crate::codec::encode(&self.job.inputs[index]) {
                Ok(bytes) => bytes,
                Err(message) => {
                    self.queue.finished();
                    self.report(
                        index,
                        Err(Failed::from(PointFailure::Protocol {
                            message: format!("cannot encode the input: {message}"),
                        })),
                        Some(pid),
                    );
                    continue;
                }
            };
            let started = Instant::now();
            let deadline = settings.timeout.map(|t| started + t);
            let request = ToWorker::Evaluate {
                index: index as u64,
                input: bytes,
            };
            let answer = w
                .pipe
                .send(&request, deadline.unwrap_or(started + HANDSHAKE_TIMEOUT))
                .and_then(|()| w.pipe.receive(deadline));
            match answer {
                Ok(FromWorker::Result {
                    index: got,
                    outcome,
                }) if got == index as u64 => {
                    self.queue.finished();
                    let outcome = outcome.and_then(|bytes| {
                        crate::codec::decode::<M::Output>(&bytes).map_err(|message| {
                            Failed::from(PointFailure::Protocol {
                                message: format!("cannot decode the output: {message}"),
                            })
                        })
                    });
                    self.report(index, outcome, Some(pid));
                }
                Ok(other) => {
                    self.queue.finished();
                    let failure = PointFailure::Protocol {
                        message: format!("the worker answered {other:?} to point {index}"),
                    };
                    self.report(index, Err(Failed::from(failure)), Some(pid));
                    conn = worker.take().map(|w| self.retire(w));
                }
                Err(Recv::Interrupted) => {
                    // Ctrl-C: the point is reported as not run; closing the
                    // channel stops the remote evaluation.
                    self.queue.finished();
                    drop(worker.take().map(|w| self.retire(w)));
                    break;
                }
                Err(Recv::Timeout) => {
                    self.queue.finished();
                    let after = settings.timeout.unwrap_or_default();
                    let failed = self.lost_failed(index, PointFailure::Timeout { after }, pid);
                    self.report(index, Err(failed), Some(pid));
                    // Closing the channel ends the remote worker and what it runs.
                    conn = worker.take().map(|w| self.retire(w));
                }
                Err(Recv::Lost(why)) => {
                    let tail = w.pipe.stderr_tail();
                    tracing::warn!(host = %self.host.spec, pid, point = index, "worker lost: {why}");
                    if let Some(losses) = self.queue.lost(index, settings.retries) {
                        let failure = PointFailure::WorkerCrashed {
                            status: format!(
                                "was lost {losses} times (retries = {}); last on {}: {why}",
                                settings.retries, self.host.spec
                            ),
                            stderr_tail: tail,
                        };
                        let failed = self.lost_failed(index, failure, pid);
                        self.report(index, Err(failed), Some(pid));
                    }
                    // The session may still be good (only the process died).
                    conn = worker.take().map(|w| self.retire(w));
                }
            }
        }
        if let Some(mut w) = worker {
            let _ = w
                .pipe
                .send(&ToWorker::Shutdown, Instant::now() + Duration::from_secs(2));
            drop(self.retire(w));
        }
        // Points nobody can run any more (every other slot is gone).
        if self.job.cancelled() {
            self.queue.slot_died();
        } else {
            self.fail_orphans(self.queue.slot_died(), "the batch ended");
        }
    }

    /// Closes a worker's channel; returns the session for the next worker.
    fn retire(&self, worker: Worker) -> Conn {
        let fd = worker.pipe_fd();
        Conn {
            session: worker.pipe.close(),
            fd,
        }
    }

    fn die(&self, why: String) {
        let _ = self.tx.send(Msg::Down {
            host: self.host_index,
            why: why.clone(),
            at_start: !self.started,
        });
        let orphans = self.queue.slot_died();
        self.fail_orphans(orphans, &why);
    }

    fn fail_orphans(&self, orphans: Vec<usize>, why: &str) {
        for index in orphans {
            let failure = PointFailure::NotRun {
                reason: format!(
                    "no SSH host was left to run it (last: {}: {why})",
                    self.host.spec
                ),
            };
            self.report(index, Err(Failed::from(failure)), None);
        }
    }

    /// The failure of a point whose worker was lost or killed, logged as the
    /// function's failure log asks.
    fn lost_failed(&self, index: usize, failure: PointFailure, pid: u32) -> Failed {
        let layers = Layers {
            // The work directory is on the host, not here.
            workdir: None,
            log: M::layers().log,
        };
        crate::layers::lost_evaluation(
            M::NAME,
            &layers,
            index,
            &self.job.inputs[index],
            failure,
            pid,
        )
    }

    fn report(&self, index: usize, outcome: Result<M::Output, Failed>, pid: Option<u32>) {
        let location = Location {
            host: self.host.spec.to_string(),
            backend: Backend::Ssh.name().to_string(),
            pid,
            workdir: None,
            log: None,
        };
        let outcome = outcome.map_err(|failed| failed.into_parts(location));
        self.job.note_outcome(&outcome);
        let _ = self.tx.send(Msg::Event {
            host: self.host_index,
            event: Event { index, outcome },
        });
    }

    /// Connects if needed, makes sure the binary is there, starts a worker
    /// and completes the handshake.
    fn start_worker(&self, conn: &mut Option<Conn>) -> Result<Worker, String> {
        let access = &self.plan.access;
        let mut fresh = None;
        // The first slot of a host connects, checks and deploys; the others
        // wait for its verdict instead of repeating the same failure.
        let path = self
            .host
            .ready
            .get_or_init(|| {
                let c = session::connect(&self.host.spec, access)?;
                let path = self.remote_path(&c.session)?;
                fresh = Some(c);
                Ok(path)
            })
            .clone()?;
        if let Some(c) = fresh {
            *conn = Some(c);
        }
        let c = match conn.take() {
            Some(c) => c,
            None => session::connect(&self.host.spec, access)?,
        };
        let fd = c.fd;
        c.session.set_keepalive(false, 10);
        // POSIX shell syntax (sh, bash, zsh, ksh login shells). `exec` by the
        // shell itself, not through `env`: execvp would retry a binary of the
        // wrong architecture as a shell script and hide the real error.
        let command = format!(
            "{WORKER_ENV}={PROTOCOL_VERSION}; export {WORKER_ENV}; exec {}",
            shell_quote(&path.to_string_lossy())
        );
        let label = format!("{} worker", self.host.spec);
        let mut pipe = match Pipe::start(c.session, fd, &command, label) {
            Ok(p) => p,
            Err((_, why)) => return Err(why),
        };
        match handshake(&mut pipe, M::ID) {
            Ok(pid) => Ok(Worker { pipe, pid }),
            Err(why) => {
                let tail = pipe.stderr_tail();
                let mut text = format!(
                    "the worker program {} on {} {why}",
                    path.display(),
                    self.host.spec
                );
                if !tail.is_empty() {
                    text.push_str(&format!("; the host said:\n{tail}"));
                }
                drop(pipe.close());
                Err(text)
            }
        }
    }

    fn remote_path(&self, session: &Session) -> Result<PathBuf, String> {
        if let Some(path) = &self.plan.shared_path {
            return Ok(path.clone());
        }
        let Some(binary) = &self.plan.binary else {
            return Err("no worker binary".into());
        };
        let started = Instant::now();
        let (path, copied) = deploy::ensure_binary(session, binary, &self.plan.remote_dir)
            .map_err(|e| format!("{e} (host {})", self.host.spec))?;
        if copied {
            tracing::info!(host = %self.host.spec, path = %path.display(), bytes = binary.size,
                seconds = started.elapsed().as_secs_f64(), "worker binary copied");
        }
        Ok(path)
    }
}

impl Worker {
    fn pipe_fd(&self) -> RawFd {
        self.pipe.fd()
    }
}

/// Greeting, protocol check and model selection; returns the remote pid.
fn handshake(pipe: &mut Pipe, model: &str) -> Result<u32, String> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let lost = |r: Recv, during: &str| match r {
        Recv::Timeout => format!(
            "did not answer within {} s {during}",
            HANDSHAKE_TIMEOUT.as_secs()
        ),
        Recv::Lost(why) => format!("stopped {during}: {why}"),
        Recv::Interrupted => format!("was interrupted (Ctrl-C) {during}"),
    };
    pipe.greeting(deadline).map_err(|r| {
        lost(
            r,
            "before greeting (is it an otwrap worker built for this host?)",
        )
    })?;
    let pid = match pipe
        .receive(Some(deadline))
        .map_err(|r| lost(r, "while greeting"))?
    {
        FromWorker::Hello {
            protocol,
            version,
            pid,
            ..
        } => {
            if protocol != PROTOCOL_VERSION {
                return Err(format!(
                    "speaks otwrap worker protocol {protocol} (otwrap {version}) but this driver speaks \
                     {PROTOCOL_VERSION}: use the same otwrap version on both sides"
                ));
            }
            pid
        }
        other => return Err(format!("greeted with {other:?}")),
    };
    let init = ToWorker::Init {
        protocol: PROTOCOL_VERSION,
        model: model.to_string(),
    };
    pipe.send(&init, deadline)
        .map_err(|r| lost(r, "during the handshake"))?;
    match pipe
        .receive(Some(deadline))
        .map_err(|r| lost(r, "during the handshake"))?
    {
        FromWorker::Ready => Ok(pid),
        FromWorker::UnknownModel { model, known } => Err(format!(
            "does not contain the model `{model}` (it knows: {})",
            if known.is_empty() {
                "no model".to_string()
            } else {
                known.join(", ")
            }
        )),
        other => Err(format!("answered {other:?} to the handshake")),
    }
}
