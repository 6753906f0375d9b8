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
//! - but first, a request whose last try may have reached GitHub (it was
//!   sent, and failed on the network, a timeout or a 5xx, not on a clean
//!   refusal) is looked for on GitHub, as a row in doubt is
//!   ([`super::in_doubt::deployment_on_github`]): a deployment found is
//!   adopted (the request is recorded created with it) and takes the normal
//!   path below, so the push never deploys both directly and by its event.
//!   While GitHub cannot be asked, nothing is done, for at most the
//!   stack's `event_wait` of failed asking ([`Doubt`]); then the request
//!   falls back as if nothing was found, saying so;
//! - a created deployment whose `deployment` event has not come within the
//!   stack's `event_wait` runs from the journal, once, and reports its
//!   statuses to that deployment.
//!
//! All of it is journal state ([`crate::journal::RequestFallback`]), done
//! in the transaction that admits the deploy, so it survives restarts and
//! happens once whichever process holds the lease; each is logged once, by
//! the process that did it, and counted
//! (`redeploy_github_request_fallbacks_total{stack,action}`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::config::{Config, OnRequestFailure, MIN_EVENT_WAIT};
use crate::journal::{
    deployment_delivery_key, now_ms, Admitted, DeploymentRequest, FallbackRun, FellBack, Inserted,
    Journal, OpenRequest, RequestFallback, RequestState, OPEN_REQUESTS_BATCH,
};
use crate::metrics::Metrics;
use crate::runner::{Enqueued, Runner};

use super::in_doubt::deployment_on_github;
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

/// How long after a request failed for good GitHub is first asked whether
/// its last try created the deployment: a creation still under way when
/// its answer was lost (a 502 from GitHub's front end while the back end
/// went on, a try the client stopped waiting for) has that long to be
/// stored and listed.
const LOST_ANSWER_GRACE: Duration = Duration::from_secs(5);

/// How the detail of a request adopted from GitHub begins (`history`
/// shows it); the failure it had recorded follows.
const ADOPTED: &str = "created (found on GitHub after the answer to its last try was lost)";

/// The fallback metric's action of a request adopted from GitHub.
const ADOPTED_ACTION: &str = "adopted";

/// HTTP statuses from this one on are GitHub's (or its front end's)
/// failures, which may come after it created the deployment; below it, a
/// status is a refusal of the request, which created nothing.
const FIRST_SERVER_ERROR: u16 = 500;

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

/// Whether request `request`, which failed for good, may have created a
/// GitHub deployment all the same: it was sent (`attempts` tries, `None`
/// when unknown), and its last failure is one that may come after GitHub
/// created it: no answer (the network, a timeout), a 5xx, a rate limit
/// after such tries, or an answer that could not be read (all recorded
/// without an HTTP status, or with a 5xx). A clean refusal (401/403/404,
/// 409, 422, any other 4xx) and GitHub's decisions created nothing.
fn may_have_created(request: &DeploymentRequest, attempts: Option<i64>) -> bool {
    let sent = attempts.is_none_or(|n| n > 0);
    let answered_in_doubt = match request.state {
        RequestState::Pending => true,
        RequestState::Failed => request
            .http_status
            .is_none_or(|status| status >= FIRST_SERVER_ERROR),
        RequestState::Created
        | RequestState::Merged
        | RequestState::Conflict
        | RequestState::Invalid
        | RequestState::Denied => false,
    };
    sent && answered_in_doubt && request.deployment_id.is_none()
}

