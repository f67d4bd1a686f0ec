//! Progress of a batch: the counts handed to callbacks, and what is shown on
//! stderr: the indicatif bar when it is a terminal, plain lines every few
//! seconds otherwise (with `progress = "always"`).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
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

/// How often a line of progress is printed when stderr is not a terminal
/// (a log file, a pipe, a SLURM output file): once per interval, when a
/// point finishes or, while none does (hour-long points), on the clock, plus
/// one line at the end.
pub const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// [`LINE_INTERVAL`] in milliseconds; only tests change it (a batch of
/// milliseconds would otherwise print no line before its last).
static LINE_INTERVAL_MS: AtomicU64 = AtomicU64::new(LINE_INTERVAL.as_millis() as u64);

/// Sets the interval between progress lines of this process (tests only).
#[cfg(test)]
pub(crate) fn set_line_interval(interval: Duration) {
    LINE_INTERVAL_MS.store(
        u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// The progress of one batch on stderr: an indicatif bar on a terminal,
/// plain lines elsewhere (never terminal control codes), or nothing.
pub(crate) struct Bar {
    kind: Kind,
    label: String,
    finished: bool,
}

enum Kind {
    Hidden,
    Terminal(ProgressBar),
    Lines(Lines),
}

/// Plain lines: printed by the batch when a point finishes, and by a
/// heartbeat thread when none finished for an interval.
struct Lines {
    shared: Arc<(Mutex<LineState>, Condvar)>,
    interval: Duration,
    heartbeat: Option<JoinHandle<()>>,
}

struct LineState {
    progress: Progress,
    start: Instant,
    last: Instant,
    stop: bool,
}

impl Lines {
    fn new(total: usize, label: &str, interval: Duration) -> Lines {
        let now = Instant::now();
        let shared = Arc::new((
            Mutex::new(LineState {
                progress: Progress {
                    done: 0,
                    total,
                    failed: 0,
                    cached: 0,
                    elapsed: Duration::ZERO,
                },
                start: now,
                last: now,
                stop: false,
            }),
            Condvar::new(),
        ));
        // No heartbeat for a zero interval (a line per point already).
        let heartbeat = (!interval.is_zero())
            .then(|| {
                let shared = Arc::clone(&shared);
                let label = label.to_string();
                std::thread::Builder::new()
                    .name("otwrap-progress".into())
                    .spawn(move || heartbeat(&shared, &label, interval))
                    .ok()
            })
            .flatten();
        Lines {
            shared,
            interval,
            heartbeat,
        }
    }

    fn state(&self) -> MutexGuard<'_, LineState> {
        self.shared.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stop(&mut self) {
        self.state().stop = true;
        self.shared.1.notify_all();
        if let Some(thread) = self.heartbeat.take() {
            let _ = thread.join();
        }
    }
}

/// Prints a running line whenever `interval` passed without one.
fn heartbeat(shared: &(Mutex<LineState>, Condvar), label: &str, interval: Duration) {
    let (lock, wake) = shared;
    let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
    while !state.stop {
        let due = state.last + interval;
        let now = Instant::now();
        if now >= due {
            state.last = now;
            state.progress.elapsed = state.start.elapsed();
            print_line(&running_line(label, &state.progress));
            continue;
        }
        state = wake
            .wait_timeout(state, due - now)
            .map(|(guard, _)| guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner().0);
    }
}

impl Bar {
    pub(crate) fn new(mode: ProgressMode, total: usize, label: &str) -> Bar {
        let kind = if !would_draw(mode) || total == 0 {
            Kind::Hidden
        } else if std::io::stderr().is_terminal() {
            Kind::Terminal(terminal_bar(total, label))
        } else {
            Kind::Lines(Lines::new(
                total,
                label,
                Duration::from_millis(LINE_INTERVAL_MS.load(Ordering::Relaxed)),
            ))
        };
        Bar {
            kind,
            label: label.to_string(),
            finished: false,
        }
    }

    /// Called after each point, with the counts that include it.
    pub(crate) fn advance(&mut self, tracker: &Tracker) {
        match &mut self.kind {
            Kind::Hidden => {}
            Kind::Terminal(bar) => {
                bar.inc(1);
                if tracker.failed > 0 || tracker.cached > 0 {
                    bar.set_message(format!(
                        "{} failed, {} cached",
                        tracker.failed, tracker.cached
                    ));
                }
            }
            Kind::Lines(lines) => {
                let interval = lines.interval;
                let mut state = lines.state();
                state.progress = tracker.snapshot();
                let now = Instant::now();
                if now.duration_since(state.last) >= interval && tracker.done < tracker.total {
                    state.last = now;
                    print_line(&running_line(&self.label, &state.progress));
                }
            }
        }
    }

    /// Ends the display: the bar is cleared and one plain line with the
    /// final counts is printed, so what the program prints next starts on
    /// a line of its own.
    pub(crate) fn finish(&mut self, tracker: &Tracker) {
        self.finished = true;
        match &mut self.kind {
            Kind::Hidden => return,
            Kind::Terminal(bar) => bar.finish_and_clear(),
            Kind::Lines(lines) => lines.stop(),
        }
        print_line(&final_line(&self.label, &tracker.snapshot()));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // A batch that ended in an error leaves no half-drawn bar behind
        // (indicatif's own drop leaves it, with the cursor on its line).
        match (&mut self.kind, self.finished) {
            (Kind::Terminal(bar), false) => bar.finish_and_clear(),
            (Kind::Lines(lines), _) => lines.stop(),
            _ => {}
        }
    }
}

fn terminal_bar(total: usize, label: &str) -> ProgressBar {
    let bar =
        ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr_with_hz(10));
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
    bar
}

/// Writes one line to stderr; a stderr that cannot be written to is no
/// reason to stop a batch.
fn print_line(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// `otwrap: beam: 40/100 done, 2 failed, 10 cached, 12.5 points/s, ETA 4.8 s`
fn running_line(label: &str, p: &Progress) -> String {
    let eta = p
        .eta()
        .map_or_else(|| "unknown".to_string(), human_duration);
    format!(
        "otwrap: {label}: {}/{} done, {} failed, {} cached, {:.1} points/s, ETA {eta}",
        p.done,
        p.total,
        p.failed,
        p.cached,
        p.rate()
    )
}

/// `otwrap: beam: 100/100 done, 3 failed, 10 cached, in 8.0 s (12.5 points/s)`
fn final_line(label: &str, p: &Progress) -> String {
    format!(
        "otwrap: {label}: {}/{} done, {} failed, {} cached, in {} ({:.1} points/s)",
        p.done,
        p.total,
        p.failed,
        p.cached,
        human_duration(p.elapsed),
        p.rate()
    )
}

/// `4.8 s`, `3 min 05 s`, `2 h 03 min`.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        let whole = d.as_secs();
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        let whole = d.as_secs();
        format!("{} h {:02} min", whole / 3600, (whole % 3600) / 60)
    }
}

