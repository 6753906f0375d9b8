//! Deploy logs kept in a PostgreSQL journal (`deploy_logs`, schema 3), so
//! every replica sharing the database can serve the log of a deploy another
//! one ran. A SQLite journal is one machine's, whose logs are its files:
//! it keeps none, and these calls do nothing there.
//!
//! The log is stored as text (the journal's values are integers and text;
//! [`crate::deploy_log`] turns the file's bytes into text and keeps it
//! within `server.max_deploy_log_bytes`). The runner's replica appends to
//! it while the deploy runs, each append checked against the size it
//! expects, so an append whose outcome was lost to an error is never
//! applied twice: the writer rewrites the whole log instead.

use std::collections::BTreeSet;

use super::sql::args;
use super::{now_ms, Backend, DbError, Journal, JournalError};

/// A deploy's log as the database holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDeployLog {
    /// The log, or its part past the offset asked for
    /// ([`Journal::deploy_log_from`]).
    pub text: String,
    /// The whole stored log's size in bytes.
    pub size_bytes: u64,
    /// The stored log is not all the command wrote (cut at the cap).
    pub truncated: bool,
    /// When it was last written (Unix milliseconds).
    pub updated_at_ms: i64,
}

/// Reads a `deploy_logs` row selected as `text, size_bytes, truncated,
/// updated_at_ms`.
fn stored(row: &super::sql::Rec) -> Result<StoredDeployLog, DbError> {
    let size: i64 = row.get(1)?;
    Ok(StoredDeployLog {
        text: row.get(0)?,
        size_bytes: u64::try_from(size).unwrap_or(0),
        truncated: row.get(2)?,
        updated_at_ms: row.get(3)?,
    })
}

/// The largest offset [`Journal::deploy_log_from`] passes to PostgreSQL's
/// `substring` (whose positions are 32-bit), one less so `offset + 1` fits.
const SUBSTRING_MAX: i64 = i32::MAX as i64 - 1;

/// How many ids one [`Journal::known_deploys`] query asks about.
const KNOWN_DEPLOYS_CHUNK: usize = 500;

