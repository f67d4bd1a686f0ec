//! The cache: lookups per second of a fully cached batch, and the cost the
//! cache adds to a batch with no hit. Run with `cargo bench --bench cache`;
//! OTWRAP_BENCH_POINTS and OTWRAP_BENCH_RUNS change the sizes. Medians;
//! with OTWRAP_BENCH_JSON=path, also appended to that file as JSON lines.
//!
//! `cargo bench --bench cache -- kill` measures instead what a killed run
//! loses: a child process runs 2,000 points of 5 ms on 2 workers with a disk
//! cache, each point appending its index to a log once evaluated; it is
//! SIGKILLed after 2 s and run again; the points in both logs are the ones
//! evaluated twice. OTWRAP_BENCH_RUNS rounds.

#[path = "support/json.rs"]
mod json;

#[path = "support/stats.rs"]
mod stats;

use stats::{env_usize, median};
use std::collections::BTreeSet;
use std::hint::black_box;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
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

/// Where the killed run's model appends the index of each point it evaluates.
const KILL_LOG_ENV: &str = "OTWRAP_BENCH_KILL_LOG";
const KILL_POINTS: u32 = 2000;
const KILL_AFTER: Duration = Duration::from_secs(2);

/// 5 ms per point; appends its index to `$OTWRAP_BENCH_KILL_LOG` once done.
#[parallelize(backend = "rayon", workers = 2, progress = "never")]
#[cached(disk)]
fn killed_point(i: u32) -> Result<u64, String> {
    std::thread::sleep(Duration::from_millis(5));
    let log = std::env::var_os(KILL_LOG_ENV).ok_or("no log")?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .and_then(|mut f| f.write_all(format!("{i}\n").as_bytes()))
        .map_err(|e| e.to_string())?;
    Ok(u64::from(i) * 3)
}

fn logged_points(log: &Path) -> BTreeSet<u32> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn kill_child(cache: &Path, log: &Path) -> BenchResult<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env(KILL_LOG_ENV, log)
        .env("OTWRAP_CACHE_DIR", cache)
        .stdout(Stdio::null());
    Ok(command)
}

/// The `kill` mode: rounds of run, SIGKILL after 2 s, run again.
fn measure_kill(runs: usize) -> BenchResult<()> {
    println!(
        "{KILL_POINTS} points of 5 ms on 2 workers, SIGKILL after {KILL_AFTER:?}, restart; {runs} rounds"
    );
    let mut redone_all = Vec::new();
    for round in 0..runs {
        let dir = tempfile::tempdir()?;
        let cache = dir.path().join("cache");
        let (log1, log2) = (dir.path().join("run1.log"), dir.path().join("run2.log"));
        let mut first = kill_child(&cache, &log1)?.spawn()?;
        std::thread::sleep(KILL_AFTER);
        first.kill()?;
        let status = first.wait()?;
        if status.signal() != Some(libc::SIGKILL) {
            return Err(format!("the first run ended before the kill: {status}").into());
        }
        let done = logged_points(&log1);
        let status = kill_child(&cache, &log2)?.status()?;
        if !status.success() {
            return Err(format!("the restart failed: {status}").into());
        }
        let again = logged_points(&log2);
        let redone = done.intersection(&again).count();
        if done.len() + again.len() - redone != KILL_POINTS as usize {
            return Err(format!(
                "{} + {} evaluations, {redone} in both: some point was never evaluated",
                done.len(),
                again.len()
            )
            .into());
        }
        println!(
            "round {round}: {} points finished before the kill, {redone} of them evaluated again",
            done.len()
        );
        redone_all.push(redone);
    }
    redone_all.sort_unstable();
    println!(
        "evaluated again after the kill: median {}, max {} (of {runs} rounds)",
        redone_all[redone_all.len() / 2],
        redone_all[redone_all.len() - 1]
    );
    Ok(())
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
fn main() -> BenchResult<()> {
    let runs = env_usize("OTWRAP_BENCH_RUNS", 5);
    if std::env::var_os(KILL_LOG_ENV).is_some() {
        // The child of the `kill` mode.
        let points: Vec<u32> = (0..KILL_POINTS).collect();
        killed_point::map(&points)?
            .into_values()
            .map_err(otwrap::Error::Point)?;
        return Ok(());
    }
    if std::env::args().any(|a| a == "kill") {
        return measure_kill(runs);
    }
    let n = env_usize("OTWRAP_BENCH_POINTS", 100_000);
    let inputs: Vec<f64> = (0..n).map(|i| i as f64 * 1e-3).collect();
    println!("{n} trivial points, median of {runs} runs");

    let mut plain_runs = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        black_box(plain::map(&inputs)?);
        plain_runs.push(start.elapsed());
    }
    let plain_t = median(plain_runs);
    // Opening counts the entries a previous run left (the count check).
    let start = Instant::now();
    let disk = on_disk::cache()?.ok_or_else(|| otwrap::Error::Config("no cache".into()))?;
    let open_t = start.elapsed();
    println!(
        "disk store opened in {:.1} ms holding {} entries",
        open_t.as_secs_f64() * 1e3,
        disk.count()?
    );
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
