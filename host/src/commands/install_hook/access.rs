//! Whether the hook's user (the repository's owner, whom git runs hooks
//! as) can read the config and write the state directory, judged from
//! owners and mode bits before any push runs the hook. Access control
//! lists and mount options are not read; they can only narrow what the
//! bits allow, so a problem reported here is a real one.

use std::ffi::CStr;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// The most groups of an account read (`getgrouplist`); more than any
/// hosting account has, and what Linux's `NGROUPS_MAX` allowed before 2.6.4.
const MAX_GROUPS: usize = 65_536;

/// An account: its name (or number, when it has no entry) and groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The user id.
    pub uid: u32,
    /// Its name, or the number when the system has no entry for it.
    pub name: String,
    /// Its primary and supplementary groups.
    pub gids: Vec<u32>,
}

/// What the hook does with a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Reads a file (or lists a directory).
    Read,
    /// Writes a file (or creates files in a directory).
    Write,
}

/// A file's owner, group and mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owned {
    /// The owner's user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
    /// The permission bits.
    pub mode: u32,
}

/// Whether `account` may read or write (`want`), or, for a directory
/// along the way, search (`search`) a file owned as `owned`: the owner's
/// bits for its owner, the group's for a member, the others' else; root
/// may do all of it.
pub fn permits(account: &Account, owned: Owned, want: Want, search: bool) -> bool {
    if account.uid == 0 {
        return true;
    }
    let shift = if owned.uid == account.uid {
        6
    } else if account.gids.contains(&owned.gid) {
        3
    } else {
        0
    };
    let bits = (owned.mode >> shift) & 0o7;
    let needed = match (want, search) {
        (_, true) => 0o1,
        (Want::Read, false) => 0o4,
        (Want::Write, false) => 0o2,
    };
    bits & needed == needed
}

/// The account with user id `uid`, read from the system's user database.
pub fn account(uid: u32) -> Account {
    let Some((name, primary)) = crate::ownership::passwd_entry(uid) else {
        return Account {
            uid,
            name: uid.to_string(),
            gids: vec![],
        };
    };
    let gids = match std::ffi::CString::new(name.as_str()) {
        Ok(name_c) => {
            let mut gids = vec![0 as libc::gid_t; MAX_GROUPS];
            let mut count = MAX_GROUPS as libc::c_int;
            // SAFETY: `gids` has room for `count` entries; the name is
            // NUL-terminated.
            let rc = unsafe {
                libc::getgrouplist(name_c.as_ptr(), primary, gids.as_mut_ptr(), &mut count)
            };
            gids.truncate(if rc < 0 {
                0
            } else {
                usize::try_from(count).unwrap_or(0)
            });
            gids
        }
        Err(_) => Vec::new(),
    };
    Account {
        uid,
        name,
        gids: if gids.is_empty() { vec![primary] } else { gids },
    }
}

/// Why `account` cannot `want` `path` (searching every directory above
/// it), or `None` when it can. A path that does not exist is judged by
/// the nearest directory above it that does, which must let the account
/// create it.
pub fn problem(account: &Account, path: &Path, want: Want) -> Option<String> {
    let mut existing = path;
    let mut want_here = want;
    while std::fs::symlink_metadata(existing).is_err() {
        existing = existing.parent()?;
        want_here = Want::Write;
    }
    for dir in existing.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        if !permits(account, owned(&meta), Want::Read, true) {
            return Some(format!(
                "{} cannot reach {} (the directory {} is {})",
                account.name,
                path.display(),
                dir.display(),
                describe(&meta)
            ));
        }
    }
    let meta = std::fs::metadata(existing).ok()?;
    let may = permits(account, owned(&meta), want_here, false)
        && (!meta.is_dir() || permits(account, owned(&meta), want_here, true));
    if may {
        return None;
    }
    let verb = match (want, existing == path) {
        (Want::Read, true) => "read",
        (Want::Write, true) => "write",
        (_, false) => "create",
    };
    Some(if existing == path {
        format!(
            "{} cannot {verb} {} ({})",
            account.name,
            path.display(),
            describe(&meta)
        )
    } else {
        format!(
            "{} cannot create {} (its parent {} is {})",
            account.name,
            path.display(),
            existing.display(),
            describe(&meta)
        )
    })
}

fn owned(meta: &std::fs::Metadata) -> Owned {
    Owned {
        uid: meta.uid(),
        gid: meta.gid(),
        mode: meta.mode() & 0o7777,
    }
}

/// `owned by root:root, mode 0700`.
fn describe(meta: &std::fs::Metadata) -> String {
    let group_name = |gid: u32| {
        // SAFETY: getgrgid returns null or a pointer to a static entry, read at once.
        let entry = unsafe { libc::getgrgid(gid) };
        if entry.is_null() {
            return gid.to_string();
        }
        // SAFETY: a non-null entry's gr_name is a NUL-terminated string.
        unsafe { CStr::from_ptr((*entry).gr_name) }
            .to_string_lossy()
            .into_owned()
    };
    format!(
        "owned by {}:{}, mode {:04o}",
        account(meta.uid()).name,
        group_name(meta.gid()),
        meta.mode() & 0o7777
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(uid: u32, gids: &[u32]) -> Account {
        Account {
            uid,
            name: format!("u{uid}"),
            gids: gids.to_vec(),
        }
    }

    #[test]
    fn the_owner_the_group_and_others_each_get_their_own_bits() {
        let file = |mode| Owned {
            uid: 1000,
            gid: 2000,
            mode,
        };
        let owner = user(1000, &[1000]);
        let member = user(1001, &[2000]);
        let other = user(1002, &[1002]);
        assert!(permits(&owner, file(0o600), Want::Write, false));
        assert!(!permits(&member, file(0o600), Want::Read, false));
        assert!(permits(&member, file(0o640), Want::Read, false));
        assert!(!permits(&member, file(0o640), Want::Write, false));
        assert!(!permits(&other, file(0o640), Want::Read, false));
        assert!(permits(&other, file(0o644), Want::Read, false));
        // The owner's bits apply to the owner even when others may more.
        assert!(!permits(&owner, file(0o077), Want::Read, false));
        assert!(permits(&other, file(0o711), Want::Read, true));
        assert!(!permits(&other, file(0o700), Want::Read, true));
        assert!(permits(&user(0, &[]), file(0o000), Want::Write, false));
    }
}
