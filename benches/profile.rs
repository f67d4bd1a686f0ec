//! One variant of a workload per process, for a profiler: the in-process
//! trivial model (bare rayon loop or otwrap `map`) and the beam evaluation
//! (hand-written or otwrap), so that `valgrind --tool=callgrind` or `perf`
//! sees only that variant. Not a benchmark by itself (it prints one time):
//!
//! ```text
//! cargo bench --no-run --bench profile     # prints the binary's path
//! OTWRAP_PROFILE=map OTWRAP_BENCH_POINTS=100000 \
//!     valgrind --tool=callgrind --collect-systime=nsec target/release/deps/profile-HASH
//! ```
//!
//! OTWRAP_PROFILE: `bare` | `map` | `serial` (trivial model, 2 workers) or
//! `beam-hand` | `beam-serial` | `beam-hand-rayon` | `beam-rayon` (beam points).

#[path = "../examples/beam/common.rs"]
mod common;

use std::hint::black_box;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{solver, template, BoxError};
use otwrap::coupling::{read_attribute, Capture, NumberFormat, Program};
use otwrap::prelude::*;
use otwrap::Sample;
use rayon::prelude::*;

const DOE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/beam/doe.csv");
const TEMPLATE_TEXT: &str = include_str!("../examples/beam/beam_input_template.xml");

#[parallelize(backend = "rayon", progress = "never")]
fn trivial(x: f64) -> f64 {
    x.mul_add(2.0, 1.0)
}

#[parallelize(backend = "rayon", progress = "never")]
#[temp_workdir(prefix = "otwrap-profile-beam-", cleanup = "always")]
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

/// The hand-written evaluation of benches/beam.rs.
fn by_hand(x: &[f64; 4], solver: &Path) -> Result<f64, BoxError> {
    let dir = std::env::temp_dir().join(format!(
        "hand-profile-beam-{}-{:?}-{}",
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

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[otwrap::main]
fn main() -> Result<(), BoxError> {
    let variant = std::env::var("OTWRAP_PROFILE").unwrap_or_else(|_| "map".into());
    let workers = 2;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(workers)
        .build()?;
    let start = Instant::now();
    let n;
    if variant.starts_with("beam") {
        n = env_usize("OTWRAP_BENCH_POINTS", 200);
        let doe = Sample::read_csv(DOE)?.to_arrays::<4>()?;
        let points: Vec<[f64; 4]> = (0..n)
            .map(|k| {
                let mut p = doe[k % doe.len()];
                p[0] += k as f64 * 1e-6;
                p
            })
            .collect();
        let solver = solver()?;
        let ok = match variant.as_str() {
            "beam-hand" => points.iter().filter(|x| by_hand(x, solver).is_ok()).count(),
            "beam-hand-rayon" => pool.install(|| {
                points
                    .par_iter()
                    .filter(|x| by_hand(x, solver).is_ok())
                    .count()
            }),
            "beam-serial" => beam::runner()
                .backend(Backend::Serial)
                .map(&points)?
                .values()?
                .len(),
            "beam-rayon" => beam::runner()
                .workers(workers)
                .map(&points)?
                .values()?
                .len(),
            other => return Err(format!("unknown OTWRAP_PROFILE={other}").into()),
        };
        if ok != n {
            return Err(format!("{ok} of {n} evaluations succeeded").into());
        }
    } else {
        n = env_usize("OTWRAP_BENCH_POINTS", 1_000_000);
        let inputs: Vec<f64> = (0..n).map(|i| i as f64 * 1e-3).collect();
        match variant.as_str() {
            "bare" => {
                let out: Vec<f64> =
                    pool.install(|| inputs.par_iter().map(|x| trivial(*x)).collect());
                black_box(out);
            }
            "map" => {
                black_box(trivial::runner().workers(workers).map(&inputs)?);
            }
            "serial" => {
                black_box(trivial::runner().backend(Backend::Serial).map(&inputs)?);
            }
            other => return Err(format!("unknown OTWRAP_PROFILE={other}").into()),
        }
    }
    println!(
        "{variant}: {n} points in {:.3} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
