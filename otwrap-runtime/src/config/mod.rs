//! Run-time configuration: the options of a batch, and how the attribute
//! defaults are overridden by `otwrap.toml`, `OTWRAP_*` environment variables
//! and the [`Runner`](crate::Runner), in that order of increasing priority.
//!
//! ```toml
//! # otwrap.toml (or the file named by OTWRAP_CONFIG)
//! backend = "processes"
//! workers = 8
//! fail_fast = false
//! progress = "auto"      # "auto" | "always" | "never"
//! timeout = 600          # seconds per point (out-of-process backends)
//!
//! retries = 2            # re-runs of a point whose worker, host or task was lost
//!
//! [model.beam]           # options for one model only (its name or full id)
//! workers = 2
//! ```
//!
//! The `ssh` and `slurm` backends read their own sections, `[ssh]` and
//! `[slurm]` (also under `[model.NAME]`), and variables `OTWRAP_SSH_<KEY>`
//! and `OTWRAP_SLURM_<KEY>`: see [`SshOptions`] and [`SlurmOptions`].
//!
//! A typo is never silent: an unknown key of the file is an error, a
//! `[model.NAME]` section that matches no model of this program a warning
//! (several programs may share one file), and the environment's `OTWRAP_*`
//! names are checked as [`check_env_names`] says.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;

mod env;
mod slurm;
mod ssh;
mod value;

pub use crate::core::options::{
    Backend, HostKeyCheck, HostSpec, Options, ProgressMode, SlurmOptions, SshOptions,
};
pub(crate) use env::skip_env_name_checks;
pub use env::{check_env_names, known_names, INTERNAL_VARS, KNOWN_VARS, RESERVED_PREFIXES};
pub use value::RawValue;

impl Backend {
    /// Every backend name, as written in attributes and configuration.
    pub const NAMES: &'static [&'static str] = &["serial", "rayon", "processes", "ssh", "slurm"];

    /// The backend's name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Serial => "serial",
            Backend::Rayon => "rayon",
            Backend::Processes => "processes",
            Backend::Ssh => "ssh",
            Backend::Slurm => "slurm",
        }
    }

    /// `true` for the backends that run points in other processes (and can
    /// therefore stop one that runs too long).
    pub fn out_of_process(self) -> bool {
        !matches!(self, Backend::Serial | Backend::Rayon)
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "serial" => Ok(Backend::Serial),
            "rayon" | "threads" => Ok(Backend::Rayon),
            "processes" => Ok(Backend::Processes),
            "ssh" => Ok(Backend::Ssh),
            "slurm" => Ok(Backend::Slurm),
            _ => Err(format!(
                "unknown backend `{s}`; expected one of: {}",
                Backend::NAMES.join(", ")
            )),
        }
    }
}

impl FromStr for ProgressMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ProgressMode::Auto),
            "always" | "true" | "1" => Ok(ProgressMode::Always),
            "never" | "false" | "0" => Ok(ProgressMode::Never),
            _ => Err(format!(
                "unknown progress mode `{s}`; expected one of: auto, always, never"
            )),
        }
    }
}

impl Options {
    /// Options with nothing set.
    pub fn new() -> Self {
        Options::default()
    }

    /// `self` over `lower`: every option set here wins.
    pub fn over(self, lower: Options) -> Options {
        Options {
            backend: self.backend.or(lower.backend),
            workers: self.workers.or(lower.workers),
            fail_fast: self.fail_fast.or(lower.fail_fast),
            progress: self.progress.or(lower.progress),
            timeout: self.timeout.or(lower.timeout),
            worker_exe: self.worker_exe.or(lower.worker_exe),
            retries: self.retries.or(lower.retries),
            ssh: self.ssh.over(lower.ssh),
            slurm: self.slurm.over(lower.slurm),
            invalid: [lower.invalid, self.invalid].concat(),
        }
    }

