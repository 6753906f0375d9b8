//! `redeploy trigger STACK`: queues a manual deploy through the running
//! server, exactly as `curl -X POST -d "" <hook URL>` would.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

use crate::config;
use crate::journal::Journal;
use crate::tokens::{hook_url, token_for};

/// Queues a manual deploy of a stack on the running `redeploy serve`.
#[derive(Debug, clap::Args)]
pub struct Trigger {
    /// The stack.
    pub stack: String,
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Deploy only these services (comma-separated).
    #[arg(long)]
    pub services: Option<String>,
    /// Use this deploy profile.
    #[arg(long)]
    pub profile: Option<String>,
    /// The server's base URL (default: http://<server.listen>).
    #[arg(long)]
    pub server: Option<String>,
}

impl Trigger {
    /// Posts the empty manual delivery and prints the server's answer.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = config::load(&self.config)?;
        config.stack(&self.stack).with_context(|| {
            format!(
                "no stack named \"{}\" in {}",
                self.stack,
                self.config.display()
            )
        })?;
        let journal = Journal::open(&Journal::path_in(&config.server.state_dir))?;
        let token = token_for(&config, &journal, &self.stack)?;
        let base = self
            .server
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.server.listen));
        let mut url = hook_url(&base, &token);
        let mut query = form_urlencoded_pairs(&self.services, &self.profile);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&std::mem::take(&mut query));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (status, body) = rt
            .block_on(async {
                let resp = reqwest::Client::new()
                    .post(&url)
                    .body("")
                    .send()
                    .await
                    .map_err(|e| e.without_url())?;
                let status = resp.status();
                Ok::<_, reqwest::Error>((status, resp.text().await.unwrap_or_default()))
            })
            .with_context(|| format!("cannot reach redeploy serve at {base}; is it running?"))?;
        print!("{body}");
        if !status.is_success() {
            bail!("the server answered {status}");
        }
        Ok(())
    }
}

fn form_urlencoded_pairs(services: &Option<String>, profile: &Option<String>) -> String {
    let mut parts = Vec::new();
    if let Some(s) = services {
        parts.push(format!("services={}", s.replace(' ', "")));
    }
    if let Some(p) = profile {
        parts.push(format!("deployment_profile={p}"));
    }
    parts.join("&")
}
