//! `redeploy trigger STACK`: queues a manual deploy through the running
//! server, exactly as `curl -X POST -d "" <hook URL>` would; with
//! `--redeploy ID`, a redeploy of an earlier deploy from `history` (a
//! rollback, [`crate::rollback`]); with `--local`, without a server: the
//! same manual delivery goes through the component, the journal and the
//! stack's lock on this host, and the deploy runs in the foreground.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::config::{self, ManualSetting};
use crate::dispatch::{DeploySink, Dispatcher};
use crate::journal::{DeployRecord, DeployState, Journal};
use crate::metrics::Metrics;
use crate::runner::Enqueued;
use crate::tokens::{hook_url, token_for};

/// How long `trigger` waits for the server's answer. The server answers once
/// the deploy is journaled and queued (it does not wait for the deploy), which
/// takes milliseconds; thirty seconds covers a busy server and a slow disk,
/// and a dead or stuck server is reported instead of hanging the terminal.
pub const TRIGGER_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub use crate::manual::{MANUAL_SIGNATURE_HEADER, MANUAL_TIMESTAMP_HEADER};

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
    #[arg(long, value_parser = crate::config::parse_duration)]
    pub timeout: Option<Duration>,
    /// Deploy on this host, without a server (a hook-only installation):
    /// the trigger is decided by the component and journaled as the
    /// server would, then run now, under the stack's lock, waiting for a
    /// deploy the hook is running; prints its log. Exits non-zero if the
    /// deploy fails.
    #[arg(long, conflicts_with_all = ["redeploy", "server", "timeout"])]
    pub local: bool,
}

impl Trigger {
    /// Sends the manual delivery to the server (or, with `--local`, runs
    /// it here) and prints the answer.
    pub fn execute(self) -> anyhow::Result<()> {
        let config = self
            .config
            .load_for(config::SecretScope::Stack(&self.stack))?;
        let stack = super::stack(&config, &self.stack, &self.config.path)?;
        let journal = super::open_state(&config)?;
        if self.local {
            let (query, headers) = self.manual_delivery(&config, stack)?;
            return run_local(
                Arc::new(config.clone()),
                Arc::new(journal),
                &self.stack,
                query,
                headers,
            );
        }
        let token = token_for(&config, &journal, &self.stack)?;
        let base = match &self.server {
            Some(url) => {
                crate::config::server_url(url).map_err(|why| anyhow::anyhow!("--server {why}"))?
            }
            None => format!("http://{}", config.server.listen),
        };
        let timeout = self.timeout.unwrap_or(TRIGGER_REQUEST_TIMEOUT);
        if timeout.is_zero() {
            bail!("--timeout 0s would never wait for the answer; give a wait, or leave the default ({})",
                humantime::format_duration(TRIGGER_REQUEST_TIMEOUT));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the http client")?;
        let request = if let Some(id) = self.redeploy {
            let mut request = client
                .post(format!("{}/redeploy/{id}", hook_url(&base, &token)))
                .body("");
            // It names a commit: a stack with secrets takes it signed.
            if let Some(secret) = stack.secrets.first() {
                let timestamp = unix_time()?;
                request = request
                    .header(
                        MANUAL_SIGNATURE_HEADER,
                        crate::rollback::sign(secret.expose(), &stack.name, id, &timestamp),
                    )
                    .header(MANUAL_TIMESTAMP_HEADER, timestamp);
            }
            request
        } else {
            let (query, headers) = self.manual_delivery(&config, stack)?;
            let mut url = hook_url(&base, &token);
            if !query.is_empty() {
                url = format!("{url}?{query}");
            }
            let mut request = client.post(url).body("");
            for (name, value) in headers {
                request = request.header(name, value);
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
                "no answer within {} from redeploy serve at {base}: the deploy may have been queued all the same; see `redeploy history {}` before triggering again",
                humantime::format_duration(timeout),
                self.stack
            ),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot reach redeploy serve at {base}; is it running?")
                })
            }
        };
        crate::cli::print_out(&body)?;
        if !status.is_success() {
            bail!("the server answered {status}");
        }
        Ok(())
    }

    /// The manual trigger's query string (`services=`,
    /// `deployment_profile=`) and headers: signed with the stack's first
    /// secret when it requires signed triggers (the component, which
    /// checks the signature, also makes it); none otherwise.
    fn manual_delivery(
        &self,
        config: &config::Config,
        stack: &config::StackConfig,
    ) -> anyhow::Result<(String, Vec<(String, String)>)> {
        // The component (which checks a signature) makes it: loaded only
        // for a stack that requires one.
        let runtime = if stack.manual == ManualSetting::Signed {
            Some(super::one_shot_component(config)?)
        } else {
            None
        };
        crate::manual::manual_request(
            runtime.as_ref(),
            stack,
            self.services.as_deref(),
            self.profile.as_deref(),
            unix_time()?.parse()?,
        )
    }
}

