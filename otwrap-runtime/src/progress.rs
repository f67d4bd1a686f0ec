//! Progress of a batch: the counts handed to callbacks, and the indicatif bar
//! drawn on stderr when it is a terminal.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::ProgressMode;

/// A snapshot of a batch's progress, given to
/// [`Runner::on_progress`](crate::Runner::on_progress) callbacks after each
/// point.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// Points finished (succeeded, failed or from cache).
    pub done: usize,
    /// Points in the batch.
    pub total: usize,
    /// Points failed so far.
    pub failed: usize,
    /// Points answered from the cache so far.
    pub cached: usize,
    /// Time since the batch started.
    pub elapsed: Duration,
}

impl Progress {
    /// Points per second so far.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.done as f64 / secs
        } else {
            0.0
        }
    }

    /// The estimated time left at the current rate.
    pub fn eta(&self) -> Option<Duration> {
        let rate = self.rate();
        (rate > 0.0).then(|| Duration::from_secs_f64((self.total - self.done) as f64 / rate))
    }
}

/// The progress bar of one batch (absent when not drawn).
pub(crate) struct Bar {
    bar: Option<ProgressBar>,
    failed: usize,
}

impl Bar {
    pub(crate) fn new(mode: ProgressMode, total: usize, label: &str) -> Bar {
        let draw = would_draw(mode);
        if !draw || total == 0 {
            return Bar {
                bar: None,
                failed: 0,
            };
        }
        let bar = ProgressBar::with_draw_target(
            Some(total as u64),
            ProgressDrawTarget::stderr_with_hz(10),
        );
        let style = ProgressStyle::with_template(
            "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {rate} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1}/s", state.per_sec());
            },
        );
        bar.set_style(style);
        bar.set_prefix(label.to_string());
        Bar {
            bar: Some(bar),
            failed: 0,
        }
    }

    pub(crate) fn advance(&mut self, failed: bool) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            if failed {
                self.failed += 1;
                bar.set_message(format!("{} failed", self.failed));
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

/// Whether a bar is drawn under `mode` (on this process's stderr).
pub(crate) fn would_draw(mode: ProgressMode) -> bool {
    match mode {
        ProgressMode::Never => false,
        ProgressMode::Always => true,
        ProgressMode::Auto => std::io::stderr().is_terminal(),
    }
}

/// Tracks the counts of a running batch.
pub(crate) struct Tracker {
    pub(crate) start: Instant,
    pub(crate) total: usize,
    pub(crate) done: usize,
    pub(crate) failed: usize,
    pub(crate) cached: usize,
    pub(crate) not_run: usize,
}

impl Tracker {
    pub(crate) fn new(total: usize) -> Self {
        Tracker {
            start: Instant::now(),
            total,
            done: 0,
            failed: 0,
            cached: 0,
            not_run: 0,
        }
    }

    pub(crate) fn snapshot(&self) -> Progress {
        Progress {
            done: self.done,
            total: self.total,
            failed: self.failed,
            cached: self.cached,
            elapsed: self.start.elapsed(),
        }
    }
}
