//! Who owns the state directory and who is running.
//!
//! A command run as another user than the state directory's owner (root,
//! typically, from an administrator's shell) would create files there
//! (the journal, its `-wal`, logs, locks, the compiled-component cache)
//! that `serve` or the git hook, running as the owner, then cannot open.
//! [`check_state_dir`] refuses before anything is created; the journal
//! calls it when it opens for writing, the first thing every writing
//! command does, and the compiled-component cache before it creates its
//! directory. A state directory its group or others may write, or one in a
//! directory they may write (without the sticky bit), is refused too, by
//! every command that opens it, to write or to read, and by a reload
//! ([`check_state_dir_private`], whichever the journal): whoever may write
//! it could put a journal of their own, with deploys queued, or links to
//! other files, in the place of this user's.
//! [`permission_problem`] explains a file this user may not
//! open, so a refusal says who owns what instead of SQLite's bare "unable
//! to open database file".

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// The largest buffer tried for one `getpwuid_r` answer; a passwd entry
/// longer than this is named by its uid instead.
const MAX_PASSWD_BUFFER: usize = 1024 * 1024;

/// A user: the uid, and its name when the password database has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// The numeric user id.
    pub uid: u32,
    /// The name, if the uid resolves to one.
    pub name: Option<String>,
}

impl User {
    /// The user `uid`, named from the password database when it can be.
    pub fn from_uid(uid: u32) -> User {
        User {
            uid,
            name: user_name(uid),
        }
    }

    /// The user this process runs as (its effective uid).
    pub fn current() -> User {
        User::from_uid(euid())
    }

    /// How `sudo -u` names this user: the name, else `#uid`.
    pub fn sudo_arg(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("'#{}'", self.uid),
        }
    }
}

impl fmt::Display for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => f.write_str(name),
            None => write!(f, "uid {}", self.uid),
        }
    }
}

/// Why this process may not use a state directory or a file in it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OwnershipError {
    /// The state directory belongs to another user: writing to it as this
    /// one would leave files its owner cannot open.
    #[error("state directory {} is owned by {owner}; run as that user (sudo -u {} redeploy ...)", dir.display(), owner.sudo_arg())]
    NotOwner {
        /// The state directory.
        dir: PathBuf,
        /// Its owner.
        owner: User,
        /// The user this process runs as.
        me: User,
    },
    /// The file system refuses this user `path` (or a directory on the way
    /// to it, `blocker`).
    #[error("permission denied: {} is owned by {owner} (mode {mode:04o}), running as {me}", blocker.display())]
    PermissionDenied {
        /// The file or directory that refuses access.
        blocker: PathBuf,
        /// Its owner.
        owner: User,
        /// Its permission bits (an owner may have made it read-only).
        mode: u32,
        /// The user this process runs as.
        me: User,
    },
    /// A component of the path to it is not a directory (a file where the
    /// state directory should be): no permission would help.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The component that is not a directory.
        path: PathBuf,
    },
    /// The state directory's group or others may write it, and so put
    /// their own journal, cache, lock or log in the place of this user's
    /// (a journal's queued deploy runs at the next start).
    #[error("state directory {} has mode {mode:04o}: its group or others may write it, and so replace the journal and the files it keeps; run chmod go-w {}", dir.display(), dir.display())]
    OpenToOthers {
        /// The state directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory on the way to the state directory that its group or
    /// others may write, without the sticky bit: they may rename the state
    /// directory (or a directory on the way) away and put their own, or a
    /// symbolic link, in its place, while a server writes there.
    #[error("state directory {} lies in {}, which has mode {mode:04o}: its group or others may rename the state directory and put their own in its place; run chmod go-w {}, or keep the state directory elsewhere", dir.display(), ancestor.display(), ancestor.display())]
    SwappableAncestor {
        /// The state directory.
        dir: PathBuf,
        /// The directory on the way to it.
        ancestor: PathBuf,
        /// The ancestor's permission bits.
        mode: u32,
    },
}

