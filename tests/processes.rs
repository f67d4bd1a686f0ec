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
    ];
    libtest_mimic::run(&args, trials).exit();
}
