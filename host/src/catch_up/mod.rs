//! GitHub catch-up: deliveries of a stack's repository webhook that did
//! not arrive (the server was down, a proxy answered 502, the network
//! failed) are asked for again, since GitHub does not retry by itself.
//!
//! For each stack with `[stacks.github]` whose webhook `redeploy github
//! connect` recorded ([`crate::journal::GithubHook`]), at start and then
//! every `catch_up_every` (jittered, doubled after failures like polling:
//! [`crate::poll::tips::next_wait`]), the server lists the webhook's
//! recent deliveries, newest first, page by page back to the last one a
//! look settled (the first look: back to when `connect` recorded it), and
//! asks GitHub to redeliver each one whose GUID the journal never received
//! or that no listed delivery of that GUID got a 2xx answer for
//! ([`plan::plan`]). A redelivery keeps its `X-GitHub-Delivery`, so the
//! journal's dedupe holds: a push that did arrive is answered `duplicate`.
//!
//! Each redelivery is claimed in the journal before GitHub is asked, so
//! none is asked for twice, by this process after a restart or by another
//! replica; a claim whose answer was never recorded is asked again only
//! when GitHub lists no redelivery of it. A look holds the journal lease
//! `catch-up:<stack>`, so replicas take turns. GitHub's rate limits are
//! waited out by [`GithubClient`] within its bounds; a look asks for at
//! most [`MAX_REDELIVERIES_PER_LOOK`] and reads at most
//! [`MAX_DELIVERY_PAGES`] pages.

pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{GithubConfig, LiveConfig};
use crate::github::{ApiError, GithubClient, HookDelivery};
use crate::journal::{now_ms, GithubHook, Journal, NewRedelivery, RedeliveryState};
use crate::metrics::Metrics;
use plan::{considered_guids, plan, settled_up_to, Since};

/// How often the scheduler looks at which stacks are due.
pub const CATCH_UP_TICK: Duration = Duration::from_secs(1);

/// The most pages of deliveries one look reads (100 a page): deliveries
/// older than that since the last look are not looked at, and the log
/// says so.
pub const MAX_DELIVERY_PAGES: usize = 10;

/// The most redeliveries one look asks for; the rest wait for the next.
pub const MAX_REDELIVERIES_PER_LOOK: usize = 100;

/// How long one look's lease lasts: longer than [`LOOK_BUDGET`] plus one
/// request's retries and rate-limit waits, so no other process looks
/// meanwhile.
pub const CATCH_UP_LEASE_TTL: Duration = Duration::from_secs(15 * 60);

/// How long one look goes on asking for redeliveries; the rest waits for
/// the next look.
pub const LOOK_BUDGET: Duration = Duration::from_secs(5 * 60);

/// The pause between two redelivery requests: GitHub asks integrators to
/// wait a second between requests that change something.
pub const REDELIVERY_PACE: Duration = Duration::from_secs(1);

/// What one look did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LookReport {
    /// Deliveries listed.
    pub listed: usize,
    /// The deliveries GitHub was asked to redeliver (GUID, event, the
    /// status GitHub recorded for it).
    pub redelivered: Vec<(String, String, i64)>,
    /// Deliveries needing a redelivery left for the next look.
    pub left: usize,
    /// More deliveries were made since the last look than one look reads.
    pub truncated: bool,
}

