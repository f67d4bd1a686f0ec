//! What a cached model depends on besides its own code: the files and
//! directories listed in `#[cached(depends = ["solver/wall.py", "templates"])]`,
//! whose contents are hashed into every key of the model.
//!
//! The body hash the macro takes covers the function's own tokens (signature
//! and body) and the `version` salt is the user's hand-made invalidation.
//! Neither sees the solver script, the template, or a helper function called
//! from the body: this module hashes the declared paths, and only those
//! (nothing is hashed implicitly).
//!
//! This module owns:
//! - resolution: a relative path is taken against the current directory at
//!   run time (as templates and programs are), when the cache is opened, so a
//!   missing path fails the batch before any point runs, naming the path and
//!   the current directory;
//! - the hash: a stable frame over the declared paths, each a file (its
//!   contents) or a directory (every regular file under it, walked in file
//!   name order, as relative name + contents). Symbolic links are followed:
//!   what matters is the content the solver reads, so a link to a solver
//!   hashes the solver, and a link that points elsewhere changes the key. A
//!   link loop or a dangling link is an error naming it;
//! - memoisation: a file's content hash is kept per process by path and
//!   fingerprint (size, modification time, device and inode), so a batch (or
//!   10,000 single calls) reads each file once. A file modified within the
//!   last [`RACY_WINDOW`] is hashed again on every open rather than trusted,
//!   because a second edit inside one timestamp tick leaves size and time
//!   unchanged (git's "racily clean" rule).
//!
//! The hash is taken where the driver runs. On `ssh` and `slurm` the files
//! the workers read may be other copies; the key covers the driver's.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime};

use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// Tag hashed in front of the frame; bump the `v1` to change the layout.
const FRAME_TAG: &[u8] = b"otwrap.cache.depends.v1";

/// A file modified less than this long before it is hashed is not memoised:
/// file systems stamp times in ticks (a few milliseconds on Linux, 1 s on
/// some network file systems, 2 s on FAT), and an edit in the same tick as
/// the previous one keeps the same size and time.
pub const RACY_WINDOW: Duration = Duration::from_secs(3);

/// Why the declared dependencies of a model could not be hashed. Each stops
/// the batch (or the single call) before any point runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DependsError {
    /// A declared path does not exist.
    #[error(
        "the cache dependency \"{declared}\" of {model} does not exist: looked for {} \
         (relative paths are taken from the current directory, {}); run from the directory \
         that holds it, or fix the path in #[cached(depends = [...])]",
        resolved.display(),
        cwd.display()
    )]
    Missing {
        /// The model's name.
        model: String,
        /// The path as written in `depends`.
        declared: String,
        /// The path looked for.
        resolved: PathBuf,
        /// The current directory it was resolved against.
        cwd: PathBuf,
    },
    /// A file or directory (a declared one, or one under a declared directory)
    /// could not be read.
    #[error(
        "cannot read {} (a cache dependency of {model}, declared as \"{declared}\"): {source}",
        path.display()
    )]
    Read {
        /// The model's name.
        model: String,
        /// The path as written in `depends`.
        declared: String,
        /// The file or directory that could not be read.
        path: PathBuf,
        /// The cause (a dangling link and a link loop are reported here).
        source: io::Error,
    },
    /// A path is neither a regular file nor a directory (a socket, a FIFO, a
    /// device): reading it could block or never end.
    #[error(
        "{} (a cache dependency of {model}, declared as \"{declared}\") is not a regular file \
         or a directory; list files and directories only",
        path.display()
    )]
    NotAFile {
        /// The model's name.
        model: String,
        /// The path as written in `depends`.
        declared: String,
        /// The offending path.
        path: PathBuf,
    },
    /// The current directory, against which relative paths are taken, is unknown.
    #[error(
        "cannot resolve the cache dependencies of {model}: the current directory is unknown \
         ({source}); run from an existing directory"
    )]
    CurrentDir {
        /// The model's name.
        model: String,
        /// The cause (e.g. the directory was removed).
        source: io::Error,
    },
    /// A disk cache directory lies inside a declared directory: every stored
    /// result would change the dependency's hash, and no entry would ever hit.
    #[error(
        "the cache directory {} of {model} lies inside its dependency \"{declared}\" ({}): \
         every stored result would change that directory's hash; move the cache \
         (#[cached(disk = \"...\")] or OTWRAP_CACHE_DIR) or declare narrower paths",
        cache.display(),
        dependency.display()
    )]
    ContainsCache {
        /// The model's name.
        model: String,
        /// The path as written in `depends`.
        declared: String,
        /// The dependency, canonicalized.
        dependency: PathBuf,
        /// The cache directory, canonicalized.
        cache: PathBuf,
    },
}