/// Whether progress is shown under `mode` (a bar on a terminal, lines
/// elsewhere).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, EvalContext, Failed, Model, Options, PointFailure, Runner};
    use std::process::{Command, Stdio};

    /// Set in the child process that runs a batch with its stderr redirected.
    const CHILD_ENV: &str = "OTWRAP_TEST_PROGRESS_CHILD";

    struct Halve;
    impl Model for Halve {
        type Input = f64;
        type Output = f64;
        const ID: &'static str = "progress::tests::halve";
        const NAME: &'static str = "Halve";
        fn attribute_options() -> Options {
            Options::default()
        }
        fn evaluate(x: &f64, _: &EvalContext) -> Result<f64, Failed> {
            if *x < 0.0 {
                return Err(PointFailure::Model {
                    message: "negative".into(),
                }
                .into());
            }
            Ok(x / 2.0)
        }
    }

    /// Sleeps `x` seconds: a point that takes long.
    struct Slow;
    impl Model for Slow {
        type Input = f64;
        type Output = f64;
        const ID: &'static str = "progress::tests::slow";
        const NAME: &'static str = "Slow";
        fn attribute_options() -> Options {
            Options::default()
        }
        fn evaluate(x: &f64, _: &EvalContext) -> Result<f64, Failed> {
            std::thread::sleep(Duration::from_secs_f64(*x));
            Ok(*x)
        }
    }

    /// While a long point runs, lines keep coming on the clock.
    #[test]
    fn progress_lines_keep_coming_while_points_run() {
        let text = String::from_utf8(child_stderr("heartbeat")).expect("text");
        // At least a few of the ~9 lines due during the first second (a
        // loaded machine may delay some).
        let waiting = text
            .lines()
            .filter(|l| l.starts_with("otwrap: Slow: 0/2 done, 0 failed, 0 cached, "))
            .count();
        assert!(waiting >= 3, "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("otwrap: Slow: 1/2 done, 0 failed, 0 cached, ")),
            "{text}"
        );
        let last = text.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("otwrap: Slow: 2/2 done, 0 failed, 0 cached, in "),
            "{text}"
        );
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    /// The child's side of `progress_lines_in_a_redirected_stderr` (does
    /// nothing in a normal test run).
    #[test]
    fn progress_child_process() {
        let Ok(mode) = std::env::var(CHILD_ENV) else {
            return;
        };
        if mode == "heartbeat" {
            // Two points of 1 s each, a line due every 100 ms.
            set_line_interval(Duration::from_millis(100));
            let batch = Runner::<Slow>::new()
                .backend(Backend::Serial)
                .progress(ProgressMode::Always)
                .map(&[1.0, 1.0])
                .expect("batch");
            assert_eq!(batch.summary().failed, 0);
            return;
        }
        // A line after every point, so the count of lines is exact.
        set_line_interval(Duration::ZERO);
        let mode: ProgressMode = mode.parse().expect("mode");
        let batch = Runner::<Halve>::new()
            .backend(Backend::Serial)
            .progress(mode)
            .map(&[1.0, -1.0, 2.0, 3.0])
            .expect("batch");
        assert_eq!(batch.summary().failed, 1);
    }

    fn child_stderr(mode: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stderr.txt");
        let file = std::fs::File::create(&path).expect("create");
        let status = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "progress::tests::progress_child_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, mode)
            .env_remove("OTWRAP_PROGRESS")
            .stdout(Stdio::null())
            .stderr(file)
            .status()
            .expect("child");
        assert!(status.success(), "child: {status}");
        std::fs::read(&path).expect("read")
    }

    #[test]
    fn progress_lines_in_a_redirected_stderr() {
        let bytes = child_stderr("always");
        assert!(
            !bytes.contains(&0x1b),
            "terminal control codes in {bytes:?}"
        );
        let text = String::from_utf8(bytes).expect("text");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        for (line, counts) in lines[..3].iter().zip([
            "1/4 done, 0 failed, 0 cached, ",
            "2/4 done, 1 failed, 0 cached, ",
            "3/4 done, 1 failed, 0 cached, ",
        ]) {
            assert!(
                line.starts_with(&format!("otwrap: Halve: {counts}")),
                "{line}"
            );
            assert!(line.contains(" points/s, ETA "), "{line}");
        }
        assert!(
            lines[3].starts_with("otwrap: Halve: 4/4 done, 1 failed, 0 cached, in "),
            "{}",
            lines[3]
        );
        assert!(lines[3].ends_with(" points/s)"), "{}", lines[3]);
        // `auto` stays silent when stderr is not a terminal.
        assert_eq!(String::from_utf8(child_stderr("auto")).expect("text"), "");
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human_duration(Duration::from_millis(4_800)), "4.8 s");
        assert_eq!(human_duration(Duration::from_secs(185)), "3 min 05 s");
        assert_eq!(human_duration(Duration::from_secs(7_380)), "2 h 03 min");
        let p = Progress {
            done: 3,
            total: 4,
            failed: 1,
            cached: 2,
            elapsed: Duration::from_secs(2),
        };
        assert_eq!(
            running_line("beam", &p),
            "otwrap: beam: 3/4 done, 1 failed, 2 cached, 1.5 points/s, ETA 0.7 s"
        );
        assert_eq!(
            final_line("beam", &p),
            "otwrap: beam: 3/4 done, 1 failed, 2 cached, in 2.0 s (1.5 points/s)"
        );
    }
}
