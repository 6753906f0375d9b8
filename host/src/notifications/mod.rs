//! Notifications: telling people of deploy outcomes through the
//! `[[notifications]]` channels (a Slack-compatible chat, a signed webhook,
//! email).
//!
//! What to tell is the journal's notifications outbox
//! ([`crate::journal::Notification`]): every deploy transition writes a
//! notice in its own transaction, whichever process made it. One process
//! per journal sends: the holder of [`NOTIFICATIONS_LEASE`], taken and
//! renewed on the database's clock, in a process that read the channels'
//! credentials. Each look it fans the new notices out into one
//! notification per channel that wants them (by the config it runs now),
//! then starts a send for each lane, a (channel, stack), whose oldest
//! unsettled notification is due and not being sent: lanes go on at once
//! and independently, so a slow or failing channel holds back only its
//! own. A notification not taken for a passing reason (the channel
//! unreachable, a timeout, HTTP 408, 425, 429 or 5xx, an SMTP 4xx) is
//! tried again after [`retry_wait`] (or the channel's `Retry-After`, if
//! longer), holding back its lane, until the channel's `give_up_after`
//! has passed since the event; one refused for good is settled failed at
//! once. Each channel's failing and recovering is logged once per change
//! and counted in `/metrics`.
//!
//! Sending never waits on a deploy and a deploy never waits on sending:
//! the deploy's transition only writes its notice; a process's runner
//! wakes the sender ([`Notifications::wake`]), and the sender also looks
//! every [`POLL`] for other processes' notices.
//!
//! A notification is sent once; one whose sender stopped after the
//! channel took it and before the journal recorded it is sent again by
//! the next holder, with the same delivery id (the webhook's
//! `X-Redeploy-Delivery` and `delivery`, the mail's `Message-ID`).

pub mod links;
pub mod message;
pub mod probes;
pub mod send;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{Config, NoticeEvent, NotificationChannel};
use crate::journal::{
    now_ms, Claim, DeployRecord, Journal, Notification, NotificationOutcome, NOTIFICATIONS_LEASE,
};
use crate::metrics::Metrics;
use message::{DeployFacts, Message, RefusedFacts};

/// How long the notifications lease lasts unless renewed: after a
/// holder dies, this long passes (at most) before another process sends
/// what it left.
pub const LEASE_TTL: Duration = Duration::from_secs(20);

/// How often the holder renews its lease (each claim renews it too); a
/// holder that cannot renew stops its sends at once.
pub const LEASE_RENEW: Duration = Duration::from_secs(5);

/// How often a process without the lease tries to take it.
pub const LEASE_POLL: Duration = Duration::from_secs(2);

/// How often the holder looks for notices other processes wrote (its own
/// process's wake it at once).
pub const POLL: Duration = Duration::from_secs(1);

/// How long the sender waits after the journal failed.
pub const JOURNAL_RETRY: Duration = Duration::from_secs(1);

/// The most notices fanned out in one transaction.
pub const FAN_OUT_BATCH: usize = 256;

/// The most notifications sent at once (one per channel and stack).
pub const MAX_PARALLEL_SENDS: usize = 32;

/// The longest one send may take, whatever the channel's own timeouts. A
/// send under way when its process is asked to stop is given this long
/// to end (no new one starts), so a stop sends nothing twice.
pub const SEND_LIMIT: Duration = Duration::from_secs(45);

/// The first retry's wait; each later one doubles, up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);

/// The longest wait between two tries of one notification.
pub const RETRY_MAX: Duration = Duration::from_secs(10 * 60);

/// The longest `Retry-After` a channel is obeyed for.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(60 * 60);

/// How often a failing settlement is tried again before the send is left
/// to the next pass (which sends it again).
pub const SETTLE_TRIES: u32 = 3;

/// The journal's name for the random prefix of this journal's delivery
/// ids, chosen once.
pub const SOURCE_KEY_NAME: &str = "notifications-source";

