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

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{solver, template, BoxError};
use otwrap::coupling::{read_attribute, Capture, NumberFormat, Program};
use otwrap::prelude::*;
use otwrap::Sample;
use rayon::prelude::*;

const DOE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/beam/doe.csv");
const TEMPLATE_TEXT: &str = include_str!("../examples/beam/beam_input_template.xml");

#[parallelize(backend = "rayon", progress = "never")]
#[temp_workdir(prefix = "otwrap-bench-beam-", cleanup = "always")]
fn beam(x: [f64; 4], #[workdir] dir: &Path) -> Result<f64, BoxError> {
    let [f, e, l, i] = x;
    template()?.fill_to(
        dir.join("beam.xml"),
        &[("@F@", f), ("@E@", e), ("@L@", l), ("@I@", i)],
        NumberFormat::Shortest,
    )?;
    Program::new(solver()?)
        .args(["-x", "beam.xml"])
        .current_dir(dir)
        .stdout(Capture::Discard)
        .stderr(Capture::Memory)
        .run()?;
    Ok(read_attribute(
        dir.join("_beam_outputs_.xml"),
        "outputs",
        "deviation",
    )?)
}

/// The same evaluation written by hand with std only.
fn by_hand(x: &[f64; 4], solver: &Path) -> Result<f64, BoxError> {
    let dir = std::env::temp_dir().join(format!(
        "hand-beam-{}-{:?}-{}",
        std::process::id(),
        std::thread::current().id(),
        x[0].to_bits()
    ));
    std::fs::create_dir(&dir)?;
    let text = TEMPLATE_TEXT
        .replace("@F@", &x[0].to_string())
        .replace("@E@", &x[1].to_string())
        .replace("@L@", &x[2].to_string())
        .replace("@I@", &x[3].to_string());
    std::fs::write(dir.join("beam.xml"), text)?;
    let out = Command::new(solver)
        .args(["-x", "beam.xml"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()?;
    if !out.status.success() {
        return Err(format!("solver failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let xml = std::fs::read_to_string(dir.join("_beam_outputs_.xml"))?;
    let start = xml.find("deviation=\"").ok_or("no deviation")? + "deviation=\"".len();
    let end = start + xml[start..].find('"').ok_or("no closing quote")?;
    let value = xml[start..end].parse()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(value)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn time(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed()
            })
            .collect(),
    )
}

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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
    });
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
    });
    let otwrap_serial = time(runs, || {
        let batch = beam::runner()
            .backend(Backend::Serial)
            .map(&points)
            .expect("batch runs");
        assert!(batch.is_complete(), "{:?}", batch.errors().next());
    });
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
    });
    let otwrap_rayon = time(runs, || {
        let batch = beam::runner()
            .workers(workers)
            .map(&points)
            .expect("batch runs");
        assert!(batch.is_complete());
    });
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
