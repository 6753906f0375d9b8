//! Polling git repositories for new commits and registries for new image
//! digests (`[stacks.poll]`), for senders that cannot call the hook: a
//! forge behind a firewall, a repository without webhooks, an image whose
//! webhook only its owner can add.
//!
//! Every `every` (jittered, doubled after failures: [`tips::next_wait`])
//! the server asks each repository a stack follows for its branches and
//! tags ([`git::ls_remote`]) and compares them with the tips the journal
//! remembers ([`crate::journal::PollSource`]). Each ref that moved becomes
//! a delivery of provider `poll` (`before` the tip seen last, `after` the
//! new one) that the dispatcher evaluates in the component like any push:
//! branch and tag matching, services, the order of commits, the queue. A
//! source never polled before only has its tips recorded: the first look
//! deploys nothing. A restart compares with the tips recorded before it,
//! so a push made while the server was down is seen at the first look.
//!
//! The changes are dispatched before the new tips are recorded: a server
//! that dies in between sees the same changes again, and a commit already
//! at the stack's head deploys once ([`crate::journal::CommitClaim::once`]),
//! as it does when the webhook and the poll both see a push, or when
//! several replicas poll one journal.
//!
//! An image source is looked at the same way ([`registry::manifest_digest`]):
//! its tips are one "ref", the tag, pointing to the manifest digest, and a
//! new digest is a poll delivery of an image change, which the component
//! evaluates like the registry's push of that tag. A registry answering
//! `429` or `503` with `Retry-After` is not asked again before that
//! ([`PollFailure::retry_after`]).

pub mod git;
pub mod image;
pub mod registry;
pub mod tips;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::config::{LiveConfig, PollConfig, PollKind, PollTarget, StackConfig};
use crate::dispatch::Dispatcher;
use crate::journal::{now_ms, Journal};
use crate::plugin::wit;
use git::PollError;
use registry::RegistryError;
use tips::{changes, next_wait, rebased, RefChange, RefFilter, Tips};

/// How often the scheduler looks at which sources are due.
pub const POLL_TICK: Duration = Duration::from_secs(1);

/// Polls that may run at once, over every stack.
pub const MAX_POLLS_AT_ONCE: usize = 4;

/// What one look at a source found and did.
#[derive(Clone, Debug)]
pub struct PollReport {
    /// The branches and tags it has (an image source: 1, its tag).
    pub refs: usize,
    /// What it saw: each ref and its object id, or the tag and its digest.
    pub now: Tips,
    /// The source had never been polled: its tips were only recorded.
    pub first: bool,
    /// Each ref that moved since the last look, with what the dispatcher
    /// answered for it (its HTTP-like status and the decision document), or
    /// `None` on a dry run.
    pub moved: Vec<(RefChange, Option<(u16, Value)>)>,
}

