//! The SLURM client commands the driver runs (`sbatch`, `squeue`, `scontrol`,
//! `sinfo`, `scancel`): each one started with its arguments (never through a
//! shell), bounded by a timeout (a dead controller makes them hang), and
//! counted, so that a run can show how gently it treated the controller.

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a query (`squeue`, `scontrol`, `sinfo`) may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `sbatch` and `scancel` may take (a busy controller is slow to
/// accept a large array).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts of a submission refused for a transient reason.
const SUBMIT_ATTEMPTS: u32 = 4;

/// The number of calls of each SLURM command made by one driver.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Calls {
    pub(crate) sbatch: u32,
    pub(crate) squeue: u32,
    pub(crate) scontrol: u32,
    pub(crate) sinfo: u32,
    pub(crate) scancel: u32,
}

impl fmt::Display for Calls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sbatch={} squeue={} scontrol={} sinfo={} scancel={}",
            self.sbatch, self.squeue, self.scontrol, self.sinfo, self.scancel
        )
    }
}

/// What a command printed, and whether it succeeded.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    /// Its stderr (or stdout when stderr is empty), trimmed: SLURM's own
    /// message for errors.
    pub(crate) fn message(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        text.trim().to_string()
    }
}

/// The SLURM client, with its call counters.
#[derive(Debug, Default)]
pub(crate) struct Cli {
    pub(crate) calls: Calls,
}

impl Cli {
    /// Submits a job script (`sbatch --parsable SCRIPT`) from the current
    /// directory; returns the job id. Transient refusals (controller busy or
    /// unreachable) are retried a few times.
    pub(crate) fn sbatch(&mut self, script: &Path) -> Result<String, String> {
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=SUBMIT_ATTEMPTS {
            self.calls.sbatch += 1;
            let out = run(
                "sbatch",
                &["--parsable".as_ref(), script.as_os_str()],
                SUBMIT_TIMEOUT,
            )?;
            if out.success {
                // `--parsable` prints `ID` or `ID;CLUSTER`.
                let id = out.stdout.trim().split(';').next().unwrap_or("").trim();
                if !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()) {
                    return Ok(id.to_string());
                }
                return Err(format!(
                    "sbatch succeeded but printed {:?} instead of a job id",
                    out.stdout.trim()
                ));
            }
            let message = out.message();
            if attempt < SUBMIT_ATTEMPTS && is_transient(&message) {
                tracing::warn!("sbatch refused the job for now ({message}); retrying in {delay:?}");
                std::thread::sleep(delay);
                delay *= 2;
                continue;
            }
            return Err(message);
        }
        Err("sbatch failed".to_string())
    }

    /// `squeue -h -t all -j ID,ID,... -o '%i %T %r'`: state and reason of
    /// every task still known to the controller. `Ok(None)` when none of
    /// the ids is known any more.
    pub(crate) fn squeue(&mut self, job_ids: &[&str]) -> Result<Option<String>, String> {
        self.calls.squeue += 1;
        let ids = job_ids.join(",");
        let out = run(
            "squeue",
            &[
                "-h".as_ref(),
                "-t".as_ref(),
                "all".as_ref(),
                "-j".as_ref(),
                ids.as_ref(),
                "-o".as_ref(),
                "%i %T %r".as_ref(),
            ],
            QUERY_TIMEOUT,
        )?;
        if out.success {
            Ok(Some(out.stdout))
        } else if out.message().contains("Invalid job id") {
            Ok(None)
        } else {
            Err(out.message())
        }
    }

    /// `scontrol -o show job ID`: one line of `Key=Value` fields per task
    /// still known. `Ok(None)` when the controller no longer knows it.
    pub(crate) fn show_job(&mut self, id: &str) -> Result<Option<String>, String> {
        self.calls.scontrol += 1;
        let out = run(
            "scontrol",
            &["-o".as_ref(), "show".as_ref(), "job".as_ref(), id.as_ref()],
            QUERY_TIMEOUT,
        )?;
        if out.success {
            Ok(Some(out.stdout))
        } else if out.message().contains("Invalid job id") {
            Ok(None)
        } else {
            Err(out.message())
        }
    }

    /// A value of `scontrol show config` (e.g. `MaxArraySize`).
    pub(crate) fn config_value(&mut self, key: &str) -> Result<Option<String>, String> {
        self.calls.scontrol += 1;
        let out = run(
            "scontrol",
            &["show".as_ref(), "config".as_ref()],
            QUERY_TIMEOUT,
        )?;
        if !out.success {
            return Err(out.message());
        }
        Ok(out.stdout.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        }))
    }

    /// The total CPUs of `partition` (or of the default partition), from
    /// `sinfo -h -o '%P %C'`.
    pub(crate) fn partition_cpus(&mut self, partition: Option<&str>) -> Result<u64, String> {
        self.calls.sinfo += 1;
        let out = run(
            "sinfo",
            &["-h".as_ref(), "-o".as_ref(), "%P %C".as_ref()],
            QUERY_TIMEOUT,
        )?;
        if !out.success {
            return Err(out.message());
        }
        parse_partition_cpus(&out.stdout, partition).ok_or_else(|| match partition {
            Some(p) => format!("sinfo does not list a partition named {p}"),
            None => "sinfo lists no default partition".to_string(),
        })
    }

    /// Cancels jobs or array tasks (`scancel ID ...`).
    pub(crate) fn scancel(&mut self, ids: &[String]) -> Result<(), String> {
        if ids.is_empty() {
            return Ok(());
        }
        self.calls.scancel += 1;
        let args: Vec<&std::ffi::OsStr> = ids.iter().map(|s| s.as_ref()).collect();
        let out = run("scancel", &args, SUBMIT_TIMEOUT)?;
        if out.success {
            Ok(())
        } else {
            Err(out.message())
        }
    }
}

