//! Fault injection across backends: one model that fails in every way a
//! simulation code can, run on every backend where the fault applies
//! (in-process backends only get the faults a thread survives), against the
//! real components (child processes, the sshd "hosts" and the single-node
//! SLURM of `scripts/services/`). Each case asserts the exact outcome of
//! every point, and that every other point's result is there.
//! RELIABILITY.md lists the guarantees these tests hold otwrap to.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::prelude::*;
use otwrap::{PointError, PointFailure};

#[path = "support/services.rs"]
mod services;
#[path = "support/solver_tree.rs"]
mod solver_tree;

/// The faults, by input code.
const OK: u32 = 0;
const PANIC: u32 = 1;
const ERROR: u32 = 2;
const ABORT: u32 = 3;
const SEGFAULT: u32 = 4;
const HANG: u32 = 5;
const CHILD_OOM: u32 = 6;
const GARBAGE_STDOUT: u32 = 7;
const EXIT_EARLY: u32 = 8;
const KILLED: u32 = 9;

/// Environment variable that turns this binary into a memory hog (the
/// child process of the CHILD_OOM fault).
const HOG: &str = "OTWRAP_TEST_FAULTS_HOG";

#[parallelize(backend = "processes", workers = 2, timeout = 3, progress = "never")]
fn faulty(code: u32) -> Result<u32, String> {
    match code {
        PANIC => panic!("the model panics on purpose"),
        ERROR => Err("the model refuses this point".to_string()),
        ABORT => std::process::abort(),
        // SAFETY: deliberately not: this is the segfault under test.
        SEGFAULT => unsafe {
            std::ptr::null_mut::<u32>().write_volatile(1);
            unreachable!()
        },
        HANG => {
            std::thread::sleep(Duration::from_secs(600));
            Ok(code)
        }
        CHILD_OOM => {
            // A solver that runs out of memory (limited to 256 MiB here).
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut cmd = std::process::Command::new(exe);
            cmd.env(HOG, "1").env_remove("OTWRAP_WORKER");
            // SAFETY: setrlimit only, between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    let limit = libc::rlimit {
                        rlim_cur: 256 << 20,
                        rlim_max: 256 << 20,
                    };
                    libc::setrlimit(libc::RLIMIT_AS, &limit);
                    Ok(())
                });
            }
            let out = cmd.output().map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(code)
            } else {
                Err(format!("the solver ran out of memory ({})", out.status))
            }
        }
        GARBAGE_STDOUT => {
            println!(
                "\u{0}\u{1}OTWRAPW garbage on stdout {}",
                "\u{ff}".repeat(64)
            );
            Ok(code)
        }
        EXIT_EARLY => std::process::exit(3),
        KILLED => {
            // SAFETY: kills this very process, as the OOM killer would.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            std::thread::sleep(Duration::from_secs(10));
            Ok(code)
        }
        _ => Ok(code + 100),
    }
}

fn hog() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Allocation failure aborts the process (SIGABRT).
        blocks.push(vec![1u8; 16 << 20]);
    }
}

/// What each fault must give on an out-of-process backend.
fn expect_out_of_process(
    code: u32,
    r: &Result<u32, PointError>,
    backend: &str,
) -> Result<(), String> {
    let fail = |what: &str| {
        Err(format!(
            "{backend}: point {code}: expected {what}, got {r:?}"
        ))
    };
    let crashed = |r: &Result<u32, PointError>, needle: &str| match r {
        Err(e) => {
            matches!(
                e.failure(),
                PointFailure::WorkerDied { .. } | PointFailure::TaskEnded { .. }
            ) && e.to_string().contains(needle)
        }
        Ok(_) => false,
    };
    match code {
        OK | GARBAGE_STDOUT => match r {
            Ok(v) if *v == code || *v == code + 100 => Ok(()),
            _ => fail("success"),
        },
        PANIC => match r {
            Err(e) if matches!(e.failure(), PointFailure::Panic { message } if message.contains("panics on purpose")) => {
                Ok(())
            }
            _ => fail("a panic failure with its message"),
        },
        ERROR => match r {
            Err(e) if matches!(e.failure(), PointFailure::Model { message } if message.contains("refuses")) => {
                Ok(())
            }
            _ => fail("the model's error"),
        },
        CHILD_OOM => match r {
            Err(e) if matches!(e.failure(), PointFailure::Model { message } if message.contains("out of memory")) => {
                Ok(())
            }
            _ => fail("the model's error about its child"),
        },
        ABORT if crashed(r, "SIGABRT") => Ok(()),
        SEGFAULT if crashed(r, "SIGSEGV") => Ok(()),
        KILLED if crashed(r, "SIGKILL") => Ok(()),
        EXIT_EARLY if crashed(r, "status 3") => Ok(()),
        ABORT | SEGFAULT | KILLED | EXIT_EARLY => fail("a crashed worker naming how it ended"),
        HANG => match r {
            Err(e) if matches!(e.failure(), PointFailure::Timeout { .. }) => Ok(()),
            _ => fail("a timeout"),
        },
        _ => Ok(()),
    }
}

