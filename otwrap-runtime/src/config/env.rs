//! The `OTWRAP_*` environment variables: the one list of the names otwrap
//! reads, and the check that a name in the environment is not a typo of one.
//!
//! A typo must never be silent: `OTWRAP_BACKNED=processes` would otherwise
//! run the batch on the default backend without a word. So, in a driver:
//!
//! - a name within 2 edits of a known one (`OTWRAP_BACKNED`,
//!   `otwrap_workers`) is an error with the name it is close to;
//! - an unknown name under `OTWRAP_SSH_` or `OTWRAP_SLURM_` is an error
//!   listing the backend's keys (those prefixes belong to the backends);
//! - any other unknown `OTWRAP_*` name is a warning on stderr;
//! - names under `OTWRAP_TEST_` and `OTWRAP_BENCH_` (otwrap's own test suite
//!   and benchmarks) are never reported.
//!
//! Workers skip the check: their driver made it on the same environment.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use super::{SlurmOptions, SshOptions};
use crate::error::Error;

/// The variables users set, apart from the backends' options
/// (`OTWRAP_SSH_<KEY>` for each of [`SshOptions::KEYS`], `OTWRAP_SLURM_<KEY>`
/// for each of [`SlurmOptions::KEYS`]): see [`known_names`] for the whole list.
pub const KNOWN_VARS: &[&str] = &[
    "OTWRAP_BACKEND",
    "OTWRAP_WORKERS",
    "OTWRAP_FAIL_FAST",
    "OTWRAP_PROGRESS",
    "OTWRAP_TIMEOUT",
    "OTWRAP_RETRIES",
    "OTWRAP_WORKER_EXE",
    "OTWRAP_CONFIG",
    "OTWRAP_CACHE_DIR",
    "OTWRAP_WORKDIR_BASE",
];

/// The variables a driver sets for its workers (internal to otwrap).
pub const INTERNAL_VARS: &[&str] = &[
    "OTWRAP_WORKER",
    "OTWRAP_TASK_RUN",
    "OTWRAP_TASK_SUBMISSION",
    "OTWRAP_TASK_MODEL",
    "OTWRAP_TASK_TIMEOUT",
];

/// Prefixes of the variables of otwrap's test suite and benchmarks: known,
/// never reported.
pub const RESERVED_PREFIXES: &[&str] = &["OTWRAP_TEST_", "OTWRAP_BENCH_"];

/// The prefix of every otwrap variable.
const PREFIX: &str = "OTWRAP_";
const SSH_PREFIX: &str = "OTWRAP_SSH_";
const SLURM_PREFIX: &str = "OTWRAP_SLURM_";

/// The variable naming the `ssh` or `slurm` backend's option `key`.
pub(crate) fn backend_var(prefix_of: &str, key: &str) -> String {
    format!("{prefix_of}{}", key.to_ascii_uppercase())
}

/// Every variable name otwrap reads: [`KNOWN_VARS`], the backends'
/// `OTWRAP_SSH_<KEY>` and `OTWRAP_SLURM_<KEY>`, and last the
/// [`INTERNAL_VARS`].
///
/// ```
/// let names = otwrap_runtime::config::known_names();
/// assert!(names.iter().any(|n| n == "OTWRAP_BACKEND"));
/// assert!(names.iter().any(|n| n == "OTWRAP_SSH_HOSTS"));
/// assert!(names.iter().any(|n| n == "OTWRAP_SLURM_PARTITION"));
/// ```
pub fn known_names() -> Vec<String> {
    KNOWN_VARS
        .iter()
        .map(|v| v.to_string())
        .chain(SshOptions::KEYS.iter().map(|k| backend_var(SSH_PREFIX, k)))
        .chain(
            SlurmOptions::KEYS
                .iter()
                .map(|k| backend_var(SLURM_PREFIX, k)),
        )
        .chain(INTERNAL_VARS.iter().map(|v| v.to_string()))
        .collect()
}