/// A request in doubt whose check failed: GitHub could not be asked
/// whether its last try created the deployment.
///
/// The rule: a request is never deployed directly (nor given up on) while
/// GitHub may hold its deployment and can say so, since that deployment's
/// event would deploy the push a second time; nor is a push ever lost. So
/// a failed check leaves the request for a later look, asked again with
/// [`request_retry_wait`]'s back-off, until the checks have failed for the
/// stack's `event_wait` (counted from the end of the first that failed).
/// Then it falls back as if nothing was found, after one more check that
/// failed too: GitHub unreachable from here for that long has most likely
/// been unable to send a deployment's event too, and `event_wait` is how
/// long the stack already trusts a created deployment's event to take.
/// The risk left: GitHub unreachable from redeploy for `event_wait` while
/// it still holds a deployment the lost answer created and later sends
/// (or redelivers) its event; the push then deploys twice.
///
/// Kept in the memory of the process holding the outbox lease: a new
/// holder (a restart, another replica) counts afresh, which only delays a
/// fallback, never skips one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Doubt {
    /// When the first check that failed ended (ms since the epoch).
    since_ms: i64,
    /// How many checks failed in a row.
    failures: i64,
    /// When to ask again (ms since the epoch).
    next_check_ms: i64,
}

impl Doubt {
    /// The doubt after a check that failed at `now_ms`, following `earlier`
    /// (`None`: the first failure).
    fn failed(earlier: Option<Doubt>, now_ms: i64) -> Doubt {
        let failures = earlier.map_or(1, |d| d.failures.saturating_add(1));
        Doubt {
            since_ms: earlier.map_or(now_ms, |d| d.since_ms),
            failures,
            next_check_ms: now_ms.saturating_add(millis(request_retry_wait(failures))),
        }
    }

    /// Whether GitHub has been unaskable for `bound_ms` at `now_ms`: the
    /// request falls back.
    fn expired(&self, now_ms: i64, bound_ms: i64) -> bool {
        now_ms >= self.since_ms.saturating_add(bound_ms)
    }

    /// Whether to ask again at `now_ms`: once the back-off is over, or the
    /// bound is (the last check before falling back).
    fn due(&self, now_ms: i64, bound_ms: i64) -> bool {
        now_ms >= self.next_check_ms || self.expired(now_ms, bound_ms)
    }
}

/// What asking GitHub about a request in doubt came to.
#[derive(Debug, PartialEq, Eq)]
enum Checked {
    /// Nothing to ask (or nothing to ask with), or GitHub holds no
    /// deployment of it: it falls back.
    NotCreated,
    /// Adopted, or to be asked at a later look: nothing more now.
    Leave,
    /// GitHub could not be asked for the bound (see [`Doubt`]): it falls
    /// back, saying why (the words go into the reason and the log).
    Unchecked(String),
}

/// Where the deploys the journal runs go: the server's runner.
pub(super) struct Fallbacks {
    runner: Runner,
    metrics: Arc<Metrics>,
    /// The requests whose check failed, by id ([`Doubt`]).
    doubts: Mutex<HashMap<i64, Doubt>>,
}

impl Fallbacks {
    /// Fallbacks whose deploys go to `runner`, counted in `metrics`.
    pub fn new(runner: Runner, metrics: Arc<Metrics>) -> Fallbacks {
        Fallbacks {
            runner,
            metrics,
            doubts: Mutex::new(HashMap::new()),
        }
    }

