//! Real services for integration tests: sshd "hosts" and a single-node SLURM,
//! provisioned by `scripts/services/{sshd,slurm}.sh start` (or `up.sh`, which
//! `scripts/test.sh` runs when it can).
//!
//! Include it with:
//!
//! ```ignore
//! #[path = "support/services.rs"]
//! mod services;
//! ```
//!
//! Each service's script writes `$OTWRAP_TEST_SERVICES_DIR/<service>/env`
//! (default `/tmp/otwrap-services`) last, once the service is up. [`ssh`] and
//! [`slurm`] read that file and check that the daemons recorded in the
//! `*.pid` files are alive. When not, the test is skipped with a visible
//! `SKIPPED` line on stderr, or fails when `CI=true`.
//!
//! Standard library only.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The sshd instances of `scripts/services/sshd.sh`: one "host" per loopback
/// address in `hosts`, all on `port`, `user` logs in with `key`.
#[derive(Debug, Clone)]
pub struct SshEnv {
    pub user: String,
    pub port: u16,
    /// Loopback addresses, e.g. `127.0.0.2`, `127.0.0.3`, `127.0.0.4`.
    pub hosts: Vec<String>,
    /// Private key authorized on every host.
    pub key: PathBuf,
    /// Private key authorized nowhere.
    pub wrong_key: PathBuf,
    /// `known_hosts` with every host's key (`[ADDR]:PORT ssh-ed25519 ...`).
    pub known_hosts: PathBuf,
    /// `sshd.sh` itself (for `kill-host` / `start-host`).
    pub script: PathBuf,
}

impl SshEnv {
    /// SIGKILLs the sshd on `addr` and everything it runs (a host dying
    /// mid-run). Restart it with [`SshEnv::start_host`].
    pub fn kill_host(&self, addr: &str) -> Result<(), String> {
        run_script(&self.script, &["kill-host", addr])
    }

    /// Starts the sshd on `addr` again (same keys) and waits until it
    /// accepts logins.
    pub fn start_host(&self, addr: &str) -> Result<(), String> {
        run_script(&self.script, &["start-host", addr])
    }

    /// Kills the sshd on `addr`; the returned guard starts it again when
    /// dropped, even if the test panics in between.
    pub fn host_down(&self, addr: &str) -> Result<HostDown, String> {
        self.kill_host(addr)?;
        Ok(HostDown {
            env: self.clone(),
            addr: addr.to_owned(),
        })
    }
}

/// A host killed by [`SshEnv::host_down`]; restarted on drop.
#[derive(Debug)]
pub struct HostDown {
    env: SshEnv,
    addr: String,
}

impl Drop for HostDown {
    fn drop(&mut self) {
        if let Err(e) = self.env.start_host(&self.addr) {
            eprintln!("could not restart sshd on {}: {e}", self.addr);
        }
    }
}

/// The single-node SLURM of `scripts/services/slurm.sh`: node `localhost`
/// with `cpus` CPUs, partitions `debug` (default, no time limit) and `short`
/// (`MaxTime=1`, one minute).
#[derive(Debug, Clone)]
pub struct SlurmEnv {
    /// `slurm.conf`; [`slurm`] also exports it as `SLURM_CONF`.
    pub conf: PathBuf,
    pub cpus: usize,
    /// The state directory (logs in `log/`, `jobcomp.log`).
    pub dir: PathBuf,
    /// `slurm.sh` itself.
    pub script: PathBuf,
}

/// The sshd hosts, or `None` (after printing a `SKIPPED` line) when they are
/// not provisioned or not all alive. Panics instead when `CI=true`.
pub fn ssh(test: &str) -> Option<SshEnv> {
    match load_ssh() {
        Ok(env) => Some(env),
        Err(reason) => skip(
            test,
            &format!(
                "sshd not provisioned: run `scripts/services/sshd.sh start` \
                 (as root; or scripts/services/up.sh) ({reason})"
            ),
        ),
    }
}

/// The SLURM cluster, or `None` (after printing a `SKIPPED` line) when it is
/// not provisioned or its daemons are not all alive. Panics instead when
/// `CI=true`. Sets `SLURM_CONF` in this process's environment so that client
/// commands (`sbatch`, `squeue`, ...) reach it.
pub fn slurm(test: &str) -> Option<SlurmEnv> {
    match load_slurm() {
        Ok(env) => {
            std::env::set_var("SLURM_CONF", &env.conf);
            Some(env)
        }
        Err(reason) => skip(
            test,
            &format!(
                "SLURM not provisioned: run `scripts/services/slurm.sh start` \
                 (as root; or scripts/services/up.sh) ({reason})"
            ),
        ),
    }
}

