//! `redeploy hook-url STACK`: prints a stack's secret hook URL.

use crate::config;
use crate::tokens::{hook_base, hook_url, token_for};

/// Prints the hook URL to paste into GitHub, Bitbucket, Docker Hub or curl.
#[derive(Debug, clap::Args)]
pub struct HookUrl {
    /// The stack.
    pub stack: String,
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
}

impl HookUrl {
    /// Prints the URL (generating and storing the token on first use).
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self
            .config
            .load_for(config::SecretScope::TokenOf(&self.stack))?;
        super::stack(&config, &self.stack, &self.config.path)?;
        let journal = super::open_state(&config)?;
        let token = token_for(&config, &journal, &self.stack)?;
        crate::cli::print_out(hook_url(&hook_base(&config), &token) + "\n")?;
        if config.server.public_url.is_none() && config.server.listen.ip().is_unspecified() {
            crate::cli::say(format_args!(
                "redeploy: warning: this URL names {}, where the server listens on every address; no sender can reach that: set server.public_url to the address senders use",
                config.server.listen.ip()
            ));
        }
        Ok(())
    }
}
