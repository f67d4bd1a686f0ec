//! The driver's side of the worker protocol, once: a state machine that
//! does no I/O itself. A transport (a child's pipes, an SSH channel, a
//! launcher's multiplexed stream) hands it what the worker said and sends
//! the bytes it queues; the pool asks it for deadlines and points.
//!
//! ```text
//! Starting --Hello--> Loading --Ready--> Idle <--Result-- Busy
//!                                          \--submit--> Busy (points in flight)
//! ```
//!
//! The worker says `Started` before it evaluates each point, so a deadline
//! runs from the moment the point started (not from when it was queued
//! behind another), and a worker that dies is charged only the point it was
//! running: the points queued behind it go back to the pool untouched.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::core::{Ending, Failed};

use super::protocol::{write_frame, FromWorker, ModelRef, ToWorker, PROTOCOL_VERSION};

/// How long a new worker has to greet and load its model.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// How many stderr lines of a worker are kept for failure reports.
pub(crate) const STDERR_TAIL_LINES: usize = 30;

/// The last lines of a stream (a worker's or a channel's stderr), kept for
/// failure reports.
#[derive(Debug)]
pub(crate) struct Tail {
    lines: VecDeque<String>,
    max: usize,
}

impl Tail {
    /// Keeps the last `max` lines.
    pub(crate) fn new(max: usize) -> Tail {
        Tail {
            lines: VecDeque::new(),
            max,
        }
    }

    /// One more line (the oldest goes when `max` are kept).
    pub(crate) fn push(&mut self, line: String) {
        if self.lines.len() == self.max {
            self.lines.pop_front();
        }
        self.lines.push_back(line);
    }

    /// The lines kept, one per line.
    pub(crate) fn text(&self) -> String {
        self.lines
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Splits bytes that arrive in pieces into lines (`\n` ends one; the end
/// of the stream ends the last).
#[derive(Debug, Default)]
pub(crate) struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// The lines these bytes complete, without their line ends.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.partial.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            lines.push(String::from_utf8_lossy(&line).trim_end().to_string());
        }
        lines
    }

    /// The last line, unfinished at the end of the stream, if any.
    pub(crate) fn finish(&mut self) -> Option<String> {
        if self.partial.is_empty() {
            return None;
        }
        let rest = std::mem::take(&mut self.partial);
        Some(String::from_utf8_lossy(&rest).trim_end().to_string())
    }
}

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Started; its greeting is awaited.
    Starting,
    /// `Init` sent; `Ready` awaited.
    Loading,
    /// Ready for points (some may be in flight).
    Ready,
    /// Refused, ended or broken: nothing more is accepted.
    Closed,
}

/// A point sent to the worker and not yet answered.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    index: usize,
    /// When the worker said it started it.
    started: Option<Instant>,
}

/// What a message from the worker meant.
#[derive(Debug)]
pub(crate) enum Heard {
    /// Nothing the pool must act on.
    Nothing,
    /// The worker loaded the model: points may be sent.
    Ready,
    /// The answer to a point: the encoded output, or its failure.
    Answer {
        /// The point.
        index: usize,
        /// The encoded output, or the failure and its traces.
        outcome: Result<Vec<u8>, Failed>,
        /// How long it ran, from its start to its answer.
        ran: Option<Duration>,
    },
}

/// Why a worker cannot go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// It could not be a worker for this model (not an otwrap worker, other
    /// protocol, unknown model): starting another one will not help.
    Unusable(String),
    /// It broke the protocol after it started: replace it.
    Broken(String),
}

impl Refusal {
    /// What is wrong, to follow "the worker program <path>".
    pub(crate) fn into_message(self) -> String {
        match self {
            Refusal::Unusable(m) | Refusal::Broken(m) => m,
        }
    }
}

/// What became of a worker's points when it ended.
#[derive(Debug, Default)]
pub(crate) struct Orphans {
    /// The point it was evaluating when it ended, if any: the one charged.
    pub(crate) running: Option<usize>,
    /// Points sent but not started: they go back to the queue uncharged.
    pub(crate) queued: Vec<usize>,
}

/// A deadline that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// The worker did not greet or load its model in time.
    Handshake,
    /// This point ran past the timeout.
    Point(usize),
}

/// The driver's view of one worker.
#[derive(Debug)]
pub(crate) struct WorkerClient {
    phase: Phase,
    model: ModelRef,
    since: Instant,
    pid: Option<u32>,
    in_flight: VecDeque<InFlight>,
    stderr_tail: Tail,
    outbox: Vec<u8>,
}

