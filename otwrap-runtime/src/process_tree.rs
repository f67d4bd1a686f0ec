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
//!
//! On x86_64 and aarch64 Linux the supervisor shares this process's memory
//! (`clone` with `CLONE_VM`, on a small stack of its own, making raw system
//! calls only): a plain `fork` copies the page tables and, worse, makes every
//! page this process writes while the program runs a copy-on-write fault,
//! which measured +0.6 to +1.0 ms per evaluation of a 1.8 ms solver.
//! Limit: a program that leaves the group on purpose (`setsid`, `setpgid`,
//! a daemon's double fork) escapes.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::interrupt::{register_group, GroupRegistration};

/// A supervised process group. Start programs in it with
/// `Command::process_group(tree.group())`.
pub(crate) struct ProcessTree {
    leader: libc::pid_t,
    /// The supervisor's stack when it shares our memory; unmapped once it
    /// is reaped.
    stack: Option<Stack>,
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
        let (pid, stack) = spawn_supervisor(read_end.as_raw_fd(), open_files_limit())?;
        // The group must exist before a program joins it. The supervisor
        // does not call setpgid itself: if this process died before this
        // line, it must not kill the group it was born in (ours).
        // SAFETY: plain call on our own child.
        unsafe {
            libc::setpgid(pid, pid);
        }
        drop(read_end);
        Ok(ProcessTree {
            leader: pid,
            stack,
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
        // The group cannot have been reused: its leader is our unreaped
        // child until `drop`.
        crate::host::kill_group(self.group());
    }
}

impl Drop for ProcessTree {
    fn drop(&mut self) {
        self.kill();
        self.control = None;
        // Waiting here for the supervisor to die would cost a wake-up on
        // another CPU per evaluation: it is reaped later (a zombie keeps its
        // group id reserved, so nothing can reuse it meanwhile).
        let stack = self.stack.take();
        if !try_reap(self.leader) {
            PENDING
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((self.leader, stack));
        }
        reap_pending();
    }
}

/// Supervisors killed but not yet reaped, with the stacks they ran on.
static PENDING: std::sync::Mutex<Vec<(libc::pid_t, Option<Stack>)>> =
    std::sync::Mutex::new(Vec::new());

/// Reaps `pid` if it has ended; `true` when it is gone.
fn try_reap(pid: libc::pid_t) -> bool {
    let mut status = 0;
    // SAFETY: reaps our own child without blocking.
    let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    // ECHILD: already reaped (cannot happen for our own child) — gone too.
    reaped == pid || reaped < 0
}

/// Reaps the supervisors that have died since, freeing their stacks. A
/// handful stay pending at most (each was sent SIGKILL).
fn reap_pending() {
    let Ok(mut pending) = PENDING.try_lock() else {
        return;
    };
    pending.retain(|(pid, _)| !try_reap(*pid));
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

/// Starts the supervisor: shares our memory where raw system calls are
/// written for the architecture, forks elsewhere.
fn spawn_supervisor(
    read_fd: libc::c_int,
    fallback_limit: libc::c_int,
) -> io::Result<(libc::pid_t, Option<Stack>)> {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        shared::spawn(read_fd, fallback_limit).map(|(pid, stack)| (pid, Some(stack)))
    }
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    {
        // SAFETY: after fork the child runs only async-signal-safe calls on
        // values prepared before the fork (no allocation, no lock), then
        // `_exit`s; it never returns into Rust code of this process.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above; this is the child.
            unsafe { forked::supervise(read_fd, fallback_limit) }
        }
        Ok((pid, None))
    }
}

/// A supervisor's stack, mapped by us and unmapped when dropped.
pub(crate) struct Stack {
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is owned by the `ProcessTree` alone; it is only
// unmapped, from whichever thread drops it.
unsafe impl Send for Stack {}
unsafe impl Sync for Stack {}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `shared::spawn`, which nothing
        // uses any more (its only user, the supervisor, was reaped).
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

/// The supervisor on a stack of its own in our address space: no page table
/// is copied and no page of ours becomes copy-on-write. It shares our memory
/// and our thread-local block, so it makes raw system calls only (no libc
/// wrapper: they write `errno`), touches nothing of ours but its argument,
/// and runs with every signal blocked (our handlers must not run in it).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
mod shared {
    use super::Stack;
    use std::io;

    const STACK_LEN: usize = 64 * 1024;

