//! Worker mode: the same binary, started by a driver with `OTWRAP_WORKER`
//! set to its handshake value, serves evaluations of one registered model
//! over its standard input and output until the driver closes them. Any
//! other value of `OTWRAP_WORKER` is refused before a byte of the protocol
//! is written.

pub(crate) mod client;
pub mod launcher;
pub mod protocol;
pub(crate) mod run_dir;
pub(crate) mod task;

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use crate::model::{find_registered, registered_ids, EvalContext};
use protocol::{
    parse_handshake, read_frame, write_frame, FromWorker, Handshake, HandshakeError, ModelRef,
    ToWorker, MAGIC, PROTOCOL_VERSION, WORKER_ENV,
};

/// The exit status of a program whose `OTWRAP_WORKER` is not a driver's
/// handshake (`EX_CONFIG` of sysexits.h).
pub const REFUSED_EXIT: i32 = 78;

/// What `OTWRAP_WORKER` asks of this process: `None` when it is not set,
/// else the mode a driver asked for or why the value is refused.
pub fn handshake_in_env() -> Option<Result<Handshake, HandshakeError>> {
    std::env::var_os(WORKER_ENV).map(|value| parse_handshake(&value))
}

/// `true` when this process was started as a worker by a driver's handshake
/// (and has not yet been taken over by [`run_if_worker`]).
pub fn started_as_worker() -> bool {
    matches!(handshake_in_env(), Some(Ok(_)))
}

/// Called first thing in `main` by `#[otwrap::main]`: when the process was
/// started as a worker, serves the driver and exits; when it was started as
/// a launcher, starts and carries slot workers until the driver is gone,
/// then exits; when it was started as
/// a SLURM array task, evaluates its points from the run directory and
/// exits; when `OTWRAP_WORKER` holds anything else (a user's
/// `OTWRAP_WORKER=4` meant for `OTWRAP_WORKERS`), says so on stderr and
/// exits with [`REFUSED_EXIT`], stdout untouched; otherwise returns at once.
pub fn run_if_worker() {
    let mode = match handshake_in_env() {
        None => return,
        Some(Ok(mode)) => mode,
        Some(Err(refused)) => {
            eprintln!("otwrap: {refused}");
            std::process::exit(REFUSED_EXIT);
        }
    };
    // The driver checked the environment's OTWRAP_* names; a batch the model
    // runs here must not warn about them again.
    crate::config::skip_env_name_checks();
    if mode == Handshake::Task {
        // A SLURM array task: works from the run directory, then exits.
        task::run();
    }
    // Programs the model starts must not believe they are workers too.
    std::env::remove_var(WORKER_ENV);
    if mode == Handshake::Launch {
        // Starts the slot workers (with a handshake of their own), then exits.
        launcher::run();
    }
    let code = match serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("otwrap worker (pid {}): {e}", std::process::id());
            70
        }
    };
    std::process::exit(code);
}

/// Keeps the protocol stream private: the original stdout becomes a new file
/// descriptor for frames, and fd 1 is pointed at stderr, so whatever the
/// model (or a program it runs) prints can never corrupt the protocol.
fn take_protocol_stdout() -> io::Result<File> {
    // SAFETY: plain descriptor calls on descriptors this process owns; the
    // duplicated descriptor is owned by the returned File only.
    unsafe {
        let fd = libc::fcntl(libc::STDOUT_FILENO, libc::F_DUPFD_CLOEXEC, 3);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(File::from_raw_fd(fd))
    }
}

fn serve() -> io::Result<()> {
    let mut out = BufWriter::new(take_protocol_stdout()?);
    let busy = Arc::new(AtomicBool::new(false));
    let frames = read_input(Arc::clone(&busy));
    let next = || frames.recv().unwrap_or(Ok(None));
    out.write_all(MAGIC)?;
    write_frame(
        &mut out,
        &FromWorker::Hello {
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
            host: crate::host::hostname().to_string(),
        },
    )?;
    out.flush()?;
    let invoke: Box<crate::core::model::DynInvoke> = match next()? {
        Some(ToWorker::Init { protocol, model }) => {
            if protocol != PROTOCOL_VERSION {
                return Err(io::Error::other(format!(
                    "the driver speaks protocol {protocol}, this worker {PROTOCOL_VERSION}"
                )));
            }
            match resolve_model(&model) {
                Ok(invoke) => {
                    write_frame(&mut out, &FromWorker::Ready)?;
                    out.flush()?;
                    invoke
                }
                Err(unresolved) => {
                    let refusal = match unresolved {
                        Unresolved::Unknown(known) => FromWorker::UnknownModel {
                            model: model.label(),
                            known,
                        },
                        Unresolved::Unusable(message) => FromWorker::BadModel { message },
                    };
                    write_frame(&mut out, &refusal)?;
                    out.flush()?;
                    return Ok(());
                }
            }
        }
        None | Some(ToWorker::Shutdown) => return Ok(()),
        Some(other) => {
            return Err(io::Error::other(format!(
                "expected Init, received {other:?}"
            )))
        }
    };
    // A point is announced (`Started`) before it runs. When the next point
    // is already waiting as one finishes, its announcement goes out with
    // the result in one write.
    let mut announced: Option<(u64, Vec<u8>)> = None;
    loop {
        let (index, bytes) = match announced.take() {
            Some(point) => point,
            None => match next()? {
                Some(ToWorker::Evaluate { index, input }) => {
                    write_frame(&mut out, &FromWorker::Started { index })?;
                    out.flush()?;
                    (index, input)
                }
                None | Some(ToWorker::Shutdown) => return Ok(()),
                Some(other) => {
                    return Err(io::Error::other(format!("unexpected message {other:?}")))
                }
            },
        };
        let ctx = EvalContext::new(usize::try_from(index).unwrap_or(usize::MAX));
        busy.store(true, Ordering::SeqCst);
        let outcome = invoke(&bytes, &ctx);
        busy.store(false, Ordering::SeqCst);
        write_frame(&mut out, &FromWorker::Result { index, outcome })?;
        match frames.try_recv() {
            Ok(Ok(Some(ToWorker::Evaluate { index, input }))) => {
                write_frame(&mut out, &FromWorker::Started { index })?;
                announced = Some((index, input));
            }
            Ok(Ok(None | Some(ToWorker::Shutdown))) | Err(mpsc::TryRecvError::Disconnected) => {
                out.flush()?;
                return Ok(());
            }
            Ok(Ok(Some(other))) => {
                out.flush()?;
                return Err(io::Error::other(format!("unexpected message {other:?}")));
            }
            Ok(Err(e)) => {
                out.flush()?;
                return Err(e);
            }
            Err(mpsc::TryRecvError::Empty) => {}
        }
        out.flush()?;
    }
}

