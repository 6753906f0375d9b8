//! `redeploy trigger STACK`: queues a manual deploy through the running
//! server, exactly as `curl -X POST -d "" <hook URL>` would; with
//! `--redeploy ID`, a redeploy of an earlier deploy from `history` (a
//! rollback, [`crate::rollback`]).

use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::config::{self, ManualSetting};
use crate::plugin::{Allocation, PluginRuntime, RuntimeOptions};
use crate::tokens::{hook_url, token_for};

/// How long `trigger` waits for the server's answer. The server answers once
/// the deploy is journaled and queued (it does not wait for the deploy), which
/// takes milliseconds; thirty seconds covers a busy server and a slow disk,
/// and a dead or stuck server is reported instead of hanging the terminal.
pub const TRIGGER_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The header carrying a signed manual trigger's Unix time in seconds.
pub const MANUAL_TIMESTAMP_HEADER: &str = "X-Redeploy-Timestamp";

/// The header carrying a signed manual trigger's HMAC.
pub const MANUAL_SIGNATURE_HEADER: &str = "X-Redeploy-Signature-256";

/// Queues a manual deploy of a stack on the running `redeploy serve`.
#[derive(Debug, clap::Args)]
pub struct Trigger {
    /// The stack.
    pub stack: String,
    /// The configuration file (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// Deploy only these services (comma-separated).
    #[arg(long)]
    pub services: Option<String>,
    /// Use this deploy profile.
    #[arg(long)]
    pub profile: Option<String>,
    /// Redeploy what deploy ID deployed (its commit, ref, services and
    /// profile; IDs from `redeploy history`): a rollback.
    #[arg(long, value_name = "ID", conflicts_with_all = ["services", "profile"])]
    pub redeploy: Option<i64>,
    /// The server's base URL (default: http://<server.listen>).
    #[arg(long)]
    pub server: Option<String>,
    /// How long to wait for the server's answer (default: 30s).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

impl Trigger {
    /// Posts the empty manual delivery and prints the server's answer.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self
            .config
            .load_for(config::SecretScope::Stack(&self.stack))?;
        let stack = super::stack(&config, &self.stack, &self.config.path)?;
        let journal = super::open_state(&config)?;
        let token = token_for(&config, &journal, &self.stack)?;
        let base = self
            .server
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.server.listen));
        let timeout = self.timeout.unwrap_or(TRIGGER_REQUEST_TIMEOUT);
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the http client")?;
        let timestamp = || -> anyhow::Result<String> {
            Ok(std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .context("the system clock is before 1970")?
                .as_secs()
                .to_string())
        };
        let request = if let Some(id) = self.redeploy {
            let mut request = client
                .post(format!("{}/redeploy/{id}", hook_url(&base, &token)))
                .body("");
            // It names a commit: a stack with secrets takes it signed.
            if let Some(secret) = stack.secrets.first() {
                let timestamp = timestamp()?;
                request = request
                    .header(
                        MANUAL_SIGNATURE_HEADER,
                        crate::rollback::sign(secret.expose(), &stack.name, id, &timestamp),
                    )
                    .header(MANUAL_TIMESTAMP_HEADER, timestamp);
            }
            request
        } else {
            let mut query = Vec::new();
            if let Some(s) = &self.services {
                query.push(("services", s.replace(' ', "")));
            }
            if let Some(p) = &self.profile {
                query.push(("deployment_profile", p.clone()));
            }
            let mut request = client.post(hook_url(&base, &token)).body("");
            if !query.is_empty() {
                request = request.query(&query);
            }
            // A stack that requires signed triggers gets one signed with its
            // first secret; any other stack takes the hook URL alone.
            if stack.manual == ManualSetting::Signed {
                let secret = stack.secrets.first().with_context(|| {
                    format!(
                        "stack \"{}\" requires signed manual triggers but has no secret",
                        stack.name
                    )
                })?;
                let timestamp = timestamp()?;
                // The component, which checks the signature, also makes it.
                let runtime = PluginRuntime::cached(
                    &config.server.state_dir.join("cache"),
                    RuntimeOptions {
                        allocation: Allocation::OnDemand,
                        ..RuntimeOptions::default()
                    },
                )?;
                let signature = runtime.sign_manual_trigger(
                    &stack.name,
                    timestamp.parse()?,
                    secret.expose(),
                )?;
                request = request
                    .header(MANUAL_SIGNATURE_HEADER, signature)
                    .header(MANUAL_TIMESTAMP_HEADER, timestamp);
            }
            request
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let answer = rt.block_on(async {
            let resp = request.send().await.map_err(|e| e.without_url())?;
            let status = resp.status();
            Ok::<_, reqwest::Error>((status, resp.text().await.map_err(|e| e.without_url())?))
        });
        let (status, body) = match answer {
            Ok(answer) => answer,
            Err(e) if e.is_timeout() => bail!(
                "no answer within {} from redeploy serve at {base}",
                humantime::format_duration(timeout)
            ),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot reach redeploy serve at {base}; is it running?")
                })
            }
        };
        print!("{body}");
        if !status.is_success() {
            bail!("the server answered {status}");
        }
        Ok(())
    }
}