/// This process's effective uid.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The name of user `uid` in the password database, if it has one.
pub fn user_name(uid: u32) -> Option<String> {
    passwd_entry(uid).map(|(name, _)| name)
}

/// User `uid`'s entry in the password database: its name and primary
/// group, if it has one. The one `getpwuid_r` call of the host.
pub fn passwd_entry(uid: u32) -> Option<(String, libc::gid_t)> {
    let mut size = 1024;
    loop {
        let mut buf = vec![0u8; size];
        // SAFETY: passwd is plain old data; getpwuid_r writes into it and
        // into buf (of the length given), and sets result to null or to
        // &passwd. Nothing is read after buf is dropped.
        let mut passwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut passwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && size < MAX_PASSWD_BUFFER {
            size *= 2;
            continue;
        }
        if rc != 0 || result.is_null() || passwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: pw_name points into buf, NUL-terminated by getpwuid_r.
        let name = unsafe { std::ffi::CStr::from_ptr(passwd.pw_name) };
        return name
            .to_str()
            .ok()
            .map(|name| (name.to_string(), passwd.pw_gid));
    }
}

/// The permission bits by which a file's group or others may write it.
pub const GROUP_OR_OTHER_WRITE: u32 = 0o022;

/// The sticky bit: in a directory that has it, only an entry's owner (or
/// the directory's) may rename or remove the entry (`/tmp`).
pub const STICKY: u32 = 0o1000;

/// The ownership rule, without I/O: a state directory owned by `owner`
/// may be written by `me` only if they are the same user.
pub fn may_write_state(owner: u32, me: u32) -> bool {
    owner == me
}

/// The privacy rule, without I/O: whether permission bits `mode` let a
/// directory's group or others write it (create, rename or remove what
/// is in it; a sticky bit still lets them create).
pub fn others_may_write(mode: u32) -> bool {
    mode & GROUP_OR_OTHER_WRITE != 0
}

/// The rule for a directory on the way to the state directory, without
/// I/O: whether permission bits `mode` let its group or others rename what
/// it holds (write, without the sticky bit).
pub fn others_may_swap_entries(mode: u32) -> bool {
    others_may_write(mode) && mode & STICKY == 0
}

/// Refuses a state directory `dir` that belongs to another user than this
/// process's, that its group or others may write, or that lies in a
/// directory they may rename it in ([`check_state_dir_private`]). A
/// missing directory is fine if its path is: whoever creates it owns it
/// (`0700`).
pub fn check_state_dir(dir: &Path) -> Result<(), OwnershipError> {
    let Ok(meta) = std::fs::metadata(dir) else {
        return refuse_swappable_ancestors(dir);
    };
    let me = euid();
    if !may_write_state(meta.uid(), me) {
        return Err(OwnershipError::NotOwner {
            dir: dir.to_path_buf(),
            owner: User::from_uid(meta.uid()),
            me: User::from_uid(me),
        });
    }
    refuse_open_to_others(dir, &meta)?;
    refuse_swappable_ancestors(dir)
}

/// Refuses a state directory `dir` that its group or others may write, or
/// that lies in a directory (on its path as written, or as its symbolic
/// links resolve) they may rename it in, whoever owns it: the part of
/// [`check_state_dir`] every command that opens the state applies first,
/// whichever the journal (a PostgreSQL journal is elsewhere, but deploy
/// logs, the serve lock and the compiled-component cache are here).
pub fn check_state_dir_private(dir: &Path) -> Result<(), OwnershipError> {
    if let Ok(meta) = std::fs::metadata(dir) {
        refuse_open_to_others(dir, &meta)?;
    }
    refuse_swappable_ancestors(dir)
}

/// The most symbolic links followed on the way to a state directory, as
/// the kernel's own limit (`ELOOP`); a longer chain is left to the open
/// that follows, which fails on it.
const MAX_LINKS_FOLLOWED: usize = 40;

