//! The compiled-component cache (`<state_dir>/cache`), treated as what it
//! is: native code that will run inside the process holding every secret.
//!
//! A cached artifact is loaded only when all of these hold:
//!
//! - the cache directory is owned by the current user (it is created `0700`,
//!   and tightened to `0700` if it was looser);
//! - the artifact file is owned by the current user and not writable by
//!   group or others;
//! - its trailing HMAC-SHA256 tag verifies with the cache key, a `0600`
//!   file in the state directory ([`CACHE_KEY_FILE`]) that only the server's
//!   user can read.
//!
//! Anything else is ignored with one warning log line, and the component is
//! compiled again (and the cache rewritten when the directory is ours). The
//! bytes that were verified are the bytes deserialized: the file is read
//! once into memory, so nothing can swap it between check and load.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// The file in the state directory (the cache directory's parent) holding
/// the key that authenticates compiled artifacts: 32 random bytes, hex,
/// created `0600`. It lives outside the cache directory so that whoever
/// can replace cache files cannot also replace the key beside them.
pub const CACHE_KEY_FILE: &str = "cache.key";

/// Bytes of the HMAC-SHA256 tag appended to each artifact. Appending (rather
/// than a separate `.mac` file) keeps artifact and tag one atomic rename, so
/// two processes filling the cache at once never pair one's code with the
/// other's tag.
pub const CACHE_TAG_BYTES: usize = 32;

/// Random bytes in a new cache key (256 bits, HMAC-SHA256's block strength).
pub const CACHE_KEY_BYTES: usize = 32;

/// The largest artifact file read: the compiled component is a few MiB; a
/// file much larger than that is not ours and is not read into memory.
pub const MAX_CACHE_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// What became of the cache when the runtime was loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// A verified artifact was loaded.
    Loaded,
    /// There was no artifact yet (or the key was new): compiled and written.
    Compiled,
    /// An artifact was there but refused (the reason says why): compiled
    /// again and, where possible, replaced.
    Refused(String),
    /// The cache cannot be used (directory or key not safe, disk
    /// unwritable): compiled in memory; the reason says why.
    Unusable(String),
}

/// Why a cached artifact or key is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum CacheRefusal {
    /// Owned by another user.
    #[error("{path} is owned by uid {owner}, not by this user (uid {me})")]
    NotOwned {
        /// The file or directory.
        path: String,
        /// Its owner.
        owner: u32,
        /// The current effective uid.
        me: u32,
    },
    /// Writable (or, for the key, readable) by group or others.
    #[error("{path} has mode {mode:o}: group or others may change it")]
    TooOpen {
        /// The file or directory.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The tag does not verify with the cache key.
    #[error("{path} does not carry a valid tag for this server's cache key")]
    BadTag {
        /// The file.
        path: String,
    },
    /// Larger than [`MAX_CACHE_FILE_BYTES`], or shorter than a tag.
    #[error("{path} has an implausible size ({len} bytes)")]
    BadSize {
        /// The file.
        path: String,
        /// Its length.
        len: u64,
    },
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Refuses `meta` unless it belongs to this user and none of `forbidden`
/// permission bits are set.
fn check_owner_mode(
    path: &Path,
    meta: &std::fs::Metadata,
    forbidden: u32,
) -> Result<(), CacheRefusal> {
    let me = euid();
    if meta.uid() != me {
        return Err(CacheRefusal::NotOwned {
            path: path.display().to_string(),
            owner: meta.uid(),
            me,
        });
    }
    let mode = meta.mode() & 0o7777;
    if mode & forbidden != 0 {
        return Err(CacheRefusal::TooOpen {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Creates the cache directory `0700` (and its missing parents `0700`), or
/// tightens an existing one of ours to `0700`. A directory owned by someone
/// else is refused.
pub fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let meta =
        std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    check_owner_mode(dir, &meta, 0)?;
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private (0700)", dir.display()))?;
    }
    Ok(())
}

/// The cache key at `path`: read if it is a safe file of ours (`0600`, our
/// user), created (`0600`, exclusive) if missing.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut rnd = [0u8; CACHE_KEY_BYTES];
    getrandom::fill(&mut rnd).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(mut f) => {
            f.write_all(hex::encode(rnd).as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let meta = file.metadata()?;
    check_owner_mode(path, &meta, 0o077)?;
    let mut text = String::new();
    file.take(4 * CACHE_KEY_BYTES as u64)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    let key = hex::decode(text.trim())
        .ok()
        .filter(|k| k.len() == CACHE_KEY_BYTES);
    key.ok_or_else(|| {
        anyhow::anyhow!(
            "{} does not hold a {CACHE_KEY_BYTES}-byte hex key",
            path.display()
        )
    })
}

fn tag(key: &[u8], name: &str, code: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    // The name carries the component's hash and the engine's compatibility
    // hash: a tag made for one cache entry does not vouch for another.
    mac.update(name.as_bytes());
    mac.update(&[0]);
    mac.update(code);
    mac
}

/// Reads the artifact at `path` and returns its code (without the tag) if
/// it is ours, safe and authentic; `Ok(None)` if there is no file.
pub fn read_verified(path: &Path, key: &[u8]) -> Result<Option<Vec<u8>>, anyhow::Error> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    // fstat of the opened file: the checks are about the bytes we read.
    let meta = file.metadata()?;
    check_owner_mode(path, &meta, 0o022)?;
    let len = meta.len();
    if !(CACHE_TAG_BYTES as u64..=MAX_CACHE_FILE_BYTES).contains(&len) {
        return Err(CacheRefusal::BadSize {
            path: path.display().to_string(),
            len,
        }
        .into());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_CACHE_FILE_BYTES)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() < CACHE_TAG_BYTES {
        return Err(CacheRefusal::BadSize {
            path: path.display().to_string(),
            len: bytes.len() as u64,
        }
        .into());
    }
    let presented = bytes.split_off(bytes.len() - CACHE_TAG_BYTES);
    let name = file_name(path);
    // verify_slice compares in constant time.
    if tag(key, &name, &bytes).verify_slice(&presented).is_err() {
        return Err(CacheRefusal::BadTag {
            path: path.display().to_string(),
        }
        .into());
    }
    Ok(Some(bytes))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `code` and its tag to `path` atomically: a unique temporary file
/// created `0600`, renamed into place (a failed write leaves no partial file).
pub fn write_tagged(path: &Path, key: &[u8], code: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut rnd = [0u8; 8];
    let _ = getrandom::fill(&mut rnd);
    let tmp: PathBuf = dir.join(format!(".{}.{}.tmp", std::process::id(), hex::encode(rnd)));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(code)?;
        f.write_all(&tag(key, &file_name(path), code).finalize().into_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", tmp.display()));
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("redeploy-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_tagged_file_verifies_and_a_flipped_byte_does_not() {
        let dir = temp("flip");
        ensure_private_dir(&dir).unwrap();
        let key = load_or_create_key(&dir.join("k")).unwrap();
        let path = dir.join("a.cwasm");
        write_tagged(&path, &key, b"native code").unwrap();
        assert_eq!(read_verified(&path, &key).unwrap().unwrap(), b"native code");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_verified(&path, &key).unwrap_err();
        assert!(err.to_string().contains("valid tag"), "{err:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = temp("key");
        ensure_private_dir(&dir).unwrap();
        let path = dir.join("k");
        load_or_create_key(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create_key(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_loose_directory_is_tightened_to_0700() {
        let dir = temp("dir");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
