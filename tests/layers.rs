//! The per-evaluation layers — `#[temp_workdir]` and `#[debug_log]` — on the
//! beam case and on tiny models, under the rayon and processes backends and
//! through the single-point call.
//!
//! Worker-capable through `#[otwrap::main]` (hence no libtest harness:
//! libtest-mimic gives the same command line). Every work directory goes
//! under `target/otwrap-test-workdirs` and every log under
//! `target/otwrap-test-logs` (relative to the package root, the current
//! directory under `cargo test`); each test has its own prefix and log file.

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::coupling::{read_attribute, Capture, NumberFormat, Program, Template};
use otwrap::prelude::*;
use otwrap::{Location, Sample};

type BoxError = Box<dyn StdError + Send + Sync>;

const BASE: &str = "target/otwrap-test-workdirs";
const TEMPLATE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/beam/beam_input_template.xml"
);
const DOE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/beam/doe.csv");
const NEGATIVE_LOAD: &str = "F est strictement negatif";

const LOG_BEAM_OK: &str = "target/otwrap-test-logs/beam_ok.log";
const LOG_BEAM_NEG: &str = "target/otwrap-test-logs/beam_negative.log";
const LOG_BEAM_PROC: &str = "target/otwrap-test-logs/beam_processes.log";
const LOG_BEAM_SINGLE: &str = "target/otwrap-test-logs/beam_single.log";
const LOG_PANIC: &str = "target/otwrap-test-logs/panicky.log";
const LOG_ALL: &str = "target/otwrap-test-logs/every_evaluation.log";
const LOG_CRASH: &str = "target/otwrap-test-logs/crashy.log";

// ---------------------------------------------------------------- the beam

/// One beam evaluation in `dir`: template, solver, output file.
fn run_beam(x: [f64; 4], dir: &Path) -> Result<f64, BoxError> {
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

#[parallelize(backend = "rayon", workers = 2)]
#[temp_workdir(prefix = "ltbeamok-", base = "target/otwrap-test-workdirs")]
#[debug_log("target/otwrap-test-logs/beam_ok.log")]
fn beam_ok(x: [f64; 4], #[workdir] dir: &Path) -> Result<f64, BoxError> {
    run_beam(x, dir)
}

#[parallelize(backend = "rayon", workers = 2)]
#[temp_workdir(prefix = "ltbeamneg-", base = "target/otwrap-test-workdirs")]
#[debug_log("target/otwrap-test-logs/beam_negative.log")]
fn beam_negative(x: [f64; 4], #[workdir] dir: &Path) -> Result<f64, BoxError> {
    run_beam(x, dir)
}

/// Declared on rayon: the test switches it to processes at run time.
#[parallelize(backend = "rayon", workers = 2)]
#[temp_workdir(prefix = "ltbeamproc-", base = "target/otwrap-test-workdirs")]
#[debug_log("target/otwrap-test-logs/beam_processes.log")]
fn beam_processes(x: [f64; 4], #[workdir] dir: &Path) -> Result<f64, BoxError> {
    run_beam(x, dir)
}

#[parallelize(backend = "rayon", workers = 2)]
#[temp_workdir(prefix = "ltbeamsingle-", base = "target/otwrap-test-workdirs")]
#[debug_log("target/otwrap-test-logs/beam_single.log")]
fn beam_single(x: [f64; 4], #[workdir] dir: &Path) -> Result<f64, BoxError> {
    run_beam(x, dir)
}

fn template() -> Result<&'static Template, BoxError> {
    static T: OnceLock<Result<Template, String>> = OnceLock::new();
    T.get_or_init(|| Template::from_file(TEMPLATE).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| e.clone().into())
}

/// `target/debug/beam`, next to `target/debug/deps/layers-HASH`; built with
/// cargo when missing.
fn solver() -> Result<&'static Path, BoxError> {
    static SOLVER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    SOLVER
        .get_or_init(|| find_or_build_solver().map_err(|e| e.to_string()))
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(|e| e.clone().into())
}

fn find_or_build_solver() -> Result<PathBuf, BoxError> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target directory of the test binary")?;
    let solver = profile_dir.join("beam");
    if solver.is_file() {
        return Ok(solver);
    }
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "beam-solver", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .status()?;
    if !status.success() || !solver.is_file() {
        return Err(format!(
            "building the beam solver failed ({status}) or did not produce {}",
            solver.display()
        )
        .into());
    }
    Ok(solver)
}

