//! A real external code for process-tree tests: a shell script that starts
//! a long `sleep` of its own (a grandchild of the evaluation), identified by
//! a unique argument, and the `/proc` checks that none of it outlives what
//! should have ended it. Shared by tests/trees.rs, tests/ssh.rs and
//! tests/slurm.rs (each includes it with `#[path]`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use libtest_mimic::Failed;
use otwrap::prelude::*;

/// Point kinds.
pub const FAST: u32 = 0;
pub const SLOW: u32 = 1;

/// The solver: the script runs a `sleep` child and waits for it (slow), or
/// ends at once (fast).
pub const SOLVER: &str = "#!/bin/sh\nif [ \"$2\" = fast ]; then exit 0; fi\nsleep \"$1\" &\nwait\n";

#[parallelize(backend = "processes", workers = 2, progress = "never")]
pub fn solver(point: (u32, String, String)) -> Result<u32, String> {
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
pub fn unique_tag(case: u32) -> String {
    format!("{}.{:06}", 4000 + case, std::process::id() % 1_000_000)
}

pub fn write_script(dir: &Path) -> Result<PathBuf, Failed> {
    let path = dir.join("solver.sh");
    std::fs::write(&path, SOLVER)?;
    Ok(path)
}

/// The live (not zombie) processes whose command line holds `tag` (with
/// `sleep_only`, the solvers' `sleep` children only).
pub fn processes_with(tag: &str, sleep_only: bool) -> Vec<u32> {
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

pub fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Waits until `count` processes carry `tag` (the solvers run).
pub fn wait_for_solvers(tag: &str, count: usize, driver: &mut Child) -> Result<(), Failed> {
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
pub fn none_left(tag: &str, what: &str) -> Result<(), Failed> {
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

/// Gives a driver started by a test the signal dispositions a user's
/// terminal gives it: a test run from a background job inherits SIGINT
/// ignored, and otwrap (like Python) leaves an ignored SIGINT ignored.
pub fn with_default_signals(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) only, between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        })
    }
}

/// Point 0 (slow) timed out, point 1 (fast) succeeded.
pub fn check_timed_out_and_fast(batch: &Batch<u32>) -> Result<(), Failed> {
    let results = batch.results();
    match &results[0] {
        Err(e) if matches!(e.failure(), PointFailure::Timeout { .. }) => {}
        other => return Err(format!("point 0 should time out: {other:?}").into()),
    }
    if results[1].as_ref().ok() != Some(&FAST) {
        return Err(format!("point 1 should succeed: {:?}", results[1]).into());
    }
    Ok(())
}
