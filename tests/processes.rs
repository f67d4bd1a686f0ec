//! The `processes` backend against real child processes of this test binary,
//! which is worker-capable through `#[otwrap::main]` (hence no libtest
//! harness: libtest-mimic gives the same command line).

use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::prelude::*;
use otwrap::{EvalContext, Model, Options};

#[parallelize(backend = "processes", workers = 2)]
fn trivial(x: f64) -> f64 {
    (x * 1.5).cos() + x
}

/// Fails in every way a native model can, at known points.
#[parallelize(backend = "processes", workers = 2)]
fn crashy(k: u32) -> Result<u32, String> {
    match k {
        3 => std::process::abort(),
        // SAFETY: deliberately not: this is the segfault under test.
        5 => unsafe {
            std::ptr::null_mut::<u32>().write_volatile(1);
            unreachable!()
        },
        7 => std::process::exit(3),
        9 => panic!("k = 9 panics"),
        11 => Err("k = 11 is refused".to_string()),
        13 => {
            // A model that prints on stdout must not corrupt the protocol.
            println!("garbage on stdout \x00\x01\x02 from the model");
            Ok(k * 2)
        }
        17 => {
            // SAFETY: sends SIGKILL to this very worker process.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            std::thread::sleep(Duration::from_secs(10));
            Ok(0)
        }
        _ => Ok(k * 2),
    }
}

/// Counts its attempts at each point in files (`<dir>/<k>.<pid>`), then:
/// point 0 is SIGKILLed on its first attempt only, point 1 on every
/// attempt, point 2 segfaults, point 3 returns an error, others succeed.
#[parallelize(backend = "processes", workers = 2)]
fn attempted(dir: String, k: u32) -> Result<u32, String> {
    let dir = std::path::Path::new(&dir);
    let tries = std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{k}."))
        })
        .count();
    std::fs::write(dir.join(format!("{k}.{}", std::process::id())), b"")
        .map_err(|e| e.to_string())?;
    let kill = || {
        // SAFETY: sends SIGKILL to this very worker process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::thread::sleep(Duration::from_secs(10));
    };
    match k {
        0 if tries == 0 => kill(),
        1 => kill(),
        // SAFETY: deliberately not: this is the segfault under test.
        2 => unsafe {
            std::ptr::null_mut::<u32>().write_volatile(1);
        },
        3 => return Err("k = 3 is refused".into()),
        _ => {}
    }
    Ok(k * 10)
}

/// Points from 20 on take a second and record which worker ran them and
/// when (milliseconds since the epoch); the others are instant.
#[parallelize(backend = "processes", workers = 2)]
fn mostly_fast(dir: String, k: u32) -> Result<u32, String> {
    if k < 20 {
        return Ok(k);
    }
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default()
    };
    let start = now();
    std::thread::sleep(Duration::from_secs(1));
    let line = format!("{} {start} {}\n", std::process::id(), now());
    std::fs::write(std::path::Path::new(&dir).join(k.to_string()), line)
        .map_err(|e| e.to_string())?;
    Ok(k)
}

/// Hangs on point 2.
#[parallelize(backend = "processes", workers = 2, timeout = 1)]
fn sleepy(k: u32) -> u32 {
    if k == 2 {
        std::thread::sleep(Duration::from_secs(60));
    }
    k
}

