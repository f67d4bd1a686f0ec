//! Security defaults, asserted against the real components:
//!
//! - no argument, path or name reaches a shell unless the user asked for
//!   one: strings that would run `touch <marker>` if a shell ever evaluated
//!   them go through the coupling tools, the SSH backend (remote directory,
//!   worker path) and the SLURM backend (job name, wckey, run, log and
//!   worker paths), and the marker must never appear;
//! - work directories, their bases, the cache and log directories, and
//!   SLURM run and log directories are created 0700;
//! - a directory or symlink planted by another user where otwrap creates or
//!   opens its own is refused with an error naming it (as root, "another
//!   user" is `nobody`, uid 65534);
//! - paths built from configuration stay inside the work directory;
//! - SSH key contents never appear in errors.
//!
//! The SSH and SLURM cases need the services of `scripts/services/` and are
//! skipped with a SKIPPED line when they are not up (they fail under CI).
//! The binary is its own worker (`#[otwrap::main]`).

#[path = "support/services.rs"]
mod services;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use libtest_mimic::{Arguments, Failed, Trial};
use otwrap::prelude::*;
use otwrap_runtime::cache::store::{CacheError, DiskStore};
use otwrap_runtime::coupling::{CouplingError, Program};
use otwrap_runtime::failure_log::{FailureLog, LogError};
use otwrap_runtime::workdir::{WorkDir, WorkDirError, WorkDirSpec};

/// nobody's uid: "another user" when the tests run as root.
const OTHER_UID: u32 = 65534;

#[parallelize(backend = "rayon", progress = "never")]
fn plus_one(x: f64) -> f64 {
    x + 1.0
}

/// Its base is a fixed path so the test can plant a link there first.
#[parallelize(backend = "rayon", progress = "never")]
#[temp_workdir(prefix = "sec-", base = "/tmp/otwrap-security-test/planted-base")]
fn in_planted_base(x: f64, #[workdir] dir: &Path) -> Result<f64, String> {
    fs::write(dir.join("input.txt"), x.to_string()).map_err(|e| e.to_string())?;
    Ok(x)
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(msg().into())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn chown_to_other(path: &Path) -> Result<(), Failed> {
    std::os::unix::fs::lchown(path, Some(OTHER_UID), None)?;
    Ok(())
}

fn mode(path: &Path) -> Result<u32, Failed> {
    Ok(fs::metadata(path)?.permissions().mode() & 0o7777)
}

/// A directory like `/tmp`: anyone may create entries, the sticky bit on.
fn open_to_all_dir(parent: &Path) -> Result<PathBuf, Failed> {
    let dir = parent.join("tmp");
    fs::create_dir(&dir)?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777))?;
    Ok(dir)
}

// ------------------------------------------------------------ injection

/// Strings that create `marker` if any shell evaluates them. `${IFS}`
/// stands for a space where a word must not split in the test's own
/// quoting, and lets them serve as path components too.
fn injections(marker: &Path) -> Vec<String> {
    let m = marker.display();
    vec![
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("; touch {m}"),
        format!("| touch {m}"),
        format!("&& touch {m} &&"),
        format!("'; touch {m}; '"),
        format!("\"; touch {m}; \""),
        format!("\ntouch {m}\n"),
        format!("a$(touch${{IFS}}{m})b"),
        format!("x'$(touch {m})'y\\"),
    ]
}

/// The same as one word (job names and wckeys may not hold spaces), for
/// `#SBATCH` values: `${IFS}` splits the command from its argument only
/// if a shell evaluates it.
fn name_injections(marker: &Path) -> Vec<String> {
    let m = marker.display();
    vec![
        format!("job$(touch${{IFS}}{m})"),
        format!("job`touch${{IFS}}{m}`"),
        format!("job;touch${{IFS}}{m};'"),
    ]
}

fn marker_in(dir: &Path) -> PathBuf {
    dir.join(format!("pwned-{}", std::process::id()))
}

fn assert_not_run(marker: &Path, what: &str) -> Result<(), Failed> {
    check(!marker.exists(), || {
        format!(
            "{what}: a shell ran the injected command ({} exists)",
            marker.display()
        )
    })
}

