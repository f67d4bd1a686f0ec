//! The `slurm` backend against a real single-node SLURM (started by
//! `scripts/services/slurm.sh start`; each test is skipped with a SKIPPED
//! line when it is not up, and fails when CI=true). The test binary is the
//! worker executable of the array tasks (`#[otwrap::main]`), and also the
//! driver that the resume test kills and starts again.

#[path = "support/services.rs"]
mod services;
#[path = "support/solver_tree.rs"]
mod solver_tree;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::prelude::*;

/// The environment variable that turns this binary into a child driver.
const CHILD_ENV: &str = "OTWRAP_TEST_SLURM_CHILD";
/// The run directory of the child driver.
const CHILD_RUN_DIR_ENV: &str = "OTWRAP_TEST_SLURM_RUN_DIR";
/// The evaluation log of the child driver's model.
const CHILD_LOG_ENV: &str = "OTWRAP_TEST_SLURM_LOG";

// ---------------------------------------------------------------------------
// Models. Every one is declared on rayon; tests move them to SLURM at run
// time, as users do with otwrap.toml or the Runner.

#[parallelize(backend = "rayon", progress = "never")]
fn trivial(x: f64) -> f64 {
    (x * 1.5).cos() * x.sqrt() + x
}

/// Appends the point to `log` when it finishes, so tests count evaluations.
fn note(log: &str, k: u32) {
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(log) {
        let _ = f.write_all(format!("{k}\n").as_bytes());
    }
}

/// Point 5 sleeps far past any time limit on its first run only (a marker
/// file next to `log` remembers that it did).
#[parallelize(backend = "rayon", progress = "never")]
fn slow_once(k: u32, log: String) -> u32 {
    if k == 5 {
        let marker = format!("{log}.slept");
        if !Path::new(&marker).exists() {
            let _ = fs::write(&marker, b"");
            std::thread::sleep(Duration::from_secs(600));
        }
    }
    note(&log, k);
    k * 10
}

/// Takes a while per point, so that a test can act mid-run.
#[parallelize(backend = "rayon", progress = "never")]
fn paced(k: u32, log: String, millis: u64) -> u32 {
    std::thread::sleep(Duration::from_millis(millis));
    note(&log, k);
    k + 1000
}

/// Point 7 is refused by the model.
#[parallelize(backend = "rayon", progress = "never")]
fn picky(k: u32, log: String) -> Result<u32, String> {
    note(&log, k);
    if k == 7 {
        return Err(format!("point {k} is refused by the model"));
    }
    Ok(k * 3)
}

/// Point 2 hangs.
#[parallelize(backend = "rayon", progress = "never")]
fn hangs_on_two(k: u32) -> u32 {
    if k == 2 {
        std::thread::sleep(Duration::from_secs(120));
    }
    k
}

/// Point 3 kills its array task.
#[parallelize(backend = "rayon", progress = "never")]
fn task_killer(k: u32) -> u32 {
    if k == 3 {
        eprintln!("task_killer: point 3 ends its process now");
        std::process::exit(3);
    }
    k
}

// ---------------------------------------------------------------------------
// Helpers.

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

fn scratch(name: &str) -> Result<tempfile::TempDir, Failed> {
    Ok(tempfile::Builder::new()
        .prefix(&format!("otwrap-slurm-{name}-"))
        .tempdir()?)
}

/// The single run directory made under `base`.
fn run_dir_in(base: &Path) -> Result<PathBuf, Failed> {
    let dirs: Vec<PathBuf> = fs::read_dir(base)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        other => Err(format!(
            "expected one run directory in {}, found {other:?}",
            base.display()
        )
        .into()),
    }
}

/// The job ids of a run, in submission order.
fn job_ids(run: &Path) -> Vec<String> {
    fs::read_to_string(run.join("jobs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("job="))
                .map(str::to_string)
        })
        .collect()
}

