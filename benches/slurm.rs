//! The slurm backend against rayon on this machine's single-node SLURM
//! (`scripts/services/slurm.sh start`): wall time and throughput of 1,000
//! trivial points and of 200 beam points (work dir + template + solver +
//! parse), with the number of sbatch, squeue and other SLURM calls each
//! batch made. Run with `cargo bench --bench slurm`; OTWRAP_BENCH_TRIVIAL,
//! OTWRAP_BENCH_BEAM and OTWRAP_BENCH_RUNS change the sizes. Every SLURM run
//! uses a fresh run directory (no resume). Prints medians; with
//! OTWRAP_BENCH_JSON=path, also appends them to that file as JSON lines,
//! with how long after the last result record was written the batch
//! returned (`noticed_after_s`).

#[path = "../examples/beam/common.rs"]
mod common;
#[path = "support/json.rs"]
mod json;
#[path = "../tests/support/services.rs"]
mod services;

#[path = "support/beam_model.rs"]
mod beam_model;
#[path = "support/stats.rs"]
mod stats;

use beam_model::{beam, DOE};
use stats::{env_usize, median};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use common::{solver, BoxError};
use otwrap::prelude::*;
use otwrap::Sample;

#[parallelize(backend = "rayon", progress = "never")]
fn trivial(x: f64) -> f64 {
    x.mul_add(2.0, 1.0)
}

