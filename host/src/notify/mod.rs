//! Telling the outside world about deploys: GitHub deployments and
//! deployment statuses for stacks with `[stacks.github]`, and Docker Hub's
//! `callback_url` for registry pushes.
//!
//! What to send is the journal's outbox ([`crate::journal::OutboxRow`]):
//! the transaction that journals a deployment request or a deploy's
//! transition also writes the rows it calls for, in the order they arose,
//! whichever process made it (a server, a hook's `run-queued`, another
//! replica). One process per journal sends them: the holder of the lease
//! [`OUTBOX_LEASE`], taken and renewed on the database's clock
//! ([`OUTBOX_LEASE_TTL`], [`OUTBOX_LEASE_RENEW`]). Every process runs a
//! [`Notifier`]; the one that gets the lease sends every row in id order
//! (so a deployment is created before its statuses are posted, and one
//! deployment's statuses arrive in order), woken at once by its own
//! process's rows and looking for other processes' every [`OUTBOX_POLL`];
//! the others try for the lease every [`OUTBOX_LEASE_POLL`]. A holder that
//! cannot renew stops sending at once; one that dies leaves the lease to
//! run out, and the next holder sends what it left, pending deployment
//! requests included.
//!
//! Each row is sent once. A sender that stops (is killed, or loses its
//! lease because the database stayed unreachable) after the receiver took
//! a row and before the journal recorded it as sent leaves the row claimed
//! and in doubt; the next holder asks GitHub whether it arrived before
//! sending it again ([`in_doubt`]), and sends a registry callback in
//! doubt again unchecked (it may arrive twice). The row's `attempts` shows
//! it.
//!
//! A deployment request GitHub did not take (unreachable, 5xx, rate
//! limited) is not settled but deferred, tried again with back-off within
//! its stack's `retry_request_for`; the rows after it are sent meanwhile,
//! and the statuses of a deploy that reports to it wait for it. While it
//! holds the lease, `serve`'s notifier also acts on requests that failed
//! for good and on created deployments whose event never came
//! ([`fallback`]). [`Notifier::finish`] sends what is due, and leaves what
//! waits to the next holder.
//!
//! Every row's result goes to the journal in the transaction that settles
//! it: what GitHub answered to each deployment request
//! (`github_deployment_requests`) and how each report went (`reports`).

mod fallback;
mod in_doubt;
mod links;
mod send;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::config::Config;
use crate::journal::{now_ms, Claim, DeployObserver, DeployState, Journal, OUTBOX_LEASE};
use crate::plugin::PluginRuntime;

pub use links::{LogLinks, LOG_KEY_NAME, LOG_LINK_KEY_CHARS};
use send::{Plan, Sender, Settings};

/// How long a Docker Hub callback may take.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The `context` Docker Hub shows for redeploy's callbacks.
pub const CALLBACK_CONTEXT: &str = "redeploy";

/// How long the outbox lease lasts unless renewed: after a holder dies,
/// this long passes (at most) before another process sends what it left.
/// Long enough that a busy database does not make a live holder lose it.
pub const OUTBOX_LEASE_TTL: Duration = Duration::from_secs(10);

/// How often the holder renews its lease: a third of
/// [`OUTBOX_LEASE_TTL`], so a renewal can be slow twice before the lease
/// runs out. Each claim of a row renews it too.
pub const OUTBOX_LEASE_RENEW: Duration = Duration::from_millis(3_300);

/// A send still under way this long before the holder's lease would run
/// out (by this process's clock, counted from before its last renewal
/// began, so never later than the database's) is abandoned: no process
/// sends while another may hold the lease.
pub const OUTBOX_LEASE_MARGIN: Duration = Duration::from_secs(2);

/// How often a process without the lease tries to take it: slowly, since
/// the holder is alive (or its lease runs out only after
/// [`OUTBOX_LEASE_TTL`]).
pub const OUTBOX_LEASE_POLL: Duration = Duration::from_secs(1);

/// How often the holder looks for rows other processes wrote (its own
/// process's rows wake it at once).
pub const OUTBOX_POLL: Duration = Duration::from_millis(500);

/// How long the sender waits after the journal failed before it tries
/// again.
pub const OUTBOX_RETRY: Duration = Duration::from_secs(1);

