//! The job script of one submission: every typed option as an `#SBATCH`
//! line, the user's raw directives and setup lines, then the worker binary
//! started in array-task mode with `exec`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::SlurmOptions;
use crate::worker::task;

/// What a job script is made from.
#[derive(Debug, Clone)]
pub(crate) struct ScriptSpec<'a> {
    pub(crate) options: &'a SlurmOptions,
    /// The job name (the option, or the model's name).
    pub(crate) job_name: &'a str,
    /// Array tasks in this submission (`--array=0-(tasks-1)`).
    pub(crate) tasks: u32,
    /// The absolute log directory.
    pub(crate) log_dir: &'a Path,
    /// The absolute run directory.
    pub(crate) run_dir: &'a Path,
    pub(crate) submission: u32,
    pub(crate) model_id: &'a str,
    /// The absolute worker executable.
    pub(crate) exe: &'a Path,
    /// The per-point timeout, enforced by the task.
    pub(crate) timeout: Option<std::time::Duration>,
}

/// The `.out` and `.err` files of array task `task` of job `job_id`, as the
/// script's `%A_%a` patterns name them.
pub(crate) fn task_logs(log_dir: &Path, job_id: &str, task: u32) -> (PathBuf, PathBuf) {
    (
        log_dir.join(format!("{job_id}_{task}.out")),
        log_dir.join(format!("{job_id}_{task}.err")),
    )
}

pub(crate) use crate::core::paths::shell_quote;

/// An `#SBATCH --name=value` line. sbatch reads these lines itself (not a
/// shell): a value with spaces goes in double quotes, and a value it could
/// not read back (a quote of either kind, a backslash, a line break) is
/// refused: sbatch's parser takes `'` as an opening quote too.
fn directive(out: &mut String, name: &str, value: &str) -> Result<(), String> {
    if value.contains(['"', '\'', '\\', '\n', '\r']) {
        return Err(format!(
            "the value of --{name} ({value:?}) cannot be written in an #SBATCH line: \
             it must not contain a double quote, a single quote, a backslash or a line break"
        ));
    }
    if value.contains(char::is_whitespace) || value.is_empty() {
        let _ = writeln!(out, "#SBATCH --{name}=\"{value}\"");
    } else {
        let _ = writeln!(out, "#SBATCH --{name}={value}");
    }
    Ok(())
}

fn path_text<'p>(path: &'p Path, what: &str) -> Result<&'p str, String> {
    path.to_str()
        .ok_or_else(|| format!("the {what} {} is not valid UTF-8", path.display()))
}

