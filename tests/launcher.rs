//! The launcher (`otwrap_runtime::worker::launcher`) against real
//! processes: this test binary starts itself in launcher mode over pipes and
//! drives it through `LauncherLink`, speaking the ordinary worker protocol to
//! each slot worker through the multiplexed stream, as the ssh backend does.
//! A real external code (tests/support/solver_tree.rs: a shell script
//! running a `sleep` of its own) checks that a killed slot and a vanished
//! driver leave nothing running.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::prelude::*;
use otwrap::Model;
use otwrap_runtime::worker::launcher::{FromLauncher, LauncherLink, ToLauncher};
use otwrap_runtime::worker::protocol::{
    decode_frame, launch_env_value, write_frame, FromWorker, ToWorker, MAGIC, PROTOCOL_VERSION,
    WORKER_ENV,
};

#[path = "support/solver_tree.rs"]
mod solver_tree;
use solver_tree::{none_left, solver, unique_tag, wait_for_solvers, write_script, SLOW};

#[parallelize(backend = "processes")]
fn affine(x: u64) -> u64 {
    x * 3 + 1
}

#[parallelize(backend = "processes")]
fn wave(x: f64) -> f64 {
    (x * 1.5).cos() + x
}

/// Aborts on point 3; on point 7 exits with status 3, leaving a forked
/// child that holds its protocol output open.
#[parallelize(backend = "processes")]
fn crashy(k: u32) -> u32 {
    if k == 3 {
        std::process::abort();
    }
    if k == 7 {
        // SAFETY: the child only sleeps and exits (async-signal-safe calls).
        unsafe {
            if libc::fork() == 0 {
                libc::sleep(60);
                libc::_exit(0);
            }
        }
        std::process::exit(3);
    }
    k * 2
}

/// How long any one awaited message may take (a hang fails, not blocks).
const PATIENCE: Duration = Duration::from_secs(60);

/// A launcher started over pipes, and the driver's view of it.
struct Launcher {
    process: Child,
    input: Option<ChildStdin>,
    output: Receiver<Option<Vec<u8>>>,
    link: LauncherLink,
    /// The slot workers' protocol streams.
    streams: BTreeMap<u32, WorkerStream>,
    /// Every worker pid the launcher reported, and its slot.
    pids: BTreeMap<u32, u32>,
    /// The latest worker pid of each slot.
    latest: BTreeMap<u32, u32>,
    /// What each slot wrote on stderr.
    stderr: BTreeMap<u32, Vec<u8>>,
}

/// One worker's protocol bytes, as they come out of `FromLauncher::Data`.
#[derive(Default)]
struct WorkerStream {
    inbox: Vec<u8>,
    greeted: bool,
}

impl WorkerStream {
    fn next(&mut self) -> Result<Option<FromWorker>, Failed> {
        if !self.greeted {
            if self.inbox.len() < MAGIC.len() {
                return Ok(None);
            }
            if &self.inbox[..MAGIC.len()] != MAGIC {
                return Err(format!("not a worker greeting: {:?}", self.inbox).into());
            }
            self.inbox.drain(..MAGIC.len());
            self.greeted = true;
        }
        // `Started` announcements are the worker client's business (its
        // deadlines), not these tests': skip them.
        loop {
            let Some((message, used)) = decode_frame::<FromWorker>(&self.inbox)? else {
                return Ok(None);
            };
            self.inbox.drain(..used);
            if !matches!(message, FromWorker::Started { .. }) {
                return Ok(Some(message));
            }
        }
    }
}

/// What the driver is told about a slot, worker messages decoded.
#[derive(Debug)]
enum Seen {
    Spawned(u32),
    SpawnFailed(String),
    Worker(FromWorker),
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
}

impl Launcher {
    fn start() -> Result<Launcher, Failed> {
        let mut process = Command::new(std::env::current_exe()?)
            .env(WORKER_ENV, launch_env_value())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let input = process.stdin.take();
        let mut stdout = process.stdout.take().ok_or("no stdout")?;
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(n) => {
                        if tx.send(Some(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut launcher = Launcher {
            process,
            input,
            output,
            link: LauncherLink::new(),
            streams: BTreeMap::new(),
            pids: BTreeMap::new(),
            latest: BTreeMap::new(),
            stderr: BTreeMap::new(),
        };
        match launcher.next_event()? {
            Some(FromLauncher::Hello { protocol, pid, .. }) => {
                if protocol != PROTOCOL_VERSION || pid != launcher.process.id() {
                    return Err(format!("bad hello: protocol {protocol}, pid {pid}").into());
                }
            }
            other => return Err(format!("expected the launcher's Hello, got {other:?}").into()),
        }
        Ok(launcher)
    }

    /// The next launcher message; `None` at the end of its output.
    fn next_event(&mut self) -> Result<Option<FromLauncher>, Failed> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(event) = self.link.next_event()? {
                return Ok(Some(event));
            }
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(wait) {
                Ok(Some(bytes)) => self.link.push_bytes(&bytes),
                Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                    self.link.finish()?;
                    return Ok(None);
                }
                Err(RecvTimeoutError::Timeout) => {
                    let _ = self.process.kill();
                    return Err("the launcher said nothing for 60 s".into());
                }
            }
        }
    }