/// The hash of a model's declared dependencies, as it enters the key prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct DependsHash([u8; 16]);

impl DependsHash {
    /// The 16 bytes that enter the key prefix frame.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

/// Hashes the dependencies declared by model `model` (its name, for
/// messages), resolving relative paths against the current directory.
///
/// The frame hashed is `FRAME_TAG`, then for each declared path in the
/// order written: its text (length-framed), then `b'f'` + the content hash
/// for a file, or `b'd'` + the number of files + for each file under it
/// (walked in file name order) its relative name (`/`-separated,
/// length-framed) + content hash. Content hashes are xxh3-128 of the bytes.
///
/// ```
/// use otwrap_runtime::cache::depends::hash_depends;
///
/// let dir = tempfile::tempdir()?;
/// let script = dir.path().join("wall.py");
/// std::fs::write(&script, "print(1)\n")?;
/// let path = script.to_str().unwrap();
/// let before = hash_depends("wall", &[path])?;
/// assert_eq!(before, hash_depends("wall", &[path])?);
/// std::fs::write(&script, "print(2)\n")?;
/// assert_ne!(before, hash_depends("wall", &[path])?);
///
/// let missing = hash_depends("wall", &["no/such/solver.py"]).unwrap_err();
/// assert!(missing.to_string().contains("no/such/solver.py"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn hash_depends(model: &str, declared: &[&str]) -> Result<DependsHash, DependsError> {
    let cwd = std::env::current_dir().map_err(|source| DependsError::CurrentDir {
        model: model.to_string(),
        source,
    })?;
    let mut frame = Vec::with_capacity(FRAME_TAG.len() + declared.len() * 64);
    frame.extend_from_slice(FRAME_TAG);
    for &path in declared {
        let dep = Dependency {
            model,
            declared: path,
            root: cwd.join(path),
        };
        push_bytes(&mut frame, path.as_bytes());
        let meta = match fs::metadata(&dep.root) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DependsError::Missing {
                    model: model.to_string(),
                    declared: path.to_string(),
                    resolved: dep.root,
                    cwd,
                })
            }
            Err(e) => return Err(dep.read_error(&dep.root, e)),
        };
        if meta.is_file() {
            frame.push(b'f');
            frame.extend_from_slice(&dep.file_hash(&dep.root, &meta)?);
        } else if meta.is_dir() {
            frame.push(b'd');
            dep.push_directory(&mut frame)?;
        } else {
            return Err(dep.not_a_file(&dep.root));
        }
    }
    Ok(DependsHash(xxh3_128(&frame).to_le_bytes()))
}