/// Every fault twice, between healthy points.
fn all_faults() -> Vec<u32> {
    let mut inputs = Vec::new();
    for round in 0..2 {
        for code in [
            OK,
            PANIC,
            ERROR,
            ABORT,
            SEGFAULT,
            HANG,
            CHILD_OOM,
            GARBAGE_STDOUT,
            EXIT_EARLY,
            KILLED,
        ] {
            inputs.push(code);
            inputs.push(10 + round * 10 + code);
        }
    }
    inputs
}

fn check_batch(backend: &str, inputs: &[u32], batch: &otwrap::Batch<u32>) -> Result<(), Failed> {
    let mut problems = Vec::new();
    for (code, r) in inputs.iter().zip(batch.results()) {
        if let Err(p) = expect_out_of_process(*code, r, backend) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n").into())
    }
}

fn processes_every_fault_fails_alone() -> Result<(), Failed> {
    let inputs = all_faults();
    let batch = faulty::map(&inputs)?;
    check_batch("processes", &inputs, &batch)
}

/// The same model without a timeout (a thread cannot be stopped).
#[parallelize(backend = "rayon", progress = "never")]
fn faulty_in_process(code: u32) -> Result<u32, String> {
    faulty(code)
}

fn in_process_backends_survive_panics_errors_and_failing_children() -> Result<(), Failed> {
    let inputs: Vec<u32> = [OK, PANIC, ERROR, CHILD_OOM, GARBAGE_STDOUT, 11, PANIC, 12].to_vec();
    for backend in [Backend::Serial, Backend::Rayon] {
        let batch = faulty_in_process::runner().backend(backend).map(&inputs)?;
        check_batch(backend.name(), &inputs, &batch)?;
    }
    Ok(())
}

fn ssh_every_fault_fails_alone() -> Result<(), Failed> {
    let Some(env) = services::ssh("faults_ssh_every_fault_fails_alone") else {
        return Ok(());
    };
    let inputs = all_faults();
    let batch = faulty::runner()
        .backend(Backend::Ssh)
        .set(
            "hosts",
            format!(
                "2/{}@{}:{}, 1/{}@{}:{}",
                env.user, env.hosts[0], env.port, env.user, env.hosts[1], env.port
            ),
        )
        .set("key", env.key.display().to_string())
        .set("known_hosts", env.known_hosts.display().to_string())
        // A crash is not re-run here, so that it shows as it is.
        .retries(0)
        .map(&inputs)?;
    check_batch("ssh", &inputs, &batch)
}

fn slurm_every_fault_fails_alone() -> Result<(), Failed> {
    let Some(_env) = services::slurm("faults_slurm_every_fault_fails_alone") else {
        return Ok(());
    };
    let runs = tempfile::tempdir()?;
    let inputs = all_faults();
    let batch = faulty::runner()
        .backend(Backend::Slurm)
        .set("run_dir", runs.path().display().to_string())
        // One point per array task: a crash takes only its own task down.
        .set("points_per_task", 1u32)
        .retries(0)
        .map(&inputs)?;
    check_batch("slurm", &inputs, &batch)
}

/// Garbage in the disk cache: the batch reports the damaged store by its
/// path (nothing is deleted behind the user's back), or recomputes entries it
/// cannot read; it never returns a wrong value.
#[parallelize(backend = "rayon", progress = "never")]
#[cached(disk)]
fn cached_square(x: u32) -> u32 {
    x * x
}