/// Rows read from the outbox at a time.
pub const OUTBOX_BATCH: usize = 64;

pub use fallback::{
    request_retry_wait, FALLBACK_LOOK_EVERY, REQUEST_RETRY_FIRST, REQUEST_RETRY_MAX,
};

/// A GitHub client for each stack of `config` with GitHub deployments.
fn settings_of(config: Arc<Config>) -> anyhow::Result<Settings> {
    let mut clients = std::collections::HashMap::new();
    for s in &config.stacks {
        if let Some(gh) = &s.github {
            clients.insert(s.name.clone(), crate::github::GithubClient::new(gh)?);
        }
    }
    Ok(Settings { config, clients })
}

/// This process's name as an outbox lease holder: host name, process id,
/// what it is, and a random part (a process id is reused after a reboot).
fn holder_name(role: &str) -> anyhow::Result<String> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned());
    let mut random = crate::tokens::generate_token()?;
    random.truncate(8);
    Ok(format!("{host}:{}:{role}:{random}", std::process::id()))
}

/// What the notifier's handle and its sending task share.
struct Shared {
    journal: Arc<Journal>,
    holder: String,
    /// Rung when this process wrote outbox rows.
    wake: Notify,
    settings: Mutex<Arc<Settings>>,
    /// Where deploys the journal runs itself go (a server's runner), once
    /// [`Notifier::run_fallbacks`] is called; without it (a hook's
    /// runner), requests are sent and retried but nothing falls back.
    fallbacks: std::sync::OnceLock<fallback::Fallbacks>,
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        match self.settings.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

/// This process's side of the outbox: it is told when the process wrote
/// rows, and sends the journal's rows whenever it holds the lease.
pub struct Notifier {
    shared: Arc<Shared>,
    links: LogLinks,
    /// `Some(deadline)` once [`Notifier::finish`] is called.
    stop: watch::Sender<Option<Instant>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The `[[notifications]]` sender, woken with this one.
    notifications: Arc<crate::notifications::Notifications>,
}

impl Notifier {
    /// Starts the sending task on the current tokio runtime. `stack` is
    /// the stack a hook's runner runs (`None` for a server); it only names
    /// the process in the lease table.
    pub fn start(
        config: Arc<Config>,
        journal: Arc<Journal>,
        runtime: Arc<PluginRuntime>,
        stack: Option<&str>,
    ) -> anyhow::Result<Arc<Notifier>> {
        let links = LogLinks::new(&config, &journal)?;
        let http = reqwest::Client::builder()
            .timeout(CALLBACK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let role = stack.map_or_else(|| "serve".to_owned(), |s| format!("run-queued {s}"));
        let shared = Arc::new(Shared {
            journal: journal.clone(),
            holder: holder_name(&role)?,
            wake: Notify::new(),
            settings: Mutex::new(Arc::new(settings_of(config.clone())?)),
            fallbacks: std::sync::OnceLock::new(),
        });
        let log_links = links.clone();
        let notifications = crate::notifications::Notifications::start(
            config.clone(),
            journal.clone(),
            Arc::new(move |id| log_links.url(id)),
            holder_name(&role)?,
        )?;
        let (stop, stopped) = watch::channel(None);
        let outbox = Outbox {
            shared: shared.clone(),
            sender: Sender {
                journal,
                runtime,
                links: links.clone(),
                http,
            },
            held_until: None,
            renew_at: Instant::now(),
            take_failed: false,
            look_at: Instant::now(),
        };
        let task = tokio::spawn(outbox.run(stopped));
        Ok(Arc::new(Notifier {
            shared,
            links,
            stop,
            task: Mutex::new(Some(task)),
            notifications,
        }))
    }

    /// The log links this notifier puts in statuses (the server checks them).
    pub fn log_links(&self) -> &LogLinks {
        &self.links
    }

    /// This process's name in the lease table.
    pub fn holder(&self) -> &str {
        &self.shared.holder
    }

    /// While this process holds the outbox lease, it also does what a
    /// failed deployment request or a created deployment whose event never
    /// came calls for ([`fallback`]): the deploys the journal runs then go
    /// to `runner`, counted in `metrics`. Called once, by `serve`; later
    /// calls change nothing.
    pub fn run_fallbacks(
        &self,
        runner: crate::runner::Runner,
        metrics: Arc<crate::metrics::Metrics>,
    ) {
        self.notifications.count_in(metrics.clone());
        let _ = self
            .shared
            .fallbacks
            .set(fallback::Fallbacks::new(runner, metrics));
    }

    /// Deployment request `id` was journaled (with its outbox row): send it
    /// if this process holds the lease, at once, or within
    /// [`crate::wakes::WAKE_COALESCE`] of its last pass when that sent
    /// nothing.
    pub fn create_deployment(&self, _id: i64) {
        self.shared.wake.notify_one();
    }

    /// Deploys the journal recovered as interrupted (their rows are
    /// written): send them now if this process holds the lease.
    pub fn interrupted(&self, _ids: &[i64]) {
        self.shared.wake.notify_one();
        self.notifications.wake();
    }

    /// A delivery to `stack`'s hook URL was refused for `reason` (a bad,
    /// missing or stale signature): told to the notification channels that
    /// opt in to `refused` ([`crate::notifications::probes`]).
    pub fn refused(&self, stack: &str, reason: &str) {
        self.notifications.refused(stack, reason);
    }

    /// Sends with `config` (its stacks' GitHub settings and callback hosts)
    /// from the next row on. An error (a GitHub client that cannot be
    /// built) changes nothing.
    pub fn reconfigure(&self, config: Arc<Config>) -> anyhow::Result<()> {
        let settings = Arc::new(settings_of(config.clone())?);
        self.notifications.reconfigure(config);
        match self.shared.settings.lock() {
            Ok(mut s) => *s = settings,
            Err(poisoned) => *poisoned.into_inner() = settings,
        }
        Ok(())
    }

    /// Sends, within `limit`, what the outbox holds up to now (taking the
    /// lease if it comes free; a live holder elsewhere sends it otherwise),
    /// then gives the lease up. What is left stays in the outbox for the
    /// next holder.
    pub async fn finish(&self, limit: Duration) {
        tokio::join!(self.finish_outbox(limit), self.notifications.finish(limit));
    }

    async fn finish_outbox(&self, limit: Duration) {
        let task = match self.task.lock() {
            Ok(mut t) => t.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        let _ = self.stop.send(Some(Instant::now() + limit));
        let Some(mut task) = task else { return };
        // The task keeps to the deadline itself; the slack covers a journal
        // call under way when it passes.
        if tokio::time::timeout(limit + OUTBOX_LEASE_POLL, &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = self
                .shared
                .journal
                .release_lease(OUTBOX_LEASE, &self.shared.holder);
            tracing::warn!("stopped before every report was sent; the rest stays in the outbox");
        }
    }
}

impl DeployObserver for Notifier {
    fn changed(&self, _deploy_id: i64, _state: DeployState, _detail: Option<&str>) {
        // The transition wrote its outbox rows and its notice; send them.
        self.shared.wake.notify_one();
        self.notifications.wake();
    }
}

/// Why a pass over the outbox ended.
enum Pass {
    /// It settled rows: look again at once.
    Progress,
    /// Nothing it could send: wait for news.
    Idle,
    /// The lease is gone: send nothing more.
    Lost,
    /// The journal failed: wait [`OUTBOX_RETRY`].
    Failed,
}

/// The sending task.
struct Outbox {
    shared: Arc<Shared>,
    sender: Sender,
    /// While this process holds the lease: when it runs out at the
    /// earliest, by this process's clock.
    held_until: Option<Instant>,
    /// When to renew the lease next.
    renew_at: Instant,
    /// Whether the last try to take the lease failed on the journal (so
    /// the failure is logged once, not every second).
    take_failed: bool,
    /// When to look for requests to fall back on next.
    look_at: Instant,
}

impl Outbox {
    async fn run(mut self, mut stop: watch::Receiver<Option<Instant>>) {
        let deadline = loop {
            if let Some(deadline) = *stop.borrow() {
                break deadline;
            }
            if self.held_until.is_none() && !self.take() {
                tokio::select! {
                    () = tokio::time::sleep(OUTBOX_LEASE_POLL) => {}
                    changed = stop.changed() => if changed.is_err() { break Instant::now() },
                }
                continue;
            }
            if self.held_until.is_some() && Instant::now() >= self.look_at {
                self.look_at = Instant::now() + FALLBACK_LOOK_EVERY;
                let shared = self.shared.clone();
                if let Some(fallbacks) = shared.fallbacks.get() {
                    // It may ask GitHub: only while the lease holds.
                    let settings = shared.settings();
                    let look = fallbacks.look(&shared.journal, &settings);
                    if self.while_held(look).await.is_none() {
                        self.lost();
                        continue;
                    }
                }
            }
            let began = Instant::now();
            let pause = match self.pass().await {
                Pass::Progress => continue,
                Pass::Lost => {
                    self.lost();
                    continue;
                }
                Pass::Idle => OUTBOX_POLL,
                Pass::Failed => OUTBOX_RETRY,
            };
            let until = (Instant::now() + pause).min(self.renew_at);
            tokio::select! {
                () = self.shared.wake.notified() => {
                    crate::wakes::after_wake(began, &mut stop).await;
                }
                () = tokio::time::sleep_until(until) => {}
                changed = stop.changed() => if changed.is_err() { break Instant::now() },
            }
            if self.held_until.is_some() && Instant::now() >= self.renew_at {
                self.renew();
            }
        };
        self.finish(deadline).await;
    }

    /// Sends until `deadline` what the outbox holds now, then releases the
    /// lease.
    async fn finish(&mut self, deadline: Instant) {
        let journal = self.shared.journal.clone();
        let drained = tokio::time::timeout_at(deadline, async {
            let horizon = journal.outbox_last_id()?;
            while journal.outbox_unsettled_through(horizon)? > 0 {
                if self.held_until.is_none() && !self.take() {
                    tokio::time::sleep(OUTBOX_LEASE_POLL).await;
                    continue;
                }
                match self.pass().await {
                    Pass::Progress => {}
                    Pass::Lost => self.lost(),
                    // What is left waits (a deployment request retried
                    // later, and what waits for it): the next holder's.
                    Pass::Idle => break,
                    Pass::Failed => tokio::time::sleep(OUTBOX_RETRY).await,
                }
            }
            Ok::<(), crate::journal::JournalError>(())
        })
        .await;
        match drained {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "journal: cannot read the outbox"),
            Err(_) => {
                tracing::warn!("stopped before every report was sent; the rest stays in the outbox")
            }
        }
        if self.held_until.take().is_some() {
            if let Err(e) = journal.release_lease(OUTBOX_LEASE, &self.shared.holder) {
                tracing::warn!(error = %e, "journal: cannot give up the outbox lease; it runs out");
            }
        }
    }

    /// Tries to take the lease; true if this process holds it now.
    fn take(&mut self) -> bool {
        let journal = self.shared.journal.clone();
        let before = Instant::now();
        match journal.take_lease(OUTBOX_LEASE, &self.shared.holder, OUTBOX_LEASE_TTL) {
            Ok(true) => {
                self.took(before);
                self.take_failed = false;
                tracing::info!(holder = %self.shared.holder, "this process sends the report outbox");
                match journal.adopt_pending_requests(now_ms()) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(count = n, "sending GitHub deployment requests left pending")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "journal: cannot read pending deployment requests")
                    }
                }
                true
            }
            Ok(false) => {
                self.take_failed = false;
                false
            }
            Err(e) => {
                if !self.take_failed {
                    tracing::warn!(error = %e, "journal: cannot take the outbox lease");
                }
                self.take_failed = true;
                false
            }
        }
    }

    /// The lease was taken or renewed by a call begun at `before`.
    fn took(&mut self, before: Instant) {
        self.held_until = Some(before + OUTBOX_LEASE_TTL);
        self.renew_at = before + OUTBOX_LEASE_RENEW;
    }

    /// Renews the lease; on failure this process no longer holds it.
    fn renew(&mut self) {
        let before = Instant::now();
        match self
            .shared
            .journal
            .renew_lease(OUTBOX_LEASE, &self.shared.holder, OUTBOX_LEASE_TTL)
        {
            Ok(true) => self.took(before),
            Ok(false) => {
                tracing::warn!("the outbox lease ran out and another process took it");
                self.held_until = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "journal: cannot renew the outbox lease; sending stops");
                self.held_until = None;
            }
        }
    }

    /// After losing the lease: let it go for good (if the journal can be
    /// reached), so the next holder need not wait for it to run out.
    fn lost(&mut self) {
        self.held_until = None;
        let _ = self
            .shared
            .journal
            .release_lease(OUTBOX_LEASE, &self.shared.holder);
    }

    /// Runs `work` while the lease holds, renewing it when due; `None`
    /// (and `work` dropped mid-way) as soon as it cannot be renewed or
    /// would run out.
    async fn while_held<F: std::future::Future>(&mut self, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        loop {
            let last_safe = self.held_until?.checked_sub(OUTBOX_LEASE_MARGIN)?;
            if Instant::now() >= last_safe {
                return None;
            }
            tokio::select! {
                out = &mut work => return Some(out),
                () = tokio::time::sleep_until(self.renew_at.min(last_safe)) => {
                    if Instant::now() >= self.renew_at {
                        self.renew();
                    }
                }
            }
        }
    }

    /// One pass over the unsettled rows that are due, in id order, page
    /// after page (so rows that wait never hide the rows after them).
    async fn pass(&mut self) -> Pass {
        let journal = self.shared.journal.clone();
        let mut waiting = std::collections::HashSet::new();
        let mut progress = false;
        let mut after = 0;
        loop {
            let rows = match journal.outbox_due(after, now_ms(), OUTBOX_BATCH) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "journal: cannot read the outbox");
                    return Pass::Failed;
                }
            };
            let last_page = rows.len() < OUTBOX_BATCH;
            after = rows.last().map_or(after, |r| r.id);
            match self.page(rows, &mut waiting).await {
                Ok(settled) => progress |= settled,
                Err(end) => return end,
            }
            if last_page {
                break;
            }
        }
        if progress {
            Pass::Progress
        } else {
            Pass::Idle
        }
    }

    /// Sends the rows of one page; whether it settled any, or how the pass
    /// ends at once. `waiting`: the deploys whose rows wait for their
    /// deployment (their later rows wait too).
    async fn page(
        &mut self,
        rows: Vec<crate::journal::OutboxRow>,
        waiting: &mut std::collections::HashSet<i64>,
    ) -> Result<bool, Pass> {
        let journal = self.shared.journal.clone();
        let mut progress = false;
        for row in rows {
            if self.held_until.is_some() && Instant::now() >= self.renew_at {
                self.renew();
            }
            if self.held_until.is_none() {
                return Err(Pass::Lost);
            }
            // A row waiting for its deployment holds back its deploy's later
            // rows, and no other's.
            if row.deploy_id.is_some_and(|d| waiting.contains(&d)) {
                continue;
            }
            let settings = self.shared.settings();
            let plan = match self.sender.plan(&settings, &row) {
                Ok(plan) => plan,
                // A row the journal cannot read back is settled as failed
                // (unless the journal cannot be written either), so it
                // holds back no other.
                Err(e) => {
                    tracing::error!(row = row.id, error = %e, "journal: cannot read what an outbox row reports");
                    // A deployment request is tried again later (its push
                    // must not be lost) while its stack's `retry_request_for`
                    // lasts; then settled failed, and the fallback looks
                    // after the request still pending.
                    if let (crate::journal::OutboxKind::Deployment, Some(request_id)) =
                        (row.kind, row.request_id)
                    {
                        let retry_for = settings
                            .config
                            .stack(&row.stack)
                            .and_then(|s| s.github.as_ref())
                            .map_or(0, |gh| {
                                i64::try_from(gh.retry_request_for.as_millis()).unwrap_or(i64::MAX)
                            });
                        let until = row.created_at_ms.saturating_add(retry_for);
                        let now = now_ms();
                        if now < until {
                            let wait = i64::try_from(REQUEST_RETRY_FIRST.as_millis()).unwrap_or(0);
                            let detail = format!("journal: {e}");
                            let at = now.saturating_add(wait).min(until);
                            match journal
                                .defer_outbox_row(row.id, request_id, at, &detail, None, now)
                            {
                                Ok(_) => {
                                    progress = true;
                                    continue;
                                }
                                Err(_) => return Err(Pass::Failed),
                            }
                        }
                    }
                    let failed = crate::journal::Settlement {
                        outcome: crate::journal::OutboxOutcome::Failed,
                        detail: format!("journal: {e}"),
                        answer: None,
                        report: None,
                        at_ms: now_ms(),
                    };
                    if journal.settle_outbox_row(row.id, &failed).is_err() {
                        return Err(Pass::Failed);
                    }
                    progress = true;
                    continue;
                }
            };
            let settlement = match plan {
                Plan::Wait => {
                    waiting.extend(row.deploy_id);
                    continue;
                }
                Plan::Settle(settlement) => settlement,
                Plan::Send(outgoing) => {
                    let before = Instant::now();
                    match journal.claim_outbox_row(
                        row.id,
                        &self.shared.holder,
                        OUTBOX_LEASE_TTL,
                        now_ms(),
                    ) {
                        Ok(Claim::Claimed) => self.took(before),
                        Ok(Claim::Settled) => {
                            progress = true;
                            continue;
                        }
                        Ok(Claim::LeaseLost) => return Err(Pass::Lost),
                        Err(e) => {
                            tracing::error!(row = row.id, error = %e, "journal: cannot claim an outbox row");
                            return Err(Pass::Failed);
                        }
                    }
                    // From here until the row is settled below, a sender
                    // that stops leaves the row in doubt: the next holder
                    // finds it claimed before (`attempts` was not 0 when
                    // it claimed it) and asks GitHub whether this attempt
                    // arrived before sending it again.
                    // A deployment request tried again after a transient
                    // failure is in doubt too: a 5xx or a lost answer may
                    // have come after GitHub created the deployment.
                    let in_doubt = row.attempts > 0;
                    let retry = outgoing.retry_until_ms();
                    let sender = self.sender.clone();
                    let (settlement, transient) =
                        match self.while_held(outgoing.send(&sender, in_doubt)).await {
                            Some(sent) => sent,
                            None => return Err(Pass::Lost),
                        };
                    if let (true, Some((request_id, until))) = (transient, retry) {
                        let now = now_ms();
                        if now < until {
                            let wait = request_retry_wait(row.attempts + 1);
                            let wait_ms = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 4);
                            let at = now.saturating_add(wait_ms).min(until);
                            let detail = format!(
                                "retrying after attempt {}: {}",
                                row.attempts + 1,
                                settlement.detail
                            );
                            let status =
                                settlement.answer.as_ref().and_then(|(_, a)| a.http_status);
                            // Logged once per request (its first failure);
                            // the later tries are in its detail and history.
                            if row.attempts == 0 {
                                tracing::warn!(stack = %row.stack, request = request_id, retry_in_ms = at - now, "GitHub deployment request not taken; trying again with back-off for up to its retry_request_for");
                            } else {
                                tracing::debug!(stack = %row.stack, request = request_id, attempt = row.attempts + 1, retry_in_ms = at - now, "GitHub deployment request not taken again; trying again");
                            }
                            match journal
                                .defer_outbox_row(row.id, request_id, at, &detail, status, now)
                            {
                                Ok(_) => {
                                    progress = true;
                                    continue;
                                }
                                Err(e) => {
                                    tracing::error!(row = row.id, error = %e, "journal: cannot defer an outbox row");
                                    return Err(Pass::Failed);
                                }
                            }
                        }
                    }
                    // A transient failure not tried again (its time is
                    // over) is settled failed: said here, once.
                    if transient {
                        tracing::error!(stack = %row.stack, row = row.id, "cannot create a GitHub deployment: {}", crate::text::one_line(&settlement.detail));
                    }
                    settlement
                }
            };
            if !self.settle(row.id, &settlement).await {
                return Err(Pass::Lost);
            }
            progress = true;
        }
        Ok(progress)
    }

    /// Records row `id`'s settlement, retrying while the journal fails and
    /// the lease holds. False if the lease was lost first.
    async fn settle(&mut self, id: i64, settlement: &crate::journal::Settlement) -> bool {
        loop {
            match self.shared.journal.settle_outbox_row(id, settlement) {
                Ok(_) => return true,
                Err(e) => {
                    tracing::error!(row = id, error = %e, "journal: cannot record how an outbox row went");
                    if self
                        .while_held(tokio::time::sleep(OUTBOX_RETRY))
                        .await
                        .is_none()
                    {
                        return false;
                    }
                }
            }
        }
    }
}