/// The job script's text.
pub(crate) fn render(spec: &ScriptSpec<'_>) -> Result<String, String> {
    let o = spec.options;
    let mut s = String::from("#!/bin/sh\n");
    directive(&mut s, "job-name", spec.job_name)?;
    let mut array = format!("0-{}", spec.tasks.saturating_sub(1));
    if let Some(n) = o.array_parallelism {
        let _ = write!(array, "%{n}");
    }
    directive(&mut s, "array", &array)?;
    // `%` starts a replacement symbol in sbatch file names: `%%` is a `%`.
    let log_dir = path_text(spec.log_dir, "log directory")?.replace('%', "%%");
    directive(&mut s, "output", &format!("{log_dir}/%A_%a.out"))?;
    directive(&mut s, "error", &format!("{log_dir}/%A_%a.err"))?;
    let typed: [(&str, Option<String>); 8] = [
        ("partition", o.partition.clone()),
        ("account", o.account.clone()),
        ("qos", o.qos.clone()),
        ("time", o.time.clone()),
        ("cpus-per-task", o.cpus_per_task.map(|n| n.to_string())),
        ("mem", o.mem.clone()),
        ("wckey", o.wckey.clone()),
        ("constraint", o.constraint.clone()),
    ];
    for (name, value) in typed {
        if let Some(value) = value {
            directive(&mut s, name, &value)?;
        }
    }
    for extra in o.sbatch.iter().flatten() {
        if extra.contains(['\n', '\r']) {
            return Err(format!(
                "the sbatch directive {extra:?} must be on one line"
            ));
        }
        let _ = writeln!(s, "#SBATCH {extra}");
    }
    let run_dir = path_text(spec.run_dir, "run directory")?;
    let exe = path_text(spec.exe, "worker executable")?;
    let _ = writeln!(
        s,
        "\n# otwrap: array tasks of model {} (submission {}); run directory {}",
        spec.model_id.replace('\n', " "),
        spec.submission,
        run_dir.replace('\n', " ")
    );
    if let Some(setup) = &o.setup {
        s.push('\n');
        for line in setup {
            s.push_str(line);
            s.push('\n');
        }
    }
    s.push('\n');
    let timeout = spec.timeout.map(|t| t.as_secs_f64().to_string());
    let vars = [
        (
            crate::worker::protocol::WORKER_ENV,
            Some(crate::worker::protocol::task_env_value()),
        ),
        (task::RUN_ENV, Some(run_dir)),
        (task::SUBMISSION_ENV, Some(&spec.submission.to_string())),
        (task::MODEL_ENV, Some(spec.model_id)),
        (task::TIMEOUT_ENV, timeout.as_deref()),
    ];
    for (var, value) in vars {
        let Some(value) = value else { continue };
        let _ = writeln!(s, "{var}={}", shell_quote(value));
        let _ = writeln!(s, "export {var}");
    }
    let _ = writeln!(s, "exec {}", shell_quote(exe));
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawValue;

    fn options() -> SlurmOptions {
        let mut o = SlurmOptions::default();
        for (k, v) in [
            ("partition", RawValue::from("debug")),
            ("account", "proj".into()),
            ("qos", "normal".into()),
            ("time", RawValue::Int(5)),
            ("cpus_per_task", RawValue::Int(2)),
            ("mem", "2G".into()),
            ("wckey", "uq".into()),
            ("constraint", "haswell&ib".into()),
            ("array_parallelism", RawValue::Int(4)),
            (
                "setup",
                RawValue::List(vec!["module load ot".into(), "export A=1".into()]),
            ),
            (
                "sbatch",
                RawValue::List(vec!["--exclusive".into(), "--comment=x y".into()]),
            ),
        ] {
            o.set(k, v).expect(k);
        }
        o
    }

    #[test]
    fn every_option_becomes_a_directive_and_paths_are_quoted() {
        let o = options();
        let spec = ScriptSpec {
            options: &o,
            job_name: "beam",
            tasks: 10,
            log_dir: Path::new("/shared/my logs"),
            run_dir: Path::new("/shared/it's/run"),
            submission: 3,
            model_id: "crate::beam",
            exe: Path::new("/shared/bin/my prog"),
            timeout: Some(std::time::Duration::from_millis(1500)),
        };
        let text = render(&spec).expect("render");
        let handshake = format!(
            "OTWRAP_WORKER=otwrap-task:{}:",
            crate::worker::protocol::PROTOCOL_VERSION
        );
        for line in [
            "#!/bin/sh\n",
            "#SBATCH --job-name=beam\n",
            "#SBATCH --array=0-9%4\n",
            "#SBATCH --output=\"/shared/my logs/%A_%a.out\"\n",
            "#SBATCH --error=\"/shared/my logs/%A_%a.err\"\n",
            "#SBATCH --partition=debug\n",
            "#SBATCH --account=proj\n",
            "#SBATCH --qos=normal\n",
            "#SBATCH --time=5\n",
            "#SBATCH --cpus-per-task=2\n",
            "#SBATCH --mem=2G\n",
            "#SBATCH --wckey=uq\n",
            "#SBATCH --constraint=haswell&ib\n",
            "#SBATCH --exclusive\n",
            "#SBATCH --comment=x y\n",
            "module load ot\nexport A=1\n",
            handshake.as_str(),
            "\nexport OTWRAP_WORKER\n",
            "OTWRAP_TASK_RUN='/shared/it'\\''s/run'\n",
            "OTWRAP_TASK_SUBMISSION=3\n",
            "OTWRAP_TASK_MODEL=crate::beam\n",
            "OTWRAP_TASK_TIMEOUT=1.5\n",
            "exec '/shared/bin/my prog'\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
        // Directives come before the first command.
        let first_command = text.find("\nmodule").expect("setup");
        assert!(text.rfind("#SBATCH").expect("directives") < first_command);
    }

    #[test]
    fn unwritable_values_are_refused() {
        let o = SlurmOptions::default();
        let spec = ScriptSpec {
            options: &o,
            job_name: "beam",
            tasks: 1,
            log_dir: Path::new("/tmp/a\"b"),
            run_dir: Path::new("/tmp/run"),
            submission: 0,
            model_id: "m",
            exe: Path::new("/bin/true"),
            timeout: None,
        };
        let e = render(&spec).unwrap_err();
        assert!(e.contains("double quote"), "{e}");
        for job_name in ["job'x", "a\\b"] {
            let e = render(&ScriptSpec {
                job_name,
                ..spec.clone()
            })
            .unwrap_err();
            assert!(e.contains("--job-name"), "{e}");
        }
        let text = render(&ScriptSpec {
            log_dir: Path::new("/tmp/100%/logs"),
            ..spec
        })
        .expect("render");
        assert!(
            text.contains("#SBATCH --output=/tmp/100%%/logs/%A_%a.out\n"),
            "{text}"
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(shell_quote(""), "''");
    }
}