/// Now, in Unix seconds, as a signed trigger's timestamp header says it.
fn unix_time() -> anyhow::Result<String> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs()
        .to_string())
}

/// Keeps what the dispatcher queues in the journal, for [`run_local`] to
/// run under the stack's lock.
struct Journaled;

impl DeploySink for Journaled {
    fn accept(&self, _: &DeployRecord) -> Enqueued {
        Enqueued::Queued
    }
}

/// `trigger --local`: the manual delivery (`query`, `headers`, no body)
/// decided by the component and journaled, as a server would; then the
/// stack's queued deploys run here, under its lock (waiting while the
/// post-receive hook's runner holds it), with the deploy's log printed.
fn run_local(
    config: Arc<config::Config>,
    journal: Arc<Journal>,
    stack: &str,
    query: String,
    headers: Vec<(String, String)>,
) -> anyhow::Result<()> {
    let runtime = Arc::new(super::one_shot_component(&config)?);
    let dispatcher = Dispatcher::new(
        runtime,
        journal.clone(),
        Arc::new(Journaled),
        config.clone(),
        Arc::new(Metrics::new()),
    );
    let delivery = crate::manual::manual_delivery(query, headers);
    let stack_config = config
        .stack(stack)
        .context("the stack went from the config")?;
    let answer = dispatcher.dispatch(&[stack_config], &delivery);
    let decision = &answer.body["decisions"][0];
    if answer.status >= 300 {
        bail!(
            "{stack}: NOT deployed ({} {}): {}",
            answer.status,
            answer.body["error"].as_str().unwrap_or("refused"),
            answer.body["message"].as_str().unwrap_or("")
        );
    }
    let Some(id) = decision["deploy_id"].as_i64() else {
        bail!(
            "{stack}: nothing deployed: {}",
            decision["reason"]
                .as_str()
                .unwrap_or("no deploy was queued")
        );
    };
    // A reader that stopped early does not stop the deploy.
    let _ = crate::cli::print_line(format_args!(
        "{stack}: deploy #{id} queued ({})",
        decision["reason"].as_str().unwrap_or("")
    ));
    // Two threads, as `run-queued`'s: a blocked journal call never stalls
    // the lease's keeper.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(super::run_queued::run_queued_in_foreground(
        config,
        journal.clone(),
        stack,
    ))?;
    let deploy = journal
        .deploy(id)?
        .with_context(|| format!("deploy #{id} is no longer in the journal"))?;
    if let Some(log) = deploy.log_path.as_deref() {
        let mut file = std::fs::File::open(log)
            .with_context(|| format!("opening the log of deploy #{id}, {log}"))?;
        match std::io::copy(&mut file, &mut std::io::stdout().lock()) {
            // A reader that stopped early: the deploy's outcome still
            // decides the exit status.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            copied => {
                copied.with_context(|| format!("printing the log of deploy #{id}"))?;
            }
        }
    }
    match deploy.state {
        DeployState::Succeeded => Ok(()),
        state => bail!(
            "{stack}: deploy #{id} {}{}",
            state.as_str(),
            deploy.detail.map(|d| format!(": {d}")).unwrap_or_default()
        ),
    }
}
