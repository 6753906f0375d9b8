//! The compiled-component cache (`<state_dir>/cache`), treated as what it
//! is: native code that will run inside the process holding every secret.
//!
//! A cached artifact is loaded only when all of these hold:
//!
//! - the cache directory is owned by the current user (it is created `0700`,
//!   and tightened to `0700` if it was looser; a command that only reads
//!   the cache refuses one group or others may write, and changes nothing);
//! - the artifact file is owned by the current user and not writable by
//!   group or others;
//! - its trailing tag, a keyed BLAKE3 hash, verifies with the cache key, a
//!   `0600` file in the state directory ([`CACHE_KEY_FILE`]) that only the
//!   server's user can read. BLAKE3 rather than HMAC-SHA256 because every
//!   run of the post-receive hook checks the whole artifact (about 5 MiB):
//!   0.86 ms against 3.06 ms here (BENCHMARKS.md part 5, ninth pass).
//!
//! Anything else is ignored with one warning log line, and the component is
//! compiled again (and the cache rewritten when the directory is ours); a
//! command that only reads the cache compiles without a word, and the next
//! `serve` or hook warns of the file and replaces it.
//!
//! A verified artifact is then mapped from its file, not copied into the
//! heap, so only the pages a delivery runs are resident (BENCHMARKS.md,
//! idle memory). The tag is checked over the file read through one open
//! descriptor, and that same descriptor is what is mapped
//! ([`Verified::mapping_path`], `/proc/self/fd/N`): a path swapped between
//! the check and the mapping (a renamed file or directory) changes nothing.
//! [`Verified::unchanged`] then refuses the artifact if the file's size or
//! modification time moved since the check. Writing the file in place needs this user's
//! own rights (the directory is `0700`, the file not writable by others),
//! with which the process itself can be changed anyway; such a write is
//! seen only as far as the file system's timestamps resolve it, and one made
//! while the file is mapped changes (or, truncating, crashes) the running
//! process. The cache itself never writes a file in place: a new artifact is
//! renamed over the old, which leaves the old mapping intact.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The file in the state directory (the cache directory's parent) holding
/// the key that authenticates compiled artifacts: 32 random bytes, hex,
/// created `0600`. It lives outside the cache directory so that whoever
/// can replace cache files cannot also replace the key beside them.
pub const CACHE_KEY_FILE: &str = "cache.key";

/// Bytes of the tag (a keyed BLAKE3 hash) appended to each artifact. Appending (rather
/// than a separate `.mac` file) keeps artifact and tag one atomic rename, so
/// two processes filling the cache at once never pair one's code with the
/// other's tag.
pub const CACHE_TAG_BYTES: usize = 32;

/// Random bytes in a cache key: BLAKE3's key size (256 bits).
pub const CACHE_KEY_BYTES: usize = 32;

/// A cache key: [`CACHE_KEY_BYTES`] secret random bytes.
pub type CacheKey = [u8; CACHE_KEY_BYTES];

/// The largest artifact file accepted: the compiled component is a few MiB;
/// a file much larger than that is not ours and is not read.
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
    /// Replaced or written between the check of its tag and its mapping.
    #[error("{path} changed while it was being loaded")]
    Changed {
        /// The file.
        path: String,
    },
    /// Not a regular file (a FIFO, a device, a directory...).
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The path.
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

/// Opens `path` for reading without waiting on it: `O_NONBLOCK`, so a FIFO
/// put in the key's or an artifact's place (where the state directory lets
/// another user) opens at once, and is then refused as not a regular file
/// ([`CacheRefusal::NotAFile`]) instead of holding the process for ever.
/// The flag changes nothing for a regular file's reads.
fn open_without_waiting(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Refuses what `meta` describes unless it is a regular file.
fn check_regular_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), CacheRefusal> {
    if meta.is_file() {
        return Ok(());
    }
    Err(CacheRefusal::NotAFile {
        path: path.display().to_string(),
    })
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

/// Whether `dir` is a cache directory this user may load artifacts from
/// without changing it: `Ok(false)` if it does not exist, an error if it is
/// not a directory, not ours, or group or others may write it
/// ([`ensure_private_dir`] is the writer's check, which also tightens it).
pub fn check_private_dir_read_only(dir: &Path) -> anyhow::Result<bool> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    if !meta.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    check_owner_mode(dir, &meta, crate::ownership::GROUP_OR_OTHER_WRITE)?;
    Ok(true)
}

/// The cache key at `path`: read if it is a safe file of ours (`0600`, our
/// user), created (`0600`, exclusive) if missing.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<CacheKey> {
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
    read_key(path)?.ok_or_else(|| anyhow::anyhow!("{} vanished as it was read", path.display()))
}

