//! The notifications outbox: what people are told of through the
//! `[[notifications]]` channels, and how each sending went.
//!
//! A *notice* is one thing people may be told of, written in the
//! transaction that causes it: every deploy transition ([`queue_notice`],
//! called for each transition the journal writes) and a stack's refused
//! deliveries ([`Journal::add_refused_notice`]). The journal does not know
//! the channels; the holder of [`NOTIFICATIONS_LEASE`] fans each notice
//! out, once, into one *notification* per channel that wants it
//! ([`Journal::fan_out_notices`]), then sends each (stack, channel)'s
//! notifications in id order: it claims the oldest unsettled one
//! ([`Journal::claim_notification`], which renews the lease in the same
//! transaction), sends it, and settles it ([`Journal::settle_notification`])
//! or holds it back for a retry ([`Journal::defer_notification`]), which
//! holds back that stack's later notifications on that channel too.
//!
//! A notification is sent once, except around one window: a sender that
//! stops after the receiver took it and before it was settled leaves it
//! claimed and unsettled, and the next holder sends it again (a chat or
//! mail server has nothing to ask). `attempts` shows it, and the webhook's
//! delivery id and the mail's `Message-ID` stay the same, so a receiver
//! can drop the second.

use super::sql::{args, placeholders, Commit, DbError, Rec, Sql, Value};
use super::{Claim, DeployState, Journal, JournalError};

/// The lease whose holder sends the notifications (one process per journal).
pub const NOTIFICATIONS_LEASE: &str = "notifications";

/// How a deploy that its stack's `timeout` killed is described: the
/// runner's reason starts with it, and its notice is `timed_out`.
pub const TIMED_OUT_REASON: &str = "timed out after ";

/// Notices one statement marks fanned out ([`Journal::fan_out_notices`]).
/// Always this many ids (the last repeated to fill it), so the statement's
/// text is one, and each connection's statement cache holds it once; one
/// statement per notice cost a round trip each under the write lock, on
/// PostgreSQL.
pub const FAN_OUT_MARK_IDS: usize = 32;

/// Notifications being sent that one clause of
/// [`Journal::give_up_notifications`] spares (`id NOT IN (...)`, one clause
/// per this many): always this many ids, the last repeated to fill it, so
/// that the statement's text depends only on how many clauses it has, and
/// a connection's statement cache (unbounded on PostgreSQL) holds few.
pub const SPARED_IDS_PER_CLAUSE: usize = 32;

/// `ids` (not empty) as `width` values: the last repeated to fill them.
fn padded(ids: &[i64], width: usize) -> impl Iterator<Item = Value> + '_ {
    let last = ids.last().copied().unwrap_or_default();
    (0..width).map(move |i| Value::Int(ids.get(i).copied().unwrap_or(last)))
}

/// `UPDATE notices ... WHERE id IN (...)` with [`FAN_OUT_MARK_IDS`] ids
/// from `?2` on, and the time at `?1`.
static FAN_OUT_MARK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE notices SET fanned_out_at_ms = ?1 WHERE id IN ({})",
        placeholders(2, FAN_OUT_MARK_IDS)
    )
});

/// What a notice tells of, as the journal stores it (the config's event
/// names: a deploy state, `timed_out`, or `refused`).
fn notice_event(state: DeployState, reason: Option<&str>) -> &'static str {
    if state == DeployState::Failed && reason.is_some_and(|r| r.starts_with(TIMED_OUT_REASON)) {
        "timed_out"
    } else {
        state.as_str()
    }
}

/// Inside the transaction that moves deploy `deploy_id` of `stack` to
/// `state` (or inserts it `queued`): the notice of it.
pub(super) fn queue_notice(
    sql: &mut dyn Sql,
    stack: &str,
    deploy_id: i64,
    state: DeployState,
    at_ms: i64,
    reason: Option<&str>,
) -> Result<(), DbError> {
    sql.execute_pipelined(
        "INSERT INTO notices (stack, event, deploy_id, detail, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        args![stack, notice_event(state, reason), deploy_id, reason, at_ms],
    )?;
    Ok(())
}

