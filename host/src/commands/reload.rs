//! `redeploy reload`: asks the `redeploy serve` running on the config's
//! state directory to read its configuration again (it sends `SIGHUP`),
//! then waits for the server's answer in the status file and prints it.
//! Exits non-zero when the server refused the file (it keeps running with
//! the configuration it had) or did not answer.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::config::SecretScope;
use crate::reload::read_status;

/// How long `redeploy reload` waits for the server's answer.
pub const RELOAD_WAIT: Duration = Duration::from_secs(30);

/// How often it looks for the answer.
const RELOAD_POLL: Duration = Duration::from_millis(50);

/// Whether process `pid` here runs `redeploy serve` (its command line's
/// first argument is `serve`, as `main` parses it).
fn is_serve(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).nth(1) == Some(b"serve".as_slice()))
}

/// Asks the running server to reload its configuration.
#[derive(Debug, clap::Args)]
pub struct Reload {
    /// The configuration file (`--config`): the server running on its
    /// state directory is asked.
    #[command(flatten)]
    pub config: super::ConfigFile,
}

impl Reload {
    /// Signals the server and prints what its reload did.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self.config.load_for(SecretScope::NoStack)?;
        let state_dir = &config.server.state_dir;
        let pid = crate::supervise::serving_pid(state_dir)
            .with_context(|| {
                format!(
                    "cannot tell whether a server runs on {}",
                    state_dir.display()
                )
            })?
            .with_context(|| {
                format!(
                    "no `redeploy serve` is running on state directory {} (from {}; a changed \
                     server.state_dir applies only when the server restarts)",
                    state_dir.display(),
                    self.config.path.display()
                )
            })?;
        // The pid is the one the server wrote in its own pid namespace: one
        // that names another program here (a server in a container, and
        // pid 1 here is init) is not signalled.
        if !is_serve(pid) {
            bail!(
                "the server on {} wrote pid {pid}, which here is not a `redeploy serve` \
                 (a server in another pid namespace?); reload it where it runs",
                state_dir.display()
            );
        }
        let before = read_status(state_dir)
            .filter(|s| s.pid == pid)
            .map_or(0, |s| s.generation);
        let pid_t =
            libc::pid_t::try_from(pid).context("the server's process id is out of range")?;
        // SAFETY: kill(2) with a process id and a signal number; no memory
        // is passed.
        if unsafe { libc::kill(pid_t, libc::SIGHUP) } != 0 {
            let err = std::io::Error::last_os_error();
            bail!("cannot signal the server (pid {pid}): {err}; run this as the server's user");
        }
        let started = Instant::now();
        while started.elapsed() < RELOAD_WAIT {
            if let Some(status) =
                read_status(state_dir).filter(|s| s.pid == pid && s.generation > before)
            {
                if status.applied {
                    crate::cli::print_line(format_args!(
                        "reloaded {}: {}",
                        self.config.path.display(),
                        status.message
                    ))?;
                    return Ok(());
                }
                bail!(
                    "the server (pid {pid}) refused {}: {}",
                    self.config.path.display(),
                    status.message
                );
            }
            std::thread::sleep(RELOAD_POLL);
        }
        bail!(
            "the server (pid {pid}) did not answer within {}s; see its log",
            RELOAD_WAIT.as_secs()
        )
    }
}