    /// The next thing that happened to some slot.
    fn next_seen(&mut self) -> Result<(u32, Seen), Failed> {
        // A worker message already whole in its stream comes first.
        for (&slot, stream) in &mut self.streams {
            if let Some(message) = stream.next()? {
                return Ok((slot, Seen::Worker(message)));
            }
        }
        loop {
            let event = self
                .next_event()?
                .ok_or("the launcher's output ended while a slot was awaited")?;
            let seen = match event {
                FromLauncher::Spawned { slot, pid } => {
                    self.pids.insert(pid, slot);
                    self.latest.insert(slot, pid);
                    self.streams.insert(slot, WorkerStream::default());
                    (slot, Seen::Spawned(pid))
                }
                FromLauncher::SpawnFailed { slot, message } => (slot, Seen::SpawnFailed(message)),
                FromLauncher::Data { slot, bytes } => {
                    let stream = self
                        .streams
                        .get_mut(&slot)
                        .ok_or_else(|| format!("data for slot {slot} before it was spawned"))?;
                    stream.inbox.extend_from_slice(&bytes);
                    match stream.next()? {
                        Some(message) => (slot, Seen::Worker(message)),
                        None => continue,
                    }
                }
                FromLauncher::Stderr { slot, bytes } => {
                    self.stderr
                        .entry(slot)
                        .or_default()
                        .extend_from_slice(&bytes);
                    continue;
                }
                FromLauncher::Exited { slot, code, signal } => {
                    let stream = self.streams.remove(&slot);
                    if let Some(stream) = stream.filter(|s| !s.inbox.is_empty()) {
                        return Err(format!(
                            "slot {slot} exited with {} protocol bytes not decoded",
                            stream.inbox.len()
                        )
                        .into());
                    }
                    (slot, Seen::Exited { code, signal })
                }
                hello @ FromLauncher::Hello { .. } => {
                    return Err(format!("a second hello: {hello:?}").into())
                }
            };
            return Ok(seen);
        }
    }

    fn send(&mut self, request: &ToLauncher) -> Result<(), Failed> {
        let mut bytes = Vec::new();
        LauncherLink::encode(request, &mut bytes)?;
        let input = self
            .input
            .as_mut()
            .ok_or("the launcher's input is closed")?;
        input.write_all(&bytes)?;
        input.flush()?;
        Ok(())
    }

    fn send_to_worker(&mut self, slot: u32, message: &ToWorker) -> Result<(), Failed> {
        let mut bytes = Vec::new();
        write_frame(&mut bytes, message)?;
        self.send(&ToLauncher::Data { slot, bytes })
    }

    /// Spawns `slots` at once and completes every worker's handshake for
    /// model `model`; returns how long it took from Spawn to the last Ready.
    fn spawn_ready(&mut self, slots: &[u32], model: &str) -> Result<Duration, Failed> {
        let start = Instant::now();
        self.send(&ToLauncher::Spawn {
            slots: slots.to_vec(),
        })?;
        let mut waiting: BTreeSet<u32> = slots.iter().copied().collect();
        let mut spawned = BTreeMap::new();
        while !waiting.is_empty() {
            let (slot, seen) = self.next_seen()?;
            match seen {
                Seen::Spawned(pid) => {
                    spawned.insert(slot, pid);
                }
                Seen::Worker(FromWorker::Hello { protocol, pid, .. }) => {
                    if protocol != PROTOCOL_VERSION || spawned.get(&slot) != Some(&pid) {
                        return Err(format!(
                            "slot {slot}: worker hello with protocol {protocol}, pid {pid} \
                             (spawned: {spawned:?})"
                        )
                        .into());
                    }
                    self.send_to_worker(
                        slot,
                        &ToWorker::Init {
                            protocol: PROTOCOL_VERSION,
                            model: otwrap_runtime::worker::protocol::ModelRef::Compiled(
                                model.to_string(),
                            ),
                        },
                    )?;
                }
                Seen::Worker(FromWorker::Ready) => {
                    if !waiting.remove(&slot) {
                        return Err(format!("slot {slot} was ready twice").into());
                    }
                }
                other => return Err(format!("slot {slot} during its handshake: {other:?}").into()),
            }
        }
        Ok(start.elapsed())
    }