/// The cache key at `path`, read only: `None` if there is none, an error if
/// it is not a safe file of ours (`0600`, our user) or holds no key.
pub fn read_key(path: &Path) -> anyhow::Result<Option<CacheKey>> {
    let file = match open_without_waiting(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let meta = file.metadata()?;
    check_regular_file(path, &meta)?;
    check_owner_mode(path, &meta, 0o077)?;
    let mut text = String::new();
    file.take(4 * CACHE_KEY_BYTES as u64)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    let key = hex::decode(text.trim())
        .ok()
        .and_then(|k| CacheKey::try_from(k).ok());
    key.map(Some).ok_or_else(|| {
        anyhow::anyhow!(
            "{} does not hold a {CACHE_KEY_BYTES}-byte hex key",
            path.display()
        )
    })
}

/// The tag of an artifact named `name`, before its code: the code is fed in
/// by the caller (at once when writing, in chunks when checking).
fn tag_start(key: &CacheKey, name: &str) -> blake3::Hasher {
    let mut mac = blake3::Hasher::new_keyed(key);
    // The name carries the component's hash and the engine's compatibility
    // hash: a tag made for one cache entry does not vouch for another.
    mac.update(name.as_bytes());
    mac.update(&[0]);
    mac
}

/// Bytes read at a time while a cached artifact's tag is checked.
const VERIFY_CHUNK_BYTES: usize = 64 * 1024;

/// What identifies the file whose tag was checked: the fields of its `stat`
/// that a write changes. Not the change time, which another artifact
/// renamed over this one's name also changes (its link count drops).
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileIdentity {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl FileIdentity {
    fn of(meta: &std::fs::Metadata) -> Self {
        FileIdentity {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
        }
    }
}

/// A cached artifact whose tag verified: the descriptor it was read
/// through, and what the file was when it was checked.
#[derive(Debug)]
pub struct Verified {
    path: PathBuf,
    file: File,
    identity: FileIdentity,
}

impl Verified {
    /// A path that opens the very file that was checked, whatever has
    /// happened to its name since: `/proc/self/fd/N` of the descriptor it
    /// was read through (`None` without `/proc`).
    pub fn mapping_path(&self) -> Option<PathBuf> {
        use std::os::fd::AsRawFd as _;
        let path = PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()));
        path.exists().then_some(path)
    }

    /// Bytes of compiled code in the file (its length without the tag).
    fn code_len(&self) -> u64 {
        self.identity.len - CACHE_TAG_BYTES as u64
    }

    /// The file's code (without the tag), read again through the descriptor
    /// that was checked: for a system without `/proc`, where
    /// [`Verified::mapping_path`] has no path to map. As with a mapping,
    /// [`Verified::unchanged`] afterwards refuses a file written since.
    pub fn read_code(&self) -> std::io::Result<Vec<u8>> {
        use std::io::{Seek as _, SeekFrom};
        let mut file = &self.file;
        file.seek(SeekFrom::Start(0))?;
        let len = usize::try_from(self.code_len()).map_err(std::io::Error::other)?;
        let mut code = vec![0u8; len];
        file.read_exact(&mut code)?;
        Ok(code)
    }

    /// Succeeds if the file that was checked is unwritten since (its size
    /// and modification time, from `fstat` of the descriptor it was read
    /// through); called after the file is mapped.
    pub fn unchanged(&self) -> Result<(), CacheRefusal> {
        match self.file.metadata() {
            Ok(meta) if FileIdentity::of(&meta) == self.identity => Ok(()),
            _ => Err(CacheRefusal::Changed {
                path: self.path.display().to_string(),
            }),
        }
    }
}

