//! A process group that cannot outlive the evaluation that started it.
//!
//! Each external program of an evaluation runs in a process group led by a
//! small supervisor: a process forked from this one (no exec) that blocks on
//! a pipe whose only writer is this process. When this process dies for any
//! reason (SIGKILL included) the kernel closes the pipe and the supervisor
//! kills its whole group (the program, its children, their children) before
//! exiting. When the evaluation ends normally, [`ProcessTree`]'s drop kills
//! the group (leftover background children included) and reaps the
//! supervisor.
//!
//! A parent-death signal would not do: it reaches only the direct child and
//! fires when the *thread* that forked it exits (rayon threads come and go).
//! Limit: a program that leaves the group on purpose (`setsid`, `setpgid`,
//! a daemon's double fork) escapes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::interrupt::{register_group, GroupRegistration};

/// A supervised process group. Start programs in it with
/// `Command::process_group(tree.group())`.
pub(crate) struct ProcessTree {
    leader: libc::pid_t,
    /// The write end of the supervisor's pipe; closing it (here or by the
    /// death of this process) makes the supervisor kill the group.
    control: Option<OwnedFd>,
    _interrupt: GroupRegistration,
}

impl ProcessTree {
    /// Forks the supervisor and makes it lead a new process group.
    pub(crate) fn start() -> io::Result<ProcessTree> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors that we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptors were just created and are owned here only.
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let fallback_limit = open_files_limit();
        let read_fd = read_end.as_raw_fd();
        // SAFETY: after fork the child runs only async-signal-safe calls on
        // values prepared before the fork (no allocation, no lock), then
        // `_exit`s; it never returns into Rust code of this process.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; this is the child.
            unsafe { supervise(read_fd, fallback_limit) }
        }
        // Also set here: the group must exist before a program joins it,
        // whichever of the two processes runs first.
        // SAFETY: plain call on our own child.
        unsafe {
            libc::setpgid(pid, pid);
        }
        drop(read_end);
        Ok(ProcessTree {
            leader: pid,
            control: Some(write_end),
            _interrupt: register_group(pid),
        })
    }

    /// The process group programs of this evaluation join.
    pub(crate) fn group(&self) -> u32 {
        self.leader.unsigned_abs()
    }

    /// Kills every process of the group (the supervisor included) now.
    pub(crate) fn kill(&self) {
        // SAFETY: killpg only sends a signal. The group cannot have been
        // reused: its leader is our unreaped child until `drop`.
        unsafe {
            libc::killpg(self.leader, libc::SIGKILL);
        }
    }
}

impl Drop for ProcessTree {
    fn drop(&mut self) {
        self.kill();
        self.control = None;
        let mut status = 0;
        // SAFETY: reaps our own child, which was just sent SIGKILL.
        unsafe {
            while libc::waitpid(self.leader, &mut status, 0) < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
    }
}

/// The highest descriptor number to close by hand if `close_range` is
/// missing (Linux before 5.9).
fn open_files_limit() -> libc::c_int {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if ok && limit.rlim_cur != libc::RLIM_INFINITY {
        libc::c_int::try_from(limit.rlim_cur.min(65_536)).unwrap_or(65_536)
    } else {
        65_536
    }
}

/// The supervisor: leads its own group, holds no descriptor but the read end
/// of the pipe (another evaluation's pipe must not stay open because of it),
/// ignores every signal it can, and waits for the pipe to close.
///
/// # Safety
///
/// Only in the child of `fork`: uses async-signal-safe calls only.
unsafe fn supervise(read_fd: libc::c_int, fallback_limit: libc::c_int) -> ! {
    libc::setpgid(0, 0);
    let mut all: libc::sigset_t = std::mem::zeroed();
    libc::sigfillset(&mut all);
    libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    if read_fd != 0 && libc::dup2(read_fd, 0) < 0 {
        libc::kill(0, libc::SIGKILL);
        libc::_exit(1);
    }
    if libc::syscall(libc::SYS_close_range, 1u32, u32::MAX, 0u32) != 0 {
        for fd in 1..fallback_limit {
            libc::close(fd);
        }
    }
    libc::chdir(c"/".as_ptr());
    let mut byte = 0u8;
    loop {
        let n = libc::read(0, (&raw mut byte).cast(), 1);
        if n < 0 && *libc::__errno_location() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
    }
    libc::kill(0, libc::SIGKILL);
    libc::_exit(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::time::{Duration, Instant};

    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                // A zombie is dead for our purpose.
                !stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    }

    #[test]
    fn dropping_the_tree_kills_the_grandchildren() {
        let tree = ProcessTree::start().expect("supervisor");
        let out = Command::new("sh")
            .arg("-c")
            .arg("sleep 300 >/dev/null 2>&1 & echo $!")
            .process_group(tree.group() as i32)
            .output()
            .expect("sh");
        let pid: u32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("pid");
        assert!(alive(pid), "the background sleep runs");
        drop(tree);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!alive(pid), "sleep {pid} survived its tree");
    }
}
