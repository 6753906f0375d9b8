//! `redeploy hook-url STACK`: prints a stack's secret hook URL.

use std::path::PathBuf;

use anyhow::Context as _;

use crate::config;
use crate::journal::Journal;
use crate::tokens::{hook_url, token_for};

/// Prints the hook URL to paste into GitHub, Bitbucket, Docker Hub or curl.
#[derive(Debug, clap::Args)]
pub struct HookUrl {
    /// The stack.
    pub stack: String,
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

impl HookUrl {
    /// Prints the URL (generating and storing the token on first use).
    pub fn execute(self) -> anyhow::Result<()> {
        let config = config::load(&self.config)?;
        config.stack(&self.stack).with_context(|| {
            format!(
                "no stack named \"{}\" in {}",
                self.stack,
                self.config.display()
            )
        })?;
        std::fs::create_dir_all(&config.server.state_dir).with_context(|| {
            format!(
                "state directory {} cannot be created",
                config.server.state_dir.display()
            )
        })?;
        let journal = Journal::open(&Journal::path_in(&config.server.state_dir))?;
        let token = token_for(&config, &journal, &self.stack)?;
        let base = config
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.server.listen));
        println!("{}", hook_url(&base, &token));
        Ok(())
    }
}
