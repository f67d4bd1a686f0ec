//! Interruption of a batch by SIGINT (Ctrl-C) or SIGTERM (`scancel` of a
//! driver job, `timeout`, systemd), and the process groups of the programs
//! that must die with it.
//!
//! While a batch runs, the first SIGINT or SIGTERM asks it to stop: no new
//! point starts, the process groups registered here (the external programs
//! started through [`Program`](crate::coupling::Program) and the `processes`
//! backend's workers) are killed at once from the signal handler, remote work
//! is cancelled, and every finished result is stored and returned. A second
//! SIGINT ends the program as usual. Outside a batch the signals keep their
//! previous meaning (by default they end the program).
//!
//! The request is sticky: once a batch was interrupted, later batches of the
//! same process refuse to start ([`Error::Interrupted`](crate::Error)) so
//! the program ends promptly. Embedders (a GUI, the Python package) can turn
//! the handlers off with [`set_handle_signals`], poll for interruption
//! themselves and call [`request`]; [`clear`] resets the request.
//!
//! signal-hook cannot give a signal back its previous disposition, so the
//! action is registered once per process and decides at each signal whether
//! a batch is running; when none is, it does what the previous disposition
//! did (the default action, or nothing and the previous handler, which
//! signal-hook chains to).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::OnceLock;

use signal_hook::consts::{SIGINT, SIGTERM};

/// Set by the first SIGINT/SIGTERM during a batch (or by [`request`]).
static REQUESTED: AtomicBool = AtomicBool::new(false);
/// The signal that set `REQUESTED` (0 for [`request`]).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Batches running in this process (nested guards share one registration).
static DEPTH: AtomicUsize = AtomicUsize::new(0);
/// Whether batches install the signal actions (embedders turn this off).
static HANDLE_SIGNALS: AtomicBool = AtomicBool::new(true);
/// Whether SIGINT / SIGTERM ended the program before our registration (the
/// default disposition): then a signal outside a batch does the same.
static DEFAULT_INT: AtomicBool = AtomicBool::new(false);
static DEFAULT_TERM: AtomicBool = AtomicBool::new(false);
/// Registered once; `Err` keeps the reason registration failed.
static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();

/// Process groups to kill on interruption: a fixed table of atomics, because
/// the signal handler may touch nothing that locks or allocates. 0 is free.
const GROUP_SLOTS: usize = 4096;
static GROUPS: [AtomicI32; GROUP_SLOTS] = [const { AtomicI32::new(0) }; GROUP_SLOTS];

/// `true` once the batch was asked to stop (SIGINT, SIGTERM or [`request`]).
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// What interrupted the batch, for messages: `"Ctrl-C (SIGINT)"`,
/// `"SIGTERM"`, or `"an interruption request"` (from [`request`]).
pub fn cause() -> &'static str {
    match SIGNAL.load(Ordering::Relaxed) {
        SIGINT => "Ctrl-C (SIGINT)",
        SIGTERM => "SIGTERM",
        _ => "an interruption request",
    }
}

/// Asks the running batch (and every later one, until [`clear`]) to stop, as
/// SIGINT would: for embedders that poll for interruption themselves. The
/// registered process groups are killed.
pub fn request() {
    if !REQUESTED.swap(true, Ordering::SeqCst) {
        kill_groups();
    }
}

/// Forgets an interruption, so that batches may start again (for embedders
/// such as an interactive session, after reporting it).
pub fn clear() {
    REQUESTED.store(false, Ordering::SeqCst);
    SIGNAL.store(0, Ordering::SeqCst);
}

/// Whether batches catch SIGINT and SIGTERM (default `true`). An embedder
/// that handles signals itself turns this off before its first batch and
/// calls [`request`] when the user interrupts.
pub fn set_handle_signals(enabled: bool) {
    HANDLE_SIGNALS.store(enabled, Ordering::SeqCst);
}

/// Catches SIGINT and SIGTERM while alive (nested guards share one
/// registration).
pub(crate) struct Guard(());

impl Guard {
    pub(crate) fn install() -> Guard {
        DEPTH.fetch_add(1, Ordering::SeqCst);
        if HANDLE_SIGNALS.load(Ordering::SeqCst) {
            if let Err(reason) = REGISTERED.get_or_init(register) {
                tracing::warn!("otwrap cannot catch SIGINT/SIGTERM ({reason}); an interrupted batch will not return its results");
            }
        }
        Guard(())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        DEPTH.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Registers the action for SIGINT and SIGTERM, unless a signal is ignored
/// (a program started with `nohup` or in the background must stay immune).
fn register() -> Result<(), String> {
    for (signal, default) in [(SIGINT, &DEFAULT_INT), (SIGTERM, &DEFAULT_TERM)] {
        // SAFETY: queries the current disposition into a zeroed struct.
        let previous = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                return Err(std::io::Error::last_os_error().to_string());
            }
            old.sa_sigaction
        };
        if previous == libc::SIG_IGN {
            continue;
        }
        default.store(previous == libc::SIG_DFL, Ordering::SeqCst);
        // SAFETY: the action only reads and writes atomics and calls
        // killpg and signal-hook's emulation of the default action, all
        // async-signal-safe.
        unsafe {
            signal_hook::low_level::register(signal, move || on_signal(signal, default))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// The signal action (runs in the signal handler).
fn on_signal(signal: i32, default: &AtomicBool) {
    let idle = DEPTH.load(Ordering::SeqCst) == 0 || !HANDLE_SIGNALS.load(Ordering::SeqCst);
    let again = signal == SIGINT && REQUESTED.load(Ordering::SeqCst);
    if idle || again {
        if default.load(Ordering::SeqCst) {
            // The program ends as it would have without us (the processes
            // started by evaluations die with it: their supervisors see it).
            let _ = signal_hook::low_level::emulate_default_handler(signal);
        }
        return;
    }
    if !REQUESTED.swap(true, Ordering::SeqCst) {
        SIGNAL.store(signal, Ordering::SeqCst);
        kill_groups();
    }
}

fn kill_groups() {
    for slot in &GROUPS {
        let group = slot.load(Ordering::SeqCst);
        // The group is kept alive by its supervisor or worker until it is
        // unregistered, so the id cannot have been reused.
        crate::host::kill_group(group.unsigned_abs());
    }
}

/// A process group registered for killing on interruption while alive.
pub(crate) struct GroupRegistration(Option<usize>);

/// Registers a process group to be killed (SIGKILL) on interruption. Unregister
/// (drop) it before the group's id can be reused (before reaping its leader).
/// If interruption was already requested the group is killed at once.
pub(crate) fn register_group(group: libc::pid_t) -> GroupRegistration {
    let slot = GROUPS.iter().position(|slot| {
        slot.compare_exchange(0, group, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    });
    if requested() {
        // As in `kill_groups`.
        crate::host::kill_group(group.unsigned_abs());
    }
    GroupRegistration(slot)
}

impl Drop for GroupRegistration {
    fn drop(&mut self) {
        if let Some(slot) = self.0 {
            GROUPS[slot].store(0, Ordering::SeqCst);
        }
    }
}