fn doe() -> Result<Vec<[f64; 4]>, BoxError> {
    Ok(Sample::read_csv(DOE)?.to_arrays::<4>()?)
}

fn exact(x: &[f64; 4]) -> f64 {
    let [f, e, l, i] = *x;
    f * l.powi(3) / (3.0 * e * i)
}

/// `y` equals F·L³/(3·E·I) to the solver's `%e` precision (7 significant
/// digits); an infinite deviation (I = 0) must be exactly +inf.
fn check_deviation(k: usize, x: &[f64; 4], y: f64) -> Result<(), Failed> {
    let want = exact(x);
    if want.is_infinite() {
        return check(y == want, || format!("point {k}: {y} instead of {want}"));
    }
    let rel = ((y - want) / want).abs();
    check(rel <= 5e-7, || {
        format!("point {k}: {y} instead of {want} (relative error {rel:e})")
    })
}

// ------------------------------------------------------------- tiny models

#[parallelize(backend = "rayon", workers = 2)]
#[temp_workdir(
    prefix = "ltalways-",
    base = "target/otwrap-test-workdirs",
    cleanup = "always"
)]
fn cleanup_always(k: u32, #[workdir] dir: &Path) -> Result<u32, String> {
    write_and_fail_on_2(k, dir)
}

#[parallelize(backend = "rayon", workers = 2)]
#[temp_workdir(
    prefix = "ltonsuccess-",
    base = "target/otwrap-test-workdirs",
    cleanup = "on_success"
)]
fn cleanup_on_success(k: u32, #[workdir] dir: &Path) -> Result<u32, String> {
    write_and_fail_on_2(k, dir)
}

#[parallelize(backend = "rayon", workers = 2)]
#[temp_workdir(
    prefix = "ltnever-",
    base = "target/otwrap-test-workdirs",
    cleanup = "never"
)]
fn cleanup_never(k: u32, #[workdir] dir: &Path) -> Result<u32, String> {
    write_and_fail_on_2(k, dir)
}

fn write_and_fail_on_2(k: u32, dir: &Path) -> Result<u32, String> {
    fs::write(dir.join("out.txt"), k.to_string()).map_err(|e| e.to_string())?;
    if k == 2 {
        Err("k = 2 is refused".into())
    } else {
        Ok(k)
    }
}

#[parallelize(backend = "rayon", workers = 2)]
#[temp_workdir(
    prefix = "ltcopy-",
    base = "target/otwrap-test-workdirs",
    copy = ["Cargo.toml", "target/otwrap-test-copy-src/sub"]
)]
fn copier(k: u32, #[workdir] dir: &Path) -> Result<u32, String> {
    let manifest = fs::read_to_string(dir.join("Cargo.toml"))
        .map_err(|e| format!("Cargo.toml not copied into {}: {e}", dir.display()))?;
    if manifest != fs::read_to_string("Cargo.toml").map_err(|e| e.to_string())? {
        return Err("the copied Cargo.toml differs from the original".into());
    }
    if !dir.join("sub").is_dir() {
        return Err(format!("folder sub not copied into {}", dir.display()));
    }
    let x = fs::read_to_string(dir.join("sub/x.txt"))
        .map_err(|e| format!("sub/x.txt not copied into {}: {e}", dir.display()))?;
    if x != "copied folder content\n" {
        return Err(format!("sub/x.txt holds {x:?}"));
    }
    Ok(k)
}

#[parallelize(backend = "rayon", workers = 2)]
#[temp_workdir(
    prefix = "ltcopymissing-",
    base = "target/otwrap-test-workdirs",
    copy = ["target/otwrap-test-copy-src/does-not-exist"]
)]
fn copier_missing(k: u32, #[workdir] dir: &Path) -> u32 {
    let _ = dir;
    k
}

#[parallelize(backend = "rayon", workers = 2)]
#[temp_workdir(prefix = "ltpanic-", base = "target/otwrap-test-workdirs")]
#[debug_log("target/otwrap-test-logs/panicky.log")]
fn panicky(k: u32, #[workdir] dir: &Path) -> u32 {
    fs::write(dir.join("before-panic.txt"), k.to_string()).unwrap();
    if k == 3 {
        panic!("panicky model refuses k = 3");
    }
    k
}

