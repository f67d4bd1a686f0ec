//! Per-evaluation work directories: the runtime side of
//! `#[temp_workdir(prefix = "...", base = "...", cleanup = "...", copy = [...])]`.
//!
//! This module owns creating one fresh, private (mode 0700) directory per
//! evaluation, copying the listed input files or folders into it, and removing
//! or keeping it according to the [`Cleanup`] policy. It never changes the
//! process's current directory: that is shared by every thread, so evaluations
//! running side by side would step on each other (otwrapy's `TempWorkDir` did
//! `os.chdir` and was unsafe with threads for that reason).

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::declared::{CopyList, PathText};
use crate::core::paths::absolute;
pub use crate::core::{Cleanup, UnknownCleanup, WorkDirSpec};

/// Environment variable that moves the default base directory of work
/// directories at run time (for instance to a node-local scratch disk).
///
/// It applies only when the spec names no `base` of its own.
pub const WORKDIR_BASE_ENV: &str = "OTWRAP_WORKDIR_BASE";

/// How many names are tried before giving up when every candidate exists.
const MAX_CREATE_ATTEMPTS: u32 = 64;

impl WorkDirSpec {
    /// A spec with this name prefix, the default base, [`Cleanup::OnSuccess`]
    /// and nothing to copy.
    pub const fn new(prefix: &'static str) -> Self {
        Self::from_parts(prefix, None, Cleanup::OnSuccess, &[])
    }

    /// Every setting at once, usable in a `const`/`static`.
    ///
    /// `base: None` means the value of [`WORKDIR_BASE_ENV`] if set, else
    /// [`std::env::temp_dir`]. Relative `base` and `copy` paths are resolved
    /// against the current directory when the work directory is created.
    pub const fn from_parts(
        prefix: &'static str,
        base: Option<&'static str>,
        cleanup: Cleanup,
        copy: &'static [&'static str],
    ) -> Self {
        let base = match base {
            Some(b) => Some(PathText::Static(b)),
            None => None,
        };
        WorkDirSpec {
            prefix: Cow::Borrowed(prefix),
            base,
            cleanup,
            copy: CopyList::Static(copy),
        }
    }

    /// Replaces the name prefix.
    pub fn prefix_owned(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Cow::Owned(prefix.into());
        self
    }

    /// Sets the directory under which work directories are created.
    pub fn base(mut self, base: impl Into<PathBuf>) -> Self {
        self.base = Some(PathText::Owned(base.into()));
        self
    }

    /// Sets the cleanup policy.
    pub fn cleanup(mut self, cleanup: Cleanup) -> Self {
        self.cleanup = cleanup;
        self
    }

    /// Adds a file or folder to copy into every work directory.
    pub fn copy(mut self, entry: impl Into<PathBuf>) -> Self {
        let mut list: Vec<PathBuf> = self.copy_entries().map(Path::to_path_buf).collect();
        list.push(entry.into());
        self.copy = CopyList::Owned(list);
        self
    }

    /// The name prefix of the work directories.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The base directory named by the spec, if any (see [`Self::from_parts`]).
    pub fn base_dir(&self) -> Option<&Path> {
        self.base.as_ref().map(PathText::as_path)
    }

    /// The cleanup policy.
    pub fn cleanup_policy(&self) -> Cleanup {
        self.cleanup
    }

    /// The files and folders copied into every work directory, as given.
    pub fn copy_entries(&self) -> impl Iterator<Item = &Path> + '_ {
        let (stat, owned): (&[&'static str], &[PathBuf]) = match &self.copy {
            CopyList::Static(s) => (s, &[]),
            CopyList::Owned(v) => (&[], v),
        };
        stat.iter()
            .map(|s| Path::new(*s))
            .chain(owned.iter().map(PathBuf::as_path))
    }

    /// The base directory that will be used now: the spec's own, else
    /// [`WORKDIR_BASE_ENV`], else the system temporary directory.
    pub fn resolved_base(&self) -> PathBuf {
        resolve_base(
            self.base_dir(),
            std::env::var_os(WORKDIR_BASE_ENV).map(PathBuf::from),
        )
    }
}

