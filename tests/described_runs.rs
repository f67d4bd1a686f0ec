//! Models described by data ([`ModelDescription`]) run as batches on the
//! backends, against a real `sh` solver: the same exact values everywhere, a
//! failing point that fails alone with its step named and its work directory
//! kept, a description refused before anything runs, and the cache keyed by
//! the description's bytes.
//!
//! Worker-capable through `#[otwrap::main]` (the `processes` workers are this
//! binary), hence no libtest harness.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[path = "support/services.rs"]
mod services;

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::config::RawValue;
use otwrap::described::{InputTemplate, ModelDescription, OutputReader, ReadRule, Step};
use otwrap::prelude::*;
use otwrap::{CacheLocation, DescribedRunner};

/// The solver: reads the rendered input, computes with awk (a child of its
/// own), writes its results; exits 3 for `x1 = 6.5`. Each run appends a
/// line to `$RUNS` (outside the work directory), so tests can count them.
const SOLVER: &str = r#"#!/bin/sh
set -e
echo run >> "$RUNS"
x1=$(awk '$1 == "x1" { print $3 }' input.txt)
x2=$(awk '$1 == "x2" { print $3 }' input.txt)
if [ "$x1" = "6.5" ]; then
    echo "solver: x1 = $x1 is out of the domain" >&2
    exit 3
fi
awk -v a="$x1" -v b="$x2" 'BEGIN { printf "y1 = %.17g\ny2 = %.17g\n", a * b + 1, a - b }' > output.txt
"#;

const TEMPLATE: &str = "# solver input\nx1 = @x1@\nx2 = @x2@\n";

/// Where every work directory of this binary goes (`OTWRAP_WORKDIR_BASE`,
/// set before any worker starts, so workers inherit it).
fn workdir_base() -> &'static Path {
    static BASE: OnceLock<tempfile::TempDir> = OnceLock::new();
    BASE.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
        .path()
}

/// A directory for one test's files, kept for the life of the process.
fn scratch() -> PathBuf {
    tempfile::tempdir().expect("a temporary directory").keep()
}

/// The description of the solver, named `name`, with its script written
/// into `dir` (copied into each work directory) and its runs counted in
/// `dir/runs`.
fn description(name: &str, dir: &Path, template: &str) -> ModelDescription {
    let script = dir.join("solver.sh");
    std::fs::write(&script, SOLVER).expect("write the solver");
    ModelDescription::new(name, ["x1", "x2"], ["y1", "y2"])
        .template(InputTemplate::inline("input.txt", template).variables(["x1", "x2"]))
        .copy(&script)
        .expect("an absolute path")
        .step(
            Step::new("sh")
                .args(["solver.sh"])
                .env("RUNS", dir.join("runs").to_str().expect("a UTF-8 path")),
        )
        .read(OutputReader::new(
            "y1",
            "output.txt",
            ReadRule::token("y1 ="),
        ))
        .read(OutputReader::new(
            "y2",
            "output.txt",
            ReadRule::token("y2 ="),
        ))
}

/// 20 points whose results are exact in binary floating point.
fn points() -> Vec<Vec<f64>> {
    (0..20)
        .map(|i| vec![f64::from(i) * 0.5, 3.0 - f64::from(i) * 0.25])
        .collect()
}

/// What the solver computes, in Rust.
fn expected(point: &[f64]) -> Vec<f64> {
    vec![point[0] * point[1] + 1.0, point[0] - point[1]]
}

/// The point the solver refuses (`x1 = 6.5`).
const FAILING: usize = 13;

fn runs(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("runs"))
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

