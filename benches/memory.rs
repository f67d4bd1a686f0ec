//! Peak memory (VmHWM) of a batch of trivial 4-input points: each variant
//! runs in a fresh child process (this binary, started again), which reports
//! its peak resident set size after the batch. "inputs only" builds the
//! inputs and stops: what any program holding them needs. Run with
//! `cargo bench --bench memory`; OTWRAP_BENCH_POINTS (default 100,000)
//! changes the size. Prints the peaks; with OTWRAP_BENCH_JSON=path, also
//! appends them to that file as JSON lines.

#[path = "support/json.rs"]
mod json;

#[path = "support/stats.rs"]
mod stats;

use stats::env_usize;
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use otwrap::prelude::*;
use rayon::prelude::*;

const MODE_ENV: &str = "OTWRAP_BENCH_MEMORY_MODE";

fn model(x: &[f64; 4]) -> f64 {
    x[0] * x[2].powi(3) / (3.0 * x[1] * x[3])
}

#[parallelize(backend = "rayon", progress = "never")]
fn trivial(x: [f64; 4]) -> f64 {
    model(&x)
}

const CACHE_DIR: &str = "target/otwrap-bench-memory-cache";

#[parallelize(backend = "rayon", progress = "never")]
#[cached(disk = "target/otwrap-bench-memory-cache")]
fn trivial_cached(x: [f64; 4]) -> f64 {
    model(&x)
}

const MODES: &[&str] = &[
    "inputs only",
    "bare rayon par_iter",
    "otwrap rayon map",
    "otwrap serial map",
    "otwrap processes map (driver)",
    "otwrap rayon map, disk cache",
];

/// A `Vm*:` line of `/proc/self/status`, in kB.
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The child: one mode, then `RESULT <VmHWM kB> <start VmHWM kB> <seconds>`.
fn child(mode: &str, n: usize) -> Result<(), Box<dyn std::error::Error>> {
    let start_kb = status_kb("VmHWM:").unwrap_or(0);
    let inputs: Vec<[f64; 4]> = (0..n)
        .map(|k| [3e4 + k as f64 * 1e-3, 3e7, 255.0, 400.0])
        .collect();
    let workers = 2;
    if mode == "otwrap rayon map, disk cache" {
        // A store left by an earlier run (of any size) would be read and
        // cleared inside the measurement: start from none.
        match std::fs::remove_dir_all(CACHE_DIR) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    let start = Instant::now();
    match mode {
        "inputs only" => {
            black_box(&inputs);
        }
        "bare rayon par_iter" => {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(workers)
                .build()?;
            let out: Vec<f64> = pool.install(|| inputs.par_iter().map(model).collect());
            black_box(out);
        }
        "otwrap rayon map" => {
            let batch = trivial::runner().workers(workers).map(&inputs)?;
            assert!(batch.is_complete());
            black_box(batch);
        }
        "otwrap serial map" => {
            let batch = trivial::runner().backend(Backend::Serial).map(&inputs)?;
            assert!(batch.is_complete());
            black_box(batch);
        }
        "otwrap processes map (driver)" => {
            let batch = trivial::runner()
                .backend(Backend::Processes)
                .workers(workers)
                .map(&inputs)?;
            assert!(batch.is_complete());
            black_box(batch);
        }
        "otwrap rayon map, disk cache" => {
            let batch = trivial_cached::runner().workers(workers).map(&inputs)?;
            assert!(batch.is_complete());
            black_box(batch);
        }
        other => return Err(format!("unknown {MODE_ENV}={other}").into()),
    }
    let elapsed = start.elapsed();
    let peak = status_kb("VmHWM:").ok_or("no VmHWM in /proc/self/status")?;
    println!("RESULT {peak} {start_kb} {}", elapsed.as_secs_f64());
    Ok(())
}

#[otwrap::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = env_usize("OTWRAP_BENCH_POINTS", 100_000);
    if let Ok(mode) = std::env::var(MODE_ENV) {
        return child(&mode, n);
    }
    println!("peak memory (VmHWM) of a {n}-point batch of [f64; 4] -> f64, one child process per variant");
    let exe = std::env::current_exe()?;
    let mut inputs_kb = None;
    for mode in MODES {
        let out = Command::new(&exe).env(MODE_ENV, mode).output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) else {
            println!(
                "{mode:<32} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
            continue;
        };
        let fields: Vec<f64> = line
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        let [peak, start_kb, secs] = fields[..] else {
            println!("{mode:<32} unreadable result: {line}");
            continue;
        };
        let base = *inputs_kb.get_or_insert(peak);
        let above = peak - base;
        json::emit(
            "memory",
            mode,
            n,
            1,
            Duration::from_secs_f64(secs),
            &[
                ("vmhwm_kb", peak.into()),
                ("start_vmhwm_kb", start_kb.into()),
                ("above_inputs_kb", above.into()),
                (
                    "bytes_per_point_above_inputs",
                    (above * 1024.0 / n as f64).into(),
                ),
            ],
        );
        println!(
            "{mode:<32} VmHWM {:>9.1} MiB  (+{:>8.1} MiB over inputs only, {:>6.1} bytes/point)",
            peak / 1024.0,
            above / 1024.0,
            above * 1024.0 / n as f64
        );
    }
    Ok(())
}