fn program_arguments_never_reach_a_shell() -> Result<(), Failed> {
    let dir = tempfile::tempdir()?;
    let marker = marker_in(dir.path());
    for text in injections(&marker) {
        // No shell: the argument arrives as one word, byte for byte.
        let out = Program::new("printf").args(["%s", text.as_str()]).run()?;
        check(out.stdout.bytes() == Some(text.as_bytes()), || {
            format!("printf got {:?} for {text:?}", out.stdout.bytes())
        })?;
        assert_not_run(&marker, "an argument")?;

        // A program name is a file name, never a command line.
        let err = Program::new(&text).run().expect_err("no such program");
        check(matches!(err, CouplingError::ProgramNotFound { .. }), || {
            format!("{text:?}: {err}")
        })?;
        assert_not_run(&marker, "a program name")?;

        // shell(true): the program string is the user's command line, and
        // each argument is quoted so that it stays one literal word.
        let out = Program::new("printf '%s'").arg(&text).shell(true).run()?;
        check(out.stdout.bytes() == Some(text.as_bytes()), || {
            format!("sh -c printf got {:?} for {text:?}", out.stdout.bytes())
        })?;
        assert_not_run(&marker, "an argument of shell(true)")?;

        // A run directory whose path holds it.
        let run_dir = dir.path().join(text.trim_matches('\n').replace('\n', " "));
        fs::create_dir_all(&run_dir)?;
        let out = Program::new("pwd").current_dir(&run_dir).run()?;
        check(out.status.success(), || format!("pwd in {run_dir:?}"))?;
        assert_not_run(&marker, "a run directory")?;
    }
    Ok(())
}

// ------------------------------------------------------------ paths

fn config_names_stay_inside_the_work_directory() -> Result<(), Failed> {
    let base = tempfile::tempdir()?;
    for prefix in ["../escape-", "/abs-", "a/b-", ".."] {
        let err = WorkDir::create(
            &WorkDirSpec::new("x").prefix_owned(prefix).base(base.path()),
            0,
        )
        .expect_err("refused");
        check(matches!(err, WorkDirError::InvalidPrefix { .. }), || {
            format!("prefix {prefix:?}: {err}")
        })?;
    }
    for entry in ["..", "/", "sub/.."] {
        let err = WorkDir::create(&WorkDirSpec::new("x").base(base.path()).copy(entry), 0)
            .expect_err("refused");
        check(matches!(err, WorkDirError::InvalidCopyEntry { .. }), || {
            format!("copy entry {entry:?}: {err}")
        })?;
    }
    // Sources may be anywhere; copies land inside under their own name.
    let outside = tempfile::tempdir()?;
    fs::create_dir(outside.path().join("sub"))?;
    fs::write(outside.path().join("mesh.dat"), "m")?;
    let through_dots = outside.path().join("sub/../mesh.dat");
    let wd = WorkDir::create(
        &WorkDirSpec::new("x").base(base.path()).copy(&through_dots),
        0,
    )?;
    check(wd.path().join("mesh.dat").is_file(), || {
        format!("copy of {through_dots:?} not in {:?}", wd.path())
    })?;
    for entry in walk(base.path())? {
        check(entry.starts_with(wd.path()) || entry == wd.path(), || {
            format!("{entry:?} is outside the work directory")
        })?;
    }
    wd.finish(true);
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>, Failed> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        }
        out.push(path);
    }
    Ok(out)
}

// ------------------------------------------------------------ modes

fn created_directories_are_private() -> Result<(), Failed> {
    let root = tempfile::tempdir()?;
    // Work directories and every base component otwrap creates.
    let base = root.path().join("scratch/otwrap/work");
    let wd = WorkDir::create(&WorkDirSpec::new("beam-").base(&base), 7)?;
    for dir in [
        root.path().join("scratch"),
        root.path().join("scratch/otwrap"),
        base.clone(),
        wd.path().to_path_buf(),
    ] {
        check(mode(&dir)? == 0o700, || format!("{dir:?} is not 0700"))?;
    }
    wd.finish(true);
    // The disk cache.
    let cache = root.path().join("project/.otwrap/cache");
    let store = DiskStore::open(&cache)?;
    for dir in [root.path().join("project/.otwrap"), cache.clone()] {
        check(mode(&dir)? == 0o700, || format!("{dir:?} is not 0700"))?;
    }
    drop(store);
    // Directories made for a log file.
    let log = root.path().join("logs/run/beam.log");
    FailureLog::open(&log)?;
    for dir in [root.path().join("logs"), root.path().join("logs/run")] {
        check(mode(&dir)? == 0o700, || format!("{dir:?} is not 0700"))?;
    }
    Ok(())
}

// ------------------------------------------------------------ planted links

