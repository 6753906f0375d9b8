//! The one dispatch path every delivery takes, whether it came over HTTP or
//! from a post-receive hook: evaluate it in the component, journal it, and
//! hand each deploy to the runner. Nothing else decides what deploys.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::config::{Config, StackConfig};
use crate::journal::DeployRecord;
use crate::journal::{Inserted, Journal, NewDelivery, NewDeploy, NewDeploymentRequest};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::plugin::{wit, PluginRuntime};
use crate::report;
use crate::runner::{now_ms, Enqueued, Runner};
use crate::stacks::wit_stack;

/// The HTTP status and JSON body a delivery is answered with.
#[derive(Clone, Debug)]
pub struct Dispatched {
    /// 200 (nothing deploys), 202 (a deploy was accepted), or an error status.
    pub status: u16,
    /// The per-stack decisions, or `{"error": kind, "message": ...}`.
    pub body: Value,
}

/// The HTTP status for each expected plugin error.
pub fn error_status(e: &wit::Error) -> u16 {
    match e {
        wit::Error::UnknownProvider(_)
        | wit::Error::MalformedPayload(_)
        | wit::Error::BadRequest(_) => 400,
        wit::Error::MissingSignature(_) | wit::Error::BadSignature(_) => 401,
        wit::Error::UnsupportedMethod(_) => 405,
        wit::Error::InvalidStack(_) => 500,
        wit::Error::StaleEvent(_) => 400,
        wit::Error::Refused(_) => 403,
    }
}

/// An error answer: `{"error": kind, "message": message}`.
pub fn error_body(kind: &str, message: &str) -> Value {
    json!({ "error": kind, "message": message })
}

/// Where accepted deploys go: the server's in-process [`Runner`], or (in a
/// post-receive hook without a server) a detached runner process.
pub trait DeploySink: Send + Sync {
    /// Takes a deploy the journal holds as queued.
    fn accept(&self, record: &DeployRecord) -> Enqueued;
}

impl DeploySink for Runner {
    fn accept(&self, record: &DeployRecord) -> Enqueued {
        self.enqueue(record)
    }
}

/// Evaluates deliveries and queues their deploys.
#[derive(Clone)]
pub struct Dispatcher {
    runtime: Arc<PluginRuntime>,
    journal: Arc<Journal>,
    sink: Arc<dyn DeploySink>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    notifier: Option<Arc<Notifier>>,
    /// The server's GitHub deployment key, read from the journal on first use.
    deployment_key: Arc<std::sync::OnceLock<String>>,
}

/// The journal's dedupe key of a deploy run by a GitHub `deployment` event:
/// one deploy per deployment, whatever delivery carried it.
pub fn deployment_delivery_key(deployment_id: u64) -> String {
    format!("github-deployment-{deployment_id}")
}

impl Dispatcher {
    /// A dispatcher over the process's shared parts.
    pub fn new(
        runtime: Arc<PluginRuntime>,
        journal: Arc<Journal>,
        sink: Arc<dyn DeploySink>,
        config: Arc<Config>,
        metrics: Arc<Metrics>,
    ) -> Dispatcher {
        Dispatcher {
            runtime,
            journal,
            sink,
            config,
            metrics,
            notifier: None,
            deployment_key: Arc::default(),
        }
    }

    /// The deployment key, read (or created) in the journal once. Without it
    /// redeploy's deployments carry no MAC and so deploy nothing: logged.
    fn deployment_key(&self) -> Option<&str> {
        if self.deployment_key.get().is_none() {
            match crate::stacks::deployment_key(&self.journal) {
                Ok(key) => {
                    let _ = self.deployment_key.set(key);
                }
                Err(e) => {
                    tracing::error!(error = %e, "journal: cannot read the github deployment key")
                }
            }
        }
        self.deployment_key.get().map(String::as_str)
    }

    /// Sends GitHub deployment requests through `notifier` as they are
    /// journaled. Without one (a post-receive hook with no server), they stay
    /// pending in the journal for the runner process to send.
    pub fn with_notifier(mut self, notifier: Arc<Notifier>) -> Dispatcher {
        self.notifier = Some(notifier);
        self
    }