/// `key=value` counts from the last line of a run's `driver.log`.
fn driver_calls(run: &Path) -> Result<Vec<(String, u32)>, Failed> {
    let text = fs::read_to_string(run.join("driver.log"))?;
    let last = text.lines().last().unwrap_or("");
    let calls = last
        .split_once("calls ")
        .map(|(_, c)| c)
        .ok_or_else(|| format!("no calls in driver.log line {last:?}"))?;
    Ok(calls
        .split_whitespace()
        .filter_map(|f| {
            let (k, v) = f.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect())
}

fn call_count(calls: &[(String, u32)], name: &str) -> u32 {
    calls
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or(0)
}

/// The points listed in an evaluation log.
fn evaluations(log: &Path) -> Vec<u32> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn slurm_command(program: &str, args: &[&str]) -> Result<String, Failed> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The state of array task `task` of `job` per squeue.
fn task_state(job: &str, task: u32) -> Result<String, Failed> {
    let text = slurm_command("squeue", &["-h", "-t", "all", "-j", job, "-o", "%i %T"])?;
    let id = format!("{job}_{task}");
    Ok(text
        .lines()
        .find_map(|l| {
            let (i, s) = l.split_once(' ')?;
            (i == id).then(|| s.trim().to_string())
        })
        .unwrap_or_default())
}

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<(), Failed> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Tests.

fn same_results_as_rayon() -> Result<(), Failed> {
    let Some(env) = services::slurm("slurm_same_results_as_rayon") else {
        return Ok(());
    };
    let base = scratch("rayon")?;
    let inputs: Vec<f64> = (0..500).map(|i| f64::from(i) * 0.37).collect();
    let expected = trivial::runner().map(&inputs)?.values()?;
    let batch = trivial::runner()
        .backend(Backend::Slurm)
        .set("run_dir", base.path().display().to_string())
        .map(&inputs)?;
    let got = batch.values()?;
    for i in 0..inputs.len() {
        check(got[i].to_bits() == expected[i].to_bits(), || {
            format!("point {i}: slurm {} rayon {}", got[i], expected[i])
        })?;
    }
    check(batch.summary().backend == "slurm", || {
        format!("{}", batch.summary())
    })?;
    let run = run_dir_in(base.path())?;
    // Files grow with array tasks, not points: ~3 tasks per declared CPU.
    let results = fs::read_dir(run.join("results"))?.count();
    check(results <= 3 * env.cpus && results > 1, || {
        format!("{results} result logs for 500 points on {} CPUs", env.cpus)
    })?;
    let calls = driver_calls(&run)?;
    check(call_count(&calls, "sbatch") == 1, || {
        format!("calls: {calls:?}")
    })?;
    check(call_count(&calls, "squeue") <= 30, || {
        format!("calls: {calls:?}")
    })?;
    // The same batch again: everything is answered from the run directory.
    let again = trivial::runner()
        .backend(Backend::Slurm)
        .set("run_dir", base.path().display().to_string())
        .map(&inputs)?;
    check(again.values()? == got, || "second run differs".into())?;
    let calls = driver_calls(&run)?;
    check(call_count(&calls, "sbatch") == 0, || {
        format!("second run calls: {calls:?}")
    })
}

fn options_reach_the_job() -> Result<(), Failed> {
    if services::slurm("slurm_options_reach_the_job").is_none() {
        return Ok(());
    }
    let base = scratch("options")?;
    let logs = base.path().join("task logs");
    let name = format!("otwrap-opts-{}", std::process::id());
    let inputs: Vec<f64> = (0..6).map(f64::from).collect();
    let batch = trivial::runner()
        .backend(Backend::Slurm)
        .set("run_dir", base.path().join("runs").display().to_string())
        .set("log_dir", logs.display().to_string())
        .set("wckey", "otwrap-wckey")
        .set("time", "7")
        .set("job_name", name.as_str())
        .set("points_per_task", 3u32)
        .set("array_parallelism", 1u32)
        .set("cpus_per_task", 2u32)
        .set("mem", "100M")
        .set(
            "sbatch",
            vec!["--comment=otwrap-extra-directive".to_string()],
        )
        .set(
            "setup",
            vec!["echo setup-ran-$SLURM_ARRAY_TASK_ID".to_string()],
        )
        .map(&inputs)?;
    check(batch.is_complete(), || format!("{}", batch.summary()))?;
    let run = run_dir_in(&base.path().join("runs"))?;
    let jobs = job_ids(&run);
    check(jobs.len() == 1, || format!("jobs: {jobs:?}"))?;
    let job = &jobs[0];
    let shown = slurm_command("scontrol", &["-o", "show", "job", job])?;
    for needle in [
        "WCKey=otwrap-wckey".to_string(),
        "TimeLimit=00:07:00".to_string(),
        format!("JobName={name}"),
        "Comment=otwrap-extra-directive".to_string(),
        "ArrayTaskThrottle=1".to_string(),
        "CPUs/Task=2".to_string(),
        "MinMemoryNode=100M".to_string(),
        format!("StdOut={}/{job}_1.out", logs.display()),
        format!("StdErr={}/{job}_1.err", logs.display()),
    ] {
        check(shown.contains(&needle), || {
            format!("no {needle:?} in:\n{shown}")
        })?;
    }
    let out = fs::read_to_string(logs.join(format!("{job}_1.out")))?;
    check(out.contains("setup-ran-1"), || {
        format!("task 1 output: {out:?}")
    })
}

fn time_limit_is_retried() -> Result<(), Failed> {
    if services::slurm("slurm_time_limit_is_retried").is_none() {
        return Ok(());
    }
    let base = scratch("timeout")?;
    let log = base.path().join("evals").display().to_string();
    let inputs: Vec<(u32, String)> = (0..8).map(|k| (k, log.clone())).collect();
    // Tasks [0-3] and [4-7]: point 5 outlives the second task's 1-minute
    // limit on its first run; 4 is recorded before, 6 and 7 never start.
    let batch = slow_once::runner()
        .backend(Backend::Slurm)
        .set("run_dir", base.path().join("runs").display().to_string())
        .set("partition", "short")
        .set("time", 1u32)
        .set("points_per_task", 4u32)
        .map(&inputs)?;
    let values = batch.values()?;
    check(values == (0..8).map(|k| k * 10).collect::<Vec<_>>(), || {
        format!("{values:?}")
    })?;
    let run = run_dir_in(&base.path().join("runs"))?;
    let jobs = job_ids(&run);
    check(jobs.len() == 2, || {
        format!("expected one resubmission, jobs: {jobs:?}")
    })?;
    let state = task_state(&jobs[0], 1)?;
    check(state == "TIMEOUT", || {
        format!("task 1 of the first job: {state:?}")
    })?;
    let mut evals = evaluations(Path::new(&log));
    evals.sort_unstable();
    check(evals == (0..8).collect::<Vec<_>>(), || {
        format!("each point should finish once: {evals:?}")
    })
}

fn cancelled_task_is_retried() -> Result<(), Failed> {
    if services::slurm("slurm_cancelled_task_is_retried").is_none() {
        return Ok(());
    }
    let base = scratch("cancel")?;
    let runs = base.path().join("runs");
    let log = base.path().join("evals").display().to_string();
    let inputs: Vec<(u32, String, u64)> = (0..16).map(|k| (k, log.clone(), 700)).collect();
    let batch = std::thread::scope(|scope| -> Result<_, Failed> {
        let driver = scope.spawn(|| {
            paced::runner()
                .backend(Backend::Slurm)
                .set("run_dir", runs.display().to_string())
                .set("points_per_task", 4u32)
                .map(&inputs)
        });
        // Cancel task 2 once it has recorded a point.
        let mut job = String::new();
        wait_for("a record of task 2", Duration::from_secs(60), || {
            let Ok(run) = run_dir_in(&runs) else {
                return false;
            };
            if let Some(id) = job_ids(&run).first() {
                job = id.clone();
            }
            !job.is_empty()
                && evaluations(Path::new(&log))
                    .iter()
                    .any(|k| (8..12).contains(k))
        })?;
        slurm_command("scancel", &[&format!("{job}_2")])?;
        driver
            .join()
            .map_err(|_| Failed::from("the driver thread panicked"))?
            .map_err(Failed::from)
    })?;
    let values = batch.values()?;
    check(
        values == (0..16).map(|k| k + 1000).collect::<Vec<_>>(),
        || format!("{values:?}"),
    )?;
    let run = run_dir_in(&runs)?;
    let jobs = job_ids(&run);
    check(jobs.len() == 2, || {
        format!("expected one resubmission, jobs: {jobs:?}")
    })?;
    let state = task_state(&jobs[0], 2)?;
    check(state == "CANCELLED", || format!("task 2: {state:?}"))?;
    // Points recorded before the cancellation are not run again.
    let evals = evaluations(Path::new(&log));
    check(evals.len() < 20, || format!("evaluations: {evals:?}"))
}

/// The child driver of `ctrl_c_cancels_the_jobs`: a long batch that the
/// test interrupts.
fn child_interrupted() -> i32 {
    let (Some(run_dir), Some(log)) = (
        std::env::var_os(CHILD_RUN_DIR_ENV),
        std::env::var(CHILD_LOG_ENV).ok(),
    ) else {
        eprintln!("child driver: missing environment");
        return 2;
    };
    let inputs: Vec<(u32, String, u64)> = (0..24).map(|k| (k, log.clone(), 1500)).collect();
    match paced::runner()
        .backend(Backend::Slurm)
        .set("run_dir", PathBuf::from(run_dir).display().to_string())
        .set("points_per_task", 3u32)
        .map(&inputs)
    {
        Ok(batch) => {
            let s = batch.summary();
            println!("not_run={} succeeded={}", s.not_run, s.succeeded());
            let interrupted = batch.results().iter().any(|r| {
                r.as_ref()
                    .err()
                    .is_some_and(|e| e.is_not_run() && e.to_string().contains("Ctrl-C"))
            });
            if s.not_run > 0 && interrupted {
                0
            } else {
                eprintln!("child driver: not interrupted: {s}");
                4
            }
        }
        Err(e) => {
            eprintln!("child driver: {e}");
            3
        }
    }
}

/// The child driver of `killed_driver_resumes`.
fn child_driver() -> i32 {
    let (Some(run_dir), Some(log)) = (
        std::env::var_os(CHILD_RUN_DIR_ENV),
        std::env::var(CHILD_LOG_ENV).ok(),
    ) else {
        eprintln!("child driver: missing environment");
        return 2;
    };
    let inputs: Vec<(u32, String, u64)> = (0..24).map(|k| (k, log.clone(), 400)).collect();
    match paced::runner()
        .backend(Backend::Slurm)
        .set("run_dir", PathBuf::from(run_dir).display().to_string())
        .set("points_per_task", 3u32)
        .map(&inputs)
    {
        Ok(batch) => match batch.values() {
            Ok(values) if values == (0..24).map(|k| k + 1000).collect::<Vec<_>>() => {
                println!("child driver: {}", batch.summary());
                0
            }
            other => {
                eprintln!("child driver: wrong results {other:?}");
                4
            }
        },
        Err(e) => {
            eprintln!("child driver: {e}");
            3
        }
    }
}

fn killed_driver_resumes() -> Result<(), Failed> {
    if services::slurm("slurm_killed_driver_resumes").is_none() {
        return Ok(());
    }
    let base = scratch("resume")?;
    let runs = base.path().join("runs");
    let log = base.path().join("evals");
    let child = || -> Result<Command, Failed> {
        let mut c = Command::new(std::env::current_exe()?);
        c.env(CHILD_ENV, "driver")
            .env(CHILD_RUN_DIR_ENV, &runs)
            .env(CHILD_LOG_ENV, &log)
            .stdin(Stdio::null());
        Ok(c)
    };
    let mut first = child()?.stdout(Stdio::null()).spawn()?;
    let waited = wait_for("4 finished points", Duration::from_secs(60), || {
        evaluations(&log).len() >= 4
    });
    // SAFETY: kills the child this test started.
    unsafe { libc::kill(first.id() as i32, libc::SIGKILL) };
    let _ = first.wait();
    waited?;
    let out = child()?.output()?;
    check(out.status.success(), || {
        format!(
            "the restarted driver failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let mut evals = evaluations(&log);
    evals.sort_unstable();
    check(evals == (0..24).collect::<Vec<_>>(), || {
        format!("every point once, nothing computed twice: {evals:?}")
    })?;
    let run = run_dir_in(&runs)?;
    let calls = driver_calls(&run)?;
    check(call_count(&calls, "sbatch") == 0, || {
        format!("the restarted driver should follow the running jobs, not resubmit: {calls:?}")
    })?;
    check(job_ids(&run).len() == 1, || {
        format!("jobs: {:?}", job_ids(&run))
    })
}

fn ctrl_c_cancels_the_jobs() -> Result<(), Failed> {
    if services::slurm("slurm_ctrl_c_cancels_the_jobs").is_none() {
        return Ok(());
    }
    let base = scratch("ctrl-c")?;
    let runs = base.path().join("runs");
    let log = base.path().join("evals");
    let mut command = Command::new(std::env::current_exe()?);
    let mut child = solver_tree::with_default_signals(&mut command)
        .env(CHILD_ENV, "interrupted")
        .env(CHILD_RUN_DIR_ENV, &runs)
        .env(CHILD_LOG_ENV, &log)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let waited = wait_for("a finished point", Duration::from_secs(60), || {
        !evaluations(&log).is_empty()
    });
    // SAFETY: signals the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let interrupted = Instant::now();
    if let Err(e) = waited {
        let _ = child.kill();
        return Err(e);
    }
    let out = child.wait_with_output()?;
    let took = interrupted.elapsed();
    check(out.status.success(), || {
        format!(
            "the interrupted driver: {:?}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    check(took < Duration::from_secs(10), || {
        format!("Ctrl-C took {took:?} to return")
    })?;
    let run = run_dir_in(&runs)?;
    let job = job_ids(&run).first().cloned().ok_or("no job recorded")?;
    wait_for(
        "every task of the job to end",
        Duration::from_secs(20),
        || {
            slurm_command("squeue", &["-h", "-t", "all", "-j", &job, "-o", "%T"]).is_ok_and(
                |text| {
                    text.lines()
                        .all(|state| matches!(state.trim(), "CANCELLED" | "COMPLETED"))
                },
            )
        },
    )?;
    let states = slurm_command("squeue", &["-h", "-t", "all", "-j", &job, "-o", "%T"])?;
    check(states.contains("CANCELLED"), || format!("states: {states}"))
}

fn held_job_fails_after_start_timeout() -> Result<(), Failed> {
    if services::slurm("slurm_held_job_fails_after_start_timeout").is_none() {
        return Ok(());
    }
    let base = scratch("held")?;
    let runs = base.path().join("runs");
    let started = Instant::now();
    let e = trivial::runner()
        .backend(Backend::Slurm)
        .set("run_dir", runs.display().to_string())
        .set("sbatch", vec!["--hold".to_string()])
        .set("start_timeout", 2u32)
        .map(&[1.0, 2.0, 3.0])
        .err()
        .ok_or("a held job should fail the batch")?;
    let text = e.to_string();
    check(
        text.contains("JobHeldUser") && text.contains("start_timeout"),
        || text.clone(),
    )?;
    check(started.elapsed() < Duration::from_secs(30), || {
        format!("gave up after {:?}", started.elapsed())
    })?;
    let run = run_dir_in(&runs)?;
    let job = job_ids(&run).first().cloned().ok_or("no job recorded")?;
    let states = slurm_command("squeue", &["-h", "-t", "all", "-j", &job, "-o", "%T"])?;
    check(states.lines().all(|s| s.trim() == "CANCELLED"), || {
        format!("the held job should be cancelled: {states}")
    })
}

fn point_timeout_fails_that_point() -> Result<(), Failed> {
    if services::slurm("slurm_point_timeout_fails_that_point").is_none() {
        return Ok(());
    }
    let base = scratch("point-timeout")?;
    let inputs: Vec<u32> = (0..8).collect();
    let batch = hangs_on_two::runner()
        .backend(Backend::Slurm)
        .set("run_dir", base.path().join("runs").display().to_string())
        .set("points_per_task", 4u32)
        .timeout(Duration::from_secs(2))
        .map(&inputs)?;
    for (k, r) in batch.results().iter().enumerate() {
        if k == 2 {
            let e = r.as_ref().err().ok_or("point 2 should time out")?;
            check(matches!(e.failure(), PointFailure::Timeout { .. }), || {
                format!("{e}")
            })?;
        } else {
            check(r.as_ref().ok() == Some(&(k as u32)), || {
                format!("point {k}: {r:?}")
            })?;
        }
    }
    Ok(())
}

/// A timed-out point's solver (a script and the `sleep` it started) dies
/// with its array task.
fn point_timeout_kills_the_solver_tree() -> Result<(), Failed> {
    if services::slurm("slurm_point_timeout_kills_the_solver_tree").is_none() {
        return Ok(());
    }
    let base = scratch("solver-tree")?;
    let script = solver_tree::write_script(base.path())?
        .display()
        .to_string();
    let tag = solver_tree::unique_tag(30);
    let points = vec![
        (solver_tree::SLOW, script.clone(), tag.clone()),
        (solver_tree::FAST, script, tag.clone()),
    ];
    let batch = solver_tree::solver::runner()
        .backend(Backend::Slurm)
        .set("run_dir", base.path().join("runs").display().to_string())
        .set("points_per_task", 1u32)
        .timeout(Duration::from_secs(2))
        .map(&points)?;
    solver_tree::check_timed_out_and_fast(&batch)?;
    solver_tree::none_left(&tag, "the timed-out point on slurm")
}

fn model_failure_fails_one_point() -> Result<(), Failed> {
    if services::slurm("slurm_model_failure_fails_one_point").is_none() {
        return Ok(());
    }
    let base = scratch("model-failure")?;
    let log = base.path().join("evals").display().to_string();
    let inputs: Vec<(u32, String)> = (0..20).map(|k| (k, log.clone())).collect();
    let batch = picky::runner()
        .backend(Backend::Slurm)
        .set("run_dir", base.path().join("runs").display().to_string())
        .map(&inputs)?;
    for (k, r) in batch.results().iter().enumerate() {
        if k == 7 {
            let e = r.as_ref().err().ok_or("point 7 should fail")?;
            check(
                matches!(e.failure(), PointFailure::Model { message } if message.contains("refused")),
                || format!("{e}"),
            )?;
            check(
                e.location().backend == "slurm" && e.location().pid.is_some(),
                || format!("{:?}", e.location()),
            )?;
        } else {
            check(r.as_ref().ok() == Some(&(k as u32 * 3)), || {
                format!("point {k}: {r:?}")
            })?;
        }
    }
    check(batch.summary().failed == 1, || {
        format!("{}", batch.summary())
    })?;
    let sevens = evaluations(Path::new(&log))
        .iter()
        .filter(|&&k| k == 7)
        .count();
    check(sevens == 1, || {
        format!("a model failure is not retried: {sevens} runs")
    })?;

    // Unless asked: then it is run `retries` more times before failing.
    let log = base.path().join("evals-retried").display().to_string();
    let inputs: Vec<(u32, String)> = (0..10).map(|k| (k, log.clone())).collect();
    let batch = picky::runner()
        .backend(Backend::Slurm)
        .set(
            "run_dir",
            base.path().join("runs-retried").display().to_string(),
        )
        .set("retry_model_failures", true)
        .retries(2)
        .map(&inputs)?;
    check(batch.summary().failed == 1, || {
        format!("{}", batch.summary())
    })?;
    let sevens = evaluations(Path::new(&log))
        .iter()
        .filter(|&&k| k == 7)
        .count();
    check(sevens == 3, || {
        format!("retried model failure: {sevens} runs, expected 3")
    })
}

fn crashed_task_names_state_and_log() -> Result<(), Failed> {
    if services::slurm("slurm_crashed_task_names_state_and_log").is_none() {
        return Ok(());
    }
    let base = scratch("crash")?;
    let inputs: Vec<u32> = (0..8).collect();
    let batch = task_killer::runner()
        .backend(Backend::Slurm)
        .set("run_dir", base.path().join("runs").display().to_string())
        .set("points_per_task", 4u32)
        .retries(0)
        .map(&inputs)?;
    for (k, r) in batch.results().iter().enumerate() {
        if k == 3 {
            let e = r.as_ref().err().ok_or("point 3 should fail")?;
            let PointFailure::TaskEnded { state, detail, .. } = e.failure() else {
                return Err(format!("point 3: {e}").into());
            };
            check(
                state == "FAILED" && detail.contains("exit code 3:0"),
                || format!("{state}: {detail}"),
            )?;
            check(detail.contains("point 3 ends its process now"), || {
                format!("stderr tail: {detail:?}")
            })?;
            let log = e.location().log.clone().unwrap_or_default();
            check(
                log.to_string_lossy().ends_with("_0.err") && log.exists(),
                || format!("log: {}", log.display()),
            )?;
        } else {
            // Points the dead task never started are run again.
            check(r.as_ref().ok() == Some(&(k as u32)), || {
                format!("point {k}: {r:?}")
            })?;
        }
    }
    Ok(())
}

fn bad_options_are_clear_errors() -> Result<(), Failed> {
    if services::slurm("slurm_bad_options_are_clear_errors").is_none() {
        return Ok(());
    }
    let base = scratch("bad-options")?;
    let runs = base.path().join("runs").display().to_string();
    let e = trivial::runner()
        .backend(Backend::Slurm)
        .set("partion", "debug")
        .map(&[1.0])
        .err()
        .ok_or("a misspelled option should be refused")?;
    let text = e.to_string();
    check(
        text.contains("did you mean `partition`")
            && text.contains("wckey")
            && text.contains("points_per_task"),
        || text.clone(),
    )?;
    let e = trivial::runner()
        .backend(Backend::Slurm)
        .set("run_dir", runs.as_str())
        .set("partition", "no-such-partition")
        .map(&[1.0, 2.0])
        .err()
        .ok_or("a bad partition should be refused")?;
    let text = e.to_string();
    check(
        matches!(e, otwrap::Error::Backend { .. })
            && text.contains("Invalid partition name specified"),
        || text.clone(),
    )?;
    // A worker binary that is not one is refused before anything is submitted.
    let e = trivial::runner()
        .backend(Backend::Slurm)
        .set("run_dir", runs.as_str())
        .worker_exe("/bin/true")
        .map(&[1.0, 2.0])
        .err()
        .ok_or("a worker_exe that is no worker should be refused")?;
    let text = e.to_string();
    check(
        text.contains("/bin/true") && text.contains("#[otwrap::main]"),
        || text.clone(),
    )?;
    // A dry run prints the script and submits nothing.
    let e = trivial::runner()
        .backend(Backend::Slurm)
        .set("run_dir", base.path().join("dry").display().to_string())
        .set("dry_run", true)
        .map(&[1.0, 2.0])
        .err()
        .ok_or("a dry run returns an error")?;
    check(
        e.to_string().contains("nothing was written or submitted"),
        || e.to_string(),
    )?;
    check(!base.path().join("dry").exists(), || {
        "the dry run wrote files".into()
    })
}

#[otwrap::main]
fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        std::process::exit(match mode.as_str() {
            "driver" => child_driver(),
            "interrupted" => child_interrupted(),
            other => {
                eprintln!("unknown child mode {other:?}");
                2
            }
        });
    }
    let args = Arguments::from_args();
    let trials = vec![
        // The longest first: it waits for SLURM's 1-minute time limit.
        Trial::test("slurm_time_limit_is_retried", time_limit_is_retried),
        Trial::test("slurm_same_results_as_rayon", same_results_as_rayon),
        Trial::test("slurm_options_reach_the_job", options_reach_the_job),
        Trial::test("slurm_cancelled_task_is_retried", cancelled_task_is_retried),
        Trial::test("slurm_killed_driver_resumes", killed_driver_resumes),
        Trial::test(
            "slurm_model_failure_fails_one_point",
            model_failure_fails_one_point,
        ),
        Trial::test(
            "slurm_crashed_task_names_state_and_log",
            crashed_task_names_state_and_log,
        ),
        Trial::test(
            "slurm_bad_options_are_clear_errors",
            bad_options_are_clear_errors,
        ),
        Trial::test("slurm_ctrl_c_cancels_the_jobs", ctrl_c_cancels_the_jobs),
        Trial::test(
            "slurm_held_job_fails_after_start_timeout",
            held_job_fails_after_start_timeout,
        ),
        Trial::test(
            "slurm_point_timeout_fails_that_point",
            point_timeout_fails_that_point,
        ),
        Trial::test(
            "slurm_point_timeout_kills_the_solver_tree",
            point_timeout_kills_the_solver_tree,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
