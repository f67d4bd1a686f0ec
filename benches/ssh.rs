//! The `ssh` backend over loopback (the sshd "hosts" of
//! `scripts/services/sshd.sh start`): dispatch cost per point on trivial
//! points with 1 and 4 slots, and the beam model over ssh against rayon.
//! And the start-up of many slots: 3 hosts × 32 slots, each evaluating one
//! point that waits a little (OTWRAP_BENCH_STARTUP_SLOTS slots a host, 0 to
//! skip).
//! Run with `scripts/services/sshd.sh start && cargo bench --bench ssh`;
//! OTWRAP_BENCH_POINTS, OTWRAP_BENCH_BEAM_POINTS and OTWRAP_BENCH_RUNS
//! change the sizes. Prints medians; with OTWRAP_BENCH_JSON=path, also
//! appends them to that file as JSON lines.

#[path = "../examples/beam/common.rs"]
mod common;
#[path = "support/json.rs"]
mod json;
#[path = "../tests/support/services.rs"]
mod services;

#[path = "support/beam_model.rs"]
mod beam_model;
#[path = "support/stats.rs"]
mod stats;

use beam_model::{beam, DOE};
use stats::{env_usize, median};
use std::time::{Duration, Instant};

use common::{solver, BoxError};
use otwrap::prelude::*;
use otwrap::{Model, Runner, Sample};

#[parallelize(backend = "ssh", progress = "never")]
fn trivial(x: f64) -> f64 {
    x.mul_add(2.0, 1.0)
}

/// Waits 200 ms, then says which worker ran it and when it started
/// (milliseconds since the epoch).
#[parallelize(backend = "ssh", progress = "never")]
fn waiter(_k: u32) -> (u32, u128) {
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    std::thread::sleep(Duration::from_millis(200));
    (std::process::id(), started)
}

/// 3 hosts × `slots` slots: the wall time of a batch of one 200 ms point
/// per slot (connect, copy check, start every worker, evaluate, shut down),
/// and when the last point started.
fn startup(env: &services::SshEnv, slots: usize, runs: usize) -> Result<(), BoxError> {
    let hosts = [(0, slots), (1, slots), (2, slots)];
    let total = 3 * slots;
    let inputs: Vec<u32> = (0..total as u32).collect();
    // Warm-up: copies the binary to the hosts.
    on_hosts::<waiter::Model>(env, &hosts)
        .map(&inputs)?
        .into_values()?;
    let mut walls = Vec::new();
    let mut lasts = Vec::new();
    let mut workers = 0;
    for _ in 0..runs {
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis();
        let start = Instant::now();
        let values = on_hosts::<waiter::Model>(env, &hosts)
            .map(&inputs)?
            .into_values()?;
        walls.push(start.elapsed());
        let last = values.iter().map(|&(_, s)| s).max().unwrap_or(t0);
        lasts.push(Duration::from_millis(u64::try_from(
            last.saturating_sub(t0),
        )?));
        let mut pids: Vec<u32> = values.iter().map(|&(p, _)| p).collect();
        pids.sort_unstable();
        pids.dedup();
        workers = pids.len();
    }
    let (wall, last) = (median(walls), median(lasts));
    json::emit(
        "ssh",
        &format!("start-up, 3 hosts x {slots} slots"),
        total,
        runs,
        wall,
        &[("slots", total.into()), ("hosts", 3usize.into())],
    );
    println!(
        "  3 hosts × {slots} slots: batch {:6.3} s, last point started after {:6.3} s, \
         {workers} distinct workers",
        wall.as_secs_f64(),
        last.as_secs_f64()
    );
    Ok(())
}

fn on_hosts<M: Model>(env: &services::SshEnv, hosts: &[(usize, usize)]) -> Runner<M> {
    let list: Vec<String> = hosts
        .iter()
        .map(|&(h, slots)| format!("{slots}/{}@{}:{}", env.user, env.hosts[h], env.port))
        .collect();
    Runner::<M>::new()
        .backend(Backend::Ssh)
        .set("hosts", list.join(","))
        .set("key", env.key.display().to_string())
        .set("known_hosts", env.known_hosts.display().to_string())
}

