//! Telling the outside world about deploys: GitHub deployments and
//! deployment statuses for stacks with `[stacks.github]`, and Docker Hub's
//! `callback_url` for registry pushes.
//!
//! One background task works through the jobs in the order they were given,
//! so a deployment is created before the statuses of the deploy that reports
//! to it, and one deployment's statuses arrive in order (`queued`,
//! `in_progress`, then the final one). Every job's result goes to the
//! journal: what GitHub answered to each deployment request
//! (`github_deployment_requests`) and how each report went (`reports`).
//! A request still `pending` when the process stops is sent at next start.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use tokio::sync::mpsc;

use crate::config::{Config, StackConfig};
use crate::github::{ApiError, Created, GithubClient};
use crate::journal::{now_ms, DeployObserver};
use crate::journal::{DeployState, Journal, RequestState};
use crate::metrics::process::CallbackFailure;
use crate::plugin::{wit, PluginRuntime};

/// How long a Docker Hub callback may take.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the journal's key that signs log links.
pub const LOG_KEY_NAME: &str = "log-links";

/// Hex characters of a log link's key (128 bits).
pub const LOG_LINK_KEY_CHARS: usize = 32;

/// The `context` Docker Hub shows for redeploy's callbacks.
pub const CALLBACK_CONTEXT: &str = "redeploy";

enum Job {
    Create(i64),
    Report {
        deploy_id: i64,
        state: DeployState,
        detail: Option<String>,
    },
    /// Reports with this configuration and these GitHub clients from now
    /// on: sent by [`Notifier::reconfigure`].
    Reconfigure {
        config: Arc<Config>,
        clients: HashMap<String, GithubClient>,
    },
    /// Ends the worker: sent by [`Notifier::finish`].
    Stop,
}

/// A GitHub client for each stack of `config` with GitHub deployments.
fn github_clients(config: &Config) -> anyhow::Result<HashMap<String, GithubClient>> {
    let mut clients = HashMap::new();
    for s in &config.stacks {
        if let Some(gh) = &s.github {
            clients.insert(s.name.clone(), GithubClient::new(gh)?);
        }
    }
    Ok(clients)
}

/// Signs and checks the unguessable links to deploy logs that deployment
/// statuses carry as `log_url`:
/// `{public_url}/logs/{deploy_id}/{expires}-{mac}`, where `expires` is the
/// Unix time (seconds) the link stops working and `mac` an HMAC-SHA256 of
/// the deploy id and that time with the server's log key, so neither can be
/// changed. Links live `server.log_links` (default
/// [`crate::config::DEFAULT_LOG_LINKS`]); with `log_links = "off"` there
/// are none and every `/logs/` request is 404.
#[derive(Clone)]
pub struct LogLinks {
    base: Option<String>,
    key: Vec<u8>,
    lifetime: Option<Duration>,
}

/// Seconds since the Unix epoch, now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl LogLinks {
    /// Log links under `public_url`, keyed by the journal's log key
    /// (created on first use), valid for `server.log_links`.
    pub fn new(config: &Config, journal: &Journal) -> anyhow::Result<LogLinks> {
        let candidate = crate::tokens::generate_token()?;
        let key = journal.ensure_server_key(LOG_KEY_NAME, &candidate)?;
        Ok(LogLinks {
            base: config.server.public_url.clone(),
            key: key.into_bytes(),
            lifetime: config.server.log_links,
        })
    }

    /// The key in the link of deploy `id` that stops working at `expires`
    /// (Unix seconds): `{expires}-{mac}`.
    pub fn key_for(&self, id: i64, expires: u64) -> String {
        format!("{expires}-{}", self.mac(id, expires))
    }

    fn mac(&self, id: i64, expires: u64) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(format!("deploy-log:{id}:{expires}").as_bytes());
        let mut hex = hex::encode(mac.finalize().into_bytes());
        hex.truncate(LOG_LINK_KEY_CHARS);
        hex
    }

    /// Whether `presented` is a key of deploy `id` that has not expired
    /// at `now` (Unix seconds); the MAC is compared in constant time. Always
    /// false when links are off.
    pub fn verify_at(&self, id: i64, presented: &str, now: u64) -> bool {
        use subtle::ConstantTimeEq as _;
        if self.lifetime.is_none() {
            return false;
        }
        let Some((expires_text, mac)) = presented.split_once('-') else {
            return false;
        };
        // Only the canonical spelling (no sign, no leading zero): another
        // spelling of the same time is another link.
        let Some(expires) = expires_text
            .parse::<u64>()
            .ok()
            .filter(|e| e.to_string() == expires_text)
        else {
            return false;
        };
        let expected = self.mac(id, expires);
        let authentic =
            mac.len() == expected.len() && bool::from(expected.as_bytes().ct_eq(mac.as_bytes()));
        authentic && now < expires
    }

    /// [`LogLinks::verify_at`] now.
    pub fn verify(&self, id: i64, presented: &str) -> bool {
        self.verify_at(id, presented, unix_now())
    }

    /// The public link to deploy `id`'s log, valid from now for the
    /// configured lifetime; `None` without a public URL or with links off.
    pub fn url(&self, id: i64) -> Option<String> {
        let lifetime = self.lifetime?;
        let base = self.base.as_ref()?;
        let expires = unix_now().saturating_add(lifetime.as_secs().max(1));
        Some(format!("{base}/logs/{id}/{}", self.key_for(id, expires)))
    }
}

