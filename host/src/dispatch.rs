//! The one dispatch path every delivery takes, whether it came over HTTP or
//! from a post-receive hook: evaluate it in the component, journal it, and
//! hand each deploy to the runner. Nothing else decides what deploys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::config::{Config, LiveConfig, StackConfig};
use crate::journal::now_ms;
use crate::journal::{Admitted, NewDeploy, RequestedDeploy};
use crate::journal::{DeployRecord, Placed, Placer, ToRun};
use crate::journal::{Inserted, Journal, NewDelivery, NewDeploymentRequest, Recording};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::plugin::{wit, PluginRuntime};
use crate::received::RequestRecord;
use crate::runner::{Enqueued, Runner};
use crate::stacks::wit_stack;

mod copied_mac;
mod image;
mod plan;
mod redeploy;
mod replay;
use plan::{plan, Planned, Step};
use replay::signed_trigger_identity;
pub use replay::{
    replay_key, replay_window, ReplayIdentity, EVENT_CLOCK_SKEW, SENDERS_WITH_EVENT_TIME,
    TIMELESS_REPLAY_WINDOW,
};

/// The HTTP status and JSON body a delivery is answered with, and its
/// row in the journal being written: answer only once it is
/// ([`Dispatched::recorded`]).
pub struct Dispatched {
    /// 200 (nothing deploys), 202 (a deploy was accepted), or an error status.
    pub status: u16,
    /// The per-stack decisions, or `{"error": kind, "message": ...}`.
    pub body: Value,
    recording: Recording,
}

impl Dispatched {
    /// An answer whose delivery has no row to write (or had it written).
    pub fn unrecorded(status: u16, body: Value) -> Dispatched {
        Dispatched {
            status,
            body,
            recording: Recording::nothing(),
        }
    }

    /// This answer once its delivery's row is written (or its failure
    /// logged: a row the journal refuses is not the delivery's failure),
    /// waited for without a thread.
    pub async fn recorded(self) -> Dispatched {
        log_unrecorded(self.recording.written().await);
        Dispatched::unrecorded(self.status, self.body)
    }

    /// [`Dispatched::recorded`], waited for on this thread. Blocking: call
    /// it off the runtime's workers.
    fn recorded_here(self) -> Dispatched {
        log_unrecorded(self.recording.wait());
        Dispatched::unrecorded(self.status, self.body)
    }
}

/// Logs a delivery row the journal did not write.
fn log_unrecorded(written: Result<Option<i64>, crate::journal::JournalError>) {
    if let Err(e) = written {
        tracing::error!(error = %e, "journal: cannot record a delivery");
    }
}

/// The HTTP status for each expected plugin error.
pub fn error_status(e: &wit::Error) -> u16 {
    match e {
        wit::Error::UnknownProvider(_)
        | wit::Error::MalformedPayload(_)
        | wit::Error::BadRequest(_) => 400,
        wit::Error::MissingSignature(_)
        | wit::Error::BadSignature(_)
        | wit::Error::StaleSignature(_) => 401,
        wit::Error::UnsupportedMethod(_) => 405,
        wit::Error::InvalidStack(_) => 500,
        wit::Error::StaleEvent(_) => 400,
        wit::Error::Refused(_) => 403,
    }
}

/// How many bytes of the plugin's memory one byte of a delivery's body may
/// take at most while it is evaluated: JSON of tiny elements (`"",` three
/// bytes, a string of 24 and its share of the list's) takes about 40. A
/// body at least the memory cap's 64th part can therefore need the whole
/// cap by its shape alone; a smaller one that does points at the plugin.
pub const MEMORY_PER_BODY_BYTE: usize = 64;

/// Whether a delivery of `body_len` bytes that needed more than the
/// plugin's `limit` of memory did so by its size: it is refused as too
/// large (413), where a smaller one is the plugin's failure (500).
pub fn sized_to_need(body_len: usize, limit: usize) -> bool {
    body_len.saturating_mul(MEMORY_PER_BODY_BYTE) >= limit
}

