//! The cache: lookups per second of a fully cached batch, and the cost the
//! cache adds to a batch with no hit. Run with `cargo bench --bench cache`;
//! OTWRAP_BENCH_POINTS and OTWRAP_BENCH_RUNS change the sizes. Medians;
//! with OTWRAP_BENCH_JSON=path, also appended to that file as JSON lines.

#[path = "support/json.rs"]
mod json;

#[path = "support/stats.rs"]
mod stats;

use stats::{env_usize, median};
use std::hint::black_box;
use std::time::{Duration, Instant};

use otwrap::prelude::*;

#[parallelize(backend = "rayon", progress = "never")]
fn plain(x: f64) -> f64 {
    x.mul_add(2.0, 1.0)
}

#[parallelize(backend = "rayon", progress = "never")]
#[cached(disk = "target/otwrap-bench-cache")]
fn on_disk(x: f64) -> f64 {
    x.mul_add(2.0, 1.0)
}

#[parallelize(backend = "rayon", progress = "never")]
#[cached]
fn in_memory(x: f64) -> f64 {
    x.mul_add(2.0, 1.0)
}

/// Times `first` (after `reset`) and `again` (fully cached), `runs` times each.
fn measure(
    runs: usize,
    reset: impl Fn() -> Result<(), otwrap::Error>,
    batch: impl Fn() -> Result<Summary, otwrap::Error>,
) -> Result<(Duration, Duration), otwrap::Error> {
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..runs {
        reset()?;
        let start = Instant::now();
        let s = batch()?;
        cold.push(start.elapsed());
        assert_eq!(s.cached, 0);
        let start = Instant::now();
        let s = batch()?;
        warm.push(start.elapsed());
        assert_eq!(s.evaluated, 0, "{s}");
    }
    Ok((median(cold), median(warm)))
}

#[otwrap::main]
fn main() -> Result<(), otwrap::Error> {
    let n = env_usize("OTWRAP_BENCH_POINTS", 100_000);
    let runs = env_usize("OTWRAP_BENCH_RUNS", 5);
    let inputs: Vec<f64> = (0..n).map(|i| i as f64 * 1e-3).collect();
    println!("{n} trivial points, median of {runs} runs");

    let mut plain_runs = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        black_box(plain::map(&inputs)?);
        plain_runs.push(start.elapsed());
    }
    let plain_t = median(plain_runs);
    let disk = on_disk::cache()?.ok_or_else(|| otwrap::Error::Config("no cache".into()))?;
    let memory = in_memory::cache()?.ok_or_else(|| otwrap::Error::Config("no cache".into()))?;
    let (disk_cold, disk_warm) = measure(
        runs,
        || disk.clear().map(drop).map_err(otwrap::Error::from),
        || Ok(on_disk::map(&inputs)?.summary().clone()),
    )?;
    let (mem_cold, mem_warm) = measure(
        runs,
        || memory.clear().map(drop).map_err(otwrap::Error::from),
        || Ok(in_memory::map(&inputs)?.summary().clone()),
    )?;
    let us = |t: Duration| t.as_secs_f64() / n as f64 * 1e6;
    let rate = |t: Duration| n as f64 / t.as_secs_f64();
    json::emit("cache", "no cache", n, runs, plain_t, &[]);
    println!(
        "{:<40} {:>10.1} ms",
        "no cache",
        plain_t.as_secs_f64() * 1e3
    );
    for (name, cold, warm) in [
        ("disk (sled)", disk_cold, disk_warm),
        ("memory", mem_cold, mem_warm),
    ] {
        json::emit(
            "cache",
            &format!("{name}, no hit"),
            n,
            runs,
            cold,
            &[("added_us_per_point", (us(cold) - us(plain_t)).into())],
        );
        json::emit(
            "cache",
            &format!("{name}, all hits"),
            n,
            runs,
            warm,
            &[("hits_per_s", rate(warm).into())],
        );
        println!(
            "{name:<12} no hits {:>9.1} ms (+{:.3} us/point over no cache); all hits {:>9.1} ms = {:>10.0} hits/s",
            cold.as_secs_f64() * 1e3,
            us(cold) - us(plain_t),
            warm.as_secs_f64() * 1e3,
            rate(warm)
        );
    }
    Ok(())
}