fn entries_named(base: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(base)
        .expect("the work dir base")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

fn check(condition: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if condition {
        Ok(())
    } else {
        Err(what().into())
    }
}

/// Runs the solver's description over [`points`] on `backend` (with the
/// backend options `extra`, e.g. `("hosts", ...)` for ssh) and checks every
/// outcome: exact values, point 13 failing alone as a model failure naming
/// its step and exit status, with its work directory kept and named, and
/// the other work directories removed.
fn described_batch_on(backend: Backend, extra: &[(&str, RawValue)]) -> Result<(), Failed> {
    let dir = scratch();
    // Unique to this process: remote workers make their work dirs in the
    // hosts' default base, shared with earlier runs.
    let name = format!("solver-{backend}-{}", std::process::id());
    let model = description(&name, &dir, TEMPLATE);
    let points = points();
    let mut runner = DescribedRunner::new(&model)
        .backend(backend)
        .workers(3)
        .progress(ProgressMode::Never);
    for (key, value) in extra {
        runner = runner.set(key, value.clone());
    }
    let batch = runner.map(&points)?;

    let summary = batch.summary();
    check(summary.evaluated == 20 && summary.failed == 1, || {
        format!("{summary:?}")
    })?;
    check(runs(&dir) == 20, || {
        format!("the solver ran {} times", runs(&dir))
    })?;
    for (index, (point, result)) in points.iter().zip(batch.results()).enumerate() {
        if index == FAILING {
            continue;
        }
        let value = result.as_ref().map_err(|e| format!("point {index}: {e}"))?;
        check(value == &expected(point), || {
            format!("point {index}: {value:?} != {:?}", expected(point))
        })?;
    }

    let error = batch.results()[FAILING]
        .as_ref()
        .err()
        .ok_or("point 13 must fail")?;
    let message = error.to_string();
    check(
        matches!(error.failure(), PointFailure::Model { .. }),
        || format!("a solver's exit is a model failure: {message}"),
    )?;
    check(error.attempts().made == 1, || {
        format!("a model failure runs once: {message}")
    })?;
    for part in [
        format!("model `{name}`, step 1 of 1"),
        "out of the domain".to_string(),
        "3".to_string(),
    ] {
        check(message.contains(&part), || {
            format!("`{part}` missing from: {message}")
        })?;
    }
    let kept = error
        .location()
        .workdir
        .clone()
        .ok_or_else(|| format!("no work dir kept: {message}"))?;
    check(message.contains(&kept.display().to_string()), || {
        format!("the kept work dir is not named: {message}")
    })?;
    let input = std::fs::read_to_string(kept.join("input.txt"))?;
    check(input == "# solver input\nx1 = 6.5\nx2 = -0.25\n", || {
        format!("the kept input: {input:?}")
    })?;
    // Every other work directory was removed on success. (Remote workers
    // do not get this process's OTWRAP_WORKDIR_BASE: look where they made
    // theirs; loopback hosts share this filesystem.)
    let base = kept.parent().unwrap_or(workdir_base());
    let left = entries_named(base, &format!("{name}-"));
    check(left == vec![kept.clone()], || {
        format!("work dirs left: {left:?}, kept: {kept:?}")
    })?;
    std::fs::remove_dir_all(&kept)?;
    Ok(())
}

/// A description that does not validate stops the batch before any point
/// runs, with the reason.
fn an_invalid_description_is_refused_before_anything_runs() -> Result<(), Failed> {
    let dir = scratch();
    let mut model = description("half-read", &dir, TEMPLATE);
    // `y2` keeps no reader.
    model.readers.pop();
    let Err(error) = DescribedRunner::new(&model)
        .backend(Backend::Processes)
        .progress(ProgressMode::Never)
        .map(&points())
    else {
        return Err("a description without a reader for y2 must be refused".into());
    };
    let message = error.to_string();
    check(matches!(error, Error::Description(_)), || {
        format!("not a description error: {error:?}")
    })?;
    check(
        message.contains("half-read") && message.contains("y2"),
        || format!("the message must name the model and the output: {message}"),
    )?;
    check(runs(&dir) == 0, || "the solver ran".to_string())?;
    check(
        entries_named(workdir_base(), "half-read-").is_empty(),
        || "a work dir was made".to_string(),
    )
}

/// The cache hits for the same description and misses once any of it
/// changes (here the template's text).
fn the_cache_is_keyed_by_the_description() -> Result<(), Failed> {
    let dir = scratch();
    let store: &'static str = Box::leak(
        dir.join("cache")
            .to_str()
            .expect("a UTF-8 path")
            .to_owned()
            .into_boxed_str(),
    );
    let run = |template: &str| {
        DescribedRunner::new(&description("cached", &dir, template))
            .backend(Backend::Processes)
            .workers(2)
            .progress(ProgressMode::Never)
            .cache(CacheLocation::Disk(store))
            .cache_errors(true)
            .map(&points())
    };

    let first = run(TEMPLATE)?;
    check(first.summary().evaluated == 20, || {
        format!("{:?}", first.summary())
    })?;
    check(runs(&dir) == 20, || format!("{} runs", runs(&dir)))?;

    let second = run(TEMPLATE)?;
    let summary = second.summary();
    check(summary.evaluated == 0 && summary.cached == 20, || {
        format!("the same description must hit: {summary:?}")
    })?;
    check(runs(&dir) == 20, || format!("{} runs", runs(&dir)))?;
    for (index, point) in points().iter().enumerate() {
        if index == FAILING {
            continue;
        }
        check(
            second.results()[index].as_ref().ok() == Some(&expected(point)),
            || format!("point {index}: {:?}", second.results()[index]),
        )?;
    }
    let answered = second.results()[FAILING]
        .as_ref()
        .err()
        .ok_or("point 13 is a cached failure")?;
    check(answered.location().host == "cache", || {
        format!("{answered}")
    })?;

    let edited = run(&format!("{TEMPLATE}# edited\n"))?;
    check(edited.summary().evaluated == 20, || {
        format!("an edited template must miss: {:?}", edited.summary())
    })?;
    check(runs(&dir) == 40, || format!("{} runs", runs(&dir)))
}

#[otwrap::main]
fn main() {
    // Before any worker starts: they inherit it.
    std::env::set_var("OTWRAP_WORKDIR_BASE", workdir_base());
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test("described_serial", || {
            described_batch_on(Backend::Serial, &[])
        }),
        Trial::test("described_rayon", || {
            described_batch_on(Backend::Rayon, &[])
        }),
        Trial::test("described_processes", || {
            described_batch_on(Backend::Processes, &[])
        }),
        Trial::test("described_ssh", || {
            let Some(env) = services::ssh("described_ssh") else {
                return Ok(());
            };
            let hosts = format!("3/{}@{}:{}", env.user, env.hosts[0], env.port);
            described_batch_on(
                Backend::Ssh,
                &[
                    ("hosts", hosts.into()),
                    ("key", env.key.display().to_string().into()),
                    ("known_hosts", env.known_hosts.display().to_string().into()),
                ],
            )
        }),
        Trial::test(
            "described_an_invalid_description_is_refused_before_anything_runs",
            an_invalid_description_is_refused_before_anything_runs,
        ),
        Trial::test(
            "described_the_cache_is_keyed_by_the_description",
            the_cache_is_keyed_by_the_description,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
