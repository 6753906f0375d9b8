//! The outbox: every GitHub deployment to create, every deployment status
//! and every registry callback to send, one row each, in the order they
//! arose, with how its sending went.
//!
//! Rows are written in the transaction that causes them, so a crash can
//! never keep a journaled cause without its row: a deployment request's
//! insert writes its `deployment` row ([`queue_for_request`]), and every
//! deploy transition (the `queued` insert included) writes the `status`
//! and `callback` rows it calls for ([`queue_for_transition`]): a status
//! when the deploy reports to a GitHub deployment (its event names one, or
//! a deployment request was made for it), a callback when its event carries
//! a callback URL and the state is final.
//!
//! One process at a time sends them: the holder of the lease
//! [`OUTBOX_LEASE`]. Before each send it claims the row
//! ([`Journal::claim_outbox_row`], which renews the lease on the database's
//! clock in the same transaction, so a process that lost the lease claims
//! nothing); after the send it settles the row
//! ([`Journal::settle_outbox_row`]) together with what the send changed
//! (the request's answer, the `reports` row). A row is therefore sent once,
//! except around one window: a sender that stops (crashes, or loses its
//! lease) after the receiver took a row and before the row is settled
//! leaves it claimed and unsettled. The next holder finds it *in doubt*
//! (`attempts` not 0 when it claims it) and, for GitHub, asks before
//! sending it again (`notify::in_doubt`): a deployment status already
//! among the deployment's statuses, or a deployment an earlier attempt
//! created, is settled as sent without a second request; a check that
//! fails is a failed send, never a blind one. What remains:
//!
//! - a registry callback in doubt is sent again unchecked (a callback URL
//!   has nothing to ask), so it may arrive twice;
//! - a GitHub request that arrived but was not yet stored (or listed) by
//!   GitHub when the next holder looked, at least the lease's time after
//!   the sender stopped, is made again;
//! - a status without a log link (no public URL) is recognised only as the
//!   deployment's newest status, so one hidden behind a later status
//!   someone else posted is sent again.
//!
//! `attempts` shows it all: a row settled with two attempts was checked
//! (or, for a callback, sent twice at most).

use serde::{Deserialize, Serialize};

use super::sql::{args, DbError, Rec, Sql};
use super::{DeployState, Journal, JournalError, NewDeploymentRequest, RequestState};

/// The lease whose holder sends the outbox (one process per journal).
pub const OUTBOX_LEASE: &str = "outbox";

/// What an outbox row asks to be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxKind {
    /// Create the GitHub deployment of a deployment request.
    Deployment,
    /// Report a deploy's state to its GitHub deployment.
    Status,
    /// Report a deploy's final state to its registry's callback URL.
    Callback,
}

impl OutboxKind {
    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Deployment => "deployment",
            OutboxKind::Status => "status",
            OutboxKind::Callback => "callback",
        }
    }

    fn parse(s: &str) -> Option<OutboxKind> {
        Some(match s {
            "deployment" => OutboxKind::Deployment,
            "status" => OutboxKind::Status,
            "callback" => OutboxKind::Callback,
            _ => return None,
        })
    }
}

/// How an outbox row was settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxOutcome {
    /// The receiver took it.
    Sent,
    /// It was tried and failed, or could not be sent (the detail says why).
    Failed,
    /// Nothing to send any more (the stack lost its settings).
    Skipped,
}

impl OutboxOutcome {
    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxOutcome::Sent => "sent",
            OutboxOutcome::Failed => "failed",
            OutboxOutcome::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Option<OutboxOutcome> {
        Some(match s {
            "sent" => OutboxOutcome::Sent,
            "failed" => OutboxOutcome::Failed,
            "skipped" => OutboxOutcome::Skipped,
            _ => return None,
        })
    }
}

