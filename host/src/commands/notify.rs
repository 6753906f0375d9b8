//! `redeploy notify test CHANNEL`: sends a test message to one
//! `[[notifications]]` channel now and prints what it answered, for setting
//! a channel up and finding out why it stays silent. It records nothing.

use anyhow::bail;

use crate::config;

/// Notification commands.
#[derive(Debug, clap::Args)]
pub struct Notify {
    /// What to do.
    #[command(subcommand)]
    pub command: NotifyCommand,
}

/// `redeploy notify` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum NotifyCommand {
    /// Send a test message to a channel and print what it answered.
    Test(Test),
}

/// `redeploy notify test`.
#[derive(Debug, clap::Args)]
pub struct Test {
    /// The channel's `name` in `[[notifications]]`.
    pub channel: String,
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
}

/// The channel did not take the test message (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{channel}: not sent: {detail}")]
pub struct NotTaken {
    /// The channel's name.
    pub channel: String,
    /// Why, as the channel answered or the connection failed.
    pub detail: String,
}

impl Notify {
    /// Runs the subcommand.
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            NotifyCommand::Test(t) => t.execute(),
        }
    }
}

impl Test {
    /// Sends the test message; prints `CHANNEL: ANSWER`, or fails with
    /// [`NotTaken`] (exit 1). An unknown channel is a usage error (exit 2).
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self.config.load_for(config::SecretScope::Server)?;
        let Some(channel) = config.notifications.iter().find(|c| c.name == self.channel) else {
            let names: Vec<&str> = config
                .notifications
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            bail!(
                "no notification channel named {:?} in {} (its channels: {})",
                self.channel,
                self.config.path.display(),
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            );
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let at_ms = crate::journal::now_ms();
        match rt.block_on(crate::notifications::send_test(channel, at_ms))? {
            Ok(answer) => {
                crate::cli::print_line(format_args!("{}: {}", channel.name, answer.detail))?;
                Ok(())
            }
            Err(failure) => Err(NotTaken {
                channel: channel.name.clone(),
                detail: failure.detail,
            }
            .into()),
        }
    }
}
