//! Long-lived workers over a [`Transport`], once for every backend that
//! keeps workers (`processes`, `ssh`): the queue of points, the points in
//! flight on each worker, losses per point against `retries`, the per-point
//! deadline, fail-fast, interruption, where each point ran, and the traces
//! of a point whose worker died under it.
//!
//! The pool runs on the driving thread. Transports start workers and move
//! bytes; what they hear arrives here as [`Heard`] events on one channel,
//! and each worker's protocol state is a [`WorkerClient`] (no I/O).
//!
//! Failure classes (one table for every backend): a worker that dies of
//! SIGKILL or vanishes with its connection is an infrastructure loss, and
//! its running point is started again, at most `retries` times; a worker
//! that dies of SIGSEGV/SIGABRT/SIGBUS/SIGFPE/SIGILL or exits is the model's
//! crash, and its point fails at once, as does a point past its timeout.
//! Points queued behind a lost point were not started: they go back to the
//! queue uncharged.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use crate::core::{Ending, Failed, FailureClass, Layers, Location, PointFailure};
use crate::error::Error;
use crate::model::Model;
use crate::worker::client::{Expired, Heard, Orphans, Phase, Refusal, WorkerClient};
use crate::worker::protocol::{FromWorker, ModelRef};

use super::{Event, Job};

/// How often the pool looks for an interruption while it waits.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);
/// How long a worker that died of SIGINT/SIGTERM/SIGHUP waits for the
/// driver's own handler to see the same signal (a whole process group or
/// job signalled at once): then its point is not run rather than lost.
const SIGNAL_GRACE: Duration = Duration::from_millis(500);
/// Points shorter than this (on average) get a second point queued behind
/// them on their worker, so it never idles while the driver answers.
const PIPELINE_BELOW: Duration = Duration::from_millis(20);
/// Points shorter than this fill a worker's queue to the transport's full
/// depth: the round trip, not the point, is then the cost.
const DEEP_PIPELINE_BELOW: Duration = Duration::from_millis(1);

/// Consecutive failed starts after which a slot is given up.
const MAX_START_FAILURES: u32 = 3;

/// A worker slot: the `n`th place where a worker runs, and which of its
/// successive workers (`generation`) an event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkerId {
    /// The slot.
    pub(crate) slot: usize,
    /// Bumped each time the slot gets a new worker.
    pub(crate) generation: u32,
}

/// What a transport heard from or about a worker.
pub(crate) enum News {
    /// The worker's greeting (magic bytes then `Hello`), or why there was none.
    Greeting(Result<FromWorker, String>),
    /// A protocol message.
    Message(FromWorker),
    /// Several protocol messages, in order (what one read brought: one
    /// hand-over instead of one per message).
    Messages(Vec<FromWorker>),
    /// A line of its stderr.
    Stderr(String),
    /// It wrote bytes that are not the protocol after its greeting.
    Garbled(String),
    /// Its output ended or broke (it exited, was killed, or its connection
    /// dropped): the transport can now say how it ended.
    Closed(String),
}

/// Where workers run: starts them and moves their bytes. The pool owns
/// everything else.
pub(crate) trait Transport {
    /// How many workers run at once.
    fn slots(&self) -> usize;
    /// Starts workers on these slots (in parallel where the transport can);
    /// what they say arrives on `news`. A slot that cannot start is
    /// reported as `Closed` news, or as an error here.
    fn start(
        &mut self,
        workers: &[WorkerId],
        news: &Sender<(WorkerId, News)>,
    ) -> Vec<(WorkerId, Result<(), String>)>;
    /// Sends bytes to a worker.
    fn send(&mut self, worker: WorkerId, bytes: &[u8]) -> Result<(), String>;
    /// Kills a worker and what it started (a timeout, an interruption).
    fn kill(&mut self, worker: WorkerId);
    /// How a worker whose output closed (or that was killed) ended; reaps it.
    fn ending(&mut self, worker: WorkerId) -> Ending;
    /// Ends a worker that was asked to shut down (waits a little, then kills).
    fn retire(&mut self, worker: WorkerId);
    /// Where a worker runs.
    fn location(&self, worker: WorkerId, pid: Option<u32>) -> Location;
    /// Whether work directories of evaluations are on this machine (so the
    /// driver can find the one a lost worker left).
    fn local_workdirs(&self) -> bool;
    /// The worker program as messages name it: its path, or its host.
    fn program(&self, worker: WorkerId) -> String;
    /// What to say when no worker can run: before any started (the
    /// batch's error), and for the points left once the last is gone.
    fn nowhere_left(&self) -> (&'static str, &'static str);
}

