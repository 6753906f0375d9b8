//! What polling saw (schema: SQLite 13, PostgreSQL 9; the refs followed:
//! 23, 17): per stack and source, the tips the last successful poll saw,
//! the refs it kept, and how the last poll went. A poller compares a new look with the tips stored here, so a
//! restart neither deploys again what was seen nor misses what moved while
//! the server was down.

use super::sql::{args, DbError, Rec};
use super::{Journal, JournalError};

/// One polled source of a stack, as the journal remembers it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PollSource {
    /// The stack.
    pub stack: String,
    /// What is polled: a git repository's URL, without credentials.
    pub source: String,
    /// What the last successful poll saw (a JSON object, ref -> object
    /// id); `None` until one succeeded.
    pub tips_json: Option<String>,
    /// The refs of a git repository those tips were kept through, the
    /// patterns of `crate::poll::tips::RefFilter` (a JSON array); `None`
    /// for an image, or tips a look recorded of every ref (before SQLite
    /// schema 23, PostgreSQL 17).
    pub ref_filter: Option<String>,
    /// When the last poll ended (ms since the epoch).
    pub polled_at_ms: i64,
    /// When the last successful poll ended.
    pub ok_at_ms: Option<i64>,
    /// Why the last poll failed; `None` after a success.
    pub error: Option<String>,
    /// Polls that failed in a row.
    pub failures: i64,
}

const COLUMNS: &str =
    "stack, source, tips_json, polled_at_ms, ok_at_ms, error, failures, ref_filter";

fn from_row(row: &Rec) -> Result<PollSource, DbError> {
    Ok(PollSource {
        stack: row.get(0)?,
        source: row.get(1)?,
        tips_json: row.get(2)?,
        polled_at_ms: row.get(3)?,
        ok_at_ms: row.get(4)?,
        error: row.get(5)?,
        failures: row.get(6)?,
        ref_filter: row.get(7)?,
    })
}

impl Journal {
    /// What the journal remembers of `stack`'s `source`, if it was polled.
    pub fn poll_source(
        &self,
        stack: &str,
        source: &str,
    ) -> Result<Option<PollSource>, JournalError> {
        self.read("read a polled source", |sql| {
            sql.query_opt(
                &format!("SELECT {COLUMNS} FROM poll_sources WHERE stack = ?1 AND source = ?2"),
                args![stack, source],
            )?
            .as_ref()
            .map(from_row)
            .transpose()
        })
    }

    /// The polled sources of `stack` (or of every stack), by stack and
    /// source.
    pub fn poll_sources(&self, stack: Option<&str>) -> Result<Vec<PollSource>, JournalError> {
        self.read("read polled sources", |sql| {
            sql.query(
                &format!(
                    "SELECT {COLUMNS} FROM poll_sources
                     WHERE CAST(?1 AS TEXT) IS NULL OR stack = ?1 ORDER BY stack, source"
                ),
                args![stack],
            )?
            .iter()
            .map(from_row)
            .collect()
        })
    }

    /// Records a successful poll of `stack`'s `source` that saw `tips`:
    /// their JSON and the JSON of the filter it kept them through
    /// ([`PollSource::ref_filter`]); `None`: the tips (and filter) it
    /// remembers, unchanged.
    pub fn record_poll_success(
        &self,
        stack: &str,
        source: &str,
        tips: Option<(&str, Option<&str>)>,
        at_ms: i64,
    ) -> Result<(), JournalError> {
        let (tips_json, ref_filter) = tips.map_or((None, None), |(t, f)| (Some(t), f));
        self.append("record a poll", |sql| {
            sql.execute(
                "INSERT INTO poll_sources
                     (stack, source, tips_json, polled_at_ms, ok_at_ms, error, failures, ref_filter)
                 VALUES (?1, ?2, ?3, ?4, ?4, NULL, 0, ?5)
                 ON CONFLICT (stack, source) DO UPDATE SET
                     ref_filter = CASE WHEN excluded.tips_json IS NULL
                         THEN poll_sources.ref_filter ELSE excluded.ref_filter END,
                     tips_json = COALESCE(excluded.tips_json, poll_sources.tips_json),
                     polled_at_ms = excluded.polled_at_ms,
                     ok_at_ms = excluded.ok_at_ms, error = NULL, failures = 0",
                args![stack, source, tips_json, at_ms, ref_filter],
            )?;
            Ok(())
        })
    }

    /// Records a failed poll of `stack`'s `source` (the tips seen last are
    /// kept), and returns how many failed in a row now.
    pub fn record_poll_failure(
        &self,
        stack: &str,
        source: &str,
        error: &str,
        at_ms: i64,
    ) -> Result<i64, JournalError> {
        self.write("record a failed poll", |sql| {
            sql.execute(
                "INSERT INTO poll_sources (stack, source, polled_at_ms, error, failures)
                 VALUES (?1, ?2, ?3, ?4, 1)
                 ON CONFLICT (stack, source) DO UPDATE SET
                     polled_at_ms = excluded.polled_at_ms, error = excluded.error,
                     failures = poll_sources.failures + 1",
                args![stack, source, at_ms, error],
            )?;
            sql.query_one(
                "SELECT failures FROM poll_sources WHERE stack = ?1 AND source = ?2",
                args![stack, source],
            )?
            .get(0)
        })
    }
}