/// Why a poll failed: the source, or the journal.
#[derive(Debug, thiserror::Error)]
pub enum PollFailure {
    /// The repository could not be asked.
    #[error(transparent)]
    Source(#[from] PollError),
    /// The registry could not be asked, or its answer was not a digest.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The journal could not be read or written, or a change could not be
    /// queued; the tips are not recorded, so the next look tries again.
    #[error("{0}")]
    Journal(String),
}

impl PollFailure {
    /// How long the source asked to be left alone (a registry's
    /// `Retry-After`): the next look waits at least this long.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PollFailure::Registry(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// The poll delivery of `change` to `target` of `stack`: for an image
/// source, the tag (`change.name`) now pointing to the digest
/// `change.new`.
pub fn delivery(stack: &str, target: &PollTarget, change: &RefChange) -> wit::Delivery {
    if let PollKind::Image(_) = &target.kind {
        return wit::Delivery::Poll(wit::PollObservation {
            stack: stack.to_owned(),
            change: wit::PollChange::Image(wit::ImagePoll {
                repository: target.repository.clone(),
                tag: change.name.clone(),
                digest: change.new.clone(),
            }),
            query: String::new(),
        });
    }
    wit::Delivery::Poll(wit::PollObservation {
        stack: stack.to_owned(),
        change: wit::PollChange::Git(wit::GitPoll {
            // As the component sees the stack's: a local path through its
            // symbolic links.
            repository: crate::stacks::resolved_repository(&Some(target.repository.clone()))
                .unwrap_or_else(|| target.repository.clone()),
            update: wit::RefUpdate {
                old: change.old.clone(),
                new: change.new.clone(),
                name: change.name.clone(),
            },
        }),
        query: String::new(),
    })
}

/// The name of the registry token kept for `target` of `stack`: one per
/// source, shared by its looks and by the webhook's question
/// ([`crate::dispatch`] asks which digest a registry push left its tag at).
pub fn token_key(stack: &str, target: &PollTarget) -> String {
    format!("{stack}\n{}", target.url)
}

/// What the journal remembers of `target` of `stack`: the tips the last
/// successful look saw, if one did, and the filter it kept them through
/// (`None`: every ref, as looks recorded them before filters, or an image
/// source).
fn remembered(
    journal: &Journal,
    stack: &str,
    target: &PollTarget,
) -> Result<Option<(Tips, Option<RefFilter>)>, PollFailure> {
    let source = journal
        .poll_source(stack, &target.url)
        .map_err(|e| PollFailure::Journal(e.to_string()))?;
    let Some((json, filter)) = source.and_then(|s| Some((s.tips_json?, s.ref_filter))) else {
        return Ok(None);
    };
    let unreadable = |what: &str| {
        PollFailure::Journal(format!(
            "the journal's {what} of {} are not readable",
            target.url
        ))
    };
    let tips = serde_json::from_str(&json).map_err(|_| unreadable("tips"))?;
    let filter = match filter {
        Some(json) => Some(RefFilter::from_json(&json).ok_or_else(|| unreadable("followed refs"))?),
        None => None,
    };
    Ok(Some((tips, filter)))
}

/// The refs of `target`, a git repository, that `stack` follows
/// ([`RefFilter`]): the `branch` and `tags` patterns of the stack, or of
/// its services, that name that repository (as `target.repository` is
/// written: each way a repository is named is a source of its own); none
/// for an image source.
pub fn followed_refs(stack: &StackConfig, target: &PollTarget) -> Option<RefFilter> {
    if !matches!(target.kind, PollKind::Git) {
        return None;
    }
    let of =
        |repository: &Option<String>| repository.as_deref() == Some(target.repository.as_str());
    let top = of(&stack.repository).then_some((&stack.branch, &stack.tags));
    let services = stack
        .services
        .iter()
        .filter(|s| of(&s.repository))
        .map(|s| (&s.branch, &s.tags));
    let patterns: Vec<_> = top.into_iter().chain(services).collect();
    Some(RefFilter::of(
        patterns.iter().filter_map(|(branch, _)| branch.as_deref()),
        patterns.iter().filter_map(|(_, tags)| tags.as_deref()),
    ))
}

/// Looks at `target` of `stack` once: asks git, compares with the tips the
/// journal remembers, and (unless `dispatcher` is `None`, a dry run that
/// changes nothing) dispatches each change and records the new tips.
pub async fn poll_once(
    journal: &Arc<Journal>,
    dispatcher: Option<&Dispatcher>,
    stack: &StackConfig,
    poll: &PollConfig,
    target: &PollTarget,
) -> Result<PollReport, PollFailure> {
    let looked_at = now_ms();
    let filter = followed_refs(stack, target);
    let now = match (&target.kind, &filter) {
        (PollKind::Image(image), _) => {
            let key = token_key(&stack.name, target);
            let digest = registry::manifest_digest(image, poll, &key).await?;
            Tips::from([(image.tag.clone(), digest)])
        }
        (PollKind::Git, filter) => {
            git::ls_remote(
                target,
                poll,
                filter.as_ref().unwrap_or(&RefFilter::default()),
            )
            .await?
        }
    };
    let (j, name, t) = (journal.clone(), stack.name.clone(), target.clone());
    let seen = tokio::task::spawn_blocking(move || remembered(&j, &name, &t))
        .await
        .map_err(|e| PollFailure::Journal(e.to_string()))??;
    let first = seen.is_none();
    // What to compare with. When the refs followed changed since the last
    // look: the tips of the refs still followed, and the refs newly
    // followed as they are now, recorded so before anything is dispatched
    // (below), so that a look failing after it compares with them too, and
    // a push to a newly followed ref after this look deploys.
    let refilter = seen
        .as_ref()
        .is_some_and(|(_, seen_filter)| *seen_filter != filter);
    let base = match (&seen, &filter) {
        (Some((seen, seen_filter)), Some(filter)) => {
            Some(rebased(seen, seen_filter.as_ref(), &now, filter))
        }
        (Some((seen, _)), None) => Some(seen.clone()),
        (None, _) => None,
    };
    let mut moved = base
        .as_ref()
        .map(|base| changes(base, &now))
        .unwrap_or_default();
    if let PollKind::Image(_) = &target.kind {
        // A tag is never gone (a registry without it answers 404, a
        // failure): only a new digest is a change.
        moved.retain(|c| now.get(&c.name) == Some(&c.new));
    }
    let Some(dispatcher) = dispatcher else {
        return Ok(PollReport {
            refs: now.len(),
            now,
            first,
            moved: moved.into_iter().map(|c| (c, None)).collect(),
        });
    };
    let tips_json = |tips: &Tips| serde_json::to_string(tips).expect("tips serialize");
    let rebase = base.filter(|_| refilter).map(|base| tips_json(&base));
    // The tips are written again when they, or the refs followed, changed
    // (otherwise only the look's time is).
    let json = (first || refilter || !moved.is_empty()).then(|| tips_json(&now));
    let filter_json = filter.as_ref().map(RefFilter::to_json);
    let (d, s, t) = (dispatcher.clone(), stack.clone(), target.clone());
    let journal = journal.clone();
    tokio::task::spawn_blocking(move || {
        let record = |tips: Option<&str>| {
            journal
                .record_poll_success(
                    &s.name,
                    &t.url,
                    tips.map(|tips| (tips, filter_json.as_deref())),
                    now_ms(),
                )
                .map_err(|e| PollFailure::Journal(e.to_string()))
        };
        if let Some(rebase) = &rebase {
            record(Some(rebase))?;
        }
        let mut answered = Vec::with_capacity(moved.len());
        for change in moved {
            let done = d.dispatch_seen(&[&s], &delivery(&s.name, &t, &change), looked_at);
            // The journal could not take it: the next look sees it again.
            // Any other answer is final (a change the component fails on
            // would fail again, and hold back every ref after it).
            if done.status == 503 {
                return Err(PollFailure::Journal(format!(
                    "{} of {} could not be queued ({}): {}",
                    change.name,
                    t.url,
                    done.status,
                    done.body["message"].as_str().unwrap_or("")
                )));
            }
            answered.push((change, Some((done.status, done.body))));
        }
        record(json.as_deref())?;
        Ok(PollReport {
            refs: now.len(),
            now,
            first,
            moved: answered,
        })
    })
    .await
    .map_err(|e| PollFailure::Journal(e.to_string()))?
}

/// Where a polled source stands in the scheduler.
struct Due {
    at: Instant,
    /// The `every` it was scheduled with: a reload that changes it
    /// reschedules the source at once.
    every: Duration,
    /// The refs of a git source it was scheduled to follow: a reload that
    /// changes them looks at once, so that the refs newly followed are
    /// taken as they are as soon as they are followed ([`rebased`]).
    refs: Option<RefFilter>,
    /// Failures in a row (the wait doubles with them).
    failures: u32,
    /// A look is under way.
    running: bool,
}

/// A random number in -1..=1, for jitter.
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.0;
    }
    f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX) * 2.0 - 1.0
}

