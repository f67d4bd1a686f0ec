//! The worker protocol shared by every out-of-process backend: framed
//! bincode messages over a byte stream (a pipe, an SSH channel).
//!
//! A frame is a little-endian `u32` payload length followed by the payload.
//! A worker starts by writing [`MAGIC`] and a [`FromWorker::Hello`] frame, so
//! a driver that started a binary which is not a worker sees it at once.

use std::io::{self, Read, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::layers::Failed;

/// The bytes a worker writes first.
pub const MAGIC: &[u8; 8] = b"OTWRAPW\x01";
/// The protocol version; a driver and a worker must agree on it.
///
/// 2: the worker says `Started` before each point; `Init` names the model
/// by a [`ModelRef`] (a compiled-in id, or a description given as data).
pub const PROTOCOL_VERSION: u32 = 2;
/// The environment variable that starts a binary in worker mode. It is
/// internal: a driver sets it to [`worker_env_value`] (or, in a SLURM job
/// script, [`task_env_value`]), and any other value is refused.
pub const WORKER_ENV: &str = "OTWRAP_WORKER";
/// The largest frame accepted (larger lengths are corrupt data, not inputs).
pub const MAX_FRAME: usize = 256 << 20;

/// The tag of [`WORKER_ENV`] for a worker serving a driver over its
/// standard input and output.
const SERVE_TAG: &str = "otwrap-worker";
/// The tag of [`WORKER_ENV`] for a SLURM array task.
const TASK_TAG: &str = "otwrap-task";
/// The tag of [`WORKER_ENV`] for a launcher of slot workers.
const LAUNCH_TAG: &str = "otwrap-launch";
/// The token's length in hexadecimal digits (128 bits).
const TOKEN_DIGITS: usize = 32;

/// What the driver's [`WORKER_ENV`] value asks of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// Serve a driver over the standard input and output.
    Serve,
    /// Evaluate the points of a SLURM array task from its run directory.
    Task,
    /// Start slot workers on request and carry their streams over the
    /// standard input and output (see [`crate::worker::launcher`]).
    Launch,
}

/// Why a [`WORKER_ENV`] value does not start worker mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The value is not one a driver sets: most likely a user's typo for
    /// `OTWRAP_WORKERS`, or a driver of an otwrap version before the
    /// handshake token.
    #[error(
        "{WORKER_ENV}={value:?} is refused: this environment variable is internal to otwrap \
         (a driver sets it to start its worker processes) and is not set by hand; \
         did you mean `OTWRAP_WORKERS` (the number of workers)? Unset {WORKER_ENV} and run again. \
         If an otwrap driver started this program, the two were built with different otwrap \
         versions: rebuild them with the same one"
    )]
    NotAHandshake {
        /// The value found (its first 80 characters).
        value: String,
    },
    /// A driver of another protocol version started this program.
    #[error(
        "this program was started as an otwrap worker by a driver speaking worker protocol \
         {driver}, but it speaks protocol {PROTOCOL_VERSION}: rebuild the driver and this program \
         with the same otwrap version"
    )]
    OtherProtocol {
        /// The driver's protocol version.
        driver: u32,
    },
}

/// The value of [`WORKER_ENV`] with which this driver starts its workers:
/// `otwrap-worker:<protocol>:<token>`, the token drawn once per driver
/// process from the operating system's random source. A worker starts
/// only on a value of this exact shape (see [`parse_handshake`]), so a user's
/// `OTWRAP_WORKER=4` can never make a program speak the protocol.
///
/// ```
/// use otwrap_runtime::worker::protocol::{parse_handshake, worker_env_value, Handshake};
///
/// let value = worker_env_value();
/// assert!(value.starts_with("otwrap-worker:"));
/// assert_eq!(parse_handshake(value.as_ref()), Ok(Handshake::Serve));
/// assert!(parse_handshake("4".as_ref()).is_err());
/// ```
pub fn worker_env_value() -> &'static str {
    static VALUE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VALUE.get_or_init(|| format!("{SERVE_TAG}:{PROTOCOL_VERSION}:{}", driver_token()))
}

/// The value of [`WORKER_ENV`] in a SLURM job script, which starts array-task
/// mode: `otwrap-task:<protocol>:<token>`, with the same token as
/// [`worker_env_value`].
pub fn task_env_value() -> &'static str {
    static VALUE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VALUE.get_or_init(|| format!("{TASK_TAG}:{PROTOCOL_VERSION}:{}", driver_token()))
}