fn damaged_cache_is_reported_or_recomputed_never_wrong() -> Result<(), Failed> {
    const STORED: u64 = 200;
    // sled's log `db` cut at 1,000 bytes, at half, 10 bytes short, or
    // overwritten with garbage; and its `conf` overwritten with garbage.
    type Cut = fn(u64) -> Option<u64>;
    let damages: [(&str, &str, Cut); 5] = [
        ("db cut at 1000 bytes", "db", |_| Some(1000)),
        ("db cut at half", "db", |len| Some(len / 2)),
        ("db cut 10 bytes short", "db", |len| {
            Some(len.saturating_sub(10))
        }),
        ("db garbage", "db", |_| None),
        ("conf garbage", "conf", |_| None),
    ];
    let mut outcomes = Vec::new();
    for (damage, file, cut) in damages {
        let dir = tempfile::tempdir()?;
        let cache = dir.path().join("cache");
        // A child process fills the cache (stores stay open for the life of a process).
        let status = std::process::Command::new(std::env::current_exe()?)
            .env("OTWRAP_TEST_FAULTS_FILL_CACHE", "1")
            .env("OTWRAP_CACHE_DIR", &cache)
            .stdout(std::process::Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("filling the cache failed: {status}").into());
        }
        let db = cache.join(file);
        let len = std::fs::metadata(&db)?.len();
        match cut(len) {
            Some(at) if at < len => std::fs::OpenOptions::new()
                .write(true)
                .open(&db)?
                .set_len(at)?,
            Some(_) => return Err(format!("{damage}: the store is only {len} bytes").into()),
            None => std::fs::write(&db, vec![0xA5u8; len as usize])?,
        }
        // What sled recovers from these files, found on a copy (opening the
        // store itself would record the new count and spend the warning).
        let copy = dir.path().join("copy");
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(&cache)
            .arg(&copy)
            .status()?;
        if !copied.success() {
            return Err(format!("cp -a failed: {copied}").into());
        }
        let found = match otwrap_runtime::cache::store::DiskStore::open(&copy) {
            Ok(store) => {
                use otwrap_runtime::cache::store::CacheStore as _;
                Some(store.len()? as u64)
            }
            Err(_) => None,
        };

        let out = std::process::Command::new(std::env::current_exe()?)
            .env("OTWRAP_TEST_FAULTS_FILL_CACHE", "1")
            .env("OTWRAP_CACHE_DIR", &cache)
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let path = std::fs::canonicalize(&cache)?.display().to_string();
        eprintln!(
            "{damage} ({len} bytes): {} entries recoverable; rerun {}: {}",
            found.map_or("no".to_string(), |n| n.to_string()),
            out.status,
            stderr.lines().next().unwrap_or("")
        );
        // Never a panic.
        if stderr.contains("panicked") {
            return Err(format!("{damage}: a panic on a damaged cache: {stderr}").into());
        }
        outcomes.push(found.is_some());
        match found {
            // sled cannot open it: a clear error naming the store and what to do.
            None => {
                if out.status.success()
                    || !(stderr.contains(&path) && stderr.contains("move it away"))
                {
                    return Err(format!(
                        "{damage}: the unreadable store is not a clear error ({}): {stderr}",
                        out.status
                    )
                    .into());
                }
            }
            Some(found) => {
                // Recomputed what it could not read: the values are checked in the child.
                if !out.status.success() || !stdout.contains("values ok") {
                    return Err(format!(
                        "{damage}: the rerun failed or gave wrong values ({}): {stdout}{stderr}",
                        out.status
                    )
                    .into());
                }
                let warning = format!("holds {found} entries but {STORED} were stored");
                let warned = stderr.contains(&warning) && stderr.contains(&path);
                // Lost entries are never recomputed in silence; a cut that
                // lost nothing has nothing to say.
                if (found < STORED) != warned {
                    return Err(format!(
                        "{damage}: {found} of {STORED} entries recovered, warned: {warned}: {stderr}"
                    )
                    .into());
                }
                if warned && !(stderr.contains("recomputed") && stderr.contains("move")) {
                    return Err(
                        format!("{damage}: the warning does not say what to do: {stderr}").into(),
                    );
                }
            }
        }
    }
    // Both ways were taken: a recovered store warned, an unreadable one refused.
    if !(outcomes.contains(&true) && outcomes.contains(&false)) {
        return Err(format!("recovered (true) or refused (false): {outcomes:?}").into());
    }
    Ok(())
}

fn fill_cache() -> ! {
    let inputs: Vec<u32> = (0..200).collect();
    match cached_square::map(&inputs).and_then(|b| b.into_values().map_err(otwrap::Error::Point)) {
        Ok(values) if values.iter().zip(&inputs).all(|(v, x)| *v == x * x) => {
            println!("values ok");
            std::process::exit(0)
        }
        Ok(_) => {
            println!("values WRONG");
            std::process::exit(1)
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2)
        }
    }
}

