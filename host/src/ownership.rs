//! Who owns the state directory and who is running.
//!
//! A command run as another user than the state directory's owner (root,
//! typically, from an administrator's shell) would create files there
//! (the journal, its `-wal`, logs, locks, the compiled-component cache)
//! that `serve` or the git hook, running as the owner, then cannot open.
//! [`check_state_dir`] refuses before anything is created; the journal
//! calls it when it opens for writing, the first thing every writing
//! command does, and the compiled-component cache before it creates its
//! directory. [`permission_problem`] explains a file this user may not
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

/// The ownership rule, without I/O: a state directory owned by `owner`
/// may be written by `me` only if they are the same user.
pub fn may_write_state(owner: u32, me: u32) -> bool {
    owner == me
}

/// Refuses a state directory `dir` that exists and belongs to another user
/// than this process's. A missing directory is fine: whoever creates it
/// owns it.
pub fn check_state_dir(dir: &Path) -> Result<(), OwnershipError> {
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    let me = euid();
    if may_write_state(meta.uid(), me) {
        return Ok(());
    }
    Err(OwnershipError::NotOwner {
        dir: dir.to_path_buf(),
        owner: User::from_uid(meta.uid()),
        me: User::from_uid(me),
    })
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