impl WorkerClient {
    /// A worker just started for `model`.
    pub(crate) fn new(model: ModelRef, now: Instant) -> Self {
        WorkerClient {
            phase: Phase::Starting,
            model,
            since: now,
            pid: None,
            in_flight: VecDeque::new(),
            stderr_tail: Tail::new(STDERR_TAIL_LINES),
            outbox: Vec::new(),
        }
    }

    /// Where it is.
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    /// Its process id, once it greeted.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The points sent and not answered.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The point it is evaluating, if any.
    pub(crate) fn running(&self) -> Option<usize> {
        self.in_flight
            .front()
            .filter(|p| p.started.is_some())
            .map(|p| p.index)
    }

    /// The bytes to send, taken.
    pub(crate) fn take_outbox(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outbox)
    }

    /// Whether bytes wait to be sent.
    pub(crate) fn has_outbox(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// A line the worker wrote on stderr.
    pub(crate) fn stderr_line(&mut self, line: String) {
        self.stderr_tail.push(line);
    }

    /// The last lines of its stderr.
    pub(crate) fn stderr_tail(&self) -> String {
        self.stderr_tail.text()
    }

    /// The worker's greeting (`Hello`, after the magic bytes) or why there
    /// was none.
    pub(crate) fn greeted(&mut self, greeting: Result<FromWorker, String>) -> Result<(), Refusal> {
        let not_a_worker =
            "(a worker binary's `main` must carry `#[otwrap::main]`; set `worker_exe` / \
                            OTWRAP_WORKER_EXE if the model lives in another binary)";
        match greeting {
            Err(message) => {
                self.refuse(format!("is not an otwrap worker: {message} {not_a_worker}"))
            }
            Ok(message) => match self.hear(message, Instant::now()) {
                Ok(_) => Ok(()),
                Err(refusal) => Err(refusal),
            },
        }
    }

    /// A message from the worker.
    pub(crate) fn hear(&mut self, message: FromWorker, now: Instant) -> Result<Heard, Refusal> {
        match (self.phase, message) {
            (
                Phase::Starting,
                FromWorker::Hello {
                    protocol,
                    version,
                    pid,
                    ..
                },
            ) => {
                if protocol != PROTOCOL_VERSION {
                    return self.refuse(format!(
                        "speaks otwrap worker protocol {protocol} (otwrap {version}) but this driver \
                         speaks {PROTOCOL_VERSION} (otwrap {}): build the driver and the workers with \
                         the same otwrap version",
                        env!("CARGO_PKG_VERSION")
                    ));
                }
                self.pid = Some(pid);
                self.queue(&ToWorker::Init {
                    protocol: PROTOCOL_VERSION,
                    model: self.model.clone(),
                })?;
                self.phase = Phase::Loading;
                Ok(Heard::Nothing)
            }
            (Phase::Loading, FromWorker::Ready) => {
                self.phase = Phase::Ready;
                self.since = now;
                Ok(Heard::Ready)
            }
            (Phase::Loading, FromWorker::UnknownModel { model, known }) => self.refuse(format!(
                "does not contain the model `{model}` (it knows: {}); point `worker_exe` at the \
                 binary that defines it",
                if known.is_empty() {
                    "no model".to_string()
                } else {
                    known.join(", ")
                }
            )),
            (Phase::Loading, FromWorker::BadModel { message }) => self.refuse(format!(
                "cannot use the model description it was given: {message}"
            )),
            (Phase::Ready, FromWorker::Started { index }) => {
                match self.in_flight.iter_mut().find(|p| p.index as u64 == index) {
                    Some(point) if point.started.is_none() => {
                        point.started = Some(now);
                        Ok(Heard::Nothing)
                    }
                    _ => self.broken(format!(
                        "said it started point {index}, which it was not sent"
                    )),
                }
            }
            (Phase::Ready, FromWorker::Result { index, outcome }) => {
                match self.in_flight.front().copied() {
                    Some(first) if first.index as u64 == index => {
                        self.in_flight.pop_front();
                        Ok(Heard::Answer {
                            index: first.index,
                            outcome,
                            ran: first.started.map(|s| now.saturating_duration_since(s)),
                        })
                    }
                    _ => self.broken(format!(
                        "answered point {index} out of turn (expected {:?})",
                        self.in_flight.front().map(|p| p.index)
                    )),
                }
            }
            (_, other) => self.broken(format!("sent {other:?} out of turn")),
        }
    }

    /// Queues point `index` (its encoded input). The worker must be ready.
    pub(crate) fn submit(&mut self, index: usize, input: Vec<u8>) -> Result<(), Refusal> {
        debug_assert_eq!(self.phase, Phase::Ready);
        self.queue(&ToWorker::Evaluate {
            index: index as u64,
            input,
        })?;
        self.in_flight.push_back(InFlight {
            index,
            started: None,
        });
        Ok(())
    }

    /// Asks the worker to end once its points are done.
    pub(crate) fn shutdown(&mut self) {
        let _ = self.queue(&ToWorker::Shutdown);
    }

    /// The next moment something may expire (the handshake, or the running
    /// point's `timeout`).
    pub(crate) fn deadline(&self, timeout: Option<Duration>) -> Option<Instant> {
        match self.phase {
            Phase::Starting | Phase::Loading => Some(self.since + HANDSHAKE_TIMEOUT),
            Phase::Ready => {
                let started = self.in_flight.front()?.started?;
                Some(started + timeout?)
            }
            Phase::Closed => None,
        }
    }

    /// What expired at `now`, if anything.
    pub(crate) fn expired(&self, now: Instant, timeout: Option<Duration>) -> Option<Expired> {
        if self.deadline(timeout)? > now {
            return None;
        }
        match self.phase {
            Phase::Starting | Phase::Loading => Some(Expired::Handshake),
            _ => self.running().map(Expired::Point),
        }
    }

    /// The worker ended (or was killed): its points, and the failure of the
    /// one it was running.
    pub(crate) fn ended(&mut self) -> Orphans {
        self.phase = Phase::Closed;
        let running = self.running();
        let queued = self
            .in_flight
            .drain(..)
            .filter(|p| Some(p.index) != running)
            .map(|p| p.index)
            .collect();
        Orphans { running, queued }
    }

    /// Why a worker that ended during its handshake could not start.
    pub(crate) fn start_failure(&self, ending: &Ending) -> String {
        let phase = match self.phase {
            Phase::Starting => "before greeting",
            _ => "while loading its model",
        };
        let mut text = format!("ended {phase}: the process {ending}");
        let tail = self.stderr_tail();
        if !tail.is_empty() {
            text.push_str(&format!("; its stderr ended with:\n{tail}"));
        }
        text
    }

    fn queue(&mut self, message: &ToWorker) -> Result<(), Refusal> {
        write_frame(&mut self.outbox, message)
            .map_err(|e| Refusal::Broken(format!("cannot encode a message: {e}")))
    }

    fn refuse<T>(&mut self, message: String) -> Result<T, Refusal> {
        self.phase = Phase::Closed;
        Err(Refusal::Unusable(message))
    }

    fn broken<T>(&mut self, message: String) -> Result<T, Refusal> {
        self.phase = Phase::Closed;
        Err(Refusal::Broken(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::PointFailure;
    use crate::worker::protocol::decode_frame;

    fn hello(protocol: u32) -> FromWorker {
        FromWorker::Hello {
            protocol,
            version: "x".into(),
            pid: 42,
            host: "h".into(),
        }
    }

    fn sent(client: &mut WorkerClient) -> Vec<ToWorker> {
        let bytes = client.take_outbox();
        let mut out = Vec::new();
        let mut at = 0;
        while let Some((m, used)) = decode_frame::<ToWorker>(&bytes[at..]).expect("frame") {
            out.push(m);
            at += used;
        }
        out
    }

    fn ready(now: Instant) -> WorkerClient {
        let mut c = WorkerClient::new(ModelRef::Compiled("m".into()), now);
        c.greeted(Ok(hello(PROTOCOL_VERSION))).expect("hello");
        assert!(matches!(sent(&mut c)[..], [ToWorker::Init { .. }]));
        assert!(matches!(c.hear(FromWorker::Ready, now), Ok(Heard::Ready)));
        c
    }

    #[test]
    fn handshake_then_points_in_order_with_deadlines_from_their_start() {
        let t0 = Instant::now();
        let mut c = ready(t0);
        assert_eq!(c.pid(), Some(42));
        c.submit(7, vec![1]).expect("submit");
        c.submit(9, vec![2]).expect("submit");
        assert_eq!(sent(&mut c).len(), 2);
        let timeout = Some(Duration::from_secs(10));
        // Queued, not started: no deadline runs yet, nothing is charged.
        assert_eq!(c.deadline(timeout), None);
        assert_eq!(c.running(), None);
        let t1 = t0 + Duration::from_secs(5);
        c.hear(FromWorker::Started { index: 7 }, t1)
            .expect("started");
        assert_eq!(c.deadline(timeout), Some(t1 + Duration::from_secs(10)));
        assert_eq!(
            c.expired(t1 + Duration::from_secs(11), timeout),
            Some(Expired::Point(7))
        );
        let answer = c.hear(
            FromWorker::Result {
                index: 7,
                outcome: Ok(vec![3]),
            },
            t1,
        );
        assert!(matches!(answer, Ok(Heard::Answer { index: 7, .. })));
        assert_eq!(c.in_flight(), 1);
        c.hear(FromWorker::Started { index: 9 }, t1)
            .expect("started");
        let orphans = c.ended();
        assert_eq!(orphans.running, Some(9));
        assert!(orphans.queued.is_empty());
        assert_eq!(c.phase(), Phase::Closed);
    }

    #[test]
    fn a_worker_lost_before_starting_its_queued_points_charges_none() {
        let t0 = Instant::now();
        let mut c = ready(t0);
        c.submit(1, vec![]).expect("submit");
        c.submit(2, vec![]).expect("submit");
        c.hear(FromWorker::Started { index: 1 }, t0)
            .expect("started");
        let orphans = c.ended();
        assert_eq!(orphans.running, Some(1));
        assert_eq!(orphans.queued, vec![2]);
    }

    #[test]
    fn refusals_name_the_versions_and_the_models() {
        let mut c = WorkerClient::new(ModelRef::Compiled("m".into()), Instant::now());
        let Err(Refusal::Unusable(text)) = c.greeted(Ok(hello(PROTOCOL_VERSION + 7))) else {
            panic!("another protocol must be refused");
        };
        assert!(
            text.contains(&format!("protocol {}", PROTOCOL_VERSION + 7)),
            "{text}"
        );
        assert!(text.contains("same otwrap version"), "{text}");

        let mut c = WorkerClient::new(ModelRef::Compiled("m".into()), Instant::now());
        c.greeted(Ok(hello(PROTOCOL_VERSION))).expect("hello");
        let unknown = FromWorker::UnknownModel {
            model: "m".into(),
            known: vec!["a::b".into()],
        };
        let Err(Refusal::Unusable(text)) = c.hear(unknown, Instant::now()) else {
            panic!("an unknown model must be refused");
        };
        assert!(text.contains("`m`") && text.contains("a::b"), "{text}");

        let mut c = WorkerClient::new(ModelRef::Described(vec![7]), Instant::now());
        c.greeted(Ok(hello(PROTOCOL_VERSION))).expect("hello");
        let bad = FromWorker::BadModel {
            message: "model description format 7 is not supported".into(),
        };
        let Err(Refusal::Unusable(text)) = c.hear(bad, Instant::now()) else {
            panic!("an unusable description must be refused");
        };
        assert_eq!(
            text,
            "cannot use the model description it was given: model description format 7 is not \
             supported"
        );

        let mut c = WorkerClient::new(ModelRef::Compiled("m".into()), Instant::now());
        let Err(Refusal::Unusable(text)) = c.greeted(Err("it printed \"hi\"".into())) else {
            panic!("no greeting must be refused");
        };
        assert!(text.contains("#[otwrap::main]"), "{text}");
    }

    #[test]
    fn answers_out_of_turn_break_the_worker() {
        let t0 = Instant::now();
        let mut c = ready(t0);
        c.submit(1, vec![]).expect("submit");
        let wrong = FromWorker::Result {
            index: 2,
            outcome: Err(Failed::from(PointFailure::Model {
                message: "x".into(),
            })),
        };
        assert!(matches!(c.hear(wrong, t0), Err(Refusal::Broken(_))));
        let mut c = ready(t0);
        assert!(matches!(
            c.hear(FromWorker::Started { index: 5 }, t0),
            Err(Refusal::Broken(_))
        ));
    }

    #[test]
    fn the_handshake_has_a_deadline() {
        let t0 = Instant::now();
        let c = WorkerClient::new(ModelRef::Compiled("m".into()), t0);
        assert_eq!(c.expired(t0, None), None);
        assert_eq!(
            c.expired(t0 + HANDSHAKE_TIMEOUT + Duration::from_millis(1), None),
            Some(Expired::Handshake)
        );
    }
}
