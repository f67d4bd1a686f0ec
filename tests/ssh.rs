//! The `ssh` backend against real sshd processes on loopback addresses
//! (127.0.0.2-4, started by `scripts/services/sshd.sh`): this test binary is
//! copied to the "hosts" and runs there as the worker (`#[otwrap::main]`).
//! Without the service, each test prints SKIPPED (and fails when CI=true).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::prelude::*;
use otwrap::PointFailure;

#[path = "support/services.rs"]
mod services;
#[path = "support/solver_tree.rs"]
mod solver_tree;

fn value(x: f64) -> f64 {
    (x * 1.5).cos() + x * x
}

/// The server address this evaluation's SSH session reached: which "host"
/// ran it (every host is this machine).
fn server_address() -> String {
    std::env::var("SSH_CONNECTION")
        .ok()
        .and_then(|c| c.split_whitespace().nth(2).map(str::to_string))
        .unwrap_or_else(|| "local".to_string())
}

#[parallelize(backend = "ssh")]
fn where_run(x: f64) -> (f64, String) {
    std::thread::sleep(Duration::from_millis(12));
    (value(x), server_address())
}

#[parallelize(backend = "rayon")]
fn local_value(x: f64) -> f64 {
    value(x)
}

/// Leaves a trace of where each point ran in `dir`.
#[parallelize(backend = "ssh")]
fn tracked(dir: String, x: f64) -> (f64, String) {
    let addr = server_address();
    let _ = std::fs::write(Path::new(&dir).join(format!("on-{addr}-{x}")), b"");
    std::thread::sleep(Duration::from_millis(10));
    (value(x), addr)
}

/// Records which worker process runs each point, then takes a while.
#[parallelize(backend = "ssh", progress = "never")]
fn slow_pid(dir: String, k: u32) -> u32 {
    let _ = std::fs::write(
        Path::new(&dir).join(format!("point-{k}-{}", std::process::id())),
        b"",
    );
    std::thread::sleep(Duration::from_millis(400));
    k
}

/// Driver mode of this binary (a child of the tests below): runs `slow_pid`
/// over 40 points on the hosts of `OTWRAP_SSH_HOSTS` and prints the counts.
fn driver(dir: String) -> ! {
    let inputs: Vec<(String, u32)> = (0..40).map(|k| (dir.clone(), k)).collect();
    match slow_pid::map(&inputs) {
        Ok(batch) => {
            let ok = batch.summary().succeeded();
            let not_run = batch.errors().filter(|e| e.is_not_run()).count();
            let interrupted = batch
                .errors()
                .filter(|e| e.to_string().contains("interrupted"))
                .count();
            println!("ok={ok} not_run={not_run} interrupted={interrupted}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("driver: {e}");
            std::process::exit(2)
        }
    }
}

/// Starts a driver child, waits until its workers run points, sends it
/// `signal`; returns its output and the remote worker pids.
fn drive_and_signal(
    env: &services::SshEnv,
    signal: i32,
) -> Result<(std::process::Output, Vec<u32>), Failed> {
    let dir = tempfile::tempdir()?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    let child = solver_tree::with_default_signals(&mut command)
        .env("OTWRAP_TEST_SSH_DRIVER", dir.path())
        .env("OTWRAP_SSH_HOSTS", host(env, &env.hosts[1], 2))
        .env("OTWRAP_SSH_KEY", &env.key)
        .env("OTWRAP_SSH_KNOWN_HOSTS", &env.known_hosts)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let points = |dir: &Path| -> Vec<u32> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.rsplit('-').next().and_then(|p| p.parse().ok())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while points(dir.path()).len() < 3 {
        if std::time::Instant::now() > deadline {
            return Err("the driver's workers never started".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signals our own child process.
    unsafe { libc::kill(child.id() as i32, signal) };
    let output = child.wait_with_output()?;
    let mut pids = points(dir.path());
    pids.sort_unstable();
    pids.dedup();
    Ok((output, pids))
}

fn all_gone(pids: &[u32]) -> Result<(), Failed> {
    for _ in 0..50 {
        let alive: Vec<&u32> = pids
            .iter()
            .filter(|p| Path::new(&format!("/proc/{p}")).exists())
            .collect();
        if alive.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("remote workers {pids:?} outlived their driver by 5 s").into())
}

fn killed_driver_leaves_no_remote_worker() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_killed_driver_leaves_no_remote_worker") else {
        return Ok(());
    };
    let (_, pids) = drive_and_signal(&env, libc::SIGKILL)?;
    check(!pids.is_empty(), || "no worker pid recorded".into())?;
    all_gone(&pids)
}

fn ctrl_c_stops_the_batch_and_keeps_finished_results() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_ctrl_c_stops_the_batch_and_keeps_finished_results") else {
        return Ok(());
    };
    signal_stops_the_batch_and_keeps_finished_results(&env, libc::SIGINT)
}