    pub(super) fn spawn(
        read_fd: libc::c_int,
        fallback_limit: libc::c_int,
    ) -> io::Result<(libc::pid_t, Stack)> {
        // SAFETY: an anonymous private mapping; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                STACK_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let stack = Stack {
            base,
            len: STACK_LEN,
        };
        // Both numbers travel in the argument itself: nothing the child
        // reads may be freed while it runs.
        let arg = (read_fd as u32 as usize) | ((fallback_limit as u32 as usize) << 32);
        // SAFETY: every signal is blocked in this thread around clone, so
        // the child starts with all of them blocked; the mask is restored
        // right after. `child` runs on the fresh stack (its top, 16-byte
        // aligned) and makes raw system calls only. The stack outlives the
        // child: it is unmapped only after the child is reaped.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let top = base.cast::<u8>().add(STACK_LEN).cast::<libc::c_void>();
            let pid = libc::clone(
                child,
                top,
                libc::CLONE_VM | libc::SIGCHLD,
                arg as *mut libc::c_void,
            );
            let error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid < 0 {
                return Err(error);
            }
            Ok((pid, stack))
        }
    }

    /// The supervisor's body. Returning ends the process (glibc's clone
    /// makes the exit system call with the return value).
    extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
        let arg = arg as usize;
        let read_fd = arg & 0xffff_ffff;
        let fallback_limit = arg >> 32;
        // SAFETY: raw system calls on plain numbers and on a byte of this
        // stack frame.
        unsafe {
            if read_fd != 0 && syscall3(libc::SYS_dup3, read_fd, 0, 0) < 0 {
                return 1;
            }
            if syscall3(libc::SYS_close_range, 1, u32::MAX as usize, 0) < 0 {
                for fd in 1..fallback_limit {
                    syscall3(libc::SYS_close, fd, 0, 0);
                }
            }
            syscall3(libc::SYS_chdir, c"/".as_ptr() as usize, 0, 0);
            let mut byte = 0u8;
            loop {
                let n = syscall3(libc::SYS_read, 0, (&raw mut byte) as usize, 1);
                if n == -(libc::EINTR as isize) {
                    continue;
                }
                if n <= 0 {
                    break;
                }
            }
            // Only a group we lead: if our creator died before making us a
            // group leader, we are still in its group, and must not kill it.
            let pid = syscall3(libc::SYS_getpid, 0, 0, 0);
            if syscall3(libc::SYS_getpgid, 0, 0, 0) == pid {
                syscall3(libc::SYS_kill, 0, libc::SIGKILL as usize, 0);
            }
        }
        0
    }

    /// A system call with up to three arguments, without libc (no `errno`).
    #[cfg(target_arch = "x86_64")]
    unsafe fn syscall3(number: libc::c_long, a: usize, b: usize, c: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller passes a valid system call; `syscall` clobbers
        // rcx and r11 only.
        unsafe {
            std::arch::asm!(
                "syscall",
                inlateout("rax") number as isize => ret,
                in("rdi") a,
                in("rsi") b,
                in("rdx") c,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    /// A system call with up to three arguments, without libc (no `errno`).
    #[cfg(target_arch = "aarch64")]
    unsafe fn syscall3(number: libc::c_long, a: usize, b: usize, c: usize) -> isize {
        let ret: isize;
        // SAFETY: the caller passes a valid system call.
        unsafe {
            std::arch::asm!(
                "svc 0",
                in("x8") number,
                inlateout("x0") a as isize => ret,
                in("x1") b,
                in("x2") c,
                options(nostack),
            );
        }
        ret
    }
}

/// The supervisor as a forked child, where raw system calls are not written.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod forked {
    /// Leads no group of its own until its creator makes it one, holds no
    /// descriptor but the read end of the pipe, ignores every signal it can,
    /// and waits for the pipe to close.
    ///
    /// # Safety
    ///
    /// Only in the child of `fork`: uses async-signal-safe calls only.
    pub(super) unsafe fn supervise(read_fd: libc::c_int, fallback_limit: libc::c_int) -> ! {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
        if read_fd != 0 && libc::dup2(read_fd, 0) < 0 {
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
        if libc::getpgid(0) == libc::getpid() {
            libc::kill(0, libc::SIGKILL);
        }
        libc::_exit(0)
    }
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

#[cfg(test)]
mod cost {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;
    use std::time::Instant;

    /// `cargo test --release -p otwrap-runtime --lib process_tree::cost -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a test"]
    fn cost_of_a_supervised_group() {
        let n = 2000;
        let t = Instant::now();
        for _ in 0..n {
            drop(ProcessTree::start().expect("tree"));
        }
        let tree = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            Command::new("true")
                .process_group(0)
                .status()
                .expect("true");
        }
        let bare = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            let tree = ProcessTree::start().expect("tree");
            Command::new("true")
                .process_group(tree.group() as i32)
                .status()
                .expect("true");
        }
        let supervised = t.elapsed() / n;
        println!("start+drop {tree:?}; `true` alone {bare:?}; `true` supervised {supervised:?}");
    }
}
