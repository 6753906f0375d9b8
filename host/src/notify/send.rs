//! Sending one outbox row: what it needs is read from the journal and the
//! configuration ([`Sender::plan`]), then, if there is something to send,
//! it is sent ([`Outgoing::send`]); either way the result is the
//! [`Settlement`] the journal records: the request's answer for a
//! deployment, the `reports` row for a status or a callback.
//!
//! A row in doubt (claimed before and never settled: its earlier attempt
//! may have reached GitHub) is checked first ([`super::in_doubt`]): a
//! status GitHub holds already, or a deployment an earlier attempt
//! created, is settled as sent without a second request; a check that
//! fails is a failed send. A callback is sent again unchecked.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, StackConfig};
use crate::github::{ApiError, Created, GithubClient};
use crate::journal::{
    now_ms, DeployState, EventRefs, Journal, JournalError, OutboxKind, OutboxOutcome, OutboxRow,
    ReportLine, RequestAnswer, RequestState, Settlement,
};
use crate::metrics::process::CallbackFailure;
use crate::plugin::{wit, PluginRuntime};

use super::{in_doubt, LogLinks, CALLBACK_CONTEXT};

/// How a report or answer says its request was found on GitHub, made by
/// an earlier attempt whose answer was lost, instead of being sent again.
const FOUND_ON_GITHUB: &str = "found on GitHub after an unanswered attempt";

/// The configuration rows are sent with, replaced whole on reload.
pub(super) struct Settings {
    /// The stacks' GitHub settings and the callback hosts.
    pub config: Arc<Config>,
    /// A GitHub client per stack with `[stacks.github]`.
    pub clients: HashMap<String, GithubClient>,
}

/// What sends rows: the journal, the component (status bodies), the log
/// links and the HTTP client of callbacks. Cloned for each send (handles
/// only).
#[derive(Clone)]
pub(super) struct Sender {
    pub journal: Arc<Journal>,
    pub runtime: Arc<PluginRuntime>,
    pub links: LogLinks,
    pub http: reqwest::Client,
}

/// What to do with a row.
pub(super) enum Plan {
    /// Its deployment is not created yet: it waits (and the rows of its
    /// deploy after it).
    Wait,
    /// Nothing to send: settle it so.
    Settle(Settlement),
    /// Send it, then settle it with what [`Outgoing::send`] returns.
    Send(Outgoing),
}

/// A row ready to go out.
pub(super) enum Outgoing {
    /// Create the deployment of request `request_id`; a transient failure
    /// is tried again until `retry_until_ms`.
    Deployment {
        request_id: i64,
        stack: String,
        client: GithubClient,
        body: String,
        retry_until_ms: i64,
    },
    /// Post a status of deploy `deploy_id` to `deployment`.
    Status {
        deploy_id: i64,
        state: DeployState,
        deployment: u64,
        client: GithubClient,
        body: String,
    },
    /// Call a registry back.
    Callback {
        deploy_id: i64,
        state: DeployState,
        url: reqwest::Url,
        callback_state: &'static str,
        body: serde_json::Value,
    },
}

fn settle(outcome: OutboxOutcome, detail: &str) -> Settlement {
    Settlement {
        outcome,
        detail: detail.to_owned(),
        answer: None,
        report: None,
        at_ms: now_ms(),
    }
}

fn reported(
    outcome: OutboxOutcome,
    deploy_id: i64,
    target: &'static str,
    state: DeployState,
    words: String,
) -> Settlement {
    Settlement {
        outcome,
        detail: words.clone(),
        answer: None,
        report: Some(ReportLine {
            deploy_id,
            target,
            state,
            outcome: words,
        }),
        at_ms: now_ms(),
    }
}

fn answered(
    outcome: OutboxOutcome,
    request_id: i64,
    state: RequestState,
    deployment_id: Option<u64>,
    http_status: Option<u16>,
    detail: &str,
) -> Settlement {
    Settlement {
        outcome,
        detail: detail.to_owned(),
        answer: Some((
            request_id,
            RequestAnswer {
                state,
                deployment_id,
                http_status,
                detail: detail.to_owned(),
            },
        )),
        report: None,
        at_ms: now_ms(),
    }
}

impl Sender {
    /// What to do with `row`, read from the journal and `settings`; no
    /// request leaves the process here.
    pub fn plan(&self, settings: &Settings, row: &OutboxRow) -> Result<Plan, JournalError> {
        match (row.kind, row.request_id, row.deploy_id, row.state) {
            (OutboxKind::Deployment, Some(request_id), _, _) => {
                self.plan_deployment(settings, request_id)
            }
            (OutboxKind::Status, _, Some(deploy_id), Some(state)) => {
                self.plan_report(settings, row, deploy_id, state)
            }
            (OutboxKind::Callback, _, Some(deploy_id), Some(state)) => {
                self.plan_report(settings, row, deploy_id, state)
            }
            _ => Ok(Plan::Settle(settle(
                OutboxOutcome::Failed,
                "the row names nothing to send",
            ))),
        }
    }