/// The parts of a journaled deploy event reports need.
#[derive(Deserialize, Default)]
struct EventRefs {
    github_deployment_id: Option<u64>,
    callback_url: Option<String>,
}

/// The reporter: a queue of jobs and the task that works through it.
pub struct Notifier {
    tx: mpsc::UnboundedSender<Job>,
    links: LogLinks,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Notifier {
    /// Starts the reporter task on the current tokio runtime and queues the
    /// requests the journal still holds as pending (for `stack`, or all).
    pub fn start(
        config: Arc<Config>,
        journal: Arc<Journal>,
        runtime: Arc<PluginRuntime>,
        stack: Option<&str>,
    ) -> anyhow::Result<Arc<Notifier>> {
        let clients = github_clients(&config)?;
        let links = LogLinks::new(&config, &journal)?;
        let http = reqwest::Client::builder()
            .timeout(CALLBACK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let pending = journal.pending_deployment_requests(stack)?;
        let (tx, rx) = mpsc::unbounded_channel();
        for r in &pending {
            let _ = tx.send(Job::Create(r.id));
        }
        if !pending.is_empty() {
            tracing::info!(
                count = pending.len(),
                "sending GitHub deployment requests left pending"
            );
        }
        let worker = Worker {
            config,
            journal,
            runtime,
            clients,
            links: links.clone(),
            http,
        };
        let handle = tokio::spawn(worker.run(rx));
        Ok(Arc::new(Notifier {
            tx,
            links,
            worker: Mutex::new(Some(handle)),
        }))
    }

    /// The log links this notifier puts in statuses (the server checks them).
    pub fn log_links(&self) -> &LogLinks {
        &self.links
    }

    /// Queues sending deployment request `id` (already journaled as pending).
    pub fn create_deployment(&self, id: i64) {
        let _ = self.tx.send(Job::Create(id));
    }

    /// Reports deploys the journal recovered as interrupted.
    pub fn interrupted(&self, ids: &[i64]) {
        for &deploy_id in ids {
            let _ = self.tx.send(Job::Report {
                deploy_id,
                state: DeployState::Interrupted,
                detail: None,
            });
        }
    }

    /// Reports with `config` (its stacks' GitHub settings and callback
    /// hosts) for the jobs queued after this call. An error (a GitHub
    /// client that cannot be built) changes nothing.
    pub fn reconfigure(&self, config: Arc<Config>) -> anyhow::Result<()> {
        let clients = github_clients(&config)?;
        let _ = self.tx.send(Job::Reconfigure { config, clients });
        Ok(())
    }

    /// Waits, at most `limit`, for the jobs queued so far to be done; later
    /// jobs are refused. Pending deployment requests left undone stay in the
    /// journal for the next start.
    pub async fn finish(&self, limit: Duration) {
        let handle = self.worker.lock().unwrap().take();
        let _ = self.tx.send(Job::Stop);
        if let Some(handle) = handle {
            if tokio::time::timeout(limit, handle).await.is_err() {
                tracing::warn!("stopped before every deployment status was sent");
            }
        }
    }
}

impl DeployObserver for Notifier {
    fn changed(&self, deploy_id: i64, state: DeployState, detail: Option<&str>) {
        let _ = self.tx.send(Job::Report {
            deploy_id,
            state,
            detail: detail.map(str::to_string),
        });
    }
}

struct Worker {
    config: Arc<Config>,
    journal: Arc<Journal>,
    runtime: Arc<PluginRuntime>,
    clients: HashMap<String, GithubClient>,
    links: LogLinks,
    http: reqwest::Client,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = rx.recv().await {
            match job {
                Job::Create(id) => self.create(id).await,
                Job::Stop => return,
                Job::Reconfigure { config, clients } => {
                    self.config = config;
                    self.clients = clients;
                }
                Job::Report {
                    deploy_id,
                    state,
                    detail,
                } => self.report(deploy_id, state, detail.as_deref()).await,
            }
        }
    }

    async fn create(&self, id: i64) {
        let request = match self.journal.deployment_request(id) {
            Ok(Some(r)) if r.state == RequestState::Pending => r,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(request = id, error = %e, "journal: cannot read a deployment request");
                return;
            }
        };
        let settle = |state, deployment: Option<u64>, status: Option<u16>, detail: &str| {
            if let Err(e) = self.journal.settle_deployment_request(
                id,
                state,
                deployment,
                status,
                Some(detail),
                now_ms(),
            ) {
                tracing::error!(request = id, error = %e, "journal: cannot record GitHub's answer");
            }
        };
        let Some(client) = self.clients.get(&request.asked.stack) else {
            settle(
                RequestState::Failed,
                None,
                None,
                "the stack no longer has [stacks.github]",
            );
            return;
        };
        let stack = &request.asked.stack;
        match client.create_deployment(&request.asked.request_json).await {
            Ok(Created::Deployment(deployment)) => {
                tracing::info!(%stack, request = id, deployment, "GitHub deployment created");
                settle(
                    RequestState::Created,
                    Some(deployment),
                    Some(201),
                    "created",
                );
            }
            Ok(Created::Merged(m)) => {
                tracing::warn!(%stack, request = id, "GitHub merged the default branch instead of creating a deployment: {}", crate::text::one_line(&m));
                settle(RequestState::Merged, None, Some(202), &m);
            }
            Ok(Created::Conflict(m)) => {
                tracing::warn!(%stack, request = id, "GitHub refused the deployment (409): {}", crate::text::one_line(&m));
                settle(RequestState::Conflict, None, Some(409), &m);
            }
            Ok(Created::Invalid(m)) => {
                tracing::warn!(%stack, request = id, "GitHub refused the deployment (422): {}", crate::text::one_line(&m));
                settle(RequestState::Invalid, None, Some(422), &m);
            }
            Err(e @ ApiError::Denied { .. }) => {
                tracing::error!(%stack, request = id, "cannot create a GitHub deployment: {}", crate::text::one_line(&e.to_string()));
                settle(RequestState::Denied, None, e.status(), &e.to_string());
            }
            Err(e) => {
                tracing::error!(%stack, request = id, "cannot create a GitHub deployment: {}", crate::text::one_line(&e.to_string()));
                settle(RequestState::Failed, None, e.status(), &e.to_string());
            }
        }
    }

