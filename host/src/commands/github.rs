//! `redeploy github connect STACK`: points the stack's GitHub repository's
//! webhook at the stack's hook URL, for `push` and `deployment` events.
//!
//! It finds the repository webhook whose URL is the stack's hook URL and adds
//! the missing events to it (keeping the others), or creates the webhook
//! (JSON content, the stack's first secret, active). When nothing is
//! missing it changes nothing, so running it twice is harmless.

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::config::{self, StackConfig};
use crate::github::GithubClient;
use crate::tokens::{hook_url, token_for};

/// The events a continuous-deployment stack's webhook must send.
pub const REQUIRED_EVENTS: [&str; 2] = ["push", "deployment"];

/// GitHub integration commands.
#[derive(Debug, clap::Args)]
pub struct Github {
    /// What to do.
    #[command(subcommand)]
    pub command: GithubCommand,
}

/// `redeploy github` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum GithubCommand {
    /// Create or update the repository webhook for a stack's hook URL.
    Connect(Connect),
}

/// `redeploy github connect`.
#[derive(Debug, clap::Args)]
pub struct Connect {
    /// The stack (it needs `[stacks.github]` and `server.public_url`).
    pub stack: String,
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
}

impl Github {
    /// Runs the subcommand.
    pub fn execute(self) -> anyhow::Result<()> {
        match self.command {
            GithubCommand::Connect(c) => c.execute(),
        }
    }
}

/// What `connect` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Connected {
    /// A webhook was created, with this id.
    Created(u64),
    /// The webhook with this id got these events added (and was activated).
    Updated(u64, Vec<String>),
    /// The webhook with this id already sends every required event.
    Unchanged(u64),
}

impl Connect {
    /// Connects and prints what it did.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self
            .config
            .load_for(config::SecretScope::Stack(&self.stack))?;
        let stack = super::stack(&config, &self.stack, &self.config.path)?;
        let Some(gh) = &stack.github else {
            bail!("stack \"{}\" has no [stacks.github] table", stack.name);
        };
        let Some(base) = &config.server.public_url else {
            bail!("server.public_url is not set: GitHub needs the public address of this server to send webhooks to");
        };
        let journal = super::open_state(&config)?;
        let url = hook_url(base, &token_for(&config, &journal, &stack.name)?);
        let client = GithubClient::new(gh)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let done = rt.block_on(connect(&client, stack, &url))?;
        let repo = client.repository();
        let (Connected::Created(id) | Connected::Updated(id, _) | Connected::Unchanged(id)) = done;
        // Catch-up lists this webhook's deliveries from now on.
        journal
            .record_github_hook(&stack.name, &gh.api_url, repo, id, crate::journal::now_ms())
            .context("recording the webhook in the journal")?;
        match done {
            Connected::Created(id) => crate::cli::print_line(format_args!(
                "created webhook {id} on {repo}: events push, deployment; content type json{}",
                if stack.secrets.is_empty() {
                    "; no secret (the stack has none)"
                } else {
                    "; signed with the stack's secret"
                }
            ))?,
            Connected::Updated(id, added) => crate::cli::print_line(format_args!(
                "updated webhook {id} on {repo}: added events {}",
                added.join(", ")
            ))?,
            Connected::Unchanged(id) => crate::cli::print_line(format_args!(
                "webhook {id} on {repo} already sends push and deployment events; nothing changed"
            ))?,
        }
        Ok(())
    }
}

/// Finds or creates the webhook for `url` on the client's repository.
pub async fn connect(
    client: &GithubClient,
    stack: &StackConfig,
    url: &str,
) -> anyhow::Result<Connected> {
    let hooks = client
        .list_hooks()
        .await
        .context("listing the repository's webhooks")?;
    let existing = hooks
        .iter()
        .find(|h| h["config"]["url"].as_str() == Some(url));
    match existing {
        Some(hook) => {
            let id = hook["id"]
                .as_u64()
                .context("GitHub listed a webhook without an id")?;
            let events: Vec<&str> = hook["events"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            // `*` already sends every event.
            let missing: Vec<String> = REQUIRED_EVENTS
                .iter()
                .filter(|e| !events.contains(e) && !events.contains(&"*"))
                .map(|e| e.to_string())
                .collect();
            let inactive = hook["active"].as_bool() == Some(false);
            if missing.is_empty() && !inactive {
                return Ok(Connected::Unchanged(id));
            }
            let mut body = json!({ "active": true });
            if !missing.is_empty() {
                body["add_events"] = json!(missing);
            }
            client
                .update_hook(id, &body)
                .await
                .with_context(|| format!("updating webhook {id}"))?;
            Ok(Connected::Updated(id, missing))
        }
        None => {
            let mut config = json!({
                "url": url,
                "content_type": "json",
                "insecure_ssl": "0",
            });
            if let Some(secret) = stack.secrets.first() {
                config["secret"] = json!(secret.expose());
            }
            let body = json!({
                "name": "web",
                "active": true,
                "events": REQUIRED_EVENTS,
                "config": config,
            });
            let hook = client
                .create_hook(&body)
                .await
                .context("creating the webhook")?;
            let id = hook["id"]
                .as_u64()
                .context("GitHub created a webhook but gave no id")?;
            Ok(Connected::Created(id))
        }
    }
}
