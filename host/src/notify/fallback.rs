//! What the outbox's holder does when GitHub continuous deployment would
//! otherwise lose a push (a stack that waits for the `deployment` event):
//!
//! - a deployment request GitHub could not take is tried again with
//!   exponential back-off ([`request_retry_wait`]) until its stack's
//!   `retry_request_for` has passed since the push (the sender defers its
//!   outbox row, `Journal::defer_outbox_row`, which holds back no other);
//! - a request that failed for good (refused, or still not taken by then)
//!   deploys the push directly or gives up, as `on_request_failure` says;
//!   GitHub's own decisions about the commit (409, 202 merged) are never
//!   overridden, only recorded so;
//! - a created deployment whose `deployment` event has not come within the
//!   stack's `event_wait` runs from the journal, once, and reports its
//!   statuses to that deployment.
//!
//! All of it is journal state ([`crate::journal::RequestFallback`]), done
//! in the transaction that admits the deploy, so it survives restarts and
//! happens once whichever process holds the lease; each is logged once, by
//! the process that did it, and counted
//! (`redeploy_github_request_fallbacks_total{stack,action}`).

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, OnRequestFailure, MIN_EVENT_WAIT};
use crate::journal::{
    deployment_delivery_key, now_ms, Admitted, DeploymentRequest, FallbackRun, FellBack, Inserted,
    Journal, OpenRequest, RequestFallback, RequestState, OPEN_REQUESTS_BATCH,
};
use crate::metrics::Metrics;
use crate::runner::{Enqueued, Runner};

use super::Settings;

/// The wait before the second try of a deployment request GitHub did not
/// take (after the client's own quick retries); it doubles with each try.
/// Long enough that a GitHub incident is not hammered.
pub const REQUEST_RETRY_FIRST: Duration = Duration::from_secs(5);

/// The longest wait between two tries of a deployment request: an outage
/// that lasts is still noticed within minutes of its end.
pub const REQUEST_RETRY_MAX: Duration = Duration::from_secs(5 * 60);

/// How often the holder looks for requests to fall back on: a second, so
/// a short `event_wait` (the tests') is kept to within about that.
pub const FALLBACK_LOOK_EVERY: Duration = Duration::from_secs(1);

/// The most doublings of [`REQUEST_RETRY_FIRST`] counted: far past
/// [`REQUEST_RETRY_MAX`] already, and `2^16` cannot overflow the `u32`.
const MAX_RETRY_DOUBLINGS: i64 = 16;

/// The wait in milliseconds taken for an `event_wait` too long for an
/// `i64` (never, as configured): far in the future, yet added to a time
/// without overflowing.
const UNREACHABLE_WAIT_MS: i64 = i64::MAX / 4;

/// The wait before try `attempt + 1` of a deployment request after try
/// `attempt` (1-based) failed transiently: [`REQUEST_RETRY_FIRST`] doubled
/// per try, at most [`REQUEST_RETRY_MAX`].
pub fn request_retry_wait(attempt: i64) -> Duration {
    let doublings =
        u32::try_from(attempt.saturating_sub(1).clamp(0, MAX_RETRY_DOUBLINGS)).unwrap_or(u32::MAX);
    REQUEST_RETRY_FIRST
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(REQUEST_RETRY_MAX)
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(UNREACHABLE_WAIT_MS)
}

/// What a request that failed for good does: its fallback, and the reason
/// of the deploy it runs (none for one that runs nothing). `policy` is the
/// stack's `on_request_failure`; `None` when the stack has no
/// `[stacks.github]` any more (nothing runs).
pub(super) fn decide(
    request: &DeploymentRequest,
    policy: Option<OnRequestFailure>,
) -> (RequestFallback, Option<String>) {
    match (request.state, policy) {
        // GitHub decided about the commit: never overridden.
        (RequestState::Conflict | RequestState::Merged, _) => {
            (RequestFallback::NotOverridden, None)
        }
        (_, Some(OnRequestFailure::Deploy)) => (
            RequestFallback::DeployedDirectly,
            Some(format!(
                "deployed directly: GitHub deployment request failed: {}",
                crate::text::one_line(request.detail.as_deref().unwrap_or(request.state.as_str()))
            )),
        ),
        (_, Some(OnRequestFailure::GiveUp) | None) => (RequestFallback::GaveUp, None),
    }
}

/// Where the deploys the journal runs go: the server's runner.
pub(super) struct Fallbacks {
    pub runner: Runner,
    pub metrics: Arc<Metrics>,
}

