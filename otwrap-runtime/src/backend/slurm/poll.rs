//! Reading the queue: the state and reason of every array task from one
//! `squeue` per poll (or `scontrol` once SLURM stops listing a task), which
//! states are final, which pending reasons need the user, and the growing
//! interval between polls.

use std::collections::HashMap;
use std::time::Duration;

/// A task's state as SLURM names it (`RUNNING`, `TIMEOUT`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) state: String,
    pub(crate) reason: String,
}

/// `true` for the states a task never leaves.
pub(crate) fn is_final(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "TIMEOUT"
            | "OUT_OF_MEMORY"
            | "NODE_FAIL"
            | "CANCELLED"
            | "PREEMPTED"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "SPECIAL_EXIT"
            | "REVOKED"
    )
}

/// `true` while a task waits to start.
pub(crate) fn is_pending(state: &str) -> bool {
    matches!(
        state,
        "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED"
    )
}

/// What an ended state means, for point errors.
/// `why` preceded by what SLURM's `ExitCode=status:signal` means, e.g.
/// "killed by signal 6 (SIGABRT)" or "exited with status 3".
pub(crate) fn with_exit_code(code: Option<&str>, why: String) -> String {
    let Some(code) = code else { return why };
    let (status, signal) = code.split_once(':').unwrap_or((code, "0"));
    let said = match (status.parse::<i32>(), signal.parse::<i32>()) {
        (_, Ok(sig)) if sig > 0 => format!(
            "killed by signal {sig} ({}), exit code {code}",
            crate::host::signal_name(sig)
        ),
        (Ok(st), _) => format!("exited with status {st}, exit code {code}"),
        _ => format!("exit code {code}"),
    };
    if why.is_empty() {
        said
    } else {
        format!("{said}; {why}")
    }
}

pub(crate) fn explain_state(state: &str) -> &'static str {
    match state {
        "FAILED" => "the task exited with a non-zero status or a signal",
        "TIMEOUT" => "SLURM killed the task at its time limit (raise `time`)",
        "OUT_OF_MEMORY" => "SLURM killed the task for exceeding its memory (raise `mem`)",
        "NODE_FAIL" => "the node running the task failed",
        "CANCELLED" => "the task was cancelled (scancel, or by an administrator)",
        "PREEMPTED" => "the task was preempted by a higher-priority job",
        "BOOT_FAIL" => "the node could not boot for the task",
        "DEADLINE" => "the task reached its deadline",
        _ => "",
    }
}

/// How a pending reason is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    /// Waiting is normal (resources, priority, array throttle, begin time).
    Normal,
    /// A limit or a hold that may lift, or may need the user: reported, and
    /// fatal when nothing of the run can start for `start_timeout`.
    Blocked,
    /// The job can never start as submitted: the user must change it.
    Fatal,
}

/// Classifies a pending reason from `squeue %r`.
pub(crate) fn classify_reason(reason: &str) -> Pending {
    let r = reason.trim();
    const FATAL: &[&str] = &[
        "InvalidAccount",
        "InvalidQOS",
        "QOSNotAllowed",
        "AccountNotAllowed",
        "PartitionConfig",
        "PartitionTimeLimit",
        "PartitionNodeLimit",
        "BadConstraints",
        "DependencyNeverSatisfied",
        "InactiveLimit",
        "FrontEndDown",
        "QOSJobLimit",
    ];
    if FATAL.contains(&r)
        // A single task over a per-job limit never fits.
        || r.contains("PerJob")
        || r.contains("MinTRES")
        || r.starts_with("InvalidWckey")
        || r.starts_with("InvalidWCKey")
    {
        return Pending::Fatal;
    }
    if r.starts_with("QOS")
        || r.starts_with("Assoc")
        || r.starts_with("ReqNodeNotAvail")
        || r.starts_with("PartitionDown")
        || r.starts_with("PartitionInactive")
        || r.starts_with("JobHeld")
        || r == "launch failed requeued held"
        || r.starts_with("Nodes_required_for_job_are_DOWN")
    {
        return Pending::Blocked;
    }
    Pending::Normal
}

/// One job's tasks as `squeue` lists them: `12_3 RUNNING None`, a pending
/// range `12_[4-9,12%2] PENDING JobArrayTaskLimit`, or a plain `12`.
/// Returns `(array job id, task) -> state`.
pub(crate) fn parse_squeue(text: &str) -> HashMap<(String, u32), Seen> {
    let mut seen = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(id), Some(state)) = (fields.next(), fields.next()) else {
            continue;
        };
        let reason = fields.collect::<Vec<_>>().join(" ");
        // A state may carry a suffix (`CANCELLED+`, `CANCELLED by 0`).
        let state = state.trim_end_matches('+').to_string();
        let Some((job, tasks)) = id.split_once('_') else {
            // Not an array id: a one-task array is still listed as `J_0`.
            continue;
        };
        for task in expand_tasks(tasks) {
            seen.insert(
                (job.to_string(), task),
                Seen {
                    state: state.clone(),
                    reason: reason.clone(),
                },
            );
        }
    }
    seen
}

/// `3` or `[4-9,12%2]` as task numbers.
pub(crate) fn expand_tasks(spec: &str) -> Vec<u32> {
    let inner = spec.trim_start_matches('[').trim_end_matches(']');
    let inner = inner.split('%').next().unwrap_or("");
    let mut tasks = Vec::new();
    for part in inner.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    // A step (`1-9:2`) is never used by otwrap's arrays.
                    tasks.extend(a..=b.min(a.saturating_add(10_000_000)));
                }
            }
            None => {
                if let Ok(t) = part.parse::<u32>() {
                    tasks.push(t);
                }
            }
        }
    }
    tasks
}