fn resolve_base(spec_base: Option<&Path>, env_base: Option<PathBuf>) -> PathBuf {
    match (spec_base, env_base) {
        (Some(b), _) => b.to_path_buf(),
        (None, Some(e)) if !e.as_os_str().is_empty() => e,
        _ => std::env::temp_dir(),
    }
}

/// Why a work directory could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum WorkDirError {
    /// The prefix would put the directory somewhere other than in the base.
    #[error(
        "invalid work directory prefix `{prefix}`: {reason}; use a plain name such as \"beam-\""
    )]
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The base directory is missing and could not be created.
    #[error("cannot create the work directory base `{path}`: {source}; check that it is writable or set `base` / {WORKDIR_BASE_ENV} to another place")]
    CreateBase {
        /// The base directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The base exists but is not a directory.
    #[error("work directory base `{path}` exists but is not a directory; point `base` / {WORKDIR_BASE_ENV} at a directory")]
    BaseNotADirectory {
        /// The base path.
        path: PathBuf,
    },
    /// The base, or a directory otwrap would create for it, belongs to
    /// another user (or is their symlink), or anyone may write to it.
    #[error("refusing to create work directories under `{path}`: {reason}; set `base` / {WORKDIR_BASE_ENV} to a directory you own")]
    UnsafeBase {
        /// The offending directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Creating the work directory itself failed.
    #[error("cannot create work directory `{path}` for point {point_index}: {source}; check permissions and free space of the base directory")]
    Create {
        /// The directory that was being created.
        path: PathBuf,
        /// The evaluation's point index.
        point_index: usize,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Every candidate name was taken.
    #[error("could not find a free work directory name under `{base}` with prefix `{prefix}` after {attempts} attempts; clean up old work directories")]
    NamesExhausted {
        /// The base directory.
        base: PathBuf,
        /// The prefix.
        prefix: String,
        /// How many names were tried.
        attempts: u32,
    },
    /// A file or folder listed in `copy` does not exist.
    #[error("file or folder to copy into the work directory not found: `{path}` (listed as `{entry}` in `copy`, relative paths are taken from the current directory)")]
    CopySourceMissing {
        /// The entry as listed.
        entry: PathBuf,
        /// The path that was looked up.
        path: PathBuf,
    },
    /// A `copy` entry has no final name (such as `..` or `/`).
    #[error("cannot copy `{entry}` into the work directory: it has no file name; list the file or folder itself")]
    InvalidCopyEntry {
        /// The entry as listed.
        entry: PathBuf,
    },
    /// Copying a file or folder failed.
    #[error("cannot copy `{from}` to `{to}`: {source}")]
    Copy {
        /// The source path.
        from: PathBuf,
        /// The destination path.
        to: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// One evaluation's work directory. Clean it up with [`WorkDir::finish`];
/// dropping it without calling `finish` counts as a failure (so a panicking
/// evaluation keeps its directory under [`Cleanup::OnSuccess`]).
///
/// ```
/// use otwrap_runtime::workdir::{Cleanup, WorkDir, WorkDirSpec};
///
/// let base = tempfile::tempdir()?;
/// let spec = WorkDirSpec::new("beam-").base(base.path()).cleanup(Cleanup::OnSuccess);
/// let wd = WorkDir::create(&spec, 17)?;
/// std::fs::write(wd.path().join("input.txt"), "E = 210e9")?;
/// let kept = wd.finish(true);
/// assert_eq!(kept, None); // success: removed
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    cleanup: Cleanup,
    finished: bool,
}

impl WorkDir {
    /// Creates a fresh directory `<base>/<prefix><point>-<pid>-<n>-<random>`
    /// with mode 0700, creating the base if missing, and copies the spec's
    /// `copy` entries into it. On error nothing is left behind.
    pub fn create(spec: &WorkDirSpec, point_index: usize) -> Result<WorkDir, WorkDirError> {
        validate_prefix(spec.prefix())?;
        // Absolute, so the model may hand it to programs it runs elsewhere.
        let base = spec.resolved_base();
        let base = absolute(&base);
        ensure_base(&base)?;
        let path = create_unique(&base, spec.prefix(), point_index)?;
        // From here on the directory exists: wrap it so that an error while
        // copying removes it (policy Always) instead of leaking it.
        let mut wd = WorkDir {
            path,
            cleanup: Cleanup::Always,
            finished: false,
        };
        for entry in spec.copy_entries() {
            copy_entry(entry, &wd.path)?;
        }
        wd.cleanup = spec.cleanup_policy();
        Ok(wd)
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cleanup policy this directory follows.
    pub fn cleanup_policy(&self) -> Cleanup {
        self.cleanup
    }

    /// Applies the cleanup policy for an evaluation that ended with
    /// `success`. Returns `Some(path)` when the directory is kept (to report
    /// it with the point's error), `None` when it was removed. A failed
    /// removal is logged as a warning and the path returned, since whatever
    /// is left of it is still there.
    pub fn finish(mut self, success: bool) -> Option<PathBuf> {
        self.finished = true;
        apply_policy(&self.path, self.cleanup, success)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            if let Some(kept) = apply_policy(&self.path, self.cleanup, false) {
                tracing::debug!(workdir = %kept.display(), "work directory kept after an unfinished evaluation");
            }
        }
    }
}

fn apply_policy(path: &Path, cleanup: Cleanup, success: bool) -> Option<PathBuf> {
    if !cleanup.removes(success) {
        return Some(path.to_path_buf());
    }
    // remove_dir_all does not follow symlinks found inside the directory.
    match fs::remove_dir_all(path) {
        Ok(()) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(workdir = %path.display(), error = %e, "could not remove work directory");
            Some(path.to_path_buf())
        }
    }
}

fn validate_prefix(prefix: &str) -> Result<(), WorkDirError> {
    let reason = if prefix.contains('/') {
        Some("it contains '/'")
    } else if prefix.contains('\0') {
        Some("it contains a NUL byte")
    } else if prefix == "." || prefix == ".." {
        Some("it is a relative directory name")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(WorkDirError::InvalidPrefix {
            prefix: prefix.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Creates the base (missing components 0700) or checks the existing one:
/// a base, or a component otwrap creates for it, that belongs to another
/// user or is a symlink of another user's is refused (see [`crate::secure_fs`]).
fn ensure_base(base: &Path) -> Result<(), WorkDirError> {
    use crate::secure_fs::Refused;
    crate::secure_fs::create_private_dir(base, 1).map_err(|refused| match refused {
        Refused::NotADirectory { path } => WorkDirError::BaseNotADirectory { path },
        Refused::Io { path, source } => WorkDirError::CreateBase { path, source },
        Refused::Unsafe { path, reason } => WorkDirError::UnsafeBase { path, reason },
    })
}

static CREATED: AtomicU64 = AtomicU64::new(0);

/// A few random hex digits: pid and counter make names unique within a host,
/// the random part keeps hosts sharing a base (NFS) and reused pids apart.
fn random_suffix(counter: u64) -> u32 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(counter);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    (h.finish() & 0xff_ffff) as u32
}

fn create_unique(base: &Path, prefix: &str, point_index: usize) -> Result<PathBuf, WorkDirError> {
    let pid = std::process::id();
    for _ in 0..MAX_CREATE_ATTEMPTS {
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}{point_index}-{pid}-{n}-{:06x}", random_suffix(n));
        let path = base.join(name);
        // mkdir(2) fails with EEXIST on any existing entry, symlinks included,
        // so it never follows a link planted at this name.
        match DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => {
                return Err(WorkDirError::Create {
                    path,
                    point_index,
                    source,
                })
            }
        }
    }
    Err(WorkDirError::NamesExhausted {
        base: base.to_path_buf(),
        prefix: prefix.to_owned(),
        attempts: MAX_CREATE_ATTEMPTS,
    })
}

/// Copies a file or folder into `dest_dir` under its own name (also used
/// for the resource files of described models).
pub(crate) fn copy_entry(entry: &Path, dest_dir: &Path) -> Result<(), WorkDirError> {
    let name = entry
        .file_name()
        .ok_or_else(|| WorkDirError::InvalidCopyEntry {
            entry: entry.to_path_buf(),
        })?;
    // The entry itself is followed if it is a symlink: the user named it.
    let meta = fs::metadata(entry).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            WorkDirError::CopySourceMissing {
                entry: entry.to_path_buf(),
                path: absolute(entry),
            }
        } else {
            WorkDirError::Copy {
                from: absolute(entry),
                to: dest_dir.join(name),
                source: e,
            }
        }
    })?;
    let to = dest_dir.join(name);
    let result = if meta.is_dir() {
        copy_dir(entry, &to)
    } else {
        copy_file(entry, &to, &meta)
    };
    result.map_err(|(from, to, source)| WorkDirError::Copy {
        from: absolute(&from),
        to,
        source,
    })
}

