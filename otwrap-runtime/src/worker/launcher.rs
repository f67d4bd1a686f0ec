//! Launcher mode: one process per host (or per SSH connection, or per
//! `srun` step) that starts the slot workers itself and carries all their
//! protocol streams over its own standard input and output, so a host pays
//! one remote command and one login shell, not one per slot.
//!
//! The stream is the worker protocol's framing (a little-endian `u32`
//! length, then a bincode payload). The launcher writes [`LAUNCHER_MAGIC`]
//! and a [`FromLauncher::Hello`] first, then serves [`ToLauncher`] requests;
//! each slot worker's own protocol bytes travel unchanged inside
//! [`ToLauncher::Data`] and [`FromLauncher::Data`], so the driver decodes
//! them with the same per-worker code as for a directly started worker.
//!
//! The launcher is one thread around `poll(2)`: the driver's input, and for
//! each worker its stdout, stderr and (while bytes wait for it) stdin, all
//! without blocking; a hundred workers cost a hundred small buffers, not a
//! hundred threads. A worker's exit is seen on its pidfd (Linux), or else
//! when its protocol output ends; it is reported after its output is read
//! to the end. Nothing outlives the driver: when the launcher's input
//! ends (the driver exited, the SSH channel closed) it kills every worker's
//! process group and exits, and each worker carries a parent-death signal
//! in case the launcher itself is killed.
//!
//! [`LauncherLink`] is the driver's side: a codec without I/O, fed the bytes
//! the launcher wrote, so a non-blocking SSH loop and a test can drive it
//! alike.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, ExitStatus};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::protocol::{decode_frame, write_frame, FrameError, PROTOCOL_VERSION};

/// The bytes a launcher writes first (a worker writes
/// [`MAGIC`](super::protocol::MAGIC) instead).
pub const LAUNCHER_MAGIC: &[u8; 8] = b"OTWRAPL\x01";

/// Driver to launcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToLauncher {
    /// Starts one worker per slot, all at once; each answers
    /// [`FromLauncher::Spawned`] or [`FromLauncher::SpawnFailed`]. A slot
    /// number may be used again once its worker's
    /// [`FromLauncher::Exited`] came.
    Spawn {
        /// The slots to start.
        slots: Vec<u32>,
    },
    /// Bytes for a worker's standard input (its protocol frames).
    Data {
        /// The worker's slot.
        slot: u32,
        /// The bytes, written in order after those sent before.
        bytes: Vec<u8>,
    },
    /// Closes a worker's standard input once the bytes sent before are
    /// written: an idle worker exits, a busy one abandons its point and
    /// ends its process group.
    Close {
        /// The worker's slot.
        slot: u32,
    },
    /// Kills a worker's process group at once (a point past its timeout).
    Kill {
        /// The worker's slot.
        slot: u32,
    },
    /// Closes every worker's input, waits for them to exit (each reported
    /// with [`FromLauncher::Exited`]), then exits; workers still running
    /// after [`SHUTDOWN_GRACE`] are killed.
    Shutdown,
}

/// Launcher to driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromLauncher {
    /// The first message, after [`LAUNCHER_MAGIC`].
    Hello {
        /// The launcher's protocol version ([`PROTOCOL_VERSION`]).
        protocol: u32,
        /// The otwrap version the launcher was built with.
        version: String,
        /// The launcher's process id.
        pid: u32,
        /// The launcher's host name.
        host: String,
    },
    /// A worker started.
    Spawned {
        /// Its slot.
        slot: u32,
        /// Its process id (and process group id).
        pid: u32,
    },
    /// A worker could not be started.
    SpawnFailed {
        /// Its slot.
        slot: u32,
        /// Why, in words.
        message: String,
    },
    /// Bytes the worker wrote on its protocol output.
    Data {
        /// The worker's slot.
        slot: u32,
        /// The bytes, in order.
        bytes: Vec<u8>,
    },
    /// Bytes the worker (or a program it ran) wrote on its stderr.
    Stderr {
        /// The worker's slot.
        slot: u32,
        /// The bytes, in order (not cut at line ends).
        bytes: Vec<u8>,
    },
    /// A worker ended and was reaped. Comes after the last [`FromLauncher::Data`]
    /// of that worker, and once per worker.
    Exited {
        /// Its slot.
        slot: u32,
        /// Its exit status, when it exited.
        code: Option<i32>,
        /// The signal that killed it, when one did.
        signal: Option<i32>,
    },
}