/// Refuses a disk cache directory inside a declared directory (both
/// canonicalized; `cache` is already canonical). Paths that do not resolve
/// are left to [`hash_depends`] to report.
pub fn check_cache_outside(
    model: &str,
    declared: &[&str],
    cache: &Path,
) -> Result<(), DependsError> {
    for &path in declared {
        let Ok(dependency) = fs::canonicalize(path) else {
            continue;
        };
        if dependency.is_dir() && cache.starts_with(&dependency) {
            return Err(DependsError::ContainsCache {
                model: model.to_string(),
                declared: path.to_string(),
                dependency,
                cache: cache.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// One declared path being hashed, for messages.
struct Dependency<'a> {
    model: &'a str,
    declared: &'a str,
    root: PathBuf,
}

impl Dependency<'_> {
    fn read_error(&self, path: &Path, source: io::Error) -> DependsError {
        DependsError::Read {
            model: self.model.to_string(),
            declared: self.declared.to_string(),
            path: path.to_path_buf(),
            source,
        }
    }

    fn not_a_file(&self, path: &Path) -> DependsError {
        DependsError::NotAFile {
            model: self.model.to_string(),
            declared: self.declared.to_string(),
            path: path.to_path_buf(),
        }
    }

    /// Appends the file count, then each file's relative name and content
    /// hash, in walk order (siblings sorted by name, so the order is stable).
    fn push_directory(&self, frame: &mut Vec<u8>) -> Result<(), DependsError> {
        let mut files = Vec::new();
        let walk = walkdir::WalkDir::new(&self.root)
            .follow_links(true)
            .sort_by_file_name();
        for entry in walk {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(&self.root).to_path_buf();
                // A link loop carries no I/O error; walkdir's text names it.
                let text = e.to_string();
                let source = e.into_io_error().unwrap_or_else(|| io::Error::other(text));
                self.read_error(&path, source)
            })?;
            // With links followed, the entry's type and metadata are the target's.
            if entry.file_type().is_dir() {
                continue;
            }
            if !entry.file_type().is_file() {
                return Err(self.not_a_file(entry.path()));
            }
            let meta = entry
                .metadata()
                .map_err(|e| self.read_error(entry.path(), io::Error::from(e)))?;
            let relative = entry
                .path()
                .strip_prefix(&self.root)
                .unwrap_or(entry.path())
                .as_os_str()
                .as_bytes()
                .to_vec();
            files.push((relative, self.file_hash(entry.path(), &meta)?));
        }
        frame.extend_from_slice(&(files.len() as u64).to_le_bytes());
        for (relative, hash) in files {
            push_bytes(frame, &relative);
            frame.extend_from_slice(&hash);
        }
        Ok(())
    }

    /// The content hash of one file, from the memo when its fingerprint is
    /// unchanged and old enough to be trusted.
    fn file_hash(&self, path: &Path, meta: &Metadata) -> Result<[u8; 16], DependsError> {
        let fingerprint = Fingerprint::of(meta);
        if let Some(hash) = memo_get(path, &fingerprint) {
            return Ok(hash);
        }
        // Taken before reading: a write during the read makes the file
        // "recent" against this instant, so it is not memoised.
        let started = SystemTime::now();
        let hash = hash_contents(path).map_err(|e| self.read_error(path, e))?;
        FILES_HASHED.fetch_add(1, Ordering::Relaxed);
        let settled = fingerprint
            .modified
            .and_then(|m| started.duration_since(m).ok())
            .is_some_and(|age| age >= RACY_WINDOW);
        if settled {
            memo_put(path, fingerprint, hash);
        }
        Ok(hash)
    }
}

/// What must be unchanged for a memoised hash to stand.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    modified: Option<SystemTime>,
    dev: u64,
    ino: u64,
}

