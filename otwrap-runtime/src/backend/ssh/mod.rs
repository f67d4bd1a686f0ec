//! The `ssh` backend: one long-lived worker process per slot on each host,
//! started over SSH (ssh2) from a copy of this program, fed the next point
//! as soon as it returns the last (dynamic scheduling: a host with twice the
//! slots gets about twice the points). A worker or host lost mid-point has
//! its point re-run on the remaining slots (at most `retries` times); a host
//! unreachable at the start is reported and skipped.
//!
//! One SSH connection per host carries one channel per slot (up to
//! [`CHANNELS_PER_CONNECTION`], OpenSSH's default `MaxSessions`; bigger hosts
//! get more connections). Each connection is driven by one thread, without
//! blocking, over all its channels; connections are opened in parallel, at
//! most [`CONNECTING_AT_ONCE`] at a time (under OpenSSH's `MaxStartups`).

mod channel;
mod deploy;
mod session;

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ssh2::Session;

use crate::config::{Backend, HostSpec};
use crate::core::Ending;
use crate::error::{Error, Location, PointFailure};
use crate::layers::{Failed, Layers};
use crate::model::Model;
use crate::worker::protocol::{FromWorker, ToWorker, PROTOCOL_VERSION, WORKER_ENV};

use super::{Event, Executor, Job};
use channel::{Broken, Chan};
use deploy::{shell_quote, LocalBinary};
use session::Access;