/// Returns the current directory seen during the evaluation.
#[parallelize(backend = "rayon", workers = 2)]
#[temp_workdir(prefix = "ltcwd-", base = "target/otwrap-test-workdirs")]
fn cwd_probe(k: u32, #[workdir] dir: &Path) -> Result<PathBuf, String> {
    let _ = k;
    let cwd = std::env::current_dir().map_err(|e| e.to_string())?;
    let dir = fs::canonicalize(dir).map_err(|e| e.to_string())?;
    if cwd == dir {
        return Err(format!(
            "the current directory was moved to {}",
            dir.display()
        ));
    }
    Ok(cwd)
}

#[parallelize(backend = "rayon", workers = 2)]
#[debug_log("target/otwrap-test-logs/every_evaluation.log", all = true)]
fn logged_all(k: u32) -> Result<u32, String> {
    if k == 7 {
        Err("k = 7 is refused".into())
    } else {
        Ok(k)
    }
}

/// Aborts its worker process at k = 1 (processes backend only).
#[parallelize(backend = "processes", workers = 2)]
#[temp_workdir(prefix = "ltcrash-", base = "target/otwrap-test-workdirs")]
#[debug_log("target/otwrap-test-logs/crashy.log")]
fn crashy(k: u32, #[workdir] dir: &Path) -> u32 {
    fs::write(dir.join("before-crash.txt"), k.to_string()).unwrap();
    if k == 1 {
        std::process::abort();
    }
    k
}

// ----------------------------------------------------------------- helpers

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

/// The directories under BASE whose name starts with `prefix`, sorted.
/// Errors and logs name absolute paths.
fn abs(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn dirs_with_prefix(prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(BASE) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| abs(&Path::new(BASE).join(e.file_name())))
        .collect();
    dirs.sort();
    dirs
}

/// Removes what an earlier run of the same test left: its directories and log.
fn reset(prefix: &str, log: Option<&str>) -> Result<(), Failed> {
    for dir in dirs_with_prefix(prefix) {
        fs::remove_dir_all(&dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()))?;
    }
    log.map_or(Ok(()), remove_log)
}

fn remove_log(log: &str) -> Result<(), Failed> {
    match fs::remove_file(log) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {log}: {e}").into()),
    }
}

fn log_lines(log: &str) -> Vec<String> {
    fs::read_to_string(log)
        .map(|t| t.lines().map(String::from).collect())
        .unwrap_or_default()
}

/// The value of `key=` in a log line (bare or quoted, escapes kept).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    if let Some(quoted) = rest.strip_prefix('"') {
        let mut end = 0;
        let bytes = quoted.as_bytes();
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        quoted.get(..end)
    } else {
        Some(rest.split(' ').next().unwrap_or(rest))
    }
}

