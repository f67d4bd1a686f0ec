//! Load: large batches complete with bounded memory and leave no file
//! descriptor, thread or process behind. Each batch runs in a child process
//! of this binary (so that its peak RSS is its own), which reports its
//! measurements on stdout; the tests check them. The peak RSS figures are in
//! BENCHMARKS.md (`cargo test --release --test load -- --nocapture`).

use std::time::{Duration, Instant};

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::prelude::*;

#[path = "support/services.rs"]
mod services;

#[parallelize(backend = "rayon", progress = "never")]
fn model(x: [f64; 4]) -> f64 {
    x[0] * x[1] / (3.0 * x[2] * x[3]).max(1e-9)
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

/// Live (not zombie) children of this process.
fn children() -> usize {
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("");
            let ppid = fields.next().unwrap_or("");
            ppid == me && state != "Z"
        })
        .count()
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Child mode: one batch, then the measurements.
fn child(backend: &str, n: usize) -> ! {
    let inputs: Vec<[f64; 4]> = (0..n)
        .map(|i| {
            let t = i as f64;
            [3e4 + t, 3e7, 250.0 + (t % 10.0), 400.0]
        })
        .collect();
    let mut runner = model::runner();
    runner = match backend {
        "processes" => runner.backend(Backend::Processes).workers(2),
        "ssh" => {
            let Some(env) = services::ssh("load ssh child") else {
                std::process::exit(3)
            };
            runner
                .backend(Backend::Ssh)
                .set(
                    "hosts",
                    format!("2/{}@{}:{}", env.user, env.hosts[0], env.port),
                )
                .set("key", env.key.display().to_string())
                .set("known_hosts", env.known_hosts.display().to_string())
        }
        _ => runner.backend(Backend::Rayon).workers(2),
    };
    // A first batch brings up what stays for the life of the process (the
    // rayon pool, the tracing callsites), so that leaks show as growth.
    let _ = runner_like(backend).map(&inputs[..inputs.len().min(100)]);
    let (fds0, threads0, rss0) = (
        count_dir("/proc/self/fd"),
        count_dir("/proc/self/task"),
        status_kb("VmRSS:"),
    );
    let start = Instant::now();
    let batch = match runner.map(&inputs) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2)
        }
    };
    let wall = start.elapsed();
    let ok = batch.summary().succeeded();
    drop(batch);
    // Threads of finished slots may take a moment to exit.
    let deadline = Instant::now() + Duration::from_secs(5);
    while (count_dir("/proc/self/task") > threads0 || children() > 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!(
        "ok={ok} wall_ms={} fds_before={fds0} fds_after={} threads_before={threads0} threads_after={} children_after={} rss_before_kb={rss0} peak_rss_kb={}",
        wall.as_millis(),
        count_dir("/proc/self/fd"),
        count_dir("/proc/self/task"),
        children(),
        status_kb("VmHWM:"),
    );
    std::process::exit(0)
}

fn runner_like(backend: &str) -> otwrap::Runner<model::Model> {
    let r = model::runner();
    match backend {
        "processes" => r.backend(Backend::Processes).workers(2),
        "ssh" => match services::ssh("load ssh warm-up") {
            Some(env) => r
                .backend(Backend::Ssh)
                .set(
                    "hosts",
                    format!("2/{}@{}:{}", env.user, env.hosts[0], env.port),
                )
                .set("key", env.key.display().to_string())
                .set("known_hosts", env.known_hosts.display().to_string()),
            None => r,
        },
        _ => r.backend(Backend::Rayon).workers(2),
    }
}

fn run_child(backend: &str, n: usize, rss_limit_mb: u64) -> Result<(), Failed> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .env("OTWRAP_TEST_LOAD_CHILD", format!("{backend}:{n}"))
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{backend} child failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("ok="))
        .ok_or_else(|| format!("no measurements in {stdout:?}"))?;
    eprintln!("load {backend} {n} points: {line}");
    let get = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.parse().ok()))
            .unwrap_or(u64::MAX)
    };
    let checks = [
        (get("ok=") == n as u64, "every point succeeded"),
        (
            get("fds_after=") <= get("fds_before="),
            "no file descriptor leaked",
        ),
        (
            get("threads_after=") <= get("threads_before="),
            "no thread left running",
        ),
        (get("children_after=") == 0, "no child process left"),
        (
            get("peak_rss_kb=") <= rss_limit_mb * 1024,
            "peak memory under the limit",
        ),
    ];
    for (ok, what) in checks {
        if !ok {
            return Err(format!("{backend}: not true that {what}: {line}").into());
        }
    }
    Ok(())
}

#[otwrap::main]
fn main() {
    if let Some(spec) = std::env::var_os("OTWRAP_TEST_LOAD_CHILD") {
        let spec = spec.to_string_lossy().into_owned();
        let (backend, n) = spec.split_once(':').unwrap_or(("rayon", "1000"));
        child(backend, n.parse().unwrap_or(1000));
    }
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    let tests = vec![
        Trial::test("load_rayon_100k_points", || {
            run_child("rayon", 100_000, 300)
        }),
        Trial::test("load_processes_100k_points", || {
            run_child("processes", 100_000, 300)
        }),
        Trial::test("load_ssh_5k_points", || {
            if services::ssh("load_ssh_5k_points").is_none() {
                return Ok(());
            }
            run_child("ssh", 5_000, 300)
        }),
    ];
    libtest_mimic::run(&args, tests).exit();
}
