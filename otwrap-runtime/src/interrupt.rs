//! Ctrl-C during a remote batch: the first SIGINT asks the batch to stop
//! (no new point starts, remote work is cancelled, every finished result is
//! kept and returned); a second one ends the program as usual.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static DEPTH: AtomicUsize = AtomicUsize::new(0);
static PREVIOUS: Mutex<Option<libc::sigaction>> = Mutex::new(None);

extern "C" fn on_sigint(_: libc::c_int) {
    if REQUESTED.swap(true, Ordering::SeqCst) {
        // Second Ctrl-C: the default action (the program ends).
        // SAFETY: signal(2) and raise(3) are async-signal-safe.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::raise(libc::SIGINT);
        }
    }
}

/// `true` once Ctrl-C was pressed while a [`Guard`] was alive.
pub(crate) fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Catches SIGINT while alive (nested guards share one handler); the
/// previous disposition comes back when the last one is dropped.
pub(crate) struct Guard(());

impl Guard {
    pub(crate) fn install() -> Guard {
        if DEPTH.fetch_add(1, Ordering::SeqCst) == 0 {
            REQUESTED.store(false, Ordering::SeqCst);
            // SAFETY: installs a handler that only touches an atomic and
            // async-signal-safe calls; the old action is saved to restore it.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                action.sa_flags = libc::SA_RESTART;
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGINT, &action, &mut old) == 0 {
                    if let Ok(mut slot) = PREVIOUS.lock() {
                        *slot = Some(old);
                    }
                }
            }
        }
        Guard(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if DEPTH.fetch_sub(1, Ordering::SeqCst) == 1 {
            REQUESTED.store(false, Ordering::SeqCst);
            if let Ok(mut slot) = PREVIOUS.lock() {
                if let Some(old) = slot.take() {
                    // SAFETY: restores the disposition saved by `install`.
                    unsafe {
                        libc::sigaction(libc::SIGINT, &old, std::ptr::null_mut());
                    }
                }
            }
        }
    }
}