/// Records its worker's pid, then takes a while.
#[parallelize(backend = "processes", workers = 2, progress = "never")]
fn slow_pid(dir: String, k: u32) -> u32 {
    let _ = std::fs::write(
        Path::new(&dir).join(format!("pid-{}", std::process::id())),
        b"",
    );
    std::thread::sleep(Duration::from_millis(300));
    k
}

fn driver(dir: String) -> ! {
    let inputs: Vec<(String, u32)> = (0..50).map(|k| (dir.clone(), k)).collect();
    let code = match slow_pid::map(&inputs) {
        Ok(_) => 0,
        Err(_) => 2,
    };
    std::process::exit(code)
}

/// A driver killed with SIGKILL mid-batch leaves no worker process behind
/// (they die with it), so a restart starts clean.
fn killed_driver_leaves_no_worker_process() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .env("OTWRAP_TEST_FAULTS_DRIVER", dir.path())
        .spawn()?;
    let pids = |dir: &Path| -> Vec<u32> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .strip_prefix("pid-")
                            .and_then(|p| p.parse().ok())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while pids(dir.path()).len() < 2 {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            return Err("the driver's workers never started".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()?;
    let workers = pids(dir.path());
    for _ in 0..50 {
        if workers
            .iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists() || solver_tree::is_zombie(*p))
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("worker processes {workers:?} outlived their killed driver").into())
}

/// Bad configuration files are errors naming the file, the key and what is
/// expected, before anything runs.
fn bad_config_files_are_clear_errors() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let cases: [(&str, &[&str]); 6] = [
        ("workerz = 4\n", &["unknown key `workerz`", "workers"]),
        ("workers = \"four\"\n", &["`workers`"]),
        ("backend = \"sssh\"\n", &["unknown backend `sssh`", "ssh"]),
        ("backend = \"ssh\"\n", &["needs hosts", "OTWRAP_SSH_HOSTS"]),
        (
            "[ssh]\nhosts = [\"0/node\"]\n",
            &["[ssh]", "`hosts`", "at least 1"],
        ),
        (
            "[slurm]\npartion = \"debug\"\n",
            &["[slurm]", "did you mean `partition`", "wckey"],
        ),
    ];
    for (text, needles) in cases {
        let file = dir.path().join("otwrap.toml");
        std::fs::write(&file, text)?;
        let err = faulty::runner()
            .config_file(&file)
            .map(&[OK])
            .expect_err("a bad configuration must be refused");
        let msg = err.to_string();
        for needle in needles {
            if !msg.contains(needle) {
                return Err(format!("for {text:?}: {msg:?} lacks {needle:?}").into());
            }
        }
    }
    Ok(())
}

#[otwrap::main]
fn main() {
    if std::env::var_os(HOG).is_some() {
        hog();
    }
    if std::env::var_os("OTWRAP_TEST_FAULTS_FILL_CACHE").is_some() {
        fill_cache();
    }
    if let Some(dir) = std::env::var_os("OTWRAP_TEST_FAULTS_DRIVER") {
        driver(dir.to_string_lossy().into_owned());
    }
    let mut args = Arguments::from_args();
    // The ssh case shares the sshd hosts with nothing here, but SLURM and
    // ssh cases are heavy: one at a time keeps the 2-CPU machines sane.
    args.test_threads = Some(1);
    let tests = vec![
        Trial::test(
            "faults_processes_every_fault_fails_alone",
            processes_every_fault_fails_alone,
        ),
        Trial::test(
            "faults_in_process_backends_survive_panics_errors_and_failing_children",
            in_process_backends_survive_panics_errors_and_failing_children,
        ),
        Trial::test(
            "faults_ssh_every_fault_fails_alone",
            ssh_every_fault_fails_alone,
        ),
        Trial::test(
            "faults_slurm_every_fault_fails_alone",
            slurm_every_fault_fails_alone,
        ),
        Trial::test(
            "faults_damaged_cache_is_reported_or_recomputed_never_wrong",
            damaged_cache_is_reported_or_recomputed_never_wrong,
        ),
        Trial::test(
            "faults_bad_config_files_are_clear_errors",
            bad_config_files_are_clear_errors,
        ),
        Trial::test(
            "faults_killed_driver_leaves_no_worker_process",
            killed_driver_leaves_no_worker_process,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