/// Refuses `dir` if a directory in which any name on the way to it is
/// looked up ([`containers`]) is one its group or others may rename
/// entries in: they could swap that name for their own directory or link,
/// while a server writes there. The state directory's own mode is judged
/// apart.
fn refuse_swappable_ancestors(dir: &Path) -> Result<(), OwnershipError> {
    match containers(dir, |meta| others_may_swap_entries(meta.mode())) {
        Some((ancestor, meta)) => Err(OwnershipError::SwappableAncestor {
            dir: dir.to_path_buf(),
            ancestor,
            mode: meta.mode() & 0o7777,
        }),
        None => Ok(()),
    }
}

/// The first directory on the way to `dir` that another user than root
/// and this process's owns: that user may rename the state directory away
/// and put their own in its place. Not refused (a checkout in a user's
/// home run by root is one), but `serve` warns of it.
pub fn foreign_ancestor(dir: &Path) -> Option<(PathBuf, User)> {
    let me = euid();
    containers(dir, |meta| meta.uid() != 0 && meta.uid() != me)
        .map(|(ancestor, meta)| (ancestor, User::from_uid(meta.uid())))
}

/// The first directory in which a name on the way to `dir` is looked up,
/// as the kernel resolves the path (each symbolic link's target followed
/// in turn, wherever the link lies), for which `found` holds. A part that
/// does not exist yet is one a command creates (`0700`, this user's), and
/// `..` after it leads back to what holds it; `..` names a parent no one
/// can swap.
fn containers(
    dir: &Path,
    mut found: impl FnMut(&std::fs::Metadata) -> bool,
) -> Option<(PathBuf, std::fs::Metadata)> {
    use std::path::Component;
    let written = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut pending: std::collections::VecDeque<std::ffi::OsString> = written
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut current = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            current.pop();
            continue;
        }
        // `current` holds `name`.
        if let Ok(meta) = std::fs::metadata(&current) {
            if meta.is_dir() && found(&meta) {
                return Some((current, meta));
            }
        }
        let next = current.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                let target = std::fs::read_link(&next).ok()?;
                if links > MAX_LINKS_FOLLOWED {
                    return None;
                }
                if target.is_absolute() {
                    current = PathBuf::from("/");
                }
                for part in target.components().rev() {
                    match part {
                        Component::Normal(n) => pending.push_front(n.to_os_string()),
                        Component::ParentDir => pending.push_front("..".into()),
                        _ => {}
                    }
                }
            }
            // A name not there yet is created (`0700`, this user's): what
            // follows is looked up in it, or, after `..`, in what holds it.
            Ok(_) | Err(_) => current = next,
        }
    }
    None
}

