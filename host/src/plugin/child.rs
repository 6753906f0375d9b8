//! Running a child process for what it prints, within a time limit and a
//! bound on its output: the compile of the embedded component in a
//! process of its own ([`super::COMPILE_SUBCOMMAND`]). A child that hangs
//! is killed at the limit, one that prints more than the bound is killed
//! and its output refused whole, so a start never waits forever on it.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// The most of a child's error output kept for the message.
const MAX_CHILD_STDERR_BYTES: usize = 16 * 1024;

/// How often the wait for the child looks whether it has ended.
const CHILD_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Runs `command` with no input and returns all it printed on its
/// standard output, if it ends successfully within `limit` having printed
/// at most `max_stdout` bytes. Otherwise the error says why: its exit
/// status and the first line of its error output, the limit, or the
/// bound. At the limit the child is killed with whatever it started (it
/// leads a process group of its own), so nothing holds its output open.
pub fn output_within(
    mut command: Command,
    limit: Duration,
    max_stdout: u64,
) -> anyhow::Result<Vec<u8>> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .context("starting the child process")?;
    let stdout = child.stdout.take().context("the child's output")?;
    let stderr = child.stderr.take().context("the child's error output")?;
    // Both are read to their end (the child must never block writing),
    // keeping at most one byte past the bound of the output and the start
    // of the error output.
    let out = thread::spawn(move || keep_start(stdout, max_stdout.saturating_add(1)));
    let err = thread::spawn(move || keep_start(stderr, MAX_CHILD_STDERR_BYTES as u64));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the child")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            if let Ok(group) = i32::try_from(child.id()) {
                // SAFETY: kill(2) of the process group the child leads.
                unsafe {
                    libc::kill(-group, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(CHILD_POLL_INTERVAL);
    };
    let (out, printed) = out
        .join()
        .map_err(|_| anyhow::anyhow!("reading the child's output panicked"))??;
    let (err, _) = err
        .join()
        .map_err(|_| anyhow::anyhow!("reading the child's error output panicked"))??;
    let Some(status) = status else {
        anyhow::bail!(
            "the child process took longer than {}; killed",
            humantime::format_duration(limit)
        );
    };
    if !status.success() {
        let text = String::from_utf8_lossy(&err);
        let first = text.lines().map(str::trim).find(|l| !l.is_empty());
        anyhow::bail!(
            "the child process failed ({status}): {}",
            crate::text::one_line(first.unwrap_or("no message"))
        );
    }
    if printed > max_stdout {
        anyhow::bail!("the child process printed more than {max_stdout} bytes");
    }
    Ok(out)
}

/// Reads `from` to its end, keeping its first `keep` bytes; returns them
/// and how many bytes it read in all.
fn keep_start(mut from: impl Read, keep: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut kept = Vec::new();
    let mut total = 0u64;
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) => return Ok((kept, total)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        let room = usize::try_from(keep.saturating_sub(kept.len() as u64)).unwrap_or(usize::MAX);
        kept.extend_from_slice(&chunk[..n.min(room)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn what_a_child_prints_is_returned_whole() {
        let out = output_within(sh("printf 'compiled'"), Duration::from_secs(30), 8).unwrap();
        assert_eq!(out, b"compiled");
    }

    #[test]
    fn a_child_that_hangs_is_killed_at_the_limit() {
        let started = Instant::now();
        // `sleep` is the shell's child: it goes with it.
        let err = output_within(sh("sleep 30; true"), Duration::from_millis(300), 8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("took longer than 300ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20), "{err}");
    }

    #[test]
    fn output_past_the_bound_is_refused_whole() {
        let err = output_within(
            sh("head -c 300000 /dev/zero"),
            Duration::from_secs(30),
            100_000,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(err, "the child process printed more than 100000 bytes");
    }

    #[test]
    fn a_failing_child_is_an_error_with_its_first_line() {
        let err = output_within(
            sh("printf '\\n  no wasm here\\nmore\\n' >&2; exit 3"),
            Duration::from_secs(30),
            8,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "the child process failed (exit status: 3): no wasm here"
        );
    }
}