/// Checks the artifact at `path`: `Ok(Some(_))` if it is ours, safe and
/// authentic, `Ok(None)` if there is no file. The file is read through one
/// descriptor in chunks of [`VERIFY_CHUNK_BYTES`] (nothing of it is kept).
pub fn verify(path: &Path, key: &CacheKey) -> Result<Option<Verified>, anyhow::Error> {
    let mut file = match open_without_waiting(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    // fstat of the opened file: the checks are about the bytes we read.
    let meta = file.metadata()?;
    check_regular_file(path, &meta)?;
    check_owner_mode(path, &meta, crate::ownership::GROUP_OR_OTHER_WRITE)?;
    let len = meta.len();
    if !(CACHE_TAG_BYTES as u64..=MAX_CACHE_FILE_BYTES).contains(&len) {
        return Err(CacheRefusal::BadSize {
            path: path.display().to_string(),
            len,
        }
        .into());
    }
    let name = file_name(path);
    let mut mac = tag_start(key, &name);
    let mut left = len - CACHE_TAG_BYTES as u64;
    let mut chunk = vec![0u8; VERIFY_CHUNK_BYTES];
    let read_err = |e| anyhow::Error::new(e).context(format!("reading {}", path.display()));
    while left > 0 {
        let want = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        file.read_exact(&mut chunk[..want]).map_err(read_err)?;
        mac.update(&chunk[..want]);
        left -= want as u64;
    }
    let mut presented = [0u8; CACHE_TAG_BYTES];
    file.read_exact(&mut presented).map_err(read_err)?;
    // `blake3::Hash`'s equality is constant-time.
    if mac.finalize() != blake3::Hash::from_bytes(presented) {
        return Err(CacheRefusal::BadTag {
            path: path.display().to_string(),
        }
        .into());
    }
    let verified = Verified {
        path: path.to_path_buf(),
        file,
        identity: FileIdentity::of(&meta),
    };
    // A file that grew while it was read is not the file checked.
    verified.unchanged()?;
    Ok(Some(verified))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `code` and its tag to `path` atomically: a unique temporary file
/// created `0600`, renamed into place (a failed write leaves no partial file).
pub fn write_tagged(path: &Path, key: &CacheKey, code: &[u8]) -> anyhow::Result<()> {
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
        let mut mac = tag_start(key, &file_name(path));
        mac.update(code);
        f.write_all(mac.finalize().as_bytes())?;
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
    fn a_fifo_in_the_keys_or_an_artifacts_place_is_refused_at_once() {
        let dir = temp("fifo");
        ensure_private_dir(&dir).unwrap();
        let key = load_or_create_key(&dir.join("k")).unwrap();
        let (key_fifo, artifact_fifo) = (dir.join("fifo.key"), dir.join("fifo.cwasm"));
        for fifo in [&key_fifo, &artifact_fifo] {
            let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid NUL-terminated path for the call's duration.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        // Opened with no writer, a FIFO would block for ever: asked on a
        // thread, so a regression fails here instead of hanging.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let key_answer = read_key(&key_fifo)
                .map(|_| ())
                .map_err(|e| format!("{e:#}"));
            let artifact_answer = verify(&artifact_fifo, &key)
                .map(|_| ())
                .map_err(|e| format!("{e:#}"));
            let _ = tx.send((key_answer, artifact_answer));
        });
        let (key_answer, artifact_answer) = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("opening a FIFO in the cache waited for a writer");
        for answer in [key_answer, artifact_answer] {
            let e = answer.expect_err("a FIFO was taken for a cache file");
            assert!(e.contains("is not a regular file"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_tagged_file_verifies_and_a_flipped_byte_does_not() {
        let dir = temp("flip");
        ensure_private_dir(&dir).unwrap();
        let key = load_or_create_key(&dir.join("k")).unwrap();
        let path = dir.join("a.cwasm");
        // Longer than one read chunk, so the tag is checked across chunks.
        let code: Vec<u8> = (0..VERIFY_CHUNK_BYTES * 2 + 7).map(|i| i as u8).collect();
        write_tagged(&path, &key, &code).unwrap();
        let verified = verify(&path, &key).unwrap().unwrap();
        assert_eq!(verified.code_len(), code.len() as u64);
        verified.unchanged().unwrap();
        assert_eq!(verified.read_code().unwrap(), code);
        let mapped = verified.mapping_path().unwrap();
        // Another file renamed over the name: the checked one is still
        // what the descriptor opens, and it is unchanged.
        write_tagged(&path, &key, b"other code").unwrap();
        assert_eq!(
            std::fs::read(&mapped).unwrap().len(),
            code.len() + CACHE_TAG_BYTES
        );
        verified.unchanged().unwrap();
        // The checked file written in place (grown): refused.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&mapped)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let err = verified.unchanged().unwrap_err();
        assert!(err.to_string().contains("changed"), "{err}");
        write_tagged(&path, &key, &code).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[VERIFY_CHUNK_BYTES + 3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = verify(&path, &key).unwrap_err();
        assert!(err.to_string().contains("valid tag"), "{err:#}");
        assert!(verify(&dir.join("absent"), &key).unwrap().is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tag_made_with_another_key_or_for_another_name_is_refused() {
        let dir = temp("other-key");
        ensure_private_dir(&dir).unwrap();
        let key = load_or_create_key(&dir.join("k")).unwrap();
        let other = load_or_create_key(&dir.join("k2")).unwrap();
        assert_ne!(key, other);
        let path = dir.join("a.cwasm");
        write_tagged(&path, &other, b"code").unwrap();
        let err = verify(&path, &key).unwrap_err();
        assert!(err.to_string().contains("valid tag"), "{err:#}");
        assert!(verify(&path, &other).unwrap().is_some());
        // The same bytes under another entry's name: the tag covers the name.
        let renamed = dir.join("b.cwasm");
        std::fs::rename(&path, &renamed).unwrap();
        let err = verify(&renamed, &other).unwrap_err();
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