/// Checks the `OTWRAP_*` names among `names` (the environment's variable
/// names, in practice): an error for a typo of a known name or an unknown
/// backend key, the warnings for the other unknown names. See the
/// [module docs](crate::config) for the rules.
///
/// ```
/// use otwrap_runtime::config::check_env_names;
///
/// let e = check_env_names(["PATH", "OTWRAP_BACKNED"]).unwrap_err();
/// assert!(e.to_string().contains("did you mean `OTWRAP_BACKEND`?"));
/// let warnings = check_env_names(["OTWRAP_WORKERS", "OTWRAP_FOO_BAR_BAZ"])?;
/// assert_eq!(warnings.len(), 1);
/// # Ok::<(), otwrap_runtime::Error>(())
/// ```
pub fn check_env_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, Error> {
    let mut known: Option<Vec<String>> = None;
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for name in names {
        // Variable names are case-sensitive, so `otwrap_workers` is not read:
        // compare in upper case to catch it as a typo.
        let upper = name.to_ascii_uppercase();
        if !upper.starts_with(PREFIX) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let known = known.get_or_insert_with(known_names);
        if known.iter().any(|k| k == name) {
            continue;
        }
        // A name users set wins a tie with an internal one
        // (`OTWRAP_WORKES` is `OTWRAP_WORKERS`, not `OTWRAP_WORKER`).
        let users = known.len() - INTERNAL_VARS.len();
        let (distance, closest) = [&known[..users], &known[users..]]
            .into_iter()
            .filter_map(|names| super::value::closest(&upper, names.iter().map(String::as_str)))
            .find(|(distance, _)| *distance <= 2)
            .unwrap_or((usize::MAX, ""));
        let backend = [
            (SSH_PREFIX, "ssh", SshOptions::KEYS),
            (SLURM_PREFIX, "slurm", SlurmOptions::KEYS),
        ]
        .into_iter()
        .find(|(prefix, _, _)| upper.starts_with(prefix));
        if distance <= 2 {
            errors.push(format!(
                "unknown environment variable {name}: did you mean `{closest}`? \
                 Rename it (or unset it)"
            ));
        } else if let Some((prefix, backend, keys)) = backend {
            let vars: Vec<String> = keys.iter().map(|k| backend_var(prefix, k)).collect();
            errors.push(format!(
                "unknown environment variable {name}: the {backend} backend reads only {}; \
                 rename it (or unset it)",
                vars.join(", ")
            ));
        } else {
            warnings.push(format!(
                "the environment variable {name} is not one otwrap reads, so it is ignored \
                 (otwrap reads {}, {SSH_PREFIX}<KEY> and {SLURM_PREFIX}<KEY>)",
                KNOWN_VARS.join(", ")
            ));
        }
    }
    if errors.is_empty() {
        Ok(warnings)
    } else {
        Err(Error::Config(errors.join("\n")))
    }
}

static SKIP_NAME_CHECKS: AtomicBool = AtomicBool::new(false);

/// Turns the check of the environment's names off for this process: a
/// worker's driver already made it.
pub(crate) fn skip_env_name_checks() {
    SKIP_NAME_CHECKS.store(true, Ordering::Relaxed);
}

/// Checks this process's environment (see [`check_env_names`]) and prints
/// its warnings, unless this process is a worker.
pub(crate) fn check_process_env() -> Result<(), Error> {
    if SKIP_NAME_CHECKS.load(Ordering::Relaxed) {
        return Ok(());
    }
    let names: Vec<String> = std::env::vars_os()
        .filter(|(name, _)| {
            let bytes = name.as_encoded_bytes();
            bytes.len() >= PREFIX.len()
                && bytes[..PREFIX.len()].eq_ignore_ascii_case(PREFIX.as_bytes())
        })
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .collect();
    // Settings are read at every batch: the same names are checked once.
    static CHECKED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    if *checked == names {
        return Ok(());
    }
    for warning in check_env_names(names.iter().map(String::as_str))? {
        warn_once(warning);
    }
    *checked = names;
    Ok(())
}