/// How long to wait before the try after `attempts` tries.
pub fn retry_wait(attempts: i64) -> Duration {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// The signed public link to a deploy's log, if the server gives them
/// (`notify::LogLinks`, passed in so this module needs nothing of the
/// GitHub reporter's).
pub type LogUrl = Arc<dyn Fn(i64) -> Option<String> + Send + Sync>;

/// What the handle and the sending task share.
struct Shared {
    journal: Arc<Journal>,
    holder: String,
    /// This journal's random prefix of delivery ids.
    source: String,
    wake: Notify,
    config: Mutex<Arc<Config>>,
    log_url: LogUrl,
    http: reqwest::Client,
    metrics: OnceLock<Arc<Metrics>>,
    /// Each channel's state as last logged: true while failing.
    failing: Mutex<HashMap<String, bool>>,
    /// Refused deliveries per stack, for channels that opt in to `refused`.
    probes: probes::Probes,
}

impl Shared {
    fn config(&self) -> Arc<Config> {
        match self.config.lock() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Records an attempt at `channel` that ended as `outcome` (a failure
    /// when `failing`), logging the channel's change of state once.
    fn attempted(&self, channel: &str, outcome: &str, failing: bool, detail: &str) {
        // A send under an older config, for a channel a reload removed:
        // nothing to report of it any more.
        if !self
            .config()
            .notifications
            .iter()
            .any(|c| c.name == channel)
        {
            return;
        }
        if let Some(m) = self.metrics.get() {
            m.notifications.attempt(channel, outcome, failing);
        }
        if outcome == "skipped" {
            return;
        }
        let was = {
            let mut states = match self.failing.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            states.insert(channel.to_owned(), failing)
        };
        match (was.unwrap_or(false), failing) {
            (false, true) => tracing::warn!(
                channel,
                "notification channel failing: {}; retrying with back-off",
                crate::text::one_line(detail)
            ),
            (true, false) => tracing::info!(channel, "notification channel delivers again"),
            _ => {}
        }
    }
}

/// Whether a process loaded with `config` may send: it read every
/// channel's credentials (a command loaded for one stack did not, and
/// leaves the sending to a process that did).
fn may_send(config: &Config) -> bool {
    config.notifications.iter().all(|c| c.secrets_read)
}

/// This process's notifications sender: it is woken when the process wrote
/// notices, and sends whenever it holds the lease.
pub struct Notifications {
    shared: Arc<Shared>,
    stop: watch::Sender<Option<Instant>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Notifications {
    /// Starts the sending task on the current tokio runtime; `log_url`
    /// links a deploy's log, `holder` names this process in the lease
    /// table.
    pub fn start(
        config: Arc<Config>,
        journal: Arc<Journal>,
        log_url: LogUrl,
        holder: String,
    ) -> anyhow::Result<Arc<Notifications>> {
        let mut candidate = crate::tokens::generate_token()?;
        candidate.truncate(12);
        let source = journal.ensure_server_key(SOURCE_KEY_NAME, &candidate)?;
        let shared = Arc::new(Shared {
            journal,
            holder,
            source,
            wake: Notify::new(),
            config: Mutex::new(config),
            log_url,
            http: send::client()?,
            metrics: OnceLock::new(),
            failing: Mutex::new(HashMap::new()),
            probes: probes::Probes::default(),
        });
        let (stop, stopped) = watch::channel(None);
        let task = tokio::spawn(Sender::new(shared.clone()).run(stopped));
        Ok(Arc::new(Notifications {
            shared,
            stop,
            task: Mutex::new(Some(task)),
        }))
    }

    /// Counts attempts in `metrics` from now on (a server's).
    pub fn count_in(&self, metrics: Arc<Metrics>) {
        let _ = self.shared.metrics.set(metrics);
    }

    /// This process wrote notices: send them if it holds the lease, at once,
    /// or within [`crate::wakes::WAKE_COALESCE`] of its last look when it
    /// is idle.
    pub fn wake(&self) {
        self.shared.wake.notify_one();
    }

    /// A delivery to `stack`'s hook URL was refused for `reason` (a bad,
    /// missing or stale signature): told to the channels that opt in to
    /// `refused`, the first at once and the rest summed up
    /// ([`probes`]). Writes to the journal: call it where blocking is
    /// allowed.
    pub fn refused(&self, stack: &str, reason: &str) {
        let wanted = self
            .shared
            .config()
            .notifications
            .iter()
            .any(|c| c.wants(NoticeEvent::Refused, stack));
        if !wanted {
            return;
        }
        let notices = self.shared.probes.refused(stack, reason, now_ms());
        if write_probes(&self.shared, notices) {
            self.wake();
        }
    }

    /// Sends by `config`'s channels from the next pass on; a channel gone
    /// from it is forgotten (its failing state and gauge).
    pub fn reconfigure(&self, config: Arc<Config>) {
        {
            let mut states = match self.shared.failing.lock() {
                Ok(s) => s,
                Err(poisoned) => poisoned.into_inner(),
            };
            states.retain(|name, _| {
                let kept = config.notifications.iter().any(|c| &c.name == name);
                if !kept {
                    if let Some(m) = self.shared.metrics.get() {
                        m.notifications.forget(name);
                    }
                }
                kept
            });
        }
        match self.shared.config.lock() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        self.wake();
    }

    /// Sends, within `limit`, what is due by then, retries included
    /// (taking the lease if it comes free), lets a send under way end
    /// (within [`SEND_LIMIT`]), then gives the lease up; what is left
    /// waits in the journal for the next holder.
    pub async fn finish(&self, limit: Duration) {
        let task = match self.task.lock() {
            Ok(mut t) => t.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        write_probes(&self.shared, self.shared.probes.take_all(now_ms()));
        let _ = self.stop.send(Some(Instant::now() + limit));
        let Some(mut task) = task else { return };
        if tokio::time::timeout(limit + SEND_LIMIT + JOURNAL_RETRY, &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = self
                .shared
                .journal
                .release_lease(NOTIFICATIONS_LEASE, &self.shared.holder);
        }
    }
}

/// The (channel, stack) a notification is sent in order within.
type Lane = (String, String);

/// The sending task.
struct Sender {
    shared: Arc<Shared>,
    held: bool,
    /// When to renew the lease next.
    renew_at: Instant,
    /// Until when the lease surely holds, by this process's clock (its
    /// last renewal began before then less [`LEASE_TTL`]): a renewal that
    /// fails on the journal stops the sends only then.
    valid_until: Instant,
    /// The sends under way, one per lane at most.
    sends: JoinSet<Result<(), Lost>>,
    /// Each send's lane and notification, by task.
    sending: HashMap<tokio::task::Id, (Lane, i64)>,
}

/// A send found the lease gone.
struct Lost;

/// What a look at the outbox found.
enum Look {
    /// Sends started, or nothing due until `Some(at)` (ms since the
    /// epoch), or nothing at all.
    Waiting(Option<i64>),
    /// The lease is gone.
    Lost,
    /// The journal failed.
    Failed,
}

/// How long before the lease's end by this process's clock it counts as
/// gone: a margin for the clocks' drift and a slow journal call.
const LEASE_MARGIN: Duration = Duration::from_secs(3);

impl Sender {
    fn new(shared: Arc<Shared>) -> Sender {
        let now = Instant::now();
        Sender {
            shared,
            held: false,
            renew_at: now,
            valid_until: now,
            sends: JoinSet::new(),
            sending: HashMap::new(),
        }
    }

    async fn run(mut self, mut stop: watch::Receiver<Option<Instant>>) {
        let deadline = loop {
            if let Some(deadline) = *stop.borrow() {
                break deadline;
            }
            // Every process sums its refused deliveries up, holder or not.
            write_probes(&self.shared, self.shared.probes.take_finished(now_ms()));
            let began = Instant::now();
            let pause = match self.step(true) {
                Some(pause) => pause,
                None => LEASE_POLL,
            };
            // With no send under way, a wake soon after this look waits
            // out the rest of `WAKE_COALESCE`; with sends under way it is
            // answered at once, so a lane's next message follows its last
            // without a pause.
            let coalesce = self.sends.is_empty().then_some(began);
            tokio::select! {
                () = self.shared.wake.notified() => {
                    if let Some(began) = coalesce {
                        crate::wakes::after_wake(began, &mut stop).await;
                    }
                }
                () = tokio::time::sleep(pause) => {}
                Some(done) = self.sends.join_next_with_id(), if !self.sends.is_empty() => self.ended(done),
                changed = stop.changed() => if changed.is_err() { break Instant::now() },
            }
        };
        // Before stopping: what is due by the deadline, retries included
        // (no send starts after it), unless another process holds the
        // lease (it sends them).
        let deadline_ms =
            now_ms().saturating_add(millis(deadline.saturating_duration_since(Instant::now())));
        let _ = tokio::time::timeout_at(deadline, async {
            loop {
                let due = self
                    .shared
                    .journal
                    .notifications_due_by(deadline_ms)
                    .unwrap_or(false);
                let sends = may_send(&self.shared.config());
                if !(due && sends) && self.sends.is_empty() {
                    break;
                }
                if !self.held && !self.take() && self.sends.is_empty() {
                    break;
                }
                let pause = self.step(true).unwrap_or(LEASE_POLL);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    Some(done) = self.sends.join_next_with_id(), if !self.sends.is_empty() => self.ended(done),
                }
            }
        })
        .await;
        // A send under way ends (or runs out of time) rather than being cut
        // after the channel took it; the lease is kept renewed meanwhile,
        // so no other process sends it too.
        let _ = tokio::time::timeout(SEND_LIMIT, async {
            while !self.sends.is_empty() {
                let pause = self.step(false).unwrap_or(LEASE_POLL);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    Some(done) = self.sends.join_next_with_id() => self.ended(done),
                }
            }
        })
        .await;
        self.sends.abort_all();
        if self.held {
            let _ = self
                .shared
                .journal
                .release_lease(NOTIFICATIONS_LEASE, &self.shared.holder);
        }
    }

    /// Holds the lease (taking or renewing it when due) and, when `start`,
    /// starts the sends that are due: how long to wait before the next
    /// step, `None` when this process does not send now.
    fn step(&mut self, start: bool) -> Option<Duration> {
        if !may_send(&self.shared.config()) {
            return None;
        }
        if !self.held && !self.take() {
            return None;
        }
        if Instant::now() >= self.renew_at && !self.renew() {
            return None;
        }
        let until_renewal = self.renew_at.saturating_duration_since(Instant::now());
        if !start {
            return Some(until_renewal.min(POLL));
        }
        let pause = match self.look() {
            Look::Waiting(due) => due.map_or(POLL, |at| {
                Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
            }),
            Look::Lost => {
                self.lost();
                return None;
            }
            Look::Failed => JOURNAL_RETRY,
        };
        Some(pause.min(POLL).min(until_renewal))
    }

    /// A send ended: its lane is free.
    fn ended(&mut self, done: Result<(tokio::task::Id, Result<(), Lost>), tokio::task::JoinError>) {
        match done {
            Ok((id, outcome)) => {
                self.sending.remove(&id);
                if outcome.is_err() {
                    self.lost();
                }
            }
            Err(e) => {
                self.sending.remove(&e.id());
                if !e.is_cancelled() {
                    tracing::error!(error = %e, "a notification send ended abnormally");
                }
            }
        }
    }

    /// The lease was taken or renewed by a call begun at `before`.
    fn held_from(&mut self, before: Instant) {
        self.held = true;
        self.renew_at = before + LEASE_RENEW;
        self.valid_until = (before + LEASE_TTL)
            .checked_sub(LEASE_MARGIN)
            .unwrap_or(before);
    }

    fn take(&mut self) -> bool {
        let before = Instant::now();
        match self
            .shared
            .journal
            .take_lease(NOTIFICATIONS_LEASE, &self.shared.holder, LEASE_TTL)
        {
            Ok(true) => {
                self.held_from(before);
                tracing::debug!(holder = %self.shared.holder, "this process sends the notifications");
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::debug!(error = %e, "journal: cannot take the notifications lease");
                false
            }
        }
    }

    /// Renews the lease; false when this process may not send now. A
    /// renewal the journal fails is tried again shortly, and the sends
    /// under way stop only when the lease may have run out.
    fn renew(&mut self) -> bool {
        let before = Instant::now();
        match self
            .shared
            .journal
            .renew_lease(NOTIFICATIONS_LEASE, &self.shared.holder, LEASE_TTL)
        {
            Ok(true) => {
                self.held_from(before);
                true
            }
            Ok(false) => {
                tracing::warn!("the notifications lease ran out and another process took it");
                self.lost();
                false
            }
            Err(e) if Instant::now() >= self.valid_until => {
                tracing::warn!(error = %e, "journal: cannot renew the notifications lease; sending stops");
                self.lost();
                false
            }
            Err(e) => {
                tracing::debug!(error = %e, "journal: cannot renew the notifications lease; trying again");
                self.renew_at = Instant::now() + JOURNAL_RETRY;
                false
            }
        }
    }

    /// The lease is gone: the sends under way stop at once (one the
    /// channel took is sent again by the next holder), and it is let go.
    /// The set is replaced, so no stopped send's end is mistaken for a
    /// later one's.
    fn lost(&mut self) {
        self.sends = JoinSet::new();
        self.sending.clear();
        if self.held {
            self.held = false;
            let _ = self
                .shared
                .journal
                .release_lease(NOTIFICATIONS_LEASE, &self.shared.holder);
        }
    }

    /// Fans out the new notices, gives up what waited past its channel's
    /// `give_up_after`, and starts a send for each lane whose oldest
    /// unsettled notification is due and not being sent.
    fn look(&mut self) -> Look {
        let shared = self.shared.clone();
        let config = shared.config();
        let route = |event: &str, stack: &str| -> Vec<String> {
            let Some(event) = NoticeEvent::parse(event) else {
                return Vec::new();
            };
            config
                .notifications
                .iter()
                .filter(|c| c.wants(event, stack))
                .map(|c| c.name.clone())
                .collect()
        };
        loop {
            match shared
                .journal
                .fan_out_notices(&shared.holder, &route, now_ms(), FAN_OUT_BATCH)
            {
                Ok(None) => return Look::Lost,
                Ok(Some(n)) if n == FAN_OUT_BATCH => continue,
                Ok(Some(_)) => break,
                Err(e) => {
                    tracing::error!(error = %e, "journal: cannot fan out notices");
                    return Look::Failed;
                }
            }
        }
        let heads = match shared.journal.notification_heads() {
            Ok(heads) => heads,
            Err(e) => {
                tracing::error!(error = %e, "journal: cannot read the notifications");
                return Look::Failed;
            }
        };
        let now = now_ms();
        let busy: HashSet<Lane> = self
            .sending
            .values()
            .map(|(lane, _)| lane.clone())
            .collect();
        let in_flight: Vec<i64> = self.sending.values().map(|(_, id)| *id).collect();
        // A backlog older than its channel's `give_up_after` (the server
        // was down longer): given up in one go, said once; a notification
        // being sent is left to its send.
        let before = |c: &NotificationChannel| now.saturating_sub(millis(c.give_up_after));
        let stale: Vec<&NotificationChannel> = config
            .notifications
            .iter()
            .filter(|c| {
                heads.iter().any(|n| {
                    n.channel == c.name
                        && n.at_ms < before(c)
                        && !busy.contains(&(n.channel.clone(), n.stack.clone()))
                })
            })
            .collect();
        if !stale.is_empty() {
            for channel in stale {
                match shared.journal.give_up_notifications(
                    &channel.name,
                    before(channel),
                    &in_flight,
                    now,
                ) {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(channel = %channel.name, count = n, "notifications older than the channel's give_up_after ({}) given up unsent", humantime::format_duration(channel.give_up_after));
                        if let Some(m) = shared.metrics.get() {
                            m.notifications.given_up(&channel.name, n);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "journal: cannot give up old notifications");
                        return Look::Failed;
                    }
                }
            }
            return Look::Waiting(Some(now));
        }
        let mut next_due: Option<i64> = None;
        let mut started = Vec::new();
        for n in heads {
            let lane = (n.channel.clone(), n.stack.clone());
            if busy.contains(&lane) || started.contains(&lane) {
                continue;
            }
            if let Some(at) = n.not_before_ms.filter(|at| *at > now) {
                next_due = Some(next_due.map_or(at, |d| d.min(at)));
                continue;
            }
            // At capacity: the next send to end wakes the sender.
            if self.sends.len() + started.len() >= MAX_PARALLEL_SENDS {
                break;
            }
            started.push(lane.clone());
            let (shared, config, id) = (shared.clone(), config.clone(), n.id);
            let task = self.sends.spawn(one(shared, config, n));
            self.sending.insert(task.id(), (lane, id));
        }
        Look::Waiting(next_due)
    }
}

/// Sends notification `n` (claimed first) and settles or defers it;
/// `Err` when the lease is gone.
async fn one(shared: Arc<Shared>, config: Arc<Config>, n: Notification) -> Result<(), Lost> {
    let journal = &shared.journal;
    let Some(channel) = config.notifications.iter().find(|c| c.name == n.channel) else {
        shared.attempted(&n.channel, "skipped", false, "");
        settle(
            journal,
            n.id,
            NotificationOutcome::Skipped,
            "the channel is no longer in the config",
        )
        .await;
        return Ok(());
    };
    let give_up_at = n.at_ms.saturating_add(millis(channel.give_up_after));
    let message = match compose(journal, &config, &shared, &n) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(notification = n.id, error = %e, "journal: cannot read what a notification tells");
            tokio::time::sleep(JOURNAL_RETRY).await;
            return Ok(());
        }
    };
    match journal.claim_notification(n.id, &shared.holder, LEASE_TTL, now_ms()) {
        Ok(Claim::Claimed) => {}
        Ok(Claim::Settled) => return Ok(()),
        Ok(Claim::LeaseLost) => return Err(Lost),
        Err(e) => {
            tracing::error!(notification = n.id, error = %e, "journal: cannot claim a notification");
            tokio::time::sleep(JOURNAL_RETRY).await;
            return Ok(());
        }
    }
    let attempts = n.attempts + 1;
    let sent = send_within_limit(&shared.http, channel, &message).await;
    match sent {
        Ok(answer) => {
            shared.attempted(&n.channel, "sent", false, &answer.detail);
            settle(journal, n.id, NotificationOutcome::Sent, &answer.detail).await;
        }
        Err(failure) if failure.transient => {
            // Never sooner than the back-off: a `Retry-After: 0` (or a
            // date past) must not make a loop of it.
            let wait = failure
                .retry_after
                .map_or(Duration::ZERO, |w| w.min(RETRY_AFTER_MAX))
                .max(retry_wait(attempts));
            let at = now_ms().saturating_add(millis(wait));
            if at >= give_up_at {
                let detail = format!(
                    "given up after {attempts} attempts within give_up_after ({}): {}",
                    humantime::format_duration(channel.give_up_after),
                    failure.detail
                );
                tracing::error!(channel = %n.channel, stack = %n.stack, notification = n.id, "notification {}", crate::text::one_line(&detail));
                shared.attempted(&n.channel, "failed", true, &failure.detail);
                settle(journal, n.id, NotificationOutcome::Failed, &detail).await;
                return Ok(());
            }
            shared.attempted(&n.channel, "retried", true, &failure.detail);
            let detail = format!("attempt {attempts}: {}", failure.detail);
            if let Err(e) = journal.defer_notification(n.id, at, &detail) {
                tracing::error!(notification = n.id, error = %e, "journal: cannot defer a notification");
                tokio::time::sleep(JOURNAL_RETRY).await;
            }
        }
        Err(failure) => {
            tracing::error!(channel = %n.channel, stack = %n.stack, notification = n.id, "notification refused: {}", crate::text::one_line(&failure.detail));
            shared.attempted(&n.channel, "failed", true, &failure.detail);
            settle(journal, n.id, NotificationOutcome::Failed, &failure.detail).await;
        }
    }
    Ok(())
}