/// The value of [`WORKER_ENV`] that starts launcher mode (one process per
/// host or connection that starts the slot workers itself):
/// `otwrap-launch:<protocol>:<token>`, with the same token as
/// [`worker_env_value`].
///
/// ```
/// use otwrap_runtime::worker::protocol::{launch_env_value, parse_handshake, Handshake};
///
/// assert_eq!(parse_handshake(launch_env_value().as_ref()), Ok(Handshake::Launch));
/// ```
pub fn launch_env_value() -> &'static str {
    static VALUE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VALUE.get_or_init(|| format!("{LAUNCH_TAG}:{PROTOCOL_VERSION}:{}", driver_token()))
}

/// This driver process's token: 128 bits from the OS random source, in hex.
fn driver_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut bytes = [0u8; TOKEN_DIGITS / 2];
        if getrandom::fill(&mut bytes).is_err() {
            // The token only has to be a value nobody types by accident,
            // not a secret: without an OS random source, mix what differs
            // between processes.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let seed = format!("{}:{now}:{:p}", std::process::id(), &bytes);
            bytes = xxhash_rust::xxh3::xxh3_128(seed.as_bytes()).to_le_bytes();
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// Reads a [`WORKER_ENV`] value: the mode a driver asked for, or why the
/// value is refused. Cheap (a few string comparisons): every worker calls
/// it first thing.
pub fn parse_handshake(value: &std::ffi::OsStr) -> Result<Handshake, HandshakeError> {
    let refused = || HandshakeError::NotAHandshake {
        value: value.to_string_lossy().chars().take(80).collect(),
    };
    let text = value.to_str().ok_or_else(refused)?;
    let (tag, rest) = text.split_once(':').ok_or_else(refused)?;
    let mode = match tag {
        SERVE_TAG => Handshake::Serve,
        TASK_TAG => Handshake::Task,
        LAUNCH_TAG => Handshake::Launch,
        _ => return Err(refused()),
    };
    let (protocol, token) = rest.split_once(':').ok_or_else(refused)?;
    let protocol: u32 = protocol.parse().map_err(|_| refused())?;
    if protocol != PROTOCOL_VERSION {
        return Err(HandshakeError::OtherProtocol { driver: protocol });
    }
    if token.len() != TOKEN_DIGITS || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(refused());
    }
    Ok(mode)
}

/// The model a worker is asked to serve.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ModelRef {
    /// A model compiled into the worker binary, by its stable id
    /// ([`Model::ID`](crate::Model::ID)).
    Compiled(String),
    /// A model given as data: the encoded description of an external-code
    /// coupling, evaluated by the runtime's interpreter.
    Described(Vec<u8>),
}

impl ModelRef {
    /// A short name for messages: the id, or `a described model (N bytes)`.
    pub fn label(&self) -> String {
        match self {
            ModelRef::Compiled(id) => id.clone(),
            ModelRef::Described(bytes) => format!("a described model ({} bytes)", bytes.len()),
        }
    }
}

/// Driver to worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Selects the model.
    Init {
        /// The driver's protocol version.
        protocol: u32,
        /// The model.
        model: ModelRef,
    },
    /// Evaluates one point (after those sent before it).
    Evaluate {
        /// The point's index in the batch.
        index: u64,
        /// The bincode-encoded input.
        input: Vec<u8>,
    },
    /// Ends the worker.
    Shutdown,
}

/// Worker to driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The first message, after [`MAGIC`].
    Hello {
        /// The worker's protocol version.
        protocol: u32,
        /// The otwrap version the worker was built with.
        version: String,
        /// The worker's process id.
        pid: u32,
        /// The worker's host name.
        host: String,
    },
    /// The model was found; points may be sent.
    Ready,
    /// The model id is not registered in this binary.
    UnknownModel {
        /// The id asked for.
        model: String,
        /// The ids this binary knows.
        known: Vec<String>,
    },
    /// The worker starts evaluating this point (sent before it starts, so
    /// the driver's deadline runs from here and a loss is charged to it).
    Started {
        /// The point's index.
        index: u64,
    },
    /// The result of one point.
    Result {
        /// The point's index.
        index: u64,
        /// The bincode-encoded output, or the failure and its traces.
        outcome: Result<Vec<u8>, Failed>,
    },
    /// The model was given as data ([`ModelRef::Described`]) but this
    /// worker cannot use the description (it does not decode, is of another
    /// format version, or does not validate).
    // Last, so that the variants before it keep their wire numbers.
    BadModel {
        /// Why, naming what to change.
        message: String,
    },
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The stream ended in the middle of a frame.
    #[error("the stream ended in the middle of a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes received.
        got: usize,
        /// Bytes announced.
        expected: usize,
    },
    /// The announced length is beyond [`MAX_FRAME`].
    #[error(
        "a frame announces {0} bytes, more than the {MAX_FRAME} allowed: the stream is corrupt"
    )]
    TooLarge(usize),
    /// The payload does not decode.
    #[error("a frame does not decode: {0}")]
    Decode(String),
    /// The stream failed.
    #[error("cannot read a frame: {0}")]
    Io(#[from] io::Error),
}