/// Reports a configuration warning on stderr (and to `tracing`), once per
/// process: settings are read at every batch, and the same warning each time
/// would bury the output.
pub(crate) fn warn_once(message: String) {
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    // A poisoned set only means another thread panicked while warning.
    let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
    if seen
        .get_or_insert_with(HashSet::new)
        .insert(message.clone())
    {
        tracing::warn!("{message}");
        eprintln!("otwrap: warning: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(names: &[&str]) -> String {
        check_env_names(names.iter().copied())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_typo_of_a_known_name_is_an_error_naming_it() {
        let e = error(&["OTWRAP_BACKNED"]);
        assert_eq!(
            e,
            "otwrap configuration error: unknown environment variable OTWRAP_BACKNED: did you mean `OTWRAP_BACKEND`? \
             Rename it (or unset it)"
        );
        assert!(error(&["OTWRAP_WORKES"]).contains("`OTWRAP_WORKERS`"));
        assert!(error(&["otwrap_workers"]).contains("`OTWRAP_WORKERS`"));
        assert!(error(&["OTWRAP_CACHEDIR"]).contains("`OTWRAP_CACHE_DIR`"));
        assert!(error(&["OTWRAP_CONFIGG"]).contains("`OTWRAP_CONFIG`"));
        // Several typos: all named in one error.
        let e = error(&["OTWRAP_TIMOUT", "OTWRAP_RETRIS"]);
        assert!(
            e.contains("`OTWRAP_TIMEOUT`") && e.contains("`OTWRAP_RETRIES`"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_backend_key_is_an_error() {
        let e = error(&["OTWRAP_SSH_HOTS"]);
        assert!(e.contains("did you mean `OTWRAP_SSH_HOSTS`?"), "{e}");
        let e = error(&["OTWRAP_SLURM_NODES_PER_TASK"]);
        assert!(
            e.contains("the slurm backend reads only OTWRAP_SLURM_PARTITION"),
            "{e}"
        );
        let e = error(&["OTWRAP_SSH_PASSWORD"]);
        assert!(
            e.contains("the ssh backend reads only OTWRAP_SSH_HOSTS"),
            "{e}"
        );
    }

    #[test]
    fn other_unknown_names_are_warnings() {
        let warnings =
            check_env_names(["OTWRAP_FOO_BAR_BAZ", "HOME", "OTWRAP_BACKEND"]).expect("no error");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0]
            .starts_with("the environment variable OTWRAP_FOO_BAR_BAZ is not one otwrap reads"));
        assert!(warnings[0].contains("OTWRAP_WORKERS"), "{warnings:?}");
        // Internal names are not advertised.
        assert!(!warnings[0].contains("OTWRAP_TASK_RUN"), "{warnings:?}");
    }

    #[test]
    fn known_and_reserved_names_pass() {
        let mut names = known_names();
        names.extend(
            [
                "OTWRAP_TEST_SERVICES_DIR",
                "OTWRAP_TEST_BACKNED",
                "OTWRAP_BENCH_PROFILE",
                "OTWRAPPER",
                "PATH",
            ]
            .map(String::from),
        );
        let warnings = check_env_names(names.iter().map(String::as_str)).expect("no error");
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn every_name_the_runtime_reads_is_known() {
        let known = known_names();
        let mut read = [
            super::super::CONFIG_ENV,
            crate::cache::CACHE_DIR_ENV,
            crate::workdir::WORKDIR_BASE_ENV,
            crate::worker::protocol::WORKER_ENV,
            crate::worker::task::RUN_ENV,
            crate::worker::task::SUBMISSION_ENV,
            crate::worker::task::MODEL_ENV,
            crate::worker::task::TIMEOUT_ENV,
        ]
        .map(String::from)
        .to_vec();
        let asked = std::cell::RefCell::new(Vec::new());
        super::super::from_vars(|name| {
            asked.borrow_mut().push(name.to_string());
            None
        })
        .expect("nothing set");
        read.extend(asked.into_inner());
        for name in read {
            assert!(
                known.contains(&name),
                "{name} is read but not in KNOWN_VARS"
            );
        }
    }
}