/// Why a look failed.
#[derive(Debug, thiserror::Error)]
pub enum LookError {
    /// GitHub could not be asked, or refused.
    #[error(transparent)]
    Github(#[from] ApiError),
    /// The journal could not be read or written.
    #[error("journal: {0}")]
    Journal(String),
}

fn journal_error(e: impl std::fmt::Display) -> LookError {
    LookError::Journal(e.to_string())
}

/// The 4xx status with which GitHub refused to redeliver one delivery
/// (400, 404 or 422: too old, gone, not redeliverable); `None` for a
/// failure that is not about the delivery (the token, the network).
fn refused(e: &ApiError) -> Option<u16> {
    match e {
        ApiError::Rejected { status, .. } if (400..500).contains(status) => Some(*status),
        ApiError::Denied { status: 404, .. } => Some(404),
        _ => None,
    }
}

/// Whether GitHub may have taken a request whose answer did not come
/// (the network failed, or it answered 5xx).
fn answer_lost(e: &ApiError) -> bool {
    matches!(e, ApiError::Unreachable { .. } | ApiError::BadAnswer(_))
}

/// The lease a look at `stack`'s webhook holds.
fn lease_name(stack: &str) -> String {
    format!("catch-up:{stack}")
}

/// Whether the webhook the journal recorded is still the stack's: on the
/// repository and API its `[stacks.github]` names now.
pub fn hook_matches(hook: &GithubHook, gh: &GithubConfig) -> bool {
    hook.repository == gh.repository && hook.api_url.trim_end_matches('/') == gh.api_url
}

/// One look at `hook`: lists what was delivered since the last look and
/// asks GitHub to redeliver what did not arrive, recording each claim and
/// how far the list is settled.
pub async fn look_once(
    journal: &Arc<Journal>,
    metrics: Option<&Metrics>,
    client: &GithubClient,
    hook: &GithubHook,
) -> Result<LookReport, LookError> {
    let since = match hook.cursor_id {
        Some(id) => Since::After(id),
        None => Since::Time(hook.connected_at_ms),
    };
    let mut listed: Vec<HookDelivery> = Vec::new();
    let mut page = None;
    let mut truncated = true;
    for _ in 0..MAX_DELIVERY_PAGES {
        let answer = client.hook_deliveries(hook.hook_id, page).await?;
        let reached_end = answer.deliveries.iter().any(|d| !since.includes(d));
        listed.extend(answer.deliveries);
        page = answer.next;
        if reached_end || page.is_none() {
            truncated = false;
            break;
        }
    }
    let guids = considered_guids(&listed, since);
    let (j, g, stack, hook_id) = (
        journal.clone(),
        guids.clone(),
        hook.stack.clone(),
        hook.hook_id,
    );
    let (received, claims) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::journal::JournalError>((
            j.deliveries_received(&g)?,
            j.redelivery_claims(&stack, hook_id, &g)?,
        ))
    })
    .await
    .map_err(journal_error)?
    .map_err(journal_error)?;
    let planned = plan(
        &listed,
        since,
        &received,
        &claims,
        MAX_REDELIVERIES_PER_LOOK,
    );
    for guid in &planned.seen_redelivered {
        let (j, s, g) = (journal.clone(), hook.stack.clone(), guid.clone());
        blocking(move || j.settle_redelivery(&s, &g, Some(RedeliveryState::Asked))).await?;
    }
    for failed in &planned.failed_redeliveries {
        tracing::warn!(
            stack = %hook.stack, hook = hook.hook_id, delivery = %failed.guid,
            event = %failed.event, answered = failed.status_code,
            "the redelivery catch-up asked for did not arrive either; it is not asked for again (redeliver it from the webhook's page on GitHub)"
        );
        if let Some(m) = metrics {
            m.catch_up.redelivery_failed(&hook.stack, &failed.event);
        }
        let (j, s, g) = (journal.clone(), hook.stack.clone(), failed.guid.clone());
        blocking(move || j.settle_redelivery(&s, &g, Some(RedeliveryState::RedeliveryFailed)))
            .await?;
    }
    let mut report = LookReport {
        listed: listed.len(),
        left: planned.left,
        truncated,
        ..LookReport::default()
    };
    let mut unsettled = Vec::new();
    let mut failure = None;
    let budget = Instant::now() + LOOK_BUDGET;
    for (n, r) in planned.redeliver.iter().enumerate() {
        let d = &r.delivery;
        // After a failure, or past the look's budget (well within its
        // lease), the rest waits for the next look.
        if failure.is_some() || Instant::now() >= budget {
            unsettled.push(d.id);
            continue;
        }
        if n > 0 {
            tokio::time::sleep(REDELIVERY_PACE).await;
        }
        let claim = NewRedelivery {
            stack: hook.stack.clone(),
            guid: d.guid.clone(),
            hook_id: hook.hook_id,
            github_delivery_id: d.id,
            event: d.event.clone(),
            at_ms: now_ms(),
        };
        let (j, c, doubt) = (journal.clone(), claim.clone(), r.in_doubt);
        if !blocking(move || j.claim_redelivery(&c, doubt)).await? {
            // Another process claimed it meanwhile: it asks.
            continue;
        }
        let asked = client.redeliver(hook.hook_id, d.id).await;
        let settled = match &asked {
            Ok(()) => Some(Some(RedeliveryState::Asked)),
            Err(e) => match refused(e) {
                Some(status) => Some(Some(RedeliveryState::Refused(status))),
                // Not taken (rate limited, the token refused): asked again
                // by the next look.
                None if !answer_lost(e) => Some(None),
                // The answer was lost: the claim stays in doubt, and the
                // next look asks again only if GitHub lists no redelivery.
                None => None,
            },
        };
        if let Some(settled) = settled {
            let (j, s, g) = (journal.clone(), hook.stack.clone(), d.guid.clone());
            blocking(move || j.settle_redelivery(&s, &g, settled)).await?;
        }
        match asked {
            Ok(()) => {
                tracing::info!(
                    stack = %hook.stack, hook = hook.hook_id, delivery = %d.guid,
                    event = %d.event, answered = d.status_code,
                    "asked GitHub to redeliver a webhook delivery that did not arrive"
                );
                if let Some(m) = metrics {
                    m.catch_up.redelivered(&hook.stack, &d.event);
                }
                report
                    .redelivered
                    .push((d.guid.clone(), d.event.clone(), d.status_code));
            }
            Err(e) if refused(&e).is_some() => {
                // GitHub will not redeliver this one (too old, gone): the
                // look goes on with the others.
                tracing::warn!(
                    stack = %hook.stack, hook = hook.hook_id, delivery = %d.guid,
                    event = %d.event, error = %e,
                    "GitHub refused to redeliver a webhook delivery that did not arrive; it is not asked for again"
                );
                if let Some(m) = metrics {
                    m.catch_up.redelivery_failed(&hook.stack, &d.event);
                }
            }
            Err(e) => {
                unsettled.push(d.id);
                failure = Some(e);
            }
        }
    }
    let cursor = settled_up_to(&planned, &unsettled);
    if let Some(e) = failure {
        return Err(e.into());
    }
    let (j, s) = (journal.clone(), hook.stack.clone());
    blocking(move || j.record_catch_up(&s, hook_id, cursor, now_ms())).await?;
    Ok(report)
}