/// One outbox row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OutboxRow {
    /// Row id: the order rows are sent in.
    pub id: i64,
    /// What to send.
    pub kind: OutboxKind,
    /// The stack it is about.
    pub stack: String,
    /// The deployment request to create (`deployment` rows).
    pub request_id: Option<i64>,
    /// The deploy reported (`status` and `callback` rows).
    pub deploy_id: Option<i64>,
    /// The deploy's state reported (`status` and `callback` rows).
    pub state: Option<DeployState>,
    /// The transition's reason, for the report's description.
    pub detail: Option<String>,
    /// When the row was written (ms since the epoch).
    pub created_at_ms: i64,
    /// How many times a sender claimed it.
    pub attempts: i64,
    /// How it was settled; `None` while it waits to be sent.
    pub outcome: Option<OutboxOutcome>,
    /// What the receiver answered, or why it was not sent.
    pub outcome_detail: Option<String>,
}

/// What [`Journal::claim_outbox_row`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The row is this holder's to send now.
    Claimed,
    /// The row is already settled (or gone): nothing to send.
    Settled,
    /// The claimant does not hold [`OUTBOX_LEASE`]: it must send nothing.
    LeaseLost,
}

/// A `reports` row, the record `redeploy history` shows of one report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportLine {
    /// The deploy reported.
    pub deploy_id: i64,
    /// `github` or `callback`.
    pub target: &'static str,
    /// The deploy state reported.
    pub state: DeployState,
    /// How it went, in words.
    pub outcome: String,
}

/// GitHub's answer to a deployment request, recorded on the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestAnswer {
    /// Where the request stands now.
    pub state: RequestState,
    /// The deployment GitHub created.
    pub deployment_id: Option<u64>,
    /// GitHub's HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// GitHub's message or the failure.
    pub detail: String,
}

/// How a row's sending ended, and what it changed: written in one
/// transaction by [`Journal::settle_outbox_row`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// The row's outcome.
    pub outcome: OutboxOutcome,
    /// The receiver's answer or the reason, in words.
    pub detail: String,
    /// The request's answer (`deployment` rows).
    pub answer: Option<(i64, RequestAnswer)>,
    /// The report to record (`status` and `callback` rows).
    pub report: Option<ReportLine>,
    /// When (ms since the epoch).
    pub at_ms: i64,
}

const OUTBOX_COLUMNS: &str = "id, kind, stack, request_id, deploy_id, state, detail, \
     created_at_ms, attempts, outcome, outcome_detail";

fn outbox_from_row(row: &Rec) -> Result<OutboxRow, DbError> {
    let kind: String = row.get(1)?;
    let outcome: Option<String> = row.get(9)?;
    Ok(OutboxRow {
        id: row.get(0)?,
        kind: OutboxKind::parse(&kind).ok_or_else(|| DbError::Decode {
            column: 1,
            problem: format!("unknown outbox kind {kind:?}"),
        })?,
        stack: row.get(2)?,
        request_id: row.get(3)?,
        deploy_id: row.get(4)?,
        state: row.get(5)?,
        detail: row.get(6)?,
        created_at_ms: row.get(7)?,
        attempts: row.get(8)?,
        outcome: outcome
            .map(|o| {
                OutboxOutcome::parse(&o).ok_or_else(|| DbError::Decode {
                    column: 9,
                    problem: format!("unknown outbox outcome {o:?}"),
                })
            })
            .transpose()?,
        outcome_detail: row.get(10)?,
    })
}

/// The parts of a journaled deploy event that decide its reports.
#[derive(Clone, Debug, Deserialize, Default, PartialEq, Eq)]
pub struct EventRefs {
    /// The GitHub deployment whose `deployment` event queued the deploy.
    pub github_deployment_id: Option<u64>,
    /// A registry's callback URL (Docker Hub) to report the outcome to.
    pub callback_url: Option<String>,
}

impl EventRefs {
    /// What the journaled event `event_json` refers to; a document that
    /// cannot be read refers to nothing (and reports nothing, as it never
    /// did).
    pub fn of(event_json: &str) -> EventRefs {
        serde_json::from_str(event_json).unwrap_or_default()
    }
}

