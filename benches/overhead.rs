//! Framework overhead per point: `name::map` over trivial points against a
//! hand-written rayon `par_iter` on the same pool size, and the `processes`
//! backend. Run with `cargo bench --bench overhead`; set OTWRAP_BENCH_POINTS
//! and OTWRAP_BENCH_RUNS to change the sizes (OTWRAP_BENCH_PROCESSES=0 skips
//! the processes backend). Prints medians; with OTWRAP_BENCH_JSON=path, also
//! appends them to that file as JSON lines.

#[path = "support/json.rs"]
mod json;

#[path = "support/stats.rs"]
mod stats;

use stats::{env_usize, time};
use std::hint::black_box;
use std::time::Duration;

use otwrap::prelude::*;
use rayon::prelude::*;

#[parallelize(backend = "rayon", progress = "never")]
fn trivial(x: f64) -> f64 {
    x.mul_add(2.0, 1.0)
}

#[otwrap::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = env_usize("OTWRAP_BENCH_POINTS", 1_000_000);
    let runs = env_usize("OTWRAP_BENCH_RUNS", 7);
    let workers = env_usize(
        "OTWRAP_WORKERS",
        std::thread::available_parallelism().map_or(1, |c| c.get()),
    );
    let inputs: Vec<f64> = (0..n).map(|i| i as f64 * 1e-3).collect();
    println!("{n} trivial points, {workers} workers, median of {runs} runs");

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()?;
    let bare = time(runs, || {
        let out: Vec<f64> = pool.install(|| inputs.par_iter().map(|x| trivial(*x)).collect());
        black_box(out);
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    let report = |name: &str, t: Duration, runs: usize| {
        json::emit(
            "overhead",
            name,
            n,
            runs,
            t,
            &[
                ("workers", workers.into()),
                ("baseline", "bare rayon par_iter".into()),
                ("baseline_s", bare.as_secs_f64().into()),
            ],
        );
        let per_point = t.as_secs_f64() / n as f64 * 1e6;
        let overhead = (t.as_secs_f64() - bare.as_secs_f64()) / n as f64 * 1e6;
        println!(
            "{name:<28} {:>10.3} ms  {:>8.3} us/point  overhead {:>8.3} us/point  ({:.1}% of bare)",
            t.as_secs_f64() * 1e3,
            per_point,
            overhead,
            100.0 * bare.as_secs_f64() / t.as_secs_f64()
        );
    };
    report("bare rayon par_iter", bare, runs);

    let rayon = time(runs, || {
        let batch = trivial::runner().workers(workers).map(&inputs)?;
        black_box(batch);
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    report("otwrap rayon map", rayon, runs);

    let for_each = time(runs, || {
        let mut sum = 0.0;
        trivial::runner()
            .workers(workers)
            .for_each(&inputs, |done| sum += done.result.unwrap_or(0.0))?;
        black_box(sum);
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    report("otwrap rayon for_each", for_each, runs);

    let serial = time(runs, || {
        let batch = trivial::runner().backend(Backend::Serial).map(&inputs)?;
        black_box(batch);
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    report("otwrap serial map", serial, runs);

    if env_usize("OTWRAP_BENCH_PROCESSES", 1) == 0 {
        return Ok(());
    }
    let proc_runs = runs.min(3);
    let processes = time(proc_runs, || {
        let batch = trivial::runner()
            .backend(Backend::Processes)
            .workers(workers)
            .map(&inputs)?;
        assert!(batch.is_complete());
        black_box(batch);
        Ok::<(), Box<dyn std::error::Error>>(())
    })?;
    report("otwrap processes map", processes, proc_runs);
    Ok(())
}
