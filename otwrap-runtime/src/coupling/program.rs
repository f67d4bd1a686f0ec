//! Running the external program of one evaluation: no shell unless asked,
//! a supervised process group (so a timeout, an interruption or the death
//! of this process kills its children too: see `process_tree`), output
//! captured to files in the run directory, failures reported with the end
//! of stderr.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::error::describe_status;
use super::CouplingError;
use crate::process_tree::ProcessTree;

/// Size of the stderr excerpt quoted in [`CouplingError::ProgramFailed`].
const TAIL_BYTES: usize = 2048;
const TAIL_LINES: usize = 20;
/// After killing a timed-out program, how long to wait for a process that
/// left the group but still holds a captured pipe.
const PIPE_GRACE: Duration = Duration::from_secs(1);
/// File names used by [`Capture::Auto`] in the run directory.
const STDOUT_FILE: &str = "stdout.txt";
const STDERR_FILE: &str = "stderr.txt";

/// Where a standard stream of the program goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Capture {
    /// To `stdout.txt` / `stderr.txt` in the run directory when one is set,
    /// otherwise into memory.
    #[default]
    Auto,
    /// To this file (created or truncated); a relative path is relative to
    /// the run directory when one is set.
    File(PathBuf),
    /// Into memory, returned in [`Output`].
    Memory,
    /// To `/dev/null`.
    Discard,
    /// To this process's own stream.
    Inherit,
}

/// What became of a captured stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Captured {
    /// Written to this file.
    File(PathBuf),
    /// Kept in memory.
    Memory(Vec<u8>),
    /// Discarded or inherited.
    NotCaptured,
}

impl Captured {
    /// The file the stream was written to, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Captured::File(path) => Some(path),
            _ => None,
        }
    }

    /// The bytes kept in memory, if any.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Captured::Memory(bytes) => Some(bytes),
            _ => None,
        }
    }
}

/// How a run ended. A failed run only gets here with
/// [`Program::check(false)`](Program::check).
#[derive(Clone, Debug)]
pub struct Output {
    /// The program's exit status.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: Captured,
    /// Its standard error.
    pub stderr: Captured,
    /// Wall-clock time from start to exit.
    pub duration: Duration,
}

/// An external program to run, configured like [`std::process::Command`].
///
/// Differences from `Command` that matter for a simulation code:
/// - stdin is `/dev/null`, so a program that asks a question fails instead
///   of hanging;
/// - with a run directory, stdout and stderr go to `stdout.txt` and
///   `stderr.txt` in it (see [`Capture`]);
/// - the program runs in its own process group, and on [`timeout`](Self::timeout)
///   the whole group is killed with SIGKILL;
/// - a non-zero exit is an error quoting the end of stderr, unless
///   [`check(false)`](Self::check).
///
/// Builder methods take and return `self`, so a configured `Program` can be
/// kept and cloned for each evaluation; [`run`](Self::run) takes `&self`.
///
/// ```
/// use otwrap_runtime::coupling::{Captured, Program};
/// use std::time::Duration;
///
/// let output = Program::new("echo")
///     .args(["-n", "hello"])
///     .timeout(Duration::from_secs(10))
///     .run()?;
/// assert_eq!(output.stdout, Captured::Memory(b"hello".to_vec()));
/// # Ok::<(), otwrap_runtime::coupling::CouplingError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a Program does nothing until run"]
pub struct Program {
    program: OsString,
    args: Vec<OsString>,
    dir: Option<PathBuf>,
    envs: Vec<(OsString, Option<OsString>)>,
    timeout: Option<Duration>,
    stdout: Capture,
    stderr: Capture,
    shell: bool,
    check: bool,
}

/// What the supervision of a running child reports.
enum Event {
    Exited(io::Result<ExitStatus>),
    Stdout(io::Result<Vec<u8>>),
    Stderr(io::Result<Vec<u8>>),
}