/// Refusals worth another try: the controller is busy or restarting.
fn is_transient(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "temporarily unavailable",
        "temporarily unable",
        "socket timed out",
        "unable to contact slurm controller",
        "connection refused",
        "try again",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// `%P %C` lines (`debug* 0/16/0/16`): the total (last) CPU count of the
/// named partition, or of the default one (marked `*`).
pub(crate) fn parse_partition_cpus(text: &str, partition: Option<&str>) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, cpus) = line.trim().split_once(char::is_whitespace)?;
        let is_default = name.ends_with('*');
        let name = name.trim_end_matches('*');
        let wanted = match partition {
            Some(p) => name == p,
            None => is_default,
        };
        if !wanted {
            return None;
        }
        cpus.trim().rsplit('/').next()?.parse().ok()
    })
}

/// Runs `program args`, waiting at most `timeout`; an error names the
/// program when it could not be started or did not answer in time.
pub(crate) fn run(
    program: &str,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
) -> Result<Output, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "`{program}` was not found: the slurm backend runs SLURM's commands, so it must run \
                 on a machine where they are installed (a login node)"
            ),
            _ => format!("cannot run `{program}`: {e}"),
        })?;
    let pid = child.id();
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("`{program}` started without its pipes"));
    };
    let (tx, rx) = mpsc::channel();
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let out_tx = tx.clone();
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        let _ = out_tx.send(());
        buf
    });
    drop(tx);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => {
                // Woken early when stdout closes (usually at exit).
                if let Err(mpsc::RecvTimeoutError::Disconnected) =
                    rx.recv_timeout(Duration::from_millis(5))
                {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            Ok(None) => break None,
            Err(e) => return Err(format!("cannot wait for `{program}` (pid {pid}): {e}")),
        }
    };
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "`{program}` did not answer within {} s (is the SLURM controller up?)",
            timeout.as_secs()
        ));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output {
        success: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_cpus_are_read_from_sinfo() {
        let text = "debug* 0/16/0/16\nshort 2/14/0/16\nbig 0/0/0/512\n";
        assert_eq!(parse_partition_cpus(text, None), Some(16));
        assert_eq!(parse_partition_cpus(text, Some("big")), Some(512));
        assert_eq!(parse_partition_cpus(text, Some("nope")), None);
        assert_eq!(parse_partition_cpus("garbage", None), None);
    }

    #[test]
    fn transient_refusals_are_recognised() {
        assert!(is_transient(
            "sbatch: error: Batch job submission failed: Resource temporarily unavailable"
        ));
        assert!(!is_transient(
            "sbatch: error: Batch job submission failed: Invalid partition name specified"
        ));
    }

    #[test]
    fn missing_programs_are_named() {
        let e = run("otwrap-no-such-program", &[], QUERY_TIMEOUT).unwrap_err();
        assert!(e.contains("otwrap-no-such-program"), "{e}");
    }
}
