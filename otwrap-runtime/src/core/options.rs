//! The options a model declares (its attributes) and the run-time layers
//! override: plain data. Reading, merging and checking them is the job of
//! [`config`](crate::config), whose `impl` blocks give these types their
//! methods.

use std::path::PathBuf;
use std::time::Duration;

/// Where the evaluations of a batch run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// In the calling thread, one point after the other: for debugging.
    Serial,
    /// A rayon pool of `workers` threads in this process (the default).
    Rayon,
    /// `workers` child processes running this same binary in worker mode:
    /// a model that aborts or segfaults kills only its worker.
    Processes,
    /// Worker processes on SSH hosts, as many per host as its slots.
    Ssh,
    /// Array jobs on a SLURM cluster.
    Slurm,
}

/// When to draw a progress bar on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// Only when stderr is a terminal.
    #[default]
    Auto,
    /// Always (even into a file or pipe).
    Always,
    /// Never.
    Never,
}

/// Batch options, each one optional so that layers can override each other.
///
/// The attributes give the first layer; see [`config`](crate::config) for the
/// others.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// The backend.
    pub backend: Option<Backend>,
    /// The number of parallel workers (threads or processes). Defaults to
    /// every available CPU.
    pub workers: Option<usize>,
    /// Stop starting new points after the first failure.
    pub fail_fast: Option<bool>,
    /// The progress bar policy.
    pub progress: Option<ProgressMode>,
    /// A per-point time limit; only out-of-process backends can enforce it.
    pub timeout: Option<Duration>,
    /// The executable started in worker mode (default: this program).
    pub worker_exe: Option<PathBuf>,
    /// How many times a point is re-run when its worker, host or array task
    /// is lost under it (default 2).
    pub retries: Option<u32>,
    /// The `ssh` backend's options.
    pub ssh: SshOptions,
    /// The `slurm` backend's options.
    pub slurm: SlurmOptions,
    /// Errors in values given to [`Options::set`] (reported when the options
    /// are resolved, so that an attribute's defaults can be built without a
    /// `Result`).
    pub invalid: Vec<String>,
}

/// One SSH host and how many points it runs at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSpec {
    /// The address or name to connect to.
    pub host: String,
    /// The port (22 unless written).
    pub port: u16,
    /// The user (default: `$USER` of the driver).
    pub user: Option<String>,
    /// Worker slots: points evaluated at once on this host (its CPUs).
    pub slots: usize,
}

/// How the SSH backend checks a host's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyCheck {
    /// The key must be in the known_hosts file (the default, as `ssh` does).
    #[default]
    Strict,
    /// A host not in the file is trusted on first use and added to it; a
    /// changed key is still refused. Risk: the first connection can be
    /// intercepted.
    AcceptNew,
    /// No check. Risk: anyone on the path can impersonate the host and read
    /// every input and the worker binary. Only for throw-away test hosts.
    Off,
}

/// The `ssh` backend's options, each optional so that layers override each
/// other (see [`Options`]).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SshOptions {
    /// The hosts and their slots.
    pub hosts: Option<Vec<HostSpec>>,
    /// The private key file (default: the ssh agent, then `~/.ssh/id_*`).
    pub key: Option<PathBuf>,
    /// The known_hosts file (default `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// The host key policy.
    pub host_key_check: Option<HostKeyCheck>,
    /// How long connecting and logging in to one host may take (default 10 s).
    pub connect_timeout: Option<Duration>,
    /// The worker binary's path on the hosts when it is on a shared
    /// filesystem (no copy is made).
    pub worker_path: Option<PathBuf>,
    /// Where copies of the worker binary go on the hosts, relative to the
    /// remote home unless absolute (default `.cache/otwrap/workers`).
    pub remote_dir: Option<String>,
}

/// The `slurm` backend's options, each optional so that layers override
/// each other (see [`Options`]).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// `--time` of each array task (minutes, `MM:SS`, `HH:MM:SS`, `D-HH`...).
    pub time: Option<String>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// `--mem` (e.g. `2G`).
    pub mem: Option<String>,
    /// `--wckey`.
    pub wckey: Option<String>,
    /// `--constraint`.
    pub constraint: Option<String>,
    /// `--job-name` (default: the model's name).
    pub job_name: Option<String>,
    /// The directory of the tasks' `%A_%a.out`/`.err` files (default: the
    /// run directory's `logs/`).
    pub log_dir: Option<PathBuf>,
    /// Where run directories are made; must be visible from the compute
    /// nodes (default `.otwrap/runs`).
    pub run_dir: Option<PathBuf>,
    /// How many array tasks may run at once (the `%N` of `--array`).
    pub array_parallelism: Option<u32>,
    /// Points evaluated by one array task, one after the other.
    pub points_per_task: Option<usize>,
    /// How long a job may stay pending before the batch gives up on it.
    pub start_timeout: Option<Duration>,
    /// Shell lines run before the worker in every task (`module load`...).
    pub setup: Option<Vec<String>>,
    /// Extra `#SBATCH` directives, e.g. `--exclusive`.
    pub sbatch: Option<Vec<String>>,
    /// Also retry points whose model failed (not only lost tasks).
    pub retry_model_failures: Option<bool>,
    /// Print the job script and submit nothing.
    pub dry_run: Option<bool>,
}