/// The description a status of `state` carries: none for `queued` (the
/// deploy's reason is the push's, not news), the transition's reason
/// otherwise.
fn status_detail(state: DeployState, reason: Option<&str>) -> Option<&str> {
    (state != DeployState::Queued).then_some(reason).flatten()
}

/// Inside the transaction that moves deploy `deploy_id` to `state` (or
/// inserts it `queued`): writes the outbox rows the change calls for.
pub(super) fn queue_for_transition(
    sql: &mut dyn Sql,
    deploy_id: i64,
    state: DeployState,
    at_ms: i64,
    reason: Option<&str>,
) -> Result<(), DbError> {
    let Some(row) = sql.query_opt(
        "SELECT stack, event_json,
                (SELECT COUNT(*) FROM github_deployment_requests WHERE deploy_id = ?1)
         FROM deploys WHERE id = ?1",
        args![deploy_id],
    )?
    else {
        return Ok(());
    };
    let stack: String = row.get(0)?;
    let event_json: String = row.get(1)?;
    let requests: i64 = row.get(2)?;
    let change = Change {
        stack: &stack,
        deploy_id,
        state,
        at_ms,
        reason,
    };
    queue_reports(sql, &change, &event_json, requests > 0)
}

/// A deploy's change of state, as its outbox rows record it.
pub(super) struct Change<'a> {
    pub stack: &'a str,
    pub deploy_id: i64,
    pub state: DeployState,
    pub at_ms: i64,
    pub reason: Option<&'a str>,
}

/// Writes the outbox rows `change` calls for, given the deploy's journaled
/// event (`event_json`) and whether a deployment request was made for it
/// (`requested`): what [`queue_for_transition`] reads, for a caller that
/// already has it (the insert of a new deploy, which has no request yet).
pub(super) fn queue_reports(
    sql: &mut dyn Sql,
    change: &Change<'_>,
    event_json: &str,
    requested: bool,
) -> Result<(), DbError> {
    let &Change {
        stack,
        deploy_id,
        state,
        at_ms,
        reason,
    } = change;
    super::notices::queue_notice(sql, stack, deploy_id, state, at_ms, reason)?;
    let refs = EventRefs::of(event_json);
    if refs.github_deployment_id.is_some() || requested {
        insert_report_row(
            sql,
            OutboxKind::Status,
            stack,
            deploy_id,
            state,
            status_detail(state, reason),
            at_ms,
        )?;
    }
    if refs.callback_url.is_some() && state.is_final() {
        insert_report_row(
            sql,
            OutboxKind::Callback,
            stack,
            deploy_id,
            state,
            reason,
            at_ms,
        )?;
    }
    Ok(())
}

fn insert_report_row(
    sql: &mut dyn Sql,
    kind: OutboxKind,
    stack: &str,
    deploy_id: i64,
    state: DeployState,
    detail: Option<&str>,
    at_ms: i64,
) -> Result<(), DbError> {
    sql.execute_pipelined(
        "INSERT INTO outbox (kind, stack, deploy_id, state, detail, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        args![kind.as_str(), stack, deploy_id, state, detail, at_ms],
    )?;
    Ok(())
}

/// Inside the transaction that inserts deployment request `request_id`:
/// its `deployment` row, then, for a deploy that reports to it and has no
/// status rows yet, a status row for each state it has been in (the deploy
/// is inserted before its request, so its `queued` waits here for the
/// deployment that will carry it).
pub(super) fn queue_for_request(
    sql: &mut dyn Sql,
    request_id: i64,
    r: &NewDeploymentRequest,
) -> Result<(), DbError> {
    sql.execute_pipelined(
        "INSERT INTO outbox (kind, stack, request_id, created_at_ms) VALUES ('deployment', ?1, ?2, ?3)",
        args![r.stack, request_id, r.created_at_ms],
    )?;
    let Some(deploy_id) = r.deploy_id else {
        return Ok(());
    };
    queue_statuses_so_far(sql, deploy_id)
}