impl Fallbacks {
    /// One look: every request to fall back on, then every created
    /// deployment whose event is overdue. A journal failure is logged and
    /// left for the next look.
    pub fn look(&self, journal: &Journal, settings: &Settings) {
        let config = &settings.config;
        let now = now_ms();
        // Page by id, so requests that wait longer never hold back later
        // ones that are due.
        let mut after = 0;
        loop {
            match journal.requests_to_fall_back(after, now) {
                Ok(open) => {
                    let full = open.len() == OPEN_REQUESTS_BATCH;
                    for o in &open {
                        after = o.request.id;
                        // A `pending` request no row will answer failed once
                        // its stack's `retry_request_for` is over.
                        if o.request.state == RequestState::Pending {
                            let retry_for = config
                                .stack(&o.request.asked.stack)
                                .and_then(|s| s.github.as_ref())
                                .map_or(0, |gh| millis(gh.retry_request_for));
                            if o.request.asked.created_at_ms.saturating_add(retry_for) > now {
                                continue;
                            }
                        }
                        self.fall_back(journal, config, o);
                    }
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "journal: cannot read failed deployment requests");
                    break;
                }
            }
        }
        let min_wait = millis(MIN_EVENT_WAIT);
        let mut after = 0;
        loop {
            match journal.requests_awaiting_event(now - min_wait, after) {
                Ok(open) => {
                    let full = open.len() == OPEN_REQUESTS_BATCH;
                    for o in &open {
                        after = o.request.id;
                        self.run_created(journal, config, o, now);
                    }
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "journal: cannot read deployments awaiting their event");
                    break;
                }
            }
        }
    }

    /// A request that failed for good: deploy directly, give up, or record
    /// GitHub's decision.
    fn fall_back(&self, journal: &Journal, config: &Config, open: &OpenRequest) {
        let r = &open.request;
        let stack = r.asked.stack.as_str();
        let policy = config
            .stack(stack)
            .and_then(|s| s.github.as_ref())
            .map(|gh| gh.on_request_failure);
        let (fallback, reason) = decide(r, policy);
        let at = now_ms();
        let run = reason.as_ref().map(|reason| {
            open.deploy
                .to_run(r.asked.delivery_id.clone(), reason.clone(), at)
        });
        let done = journal.fall_back(
            r.id,
            fallback,
            run.as_ref().map(|(deploy, admission)| FallbackRun {
                deploy,
                admission,
                link: false,
            }),
            at,
        );
        let detail = crate::text::one_line(r.detail.as_deref().unwrap_or(""));
        match done {
            Ok(FellBack::Recorded(admitted)) => {
                let fallback = if reason.is_some() && admitted.is_none() {
                    RequestFallback::Superseded
                } else {
                    fallback
                };
                self.count(stack, fallback);
                let deploy = self.queue(journal, admitted.as_ref());
                match fallback {
                    RequestFallback::Superseded => {
                        tracing::warn!(%stack, request = r.id, "GitHub deployment request failed ({}): {detail}; not deployed directly: a later push of the stack deployed first", r.state.as_str())
                    }
                    RequestFallback::DeployedDirectly => {
                        tracing::warn!(%stack, request = r.id, deploy = ?deploy, "deployed directly: GitHub deployment request failed ({}): {detail}", r.state.as_str())
                    }
                    RequestFallback::GaveUp => {
                        tracing::warn!(%stack, request = r.id, "GitHub deployment request failed ({}): {detail}; nothing deploys (on_request_failure = \"give-up\")", r.state.as_str())
                    }
                    _ => {
                        tracing::warn!(%stack, request = r.id, "GitHub did not create the deployment ({}): {detail}; nothing deploys: GitHub's decision about the commit is not overridden", r.state.as_str())
                    }
                }
            }
            Ok(FellBack::AlreadyDone | FellBack::EventArrived(_)) => {}
            Err(e) => {
                tracing::error!(%stack, request = r.id, error = %e, "journal: cannot fall back on a failed deployment request")
            }
        }
    }

    /// A created deployment whose event is overdue (by its stack's
    /// `event_wait`): run it from the journal, linked to the request.
    fn run_created(&self, journal: &Journal, config: &Config, open: &OpenRequest, now: i64) {
        let r = &open.request;
        let stack = r.asked.stack.as_str();
        let Some(deployment) = r.deployment_id else {
            return;
        };
        let Some(gh) = config.stack(stack).and_then(|s| s.github.as_ref()) else {
            // Nothing would ever run it: recorded, so it is not looked at
            // again.
            match journal.fall_back(r.id, RequestFallback::GaveUp, None, now) {
                Ok(FellBack::Recorded(_)) => {
                    self.count(stack, RequestFallback::GaveUp);
                    tracing::warn!(%stack, request = r.id, deployment, "GitHub deployment {deployment}: gave up: the stack has no [stacks.github] any more; nothing deploys");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(%stack, request = r.id, error = %e, "journal: cannot give up on a created deployment")
                }
            }
            return;
        };
        if r.updated_at_ms.saturating_add(millis(gh.event_wait)) > now {
            return;
        }
        let reason = format!(
            "GitHub deployment {deployment} run from the journal: its deployment event did not arrive within {} ({})",
            humantime::format_duration(gh.event_wait),
            open.deploy.deploy.reason
        );
        let (deploy, admission) =
            open.deploy
                .to_run(Some(deployment_delivery_key(deployment)), reason, now);
        let run = FallbackRun {
            deploy: &deploy,
            admission: &admission,
            link: true,
        };
        match journal.fall_back(r.id, RequestFallback::RanWithoutEvent, Some(run), now) {
            Ok(FellBack::Recorded(None)) => {
                self.count(stack, RequestFallback::Superseded);
                tracing::warn!(%stack, request = r.id, deployment, "GitHub deployment {deployment}: its deployment event did not arrive within {}; not run: a later push of the stack deployed first", humantime::format_duration(gh.event_wait));
            }
            Ok(FellBack::Recorded(admitted)) => {
                self.count(stack, RequestFallback::RanWithoutEvent);
                let id = self.queue(journal, admitted.as_ref());
                tracing::warn!(%stack, request = r.id, deployment, deploy = ?id, "GitHub deployment {deployment}: its deployment event did not arrive within {}; running it from the journal", humantime::format_duration(gh.event_wait));
            }
            Ok(FellBack::EventArrived(_) | FellBack::AlreadyDone) => {}
            Err(e) => {
                tracing::error!(%stack, request = r.id, error = %e, "journal: cannot run a created deployment")
            }
        }
    }

    fn count(&self, stack: &str, fallback: RequestFallback) {
        self.metrics
            .github_request_fallback(stack, fallback.action());
    }

    /// Hands a deploy the journal just admitted to the runner; its id.
    fn queue(&self, journal: &Journal, admitted: Option<&Admitted>) -> Option<i64> {
        match admitted? {
            Admitted::Inserted(Inserted::New(id)) => {
                self.metrics
                    .deploy_state(crate::journal::DeployState::Queued);
                match journal.deploy(*id).ok().flatten() {
                    Some(record) => {
                        if let Enqueued::Cancelled(reason) = self.runner.enqueue(&record) {
                            tracing::info!(deploy = id, "{}", crate::text::one_line(&reason));
                        }
                    }
                    None => tracing::error!(deploy = id, "journal: cannot read back a deploy"),
                }
                Some(*id)
            }
            Admitted::Older { deploy_id, .. } => {
                self.metrics
                    .deploy_state(crate::journal::DeployState::Queued);
                self.metrics
                    .deploy_state(crate::journal::DeployState::Cancelled);
                Some(*deploy_id)
            }
            Admitted::Inserted(Inserted::Duplicate(id))
            | Admitted::Requested { deploy_id: id, .. }
            | Admitted::SameCommit { deploy_id: id } => Some(*id),
            Admitted::Replayed { deploy_id, .. } => *deploy_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::NewDeploymentRequest;

    fn request(state: RequestState, detail: &str) -> DeploymentRequest {
        DeploymentRequest {
            id: 1,
            asked: NewDeploymentRequest {
                stack: "web".into(),
                delivery_id: Some("d".into()),
                deploy_id: None,
                git_ref: None,
                sha: None,
                request_json: "{}".into(),
                created_at_ms: 1,
            },
            state,
            deployment_id: None,
            http_status: None,
            detail: Some(detail.into()),
            updated_at_ms: 1,
            fallback: None,
            fallback_deploy_id: None,
        }
    }

    #[test]
    fn retries_back_off_to_a_bound() {
        assert_eq!(request_retry_wait(1), REQUEST_RETRY_FIRST);
        assert_eq!(request_retry_wait(2), REQUEST_RETRY_FIRST * 2);
        assert_eq!(request_retry_wait(4), REQUEST_RETRY_FIRST * 8);
        assert_eq!(request_retry_wait(40), REQUEST_RETRY_MAX);
        assert_eq!(request_retry_wait(0), REQUEST_RETRY_FIRST);
    }

    #[test]
    fn github_decisions_about_the_commit_are_never_overridden() {
        for state in [RequestState::Conflict, RequestState::Merged] {
            let (fallback, reason) = decide(&request(state, "no"), Some(OnRequestFailure::Deploy));
            assert_eq!((fallback, reason), (RequestFallback::NotOverridden, None));
        }
        for state in [
            RequestState::Invalid,
            RequestState::Denied,
            RequestState::Failed,
        ] {
            let (fallback, reason) = decide(
                &request(state, "GitHub answered 422: x"),
                Some(OnRequestFailure::Deploy),
            );
            assert_eq!(fallback, RequestFallback::DeployedDirectly);
            assert_eq!(
                reason.as_deref(),
                Some("deployed directly: GitHub deployment request failed: GitHub answered 422: x")
            );
            let given_up = decide(&request(state, "x"), Some(OnRequestFailure::GiveUp));
            assert_eq!(given_up, (RequestFallback::GaveUp, None));
            assert_eq!(
                decide(&request(state, "x"), None),
                (RequestFallback::GaveUp, None)
            );
        }
    }
}
