//! `redeploy run-queued`: runs a stack's queued deploys (started detached by
//! the post-receive hook when no server runs). Not meant to be typed by hand.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config;
use crate::journal::Journal;

/// Runs the queued deploys of one stack, then exits.
#[derive(Debug, clap::Args)]
pub struct RunQueued {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The stack.
    #[arg(long)]
    pub stack: String,
}

impl RunQueued {
    /// Runs them.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = Arc::new(config::load(&self.config)?);
        let journal = Arc::new(Journal::open(&Journal::path_in(&config.server.state_dir))?);
        crate::retention::prune_logged(&config, &journal, crate::runner::now_ms());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(crate::runner::run_queued(config, journal, &self.stack))
    }
}
