//! A typo in the environment is never silent: this worker-capable test
//! binary re-runs itself (`OTWRAP_TEST_ENV_CHILD`) as a driver or as a worker
//! with wrong `OTWRAP_*` variables or a stray `[model.NAME]` section, and
//! checks what the child prints on stdout and stderr and how it exits.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::prelude::*;

/// What a worker writes first (`worker::protocol::MAGIC`).
const MAGIC: &[u8] = b"OTWRAPW\x01";
/// A well-formed driver handshake (`worker::protocol::worker_env_value`).
/// A driver's handshake value in this version's shape.
fn handshake() -> String {
    format!(
        "otwrap-worker:{}:0123456789abcdef0123456789abcdef",
        otwrap_runtime::worker::protocol::PROTOCOL_VERSION
    )
}
/// The child's mode: `map` (two batches of `double`) or `nested`.
const CHILD_ENV: &str = "OTWRAP_TEST_ENV_CHILD";

#[parallelize(backend = "rayon", workers = 2)]
fn double(x: f64) -> f64 {
    2.0 * x
}

/// Runs a batch of `double` inside each of its points: on the processes
/// backend, that batch runs in a worker process.
#[parallelize(backend = "processes", workers = 2)]
fn nested(x: f64) -> Result<f64, String> {
    let batch = double::map(&[x]).map_err(|e| e.to_string())?;
    let values = batch.values().map_err(|e| e.to_string())?;
    Ok(values[0])
}

fn child(mode: &str) -> i32 {
    let result = match mode {
        // Two batches: a warning is printed once per process, not per batch.
        "map" => double::map(&[1.0, 2.0]).and_then(|_| double::map(&[1.0, 2.0])),
        "nested" => nested::map(&[1.0, 2.0]),
        other => {
            eprintln!("unknown child mode {other:?}");
            return 2;
        }
    };
    match result.map(|b| b.values()) {
        Ok(Ok(values)) => {
            println!("values: {values:?}");
            0
        }
        Ok(Err(e)) => {
            eprintln!("a point failed: {e}");
            4
        }
        Err(e) => {
            eprintln!("the batch was refused: {e}");
            3
        }
    }
}

/// Runs this binary with `vars` (and no other `OTWRAP_*` variable) in `dir`,
/// its stdin closed.
fn run_child(mode: Option<&str>, vars: &[(&str, &str)], dir: &Path) -> Result<Output, Failed> {
    let mut command = Command::new(std::env::current_exe()?);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTWRAP_") {
            command.env_remove(name);
        }
    }
    if let Some(mode) = mode {
        command.env(CHILD_ENV, mode);
    }
    command
        .envs(vars.iter().copied())
        .current_dir(dir)
        .stdin(Stdio::null());
    Ok(command.output()?)
}