/// SIGTERM (`scancel` of a driver job, `timeout`, systemd) is Ctrl-C.
fn sigterm_stops_the_batch_and_keeps_finished_results() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_sigterm_stops_the_batch_and_keeps_finished_results") else {
        return Ok(());
    };
    signal_stops_the_batch_and_keeps_finished_results(&env, libc::SIGTERM)
}

fn signal_stops_the_batch_and_keeps_finished_results(
    env: &services::SshEnv,
    signal: i32,
) -> Result<(), Failed> {
    let (output, pids) = drive_and_signal(env, signal)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    check(output.status.success(), || {
        format!(
            "the driver did not return its batch: {:?}\n{stderr}",
            output.status
        )
    })?;
    let count = |key: &str| -> usize {
        stdout
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.parse().ok()))
            .unwrap_or(usize::MAX)
    };
    let (ok, not_run, interrupted) = (count("ok="), count("not_run="), count("interrupted="));
    check(
        ok >= 1 && not_run >= 1 && ok + not_run == 40 && interrupted == not_run,
        || format!("after signal {signal}: {stdout}"),
    )?;
    all_gone(&pids)
}

/// Point 5 kills its own worker the first time it runs (a marker file in
/// `dir` remembers); point 7 kills it every time; point 9 fails in the model.
#[parallelize(backend = "ssh")]
fn fragile(dir: String, k: u32) -> Result<u32, String> {
    let marker = Path::new(&dir).join(format!("ran-{k}"));
    let first = !marker.exists();
    std::fs::write(&marker, b"x").map_err(|e| e.to_string())?;
    if k == 7 || (k == 5 && first) {
        // SAFETY: kills this very worker process, as an OOM killer would.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::thread::sleep(Duration::from_secs(10));
    }
    if k == 9 {
        return Err("k = 9 is outside the model's domain".to_string());
    }
    Ok(k * 10)
}