    /// Sends one point of model `M` to a slot.
    fn evaluate<M: Model>(
        &mut self,
        slot: u32,
        index: u64,
        input: &M::Input,
    ) -> Result<(), Failed> {
        let input = otwrap_runtime::codec::encode(input)?;
        self.send_to_worker(slot, &ToWorker::Evaluate { index, input })
    }

    /// The launcher's own end: waits for it to exit.
    fn wait_exit(&mut self) -> Result<std::process::ExitStatus, Failed> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.process.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.process.kill();
                return Err("the launcher did not exit within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The pid of the latest worker of `slot`.
    fn pid_of(&self, slot: u32) -> Result<u32, Failed> {
        Ok(self
            .latest
            .get(&slot)
            .copied()
            .ok_or("no worker in that slot")?)
    }

    /// Every pid it reported that still exists (live or zombie).
    fn pids_left(&self) -> Vec<u32> {
        self.pids
            .keys()
            .copied()
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
            .collect()
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        // A failed test must not leave its launcher behind (its workers
        // follow it through their parent-death signal).
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn result_of<M: Model>(outcome: &Result<Vec<u8>, otwrap::Failed>) -> Result<M::Output, Failed> {
    match outcome {
        Ok(bytes) => Ok(otwrap_runtime::codec::decode::<M::Output>(bytes)?),
        Err(failed) => Err(format!("the model failed: {failed:?}").into()),
    }
}

/// 32 slots spawned at once, each through the worker handshake; 400 points
/// of two models spread over them with exact values; then a shutdown that
/// reports every worker's clean exit and leaves no process.
fn thirty_two_slots_evaluate_exactly() -> Result<(), Failed> {
    let mut launcher = Launcher::start()?;
    let slots: Vec<u32> = (0..32).collect();
    let took = launcher.spawn_ready(&slots, <affine::Model as Model>::ID)?;
    println!(
        "launcher: 32 slots from Spawn to all Ready in {:.1} ms",
        took.as_secs_f64() * 1e3
    );
    // A second model on 8 more slots of the same launcher.
    let wave_slots: Vec<u32> = (100..108).collect();
    launcher.spawn_ready(&wave_slots, <wave::Model as Model>::ID)?;

    let points: u64 = 400;
    let mut todo: VecDeque<u64> = (0..points).collect();
    let mut done = BTreeMap::new();
    let mut per_slot: BTreeMap<u32, usize> = BTreeMap::new();
    let mut busy: BTreeMap<u32, u64> = BTreeMap::new();
    for &slot in slots.iter().chain(&wave_slots) {
        if let Some(i) = todo.pop_front() {
            send_point(&mut launcher, slot, i)?;
            busy.insert(slot, i);
        }
    }
    while done.len() < points as usize {
        let (slot, seen) = launcher.next_seen()?;
        let Seen::Worker(FromWorker::Result { index, outcome }) = seen else {
            return Err(format!("slot {slot} while evaluating: {seen:?}").into());
        };
        if busy.remove(&slot) != Some(index) {
            return Err(format!("slot {slot} answered point {index}, not its own").into());
        }
        let bits = if slot >= 100 {
            let x = index as f64 * 0.37;
            let got = result_of::<wave::Model>(&outcome)?;
            if got.to_bits() != wave(x).to_bits() {
                return Err(format!("wave({x}) = {got} on slot {slot}, not {}", wave(x)).into());
            }
            got.to_bits()
        } else {
            let got = result_of::<affine::Model>(&outcome)?;
            if got != index * 3 + 1 {
                return Err(format!("affine({index}) = {got} on slot {slot}").into());
            }
            got
        };
        if done.insert(index, bits).is_some() {
            return Err(format!("point {index} answered twice").into());
        }
        *per_slot.entry(slot).or_default() += 1;
        if let Some(i) = todo.pop_front() {
            send_point(&mut launcher, slot, i)?;
            busy.insert(slot, i);
        }
    }
    if per_slot.len() != 40 {
        return Err(format!("only {} of 40 slots evaluated points", per_slot.len()).into());
    }
    launcher.send(&ToLauncher::Shutdown)?;
    let mut exited = BTreeSet::new();
    while exited.len() < 40 {
        match launcher.next_seen()? {
            (
                slot,
                Seen::Exited {
                    code: Some(0),
                    signal: None,
                },
            ) => {
                if !exited.insert(slot) {
                    return Err(format!("slot {slot} exited twice").into());
                }
            }
            (slot, other) => return Err(format!("slot {slot} at shutdown: {other:?}").into()),
        }
    }
    if let Some(event) = launcher.next_event()? {
        return Err(format!("after the last exit: {event:?}").into());
    }
    let status = launcher.wait_exit()?;
    if !status.success() {
        return Err(format!("the launcher ended with {status} after a shutdown").into());
    }
    let left = launcher.pids_left();
    if !left.is_empty() {
        return Err(format!("worker processes {left:?} outlived the shutdown").into());
    }
    return Ok(());

    fn send_point(launcher: &mut Launcher, slot: u32, i: u64) -> Result<(), Failed> {
        if slot >= 100 {
            launcher.evaluate::<wave::Model>(slot, i, &(i as f64 * 0.37))
        } else {
            launcher.evaluate::<affine::Model>(slot, i, &i)
        }
    }
}

/// A worker that aborts reports its earlier results, then `Exited` with
/// SIGABRT; the other slot goes on; the slot can be spawned again, but not
/// while its worker lives.
fn an_aborting_worker_exits_after_its_results() -> Result<(), Failed> {
    let mut launcher = Launcher::start()?;
    launcher.spawn_ready(&[0, 1], <crashy::Model as Model>::ID)?;
    launcher.send(&ToLauncher::Spawn { slots: vec![1] })?;
    match launcher.next_seen()? {
        (1, Seen::SpawnFailed(message)) if message.contains("still has its worker") => {}
        other => return Err(format!("a busy slot should refuse a spawn: {other:?}").into()),
    }
    // Sent all at once: the worker answers 1 and 2, then aborts on 3.
    for k in [1u32, 2, 3] {
        launcher.evaluate::<crashy::Model>(0, u64::from(k), &k)?;
    }
    let mut results = Vec::new();
    loop {
        match launcher.next_seen()? {
            (0, Seen::Worker(FromWorker::Result { index, outcome })) => {
                results.push((index, result_of::<crashy::Model>(&outcome)?));
            }
            (0, Seen::Exited { code, signal }) => {
                if code.is_some() || signal != Some(libc::SIGABRT) {
                    return Err(format!("exit code {code:?}, signal {signal:?}").into());
                }
                break;
            }
            other => return Err(format!("unexpected: {other:?}").into()),
        }
    }
    if results != [(1, 2), (2, 4)] {
        return Err(format!("results before the abort: {results:?}").into());
    }
    launcher.evaluate::<crashy::Model>(1, 4, &4)?;
    match launcher.next_seen()? {
        (1, Seen::Worker(FromWorker::Result { index: 4, outcome })) => {
            if result_of::<crashy::Model>(&outcome)? != 8 {
                return Err("the other slot answered wrong".into());
            }
        }
        other => return Err(format!("the other slot: {other:?}").into()),
    }
    // Slot 0 again, with a new worker.
    launcher.spawn_ready(&[0], <crashy::Model as Model>::ID)?;
    launcher.evaluate::<crashy::Model>(0, 5, &5)?;
    match launcher.next_seen()? {
        (0, Seen::Worker(FromWorker::Result { index: 5, outcome })) => {
            if result_of::<crashy::Model>(&outcome)? != 10 {
                return Err("the respawned slot answered wrong".into());
            }
        }
        other => return Err(format!("the respawned slot: {other:?}").into()),
    }
    // A worker that exits while a forked child holds its output open is
    // still seen to exit, and the child is killed with its group.
    let worker = launcher.pid_of(0)?;
    launcher.evaluate::<crashy::Model>(0, 7, &7)?;
    match launcher.next_seen()? {
        (
            0,
            Seen::Exited {
                code: Some(3),
                signal: None,
            },
        ) => {}
        other => return Err(format!("slot 0 should exit with status 3: {other:?}").into()),
    }
    let left = group_members(worker);
    if !left.is_empty() {
        return Err(format!("processes {left:?} of the worker's group outlived it").into());
    }
    Ok(())
}

/// The processes (zombies aside) whose process group is `group`.
fn group_members(group: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // After the command name: state, ppid, pgrp.
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
            fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string()
        })
        .collect()
}

/// `Kill` of a slot running a real external program (a shell that runs a
/// `sleep` of its own) ends that whole tree; the launcher's other slot
/// keeps working.
fn kill_ends_the_slots_process_tree() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let script = write_script(dir.path())?;
    let tag = unique_tag(41);
    let mut launcher = Launcher::start()?;
    launcher.spawn_ready(&[0, 1], <solver::Model as Model>::ID)?;
    let point = (SLOW, script.display().to_string(), tag.clone());
    launcher.evaluate::<solver::Model>(0, 0, &point)?;
    wait_for_solvers(&tag, 1, &mut launcher.process)?;
    let worker = launcher.pid_of(0)?;
    launcher.send(&ToLauncher::Kill { slot: 0 })?;
    match launcher.next_seen()? {
        (
            0,
            Seen::Exited {
                code: None,
                signal: Some(libc::SIGKILL),
            },
        ) => {}
        other => return Err(format!("a killed slot should exit by SIGKILL: {other:?}").into()),
    }
    if Path::new(&format!("/proc/{worker}")).exists() {
        return Err(
            format!("the killed worker {worker} is still in /proc after its Exited").into(),
        );
    }
    none_left(&tag, "a Kill of its slot")?;
    let other_tag = unique_tag(42);
    let fast = (solver_tree::FAST, script.display().to_string(), other_tag);
    launcher.evaluate::<solver::Model>(1, 1, &fast)?;
    match launcher.next_seen()? {
        (1, Seen::Worker(FromWorker::Result { index: 1, outcome })) => {
            result_of::<solver::Model>(&outcome)?
                .eq(&solver_tree::FAST)
                .then_some(())
                .ok_or("the other slot answered wrong")?;
        }
        other => return Err(format!("the other slot after the kill: {other:?}").into()),
    }
    Ok(())
}

