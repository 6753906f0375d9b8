//! Running a child process for what it prints, within a time limit and a
//! bound on its output: the compile of the embedded component in a
//! process of its own ([`super::COMPILE_SUBCOMMAND`]). The child leads a
//! process group of its own, and that group is killed once the child has
//! ended or at the limit, so nothing it started is left holding its output
//! open; its output past the bound is refused whole and stops being read,
//! so a child that prints without end fails on its next write.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

/// The most of a child's error output kept for the message.
const MAX_CHILD_STDERR_BYTES: u64 = 16 * 1024;

/// How often the wait for the child looks whether it has ended.
const CHILD_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long the child's output may stay open after its whole group is
/// killed (only a process that left the group can hold it).
const CHILD_OUTPUT_GRACE: Duration = Duration::from_secs(5);

/// Runs `command` with no input and returns all it printed on its
/// standard output, if it ends successfully within `limit` having printed
/// at most `max_stdout` bytes. Otherwise the error says why: the bound,
/// the limit, or its exit status and its error output on one line.
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
    let (sent, read) = mpsc::channel();
    let out = sent.clone();
    // The output is read up to one byte past its bound, then dropped: the
    // child's next write fails. The error output is read to its end (the
    // child must never block writing it), its start kept.
    thread::spawn(move || {
        let _ = out.send((true, read_start(stdout, max_stdout.saturating_add(1), true)));
    });
    thread::spawn(move || {
        let _ = sent.send((false, read_start(stderr, MAX_CHILD_STDERR_BYTES, false)));
    });
    let ended = end_group(&mut child, Instant::now() + limit);
    let mut printed = None;
    let mut errors = Vec::new();
    let grace = Instant::now() + CHILD_OUTPUT_GRACE;
    for _ in 0..2 {
        let left = grace.saturating_duration_since(Instant::now());
        match read.recv_timeout(left) {
            Ok((true, result)) => printed = Some(result.context("reading the child's output")?),
            Ok((false, result)) => errors = result.context("reading the child's error output")?,
            Err(mpsc::RecvTimeoutError::Timeout) => anyhow::bail!(
                "the child process's output stayed open after it ended: a process it started left its process group"
            ),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("reading the child process's output failed unexpectedly")
            }
        }
    }
    let printed = printed.context("the child's output was not read")?;
    if printed.len() as u64 > max_stdout {
        anyhow::bail!("the child process printed more than {max_stdout} bytes");
    }
    let Some(status) = ended? else {
        anyhow::bail!(
            "the child process took longer than {}; killed",
            humantime::format_duration(limit)
        );
    };
    if !status.success() {
        let text = String::from_utf8_lossy(&errors);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let message = if lines.is_empty() {
            "no message".to_owned()
        } else {
            lines.join(" / ")
        };
        anyhow::bail!(
            "the child process failed ({status}): {}",
            crate::text::one_line(&message)
        );
    }
    Ok(printed)
}

/// Waits until `child` ends or `deadline` passes, then kills its process
/// group (whatever the child left running in it, or, at the deadline, the
/// child too) and reaps it: its exit status, or `None` past the deadline.
///
/// The group is killed while the child is a zombie, not yet reaped
/// (`waitid` with `WNOWAIT`), so the group's id, the child's pid, cannot
/// have been given to another process in between.
fn end_group(child: &mut Child, deadline: Instant) -> anyhow::Result<Option<ExitStatus>> {
    let pid = Pid::from_child(child);
    let ended = loop {
        match rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT | WaitIdOptions::NOHANG,
        ) {
            Ok(Some(_)) => break Ok(true),
            Ok(None) if Instant::now() >= deadline => break Ok(false),
            Ok(None) => thread::sleep(CHILD_POLL_INTERVAL),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => break Err(e),
        }
    };
    match ended {
        // The group may already be empty (ESRCH): nothing to kill. At the
        // deadline the child itself too, should it have left its group.
        Ok(true) => {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
        Ok(false) => {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
        // Without `waitid`'s word the child may have been reaped elsewhere,
        // its pid reused: nothing is killed by it.
        Err(_) => {}
    }
    let status = child.wait().context("waiting for the child")?;
    match ended {
        Ok(true) => Ok(Some(status)),
        Ok(false) => Ok(None),
        Err(e) => Err(anyhow::Error::from(e).context("waiting for the child")),
    }
}

/// Reads `from` and keeps its first `keep` bytes: to its end if `stop` is
/// false, else only until it has read that many.
fn read_start(mut from: impl Read, keep: u64, stop: bool) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    (&mut from).take(keep).read_to_end(&mut kept)?;
    if !stop {
        std::io::copy(&mut from, &mut std::io::sink())?;
    }
    Ok(kept)
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
    fn a_child_that_hangs_is_killed_at_the_limit_with_what_it_started() {
        let started = Instant::now();
        // `sleep` is the shell's child (`; true` keeps the shell from
        // becoming it): it goes with the shell's group.
        let err = output_within(sh("sleep 30; true"), Duration::from_millis(300), 8)
            .unwrap_err()
            .to_string();
        assert!(err.contains("took longer than 300ms"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(20), "{err}");
    }

    #[test]
    fn what_a_child_leaves_running_is_killed_when_it_ends() {
        let started = Instant::now();
        // The shell ends at once; the `sleep` it started holds its output.
        let out = output_within(
            sh("sleep 30 & printf 'compiled'"),
            Duration::from_secs(60),
            8,
        )
        .unwrap();
        assert_eq!(out, b"compiled");
        assert!(started.elapsed() < Duration::from_secs(20));
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
    fn a_child_that_prints_without_end_is_stopped_at_the_bound() {
        let started = Instant::now();
        let err = output_within(sh("cat /dev/zero"), Duration::from_secs(60), 100_000)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "the child process printed more than 100000 bytes");
        assert!(started.elapsed() < Duration::from_secs(20), "{err}");
    }

    #[test]
    fn a_failing_child_is_an_error_with_its_error_output_on_one_line() {
        let err = output_within(
            sh("printf '\\n  no wasm here\\nat line 2\\n' >&2; exit 3"),
            Duration::from_secs(30),
            8,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "the child process failed (exit status: 3): no wasm here / at line 2"
        );
    }
}
