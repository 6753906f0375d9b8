//! Pruning the journal: old deliveries and old finished deploys go, so the
//! journal does not grow for ever. What a deploy row pointed to on disk (its
//! log and event file) is returned for the caller to delete.

use rusqlite::{params, TransactionBehavior};

use super::{Journal, JournalError};

/// Schema version 5: an index to find old deliveries without a full scan.
pub(super) const SCHEMA_V5: &str = "
CREATE INDEX IF NOT EXISTS deliveries_received ON deliveries (received_at_ms);
";

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
    /// The log files of the deleted deploys (their event files sit beside
    /// them as `<id>.event.json`).
    pub log_paths: Vec<String>,
}

impl Journal {
    /// Deletes what `policy` does not keep, in one transaction. Deploys not
    /// yet finished (queued, started) are never deleted, nor is a GitHub
    /// deployment request still pending.
    pub fn prune(&self, policy: &PrunePolicy) -> Result<Pruned, JournalError> {
        let mut conn = self.lock();
        let result = (|| -> rusqlite::Result<Pruned> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut pruned = Pruned::default();
            pruned.deliveries += tx.execute(
                "DELETE FROM deliveries WHERE received_at_ms < ?1 AND status >= 400",
                [policy.refused_before_ms],
            )?;
            pruned.deliveries += tx.execute(
                "DELETE FROM deliveries WHERE received_at_ms < ?1",
                [policy.deliveries_before_ms],
            )?;
            // Finished deploys ranked newest first within their stack: past
            // the maximum, or past the minimum and older than the cut-off.
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS prune_deploys (id INTEGER PRIMARY KEY);
                 DELETE FROM prune_deploys;",
            )?;
            tx.execute(
                "INSERT INTO prune_deploys (id)
                 SELECT id FROM (
                     SELECT id, created_at_ms,
                            ROW_NUMBER() OVER (PARTITION BY stack ORDER BY id DESC) AS rank
                     FROM deploys
                     WHERE state IN ('succeeded','failed','cancelled','interrupted'))
                 WHERE rank > ?1 OR (rank > ?2 AND created_at_ms < ?3)",
                params![
                    policy.keep_deploys_max as i64,
                    policy.keep_deploys_min as i64,
                    policy.deploys_before_ms
                ],
            )?;
            // Keep the GitHub requests still pending; the others describe
            // deploys that are going.
            tx.execute(
                "DELETE FROM prune_deploys WHERE id IN (
                     SELECT deploy_id FROM github_deployment_requests
                     WHERE state = 'pending' AND deploy_id IS NOT NULL)",
                [],
            )?;
            {
                let mut stmt = tx.prepare(
                    "SELECT log_path FROM deploys
                     WHERE id IN (SELECT id FROM prune_deploys) AND log_path IS NOT NULL",
                )?;
                let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
                for path in rows {
                    pruned.log_paths.push(path?);
                }
            }
            tx.execute(
                "UPDATE deploys SET superseded_by = NULL
                 WHERE superseded_by IN (SELECT id FROM prune_deploys)",
                [],
            )?;
            tx.execute(
                "DELETE FROM github_deployment_requests
                 WHERE deploy_id IN (SELECT id FROM prune_deploys)",
                [],
            )?;
            // GitHub requests that never made a deploy age out with deliveries.
            tx.execute(
                "DELETE FROM github_deployment_requests
                 WHERE deploy_id IS NULL AND state <> 'pending' AND created_at_ms < ?1",
                [policy.deliveries_before_ms],
            )?;
            // Transitions and reports go with their deploy (ON DELETE CASCADE).
            pruned.deploys = tx.execute(
                "DELETE FROM deploys WHERE id IN (SELECT id FROM prune_deploys)",
                [],
            )?;
            tx.execute("DELETE FROM prune_deploys", [])?;
            tx.commit()?;
            Ok(pruned)
        })();
        result.map_err(self.err("prune"))
    }
}