/// A file where the directory should be is left to the caller's own
/// "not a directory" error.
fn refuse_open_to_others(dir: &Path, meta: &std::fs::Metadata) -> Result<(), OwnershipError> {
    if meta.is_dir() && others_may_write(meta.mode()) {
        return Err(OwnershipError::OpenToOthers {
            dir: dir.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Whether this process (by its effective ids) may access `path` with
/// `mode` (`libc::R_OK`, `W_OK`, `X_OK`, or'ed).
fn may_access(path: &Path, mode: libc::c_int) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid NUL-terminated path for the call's duration.
    unsafe { libc::faccessat(libc::AT_FDCWD, c.as_ptr(), mode, libc::AT_EACCESS) == 0 }
}

/// Explains why this process cannot open `path` (for writing too when
/// `write`): the first directory on the way it may not enter, or the file
/// (or, for a file still to be created, its directory) it may not read or
/// write, with its owner; or the component on the way that is a file, not
/// a directory. `None` when the permissions allow it (the failure is
/// something else).
pub fn permission_problem(path: &Path, write: bool) -> Option<OwnershipError> {
    let denied = |blocker: &Path| {
        let meta = std::fs::metadata(blocker).ok()?;
        Some(OwnershipError::PermissionDenied {
            blocker: blocker.to_path_buf(),
            owner: User::from_uid(meta.uid()),
            mode: meta.mode() & 0o7777,
            me: User::current(),
        })
    };
    let dirs: Vec<&Path> = path.ancestors().skip(1).collect();
    for dir in dirs.iter().rev().filter(|d| !d.as_os_str().is_empty()) {
        if std::fs::metadata(dir).is_ok_and(|m| !m.is_dir()) {
            return Some(OwnershipError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        if !may_access(dir, libc::X_OK) {
            return denied(dir);
        }
    }
    let file_mode = if write {
        libc::R_OK | libc::W_OK
    } else {
        libc::R_OK
    };
    if std::fs::symlink_metadata(path).is_ok() {
        if !may_access(path, file_mode) {
            return denied(path);
        }
        // SQLite creates `-wal` and `-shm` beside a journal opened for
        // writing: the directory must be writable too.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if write && !may_access(dir, libc::W_OK) {
                return denied(dir);
            }
        }
        return None;
    }
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if write && !may_access(dir, libc::W_OK) => denied(dir),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_may_write_state() {
        assert!(may_write_state(998, 998));
        assert!(!may_write_state(998, 0));
        assert!(!may_write_state(0, 998));
    }

    #[test]
    fn a_refusal_names_the_owner_and_the_command_to_run_as_it() {
        let err = OwnershipError::NotOwner {
            dir: PathBuf::from("/var/lib/redeploy"),
            owner: User {
                uid: 998,
                name: Some("redeploy".into()),
            },
            me: User {
                uid: 0,
                name: Some("root".into()),
            },
        };
        assert_eq!(
            err.to_string(),
            "state directory /var/lib/redeploy is owned by redeploy; run as that user (sudo -u redeploy redeploy ...)"
        );
    }

    #[test]
    fn a_user_without_a_name_is_shown_by_uid() {
        let err = OwnershipError::PermissionDenied {
            blocker: PathBuf::from("/srv/state/journal.sqlite3"),
            owner: User {
                uid: 4242,
                name: None,
            },
            mode: 0o600,
            me: User {
                uid: 1000,
                name: Some("git".into()),
            },
        };
        assert_eq!(
            err.to_string(),
            "permission denied: /srv/state/journal.sqlite3 is owned by uid 4242 (mode 0600), running as git"
        );
        let orphan = User {
            uid: 4242,
            name: None,
        };
        assert_eq!(orphan.sudo_arg(), "'#4242'");
    }

    #[test]
    fn root_resolves_to_its_name() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }

    #[test]
    fn a_state_directory_of_ours_or_none_at_all_passes() {
        let dir = std::env::temp_dir().join(format!("redeploy-ownership-{}", std::process::id()));
        assert_eq!(check_state_dir(&dir), Ok(()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(check_state_dir(&dir), Ok(()));
        assert_eq!(permission_problem(&dir.join("journal.sqlite3"), true), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_directory_its_group_or_others_may_write_is_refused_as_is() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("redeploy-open-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (mode, refused) in [
            (0o700, false),
            (0o750, false),
            (0o755, false),
            (0o770, true),
            (0o702, true),
            (0o1777, true),
            (0o2775, true),
        ] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            let checked = check_state_dir(&dir);
            if refused {
                assert_eq!(
                    checked,
                    Err(OwnershipError::OpenToOthers {
                        dir: dir.clone(),
                        mode
                    }),
                    "{mode:o}"
                );
            } else {
                assert_eq!(checked, Ok(()), "{mode:o}");
            }
            // Refused, not tightened.
            let left = std::fs::metadata(&dir).unwrap().mode() & 0o7777;
            assert_eq!(left, mode, "{mode:o}");
        }
        assert_eq!(
            check_state_dir(&dir).unwrap_err().to_string(),
            format!(
                "state directory {d} has mode 2775: its group or others may write it, and so \
                 replace the journal and the files it keeps; run chmod go-w {d}",
                d = dir.display()
            )
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_state_directory_in_a_directory_others_may_write_is_refused_unless_sticky() {
        use std::os::unix::fs::PermissionsExt as _;
        let base = std::env::temp_dir().join(format!("redeploy-swappable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let open = base.join("open");
        let state = open.join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        let swappable = |ancestor: &Path, mode| OwnershipError::SwappableAncestor {
            dir: state.clone(),
            ancestor: ancestor.to_path_buf(),
            mode,
        };
        for (mode, refused) in [
            (0o777, true),
            (0o775, true),
            (0o1777, false),
            (0o755, false),
        ] {
            std::fs::set_permissions(&open, std::fs::Permissions::from_mode(mode)).unwrap();
            let expected = if refused {
                Err(swappable(&open, mode))
            } else {
                Ok(())
            };
            assert_eq!(check_state_dir(&state), expected, "{mode:o}");
            assert_eq!(check_state_dir_private(&state), expected, "{mode:o}");
            // Not there yet: refused all the same, before it is created.
            let missing = open.join("missing");
            assert_eq!(
                check_state_dir_private(&missing).is_err(),
                refused,
                "{mode:o}"
            );
        }
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(
            check_state_dir_private(&state).unwrap_err().to_string(),
            format!(
                "state directory {s} lies in {o}, which has mode 0777: its group or others may \
                 rename the state directory and put their own in its place; run chmod go-w {o}, \
                 or keep the state directory elsewhere",
                s = state.display(),
                o = open.display()
            )
        );
        // Reached through a link from a private directory, the open one it
        // resolves into is found.
        let private = base.join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o755)).unwrap();
        let link = private.join("state");
        std::os::unix::fs::symlink(&state, &link).unwrap();
        assert_eq!(
            check_state_dir(&link),
            Err(OwnershipError::SwappableAncestor {
                dir: link.clone(),
                ancestor: open.clone(),
                mode: 0o777
            })
        );
        // A link in the open directory on the way, to a private directory
        // elsewhere: whoever may write there may point it anywhere.
        let real = base.join("real");
        std::fs::create_dir_all(real.join("state")).unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(real.join("state"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        std::os::unix::fs::symlink(&real, open.join("hop")).unwrap();
        let chained = private.join("chained");
        std::os::unix::fs::symlink(open.join("hop"), &chained).unwrap();
        assert_eq!(
            check_state_dir(&chained.join("state")),
            Err(OwnershipError::SwappableAncestor {
                dir: chained.join("state"),
                ancestor: open.clone(),
                mode: 0o777
            })
        );
        // Passing through it by `..` looks nothing up in it.
        assert_eq!(check_state_dir(&open.join("../real/state")), Ok(()));
        // Through a name not there yet and back by `..`: the creation
        // would look `state` up in the open directory.
        let around = private.join("missing/../../open/new");
        assert_eq!(
            check_state_dir_private(&around),
            Err(OwnershipError::SwappableAncestor {
                dir: around.clone(),
                ancestor: open.clone(),
                mode: 0o777
            })
        );
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(check_state_dir(&link), Ok(()));
        assert_eq!(check_state_dir(&chained.join("state")), Ok(()));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_file_where_the_state_directory_should_be_is_not_a_directory_not_a_permission() {
        let dir = std::env::temp_dir().join(format!("redeploy-not-a-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("state");
        std::fs::write(&file, b"").unwrap();
        let problem = permission_problem(&file.join("journal.sqlite3"), true);
        assert_eq!(
            problem,
            Some(OwnershipError::NotADirectory { path: file.clone() })
        );
        assert_eq!(
            problem.unwrap().to_string(),
            format!("{} is not a directory", file.display())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