/// Journals the notices of refused deliveries; whether it wrote any.
fn write_probes(shared: &Shared, notices: Vec<probes::ProbeNotice>) -> bool {
    let mut wrote = false;
    for p in notices {
        let detail = crate::text::one_line(&p.detail);
        match shared
            .journal
            .add_refused_notice(&p.stack, p.count, p.window, &detail, now_ms())
        {
            Ok(()) => wrote = true,
            Err(e) => {
                tracing::error!(stack = %p.stack, error = %e, "journal: cannot record refused deliveries for notifications")
            }
        }
    }
    wrote
}

/// Records how notification `id` went, trying [`SETTLE_TRIES`] times
/// (a send the journal never records is sent again).
async fn settle(journal: &Journal, id: i64, outcome: NotificationOutcome, detail: &str) {
    for attempt in 1..=SETTLE_TRIES {
        match journal.settle_notification(id, outcome, detail, now_ms()) {
            Ok(_) => return,
            Err(e) if attempt == SETTLE_TRIES => {
                tracing::error!(notification = id, error = %e, "journal: cannot record how a notification went; it will be sent again");
            }
            Err(_) => tokio::time::sleep(JOURNAL_RETRY).await,
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The message notification `n` sends: its notice, and the deploy's facts
/// as the journal has them now.
fn compose(
    journal: &Journal,
    config: &Config,
    shared: &Shared,
    n: &Notification,
) -> Result<Message, crate::journal::JournalError> {
    let deploy = match n.deploy_id {
        Some(id) => journal.deploy(id)?,
        None => None,
    };
    Ok(Message {
        id: n.id,
        delivery: format!("{}-{}", shared.source, n.id),
        event: NoticeEvent::parse(&n.event),
        stack: n.stack.clone(),
        at_ms: n.at_ms,
        detail: n.detail.clone(),
        deploy: deploy.map(|d| deploy_facts(config, &shared.log_url, &d)),
        refused: n.refused.map(|(count, window_ms)| RefusedFacts {
            count: u64::try_from(count).unwrap_or(0),
            window: Duration::from_millis(u64::try_from(window_ms).unwrap_or(0)),
        }),
    })
}

/// The parts of a deploy's journaled event a message names.
#[derive(serde::Deserialize, Default)]
struct EventFacts {
    repository: Option<String>,
    image: Option<String>,
}

fn deploy_facts(config: &Config, log_url: &LogUrl, d: &DeployRecord) -> DeployFacts {
    let event: EventFacts = serde_json::from_str(&d.queued.event_json).unwrap_or_default();
    let commit_url = match (config.stack(&d.queued.stack), &d.queued.sha) {
        (Some(stack), Some(sha)) => {
            links::commit_url(stack, &d.queued.provider, event.repository.as_deref(), sha)
        }
        _ => None,
    };
    let log_url = links::deploy_link(config, d.id, |id| log_url(id));
    DeployFacts {
        id: d.id,
        provider: d.queued.provider.clone(),
        git_ref: d.queued.git_ref.clone(),
        sha: d.queued.sha.clone(),
        image: event.image,
        pusher: d.queued.pusher.clone(),
        services: d.queued.services.clone(),
        profile: d.queued.profile.clone(),
        reason: d.queued.reason.clone(),
        queued_at_ms: d.queued.created_at_ms,
        started_at_ms: d.started_at_ms,
        finished_at_ms: d.finished_at_ms,
        exit_code: d.exit_code,
        commit_url,
        log_url,
    }
}

/// A test message for `channel` (`redeploy notify test`), sent now; what
/// the channel answered, or why it did not take it.
pub async fn send_test(
    channel: &NotificationChannel,
    at_ms: i64,
) -> anyhow::Result<Result<send::Answer, send::Failure>> {
    let http = send::client()?;
    let message = Message {
        id: at_ms,
        delivery: format!("test-{}", {
            let mut random = crate::tokens::generate_token()?;
            random.truncate(12);
            random
        }),
        event: None,
        stack: String::new(),
        at_ms,
        detail: Some(format!(
            "a test message to channel {:?}, sent by `redeploy notify test`",
            channel.name
        )),
        deploy: None,
        refused: None,
    };
    Ok(send_within_limit(&http, channel, &message).await)
}

/// Sends `message` to `channel`, a send that takes longer than
/// [`SEND_LIMIT`] being a transient failure.
async fn send_within_limit(
    http: &reqwest::Client,
    channel: &NotificationChannel,
    message: &Message,
) -> Result<send::Answer, send::Failure> {
    match tokio::time::timeout(SEND_LIMIT, send::send(http, channel, message)).await {
        Ok(sent) => sent,
        Err(_) => Err(send::Failure {
            transient: true,
            detail: format!(
                "no answer within {}",
                humantime::format_duration(SEND_LIMIT)
            ),
            retry_after: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_double_from_a_second_up_to_ten_minutes() {
        assert_eq!(retry_wait(1), Duration::from_secs(1));
        assert_eq!(retry_wait(2), Duration::from_secs(2));
        assert_eq!(retry_wait(5), Duration::from_secs(16));
        assert_eq!(retry_wait(11), RETRY_MAX);
        assert_eq!(retry_wait(i64::MAX), RETRY_MAX);
        assert_eq!(retry_wait(0), Duration::from_secs(1));
    }
}