/// Point 2 hangs; it records its pid so the test can check it was killed.
#[parallelize(backend = "ssh", timeout = 1.5)]
fn hangs(dir: String, k: u32) -> u32 {
    if k == 2 {
        let _ = std::fs::write(
            Path::new(&dir).join("hung.pid"),
            std::process::id().to_string(),
        );
        std::thread::sleep(Duration::from_secs(120));
    }
    k
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

fn host(env: &services::SshEnv, addr: &str, slots: usize) -> String {
    format!("{slots}/{}@{addr}:{}", env.user, env.port)
}

fn runner<M: otwrap::Model>(
    env: &services::SshEnv,
    hosts: &[String],
    runner: otwrap::Runner<M>,
) -> otwrap::Runner<M> {
    runner
        .set("hosts", hosts.join(","))
        .set("key", env.key.display().to_string())
        .set("known_hosts", env.known_hosts.display().to_string())
        .progress(ProgressMode::Never)
}

fn same_results_as_rayon_weighted_by_slots() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_same_results_as_rayon_weighted_by_slots") else {
        return Ok(());
    };
    let inputs: Vec<f64> = (0..600).map(|i| f64::from(i) * 0.01).collect();
    let hosts = [host(&env, &env.hosts[0], 3), host(&env, &env.hosts[1], 1)];
    let batch = runner(&env, &hosts, where_run::runner()).map(&inputs)?;
    let expected = local_value::map(&inputs)?.values()?;
    let got = batch.values()?;
    let mut per_host: HashMap<String, usize> = HashMap::new();
    for ((v, addr), e) in got.iter().zip(&expected) {
        check(v.to_bits() == e.to_bits(), || {
            format!("ssh gave {v}, rayon {e}")
        })?;
        *per_host.entry(addr.clone()).or_default() += 1;
    }
    let a = per_host.get(&env.hosts[0]).copied().unwrap_or(0);
    let b = per_host.get(&env.hosts[1]).copied().unwrap_or(0);
    eprintln!(
        "points per host: {} → {a}, {} → {b}",
        env.hosts[0], env.hosts[1]
    );
    check(a + b == inputs.len(), || format!("{per_host:?}"))?;
    // 3 slots against 1: about 450 against 150 (less the start-up skew of
    // a few logins).
    check(10 * a >= 18 * b && b >= 60, || {
        format!("work is not weighted by slots: {per_host:?}")
    })
}

fn host_killed_mid_run_completes_every_point() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_host_killed_mid_run_completes_every_point") else {
        return Ok(());
    };
    let victim = env.hosts[2].clone();
    let dir = tempfile::tempdir()?;
    let d = dir.path().display().to_string();
    let inputs: Vec<(String, f64)> = (0..300).map(|i| (d.clone(), f64::from(i))).collect();
    let hosts = [host(&env, &env.hosts[0], 2), host(&env, &victim, 2)];
    // Kill the victim (its sshd and every process under it) once it has
    // run 20 points.
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (env, victim, dir, done) = (
            env.clone(),
            victim.clone(),
            dir.path().to_path_buf(),
            Arc::clone(&done),
        );
        std::thread::spawn(move || -> Result<usize, String> {
            loop {
                let ran = std::fs::read_dir(&dir)
                    .map_err(|e| e.to_string())?
                    .filter_map(Result::ok)
                    .filter(|e| {
                        e.file_name()
                            .to_string_lossy()
                            .starts_with(&format!("on-{victim}-"))
                    })
                    .count();
                if ran >= 20 {
                    env.kill_host(&victim)?;
                    return Ok(ran);
                }
                if done.load(Ordering::SeqCst) {
                    return Err(format!(
                        "the batch ended before {victim} ran 20 points ({ran})"
                    ));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let batch = runner(&env, &hosts, tracked::runner()).map(&inputs);
    done.store(true, Ordering::SeqCst);
    let killed = killer.join().map_err(|_| "the killer thread panicked")?;
    let restarted = env.start_host(&victim);
    let ran_before_kill = killed?;
    restarted.map_err(|e| format!("cannot restart {victim}: {e}"))?;
    let got = batch?.values()?;
    let on_victim = got.iter().filter(|(_, a)| *a == victim).count();
    eprintln!(
        "{victim} ran {ran_before_kill} points before it was killed, {on_victim} of them finished"
    );
    check(on_victim < inputs.len() / 2, || {
        format!("{on_victim} points ran on the killed host")
    })?;
    for ((_, x), (v, _)) in inputs.iter().zip(&got) {
        check(v.to_bits() == value(*x).to_bits(), || {
            format!("wrong value at {x}")
        })?;
    }
    Ok(())
}

fn losing_the_last_host_keeps_finished_results() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_losing_the_last_host_keeps_finished_results") else {
        return Ok(());
    };
    let victim = env.hosts[2].clone();
    let dir = tempfile::tempdir()?;
    let d = dir.path().display().to_string();
    let inputs: Vec<(String, f64)> = (0..200).map(|i| (d.clone(), f64::from(i))).collect();
    let down = Arc::new(AtomicBool::new(false));
    let (flag, env2, victim2) = (Arc::clone(&down), env.clone(), victim.clone());
    let batch = runner(&env, &[host(&env, &victim, 2)], tracked::runner())
        .on_progress(move |p| {
            if p.done >= 30 && !flag.swap(true, Ordering::SeqCst) {
                let _ = env2.kill_host(&victim2);
            }
        })
        .map(&inputs);
    env.start_host(&victim)
        .map_err(|e| format!("cannot restart {victim}: {e}"))?;
    let batch = batch?;
    let ok = batch.summary().succeeded();
    check((30..200).contains(&ok), || format!("{ok} points succeeded"))?;
    for (i, r) in batch.results().iter().enumerate() {
        match r {
            Ok((v, _)) => check(v.to_bits() == value(i as f64).to_bits(), || {
                format!("point {i} has a wrong value")
            })?,
            Err(e) => check(
                e.is_not_run() && e.to_string().contains("no SSH host was left"),
                || format!("point {i}: {e}"),
            )?,
        }
    }
    Ok(())
}

fn lost_workers_are_retried_and_model_failures_are_not() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_lost_workers_are_retried_and_model_failures_are_not") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let d = dir.path().display().to_string();
    let inputs: Vec<(String, u32)> = (0..12).map(|k| (d.clone(), k)).collect();
    let hosts = [host(&env, &env.hosts[0], 2)];
    let batch = runner(&env, &hosts, fragile::runner())
        .retries(2)
        .map(&inputs)?;
    for (i, r) in batch.results().iter().enumerate() {
        match (i, r) {
            (7, Err(e)) => {
                let text = e.to_string();
                check(
                    matches!(e.failure(), PointFailure::WorkerDied { .. })
                        && text.contains("[infrastructure loss, 3 attempts, 0 of 2 retries left]")
                        && text.contains("SIGKILL"),
                    || format!("point 7: {text}"),
                )?;
                check(e.location().host.contains(&env.hosts[0]), || {
                    format!("point 7 names no host: {text}")
                })?;
            }
            (9, Err(e)) => check(
                matches!(e.failure(), PointFailure::Model { .. })
                    && e.to_string().contains("outside the model's domain"),
                || format!("point 9: {e}"),
            )?,
            (i, Ok(v)) if i != 7 && i != 9 => {
                check(*v == i as u32 * 10, || format!("point {i} = {v}"))?
            }
            (i, other) => return Err(format!("point {i}: unexpected {other:?}").into()),
        }
    }
    Ok(())
}

