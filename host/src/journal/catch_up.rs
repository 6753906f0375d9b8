//! Catching up on GitHub webhook deliveries (schema: SQLite 14,
//! PostgreSQL 10): the webhook `redeploy github connect` recorded for each
//! stack, how far catch-up has looked at its deliveries, and each delivery
//! it asked GitHub to redeliver, so that none is asked for twice, across
//! restarts and replicas.

use std::collections::{HashMap, HashSet};

use super::sql::{args, DbError, Rec};
use super::{Journal, JournalError};

/// A stack's repository webhook, as the journal remembers it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GithubHook {
    /// The stack.
    pub stack: String,
    /// The API it lives on (`[stacks.github] api_url` when recorded).
    pub api_url: String,
    /// `owner/name`.
    pub repository: String,
    /// GitHub's webhook id.
    pub hook_id: u64,
    /// When `github connect` recorded it (ms since the epoch): the first
    /// look considers deliveries since then.
    pub connected_at_ms: i64,
    /// The newest delivery id every older one of which catch-up settled;
    /// `None` until a look succeeded.
    pub cursor_id: Option<u64>,
    /// When the last look ended.
    pub checked_at_ms: Option<i64>,
    /// When the last successful look ended.
    pub ok_at_ms: Option<i64>,
    /// Why the last look failed; `None` after a success.
    pub error: Option<String>,
    /// Looks that failed in a row.
    pub failures: i64,
}

/// Where a redelivery catch-up claimed stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedeliveryState {
    /// Claimed, but the process stopped before GitHub's answer was
    /// recorded: it may or may not have been asked.
    InDoubt,
    /// GitHub accepted the request (202).
    Asked,
    /// GitHub accepted it, and its redelivery was not answered with a 2xx
    /// either: said once (log, metric), never asked again.
    RedeliveryFailed,
    /// GitHub refused to redeliver it (this 4xx status): never asked again.
    Refused(u16),
}

impl RedeliveryState {
    /// The state a claim's recorded `http_status` stands for.
    fn of(status: i64) -> RedeliveryState {
        match status {
            0 => RedeliveryState::InDoubt,
            REDELIVERY_FAILED => RedeliveryState::RedeliveryFailed,
            ACCEPTED => RedeliveryState::Asked,
            other => RedeliveryState::Refused(u16::try_from(other).unwrap_or(0)),
        }
    }

    /// The `http_status` recorded for it.
    fn status(self) -> i64 {
        match self {
            RedeliveryState::InDoubt => 0,
            RedeliveryState::RedeliveryFailed => REDELIVERY_FAILED,
            RedeliveryState::Asked => ACCEPTED,
            RedeliveryState::Refused(status) => i64::from(status),
        }
    }
}

/// A redelivery catch-up claimed: where it stands, and when it was
/// claimed (ms since the epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedeliveryClaim {
    /// Where it stands.
    pub state: RedeliveryState,
    /// When it was claimed (last taken over).
    pub asked_at_ms: i64,
}

/// A delivery catch-up claims before asking GitHub to redeliver it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRedelivery {
    /// The stack whose webhook it is.
    pub stack: String,
    /// The delivery's GUID (`X-GitHub-Delivery`).
    pub guid: String,
    /// The webhook.
    pub hook_id: u64,
    /// GitHub's id of the delivery asked for.
    pub github_delivery_id: u64,
    /// Its event.
    pub event: String,
    /// When (ms since the epoch).
    pub at_ms: i64,
}

const COLUMNS: &str = "stack, api_url, repository, hook_id, connected_at_ms, cursor_id, \
     checked_at_ms, ok_at_ms, error, failures";

fn hook_from_row(row: &Rec) -> Result<GithubHook, DbError> {
    Ok(GithubHook {
        stack: row.get(0)?,
        api_url: row.get(1)?,
        repository: row.get(2)?,
        hook_id: row.get::<i64>(3)? as u64,
        connected_at_ms: row.get(4)?,
        cursor_id: row.get::<Option<i64>>(5)?.map(|v| v as u64),
        checked_at_ms: row.get(6)?,
        ok_at_ms: row.get(7)?,
        error: row.get(8)?,
        failures: row.get(9)?,
    })
}