impl Program {
    /// A program found through `PATH` (or at this path if it contains `/`).
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Program {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            dir: None,
            envs: Vec::new(),
            timeout: None,
            stdout: Capture::Auto,
            stderr: Capture::Auto,
            shell: false,
            check: true,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|arg| arg.as_ref().to_owned()));
        self
    }

    /// The directory the program runs in (the evaluation's work directory).
    /// This process's own current directory is never changed.
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Sets an environment variable for the program.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable for the program.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.envs.push((key.as_ref().to_owned(), None));
        self
    }

    /// Kills the program and all its children (its process group) with
    /// SIGKILL if it has not finished after `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Where stdout goes (default [`Capture::Auto`]).
    pub fn stdout(mut self, capture: Capture) -> Self {
        self.stdout = capture;
        self
    }

    /// Where stderr goes (default [`Capture::Auto`]).
    pub fn stderr(mut self, capture: Capture) -> Self {
        self.stderr = capture;
        self
    }

    /// Sends stdout to this file (relative to the run directory if set).
    pub fn stdout_file(self, path: impl AsRef<Path>) -> Self {
        self.stdout(Capture::File(path.as_ref().to_owned()))
    }

    /// Sends stderr to this file (relative to the run directory if set).
    pub fn stderr_file(self, path: impl AsRef<Path>) -> Self {
        self.stderr(Capture::File(path.as_ref().to_owned()))
    }

    /// Runs the program through `sh -c` (default: no shell). The program
    /// string is then a shell command line (pipes, redirections, `&`...)
    /// and the arguments are appended to it single-quoted, so they reach
    /// the command verbatim.
    pub fn shell(mut self, shell: bool) -> Self {
        self.shell = shell;
        self
    }

    /// Whether an unsuccessful exit is an error (default `true`). With
    /// `false`, [`run`](Self::run) returns the [`Output`] whatever the status.
    pub fn check(mut self, check: bool) -> Self {
        self.check = check;
        self
    }

    /// Runs the program to completion.
    pub fn run(&self) -> Result<Output, CouplingError> {
        let (stdout_stdio, stdout) = self.open_capture(&self.stdout, STDOUT_FILE)?;
        let (stderr_stdio, stderr) = self.open_capture(&self.stderr, STDERR_FILE)?;
        // A supervised group: the program and everything it starts die with
        // this evaluation (timeout, interruption, end, or our own death).
        let tree = ProcessTree::start().map_err(|source| CouplingError::Spawn {
            program: self.display_program(),
            source: io::Error::new(
                source.kind(),
                format!("cannot start the supervisor of its process group: {source}"),
            ),
        })?;
        let mut command = self.command();
        command
            .stdin(Stdio::null())
            .stdout(stdout_stdio)
            .stderr(stderr_stdio)
            .process_group(tree.group() as i32);

        tracing::debug!(program = %self.display_program(), dir = ?self.dir, "starting program");
        let start = Instant::now();
        let child = command.spawn().map_err(|source| self.spawn_error(source))?;
        let supervised = self.supervise(child, &tree, start);
        // Leftover background processes die here, before the pipes they may
        // hold are read to their end.
        drop(tree);
        if crate::interrupt::requested() {
            return Err(CouplingError::Interrupted {
                program: self.display_program(),
                cause: crate::interrupt::cause(),
            });
        }
        let supervised = supervised?;
        let duration = start.elapsed();
        tracing::debug!(
            program = %self.display_program(),
            status = %describe_status(supervised.status),
            ?duration,
            "program finished"
        );

        let stdout = supervised.stdout.map_or(stdout, Captured::Memory);
        let stderr = supervised.stderr.map_or(stderr, Captured::Memory);
        if self.check && !supervised.status.success() {
            return Err(CouplingError::ProgramFailed {
                program: self.display_program(),
                args: self.display_args(),
                dir: self.dir.clone(),
                status: supervised.status,
                stderr_tail: stderr_tail(&stderr),
            });
        }
        Ok(Output {
            status: supervised.status,
            stdout,
            stderr,
            duration,
        })
    }

    fn command(&self) -> Command {
        let mut command = if self.shell {
            let mut line = self.program.clone();
            for arg in &self.args {
                line.push(" ");
                line.push(crate::core::paths::shell_quote_os(arg));
            }
            let mut command = Command::new("sh");
            command.arg("-c").arg(line);
            command
        } else {
            let mut command = Command::new(&self.program);
            command.args(&self.args);
            command
        };
        if let Some(dir) = &self.dir {
            command.current_dir(dir);
        }
        for (key, value) in &self.envs {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    }

    /// The `Stdio` for the child and the `Captured` to report if the stream
    /// goes to a file or nowhere (memory capture is filled in later).
    fn open_capture(
        &self,
        capture: &Capture,
        default_name: &str,
    ) -> Result<(Stdio, Captured), CouplingError> {
        let path = match (capture, &self.dir) {
            (Capture::Auto, Some(dir)) => dir.join(default_name),
            (Capture::Auto, None) | (Capture::Memory, _) => {
                return Ok((Stdio::piped(), Captured::NotCaptured))
            }
            (Capture::File(path), Some(dir)) => dir.join(path),
            (Capture::File(path), None) => path.clone(),
            (Capture::Discard, _) => return Ok((Stdio::null(), Captured::NotCaptured)),
            (Capture::Inherit, _) => return Ok((Stdio::inherit(), Captured::NotCaptured)),
        };
        // O_NOFOLLOW: a symlink at the capture path (planted, or left by a
        // program) is an error, never a file truncated elsewhere.
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        match created {
            Ok(file) => Ok((Stdio::from(file), Captured::File(path))),
            Err(source) => match &self.dir {
                Some(dir) if !dir.is_dir() => Err(CouplingError::DirNotFound {
                    program: self.display_program(),
                    dir: dir.clone(),
                }),
                _ => Err(CouplingError::WriteFile { path, source }),
            },
        }
    }

    /// Waits for the child and its captured pipes, enforcing the timeout.
    ///
    /// Without a timeout and without memory capture this is a plain
    /// `wait()`. Otherwise helper threads wait and read, and report through
    /// a channel, so the timeout is exact and nothing spins.
    fn supervise(
        &self,
        mut child: Child,
        tree: &ProcessTree,
        start: Instant,
    ) -> Result<Supervised, CouplingError> {
        let stdout_pipe = child.stdout.take();
        let stderr_pipe = child.stderr.take();
        let wait_error = |source| CouplingError::Spawn {
            program: self.display_program(),
            source,
        };
        if self.timeout.is_none() && stdout_pipe.is_none() && stderr_pipe.is_none() {
            let status = child.wait().map_err(wait_error)?;
            return Ok(Supervised {
                status,
                stdout: None,
                stderr: None,
            });
        }

        // One captured stream and no timeout: read it here, no thread needed
        // (starting a thread costs tens of microseconds per evaluation).
        let (stdout_pipe, stderr_pipe) = match (stdout_pipe, stderr_pipe) {
            (Some(pipe), None) if self.timeout.is_none() => {
                let (status, bytes) = read_then_wait(&mut child, tree, pipe).map_err(wait_error)?;
                return Ok(Supervised {
                    status,
                    stdout: Some(bytes),
                    stderr: None,
                });
            }
            (None, Some(pipe)) if self.timeout.is_none() => {
                let (status, bytes) = read_then_wait(&mut child, tree, pipe).map_err(wait_error)?;
                return Ok(Supervised {
                    status,
                    stdout: None,
                    stderr: Some(bytes),
                });
            }
            pipes => pipes,
        };
        let (sender, events) = mpsc::channel();
        let mut pending_pipes = 0;
        if let Some(pipe) = stdout_pipe {
            spawn_reader(pipe, sender.clone(), Event::Stdout);
            pending_pipes += 1;
        }
        if let Some(pipe) = stderr_pipe {
            spawn_reader(pipe, sender.clone(), Event::Stderr);
            pending_pipes += 1;
        }
        let mut status = None;
        if self.timeout.is_some() {
            let sender = sender.clone();
            thread::spawn(move || {
                let _ = sender.send(Event::Exited(child.wait()));
            });
        } else {
            status = Some(child.wait().map_err(wait_error)?);
            // What the program left behind may hold the pipes open.
            tree.kill();
        }
        drop(sender);

        let mut result = Supervised {
            status: ExitStatus::default(),
            stdout: None,
            stderr: None,
        };
        let mut deadline = self.timeout.map(|timeout| start + timeout);
        let mut timed_out = false;
        let mut failure = None;
        while status.is_none() || pending_pipes > 0 {
            let event = match deadline {
                None => events.recv().map_err(|_| ()),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    match events.recv_timeout(left) {
                        Ok(event) => Ok(event),
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if timed_out {
                                // Only pipes held by an escaped process remain.
                                break;
                            }
                            timed_out = true;
                            tree.kill();
                            tracing::warn!(
                                program = %self.display_program(),
                                timeout = ?self.timeout,
                                "timeout: killed the program's process group"
                            );
                            // The exit event is certain after SIGKILL; bound
                            // only the wait for the pipes.
                            deadline = if status.is_none() {
                                None
                            } else {
                                Some(Instant::now() + PIPE_GRACE)
                            };
                            continue;
                        }
                        Err(mpsc::RecvTimeoutError::Disconnected) => Err(()),
                    }
                }
            };
            // Errors are kept for later: returning now could leave the
            // program running past its timeout.
            match event {
                Ok(Event::Exited(exited)) => {
                    status = Some(exited.unwrap_or_else(|error| {
                        failure.get_or_insert(error);
                        ExitStatus::default()
                    }));
                    // What the program left behind may hold the pipes open.
                    tree.kill();
                    if timed_out {
                        deadline = Some(Instant::now() + PIPE_GRACE);
                    }
                }
                Ok(Event::Stdout(bytes)) => {
                    pending_pipes -= 1;
                    result.stdout = bytes.map_err(|error| failure.get_or_insert(error)).ok();
                }
                Ok(Event::Stderr(bytes)) => {
                    pending_pipes -= 1;
                    result.stderr = bytes.map_err(|error| failure.get_or_insert(error)).ok();
                }
                // Every sender is gone: nothing more can arrive.
                Err(()) => break,
            }
        }

        if let (true, Some(timeout)) = (timed_out, self.timeout) {
            return Err(CouplingError::Timeout {
                program: self.display_program(),
                args: self.display_args(),
                dir: self.dir.clone(),
                timeout,
            });
        }
        if let Some(error) = failure {
            return Err(wait_error(error));
        }
        result.status = status.ok_or_else(|| {
            wait_error(io::Error::other(
                "the waiting thread ended without a status",
            ))
        })?;
        Ok(result)
    }

    fn spawn_error(&self, source: io::Error) -> CouplingError {
        let program = self.display_program();
        match source.kind() {
            io::ErrorKind::NotFound => {
                if let Some(dir) = self.dir.as_ref().filter(|dir| !dir.is_dir()) {
                    return CouplingError::DirNotFound {
                        program,
                        dir: dir.clone(),
                    };
                }
                let hint = if self.shell {
                    String::from("`sh` is needed to run with shell(true)")
                } else if program.contains('/') {
                    match &self.dir {
                        Some(dir) => format!(
                            "no such file (a relative path is taken from the run directory `{}`)",
                            dir.display()
                        ),
                        None => String::from("no such file, check the path"),
                    }
                } else {
                    format!(
                        "it is in no directory of PATH={}; give its full path or extend PATH",
                        self.path_variable()
                    )
                };
                CouplingError::ProgramNotFound { program, hint }
            }
            io::ErrorKind::PermissionDenied => CouplingError::ProgramNotExecutable { program },
            _ => CouplingError::Spawn { program, source },
        }
    }

    /// The PATH the program was searched in: ours, unless overridden.
    fn path_variable(&self) -> String {
        let overridden = self.envs.iter().rev().find(|(key, _)| key == "PATH");
        let value = match overridden {
            Some((_, value)) => value.clone(),
            None => std::env::var_os("PATH"),
        };
        value.map_or_else(
            || String::from("(unset)"),
            |v| v.to_string_lossy().into_owned(),
        )
    }

    fn display_program(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    fn display_args(&self) -> Vec<String> {
        self.args
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }
}

