//! One remote worker process behind an SSH channel, driven without blocking:
//! frames out on its stdin, frames in from its stdout, its stderr forwarded
//! line by line with the host's name, keepalives on an idle connection and
//! deadlines on every wait. Each slot owns its session, so no lock is shared.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use ssh2::{BlockDirections, Channel, Session};

use crate::worker::protocol::{FromWorker, ToWorker, MAGIC, MAX_FRAME};

/// How often an idle connection is probed.
const KEEPALIVE: Duration = Duration::from_secs(10);
/// How many stderr lines are kept for crash reports.
const STDERR_TAIL_LINES: usize = 30;

/// Why nothing came back.
pub(crate) enum Recv {
    /// The deadline passed.
    Timeout,
    /// The worker's output ended or the connection failed.
    Lost(String),
    /// Ctrl-C: the batch is stopping.
    Interrupted,
}

pub(crate) struct Pipe {
    pub(crate) session: Session,
    channel: Channel,
    fd: RawFd,
    label: String,
    inbox: Vec<u8>,
    err_partial: Vec<u8>,
    stderr_tail: VecDeque<String>,
    last_traffic: Instant,
}

impl Pipe {
    /// Runs `command` on a new channel of `session` (which must be in
    /// blocking mode) and switches the session to non-blocking I/O.
    pub(crate) fn start(
        session: Session,
        fd: RawFd,
        command: &str,
        label: String,
    ) -> Result<Pipe, (Session, String)> {
        session.set_blocking(true);
        let mut channel = match session.channel_session() {
            Ok(c) => c,
            Err(e) => return Err((session, format!("cannot open an SSH channel: {e}"))),
        };
        if let Err(e) = channel.exec(command) {
            return Err((session, format!("cannot run the worker command: {e}")));
        }
        session.set_blocking(false);
        Ok(Pipe {
            session,
            channel,
            fd,
            label,
            inbox: Vec::new(),
            err_partial: Vec::new(),
            stderr_tail: VecDeque::new(),
            last_traffic: Instant::now(),
        })
    }

    /// Sends one message.
    pub(crate) fn send(&mut self, message: &ToWorker, deadline: Instant) -> Result<(), Recv> {
        let mut bytes = Vec::new();
        crate::worker::protocol::write_frame(&mut bytes, message)
            .map_err(|e| Recv::Lost(format!("cannot encode a message: {e}")))?;
        let mut sent = 0;
        while sent < bytes.len() {
            match self.channel.write(&bytes[sent..]) {
                Ok(0) => return Err(Recv::Lost("the channel accepts no more data".into())),
                Ok(n) => {
                    sent += n;
                    self.last_traffic = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Keep reading meanwhile: a worker blocked on a full
                    // output window would never read its input.
                    self.pump()?;
                    self.wait(deadline)?;
                }
                Err(e) => return Err(Recv::Lost(format!("cannot send to the worker: {e}"))),
            }
        }
        Ok(())
    }

    /// Waits for the worker's greeting bytes.
    pub(crate) fn greeting(&mut self, deadline: Instant) -> Result<(), Recv> {
        loop {
            if self.inbox.len() >= MAGIC.len() {
                if &self.inbox[..MAGIC.len()] == MAGIC {
                    self.inbox.drain(..MAGIC.len());
                    return Ok(());
                }
                let shown = String::from_utf8_lossy(&self.inbox[..self.inbox.len().min(200)])
                    .trim()
                    .to_string();
                return Err(Recv::Lost(format!("printed {shown:?} instead of greeting")));
            }
            if !self.pump()? {
                self.wait(deadline)?;
            }
        }
    }

    /// Receives one message, waiting at most until `deadline`.
    pub(crate) fn receive(&mut self, deadline: Option<Instant>) -> Result<FromWorker, Recv> {
        loop {
            if self.inbox.len() >= 4 {
                let mut len = [0u8; 4];
                len.copy_from_slice(&self.inbox[..4]);
                let len = u32::from_le_bytes(len) as usize;
                if len > MAX_FRAME {
                    return Err(Recv::Lost(format!(
                        "the worker sent a frame of {len} bytes: its output is corrupt"
                    )));
                }
                if self.inbox.len() >= 4 + len {
                    let decoded = crate::codec::decode::<FromWorker>(&self.inbox[4..4 + len]);
                    self.inbox.drain(..4 + len);
                    return decoded
                        .map_err(|e| Recv::Lost(format!("a message does not decode: {e}")));
                }
            }
            if !self.pump()? {
                match deadline {
                    Some(d) => self.wait(d)?,
                    None => match self.wait(Instant::now() + KEEPALIVE) {
                        Ok(()) | Err(Recv::Timeout) => {}
                        Err(lost) => return Err(lost),
                    },
                }
            }
        }
    }

