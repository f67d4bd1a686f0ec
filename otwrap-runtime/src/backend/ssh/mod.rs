//! The `ssh` backend: worker processes on SSH hosts, on the worker
//! [`pool`](super::pool) like `processes`. This file is only the SSH
//! transport: one connection per host, opened in parallel (at most
//! [`CONNECTING_AT_ONCE`] handshakes at a time, under OpenSSH's
//! `MaxStartups`), the worker binary copied once, and ONE remote command per
//! host: a launcher (the same binary in launcher mode) that forks every slot
//! worker of the host and carries their streams over its single channel.
//! One login shell per host instead of one per slot is what makes start-up
//! fast (module-heavy login shells on clusters cost CPU), and one channel
//! per host is under any `MaxSessions`.
//!
//! Each connection is driven by a thread of its own, without blocking;
//! the pool talks to it through a command queue and an eventfd that wakes it.
//! A connection lost mid-run reports every worker of its host as vanished
//! (an infrastructure loss: their points run again elsewhere, `retries`
//! times at most) and is opened again a few times if the host had worked;
//! a host that never worked is reported once and skipped.

mod channel;
mod deploy;
mod session;

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ssh2::Session;

use crate::config::{Backend, HostSpec};
use crate::core::{Ending, Location};
use crate::error::Error;
use crate::model::Model;
use crate::worker::launcher::{FromLauncher, ToLauncher};
use crate::worker::protocol::{launch_env_value, WORKER_ENV};

use super::pool::{self, News, Transport, WorkerId};
use super::{Event, Executor, Job};
use crate::worker::client::Lines;
use channel::{Broken, LauncherChan, WorkerStream};
use deploy::{shell_quote, LocalBinary};
use session::Access;

/// Connections being opened at once (OpenSSH starts refusing unauthenticated
/// connections beyond `MaxStartups`, 10 by default).
pub(crate) const CONNECTING_AT_ONCE: usize = 8;
/// How often an idle connection is probed.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// Attempts to open a connection again after it was lost.
const MAX_RECONNECTS: u32 = 3;
/// How long the pool waits for a host to report a killed worker's end.
const ENDING_WAIT: Duration = Duration::from_secs(10);
/// The most points sent ahead to one worker (when points are short: see
/// the pool); a round trip over SSH costs tens of microseconds.
const DEPTH: usize = 8;

pub(crate) struct Ssh;

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
        let hosts = settings.ssh.hosts.clone().unwrap_or_default();
        if hosts.is_empty() {
            return Err(fail("no host to run on: set `hosts`".into()));
        }
        let binary = match &settings.ssh.worker_path {
            Some(_) => None,
            None => {
                let exe = super::worker_exe(settings.worker_exe.as_deref()).map_err(fail)?;
                Some(LocalBinary::open(&exe).map_err(fail)?)
            }
        };
        let plan = Arc::new(Plan {
            access: Access::from_options(&settings.ssh),
            binary,
            shared_path: settings.ssh.worker_path.clone(),
            remote_dir: settings
                .ssh
                .remote_dir
                .clone()
                .unwrap_or_else(|| ".cache/otwrap/workers".to_string()),
            gate: Gate::new(CONNECTING_AT_ONCE),
        });
        let mut transport = SshTransport::new(hosts, plan);
        let outcome = pool::run(job, &mut transport, DEPTH, sink);
        transport.close();
        outcome
    }
}

/// How workers are started on the hosts of one batch.
struct Plan {
    access: Access,
    binary: Option<LocalBinary>,
    shared_path: Option<PathBuf>,
    remote_dir: String,
    gate: Gate,
}

/// What the pool asks of a host's connection thread.
enum Command {
    Spawn(Vec<(u32, WorkerId)>),
    Data(u32, Vec<u8>),
    Kill(u32),
    Close(u32),
}

/// Where a host stands, shared by its connection thread and the pool.
#[derive(Default)]
struct HostState {
    /// The endings of its workers, by worker, once known.
    endings: HashMap<(usize, u32), Ending>,
    /// Why the host cannot be used (it never worked, or its connection was
    /// lost for good).
    dead: Option<String>,
}

/// One host: its spec, its slots' numbers, and its connection thread.
struct Host {
    spec: HostSpec,
    commands: Option<Sender<Command>>,
    wake: Arc<Wake>,
    thread: Option<JoinHandle<()>>,
}