/// Runs a journal call off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::journal::JournalError> + Send + 'static,
) -> Result<T, LookError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(journal_error)?
        .map_err(journal_error)
}

/// When a stack's next look is due.
struct Due {
    at: Instant,
    every: Duration,
    failures: u32,
}

/// Looks at every stack whose webhook is recorded and whose
/// `catch_up_every` is set, as each falls due (the first at once), one
/// look at a time, until aborted.
pub fn spawn(
    config: LiveConfig,
    journal: Arc<Journal>,
    metrics: Arc<Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The lease holder: unique per process, or no catch-up at all (a
        // holder shared by replicas would let them look at once).
        let holder = match crate::tokens::generate_token() {
            Ok(token) => format!("{}:{token}", std::process::id()),
            Err(e) => {
                tracing::error!(error = %e, "GitHub catch-up is off: no randomness for its lease holder");
                return;
            }
        };
        let mut schedule: HashMap<String, Due> = HashMap::new();
        // What each stack was last told about its webhook (said once).
        let mut told: HashMap<String, Told> = HashMap::new();
        let mut tick = tokio::time::interval(CATCH_UP_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let live = config.current();
            let wanted: Vec<(String, Duration)> = live
                .stacks
                .iter()
                .filter_map(|s| Some((s.name.clone(), s.github.as_ref()?.catch_up_every?)))
                .collect();
            schedule.retain(|name, _| wanted.iter().any(|(n, _)| n == name));
            let now = Instant::now();
            for (name, every) in wanted {
                let due = schedule.entry(name.clone()).or_insert(Due {
                    at: now,
                    every,
                    failures: 0,
                });
                if due.every != every {
                    (due.every, due.at) = (every, now);
                }
                if due.at > now {
                    continue;
                }
                let Some(gh) = live.stack(&name).and_then(|s| s.github.clone()) else {
                    continue;
                };
                let failures = look(
                    &journal,
                    &metrics,
                    &holder,
                    &name,
                    &gh,
                    &mut told,
                    due.failures,
                )
                .await;
                due.failures = failures;
                due.at = Instant::now()
                    + crate::poll::tips::next_wait(every, failures, crate::poll::jitter());
            }
        }
    })
}