    /// Sets a backend option by key, as written in an attribute: `retries`,
    /// a key of [`SshOptions::KEYS`] or of [`SlurmOptions::KEYS`]. An invalid
    /// value is kept in [`Options::invalid`] and reported by
    /// [`Options::resolve`], prefixed by `origin`.
    ///
    /// ```
    /// use otwrap_runtime::config::{Options, RawValue};
    /// let mut o = Options::new();
    /// o.set("hosts", RawValue::Str("4/alice@node1".into()), "example");
    /// o.set("partition", RawValue::Str("debug".into()), "example");
    /// assert_eq!(o.ssh.hosts.as_ref().map(Vec::len), Some(1));
    /// assert!(o.invalid.is_empty());
    /// ```
    pub fn set(&mut self, key: &str, value: RawValue, origin: &str) -> &mut Self {
        let result = if key == "retries" {
            value
                .integer(0, "2")
                .and_then(|n| u32::try_from(n).map_err(|e| e.to_string()))
                .map(|n| self.retries = Some(n))
        } else if SshOptions::KEYS.contains(&key) {
            self.ssh.set(key, value)
        } else if SlurmOptions::KEYS.contains(&key) {
            self.slurm.set(key, value)
        } else {
            let keys: Vec<&str> = std::iter::once("retries")
                .chain(SshOptions::KEYS.iter().copied())
                .chain(SlurmOptions::KEYS.iter().copied())
                .collect();
            Err(value::unknown_key("backend", key, &keys))
        };
        if let Err(message) = result {
            self.invalid.push(format!("{origin}: `{key}`: {message}"));
        }
        self
    }
}

/// The options of one batch once every layer is applied.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// The backend.
    pub backend: Backend,
    /// The number of workers (at least 1).
    pub workers: usize,
    /// Stop after the first failure.
    pub fail_fast: bool,
    /// The progress bar policy.
    pub progress: ProgressMode,
    /// The per-point time limit.
    pub timeout: Option<Duration>,
    /// The worker executable.
    pub worker_exe: Option<PathBuf>,
    /// Re-runs of a point whose worker, host or array task was lost.
    pub retries: u32,
    /// The `ssh` backend's options (hosts checked when it is chosen).
    pub ssh: SshOptions,
    /// The `slurm` backend's options.
    pub slurm: SlurmOptions,
}

/// The number of CPUs this process may use (never silently 1 because of a
/// "physical cores minus one" rule).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

impl Options {
    /// Fills what is still unset with the built-in defaults and checks the
    /// values.
    pub fn resolve(self) -> Result<Settings, Error> {
        if !self.invalid.is_empty() {
            return Err(Error::Config(self.invalid.join("\n")));
        }
        let workers = self.workers.unwrap_or_else(available_cpus);
        if workers == 0 {
            return Err(Error::Config(
                "`workers` must be at least 1 (leave it unset to use every available CPU)".into(),
            ));
        }
        if let Some(t) = self.timeout {
            if t.is_zero() {
                return Err(Error::Config("`timeout` must be greater than zero".into()));
            }
        }
        let backend = self.backend.unwrap_or(Backend::Rayon);
        if backend == Backend::Ssh && self.ssh.hosts.is_none() {
            return Err(Error::Config(
                "the ssh backend needs hosts: set `hosts = \"4/user@node1, 2/user@node2\"` in #[parallelize], \
                 `hosts = [...]` under [ssh] in otwrap.toml, or OTWRAP_SSH_HOSTS"
                    .into(),
            ));
        }
        // The ssh backend's size is the sum of its hosts' slots.
        let workers = match (&self.ssh.hosts, backend) {
            (Some(hosts), Backend::Ssh) => hosts.iter().map(|h| h.slots).sum(),
            _ => workers,
        };
        Ok(Settings {
            backend,
            // The serial backend runs one point at a time, whatever was asked.
            workers: if backend == Backend::Serial {
                1
            } else {
                workers
            },
            fail_fast: self.fail_fast.unwrap_or(false),
            progress: self.progress.unwrap_or_default(),
            timeout: self.timeout,
            worker_exe: self.worker_exe,
            retries: self.retries.unwrap_or(2),
            ssh: self.ssh,
            slurm: self.slurm,
        })
    }
}

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "OTWRAP_CONFIG";
/// The configuration file looked up in the current directory.
pub const DEFAULT_CONFIG_FILE: &str = "otwrap.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileOptions {
    backend: Option<String>,
    workers: Option<usize>,
    fail_fast: Option<bool>,
    progress: Option<String>,
    timeout: Option<f64>,
    worker_exe: Option<PathBuf>,
    retries: Option<u32>,
}