struct Supervised {
    status: ExitStatus,
    stdout: Option<Vec<u8>>,
    stderr: Option<Vec<u8>>,
}

trait Pipe: Read + Send + 'static {}
impl Pipe for ChildStdout {}
impl Pipe for ChildStderr {}

/// Reads a child's only captured stream to its end, then reaps the child.
///
/// A process the program left behind (`solver &` in a script) may hold the
/// pipe open long after the program exited: once the program has exited
/// (its pidfd is readable), the tree is killed, so the end of the stream
/// comes. Without pidfds (Linux before 5.3) the stream is read to its end.
fn read_then_wait(
    child: &mut Child,
    tree: &ProcessTree,
    mut pipe: impl Read + AsRawFd,
) -> io::Result<(ExitStatus, Vec<u8>)> {
    let mut bytes = Vec::new();
    if let Some(exited) = pidfd(child.id()) {
        let mut chunk = [0u8; 8192];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: pipe.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: exited.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            // SAFETY: two valid pollfd structs on descriptors we hold.
            if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(error);
            }
            if fds[1].revents != 0 {
                // The program exited: what still writes was left behind.
                tree.kill();
                break;
            }
            if fds[0].revents != 0 {
                match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    let read = pipe.read_to_end(&mut bytes);
    let status = child.wait()?;
    read.map(|_| (status, bytes))
}

/// A descriptor that becomes readable when process `pid` (our unreaped
/// child) exits; `None` where pidfds do not exist.
fn pidfd(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open on our own unreaped child; the descriptor returned
    // is owned by the OwnedFd only.
    unsafe {
        let fd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd as libc::c_int))
    }
}