impl Fingerprint {
    fn of(meta: &Metadata) -> Self {
        Fingerprint {
            len: meta.len(),
            modified: meta.modified().ok(),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

type Memo = HashMap<PathBuf, (Fingerprint, [u8; 16])>;

fn memo() -> &'static Mutex<Memo> {
    static MEMO: OnceLock<Mutex<Memo>> = OnceLock::new();
    MEMO.get_or_init(Default::default)
}

fn memo_get(path: &Path, fingerprint: &Fingerprint) -> Option<[u8; 16]> {
    let memo = memo().lock().unwrap_or_else(PoisonError::into_inner);
    match memo.get(path) {
        Some((seen, hash)) if seen == fingerprint => Some(*hash),
        _ => None,
    }
}

fn memo_put(path: &Path, fingerprint: Fingerprint, hash: [u8; 16]) {
    memo()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(path.to_path_buf(), (fingerprint, hash));
}

/// Files whose contents this process has read and hashed (memo misses).
static FILES_HASHED: AtomicU64 = AtomicU64::new(0);

/// How many times this process has read and hashed a dependency file; for
/// tests of the memoisation, not part of the API.
#[doc(hidden)]
pub fn files_hashed() -> u64 {
    FILES_HASHED.load(Ordering::Relaxed)
}

fn hash_contents(path: &Path) -> io::Result<[u8; 16]> {
    let mut file = File::open(path)?;
    let mut hasher = Xxh3::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.digest128().to_le_bytes())
}

fn push_bytes(frame: &mut Vec<u8>, bytes: &[u8]) {
    frame.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    frame.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn hash(paths: &[&Path]) -> DependsHash {
        let texts: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
        hash_depends("test", &texts).unwrap()
    }

    #[test]
    fn directory_hash_follows_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("solver");
        fs::create_dir_all(root.join("lib")).unwrap();
        fs::write(root.join("main.py"), "run()").unwrap();
        fs::write(root.join("lib/util.py"), "x = 1").unwrap();
        let base = hash(&[&root]);
        assert_eq!(base, hash(&[&root]));

        fs::write(root.join("lib/extra.py"), "").unwrap();
        let added = hash(&[&root]);
        assert_ne!(base, added);
        fs::remove_file(root.join("lib/extra.py")).unwrap();
        assert_eq!(base, hash(&[&root]));

        // Same contents under another name is another tree.
        fs::rename(root.join("lib/util.py"), root.join("lib/utils.py")).unwrap();
        assert_ne!(base, hash(&[&root]));
        fs::rename(root.join("lib/utils.py"), root.join("lib/util.py")).unwrap();
        assert_eq!(base, hash(&[&root]));

        // An empty directory holds no file: nothing changes.
        fs::create_dir(root.join("empty")).unwrap();
        assert_eq!(base, hash(&[&root]));
    }

    #[test]
    fn links_are_followed_to_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.py");
        let b = dir.path().join("b.py");
        fs::write(&a, "A").unwrap();
        fs::write(&b, "B").unwrap();
        let link = dir.path().join("solver.py");
        symlink(&a, &link).unwrap();
        let to_a = hash(&[&link]);
        fs::write(&a, "A2").unwrap();
        assert_ne!(to_a, hash(&[&link]), "the target's edit is seen");
        fs::write(&a, "A").unwrap();
        fs::remove_file(&link).unwrap();
        symlink(&b, &link).unwrap();
        assert_ne!(to_a, hash(&[&link]), "a retargeted link is seen");

        // A dangling link inside a directory is an error naming it.
        let tree = dir.path().join("tree");
        fs::create_dir(&tree).unwrap();
        symlink(dir.path().join("gone"), tree.join("dangling")).unwrap();
        let err = hash_depends("test", &[tree.to_str().unwrap()]).unwrap_err();
        assert!(matches!(err, DependsError::Read { .. }), "{err}");
        assert!(err.to_string().contains("dangling"), "{err}");

        // A loop is an error, not a hang.
        fs::remove_file(tree.join("dangling")).unwrap();
        symlink(&tree, tree.join("again")).unwrap();
        let err = hash_depends("test", &[tree.to_str().unwrap()]).unwrap_err();
        assert!(matches!(err, DependsError::Read { .. }), "{err}");
    }

    #[test]
    fn declared_text_and_order_are_part_of_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, "same").unwrap();
        fs::write(&b, "same").unwrap();
        assert_ne!(hash(&[&a]), hash(&[&b]));
        assert_ne!(hash(&[&a, &b]), hash(&[&b, &a]));
        assert_ne!(hash(&[&a]), hash(&[&a, &b]));
    }

    #[test]
    fn a_fifo_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c` is a valid NUL-terminated path for the call's duration.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let err = hash_depends("test", &[fifo.to_str().unwrap()]).unwrap_err();
        assert!(matches!(err, DependsError::NotAFile { .. }), "{err}");
    }

    #[test]
    fn a_cache_inside_a_dependency_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        fs::create_dir(&cache).unwrap();
        let root = fs::canonicalize(dir.path()).unwrap();
        let cache = fs::canonicalize(cache).unwrap();
        let err = check_cache_outside("test", &[root.to_str().unwrap()], &cache).unwrap_err();
        assert!(matches!(err, DependsError::ContainsCache { .. }), "{err}");
        let other = tempfile::tempdir().unwrap();
        check_cache_outside("test", &[other.path().to_str().unwrap()], &cache).unwrap();
    }
}