    fn plan_deployment(&self, settings: &Settings, request_id: i64) -> Result<Plan, JournalError> {
        let request = match self.journal.deployment_request(request_id)? {
            Some(r) if r.state == RequestState::Pending => r,
            Some(r) => {
                return Ok(Plan::Settle(settle(
                    OutboxOutcome::Skipped,
                    &format!("the request is {} already", r.state.as_str()),
                )))
            }
            None => {
                return Ok(Plan::Settle(settle(
                    OutboxOutcome::Skipped,
                    "the request is gone",
                )))
            }
        };
        let Some(client) = settings.clients.get(&request.asked.stack) else {
            return Ok(Plan::Settle(answered(
                OutboxOutcome::Failed,
                request_id,
                RequestState::Failed,
                None,
                None,
                "the stack no longer has [stacks.github]",
            )));
        };
        let retry_for = settings
            .config
            .stack(&request.asked.stack)
            .and_then(|s| s.github.as_ref())
            .map_or(std::time::Duration::ZERO, |gh| gh.retry_request_for);
        let retry_for_ms = i64::try_from(retry_for.as_millis()).unwrap_or(i64::MAX / 4);
        Ok(Plan::Send(Outgoing::Deployment {
            request_id,
            stack: request.asked.stack.clone(),
            client: client.clone(),
            body: request.asked.request_json,
            retry_until_ms: request.asked.created_at_ms.saturating_add(retry_for_ms),
        }))
    }

    fn plan_report(
        &self,
        settings: &Settings,
        row: &OutboxRow,
        deploy_id: i64,
        state: DeployState,
    ) -> Result<Plan, JournalError> {
        let Some(record) = self.journal.deploy(deploy_id)? else {
            return Ok(Plan::Settle(settle(
                OutboxOutcome::Skipped,
                "the deploy is gone",
            )));
        };
        let Some(stack) = settings.config.stack(&record.queued.stack) else {
            return Ok(Plan::Settle(settle(
                OutboxOutcome::Skipped,
                "the stack is no longer configured",
            )));
        };
        let refs = EventRefs::of(&record.queued.event_json);
        let detail = row.detail.as_deref();
        match row.kind {
            OutboxKind::Callback => Ok(match refs.callback_url {
                Some(url) => self.plan_callback(settings, deploy_id, &url, state, detail),
                None => Plan::Settle(settle(OutboxOutcome::Skipped, "no callback URL")),
            }),
            _ => self.plan_status(settings, stack, deploy_id, refs, state, detail),
        }
    }