fn convert(file: FileOptions, origin: &str) -> Result<Options, Error> {
    let bad = |key: &str, msg: String| Error::Config(format!("{origin}: `{key}`: {msg}"));
    Ok(Options {
        backend: file
            .backend
            .map(|b| b.parse::<Backend>().map_err(|m| bad("backend", m)))
            .transpose()?,
        workers: file.workers,
        fail_fast: file.fail_fast,
        progress: file
            .progress
            .map(|p| p.parse::<ProgressMode>().map_err(|m| bad("progress", m)))
            .transpose()?,
        timeout: file
            .timeout
            .map(|t| seconds(t).map_err(|m| bad("timeout", m)))
            .transpose()?,
        worker_exe: file.worker_exe,
        retries: file.retries,
        ..Options::default()
    })
}

fn seconds(t: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(t)
        .map_err(|_| format!("expected a positive number of seconds, found {t}"))
}

/// Reads the options for model `id` (named `name`) from a configuration
/// file's text. `origin` names the file in errors. A `[model.NAME]` section
/// that matches no model of this program is a warning on stderr (see
/// [`unmatched_model_sections`]).
pub fn parse_config(text: &str, origin: &str, id: &str, name: &str) -> Result<Options, Error> {
    let mut models = crate::model::registered_ids();
    models.push(id);
    let (options, warnings) = parse_config_for(text, origin, id, name, &models)?;
    for warning in warnings {
        env::warn_once(warning);
    }
    Ok(options)
}