/// A model the worker binary does not register (written by hand).
struct Unregistered;
impl Model for Unregistered {
    type Input = f64;
    type Output = f64;
    const ID: &'static str = "tests::processes::unregistered";
    const NAME: &'static str = "unregistered";
    fn attribute_options() -> Options {
        let mut o = Options::new();
        o.backend = Some(Backend::Processes);
        o
    }
    fn evaluate(x: &f64, _ctx: &EvalContext) -> Result<f64, otwrap::Failed> {
        Ok(*x)
    }
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

fn same_results_as_rayon() -> Result<(), Failed> {
    let inputs: Vec<f64> = (0..1000).map(|i| f64::from(i) * 0.01).collect();
    let procs = trivial::map(&inputs)?;
    let rayon = trivial::runner().backend(Backend::Rayon).map(&inputs)?;
    let serial = trivial::runner().backend(Backend::Serial).map(&inputs)?;
    let p = procs.values()?;
    let r = rayon.values()?;
    let s = serial.values()?;
    check(p.len() == 1000, || format!("{} results", p.len()))?;
    for i in 0..1000 {
        check(
            p[i].to_bits() == r[i].to_bits() && r[i].to_bits() == s[i].to_bits(),
            || {
                format!(
                    "point {i}: processes {} rayon {} serial {}",
                    p[i], r[i], s[i]
                )
            },
        )?;
    }
    check(procs.summary().backend == "processes", || {
        format!("{}", procs.summary())
    })
}

fn every_crash_fails_alone() -> Result<(), Failed> {
    let inputs: Vec<u32> = (0..24).collect();
    let batch = crashy::map(&inputs)?;
    let failure = |k: usize| {
        batch.results()[k]
            .as_ref()
            .err()
            .map(|e| e.failure().clone())
    };
    for k in [0, 1, 2, 4, 6, 8, 10, 12, 13, 14, 15, 16, 18, 23] {
        check(batch.results()[k] == Ok(k as u32 * 2), || {
            format!("point {k} should succeed: {:?}", batch.results()[k])
        })?;
    }
    let crashed = |k: usize, needle: &str| -> Result<(), Failed> {
        match failure(k) {
            Some(f @ PointFailure::WorkerDied { .. }) if f.to_string().contains(needle) => Ok(()),
            other => {
                Err(format!("point {k}: expected a crash with {needle}, got {other:?}").into())
            }
        }
    };
    crashed(3, "SIGABRT")?;
    crashed(5, "SIGSEGV")?;
    crashed(7, "exited with status 3")?;
    crashed(17, "SIGKILL")?;
    match failure(9) {
        Some(PointFailure::Panic { message }) if message.contains("k = 9 panics") => {}
        other => return Err(format!("point 9: expected a panic, got {other:?}").into()),
    }
    check(
        failure(11)
            == Some(PointFailure::Model {
                message: "k = 11 is refused".into(),
            }),
        || format!("point 11: {:?}", failure(11)),
    )?;
    let abort = batch.results()[3].as_ref().unwrap_err();
    let text = abort.to_string();
    check(
        text.contains("point 3")
            && text.contains("processes backend")
            && abort.location().pid.is_some(),
        || text.clone(),
    )?;
    let s = batch.summary();
    check(s.failed == 6 && s.evaluated == 24 && s.not_run == 0, || {
        format!("{s}")
    })
}

fn a_hanging_point_is_killed_at_its_timeout() -> Result<(), Failed> {
    let start = Instant::now();
    let batch = sleepy::map(&[0, 1, 2, 3, 4])?;
    let elapsed = start.elapsed();
    check(elapsed < Duration::from_secs(30), || {
        format!("took {elapsed:?}")
    })?;
    let err = batch.results()[2].as_ref().unwrap_err();
    check(
        matches!(err.failure(), PointFailure::Timeout { after } if *after == Duration::from_secs(1)),
        || format!("{err}"),
    )?;
    let pid = err
        .location()
        .pid
        .ok_or("the timed-out point names its worker pid")?;
    check(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        || format!("worker {pid} is still alive after its timeout"),
    )?;
    check(
        batch.results().iter().filter(|r| r.is_ok()).count() == 4,
        || format!("{}", batch.summary()),
    )
}

fn a_binary_that_is_not_a_worker_is_reported() -> Result<(), Failed> {
    let err = trivial::runner()
        .worker_exe("/bin/echo")
        .map(&[1.0])
        .unwrap_err()
        .to_string();
    check(
        err.contains("is not an otwrap worker") && err.contains("#[otwrap::main]"),
        || err.clone(),
    )?;
    let err = trivial::runner()
        .worker_exe("/nonexistent/worker")
        .map(&[1.0])
        .unwrap_err()
        .to_string();
    check(err.contains("/nonexistent/worker"), || err.clone())
}

fn an_unregistered_model_is_reported() -> Result<(), Failed> {
    let err = Runner::<Unregistered>::new()
        .map(&[1.0])
        .unwrap_err()
        .to_string();
    check(
        err.contains("does not contain the model `tests::processes::unregistered`")
            && err.contains("processes::crashy"),
        || err.clone(),
    )
}

fn fail_fast_stops_the_workers() -> Result<(), Failed> {
    let inputs: Vec<u32> = (0..200).map(|k| if k == 20 { 11 } else { 0 }).collect();
    let batch = crashy::runner().workers(1).fail_fast(true).map(&inputs)?;
    let s = batch.summary();
    check(s.evaluated == 21 && s.not_run == 179, || format!("{s}"))
}

/// `retries` on `processes`, by failure class: a SIGKILLed worker's point
/// runs again (and fails after `retries` re-runs if it is killed every
/// time); a segfault and a model error are the model's and run once. Each
/// error names its class and attempts.
fn retries_follow_the_failure_classes() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().display().to_string();
    let inputs: Vec<(String, u32)> = (0..8).map(|k| (path.clone(), k)).collect();
    let batch = attempted::runner().retries(2).map(&inputs)?;
    let tries = |k: u32| {
        std::fs::read_dir(dir.path())
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("{k}."))
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let results = batch.results();
    check(results[0] == Ok(0), || format!("point 0: {:?}", results[0]))?;
    check(tries(0) == 2, || {
        format!("point 0 ran {} times, 2 expected", tries(0))
    })?;
    for k in 4..8 {
        check(results[k as usize] == Ok(k * 10), || {
            format!("point {k}: {:?}", results[k as usize])
        })?;
        check(tries(k) == 1, || {
            format!("point {k} ran {} times", tries(k))
        })?;
    }
    let error = |k: usize| {
        results[k]
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    let e1 = error(1);
    check(tries(1) == 3, || {
        format!("point 1 ran {} times, 3 expected", tries(1))
    })?;
    check(
        e1.contains("SIGKILL")
            && e1.contains("[infrastructure loss, 3 attempts, 0 of 2 retries left]"),
        || e1.clone(),
    )?;
    let e2 = error(2);
    check(tries(2) == 1, || {
        format!("the segfaulting point ran {} times", tries(2))
    })?;
    check(
        e2.contains("SIGSEGV") && e2.contains("[model failure, 1 attempt, not retried]"),
        || e2.clone(),
    )?;
    let e3 = error(3);
    check(tries(3) == 1, || {
        format!("the failing point ran {} times", tries(3))
    })?;
    check(
        e3.contains("k = 3 is refused") && e3.contains("[model failure, 1 attempt, not retried]"),
        || e3.clone(),
    )?;
    let attempts = results[1].as_ref().err().map(|e| e.attempts().made);
    check(attempts == Some(3), || format!("{attempts:?}"))?;
    // With retries = 0 a killed worker's point fails at once.
    let dir0 = tempfile::tempdir()?;
    let path0 = dir0.path().display().to_string();
    let once = attempted::runner().retries(0).map(&[(path0, 1)])?;
    let e = once.results()[0]
        .as_ref()
        .err()
        .map(ToString::to_string)
        .unwrap_or_default();
    check(
        e.contains("[infrastructure loss, 1 attempt, not retried]"),
        || e.clone(),
    )
}

/// Short points are queued several to a worker, but the last points of a
/// batch never wait behind one another while a worker is free: two slow
/// points after many fast ones run at the same time, on both workers.
fn slow_points_after_fast_ones_run_side_by_side() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().display().to_string();
    let inputs: Vec<(String, u32)> = (0..22).map(|k| (path.clone(), k)).collect();
    let batch = mostly_fast::map(&inputs)?;
    check(batch.summary().succeeded() == 22, || {
        format!("{}", batch.summary())
    })?;
    let read = |k: u32| -> Result<(u32, u128, u128), Failed> {
        let text = std::fs::read_to_string(dir.path().join(k.to_string()))?;
        let f: Vec<&str> = text.split_whitespace().collect();
        Ok((f[0].parse()?, f[1].parse()?, f[2].parse()?))
    };
    let (pid_a, start_a, end_a) = read(20)?;
    let (pid_b, start_b, end_b) = read(21)?;
    check(pid_a != pid_b && start_a < end_b && start_b < end_a, || {
        format!(
            "the two slow points ran one after the other: {pid_a} {start_a}-{end_a}, {pid_b} {start_b}-{end_b}"
        )
    })
}

#[otwrap::main]
fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "processes_same_results_as_rayon_and_serial",
            same_results_as_rayon,
        ),
        Trial::test("processes_every_crash_fails_alone", every_crash_fails_alone),
        Trial::test(
            "processes_a_hanging_point_is_killed_at_its_timeout",
            a_hanging_point_is_killed_at_its_timeout,
        ),
        Trial::test(
            "processes_a_binary_that_is_not_a_worker_is_reported",
            a_binary_that_is_not_a_worker_is_reported,
        ),
        Trial::test(
            "processes_an_unregistered_model_is_reported",
            an_unregistered_model_is_reported,
        ),
        Trial::test(
            "processes_fail_fast_stops_the_workers",
            fail_fast_stops_the_workers,
        ),
        Trial::test(
            "processes_retries_follow_the_failure_classes",
            retries_follow_the_failure_classes,
        ),
        Trial::test(
            "processes_slow_points_after_fast_ones_run_side_by_side",
            slow_points_after_fast_ones_run_side_by_side,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