fn mode(path: &Path) -> Result<u32, Failed> {
    Ok(fs::metadata(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .permissions()
        .mode()
        & 0o777)
}

/// The checks shared by the negative-load tests (rayon and processes): only
/// point 5 fails, with the solver's message; its work dir is kept with
/// `beam.xml` in it; the log holds exactly one FAILED line for it; every
/// other work dir was removed.
fn check_negative_load(
    points: &[[f64; 4]],
    batch: &Batch<f64>,
    prefix: &str,
    log: &str,
) -> Result<Location, Failed> {
    let results = batch.results();
    check(results.len() == points.len(), || {
        format!("{} results", results.len())
    })?;
    for (k, (x, r)) in points.iter().zip(results).enumerate() {
        if k == 5 {
            continue;
        }
        match r {
            Ok(y) => check_deviation(k, x, *y)?,
            Err(e) => return Err(format!("point {k} should succeed: {e}").into()),
        }
    }
    let err = results[5]
        .as_ref()
        .err()
        .ok_or("point 5 (negative load) succeeded")?;
    check(err.index() == 5, || format!("index {}", err.index()))?;
    let text = err.to_string();
    check(
        matches!(err.failure(), PointFailure::Model { message } if message.contains(NEGATIVE_LOAD)),
        || format!("point 5: expected the solver's message, got {text}"),
    )?;
    check(text.contains(NEGATIVE_LOAD), || text.clone())?;
    let location = err.location().clone();
    let workdir = location
        .workdir
        .clone()
        .ok_or_else(|| format!("point 5 names no kept work dir: {text}"))?;
    check(workdir.is_dir(), || {
        format!("kept work dir {} does not exist", workdir.display())
    })?;
    check(workdir.join("beam.xml").is_file(), || {
        format!("no beam.xml in {}", workdir.display())
    })?;
    check(mode(&workdir)? == 0o700, || {
        format!("{} is not 0700", workdir.display())
    })?;
    check(location.log == Some(abs(Path::new(log))), || {
        format!("log in the location: {:?}, expected {log}", location.log)
    })?;
    let lines = log_lines(log);
    let failed: Vec<&String> = lines.iter().filter(|l| l.contains(" FAILED ")).collect();
    check(lines.len() == 1 && failed.len() == 1, || {
        format!("expected one FAILED line in {log}, got {lines:#?}")
    })?;
    let line = failed[0];
    check(
        line.contains(" point=5 ") && line.contains(NEGATIVE_LOAD),
        || format!("log line {line}"),
    )?;
    check(
        field(line, "workdir") == Some(&*workdir.to_string_lossy()),
        || {
            format!(
                "log line names another work dir than {}: {line}",
                workdir.display()
            )
        },
    )?;
    let left = dirs_with_prefix(prefix);
    check(left == vec![workdir.clone()], || {
        format!(
            "directories left under {BASE} with prefix {prefix}: {left:?}, expected only {}",
            workdir.display()
        )
    })?;
    let s = batch.summary();
    check(s.failed == 1 && s.evaluated == points.len(), || {
        format!("{s}")
    })?;
    Ok(location)
}

// ------------------------------------------------------------------- tests

/// 1. The shipped DOE through the three layers on rayon with 2 workers.
fn beam_doe_matches_the_formula() -> Result<(), Failed> {
    reset("ltbeamok-", Some(LOG_BEAM_OK))?;
    solver()?;
    let points = doe()?;
    check(points.len() == 100, || format!("{} points", points.len()))?;
    check(points.iter().any(|x| x[3] == 0.0), || {
        "the shipped DOE has no row with I = 0".into()
    })?;
    let batch = beam_ok::map(&points)?;
    let s = batch.summary();
    check(
        s.backend == "rayon" && s.workers == 2 && s.failed == 0 && s.evaluated == 100,
        || format!("{s}"),
    )?;
    let values = batch.values()?;
    for (k, (x, y)) in points.iter().zip(&values).enumerate() {
        check_deviation(k, x, *y)?;
    }
    let left = dirs_with_prefix("ltbeamok-");
    check(left.is_empty(), || {
        format!("work dirs left after a clean batch: {left:?}")
    })?;
    let lines = log_lines(LOG_BEAM_OK);
    check(lines.is_empty(), || {
        format!("failure log written without failures: {lines:?}")
    })
}

/// 2. A negative load at point 5 fails alone on rayon.
fn beam_negative_load_fails_alone() -> Result<(), Failed> {
    reset("ltbeamneg-", Some(LOG_BEAM_NEG))?;
    solver()?;
    let mut points = doe()?;
    points[5][0] = -points[5][0];
    let batch = beam_negative::map(&points)?;
    check(batch.summary().backend == "rayon", || {
        format!("{}", batch.summary())
    })?;
    check_negative_load(&points, &batch, "ltbeamneg-", LOG_BEAM_NEG)?;
    Ok(())
}

/// 3. The three cleanup policies.
fn cleanup_policies() -> Result<(), Failed> {
    let inputs: Vec<u32> = (0..4).collect();
    let expect_results = |batch: &Batch<u32>, name: &str| -> Result<(), Failed> {
        for k in [0usize, 1, 3] {
            check(batch.results()[k] == Ok(k as u32), || {
                format!("{name} point {k}: {:?}", batch.results()[k])
            })?;
        }
        check(batch.results()[2].is_err(), || {
            format!("{name} point 2 should fail")
        })
    };

    // always: nothing remains, the failure names no work dir.
    reset("ltalways-", None)?;
    let batch = cleanup_always::map(&inputs)?;
    expect_results(&batch, "always")?;
    let err = batch.results()[2].as_ref().unwrap_err();
    check(err.location().workdir.is_none(), || {
        format!("always: a removed dir is reported: {err}")
    })?;
    let left = dirs_with_prefix("ltalways-");
    check(left.is_empty(), || format!("always: left {left:?}"))?;

    // on_success: only the failed point's dir, the one named in its error.
    reset("ltonsuccess-", None)?;
    let batch = cleanup_on_success::map(&inputs)?;
    expect_results(&batch, "on_success")?;
    let err = batch.results()[2].as_ref().unwrap_err();
    let kept = err
        .location()
        .workdir
        .clone()
        .ok_or_else(|| format!("on_success: the failed dir is not reported: {err}"))?;
    let left = dirs_with_prefix("ltonsuccess-");
    check(left == vec![kept.clone()], || {
        format!(
            "on_success: left {left:?}, expected only {}",
            kept.display()
        )
    })?;
    check(
        fs::read_to_string(kept.join("out.txt")).ok().as_deref() == Some("2"),
        || format!("on_success: out.txt of point 2 not in {}", kept.display()),
    )?;
    check(mode(&kept)? == 0o700, || {
        format!("{} is not 0700", kept.display())
    })?;

    // never: every dir remains, one per point, each 0700 with its file.
    reset("ltnever-", None)?;
    let batch = cleanup_never::map(&inputs)?;
    expect_results(&batch, "never")?;
    let err = batch.results()[2].as_ref().unwrap_err();
    let kept = err
        .location()
        .workdir
        .clone()
        .ok_or_else(|| format!("never: the failed dir is not reported: {err}"))?;
    let left = dirs_with_prefix("ltnever-");
    check(left.len() == 4 && left.contains(&kept), || {
        format!(
            "never: left {left:?}, expected 4 including {}",
            kept.display()
        )
    })?;
    let mut seen = BTreeSet::new();
    for dir in &left {
        check(mode(dir)? == 0o700, || {
            format!("{} is not 0700", dir.display())
        })?;
        let content = fs::read_to_string(dir.join("out.txt"))
            .map_err(|e| format!("{}/out.txt: {e}", dir.display()))?;
        let name = dir.file_name().unwrap_or_default().to_string_lossy();
        check(name.starts_with(&format!("ltnever-{content}-")), || {
            format!("{} holds the file of point {content}", dir.display())
        })?;
        seen.insert(content);
    }
    check(seen.len() == 4, || format!("points seen: {seen:?}"))?;
    reset("ltnever-", None)
}

/// 4. `copy = [file, folder]` are in the work dir during the evaluation; a
///    missing copy source fails every point at setup and leaves nothing.
fn copy_files_and_folders() -> Result<(), Failed> {
    reset("ltcopy-", None)?;
    reset("ltcopymissing-", None)?;
    let src = Path::new("target/otwrap-test-copy-src/sub");
    fs::create_dir_all(src)?;
    fs::write(src.join("x.txt"), "copied folder content\n")?;
    let inputs: Vec<u32> = (0..6).collect();
    let batch = copier::map(&inputs)?;
    for (k, r) in batch.results().iter().enumerate() {
        if let Err(e) = r {
            return Err(format!("point {k}: {e}").into());
        }
    }
    check(batch.values()? == inputs, || "wrong values".into())?;
    let left = dirs_with_prefix("ltcopy-");
    check(left.is_empty(), || format!("left {left:?}"))?;

    let batch = copier_missing::map(&inputs[..2])?;
    for r in batch.results() {
        let err = r.as_ref().err().ok_or("a missing copy source succeeded")?;
        check(
            matches!(err.failure(), PointFailure::Setup { message } if message.contains("does-not-exist")),
            || format!("expected a setup failure naming the source: {err}"),
        )?;
    }
    let left = dirs_with_prefix("ltcopymissing-");
    check(left.is_empty(), || format!("failed setup left {left:?}"))
}

/// 5. The negative-load check under the processes backend: the worker
///    writes the log line and keeps the work dir.
fn beam_negative_load_under_processes() -> Result<(), Failed> {
    reset("ltbeamproc-", Some(LOG_BEAM_PROC))?;
    solver()?;
    let mut points = doe()?;
    points[5][0] = -points[5][0];
    let batch = beam_processes::runner()
        .backend(Backend::Processes)
        .map(&points)?;
    check(batch.summary().backend == "processes", || {
        format!("{}", batch.summary())
    })?;
    let location = check_negative_load(&points, &batch, "ltbeamproc-", LOG_BEAM_PROC)?;
    let pid = location.pid.ok_or("point 5 names no worker pid")?;
    check(pid != std::process::id(), || {
        "point 5 ran in the driver".into()
    })?;
    let lines = log_lines(LOG_BEAM_PROC);
    let logged = field(&lines[0], "pid").map(String::from);
    check(logged == Some(pid.to_string()), || {
        format!("log line written by pid {logged:?}, point ran in worker {pid}")
    })
}

/// 6. A panic keeps the work dir (on_success) and reaches the log.
fn panic_keeps_the_workdir() -> Result<(), Failed> {
    reset("ltpanic-", Some(LOG_PANIC))?;
    let inputs: Vec<u32> = (0..6).collect();
    let batch = panicky::map(&inputs)?;
    for k in [0usize, 1, 2, 4, 5] {
        check(batch.results()[k] == Ok(k as u32), || {
            format!("point {k}: {:?}", batch.results()[k])
        })?;
    }
    let err = batch.results()[3]
        .as_ref()
        .err()
        .ok_or("point 3 did not fail")?;
    check(
        matches!(err.failure(), PointFailure::Panic { message } if message.contains("panicky model refuses k = 3")),
        || format!("expected a panic: {err:?}"),
    )?;
    let kept = err
        .location()
        .workdir
        .clone()
        .ok_or_else(|| format!("no work dir in the location: {err}"))?;
    check(kept.join("before-panic.txt").is_file(), || {
        format!("{} was not kept", kept.display())
    })?;
    check(dirs_with_prefix("ltpanic-") == vec![kept.clone()], || {
        format!("left {:?}", dirs_with_prefix("ltpanic-"))
    })?;
    check(
        err.location().log == Some(abs(Path::new(LOG_PANIC))),
        || format!("log {:?}", err.location().log),
    )?;
    let lines = log_lines(LOG_PANIC);
    check(
        lines.len() == 1
            && lines[0].contains(" FAILED ")
            && lines[0].contains(" point=3 ")
            && lines[0].contains("panicky model refuses k = 3"),
        || format!("log {lines:#?}"),
    )
}

/// 7. No batch changes the current directory, during or after.
fn current_dir_is_unchanged() -> Result<(), Failed> {
    reset("ltcwd-", None)?;
    let before = std::env::current_dir()?;
    let inputs: Vec<u32> = (0..16).collect();
    for backend in [Backend::Rayon, Backend::Serial, Backend::Processes] {
        let batch = cwd_probe::runner().backend(backend).map(&inputs)?;
        let during = batch.values()?;
        check(during.iter().all(|d| *d == before), || {
            format!("{backend:?}: current dirs during evaluation {during:?}, expected {before:?}")
        })?;
        let after = std::env::current_dir()?;
        check(after == before, || {
            format!("{backend:?}: current dir {after:?} after the batch, {before:?} before")
        })?;
    }
    let left = dirs_with_prefix("ltcwd-");
    check(left.is_empty(), || format!("left {left:?}"))
}

/// 8. `all = true` logs every evaluation, with its duration.
fn log_every_evaluation() -> Result<(), Failed> {
    remove_log(LOG_ALL)?;
    let inputs: Vec<u32> = (0..20).collect();
    let batch = logged_all::map(&inputs)?;
    let lines = log_lines(LOG_ALL);
    check(lines.len() == inputs.len(), || {
        format!(
            "{} lines for {} points: {lines:#?}",
            lines.len(),
            inputs.len()
        )
    })?;
    let mut points = BTreeSet::new();
    for line in &lines {
        let point: usize = field(line, "point")
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("no point in {line}"))?;
        points.insert(point);
        let duration = field(line, "duration").unwrap_or_default();
        let secs = duration
            .strip_suffix('s')
            .filter(|d| d.split_once('.').is_some_and(|(_, frac)| frac.len() == 6))
            .and_then(|d| d.parse::<f64>().ok());
        check(secs.is_some_and(|s| s >= 0.0), || {
            format!("bad duration field in {line}")
        })?;
        check(field(line, "function") == Some("logged_all"), || {
            format!("function in {line}")
        })?;
        let (status, error) = if point == 7 {
            (
                " FAILED ",
                Some("the model returned an error: k = 7 is refused"),
            )
        } else {
            (" OK ", None)
        };
        check(line.contains(status), || format!("status of {line}"))?;
        check(field(line, "error") == error, || {
            format!("error field of {line}")
        })?;
    }
    check(points.len() == inputs.len(), || {
        format!("points {points:?}")
    })?;
    let err = batch.results()[7].as_ref().unwrap_err();
    check(err.location().log == Some(abs(Path::new(LOG_ALL))), || {
        format!("log in the location: {:?}", err.location().log)
    })
}