/// For deploy `deploy_id`, just linked to a deployment request (in the
/// caller's transaction) and with no status rows yet: a status row for each
/// state it has been in, so the deployment hears of them in order.
pub(super) fn queue_statuses_so_far(sql: &mut dyn Sql, deploy_id: i64) -> Result<(), DbError> {
    let reported: i64 = sql
        .query_one(
            "SELECT COUNT(*) FROM outbox WHERE deploy_id = ?1 AND kind = 'status'",
            args![deploy_id],
        )?
        .get(0)?;
    if reported > 0 {
        return Ok(());
    }
    let Some(stack) = sql
        .query_opt("SELECT stack FROM deploys WHERE id = ?1", args![deploy_id])?
        .map(|row| row.get::<String>(0))
        .transpose()?
    else {
        return Ok(());
    };
    let history = sql.query(
        "SELECT state, at_ms, detail FROM deploy_transitions WHERE deploy_id = ?1 ORDER BY id",
        args![deploy_id],
    )?;
    for row in &history {
        let state: DeployState = row.get(0)?;
        let reason: Option<String> = row.get(2)?;
        insert_report_row(
            sql,
            OutboxKind::Status,
            &stack,
            deploy_id,
            state,
            status_detail(state, reason.as_deref()),
            row.get(1)?,
        )?;
    }
    Ok(())
}