    fn doubts(&self) -> MutexGuard<'_, HashMap<i64, Doubt>> {
        self.doubts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One look: every request to fall back on (each that may have created
    /// a deployment looked for on GitHub first), then every created
    /// deployment whose event is overdue. A journal failure is logged and
    /// left for the next look.
    pub async fn look(&self, journal: &Journal, settings: &Settings) {
        let config = &settings.config;
        let now = now_ms();
        // The stacks whose GitHub could not be asked during this look, with
        // why: their other requests are not asked again until the next.
        let mut unaskable = HashMap::new();
        let mut looked_at = HashSet::new();
        let mut complete = true;
        // Page by id, so requests that wait longer never hold back later
        // ones that are due.
        let mut after = 0;
        loop {
            match journal.requests_to_fall_back(after, now) {
                Ok(open) => {
                    let full = open.len() == OPEN_REQUESTS_BATCH;
                    for o in &open {
                        after = o.request.id;
                        looked_at.insert(o.request.id);
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
                        let unchecked = match self.check(journal, settings, o, &mut unaskable).await
                        {
                            Checked::NotCreated => None,
                            Checked::Leave => continue,
                            Checked::Unchecked(why) => Some(why),
                        };
                        self.fall_back(journal, config, o, unchecked.as_deref());
                    }
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "journal: cannot read failed deployment requests");
                    complete = false;
                    break;
                }
            }
        }
        // A request no longer to fall back on (done, by this process or
        // another) is no longer in doubt.
        if complete {
            self.doubts().retain(|id, _| looked_at.contains(id));
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

    /// Before request `open` falls back: whether GitHub holds a deployment
    /// its last try created, when it may have ([`may_have_created`]). One
    /// found is adopted; a check that fails leaves the request for a later
    /// look, within the bound [`Doubt`] describes. `unaskable`: the stacks
    /// whose GitHub could not be asked during this look, and why.
    async fn check(
        &self,
        journal: &Journal,
        settings: &Settings,
        open: &OpenRequest,
        unaskable: &mut HashMap<String, String>,
    ) -> Checked {
        let r = &open.request;
        let stack = r.asked.stack.as_str();
        let github = settings.config.stack(stack).and_then(|s| s.github.as_ref());
        let (Some(github), Some(client)) = (github, settings.clients.get(stack)) else {
            // Nothing to ask with; nothing would run a deployment found.
            return Checked::NotCreated;
        };
        if !may_have_created(r, open.attempts) {
            return Checked::NotCreated;
        }
        let bound = millis(github.event_wait);
        let now = now_ms();
        if now < r.updated_at_ms.saturating_add(millis(LOST_ANSWER_GRACE)) {
            return Checked::Leave;
        }
        let earlier = self.doubts().get(&r.id).copied();
        if earlier.is_some_and(|d| !d.due(now, bound)) {
            return Checked::Leave;
        }
        let asked = match unaskable.get(stack) {
            Some(why) => Err(why.clone()),
            None => deployment_on_github(client, journal, r.id, &r.asked.request_json)
                .await
                .map_err(|e| e.to_string()),
        };
        match asked {
            Ok(Some(deployment)) => {
                self.doubts().remove(&r.id);
                self.adopt(journal, r, deployment);
                Checked::Leave
            }
            Ok(None) => {
                self.doubts().remove(&r.id);
                Checked::NotCreated
            }
            Err(why) => {
                unaskable.insert(stack.to_owned(), why.clone());
                let now = now_ms();
                let doubt = Doubt::failed(earlier, now);
                let wait = humantime::format_duration(github.event_wait);
                if earlier.is_none() {
                    tracing::warn!(%stack, request = r.id, "cannot ask GitHub whether the last try created the deployment: {}; nothing falls back before GitHub answers, or the asking has failed for {wait}", crate::text::one_line(&why));
                } else {
                    tracing::debug!(%stack, request = r.id, failures = doubt.failures, "still cannot ask GitHub whether the last try created the deployment: {}", crate::text::one_line(&why));
                }
                if doubt.expired(now, bound) {
                    self.doubts().remove(&r.id);
                    return Checked::Unchecked(format!(
                        "GitHub could not be asked for {wait} whether its last try created the deployment: {}",
                        crate::text::one_line(&why)
                    ));
                }
                self.doubts().insert(r.id, doubt);
                Checked::Leave
            }
        }
    }

    /// Records request `r` created with `deployment`, which GitHub holds:
    /// its event runs it, or the journal after `event_wait`
    /// ([`Fallbacks::run_created`]).
    fn adopt(&self, journal: &Journal, r: &DeploymentRequest, deployment: u64) {
        let stack = r.asked.stack.as_str();
        let failure = crate::text::one_line(r.detail.as_deref().unwrap_or(r.state.as_str()));
        let detail = format!("{ADOPTED}; it had failed: {failure}");
        match journal.adopt_deployment(r.id, deployment, &detail, now_ms()) {
            Ok(true) => {
                self.metrics.github_request_fallback(stack, ADOPTED_ACTION);
                tracing::warn!(%stack, request = r.id, deployment, "GitHub deployment {deployment} adopted: found on GitHub, created by the last try of a request that failed ({failure}); its deployment event deploys it, not a direct deploy")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(%stack, request = r.id, deployment, error = %e, "journal: cannot adopt a GitHub deployment")
            }
        }
    }

    /// A request that failed for good: deploy directly, give up, or record
    /// GitHub's decision. `unchecked`: why GitHub could not be asked
    /// whether its last try created the deployment, if it could not.
    fn fall_back(
        &self,
        journal: &Journal,
        config: &Config,
        open: &OpenRequest,
        unchecked: Option<&str>,
    ) {
        let r = &open.request;
        let stack = r.asked.stack.as_str();
        let policy = config
            .stack(stack)
            .and_then(|s| s.github.as_ref())
            .map(|gh| gh.on_request_failure);
        let (fallback, reason) = decide(r, policy);
        let reason = match (reason, unchecked) {
            (Some(reason), Some(why)) => Some(format!("{reason}; {why}")),
            (reason, _) => reason,
        };
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
        let mut detail = crate::text::one_line(r.detail.as_deref().unwrap_or("")).into_owned();
        if let Some(why) = unchecked {
            detail = format!("{detail}; {why}");
        }
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
                repository: None,
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
    fn only_a_sent_request_that_failed_without_a_clean_refusal_may_have_created_one() {
        let failed = |status: Option<u16>| DeploymentRequest {
            http_status: status,
            ..request(RequestState::Failed, "x")
        };
        // No answer, or a 5xx: GitHub may have created it.
        assert!(may_have_created(&failed(None), Some(1)));
        assert!(may_have_created(&failed(Some(502)), Some(3)));
        // Unknown whether it was sent (no outbox row kept): asked too.
        assert!(may_have_created(&failed(None), None));
        assert!(may_have_created(
            &request(RequestState::Pending, "x"),
            Some(2)
        ));
        // Never sent; a clean refusal; GitHub's answers: nothing created.
        assert!(!may_have_created(&failed(None), Some(0)));
        assert!(!may_have_created(&failed(Some(400)), Some(1)));
        for state in [
            RequestState::Invalid,
            RequestState::Denied,
            RequestState::Conflict,
            RequestState::Merged,
            RequestState::Created,
        ] {
            assert!(
                !may_have_created(&request(state, "x"), Some(1)),
                "{state:?}"
            );
        }
        // One with a deployment has nothing to find.
        let with_one = DeploymentRequest {
            deployment_id: Some(1000),
            ..failed(None)
        };
        assert!(!may_have_created(&with_one, Some(1)));
    }

    #[test]
    fn a_failed_check_is_asked_again_with_back_off_and_falls_back_after_the_bound() {
        let first_ms = millis(REQUEST_RETRY_FIRST);
        let bound = 60_000;
        let d = Doubt::failed(None, 1_000);
        assert_eq!(
            d,
            Doubt {
                since_ms: 1_000,
                failures: 1,
                next_check_ms: 1_000 + first_ms
            }
        );
        assert!(!d.due(1_000 + first_ms - 1, bound));
        assert!(d.due(1_000 + first_ms, bound));
        assert!(!d.expired(1_000 + bound - 1, bound));
        // The next failure keeps the start and doubles the wait.
        let again = Doubt::failed(Some(d), 7_000);
        assert_eq!(
            (again.since_ms, again.failures, again.next_check_ms),
            (1_000, 2, 7_000 + 2 * first_ms)
        );
        // At the bound a check is due whatever the back-off; one failed
        // then falls back.
        let short = 2_000;
        assert!(d.due(1_000 + short, short));
        assert!(Doubt::failed(Some(d), 1_000 + short).expired(1_000 + short, short));
        assert!(!Doubt::failed(Some(d), 1_000 + short - 1).expired(1_000 + short - 1, short));
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