fn planted_links_and_directories_are_refused() -> Result<(), Failed> {
    if !is_root() {
        eprintln!("SKIPPED security_planted_links: needs root to act as another user");
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    let tmp = open_to_all_dir(root.path())?;
    let theirs = root.path().join("theirs");
    fs::create_dir(&theirs)?;
    fs::set_permissions(&theirs, fs::Permissions::from_mode(0o777))?;
    chown_to_other(&theirs)?;

    // A work directory base: their symlink at the name we use.
    let base = tmp.join("otwrap-work");
    symlink(&theirs, &base)?;
    chown_to_other(&base)?;
    let err = WorkDir::create(&WorkDirSpec::new("beam-").base(&base), 0).expect_err("refused");
    check(
        matches!(&err, WorkDirError::UnsafeBase { path, .. } if *path == base),
        || format!("{err:?}"),
    )?;
    check(err.to_string().contains("owned by uid 65534"), || {
        err.to_string()
    })?;
    // Their directory (not a link) at the name: refused too.
    let their_dir = tmp.join("otwrap-work-2");
    fs::create_dir(&their_dir)?;
    chown_to_other(&their_dir)?;
    let err = WorkDir::create(&WorkDirSpec::new("beam-").base(&their_dir), 0).expect_err("refused");
    check(matches!(err, WorkDirError::UnsafeBase { .. }), || {
        err.to_string()
    })?;
    // Their directory above the base, planted in a place open to all.
    let err = WorkDir::create(&WorkDirSpec::new("beam-").base(their_dir.join("mine")), 0)
        .expect_err("refused");
    check(matches!(err, WorkDirError::UnsafeBase { .. }), || {
        err.to_string()
    })?;

    // The cache: their link as `.otwrap`, their directory as the cache.
    let project = root.path().join("project");
    fs::create_dir(&project)?;
    symlink(&theirs, project.join(".otwrap"))?;
    chown_to_other(&project.join(".otwrap"))?;
    let err = otwrap_runtime::cache::ModelCache::open(
        "security::cache",
        otwrap_runtime::cache::CacheSpec {
            location: otwrap_runtime::cache::CacheLocation::Disk(Box::leak(
                project
                    .join(".otwrap/cache")
                    .display()
                    .to_string()
                    .into_boxed_str(),
            )),
            body_hash: 0,
            version: "",
            cache_errors: false,
            depends: &[],
        },
    )
    .expect_err("refused");
    check(err.to_string().contains("owned by uid 65534"), || {
        err.to_string()
    })?;
    let err = DiskStore::open(&their_dir).expect_err("refused");
    check(matches!(err, CacheError::Unsafe { .. }), || err.to_string())?;
    let err = DiskStore::open(&base).expect_err("refused");
    check(matches!(err, CacheError::Symlink { .. }), || {
        err.to_string()
    })?;

    // A log file: their link to a file of ours.
    let ours = root.path().join("precious.txt");
    fs::write(&ours, "keep")?;
    let log = tmp.join("beam.log");
    symlink(&ours, &log)?;
    chown_to_other(&log)?;
    let err = FailureLog::open(&log).expect_err("refused");
    check(matches!(err, LogError::Unsafe { .. }), || err.to_string())?;
    check(fs::read_to_string(&ours)? == "keep", || {
        "the target was written".into()
    })?;

    // Nothing was created in their directory through any of this.
    check(fs::read_dir(&theirs)?.next().is_none(), || {
        format!("files appeared in {theirs:?}")
    })?;

    // End to end: the attribute's fixed base is their link; the point fails
    // with an error naming it, the batch goes on.
    let fixed = Path::new("/tmp/otwrap-security-test");
    let _ = fs::remove_dir_all(fixed);
    fs::create_dir_all(fixed)?;
    fs::set_permissions(fixed, fs::Permissions::from_mode(0o1777))?;
    symlink(&theirs, fixed.join("planted-base"))?;
    chown_to_other(&fixed.join("planted-base"))?;
    let batch = in_planted_base::map(&[1.0, 2.0])?;
    let result = (|| {
        for r in batch.results() {
            let e = r.as_ref().expect_err("the point must fail");
            check(
                e.to_string().contains("planted-base") && e.to_string().contains("uid 65534"),
                || e.to_string(),
            )?;
        }
        check(fs::read_dir(&theirs)?.next().is_none(), || {
            format!("work directories appeared in {theirs:?}")
        })
    })();
    let _ = fs::remove_dir_all(fixed);
    result
}

// ------------------------------------------------------------ SSH

fn ssh_runner<M: otwrap::Model>(
    env: &services::SshEnv,
    runner: otwrap::Runner<M>,
) -> otwrap::Runner<M> {
    runner
        .backend(Backend::Ssh)
        .set(
            "hosts",
            format!("1/{}@{}:{}", env.user, env.hosts[0], env.port),
        )
        .set("key", env.key.display().to_string())
        .set("known_hosts", env.known_hosts.display().to_string())
        .progress(ProgressMode::Never)
}

fn ssh_paths_never_reach_the_login_shell_unquoted() -> Result<(), Failed> {
    let Some(env) = services::ssh("security_ssh_paths_are_quoted") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let marker = marker_in(dir.path());
    for text in injections(&marker) {
        // The directory the binary is copied into, on the host.
        let remote_dir = dir.path().join("remote").join(&text);
        let batch = ssh_runner(&env, plus_one::runner())
            .set("remote_dir", remote_dir.display().to_string())
            .map(&[1.0, 2.0])?;
        check(batch.values()? == vec![2.0, 3.0], || {
            format!("{}", batch.summary())
        })?;
        assert_not_run(&marker, "the SSH remote directory")?;
        // A worker used in place, from a path that holds it.
        let in_place = dir.path().join("shared").join(&text).join("worker");
        fs::create_dir_all(in_place.parent().unwrap_or(dir.path()))?;
        fs::copy(std::env::current_exe()?, &in_place)?;
        let batch = ssh_runner(&env, plus_one::runner())
            .set("worker_path", in_place.display().to_string())
            .map(&[1.0])?;
        check(batch.values()? == vec![2.0], || {
            format!("{}", batch.summary())
        })?;
        assert_not_run(&marker, "the SSH worker path")?;
    }
    Ok(())
}

fn ssh_key_contents_never_appear_in_errors() -> Result<(), Failed> {
    let Some(env) = services::ssh("security_ssh_key_contents") else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let secret = "SECRET-KEY-MATERIAL-7f3a9c";
    let key = dir.path().join("id_broken");
    fs::write(
        &key,
        format!(
            "-----BEGIN OPENSSH PRIVATE KEY-----\n{secret}\n-----END OPENSSH PRIVATE KEY-----\n"
        ),
    )?;
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600))?;
    let err = ssh_runner(&env, plus_one::runner())
        .set("key", key.display().to_string())
        .map(&[1.0])
        .expect_err("a broken key cannot log in");
    let text = format!("{err}\n{err:?}");
    check(!text.contains(secret), || {
        format!("the key's content leaked: {text}")
    })?;
    check(text.contains(&key.display().to_string()), || {
        format!("the key's path should be named: {text}")
    })
}