/// Why a stack's webhook cannot be caught up on, said once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Told {
    /// No webhook recorded (`github connect` records it).
    NoWebhook,
    /// The recorded webhook is on another repository or API.
    Mismatched,
}

/// One scheduled look at `stack`'s webhook after `before` failures in a
/// row: logs a change of state once and counts it. Returns the failures
/// in a row now.
async fn look(
    journal: &Arc<Journal>,
    metrics: &Metrics,
    holder: &str,
    stack: &str,
    gh: &GithubConfig,
    told: &mut HashMap<String, Told>,
    before: u32,
) -> u32 {
    let (j, s) = (journal.clone(), stack.to_owned());
    let hook = match blocking(move || j.github_hook(&s)).await {
        Ok(hook) => hook,
        Err(e) => {
            tracing::warn!(%stack, error = %e, "GitHub catch-up: the journal cannot be read");
            return before + 1;
        }
    };
    let why_not = match &hook {
        None => Some(Told::NoWebhook),
        Some(hook) if !hook_matches(hook, gh) => Some(Told::Mismatched),
        Some(_) => None,
    };
    let Some(hook) = hook.filter(|_| why_not.is_none()) else {
        let why_not = why_not.unwrap_or(Told::NoWebhook);
        if told.insert(stack.to_owned(), why_not) != Some(why_not) {
            match why_not {
                Told::NoWebhook => {
                    tracing::info!(%stack, "GitHub catch-up is waiting: no webhook is recorded for the stack; run `redeploy github connect {stack}` once to record it")
                }
                Told::Mismatched => {
                    tracing::warn!(%stack, "GitHub catch-up is waiting: the recorded webhook is on another repository or API than [stacks.github] names; run `redeploy github connect {stack}` again")
                }
            }
        }
        return 0;
    };
    told.remove(stack);
    let client = match GithubClient::new(gh) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(%stack, error = %e, "GitHub catch-up: no client");
            return before + 1;
        }
    };
    let (j, l, h) = (journal.clone(), lease_name(stack), holder.to_owned());
    match blocking(move || j.take_lease(&l, &h, CATCH_UP_LEASE_TTL)).await {
        Ok(true) => {}
        // Another process looks.
        Ok(false) => return before,
        Err(e) => {
            tracing::warn!(%stack, error = %e, "GitHub catch-up: the journal cannot be reached");
            return before + 1;
        }
    }
    let looked = look_once(journal, Some(metrics), &client, &hook).await;
    let (j, l, h) = (journal.clone(), lease_name(stack), holder.to_owned());
    let _ = blocking(move || j.release_lease(&l, &h)).await;
    match looked {
        Ok(report) => {
            metrics.catch_up.looked(stack, 0, now_ms());
            if before > 0 {
                tracing::info!(%stack, "GitHub catch-up works again");
            }
            if report.truncated {
                tracing::warn!(%stack, pages = MAX_DELIVERY_PAGES, "GitHub catch-up: more deliveries since the last look than one look reads; the oldest were not looked at");
            }
            if report.left > 0 {
                tracing::info!(%stack, left = report.left, "GitHub catch-up: more redeliveries left for the next look");
            }
            0
        }
        Err(e) => {
            let message = e.to_string();
            let (j, s, m, id) = (
                journal.clone(),
                stack.to_owned(),
                message.clone(),
                hook.hook_id,
            );
            let failures = blocking(move || j.record_catch_up_failure(&s, id, &m, now_ms()))
                .await
                .unwrap_or(i64::from(before) + 1);
            metrics.catch_up.looked(stack, failures, now_ms());
            if failures == 1 {
                tracing::warn!(%stack, error = %message, "GitHub catch-up failed; retrying with back-off (logged again only once it works)");
            }
            u32::try_from(failures).unwrap_or(u32::MAX)
        }
    }
}