/// The status GitHub answers a redelivery request with, recorded once it
/// was accepted; a claim still holding 0 is in doubt.
const ACCEPTED: i64 = 202;

/// Recorded instead of [`ACCEPTED`] once the redelivery itself was seen
/// failing (not an HTTP status).
const REDELIVERY_FAILED: i64 = 1;

impl Journal {
    /// Records the webhook `github connect` created or found for `stack`.
    /// The same webhook again changes nothing; another one (or another
    /// repository or API) starts over from `at_ms`.
    pub fn record_github_hook(
        &self,
        stack: &str,
        api_url: &str,
        repository: &str,
        hook_id: u64,
        at_ms: i64,
    ) -> Result<(), JournalError> {
        self.write("record a GitHub webhook", |sql| {
            sql.execute(
                "INSERT INTO github_hooks (stack, api_url, repository, hook_id, connected_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (stack) DO UPDATE SET
                     api_url = excluded.api_url, repository = excluded.repository,
                     hook_id = excluded.hook_id, connected_at_ms = excluded.connected_at_ms,
                     cursor_id = NULL, checked_at_ms = NULL, ok_at_ms = NULL,
                     error = NULL, failures = 0
                 WHERE github_hooks.api_url <> excluded.api_url
                    OR github_hooks.repository <> excluded.repository
                    OR github_hooks.hook_id <> excluded.hook_id",
                args![stack, api_url, repository, hook_id as i64, at_ms],
            )?;
            Ok(())
        })
    }

    /// The webhook recorded for `stack`.
    pub fn github_hook(&self, stack: &str) -> Result<Option<GithubHook>, JournalError> {
        self.read("read a GitHub webhook", |sql| {
            sql.query_opt(
                &format!("SELECT {COLUMNS} FROM github_hooks WHERE stack = ?1"),
                args![stack],
            )?
            .as_ref()
            .map(hook_from_row)
            .transpose()
        })
    }

    /// Every recorded webhook, by stack.
    pub fn github_hooks(&self) -> Result<Vec<GithubHook>, JournalError> {
        self.read("read GitHub webhooks", |sql| {
            sql.query(
                &format!("SELECT {COLUMNS} FROM github_hooks ORDER BY stack"),
                args![],
            )?
            .iter()
            .map(hook_from_row)
            .collect()
        })
    }

    /// Which of `guids` the journal received as a delivery (any answer).
    pub fn deliveries_received(&self, guids: &[String]) -> Result<HashSet<String>, JournalError> {
        self.read("look up deliveries by id", |sql| {
            let mut found = HashSet::new();
            for guid in guids {
                if sql
                    .query_opt(
                        "SELECT 1 FROM deliveries WHERE delivery_id = ?1 LIMIT 1",
                        args![guid],
                    )?
                    .is_some()
                {
                    found.insert(guid.clone());
                }
            }
            Ok(found)
        })
    }

    /// The redeliveries catch-up claimed for `stack`'s webhook `hook_id`
    /// among `guids`.
    pub fn redelivery_claims(
        &self,
        stack: &str,
        hook_id: u64,
        guids: &[String],
    ) -> Result<HashMap<String, RedeliveryClaim>, JournalError> {
        self.read("read redelivery claims", |sql| {
            let mut claims = HashMap::new();
            for guid in guids {
                let row = sql.query_opt(
                    "SELECT http_status, asked_at_ms FROM github_redeliveries
                     WHERE stack = ?1 AND guid = ?2 AND hook_id = ?3",
                    args![stack, guid, hook_id as i64],
                )?;
                if let Some(row) = row {
                    let claim = RedeliveryClaim {
                        state: RedeliveryState::of(row.get(0)?),
                        asked_at_ms: row.get(1)?,
                    };
                    claims.insert(guid.clone(), claim);
                }
            }
            Ok(claims)
        })
    }