fn spawn_reader(
    mut pipe: impl Pipe,
    sender: mpsc::Sender<Event>,
    event: fn(io::Result<Vec<u8>>) -> Event,
) {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let result = pipe.read_to_end(&mut bytes).map(|_| bytes);
        let _ = sender.send(event(result));
    });
}

/// The last lines of stderr, for error messages.
fn stderr_tail(stderr: &Captured) -> String {
    let bytes = match stderr {
        Captured::Memory(bytes) => {
            let start = bytes.len().saturating_sub(TAIL_BYTES);
            return tail_lines(&bytes[start..], start > 0);
        }
        Captured::File(path) => read_file_tail(path),
        Captured::NotCaptured => return String::new(),
    };
    match bytes {
        Ok((bytes, truncated)) => tail_lines(&bytes, truncated),
        Err(error) => format!(
            "(cannot read `{}`: {error})",
            stderr
                .path()
                .map_or_else(String::new, |p| p.display().to_string())
        ),
    }
}

fn read_file_tail(path: &Path) -> io::Result<(Vec<u8>, bool)> {
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    let start = length.saturating_sub(TAIL_BYTES as u64);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity(TAIL_BYTES);
    file.take(TAIL_BYTES as u64).read_to_end(&mut bytes)?;
    Ok((bytes, start > 0))
}