/// 9. The single-point call applies the layers and returns a point error.
fn single_point_call() -> Result<(), Failed> {
    reset("ltbeamsingle-", Some(LOG_BEAM_SINGLE))?;
    solver()?;
    let x = [
        35127.43356887938,
        27193269.86607188,
        252.13801743792388,
        386.7852920856028,
    ];
    let y = beam_single(x)?;
    check_deviation(0, &x, y)?;
    let left = dirs_with_prefix("ltbeamsingle-");
    check(left.is_empty(), || format!("left after success: {left:?}"))?;

    let negative = [-x[0], x[1], x[2], x[3]];
    let err = match beam_single(negative) {
        Err(otwrap::Error::Point(e)) => e,
        other => return Err(format!("expected a point error, got {other:?}").into()),
    };
    check(err.to_string().contains(NEGATIVE_LOAD), || err.to_string())?;
    let kept = err
        .location()
        .workdir
        .clone()
        .ok_or_else(|| format!("no kept work dir: {err}"))?;
    check(kept.join("beam.xml").is_file(), || {
        format!("no beam.xml in {}", kept.display())
    })?;
    check(
        dirs_with_prefix("ltbeamsingle-") == vec![kept.clone()],
        || format!("left {:?}", dirs_with_prefix("ltbeamsingle-")),
    )?;
    check(
        err.location().log == Some(abs(Path::new(LOG_BEAM_SINGLE))),
        || format!("log {:?}", err.location().log),
    )?;
    let lines = log_lines(LOG_BEAM_SINGLE);
    check(
        lines.len() == 1 && lines[0].contains(" FAILED ") && lines[0].contains(NEGATIVE_LOAD),
        || format!("log {lines:#?}"),
    )
}