/// `$OTWRAP_TEST_SERVICES_DIR`, default `/tmp/otwrap-services`.
pub fn services_dir() -> PathBuf {
    match std::env::var_os("OTWRAP_TEST_SERVICES_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from("/tmp/otwrap-services"),
    }
}

fn skip<T>(test: &str, message: &str) -> Option<T> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: {message} [CI=true: services are required]");
    }
    eprintln!("SKIPPED {test}: {message}");
    None
}

fn load_ssh() -> Result<SshEnv, String> {
    let dir = services_dir().join("ssh");
    let vars = read_env_file(&dir.join("env"))?;
    let port = get(&vars, "OTWRAP_TEST_SSH_PORT")?;
    let env = SshEnv {
        user: get(&vars, "OTWRAP_TEST_SSH_USER")?.to_owned(),
        port: port
            .parse()
            .map_err(|_| format!("OTWRAP_TEST_SSH_PORT={port} is not a port"))?,
        hosts: get(&vars, "OTWRAP_TEST_SSH_HOSTS")?
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect(),
        key: get(&vars, "OTWRAP_TEST_SSH_KEY")?.into(),
        wrong_key: get(&vars, "OTWRAP_TEST_SSH_WRONG_KEY")?.into(),
        known_hosts: get(&vars, "OTWRAP_TEST_SSH_KNOWN_HOSTS")?.into(),
        script: get(&vars, "OTWRAP_TEST_SSH_SCRIPT")?.into(),
    };
    if env.hosts.is_empty() {
        return Err("OTWRAP_TEST_SSH_HOSTS is empty".into());
    }
    // The state directory as the script spelled it (in the daemons' command lines).
    let state_dir = env.key.parent().unwrap_or(&dir).to_path_buf();
    for host in &env.hosts {
        check_alive(
            &dir.join(format!("{host}.pid")),
            &state_dir,
            &format!("sshd on {host}"),
        )?;
    }
    Ok(env)
}

fn load_slurm() -> Result<SlurmEnv, String> {
    let dir = services_dir().join("slurm");
    let vars = read_env_file(&dir.join("env"))?;
    let cpus = get(&vars, "OTWRAP_TEST_SLURM_CPUS")?;
    let env = SlurmEnv {
        conf: get(&vars, "SLURM_CONF")?.into(),
        cpus: cpus
            .parse()
            .map_err(|_| format!("OTWRAP_TEST_SLURM_CPUS={cpus} is not a number"))?,
        dir: get(&vars, "OTWRAP_TEST_SLURM_DIR")?.into(),
        script: get(&vars, "OTWRAP_TEST_SLURM_SCRIPT")?.into(),
    };
    for daemon in ["munged", "slurmctld", "slurmd"] {
        check_alive(&dir.join(format!("{daemon}.pid")), &env.dir, daemon)?;
    }
    Ok(env)
}

/// `KEY=VALUE` lines; blank lines and `#` comments ignored.
fn read_env_file(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

fn get<'a>(vars: &'a HashMap<String, String>, key: &str) -> Result<&'a str, String> {
    vars.get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("{key} missing from the env file"))
}

/// The process whose PID is in `pid_file` exists, is not a zombie and its
/// command line names `state_dir` (so a stale pid file reused by another
/// process does not count).
fn check_alive(pid_file: &Path, state_dir: &Path, what: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        format!(
            "{what} not running: cannot read {}: {e}",
            pid_file.display()
        )
    })?;
    let pid: u32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{what}: bad pid file {}", pid_file.display()))?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|_| format!("{what} (pid {pid}) is not running"))?;
    // The state follows the command name, which is in parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if state == Some('Z') {
        return Err(format!("{what} (pid {pid}) is dead (zombie)"));
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if !cmdline.contains(&*state_dir.to_string_lossy()) {
        return Err(format!(
            "{what} is not running (pid {pid} is another process: {cmdline})"
        ));
    }
    Ok(())
}

fn run_script(script: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(script)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {} failed ({}): {}{}",
            script.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
