//! Pruning the journal: old deliveries and old finished deploys go, so the
//! journal does not grow for ever. What a deploy row pointed to on disk (its
//! log and event file) is returned for the caller to delete.

use super::sql::{args, Sql};
use super::{DbError, Journal, JournalError};

/// The finished deploys `prune` deletes, given `?1` = most kept per stack,
/// `?2` = fewest kept per stack and `?3` = the cut-off: ranked newest
/// first within their stack, past the maximum, or past the minimum and
/// older than the cut-off; never one a pending GitHub request still needs,
/// nor one with a report still waiting in the outbox, nor one with a
/// notification still waiting to be sent. (A notice not yet fanned out
/// goes with its deploy: a journal no sender looks at, such as a
/// hook-only install's without channels, is pruned all the same.)
/// Every statement of one prune computes the same set: none of them changes
/// what it depends on before the last one deletes the deploys.
const PRUNED_DEPLOYS: &str = "
    SELECT id FROM (
        SELECT id, created_at_ms,
               ROW_NUMBER() OVER (PARTITION BY stack ORDER BY id DESC) AS rank
        FROM deploys
        WHERE state IN ('succeeded','failed','cancelled','interrupted')) AS ranked
    WHERE (rank > ?1 OR (rank > ?2 AND created_at_ms < ?3))
      AND id NOT IN (
        SELECT deploy_id FROM github_deployment_requests
        WHERE state = 'pending' AND deploy_id IS NOT NULL)
      AND id NOT IN (
        SELECT deploy_id FROM outbox
        WHERE outcome IS NULL AND deploy_id IS NOT NULL)
      AND id NOT IN (
        SELECT o.deploy_id FROM notices o JOIN notifications n ON n.notice_id = o.id
        WHERE n.outcome IS NULL AND o.deploy_id IS NOT NULL)";

/// What to keep. Times are in milliseconds since the epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrunePolicy {
    /// Deliveries received before this are deleted.
    pub deliveries_before_ms: i64,
    /// Refused deliveries (status 400 and up) received before this are
    /// deleted (a shorter retention than the others).
    pub refused_before_ms: i64,
    /// Finished deploys created before this are deleted, beyond the newest
    /// `keep_deploys_min` of their stack.
    pub deploys_before_ms: i64,
    /// Newest finished deploys per stack kept whatever their age.
    pub keep_deploys_min: usize,
    /// Finished deploys per stack kept at most, whatever their age.
    pub keep_deploys_max: usize,
}

/// What a prune deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Delivery rows deleted.
    pub deliveries: usize,
    /// Deploy rows deleted (with their transitions and reports).
    pub deploys: usize,
    /// The deleted deploys that had a log, whose files go with them.
    pub logged: Vec<PrunedLog>,
}

/// A deleted deploy that had a log: its stack and id, which name its files
/// (`crate::deploy_log::file_path`), never the path its row gave, which an
/// imported export or a writer of a shared database chooses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PrunedLog {
    /// The deploy's stack.
    pub stack: String,
    /// The deploy's id.
    pub id: i64,
}

impl Journal {
    /// Deletes what `policy` does not keep, in one transaction. Deploys not
    /// yet finished (queued, started) are never deleted, nor is a GitHub
    /// deployment request still pending.
    pub fn prune(&self, policy: &PrunePolicy) -> Result<Pruned, JournalError> {
        self.write("prune", |sql| prune(sql, policy))
    }
}

/// [`Journal::prune`] inside its transaction.
fn prune(sql: &mut dyn Sql, policy: &PrunePolicy) -> Result<Pruned, DbError> {
    let mut pruned = Pruned::default();
    let counted = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    pruned.deliveries += counted(sql.execute(
        "DELETE FROM deliveries WHERE received_at_ms < ?1 AND status >= 400",
        args![policy.refused_before_ms],
    )?);
    pruned.deliveries += counted(sql.execute(
        "DELETE FROM deliveries WHERE received_at_ms < ?1",
        args![policy.deliveries_before_ms],
    )?);
    let set = args![
        policy.keep_deploys_max,
        policy.keep_deploys_min,
        policy.deploys_before_ms
    ];
    for row in sql.query(
        &format!(
            "SELECT stack, id FROM deploys
             WHERE id IN ({PRUNED_DEPLOYS}) AND log_path IS NOT NULL"
        ),
        set,
    )? {
        pruned.logged.push(PrunedLog {
            stack: row.get(0)?,
            id: row.get(1)?,
        });
    }
    sql.execute(
        &format!(
            "UPDATE deploys SET superseded_by = NULL WHERE superseded_by IN ({PRUNED_DEPLOYS})"
        ),
        set,
    )?;
    sql.execute(
        &format!("DELETE FROM github_deployment_requests WHERE deploy_id IN ({PRUNED_DEPLOYS})"),
        set,
    )?;
    // GitHub requests that never made a deploy age out with deliveries.
    sql.execute(
        "DELETE FROM github_deployment_requests
         WHERE deploy_id IS NULL AND state <> 'pending' AND created_at_ms < ?1",
        args![policy.deliveries_before_ms],
    )?;
    // Transitions and reports go with their deploy (ON DELETE CASCADE).
    pruned.deploys = counted(sql.execute(
        &format!("DELETE FROM deploys WHERE id IN ({PRUNED_DEPLOYS})"),
        set,
    )?);
    Ok(pruned)
}
