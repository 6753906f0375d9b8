//! `redeploy reap`: the deploy commands' reaper ([`crate::runner::reaper`]),
//! started by the process that runs deploys. Not meant to be typed by hand.

/// Sends SIGTERM, when its standard input ends, to the deploy commands it
/// was told of and not told the end of.
#[derive(Debug, clap::Args)]
pub struct Reap {}

impl Reap {
    /// Runs it.
    pub fn execute(self) -> anyhow::Result<()> {
        crate::runner::reaper::run();
        Ok(())
    }
}