/// The driver's end of the launcher's input closes (its process or its SSH
/// channel is gone): every slot worker is killed, a busy one's program tree
/// too, and the launcher exits.
fn closed_input_kills_every_worker() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let script = write_script(dir.path())?;
    let tag = unique_tag(43);
    let mut launcher = Launcher::start()?;
    let slots: Vec<u32> = (0..6).collect();
    launcher.spawn_ready(&slots, <solver::Model as Model>::ID)?;
    let point = (SLOW, script.display().to_string(), tag.clone());
    launcher.evaluate::<solver::Model>(2, 0, &point)?;
    wait_for_solvers(&tag, 1, &mut launcher.process)?;
    if launcher.pids.len() != 6 || launcher.pids_left().len() != 6 {
        return Err(format!("6 workers should run: {:?}", launcher.pids).into());
    }
    launcher.input = None;
    let status = launcher.wait_exit()?;
    if !status.success() {
        return Err(format!("the launcher ended with {status} when its input closed").into());
    }
    let left = launcher.pids_left();
    if !left.is_empty() {
        return Err(format!("worker processes {left:?} outlived the launcher").into());
    }
    none_left(&tag, "the launcher's input closing")
}

/// A driver that sends garbage is refused: every worker is killed and the
/// launcher exits non-zero.
fn a_corrupt_request_stops_the_launcher() -> Result<(), Failed> {
    let mut launcher = Launcher::start()?;
    launcher.spawn_ready(&[0, 1], <affine::Model as Model>::ID)?;
    let input = launcher.input.as_mut().ok_or("no input")?;
    input.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff])?;
    input.flush()?;
    let status = launcher.wait_exit()?;
    if status.code() != Some(70) {
        return Err(format!("the launcher ended with {status}, not status 70").into());
    }
    let left = launcher.pids_left();
    if !left.is_empty() {
        return Err(format!("worker processes {left:?} outlived the launcher").into());
    }
    Ok(())
}

#[otwrap::main]
fn main() {
    let mut args = Arguments::from_args();
    // Tens of worker processes per case: one case at a time on 2 CPUs.
    args.test_threads = Some(1);
    let tests = vec![
        Trial::test(
            "launcher_thirty_two_slots_evaluate_exactly",
            thirty_two_slots_evaluate_exactly,
        ),
        Trial::test(
            "launcher_an_aborting_worker_exits_after_its_results",
            an_aborting_worker_exits_after_its_results,
        ),
        Trial::test(
            "launcher_kill_ends_the_slots_process_tree",
            kill_ends_the_slots_process_tree,
        ),
        Trial::test(
            "launcher_closed_input_kills_every_worker",
            closed_input_kills_every_worker,
        ),
        Trial::test(
            "launcher_a_corrupt_request_stops_the_launcher",
            a_corrupt_request_stops_the_launcher,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
