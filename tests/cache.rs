//! Behaviour of `#[cached]`: second runs, repeated points, cached errors,
//! the memory cache, single calls, a run killed with SIGKILL and resumed,
//! body/version invalidation, undecodable entries, two processes opening
//! one store, `depends` (files whose contents enter the keys), and a cache
//! on a full disk.
//!
//! The binary is worker-capable (`#[otwrap::main]`) and re-runs itself as a
//! child process (`OTWRAP_TEST_CACHE_CHILD`) for the tests that need a second
//! process. Each disk-cached model used in this process has its own directory
//! under `target/otwrap-test-cache/` (relative to the package root, the cwd of
//! `cargo test`), cleared at the start of its trial; the model used by child
//! processes uses the default location, moved by `OTWRAP_CACHE_DIR` (set only
//! in the children, never in this process).

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::__private::{CacheLocation, CacheSpec, ModelCache};
use otwrap::prelude::*;
use otwrap::{EvalContext, Model, Options};
use otwrap_runtime::cache::key::KeyPrefix;
use otwrap_runtime::cache::store::{CacheError, Entry};

// ---------------------------------------------------------------------------
// Models.

static SMOOTH_EVALS: AtomicUsize = AtomicUsize::new(0);

#[parallelize(backend = "rayon", workers = 2)]
#[cached(disk = "target/otwrap-test-cache/smooth")]
fn smooth(x: f64) -> f64 {
    SMOOTH_EVALS.fetch_add(1, Ordering::SeqCst);
    (x * 1.7).sin() * x + 0.25
}

static REPEATED_EVALS: AtomicUsize = AtomicUsize::new(0);

#[parallelize(backend = "rayon", workers = 2)]
#[cached]
fn repeated(k: u32) -> Result<u32, String> {
    REPEATED_EVALS.fetch_add(1, Ordering::SeqCst);
    if k == 13 {
        return Err("13 is unlucky".to_string());
    }
    Ok(k * 3 + 1)
}

static FLAKY_EVALS: AtomicUsize = AtomicUsize::new(0);

#[parallelize(backend = "serial")]
#[cached(disk = "target/otwrap-test-cache/flaky")]
fn flaky(k: u32) -> Result<u32, String> {
    FLAKY_EVALS.fetch_add(1, Ordering::SeqCst);
    if k.is_multiple_of(5) {
        return Err(format!("{k} is a multiple of 5"));
    }
    Ok(k + 100)
}

static STUBBORN_EVALS: AtomicUsize = AtomicUsize::new(0);

#[parallelize(backend = "serial")]
#[cached(disk = "target/otwrap-test-cache/stubborn", cache_errors = true)]
fn stubborn(k: u32) -> Result<u32, String> {
    STUBBORN_EVALS.fetch_add(1, Ordering::SeqCst);
    if k.is_multiple_of(5) {
        return Err(format!("{k} is a multiple of 5"));
    }
    Ok(k + 100)
}

static MEMORY_EVALS: AtomicUsize = AtomicUsize::new(0);

#[parallelize(backend = "serial")]
#[cached]
fn in_memory(x: u64) -> u64 {
    MEMORY_EVALS.fetch_add(1, Ordering::SeqCst);
    x * x
}

static SINGLE_EVALS: AtomicUsize = AtomicUsize::new(0);

#[parallelize(backend = "rayon", workers = 2)]
#[cached(disk = "target/otwrap-test-cache/single")]
fn single(x: u32) -> Result<u64, String> {
    SINGLE_EVALS.fetch_add(1, Ordering::SeqCst);
    Ok(u64::from(x) * 1000 + 7)
}

/// Evaluated in worker processes; the cache stays in the driver.
#[parallelize(backend = "processes", workers = 2)]
#[cached(disk = "target/otwrap-test-cache/in-processes")]
fn in_processes(x: u32) -> u32 {
    x * 7
}

static DAMAGED_EVALS: AtomicUsize = AtomicUsize::new(0);

#[parallelize(backend = "serial")]
#[cached(disk = "target/otwrap-test-cache/damaged")]
fn damaged(x: u32) -> f64 {
    DAMAGED_EVALS.fetch_add(1, Ordering::SeqCst);
    f64::from(x) / 4.0
}

/// Two versions of one function (same signature tokens, different bodies),
/// in two modules so they can coexist; plus v1 again with only a comment and
/// whitespace changed. They share one cache directory.
mod edit_v1 {
    use otwrap::prelude::*;

    pub static EVALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    #[parallelize(backend = "serial")]
    #[cached(disk = "target/otwrap-test-cache/edited")]
    pub fn response(x: u32) -> u32 {
        EVALS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        x + 1
    }
}

mod edit_v2 {
    use otwrap::prelude::*;

    pub static EVALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    #[parallelize(backend = "serial")]
    #[cached(disk = "target/otwrap-test-cache/edited")]
    pub fn response(x: u32) -> u32 {
        EVALS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        x + 2
    }
}

mod edit_v1_comment {
    use otwrap::prelude::*;

    pub static EVALS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    #[parallelize(backend = "serial")]
    #[cached(disk = "target/otwrap-test-cache/edited")]
    pub fn response(x: u32) -> u32 {
        // A comment is not a token: the hash must not change.
        EVALS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);

        x + 1
    }
}

/// `edit_v1::response` after its body was edited: the same id (so the same
/// entries would be found if the key ignored the body), v2's body and body
/// hash.
struct Edited;
/// `edit_v1::response` unchanged (same id, same spec): must hit.
struct Unchanged;
/// `edit_v1::response` with `version = "2"`.
struct Bumped;

static HAND_EVALS: AtomicUsize = AtomicUsize::new(0);

fn v1_spec() -> CacheSpec {
    <edit_v1::response::Model as Model>::cache().expect("edit_v1 is cached")
}

macro_rules! hand_model {
    ($ty:ident, $name:literal, $body:expr, $spec:expr) => {
        impl Model for $ty {
            type Input = u32;
            type Output = u32;
            const ID: &'static str = <edit_v1::response::Model as Model>::ID;
            const NAME: &'static str = $name;
            fn attribute_options() -> Options {
                let mut o = Options::new();
                o.backend = Some(Backend::Serial);
                o
            }
            fn evaluate(x: &u32, _ctx: &EvalContext) -> Result<u32, otwrap::Failed> {
                HAND_EVALS.fetch_add(1, Ordering::SeqCst);
                let body: fn(u32) -> u32 = $body;
                Ok(body(*x))
            }
            fn cache() -> Option<CacheSpec> {
                Some($spec)
            }
        }
    };
}

hand_model!(
    Edited,
    "edited",
    |x| x + 2,
    CacheSpec {
        body_hash: <edit_v2::response::Model as Model>::cache()
            .expect("edit_v2 is cached")
            .body_hash,
        ..v1_spec()
    }
);
hand_model!(Unchanged, "unchanged", |x| x + 1, v1_spec());
hand_model!(
    Bumped,
    "bumped",
    |x| x + 1,
    CacheSpec {
        version: "2",
        ..v1_spec()
    }
);