fn timeout_kills_the_remote_evaluation() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_timeout_kills_the_remote_evaluation") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let d = dir.path().display().to_string();
    let inputs: Vec<(String, u32)> = (0..6).map(|k| (d.clone(), k)).collect();
    let hosts = [host(&env, &env.hosts[1], 2)];
    let batch = runner(&env, &hosts, hangs::runner()).map(&inputs)?;
    for (i, r) in batch.results().iter().enumerate() {
        match r {
            Err(e) if i == 2 => check(matches!(e.failure(), PointFailure::Timeout { .. }), || {
                format!("point 2: {e}")
            })?,
            Ok(v) if i != 2 => check(*v == i as u32, || format!("point {i} = {v}"))?,
            other => return Err(format!("point {i}: unexpected {other:?}").into()),
        }
    }
    let pid = std::fs::read_to_string(dir.path().join("hung.pid"))?;
    let proc_dir = PathBuf::from(format!("/proc/{}", pid.trim()));
    for _ in 0..50 {
        if !proc_dir.exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "the hung remote worker {} still runs 5 s after its timeout",
        pid.trim()
    )
    .into())
}

/// A timed-out point's solver (a script and the `sleep` it started) dies
/// with the remote worker.
fn timeout_kills_the_solver_tree() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_timeout_kills_the_solver_tree") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let script = solver_tree::write_script(dir.path())?.display().to_string();
    let tag = solver_tree::unique_tag(20);
    let points = vec![
        (solver_tree::SLOW, script.clone(), tag.clone()),
        (solver_tree::FAST, script, tag.clone()),
    ];
    let hosts = [host(&env, &env.hosts[1], 2)];
    let batch = runner(&env, &hosts, solver_tree::solver::runner())
        .timeout(Duration::from_secs(2))
        .map(&points)?;
    solver_tree::check_timed_out_and_fast(&batch)?;
    solver_tree::none_left(&tag, "the timed-out point on ssh")
}