/// One slot's worker as the pool sees it.
struct Slot {
    generation: u32,
    client: Option<WorkerClient>,
    /// Consecutive failed starts.
    start_failures: u32,
    /// Why the last start failed.
    last_failure: Option<String>,
    /// Asked to shut down; waiting for it to end.
    retiring: bool,
    /// Given up for good.
    gone: bool,
}

/// Runs `job` on the workers of `transport`.
pub(crate) fn run<M: Model, T: Transport>(
    job: &Job<'_, M>,
    transport: &mut T,
    depth: usize,
    sink: &mut dyn FnMut(Event<M::Output>),
) -> Result<(), Error> {
    if job.todo.is_empty() {
        return Ok(());
    }
    let slots = transport.slots().min(job.todo.len()).max(1);
    job.used.store(slots, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel();
    // Fail-fast starts no point after a failure: none may wait in a
    // worker's input, already sent.
    let depth = if job.settings.fail_fast { 1 } else { depth };
    let mut pool = Pool {
        job,
        model: job.model.clone(),
        depth: depth.max(1),
        mean_point: None,
        pending: job.todo.iter().copied().collect(),
        attempts: vec![0; job.inputs.len()],
        slots: (0..slots)
            .map(|_| Slot {
                generation: 0,
                client: None,
                start_failures: 0,
                last_failure: None,
                retiring: false,
                gone: false,
            })
            .collect(),
        reported: 0,
        ever_ready: false,
        interrupted: false,
        rx: &rx,
        backlog: VecDeque::new(),
    };
    let first: Vec<usize> = (0..slots).collect();
    pool.start(transport, &first, &tx);
    let outcome = pool.serve(transport, &tx, sink);
    pool.finish(transport);
    outcome
}

struct Pool<'a, 'j, M: Model> {
    job: &'a Job<'j, M>,
    model: ModelRef,
    depth: usize,
    /// The running mean of how long points take (from their start).
    mean_point: Option<Duration>,
    pending: VecDeque<usize>,
    /// Starts per point (index into the batch).
    attempts: Vec<u32>,
    slots: Vec<Slot>,
    reported: usize,
    ever_ready: bool,
    interrupted: bool,
    rx: &'a Receiver<(WorkerId, News)>,
    /// News taken from the channel ahead of its turn (while the last
    /// stderr lines of a dead worker were gathered).
    backlog: VecDeque<(WorkerId, News)>,
}

impl<M: Model> Pool<'_, '_, M> {
    fn id(&self, slot: usize) -> WorkerId {
        WorkerId {
            slot,
            generation: self.slots[slot].generation,
        }
    }

    fn in_flight(&self) -> usize {
        self.slots
            .iter()
            .filter_map(|s| s.client.as_ref())
            .map(WorkerClient::in_flight)
            .sum()
    }

    fn live_slots(&self) -> usize {
        self.slots.iter().filter(|s| !s.gone).count()
    }

    /// Starts a new worker on each of these slots.
    fn start<T: Transport>(
        &mut self,
        transport: &mut T,
        slots: &[usize],
        tx: &Sender<(WorkerId, News)>,
    ) {
        let now = Instant::now();
        let ids: Vec<WorkerId> = slots
            .iter()
            .map(|&slot| {
                let s = &mut self.slots[slot];
                s.generation += 1;
                s.client = Some(WorkerClient::new(self.model.clone(), now));
                s.retiring = false;
                self.id(slot)
            })
            .collect();
        for (id, started) in transport.start(&ids, tx) {
            if let Err(message) = started {
                self.slots[id.slot].client = None;
                self.start_failed(id.slot, message);
            }
        }
    }

    fn start_failed(&mut self, slot: usize, message: String) {
        let s = &mut self.slots[slot];
        s.client = None;
        s.start_failures += 1;
        tracing::warn!(slot, "a worker could not start: {message}");
        s.last_failure = Some(message);
        if s.start_failures >= MAX_START_FAILURES {
            s.gone = true;
        }
    }

    /// The main loop: until every point is reported, the batch is cancelled
    /// and nothing is in flight, or no worker can run.
    fn serve<T: Transport>(
        &mut self,
        transport: &mut T,
        tx: &Sender<(WorkerId, News)>,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), Error> {
        loop {
            if crate::interrupt::requested() {
                self.interrupted = true;
                return Ok(());
            }
            self.refill(transport, sink);
            let cancelled = self.job.cancelled();
            if (self.pending.is_empty() || cancelled) && self.in_flight() == 0 {
                return Ok(());
            }
            if self.live_slots() == 0 {
                return self.no_worker_left(transport, sink);
            }
            // Restart slots that need a worker.
            if !cancelled && !self.pending.is_empty() {
                let idle: Vec<usize> = (0..self.slots.len())
                    .filter(|&k| self.slots[k].client.is_none() && !self.slots[k].gone)
                    .take(self.pending.len())
                    .collect();
                if !idle.is_empty() {
                    self.start(transport, &idle, tx);
                    continue;
                }
            }
            let wait = self.next_deadline().map_or(INTERRUPT_POLL, |at| {
                at.saturating_duration_since(Instant::now())
                    .min(INTERRUPT_POLL)
            });
            let first = match self.backlog.pop_front() {
                Some(news) => Ok(news),
                None => self.rx.recv_timeout(wait),
            };
            match first {
                Ok((id, news)) => {
                    self.hear(transport, id, news, sink);
                    // Take everything already there before writing again.
                    while let Some((id, news)) =
                        self.backlog.pop_front().or_else(|| self.rx.try_recv().ok())
                    {
                        self.hear(transport, id, news, sink);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            self.expire(transport, sink);
        }
    }

    /// How many points a ready worker may hold now. Until points are known
    /// to be short, one: with long points a second one queued behind a
    /// running one would wait there while another worker idles.
    fn current_depth(&self) -> usize {
        match self.mean_point {
            Some(mean) if mean < DEEP_PIPELINE_BELOW => self.depth,
            Some(mean) if mean < PIPELINE_BELOW => self.depth.min(2),
            _ => 1,
        }
    }

    /// Gives every ready worker a point, then fills pipelines (keeping a
    /// point back for every worker), and sends what the clients queued.
    fn refill<T: Transport>(&mut self, transport: &mut T, sink: &mut dyn FnMut(Event<M::Output>)) {
        let cancelled = self.job.cancelled();
        let depth = self.current_depth();
        // Pipelines fill only while more points wait than there are
        // workers: near the end of a batch (or behind a slow point among
        // fast ones) a queued point must not wait behind another while a
        // worker idles or is still starting.
        let reserve = self.live_slots();
        for fill in [1, depth] {
            if cancelled || (fill > 1 && self.pending.len() <= reserve) {
                break;
            }
            for slot in 0..self.slots.len() {
                if self.slots[slot].retiring {
                    continue;
                }
                // A pipeline is topped up once it is half empty, so the
                // requests of several points share one write.
                let low = self.slots[slot]
                    .client
                    .as_ref()
                    .is_some_and(|c| c.in_flight() <= fill / 2);
                if fill > 1 && !low {
                    continue;
                }
                while self.slots[slot]
                    .client
                    .as_ref()
                    .is_some_and(|c| c.phase() == Phase::Ready && c.in_flight() < fill)
                {
                    if fill > 1 && self.pending.len() <= reserve {
                        break;
                    }
                    let Some(index) = self.pending.pop_front() else {
                        break;
                    };
                    if !self.submit(transport, slot, index, sink) {
                        break;
                    }
                }
            }
        }
        for slot in 0..self.slots.len() {
            let id = self.id(slot);
            let retiring = self.slots[slot].retiring;
            let Some(client) = self.slots[slot].client.as_mut() else {
                continue;
            };
            let done = client.phase() == Phase::Ready
                && !retiring
                && client.in_flight() == 0
                && (cancelled || self.pending.is_empty());
            if done {
                client.shutdown();
            }
            if client.has_outbox() {
                let bytes = client.take_outbox();
                if let Err(why) = transport.send(id, &bytes) {
                    tracing::debug!(slot, "cannot write to a worker: {why}");
                    // Its reader will report the end; kill it so it does.
                    transport.kill(id);
                }
            }
            if done {
                self.slots[slot].retiring = true;
            }
        }
    }

    /// Queues point `index` on the worker of `slot`; `false` when the
    /// worker cannot take it (the point is back in the queue).
    fn submit<T: Transport>(
        &mut self,
        transport: &T,
        slot: usize,
        index: usize,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) -> bool {
        let id = self.id(slot);
        let Some(client) = self.slots[slot].client.as_mut() else {
            self.pending.push_front(index);
            return false;
        };
        self.attempts[index] += 1;
        match crate::codec::encode(&self.job.inputs[index]) {
            Ok(bytes) => {
                if client.submit(index, bytes).is_err() {
                    self.attempts[index] -= 1;
                    self.pending.push_front(index);
                    return false;
                }
                true
            }
            Err(message) => {
                let failure = PointFailure::Protocol {
                    message: format!("cannot encode the input: {message}"),
                };
                let pid = client.pid();
                let location = transport.location(id, pid);
                self.report(index, Err((failure, location)), sink);
                true
            }
        }
    }

    fn hear<T: Transport>(
        &mut self,
        transport: &mut T,
        id: WorkerId,
        news: News,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) {
        if id.generation != self.slots[id.slot].generation {
            return; // about a worker already replaced
        }
        if let News::Messages(messages) = news {
            for message in messages {
                self.hear(transport, id, News::Message(message), sink);
            }
            return;
        }
        let Some(client) = self.slots[id.slot].client.as_mut() else {
            return;
        };
        let heard = match news {
            News::Stderr(line) => {
                client.stderr_line(line);
                return;
            }
            News::Closed(why) => return self.closed(transport, id, why, sink),
            News::Greeting(greeting) => client.greeted(greeting).map(|()| Heard::Nothing),
            News::Garbled(why) => Err(Refusal::Broken(why)),
            News::Message(message) => client.hear(message, Instant::now()),
            News::Messages(_) => return,
        };
        match heard {
            Ok(Heard::Nothing) => {}
            Ok(Heard::Ready) => {
                self.ever_ready = true;
                self.slots[id.slot].start_failures = 0;
            }
            Ok(Heard::Answer {
                index,
                outcome,
                ran,
            }) => {
                let pid = client.pid();
                if let Some(ran) = ran {
                    self.mean_point = Some(match self.mean_point {
                        None => ran,
                        Some(mean) => (mean * 7 + ran) / 8,
                    });
                }
                let outcome = outcome.and_then(|bytes| {
                    crate::codec::decode::<M::Output>(&bytes).map_err(|message| {
                        Failed::from(PointFailure::Protocol {
                            message: format!("cannot decode the output: {message}"),
                        })
                    })
                });
                // A location only for a failure: nothing more per success.
                let outcome = outcome.map_err(|f| f.into_parts(transport.location(id, pid)));
                self.report(index, outcome, sink);
            }
            Err(Refusal::Unusable(why)) => {
                let why = format!("{} {why}", transport.program(id));
                transport.kill(id);
                let _ = transport.ending(id);
                self.slots[id.slot].client = None;
                self.slots[id.slot].gone = true;
                self.slots[id.slot].last_failure = Some(why);
            }
            Err(Refusal::Broken(why)) => {
                transport.kill(id);
                self.closed(transport, id, why, sink);
            }
        }
    }

    /// A worker's output ended: how it ended decides what becomes of its
    /// points.
    fn closed<T: Transport>(
        &mut self,
        transport: &mut T,
        id: WorkerId,
        why: String,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) {
        let Some(mut client) = self.slots[id.slot].client.take() else {
            return;
        };
        let ending = transport.ending(id);
        // Its last stderr lines may still be in the channel: they belong
        // in its failure.
        for (other, news) in self.rx.try_iter() {
            match news {
                News::Stderr(line) if other == id => client.stderr_line(line),
                news => self.backlog.push_back((other, news)),
            }
        }
        let phase = client.phase();
        let retiring = self.slots[id.slot].retiring;
        let Orphans { running, queued } = client.ended();
        self.requeue(queued);
        if matches!(phase, Phase::Starting | Phase::Loading) {
            let message = format!(
                "{} {}",
                transport.program(id),
                client.start_failure(&ending)
            );
            tracing::debug!(slot = id.slot, "{why}");
            return self.start_failed(id.slot, message);
        }
        let Some(index) = running else {
            if !retiring {
                tracing::warn!(slot = id.slot, "a worker ended between points: {ending}");
            }
            return;
        };
        if self.ended_by_interruption(&ending) {
            self.interrupted = true;
            return;
        }
        let location = transport.location(id, client.pid());
        let failure = PointFailure::WorkerDied {
            ending,
            stderr_tail: client.stderr_tail(),
        };
        self.lost(transport, index, failure, location, sink);
    }

    /// A point whose worker died under it (or was killed at its timeout):
    /// started again when its class allows it and retries are left, else
    /// reported with the traces the driver can find.
    fn lost<T: Transport>(
        &mut self,
        transport: &T,
        index: usize,
        failure: PointFailure,
        location: Location,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) {
        let retries = self.job.settings.retries;
        if failure.class() == FailureClass::Infrastructure && self.attempts[index] <= retries {
            tracing::warn!(
                point = index,
                attempt = self.attempts[index],
                "{failure}; the point will run again"
            );
            self.pending.push_back(index);
            return;
        }
        let layers = Layers {
            workdir: if transport.local_workdirs() {
                M::layers().workdir.clone()
            } else {
                None
            },
            log: M::layers().log,
        };
        let failed = crate::layers::lost_evaluation(
            M::NAME,
            &layers,
            index,
            &self.job.inputs[index],
            failure,
            location.pid.unwrap_or_default(),
        );
        self.report(index, Err(failed.into_parts(location)), sink);
    }

    fn report(
        &mut self,
        index: usize,
        outcome: Result<M::Output, (PointFailure, Location)>,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) {
        self.reported += 1;
        self.job.note_outcome(&outcome);
        sink(Event {
            index,
            outcome,
            attempts: self.attempts[index],
        });
    }

    /// Points a worker was sent but never started go back to the front of
    /// the queue, in order, uncharged.
    fn requeue(&mut self, queued: Vec<usize>) {
        for index in queued.into_iter().rev() {
            self.attempts[index] = self.attempts[index].saturating_sub(1);
            self.pending.push_front(index);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.job.settings.timeout;
        self.slots
            .iter()
            .filter_map(|s| s.client.as_ref()?.deadline(timeout))
            .min()
    }

    /// Kills the workers whose handshake or running point is past due.
    fn expire<T: Transport>(&mut self, transport: &mut T, sink: &mut dyn FnMut(Event<M::Output>)) {
        let now = Instant::now();
        let timeout = self.job.settings.timeout;
        for slot in 0..self.slots.len() {
            let id = self.id(slot);
            let Some(expired) = self.slots[slot]
                .client
                .as_ref()
                .and_then(|c| c.expired(now, timeout))
            else {
                continue;
            };
            transport.kill(id);
            let Some(mut client) = self.slots[slot].client.take() else {
                continue;
            };
            let ending = transport.ending(id);
            let Orphans { queued, .. } = client.ended();
            self.requeue(queued);
            match expired {
                Expired::Handshake => self.start_failed(
                    slot,
                    format!(
                        "{} did not start within {} s (the process {ending})",
                        transport.program(id),
                        crate::worker::client::HANDSHAKE_TIMEOUT.as_secs()
                    ),
                ),
                Expired::Point(index) => {
                    let location = transport.location(id, client.pid());
                    let failure = PointFailure::Timeout {
                        after: timeout.unwrap_or_default(),
                    };
                    self.lost(transport, index, failure, location, sink);
                }
            }
        }
    }

    /// Whether a worker's end belongs to an interruption of the batch: it
    /// was requested, or the worker died of a signal that is about to
    /// interrupt the driver too (the whole job or group was signalled).
    fn ended_by_interruption(&self, ending: &Ending) -> bool {
        if crate::interrupt::requested() {
            return true;
        }
        if !matches!(
            ending,
            Ending::Signal(libc::SIGINT | libc::SIGTERM | libc::SIGHUP)
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

    /// Every slot is given up: before any point ran, the batch cannot
    /// start (an error); afterwards the points left fail.
    fn no_worker_left<T: Transport>(
        &mut self,
        transport: &T,
        sink: &mut dyn FnMut(Event<M::Output>),
    ) -> Result<(), Error> {
        let (none_started, none_left) = transport.nowhere_left();
        let mut reasons: Vec<String> = Vec::new();
        for reason in self.slots.iter().filter_map(|s| s.last_failure.clone()) {
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
        if self.reported == 0 && !self.ever_ready {
            return Err(Error::Backend {
                backend: self.job.settings.backend.name(),
                message: format!("{none_started}:\n  {}", reasons.join("\n  ")),
            });
        }
        let why = reasons.last().cloned().unwrap_or_default();
        while let Some(index) = self.pending.pop_front() {
            let failure = PointFailure::NotRun {
                reason: format!("{none_left} (last: {why})"),
            };
            let location = Location {
                host: crate::host::hostname().to_string(),
                backend: self.job.settings.backend.name().to_string(),
                ..Location::default()
            };
            self.report(index, Err((failure, location)), sink);
        }
        Ok(())
    }

    /// Ends every worker: politely when the batch is done, at once when it
    /// was interrupted.
    fn finish<T: Transport>(&mut self, transport: &mut T) {
        for slot in 0..self.slots.len() {
            let id = self.id(slot);
            let Some(mut client) = self.slots[slot].client.take() else {
                continue;
            };
            if self.interrupted || client.in_flight() > 0 {
                transport.kill(id);
                let _ = transport.ending(id);
                continue;
            }
            if !self.slots[slot].retiring {
                client.shutdown();
                let _ = transport.send(id, &client.take_outbox());
            }
            transport.retire(id);
        }
        // Drain what the readers still hold so their threads can end.
        while self.rx.try_recv().is_ok() {}
    }
}