/// The tasks of `scontrol -o show job` lines: `(array job id, task) ->
/// (state, reason, exit code)`.
pub(crate) fn parse_scontrol(text: &str) -> HashMap<(String, u32), (Seen, String)> {
    let mut out = HashMap::new();
    for line in text.lines() {
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or("")
        };
        let (job, tasks) = (field("ArrayJobId"), field("ArrayTaskId"));
        if job.is_empty() || tasks.is_empty() {
            continue;
        }
        let seen = Seen {
            state: field("JobState").to_string(),
            reason: field("Reason").to_string(),
        };
        for task in expand_tasks(tasks) {
            out.insert(
                (job.to_string(), task),
                (seen.clone(), field("ExitCode").to_string()),
            );
        }
    }
    out
}

/// The interval between two `squeue` calls: starts short, grows while
/// nothing changes, and starts short again after a change.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    current: Duration,
}

impl Backoff {
    pub(crate) const MIN: Duration = Duration::from_millis(500);
    pub(crate) const MAX: Duration = Duration::from_secs(10);

    pub(crate) fn new() -> Backoff {
        Backoff { current: Self::MIN }
    }

    /// The interval before the next poll.
    pub(crate) fn current(&self) -> Duration {
        self.current
    }

    /// After a poll: shorter again if something changed, longer otherwise.
    pub(crate) fn after_poll(&mut self, changed: bool) {
        self.current = if changed {
            Self::MIN
        } else {
            self.current.mul_f64(1.5).min(Self::MAX)
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_name_the_signal() {
        assert_eq!(
            with_exit_code(Some("0:6"), "x".into()),
            "killed by signal 6 (SIGABRT), exit code 0:6; x"
        );
        assert_eq!(
            with_exit_code(Some("3:0"), String::new()),
            "exited with status 3, exit code 3:0"
        );
        assert_eq!(with_exit_code(None, "y".into()), "y");
    }

    #[test]
    fn squeue_lines_with_ranges_and_suffixes() {
        let text = "12_[3-5,9%2] PENDING JobArrayTaskLimit\n12_0 RUNNING None\n\
                    12_1 CANCELLED+ None\n13_[0] PENDING ReqNodeNotAvail, UnavailableNodes:n1\n\
                    14 RUNNING None\n";
        let seen = parse_squeue(text);
        let get = |j: &str, t: u32| seen.get(&(j.to_string(), t)).cloned();
        for t in [3, 4, 5, 9] {
            assert_eq!(
                get("12", t).map(|s| s.reason),
                Some("JobArrayTaskLimit".into())
            );
        }
        assert_eq!(get("12", 6), None);
        assert_eq!(get("12", 0).map(|s| s.state), Some("RUNNING".into()));
        assert_eq!(get("12", 1).map(|s| s.state), Some("CANCELLED".into()));
        assert_eq!(
            get("13", 0).map(|s| s.reason),
            Some("ReqNodeNotAvail, UnavailableNodes:n1".into())
        );
        assert_eq!(seen.len(), 7);
    }

    #[test]
    fn scontrol_lines() {
        let text = "JobId=5 ArrayJobId=1 ArrayTaskId=3 JobName=s JobState=FAILED Reason=NonZeroExitCode ExitCode=5:0 X=y\n\
                    JobId=1 ArrayJobId=1 ArrayTaskId=4-5%3 JobState=PENDING Reason=Priority ExitCode=0:0\n";
        let seen = parse_scontrol(text);
        let (s, code) = seen.get(&("1".to_string(), 3)).expect("task 3");
        assert_eq!(s.state, "FAILED");
        assert_eq!(s.reason, "NonZeroExitCode");
        assert_eq!(code, "5:0");
        assert!(seen.contains_key(&("1".to_string(), 5)));
    }

    #[test]
    fn states_and_reasons() {
        for s in [
            "COMPLETED",
            "FAILED",
            "TIMEOUT",
            "OUT_OF_MEMORY",
            "NODE_FAIL",
            "CANCELLED",
            "PREEMPTED",
        ] {
            assert!(is_final(s), "{s}");
        }
        for s in [
            "PENDING",
            "RUNNING",
            "COMPLETING",
            "CONFIGURING",
            "SUSPENDED",
            "REQUEUED",
        ] {
            assert!(!is_final(s), "{s}");
        }
        assert_eq!(classify_reason("InvalidAccount"), Pending::Fatal);
        assert_eq!(classify_reason("PartitionConfig"), Pending::Fatal);
        assert_eq!(
            classify_reason("QOSMaxWallDurationPerJobLimit"),
            Pending::Fatal
        );
        assert_eq!(classify_reason("QOSMaxJobsPerUserLimit"), Pending::Blocked);
        assert_eq!(classify_reason("AssocGrpCpuLimit"), Pending::Blocked);
        assert_eq!(
            classify_reason("ReqNodeNotAvail, Reserved for maintenance"),
            Pending::Blocked
        );
        assert_eq!(classify_reason("JobHeldUser"), Pending::Blocked);
        for r in [
            "None",
            "Priority",
            "Resources",
            "JobArrayTaskLimit",
            "BeginTime",
            "Dependency",
        ] {
            assert_eq!(classify_reason(r), Pending::Normal, "{r}");
        }
    }

    #[test]
    fn backoff_grows_and_resets() {
        let mut b = Backoff::new();
        assert_eq!(b.current(), Backoff::MIN);
        for _ in 0..20 {
            b.after_poll(false);
        }
        assert_eq!(b.current(), Backoff::MAX);
        b.after_poll(true);
        assert_eq!(b.current(), Backoff::MIN);
    }
}
