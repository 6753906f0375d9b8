//! Deploy commands die with the process that started them, however it
//! dies (SIGKILL included): the *reaper*, a small process of its own (this
//! binary's hidden `reap` subcommand, `/proc/self/exe reap`, started at the
//! first deploy), is told each command's pid as it starts and as it ends,
//! and sends SIGTERM to every command it was told of and not told the end
//! of when its standard input reaches its end, which is when every process holding the pipe's
//! other end (this one: the descriptor is close-on-exec) has exited.
//!
//! This is what `PR_SET_PDEATHSIG` did, set in the child between `fork`
//! and `exec`. Doing it from outside lets a command start with
//! `posix_spawn`, which shares this process's memory until the `exec`
//! instead of copying its page tables: the `fork` of the server and the
//! copy-on-write faults after it were about a third of the server's CPU
//! on the deploy path (BENCHMARKS.md part 5).
//!
//! As with `PR_SET_PDEATHSIG`, only the command is signalled, not its
//! process group: recovery stops what is left of the group at the next
//! start (`supervise::recover_stack`). A command started in the instant
//! before this process dies, and not yet told to the reaper, is left to
//! that recovery too (it finds the command by its journaled group or by its
//! environment).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write as _};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, MutexGuard};

/// The hidden subcommand that runs the reaper (the CLI's name for it too).
pub const SUBCOMMAND: &str = "reap";

/// The signal the reaper sends: the command may clean up, as on a
/// shutdown; recovery SIGKILLs whatever of its group is left.
const SIGNAL: libc::c_int = libc::SIGTERM;

/// This process's reaper and the commands it watches.
static REAPER: Mutex<Reaper> = Mutex::new(Reaper {
    process: None,
    watched: BTreeMap::new(),
});

struct Reaper {
    /// The running reaper and its standard input; started at the first
    /// [`watch`], and again if it died.
    process: Option<(Child, ChildStdin)>,
    /// The commands told to it and not yet ended, each with how many
    /// [`Watched`] stand for it (a pid ended and reused before its
    /// [`Watched`] was dropped has two): a reaper started again is told all
    /// of them.
    watched: BTreeMap<u32, usize>,
}

/// A command the reaper watches, until this is dropped (when the command
/// was waited for, or its run given up).
#[must_use = "the reaper stops watching the command when this is dropped"]
pub struct Watched(u32);

impl Drop for Watched {
    fn drop(&mut self) {
        let pid = self.0;
        let mut reaper = lock();
        let Some(count) = reaper.watched.get_mut(&pid) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        reaper.watched.remove(&pid);
        // A reaper that cannot be told forgets nothing it must do: the
        // next one started is told only the commands still watched.
        if let Err(e) = reaper.send(&format!("-{pid}\n")) {
            tracing::warn!(error = %e, "cannot tell the deploy commands' reaper of an ended command");
        }
    }
}

/// Tells the reaper of command `pid`, just started: until the returned
/// [`Watched`] is dropped, it is sent SIGTERM if this process dies. An
/// error means no reaper could be started or told, so the command would
/// outlive this process: the caller stops it.
pub fn watch(pid: u32) -> io::Result<Watched> {
    let mut reaper = lock();
    let count = reaper.watched.entry(pid).or_insert(0);
    *count += 1;
    if *count > 1 {
        return Ok(Watched(pid));
    }
    match reaper.send(&format!("+{pid}\n")) {
        Ok(()) => Ok(Watched(pid)),
        Err(e) => {
            reaper.watched.remove(&pid);
            Err(e)
        }
    }
}

fn lock() -> MutexGuard<'static, Reaper> {
    // The state is a map and a handle, consistent at every step.
    REAPER.lock().unwrap_or_else(|e| e.into_inner())
}

impl Reaper {
    /// Sends `line`, starting a reaper (told every watched command) if none
    /// runs, the running one has exited, or it cannot be told.
    fn send(&mut self, line: &str) -> io::Result<()> {
        if let Some((child, stdin)) = &mut self.process {
            let alive = matches!(child.try_wait(), Ok(None));
            if alive && stdin.write_all(line.as_bytes()).is_ok() {
                return Ok(());
            }
            self.stop();
        }
        // The new reaper is told every watched command, `line`'s included
        // (an ended command's is not: it was removed first).
        self.process = Some(self.start()?);
        Ok(())
    }

    fn start(&self) -> io::Result<(Child, ChildStdin)> {
        let mut child = Command::new("/proc/self/exe")
            .arg(SUBCOMMAND)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own group: a terminal's Ctrl-C stops the server (which
            // stops its deploys itself), not the reaper first.
            .process_group(0)
            .spawn()?;
        let Some(mut stdin) = child.stdin.take() else {
            return Err(io::Error::other("the reaper has no standard input"));
        };
        let mut told = String::new();
        for pid in self.watched.keys() {
            told.push_str(&format!("+{pid}\n"));
        }
        if let Err(e) = stdin.write_all(told.as_bytes()) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok((child, stdin))
    }

    /// Stops a reaper that cannot be told any more: killed before its
    /// standard input is closed, which would make it signal every command.
    fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
            drop(stdin);
        }
    }
}

/// The reaper's own work (`redeploy reap`): reads `+PID` and `-PID` lines
/// until its standard input ends, then calls `signal` with every pid added
/// and not removed. Lines it cannot read are ignored, and so are pids that
/// kill(2) would take for a process group (0, and any over `i32::MAX`).
pub fn serve(input: impl io::BufRead, mut signal: impl FnMut(u32)) {
    let mut watched = BTreeSet::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let (add, pid) = match line.split_at_checked(1) {
            Some(("+", pid)) => (true, pid),
            Some(("-", pid)) => (false, pid),
            _ => continue,
        };
        let Some(pid) = pid
            .parse::<u32>()
            .ok()
            .filter(|p| *p > 0 && i32::try_from(*p).is_ok())
        else {
            continue;
        };
        if add {
            watched.insert(pid);
        } else {
            watched.remove(&pid);
        }
    }
    for pid in watched {
        signal(pid);
    }
}

/// Runs [`serve`] on this process's standard input, sending SIGTERM.
pub fn run() {
    serve(io::stdin().lock(), |pid| {
        // SAFETY: kill(2) on a positive pid (serve passes no other)
        // signals that one process; no memory is shared.
        unsafe {
            libc::kill(pid as libc::pid_t, SIGNAL);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reaper_signals_what_was_added_and_not_removed_and_ignores_the_rest() {
        let input = "+12\n+13\n-12\n+0\n+-5\n+4294967295\n+2147483648\nnoise\n+\n-99\n+14\n+13\n";
        let mut signalled = Vec::new();
        serve(io::Cursor::new(input), |pid| signalled.push(pid));
        // 12 ended; 0, -5 and pids over i32::MAX are refused; 99 was
        // never added; 13, added twice, is signalled once.
        assert_eq!(signalled, vec![13, 14]);
    }

    #[test]
    fn the_reaper_signals_nothing_when_every_command_ended() {
        let mut signalled = Vec::new();
        serve(io::Cursor::new("+7\n-7\n"), |pid| signalled.push(pid));
        assert!(signalled.is_empty());
    }
}