fn unknown_host_key_is_refused_unless_accept_new() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_unknown_host_key_is_refused_unless_accept_new") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let known = dir.path().join("known_hosts");
    std::fs::write(&known, "")?;
    let hosts = [host(&env, &env.hosts[0], 1)];
    let run = |policy: &str| {
        runner(&env, &hosts, where_run::runner())
            .set("known_hosts", known.display().to_string())
            .set("host_key_check", policy)
            .map(&[1.0])
    };
    let err = run("strict").expect_err("an unknown host key must be refused");
    let text = err.to_string();
    check(
        text.contains("host key")
            && text.contains("unknown")
            && text.contains(&format!("{}:{}", env.hosts[0], env.port))
            && text.contains("SHA256:"),
        || format!("unclear error: {text}"),
    )?;
    let batch = run("accept-new")?;
    check(batch.values()?.len() == 1, || "no result".into())?;
    let written = std::fs::read_to_string(&known)?;
    check(
        written.contains(&format!("[{}]:{}", env.hosts[0], env.port)),
        || format!("accept-new did not record the key: {written:?}"),
    )?;
    // Once recorded, strict accepts it.
    run("strict")?;
    Ok(())
}

fn wrong_key_names_host_and_user() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_wrong_key_names_host_and_user") else {
        return Ok(());
    };
    let hosts = [host(&env, &env.hosts[0], 1)];
    let err = runner(&env, &hosts, where_run::runner())
        .set("key", env.wrong_key.display().to_string())
        .map(&[1.0])
        .expect_err("a key the host does not authorize must fail");
    let text = err.to_string();
    check(
        text.contains("authentication failed")
            && text.contains(&format!("`{}`", env.user))
            && text.contains(&format!("{}:{}", env.hosts[0], env.port)),
        || format!("unclear error: {text}"),
    )
}

/// Without a `key`, the ssh agent's keys are used.
fn ssh_agent_is_used_when_no_key_is_given() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_agent_is_used_when_no_key_is_given") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let sock = dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let result = (|| -> Result<(), Failed> {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !sock.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let added = std::process::Command::new("ssh-add")
            .arg(&env.key)
            .env("SSH_AUTH_SOCK", &sock)
            .output()?;
        check(added.status.success(), || {
            format!("ssh-add failed: {}", String::from_utf8_lossy(&added.stderr))
        })?;
        std::env::set_var("SSH_AUTH_SOCK", &sock);
        let batch = where_run::runner()
            .set("hosts", host(&env, &env.hosts[0], 1))
            .set("known_hosts", env.known_hosts.display().to_string())
            .progress(ProgressMode::Never)
            .map(&[2.0]);
        std::env::remove_var("SSH_AUTH_SOCK");
        check(batch?.values()?.len() == 1, || "no result".into())
    })();
    let _ = agent.kill();
    let _ = agent.wait();
    result
}

fn unreachable_host_is_skipped() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_unreachable_host_is_skipped") else {
        return Ok(());
    };
    // Nothing listens on 127.0.0.9.
    let hosts = [host(&env, "127.0.0.9", 2), host(&env, &env.hosts[0], 1)];
    let inputs: Vec<f64> = (0..20).map(f64::from).collect();
    let batch = runner(&env, &hosts, where_run::runner())
        .set("connect_timeout", 3.0)
        .map(&inputs)?;
    check(batch.values()?.len() == 20, || "points missing".into())?;
    // With no host at all, the batch fails before running anything.
    let err = runner(&env, &[host(&env, "127.0.0.9", 1)], where_run::runner())
        .map(&inputs)
        .expect_err("no host");
    let text = err.to_string();
    check(
        text.contains("127.0.0.9") && text.contains("no host"),
        || text,
    )
}