// ---------------------------------------------------------------------------
// The model run by child processes (killed run, locked store).

const CHILD_ENV: &str = "OTWRAP_TEST_CACHE_CHILD";
const LOG_ENV: &str = "OTWRAP_TEST_CACHE_LOG";
const HOLDING: &str = "otwrap-test-child-holds-the-cache";
const KILL_POINTS: u32 = 600;
const KILL_AFTER: usize = 150;
const KILL_WORKERS: usize = 2;
/// How long the killed run's model takes per point. 20 ms, not the 5 ms of
/// the benchmark (`cargo bench --bench cache -- kill`), so that on a busy
/// shared machine a driver thread descheduled for a few milliseconds or a
/// slow fsync does not add points in flight: the bound below is then a count
/// the design guarantees, not a bet on timing.
const POINT_MS: u64 = 20;
/// Points recorded before the kill that may be evaluated again (group
/// commit): those in flight (recorded by the model, not yet stored: one per
/// worker) plus those stored during the flush the kill interrupted (a flush
/// takes much less than a point, so at most one per worker).
const REDO_BOUND: usize = 2 * KILL_WORKERS;

fn slow_value(i: u32) -> u64 {
    u64::from(i) * u64::from(i) + 7
}

/// [`POINT_MS`] per point; appends its index to `$OTWRAP_TEST_CACHE_LOG`,
/// one line per evaluation, after evaluating and just before returning.
#[parallelize(backend = "rayon", workers = 2)]
#[cached(disk)]
fn slow_point(i: u32) -> u64 {
    std::thread::sleep(Duration::from_millis(POINT_MS));
    if let Some(log) = std::env::var_os(LOG_ENV) {
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the evaluation log");
        file.write_all(format!("{i}\n").as_bytes())
            .expect("append to the evaluation log");
    }
    slow_value(i)
}

const FULL_POINTS: u32 = 3000;

fn bulky_value(i: u32) -> String {
    format!("{i:>1024}")
}

/// A result of about 1 KiB, so that a few hundred fill a small disk.
#[parallelize(backend = "rayon", workers = 2)]
#[cached(disk)]
fn bulky(i: u32) -> String {
    bulky_value(i)
}

/// A child's batch: every point `i` must be `expected(i)`; prints the
/// counts. The exit code otherwise (2: no batch, 4: a wrong value).
fn checked_summary<T: PartialEq + std::fmt::Debug>(
    batch: Result<otwrap::Batch<T>, otwrap::Error>,
    expected: impl Fn(u32) -> T,
) -> Result<otwrap::Summary, i32> {
    let batch = batch.map_err(|e| {
        eprintln!("batch did not start: {e}");
        2
    })?;
    for (i, r) in batch.results().iter().enumerate() {
        if r.as_ref().ok() != Some(&expected(i as u32)) {
            eprintln!("point {i}: wrong result {r:?}");
            return Err(4);
        }
    }
    let s = batch.summary().clone();
    println!(
        "counts evaluated={} cached={} failed={} total={}",
        s.evaluated, s.cached, s.failed, s.total
    );
    Ok(s)
}

/// What a child process does; returns its exit code.
fn child(mode: &str) -> i32 {
    match mode {
        // Run the whole batch, check every value, print the counts.
        "run" => {
            let points: Vec<u32> = (0..KILL_POINTS).collect();
            let batch = slow_point::runner()
                .backend(Backend::Rayon)
                .workers(KILL_WORKERS)
                .progress(ProgressMode::Never)
                .map(&points);
            match checked_summary(batch, slow_value) {
                Ok(s) => {
                    println!("summary {s}");
                    0
                }
                Err(code) => code,
            }
        }
        // A batch whose results do not fit in the cache's disk: every result
        // must come back all the same.
        "full" => {
            let points: Vec<u32> = (0..FULL_POINTS).collect();
            let batch = bulky::runner().progress(ProgressMode::Never).map(&points);
            match checked_summary(batch, bulky_value) {
                Ok(s) => {
                    println!("store failures {}", s.cache_store_failures);
                    0
                }
                Err(code) => code,
            }
        }
        // Open the store and keep it until stdin closes.
        "hold" => {
            let cache = match slow_point::cache() {
                Ok(Some(cache)) => cache,
                other => {
                    eprintln!("cannot open the cache: {other:?}");
                    return 2;
                }
            };
            println!("{HOLDING}");
            std::io::stdout().flush().expect("flush stdout");
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
            drop(cache);
            0
        }
        // A short batch: exit 3 with the error on stderr if it cannot start.
        "batch" => match slow_point::runner()
            .backend(Backend::Serial)
            .map(&[1, 2, 3])
        {
            Ok(batch) => {
                let ok =
                    batch.values().ok() == Some(vec![slow_value(1), slow_value(2), slow_value(3)]);
                if ok {
                    0
                } else {
                    eprintln!("wrong results: {}", batch.summary());
                    4
                }
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!(
                    "locked variant: {}",
                    matches!(e, otwrap::Error::Cache(CacheError::Locked { .. }))
                );
                3
            }
        },
        other => {
            eprintln!("unknown child mode {other:?}");
            2
        }
    }
}

fn child_command(mode: &str, cache_dir: &Path, log: Option<&Path>) -> Result<Command, Failed> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .env(CHILD_ENV, mode)
        .env("OTWRAP_CACHE_DIR", cache_dir)
        .env_remove(LOG_ENV)
        .stdin(Stdio::null());
    if let Some(log) = log {
        command.env(LOG_ENV, log);
    }
    Ok(command)
}