fn check(cond: bool, what: &str, output: &Output) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(format!(
            "{what}\nstatus: {}\nstdout: {:?}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into())
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const VALUES: &str = "values: [2.0, 4.0]\n";

/// `OTWRAP_WORKER=4` (meant for `OTWRAP_WORKERS`) and other values no driver
/// sets are refused: a hint on stderr, exit 78, and not one protocol byte
/// on stdout. A driver's handshake starts the worker (the control).
fn worker_4_is_refused_without_protocol_bytes() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let served = run_child(None, &[("OTWRAP_WORKER", &handshake())], dir.path())?;
    check(
        served.stdout.starts_with(MAGIC) && served.status.success(),
        "a driver's handshake must start worker mode (greeting on stdout, exit 0 at the end of stdin)",
        &served,
    )?;
    for value in ["4", "1", "task", "yes"] {
        let output = run_child(Some("map"), &[("OTWRAP_WORKER", value)], dir.path())?;
        check(
            output.stdout.is_empty(),
            &format!("OTWRAP_WORKER={value}: nothing may be written on stdout"),
            &output,
        )?;
        check(
            output.status.code() == Some(78),
            &format!("OTWRAP_WORKER={value}: exit status 78 expected"),
            &output,
        )?;
        let err = stderr(&output);
        check(
            err.starts_with(&format!("otwrap: OTWRAP_WORKER={value:?} is refused: this environment variable is internal to otwrap"))
                && err.contains("did you mean `OTWRAP_WORKERS` (the number of workers)?"),
            &format!("OTWRAP_WORKER={value}: the hint is missing"),
            &output,
        )?;
    }
    // A driver of another protocol version: named as such, still no bytes.
    let other = handshake().replace(
        &format!(":{}:", otwrap_runtime::worker::protocol::PROTOCOL_VERSION),
        ":999:",
    );
    let output = run_child(Some("map"), &[("OTWRAP_WORKER", &other)], dir.path())?;
    check(
        output.stdout.is_empty()
            && output.status.code() == Some(78)
            && stderr(&output).contains(&format!(
                "a driver speaking worker protocol 999, but it speaks protocol {}",
                otwrap_runtime::worker::protocol::PROTOCOL_VERSION
            )),
        "another protocol's handshake must be refused by name",
        &output,
    )?;
    Ok(())
}

/// A batch run with `var=value` stops with exit status 3 (a configuration
/// error) and `message` on stderr; the child's output, for more checks.
fn refused(var: &str, value: &str, message: &str, what: &str) -> Result<Output, Failed> {
    let dir = tempfile::tempdir()?;
    let output = run_child(Some("map"), &[(var, value)], dir.path())?;
    check(
        output.status.code() == Some(3) && stderr(&output).contains(message),
        what,
        &output,
    )?;
    Ok(output)
}

/// `OTWRAP_BACKNED=rayon` stops the batch with the name it is close to.
fn a_typo_of_a_variable_is_refused() -> Result<(), Failed> {
    let what = "OTWRAP_BACKNED must be refused with did-you-mean OTWRAP_BACKEND";
    let output = refused(
        "OTWRAP_BACKNED",
        "rayon",
        "unknown environment variable OTWRAP_BACKNED: did you mean `OTWRAP_BACKEND`?",
        what,
    )?;
    check(output.stdout.is_empty(), what, &output)?;
    refused(
        "otwrap_workers",
        "2",
        "did you mean `OTWRAP_WORKERS`?",
        "otwrap_workers (lower case) must be refused with did-you-mean OTWRAP_WORKERS",
    )
    .map(drop)
}

/// An unknown key under `OTWRAP_SSH_` is refused, even on another backend.
fn an_unknown_ssh_key_is_refused() -> Result<(), Failed> {
    refused(
        "OTWRAP_SSH_HOTS",
        "4/alice@node1",
        "unknown environment variable OTWRAP_SSH_HOTS: did you mean `OTWRAP_SSH_HOSTS`?",
        "OTWRAP_SSH_HOTS must be refused with did-you-mean OTWRAP_SSH_HOSTS",
    )?;
    refused(
        "OTWRAP_SLURM_NODES",
        "2",
        "unknown environment variable OTWRAP_SLURM_NODES: the slurm backend reads only OTWRAP_SLURM_PARTITION",
        "OTWRAP_SLURM_NODES must be refused with the slurm backend's variables",
    )
    .map(drop)
}

/// An unrelated `OTWRAP_FOO_BAR_BAZ` is a warning, once per process, and the
/// batches run; test-suite variables are not even that.
fn an_unrelated_name_is_only_warned() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let output = run_child(
        Some("map"),
        &[
            ("OTWRAP_FOO_BAR_BAZ", "1"),
            ("OTWRAP_TEST_SOMETHING", "1"),
            ("OTWRAP_BENCH_SOMETHING", "1"),
        ],
        dir.path(),
    )?;
    let err = stderr(&output);
    check(
        output.status.success() && output.stdout == VALUES.as_bytes(),
        "the batches must run",
        &output,
    )?;
    check(
        err.matches("otwrap: warning: the environment variable OTWRAP_FOO_BAR_BAZ is not one otwrap reads, so it is ignored")
            .count()
            == 1
            && err.lines().count() == 1,
        "exactly one warning line expected",
        &output,
    )
}

/// Workers ignore unknown names (the driver warned): a batch run inside a
/// `processes` worker does not warn again.
fn workers_do_not_warn_again() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let output = run_child(Some("nested"), &[("OTWRAP_FOO_BAR_BAZ", "1")], dir.path())?;
    check(
        output.status.success() && output.stdout == VALUES.as_bytes(),
        "the nested batches must run",
        &output,
    )?;
    check(
        stderr(&output).matches("OTWRAP_FOO_BAR_BAZ").count() == 1,
        "the driver warns once, its workers not at all",
        &output,
    )
}

/// A `[model.nope]` section is a warning naming this program's models; the
/// section of a model of this program is applied without a word.
fn a_section_for_no_model_is_warned() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("otwrap.toml"),
        "[model.nope]\nworkers = 3\n\n[model.double]\nworkers = 1\n",
    )?;
    let output = run_child(Some("map"), &[], dir.path())?;
    let err = stderr(&output);
    check(
        output.status.success() && output.stdout == VALUES.as_bytes(),
        "the batches must run",
        &output,
    )?;
    check(
        err == "otwrap: warning: otwrap.toml: [model.nope] matches no model of this program, so its options are not used; \
                this program's models are: double (environment::double), nested (environment::nested). \
                A section for another program sharing this file can stay\n",
        "exactly one warning naming the models expected",
        &output,
    )
}

#[otwrap::main]
fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        std::process::exit(child(&mode));
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "environment_worker_4_is_refused_without_protocol_bytes",
            worker_4_is_refused_without_protocol_bytes,
        ),
        Trial::test(
            "environment_a_typo_of_a_variable_is_refused",
            a_typo_of_a_variable_is_refused,
        ),
        Trial::test(
            "environment_an_unknown_ssh_key_is_refused",
            an_unknown_ssh_key_is_refused,
        ),
        Trial::test(
            "environment_an_unrelated_name_is_only_warned",
            an_unrelated_name_is_only_warned,
        ),
        Trial::test(
            "environment_workers_do_not_warn_again",
            workers_do_not_warn_again,
        ),
        Trial::test(
            "environment_a_section_for_no_model_is_warned",
            a_section_for_no_model_is_warned,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