/// 10. A point whose worker process dies
///     under `#[debug_log]` + `#[temp_workdir]` is a failed evaluation too:
///     it should be in the log and its (left-over) work dir reported.
fn worker_crash_is_logged() -> Result<(), Failed> {
    reset("ltcrash-", Some(LOG_CRASH))?;
    let batch = crashy::map(&[0, 1, 2])?;
    let err = batch.results()[1]
        .as_ref()
        .err()
        .ok_or("point 1 did not fail")?;
    check(
        matches!(err.failure(), PointFailure::WorkerDied { .. }),
        || format!("expected a crash: {err}"),
    )?;
    let left = dirs_with_prefix("ltcrash-");
    check(left.len() == 1, || format!("left {left:?}"))?;
    check(err.location().workdir.as_ref() == left.first(), || {
        format!("the crashed point's dir {left:?} is not in its error: {err}")
    })?;
    let lines = log_lines(LOG_CRASH);
    check(
        lines.len() == 1 && lines[0].contains(" FAILED ") && lines[0].contains(" point=1 "),
        || format!("the crash is not in {LOG_CRASH}: {lines:#?}"),
    )
}

#[otwrap::main]
fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "layers_beam_doe_matches_the_formula",
            beam_doe_matches_the_formula,
        ),
        Trial::test(
            "layers_beam_negative_load_fails_alone",
            beam_negative_load_fails_alone,
        ),
        Trial::test("layers_cleanup_policies", cleanup_policies),
        Trial::test("layers_copy_files_and_folders", copy_files_and_folders),
        Trial::test(
            "layers_beam_negative_load_under_processes",
            beam_negative_load_under_processes,
        ),
        Trial::test("layers_panic_keeps_the_workdir", panic_keeps_the_workdir),
        Trial::test("layers_current_dir_is_unchanged", current_dir_is_unchanged),
        Trial::test("layers_log_every_evaluation", log_every_evaluation),
        Trial::test("layers_single_point_call", single_point_call),
        Trial::test("layers_worker_crash_is_logged", worker_crash_is_logged),
    ];
    libtest_mimic::run(&args, trials).exit();
}
