//! The worker binary on a host: copied once per content (its hash names the
//! directory), atomically (a temporary name, then a rename), into a
//! per-user cache directory; or used in place when the user says the path
//! is shared.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use ssh2::{OpenFlags, OpenType, RenameFlags, Session};

/// The local worker binary and its content hash.
#[derive(Debug, Clone)]
pub(crate) struct LocalBinary {
    pub(crate) path: PathBuf,
    pub(crate) hash: String,
    pub(crate) size: u64,
}

type HashKey = (PathBuf, u64, Option<SystemTime>);
static HASHES: Mutex<Option<HashMap<HashKey, String>>> = Mutex::new(None);

impl LocalBinary {
    /// Reads (and hashes, once per process and file version) `path`.
    pub(crate) fn open(path: &Path) -> Result<LocalBinary, String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the worker binary {}: {e}", path.display()))?;
        let key = (path.to_path_buf(), meta.len(), meta.modified().ok());
        if let Some(hash) = HASHES
            .lock()
            .ok()
            .and_then(|m| m.as_ref().and_then(|m| m.get(&key).cloned()))
        {
            return Ok(LocalBinary {
                path: path.to_path_buf(),
                hash,
                size: meta.len(),
            });
        }
        let mut file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read the worker binary {}: {e}", path.display()))?;
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| format!("cannot read the worker binary {}: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hash = format!("{:032x}", hasher.digest128());
        if let Ok(mut m) = HASHES.lock() {
            m.get_or_insert_with(HashMap::new).insert(key, hash.clone());
        }
        Ok(LocalBinary {
            path: path.to_path_buf(),
            hash,
            size: meta.len(),
        })
    }

    fn file_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "otwrap-worker".to_string())
    }
}

/// Makes sure the binary is on the host; returns its remote path and whether
/// it was copied now.
pub(crate) fn ensure_binary(
    session: &Session,
    binary: &LocalBinary,
    remote_dir: &str,
) -> Result<(PathBuf, bool), String> {
    let sftp = session
        .sftp()
        .map_err(|e| format!("cannot open SFTP to copy the worker binary: {e}"))?;
    let home = sftp
        .realpath(Path::new("."))
        .map_err(|e| format!("cannot find the remote home directory: {e}"))?;
    // Who we are on the host: the owner of the login directory.
    let uid = sftp.stat(&home).ok().and_then(|stat| stat.uid);
    let base = if remote_dir.starts_with('/') {
        PathBuf::from(remote_dir)
    } else {
        home.join(remote_dir)
    };
    let dir = base.join(&binary.hash);
    let target = dir.join(binary.file_name());
    // What otwrap runs must be ours, in directories only we can change:
    // with `remote_dir` in a shared place (/tmp), another user could
    // otherwise plant a binary of the right size at the hash path (which
    // anyone who can read the binary can compute), or a symlink on the way.
    let ours = |path: &Path| -> Result<(), String> {
        let stat = sftp
            .lstat(path)
            .map_err(|e| format!("cannot examine {} on the host: {e}", path.display()))?;
        let perm = stat.perm.unwrap_or(0);
        if stat.uid != uid || perm & 0o170000 == 0o120000 || perm & 0o022 != 0 {
            return Err(format!(
                "refusing to use {} on the host: it is not a file or directory of yours \
                 that only you can write (owner uid {:?}, mode {:o}); remove it or set \
                 `remote_dir` to a directory you own",
                path.display(),
                stat.uid,
                perm & 0o7777
            ));
        }
        Ok(())
    };
    if let Ok(stat) = sftp.stat(&target) {
        if stat.size == Some(binary.size) {
            ours(&base)?;
            ours(&dir)?;
            ours(&target)?;
            return Ok((target, false));
        }
    }
    // mkdir -p, private to the user; what exists from `remote_dir` down
    // must be the user's.
    let mut built = PathBuf::new();
    for part in dir.components() {
        built.push(part);
        if sftp.lstat(&built).is_err() {
            if let Err(e) = sftp.mkdir(&built, 0o700) {
                // Another driver may have made it meanwhile.
                if sftp.stat(&built).is_err() {
                    return Err(format!(
                        "cannot create {} on the host: {e}",
                        built.display()
                    ));
                }
            }
        }
        if built.starts_with(&base) {
            ours(&built)?;
        }
    }
    // Unique per upload: hosts may share a filesystem (or be one machine),
    // and two uploads writing one file would leave it busy or mixed.
    static UPLOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let partial = dir.join(format!(
        ".{}.part-{}-{}-{}-{}",
        binary.file_name(),
        crate::host::hostname(),
        std::process::id(),
        UPLOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    let mut remote = sftp
        .open_mode(
            &partial,
            OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE,
            0o700,
            OpenType::File,
        )
        .map_err(|e| format!("cannot create {} on the host: {e}", partial.display()))?;
    let mut local = std::fs::File::open(&binary.path).map_err(|e| {
        format!(
            "cannot read the worker binary {}: {e}",
            binary.path.display()
        )
    })?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = local.read(&mut buf).map_err(|e| {
            format!(
                "cannot read the worker binary {}: {e}",
                binary.path.display()
            )
        })?;
        if n == 0 {
            break;
        }
        remote
            .write_all(&buf[..n])
            .map_err(|e| format!("cannot write {} on the host: {e}", partial.display()))?;
    }
    drop(remote);
    match sftp.rename(
        &partial,
        &target,
        Some(RenameFlags::OVERWRITE | RenameFlags::ATOMIC | RenameFlags::NATIVE),
    ) {
        Ok(()) => Ok((target, true)),
        Err(e) => {
            let _ = sftp.unlink(&partial);
            match sftp.stat(&target) {
                Ok(stat) if stat.size == Some(binary.size) => Ok((target, false)),
                _ => Err(format!(
                    "cannot move the worker binary into place at {}: {e}",
                    target.display()
                )),
            }
        }
    }
}

pub(crate) use crate::core::paths::shell_quote;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_follow_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("bin");
        std::fs::write(&p, b"one").expect("write");
        let a = LocalBinary::open(&p).expect("hash");
        std::fs::write(&p, b"two!").expect("write");
        let b = LocalBinary::open(&p).expect("hash");
        assert_ne!(a.hash, b.hash);
        assert_eq!(b.size, 4);
    }
}