/// The point indices recorded in an evaluation log (a line cut by the kill
/// is ignored).
fn read_points(log: &Path) -> Vec<u32> {
    let Ok(text) = fs::read_to_string(log) else {
        return Vec::new();
    };
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

/// `evaluated=.. cached=.. failed=.. total=..` from a child's stdout.
fn child_counts(stdout: &str) -> Result<[usize; 4], Failed> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("counts "))
        .ok_or_else(|| format!("no counts in child output: {stdout}"))?;
    let mut out = [0; 4];
    for (slot, field) in out.iter_mut().zip(line.split_whitespace().skip(1)) {
        *slot = field
            .split_once('=')
            .and_then(|(_, v)| v.parse().ok())
            .ok_or_else(|| format!("bad counts line: {line}"))?;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Models with `depends`, run by child processes whose current directory is a
// temporary project: `solver/wall.py` holds `FACTOR = k`, `templates/` holds
// the input template(s). The model reads the factor at evaluation time, so a
// stale cache hit would show as a wrong value.

static WALL_EVALS: AtomicUsize = AtomicUsize::new(0);

/// The factor written in `solver/wall.py` (relative to the current directory).
fn wall_factor() -> Result<u64, String> {
    let text = fs::read_to_string("solver/wall.py").map_err(|e| format!("solver/wall.py: {e}"))?;
    text.trim()
        .strip_prefix("FACTOR = ")
        .and_then(|k| k.parse().ok())
        .ok_or_else(|| format!("solver/wall.py holds no factor: {text:?}"))
}

#[parallelize(backend = "rayon", workers = 2)]
#[cached(disk, depends = ["solver/wall.py", "templates"])]
fn wall(x: u32) -> Result<u64, String> {
    WALL_EVALS.fetch_add(1, Ordering::SeqCst);
    Ok(u64::from(x) * wall_factor()?)
}

#[parallelize(backend = "serial")]
#[cached(depends = ["solver/wall.py"])]
fn wall_in_memory(x: u32) -> Result<u64, String> {
    WALL_EVALS.fetch_add(1, Ordering::SeqCst);
    Ok(u64::from(x) * wall_factor()?)
}

#[parallelize(backend = "serial")]
#[cached(disk = "wall-cache", depends = ["solver/wall.py"])]
fn wall_at_path(x: u32) -> Result<u64, String> {
    WALL_EVALS.fetch_add(1, Ordering::SeqCst);
    Ok(u64::from(x) * wall_factor()?)
}

const WALL_POINTS: u32 = 50;
const WALL_MEMO_POINTS: u32 = 10_000;

/// Checks that every value is `x * factor` with today's factor.
fn wall_values_are_current(
    values: &[Result<u64, PointError>],
    inputs: &[u32],
) -> Result<(), String> {
    let factor = wall_factor()?;
    for (r, &x) in values.iter().zip(inputs) {
        if r.as_ref().ok() != Some(&(u64::from(x) * factor)) {
            return Err(format!(
                "point {x}: {r:?}, expected {} (factor {factor})",
                u64::from(x) * factor
            ));
        }
    }
    Ok(())
}

/// One batch of a `wall` variant.
type WallRun = fn(&[u32]) -> Result<Batch<u64>, otwrap::Error>;

/// What a `depends` child process does.
fn depends_child(mode: &str) -> Result<(), String> {
    match mode {
        // One batch of `wall`: print its counts; a batch that cannot start
        // prints its error and how many evaluations ran.
        "depends-run" => {
            let inputs: Vec<u32> = (0..WALL_POINTS).collect();
            let batch = match wall::runner().progress(ProgressMode::Never).map(&inputs) {
                Ok(batch) => batch,
                Err(e) => {
                    eprintln!("{e}");
                    println!("evals {}", WALL_EVALS.load(Ordering::SeqCst));
                    std::process::exit(3);
                }
            };
            wall_values_are_current(batch.results(), &inputs)?;
            let s = batch.summary();
            println!(
                "counts evaluated={} cached={} failed={} total={}",
                s.evaluated, s.cached, s.failed, s.total
            );
            Ok(())
        }
        // A big batch, single calls and a second batch: the files (made old
        // by the parent) are read once. Then a file stamped in the future is
        // never trusted to the memo: read again on every open.
        "depends-memo" => {
            let hashed = otwrap_runtime::cache::depends::files_hashed;
            let inputs: Vec<u32> = (0..WALL_MEMO_POINTS).collect();
            let first = wall::runner()
                .progress(ProgressMode::Never)
                .map(&inputs)
                .map_err(|e| e.to_string())?;
            wall_values_are_current(first.results(), &inputs)?;
            let after_batch = hashed();
            for x in 0..200 {
                if wall(x).map_err(|e| e.to_string())? != u64::from(x) * wall_factor()? {
                    return Err(format!("single call {x}: wrong value"));
                }
            }
            let after_singles = hashed();
            let second = wall::runner()
                .progress(ProgressMode::Never)
                .map(&inputs)
                .map_err(|e| e.to_string())?;
            let s = second.summary();
            let after_second = hashed();
            let future = std::time::SystemTime::now() + Duration::from_secs(3600);
            File::options()
                .write(true)
                .open("solver/wall.py")
                .and_then(|f| f.set_modified(future))
                .map_err(|e| e.to_string())?;
            wall(1).map_err(|e| e.to_string())?;
            wall(2).map_err(|e| e.to_string())?;
            let after_future = hashed();
            println!(
                "hashed batch={after_batch} singles={after_singles} second={after_second} future={after_future} \
                 first_evaluated={} second_cached={}",
                first.summary().evaluated,
                s.cached
            );
            Ok(())
        }
        // The in-memory and `disk = "path"` stores: an edit within the
        // process recomputes, the restore hits again.
        "depends-stores" => {
            let inputs: Vec<u32> = (0..20).collect();
            let runs: [(&str, WallRun); 2] = [
                ("memory", |i| {
                    wall_in_memory::runner()
                        .progress(ProgressMode::Never)
                        .map(i)
                }),
                ("path", |i| {
                    wall_at_path::runner().progress(ProgressMode::Never).map(i)
                }),
            ];
            for (name, run) in runs {
                let mut seen = Vec::new();
                for factor in ["FACTOR = 3", "FACTOR = 3", "FACTOR = 4", "FACTOR = 3"] {
                    fs::write("solver/wall.py", format!("{factor}\n"))
                        .map_err(|e| e.to_string())?;
                    let batch = run(&inputs).map_err(|e| e.to_string())?;
                    wall_values_are_current(batch.results(), &inputs)
                        .map_err(|e| format!("{name}: {e}"))?;
                    seen.push(format!(
                        "{}/{}",
                        batch.summary().evaluated,
                        batch.summary().cached
                    ));
                }
                println!("{name} {}", seen.join(" "));
            }
            Ok(())
        }
        other => Err(format!("unknown child mode {other:?}")),
    }
}

/// A child of this binary in `project` (its current directory), running
/// `mode`, with the default cache location (under `project`).
fn depends_command(mode: &str, project: &Path) -> Result<Command, Failed> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .current_dir(project)
        .env(CHILD_ENV, mode)
        .env_remove("OTWRAP_CACHE_DIR")
        .env_remove(LOG_ENV)
        .stdin(Stdio::null());
    Ok(command)
}