/// Writes one frame (not flushed).
pub fn write_frame<T: Serialize>(w: &mut impl Write, msg: &T) -> io::Result<()> {
    let payload = crate::codec::encode(msg).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| {
            io::Error::other(format!(
                "a message of {} bytes is too large to send",
                payload.len()
            ))
        })?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&payload)
}

/// Reads `buf.len()` bytes; returns how many were read before end of stream.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The payload buffer's first allocation; it then grows with the bytes that
/// actually arrive, never with the length a frame announces.
const FIRST_READ: usize = 64 << 10;

/// Reads one frame; `Ok(None)` at a clean end of stream (between frames).
///
/// Memory is bounded by the bytes actually received: the payload buffer
/// starts small and grows as bytes arrive (a corrupt length announcing up
/// to [`MAX_FRAME`] with nothing behind it costs 64 KiB, not the announced
/// length), and decoding allocates no more than the payload's own size (see
/// [`crate::codec::decode`]). Truncated, oversized and undecodable frames
/// are errors, never panics.
pub fn read_frame<T: DeserializeOwned>(r: &mut impl Read) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    match read_full(r, &mut len)? {
        0 => return Ok(None),
        4 => {}
        got => return Err(FrameError::Truncated { got, expected: 4 }),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut payload = Vec::with_capacity(len.min(FIRST_READ));
    let got = r.take(len as u64).read_to_end(&mut payload)?;
    if got < len {
        return Err(FrameError::Truncated { got, expected: len });
    }
    crate::codec::decode(&payload)
        .map(Some)
        .map_err(FrameError::Decode)
}

/// Decodes the frame at the start of `buf`, for readers that gather bytes
/// in a buffer of their own (the SSH backend's non-blocking channel):
/// `Ok(Some((message, frame_len)))` when a whole frame is there (drop
/// `frame_len` bytes from the buffer), `Ok(None)` when more bytes are needed.
///
/// A length beyond [`MAX_FRAME`] is an error as soon as its 4 bytes are
/// there, so the caller never buffers a frame it would refuse; decoding is
/// bounded as in [`read_frame`].
///
/// ```
/// use otwrap_runtime::worker::protocol::{decode_frame, write_frame, ToWorker};
///
/// let mut buf = Vec::new();
/// write_frame(&mut buf, &ToWorker::Shutdown)?;
/// assert!(decode_frame::<ToWorker>(&buf[..buf.len() - 1])?.is_none());
/// assert_eq!(decode_frame::<ToWorker>(&buf)?, Some((ToWorker::Shutdown, buf.len())));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode_frame<T: DeserializeOwned>(buf: &[u8]) -> Result<Option<(T, usize)>, FrameError> {
    let Some(len) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(*len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let Some(payload) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    crate::codec::decode(payload)
        .map(|message| Some((message, 4 + len)))
        .map_err(FrameError::Decode)
}

