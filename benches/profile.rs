//! One variant of a workload per process, for a profiler: the in-process
//! trivial model (bare rayon loop or otwrap `map`) and the beam evaluation
//! (hand-written or otwrap), so that `valgrind --tool=callgrind` or `perf`
//! sees only that variant. Not a benchmark by itself (it prints one time):
//!
//! ```text
//! cargo bench --no-run --bench profile     # prints the binary's path
//! OTWRAP_BENCH_PROFILE=map OTWRAP_BENCH_POINTS=100000 \
//!     valgrind --tool=callgrind --collect-systime=nsec target/release/deps/profile-HASH
//! ```
//!
//! OTWRAP_BENCH_PROFILE: `bare` | `map` | `serial` (trivial model, 2 workers) or
//! `beam-hand` | `beam-serial` | `beam-hand-rayon` | `beam-rayon` (beam points).

#[path = "../examples/beam/common.rs"]
mod common;

#[path = "support/beam_model.rs"]
mod beam_model;
#[path = "support/stats.rs"]
mod stats;

use beam_model::{beam, by_hand, DOE};
use stats::env_usize;
use std::hint::black_box;
use std::time::Instant;

use common::{solver, BoxError};
use otwrap::prelude::*;
use otwrap::Sample;
use rayon::prelude::*;

#[parallelize(backend = "rayon", progress = "never")]
fn trivial(x: f64) -> f64 {
    x.mul_add(2.0, 1.0)
}

#[otwrap::main]
fn main() -> Result<(), BoxError> {
    let variant = std::env::var("OTWRAP_BENCH_PROFILE").unwrap_or_else(|_| "map".into());
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
            other => return Err(format!("unknown OTWRAP_BENCH_PROFILE={other}").into()),
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
            other => return Err(format!("unknown OTWRAP_BENCH_PROFILE={other}").into()),
        }
    }
    println!(
        "{variant}: {n} points in {:.3} ms",
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