type CopyFailure = (PathBuf, PathBuf, io::Error);

/// Copies a file into a path that must not exist yet: `create_new` (O_EXCL)
/// refuses an existing entry, symlinks included, so nothing is followed.
fn copy_file(from: &Path, to: &Path, meta: &fs::Metadata) -> Result<(), CopyFailure> {
    let fail = |e: io::Error| (from.to_path_buf(), to.to_path_buf(), e);
    let mut src = File::open(from).map_err(fail)?;
    let mode = meta.permissions().mode() & 0o7777;
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode | 0o600)
        .open(to)
        .map_err(fail)?;
    io::copy(&mut src, &mut dst).map_err(fail)?;
    dst.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    Ok(())
}

/// Copies a folder recursively. Symlinks inside it are recreated as symlinks
/// (not followed), which also keeps a link loop from recursing forever.
fn copy_dir(from: &Path, to: &Path) -> Result<(), CopyFailure> {
    let fail = |f: &Path, t: &Path, e: io::Error| (f.to_path_buf(), t.to_path_buf(), e);
    DirBuilder::new()
        .mode(0o700)
        .create(to)
        .map_err(|e| fail(from, to, e))?;
    for item in fs::read_dir(from).map_err(|e| fail(from, to, e))? {
        let item = item.map_err(|e| fail(from, to, e))?;
        let src = item.path();
        let dst = to.join(item.file_name());
        let meta = fs::symlink_metadata(&src).map_err(|e| fail(&src, &dst, e))?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(&src).map_err(|e| fail(&src, &dst, e))?;
            std::os::unix::fs::symlink(&target, &dst).map_err(|e| fail(&src, &dst, e))?;
        } else if ft.is_dir() {
            copy_dir(&src, &dst)?;
        } else if ft.is_file() {
            copy_file(&src, &dst, &meta)?;
        }
        // Sockets, fifos and devices are skipped: they are not inputs.
    }
    let mode = fs::metadata(from)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o700);
    fs::set_permissions(to, fs::Permissions::from_mode(mode | 0o700))
        .map_err(|e| fail(from, to, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    fn spec_in(base: &Path, cleanup: Cleanup) -> WorkDirSpec {
        WorkDirSpec::new("t-").base(base).cleanup(cleanup)
    }

    #[test]
    fn unique_dirs_under_concurrency() {
        let base = tempfile::tempdir().unwrap();
        let spec = Arc::new(spec_in(base.path(), Cleanup::Never));
        let threads = 16;
        let per_thread = 50;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let spec = Arc::clone(&spec);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    (0..per_thread)
                        .map(|i| {
                            // Same point index on every thread on purpose.
                            let wd = WorkDir::create(&spec, i).unwrap();
                            wd.finish(true).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<PathBuf> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        assert_eq!(
            fs::read_dir(base.path()).unwrap().count(),
            threads * per_thread
        );
    }

    #[test]
    fn mode_is_0700_and_name_has_prefix() {
        let base = tempfile::tempdir().unwrap();
        let wd = WorkDir::create(&spec_in(base.path(), Cleanup::Never), 17).unwrap();
        let mode = fs::metadata(wd.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let name = wd.path().file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("t-17-"), "{name}");
        assert_eq!(wd.path().parent(), Some(base.path()));
        wd.finish(false);
    }

    #[test]
    fn creates_missing_base() {
        let base = tempfile::tempdir().unwrap();
        let deep = base.path().join("a/b/c");
        let wd = WorkDir::create(&spec_in(&deep, Cleanup::Always), 0).unwrap();
        assert!(wd.path().starts_with(&deep));
        assert!(wd.path().is_dir());
        assert_eq!(wd.finish(true), None);
    }

    #[test]
    fn base_that_is_a_file_is_an_error() {
        let base = tempfile::tempdir().unwrap();
        let file = base.path().join("f");
        fs::write(&file, "x").unwrap();
        let err = WorkDir::create(&spec_in(&file, Cleanup::Always), 0).unwrap_err();
        assert!(
            matches!(err, WorkDirError::BaseNotADirectory { .. }),
            "{err}"
        );
    }

    #[test]
    fn copies_files_and_folders() {
        let base = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        let file = src.path().join("template.in");
        fs::write(&file, "E = @E@").unwrap();
        let folder = src.path().join("mesh");
        fs::create_dir_all(folder.join("sub")).unwrap();
        fs::write(folder.join("a.msh"), "aaa").unwrap();
        fs::write(folder.join("sub/b.msh"), "bbb").unwrap();
        std::os::unix::fs::symlink("a.msh", folder.join("link")).unwrap();
        let exe = folder.join("run.sh");
        fs::write(&exe, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();

        let spec = spec_in(base.path(), Cleanup::Always)
            .copy(&file)
            .copy(&folder)
            // Relative to the current directory (the crate root under cargo test).
            .copy("Cargo.toml");
        let wd = WorkDir::create(&spec, 3).unwrap();
        let p = wd.path();
        assert_eq!(
            fs::read_to_string(p.join("template.in")).unwrap(),
            "E = @E@"
        );
        assert_eq!(fs::read_to_string(p.join("mesh/a.msh")).unwrap(), "aaa");
        assert_eq!(fs::read_to_string(p.join("mesh/sub/b.msh")).unwrap(), "bbb");
        assert_eq!(
            fs::read_link(p.join("mesh/link")).unwrap(),
            PathBuf::from("a.msh")
        );
        let mode = fs::metadata(p.join("mesh/run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        assert!(p.join("Cargo.toml").is_file());
        assert_eq!(wd.finish(true), None);
    }

    #[test]
    fn missing_copy_source_is_an_error_naming_it_and_leaves_nothing() {
        let base = tempfile::tempdir().unwrap();
        let spec = spec_in(base.path(), Cleanup::Never).copy("no/such/input.dat");
        let err = WorkDir::create(&spec, 0).unwrap_err();
        match &err {
            WorkDirError::CopySourceMissing { entry, path } => {
                assert_eq!(entry, Path::new("no/such/input.dat"));
                assert!(path.is_absolute());
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert!(err.to_string().contains("no/such/input.dat"));
        assert_eq!(fs::read_dir(base.path()).unwrap().count(), 0);
    }

    #[test]
    fn invalid_prefix_and_copy_entry() {
        let base = tempfile::tempdir().unwrap();
        let bad = WorkDirSpec::new("../escape-").base(base.path());
        assert!(matches!(
            WorkDir::create(&bad, 0),
            Err(WorkDirError::InvalidPrefix { .. })
        ));
        let bad_copy = spec_in(base.path(), Cleanup::Always).copy("..");
        assert!(matches!(
            WorkDir::create(&bad_copy, 0),
            Err(WorkDirError::InvalidCopyEntry { .. })
        ));
    }

    #[test]
    fn cleanup_policies() {
        let base = tempfile::tempdir().unwrap();
        let cases = [
            (Cleanup::Always, true, false),
            (Cleanup::Always, false, false),
            (Cleanup::OnSuccess, true, false),
            (Cleanup::OnSuccess, false, true),
            (Cleanup::Never, true, true),
            (Cleanup::Never, false, true),
        ];
        for (cleanup, success, kept) in cases {
            let wd = WorkDir::create(&spec_in(base.path(), cleanup), 0).unwrap();
            let path = wd.path().to_path_buf();
            fs::write(path.join("out.txt"), "1").unwrap();
            let ret = wd.finish(success);
            assert_eq!(ret.is_some(), kept, "{cleanup} success={success}");
            assert_eq!(path.exists(), kept, "{cleanup} success={success}");
            if let Some(r) = ret {
                assert_eq!(r, path);
            }
        }
    }

    #[test]
    fn drop_counts_as_failure() {
        let base = tempfile::tempdir().unwrap();
        for (cleanup, kept) in [
            (Cleanup::Always, false),
            (Cleanup::OnSuccess, true),
            (Cleanup::Never, true),
        ] {
            let wd = WorkDir::create(&spec_in(base.path(), cleanup), 0).unwrap();
            let path = wd.path().to_path_buf();
            drop(wd);
            assert_eq!(path.exists(), kept, "{cleanup}");
        }
        // A panic inside the evaluation unwinds through the drop.
        let spec = spec_in(base.path(), Cleanup::OnSuccess);
        let path = std::panic::catch_unwind(|| {
            let wd = WorkDir::create(&spec, 9).unwrap();
            let p = wd.path().to_path_buf();
            if p.exists() {
                std::panic::panic_any(p);
            }
            unreachable!()
        })
        .unwrap_err()
        .downcast::<PathBuf>()
        .unwrap();
        assert!(path.is_dir());
    }

    #[test]
    fn cwd_unchanged() {
        let before = std::env::current_dir().unwrap();
        let base = tempfile::tempdir().unwrap();
        let wd =
            WorkDir::create(&spec_in(base.path(), Cleanup::Always).copy("Cargo.toml"), 1).unwrap();
        assert_eq!(std::env::current_dir().unwrap(), before);
        wd.finish(true);
        assert_eq!(std::env::current_dir().unwrap(), before);
    }

    #[test]
    fn base_resolution_order() {
        let env = Some(PathBuf::from("/from/env"));
        assert_eq!(
            resolve_base(Some(Path::new("/spec")), env.clone()),
            PathBuf::from("/spec")
        );
        assert_eq!(resolve_base(None, env), PathBuf::from("/from/env"));
        assert_eq!(
            resolve_base(None, Some(PathBuf::new())),
            std::env::temp_dir()
        );
        assert_eq!(resolve_base(None, None), std::env::temp_dir());
    }

    #[test]
    fn static_spec_and_parse() {
        static SPEC: WorkDirSpec =
            WorkDirSpec::from_parts("beam-", Some("/b"), Cleanup::Never, &["x", "y/z"]);
        assert_eq!(SPEC.base_dir(), Some(Path::new("/b")));
        let entries: Vec<_> = SPEC.copy_entries().collect();
        assert_eq!(entries, [Path::new("x"), Path::new("y/z")]);
        let more = SPEC.clone().copy("w");
        assert_eq!(more.copy_entries().count(), 3);
        for c in [Cleanup::Always, Cleanup::OnSuccess, Cleanup::Never] {
            assert_eq!(c.as_str().parse::<Cleanup>().unwrap(), c);
        }
        assert_eq!(Cleanup::default(), Cleanup::OnSuccess);
    }
}