/// How long workers have to exit after [`ToLauncher::Shutdown`].
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a worker whose protocol output ended may take to exit before
/// its group is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long the stderr of a worker that exited is read (its killed
/// programs may hold it a moment) before the exit is reported.
const STDERR_GRACE: Duration = Duration::from_millis(500);
/// How often exits are looked for while a worker is between the end of its
/// output and its reaping.
const EXIT_POLL: Duration = Duration::from_millis(5);
/// Bytes read at once from a pipe.
const CHUNK: usize = 64 << 10;
/// Output bytes waiting for the driver beyond which workers' output is left
/// in their pipes (they then wait, instead of the launcher growing).
const OUTBOX_HIGH: usize = 8 << 20;

/// Why the driver's side of a launcher stream cannot go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LauncherError {
    /// The program wrote something else than the launcher greeting.
    #[error(
        "it wrote {seen:?} instead of the otwrap launcher greeting: the program started is not \
         an otwrap binary (its `main` must carry `#[otwrap::main]`)"
    )]
    NotALauncher {
        /// What it wrote (its first 200 bytes, lossily).
        seen: String,
    },
    /// The launcher speaks another protocol version.
    #[error(
        "the launcher speaks otwrap worker protocol {launcher} (otwrap {launcher_version}) but this \
         driver speaks protocol {driver} (otwrap {driver_version}): rebuild both with the same \
         otwrap version"
    )]
    OtherProtocol {
        /// The launcher's protocol version.
        launcher: u32,
        /// The launcher's otwrap version.
        launcher_version: String,
        /// This driver's protocol version.
        driver: u32,
        /// This driver's otwrap version.
        driver_version: String,
    },
    /// The first message after the magic is not a `Hello`.
    #[error("the launcher sent {0} instead of its greeting")]
    NoHello(String),
    /// The stream ended before the greeting was complete.
    #[error(
        "the launcher closed its output before its greeting ({got} bytes came{seen}): an otwrap \
         program older than the launcher refuses `OTWRAP_WORKER=otwrap-launch`, and its stderr \
         says why"
    )]
    EndedBeforeGreeting {
        /// Bytes received.
        got: usize,
        /// What came, if anything, formatted for the message.
        seen: String,
    },
    /// The stream ended in the middle of a frame.
    #[error("the launcher's output ended in the middle of a frame ({0} bytes left over)")]
    Truncated(usize),
    /// A frame is corrupt.
    #[error("the launcher's output is corrupt: {0}")]
    Frame(#[from] FrameError),
    /// A message cannot be encoded.
    #[error("cannot encode a message for the launcher: {0}")]
    Encode(String),
}

/// Where the driver's side of a launcher stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum LinkState {
    #[default]
    Magic,
    Hello,
    Open,
}

/// The driver's side of a launcher stream, without I/O: give it what the
/// launcher wrote with [`push_bytes`](LauncherLink::push_bytes), take the
/// messages with [`next_event`](LauncherLink::next_event), and write what
/// [`encode`](LauncherLink::encode) produced to the launcher's input.
///
/// ```
/// use otwrap_runtime::worker::launcher::{FromLauncher, LauncherLink, ToLauncher, LAUNCHER_MAGIC};
/// use otwrap_runtime::worker::protocol::{write_frame, PROTOCOL_VERSION};
///
/// // What a launcher writes first, and a worker's first bytes.
/// let mut stream = LAUNCHER_MAGIC.to_vec();
/// let hello = FromLauncher::Hello {
///     protocol: PROTOCOL_VERSION,
///     version: "0.1.0".into(),
///     pid: 42,
///     host: "node1".into(),
/// };
/// write_frame(&mut stream, &hello)?;
/// write_frame(&mut stream, &FromLauncher::Spawned { slot: 0, pid: 43 })?;
///
/// let mut link = LauncherLink::new();
/// link.push_bytes(&stream[..5]);
/// assert_eq!(link.next_event()?, None);
/// link.push_bytes(&stream[5..]);
/// assert_eq!(link.next_event()?, Some(hello));
/// assert_eq!(link.next_event()?, Some(FromLauncher::Spawned { slot: 0, pid: 43 }));
/// assert_eq!(link.next_event()?, None);
/// link.finish()?; // the stream may end here
///
/// let mut out = Vec::new();
/// LauncherLink::encode(&ToLauncher::Spawn { slots: vec![0, 1] }, &mut out)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct LauncherLink {
    inbox: Vec<u8>,
    /// Bytes of `inbox` already consumed (dropped in bulk, not per frame).
    start: usize,
    state: LinkState,
}