/// Why a worker cannot serve the model a driver asks for.
enum Unresolved {
    /// No model of that id is compiled in; the ids this binary knows.
    Unknown(Vec<String>),
    /// The description given does not decode or validate; why.
    Unusable(String),
}

/// The evaluation function of the model a driver asks for: a compiled-in
/// model found by id, or a description compiled once here.
fn resolve_model(model: &ModelRef) -> Result<Box<crate::core::model::DynInvoke>, Unresolved> {
    match model {
        ModelRef::Compiled(id) => match find_registered(id) {
            Some(reg) => Ok(Box::new(reg.invoke)),
            None => Err(Unresolved::Unknown(
                registered_ids().into_iter().map(String::from).collect(),
            )),
        },
        ModelRef::Described(bytes) => crate::described::worker_invoke(bytes)
            .map_err(|error| Unresolved::Unusable(error.to_string())),
    }
}

/// Reads the driver's frames on a thread of their own, so that the end of
/// the input is seen even while a point runs: a driver that is gone (killed,
/// its SSH connection dropped, its channel closed on a timeout) leaves no
/// evaluation running behind it. The worker then ends its process group (the
/// programs its model started) or, when it does not lead one, itself.
fn read_input(busy: Arc<AtomicBool>) -> mpsc::Receiver<io::Result<Option<ToWorker>>> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("otwrap-worker-input".into())
        .spawn(move || {
            let mut input = BufReader::new(io::stdin().lock());
            loop {
                let frame = read_frame::<ToWorker>(&mut input).map_err(io::Error::other);
                let end = !matches!(frame, Ok(Some(_)));
                if end && busy.load(Ordering::SeqCst) {
                    abandon();
                }
                if tx.send(frame).is_err() || end {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("otwrap worker: cannot start its input thread: {e}");
    }
    rx
}

/// Ends the evaluation in progress when the driver is gone.
fn abandon() -> ! {
    // SAFETY: plain process calls; the group is ours only when we lead it.
    unsafe {
        if libc::getpgrp() == libc::getpid() {
            libc::kill(0, libc::SIGKILL);
        }
        libc::_exit(75)
    }
}

/// A worker process just started, and its three pipes.
pub(crate) struct Spawned {
    pub(crate) child: std::process::Child,
    pub(crate) stdin: std::process::ChildStdin,
    pub(crate) stdout: std::process::ChildStdout,
    pub(crate) stderr: std::process::ChildStderr,
}

/// Starts `exe` as a worker (see [`command`]) and takes its pipes.
pub(crate) fn spawn(exe: &std::path::Path) -> Result<Spawned, String> {
    let mut child = command(exe)
        .spawn()
        .map_err(|e| format!("cannot start the worker program {}: {e}", exe.display()))?;
    match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
        (Some(stdin), Some(stdout), Some(stderr)) => Ok(Spawned {
            child,
            stdin,
            stdout,
            stderr,
        }),
        _ => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "the worker program {} started without its pipes",
                exe.display()
            ))
        }
    }
}

/// The command that starts `exe` as a worker serving its standard input
/// and output: in its own process group (a terminal's Ctrl-C goes to the
/// driver only, and a kill of the group reaches the programs its model
/// started), with its three standard streams piped, and, on Linux, killed
/// when the thread that started it ends (a worker must not outlive its
/// driver or launcher).
fn command(exe: &std::path::Path) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let mut cmd = std::process::Command::new(exe);
    cmd.env(WORKER_ENV, protocol::worker_env_value())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}