/// The `calls ...` part of the last line of the run's `driver.log`.
fn calls_of(runs: &Path) -> String {
    let Some(run) = std::fs::read_dir(runs)
        .ok()
        .and_then(|mut d| d.find_map(|e| e.ok().map(|e| e.path())))
    else {
        return "?".into();
    };
    std::fs::read_to_string(run.join("driver.log"))
        .ok()
        .and_then(|t| {
            t.lines()
                .last()
                .and_then(|l| l.split_once("calls "))
                .map(|(_, c)| c.to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// When the last result record of the run in `runs` was written (the
/// newest modification time in its `results/`).
fn last_result_write(runs: &Path) -> Option<SystemTime> {
    let run = std::fs::read_dir(runs)
        .ok()?
        .find_map(|e| e.ok().map(|e| e.path()))?;
    std::fs::read_dir(run.join("results"))
        .ok()?
        .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
        .max()
}

/// Times `runs` SLURM batches (each in a fresh run directory) and returns
/// the median, the calls of the last run and the median time from the last
/// result record written to the batch returning.
fn time_slurm(
    runs: usize,
    mut batch: impl FnMut(&Path) -> Result<(), BoxError>,
) -> Result<(Duration, String, Option<f64>), BoxError> {
    let mut times = Vec::new();
    let mut calls = String::new();
    let mut noticed = Vec::new();
    for _ in 0..runs {
        let dir = tempfile::tempdir()?;
        let start = Instant::now();
        batch(dir.path())?;
        times.push(start.elapsed());
        let end = SystemTime::now();
        calls = calls_of(dir.path());
        if let Some(last) = last_result_write(dir.path()) {
            noticed.push(end.duration_since(last).unwrap_or_default());
        }
    }
    let noticed = (!noticed.is_empty()).then(|| median(noticed).as_secs_f64());
    Ok((median(times), calls, noticed))
}

/// Appends the rayon and slurm rows of one workload to OTWRAP_BENCH_JSON.
fn emit_json(
    kind: &str,
    n: usize,
    runs: usize,
    rayon: Duration,
    slurm: [(&str, Duration, &str, Option<f64>); 2],
) {
    json::emit(
        "slurm",
        "rayon, 2 workers",
        n,
        runs,
        rayon,
        &[("kind", kind.into())],
    );
    for (name, t, calls, noticed) in slurm {
        let mut extra: Vec<(&str, json::Value)> =
            vec![("kind", kind.into()), ("calls", calls.into())];
        if let Some(s) = noticed {
            extra.push(("noticed_after_s", s.into()));
        }
        json::emit("slurm", name, n, runs, t, &extra);
    }
}

fn time_rayon(
    runs: usize,
    mut batch: impl FnMut() -> Result<(), BoxError>,
) -> Result<Duration, BoxError> {
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        batch()?;
        times.push(start.elapsed());
    }
    Ok(median(times))
}

fn line(name: &str, n: usize, t: Duration, calls: &str) {
    println!(
        "{name:<32} {:>9.3} s {:>10.1} points/s   {calls}",
        t.as_secs_f64(),
        n as f64 / t.as_secs_f64()
    );
}

#[otwrap::main]
fn main() -> Result<(), BoxError> {
    let Some(env) = services::slurm("bench slurm") else {
        return Ok(());
    };
    let n_trivial = env_usize("OTWRAP_BENCH_TRIVIAL", 1000);
    let n_beam = env_usize("OTWRAP_BENCH_BEAM", 200);
    let runs = env_usize("OTWRAP_BENCH_RUNS", 3);
    println!(
        "slurm bench: single-node SLURM declaring {} CPUs on {} cores, median of {runs} runs",
        env.cpus,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    if n_trivial > 0 {
        bench_trivial(n_trivial, runs, env.cpus.max(1))?;
    }
    if n_beam > 0 {
        bench_beam(n_beam, runs, env.cpus.max(1))?;
    }
    Ok(())
}

fn bench_trivial(n_trivial: usize, runs: usize, cpus: usize) -> Result<(), BoxError> {
    let inputs: Vec<f64> = (0..n_trivial).map(|i| i as f64).collect();
    let expected = trivial::runner().map(&inputs)?.values()?;
    let rayon = time_rayon(runs, || {
        trivial::runner().workers(2).map(&inputs)?.values()?;
        Ok(())
    })?;
    let (slurm, calls, noticed) = time_slurm(runs, |dir| {
        let values = trivial::runner()
            .backend(Backend::Slurm)
            .set("run_dir", dir.display().to_string())
            .map(&inputs)?
            .values()?;
        assert_eq!(values, expected);
        Ok(())
    })?;
    let per_cpu = n_trivial.div_ceil(cpus);
    let (slurm_wave, calls_wave, noticed_wave) = time_slurm(runs, |dir| {
        let values = trivial::runner()
            .backend(Backend::Slurm)
            .set("run_dir", dir.display().to_string())
            .set("points_per_task", per_cpu as i64)
            .map(&inputs)?
            .values()?;
        assert_eq!(values, expected);
        Ok(())
    })?;
    emit_json(
        "trivial",
        n_trivial,
        runs,
        rayon,
        [
            ("slurm, default grouping", slurm, &calls, noticed),
            (
                "slurm, one task per CPU",
                slurm_wave,
                &calls_wave,
                noticed_wave,
            ),
        ],
    );
    println!("{n_trivial} trivial points:");
    line("  rayon, 2 workers", n_trivial, rayon, "");
    line("  slurm (default grouping)", n_trivial, slurm, &calls);
    line(
        "  slurm (one task per CPU)",
        n_trivial,
        slurm_wave,
        &calls_wave,
    );
    Ok(())
}

fn bench_beam(n_beam: usize, runs: usize, cpus: usize) -> Result<(), BoxError> {
    let doe = Sample::read_csv(DOE)?.to_arrays::<4>()?;
    let points: Vec<[f64; 4]> = (0..n_beam)
        .map(|k| {
            let mut p = doe[k % doe.len()];
            p[0] += k as f64 * 1e-6;
            p
        })
        .collect();
    solver()?;
    let expected = beam::runner().map(&points)?.values()?;
    let rayon = time_rayon(runs, || {
        beam::runner().workers(2).map(&points)?.values()?;
        Ok(())
    })?;
    let (slurm, calls, noticed) = time_slurm(runs, |dir| {
        let values = beam::runner()
            .backend(Backend::Slurm)
            .set("run_dir", dir.display().to_string())
            .map(&points)?
            .values()?;
        assert_eq!(values, expected);
        Ok(())
    })?;
    let per_cpu = n_beam.div_ceil(cpus);
    let (slurm_wave, calls_wave, noticed_wave) = time_slurm(runs, |dir| {
        let values = beam::runner()
            .backend(Backend::Slurm)
            .set("run_dir", dir.display().to_string())
            .set("points_per_task", per_cpu as i64)
            .map(&points)?
            .values()?;
        assert_eq!(values, expected);
        Ok(())
    })?;
    emit_json(
        "beam",
        n_beam,
        runs,
        rayon,
        [
            ("slurm, default grouping", slurm, &calls, noticed),
            (
                "slurm, one task per CPU",
                slurm_wave,
                &calls_wave,
                noticed_wave,
            ),
        ],
    );
    println!("{n_beam} beam points:");
    line("  rayon, 2 workers", n_beam, rayon, "");
    line("  slurm (default grouping)", n_beam, slurm, &calls);
    line(
        "  slurm (one task per CPU)",
        n_beam,
        slurm_wave,
        &calls_wave,
    );
    Ok(())
}
