//! Reading input within a limit: all of it, or a refusal naming the limit.
//! Never a prefix: evaluating a cut input can change its meaning (a ref name
//! cut after `refs/heads/main` is `main`), so everything the host bounds is
//! read whole or refused whole.

use std::io::{self, Read};
use std::path::Path;

/// Input over its limit; nothing of it was used.
#[derive(Debug, thiserror::Error)]
#[error("{what} is over {limit} bytes")]
pub struct TooLarge {
    /// What was being read, e.g. `post-receive input`.
    pub what: String,
    /// The limit, in bytes.
    pub limit: u64,
}

/// Reads all of `reader`, or refuses with [`TooLarge`] (as an
/// [`io::ErrorKind::FileTooLarge`] error) once it holds more than `limit`
/// bytes. Reads at most `limit + 1` bytes, so an endless input costs no more
/// than the limit.
pub fn read_all(reader: impl Read, limit: u64, what: &str) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    reader.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            TooLarge {
                what: what.to_string(),
                limit,
            },
        ));
    }
    Ok(buf)
}

/// Reads the whole regular file at `path` (a symbolic link to one is
/// followed) as UTF-8 text, refusing one over `limit` bytes (checked by
/// reading, not by the file's stated size, so a growing file is bounded
/// too). Anything else is refused as it is opened, without waiting: a FIFO
/// would hold the reader until something writes to it, and a device could
/// answer forever.
pub fn read_file_to_string(path: &Path, limit: u64) -> io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // Opening a FIFO for reading waits for a writer, unless non-blocking.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is not a regular file (a FIFO, a device, a socket or a directory)",
        ));
    }
    let bytes = read_all(file, limit, "the file")?;
    String::from_utf8(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "the file is not valid UTF-8"))
}

/// Reads the whole file at `path`, refusing one over `limit` bytes.
pub fn read_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_all(std::fs::File::open(path)?, limit, "the file")
}

/// Reads an HTTP response body whole, or refuses one over `limit` bytes
/// (by its `Content-Length` before reading, or as it streams in).
pub async fn response_body(mut resp: reqwest::Response, limit: u64) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let mut buf = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| BodyError::Read(e.without_url()))?
    {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// Why a response body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body is over the limit (bytes); none of it is used.
    #[error("the answer's body is over {0} bytes")]
    TooLarge(u64),
    /// The connection failed while reading it.
    #[error("reading the answer's body: {0}")]
    Read(reqwest::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_at_the_limit_is_read_whole() {
        let data = vec![b'x'; 100];
        assert_eq!(read_all(&data[..], 100, "input").unwrap(), data);
    }

    #[test]
    fn input_one_byte_over_the_limit_is_refused_not_cut() {
        let data = [b'x'; 101];
        let err = read_all(&data[..], 100, "post-receive input").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(err.to_string(), "post-receive input is over 100 bytes");
    }

    #[test]
    fn a_fifo_or_a_device_is_refused_at_once_not_waited_on() {
        let dir = std::env::temp_dir().join(format!("bounded-fifo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("secret");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        // No writer ever comes: a blocking open would wait forever.
        for path in [fifo.as_path(), Path::new("/dev/zero"), dir.as_path()] {
            let err = read_file_to_string(path, 1024).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{path:?}: {err}");
            assert!(err.to_string().contains("not a regular file"), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_endless_input_is_refused_after_reading_one_byte_past_the_limit() {
        let err = read_all(io::repeat(b'a'), 1 << 20, "input").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
    }
}