/// At most [`TAIL_LINES`] last lines. When the bytes start mid-file, the
/// first line is partial: it is dropped if other lines follow, otherwise
/// kept behind `...`.
fn tail_lines(bytes: &[u8], truncated: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut text = text.trim_end();
    let mut tail = String::new();
    if truncated {
        match text.find('\n') {
            Some(newline) => text = &text[newline + 1..],
            None => tail.push_str("..."),
        }
    }
    let start = text
        .rmatch_indices('\n')
        .nth(TAIL_LINES - 1)
        .map_or(0, |(i, _)| i + 1);
    tail.push_str(&text[start..]);
    tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn memory_text(captured: &Captured) -> String {
        String::from_utf8(captured.bytes().unwrap().to_vec()).unwrap()
    }

    /// Dead or a zombie waiting for a reaper that may never come (PID 1 in
    /// a container does not always reap).
    fn process_is_gone(pid: u32) -> bool {
        match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        }
    }

    /// Waits up to 2 s for `pid` to be gone.
    fn gone_within_2_s(pid: u32) -> bool {
        let gone_by = Instant::now() + Duration::from_secs(2);
        while !process_is_gone(pid) && Instant::now() < gone_by {
            thread::sleep(Duration::from_millis(10));
        }
        process_is_gone(pid)
    }

    #[test]
    fn captures_into_memory_without_a_dir() {
        let output = Program::new("sh")
            .args(["-c", "printf out; printf err >&2"])
            .run()
            .unwrap();
        assert!(output.status.success());
        assert_eq!(memory_text(&output.stdout), "out");
        assert_eq!(memory_text(&output.stderr), "err");
        assert!(output.stdout.path().is_none());
        assert!(output.duration > Duration::ZERO);
    }

    #[test]
    fn captures_into_files_in_the_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let output = Program::new("sh")
            .args(["-c", "printf out; printf err >&2; touch created-here"])
            .current_dir(dir.path())
            .run()
            .unwrap();
        assert_eq!(output.stdout, Captured::File(dir.path().join("stdout.txt")));
        assert_eq!(
            output.stderr.path(),
            Some(dir.path().join("stderr.txt").as_path())
        );
        assert!(output.stderr.bytes().is_none());
        assert_eq!(
            fs::read_to_string(dir.path().join("stdout.txt")).unwrap(),
            "out"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("stderr.txt")).unwrap(),
            "err"
        );
        assert!(dir.path().join("created-here").exists());
    }

    #[test]
    fn explicit_captures() {
        let dir = tempfile::tempdir().unwrap();
        let output = Program::new("sh")
            .args(["-c", "echo out; echo err >&2"])
            .current_dir(dir.path())
            .stdout_file("solver.log")
            .stderr(Capture::Discard)
            .run()
            .unwrap();
        assert_eq!(output.stdout, Captured::File(dir.path().join("solver.log")));
        assert_eq!(output.stderr, Captured::NotCaptured);
        assert_eq!(
            fs::read_to_string(dir.path().join("solver.log")).unwrap(),
            "out\n"
        );
        assert!(!dir.path().join("stderr.txt").exists());

        let absolute = dir.path().join("abs.log");
        let output = Program::new("echo")
            .arg("x")
            .stdout_file(&absolute)
            .stderr_file(dir.path().join("abs.err"))
            .timeout(Duration::from_secs(10))
            .run()
            .unwrap();
        assert_eq!(output.stdout.path(), Some(absolute.as_path()));
        assert_eq!(fs::read_to_string(&absolute).unwrap(), "x\n");

        let output = Program::new("echo")
            .stdout(Capture::Memory)
            .stderr(Capture::Inherit)
            .current_dir(dir.path())
            .run()
            .unwrap();
        assert_eq!(memory_text(&output.stdout), "\n");
        assert_eq!(output.stderr, Captured::NotCaptured);
    }

    #[test]
    fn env_and_current_dir_are_applied() {
        let dir = tempfile::tempdir().unwrap();
        let output = Program::new("sh")
            .args([
                "-c",
                r#"printf '%s|%s|' "$OTWRAP_A" "${OTWRAP_B-unset}"; pwd -P"#,
            ])
            .env("OTWRAP_A", "value a")
            .env("OTWRAP_B", "b")
            .env_remove("OTWRAP_B")
            .current_dir(dir.path())
            .stdout(Capture::Memory)
            .run()
            .unwrap();
        let expected = format!(
            "value a|unset|{}\n",
            dir.path().canonicalize().unwrap().display()
        );
        assert_eq!(memory_text(&output.stdout), expected);
    }

    #[test]
    fn a_symlink_at_a_capture_path_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let precious = dir.path().join("precious.txt");
        std::fs::write(&precious, "keep").unwrap();
        std::os::unix::fs::symlink(&precious, dir.path().join("out.txt")).unwrap();
        let err = Program::new("echo")
            .arg("overwritten")
            .current_dir(dir.path())
            .stdout_file("out.txt")
            .run()
            .unwrap_err();
        assert!(matches!(err, CouplingError::WriteFile { .. }), "{err:?}");
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep");
    }

    #[test]
    fn stdin_is_empty() {
        let output = Program::new("cat")
            .timeout(Duration::from_secs(10))
            .run()
            .unwrap();
        assert_eq!(memory_text(&output.stdout), "");
    }

    #[test]
    fn shell_only_when_asked_with_quoted_args() {
        let output = Program::new("printf '%s|' \"$0\"").run();
        assert!(matches!(output, Err(CouplingError::ProgramNotFound { .. })));

        let output = Program::new("printf '%s|'")
            .args(["a b", "it's", "$HOME"])
            .shell(true)
            .run()
            .unwrap();
        assert_eq!(memory_text(&output.stdout), "a b|it's|$HOME|");

        // Bytes that are not UTF-8 reach the program unchanged.
        use std::os::unix::ffi::OsStrExt;
        let raw = OsStr::from_bytes(b"caf\xe9 '$(x)'");
        let output = Program::new("printf '%s'")
            .arg(raw)
            .shell(true)
            .run()
            .unwrap();
        assert_eq!(output.stdout.bytes(), Some(raw.as_bytes()));
    }

    #[test]
    fn program_not_found_names_program_and_path() {
        let err = Program::new("otwrap-no-such-program").run().unwrap_err();
        assert!(
            matches!(&err, CouplingError::ProgramNotFound { program, .. } if program == "otwrap-no-such-program"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains("`otwrap-no-such-program`"), "{message}");
        assert!(message.contains("PATH="), "{message}");

        let err = Program::new("otwrap-no-such-program")
            .env("PATH", "/nowhere")
            .run()
            .unwrap_err();
        assert!(err.to_string().contains("PATH=/nowhere;"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let err = Program::new("./missing-solver")
            .current_dir(dir.path())
            .run()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("relative path is taken from the run directory"),
            "{err}"
        );
    }

    #[test]
    fn program_not_executable() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("solver.sh");
        fs::write(&script, "#!/bin/sh\nexit 0\n").unwrap();
        let err = Program::new(&script).run().unwrap_err();
        assert!(
            matches!(err, CouplingError::ProgramNotExecutable { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("chmod +x"));
    }

    #[test]
    fn missing_run_dir() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("run-7");
        for capture in [Capture::Auto, Capture::Memory] {
            let err = Program::new("true")
                .current_dir(&missing)
                .stdout(capture)
                .stderr(Capture::Discard)
                .run()
                .unwrap_err();
            assert!(
                matches!(&err, CouplingError::DirNotFound { dir, .. } if *dir == missing),
                "{err:?}"
            );
            assert!(err.to_string().contains("run-7"));
        }
    }

    #[test]
    fn unwritable_capture_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Program::new("true")
            .current_dir(dir.path())
            .stdout_file("no-dir/out.txt")
            .run()
            .unwrap_err();
        assert!(
            matches!(&err, CouplingError::WriteFile { path, .. } if path.ends_with("no-dir/out.txt")),
            "{err:?}"
        );
    }

    const NOISY_FAILURE: &str = "for i in $(seq 1 30); do echo line$i >&2; done; exit 3";

    fn assert_failed_with_tail(err: &CouplingError) {
        let CouplingError::ProgramFailed {
            program,
            args,
            status,
            stderr_tail,
            ..
        } = err
        else {
            panic!("expected ProgramFailed, got {err:?}");
        };
        assert_eq!(program, "sh");
        assert_eq!(args[0], "-c");
        assert_eq!(status.code(), Some(3));
        let lines: Vec<&str> = stderr_tail.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines[0], "line11");
        assert_eq!(lines[19], "line30");
        let message = err.to_string();
        assert!(message.contains("failed with exit status 3"), "{message}");
        assert!(message.ends_with("\n    line30"), "{message}");
    }

    #[test]
    fn non_zero_exit_quotes_stderr_tail_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Program::new("sh")
            .args(["-c", NOISY_FAILURE])
            .current_dir(dir.path())
            .run()
            .unwrap_err();
        assert_failed_with_tail(&err);
        assert!(err.to_string().contains(&dir.path().display().to_string()));
    }

    #[test]
    fn non_zero_exit_quotes_stderr_tail_from_memory() {
        let err = Program::new("sh")
            .args(["-c", NOISY_FAILURE])
            .timeout(Duration::from_secs(20))
            .run()
            .unwrap_err();
        assert_failed_with_tail(&err);
    }

    #[test]
    fn long_stderr_is_cut_to_two_kilobytes() {
        let err = Program::new("sh")
            .args(["-c", "head -c 5000 /dev/zero | tr '\\0' x >&2; exit 1"])
            .run()
            .unwrap_err();
        let CouplingError::ProgramFailed { stderr_tail, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(*stderr_tail, format!("...{}", "x".repeat(TAIL_BYTES)));

        let wide_lines =
            "for i in $(seq 1 100); do echo \"$i $(printf '%050d' 0)\" >&2; done; exit 1";
        let dir = tempfile::tempdir().unwrap();
        let err = Program::new("sh")
            .args(["-c", wide_lines])
            .current_dir(dir.path())
            .run()
            .unwrap_err();
        let CouplingError::ProgramFailed { stderr_tail, .. } = &err else {
            panic!("{err:?}");
        };
        let lines: Vec<&str> = stderr_tail.lines().collect();
        assert_eq!(lines.len(), TAIL_LINES);
        assert!(lines[0].starts_with("81 "), "{stderr_tail}");

        assert_eq!(tail_lines(b"abc\ndef\n", true), "def");
        assert_eq!(tail_lines(b"abc\ndef\n", false), "abc\ndef");
    }

    #[test]
    fn empty_stderr_is_reported() {
        let err = Program::new("false").run().unwrap_err();
        assert!(
            err.to_string().contains("(stderr empty or not captured)"),
            "{err}"
        );
    }

    #[test]
    fn killed_by_signal_names_the_signal() {
        let err = Program::new("sh")
            .args(["-c", "kill -SEGV $$"])
            .run()
            .unwrap_err();
        assert!(err.to_string().contains("signal SIGSEGV (11)"), "{err}");
    }

    #[test]
    fn check_false_returns_the_status() {
        let output = Program::new("sh")
            .args(["-c", "exit 4"])
            .check(false)
            .run()
            .unwrap();
        assert_eq!(output.status.code(), Some(4));
    }

    /// A script that leaves a background child holding its captured output
    /// returns when the script exits, and the child is gone (one stream in
    /// memory: the pidfd path; both streams: the reader threads).
    #[test]
    fn a_background_child_holding_the_pipe_neither_hangs_nor_survives() {
        for both in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let start = Instant::now();
            let stderr = if both {
                Capture::Memory
            } else {
                Capture::Discard
            };
            let out = Program::new("sleep 300 & echo $! > left.pid; echo done")
                .shell(true)
                .current_dir(dir.path())
                .stdout(Capture::Memory)
                .stderr(stderr)
                .run()
                .unwrap();
            // Generous: the point is returning long before the 300 s child.
            assert!(start.elapsed() < Duration::from_secs(100), "both={both}");
            assert_eq!(
                out.stdout,
                Captured::Memory(b"done\n".to_vec()),
                "both={both}"
            );
            let pid: u32 = fs::read_to_string(dir.path().join("left.pid"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            assert!(
                gone_within_2_s(pid),
                "sleep {pid} outlived the run (both={both})"
            );
        }
    }

    #[test]
    fn timeout_kills_the_grandchildren_with_files() {
        let dir = tempfile::tempdir().unwrap();
        let start = Instant::now();
        let err = Program::new("sleep 30 & echo $! > grandchild.pid; sleep 30")
            .shell(true)
            .current_dir(dir.path())
            .timeout(Duration::from_millis(300))
            .run()
            .unwrap_err();
        let elapsed = start.elapsed();
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
        assert!(matches!(err, CouplingError::Timeout { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("did not finish within 300ms"), "{message}");
        assert!(
            message.contains("`sh`") || message.contains("sleep 30"),
            "{message}"
        );

        let pid: u32 = fs::read_to_string(dir.path().join("grandchild.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            gone_within_2_s(pid),
            "grandchild {pid} survived the timeout"
        );
    }

    #[test]
    fn timeout_kills_the_grandchildren_holding_pipes() {
        let start = Instant::now();
        let err = Program::new("sh")
            .args(["-c", "sleep 30 & sleep 30"])
            .timeout(Duration::from_millis(200))
            .run()
            .unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(matches!(err, CouplingError::Timeout { .. }), "{err:?}");
    }

    #[test]
    fn fast_program_beats_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let output = Program::new("true")
            .current_dir(dir.path())
            .timeout(Duration::from_secs(10))
            .run()
            .unwrap();
        assert!(output.status.success());
        assert!(output.duration < Duration::from_secs(5));
    }
}
