//! The beam external code: evaluations per second of otwrap (work dir +
//! template + solver + parse, through the attributes) against the same work
//! written by hand with std only, and the bare solver run. Run with
//! `cargo bench --bench beam`; OTWRAP_BENCH_POINTS and OTWRAP_BENCH_RUNS
//! change the sizes. Prints medians; with OTWRAP_BENCH_JSON=path, also
//! appends them to that file as JSON lines.

#[path = "../examples/beam/common.rs"]
mod common;
#[path = "support/json.rs"]
mod json;

#[path = "support/beam_model.rs"]
mod beam_model;
#[path = "support/stats.rs"]
mod stats;

use beam_model::{beam, by_hand, DOE};
use stats::{env_usize, time};
use std::hint::black_box;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{solver, template, BoxError};
use otwrap::coupling::NumberFormat;
use otwrap::prelude::*;
use otwrap::Sample;
use rayon::prelude::*;

#[otwrap::main]
fn main() -> Result<(), BoxError> {
    let n = env_usize("OTWRAP_BENCH_POINTS", 1000);
    let runs = env_usize("OTWRAP_BENCH_RUNS", 3);
    let workers = 2;
    let doe = Sample::read_csv(DOE)?.to_arrays::<4>()?;
    // Distinct points (the hand loop names its directories after F).
    let points: Vec<[f64; 4]> = (0..n)
        .map(|k| {
            let mut p = doe[k % doe.len()];
            p[0] += k as f64 * 1e-6;
            p
        })
        .collect();
    let solver = solver()?;
    println!(
        "beam: {n} points, median of {runs} runs, solver {}",
        solver.display()
    );

    // The bare solver run: one prepared directory, the program started n times.
    let dir = tempfile::tempdir()?;
    template()?.fill_to(
        dir.path().join("beam.xml"),
        &[("@F@", 3e4), ("@E@", 3e7), ("@L@", 255.0), ("@I@", 400.0)],
        NumberFormat::Shortest,
    )?;
    let bare = time(runs, || {
        for _ in 0..n {
            let status = Command::new(solver)
                .args(["-x", "beam.xml"])
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            black_box(status.ok());
        }
        Ok::<(), BoxError>(())
    })?;
    json::emit(
        "beam",
        "bare solver run, serial",
        n,
        runs,
        bare,
        &[("workers", 1usize.into())],
    );
    let per_eval = |t: Duration| t.as_secs_f64() / n as f64 * 1e3;
    let rate = |t: Duration| n as f64 / t.as_secs_f64();
    println!(
        "{:<34} {:>9.3} ms/eval {:>9.1} eval/s",
        "bare solver run, serial",
        per_eval(bare),
        rate(bare)
    );

    let hand_serial = time(runs, || {
        let ok = points.iter().filter(|x| by_hand(x, solver).is_ok()).count();
        assert_eq!(ok, n);
        Ok::<(), BoxError>(())
    })?;
    let otwrap_serial = time(runs, || {
        let batch = beam::runner().backend(Backend::Serial).map(&points)?;
        assert!(batch.is_complete(), "{:?}", batch.errors().next());
        Ok::<(), BoxError>(())
    })?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()?;
    let hand_rayon = time(runs, || {
        let ok = pool.install(|| {
            points
                .par_iter()
                .filter(|x| by_hand(x, solver).is_ok())
                .count()
        });
        assert_eq!(ok, n);
        Ok::<(), BoxError>(())
    })?;
    let otwrap_rayon = time(runs, || {
        let batch = beam::runner().workers(workers).map(&points)?;
        assert!(batch.is_complete());
        Ok::<(), BoxError>(())
    })?;
    for (name, t) in [
        ("hand-written loop, serial", hand_serial),
        ("otwrap, serial backend", otwrap_serial),
        ("hand-written loop, rayon x2", hand_rayon),
        ("otwrap, rayon backend x2", otwrap_rayon),
    ] {
        json::emit(
            "beam",
            name,
            n,
            runs,
            t,
            &[(
                "workers",
                if name.contains("x2") { workers } else { 1 }.into(),
            )],
        );
        println!(
            "{name:<34} {:>9.3} ms/eval {:>9.1} eval/s",
            per_eval(t),
            rate(t)
        );
    }
    println!(
        "otwrap overhead per evaluation (serial, vs hand-written): {:+.3} ms; vs bare solver run: {:+.3} ms",
        per_eval(otwrap_serial) - per_eval(hand_serial),
        per_eval(otwrap_serial) - per_eval(bare)
    );
    println!(
        "otwrap rayon x2 reaches {:.1}% of the hand-written rayon loop",
        100.0 * hand_rayon.as_secs_f64() / otwrap_rayon.as_secs_f64()
    );
    Ok(())
}