    fn request_deployment(
        &self,
        event: &wit::DeployEvent,
        body: &str,
        deploy_id: Option<i64>,
    ) -> Result<Inserted, crate::journal::JournalError> {
        let inserted = self
            .journal
            .insert_deployment_request(&NewDeploymentRequest {
                stack: event.stack.clone(),
                delivery_id: event.delivery.clone(),
                deploy_id,
                git_ref: event.ref_.clone(),
                sha: event.sha.clone(),
                request_json: body.to_string(),
                created_at_ms: now_ms(),
            })?;
        if let (Inserted::New(id), Some(n)) = (inserted, &self.notifier) {
            n.create_deployment(id);
        }
        Ok(inserted)
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn record(
        &self,
        stack: Option<&str>,
        provider: Option<&str>,
        event: Option<&str>,
        delivery: Option<&str>,
        status: u16,
        summary: &Value,
    ) {
        let d = NewDelivery {
            received_at_ms: now_ms(),
            stack: stack.map(str::to_string),
            provider: provider.map(str::to_string),
            event: event.map(str::to_string),
            delivery_id: delivery.map(str::to_string),
            status,
            summary: summary.to_string(),
        };
        // Only a delivery that queued a deploy (202) waits for the disk;
        // its deploy row was already written durably before this record.
        let recorded = if status == 202 {
            self.journal.record_delivery(&d)
        } else {
            self.journal.record_delivery_relaxed(&d)
        };
        if let Err(e) = recorded {
            tracing::error!(error = %e, "journal: cannot record a delivery");
        }
    }

    /// Evaluates one delivery for `stacks` and queues what deploys. Blocking:
    /// call it from a blocking thread.
    pub fn dispatch(&self, stacks: &[&StackConfig], delivery: &wit::Delivery) -> Dispatched {
        let label = (stacks.len() == 1).then(|| stacks[0].name.as_str());
        let wit_stacks: Vec<wit::Stack> = stacks.iter().map(|s| wit_stack(s)).collect();
        let started = Instant::now();
        let context = crate::stacks::evaluation_context(&self.config, self.deployment_key());
        let result = self.runtime.evaluate(&wit_stacks, delivery, &context);
        self.metrics.plugin_time(started.elapsed().as_secs_f64());
        let outcome = match result {
            Err(trap) => {
                tracing::error!(stack = ?label, error = %trap, "plugin failed on a delivery");
                self.metrics.delivery("unknown", "trap");
                let body = error_body(
                    "plugin-failure",
                    "the plugin failed on this delivery; see the server log",
                );
                self.record(label, None, None, None, 500, &body);
                return Dispatched { status: 500, body };
            }
            Ok(Err(e)) => {
                let status = error_status(&e);
                tracing::warn!(stack = ?label, status, kind = e.kind(), "delivery rejected: {}", e.message());
                self.metrics.delivery("unknown", e.kind());
                let body = error_body(e.kind(), e.message());
                self.record(label, None, None, None, status, &body);
                return Dispatched { status, body };
            }
            Ok(Ok(o)) => o,
        };

        let mut accepted = false;
        let mut decisions = Vec::with_capacity(outcome.decisions.len());
        for d in &outcome.decisions {
            let mut entry = json!({
                "stack": d.stack,
                "action": match d.action { wit::Action::Deploy(_) => "deploy", wit::Action::Skip => "skip" },
                "services": d.services,
                "reason": d.reason,
            });
            if let wit::Action::Deploy(event) = &d.action {
                let waits_for_github = stacks
                    .iter()
                    .find(|s| s.name == event.stack)
                    .and_then(|s| s.github.as_ref())
                    .is_some_and(|g| g.wait_for_event);
                if let (Some(body), true) = (&event.github_deployment_request, waits_for_github) {
                    // The `deployment` event GitHub sends back runs the deploy.
                    match self.request_deployment(event, body, None) {
                        Ok(Inserted::New(id)) => {
                            accepted = true;
                            entry["state"] = json!("deployment-requested");
                            entry["github_request_id"] = json!(id);
                        }
                        Ok(Inserted::Duplicate(id)) => {
                            entry["state"] = json!("duplicate");
                            entry["reason"] = json!(format!(
                                "delivery {} already asked GitHub for a deployment (request #{id})",
                                event.delivery.as_deref().unwrap_or("")
                            ));
                        }
                        Err(e) => {
                            tracing::error!(stack = %event.stack, error = %e, "journal: cannot record a deployment request");
                            return self.unavailable(label, &outcome);
                        }
                    }
                    decisions.push(entry);
                    continue;
                }
                let delivery_id = match event.github_deployment_id {
                    Some(id) => Some(deployment_delivery_key(id)),
                    None => event.delivery.clone(),
                };
                let new = NewDeploy {
                    stack: event.stack.clone(),
                    delivery_id,
                    provider: event.provider.clone(),
                    git_ref: event.ref_.clone(),
                    sha: event.sha.clone(),
                    services: event.services.clone(),
                    profile: event.profile.clone(),
                    reason: event.reason.clone(),
                    event_json: report::deploy_json(event).to_string(),
                    created_at_ms: now_ms(),
                };
                match self.journal.insert_deploy(&new) {
                    Ok(Inserted::New(id)) => {
                        self.metrics
                            .deploy_state(crate::journal::DeployState::Queued);
                        entry["deploy_id"] = json!(id);
                        if let Some(body) = &event.github_deployment_request {
                            // Deploys now; statuses go to the deployment this creates.
                            if let Err(e) = self.request_deployment(event, body, Some(id)) {
                                tracing::error!(stack = %event.stack, error = %e, "journal: cannot record a deployment request");
                            }
                        }
                        match self.journal.deploy(id) {
                            Ok(Some(record)) => match self.sink.accept(&record) {
                                Enqueued::Queued => {
                                    accepted = true;
                                    entry["state"] = json!("queued");
                                }
                                Enqueued::Cancelled(reason) => {
                                    entry["state"] = json!("cancelled");
                                    entry["reason"] = json!(reason);
                                }
                            },
                            other => {
                                tracing::error!(deploy = id, result = ?other.map(|r| r.map(|r| r.id)), "journal: cannot read back a deploy");
                                return self.unavailable(label, &outcome);
                            }
                        }
                    }
                    Ok(Inserted::Duplicate(id)) => {
                        entry["deploy_id"] = json!(id);
                        entry["state"] = json!("duplicate");
                        entry["reason"] = json!(match event.github_deployment_id {
                            Some(d) => format!(
                                "GitHub deployment {d} was already accepted as deploy #{id}"
                            ),
                            None => format!(
                                "delivery {} was already accepted as deploy #{id}",
                                event.delivery.as_deref().unwrap_or("")
                            ),
                        });
                    }
                    Err(e) => {
                        tracing::error!(stack = %event.stack, error = %e, "journal: cannot record a deploy");
                        return self.unavailable(label, &outcome);
                    }
                }
            }
            decisions.push(entry);
        }
        let status = if accepted { 202 } else { 200 };
        let body = json!({
            "provider": outcome.provider,
            "event": outcome.event,
            "delivery": outcome.delivery,
            "decisions": decisions,
        });
        self.metrics
            .delivery(&outcome.provider, if accepted { "deploy" } else { "skip" });
        self.record(
            label,
            Some(&outcome.provider),
            Some(&outcome.event),
            outcome.delivery.as_deref(),
            status,
            &body,
        );
        Dispatched { status, body }
    }

    fn unavailable(&self, label: Option<&str>, outcome: &wit::Outcome) -> Dispatched {
        self.metrics.delivery(&outcome.provider, "journal-failure");
        let body = error_body(
            "journal-unavailable",
            "the journal cannot record this deploy; retry later",
        );
        self.record(
            label,
            Some(&outcome.provider),
            Some(&outcome.event),
            outcome.delivery.as_deref(),
            503,
            &body,
        );
        Dispatched { status: 503, body }
    }
}