/// How long a new worker has to greet and load its model.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// Consecutive failures to (re)start a worker (or to reconnect) after which
/// a slot (or a connection) gives up.
const MAX_RESTARTS: usize = 3;
/// Channels (slots) carried by one SSH connection: OpenSSH's default
/// `MaxSessions`.
pub(crate) const CHANNELS_PER_CONNECTION: usize = 10;
/// Connections being opened at once (OpenSSH starts refusing unauthenticated
/// connections beyond `MaxStartups`, 10 by default).
pub(crate) const CONNECTING_AT_ONCE: usize = 8;
/// How often an idle connection is probed.
const KEEPALIVE: Duration = Duration::from_secs(10);

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
        job.used.store(slots, std::sync::atomic::Ordering::Relaxed);
        let queue = Queue::new(job.todo, job.inputs.len(), slots);
        let (tx, rx) = mpsc::channel::<Msg<M::Output>>();
        let mut outcome = Ok(());
        let mut counts = vec![0usize; hosts.len()];
        let gate = Gate::new(CONNECTING_AT_ONCE);
        let gate = &gate;
        std::thread::scope(|scope| {
            for (h, host) in hosts.iter().enumerate() {
                let mut left = host.spec.slots;
                let mut n = 0;
                while left > 0 {
                    let slots = left.min(CHANNELS_PER_CONNECTION);
                    left -= slots;
                    let tx = tx.clone();
                    let (plan, queue) = (&plan, &queue);
                    let spawned = std::thread::Builder::new()
                        .name(format!("otwrap-ssh-{}-{n}", host.spec.host))
                        .spawn_scoped(scope, move || {
                            Connection {
                                job,
                                host,
                                host_index: h,
                                plan,
                                queue,
                                gate,
                                tx,
                                slots,
                                up: false,
                            }
                            .run()
                        });
                    if let Err(e) = spawned {
                        for _ in 0..slots {
                            queue.slot_died();
                        }
                        tracing::error!("cannot start the thread of an ssh connection: {e}");
                    }
                    n += 1;
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
    state: Mutex<Pending>,
}

struct Pending {
    pending: VecDeque<usize>,
    /// Losses per point (index into the batch).
    losses: Vec<u8>,
    /// Starts per point.
    attempts: Vec<u32>,
    in_flight: usize,
    live_slots: usize,
}

/// What a slot should do next.
enum Take {
    Point(usize),
    Wait,
    Stop,
}

impl Queue {
    fn new(todo: &[usize], total: usize, slots: usize) -> Queue {
        Queue {
            state: Mutex::new(Pending {
                pending: todo.iter().copied().collect(),
                losses: vec![0; total],
                attempts: vec![0; total],
                in_flight: 0,
                live_slots: slots,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next point, if any: `Wait` while other slots may still give
    /// points back.
    fn try_take(&self) -> Take {
        let mut state = self.lock();
        if let Some(index) = state.pending.pop_front() {
            state.in_flight += 1;
            state.attempts[index] += 1;
            return Take::Point(index);
        }
        if state.in_flight == 0 {
            Take::Stop
        } else {
            Take::Wait
        }
    }

    /// How many times point `index` was started.
    fn attempts(&self, index: usize) -> u32 {
        self.lock().attempts[index]
    }

    fn finished(&self) {
        let mut state = self.lock();
        state.in_flight -= 1;
    }

    /// A point's worker was lost: gives it back unless it was lost too often
    /// (then returns how many times).
    fn lost(&self, index: usize, retries: u32) -> Option<u32> {
        let mut state = self.lock();
        state.in_flight -= 1;
        state.losses[index] = state.losses[index].saturating_add(1);
        let losses = u32::from(state.losses[index]);
        if losses <= retries {
            state.pending.push_back(index);
            None
        } else {
            Some(losses)
        }
    }

    /// A slot is gone; the last one takes the points nobody can run.
    fn slot_died(&self) -> Vec<usize> {
        let mut state = self.lock();
        state.live_slots -= 1;
        if state.live_slots == 0 {
            state.pending.drain(..).collect()
        } else {
            Vec::new()
        }
    }
}

/// At most `n` holders at once.
struct Gate {
    free: Mutex<usize>,
    turn: Condvar,
}

struct GateGuard<'a>(&'a Gate);

impl Gate {
    fn new(n: usize) -> Gate {
        Gate {
            free: Mutex::new(n),
            turn: Condvar::new(),
        }
    }

    fn enter(&self) -> GateGuard<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.turn.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        GateGuard(self)
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.turn.notify_one();
    }
}

/// A connected, authenticated session and its socket.
pub(crate) struct Conn {
    session: Session,
    fd: RawFd,
}

/// Where a slot's worker is.
#[derive(Clone, Copy)]
enum State {
    /// Started; its greeting and `Hello` are awaited.
    Starting { since: Instant },
    /// `Init` sent; `Ready` awaited.
    Loading { since: Instant, pid: u32 },
    /// Ready for a point.
    Idle { pid: u32 },
    /// Evaluating point `index`.
    Busy {
        pid: u32,
        index: usize,
        deadline: Option<Instant>,
    },
    /// No more work (or given up).
    Done,
}

struct Slot {
    chan: Option<Chan>,
    state: State,
    /// Consecutive failed starts.
    restarts: usize,
}

/// Why a connection stopped serving.
enum Stop {
    /// The connection failed; it may be opened again.
    Lost(String),
    /// A worker could not start before any was ready: the host cannot be used.
    AtStart(String),
}

/// One SSH connection to a host and the slots it carries.
struct Connection<'a, 'j, M: Model> {
    job: &'a Job<'j, M>,
    host: &'a Host,
    host_index: usize,
    plan: &'a Plan,
    queue: &'a Queue,
    gate: &'a Gate,
    tx: Sender<Msg<M::Output>>,
    /// Slots of this connection still alive.
    slots: usize,
    /// Whether a worker of this connection was ever ready.
    up: bool,
}

impl<M: Model> Connection<'_, '_, M> {
    fn run(mut self) {
        let mut failures = 0;
        loop {
            let connected = {
                let _turn = self.gate.enter();
                self.connect()
            };
            let why = match connected {
                Ok((conn, path)) => match self.serve(conn, &path) {
                    Ok(()) => return self.end(),
                    Err(Stop::AtStart(why)) => return self.die(why),
                    Err(Stop::Lost(why)) => why,
                },
                Err(why) => why,
            };
            failures += 1;
            tracing::warn!(host = %self.host.spec, "ssh connection lost: {why}");
            // A host that never worked is not tried again; one that worked
            // gets a few attempts (its points are re-run elsewhere meanwhile).
            if !self.up || failures >= MAX_RESTARTS || self.job.cancelled() {
                return self.die(why);
            }
            std::thread::sleep(Duration::from_millis(200 * failures as u64));
        }
    }

    /// Connects, and makes sure the worker binary is on the host (once per
    /// host: the first connection does it, the others wait for its verdict).
    fn connect(&self) -> Result<(Conn, PathBuf), String> {
        let access = &self.plan.access;
        let mut fresh = None;
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
        let conn = match fresh {
            Some(c) => c,
            None => session::connect(&self.host.spec, access)?,
        };
        Ok((conn, path))
    }

    /// Runs workers on every slot of the connection until there is no more
    /// work (`Ok`) or the connection fails.
    fn serve(&mut self, conn: Conn, path: &std::path::Path) -> Result<(), Stop> {
        let Conn { session, fd } = conn;
        session.set_keepalive(false, KEEPALIVE.as_secs() as u32);
        // POSIX shell syntax (sh, bash, zsh, ksh login shells). `exec` by the
        // shell itself, not through `env`: execvp would retry a binary of the
        // wrong architecture as a shell script and hide the real error.
        let command = format!(
            "{WORKER_ENV}={}; export {WORKER_ENV}; exec {}",
            crate::worker::protocol::worker_env_value(),
            shell_quote(&path.to_string_lossy())
        );
        let mut slots = Vec::with_capacity(self.slots);
        for _ in 0..self.slots {
            let chan = self.open(&session, &command).map_err(Stop::Lost)?;
            slots.push(Slot {
                chan: Some(chan),
                state: State::Starting {
                    since: Instant::now(),
                },
                restarts: 0,
            });
        }
        let mut last_traffic = Instant::now();
        let outcome = loop {
            if crate::interrupt::requested() {
                // The points in flight are reported as not run; closing the
                // channels stops the remote evaluations.
                for slot in &mut slots {
                    if let State::Busy { .. } = slot.state {
                        self.queue.finished();
                    }
                    slot.state = State::Done;
                }
                break Ok(());
            }
            let mut moved = false;
            let mut failed = None;
            for slot in &mut slots {
                if let Err(stop) = self.step(slot, &session, &command, &mut moved) {
                    failed = Some(stop);
                    break;
                }
            }
            if let Some(stop) = failed {
                break Err(stop);
            }
            if slots.iter().all(|s| matches!(s.state, State::Done)) {
                break Ok(());
            }
            if moved {
                last_traffic = Instant::now();
            } else {
                if last_traffic.elapsed() >= KEEPALIVE {
                    match session.keepalive_send() {
                        Ok(_) => last_traffic = Instant::now(),
                        Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {}
                        Err(e) => break Err(Stop::Lost(format!("the connection failed: {e}"))),
                    }
                }
                let next = slots
                    .iter()
                    .filter_map(|s| match s.state {
                        State::Busy { deadline, .. } => deadline,
                        _ => None,
                    })
                    .min();
                wait(&session, fd, next);
            }
        };
        // Points still running on a lost connection go back to the queue.
        if let Err(Stop::Lost(why)) = &outcome {
            for slot in &mut slots {
                let tail = slot
                    .chan
                    .as_ref()
                    .map(Chan::stderr_tail)
                    .unwrap_or_default();
                if let State::Busy { pid, index, .. } = slot.state {
                    self.lose(index, pid, why, tail);
                }
                slot.state = State::Done;
            }
        }
        for slot in slots {
            if let Some(chan) = slot.chan {
                chan.close();
            }
        }
        outcome
    }

    /// Opens a channel and starts a worker on it.
    fn open(&self, session: &Session, command: &str) -> Result<Chan, String> {
        session.set_blocking(true);
        let opened = session
            .channel_session()
            .map_err(|e| format!("cannot open an SSH channel: {e}"))
            .and_then(|mut channel| {
                channel
                    .exec(command)
                    .map_err(|e| format!("cannot run the worker command: {e}"))
                    .map(|()| channel)
            });
        session.set_blocking(false);
        let label = format!("{} worker", self.host.spec);
        opened.map(|channel| Chan::new(channel, label))
    }

    /// Moves one slot forward: reads, handles messages, deadlines, new work.
    fn step(
        &mut self,
        slot: &mut Slot,
        session: &Session,
        command: &str,
        moved: &mut bool,
    ) -> Result<(), Stop> {
        let Some(chan) = slot.chan.as_mut() else {
            return Ok(());
        };
        let broken = match chan.pump() {
            Ok(p) => {
                *moved |= p;
                None
            }
            Err(Broken::Connection(why)) => return Err(Stop::Lost(why)),
            Err(Broken::Ended(why) | Broken::Garbled(why)) => Some(why),
        };
        let broken = match broken {
            Some(why) => Some(why),
            None => self.handle_messages(slot),
        };
        if let Some(why) = broken {
            return self.restart(slot, session, command, why);
        }
        let now = Instant::now();
        match slot.state {
            State::Starting { since } | State::Loading { since, .. }
                if now.duration_since(since) > HANDSHAKE_TIMEOUT =>
            {
                let why = format!("did not start within {} s", HANDSHAKE_TIMEOUT.as_secs());
                return self.restart(slot, session, command, why);
            }
            State::Busy {
                pid,
                index,
                deadline: Some(deadline),
            } if now >= deadline => {
                self.queue.finished();
                let after = self.job.settings.timeout.unwrap_or_default();
                let failed = self.lost_failed(index, PointFailure::Timeout { after }, pid);
                self.report(index, Err(failed), Some(pid));
                // Closing the channel ends the remote worker and what it runs.
                if let Some(chan) = slot.chan.take() {
                    chan.close();
                }
                return self.reopen(slot, session, command);
            }
            State::Idle { pid } => {
                let take = if self.job.cancelled() {
                    Take::Stop
                } else {
                    self.queue.try_take()
                };
                match take {
                    Take::Point(index) => self.start_point(slot, index, pid),
                    Take::Wait => {}
                    Take::Stop => {
                        if let Some(mut chan) = slot.chan.take() {
                            let _ = chan.send(&ToWorker::Shutdown);
                            chan.close();
                        }
                        slot.state = State::Done;
                        return Ok(());
                    }
                }
            }
            _ => {}
        }
        if let Some(chan) = slot.chan.as_mut() {
            match chan.flush() {
                Ok(sent) => *moved |= sent,
                Err(Broken::Connection(why)) => return Err(Stop::Lost(why)),
                Err(Broken::Ended(why) | Broken::Garbled(why)) => {
                    return self.restart(slot, session, command, why)
                }
            }
        }
        Ok(())
    }

    /// Handles every complete message of a slot; returns why the slot's
    /// worker must be replaced, if it must.
    fn handle_messages(&mut self, slot: &mut Slot) -> Option<String> {
        loop {
            let chan = slot.chan.as_mut()?;
            let message = match chan.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => return None,
                Err(Broken::Garbled(why) | Broken::Ended(why) | Broken::Connection(why)) => {
                    return Some(why)
                }
            };
            match (slot.state, message) {
                (
                    State::Starting { since },
                    FromWorker::Hello {
                        protocol,
                        version,
                        pid,
                        ..
                    },
                ) => {
                    if protocol != PROTOCOL_VERSION {
                        return Some(format!(
                            "speaks otwrap worker protocol {protocol} (otwrap {version}) but this driver \
                             speaks {PROTOCOL_VERSION}: use the same otwrap version on both sides"
                        ));
                    }
                    let init = ToWorker::Init {
                        protocol: PROTOCOL_VERSION,
                        model: crate::worker::protocol::ModelRef::Compiled(M::ID.to_string()),
                    };
                    if chan.send(&init).is_err() {
                        return Some("cannot send the model's name".into());
                    }
                    slot.state = State::Loading { since, pid };
                }
                (State::Loading { pid, .. }, FromWorker::Ready) => {
                    slot.state = State::Idle { pid };
                    slot.restarts = 0;
                    if !self.up {
                        self.up = true;
                        let _ = self.tx.send(Msg::Up);
                    }
                }
                (State::Loading { .. }, FromWorker::UnknownModel { model, known }) => {
                    return Some(format!(
                        "does not contain the model `{model}` (it knows: {})",
                        if known.is_empty() {
                            "no model".to_string()
                        } else {
                            known.join(", ")
                        }
                    ))
                }
                (
                    State::Busy { pid, index, .. },
                    FromWorker::Result {
                        index: got,
                        outcome,
                    },
                ) if got == index as u64 => {
                    self.queue.finished();
                    slot.state = State::Idle { pid };
                    let outcome = outcome.and_then(|bytes| {
                        crate::codec::decode::<M::Output>(&bytes).map_err(|message| {
                            Failed::from(PointFailure::Protocol {
                                message: format!("cannot decode the output: {message}"),
                            })
                        })
                    });
                    self.report(index, outcome, Some(pid));
                }
                (state, other) => {
                    if let State::Busy { pid, index, .. } = state {
                        self.queue.finished();
                        let failure = PointFailure::Protocol {
                            message: format!("the worker answered {other:?} to point {index}"),
                        };
                        self.report(index, Err(Failed::from(failure)), Some(pid));
                        slot.state = State::Idle { pid };
                    }
                    return Some(format!("sent {other:?} out of turn"));
                }
            }
        }
    }

    fn start_point(&self, slot: &mut Slot, index: usize, pid: u32) {
        let Some(chan) = slot.chan.as_mut() else {
            return;
        };
        let message = crate::codec::encode(&self.job.inputs[index])
            .map(|input| ToWorker::Evaluate {
                index: index as u64,
                input,
            })
            .map_err(|message| format!("cannot encode the input: {message}"));
        match message.and_then(|m| {
            chan.send(&m)
                .map_err(|_| "cannot encode the request".to_string())
        }) {
            Ok(()) => {
                slot.state = State::Busy {
                    pid,
                    index,
                    deadline: self.job.settings.timeout.map(|t| Instant::now() + t),
                };
            }
            Err(message) => {
                self.queue.finished();
                let failure = PointFailure::Protocol { message };
                self.report(index, Err(Failed::from(failure)), Some(pid));
            }
        }
    }

    /// A slot's worker is gone: its point is re-run (or failed, past the
    /// retries) and a new worker is started on the same connection.
    fn restart(
        &mut self,
        slot: &mut Slot,
        session: &Session,
        command: &str,
        why: String,
    ) -> Result<(), Stop> {
        let tail = slot
            .chan
            .as_ref()
            .map(Chan::stderr_tail)
            .unwrap_or_default();
        if let Some(chan) = slot.chan.take() {
            chan.close();
        }
        match slot.state {
            State::Busy { pid, index, .. } => {
                tracing::warn!(host = %self.host.spec, pid, point = index, "worker lost: {why}");
                self.lose(index, pid, &why, tail);
            }
            State::Starting { .. } | State::Loading { .. } => {
                slot.restarts += 1;
                let mut text = format!("the worker program on {} {why}", self.host.spec);
                if !tail.is_empty() {
                    text.push_str(&format!("; the host said:\n{tail}"));
                }
                if !self.up {
                    return Err(Stop::AtStart(text));
                }
                if slot.restarts >= MAX_RESTARTS {
                    self.slot_gone(slot, &text);
                    return Ok(());
                }
            }
            _ => {}
        }
        self.reopen(slot, session, command)
    }

    /// Starts a new worker on a slot whose channel is closed.
    fn reopen(&mut self, slot: &mut Slot, session: &Session, command: &str) -> Result<(), Stop> {
        match self.open(session, command) {
            Ok(chan) => {
                slot.chan = Some(chan);
                slot.state = State::Starting {
                    since: Instant::now(),
                };
                Ok(())
            }
            // The session is gone with it.
            Err(why) => {
                slot.state = State::Done;
                Err(Stop::Lost(why))
            }
        }
    }

    /// Gives a point whose worker was lost back to the queue, or fails it
    /// after too many losses.
    fn lose(&self, index: usize, pid: u32, why: &str, stderr_tail: String) {
        let retries = self.job.settings.retries;
        if let Some(losses) = self.queue.lost(index, retries) {
            let failure = PointFailure::WorkerDied {
                ending: Ending::Vanished(format!(
                    "{why}; lost {losses} times on {}, retries = {retries}",
                    self.host.spec
                )),
                stderr_tail,
            };
            let failed = self.lost_failed(index, failure, pid);
            self.report(index, Err(failed), Some(pid));
        }
    }

    /// One slot is given up for good.
    fn slot_gone(&mut self, slot: &mut Slot, why: &str) {
        slot.state = State::Done;
        slot.chan = None;
        self.slots -= 1;
        let orphans = self.queue.slot_died();
        self.fail_orphans(orphans, why);
    }

    /// The connection has no more work: its slots leave the queue.
    fn end(self) {
        for _ in 0..self.slots {
            let orphans = self.queue.slot_died();
            if !self.job.cancelled() {
                self.fail_orphans(orphans, "the batch ended");
            }
        }
    }

    /// The connection is given up for good.
    fn die(self, why: String) {
        let _ = self.tx.send(Msg::Down {
            host: self.host_index,
            why: why.clone(),
            at_start: !self.up,
        });
        for _ in 0..self.slots {
            let orphans = self.queue.slot_died();
            self.fail_orphans(orphans, &why);
        }
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
            event: Event {
                index,
                outcome,
                attempts: self.queue.attempts(index),
            },
        });
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

/// Waits until the socket is ready in the direction libssh2 needs, the
/// next deadline, or 100 ms (so that Ctrl-C and other slots' news are seen).
fn wait(session: &Session, fd: RawFd, deadline: Option<Instant>) {
    let now = Instant::now();
    let until = deadline
        .unwrap_or(now + Duration::from_millis(100))
        .min(now + Duration::from_millis(100));
    let events = match session.block_directions() {
        ssh2::BlockDirections::Outbound => libc::POLLOUT,
        ssh2::BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
        _ => libc::POLLIN,
    };
    let ms = i32::try_from(until.saturating_duration_since(now).as_millis())
        .unwrap_or(i32::MAX)
        .max(1);
    quick_ack(fd);
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the session's own socket.
    unsafe {
        libc::poll(&mut pfd, 1, ms);
    }
}

/// Asks the kernel to acknowledge what arrives at once instead of delaying
/// the ACK (Linux resets this after some reads, so it is set before each
/// wait). sshd does not disable Nagle's algorithm on non-terminal sessions:
/// a small answer sent while an earlier small packet (a window adjust) is
/// unacknowledged waits for our ACK, which a delayed ACK holds for up to
/// 40 ms. Measured: 2 slots over loopback went from ~1 ms to ~0.13 ms a point.
fn quick_ack(fd: RawFd) {
    #[cfg(target_os = "linux")]
    {
        let on: libc::c_int = 1;
        // SAFETY: setsockopt on the session's own socket with a valid int.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_QUICKACK,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = fd;
}