// ------------------------------------------------------------ SLURM

fn slurm_names_and_paths_never_reach_a_shell() -> Result<(), Failed> {
    if services::slurm("security_slurm_names_and_paths").is_none() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let marker = marker_in(dir.path());
    // Job name and wckey: `#SBATCH` values. Paths: the run directory, the
    // log directory and the worker, interpolated into the script.
    for (i, name) in name_injections(&marker).into_iter().enumerate() {
        let hostile = dir
            .path()
            .join(format!("case {i}"))
            .join(injections(&marker)[i].trim());
        let exe = hostile.join("bin").join("worker");
        fs::create_dir_all(hostile.join("bin"))?;
        fs::copy(std::env::current_exe()?, &exe)?;
        let run = plus_one::runner()
            .backend(Backend::Slurm)
            .progress(ProgressMode::Never)
            .set("run_dir", hostile.join("runs").display().to_string())
            .set("log_dir", hostile.join("logs").display().to_string())
            .set("job_name", name.as_str())
            .set("wckey", name.as_str())
            .worker_exe(&exe)
            .map(&[1.0, 2.0, 3.0]);
        assert_not_run(&marker, &format!("the SLURM script (case {i})"))?;
        if name.contains('\'') {
            // sbatch's own #SBATCH parser treats `'` as a quote and may
            // refuse the line: an error, never a command.
            continue;
        }
        let batch = run?;
        check(batch.values()? == vec![2.0, 3.0, 4.0], || {
            format!("{}", batch.summary())
        })?;
        // The task logs went where the quoted log directory says.
        check(fs::read_dir(hostile.join("logs"))?.count() > 0, || {
            format!("no task logs in {:?}", hostile.join("logs"))
        })?;
        // The run directory, its results and the log directory are private.
        let runs: Vec<PathBuf> = fs::read_dir(hostile.join("runs"))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        check(runs.len() == 1, || format!("run directories: {runs:?}"))?;
        for dir in [
            hostile.join("runs"),
            runs[0].clone(),
            runs[0].join("results"),
            hostile.join("logs"),
        ] {
            check(mode(&dir)? == 0o700, || {
                format!("{dir:?} has mode {:o}", mode(&dir).unwrap_or(0))
            })?;
        }
    }
    Ok(())
}

#[otwrap::main]
fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::test(
            "security_program_arguments_never_reach_a_shell",
            program_arguments_never_reach_a_shell,
        ),
        Trial::test(
            "security_config_names_stay_inside_the_work_directory",
            config_names_stay_inside_the_work_directory,
        ),
        Trial::test(
            "security_created_directories_are_private",
            created_directories_are_private,
        ),
        Trial::test(
            "security_planted_links_and_directories_are_refused",
            planted_links_and_directories_are_refused,
        ),
        Trial::test(
            "security_ssh_paths_never_reach_the_login_shell_unquoted",
            ssh_paths_never_reach_the_login_shell_unquoted,
        ),
        Trial::test(
            "security_ssh_key_contents_never_appear_in_errors",
            ssh_key_contents_never_appear_in_errors,
        ),
        Trial::test(
            "security_slurm_names_and_paths_never_reach_a_shell",
            slurm_names_and_paths_never_reach_a_shell,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}