/// A notification to send: its row and its notice's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Its id: the order a (stack, channel)'s notifications are sent in,
    /// and the id receivers see.
    pub id: i64,
    /// The channel it goes to.
    pub channel: String,
    /// The stack it is about.
    pub stack: String,
    /// The notice's event name (`failed`, `timed_out`, `refused`...).
    pub event: String,
    /// The deploy it is about (deploy events).
    pub deploy_id: Option<i64>,
    /// The transition's reason, or what was refused.
    pub detail: Option<String>,
    /// For `refused`: how many deliveries, in how long a window (ms).
    pub refused: Option<(i64, i64)>,
    /// When the notice was written (ms since the epoch).
    pub at_ms: i64,
    /// How many times a sender claimed it.
    pub attempts: i64,
    /// Not to be sent before this time (a retry's back-off), if set.
    pub not_before_ms: Option<i64>,
}

/// A notification with how its sending went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationRecord {
    /// The notification.
    pub notification: Notification,
    /// `sent`, `failed` or `skipped`; `None` while it waits.
    pub outcome: Option<String>,
    /// What the channel answered, or why it was not taken (the last
    /// attempt's, while it waits).
    pub detail: Option<String>,
}

const NOTIFICATION_COLUMNS: &str = "n.id, n.channel, n.stack, o.event, o.deploy_id, o.detail, \
     o.refused_count, o.refused_window_ms, o.created_at_ms, n.attempts, n.not_before_ms";

fn notification_from_row(row: &Rec) -> Result<Notification, DbError> {
    let count: Option<i64> = row.get(6)?;
    let window: Option<i64> = row.get(7)?;
    Ok(Notification {
        id: row.get(0)?,
        channel: row.get(1)?,
        stack: row.get(2)?,
        event: row.get(3)?,
        deploy_id: row.get(4)?,
        detail: row.get(5)?,
        refused: count.zip(window),
        at_ms: row.get(8)?,
        attempts: row.get(9)?,
        not_before_ms: row.get(10)?,
    })
}

/// A row of [`NOTIFICATION_COLUMNS`] followed by the outcome and its detail.
fn record_from_row(row: &Rec) -> Result<NotificationRecord, DbError> {
    Ok(NotificationRecord {
        notification: notification_from_row(row)?,
        outcome: row.get(11)?,
        detail: row.get(12)?,
    })
}

/// How a notification's sending ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotificationOutcome {
    /// The channel took it.
    Sent,
    /// Refused for good, or not taken within the channel's `give_up_after`.
    Failed,
    /// Not sent: its channel is gone from the config.
    Skipped,
}