/// [`parse_config`] for a program whose models have ids `known_models`: the
/// options, and the warnings for the sections of other models.
fn parse_config_for(
    text: &str,
    origin: &str,
    id: &str,
    name: &str,
    known_models: &[&str],
) -> Result<(Options, Vec<String>), Error> {
    // Flattened structs lose `deny_unknown_fields`, so check the keys first
    // to be able to list the valid ones.
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::Config(format!("{origin} is not valid TOML: {e}")))?;
    const KEYS: &[&str] = &[
        "backend",
        "workers",
        "fail_fast",
        "progress",
        "timeout",
        "worker_exe",
        "retries",
        "ssh",
        "slurm",
        "model",
    ];
    for key in table.keys() {
        if !KEYS.contains(&key.as_str()) {
            return Err(Error::Config(format!(
                "{origin}: unknown key `{key}`; expected one of: {}",
                KEYS.join(", ")
            )));
        }
    }
    let mut table = table;
    let models = match table.remove("model") {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(_) => {
            return Err(Error::Config(format!(
                "{origin}: `model` must be a table of per-model sections, e.g. [model.beam]"
            )))
        }
    };
    let global = read_section(table, origin)?;
    let models = models
        .into_iter()
        .map(|(key, value)| {
            let place = format!("{origin} [model.{key}]");
            match value {
                toml::Value::Table(t) => read_section(t, &place).map(|o| (key, o)),
                _ => Err(Error::Config(format!("{place} must be a table of options"))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let warnings = unmatched_model_sections(
        models.iter().map(|(key, _)| key.as_str()),
        known_models,
        origin,
    );
    let specific = models
        .into_iter()
        .filter(|(key, _)| key == name || key == id)
        .fold(Options::default(), |acc, (_, o)| o.over(acc));
    Ok((specific.over(global), warnings))
}

/// The warnings for the `[model.NAME]` sections (`sections`, the NAMEs) of
/// configuration file `origin` that match none of the models of ids
/// `models`, by name (the id's last segment) or by full id. A warning, not an
/// error: the binaries of one project may share one `otwrap.toml`.
///
/// ```
/// use otwrap_runtime::config::unmatched_model_sections;
///
/// let models = ["app::beam", "app::solver::wall"];
/// let w = unmatched_model_sections(["beam", "app::solver::wall", "bema"], &models, "otwrap.toml");
/// assert_eq!(w.len(), 1);
/// assert!(w[0].contains("[model.bema] matches no model"));
/// assert!(w[0].contains("did you mean [model.beam]?"));
/// assert!(w[0].contains("beam (app::beam), wall (app::solver::wall)"));
/// ```
pub fn unmatched_model_sections<'a>(
    sections: impl IntoIterator<Item = &'a str>,
    models: &[&str],
    origin: &str,
) -> Vec<String> {
    let mut ids: Vec<&str> = models.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let names: Vec<&str> = ids
        .iter()
        .map(|id| id.rsplit("::").next().unwrap_or(id))
        .collect();
    sections
        .into_iter()
        .filter(|key| !ids.contains(key) && !names.contains(key))
        .map(|key| {
            let hint = value::did_you_mean(key, &names)
                .map(|n| format!(" (did you mean [model.{n}]?)"))
                .unwrap_or_default();
            let list: Vec<String> = ids
                .iter()
                .zip(&names)
                .map(|(id, name)| format!("{name} ({id})"))
                .collect();
            format!(
                "{origin}: [model.{key}] matches no model of this program, so its options are not used{hint}; \
                 this program's models are: {}. A section for another program sharing this file can stay",
                list.join(", ")
            )
        })
        .collect()
}

/// Reads one level of options: plain keys, and the `[ssh]` and `[slurm]`
/// sections.
fn read_section(mut table: toml::Table, origin: &str) -> Result<Options, Error> {
    let mut sections = Vec::new();
    for name in ["ssh", "slurm"] {
        match table.remove(name) {
            None => {}
            Some(toml::Value::Table(t)) => sections.push((name, t)),
            Some(_) => {
                return Err(Error::Config(format!(
                    "{origin}: `{name}` must be a section, e.g. [{name}]"
                )))
            }
        }
    }
    let mut options = convert(read_options(table, origin)?, origin)?;
    for (name, section) in sections {
        for (key, value) in section {
            let raw = RawValue::from_toml(&value).ok_or_else(|| {
                Error::Config(format!(
                    "{origin} [{name}]: `{key}`: expected a string, number, boolean or list of strings"
                ))
            })?;
            let result = match name {
                "ssh" => options.ssh.set(&key, raw),
                _ => options.slurm.set(&key, raw),
            };
            result.map_err(|m| Error::Config(format!("{origin} [{name}]: `{key}`: {m}")))?;
        }
    }
    Ok(options)
}

fn read_options(table: toml::Table, origin: &str) -> Result<FileOptions, Error> {
    // Check one key at a time so a wrong type names its key.
    for (key, value) in &table {
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        if let Err(e) = one.try_into::<FileOptions>() {
            return Err(Error::Config(format!("{origin}: `{key}`: {}", e.message())));
        }
    }
    table
        .try_into()
        .map_err(|e: toml::de::Error| Error::Config(format!("{origin}: {}", e.message())))
}

/// Reads the configuration file (the one named by `path`, else
/// `OTWRAP_CONFIG`, else `./otwrap.toml` if it exists).
pub fn load_file(path: Option<&Path>, id: &str, name: &str) -> Result<Options, Error> {
    let env_path = std::env::var_os(CONFIG_ENV).map(PathBuf::from);
    let (path, required) = match (path, env_path) {
        (Some(p), _) => (p.to_path_buf(), true),
        (None, Some(p)) => (p, true),
        (None, None) => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            return Ok(Options::default())
        }
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            )))
        }
    };
    parse_config(&text, &path.display().to_string(), id, name)
}

/// Reads the `OTWRAP_*` environment variables, after checking their names
/// (see [`check_env_names`]; its warnings go to stderr, once per process).
pub fn from_env() -> Result<Options, Error> {
    env::check_process_env()?;
    from_vars(|key| std::env::var(key).ok())
}

