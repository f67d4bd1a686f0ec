//! A CPU-heavy model (about 10 ms of floating-point work a point, 200
//! points): speed-up of otwrap on 2 workers over a plain serial loop, next to
//! a bare rayon loop on the same 2 threads (what the machine allows).
//! Run with `cargo bench --bench cpu`; OTWRAP_BENCH_POINTS,
//! OTWRAP_BENCH_POINT_MS (work per point) and OTWRAP_BENCH_RUNS change the
//! sizes. The variants are interleaved run by run so that a burst of load
//! from elsewhere hits them alike. Prints medians; with
//! OTWRAP_BENCH_JSON=path, also appends them to that file as JSON lines.
//! Each variant also reports the cores it obtained (CPU time of this process
//! and its waited-for children over wall time): on a shared machine the
//! scheduler, not the code, may be what bounds a speed-up.

#[path = "support/json.rs"]
mod json;

#[path = "support/stats.rs"]
mod stats;

use stats::{env_usize, median, median_f64};
use std::hint::black_box;
use std::time::{Duration, Instant};

use otwrap::prelude::*;
use rayon::prelude::*;

/// `iters` steps of the logistic map: a dependent chain of floating-point
/// operations that the compiler can neither vectorize nor skip.
fn spin(seed: u64, iters: u64) -> f64 {
    let mut acc = 0.25 + (seed % 1000) as f64 * 1e-4;
    for i in 0..iters {
        acc = (3.9 * acc * (1.0 - acc)).mul_add(0.999_999, (i & 7) as f64 * 1e-12);
    }
    acc
}

/// One point: `[seed, iterations]` (the work travels with the point, so the
/// processes backend's workers do the same work without calibrating).
#[parallelize(backend = "rayon", progress = "never")]
fn heavy(x: [u64; 2]) -> f64 {
    spin(x[0], x[1])
}

/// User + system CPU time of this process and of its children that have
/// been waited for.
fn cpu_time() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage only writes the struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut usage) } == 0 {
            for t in [usage.ru_utime, usage.ru_stime] {
                total += t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
            }
        }
    }
    total
}

/// Iterations of [`spin`] that take `ms` milliseconds on one thread (the
/// fastest of a few timings, so that load elsewhere inflates it least).
fn calibrate(ms: f64) -> u64 {
    let probe = 1u64 << 20;
    let best = (0..5)
        .map(|_| {
            let start = Instant::now();
            black_box(spin(black_box(1), probe));
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    ((ms * 1e-3 / best) * probe as f64).max(1.0) as u64
}

#[otwrap::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = env_usize("OTWRAP_BENCH_POINTS", 200);
    let point_ms = env_usize("OTWRAP_BENCH_POINT_MS", 10) as f64;
    let runs = env_usize("OTWRAP_BENCH_RUNS", 5);
    let workers = 2;
    let iters = calibrate(point_ms);
    let inputs: Vec<[u64; 2]> = (0..n as u64).map(|k| [k, iters]).collect();
    println!(
        "cpu-heavy model: {n} points of ~{point_ms} ms ({iters} iterations), {workers} workers, median of {runs} runs (interleaved)"
    );

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()?;
    type Variant<'a> = (
        &'a str,
        usize,
        Box<dyn Fn() -> Result<(), otwrap::Error> + 'a>,
    );
    let variants: Vec<Variant> = vec![
        (
            "serial loop (no otwrap)",
            1,
            Box::new(|| {
                let out: Vec<f64> = inputs.iter().map(|x| spin(x[0], x[1])).collect();
                black_box(out);
                Ok(())
            }),
        ),
        (
            "bare rayon par_iter x2",
            workers,
            Box::new(|| {
                let out: Vec<f64> =
                    pool.install(|| inputs.par_iter().map(|x| spin(x[0], x[1])).collect());
                black_box(out);
                Ok(())
            }),
        ),
        (
            "otwrap rayon x2",
            workers,
            Box::new(|| {
                let batch = heavy::runner().workers(workers).map(&inputs)?;
                assert!(batch.is_complete());
                black_box(batch);
                Ok(())
            }),
        ),
        (
            "otwrap processes x2",
            workers,
            Box::new(|| {
                let batch = heavy::runner()
                    .backend(Backend::Processes)
                    .workers(workers)
                    .map(&inputs)?;
                assert!(batch.is_complete(), "{:?}", batch.errors().next());
                black_box(batch);
                Ok(())
            }),
        ),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    let mut cores: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..runs {
        for (k, (_, _, run)) in variants.iter().enumerate() {
            let cpu = cpu_time();
            let start = Instant::now();
            run()?;
            let wall = start.elapsed();
            times[k].push(wall);
            cores[k].push((cpu_time() - cpu) / wall.as_secs_f64());
        }
    }
    let medians: Vec<Duration> = times.into_iter().map(median).collect();
    let cores: Vec<f64> = cores.into_iter().map(median_f64).collect();
    let serial = medians[0];
    for (((name, w, _), t), used) in variants.iter().zip(&medians).zip(&cores) {
        let speedup = serial.as_secs_f64() / t.as_secs_f64();
        json::emit(
            "cpu",
            name,
            n,
            runs,
            *t,
            &[
                ("workers", (*w).into()),
                ("speedup", speedup.into()),
                ("point_ms", point_ms.into()),
                ("iterations", iters.into()),
                ("cores_obtained", (*used).into()),
            ],
        );
        println!(
            "{name:<26} {:>9.3} s  {:>7.3} ms/point  speed-up {:>5.2}  cores obtained {used:>4.2}",
            t.as_secs_f64(),
            t.as_secs_f64() * 1e3 / n as f64,
            speedup
        );
    }
    Ok(())
}