/// The bytes of `delivery`'s body (a post-receive push's: its input lines,
/// `old new name`).
fn body_len(delivery: &wit::Delivery) -> usize {
    match delivery {
        wit::Delivery::Http(r) | wit::Delivery::ForwardedPostReceive(r) => r.body.len(),
        wit::Delivery::PostReceive(p) => p
            .updates
            .iter()
            .map(|u| u.old.len() + u.new.len() + u.name.len() + 3)
            .sum(),
        wit::Delivery::Manual(_) | wit::Delivery::Poll(_) => 0,
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

    /// The queue policy that places a delivery's deploy inside the
    /// transaction that admits it ([`Placer`]), if this sink has one.
    fn placer(&self) -> Option<Arc<dyn Placer>> {
        None
    }

    /// Takes a deploy the journal queued and this sink's [`Placer`] placed
    /// in that transaction (`placed`).
    fn placed(&self, record: &DeployRecord, _placed: Placed) -> Enqueued {
        self.accept(record)
    }

    /// Hears that an operator cancelled deploy `id` (`queued`: it was
    /// queued and is cancelled; else it runs and is being stopped), to
    /// forget it and tell whoever watches deploys.
    fn cancelled(&self, _id: i64, _reason: &str, _queued: bool) {}
}

impl DeploySink for Runner {
    fn accept(&self, record: &DeployRecord) -> Enqueued {
        self.enqueue(record)
    }

    fn placer(&self) -> Option<Arc<dyn Placer>> {
        Some(Arc::new(self.clone()))
    }

    fn placed(&self, record: &DeployRecord, placed: Placed) -> Enqueued {
        Runner::placed(self, record, placed)
    }

    fn cancelled(&self, id: i64, reason: &str, queued: bool) {
        self.cancelled_by_operator(id, reason, queued);
    }
}

/// Senders whose pushes say whether they were forced; the others never do,
/// so their `forced` proves nothing ([`crate::commit_order::Candidate`]).
pub const SENDERS_REPORTING_FORCED: &[wit::Provider] =
    &[wit::Provider::Github, wit::Provider::BitbucketCloud];

/// Whether stack `name` of `stacks` polls its repositories (`[stacks.poll]`):
/// it sees a push twice, by the webhook and by the poll.
fn polls(stacks: &[&StackConfig], name: &str) -> bool {
    stacks.iter().any(|s| s.name == name && s.poll.is_some())
}

/// Evaluates deliveries and queues their deploys.
#[derive(Clone)]
pub struct Dispatcher {
    runtime: Arc<PluginRuntime>,
    journal: Arc<Journal>,
    sink: Arc<dyn DeploySink>,
    config: LiveConfig,
    metrics: Arc<Metrics>,
    notifier: Option<Arc<Notifier>>,
    refused: Arc<crate::retention::RefusedLimiter>,
    /// The server's GitHub deployment key, read from the journal on first use.
    deployment_key: Arc<std::sync::OnceLock<String>>,
}

/// The journal's dedupe key of a deploy run by a GitHub `deployment` event:
/// one deploy per deployment, whatever delivery carried it.
pub fn deployment_delivery_key(deployment_id: u64) -> String {
    crate::journal::deployment_delivery_key(deployment_id)
}

impl Dispatcher {
    /// A dispatcher over the process's shared parts.
    pub fn new(
        runtime: Arc<PluginRuntime>,
        journal: Arc<Journal>,
        sink: Arc<dyn DeploySink>,
        config: impl Into<LiveConfig>,
        metrics: Arc<Metrics>,
    ) -> Dispatcher {
        let config = config.into();
        let refused_per_minute = config.current().server.retention.refused_per_minute;
        Dispatcher {
            runtime,
            journal,
            sink,
            config,
            refused: Arc::new(crate::retention::RefusedLimiter::new(refused_per_minute)),
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

    /// Records a deployment request for a stack that waits for the
    /// `deployment` event to deploy, and wakes the notifier to send it.
    fn request_deployment(
        &self,
        event: &wit::DeployEvent,
        body: &str,
        deploy: &RequestedDeploy,
        once_per_commit: bool,
    ) -> Result<Inserted, crate::journal::JournalError> {
        let inserted = self.journal.insert_deployment_request_keeping(
            &NewDeploymentRequest {
                stack: event.stack.clone(),
                // Its delivery's journal key, as the deploy it stands for
                // has it (`plan::delivery_key`).
                delivery_id: deploy.deploy.delivery_id.clone(),
                deploy_id: None,
                git_ref: event.ref_.clone(),
                repository: event.repository.clone(),
                sha: event.sha.clone(),
                request_json: body.to_string(),
                created_at_ms: now_ms(),
            },
            once_per_commit,
            Some(deploy),
        )?;
        if let (Inserted::New(id), Some(n)) = (inserted, &self.notifier) {
            n.create_deployment(id);
        }
        Ok(inserted)
    }

    /// The configuration now (a reload replaces it; take it once per
    /// delivery).
    pub fn config(&self) -> Arc<Config> {
        self.config.current()
    }

    /// The component, for what the host asks of it besides deliveries
    /// (signing a manual trigger).
    pub fn runtime(&self) -> &Arc<PluginRuntime> {
        &self.runtime
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The rate limit on rows of refused deliveries.
    pub fn refused(&self) -> &Arc<crate::retention::RefusedLimiter> {
        &self.refused
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        stack: Option<&str>,
        provider: Option<&str>,
        event: Option<&str>,
        delivery: Option<&str>,
        status: u16,
        summary: &Value,
        request: Option<&dyn Fn(u16) -> Option<RequestRecord>>,
    ) -> Recording {
        // Refused deliveries are cheap to record: beyond a rate per stack
        // they are counted, and summed up in one row (retention.rs).
        if status >= 400 {
            let (own_row, summary) = self.refused.admit(stack, now_ms());
            if let Some(summary) = summary {
                if let Err(e) = self.journal.record_delivery_relaxed(&summary.row()) {
                    tracing::error!(error = %e, "journal: cannot record refused deliveries' summary");
                }
            }
            if !own_row {
                self.metrics.refused_unrecorded();
                return Recording::nothing();
            }
        }
        let d = NewDelivery {
            received_at_ms: now_ms(),
            stack: stack.map(str::to_string),
            provider: provider.map(str::to_string),
            event: event.map(str::to_string),
            delivery_id: delivery.map(str::to_string),
            status,
            summary: summary.to_string(),
        };
        // No delivery row waits for the disk, a 202's neither: its deploy
        // row was written durably before this record (and holds the
        // delivery id that deduplicates a redelivery), so losing the row
        // to a power loss loses neither a deploy nor runs one twice.
        let request = request.and_then(|made| made(status));
        self.journal.record_received_relaxed(&d, request.as_ref())
    }

    /// Records that a GitHub `deployment` event the component evaluated
    /// (whatever it decided) reached `stacks`, from its `deployment.id`:
    /// the journal's `event_wait` never runs that deployment then.
    fn note_deployment_event(&self, stacks: &[&StackConfig], delivery: &wit::Delivery) {
        let wit::Delivery::Http(http) = delivery else {
            return;
        };
        let Some(id) = serde_json::from_slice::<serde_json::Value>(&http.body)
            .ok()
            .and_then(|v| v["deployment"]["id"].as_u64())
        else {
            return;
        };
        for stack in stacks {
            if let Err(e) = self
                .journal
                .note_deployment_event(&stack.name, id, now_ms())
            {
                tracing::error!(stack = %stack.name, deployment = id, error = %e, "journal: cannot note a deployment event");
            }
        }
    }

    /// The push kept with the request that created GitHub deployment
    /// `deployment` of `new`'s stack, when it pushed `new`'s commit.
    fn kept_push(
        &self,
        deployment: u64,
        new: &NewDeploy,
    ) -> Result<Option<RequestedDeploy>, crate::journal::JournalError> {
        Ok(self
            .journal
            .kept_push_of_deployment(&new.stack, deployment, new)?
            .filter(|kept| new.sha.is_some() && kept.deploy.sha == new.sha))
    }

    /// Evaluates one delivery for `stacks` and queues what deploys. Blocking:
    /// call it off the runtime's workers (a blocking thread, or inside
    /// `block_in_place`).
    ///
    /// A delivery over HTTP whose sender gives no delivery id (other than a
    /// manual trigger with an empty body, a new trigger each time) is
    /// deduplicated on its exact body for [`replay_window`].
    ///
    /// It returns once the delivery's row is written.
    pub fn dispatch(&self, stacks: &[&StackConfig], delivery: &wit::Delivery) -> Dispatched {
        self.dispatch_identified(stacks, delivery, None, None)
            .recorded_here()
    }

    /// [`Dispatcher::dispatch`] of a poll's delivery, whose change the poll
    /// saw at `seen_at_ms` (an image digest's claim is ordered by it,
    /// [`crate::journal::ImageClaim`]).
    pub fn dispatch_seen(
        &self,
        stacks: &[&StackConfig],
        delivery: &wit::Delivery,
        seen_at_ms: i64,
    ) -> Dispatched {
        self.evaluate_and_admit(stacks, delivery, None, None, Some(seen_at_ms))
            .recorded_here()
    }

    /// [`Dispatcher::dispatch`], deduplicating on `identity` instead of the
    /// body (a forwarded post-receive push: its signed timestamp and body),
    /// for a delivery to the hook URL with `hook_token` (redacted from its
    /// recorded request, with the stacks' secrets).
    ///
    /// It may return before the delivery's row is written: a webhook is
    /// answered once [`Dispatched::recorded`] has waited for it, without
    /// holding a thread.
    pub fn dispatch_identified(
        &self,
        stacks: &[&StackConfig],
        delivery: &wit::Delivery,
        identity: Option<ReplayIdentity<'_>>,
        hook_token: Option<&str>,
    ) -> Dispatched {
        self.evaluate_and_admit(stacks, delivery, identity, hook_token, None)
    }

    /// The dispatch path: [`Dispatcher::dispatch_identified`], with when a
    /// poll saw the change (`None`: a delivery, seen now).
    fn evaluate_and_admit(
        &self,
        stacks: &[&StackConfig],
        delivery: &wit::Delivery,
        identity: Option<ReplayIdentity<'_>>,
        hook_token: Option<&str>,
        seen_at_ms: Option<i64>,
    ) -> Dispatched {
        let label = (stacks.len() == 1).then(|| stacks[0].name.as_str());
        let wit_stacks: Vec<wit::Stack> = stacks.iter().map(|s| wit_stack(s)).collect();
        let started = Instant::now();
        let config = self.config();
        let secrets: Vec<&str> = stacks
            .iter()
            .flat_map(|s| s.secrets.iter().map(|s| s.expose()))
            .chain(hook_token)
            .collect();
        // What the row keeps of the request, made only for a row written
        // (a refused delivery over the rate gets none).
        let keep = config.server.retention.delivery_bodies;
        let seen = |status: u16| crate::received::received(delivery, &secrets, keep, status);
        let seen = Some(&seen as &dyn Fn(u16) -> Option<RequestRecord>);
        let context = crate::stacks::evaluation_context(&config, self.deployment_key());
        let result = self.runtime.evaluate(&wit_stacks, delivery, &context);
        self.metrics.plugin_time(started.elapsed().as_secs_f64());
        let outcome = match result {
            Err(trap) => {
                if let Some(over) = trap
                    .over_memory_limit()
                    .filter(|over| sized_to_need(body_len(delivery), over.limit))
                {
                    let message = over.to_string();
                    tracing::warn!(stack = ?label, status = 413, "delivery refused: {message}");
                    self.metrics.delivery("unknown", "payload-too-large");
                    let body = error_body("payload-too-large", &message);
                    let recording = self.record(label, None, None, None, 413, &body, seen);
                    return Dispatched {
                        status: 413,
                        body,
                        recording,
                    };
                }
                tracing::error!(stack = ?label, error = %crate::text::one_line(&trap.to_string()), "plugin failed on a delivery");
                self.metrics.delivery("unknown", "trap");
                let body = error_body(
                    "plugin-failure",
                    "the plugin failed on this delivery; see the server log",
                );
                let recording = self.record(label, None, None, None, 500, &body, seen);
                return Dispatched {
                    status: 500,
                    body,
                    recording,
                };
            }
            Ok(Err(e)) => {
                let status = error_status(&e);
                tracing::warn!(stack = ?label, status, kind = e.kind(), "delivery rejected: {}", crate::text::one_line(e.message()));
                self.metrics.delivery("unknown", e.kind());
                let body = error_body(e.kind(), e.message());
                let recording = self.record(label, None, None, None, status, &body, seen);
                if let (401, Some(stack), Some(notifier)) = (status, label, &self.notifier) {
                    notifier.refused(
                        stack,
                        &format!("{}: {}", e.kind(), crate::text::one_line(e.message())),
                    );
                }
                return Dispatched {
                    status,
                    body,
                    recording,
                };
            }
            Ok(Ok(o)) => o,
        };
        let mut outcome = outcome;
        let judged_foreign = match copied_mac::judge_unrequested(
            &self.runtime,
            &self.journal,
            &config,
            &wit_stacks,
            delivery,
            &mut outcome,
        ) {
            Ok(judged_foreign) => judged_foreign,
            Err(e) => {
                tracing::error!(stack = ?label, error = %e, "journal: cannot read whether redeploy asked for a deployment");
                return self.unavailable(label, &outcome, seen);
            }
        };
        if outcome.provider == wit::Provider::Github && outcome.event == "deployment" {
            let noted: Vec<&StackConfig> = stacks
                .iter()
                .copied()
                .filter(|s| !judged_foreign.contains(&s.name))
                .collect();
            self.note_deployment_event(&noted, delivery);
        }

        // A signed manual trigger sent to the hook URL deploys once per
        // signed time, as a signed redeploy from history does: a
        // replay of it is refused for twice the time its signature is
        // accepted. (The dashboard's and `trigger --local`'s, made in this
        // process, cannot be replayed.)
        let signed_trigger = match delivery {
            wit::Delivery::Http(http)
                if hook_token.is_some()
                    && outcome.provider == wit::Provider::Manual
                    && outcome.signature == wit::SignatureScheme::RedeploySha256 =>
            {
                signed_trigger_identity(http)
            }
            _ => None,
        };
        let identity = identity.or_else(|| match delivery {
            wit::Delivery::Http(http) if outcome.delivery.is_none() => {
                let empty_trigger = outcome.provider == wit::Provider::Manual
                    && http.body.iter().all(u8::is_ascii_whitespace);
                if !empty_trigger {
                    Some(ReplayIdentity {
                        bytes: &http.body,
                        window: replay_window(&config, &outcome),
                        on: "its body (its sender gives no delivery id)",
                    })
                } else {
                    signed_trigger.as_deref().map(|bytes| ReplayIdentity {
                        bytes,
                        window: crate::rollback::MAX_SKEW * 2,
                        on: "its stack and signed time",
                    })
                }
            }
            _ => None,
        });
        let mut accepted = false;
        let mut decisions = Vec::with_capacity(outcome.decisions.len());
        for Planned { mut entry, step } in plan(&outcome, stacks, identity, now_ms()) {
            match step {
                Step::Skip => {}
                Step::RequestDeployment {
                    event,
                    body,
                    deploy,
                } => {
                    let once_per_commit = polls(stacks, &event.stack);
                    match self.request_deployment(event, body, &deploy, once_per_commit) {
                        Ok(Inserted::New(id)) => {
                            accepted = true;
                            entry["state"] = json!("deployment-requested");
                            entry["github_request_id"] = json!(id);
                        }
                        Ok(Inserted::Duplicate(id)) => {
                            entry["state"] = json!("duplicate");
                            entry["reason"] = json!(if once_per_commit {
                                format!(
                                    "commit {} was already asked GitHub for a deployment (request #{id}): the stack polls and is pushed to, and each commit is asked for once",
                                    event.sha.as_deref().unwrap_or("")
                                )
                            } else {
                                format!(
                                    "delivery {} already asked GitHub for a deployment (request #{id})",
                                    event.delivery.as_deref().unwrap_or("")
                                )
                            });
                        }
                        Err(e) => {
                            tracing::error!(stack = %event.stack, error = %e, "journal: cannot record a deployment request");
                            return self.unavailable(label, &outcome, seen);
                        }
                    }
                }
                Step::Deploy {
                    event,
                    mut new,
                    mut admission,
                } => {
                    // A deployment's event carries no push: its commit is
                    // ordered by the push kept with its request, and deployed
                    // as of that push's branch or tag.
                    // Unread, the deploy would run as of no ref (unchecked by
                    // the runner, in the lane of manual triggers): answered
                    // 503, for GitHub's redelivery or the catch-up to retry.
                    let kept = match event.github_deployment_id.map(|d| self.kept_push(d, &new)) {
                        None => None,
                        Some(Ok(kept)) => kept,
                        Some(Err(e)) => {
                            tracing::error!(stack = %event.stack, error = %e, "journal: cannot read the push of a deployment");
                            return self.unavailable(label, &outcome, seen);
                        }
                    };
                    if let Some(kept) = &kept {
                        if plan::take_ref_of_push(&mut new, &kept.deploy) {
                            tracing::debug!(stack = %event.stack, git_ref = ?new.git_ref, "a deployment's deploy takes the ref of its push");
                        }
                    }
                    match self.journal.admit_deploy_to_run(
                        &new,
                        {
                            // A stack that polls sees each push twice (the webhook
                            // and the poll): its head commit deploys once. A GitHub
                            // deployment's event always runs (GitHub waits for
                            // its statuses).
                            let polls =
                                polls(stacks, &event.stack) && event.github_deployment_id.is_none();
                            // And an image it polls arrives twice too: by its
                            // registry's webhook and by the poll; an image
                            // pushed by digest alone deploys each digest once.
                            // (A delivery admitted before is a duplicate whatever
                            // its digest: no registry is asked about it.)
                            admission.image = stacks
                                .iter()
                                .find(|s| s.name == event.stack && event.image.is_some())
                                .filter(|_| event.github_deployment_id.is_none())
                                .filter(|_| {
                                    !polls
                                        || !self
                                            .journal
                                            .admitted_before(&new, &admission)
                                            .unwrap_or(false)
                                })
                                .and_then(|s| {
                                    image::claim(s, event, delivery, &outcome.images, seen_at_ms)
                                });
                            if let Some(commit) = admission.commit.as_mut() {
                                commit.once |= polls;
                                if let (None, Some(kept)) = (&commit.before, &kept) {
                                    commit.before = kept.before.clone();
                                    commit.forced = kept.forced;
                                    commit.sender_reports_forced = kept.sender_reports_forced;
                                }
                            }
                            &admission
                        },
                        self.sink.placer(),
                    ) {
                        Ok((Admitted::Inserted(Inserted::New(id)), queued)) => {
                            match self.queue_new(id, queued, &mut entry) {
                                Some(queued) => accepted |= queued,
                                None => return self.unavailable(label, &outcome, seen),
                            }
                        }
                        // Deploys now; statuses go to the deployment the request
                        // creates, recorded in the same transaction.
                        Ok((Admitted::Requested { deploy_id, request }, queued)) => {
                            if let (Inserted::New(request_id), Some(n)) = (request, &self.notifier)
                            {
                                n.create_deployment(request_id);
                            }
                            match self.queue_new(deploy_id, queued, &mut entry) {
                                Some(queued) => accepted |= queued,
                                None => return self.unavailable(label, &outcome, seen),
                            }
                        }
                        Ok((
                            Admitted::Replayed {
                                first_seen_ms,
                                deploy_id,
                            },
                            _,
                        )) => {
                            entry["deploy_id"] = json!(deploy_id);
                            entry["state"] = json!("duplicate");
                            let ago = Duration::from_secs(
                                u64::try_from(now_ms().saturating_sub(first_seen_ms) / 1000)
                                    .unwrap_or(0),
                            );
                            entry["reason"] = json!(format!(
                                "this exact {} delivery was already accepted {} ago{}; it is \
                             deduplicated on {} for {}",
                                outcome.provider.as_str(),
                                humantime::format_duration(ago),
                                deploy_id
                                    .map_or_else(String::new, |id| format!(" as deploy #{id}")),
                                identity.map_or("what it signed", |i| i.on),
                                humantime::format_duration(
                                    identity.map_or(Duration::ZERO, |i| i.window)
                                ),
                            ));
                        }
                        Ok((Admitted::Older { deploy_id, reason }, _)) => {
                            self.metrics
                                .deploy_state(crate::journal::DeployState::Queued);
                            self.metrics
                                .deploy_state(crate::journal::DeployState::Cancelled);
                            if let Some(n) = &self.notifier {
                                use crate::journal::DeployObserver as _;
                                n.changed(
                                    deploy_id,
                                    crate::journal::DeployState::Cancelled,
                                    Some(&reason),
                                );
                            }
                            entry["deploy_id"] = json!(deploy_id);
                            entry["state"] = json!("cancelled");
                            entry["reason"] = json!(reason);
                        }
                        Ok((Admitted::SameCommit { deploy_id }, _)) => {
                            entry["deploy_id"] = json!(deploy_id);
                            entry["state"] = json!("duplicate");
                            entry["reason"] = json!(match (&event.sha, &admission.image) {
                            (None, Some(claim)) if claim.kind == crate::journal::ImageClaimKind::Polled => format!(
                                "image {} at {} is already deploy #{deploy_id} (for that digest or one seen after it): the stack polls the image and its registry calls the hook, and each digest deploys once",
                                claim.image, claim.digest
                            ),
                            (None, Some(claim)) => format!(
                                "image {} is already deploy #{deploy_id}: an image pushed by digest deploys each digest once per services and profile, and never again once the image moved on to a later digest or a tag (the same push delivered again, by another delivery id or another webhook, deploys nothing; `redeploy trigger {} --redeploy ID` redeploys a deploy of `redeploy history`)",
                                event.image.as_deref().unwrap_or(&claim.image), event.stack
                            ),
                            _ => format!(
                                "commit {} of {} is already deploy #{deploy_id}: each push deploys once (the same push delivered again, by another delivery id, another webhook or a poll, deploys nothing; `redeploy trigger` redeploys)",
                                event.sha.as_deref().unwrap_or(""),
                                event.ref_.as_deref().unwrap_or("")
                            ),
                        });
                        }
                        Ok((Admitted::Inserted(Inserted::Duplicate(id)), _)) => {
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
                            return self.unavailable(label, &outcome, seen);
                        }
                    }
                }
            }
            decisions.push(entry);
        }
        let status = if accepted { 202 } else { 200 };
        let body = json!({
            "provider": outcome.provider.as_str(),
            "event": outcome.event,
            "delivery": outcome.delivery,
            "decisions": decisions,
        });
        self.metrics.delivery(
            outcome.provider.as_str(),
            if accepted { "deploy" } else { "skip" },
        );
        let recording = self.record(
            label,
            Some(outcome.provider.as_str()),
            Some(&outcome.event),
            outcome.delivery.as_deref(),
            status,
            &body,
            seen,
        );
        Dispatched {
            status,
            body,
            recording,
        }
    }

    /// Counts the deploy `id` the journal just admitted as queued, names it
    /// in `entry` and hands it (`queued`, as the admission read and maybe
    /// placed it, [`Journal::admit_deploy_to_run`]) to the runner
    /// ([`Dispatcher::hand_to_runner`]).
    fn queue_new(&self, id: i64, queued: Option<ToRun>, entry: &mut Value) -> Option<bool> {
        self.metrics
            .deploy_state(crate::journal::DeployState::Queued);
        entry["deploy_id"] = json!(id);
        self.hand_to_runner(id, queued, entry)
    }

    /// Hands the deploy `id` the journal just admitted (`queued`, as the
    /// admission read and maybe placed it) to the sink, recording in
    /// `entry` whether it was queued or cancelled at once (and why).
    /// `Some(true)` when it will run; `None` when the admission could not
    /// read it (the caller answers 503).
    fn hand_to_runner(&self, id: i64, queued: Option<ToRun>, entry: &mut Value) -> Option<bool> {
        let Some(queued) = queued else {
            tracing::error!(
                deploy = id,
                "journal: the admission did not read back the deploy it queued"
            );
            return None;
        };
        let enqueued = match queued.placed {
            Some(placed) => self.sink.placed(&queued.record, placed),
            None => self.sink.accept(&queued.record),
        };
        Some(match enqueued {
            Enqueued::Queued => {
                entry["state"] = json!("queued");
                true
            }
            Enqueued::Cancelled(reason) => {
                entry["state"] = json!("cancelled");
                entry["reason"] = json!(reason);
                false
            }
        })
    }

    /// Cancels deploy `id` for `reason` (an operator's "Cancel"; the caller
    /// has authorized it): a queued deploy at once, a running one by asking
    /// its runner, on whichever replica, to stop it. Blocking.
    pub fn cancel(
        &self,
        id: i64,
        reason: &str,
    ) -> Result<crate::journal::CancelOutcome, crate::journal::JournalError> {
        use crate::journal::CancelOutcome;
        let outcome = self.journal.cancel_deploy(id, reason, now_ms())?;
        match &outcome {
            CancelOutcome::Cancelled(superseded) => {
                let ended =
                    std::iter::once((id, reason.to_owned())).chain(superseded.iter().cloned());
                for (id, reason) in ended {
                    self.metrics
                        .deploy_state(crate::journal::DeployState::Cancelled);
                    self.sink.cancelled(id, &reason, true);
                }
            }
            CancelOutcome::Requested => self.sink.cancelled(id, reason, false),
            CancelOutcome::AlreadyOver(_) | CancelOutcome::NotFound => {}
        }
        Ok(outcome)
    }

    fn unavailable(
        &self,
        label: Option<&str>,
        outcome: &wit::Outcome,
        request: Option<&dyn Fn(u16) -> Option<RequestRecord>>,
    ) -> Dispatched {
        self.metrics
            .delivery(outcome.provider.as_str(), "journal-failure");
        let body = error_body(
            "journal-unavailable",
            "the journal cannot record this deploy; retry later",
        );
        let recording = self.record(
            label,
            Some(outcome.provider.as_str()),
            Some(&outcome.event),
            outcome.delivery.as_deref(),
            503,
            &body,
            request,
        );
        Dispatched {
            status: 503,
            body,
            recording,
        }
    }
}
