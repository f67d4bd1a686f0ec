//! Panic capture around evaluations: a panic inside an otwrap evaluation
//! becomes the point's [`PointFailure::Panic`] with its message and
//! location, instead of a message on stderr.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use super::failure::PointFailure;

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once per process) a panic hook that, inside an otwrap
/// evaluation, records the message and location for the point's error
/// instead of printing it; outside, it defers to the previous hook.
pub(crate) fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if CAPTURING.with(Cell::get) {
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic with a non-text payload".to_string());
                let text = match info.location() {
                    Some(loc) => format!(
                        "{message} (at {}:{}:{})",
                        loc.file(),
                        loc.line(),
                        loc.column()
                    ),
                    None => message,
                };
                LAST_PANIC.with(|slot| *slot.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into a [`PointFailure::Panic`] with its message
/// and location (the panic is not printed).
pub fn catch_panic<T, E: From<PointFailure>>(f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    install_panic_hook();
    let was_capturing = set_capturing(true);
    let outcome = panic::catch_unwind(AssertUnwindSafe(f));
    set_capturing(was_capturing);
    match outcome {
        Ok(result) => result,
        Err(_) => {
            let message = take_panic_message();
            Err(PointFailure::Panic { message }.into())
        }
    }
}

/// Turns capture on or off for this thread; returns the previous state.
pub(crate) fn set_capturing(on: bool) -> bool {
    CAPTURING.with(|c| c.replace(on))
}

/// The message of the last captured panic of this thread.
pub(crate) fn take_panic_message() -> String {
    LAST_PANIC
        .with(|slot| slot.borrow_mut().take())
        .unwrap_or_else(|| "panicked".to_string())
}