    /// Claims the redelivery of `r.guid` before GitHub is asked: false when
    /// it is claimed already (by another process, or before a restart) and
    /// not `in_doubt` (a claim whose answer was never recorded, taken over).
    pub fn claim_redelivery(
        &self,
        r: &NewRedelivery,
        in_doubt: bool,
    ) -> Result<bool, JournalError> {
        self.write("claim a redelivery", |sql| {
            let n = sql.execute(
                "INSERT INTO github_redeliveries
                     (stack, guid, hook_id, github_delivery_id, event, http_status, asked_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)
                 ON CONFLICT (stack, guid) DO NOTHING",
                args![
                    r.stack,
                    r.guid,
                    r.hook_id as i64,
                    // GitHub's ids are far below i64::MAX.
                    i64::try_from(r.github_delivery_id).unwrap_or(i64::MAX),
                    r.event,
                    r.at_ms
                ],
            )?;
            if n == 1 {
                return Ok(true);
            }
            if !in_doubt {
                return Ok(false);
            }
            // Taking over a claim in doubt: only one process does.
            let n = sql.execute(
                "UPDATE github_redeliveries SET asked_at_ms = ?3
                 WHERE stack = ?1 AND guid = ?2 AND http_status = 0 AND asked_at_ms < ?3",
                args![r.stack, r.guid, r.at_ms],
            )?;
            Ok(n == 1)
        })
    }

    /// Settles a claimed redelivery: `Some(state)` keeps it for good in
    /// that state (asked, refused, its redelivery failed); `None` drops
    /// the claim, so the next look asks again.
    pub fn settle_redelivery(
        &self,
        stack: &str,
        guid: &str,
        settled: Option<RedeliveryState>,
    ) -> Result<(), JournalError> {
        self.write("settle a redelivery", |sql| {
            if let Some(state) = settled {
                sql.execute(
                    "UPDATE github_redeliveries SET http_status = ?3 WHERE stack = ?1 AND guid = ?2",
                    args![stack, guid, state.status()],
                )?;
            } else {
                sql.execute(
                    "DELETE FROM github_redeliveries
                     WHERE stack = ?1 AND guid = ?2 AND http_status = 0",
                    args![stack, guid],
                )?;
            }
            Ok(())
        })
    }

    /// Records a successful look at `stack`'s webhook `hook_id`, which
    /// settled every delivery up to `cursor_id` (`None`: no further than
    /// before).
    pub fn record_catch_up(
        &self,
        stack: &str,
        hook_id: u64,
        cursor_id: Option<u64>,
        at_ms: i64,
    ) -> Result<(), JournalError> {
        self.write("record a catch-up look", |sql| {
            sql.execute(
                "UPDATE github_hooks SET
                     cursor_id = CASE WHEN CAST(?3 AS BIGINT) IS NULL THEN cursor_id
                                      WHEN cursor_id IS NULL OR cursor_id < ?3 THEN ?3
                                      ELSE cursor_id END,
                     checked_at_ms = ?4, ok_at_ms = ?4, error = NULL, failures = 0
                 WHERE stack = ?1 AND hook_id = ?2",
                args![stack, hook_id as i64, cursor_id.map(|c| c as i64), at_ms],
            )?;
            Ok(())
        })
    }

    /// Records a failed look at `stack`'s webhook and returns how many
    /// failed in a row now.
    pub fn record_catch_up_failure(
        &self,
        stack: &str,
        hook_id: u64,
        error: &str,
        at_ms: i64,
    ) -> Result<i64, JournalError> {
        self.write("record a failed catch-up look", |sql| {
            sql.execute(
                "UPDATE github_hooks SET checked_at_ms = ?3, error = ?4, failures = failures + 1
                 WHERE stack = ?1 AND hook_id = ?2",
                args![stack, hook_id as i64, at_ms, error],
            )?;
            Ok(sql
                .query_opt(
                    "SELECT failures FROM github_hooks WHERE stack = ?1 AND hook_id = ?2",
                    args![stack, hook_id as i64],
                )?
                .map(|r| r.get(0))
                .transpose()?
                .unwrap_or(1))
        })
    }
}