/// Runs a `depends` child; its stdout, or an error with its output.
fn run_depends(mode: &str, project: &Path) -> Result<String, Failed> {
    let out = depends_command(mode, project)?.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    check(out.status.success(), || {
        format!(
            "{mode} child: {}: {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    Ok(stdout)
}

/// A temporary project: `solver/wall.py` (factor 3) and `templates/wall.in`.
fn wall_project() -> Result<tempfile::TempDir, Failed> {
    let project = tempfile::tempdir()?;
    fs::create_dir(project.path().join("solver"))?;
    fs::create_dir(project.path().join("templates"))?;
    fs::write(project.path().join("solver/wall.py"), "FACTOR = 3\n")?;
    fs::write(
        project.path().join("templates/wall.in"),
        "thickness = @T@\n",
    )?;
    Ok(project)
}

// ---------------------------------------------------------------------------
// Helpers.

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

fn counts(s: &Summary) -> (usize, usize, usize, usize) {
    (s.evaluated, s.cached, s.failed, s.total)
}

fn open(cache: Result<Option<ModelCache>, otwrap::Error>) -> Result<ModelCache, Failed> {
    Ok(cache?.ok_or("the model is not cached")?)
}

fn message(r: &Result<u32, PointError>) -> Option<String> {
    match r.as_ref().err()?.failure() {
        PointFailure::Model { message } => Some(message.clone()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Tests.

/// Test 1: The second run of a batch evaluates nothing.
fn second_run_evaluates_nothing() -> Result<(), Failed> {
    let cache = open(smooth::cache())?;
    cache.clear()?;
    let inputs: Vec<f64> = (0..200).map(|i| f64::from(i) * 0.37 - 11.0).collect();
    let before = SMOOTH_EVALS.load(Ordering::SeqCst);

    let first = smooth::runner().backend(Backend::Rayon).map(&inputs)?;
    let s1 = first.summary();
    println!("first run:  {s1}");
    check(counts(s1) == (200, 0, 0, 200), || {
        format!("first run: {s1:?}")
    })?;
    check(SMOOTH_EVALS.load(Ordering::SeqCst) - before == 200, || {
        "200 evaluations expected".into()
    })?;
    check(cache.count()? == 200, || "200 entries stored".into())?;

    let second = smooth::runner().backend(Backend::Rayon).map(&inputs)?;
    let s2 = second.summary();
    println!("second run: {s2}");
    check(counts(s2) == (0, 200, 0, 200), || {
        format!("second run: {s2:?}")
    })?;
    check(SMOOTH_EVALS.load(Ordering::SeqCst) - before == 200, || {
        "the second run called the model".into()
    })?;
    let (v1, v2) = (first.values()?, second.values()?);
    for i in 0..200 {
        check(v1[i].to_bits() == v2[i].to_bits(), || {
            format!("point {i}: {} then {}", v1[i], v2[i])
        })?;
    }
    let text = s2.to_string();
    check(text.contains("nothing evaluated"), || text.clone())?;
    check(!s1.to_string().contains("nothing evaluated"), || {
        s1.to_string()
    })?;

    // Inspection: the stored entries are exactly the inputs and their values.
    let mut entries = cache.entries::<smooth::Model>()?;
    entries.sort_by(|a, b| a.0.total_cmp(&b.0));
    check(entries.len() == 200, || {
        format!("{} entries", entries.len())
    })?;
    for ((x, y), (xi, vi)) in entries.iter().zip(inputs.iter().zip(&v1)) {
        check(
            x.to_bits() == xi.to_bits()
                && y.as_ref().ok().map(|y| y.to_bits()) == Some(vi.to_bits()),
            || format!("entry {x} -> {y:?}, expected {xi} -> {vi}"),
        )?;
    }
    let location = cache.location().ok_or("a disk cache has a location")?;
    check(
        location.ends_with("target/otwrap-test-cache/smooth"),
        || location.display().to_string(),
    )
}

/// Test 2: A point repeated inside one batch is evaluated once.
fn repeated_points_are_evaluated_once() -> Result<(), Failed> {
    open(repeated::cache())?.clear()?;
    // 300 points, 30 distinct values (13 among them fails).
    let inputs: Vec<u32> = (0..300).map(|i| (i * 7) % 30).collect();
    let before = REPEATED_EVALS.load(Ordering::SeqCst);
    let batch = repeated::runner().backend(Backend::Rayon).map(&inputs)?;
    let s = batch.summary();
    println!("{s}");
    check(REPEATED_EVALS.load(Ordering::SeqCst) - before == 30, || {
        format!(
            "{} real evaluations for 30 distinct points",
            REPEATED_EVALS.load(Ordering::SeqCst) - before
        )
    })?;
    // `evaluated` counts real evaluations; the copies are neither evaluated
    // nor cached, but every point has its result (and failures count).
    check(counts(s) == (30, 0, 10, 300), || format!("{s:?}"))?;
    for (i, (&k, r)) in inputs.iter().zip(batch.results()).enumerate() {
        if k == 13 {
            let e = r.as_ref().err().ok_or("point 13 should fail")?;
            check(
                e.index() == i && message(r).as_deref() == Some("13 is unlucky"),
                || format!("point {i}: {e}"),
            )?;
        } else {
            check(r.as_ref().ok() == Some(&(k * 3 + 1)), || {
                format!("point {i} ({k}): {r:?}")
            })?;
        }
    }
    Ok(())
}

/// Test 3: Errors are evaluated again by default, answered from the cache with
/// `cache_errors = true`.
fn errors_are_cached_only_when_asked() -> Result<(), Failed> {
    let inputs: Vec<u32> = (0..20).collect();

    // Default: the 4 failing points are evaluated again, the 16 others not.
    let cache = open(flaky::cache())?;
    cache.clear()?;
    let before = FLAKY_EVALS.load(Ordering::SeqCst);
    let first = flaky::runner().backend(Backend::Serial).map(&inputs)?;
    check(counts(first.summary()) == (20, 0, 4, 20), || {
        format!("flaky first: {:?}", first.summary())
    })?;
    check(cache.count()? == 16, || "only successes are stored".into())?;
    let second = flaky::runner().backend(Backend::Serial).map(&inputs)?;
    println!("errors not cached, second run: {}", second.summary());
    check(counts(second.summary()) == (4, 16, 4, 20), || {
        format!("flaky second: {:?}", second.summary())
    })?;
    check(FLAKY_EVALS.load(Ordering::SeqCst) - before == 24, || {
        "20 + 4 evaluations expected".into()
    })?;
    // A single call of a failing point evaluates it again too.
    let err = flaky(5).unwrap_err().to_string();
    check(err.contains("5 is a multiple of 5"), || err.clone())?;
    check(FLAKY_EVALS.load(Ordering::SeqCst) - before == 25, || {
        "the single call of a failure was answered from the cache".into()
    })?;

    // cache_errors = true: the second run evaluates nothing, same messages.
    let cache = open(stubborn::cache())?;
    cache.clear()?;
    let before = STUBBORN_EVALS.load(Ordering::SeqCst);
    let first = stubborn::runner().backend(Backend::Serial).map(&inputs)?;
    check(counts(first.summary()) == (20, 0, 4, 20), || {
        format!("stubborn first: {:?}", first.summary())
    })?;
    check(cache.count()? == 20, || "failures are stored too".into())?;
    let second = stubborn::runner().backend(Backend::Serial).map(&inputs)?;
    println!("errors cached, second run: {}", second.summary());
    check(counts(second.summary()) == (0, 20, 4, 20), || {
        format!("stubborn second: {:?}", second.summary())
    })?;
    check(STUBBORN_EVALS.load(Ordering::SeqCst) - before == 20, || {
        "the second run called the model".into()
    })?;
    for (i, (a, b)) in first.results().iter().zip(second.results()).enumerate() {
        match (a, b) {
            (Ok(a), Ok(b)) => check(a == b, || format!("point {i}: {a} then {b}"))?,
            (Err(_), Err(e)) => {
                let (ma, mb) = (message(a), message(b));
                check(ma.is_some() && ma == mb, || {
                    format!("point {i}: {ma:?} then {mb:?}")
                })?;
                check(
                    e.index() == i && e.to_string().contains(&format!("{i} is a multiple of 5")),
                    || e.to_string(),
                )?;
            }
            _ => return Err(format!("point {i}: {a:?} then {b:?}").into()),
        }
    }
    let err = stubborn(10).unwrap_err().to_string();
    check(err.contains("10 is a multiple of 5"), || err.clone())?;
    check(STUBBORN_EVALS.load(Ordering::SeqCst) - before == 20, || {
        "the single call of a cached failure evaluated it".into()
    })?;
    let stored_errors = cache
        .entries::<stubborn::Model>()?
        .into_iter()
        .filter(|(_, r)| r.is_err())
        .count();
    check(stored_errors == 4, || {
        format!("{stored_errors} stored errors")
    })
}

/// Test 4: `#[cached]` without `disk`: in memory, across batches and single calls.
fn memory_cache_spans_batches_and_single_calls() -> Result<(), Failed> {
    let cache = open(in_memory::cache())?;
    cache.clear()?;
    check(cache.location().is_none(), || {
        "memory cache has no path".into()
    })?;
    let evals = || MEMORY_EVALS.load(Ordering::SeqCst);
    let before = evals();
    let inputs: Vec<u64> = (0..50).collect();
    let first = in_memory::runner().backend(Backend::Serial).map(&inputs)?;
    check(counts(first.summary()) == (50, 0, 0, 50), || {
        format!("{:?}", first.summary())
    })?;
    let second = in_memory::runner().backend(Backend::Serial).map(&inputs)?;
    check(counts(second.summary()) == (0, 50, 0, 50), || {
        format!("{:?}", second.summary())
    })?;
    check(second.values()? == first.values()?, || {
        "values differ".into()
    })?;
    check(in_memory(7)? == 49, || "single call value".into())?;
    check(evals() - before == 50, || {
        "a cached single call evaluated".into()
    })?;
    check(in_memory(1000)? == 1_000_000, || "single call value".into())?;
    check(evals() - before == 51, || {
        "an uncached single call did not evaluate".into()
    })?;
    let third = in_memory::runner()
        .backend(Backend::Serial)
        .map(&[1000, 3, 2000])?;
    check(counts(third.summary()) == (1, 2, 0, 3), || {
        format!("{:?}", third.summary())
    })?;
    check(evals() - before == 52, || "52 evaluations expected".into())?;
    check(cache.count()? == 52, || {
        format!("{:?} entries", cache.count())
    })?;
    check(cache.clear()? == 52, || "clear removes 52".into())?;
    let after_clear = in_memory::runner().backend(Backend::Serial).map(&[3])?;
    check(counts(after_clear.summary()) == (1, 0, 0, 1), || {
        format!("{:?}", after_clear.summary())
    })
}

/// Test 5: Single calls and batches share one cache, both ways.
fn single_calls_use_the_batch_cache() -> Result<(), Failed> {
    open(single::cache())?.clear()?;
    let evals = || SINGLE_EVALS.load(Ordering::SeqCst);
    let before = evals();
    let batch = single::runner()
        .backend(Backend::Serial)
        .map(&(0..40).collect::<Vec<u32>>())?;
    check(counts(batch.summary()) == (40, 0, 0, 40), || {
        format!("{:?}", batch.summary())
    })?;
    for x in [0, 17, 39] {
        check(single(x)? == u64::from(x) * 1000 + 7, || {
            format!("single({x})")
        })?;
    }
    check(evals() - before == 40, || {
        format!(
            "single calls after the batch evaluated {} points",
            evals() - before - 40
        )
    })?;
    // A single call stores its result for the next batch.
    check(single(500)? == 500_007, || "single(500)".into())?;
    check(evals() - before == 41, || {
        "single(500) was not evaluated".into()
    })?;
    let batch = single::runner()
        .backend(Backend::Serial)
        .map(&[500, 1, 41])?;
    check(counts(batch.summary()) == (1, 2, 0, 3), || {
        format!("{:?}", batch.summary())
    })?;
    check(evals() - before == 42, || "42 evaluations expected".into())
}

/// Test 1b: The cache works the same when points run in worker processes.
fn second_run_on_the_processes_backend() -> Result<(), Failed> {
    open(in_processes::cache())?.clear()?;
    let inputs: Vec<u32> = (0..30).collect();
    let first = in_processes::runner()
        .backend(Backend::Processes)
        .map(&inputs)?;
    check(counts(first.summary()) == (30, 0, 0, 30), || {
        format!("{:?}", first.summary())
    })?;
    let second = in_processes::runner()
        .backend(Backend::Processes)
        .map(&inputs)?;
    check(counts(second.summary()) == (0, 30, 0, 30), || {
        format!("{:?}", second.summary())
    })?;
    check(
        second.values()? == inputs.iter().map(|x| x * 7).collect::<Vec<_>>(),
        || "wrong values".into(),
    )
}

/// Test 6: A run killed with SIGKILL part-way (2 workers, 600 points of
/// 20 ms), then restarted, evaluates only the points not yet stored: of the
/// points the model had finished before the kill, at most those in flight and
/// those stored during the last flush (group commit) are evaluated again.
fn killed_run_resumes_with_what_was_stored() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let cache_dir = dir.path().join("cache");
    let (log1, log2, log3) = (
        dir.path().join("run1.log"),
        dir.path().join("run2.log"),
        dir.path().join("run3.log"),
    );

    let mut first = child_command("run", &cache_dir, Some(&log1))?
        .stdout(Stdio::null())
        .stderr(File::create(dir.path().join("run1.stderr"))?)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if read_points(&log1).len() >= KILL_AFTER {
            break;
        }
        if let Some(status) = first.try_wait()? {
            let stderr = fs::read_to_string(dir.path().join("run1.stderr")).unwrap_or_default();
            return Err(
                format!("the first child ended before the kill ({status}): {stderr}").into(),
            );
        }
        if Instant::now() > deadline {
            first.kill()?;
            first.wait()?;
            return Err(format!(
                "the first child recorded fewer than {KILL_AFTER} points in 120 s"
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    first.kill()?; // SIGKILL
    let status = first.wait()?;
    check(status.signal() == Some(libc::SIGKILL), || {
        format!("first child: {status}")
    })?;
    let recorded: BTreeSet<u32> = read_points(&log1).into_iter().collect();

    let second = child_command("run", &cache_dir, Some(&log2))?.output()?;
    let stdout = String::from_utf8_lossy(&second.stdout);
    check(second.status.success(), || {
        format!(
            "second child: {}\n{stdout}\n{}",
            second.status,
            String::from_utf8_lossy(&second.stderr)
        )
    })?;
    let [evaluated, cached, failed, total] = child_counts(&stdout)?;
    let reevaluated_list = read_points(&log2);
    let reevaluated: BTreeSet<u32> = reevaluated_list.iter().copied().collect();
    let kept = recorded.difference(&reevaluated).count();
    let redone = recorded.intersection(&reevaluated).count();
    println!(
        "killed after {} recorded evaluations; restart: evaluated {evaluated}, cached {cached} \
         ({kept} of the recorded points kept, {redone} recorded points evaluated again)",
        recorded.len()
    );
    check(total == KILL_POINTS as usize && failed == 0, || {
        stdout.to_string()
    })?;
    check(evaluated + cached == total, || stdout.to_string())?;
    check(
        evaluated <= KILL_POINTS as usize - KILL_AFTER + REDO_BOUND,
        || format!("the restart evaluated {evaluated} of {KILL_POINTS} points"),
    )?;
    check(
        reevaluated_list.len() == evaluated && reevaluated.len() == evaluated,
        || {
            format!(
                "log of the restart has {} lines for {evaluated} evaluations",
                reevaluated_list.len()
            )
        },
    )?;
    check(redone <= REDO_BOUND, || {
        format!(
            "{redone} of the {} points finished before the kill were evaluated again \
             (at most {REDO_BOUND}: in flight, or stored during the last flush)",
            recorded.len()
        )
    })?;
    check(cached == kept, || format!("cached {cached}, kept {kept}"))?;
    let all: BTreeSet<u32> = recorded.union(&reevaluated).copied().collect();
    check(all.len() == KILL_POINTS as usize, || {
        format!("{} distinct points evaluated in both runs", all.len())
    })?;

    // A third run evaluates nothing.
    let third = child_command("run", &cache_dir, Some(&log3))?.output()?;
    let stdout = String::from_utf8_lossy(&third.stdout);
    check(third.status.success(), || stdout.to_string())?;
    check(
        child_counts(&stdout)? == [0, KILL_POINTS as usize, 0, KILL_POINTS as usize],
        || stdout.to_string(),
    )?;
    check(stdout.contains("nothing evaluated"), || stdout.to_string())?;
    check(read_points(&log3).is_empty(), || {
        "the third run evaluated".into()
    })
}

/// Test 7: Editing the body (or bumping `version`) invalidates the entries.
fn editing_the_body_or_version_invalidates() -> Result<(), Failed> {
    // The macro's hash: a different body changes it, a comment or spacing
    // does not. (Not unit-tested inside otwrap-macros; this is its test.)
    let h1 = v1_spec().body_hash;
    let h2 = <edit_v2::response::Model as Model>::cache()
        .ok_or("cached")?
        .body_hash;
    let h1c = <edit_v1_comment::response::Model as Model>::cache()
        .ok_or("cached")?
        .body_hash;
    check(h1 != h2, || "an edited body kept its hash".into())?;
    check(h1 == h1c, || "a comment changed the hash".into())?;
    let id = <edit_v1::response::Model as Model>::ID;
    check(
        KeyPrefix::new(id, h1, "") != KeyPrefix::new(id, h2, ""),
        || "prefix ignores the body hash".into(),
    )?;
    check(
        KeyPrefix::new(id, h1, "") != KeyPrefix::new(id, h1, "2"),
        || "prefix ignores the version".into(),
    )?;

    // Start clean: every function version stored in the shared directory.
    for cache in [
        edit_v1::response::cache(),
        edit_v2::response::cache(),
        edit_v1_comment::response::cache(),
        ModelCache::of::<Edited>().map_err(otwrap::Error::from),
        ModelCache::of::<Bumped>().map_err(otwrap::Error::from),
    ] {
        open(cache)?.clear()?;
    }
    let inputs: Vec<u32> = (0..10).collect();
    let v1 = edit_v1::response::runner()
        .backend(Backend::Serial)
        .map(&inputs)?;
    check(counts(v1.summary()) == (10, 0, 0, 10), || {
        format!("{:?}", v1.summary())
    })?;

    // (a) Another function with the same signature, in the same directory.
    let v2 = edit_v2::response::runner()
        .backend(Backend::Serial)
        .map(&inputs)?;
    check(counts(v2.summary()) == (10, 0, 0, 10), || {
        format!("v2: {:?}", v2.summary())
    })?;
    check(
        v2.values()? == inputs.iter().map(|x| x + 2).collect::<Vec<_>>(),
        || "v2 got v1's values".into(),
    )?;
    let again = edit_v1::response::runner()
        .backend(Backend::Serial)
        .map(&inputs)?;
    check(counts(again.summary()) == (0, 10, 0, 10), || {
        format!("v1 again: {:?}", again.summary())
    })?;
    check(again.values()? == v1.values()?, || {
        "v1 got v2's values".into()
    })?;

    // (b) The same id with another body hash or version: nothing visible.
    let spec = |body_hash: u64, version: &'static str| CacheSpec {
        body_hash,
        version,
        ..v1_spec()
    };
    check(matches!(v1_spec().location, CacheLocation::Disk(_)), || {
        "edit_v1 is on disk".into()
    })?;
    let same = ModelCache::open(id, spec(h1, ""))?;
    let edited = ModelCache::open(id, spec(h2, ""))?;
    let bumped = ModelCache::open(id, spec(h1, "2"))?;
    check(same.count()? == 10, || "same spec sees the entries".into())?;
    check(edited.count()? == 0, || {
        "edited body sees old entries".into()
    })?;
    check(bumped.count()? == 0, || {
        "bumped version sees old entries".into()
    })?;
    let bytes = otwrap_runtime::codec::encode(&3u32)?;
    check(same.lookup(&bytes)?.is_some(), || {
        "lookup under same spec".into()
    })?;
    check(edited.lookup(&bytes)?.is_none(), || {
        "lookup under edited spec".into()
    })?;
    check(bumped.lookup(&bytes)?.is_none(), || {
        "lookup under version 2".into()
    })?;

    // The same through batches of hand-written models sharing v1's id.
    let before = HAND_EVALS.load(Ordering::SeqCst);
    let unchanged = Runner::<Unchanged>::new()
        .backend(Backend::Serial)
        .map(&inputs)?;
    check(counts(unchanged.summary()) == (0, 10, 0, 10), || {
        format!("unchanged: {:?}", unchanged.summary())
    })?;
    let edited_run = Runner::<Edited>::new()
        .backend(Backend::Serial)
        .map(&inputs)?;
    check(counts(edited_run.summary()) == (10, 0, 0, 10), || {
        format!("edited: {:?}", edited_run.summary())
    })?;
    check(
        edited_run.values()? == inputs.iter().map(|x| x + 2).collect::<Vec<_>>(),
        || "the edited body got stale values".into(),
    )?;
    let bumped_run = Runner::<Bumped>::new()
        .backend(Backend::Serial)
        .map(&inputs)?;
    check(counts(bumped_run.summary()) == (10, 0, 0, 10), || {
        format!("bumped: {:?}", bumped_run.summary())
    })?;
    check(HAND_EVALS.load(Ordering::SeqCst) - before == 20, || {
        "20 hand-model evaluations expected".into()
    })?;
    check(
        edited.count()? == 10 && bumped.count()? == 10 && same.count()? == 10,
        || "each version keeps its own 10 entries".into(),
    )
}

/// Test 8: An entry whose value does not decode is a warning and a miss: the
/// point is evaluated again, the batch result is right, the entry repaired.
fn undecodable_entries_are_recomputed() -> Result<(), Failed> {
    let cache = open(damaged::cache())?;
    cache.clear()?;
    let inputs: Vec<u32> = (0..12).collect();
    let first = damaged::runner().backend(Backend::Serial).map(&inputs)?;
    check(counts(first.summary()) == (12, 0, 0, 12), || {
        format!("{:?}", first.summary())
    })?;
    // Overwrite two stored values with bytes that are no f64 (empty, and a
    // cut encoding): valid store headers, undecodable payloads.
    let garbage = [(3u32, Vec::new()), (7u32, vec![0x00, 0x00, 0xf0])];
    for (x, bad) in &garbage {
        check(otwrap_runtime::codec::decode::<f64>(bad).is_err(), || {
            "the garbage decodes".into()
        })?;
        cache.store(
            &otwrap_runtime::codec::encode(x)?,
            Entry::Value(bad.clone()),
        )?;
    }
    cache.flush()?;
    let before = DAMAGED_EVALS.load(Ordering::SeqCst);
    let second = damaged::runner().backend(Backend::Serial).map(&inputs)?;
    check(counts(second.summary()) == (2, 10, 0, 12), || {
        format!("{:?}", second.summary())
    })?;
    check(DAMAGED_EVALS.load(Ordering::SeqCst) - before == 2, || {
        "two points should be evaluated again".into()
    })?;
    let expected: Vec<f64> = inputs.iter().map(|&x| f64::from(x) / 4.0).collect();
    check(second.values()? == expected, || "wrong values".into())?;
    // The recomputed results replaced the damaged entries.
    let third = damaged::runner().backend(Backend::Serial).map(&inputs)?;
    check(counts(third.summary()) == (0, 12, 0, 12), || {
        format!("{:?}", third.summary())
    })?;
    // A single call of a damaged point is recomputed too.
    cache.store(
        &otwrap_runtime::codec::encode(&5u32)?,
        Entry::Value(vec![1]),
    )?;
    check(damaged(5)? == 1.25, || "single call value".into())?;
    check(DAMAGED_EVALS.load(Ordering::SeqCst) - before == 3, || {
        "the damaged single call was not recomputed".into()
    })
}

/// Test 9: A second process opening a store in use gets a clear error naming it.
fn second_process_gets_a_clear_lock_error() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let cache_dir = dir.path().join("cache");
    let mut holder = child_command("hold", &cache_dir, None)?
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(holder.stdout.take().ok_or("no stdout")?).lines();
    let held = lines.any(|l| l.is_ok_and(|l| l.contains(HOLDING)));
    if !held {
        let status = holder.wait()?;
        return Err(format!("the holding child exited ({status}) before opening the cache").into());
    }
    let canonical = fs::canonicalize(&cache_dir)?;

    let blocked = child_command("batch", &cache_dir, None)?.output()?;
    let stderr = String::from_utf8_lossy(&blocked.stderr).to_string();
    println!(
        "the blocked process says: {}",
        stderr.lines().next().unwrap_or("")
    );
    let result = (|| {
        check(blocked.status.code() == Some(3), || {
            format!("blocked child: {}: {stderr}", blocked.status)
        })?;
        check(stderr.contains(&canonical.display().to_string()), || {
            stderr.clone()
        })?;
        check(stderr.contains("in use by another otwrap process"), || {
            stderr.clone()
        })?;
        check(stderr.contains("OTWRAP_CACHE_DIR"), || stderr.clone())?;
        check(stderr.contains("locked variant: true"), || stderr.clone())
    })();

    drop(holder.stdin.take());
    let status = holder.wait()?;
    result?;
    check(status.success(), || format!("holding child: {status}"))?;
    // Once the holder is gone, the same run goes through.
    let after = child_command("batch", &cache_dir, None)?.output()?;
    check(after.status.success(), || {
        format!(
            "after the holder exited: {}: {}",
            after.status,
            String::from_utf8_lossy(&after.stderr)
        )
    })
}

/// Test 10: Editing a `depends` file recomputes every point; restoring its
/// contents finds the old entries again.
fn depends_edit_recomputes_and_restore_hits() -> Result<(), Failed> {
    let project = wall_project()?;
    let dir = project.path();
    let n = WALL_POINTS as usize;
    let expect = |stdout: &str, counts: [usize; 4], what: &str| -> Result<(), Failed> {
        let got = child_counts(stdout)?;
        check(got == counts, || {
            format!("{what}: {got:?}, expected {counts:?}")
        })
    };
    expect(&run_depends("depends-run", dir)?, [n, 0, 0, n], "first run")?;
    expect(
        &run_depends("depends-run", dir)?,
        [0, n, 0, n],
        "second run",
    )?;

    // The solver script edited (same length: only the contents differ).
    fs::write(dir.join("solver/wall.py"), "FACTOR = 5\n")?;
    expect(
        &run_depends("depends-run", dir)?,
        [n, 0, 0, n],
        "solver edited",
    )?;
    expect(
        &run_depends("depends-run", dir)?,
        [0, n, 0, n],
        "solver edited, again",
    )?;
    fs::write(dir.join("solver/wall.py"), "FACTOR = 3\n")?;
    expect(
        &run_depends("depends-run", dir)?,
        [0, n, 0, n],
        "solver restored",
    )?;

    // A file under the template directory edited, then restored.
    fs::write(dir.join("templates/wall.in"), "thickness = @T@ m\n")?;
    expect(
        &run_depends("depends-run", dir)?,
        [n, 0, 0, n],
        "template edited",
    )?;
    fs::write(dir.join("templates/wall.in"), "thickness = @T@\n")?;
    expect(
        &run_depends("depends-run", dir)?,
        [0, n, 0, n],
        "template restored",
    )
}

/// Test 11: A file added under a `depends` directory recomputes every point;
/// removing it hits again.
fn depends_directory_addition_recomputes() -> Result<(), Failed> {
    let project = wall_project()?;
    let dir = project.path();
    let n = WALL_POINTS as usize;
    check(
        child_counts(&run_depends("depends-run", dir)?)? == [n, 0, 0, n],
        || "first run".into(),
    )?;
    fs::create_dir(dir.join("templates/mesh"))?;
    fs::write(dir.join("templates/mesh/coarse.msh"), "")?;
    let added = child_counts(&run_depends("depends-run", dir)?)?;
    check(added == [n, 0, 0, n], || {
        format!("after adding a file: {added:?}")
    })?;
    fs::remove_dir_all(dir.join("templates/mesh"))?;
    let removed = child_counts(&run_depends("depends-run", dir)?)?;
    check(removed == [0, n, 0, n], || {
        format!("after removing it: {removed:?}")
    })
}

/// Test 12: A missing `depends` path stops the batch before any evaluation,
/// with an error naming the path and the current directory.
fn depends_missing_path_is_an_error_before_any_evaluation() -> Result<(), Failed> {
    let project = wall_project()?;
    let dir = project.path();
    fs::remove_dir_all(dir.join("templates"))?;
    let out = depends_command("depends-run", dir)?.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    println!("the batch says: {}", stderr.trim());
    check(out.status.code() == Some(3), || {
        format!("{}: {stdout}{stderr}", out.status)
    })?;
    check(stdout.contains("evals 0"), || stdout.clone())?;
    check(
        stderr.contains("\"templates\" of cache::wall does not exist"),
        || stderr.clone(),
    )?;
    let cwd = fs::canonicalize(dir)?;
    check(
        stderr.contains(&cwd.join("templates").display().to_string()),
        || stderr.clone(),
    )?;
    check(
        stderr.contains(&format!("current directory, {})", cwd.display())),
        || stderr.clone(),
    )
}

/// Test 13: A big batch, 200 single calls and a second batch read each
/// dependency file once per process; a file stamped in the future (not yet
/// settled) is read again on each open.
fn depends_files_are_hashed_once_per_process() -> Result<(), Failed> {
    let project = wall_project()?;
    let dir = project.path();
    // Settled files: modified an hour ago, older than the racy window.
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    for file in ["solver/wall.py", "templates/wall.in"] {
        File::options()
            .write(true)
            .open(dir.join(file))?
            .set_modified(old)?;
    }
    let stdout = run_depends("depends-memo", dir)?;
    println!("{}", stdout.trim());
    let n = WALL_MEMO_POINTS;
    // Two files: read once each for the first batch, never again while
    // unchanged; then wall.py twice more (two single calls), the template not.
    let expected =
        format!("hashed batch=2 singles=2 second=2 future=4 first_evaluated={n} second_cached={n}");
    check(stdout.contains(&expected), || {
        format!("{stdout}\nexpected: {expected}")
    })
}

/// Test 14: `depends` with the in-memory store and with `disk = "path"`: an
/// edit inside the process recomputes, the restore hits again.
fn depends_with_memory_and_path_stores() -> Result<(), Failed> {
    let project = wall_project()?;
    let stdout = run_depends("depends-stores", project.path())?;
    print!("{stdout}");
    for store in ["memory", "path"] {
        let line = format!("{store} 20/0 0/20 20/0 0/20");
        check(stdout.lines().any(|l| l == line), || {
            format!("{stdout}\nexpected: {line}")
        })?;
    }
    check(project.path().join("wall-cache").is_dir(), || {
        "disk = \"wall-cache\" is relative to the current directory".into()
    })
}

/// A small tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (as `mount -o size=` reads it), or says why not.
    fn mount(size: &str) -> Result<SmallDisk, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root to mount a tmpfs".into());
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        match Command::new("umount").arg(self.dir.path()).status() {
            Ok(status) if status.success() => {}
            other => eprintln!("umount {} failed: {other:?}", self.dir.path().display()),
        }
    }
}

/// Test 10: A cache on a disk that fills up: the failure is said once on
/// stderr, naming the cache, and every result still comes back.
fn full_disk_is_reported_once_and_results_kept() -> Result<(), Failed> {
    let disk = match SmallDisk::mount("600k") {
        Ok(disk) => disk,
        Err(why) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED cache_full_disk_is_reported_once_and_results_kept: {why}");
            return Ok(());
        }
        Err(why) => return Err(why.into()),
    };
    let cache_dir = disk.dir.path().join("cache");
    let out = child_command("full", &cache_dir, None)?.output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!(
        "full disk: {}; stderr: {}",
        stdout.lines().last().unwrap_or(""),
        stderr.trim()
    );
    check(out.status.success(), || {
        format!(
            "child: {}
{stdout}
{stderr}",
            out.status
        )
    })?;
    check(
        child_counts(&stdout)? == [FULL_POINTS as usize, 0, 0, FULL_POINTS as usize],
        || stdout.to_string(),
    )?;
    let failures: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("store failures "))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no store failures line: {stdout}"))?;
    check(failures > 0, || {
        format!("the batch did not fill the disk: {stdout}")
    })?;
    let said = stderr
        .matches("otwrap: cannot store results in the cache")
        .count();
    check(said == 1, || {
        format!(
            "said {said} times:
{stderr}"
        )
    })?;
    let canonical = fs::canonicalize(&cache_dir)?;
    check(stderr.contains(&canonical.display().to_string()), || {
        format!(
            "the message does not name the cache:
{stderr}"
        )
    })?;
    check(!stderr.contains("panicked"), || stderr.to_string())
}

#[otwrap::main]
fn main() {
    if let Ok(mode) = std::env::var(CHILD_ENV) {
        if mode.starts_with("depends-") {
            if let Err(e) = depends_child(&mode) {
                eprintln!("{e}");
                std::process::exit(4);
            }
            std::process::exit(0);
        }
        std::process::exit(child(&mode));
    }
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "cache_second_run_evaluates_nothing",
            second_run_evaluates_nothing,
        ),
        Trial::test(
            "cache_second_run_on_the_processes_backend",
            second_run_on_the_processes_backend,
        ),
        Trial::test(
            "cache_repeated_points_are_evaluated_once",
            repeated_points_are_evaluated_once,
        ),
        Trial::test(
            "cache_errors_are_cached_only_when_asked",
            errors_are_cached_only_when_asked,
        ),
        Trial::test(
            "cache_memory_cache_spans_batches_and_single_calls",
            memory_cache_spans_batches_and_single_calls,
        ),
        Trial::test(
            "cache_single_calls_use_the_batch_cache",
            single_calls_use_the_batch_cache,
        ),
        Trial::test(
            "cache_killed_run_resumes_with_what_was_stored",
            killed_run_resumes_with_what_was_stored,
        ),
        Trial::test(
            "cache_editing_the_body_or_version_invalidates",
            editing_the_body_or_version_invalidates,
        ),
        Trial::test(
            "cache_undecodable_entries_are_recomputed",
            undecodable_entries_are_recomputed,
        ),
        Trial::test(
            "cache_second_process_gets_a_clear_lock_error",
            second_process_gets_a_clear_lock_error,
        ),
        Trial::test(
            "cache_depends_edit_recomputes_and_restore_hits",
            depends_edit_recomputes_and_restore_hits,
        ),
        Trial::test(
            "cache_depends_directory_addition_recomputes",
            depends_directory_addition_recomputes,
        ),
        Trial::test(
            "cache_depends_missing_path_is_an_error_before_any_evaluation",
            depends_missing_path_is_an_error_before_any_evaluation,
        ),
        Trial::test(
            "cache_depends_files_are_hashed_once_per_process",
            depends_files_are_hashed_once_per_process,
        ),
        Trial::test(
            "cache_depends_with_memory_and_path_stores",
            depends_with_memory_and_path_stores,
        ),
        Trial::test(
            "cache_full_disk_is_reported_once_and_results_kept",
            full_disk_is_reported_once_and_results_kept,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
