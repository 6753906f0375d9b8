//! Deploy logs and event files on disk: private to the server's user.
//!
//! A deploy's output can hold anything its command prints (hosts, paths,
//! sometimes credentials a script echoes), and its event file holds the
//! delivery's data, so both are created `0600` in directories created (or
//! tightened to) `0700`, whatever the process umask says.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::Path;

/// Creates `dir` and its missing parents `0700`; an existing directory of
/// ours that others can read is tightened to `0700`.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    tighten_dir(dir)
}

/// Sets `dir` to `0700` if it is ours and looser than that.
pub fn tighten_dir(dir: &Path) -> std::io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() == me && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Creates (or truncates) `path` for writing, mode `0600`; an existing file
/// is set to `0600` too, since the mode given at creation does not apply to
/// a file that is already there.
pub fn create_private_file(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Appends `line` and a newline to `path`, creating it `0600` if missing.
pub fn append_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{line}\n").as_bytes())
}

/// Writes `bytes` to `path`, created `0600`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    create_private_file(path)?.write_all(bytes)
}

/// How long a finished deploy's output is still copied into its log before
/// the deploy is recorded: what the command wrote just before it exited is
/// in the pipe; a background process it left holding the pipe open is
/// copied on, detached, but not waited for.
pub const LOG_DRAIN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A deploy log that keeps at most `cap` bytes of output: beyond, the
/// output is discarded and one marker line says so. The deploy goes on.
pub struct CappedLog {
    file: File,
    written: u64,
    cap: u64,
    truncated: bool,
}

impl CappedLog {
    /// A log writing to `file`, keeping at most `cap` bytes of output.
    pub fn new(file: File, cap: u64) -> CappedLog {
        CappedLog {
            file,
            written: 0,
            cap,
            truncated: false,
        }
    }

    /// The marker written once where output starts being discarded.
    pub fn marker(cap: u64) -> String {
        format!("\n[... output truncated at {cap} bytes ...]\n")
    }

    /// Appends `bytes`, or what fits of them and the marker.
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.truncated {
            return Ok(());
        }
        let room = self.cap - self.written;
        if bytes.len() as u64 <= room {
            self.written += bytes.len() as u64;
            return self.file.write_all(bytes);
        }
        self.truncated = true;
        self.written = self.cap;
        // `room` < bytes.len(), so it fits in usize.
        self.file.write_all(&bytes[..room as usize])?;
        self.file.write_all(Self::marker(self.cap).as_bytes())
    }
}

/// Copies `pipe` (a deploy command's stdout or stderr) into `log` until
/// it closes.
pub async fn copy_into(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    log: std::sync::Arc<std::sync::Mutex<CappedLog>>,
) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                // A full disk loses output, not the deploy.
                let _ = log.write(&buf[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capped_log_keeps_the_cap_and_one_marker() {
        let base = std::env::temp_dir().join(format!("redeploy-capped-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        create_private_dir(&base).unwrap();
        let path = base.join("1.log");
        let mut log = CappedLog::new(create_private_file(&path).unwrap(), 10);
        log.write(b"12345").unwrap();
        log.write(b"67890abc").unwrap();
        log.write(b"more").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("1234567890{}", CappedLog::marker(10)));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn files_are_0600_and_directories_0700_whatever_the_umask() {
        let base = std::env::temp_dir().join(format!("redeploy-logfiles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("logs").join("web");
        create_private_dir(&dir).unwrap();
        for d in [&base.join("logs"), &dir] {
            assert_eq!(
                std::fs::metadata(d).unwrap().mode() & 0o777,
                0o700,
                "{}",
                d.display()
            );
        }
        let path = dir.join("1.log");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"new").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let _ = std::fs::remove_dir_all(&base);
    }
}
