//! Options of the `slurm` backend.
//!
//! ```toml
//! backend = "slurm"
//! [slurm]
//! partition = "debug"
//! account = "my-project"
//! qos = "normal"
//! time = "01:00:00"          # per array task: minutes or [D-]HH:MM:SS
//! cpus_per_task = 1
//! mem = "2G"
//! wckey = "uq-campaign"
//! constraint = "haswell"
//! job_name = "beam"
//! log_dir = "slurm-logs"     # %A_%a.out / .err of every array task
//! run_dir = ".otwrap/runs"   # on a filesystem the nodes share
//! array_parallelism = 50     # the %N of --array
//! points_per_task = 10
//! start_timeout = 3600       # seconds a job may stay pending for no fixable reason
//! setup = ["module load openturns", "export OMP_NUM_THREADS=1"]
//! sbatch = ["--exclusive", "--reservation=uq"]
//! retry_model_failures = false
//! ```

use crate::core::options::SlurmOptions;

use super::value::{unknown_key, RawValue};

impl SlurmOptions {
    /// The keys of the `[slurm]` section (and of the attribute).
    pub const KEYS: &'static [&'static str] = &[
        "partition",
        "account",
        "qos",
        "time",
        "cpus_per_task",
        "mem",
        "wckey",
        "constraint",
        "job_name",
        "log_dir",
        "run_dir",
        "array_parallelism",
        "points_per_task",
        "start_timeout",
        "setup",
        "sbatch",
        "retry_model_failures",
        "dry_run",
    ];

    /// Sets one option from its written form.
    pub fn set(&mut self, key: &str, value: RawValue) -> Result<(), String> {
        let word = |v: RawValue| -> Result<String, String> {
            let s = v.string()?;
            if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("`{s}` must be one word (no spaces)"));
            }
            Ok(s)
        };
        match key {
            "partition" => self.partition = Some(word(value)?),
            "account" => self.account = Some(word(value)?),
            "qos" => self.qos = Some(word(value)?),
            "time" => {
                let t = match value {
                    RawValue::Int(minutes) if minutes > 0 => minutes.to_string(),
                    other => word(other)?,
                };
                check_time(&t)?;
                self.time = Some(t);
            }
            "cpus_per_task" => {
                self.cpus_per_task =
                    Some(u32::try_from(value.integer(1, "4")?).map_err(|e| e.to_string())?)
            }
            "mem" => {
                let m = word(value)?;
                let digits = m.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                    return Err(format!(
                        "`{m}` is not a memory size; expected a number with an optional K, M, G or T, e.g. 2G"
                    ));
                }
                self.mem = Some(m);
            }
            "wckey" => self.wckey = Some(word(value)?),
            "constraint" => self.constraint = Some(value.string()?),
            "job_name" => self.job_name = Some(word(value)?),
            "log_dir" => self.log_dir = Some(value.path()?),
            "run_dir" => self.run_dir = Some(value.path()?),
            "array_parallelism" => {
                self.array_parallelism =
                    Some(u32::try_from(value.integer(1, "50")?).map_err(|e| e.to_string())?)
            }
            "points_per_task" => {
                self.points_per_task =
                    Some(usize::try_from(value.integer(1, "10")?).map_err(|e| e.to_string())?)
            }
            "start_timeout" => self.start_timeout = Some(value.seconds("3600")?),
            "setup" => self.setup = Some(value.list('\n')?),
            "sbatch" => {
                let items = value.list(';')?;
                for d in &items {
                    if !d.starts_with('-') {
                        return Err(format!(
                            "`{d}` is not an sbatch option; write it as on the command line, e.g. \"--exclusive\""
                        ));
                    }
                    if d.contains('\n') {
                        return Err(format!("`{d}` must be on one line"));
                    }
                }
                self.sbatch = Some(items);
            }
            "retry_model_failures" => self.retry_model_failures = Some(value.boolean()?),
            "dry_run" => self.dry_run = Some(value.boolean()?),
            _ => return Err(unknown_key("slurm", key, Self::KEYS)),
        }
        Ok(())
    }

    /// `self` over `lower`.
    pub fn over(self, lower: SlurmOptions) -> SlurmOptions {
        SlurmOptions {
            partition: self.partition.or(lower.partition),
            account: self.account.or(lower.account),
            qos: self.qos.or(lower.qos),
            time: self.time.or(lower.time),
            cpus_per_task: self.cpus_per_task.or(lower.cpus_per_task),
            mem: self.mem.or(lower.mem),
            wckey: self.wckey.or(lower.wckey),
            constraint: self.constraint.or(lower.constraint),
            job_name: self.job_name.or(lower.job_name),
            log_dir: self.log_dir.or(lower.log_dir),
            run_dir: self.run_dir.or(lower.run_dir),
            array_parallelism: self.array_parallelism.or(lower.array_parallelism),
            points_per_task: self.points_per_task.or(lower.points_per_task),
            start_timeout: self.start_timeout.or(lower.start_timeout),
            setup: self.setup.or(lower.setup),
            sbatch: self.sbatch.or(lower.sbatch),
            retry_model_failures: self.retry_model_failures.or(lower.retry_model_failures),
            dry_run: self.dry_run.or(lower.dry_run),
        }
    }
}

/// Checks a SLURM time limit: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`.
fn check_time(t: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "`{t}` is not a SLURM time limit; expected minutes, MM:SS, HH:MM:SS or D-HH:MM:SS, e.g. \"01:30:00\""
        )
    };
    let (days, clock) = match t.split_once('-') {
        Some((d, rest)) => (Some(d), rest),
        None => (None, t),
    };
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if let Some(d) = days {
        if !numeric(d) {
            return Err(bad());
        }
    }
    let parts: Vec<&str> = clock.split(':').collect();
    if parts.len() > 3 || !parts.iter().all(|p| numeric(p)) {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_options_are_checked() {
        let mut o = SlurmOptions::default();
        o.set("time", RawValue::Int(5)).expect("minutes");
        o.set("time", RawValue::Str("1-02:00:00".into()))
            .expect("days");
        assert!(o
            .set("time", RawValue::Str("1 hour".into()))
            .unwrap_err()
            .contains("one word"));
        assert!(o
            .set("time", RawValue::Str("1h".into()))
            .unwrap_err()
            .contains("HH:MM:SS"));
        o.set("mem", RawValue::Str("2G".into())).expect("mem");
        assert!(o
            .set("mem", RawValue::Str("lots".into()))
            .unwrap_err()
            .contains("memory size"));
        o.set("setup", RawValue::List(vec!["module load x".into()]))
            .expect("setup");
        assert!(o
            .set("sbatch", RawValue::Str("exclusive".into()))
            .unwrap_err()
            .contains("--exclusive"));
        let e = o.set("partion", RawValue::Str("debug".into())).unwrap_err();
        assert!(e.contains("did you mean `partition`"), "{e}");
        assert!(e.contains("wckey"), "{e}");
    }
}
