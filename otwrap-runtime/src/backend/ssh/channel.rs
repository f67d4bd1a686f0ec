//! One remote worker behind one SSH channel, driven without blocking by its
//! connection's loop: frames out through a buffer, frames in from stdout,
//! stderr forwarded line by line with the host's name. The connection owns
//! the session and the waiting; a channel only moves bytes.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use ssh2::Channel;

use crate::worker::protocol::{decode_frame, write_frame, FromWorker, ToWorker, MAGIC};

/// How many stderr lines are kept for crash reports.
const STDERR_TAIL_LINES: usize = 30;

/// Why a channel cannot go on.
pub(crate) enum Broken {
    /// The worker's output ended: it exited or was killed (the session is
    /// still good).
    Ended(String),
    /// The connection itself failed (every channel of it is gone).
    Connection(String),
    /// The worker sent something that is not the protocol.
    Garbled(String),
}

pub(crate) struct Chan {
    channel: Channel,
    label: String,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    err_partial: Vec<u8>,
    stderr_tail: VecDeque<String>,
    greeted: bool,
    /// When the end of the worker's output was first seen.
    eof_since: Option<Instant>,
}

impl Chan {
    pub(crate) fn new(channel: Channel, label: String) -> Chan {
        Chan {
            channel,
            label,
            inbox: Vec::new(),
            outbox: Vec::new(),
            err_partial: Vec::new(),
            stderr_tail: VecDeque::new(),
            greeted: false,
            eof_since: None,
        }
    }

    /// Queues a message; [`Chan::flush`] sends it.
    pub(crate) fn send(&mut self, message: &ToWorker) -> Result<(), Broken> {
        write_frame(&mut self.outbox, message)
            .map_err(|e| Broken::Garbled(format!("cannot encode a message: {e}")))
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
                        "cannot send to the worker: {e}"
                    )));
                }
            }
        }
        self.outbox.drain(..sent);
        Ok(sent > 0)
    }

    /// Reads what is there on stdout and stderr; `true` if anything came.
    pub(crate) fn pump(&mut self) -> Result<bool, Broken> {
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
                Err(e) => return Err(Broken::Connection(format!("the connection failed: {e}"))),
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
                Err(e) => return Err(Broken::Connection(format!("the connection failed: {e}"))),
            }
        }
        if !progressed && self.channel.eof() && self.inbox.is_empty() {
            // The exit status comes just before the channel closes: wait
            // for the close a little, without blocking the other channels.
            let since = *self.eof_since.get_or_insert_with(Instant::now);
            if self.channel.wait_close().is_ok() || since.elapsed() > Duration::from_millis(500) {
                self.flush_stderr();
                return Err(Broken::Ended(self.ending()));
            }
        }
        Ok(progressed)
    }

    /// The next complete message, once the greeting bytes are in.
    pub(crate) fn next_message(&mut self) -> Result<Option<FromWorker>, Broken> {
        if !self.greeted {
            if self.inbox.len() < MAGIC.len() {
                return Ok(None);
            }
            if &self.inbox[..MAGIC.len()] != MAGIC {
                let shown = String::from_utf8_lossy(&self.inbox[..self.inbox.len().min(200)])
                    .trim()
                    .to_string();
                return Err(Broken::Garbled(format!(
                    "printed {shown:?} instead of the otwrap worker greeting"
                )));
            }
            self.inbox.drain(..MAGIC.len());
            self.greeted = true;
        }
        match decode_frame::<FromWorker>(&self.inbox) {
            Ok(Some((message, used))) => {
                self.inbox.drain(..used);
                Ok(Some(message))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(Broken::Garbled(e.to_string())),
        }
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

    /// The last stderr lines.
    pub(crate) fn stderr_tail(&self) -> String {
        self.stderr_tail
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How the remote process ended, once its output is closed (what SSH
    /// has been told so far: the exit message comes just before the close).
    fn ending(&mut self) -> String {
        if let Ok(signal) = self.channel.exit_signal() {
            if let Some(name) = signal.exit_signal {
                return format!("the worker was killed by signal SIG{name}");
            }
        }
        match self.channel.exit_status() {
            Ok(code) => format!("the worker exited with status {code}"),
            Err(e) => format!("the worker's channel closed ({e})"),
        }
    }

    /// Closes the channel: the remote worker sees the end of its input and
    /// ends its process group (the evaluation and what it started).
    pub(crate) fn close(mut self) {
        let _ = self.flush();
        let _ = self.channel.send_eof();
        let _ = self.channel.close();
    }
}