/// A byte count as the journal's integer.
fn bytes(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Journal {
    /// Whether this journal keeps deploy logs (a PostgreSQL journal, which
    /// several machines may share); a SQLite journal's logs are only its
    /// machine's files.
    pub fn keeps_deploy_logs(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// Appends `text` to deploy `deploy_id`'s stored log, if the stored log
    /// is `expected_size` bytes long now (a log not stored yet is 0 bytes
    /// long), marking it `truncated` if that is set. False, and nothing
    /// written, if the stored log is another size: the caller then rewrites
    /// it whole ([`Journal::replace_deploy_log`]). Always false on a
    /// journal that keeps no logs.
    pub fn append_deploy_log(
        &self,
        deploy_id: i64,
        expected_size: u64,
        text: &str,
        truncated: bool,
    ) -> Result<bool, JournalError> {
        if !self.keeps_deploy_logs() {
            return Ok(false);
        }
        let expected = i64::try_from(expected_size).unwrap_or(i64::MAX);
        let (size, now) = (bytes(text.len()), now_ms());
        self.append("append to a deploy log", |sql| {
            let changed = if expected == 0 {
                sql.execute(
                    "INSERT INTO deploy_logs (deploy_id, content, size_bytes, truncated, updated_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (deploy_id) DO UPDATE
                        SET content = excluded.content, size_bytes = excluded.size_bytes,
                            truncated = excluded.truncated, updated_at_ms = excluded.updated_at_ms
                      WHERE deploy_logs.size_bytes = 0",
                    args![deploy_id, text, size, i64::from(truncated), now],
                )?
            } else {
                sql.execute(
                    "UPDATE deploy_logs
                        SET content = content || ?2, size_bytes = size_bytes + ?3,
                            truncated = (truncated OR ?4), updated_at_ms = ?5
                      WHERE deploy_id = ?1 AND size_bytes = ?6",
                    args![deploy_id, text, size, i64::from(truncated), now, expected],
                )?
            };
            Ok(changed == 1)
        })
    }

    /// Stores `text` as deploy `deploy_id`'s whole log (nothing on a
    /// journal that keeps no logs).
    pub fn replace_deploy_log(
        &self,
        deploy_id: i64,
        text: &str,
        truncated: bool,
    ) -> Result<(), JournalError> {
        if !self.keeps_deploy_logs() {
            return Ok(());
        }
        let (size, now) = (bytes(text.len()), now_ms());
        self.append("store a deploy log", |sql| {
            sql.execute(
                "INSERT INTO deploy_logs (deploy_id, content, size_bytes, truncated, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (deploy_id) DO UPDATE
                    SET content = excluded.content, size_bytes = excluded.size_bytes,
                        truncated = excluded.truncated, updated_at_ms = excluded.updated_at_ms",
                args![deploy_id, text, size, i64::from(truncated), now],
            )?;
            Ok(())
        })
    }

    /// The size in bytes of deploy `deploy_id`'s stored log, if the
    /// journal holds one.
    pub fn deploy_log_size(&self, deploy_id: i64) -> Result<Option<u64>, JournalError> {
        if !self.keeps_deploy_logs() {
            return Ok(None);
        }
        self.read("read a deploy log's size", |sql| {
            let row = sql.query_opt(
                "SELECT size_bytes FROM deploy_logs WHERE deploy_id = ?1",
                args![deploy_id],
            )?;
            let size: Option<i64> = row.map(|r| r.get(0)).transpose()?;
            Ok(size.map(|s| u64::try_from(s).unwrap_or(0)))
        })
    }

    /// Deploy `deploy_id`'s stored log, if the journal holds one.
    pub fn deploy_log(&self, deploy_id: i64) -> Result<Option<StoredDeployLog>, JournalError> {
        self.deploy_log_from(deploy_id, 0)
    }

    /// Deploy `deploy_id`'s stored log from byte `offset` on (all of it
    /// from 0; nothing past its end), if the journal holds one. `offset`
    /// must be where an earlier read ended: the stored log only grows while
    /// its deploy runs, so that is a character boundary.
    pub fn deploy_log_from(
        &self,
        deploy_id: i64,
        offset: u64,
    ) -> Result<Option<StoredDeployLog>, JournalError> {
        if !self.keeps_deploy_logs() {
            return Ok(None);
        }
        // A stored log is at most `max_deploy_log_bytes` (PostgreSQL text
        // holds at most 1 GiB), so an offset within it fits `substring`'s
        // integer; one past that reads nothing either way.
        let offset = i64::try_from(offset).unwrap_or(i64::MAX).min(SUBSTRING_MAX);
        self.read("read a deploy log", |sql| {
            let row = if offset == 0 {
                sql.query_opt(
                    "SELECT content, size_bytes, truncated, updated_at_ms
                     FROM deploy_logs WHERE deploy_id = ?1",
                    args![deploy_id],
                )?
            } else {
                // Only the part not read yet crosses the network.
                sql.query_opt(
                    "SELECT CASE WHEN size_bytes > ?2
                                 THEN convert_from(substring(convert_to(content, 'UTF8')
                                                   FROM CAST(?3 AS INTEGER)), 'UTF8')
                                 ELSE '' END,
                            size_bytes, truncated, updated_at_ms
                     FROM deploy_logs WHERE deploy_id = ?1",
                    args![deploy_id, offset, offset.saturating_add(1)],
                )?
            };
            row.as_ref().map(stored).transpose()
        })
    }

    /// Which of `ids` are deploys the journal holds (the others were
    /// pruned, possibly by another machine sharing the journal).
    pub fn known_deploys(&self, ids: &BTreeSet<i64>) -> Result<BTreeSet<i64>, JournalError> {
        let ids: Vec<i64> = ids.iter().copied().collect();
        let mut known = BTreeSet::new();
        // One statement text for every call (each connection prepares it
        // once): the ids of each chunk's range, kept if asked for.
        for chunk in ids.chunks(KNOWN_DEPLOYS_CHUNK) {
            let (Some(&low), Some(&high)) = (chunk.first(), chunk.last()) else {
                continue;
            };
            let found = self.read("read which deploys exist", |sql| {
                sql.query(
                    "SELECT id FROM deploys WHERE id >= ?1 AND id <= ?2",
                    args![low, high],
                )?
                .iter()
                .map(|row| row.get::<i64>(0))
                .collect::<Result<Vec<_>, DbError>>()
            })?;
            known.extend(
                found
                    .into_iter()
                    .filter(|id| chunk.binary_search(id).is_ok()),
            );
        }
        Ok(known)
    }
}