fn wrong_binary_reports_the_host_error() -> Result<(), Failed> {
    let Some(env) = services::ssh("ssh_wrong_binary_reports_the_host_error") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    // A valid ELF header for another architecture (AArch64), as a binary
    // built for the wrong hosts would be.
    let fake = dir.path().join("built-for-aarch64");
    let mut elf = vec![0u8; 64];
    elf[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
    elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf[18..20].copy_from_slice(&183u16.to_le_bytes()); // EM_AARCH64
    elf[20..24].copy_from_slice(&1u32.to_le_bytes());
    elf[52..54].copy_from_slice(&64u16.to_le_bytes());
    std::fs::write(&fake, &elf)?;
    std::fs::set_permissions(
        &fake,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )?;
    let hosts = [host(&env, &env.hosts[0], 1)];
    let err = runner(&env, &hosts, where_run::runner())
        .set("worker_path", fake.display().to_string())
        .map(&[1.0])
        .expect_err("a binary the host cannot run");
    let text = err.to_string();
    check(
        text.contains("Exec format error") || text.contains("cannot execute"),
        || format!("the host's own message is missing: {text}"),
    )
}

#[otwrap::main]
fn main() {
    if let Some(dir) = std::env::var_os("OTWRAP_TEST_SSH_DRIVER") {
        driver(dir.to_string_lossy().into_owned());
    }
    let mut args = Arguments::from_args();
    // One at a time: one test kills a host (its sshd) mid-run, which other
    // tests would see as the service being down.
    args.test_threads = Some(1);
    let tests = vec![
        Trial::test(
            "ssh_same_results_as_rayon_weighted_by_slots",
            same_results_as_rayon_weighted_by_slots,
        ),
        Trial::test(
            "ssh_host_killed_mid_run_completes_every_point",
            host_killed_mid_run_completes_every_point,
        ),
        Trial::test(
            "ssh_losing_the_last_host_keeps_finished_results",
            losing_the_last_host_keeps_finished_results,
        ),
        Trial::test(
            "ssh_killed_driver_leaves_no_remote_worker",
            killed_driver_leaves_no_remote_worker,
        ),
        Trial::test(
            "ssh_ctrl_c_stops_the_batch_and_keeps_finished_results",
            ctrl_c_stops_the_batch_and_keeps_finished_results,
        ),
        Trial::test(
            "ssh_lost_workers_are_retried_and_model_failures_are_not",
            lost_workers_are_retried_and_model_failures_are_not,
        ),
        Trial::test(
            "ssh_timeout_kills_the_remote_evaluation",
            timeout_kills_the_remote_evaluation,
        ),
        Trial::test(
            "ssh_unknown_host_key_is_refused_unless_accept_new",
            unknown_host_key_is_refused_unless_accept_new,
        ),
        Trial::test(
            "ssh_sigterm_stops_the_batch_and_keeps_finished_results",
            sigterm_stops_the_batch_and_keeps_finished_results,
        ),
        Trial::test(
            "ssh_timeout_kills_the_solver_tree",
            timeout_kills_the_solver_tree,
        ),
        Trial::test(
            "ssh_wrong_key_names_host_and_user",
            wrong_key_names_host_and_user,
        ),
        Trial::test(
            "ssh_unreachable_host_is_skipped",
            unreachable_host_is_skipped,
        ),
        Trial::test(
            "ssh_agent_is_used_when_no_key_is_given",
            ssh_agent_is_used_when_no_key_is_given,
        ),
        Trial::test(
            "ssh_wrong_binary_reports_the_host_error",
            wrong_binary_reports_the_host_error,
        ),
    ];
    libtest_mimic::run(&args, tests).exit();
}
