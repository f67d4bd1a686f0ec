//! The main job: the cantilever beam case of otwrapy and the EDF material.
//!
//! Each evaluation gets a work directory (`#[temp_workdir]`), fills the XML input template,
//! runs the external solver (`examples/beam-solver`, built on first use) and
//! reads the deviation back from `_beam_outputs_.xml`. The design of
//! experiments is the shipped CSV or a generated one of any size.
//!
//! ```text
//! cargo run --release --example beam                      # shipped doe.csv (100 points)
//! cargo run --release --example beam -- --generate 2000   # 2,000 points from the distributions
//! cargo run --release --example beam -- --negative-load-at 5   # point 5 fails, alone
//! OTWRAP_BACKEND=processes cargo run --release --example beam  # another backend, no recompiling
//! ```

use std::path::{Path, PathBuf};

use otwrap::coupling::{read_attribute, Capture, NumberFormat, Program};
use otwrap::prelude::*;
use otwrap::Sample;
use rand::SeedableRng;
use rand_distr::{Beta, Distribution, LogNormal, Normal, Uniform};

mod common;
use common::{solver, template, BoxError};

const SHIPPED_DOE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/beam/doe.csv");

/// The beam model: one point is (F, E, L, I). Each evaluation gets a fresh
/// work directory (kept when it fails), failures go to `beam.log`, and
/// results are cached on disk under `.otwrap/`, so a second run evaluates
/// nothing.
#[parallelize(backend = "rayon")]
#[cached(disk)]
#[temp_workdir(prefix = "beam-", cleanup = "on_success")]
#[debug_log("beam.log")]
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

/// A design of experiments from the distributions of the otwrapy beam example.
fn generate(n: usize, seed: u64) -> Result<Vec<[f64; 4]>, BoxError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // F: LogNormal(mean 30000, std 9000) shifted by its lower bound 15000.
    let (mean, std, gamma) = (30000.0_f64, 9000.0_f64, 15000.0_f64);
    let sigma2 = (1.0 + (std / (mean - gamma)).powi(2)).ln();
    let load = LogNormal::new((mean - gamma).ln() - sigma2 / 2.0, sigma2.sqrt())?;
    let young = Normal::new(3e7_f64, 1.5e6)?;
    let length = Uniform::new(250.0_f64, 260.0);
    let inertia = Beta::new(2.5_f64, 4.0)?;
    Ok((0..n)
        .map(|_| {
            [
                gamma + load.sample(&mut rng),
                young.sample(&mut rng).abs(),
                length.sample(&mut rng),
                310.0 + 140.0 * inertia.sample(&mut rng),
            ]
        })
        .collect())
}

struct Args {
    doe: Option<PathBuf>,
    generate: Option<usize>,
    seed: u64,
    output: PathBuf,
    negative_load_at: Option<usize>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        doe: None,
        generate: None,
        seed: 42,
        output: PathBuf::from("target/beam_results.csv"),
        negative_load_at: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |what: &str| it.next().ok_or_else(|| format!("{flag} needs {what}"));
        match flag.as_str() {
            "--doe" => args.doe = Some(value("a CSV file")?.into()),
            "--generate" => args.generate = Some(value("a number of points")?.parse()?),
            "--seed" => args.seed = value("a number")?.parse()?,
            "--output" => args.output = value("a CSV file")?.into(),
            "--negative-load-at" => args.negative_load_at = Some(value("a point index")?.parse()?),
            "-h" | "--help" => {
                println!(
                    "usage: beam [--doe FILE.csv | --generate N [--seed S]] [--output FILE.csv (default target/beam_results.csv)] [--negative-load-at K]\n\
                     backend and workers: OTWRAP_BACKEND, OTWRAP_WORKERS or otwrap.toml"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`; see --help").into()),
        }
    }
    Ok(args)
}

fn run() -> Result<(), BoxError> {
    let args = parse_args()?;
    let mut points = match args.generate {
        Some(n) => generate(n, args.seed)?,
        None => Sample::read_csv(args.doe.as_deref().unwrap_or(Path::new(SHIPPED_DOE)))?
            .to_arrays::<4>()?,
    };
    if let Some(k) = args.negative_load_at {
        let n = points.len();
        let point = points
            .get_mut(k)
            .ok_or(format!("--negative-load-at {k}: there are only {n} points"))?;
        point[0] = -point[0];
    }
    solver()?; // build or find it once, before the batch

    let runner = beam::runner();
    let settings = runner.settings()?;
    println!(
        "beam: {} points on the {} backend with {} workers",
        points.len(),
        settings.backend,
        settings.workers
    );
    let batch = beam::runner().map(&points)?;

    let mut results = Sample::new(
        ["Load", "Young modulus", "Length", "Inertia", "Deviation"]
            .map(String::from)
            .to_vec(),
    );
    for (x, y) in points.iter().zip(batch.results()) {
        let deviation = y.as_ref().copied().unwrap_or(f64::NAN);
        results.push(&[x[0], x[1], x[2], x[3], deviation])?;
    }
    if let Some(parent) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    results.write_csv(&args.output)?;

    for error in batch.errors().take(5) {
        eprintln!("{error}");
    }
    println!("{}", batch.summary());
    println!("results written to {}", args.output.display());
    Ok(())
}

#[otwrap::main]
fn main() {
    if let Err(e) = run() {
        eprintln!("beam: {e}");
        std::process::exit(1);
    }
}