impl Journal {
    /// The unsettled outbox rows, oldest first, at most `limit`.
    pub fn outbox_unsettled(&self, limit: usize) -> Result<Vec<OutboxRow>, JournalError> {
        self.read("read the outbox", |sql| {
            sql.query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE outcome IS NULL ORDER BY id LIMIT ?1"
                ),
                args![limit],
            )?
            .iter()
            .map(outbox_from_row)
            .collect()
        })
    }

    /// The unsettled rows after `after_id` that may be sent at `now_ms`
    /// (those waiting until later, [`Journal::defer_outbox_row`], left
    /// out), oldest first, at most `limit`: what the sender reads, page
    /// after page.
    pub fn outbox_due(
        &self,
        after_id: i64,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, JournalError> {
        self.read("read the outbox", |sql| {
            sql.query(
                &format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox
                     WHERE outcome IS NULL AND id > ?1
                       AND (not_before_ms IS NULL OR not_before_ms <= ?2)
                     ORDER BY id LIMIT ?3"
                ),
                args![after_id, now_ms, limit],
            )?
            .iter()
            .map(outbox_from_row)
            .collect()
        })
    }

    /// Leaves `deployment` row `id` (of request `request_id`) unsettled, to
    /// be sent again from `not_before_ms` on, and records why on the row
    /// and on the still pending request (`detail`, GitHub's `http_status`
    /// if it answered). The rows after it are sent meanwhile; the statuses
    /// of a deploy that reports to the request wait for it, as before.
    /// False (and nothing written) if the row was settled meanwhile.
    pub fn defer_outbox_row(
        &self,
        id: i64,
        request_id: i64,
        not_before_ms: i64,
        detail: &str,
        http_status: Option<u16>,
        at_ms: i64,
    ) -> Result<bool, JournalError> {
        self.write("defer an outbox row", |sql| {
            let deferred = sql.execute(
                "UPDATE outbox SET not_before_ms = ?2, outcome_detail = ?3
                 WHERE id = ?1 AND outcome IS NULL",
                args![id, not_before_ms, detail],
            )?;
            if deferred != 1 {
                return Ok(false);
            }
            sql.execute(
                "UPDATE github_deployment_requests
                 SET detail = ?2, http_status = ?3, updated_at_ms = ?4
                 WHERE id = ?1 AND state = 'pending'",
                args![request_id, detail, http_status, at_ms],
            )?;
            Ok(true)
        })
    }

    /// Outbox rows after `after_id`, oldest first, at most `limit`, settled
    /// or not.
    pub fn outbox_rows(&self, after_id: i64, limit: usize) -> Result<Vec<OutboxRow>, JournalError> {
        self.read("read the outbox", |sql| {
            sql.query(
                &format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2"),
                args![after_id, limit],
            )?
            .iter()
            .map(outbox_from_row)
            .collect()
        })
    }

    /// The newest outbox row's id (0 when there is none).
    pub fn outbox_last_id(&self) -> Result<i64, JournalError> {
        self.read("read the outbox", |sql| {
            sql.query_one("SELECT COALESCE(MAX(id), 0) FROM outbox", args![])?
                .get(0)
        })
    }

    /// How many rows up to id `through` wait to be sent.
    pub fn outbox_unsettled_through(&self, through: i64) -> Result<i64, JournalError> {
        self.read("read the outbox", |sql| {
            sql.query_one(
                "SELECT COUNT(*) FROM outbox WHERE outcome IS NULL AND id <= ?1",
                args![through],
            )?
            .get(0)
        })
    }

    /// For `holder` of [`OUTBOX_LEASE`] about to send row `id`: renews the
    /// lease to `ttl` from now (the database's clock) and counts the
    /// attempt, in one transaction. [`Claim::LeaseLost`] when `holder` no
    /// longer holds the lease (nothing is written), [`Claim::Settled`] when
    /// the row needs no sending.
    pub fn claim_outbox_row(
        &self,
        id: i64,
        holder: &str,
        ttl: std::time::Duration,
        at_ms: i64,
    ) -> Result<Claim, JournalError> {
        self.claim_row(
            "claim an outbox row",
            OUTBOX_LEASE,
            "outbox",
            id,
            holder,
            ttl,
            at_ms,
        )
    }

    /// Settles row `id` as `settlement` says, with the request's answer and
    /// the report it carries, in one transaction. False (and nothing
    /// written) if the row was already settled.
    pub fn settle_outbox_row(
        &self,
        id: i64,
        settlement: &Settlement,
    ) -> Result<bool, JournalError> {
        self.write("settle an outbox row", |sql| {
            let settled = sql.execute(
                "UPDATE outbox SET outcome = ?2, outcome_detail = ?3, settled_at_ms = ?4
                 WHERE id = ?1 AND outcome IS NULL",
                args![
                    id,
                    settlement.outcome.as_str(),
                    settlement.detail,
                    settlement.at_ms
                ],
            )?;
            if settled != 1 {
                return Ok(false);
            }
            if let Some((request_id, a)) = &settlement.answer {
                sql.execute(
                    "UPDATE github_deployment_requests
                     SET state = ?2, deployment_id = ?3, http_status = ?4, detail = ?5,
                         updated_at_ms = ?6
                     WHERE id = ?1",
                    args![
                        request_id,
                        a.state.as_str(),
                        a.deployment_id,
                        a.http_status,
                        a.detail,
                        settlement.at_ms
                    ],
                )?;
            }
            if let Some(r) = &settlement.report {
                sql.execute(
                    "INSERT INTO reports (deploy_id, target, state, outcome, at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    args![r.deploy_id, r.target, r.state, r.outcome, settlement.at_ms],
                )?;
            }
            Ok(true)
        })
    }

    /// Writes a `deployment` row for each pending deployment request that
    /// has none (one imported from an export, which carries no outbox), so
    /// the outbox's sender sends it. Returns how many.
    pub fn adopt_pending_requests(&self, at_ms: i64) -> Result<u64, JournalError> {
        self.write("adopt pending deployment requests", |sql| {
            sql.execute(
                "INSERT INTO outbox (kind, stack, request_id, created_at_ms)
                 SELECT 'deployment', r.stack, r.id, CAST(?1 AS BIGINT) FROM github_deployment_requests r
                 WHERE r.state = 'pending'
                   AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.request_id = r.id)
                 ORDER BY r.id",
                args![at_ms],
            )
        })
    }
}
