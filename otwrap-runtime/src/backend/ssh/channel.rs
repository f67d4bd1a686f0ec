//! The one SSH channel of a host, running its launcher, driven without
//! blocking by the host's connection thread: launcher frames out through a
//! buffer, launcher events in (decoded by [`LauncherLink`]), the channel's
//! own stderr (the login shell's complaints) kept for error reports. And
//! [`WorkerStream`], which turns one worker's bytes, as the launcher relays
//! them, into the pool's news.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use ssh2::Channel;

use crate::backend::pool::News;
use crate::worker::client::{Lines, Tail};
use crate::worker::launcher::{FromLauncher, LauncherLink, ToLauncher};
use crate::worker::protocol::{decode_frame, FromWorker, MAGIC};

/// How many stderr lines of the channel are kept for error reports.
const STDERR_TAIL_LINES: usize = 20;

/// Why a channel cannot go on.
pub(crate) enum Broken {
    /// The launcher's output ended: it exited or was killed.
    Ended(String),
    /// The connection itself failed.
    Connection(String),
}

pub(crate) struct LauncherChan {
    channel: Channel,
    label: String,
    link: LauncherLink,
    outbox: Vec<u8>,
    stderr_lines: Lines,
    stderr_tail: Tail,
    /// When the end of the launcher's output was first seen.
    eof_since: Option<Instant>,
}

impl LauncherChan {
    pub(crate) fn new(channel: Channel, label: String) -> LauncherChan {
        LauncherChan {
            channel,
            label,
            link: LauncherLink::new(),
            outbox: Vec::new(),
            stderr_lines: Lines::default(),
            stderr_tail: Tail::new(STDERR_TAIL_LINES),
            eof_since: None,
        }
    }

    /// Queues a message; [`LauncherChan::flush`] sends it.
    pub(crate) fn send(&mut self, message: &ToLauncher) {
        if let Err(e) = LauncherLink::encode(message, &mut self.outbox) {
            tracing::error!(host = %self.label, "cannot encode a launcher message: {e}");
        }
    }

    /// Whether the launcher greeted.
    pub(crate) fn greeted(&self) -> bool {
        self.link.greeted()
    }

    /// Sends what it can of the queued bytes; `true` if any went out.
    pub(crate) fn flush(&mut self) -> Result<bool, Broken> {
        let mut sent = 0;
        while sent < self.outbox.len() {
            match self.channel.write(&self.outbox[sent..]) {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    self.outbox.drain(..sent);
                    return Err(Broken::Connection(format!(
                        "cannot send to the launcher: {e}"
                    )));
                }
            }
        }
        self.outbox.drain(..sent);
        Ok(sent > 0)
    }

    /// Reads what is there on stdout and stderr; `true` if anything came.
    pub(crate) fn pump(&mut self) -> Result<bool, Broken> {
        let mut buf = [0u8; 64 * 1024];
        let mut progressed = false;
        loop {
            match self.channel.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.link.push_bytes(&buf[..n]);
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Broken::Connection(format!("the connection failed: {e}"))),
            }
        }
        loop {
            match self.channel.stderr().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    for line in self.stderr_lines.push(&buf[..n]) {
                        self.stderr_line(line);
                    }
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Broken::Connection(format!("the connection failed: {e}"))),
            }
        }
        if !progressed && self.channel.eof() {
            // The exit status comes just before the channel closes: wait
            // for the close a little.
            let since = *self.eof_since.get_or_insert_with(Instant::now);
            if self.channel.wait_close().is_ok() || since.elapsed() > Duration::from_millis(500) {
                if let Some(line) = self.stderr_lines.finish() {
                    self.stderr_line(line);
                }
                let mut why = self.ending();
                if let Err(cut) = self.link.finish() {
                    why.push_str(&format!(" ({cut})"));
                }
                return Err(Broken::Ended(why));
            }
        }
        Ok(progressed)
    }

    /// The next launcher event, if a whole one is there.
    pub(crate) fn next_event(&mut self) -> Result<Option<FromLauncher>, String> {
        self.link.next_event().map_err(|e| e.to_string())
    }

    fn stderr_line(&mut self, line: String) {
        eprintln!("[otwrap {}] {line}", self.label);
        tracing::info!(target: "otwrap::ssh", host = %self.label, "{line}");
        self.stderr_tail.push(line);
    }

    /// The last lines of the channel's stderr.
    pub(crate) fn stderr_tail(&self) -> String {
        self.stderr_tail.text()
    }

    /// How the remote launcher ended, once its output is closed.
    fn ending(&mut self) -> String {
        if let Ok(signal) = self.channel.exit_signal() {
            if let Some(name) = signal.exit_signal {
                return format!("the launcher was killed by signal SIG{name}");
            }
        }
        match self.channel.exit_status() {
            Ok(code) => format!("the launcher exited with status {code}"),
            Err(e) => format!("the launcher's channel closed ({e})"),
        }
    }

    /// Closes the channel: the launcher sees the end of its input and ends
    /// every worker and what they run.
    pub(crate) fn close(mut self) {
        let _ = self.flush();
        let _ = self.channel.send_eof();
        let _ = self.channel.close();
    }
}

/// One worker's protocol stream as relayed by the launcher: the greeting
/// (magic bytes and `Hello`), then frames.
#[derive(Default)]
pub(crate) struct WorkerStream {
    inbox: Vec<u8>,
    greeted: bool,
    /// Whether the worker wrote anything yet.
    spoke: bool,
    /// It wrote something that is not the protocol.
    broken: bool,
}

impl WorkerStream {
    /// Bytes the worker wrote.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.spoke |= !bytes.is_empty();
        self.inbox.extend_from_slice(bytes);
    }

    /// Whether the worker started speaking.
    pub(crate) fn started(&self) -> bool {
        self.spoke
    }

    /// The next piece of news, if a whole one is there. Bytes that are not
    /// the protocol become a failed greeting (before it) or garbled news
    /// (after), and nothing more is read.
    pub(crate) fn next(&mut self) -> Option<News> {
        if self.broken {
            return None;
        }
        match self.decode() {
            Ok(news) => news,
            Err(why) => {
                self.broken = true;
                Some(if self.greeted {
                    News::Garbled(why)
                } else {
                    News::Greeting(Err(why))
                })
            }
        }
    }

    fn decode(&mut self) -> Result<Option<News>, String> {
        if !self.greeted {
            if self.inbox.len() < MAGIC.len() {
                if !MAGIC.starts_with(&self.inbox) {
                    return Err(self.garbled());
                }
                return Ok(None);
            }
            if &self.inbox[..MAGIC.len()] != MAGIC {
                return Err(self.garbled());
            }
            let Some((hello, used)) = decode_frame::<FromWorker>(&self.inbox[MAGIC.len()..])
                .map_err(|e| e.to_string())?
            else {
                return Ok(None);
            };
            self.inbox.drain(..MAGIC.len() + used);
            self.greeted = true;
            return Ok(Some(News::Greeting(Ok(hello))));
        }
        match decode_frame::<FromWorker>(&self.inbox) {
            Ok(Some((message, used))) => {
                self.inbox.drain(..used);
                Ok(Some(News::Message(message)))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn garbled(&self) -> String {
        let shown = String::from_utf8_lossy(&self.inbox[..self.inbox.len().min(200)])
            .trim()
            .to_string();
        format!("it printed {shown:?} instead of the otwrap worker greeting")
    }
}