    /// Reads whatever is there on stdout and stderr; `true` if anything came.
    fn pump(&mut self) -> Result<bool, Recv> {
        let mut buf = [0u8; 32 * 1024];
        let mut progressed = false;
        loop {
            match self.channel.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.inbox.extend_from_slice(&buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Recv::Lost(format!("the connection failed: {e}"))),
            }
        }
        loop {
            match self.channel.stderr().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.take_stderr(&buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Recv::Lost(format!("the connection failed: {e}"))),
            }
        }
        if progressed {
            self.last_traffic = Instant::now();
        } else if self.channel.eof() {
            self.flush_stderr();
            return Err(Recv::Lost(self.ending()));
        }
        Ok(progressed)
    }

    fn take_stderr(&mut self, bytes: &[u8]) {
        self.err_partial.extend_from_slice(bytes);
        while let Some(pos) = self.err_partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.err_partial.drain(..=pos).collect();
            self.stderr_line(String::from_utf8_lossy(&line).trim_end().to_string());
        }
    }

    fn flush_stderr(&mut self) {
        if !self.err_partial.is_empty() {
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.err_partial))
                .trim_end()
                .to_string();
            self.stderr_line(line);
        }
    }

    fn stderr_line(&mut self, line: String) {
        eprintln!("[otwrap {}] {line}", self.label);
        tracing::info!(target: "otwrap::ssh", worker = %self.label, "{line}");
        if self.stderr_tail.len() == STDERR_TAIL_LINES {
            self.stderr_tail.pop_front();
        }
        self.stderr_tail.push_back(line);
    }

    /// The socket of the session.
    pub(crate) fn fd(&self) -> RawFd {
        self.fd
    }

    /// The last stderr lines.
    pub(crate) fn stderr_tail(&self) -> String {
        self.stderr_tail
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How the remote process ended, once its output is closed.
    fn ending(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_millis(500);
        while self.channel.wait_close().is_err() && Instant::now() < deadline {
            if self.wait(deadline).is_err() {
                break;
            }
        }
        if let Ok(signal) = self.channel.exit_signal() {
            if let Some(name) = signal.exit_signal {
                return format!("the worker was killed by signal SIG{name}");
            }
        }
        match self.channel.exit_status() {
            Ok(code) => format!("the worker exited with status {code}"),
            Err(e) => format!("the connection was lost ({e})"),
        }
    }

    /// Waits until the socket is ready in the direction libssh2 needs, or
    /// the deadline; probes the connection when it has been idle.
    fn wait(&mut self, deadline: Instant) -> Result<(), Recv> {
        let now = Instant::now();
        if now >= deadline {
            return Err(Recv::Timeout);
        }
        if crate::interrupt::requested() {
            return Err(Recv::Interrupted);
        }
        if now.duration_since(self.last_traffic) >= KEEPALIVE {
            match self.session.keepalive_send() {
                Ok(_) => self.last_traffic = now,
                Err(e) if e.code() == ssh2::ErrorCode::Session(-37) => {} // LIBSSH2_ERROR_EAGAIN
                Err(e) => return Err(Recv::Lost(format!("the connection failed: {e}"))),
            }
        }
        let events = match self.session.block_directions() {
            BlockDirections::Outbound => libc::POLLOUT,
            BlockDirections::Both => libc::POLLIN | libc::POLLOUT,
            _ => libc::POLLIN,
        };
        // Short slices, so that Ctrl-C is seen quickly.
        let until = deadline.min(now + Duration::from_millis(100));
        let ms = i32::try_from(until.saturating_duration_since(now).as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        quick_ack(self.fd);
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events,
            revents: 0,
        };
        // SAFETY: one valid pollfd on a socket this pipe's session owns.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Recv::Lost(format!("cannot wait on the connection: {e}")));
            }
        }
        if Instant::now() >= deadline {
            return Err(Recv::Timeout);
        }
        Ok(())
    }

    /// Closes the channel: the remote worker sees the end of its input and
    /// exits (killing what it runs). The session stays usable.
    pub(crate) fn close(mut self) -> Session {
        let _ = self.channel.send_eof();
        let _ = self.channel.close();
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            match self.channel.wait_close() {
                Ok(()) => break,
                Err(_) => {
                    let _ = self.pump();
                    if self.wait(deadline).is_err() {
                        break;
                    }
                }
            }
        }
        self.session
    }
}

/// Asks the kernel to acknowledge what arrives at once instead of delaying
/// the ACK (Linux resets this after some reads, so it is set before each
/// wait). sshd does not disable Nagle's algorithm on non-terminal sessions:
/// a small answer sent while an earlier small packet (a window adjust) is
/// unacknowledged waits for our ACK, which a delayed ACK holds for up to
/// 40 ms. Measured: 2 slots over loopback went from ~1 ms to ~0.2 ms a point.
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