    async fn report(&self, deploy_id: i64, state: DeployState, detail: Option<&str>) {
        let record = match self.journal.deploy(deploy_id) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(deploy = deploy_id, error = %e, "journal: cannot read a deploy to report");
                return;
            }
        };
        let Some(stack) = self.config.stack(&record.queued.stack) else {
            return;
        };
        let refs: EventRefs = serde_json::from_str(&record.queued.event_json).unwrap_or_default();
        if stack.github.is_some() {
            self.report_github(stack, deploy_id, refs.github_deployment_id, state, detail)
                .await;
        }
        if let Some(url) = refs.callback_url.filter(|_| state.is_final()) {
            self.callback(deploy_id, &url, state, detail).await;
        }
    }

    fn record(&self, deploy_id: i64, target: &str, state: &str, outcome: &str) {
        if let Err(e) = self
            .journal
            .record_report(deploy_id, target, state, outcome, now_ms())
        {
            tracing::error!(deploy = deploy_id, error = %e, "journal: cannot record a report");
        }
    }

    async fn report_github(
        &self,
        stack: &StackConfig,
        deploy_id: i64,
        deployment: Option<u64>,
        state: DeployState,
        detail: Option<&str>,
    ) {
        let (Some(gh), Some(client)) = (&stack.github, self.clients.get(&stack.name)) else {
            return;
        };
        let deployment = match deployment {
            Some(d) => d,
            // A deploy that runs on the push reports to the deployment its
            // request created, if GitHub created one.
            None => match self.journal.request_of_deploy(deploy_id) {
                Ok(Some(r)) => match r.deployment_id {
                    Some(d) => d,
                    None => {
                        self.record(
                            deploy_id,
                            "github",
                            state.as_str(),
                            &format!("not reported: deployment request {}", r.state.as_str()),
                        );
                        return;
                    }
                },
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(deploy = deploy_id, error = %e, "journal: cannot read a deployment request");
                    return;
                }
            },
        };
        let input = wit::StatusInput {
            phase: state,
            environment: gh.environment.clone(),
            log_url: self.links.url(deploy_id),
            environment_url: stack.environment_url.clone(),
            detail: detail.map(str::to_string),
        };
        let body = match self.runtime.deployment_status(&input) {
            Ok(b) => b,
            Err(trap) => {
                tracing::error!(deploy = deploy_id, error = %trap, "plugin failed on a deployment status");
                self.record(deploy_id, "github", state.as_str(), "plugin failure");
                return;
            }
        };
        match client.create_status(deployment, &body).await {
            Ok(()) => self.record(
                deploy_id,
                "github",
                state.as_str(),
                &format!("deployment {deployment}: sent"),
            ),
            Err(e) => {
                tracing::error!(
                    deploy = deploy_id,
                    deployment,
                    "cannot send a GitHub deployment status: {}",
                    crate::text::one_line(&e.to_string())
                );
                self.record(
                    deploy_id,
                    "github",
                    state.as_str(),
                    &format!("deployment {deployment}: {e}"),
                );
            }
        }
    }

    /// Reports a registry push's deploy to Docker Hub's `callback_url`, as
    /// Docker Hub documents: `{"state": "success"|"failure"|"error",
    /// "description", "context", "target_url"}`.
    async fn callback(&self, deploy_id: i64, url: &str, state: DeployState, detail: Option<&str>) {
        let allowed = reqwest::Url::parse(url).ok().and_then(|u| {
            let host = u.host_str()?.to_ascii_lowercase();
            let ok_scheme = u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&host));
            (ok_scheme
                && self
                    .config
                    .server
                    .callback_hosts
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(&host)))
            .then_some(u)
        });
        let Some(url) = allowed else {
            crate::metrics::process::callback_failed(CallbackFailure::HostNotAllowed);
            tracing::warn!(
                deploy = deploy_id,
                "callback_url not reported to: its host is not in server.callback_hosts"
            );
            self.record(
                deploy_id,
                "callback",
                state.as_str(),
                "not sent: host not in server.callback_hosts",
            );
            return;
        };
        let (callback_state, words) = match state {
            DeployState::Succeeded => ("success", "Deployed"),
            DeployState::Failed => ("failure", "Deploy failed"),
            DeployState::Interrupted => ("error", "Deploy interrupted"),
            _ => ("error", "Not deployed"),
        };
        let description = match detail {
            Some(d) if !d.trim().is_empty() => format!("{words}: {}", d.trim()),
            _ => words.to_string(),
        };
        let mut body = serde_json::json!({
            "state": callback_state,
            "description": description.chars().take(255).collect::<String>(),
            "context": CALLBACK_CONTEXT,
        });
        if let Some(link) = self.links.url(deploy_id) {
            body["target_url"] = link.into();
        }
        let (outcome, failure) = match self.http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => (format!("{callback_state}: sent"), None),
            Ok(r) => (
                format!("{callback_state}: answered {}", r.status()),
                Some(CallbackFailure::Status),
            ),
            Err(e) => (
                format!("{callback_state}: {}", e.without_url()),
                Some(CallbackFailure::Unreachable),
            ),
        };
        if let Some(failure) = failure {
            crate::metrics::process::callback_failed(failure);
            // The URL is left out: Docker Hub's carries a secret path.
            tracing::warn!(
                deploy = deploy_id,
                "registry callback not delivered: {}",
                crate::text::one_line(&outcome)
            );
        }
        self.record(deploy_id, "callback", state.as_str(), &outcome);
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(lifetime: Option<Duration>) -> LogLinks {
        LogLinks {
            base: Some("https://deploy.example.com".into()),
            key: b"k".to_vec(),
            lifetime,
        }
    }

    #[test]
    fn log_keys_verify_only_their_deploy_until_they_expire() {
        let links = links(Some(Duration::from_secs(60)));
        let k = links.key_for(7, 1_000);
        assert!(k.starts_with("1000-"));
        assert_eq!(k.len(), 5 + LOG_LINK_KEY_CHARS);
        assert!(links.verify_at(7, &k, 999));
        assert!(!links.verify_at(7, &k, 1_000), "expired");
        assert!(!links.verify_at(8, &k, 999), "another deploy");
        assert!(!links.verify_at(7, &k[1..], 999));
        // The expiry is covered by the MAC: a later one is a wrong key.
        let moved = k.replacen("1000-", "9000-", 1);
        assert!(!links.verify_at(7, &moved, 999));
        let padded = k.replacen("1000-", "01000-", 1);
        assert!(!links.verify_at(7, &padded, 999));
        let url = links.url(7).unwrap();
        assert!(
            url.starts_with("https://deploy.example.com/logs/7/"),
            "{url}"
        );
        let key = url.rsplit('/').next().unwrap();
        assert!(links.verify(7, key));
    }

    #[test]
    fn links_off_issue_and_accept_nothing() {
        let on = links(Some(Duration::from_secs(60)));
        let off = links(None);
        assert_eq!(off.url(7), None);
        assert!(!off.verify_at(7, &on.key_for(7, 1_000), 999));
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1") && is_loopback("[::1]") && is_loopback("localhost"));
        assert!(!is_loopback("registry.hub.docker.com") && !is_loopback("10.0.0.1"));
    }
}