/// Median wall time of `runs` batches (after one warm-up, which also copies
/// the binary to the hosts).
fn time<M: Model>(
    runs: usize,
    make: impl Fn() -> Runner<M>,
    inputs: &[M::Input],
) -> Result<Duration, BoxError> {
    make().map(inputs)?.into_values()?;
    let mut all = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let batch = make().map(inputs)?;
        all.push(start.elapsed());
        batch.into_values()?;
    }
    Ok(median(all))
}

#[otwrap::main]
fn main() -> Result<(), BoxError> {
    let Some(env) = services::ssh("bench ssh") else {
        return Ok(());
    };
    let n = env_usize("OTWRAP_BENCH_POINTS", 10_000);
    let n_beam = env_usize("OTWRAP_BENCH_BEAM_POINTS", 1_000);
    let runs = env_usize("OTWRAP_BENCH_RUNS", 5);
    println!("ssh over loopback: start-up of many slots, median of {runs} runs");
    // OTWRAP_BENCH_STARTUP_SLOTS=0 skips the start-up runs.
    let big = env_usize("OTWRAP_BENCH_STARTUP_SLOTS", 32);
    for slots in [8.min(big), big] {
        if slots > 0 {
            startup(&env, slots, runs)?;
        }
    }
    let inputs: Vec<f64> = (0..n).map(|i| i as f64 * 1e-3).collect();
    println!("ssh over loopback: {n} trivial points, median of {runs} runs");
    for (label, hosts) in [
        ("1 slot  (1 host) ", vec![(0, 1)]),
        ("2 slots (1 host) ", vec![(0, 2)]),
        ("2 slots (2 hosts)", vec![(0, 1), (1, 1)]),
        ("4 slots (2 hosts)", vec![(0, 2), (1, 2)]),
    ] {
        let t = time(runs, || on_hosts::<trivial::Model>(&env, &hosts), &inputs)?;
        let slots: usize = hosts.iter().map(|&(_, s)| s).sum();
        json::emit(
            "ssh",
            &format!("trivial, {slots} slots on {} hosts", hosts.len()),
            n,
            runs,
            t,
            &[("slots", slots.into()), ("hosts", hosts.len().into())],
        );
        println!(
            "  {label}: {:8.3} s  {:9.0} points/s  {:7.1} µs/point of wall time",
            t.as_secs_f64(),
            n as f64 / t.as_secs_f64(),
            t.as_secs_f64() * 1e6 / n as f64
        );
    }

    let doe = Sample::read_csv(DOE)?.to_arrays::<4>()?;
    let points: Vec<[f64; 4]> = (0..n_beam)
        .map(|k| {
            let mut p = doe[k % doe.len()];
            p[0] += k as f64 * 1e-6;
            p
        })
        .collect();
    println!("beam: {n_beam} points, solver {}", solver()?.display());
    let rayon = time(
        runs,
        || beam::runner().backend(Backend::Rayon).workers(2),
        &points,
    )?;
    // The hosts share this filesystem: run the binary in place, so that it
    // finds the solver next to it.
    let exe = std::env::current_exe()?.display().to_string();
    let ssh = time(
        runs,
        || on_hosts::<beam::Model>(&env, &[(0, 2)]).set("worker_path", exe.as_str()),
        &points,
    )?;
    json::emit(
        "ssh",
        "beam, rayon 2 workers",
        n_beam,
        runs,
        rayon,
        &[("workers", 2usize.into())],
    );
    json::emit(
        "ssh",
        "beam, ssh 1 host x 2 slots",
        n_beam,
        runs,
        ssh,
        &[("slots", 2usize.into()), ("hosts", 1usize.into())],
    );
    let rate = |t: Duration| n_beam as f64 / t.as_secs_f64();
    println!(
        "  rayon, 2 workers     : {:7.3} s  {:7.0} eval/s",
        rayon.as_secs_f64(),
        rate(rayon)
    );
    println!(
        "  ssh, 1 host × 2 slots: {:7.3} s  {:7.0} eval/s  ({:.0}% of rayon)",
        ssh.as_secs_f64(),
        rate(ssh),
        100.0 * rate(ssh) / rate(rayon)
    );
    Ok(())
}