/// The journal lease one process holds while it looks at a source, so
/// that processes sharing a journal (replicas) never dispatch one
/// source's changes at once.
fn lease_name(stack: &str, url: &str) -> String {
    format!("poll:{stack}:{url}")
}

/// How long a look's lease lasts beyond `poll.timeout`: time to dispatch
/// what moved and record it.
pub const POLL_LEASE_EXTRA: Duration = Duration::from_secs(5 * 60);

/// The stack and source `(stack, url)` as the live configuration has them
/// now, if it still polls it.
fn current(
    config: &LiveConfig,
    (stack, url): &(String, String),
) -> Option<(StackConfig, PollTarget)> {
    let config = config.current();
    let stack = config.stack(stack)?.clone();
    let target = stack
        .poll
        .as_ref()?
        .sources
        .iter()
        .find(|t| &t.url == url)?
        .clone();
    Some((stack, target))
}

/// Polls every source of every stack with `[stacks.poll]` in the live
/// configuration, as each falls due, until aborted. A source's first look
/// comes at once; a reload that adds or removes a source, or changes its
/// `every`, takes effect at the next tick, and a look waiting for its turn
/// uses the configuration in force when its turn comes.
pub fn spawn(config: LiveConfig, dispatcher: Dispatcher) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The lease holder: unique per process, or no polling at all (a
        // holder shared by replicas would let them poll one source at once).
        let holder = match crate::tokens::generate_token() {
            Ok(token) => format!("{}:{token}", std::process::id()),
            Err(e) => {
                tracing::error!(error = %e, "polling is off: no randomness for its lease holder");
                return;
            }
        };
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_POLLS_AT_ONCE));
        let schedule = Arc::new(std::sync::Mutex::new(
            HashMap::<(String, String), Due>::new(),
        ));
        let holder: Arc<str> = holder.into();
        let mut tick = tokio::time::interval(POLL_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let live = config.current();
            let mut due = Vec::new();
            {
                let mut schedule = schedule.lock().expect("poll schedule");
                let wanted: Vec<((String, String), Duration, Option<RefFilter>)> = live
                    .stacks
                    .iter()
                    .filter_map(|s| s.poll.as_ref().map(|p| (s, p)))
                    .flat_map(|(s, p)| {
                        p.sources.iter().map(|t| {
                            let key = (s.name.clone(), t.url.clone());
                            (key, p.every, followed_refs(s, t))
                        })
                    })
                    .collect();
                schedule.retain(|key, _| wanted.iter().any(|(k, _, _)| k == key));
                let now = Instant::now();
                for (key, every, refs) in wanted {
                    let entry = schedule.entry(key.clone()).or_insert(Due {
                        at: now,
                        every,
                        refs: refs.clone(),
                        failures: 0,
                        running: false,
                    });
                    if entry.every != every {
                        (entry.every, entry.at) = (every, now);
                    }
                    if entry.refs != refs {
                        (entry.refs, entry.at) = (refs, now);
                    }
                    if !entry.running && entry.at <= now {
                        entry.running = true;
                        due.push((key, entry.failures));
                    }
                }
            }
            for (key, before) in due {
                let (slots, schedule, dispatcher, config, holder) = (
                    slots.clone(),
                    schedule.clone(),
                    dispatcher.clone(),
                    config.clone(),
                    holder.clone(),
                );
                tokio::spawn(async move {
                    let Ok(_slot) = slots.acquire_owned().await else {
                        return;
                    };
                    let followed = |found: &Option<(StackConfig, PollTarget)>| {
                        found
                            .as_ref()
                            .and_then(|(stack, target)| followed_refs(stack, target))
                    };
                    let found = current(&config, &key);
                    let looked_for = followed(&found);
                    let outcome = match found {
                        Some((stack, target)) => {
                            look(&dispatcher, &holder, &stack, &target, before).await
                        }
                        None => None,
                    };
                    let mut schedule = schedule.lock().expect("poll schedule");
                    if let Some(entry) = schedule.get_mut(&key) {
                        entry.running = false;
                        // A reload changed the refs followed while it
                        // looked: look again at once, to take the refs
                        // newly followed as they are now.
                        if followed(&current(&config, &key)) != looked_for {
                            entry.at = Instant::now();
                            return;
                        }
                        // Another process looked (it holds the lease): look
                        // again after `every`, as after a success.
                        let (failures, asked) = outcome.unwrap_or((entry.failures, None));
                        entry.failures = failures;
                        // A registry's `Retry-After` (bounded by
                        // `image::MAX_RETRY_AFTER`) holds the next look back
                        // at least that long.
                        let wait = next_wait(entry.every, failures, jitter())
                            .max(asked.unwrap_or(Duration::ZERO));
                        entry.at = Instant::now() + wait;
                    }
                });
            }
        }
    })
}