/// Reads the worker's greeting: [`MAGIC`] then a `Hello` frame. The error
/// says what the other side wrote instead, which is how a binary that is not
/// a worker gets reported.
pub fn read_greeting(r: &mut impl Read) -> Result<FromWorker, String> {
    let mut magic = [0u8; MAGIC.len()];
    let got = read_full(r, &mut magic).map_err(|e| format!("cannot read from it: {e}"))?;
    if got == 0 {
        return Err("it closed its output without writing the otwrap worker greeting".into());
    }
    if &magic[..got] != MAGIC.as_slice() {
        let mut seen = magic[..got].to_vec();
        // Show a little more of what it printed, without blocking for long.
        let mut more = [0u8; 72];
        if got == MAGIC.len() {
            if let Ok(n) = r.read(&mut more) {
                seen.extend_from_slice(&more[..n]);
            }
        }
        return Err(format!(
            "it wrote {:?} instead of the otwrap worker greeting",
            String::from_utf8_lossy(&seen)
        ));
    }
    match read_frame::<FromWorker>(r) {
        Ok(Some(hello @ FromWorker::Hello { .. })) => Ok(hello),
        Ok(Some(other)) => Err(format!("it sent {other:?} instead of its greeting")),
        Ok(None) => Err("it closed its output right after the greeting's first bytes".into()),
        Err(e) => Err(format!("its greeting is damaged: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        let msg = ToWorker::Evaluate {
            index: 7,
            input: vec![1, 2, 3],
        };
        write_frame(&mut buf, &msg).expect("write");
        write_frame(&mut buf, &ToWorker::Shutdown).expect("write");
        let mut r = &buf[..];
        assert_eq!(read_frame::<ToWorker>(&mut r).expect("read"), Some(msg));
        assert_eq!(
            read_frame::<ToWorker>(&mut r).expect("read"),
            Some(ToWorker::Shutdown)
        );
        assert_eq!(read_frame::<ToWorker>(&mut r).expect("read"), None);
    }

    #[test]
    fn truncated_oversized_and_garbage_frames_are_errors() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &ToWorker::Shutdown).expect("write");
        let cut = &buf[..buf.len() - 1];
        assert!(matches!(
            read_frame::<ToWorker>(&mut &cut[..]),
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            read_frame::<ToWorker>(&mut &buf[..2]),
            Err(FrameError::Truncated { .. })
        ));
        let huge = u32::MAX.to_le_bytes();
        assert!(matches!(
            read_frame::<ToWorker>(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
        let garbage = [3, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame::<ToWorker>(&mut &garbage[..]),
            Err(FrameError::Decode(_))
        ));
    }

    #[test]
    fn a_non_worker_greeting_is_reported_with_what_it_wrote() {
        let e = read_greeting(&mut &b"Hello, world!\n"[..]).unwrap_err();
        assert!(e.contains("Hello, world!"), "{e}");
        let e = read_greeting(&mut &b""[..]).unwrap_err();
        assert!(e.contains("without writing"), "{e}");
    }

    #[test]
    fn only_a_drivers_handshake_starts_worker_mode() {
        assert_eq!(
            parse_handshake(worker_env_value().as_ref()),
            Ok(Handshake::Serve)
        );
        assert_eq!(
            parse_handshake(task_env_value().as_ref()),
            Ok(Handshake::Task)
        );
        assert_eq!(
            parse_handshake(launch_env_value().as_ref()),
            Ok(Handshake::Launch)
        );
        // One token per driver process, in every value.
        let token = |v: &str| v.rsplit(':').next().map(str::to_string);
        assert_eq!(token(worker_env_value()), token(task_env_value()));
        assert_eq!(token(worker_env_value()), token(launch_env_value()));
        assert_eq!(token(worker_env_value()).map(|t| t.len()), Some(32));
        let token = "0123456789abcdef0123456789abcdef";
        for refused in [
            "4".to_string(),
            "1".to_string(),
            "task".to_string(),
            "true".to_string(),
            String::new(),
            format!("otwrap-worker:{PROTOCOL_VERSION}:{}", &token[1..]),
            format!("otwrap-worker:{PROTOCOL_VERSION}:{token}0"),
            format!(
                "otwrap-worker:{PROTOCOL_VERSION}:{}",
                token.replace('a', "g")
            ),
            format!("otwrap-worker::{token}"),
            format!("otwrap-worker:{token}"),
            format!("otwrap-workers:{PROTOCOL_VERSION}:{token}"),
            format!("otwrap-launcher:{PROTOCOL_VERSION}:{token}"),
            format!("otwrap-launch:{PROTOCOL_VERSION}:{}", &token[1..]),
        ] {
            let e = parse_handshake(refused.as_ref()).unwrap_err();
            assert!(
                matches!(e, HandshakeError::NotAHandshake { .. }),
                "{refused:?}: {e}"
            );
            let message = e.to_string();
            assert!(message.contains("internal to otwrap"), "{message}");
            assert!(
                message.contains("did you mean `OTWRAP_WORKERS`"),
                "{message}"
            );
        }
        assert_eq!(
            parse_handshake(format!("otwrap-worker:999:{token}").as_ref()),
            Err(HandshakeError::OtherProtocol { driver: 999 })
        );
        assert_eq!(
            parse_handshake(format!("otwrap-task:{PROTOCOL_VERSION}:{token}").as_ref()),
            Ok(Handshake::Task)
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic generator: no dependency needed for this check.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..2000 {
            let len = (state % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = read_frame::<FromWorker>(&mut &bytes[..]);
            let _ = read_greeting(&mut &bytes[..]);
        }
    }
}