    fn plan_status(
        &self,
        settings: &Settings,
        stack: &StackConfig,
        deploy_id: i64,
        refs: EventRefs,
        state: DeployState,
        detail: Option<&str>,
    ) -> Result<Plan, JournalError> {
        let (Some(gh), Some(client)) = (&stack.github, settings.clients.get(&stack.name)) else {
            return Ok(Plan::Settle(settle(
                OutboxOutcome::Skipped,
                "the stack no longer has [stacks.github]",
            )));
        };
        let deployment = match refs.github_deployment_id {
            Some(d) => d,
            // A deploy that runs on the push reports to the deployment its
            // request created, if GitHub created one.
            None => match self.journal.request_of_deploy(deploy_id)? {
                Some(r) => match (r.deployment_id, r.state) {
                    (Some(d), _) => d,
                    (None, RequestState::Pending) => return Ok(Plan::Wait),
                    (None, request) => {
                        return Ok(Plan::Settle(reported(
                            OutboxOutcome::Failed,
                            deploy_id,
                            "github",
                            state,
                            format!("not reported: deployment request {}", request.as_str()),
                        )))
                    }
                },
                None => {
                    return Ok(Plan::Settle(settle(
                        OutboxOutcome::Skipped,
                        "no GitHub deployment to report to",
                    )))
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
        match self.runtime.deployment_status(&input) {
            Ok(body) => Ok(Plan::Send(Outgoing::Status {
                deploy_id,
                state,
                deployment,
                client: client.clone(),
                body,
            })),
            Err(trap) => {
                tracing::error!(deploy = deploy_id, error = %trap, "plugin failed on a deployment status");
                Ok(Plan::Settle(reported(
                    OutboxOutcome::Failed,
                    deploy_id,
                    "github",
                    state,
                    "plugin failure".to_owned(),
                )))
            }
        }
    }

    /// A registry push's deploy reported to Docker Hub's `callback_url`,
    /// as Docker Hub documents: `{"state": "success"|"failure"|"error",
    /// "description", "context", "target_url"}`; only to a host of
    /// `server.callback_hosts`.
    fn plan_callback(
        &self,
        settings: &Settings,
        deploy_id: i64,
        url: &str,
        state: DeployState,
        detail: Option<&str>,
    ) -> Plan {
        let allowed = reqwest::Url::parse(url).ok().and_then(|u| {
            let host = u.host_str()?.to_ascii_lowercase();
            let ok_scheme = u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&host));
            (ok_scheme
                && settings
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
            return Plan::Settle(reported(
                OutboxOutcome::Failed,
                deploy_id,
                "callback",
                state,
                "not sent: host not in server.callback_hosts".to_owned(),
            ));
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
        Plan::Send(Outgoing::Callback {
            deploy_id,
            state,
            url,
            callback_state,
            body,
        })
    }
}

impl Outgoing {
    /// Until when a transient failure of this row is tried again (ms since
    /// the epoch): a deployment request's, within its stack's
    /// `retry_request_for`; `None` for any other row.
    pub fn retry_until_ms(&self) -> Option<(i64, i64)> {
        match self {
            Outgoing::Deployment {
                request_id,
                retry_until_ms,
                ..
            } => Some((*request_id, *retry_until_ms)),
            _ => None,
        }
    }

    /// Sends it (GitHub's client retries and waits out rate limits, within
    /// its bounds) and says how it went, and whether it failed in a way
    /// worth trying again later (GitHub unreachable, 5xx, rate limited, an
    /// answer that could not be read). `in_doubt`: an earlier attempt was
    /// claimed and never settled (or failed so), so GitHub is asked first
    /// whether it arrived (not for a callback, which cannot be asked).
    pub async fn send(self, sender: &Sender, in_doubt: bool) -> (Settlement, bool) {
        match self {
            Outgoing::Deployment {
                request_id,
                stack,
                client,
                body,
                ..
            } => {
                if in_doubt {
                    match in_doubt::deployment_on_github(
                        &client,
                        &sender.journal,
                        request_id,
                        &body,
                    )
                    .await
                    {
                        Ok(Some(deployment)) => {
                            tracing::info!(%stack, request = request_id, deployment, "GitHub deployment found, created by an earlier attempt whose answer was lost");
                            let created = answered(
                                OutboxOutcome::Sent,
                                request_id,
                                RequestState::Created,
                                Some(deployment),
                                None,
                                &format!("created ({FOUND_ON_GITHUB})"),
                            );
                            return (created, false);
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let transient = match &e {
                                in_doubt::CheckError::Github(e) => transient(e),
                                in_doubt::CheckError::Journal(_) => true,
                            };
                            let failed = request_failed(
                                request_id,
                                &stack,
                                &e.to_string(),
                                e.status(),
                                denied(&e),
                                transient,
                            );
                            return (failed, transient);
                        }
                    }
                }
                create_deployment(request_id, &stack, &client, &body).await
            }
            Outgoing::Status {
                deploy_id,
                state,
                deployment,
                client,
                body,
            } => {
                if in_doubt {
                    match in_doubt::status_on_github(
                        &client,
                        &sender.links,
                        deploy_id,
                        deployment,
                        &body,
                    )
                    .await
                    {
                        Ok(true) => {
                            tracing::info!(deploy = deploy_id, deployment, "GitHub deployment status found, posted by an earlier attempt whose answer was lost");
                            let sent = reported(
                                OutboxOutcome::Sent,
                                deploy_id,
                                "github",
                                state,
                                format!("deployment {deployment}: sent ({FOUND_ON_GITHUB})"),
                            );
                            return (sent, false);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            let failed = status_failed(
                                deploy_id,
                                state,
                                deployment,
                                "not sending a GitHub deployment status again",
                                &e,
                            );
                            return (failed, false);
                        }
                    }
                }
                (
                    post_status(deploy_id, state, deployment, &client, &body).await,
                    false,
                )
            }
            Outgoing::Callback {
                deploy_id,
                state,
                url,
                callback_state,
                body,
            } => (
                callback(&sender.http, deploy_id, state, url, callback_state, &body).await,
                false,
            ),
        }
    }
}

/// Whether a failed request is worth making again later: GitHub could not
/// be reached (or answered 5xx) on every quick try, stayed rate limited,
/// or gave an answer that could not be read. A refusal (401/403/404, 422,
/// any other 4xx) is about the request and would be refused again.
fn transient(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Unreachable { .. } | ApiError::RateLimited(_) | ApiError::BadAnswer(_)
    )
}

/// Whether a failed check was GitHub refusing the token.
fn denied(e: &in_doubt::CheckError) -> bool {
    matches!(e, in_doubt::CheckError::Github(ApiError::Denied { .. }))
}

/// A deployment request that could not be sent (or checked): `denied`
/// when GitHub refused the token, failed otherwise. A `transient` failure
/// is logged by the sender, which tries it again or settles it
/// (`Outbox::pass`): once per request, not once per try.
fn request_failed(
    id: i64,
    stack: &str,
    error: &str,
    status: Option<u16>,
    denied: bool,
    transient: bool,
) -> Settlement {
    if transient {
        tracing::debug!(%stack, request = id, "cannot create a GitHub deployment: {}", crate::text::one_line(error));
    } else {
        tracing::error!(%stack, request = id, "cannot create a GitHub deployment: {}", crate::text::one_line(error));
    }
    let state = if denied {
        RequestState::Denied
    } else {
        RequestState::Failed
    };
    answered(OutboxOutcome::Failed, id, state, None, status, error)
}

async fn post_status(
    deploy_id: i64,
    state: DeployState,
    deployment: u64,
    client: &GithubClient,
    body: &str,
) -> Settlement {
    match client.create_status(deployment, body).await {
        Ok(()) => reported(
            OutboxOutcome::Sent,
            deploy_id,
            "github",
            state,
            format!("deployment {deployment}: sent"),
        ),
        Err(e) => status_failed(
            deploy_id,
            state,
            deployment,
            "cannot send a GitHub deployment status",
            &e,
        ),
    }
}

/// A deployment status not sent (or not checked): logged as `what`, and
/// reported failed with the error.
fn status_failed(
    deploy_id: i64,
    state: DeployState,
    deployment: u64,
    what: &str,
    error: &dyn std::fmt::Display,
) -> Settlement {
    let error = error.to_string();
    tracing::error!(
        deploy = deploy_id,
        deployment,
        "{what}: {}",
        crate::text::one_line(&error)
    );
    reported(
        OutboxOutcome::Failed,
        deploy_id,
        "github",
        state,
        format!("deployment {deployment}: {error}"),
    )
}

async fn create_deployment(
    id: i64,
    stack: &str,
    client: &GithubClient,
    body: &str,
) -> (Settlement, bool) {
    use OutboxOutcome::Sent;
    let answer = client.create_deployment(body).await;
    let transient = answer.as_ref().err().is_some_and(transient);
    let settlement = match answer {
        Ok(Created::Deployment(deployment)) => {
            tracing::info!(%stack, request = id, deployment, "GitHub deployment created");
            answered(
                Sent,
                id,
                RequestState::Created,
                Some(deployment),
                Some(201),
                "created",
            )
        }
        Ok(Created::Merged(m)) => {
            tracing::warn!(%stack, request = id, "GitHub merged the default branch instead of creating a deployment: {}", crate::text::one_line(&m));
            answered(Sent, id, RequestState::Merged, None, Some(202), &m)
        }
        Ok(Created::Conflict(m)) => {
            tracing::warn!(%stack, request = id, "GitHub refused the deployment (409): {}", crate::text::one_line(&m));
            answered(Sent, id, RequestState::Conflict, None, Some(409), &m)
        }
        Ok(Created::Invalid(m)) => {
            tracing::warn!(%stack, request = id, "GitHub refused the deployment (422): {}", crate::text::one_line(&m));
            answered(Sent, id, RequestState::Invalid, None, Some(422), &m)
        }
        Err(e) => {
            let denied = matches!(e, ApiError::Denied { .. });
            request_failed(id, stack, &e.to_string(), e.status(), denied, transient)
        }
    };
    (settlement, transient)
}

async fn callback(
    http: &reqwest::Client,
    deploy_id: i64,
    state: DeployState,
    url: reqwest::Url,
    callback_state: &str,
    body: &serde_json::Value,
) -> Settlement {
    // The host, not the URL: Docker Hub's path carries a secret.
    let host = url.host_str().unwrap_or_default().to_string();
    let (words, failure) = match http.post(url).json(body).send().await {
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
    let outcome = if let Some(failure) = failure {
        crate::metrics::process::callback_failed(failure);
        tracing::warn!(
            deploy = deploy_id,
            host = %host,
            "registry callback not delivered: {} (server.callback_hosts lists the hosts called)",
            crate::text::one_line(&words)
        );
        OutboxOutcome::Failed
    } else {
        OutboxOutcome::Sent
    };
    reported(outcome, deploy_id, "callback", state, words)
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

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1") && is_loopback("[::1]") && is_loopback("localhost"));
        assert!(!is_loopback("registry.hub.docker.com") && !is_loopback("10.0.0.1"));
    }
}