impl LauncherLink {
    /// A link before the launcher's greeting.
    pub fn new() -> LauncherLink {
        LauncherLink::default()
    }

    /// Adds bytes read from the launcher's standard output.
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.inbox.len() / 2 {
            self.inbox.drain(..self.start);
            self.start = 0;
        }
        self.inbox.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` when more bytes are needed. The
    /// first is always the launcher's [`FromLauncher::Hello`], checked
    /// against this driver's protocol version.
    pub fn next_event(&mut self) -> Result<Option<FromLauncher>, LauncherError> {
        if self.state == LinkState::Magic {
            let buf = &self.inbox[self.start..];
            if buf.len() < LAUNCHER_MAGIC.len() {
                return Ok(None);
            }
            if &buf[..LAUNCHER_MAGIC.len()] != LAUNCHER_MAGIC {
                return Err(LauncherError::NotALauncher { seen: shown(buf) });
            }
            self.start += LAUNCHER_MAGIC.len();
            self.state = LinkState::Hello;
        }
        let Some((message, used)) = decode_frame::<FromLauncher>(&self.inbox[self.start..])? else {
            return Ok(None);
        };
        self.start += used;
        if self.state == LinkState::Hello {
            match &message {
                FromLauncher::Hello {
                    protocol, version, ..
                } => {
                    if *protocol != PROTOCOL_VERSION {
                        return Err(LauncherError::OtherProtocol {
                            launcher: *protocol,
                            launcher_version: version.clone(),
                            driver: PROTOCOL_VERSION,
                            driver_version: env!("CARGO_PKG_VERSION").to_string(),
                        });
                    }
                    self.state = LinkState::Open;
                }
                other => return Err(LauncherError::NoHello(format!("{other:?}"))),
            }
        }
        Ok(Some(message))
    }

    /// Whether the launcher's greeting has been read.
    pub fn greeted(&self) -> bool {
        self.state == LinkState::Open
    }

    /// Says whether the launcher's output may end here (call it at the end
    /// of the stream, after taking every message): an error names what was
    /// cut short.
    pub fn finish(&self) -> Result<(), LauncherError> {
        let left = &self.inbox[self.start..];
        match self.state {
            LinkState::Magic if !left.is_empty() && !LAUNCHER_MAGIC.starts_with(left) => {
                Err(LauncherError::NotALauncher { seen: shown(left) })
            }
            LinkState::Magic | LinkState::Hello => Err(LauncherError::EndedBeforeGreeting {
                got: left.len(),
                seen: if left.is_empty() {
                    String::new()
                } else {
                    format!(": {:?}", shown(left))
                },
            }),
            LinkState::Open if !left.is_empty() => Err(LauncherError::Truncated(left.len())),
            LinkState::Open => Ok(()),
        }
    }

    /// Appends one framed message for the launcher's standard input.
    pub fn encode(message: &ToLauncher, out: &mut Vec<u8>) -> Result<(), LauncherError> {
        write_frame(out, message).map_err(|e| LauncherError::Encode(e.to_string()))
    }
}

/// The first bytes of unexpected output, for a message.
fn shown(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        .trim()
        .to_string()
}

/// Runs launcher mode and exits: entered from
/// [`run_if_worker`](super::run_if_worker) when `OTWRAP_WORKER` is
/// [`launch_env_value`](super::protocol::launch_env_value).
pub(crate) fn run() -> ! {
    let code = match Launcher::start().and_then(|mut launcher| launcher.serve()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("otwrap launcher (pid {}): {e}", std::process::id());
            70
        }
    };
    std::process::exit(code)
}

/// One slot's worker process and its pipes.
struct SlotWorker {
    child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    /// Bytes for its stdin not yet written.
    pending: Vec<u8>,
    /// Close its stdin once `pending` is written.
    close_requested: bool,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    /// Readable once the worker exits (Linux 5.3 and later): its exit is
    /// seen even while a program it left holds its output open.
    pidfd: Option<OwnedFd>,
    /// When its protocol output ended.
    output_ended: Option<Instant>,
    /// When it was seen to have exited (its group then killed): its output
    /// is read to its end, or for [`STDERR_GRACE`], then it is reaped.
    exited: Option<Instant>,
}

impl SlotWorker {
    /// Kills its process group. Safe while the worker is not reaped: its
    /// pid (the group id) cannot be reused before.
    fn kill_group(&self) {
        crate::host::kill_group(self.pid);
    }

    /// Looks whether the worker exited (without reaping it, so its group id
    /// stays its own) and then kills its group: the programs it left behind.
    fn note_exit(&mut self) {
        if self.exited.is_none() && has_exited(self.pid) {
            self.kill_group();
            self.exited = Some(Instant::now());
        }
    }

    /// The next moment the loop must wake for this worker, if any.
    fn deadline(&self) -> Option<Instant> {
        match (self.exited, self.output_ended) {
            (Some(at), _) => Some(at + STDERR_GRACE),
            (None, Some(_)) => Some(Instant::now() + EXIT_POLL),
            (None, None) => None,
        }
    }
}

/// What one `pollfd` stands for.
#[derive(Clone, Copy)]
enum Watched {
    Input,
    Output,
    Stdout(u32),
    Stderr(u32),
    Stdin(u32),
    Exit(u32),
}

/// The launcher's state: its streams to the driver and its workers.
struct Launcher {
    /// The executable the workers run (this program), or why it is unknown.
    exe: Result<PathBuf, String>,
    /// The protocol output (the original stdout), non-blocking.
    out: File,
    outbox: Vec<u8>,
    inbox: Vec<u8>,
    workers: BTreeMap<u32, SlotWorker>,
    /// Set by [`ToLauncher::Shutdown`]: when the workers will be killed.
    shutdown_by: Option<Instant>,
}

impl Launcher {
    fn start() -> io::Result<Launcher> {
        let out = super::take_protocol_stdout()?;
        set_nonblocking(out.as_raw_fd())?;
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program's own executable: {e}"));
        let mut launcher = Launcher {
            exe,
            out,
            outbox: LAUNCHER_MAGIC.to_vec(),
            inbox: Vec::new(),
            workers: BTreeMap::new(),
            shutdown_by: None,
        };
        launcher.emit(&FromLauncher::Hello {
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            host: crate::host::hostname().to_string(),
        })?;
        Ok(launcher)
    }

    fn emit(&mut self, message: &FromLauncher) -> io::Result<()> {
        write_frame(&mut self.outbox, message)
    }

    /// The loop: returns when the driver is gone or after a shutdown.
    fn serve(&mut self) -> io::Result<()> {
        let mut buf = vec![0u8; CHUNK];
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut watched: Vec<Watched> = Vec::new();
        loop {
            if self.shutdown_by.is_some() && self.workers.is_empty() {
                return self.drain_output();
            }
            let mut input_open = true;
            fds.clear();
            watched.clear();
            let mut watch = |fd: i32, events: i16, what: Watched| {
                fds.push(libc::pollfd {
                    fd,
                    events,
                    revents: 0,
                });
                watched.push(what);
            };
            watch(libc::STDIN_FILENO, libc::POLLIN, Watched::Input);
            if !self.outbox.is_empty() {
                watch(self.out.as_raw_fd(), libc::POLLOUT, Watched::Output);
            }
            let take_output = self.outbox.len() < OUTBOX_HIGH;
            let mut wake: Option<Instant> = self.shutdown_by;
            for (&slot, w) in &self.workers {
                if take_output {
                    if let Some(p) = &w.stdout {
                        watch(p.as_raw_fd(), libc::POLLIN, Watched::Stdout(slot));
                    }
                    if let Some(p) = &w.stderr {
                        watch(p.as_raw_fd(), libc::POLLIN, Watched::Stderr(slot));
                    }
                }
                if let (Some(p), false) = (&w.stdin, w.pending.is_empty()) {
                    watch(p.as_raw_fd(), libc::POLLOUT, Watched::Stdin(slot));
                }
                if let (Some(p), None) = (&w.pidfd, w.exited) {
                    watch(p.as_raw_fd(), libc::POLLIN, Watched::Exit(slot));
                }
                wake = match (wake, w.deadline()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let timeout = match wake {
                None => -1,
                Some(at) => {
                    // Rounded up: a deadline under a millisecond away must
                    // not spin.
                    let us = at.saturating_duration_since(Instant::now()).as_micros();
                    i32::try_from(us.div_ceil(1000)).unwrap_or(i32::MAX)
                }
            };
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for (pfd, &what) in fds.iter().zip(&watched) {
                if pfd.revents == 0 {
                    continue;
                }
                match what {
                    Watched::Input => {
                        if !self.read_input(&mut buf)? {
                            input_open = false;
                        }
                    }
                    Watched::Output => {
                        if !self.write_output() {
                            // The driver is gone: nothing can be reported.
                            input_open = false;
                        }
                    }
                    Watched::Stdout(slot) => self.read_stdout(slot, &mut buf)?,
                    Watched::Stderr(slot) => self.read_stderr(slot, &mut buf)?,
                    Watched::Stdin(slot) => self.write_stdin(slot),
                    Watched::Exit(slot) => {
                        if let Some(w) = self.workers.get_mut(&slot) {
                            // Readable for good: looked at once.
                            w.pidfd = None;
                            w.note_exit();
                        }
                    }
                }
            }
            if !input_open {
                // The driver is gone (or broke the stream): nothing may keep
                // running for it.
                self.kill_all();
                return Ok(());
            }
            self.reap(&mut buf)?;
            if self.shutdown_by.is_some_and(|by| Instant::now() >= by) {
                for w in self.workers.values() {
                    w.kill_group();
                }
                self.shutdown_by = Some(Instant::now() + STDERR_GRACE);
            }
            if !self.write_output() {
                self.kill_all();
                return Ok(());
            }
        }
    }

    /// Reads the driver's requests; `false` at the end of its stream.
    fn read_input(&mut self, buf: &mut [u8]) -> io::Result<bool> {
        // SAFETY: reads into a buffer valid for its length; stdin is ours.
        let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock => Ok(true),
                _ => Ok(false),
            };
        }
        if n == 0 {
            return Ok(false);
        }
        self.inbox.extend_from_slice(&buf[..n as usize]);
        let mut used = 0;
        loop {
            match decode_frame::<ToLauncher>(&self.inbox[used..]) {
                Ok(Some((request, len))) => {
                    used += len;
                    self.handle(request)?;
                }
                Ok(None) => break,
                Err(e) => {
                    self.kill_all();
                    return Err(io::Error::other(format!(
                        "the driver's stream is corrupt ({e}); every worker was stopped"
                    )));
                }
            }
        }
        self.inbox.drain(..used);
        Ok(true)
    }

    fn handle(&mut self, request: ToLauncher) -> io::Result<()> {
        match request {
            ToLauncher::Spawn { slots } => {
                for slot in slots {
                    let reply = match self.spawn(slot) {
                        Ok(pid) => FromLauncher::Spawned { slot, pid },
                        Err(message) => FromLauncher::SpawnFailed { slot, message },
                    };
                    self.emit(&reply)?;
                }
            }
            ToLauncher::Data { slot, bytes } => {
                // Bytes for a worker that is gone are dropped: its Exited
                // tells the driver.
                if let Some(w) = self.workers.get_mut(&slot) {
                    if w.stdin.is_some() && !w.close_requested {
                        w.pending.extend_from_slice(&bytes);
                        self.write_stdin(slot);
                    }
                }
            }
            ToLauncher::Close { slot } => {
                if let Some(w) = self.workers.get_mut(&slot) {
                    w.close_requested = true;
                    if w.pending.is_empty() {
                        w.stdin = None;
                    }
                }
            }
            ToLauncher::Kill { slot } => {
                if let Some(w) = self.workers.get_mut(&slot) {
                    w.kill_group();
                    w.stdin = None;
                    w.pending.clear();
                }
            }
            ToLauncher::Shutdown => {
                for w in self.workers.values_mut() {
                    w.close_requested = true;
                    if w.pending.is_empty() {
                        w.stdin = None;
                    }
                }
                self.shutdown_by
                    .get_or_insert(Instant::now() + SHUTDOWN_GRACE);
            }
        }
        Ok(())
    }

    /// Starts the worker of `slot`; its pid, or why it could not start.
    fn spawn(&mut self, slot: u32) -> Result<u32, String> {
        if self.shutdown_by.is_some() {
            return Err("the launcher is shutting down".to_string());
        }
        if let Some(w) = self.workers.get(&slot) {
            return Err(format!(
                "slot {slot} still has its worker (pid {}): wait for its exit",
                w.pid
            ));
        }
        let exe = self.exe.as_ref().map_err(Clone::clone)?;
        let super::Spawned {
            mut child,
            stdin,
            stdout,
            stderr,
        } = super::spawn(exe)?;
        let pid = child.id();
        // Non-blocking: writes wait for room in the loop, and the output of
        // an exited worker is read to what is there, not to its end.
        let pipes = [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
        if let Err(e) = pipes.into_iter().try_for_each(set_nonblocking) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("cannot set up the worker's input: {e}"));
        }
        self.workers.insert(
            slot,
            SlotWorker {
                child,
                pid,
                stdin: Some(stdin),
                pending: Vec::new(),
                close_requested: false,
                stdout: Some(stdout),
                stderr: Some(stderr),
                pidfd: open_pidfd(pid),
                output_ended: None,
                exited: None,
            },
        );
        Ok(pid)
    }

    fn read_stdout(&mut self, slot: u32, buf: &mut [u8]) -> io::Result<()> {
        let Some(w) = self.workers.get_mut(&slot) else {
            return Ok(());
        };
        let Some(pipe) = w.stdout.as_mut() else {
            return Ok(());
        };
        match pipe.read(buf) {
            Err(e) if is_transient(&e) => Ok(()),
            Ok(0) | Err(_) => {
                w.stdout = None;
                w.output_ended = Some(Instant::now());
                Ok(())
            }
            Ok(n) => {
                let bytes = buf[..n].to_vec();
                self.emit(&FromLauncher::Data { slot, bytes })
            }
        }
    }

    fn read_stderr(&mut self, slot: u32, buf: &mut [u8]) -> io::Result<()> {
        let Some(w) = self.workers.get_mut(&slot) else {
            return Ok(());
        };
        let Some(pipe) = w.stderr.as_mut() else {
            return Ok(());
        };
        match pipe.read(buf) {
            Err(e) if is_transient(&e) => Ok(()),
            Ok(0) | Err(_) => {
                w.stderr = None;
                Ok(())
            }
            Ok(n) => {
                let bytes = buf[..n].to_vec();
                self.emit(&FromLauncher::Stderr { slot, bytes })
            }
        }
    }

    /// Writes what it can of a worker's pending input, without blocking.
    fn write_stdin(&mut self, slot: u32) {
        let Some(w) = self.workers.get_mut(&slot) else {
            return;
        };
        let Some(pipe) = w.stdin.as_mut() else {
            w.pending.clear();
            return;
        };
        let mut sent = 0;
        while sent < w.pending.len() {
            match pipe.write(&w.pending[sent..]) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    // The worker closed its input (it is ending): its exit
                    // will be reported.
                    w.stdin = None;
                    w.pending.clear();
                    return;
                }
            }
        }
        w.pending.drain(..sent);
        if w.pending.is_empty() && w.close_requested {
            w.stdin = None;
        }
    }

    /// Sends what it can of the output; `false` when the driver is gone.
    fn write_output(&mut self) -> bool {
        let mut sent = 0;
        let gone = loop {
            if sent == self.outbox.len() {
                break false;
            }
            match self.out.write(&self.outbox[sent..]) {
                Ok(0) => break true,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        self.outbox.drain(..sent);
        !gone
    }

    /// Writes out the last messages (after a shutdown), waiting for the
    /// driver to take them.
    fn drain_output(&mut self) -> io::Result<()> {
        while !self.outbox.is_empty() {
            if !self.write_output() {
                return Ok(());
            }
            let mut pfd = libc::pollfd {
                fd: self.out.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, 1000) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Moves workers that exited (or whose output ended) towards their
    /// report: once exited, their output is read to its end (or for
    /// [`STDERR_GRACE`], then to what is there), then they are reaped and
    /// reported once.
    fn reap(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let now = Instant::now();
        let mut done = Vec::new();
        for (&slot, w) in &mut self.workers {
            if let (None, Some(ended)) = (w.exited, w.output_ended) {
                w.note_exit();
                if w.exited.is_none() && now >= ended + EXIT_GRACE {
                    // A worker without its protocol output is of no use.
                    w.kill_group();
                }
            }
            if let Some(exited) = w.exited {
                let drained = w.stdout.is_none() && w.stderr.is_none();
                if drained || now >= exited + STDERR_GRACE {
                    done.push(slot);
                }
            }
        }
        for slot in done {
            // What the worker wrote before it exited is already in the pipes.
            while self.workers.get(&slot).is_some_and(|w| w.stdout.is_some()) {
                let before = self.outbox.len();
                self.read_stdout(slot, buf)?;
                if self.outbox.len() == before {
                    break;
                }
            }
            while self.workers.get(&slot).is_some_and(|w| w.stderr.is_some()) {
                let before = self.outbox.len();
                self.read_stderr(slot, buf)?;
                if self.outbox.len() == before {
                    break;
                }
            }
            let Some(mut w) = self.workers.remove(&slot) else {
                continue;
            };
            let (code, signal) = match w.child.wait() {
                Ok(status) => exit_parts(status),
                Err(_) => (None, None),
            };
            self.emit(&FromLauncher::Exited { slot, code, signal })?;
        }
        Ok(())
    }

    /// Kills every worker's group and reaps them all.
    fn kill_all(&mut self) {
        for w in self.workers.values() {
            w.kill_group();
        }
        for (_, mut w) in std::mem::take(&mut self.workers) {
            let _ = w.child.wait();
        }
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A descriptor that becomes readable when the process exits; `None` where
/// the kernel has none (the end of the worker's output stands in for it).
#[cfg(target_os = "linux")]
fn open_pidfd(pid: u32) -> Option<OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // (close-on-exec) or -1; the descriptor is owned by the OwnedFd only.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
        Some(OwnedFd::from_raw_fd(fd))
    }
}

#[cfg(not(target_os = "linux"))]
fn open_pidfd(_pid: u32) -> Option<OwnedFd> {
    None
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Whether the process has exited, without reaping it.
fn has_exited(pid: u32) -> bool {
    let pid = libc::id_t::from(pid);
    // SAFETY: waitid writes into the zeroed siginfo_t it is given.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        // An error (no such child) counts as exited: waiting will not block.
        rc != 0 || siginfo_pid(&info) != 0
    }
}

#[cfg(target_os = "linux")]
fn siginfo_pid(info: &libc::siginfo_t) -> libc::pid_t {
    // SAFETY: waitid filled the structure for a SIGCHLD-kind record (or left
    // it zeroed).
    unsafe { info.si_pid() }
}

#[cfg(not(target_os = "linux"))]
fn siginfo_pid(info: &libc::siginfo_t) -> libc::pid_t {
    info.si_pid
}

fn exit_parts(status: ExitStatus) -> (Option<i32>, Option<i32>) {
    (status.code(), status.signal())
}

fn set_nonblocking(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greeting(protocol: u32) -> Vec<u8> {
        let mut bytes = LAUNCHER_MAGIC.to_vec();
        write_frame(
            &mut bytes,
            &FromLauncher::Hello {
                protocol,
                version: "9.9.9".into(),
                pid: 1,
                host: "h".into(),
            },
        )
        .expect("encode");
        bytes
    }

    #[test]
    fn messages_come_whole_whatever_the_cuts() {
        let mut stream = greeting(PROTOCOL_VERSION);
        let sent: Vec<FromLauncher> = (0..50)
            .map(|i| FromLauncher::Data {
                slot: i,
                bytes: vec![i as u8; i as usize * 7],
            })
            .collect();
        for m in &sent {
            write_frame(&mut stream, m).expect("encode");
        }
        for step in [1, 3, 64, stream.len()] {
            let mut link = LauncherLink::new();
            let mut got = Vec::new();
            for piece in stream.chunks(step) {
                link.push_bytes(piece);
                while let Some(m) = link.next_event().expect("decode") {
                    got.push(m);
                }
            }
            link.finish().expect("whole stream");
            assert!(link.greeted());
            assert!(matches!(got[0], FromLauncher::Hello { .. }));
            assert_eq!(&got[1..], &sent[..], "pieces of {step} bytes");
        }
    }

    #[test]
    fn another_protocol_names_both_versions() {
        let mut link = LauncherLink::new();
        link.push_bytes(&greeting(PROTOCOL_VERSION + 1));
        let e = link.next_event().unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(e, LauncherError::OtherProtocol { launcher, driver, .. }
                if launcher == PROTOCOL_VERSION + 1 && driver == PROTOCOL_VERSION),
            "{text}"
        );
        assert!(text.contains("otwrap 9.9.9"), "{text}");
        assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    }

    #[test]
    fn a_worker_or_a_stranger_is_not_a_launcher() {
        let mut link = LauncherLink::new();
        link.push_bytes(super::super::protocol::MAGIC);
        assert!(matches!(
            link.next_event(),
            Err(LauncherError::NotALauncher { .. })
        ));
        let mut link = LauncherLink::new();
        link.push_bytes(b"Hi");
        assert_eq!(link.next_event().expect("too short to judge"), None);
        let e = link.finish().unwrap_err();
        assert!(e.to_string().contains("\"Hi\""), "{e}");
        let link = LauncherLink::new();
        assert!(matches!(
            link.finish(),
            Err(LauncherError::EndedBeforeGreeting { got: 0, .. })
        ));
        // A message before the Hello.
        let mut link = LauncherLink::new();
        let mut bytes = LAUNCHER_MAGIC.to_vec();
        write_frame(&mut bytes, &FromLauncher::Spawned { slot: 0, pid: 2 }).expect("encode");
        link.push_bytes(&bytes);
        assert!(matches!(link.next_event(), Err(LauncherError::NoHello(_))));
    }

    #[test]
    fn a_cut_last_frame_is_reported_at_the_end() {
        let mut stream = greeting(PROTOCOL_VERSION);
        write_frame(&mut stream, &FromLauncher::Spawned { slot: 0, pid: 2 }).expect("encode");
        let mut link = LauncherLink::new();
        link.push_bytes(&stream[..stream.len() - 1]);
        assert!(link.next_event().expect("hello").is_some());
        assert_eq!(link.next_event().expect("partial"), None);
        assert!(matches!(link.finish(), Err(LauncherError::Truncated(_))));
    }

    #[test]
    fn requests_round_trip() {
        let requests = [
            ToLauncher::Spawn {
                slots: vec![0, 5, 31],
            },
            ToLauncher::Data {
                slot: 5,
                bytes: vec![1, 2, 3],
            },
            ToLauncher::Close { slot: 5 },
            ToLauncher::Kill { slot: 0 },
            ToLauncher::Shutdown,
        ];
        let mut out = Vec::new();
        for r in &requests {
            LauncherLink::encode(r, &mut out).expect("encode");
        }
        let mut at = 0;
        for r in &requests {
            let (got, used) = decode_frame::<ToLauncher>(&out[at..])
                .expect("decode")
                .expect("whole");
            assert_eq!(&got, r);
            at += used;
        }
        assert_eq!(at, out.len());
    }
}
