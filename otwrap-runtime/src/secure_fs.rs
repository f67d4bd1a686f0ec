//! Directories and files otwrap creates for itself (work directory bases,
//! the cache, log files), made safe on shared machines.
//!
//! On a cluster, `/tmp`, `/scratch` and project directories are shared:
//! another user can create the directory otwrap is about to create, or a
//! symlink at its name, and wait for otwrap to write inputs, results or logs
//! through it (into a place they read, or over a file of the victim's).
//! This module owns the rules that stop that:
//!
//! - the directories otwrap creates are created one component at a time,
//!   with mode 0700;
//! - a component otwrap names or creates that already exists must belong to
//!   the current user (or root) and must not be writable by others unless
//!   it is sticky like `/tmp`; a symlink there must belong to the current
//!   user (or root) and lead to such a directory;
//! - components above those (the user's home, the project, `/tmp` itself)
//!   are the user's choice, trusted unless planted: a symlink of another
//!   user's, or a directory of another user's inside a directory where
//!   anyone may create entries (`/tmp/shared-name`), is refused; a team
//!   directory an administrator made for a project is not.
//!
//! Checks are made with `lstat` (never following the link being judged),
//! and files are opened with `O_NOFOLLOW` where a link is not expected.

use std::fs::{self, DirBuilder, Metadata};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Why a directory or file otwrap was about to create or use is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refused {
    /// It could not be created or examined.
    #[error("cannot create `{}`: {source}", .path.display())]
    Io {
        /// The path component concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Something other than a directory is in the way.
    #[error("`{}` exists and is not a directory", .path.display())]
    NotADirectory {
        /// The path component concerned.
        path: PathBuf,
    },
    /// It belongs to another user, or others may write to it.
    #[error("refusing to use `{}`: {reason}", .path.display())]
    Unsafe {
        /// The path component concerned.
        path: PathBuf,
        /// What is wrong with it, and what to do.
        reason: String,
    },
}

/// The effective user id of this process.
fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether files owned by `uid` are trusted: ours, or root's.
fn trusted_owner(uid: u32) -> bool {
    uid == current_uid() || uid == 0
}

fn refuse(path: &Path, reason: String) -> Refused {
    Refused::Unsafe {
        path: path.to_path_buf(),
        reason,
    }
}

fn io_error(path: &Path, source: io::Error) -> Refused {
    Refused::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn owner_reason(kind: &str, meta: &Metadata) -> String {
    format!(
        "it is a {kind} owned by uid {}, not by you (uid {}) or root; another user may have \
         created it to catch what otwrap writes there. Remove it, or choose a path you own",
        meta.uid(),
        current_uid()
    )
}

/// Checks one existing directory (already resolved, not a link).
fn check_dir_meta(path: &Path, meta: &Metadata) -> Result<(), Refused> {
    if !meta.is_dir() {
        return Err(Refused::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    if !trusted_owner(meta.uid()) {
        return Err(refuse(path, owner_reason("directory", meta)));
    }
    let mode = meta.permissions().mode();
    if mode & 0o002 != 0 && mode & 0o1000 == 0 {
        return Err(refuse(
            path,
            format!(
                "it is a directory anyone may write to (mode {:o}) without the sticky bit, \
                 so another user could replace what otwrap creates in it; \
                 run `chmod o-w` on it or choose another path",
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Checks a directory component that otwrap names or created: a directory
/// of ours (or root's), or a symlink of ours (or root's) to one. `meta` is
/// its `lstat`.
fn check_owned_dir(path: &Path, meta: &Metadata) -> Result<Metadata, Refused> {
    if meta.file_type().is_symlink() {
        if !trusted_owner(meta.uid()) {
            return Err(refuse(path, owner_reason("symbolic link", meta)));
        }
        let target = fs::metadata(path).map_err(|e| io_error(path, e))?;
        check_dir_meta(path, &target)?;
        return Ok(target);
    }
    check_dir_meta(path, meta)?;
    Ok(meta.clone())
}

/// Checks a component above the ones otwrap owns, which the user chose: it
/// must lead to a directory, and must not have been planted: a symlink of
/// another user (not root), or a directory of another user in a directory
/// where anyone may create entries (`/tmp`, a world-writable scratch space).
/// A team directory an administrator made for a project is accepted.
fn check_chosen_dir(
    path: &Path,
    meta: &Metadata,
    parent_open_to_all: bool,
) -> Result<Metadata, Refused> {
    if !trusted_owner(meta.uid()) {
        if meta.file_type().is_symlink() {
            return Err(refuse(path, owner_reason("symbolic link", meta)));
        }
        if parent_open_to_all {
            return Err(refuse(path, owner_reason("directory", meta)));
        }
    }
    let resolved = if meta.file_type().is_symlink() {
        fs::metadata(path).map_err(|e| io_error(path, e))?
    } else {
        meta.clone()
    };
    if !resolved.is_dir() {
        return Err(Refused::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    Ok(resolved)
}

/// Creates `path` and its missing parents, each with mode 0700, checking
/// every component on the way (one `lstat` each, so this is cheap enough
/// to run before every evaluation):
///
/// - the last `owned` components are otwrap's own (2 for `.otwrap/cache`,
///   1 for a directory the user named, 0 for the directory of a file the
///   user named): when they exist they must pass the ownership and mode
///   rules of this module (a directory or symlink of the user's or root's,
///   not writable by all without the sticky bit);
/// - the components above are the user's choice and only must not have
///   been planted: a symlink of another user's, or their directory in a
///   directory open to all;
/// - missing components are created (0700) and are then ours; one that
///   another process creates at the same moment is judged as existing.
pub(crate) fn create_private_dir(path: &Path, owned: usize) -> Result<(), Refused> {
    let components: Vec<Component<'_>> = path.components().collect();
    let first_owned = components.len().saturating_sub(owned);
    let mut built = PathBuf::new();
    // Whether the directory holding the current component lets anyone
    // create entries (a relative path starts in the current directory).
    let mut parent_open_to_all = match components.first() {
        Some(Component::RootDir | Component::Prefix(_)) => false,
        _ => fs::metadata(".").is_ok_and(|m| open_to_all(&m)),
    };
    for (i, component) in components.iter().enumerate() {
        built.push(component);
        if matches!(component, Component::RootDir | Component::Prefix(_)) {
            continue;
        }
        let meta = match fs::symlink_metadata(&built) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match DirBuilder::new().mode(0o700).create(&built) {
                    Ok(()) => {
                        // Ours by construction; the mode exact whatever the umask.
                        fs::set_permissions(&built, fs::Permissions::from_mode(0o700))
                            .map_err(|e| io_error(&built, e))?;
                        None
                    }
                    // Created meanwhile by someone else: judged below.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        Some(fs::symlink_metadata(&built).map_err(|e| io_error(&built, e))?)
                    }
                    Err(e) => return Err(io_error(&built, e)),
                }
            }
            Err(e) => return Err(io_error(&built, e)),
        };
        parent_open_to_all = match meta {
            // Just created, mode 0700.
            None => false,
            Some(meta) => {
                // `.` and `..` name directories that exist already: judged
                // as owned only when they are the last component.
                let dots = matches!(component, Component::CurDir | Component::ParentDir);
                let resolved =
                    if owned > 0 && (i + 1 == components.len() || (i >= first_owned && !dots)) {
                        check_owned_dir(&built, &meta)?
                    } else {
                        check_chosen_dir(&built, &meta, parent_open_to_all)?
                    };
                open_to_all(&resolved)
            }
        };
    }
    Ok(())
}

/// Whether anyone may create entries in this directory.
fn open_to_all(meta: &Metadata) -> bool {
    meta.permissions().mode() & 0o002 != 0
}

/// Checks an existing file otwrap is about to append to or overwrite: a
/// symlink or a file owned by another user (not root) is refused. Returns
/// `Ok(false)` when nothing is there yet.
pub(crate) fn check_file(path: &Path) -> Result<bool, Refused> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(path, e)),
    };
    if meta.file_type().is_symlink() {
        if !trusted_owner(meta.uid()) {
            return Err(refuse(path, owner_reason("symbolic link", &meta)));
        }
        return match fs::metadata(path) {
            Ok(target) if !trusted_owner(target.uid()) => {
                Err(refuse(path, owner_reason("link to a file", &target)))
            }
            _ => Ok(true),
        };
    }
    if !trusted_owner(meta.uid()) {
        return Err(refuse(path, owner_reason("file", &meta)));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// nobody's uid: "another user" when the tests run as root.
    const OTHER: u32 = 65534;

    fn as_root() -> bool {
        current_uid() == 0
    }

    fn chown(path: &Path, uid: u32) {
        std::os::unix::fs::lchown(path, Some(uid), None).expect("lchown");
    }

    #[test]
    fn creates_every_missing_component_0700() {
        let base = tempfile::tempdir().expect("tempdir");
        let deep = base.path().join("a/b/c");
        create_private_dir(&deep, 2).expect("creates");
        for p in ["a", "a/b", "a/b/c"] {
            let mode = fs::metadata(base.path().join(p))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{p}");
        }
        // Again: everything exists and is ours.
        create_private_dir(&deep, 2).expect("accepted");
    }

    #[test]
    fn relative_paths_and_dots() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = base.path().join("x/./y/../z");
        create_private_dir(&dir, 1).expect("creates");
        assert!(base.path().join("x/z").is_dir());
    }

    #[test]
    fn a_file_in_the_way_is_refused() {
        let base = tempfile::tempdir().expect("tempdir");
        fs::write(base.path().join("f"), "x").expect("write");
        let err = create_private_dir(&base.path().join("f/sub"), 1).expect_err("refused");
        assert!(err.to_string().contains("not a directory"), "{err}");
        let err = create_private_dir(&base.path().join("f"), 1).expect_err("refused");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn world_writable_without_sticky_is_refused_with_sticky_accepted() {
        let base = tempfile::tempdir().expect("tempdir");
        let open = base.path().join("open");
        fs::create_dir(&open).expect("mkdir");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
        let err = create_private_dir(&open, 1).expect_err("refused");
        assert!(err.to_string().contains("sticky"), "{err}");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).expect("chmod");
        create_private_dir(&open.join("mine"), 2).expect("like /tmp");
    }

    #[test]
    fn our_own_symlink_to_our_directory_is_followed() {
        let base = tempfile::tempdir().expect("tempdir");
        fs::create_dir(base.path().join("real")).expect("mkdir");
        symlink("real", base.path().join("link")).expect("symlink");
        create_private_dir(&base.path().join("link/cache"), 2).expect("followed");
        assert!(base.path().join("real/cache").is_dir());
    }

    #[test]
    fn another_users_symlink_or_directory_is_refused() {
        if !as_root() {
            eprintln!("skipped: needs root to chown to another user");
            return;
        }
        let base = tempfile::tempdir().expect("tempdir");
        let target = base.path().join("theirs");
        fs::create_dir(&target).expect("mkdir");
        let planted = base.path().join("planted");
        symlink(&target, &planted).expect("symlink");
        chown(&planted, OTHER);
        let err = create_private_dir(&planted.join("cache"), 2).expect_err("refused");
        assert!(matches!(&err, Refused::Unsafe { path, .. } if *path == planted));
        assert!(
            err.to_string().contains("symbolic link owned by uid 65534"),
            "{err}"
        );
        assert!(!target.join("cache").exists());

        // A directory of theirs, planted at a name otwrap owns.
        chown(&target, OTHER);
        let err = create_private_dir(&target, 1).expect_err("refused");
        assert!(
            err.to_string().contains("directory owned by uid 65534"),
            "{err}"
        );
        // Our own link to their directory: the directory is what counts.
        let ours = base.path().join("ours");
        symlink(&target, &ours).expect("symlink");
        let err = create_private_dir(&ours, 1).expect_err("refused");
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        // Above the owned components, the user's choice is not judged.
        create_private_dir(&target.join("mine"), 1).expect("accepted");
    }

    #[test]
    fn a_directory_planted_in_a_place_open_to_all_is_refused() {
        if !as_root() {
            eprintln!("skipped: needs root to chown to another user");
            return;
        }
        let base = tempfile::tempdir().expect("tempdir");
        let tmp = base.path().join("tmp");
        fs::create_dir(&tmp).expect("mkdir");
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).expect("chmod");
        let planted = tmp.join("otwrap-work");
        fs::create_dir(&planted).expect("mkdir");
        chown(&planted, OTHER);
        let err = create_private_dir(&planted.join("beam"), 1).expect_err("refused");
        assert!(
            matches!(&err, Refused::Unsafe { path, .. } if *path == planted),
            "{err}"
        );
        assert!(!planted.join("beam").exists());
        // The same directory made by an administrator in a closed place.
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod");
        create_private_dir(&planted.join("beam"), 1).expect("a team directory");
    }

    #[test]
    fn files_of_another_user_are_refused() {
        let base = tempfile::tempdir().expect("tempdir");
        let log = base.path().join("run.log");
        assert!(!check_file(&log).expect("absent"));
        fs::write(&log, "").expect("write");
        assert!(check_file(&log).expect("ours"));
        if !as_root() {
            return;
        }
        chown(&log, OTHER);
        assert!(check_file(&log).is_err());
        let link = base.path().join("link.log");
        symlink(&log, &link).expect("symlink");
        assert!(check_file(&link).is_err(), "our link to their file");
        chown(&log, 0);
        assert!(check_file(&link).expect("our link to our file"));
        chown(&link, OTHER);
        assert!(check_file(&link).is_err(), "their link");
    }
}