struct SshTransport {
    hosts: Vec<Host>,
    /// Global slot → (host, slot on that host).
    slots: Vec<(usize, u32)>,
    plan: Arc<Plan>,
    state: Arc<(Mutex<Vec<HostState>>, Condvar)>,
}

impl SshTransport {
    fn new(specs: Vec<HostSpec>, plan: Arc<Plan>) -> SshTransport {
        let mut slots = Vec::new();
        for (h, spec) in specs.iter().enumerate() {
            for k in 0..spec.slots {
                slots.push((h, u32::try_from(k).unwrap_or(u32::MAX)));
            }
        }
        let state = Arc::new((
            Mutex::new(specs.iter().map(|_| HostState::default()).collect()),
            Condvar::new(),
        ));
        let hosts = specs
            .into_iter()
            .map(|spec| Host {
                spec,
                commands: None,
                wake: Arc::new(Wake::new()),
                thread: None,
            })
            .collect();
        SshTransport {
            hosts,
            slots,
            plan,
            state,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<HostState>> {
        self.state.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn command(&self, host: usize, command: Command) -> Result<(), String> {
        let h = &self.hosts[host];
        let sent = h
            .commands
            .as_ref()
            .ok_or("the host has no connection")?
            .send(command)
            .map_err(|_| format!("the connection to {} is gone", h.spec));
        h.wake.wake();
        sent
    }

    /// Ends every connection: the launchers see their input close and end
    /// their workers.
    fn close(&mut self) {
        for host in &mut self.hosts {
            host.commands = None;
            host.wake.wake();
        }
        for host in &mut self.hosts {
            if let Some(thread) = host.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for SshTransport {
    fn drop(&mut self) {
        self.close();
    }
}

impl Transport for SshTransport {
    fn slots(&self) -> usize {
        self.slots.len()
    }

    fn start(
        &mut self,
        workers: &[WorkerId],
        news: &Sender<(WorkerId, News)>,
    ) -> Vec<(WorkerId, Result<(), String>)> {
        let mut results = Vec::new();
        let mut by_host: HashMap<usize, Vec<(u32, WorkerId)>> = HashMap::new();
        for &id in workers {
            let (h, k) = self.slots[id.slot];
            let dead = {
                let mut state = self.lock();
                state[h].endings.remove(&(id.slot, id.generation));
                state[h].dead.clone()
            };
            match dead {
                Some(why) => results.push((id, Err(why))),
                None => by_host.entry(h).or_default().push((k, id)),
            }
        }
        for (h, spawn) in by_host {
            if self.hosts[h].commands.is_none() {
                let (tx, rx) = mpsc::channel();
                let connection = Connection {
                    host: h,
                    spec: self.hosts[h].spec.clone(),
                    plan: Arc::clone(&self.plan),
                    state: Arc::clone(&self.state),
                    news: news.clone(),
                    commands: rx,
                    wake: Arc::clone(&self.hosts[h].wake),
                    live: HashMap::new(),
                    waiting: Vec::new(),
                    up: false,
                };
                let name = format!("otwrap-ssh-{}", self.hosts[h].spec.host);
                match std::thread::Builder::new()
                    .name(name)
                    .spawn(move || connection.run())
                {
                    Ok(thread) => {
                        self.hosts[h].commands = Some(tx);
                        self.hosts[h].thread = Some(thread);
                    }
                    Err(e) => {
                        let why = format!("cannot start a connection thread: {e}");
                        results.extend(spawn.iter().map(|&(_, id)| (id, Err(why.clone()))));
                        continue;
                    }
                }
            }
            let ids: Vec<WorkerId> = spawn.iter().map(|&(_, id)| id).collect();
            match self.command(h, Command::Spawn(spawn)) {
                Ok(()) => results.extend(ids.into_iter().map(|id| (id, Ok(())))),
                Err(why) => results.extend(ids.into_iter().map(|id| (id, Err(why.clone())))),
            }
        }
        results
    }

    fn send(&mut self, id: WorkerId, bytes: &[u8]) -> Result<(), String> {
        let (h, k) = self.slots[id.slot];
        self.command(h, Command::Data(k, bytes.to_vec()))
    }

    fn kill(&mut self, id: WorkerId) {
        let (h, k) = self.slots[id.slot];
        let _ = self.command(h, Command::Kill(k));
    }

    fn ending(&mut self, id: WorkerId) -> Ending {
        let (h, _) = self.slots[id.slot];
        let key = (id.slot, id.generation);
        let deadline = Instant::now() + ENDING_WAIT;
        let (lock, changed) = &*self.state;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(ending) = state[h].endings.get(&key) {
                return ending.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                return Ending::Vanished(format!(
                    "{} did not report its end within {} s",
                    self.hosts[h].spec,
                    ENDING_WAIT.as_secs()
                ));
            }
            state = changed
                .wait_timeout(state, deadline - now)
                .map(|(s, _)| s)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    fn retire(&mut self, id: WorkerId) {
        let (h, k) = self.slots[id.slot];
        let _ = self.command(h, Command::Close(k));
    }

    fn location(&self, id: WorkerId, pid: Option<u32>) -> Location {
        let (h, _) = self.slots[id.slot];
        Location {
            host: self.hosts[h].spec.to_string(),
            backend: Backend::Ssh.name().to_string(),
            pid,
            workdir: None,
            log: None,
        }
    }

    fn local_workdirs(&self) -> bool {
        false
    }

    fn program(&self, worker: WorkerId) -> String {
        let (h, _) = self.slots[worker.slot];
        format!("the worker program on {}", self.hosts[h].spec)
    }

    fn nowhere_left(&self) -> (&'static str, &'static str) {
        (
            "no host could start a worker",
            "no SSH host was left to run it",
        )
    }
}

/// An eventfd: the pool wakes a connection thread blocked in poll(2).
struct Wake(RawFd);

impl Wake {
    fn new() -> Wake {
        // SAFETY: creates a new descriptor owned by this value.
        Wake(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
    }

    fn wake(&self) {
        if self.0 >= 0 {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a valid u64 to our own eventfd.
            unsafe {
                libc::write(self.0, (&one as *const u64).cast(), 8);
            }
        }
    }

    fn clear(&self) {
        if self.0 >= 0 {
            let mut value: u64 = 0;
            // SAFETY: reads 8 bytes into a valid u64 from our own eventfd.
            unsafe {
                libc::read(self.0, (&mut value as *mut u64).cast(), 8);
            }
        }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        if self.0 >= 0 {
            // SAFETY: closes the descriptor this value owns.
            unsafe {
                libc::close(self.0);
            }
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

/// A worker of this host, by its slot on the host.
struct Live {
    id: WorkerId,
    stream: WorkerStream,
    stderr: Lines,
}

/// Why a connection stopped.
enum Stop {
    /// The pool is done with the host.
    Done,
    /// The connection failed.
    Lost(String),
}

/// The thread of one host's connection.
struct Connection {
    host: usize,
    spec: HostSpec,
    plan: Arc<Plan>,
    state: Arc<(Mutex<Vec<HostState>>, Condvar)>,
    news: Sender<(WorkerId, News)>,
    commands: Receiver<Command>,
    wake: Arc<Wake>,
    live: HashMap<u32, Live>,
    /// Spawns asked for while no launcher runs.
    waiting: Vec<(u32, WorkerId)>,
    /// Whether a launcher of this host ever greeted.
    up: bool,
}

impl Connection {
    fn run(mut self) {
        let mut failures = 0;
        loop {
            let why = match self.connect() {
                Ok((conn, chan)) => match self.serve(&conn, chan) {
                    Stop::Done => return,
                    Stop::Lost(why) => why,
                },
                Err(why) => why,
            };
            // Every worker of the host is gone with its connection.
            self.lose_all(&why);
            failures += 1;
            tracing::warn!(host = %self.spec, "ssh connection lost: {why}");
            if !self.up || failures >= MAX_RECONNECTS {
                let when = if self.up { "lost" } else { "skipped" };
                eprintln!("otwrap: ssh host {} {when}: {why}", self.spec);
                self.die(format!("{}: {why}", self.spec));
                return;
            }
            std::thread::sleep(Duration::from_millis(200 * u64::from(failures)));
        }
    }

    /// Connects, makes sure the worker binary is there, and starts the
    /// launcher.
    fn connect(&mut self) -> Result<(Conn, LauncherChan), String> {
        let conn = {
            let _turn = self.plan.gate.enter();
            session::connect(&self.spec, &self.plan.access)?
        };
        let path = self.remote_path(&conn.session)?;
        conn.session
            .set_keepalive(false, KEEPALIVE.as_secs() as u32);
        // POSIX shell syntax (sh, bash, zsh, ksh login shells). `exec` by the
        // shell itself, not through `env`: execvp would retry a binary of the
        // wrong architecture as a shell script and hide the real error.
        let command = format!(
            "{WORKER_ENV}={}; export {WORKER_ENV}; exec {}",
            launch_env_value(),
            shell_quote(&path.to_string_lossy())
        );
        conn.session.set_blocking(true);
        let channel = conn
            .session
            .channel_session()
            .map_err(|e| format!("cannot open an SSH channel: {e}"))
            .and_then(|mut channel| {
                channel
                    .exec(&command)
                    .map_err(|e| format!("cannot run the worker command: {e}"))
                    .map(|()| channel)
            });
        conn.session.set_blocking(false);
        let chan = LauncherChan::new(channel?, self.spec.to_string());
        Ok((conn, chan))
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
            .map_err(|e| format!("{e} (host {})", self.spec))?;
        if copied {
            tracing::info!(host = %self.spec, path = %path.display(), bytes = binary.size,
                seconds = started.elapsed().as_secs_f64(), "worker binary copied");
        }
        Ok(path)
    }

    /// Moves bytes between the pool and the launcher until the pool is done
    /// with the host or the connection fails.
    fn serve(&mut self, conn: &Conn, mut chan: LauncherChan) -> Stop {
        let mut last_traffic = Instant::now();
        // Spawns asked for before (or between) connections.
        let waiting = std::mem::take(&mut self.waiting);
        if !waiting.is_empty() {
            self.spawn(&mut chan, waiting);
        }
        loop {
            self.wake.clear();
            let mut moved = false;
            // The pool's commands.
            loop {
                match self.commands.try_recv() {
                    Ok(command) => {
                        moved = true;
                        self.obey(&mut chan, command);
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        chan.close();
                        return Stop::Done;
                    }
                }
            }
            // The launcher's news.
            match chan.pump() {
                Ok(p) => moved |= p,
                Err(Broken::Connection(why) | Broken::Ended(why)) => {
                    return Stop::Lost(self.launcher_failure(why, &chan));
                }
            }
            loop {
                match chan.next_event() {
                    Ok(Some(event)) => self.heard(event),
                    Ok(None) => break,
                    Err(why) => return Stop::Lost(self.launcher_failure(why, &chan)),
                }
            }
            if chan.greeted() && !self.up {
                self.up = true;
            }
            match chan.flush() {
                Ok(sent) => moved |= sent,
                Err(Broken::Connection(why) | Broken::Ended(why)) => return Stop::Lost(why),
            }
            if moved {
                last_traffic = Instant::now();
                continue;
            }
            if last_traffic.elapsed() >= KEEPALIVE {
                match conn.session.keepalive_send() {
                    Ok(_) => last_traffic = Instant::now(),
                    Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {}
                    Err(e) => return Stop::Lost(format!("the connection failed: {e}")),
                }
            }
            wait(&conn.session, conn.fd, self.wake.0);
        }
    }

    /// What the launcher's failure says, with what the host wrote on the
    /// channel's stderr (a shell that cannot run the binary says why there).
    fn launcher_failure(&self, why: String, chan: &LauncherChan) -> String {
        let said = chan.stderr_tail();
        let mut text = if chan.greeted() {
            why
        } else {
            format!("the worker program on {} could not start: {why}", self.spec)
        };
        if !said.is_empty() {
            text.push_str(&format!("; the host said:\n{said}"));
        }
        text
    }

    fn obey(&mut self, chan: &mut LauncherChan, command: Command) {
        match command {
            Command::Spawn(slots) => self.spawn(chan, slots),
            Command::Data(slot, bytes) => chan.send(&ToLauncher::Data { slot, bytes }),
            Command::Kill(slot) => chan.send(&ToLauncher::Kill { slot }),
            Command::Close(slot) => chan.send(&ToLauncher::Close { slot }),
        }
    }

    fn spawn(&mut self, chan: &mut LauncherChan, slots: Vec<(u32, WorkerId)>) {
        let numbers = slots.iter().map(|&(k, _)| k).collect();
        for (k, id) in slots {
            self.live.insert(
                k,
                Live {
                    id,
                    stream: WorkerStream::default(),
                    stderr: Lines::default(),
                },
            );
        }
        chan.send(&ToLauncher::Spawn { slots: numbers });
    }

    fn heard(&mut self, event: FromLauncher) {
        match event {
            FromLauncher::Hello { .. } | FromLauncher::Spawned { .. } => {}
            FromLauncher::SpawnFailed { slot, message } => {
                self.ended(slot, Ending::Vanished(message));
            }
            FromLauncher::Data { slot, bytes } => {
                let Some(live) = self.live.get_mut(&slot) else {
                    return;
                };
                live.stream.push(&bytes);
                while let Some(news) = live.stream.next() {
                    let _ = self.news.send((live.id, news));
                }
            }
            FromLauncher::Stderr { slot, bytes } => {
                let Some(live) = self.live.get_mut(&slot) else {
                    return;
                };
                for line in live.stderr.push(&bytes) {
                    eprintln!("[otwrap {} worker] {line}", self.spec);
                    let _ = self.news.send((live.id, News::Stderr(line)));
                }
            }
            FromLauncher::Exited { slot, code, signal } => {
                let ending = match (code, signal) {
                    (_, Some(signal)) => Ending::Signal(signal),
                    (Some(code), None) => Ending::Exit(code),
                    (None, None) => Ending::Vanished("ended".into()),
                };
                self.ended(slot, ending);
            }
        }
    }

    /// Records how a worker ended, then tells the pool its output closed.
    fn ended(&mut self, slot: u32, ending: Ending) {
        let Some(mut live) = self.live.remove(&slot) else {
            return;
        };
        if let Some(line) = live.stderr.finish() {
            let _ = self.news.send((live.id, News::Stderr(line)));
        }
        self.record(live.id, ending);
        let _ = self.news.send((live.id, News::Closed("exited".into())));
    }

    fn record(&self, id: WorkerId, ending: Ending) {
        let (lock, changed) = &*self.state;
        let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
        state[self.host]
            .endings
            .insert((id.slot, id.generation), ending);
        changed.notify_all();
    }

    /// The connection is gone: so is every worker of the host.
    fn lose_all(&mut self, why: &str) {
        let lost: Vec<u32> = self.live.keys().copied().collect();
        for slot in lost {
            let Some(live) = self.live.get(&slot) else {
                continue;
            };
            // Spawns not yet answered are asked again of the next launcher.
            if !live.stream.started() && self.up {
                self.waiting.push((slot, live.id));
                self.live.remove(&slot);
                continue;
            }
            self.ended(
                slot,
                Ending::Vanished(format!("the connection to {} was lost: {why}", self.spec)),
            );
        }
    }

    /// The host is given up: every worker waiting for it fails, and later
    /// starts are refused at once.
    fn die(&mut self, why: String) {
        {
            let (lock, changed) = &*self.state;
            let mut state = lock.lock().unwrap_or_else(|p| p.into_inner());
            state[self.host].dead = Some(why.clone());
            changed.notify_all();
        }
        let waiting = std::mem::take(&mut self.waiting);
        for (slot, id) in waiting {
            self.live.insert(
                slot,
                Live {
                    id,
                    stream: WorkerStream::default(),
                    stderr: Lines::default(),
                },
            );
            self.ended(slot, Ending::Vanished(why.clone()));
        }
        // Spawns that arrive from now on fail at once.
        while let Ok(command) = self.commands.recv() {
            if let Command::Spawn(slots) = command {
                for (_, id) in slots {
                    self.record(id, Ending::Vanished(why.clone()));
                    let _ = self.news.send((id, News::Closed(why.clone())));
                }
            }
        }
    }
}

/// Waits until the socket is ready in the direction libssh2 needs, the pool
/// wakes us, or 100 ms pass (so that keepalives are sent).
fn wait(session: &Session, fd: RawFd, wake: RawFd) {
    let events = match session.block_directions() {
        ssh2::BlockDirections::Outbound => libc::POLLOUT,
        ssh2::BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
        _ => libc::POLLIN,
    };
    quick_ack(fd);
    let mut fds = [
        libc::pollfd {
            fd,
            events,
            revents: 0,
        },
        libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: two valid pollfds on descriptors this connection owns.
    unsafe {
        libc::poll(fds.as_mut_ptr(), 2, 100);
    }
}

/// Asks the kernel to acknowledge what arrives at once instead of delaying
/// the ACK (Linux resets this after some reads, so it is set before each
/// wait). sshd does not disable Nagle's algorithm on non-terminal sessions:
/// a small answer sent while an earlier small packet (a window adjust) is
/// unacknowledged waits for our ACK, which a delayed ACK holds for up to
/// 40 ms.
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
