//! `redeploy hook-url STACK`: prints a stack's secret hook URL.

use std::path::PathBuf;

use crate::config;
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
        super::stack(&config, &self.stack, &self.config)?;
        let journal = super::open_state(&config)?;
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