/// Reads options from any source of variables (the environment, in practice).
pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Options, Error> {
    fn parse<T>(
        var: &impl Fn(&str) -> Option<String>,
        key: &str,
        mut f: impl FnMut(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Error> {
        match var(key) {
            Some(v) if !v.trim().is_empty() => f(v.trim())
                .map(Some)
                .map_err(|m| Error::Config(format!("environment variable {key}={v:?}: {m}"))),
            _ => Ok(None),
        }
    }
    Ok(Options {
        backend: parse(&var, "OTWRAP_BACKEND", str::parse)?,
        workers: parse(&var, "OTWRAP_WORKERS", |v| {
            v.parse::<usize>()
                .map_err(|_| "expected a whole number of workers, e.g. 4".to_string())
        })?,
        fail_fast: parse(&var, "OTWRAP_FAIL_FAST", |v| {
            match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                _ => Err("expected true or false".to_string()),
            }
        })?,
        progress: parse(&var, "OTWRAP_PROGRESS", str::parse)?,
        timeout: parse(&var, "OTWRAP_TIMEOUT", |v| {
            v.parse::<f64>()
                .map_err(|_| "expected a number of seconds, e.g. 600".to_string())
                .and_then(seconds)
        })?,
        worker_exe: parse(&var, "OTWRAP_WORKER_EXE", |v| Ok(PathBuf::from(v)))?,
        retries: parse(&var, "OTWRAP_RETRIES", |v| {
            v.parse::<u32>()
                .map_err(|_| "expected a whole number of retries, e.g. 2".to_string())
        })?,
        ssh: {
            let mut o = SshOptions::default();
            for key in SshOptions::KEYS {
                let name = env::backend_var("OTWRAP_SSH_", key);
                parse(&var, &name, |v| o.set(key, RawValue::Str(v.to_string())))?;
            }
            o
        },
        slurm: {
            let mut o = SlurmOptions::default();
            for key in SlurmOptions::KEYS {
                let name = env::backend_var("OTWRAP_SLURM_", key);
                parse(&var, &name, |v| o.set(key, RawValue::Str(v.to_string())))?;
            }
            o
        },
        invalid: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        let attr = Options {
            backend: Some(Backend::Serial),
            workers: Some(3),
            ..Options::default()
        };
        let file = parse_config(
            "workers = 5\n[model.beam]\nbackend = \"processes\"\n",
            "t.toml",
            "x::beam",
            "beam",
        )
        .expect("valid");
        let env =
            from_vars(|k| (k == "OTWRAP_FAIL_FAST").then(|| "true".to_string())).expect("valid");
        let s = env.over(file.over(attr)).resolve().expect("valid");
        assert_eq!(s.backend, Backend::Processes);
        assert_eq!(s.workers, 5);
        assert!(s.fail_fast);
    }

    #[test]
    fn unknown_keys_list_the_valid_ones() {
        let e = parse_config("worker = 4\n", "otwrap.toml", "a", "a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key `worker`"), "{e}");
        assert!(e.contains("workers"), "{e}");
        let e = parse_config(
            "[model.beam]\nbackendd = \"rayon\"\n",
            "otwrap.toml",
            "a",
            "beam",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("backendd"), "{e}");
        assert!(e.contains("backend"), "{e}");
    }

    #[test]
    fn wrong_types_and_values_are_named() {
        let e = parse_config("workers = \"four\"\n", "otwrap.toml", "a", "a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`workers`"), "{e}");
        let e = parse_config("backend = \"rayonn\"\n", "otwrap.toml", "a", "a")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown backend `rayonn`"), "{e}");
        let e = from_vars(|k| (k == "OTWRAP_WORKERS").then(|| "many".to_string()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("OTWRAP_WORKERS"), "{e}");
    }

    #[test]
    fn a_section_for_no_model_of_this_program_is_a_warning() {
        let text = "workers = 3\n[model.nope]\nworkers = 9\n[model.beam]\nretries = 1\n\
                    [model.\"app::wall\"]\nretries = 4\n";
        let models = ["app::beam", "app::wall"];
        let (o, warnings) =
            parse_config_for(text, "otwrap.toml", "app::beam", "beam", &models).expect("valid");
        assert_eq!((o.workers, o.retries), (Some(3), Some(1)));
        assert_eq!(
            warnings,
            vec![
                "otwrap.toml: [model.nope] matches no model of this program, so its options are not used; \
                 this program's models are: beam (app::beam), wall (app::wall). \
                 A section for another program sharing this file can stay"
                    .to_string()
            ]
        );
        // A near miss gets a hint.
        let (_, warnings) =
            parse_config_for("[model.bema]\n", "f.toml", "app::beam", "beam", &models)
                .expect("valid");
        assert!(
            warnings[0].contains("(did you mean [model.beam]?)"),
            "{warnings:?}"
        );
    }

    #[test]
    fn zero_workers_is_refused() {
        let e = Options {
            workers: Some(0),
            ..Options::default()
        }
        .resolve()
        .unwrap_err();
        assert!(e.to_string().contains("at least 1"));
    }
}