/// One scheduled look at `target` of `stack`, after `before` failures in
/// a row, under the source's lease for `holder`: polls, records a failure,
/// logs a change of state (failing, working again) once, and counts it.
/// Returns the failures in a row now and how long the source asked to be
/// left alone (`Retry-After`), or `None` when another process holds the
/// lease (it looks instead).
async fn look(
    dispatcher: &Dispatcher,
    holder: &str,
    stack: &StackConfig,
    target: &PollTarget,
    before: u32,
) -> Option<(u32, Option<Duration>)> {
    let journal = dispatcher.journal().clone();
    let metrics = dispatcher.metrics().clone();
    let poll = stack.poll.as_ref()?;
    let lease = lease_name(&stack.name, &target.url);
    let (j, l, h, ttl) = (
        journal.clone(),
        lease.clone(),
        holder.to_owned(),
        poll.timeout + POLL_LEASE_EXTRA,
    );
    match tokio::task::spawn_blocking(move || j.take_lease(&l, &h, ttl)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => return None,
        // Without the journal the look could not record anything.
        Ok(Err(e)) => {
            tracing::warn!(stack = %stack.name, source = %target.url, error = %e, "polling: the journal cannot be reached");
            return Some((before + 1, None));
        }
        Err(_) => return Some((before + 1, None)),
    }
    let looked = poll_once(&journal, Some(dispatcher), stack, poll, target).await;
    let (j, h) = (journal.clone(), holder.to_owned());
    let _ = tokio::task::spawn_blocking(move || j.release_lease(&lease, &h)).await;
    Some(match looked {
        Ok(report) => {
            metrics.poll(&stack.name, &target.url, 0, now_ms());
            if before > 0 {
                tracing::info!(stack = %stack.name, source = %target.url, "polling works again");
            }
            if report.first {
                tracing::info!(stack = %stack.name, source = %target.url, refs = report.refs, "polling: first look, tips recorded (nothing deploys)");
            }
            for (change, answer) in &report.moved {
                let (status, body) = answer.as_ref().map_or((0, &Value::Null), |(s, b)| (*s, b));
                let decision = &body["decisions"][0];
                tracing::info!(
                    stack = %stack.name, source = %target.url, r#ref = %change.name,
                    before = %change.old, after = %change.new, status,
                    state = decision["state"].as_str().unwrap_or(""),
                    "polling: a ref moved"
                );
            }
            (0, None)
        }
        Err(failure) => {
            let message = failure.to_string();
            let (j, name, url, m) = (
                journal.clone(),
                stack.name.clone(),
                target.url.clone(),
                message.clone(),
            );
            let failures = tokio::task::spawn_blocking(move || {
                j.record_poll_failure(&name, &url, &m, now_ms())
            })
            .await
            .ok()
            .and_then(Result::ok)
            // The journal cannot count: the scheduler does.
            .unwrap_or(i64::from(before) + 1);
            metrics.poll(&stack.name, &target.url, failures, now_ms());
            if failures == 1 {
                tracing::warn!(stack = %stack.name, source = %target.url, error = %message, "polling failed; retrying with back-off (logged again only once it works)");
            }
            (
                u32::try_from(failures).unwrap_or(u32::MAX),
                failure.retry_after(),
            )
        }
    })
}
