//! An operator's "Cancel" (schema: SQLite 12, PostgreSQL 8). A queued
//! deploy is cancelled at once. A started one may be running on any
//! replica, so the request is a row's column: the runner running it reads
//! it while the deploy runs ([`crate::runner`]), stops its processes and
//! records it `cancelled`.

use super::sql::{args, DbError, Sql};
use super::{apply_transition, DeployState, Journal, JournalError, TransitionDetail};

/// What [`Journal::cancel_deploy`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued, and now is cancelled, with the stack's older queued
    /// deploys it had superseded (on a journal replicas share they wait for
    /// the stack's next claim to cancel them; with no newer deploy to claim,
    /// one of them would run): their ids and reasons.
    Cancelled(Vec<(i64, String)>),
    /// It is running: its runner will stop it.
    Requested,
    /// It had already ended, in this state: nothing changed.
    AlreadyOver(DeployState),
    /// No deploy has that id.
    NotFound,
}

impl Journal {
    /// Cancels deploy `id` for `reason`, in one transaction: a queued one
    /// at once, a started one by recording the request its runner acts on.
    pub fn cancel_deploy(
        &self,
        id: i64,
        reason: &str,
        at_ms: i64,
    ) -> Result<CancelOutcome, JournalError> {
        self.write("cancel a deploy", |sql| {
            let Some(row) = sql.query_opt(
                "SELECT state, stack, git_ref, repository FROM deploys WHERE id = ?1",
                args![id],
            )?
            else {
                return Ok(CancelOutcome::NotFound);
            };
            match row.get::<DeployState>(0)? {
                DeployState::Queued => {
                    let detail = TransitionDetail {
                        reason: Some(reason.to_owned()),
                        ..Default::default()
                    };
                    apply_transition(sql, id, DeployState::Cancelled, at_ms, &detail)?;
                    let stack: String = row.get(1)?;
                    let lane = crate::queue::Lane {
                        git_ref: row.get(2)?,
                        repository: row.get(3)?,
                    };
                    let superseded = super::claim::cancel_older(sql, &stack, id, &lane, at_ms)?;
                    Ok(CancelOutcome::Cancelled(superseded))
                }
                DeployState::Started => {
                    sql.execute(
                        "UPDATE deploys SET cancel_requested = ?2 WHERE id = ?1",
                        args![id, reason],
                    )?;
                    Ok(CancelOutcome::Requested)
                }
                over => Ok(CancelOutcome::AlreadyOver(over)),
            }
        })
    }

    /// Whether deploy `id` is no reason to cancel another for: it is
    /// cancelled, or runs with an operator's request to cancel it (it may
    /// still be stopping), or the journal holds no such deploy (a queue
    /// may hold one whose admission did not commit, until it is undone:
    /// [`crate::queue::StackQueue::undo`]).
    pub fn gone_or_cancelling(&self, id: i64) -> Result<bool, JournalError> {
        self.read("read a cancel request", |sql| gone_or_cancelling(sql, id))
    }

    /// Why deploy `id` is to be cancelled, if an operator asked.
    pub fn cancel_requested(&self, id: i64) -> Result<Option<String>, JournalError> {
        self.read("read a cancel request", |sql| {
            Ok(sql
                .query_opt(
                    "SELECT cancel_requested FROM deploys WHERE id = ?1",
                    args![id],
                )?
                .map(|row| row.get::<Option<String>>(0))
                .transpose()?
                .flatten())
        })
    }
}

/// [`Journal::gone_or_cancelling`] in the caller's transaction.
pub(super) fn gone_or_cancelling(sql: &mut dyn Sql, id: i64) -> Result<bool, DbError> {
    Ok(sql
        .query_opt(
            "SELECT 1 FROM deploys WHERE id = ?1
             AND state <> ?2 AND NOT (state = ?3 AND cancel_requested IS NOT NULL)",
            args![id, DeployState::Cancelled, DeployState::Started],
        )?
        .is_none())
}
