//! No process started by an evaluation outlives it. A real external code:
//! a shell script that starts a long `sleep` of its own (a grandchild of
//! the evaluation), identified by a unique argument. After a timeout, after
//! the driver is SIGKILLed, and after SIGINT or SIGTERM to the driver's
//! whole process group, `/proc` must hold none of them within 2 s; the
//! interrupted batch returns its finished results and a later batch refuses
//! to start.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::prelude::*;

/// Turns this binary into a driver running one batch on this backend.
const DRIVER: &str = "OTWRAP_TEST_TREES_DRIVER";
const TAG: &str = "OTWRAP_TEST_TREES_TAG";
const SCRIPT: &str = "OTWRAP_TEST_TREES_SCRIPT";

#[path = "support/solver_tree.rs"]
mod solver_tree;
use solver_tree::{
    check_timed_out_and_fast, none_left, solver, unique_tag, wait_for_solvers,
    with_default_signals, write_script, FAST, SLOW,
};

fn spawn_driver(backend: &str, tag: &str, script: &Path, own_group: bool) -> Result<Child, Failed> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env(DRIVER, backend)
        .env(TAG, tag)
        .env(SCRIPT, script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if own_group {
        command.process_group(0);
    }
    with_default_signals(&mut command);
    Ok(command.spawn()?)
}

/// The driver mode: two fast points, then four slow ones on two workers;
/// prints the outcome, then tries a second batch.
fn driver(backend: &str) -> ! {
    let tag = std::env::var(TAG).unwrap_or_default();
    let script = std::env::var(SCRIPT).unwrap_or_default();
    let mut points = vec![(FAST, script.clone(), tag.clone()); 2];
    points.extend(vec![(SLOW, script, tag); 4]);
    let backend: Backend = match backend.parse() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bad backend: {e}");
            std::process::exit(2)
        }
    };
    let runner = || solver::runner().backend(backend).workers(2);
    match runner().map(&points) {
        Ok(batch) => {
            let s = batch.summary();
            let reasons: Vec<String> = batch
                .results()
                .iter()
                .filter_map(|r| r.as_ref().err())
                .map(|e| e.to_string().replace('\n', " "))
                .collect();
            println!(
                "RESULT succeeded={} failed={} not_run={}",
                s.total - s.failed,
                s.failed - s.not_run,
                s.not_run
            );
            println!("REASONS {}", reasons.join(" | "));
        }
        Err(e) => println!("RESULT error {e}"),
    }
    match runner().map(&points[..1]) {
        Ok(_) => println!("SECOND ran"),
        Err(e) => println!("SECOND {e}"),
    }
    std::process::exit(0)
}

fn processes_timeout_kills_the_solver_tree() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let script = write_script(dir.path())?;
    let tag = unique_tag(1);
    let points = vec![
        (SLOW, script.display().to_string(), tag.clone()),
        (FAST, script.display().to_string(), tag.clone()),
    ];
    let batch = solver::runner()
        .backend(Backend::Processes)
        .workers(2)
        .timeout(Duration::from_secs(2))
        .map(&points)?;
    check_timed_out_and_fast(&batch)?;
    none_left(&tag, "the timed-out point")
}

fn killed_driver(backend: &'static str, case: u32, solvers: usize) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let script = write_script(dir.path())?;
    let tag = unique_tag(case);
    let mut child = spawn_driver(backend, &tag, &script, false)?;
    wait_for_solvers(&tag, solvers, &mut child)?;
    child.kill()?;
    child.wait()?;
    none_left(&tag, &format!("the SIGKILLed driver ({backend})"))
}

fn signalled_group(backend: &'static str, signal: libc::c_int, case: u32) -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let script = write_script(dir.path())?;
    let tag = unique_tag(case);
    let mut child = spawn_driver(backend, &tag, &script, true)?;
    // Both workers busy with slow points: the fast ones are done.
    wait_for_solvers(&tag, 2, &mut child)?;
    let group = i32::try_from(child.id())?;
    // SAFETY: signals the driver's own process group.
    unsafe {
        libc::killpg(group, signal);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("the interrupted driver did not end within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!(
        "status {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    if !output.status.success() {
        return Err(format!("the driver did not return normally: {context}").into());
    }
    // Two slow points were running and two never started: those four are
    // not run, nothing failed. (`processes` takes points in order, so its
    // fast points are done; rayon's work stealing may not have reached one.)
    let count = |key: &str| -> Option<usize> {
        let line = stdout.lines().find(|l| l.starts_with("RESULT "))?;
        line.split(' ')
            .find_map(|f| f.strip_prefix(key))?
            .parse()
            .ok()
    };
    let (succeeded, failed, not_run) = (count("succeeded="), count("failed="), count("not_run="));
    let expected = match (succeeded, not_run) {
        (Some(s), Some(n)) if backend == "processes" => s == 2 && n == 4,
        (Some(s), Some(n)) => n >= 4 && s + n == 6,
        _ => false,
    };
    if failed != Some(0) || !expected {
        return Err(format!(
            "the batch should return its finished points, the others not run: {context}"
        )
        .into());
    }
    let name = if signal == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    };
    if !stdout.contains("interrupted by") || !stdout.contains(name) {
        return Err(
            format!("the points should say they were interrupted by {name}: {context}").into(),
        );
    }
    if !stdout.contains("SECOND otwrap: a batch of this process was interrupted") {
        return Err(format!("a later batch should refuse to start: {context}").into());
    }
    none_left(&tag, &format!("{name} to the driver's group ({backend})"))
}

#[otwrap::main]
fn main() {
    if let Ok(backend) = std::env::var(DRIVER) {
        driver(&backend);
    }
    let mut args = Arguments::from_args();
    // Tags are per case; running one at a time keeps the 2-CPU machines sane.
    args.test_threads = Some(1);
    let tests = vec![
        Trial::test(
            "trees_processes_timeout_kills_the_solver_tree",
            processes_timeout_kills_the_solver_tree,
        ),
        Trial::test("trees_killed_driver_serial", || {
            killed_driver("serial", 2, 1)
        }),
        Trial::test("trees_killed_driver_rayon", || killed_driver("rayon", 3, 2)),
        Trial::test("trees_killed_driver_processes", || {
            killed_driver("processes", 4, 2)
        }),
        Trial::test("trees_sigint_to_the_group_rayon", || {
            signalled_group("rayon", libc::SIGINT, 5)
        }),
        Trial::test("trees_sigterm_to_the_group_rayon", || {
            signalled_group("rayon", libc::SIGTERM, 6)
        }),
        Trial::test("trees_sigint_to_the_group_processes", || {
            signalled_group("processes", libc::SIGINT, 7)
        }),
        Trial::test("trees_sigterm_to_the_group_processes", || {
            signalled_group("processes", libc::SIGTERM, 8)
        }),
    ];
    libtest_mimic::run(&args, tests).exit();
}
