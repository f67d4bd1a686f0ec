//! No process started by an evaluation outlives it. A real external code:
//! a shell script that starts a long `sleep` of its own (a grandchild of
//! the evaluation), identified by a unique argument. After a timeout, after
//! the driver is SIGKILLed, and after SIGINT or SIGTERM to the driver's
//! whole process group, `/proc` must hold none of them within 2 s; the
//! interrupted batch returns its finished results and a later batch refuses
//! to start.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::prelude::*;

/// Point kinds.
const FAST: u32 = 0;
const SLOW: u32 = 1;

/// Turns this binary into a driver running one batch on this backend.
const DRIVER: &str = "OTWRAP_TEST_TREES_DRIVER";
const TAG: &str = "OTWRAP_TEST_TREES_TAG";
const SCRIPT: &str = "OTWRAP_TEST_TREES_SCRIPT";

/// The solver: the script runs a `sleep` child and waits for it (slow), or
/// ends at once (fast).
const SOLVER: &str = "#!/bin/sh\nif [ \"$2\" = fast ]; then exit 0; fi\nsleep \"$1\" &\nwait\n";

#[parallelize(backend = "processes", workers = 2, progress = "never")]
fn solver(point: (u32, String, String)) -> Result<u32, String> {
    let (kind, script, tag) = point;
    let speed = if kind == FAST { "fast" } else { "slow" };
    otwrap::coupling::Program::new("sh")
        .arg(script)
        .arg(tag)
        .arg(speed)
        .stdout(otwrap::coupling::Capture::Discard)
        .stderr(otwrap::coupling::Capture::Discard)
        .run()
        .map_err(|e| e.to_string())?;
    Ok(kind)
}

/// A `sleep` duration no other process uses: 4000 s and a unique fraction.
fn unique_tag(case: u32) -> String {
    format!("{}.{:06}", 4000 + case, std::process::id() % 1_000_000)
}

fn write_script(dir: &Path) -> Result<PathBuf, Failed> {
    let path = dir.join("solver.sh");
    std::fs::write(&path, SOLVER)?;
    Ok(path)
}

/// The live (not zombie) processes whose command line holds `tag` (with
/// `sleep_only`, the solvers' `sleep` children only).
fn processes_with(tag: &str, sleep_only: bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let hit = cmdline.split(|&b| b == 0).any(|arg| arg == tag.as_bytes())
                && (!sleep_only || cmdline.starts_with(b"sleep\0"));
            hit && !is_zombie(*pid)
        })
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Waits until `count` processes carry `tag` (the solvers run).
fn wait_for_solvers(tag: &str, count: usize, driver: &mut Child) -> Result<(), Failed> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_with(tag, true).len() < count {
        if Instant::now() > deadline {
            let _ = driver.kill();
            return Err(format!("{count} solvers with tag {tag} never started").into());
        }
        if let Some(status) = driver.try_wait()? {
            return Err(format!("the driver ended early ({status})").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Passes when no process carries `tag` within 2 s (generous for a kill).
fn none_left(tag: &str, what: &str) -> Result<(), Failed> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let left = processes_with(tag, false);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            for pid in &left {
                // Do not leave them behind for the next test either.
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            }
            return Err(format!("processes {left:?} of the evaluation outlived {what}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

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
    // SAFETY: signal(2) only, between fork and exec. A driver started from
    // a background job inherits SIGINT ignored; a user's terminal does not.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
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
    let results = batch.results();
    match &results[0] {
        Err(e) if matches!(e.failure(), PointFailure::Timeout { .. }) => {}
        other => return Err(format!("point 0 should time out: {other:?}").into()),
    }
    if results[1].as_ref().ok() != Some(&FAST) {
        return Err(format!("point 1 should succeed: {:?}", results[1]).into());
    }
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