impl NotificationOutcome {
    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationOutcome::Sent => "sent",
            NotificationOutcome::Failed => "failed",
            NotificationOutcome::Skipped => "skipped",
        }
    }
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Journal {
    /// Journals that `count` deliveries to stack `stack`'s hook URL were
    /// refused within `window` (`detail`: what the first was refused for).
    pub fn add_refused_notice(
        &self,
        stack: &str,
        count: u64,
        window: std::time::Duration,
        detail: &str,
        at_ms: i64,
    ) -> Result<(), JournalError> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.append("journal refused deliveries", |sql| {
            sql.execute(
                "INSERT INTO notices (stack, event, detail, refused_count, refused_window_ms, created_at_ms)
                 VALUES (?1, 'refused', ?2, ?3, ?4, ?5)",
                args![stack, detail, count, millis(window), at_ms],
            )?;
            Ok(())
        })
    }

    /// For `holder` of [`NOTIFICATIONS_LEASE`]: fans the oldest notices not
    /// yet fanned out (at most `limit`) out into one notification per
    /// channel `route(event, stack)` names, in one transaction (none when
    /// there is nothing to fan out). How many notices it fanned out, or
    /// `None` (and nothing written) when `holder` no longer holds the
    /// lease.
    pub fn fan_out_notices(
        &self,
        holder: &str,
        route: &(dyn Fn(&str, &str) -> Vec<String> + Sync),
        at_ms: i64,
        limit: usize,
    ) -> Result<Option<usize>, JournalError> {
        let waiting = self.read("read the notices", |sql| {
            Ok(sql
                .query_opt(
                    "SELECT id FROM notices WHERE fanned_out_at_ms IS NULL LIMIT 1",
                    args![],
                )?
                .is_some())
        })?;
        if !waiting {
            return Ok(Some(0));
        }
        let now = super::leases::clock(&self.backend);
        let held = format!(
            "SELECT 1 FROM leases WHERE name = ?1 AND holder = ?2 AND expires_at_ms >= {now}"
        );
        // Relaxed: lost (to a power loss, with the notices' fan-out state
        // beside it), it is done again the same way; and the claim of any
        // notification it made waits for the disk, which takes this commit
        // along (a log is written in order).
        self.commit(Commit::ExclusiveRelaxed, "fan out notices", |sql| {
            if sql
                .query_opt(&held, args![NOTIFICATIONS_LEASE, holder])?
                .is_none()
            {
                return Ok(None);
            }
            let notices = sql.query(
                "SELECT id, stack, event FROM notices WHERE fanned_out_at_ms IS NULL
                 ORDER BY id LIMIT ?1",
                args![limit],
            )?;
            let mut fanned_out = Vec::with_capacity(notices.len());
            for row in &notices {
                let id: i64 = row.get(0)?;
                let stack: String = row.get(1)?;
                let event: String = row.get(2)?;
                for channel in route(&event, &stack) {
                    sql.execute(
                        "INSERT INTO notifications (notice_id, channel, stack, created_at_ms)
                         VALUES (?1, ?2, ?3, ?4)",
                        args![id, channel, stack, at_ms],
                    )?;
                }
                fanned_out.push(id);
            }
            // Exactly the notices read above: one written meanwhile by a
            // transaction that holds no write lock is left for the next pass.
            for ids in fanned_out.chunks(FAN_OUT_MARK_IDS) {
                let mut values = Vec::with_capacity(FAN_OUT_MARK_IDS + 1);
                values.push(Value::Int(at_ms));
                values.extend(padded(ids, FAN_OUT_MARK_IDS));
                sql.execute(&FAN_OUT_MARK, &values)?;
            }
            Ok(Some(notices.len()))
        })
    }

    /// The oldest unsettled notification of each (channel, stack), due or
    /// not: only these may be sent, so each (channel, stack)'s go in order.
    pub fn notification_heads(&self) -> Result<Vec<Notification>, JournalError> {
        self.read("read the notifications", |sql| {
            sql.query(
                &format!(
                    "SELECT {NOTIFICATION_COLUMNS}
                     FROM notifications n JOIN notices o ON o.id = n.notice_id
                     WHERE n.id IN (SELECT MIN(id) FROM notifications WHERE outcome IS NULL
                                    GROUP BY channel, stack)
                     ORDER BY n.id"
                ),
                args![],
            )?
            .iter()
            .map(notification_from_row)
            .collect()
        })
    }

    /// Every notification after `after_id`, oldest first, at most `limit`,
    /// with how its sending went.
    pub fn notifications(
        &self,
        after_id: i64,
        limit: usize,
    ) -> Result<Vec<NotificationRecord>, JournalError> {
        self.read("read the notifications", |sql| {
            sql.query(
                &format!(
                    "SELECT {NOTIFICATION_COLUMNS}, n.outcome, n.outcome_detail
                     FROM notifications n JOIN notices o ON o.id = n.notice_id
                     WHERE n.id > ?1 ORDER BY n.id LIMIT ?2"
                ),
                args![after_id, limit],
            )?
            .iter()
            .map(record_from_row)
            .collect()
        })
    }

    /// The notifications of deploy `deploy_id`, oldest first (at most
    /// `limit`), with how each went: for its page.
    pub fn notifications_of_deploy(
        &self,
        deploy_id: i64,
        limit: usize,
    ) -> Result<Vec<NotificationRecord>, JournalError> {
        self.read("read a deploy's notifications", |sql| {
            sql.query(
                &format!(
                    "SELECT {NOTIFICATION_COLUMNS}, n.outcome, n.outcome_detail
                     FROM notifications n JOIN notices o ON o.id = n.notice_id
                     WHERE o.deploy_id = ?1 ORDER BY n.id LIMIT ?2"
                ),
                args![deploy_id, limit],
            )?
            .iter()
            .map(record_from_row)
            .collect()
        })
    }

    /// For `holder` of [`NOTIFICATIONS_LEASE`] about to send notification
    /// `id`: renews the lease to `ttl` from now and counts the attempt, in
    /// one transaction.
    pub fn claim_notification(
        &self,
        id: i64,
        holder: &str,
        ttl: std::time::Duration,
        at_ms: i64,
    ) -> Result<Claim, JournalError> {
        self.claim_row(
            "claim a notification",
            NOTIFICATIONS_LEASE,
            "notifications",
            id,
            holder,
            ttl,
            at_ms,
        )
    }

    /// Settles notification `id`. False (and nothing written) if it was
    /// settled already.
    pub fn settle_notification(
        &self,
        id: i64,
        outcome: NotificationOutcome,
        detail: &str,
        at_ms: i64,
    ) -> Result<bool, JournalError> {
        self.append("settle a notification", |sql| {
            Ok(sql.execute(
                "UPDATE notifications SET outcome = ?2, outcome_detail = ?3, settled_at_ms = ?4
                 WHERE id = ?1 AND outcome IS NULL",
                args![id, outcome.as_str(), detail, at_ms],
            )? == 1)
        })
    }

    /// Leaves notification `id` unsettled, to be tried again from
    /// `not_before_ms` on, with why (`detail`). False if it was settled
    /// meanwhile.
    pub fn defer_notification(
        &self,
        id: i64,
        not_before_ms: i64,
        detail: &str,
    ) -> Result<bool, JournalError> {
        self.append("defer a notification", |sql| {
            Ok(sql.execute(
                "UPDATE notifications SET not_before_ms = ?2, outcome_detail = ?3
                 WHERE id = ?1 AND outcome IS NULL",
                args![id, not_before_ms, detail],
            )? == 1)
        })
    }

    /// Whether any notice waits to be fanned out or any notification to
    /// be sent.
    pub fn notifications_pending(&self) -> Result<bool, JournalError> {
        self.notifications_due_by(i64::MAX)
    }

    /// Whether any notice waits to be fanned out or any notification may
    /// be sent by `by_ms` (one held back until later does not count).
    pub fn notifications_due_by(&self, by_ms: i64) -> Result<bool, JournalError> {
        self.read("read the notifications", |sql| {
            Ok(sql
                .query_opt(
                    "SELECT 1 FROM notices WHERE fanned_out_at_ms IS NULL
                     UNION ALL
                     SELECT 1 FROM notifications
                     WHERE outcome IS NULL AND (not_before_ms IS NULL OR not_before_ms <= ?1)
                     LIMIT 1",
                    args![by_ms],
                )?
                .is_some())
        })
    }

    /// Settles as failed, unsent, every unsettled notification of
    /// `channel` whose event is older than `before_ms` (past the channel's
    /// `give_up_after`), but those in `sending` (their sends settle them);
    /// how many.
    pub fn give_up_notifications(
        &self,
        channel: &str,
        before_ms: i64,
        sending: &[i64],
        at_ms: i64,
    ) -> Result<u64, JournalError> {
        // The ids are parameters from `?4` on, a clause per
        // SPARED_IDS_PER_CLAUSE: one statement text per number of clauses.
        let mut values = args![channel, before_ms, at_ms].to_vec();
        let mut spared = String::new();
        for ids in sending.chunks(SPARED_IDS_PER_CLAUSE) {
            let marks = placeholders(values.len() + 1, SPARED_IDS_PER_CLAUSE);
            spared.push_str(&format!(" AND id NOT IN ({marks})"));
            values.extend(padded(ids, SPARED_IDS_PER_CLAUSE));
        }
        let statement = format!(
            "UPDATE notifications
             SET outcome = 'failed', settled_at_ms = ?3,
                 outcome_detail = 'not sent within the channel''s give_up_after'
                                  || COALESCE(' (last: ' || outcome_detail || ')', '')
             WHERE channel = ?1 AND outcome IS NULL{spared}
               AND notice_id IN (SELECT id FROM notices WHERE created_at_ms < ?2)"
        );
        self.append("give up old notifications", |sql| {
            sql.execute(&statement, &values)
        })
    }

    /// Deletes the notices older than `before_ms` whose notifications are
    /// all settled (their notifications with them); how many.
    pub fn prune_notices(&self, before_ms: i64) -> Result<u64, JournalError> {
        self.write("prune notices", |sql| {
            sql.execute(
                "DELETE FROM notices WHERE created_at_ms < ?1 AND fanned_out_at_ms IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM notifications n
                                   WHERE n.notice_id = notices.id AND n.outcome IS NULL)",
                args![before_ms],
            )
        })
    }
}
