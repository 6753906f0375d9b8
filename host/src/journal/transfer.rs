//! Moving a journal from one backend to another (`redeploy journal export`
//! and `import`): every row of every table as one JSON line, ids kept, so a
//! SQLite journal becomes a PostgreSQL one without losing its history, its
//! hook tokens (every hook URL keeps working) or its server keys.
//!
//! The first line names the format and its version; each other line is
//! `{"table": NAME, "row": {COLUMN: VALUE, ...}}`. Only the tables and
//! columns in [`TABLES`] are read or written: an import builds its SQL from
//! that list, never from the file.

use std::collections::HashMap;

use serde_json::{json, Map, Value as Json};

use super::sql::{Rec, Sql, Value};
use super::{Backend, DbError, Journal, JournalError};

/// The first line's `format`.
pub const FORMAT: &str = "redeploy-journal-export";

/// The first line's `version`: what this build writes. Version 2 ends with
/// a last line, `{"rows": N}`, the number of rows before it, so an export
/// cut at a line boundary (copied in part, or left by an export that
/// failed midway) is refused whole, not imported in part.
pub const VERSION: i64 = 2;

/// The oldest `version` this build reads: version 1 is version 2 without
/// the last line.
pub const OLDEST_VERSION: i64 = 1;

/// Every table a journal export holds, with its columns, parents before
/// children (the order an import inserts in).
pub const TABLES: &[(&str, &[&str])] = &[
    (
        "deliveries",
        &[
            "id",
            "received_at_ms",
            "stack",
            "provider",
            "event",
            "delivery_id",
            "status",
            "summary",
            "request_json",
            "kept_json",
        ],
    ),
    (
        "deploys",
        &[
            "id",
            "stack",
            "delivery_id",
            "provider",
            "git_ref",
            "sha",
            "services",
            "profile",
            "reason",
            "event_json",
            "state",
            "created_at_ms",
            "started_at_ms",
            "finished_at_ms",
            "exit_code",
            "log_path",
            "detail",
            "superseded_by",
            "pgid",
            "pusher",
            "runner",
            "pgid_host",
            "cancel_requested",
            "repository",
        ],
    ),
    (
        "deploy_transitions",
        &["id", "deploy_id", "state", "at_ms", "detail"],
    ),
    ("hook_tokens", &["stack", "token"]),
    (
        "github_deployment_requests",
        &[
            "id",
            "stack",
            "delivery_id",
            "deploy_id",
            "git_ref",
            "sha",
            "request_json",
            "state",
            "deployment_id",
            "http_status",
            "detail",
            "created_at_ms",
            "updated_at_ms",
            "deploy_json",
            "fallback",
            "fallback_deploy_id",
            "fallback_at_ms",
            "event_seen_at_ms",
            "repository",
        ],
    ),
    (
        "reports",
        &["id", "deploy_id", "target", "state", "outcome", "at_ms"],
    ),
    ("server_keys", &["name", "value"]),
    (
        "poll_sources",
        &[
            "stack",
            "source",
            "tips_json",
            "polled_at_ms",
            "ok_at_ms",
            "error",
            "failures",
            "ref_filter",
        ],
    ),
    (
        "github_hooks",
        &[
            "stack",
            "api_url",
            "repository",
            "hook_id",
            "connected_at_ms",
            "cursor_id",
            "checked_at_ms",
            "ok_at_ms",
            "error",
            "failures",
        ],
    ),
    (
        "github_redeliveries",
        &[
            "stack",
            "guid",
            "hook_id",
            "github_delivery_id",
            "event",
            "http_status",
            "asked_at_ms",
        ],
    ),
    (
        "stack_commits",
        &[
            "stack",
            "sha",
            "before_sha",
            "deploy_id",
            "seen_at_ms",
            "scope",
        ],
    ),
    (
        "stack_images",
        &["stack", "image", "digest", "deploy_id", "seen_at_ms"],
    ),
    (
        "notices",
        &[
            "id",
            "stack",
            "event",
            "deploy_id",
            "detail",
            "refused_count",
            "refused_window_ms",
            "created_at_ms",
            "fanned_out_at_ms",
        ],
    ),
    (
        "notifications",
        &[
            "id",
            "notice_id",
            "channel",
            "stack",
            "created_at_ms",
            "attempts",
            "not_before_ms",
            "tried_at_ms",
            "outcome",
            "outcome_detail",
            "settled_at_ms",
        ],
    ),
    (
        "replay_keys",
        &[
            "key",
            "stack",
            "first_seen_ms",
            "expires_at_ms",
            "deploy_id",
        ],
    ),
];

/// The tables whose `id` a PostgreSQL identity column numbers: after an
/// import, each one's sequence continues past the greatest id imported.
const IDENTITY_TABLES: &[&str] = &[
    "deliveries",
    "deploys",
    "deploy_transitions",
    "github_deployment_requests",
    "reports",
    "notices",
    "notifications",
];

/// Whether a column of [`TABLES`] holds integers (ids, times in
/// milliseconds, statuses, process groups); every other one holds text.
fn is_integer_column(column: &str) -> bool {
    column != "delivery_id"
        && (column == "id"
            || column.ends_with("_id")
            || column.ends_with("_ms")
            || matches!(
                column,
                "status"
                    | "exit_code"
                    | "superseded_by"
                    | "pgid"
                    | "http_status"
                    | "failures"
                    | "refused_count"
                    | "attempts"
            ))
}

/// A deploy may name a later deploy in `superseded_by`: that column is
/// filled in once every deploy is there.
const DEFERRED: (&str, &str) = ("deploys", "superseded_by");

/// Columns that must hold a value, added after exports of this format
/// were first written, with what a row of an older export that has no
/// such key holds: a commit an older journal knew is the whole stack's
/// (`commit_order::WHOLE_STACK`), as the migration that added the column
/// made it.
const ABSENT_IN_OLDER_EXPORTS: &[(&str, &str, &str)] =
    &[("stack_commits", "scope", crate::commit_order::WHOLE_STACK)];

/// The value a row of an export written before a column was added takes
/// for it, derived from the row as the migration that added the column
/// derived it (SQLite schema 21, PostgreSQL 15): a deploy's `repository`
/// from the event it journaled; a GitHub deployment request's from its
/// deploy (`repositories`, by the deploys imported so far), else from the
/// event of the push it kept. `None`: not such a column, or nothing to
/// derive it from.
fn derived_in_older_exports(
    table: &str,
    column: &str,
    row: &Map<String, Json>,
    repositories: &HashMap<i64, String>,
) -> Option<Json> {
    if column != "repository" || row.contains_key(column) {
        return None;
    }
    let of_event = |event_json: Option<&Json>| {
        let event: Json = serde_json::from_str(event_json?.as_str()?).ok()?;
        event["repository"].as_str().map(str::to_owned)
    };
    let repository = match table {
        "deploys" => of_event(row.get("event_json")),
        "github_deployment_requests" => row
            .get("deploy_id")
            .and_then(Json::as_i64)
            .and_then(|id| repositories.get(&id).cloned())
            .or_else(|| {
                let kept: Json = serde_json::from_str(row.get("deploy_json")?.as_str()?).ok()?;
                of_event(kept["deploy"].get("event_json"))
            }),
        _ => None,
    }?;
    Some(Json::String(repository))
}

/// What went wrong reading an export.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The journal could not be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Line `line` of the export is not what this build writes.
    #[error("line {line}: {problem}")]
    Format {
        /// 1-based.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The journal imported into already holds deliveries, deploys or hook
    /// tokens: an import never merges.
    #[error(
        "journal {location} is not empty ({rows} rows in {table}): import only into a new journal"
    )]
    NotEmpty {
        /// The journal.
        location: String,
        /// A table with rows.
        table: &'static str,
        /// How many.
        rows: i64,
    },
}

impl Journal {
    /// Writes every row of every table to `out`, the format line first and
    /// the row count last (`{"rows": N}`, [`VERSION`]), in
    /// one transaction that sees one state of the journal (SQLite: `BEGIN
    /// IMMEDIATE`; PostgreSQL: repeatable read under the write lock);
    /// returns the number of rows.
    pub fn export(
        &self,
        out: &mut (dyn FnMut(&Json) -> std::io::Result<()> + Send),
    ) -> Result<usize, JournalError> {
        let mut failed = None;
        let rows = self.commit(super::sql::Commit::Snapshot, "export", |sql| {
            let mut rows = 0;
            let mut emit = |line: Json| {
                if failed.is_none() {
                    if let Err(e) = out(&line) {
                        failed = Some(e);
                    }
                }
            };
            emit(json!({"format": FORMAT, "version": VERSION}));
            for (table, columns) in TABLES {
                let order = if columns[0] == "id" { "id" } else { "1" };
                let select = format!(
                    "SELECT {} FROM {table} ORDER BY {order}",
                    columns.join(", ")
                );
                for rec in sql.query(&select, &[])? {
                    emit(json!({"table": table, "row": row_json(columns, &rec)}));
                    rows += 1;
                }
            }
            emit(json!({"rows": rows}));
            Ok(rows)
        })?;
        match failed {
            Some(e) => Err(JournalError::database(
                &self.location,
                "write the export",
                DbError::Unavailable(e.to_string()),
            )),
            None => Ok(rows),
        }
    }

    /// Reads an export line by line into this journal, which must hold no
    /// delivery, deploy or hook token yet, in one transaction: all of it or
    /// nothing. Returns the number of rows.
    pub fn import(
        &self,
        lines: impl Iterator<Item = std::io::Result<String>> + Send,
    ) -> Result<usize, ImportError> {
        let postgres = matches!(self.backend, Backend::Postgres(_));
        let location = self.location.clone();
        let mut failure = None;
        // A failed import returns an error from the transaction, so that
        // it rolls back; the import's own error is what is reported.
        let imported = self.write("import", |sql| {
            import_in(sql, lines, postgres, &location).map_err(|e| {
                failure = Some(e);
                DbError::Unavailable("the import failed and was rolled back".to_owned())
            })
        });
        match (imported, failure) {
            (_, Some(e)) => Err(e),
            (Ok(rows), None) => Ok(rows),
            (Err(e), None) => Err(e.into()),
        }
    }
}

fn row_json(columns: &[&str], rec: &Rec) -> Json {
    let mut row = Map::new();
    for (column, value) in columns.iter().zip(&rec.0) {
        row.insert(
            (*column).to_owned(),
            match value {
                Value::Null => Json::Null,
                Value::Int(n) => json!(n),
                Value::Text(s) => json!(s),
            },
        );
    }
    Json::Object(row)
}

fn import_in(
    sql: &mut dyn Sql,
    lines: impl Iterator<Item = std::io::Result<String>>,
    postgres: bool,
    location: &str,
) -> Result<usize, ImportError> {
    let db = |source: DbError| JournalError::database(location, "import", source);
    for table in ["deliveries", "deploys", "hook_tokens"] {
        let rows: i64 = sql
            .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
            .and_then(|r| r.get(0))
            .map_err(db)?;
        if rows > 0 {
            return Err(ImportError::NotEmpty {
                location: location.to_owned(),
                table,
                rows,
            });
        }
    }
    let mut imported = 0;
    let mut headed = false;
    // The version read, and, once read, the last line's count.
    let mut version = VERSION;
    let mut ended: Option<usize> = None;
    let mut deferred = Vec::new();
    // Each imported deploy's repository ([`derived_in_older_exports`]).
    let mut repositories: HashMap<i64, String> = HashMap::new();
    for (index, line) in lines.enumerate() {
        let number = index + 1;
        let bad = |problem: String| ImportError::Format {
            line: number,
            problem,
        };
        let line = line.map_err(|e| bad(format!("cannot be read: {e}")))?;
        if let Some(rows) = ended {
            return Err(bad(format!(
                "follows the export's last line (line {}, {{\"rows\": {rows}}})",
                number - 1
            )));
        }
        let parsed: Json =
            serde_json::from_str(&line).map_err(|e| bad(format!("is not JSON: {e}")))?;
        if number == 1 {
            version = parsed["version"].as_i64().unwrap_or_default();
            if parsed["format"] != FORMAT || !(OLDEST_VERSION..=VERSION).contains(&version) {
                return Err(bad(format!(
                    "is not a redeploy journal export of version {OLDEST_VERSION} to {VERSION} (its first line is {{\"format\": \"{FORMAT}\", \"version\": {VERSION}}})"
                )));
            }
            headed = true;
            continue;
        }
        if version >= 2 && parsed.get("table").is_none() {
            let rows = parsed["rows"]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok());
            match rows {
                Some(rows)
                    if rows == imported && parsed.as_object().is_some_and(|o| o.len() == 1) =>
                {
                    ended = Some(rows);
                    continue;
                }
                Some(rows) => {
                    return Err(bad(format!(
                        "says the export has {rows} rows, and {imported} came before it"
                    )))
                }
                None => return Err(bad("names no table, nor the export's row count".to_owned())),
            }
        }
        let table = parsed["table"].as_str().unwrap_or_default();
        let Some((table, columns)) = TABLES.iter().find(|(name, _)| *name == table) else {
            return Err(bad(format!(
                "names no table redeploy exports: {:?}",
                parsed["table"]
            )));
        };
        let Some(row) = parsed["row"].as_object() else {
            return Err(bad("has no \"row\" object".to_owned()));
        };
        if let Some(unknown) = row.keys().find(|k| !columns.contains(&k.as_str())) {
            return Err(bad(format!("{table} has no column {unknown:?}")));
        }
        let mut values: Vec<Value> = Vec::with_capacity(columns.len());
        for column in *columns {
            let absent = ABSENT_IN_OLDER_EXPORTS
                .iter()
                .find(|(t, c, _)| t == table && c == column && !row.contains_key(*column))
                .map(|(_, _, value)| Json::String((*value).to_owned()))
                .or_else(|| derived_in_older_exports(table, column, row, &repositories));
            let value =
                match (
                    absent.as_ref().or(row.get(*column)).unwrap_or(&Json::Null),
                    is_integer_column(column),
                ) {
                    (Json::Null, _) => Value::Null,
                    (Json::String(s), false) => Value::Text(s.clone()),
                    (Json::Number(n), true) => Value::Int(n.as_i64().ok_or_else(|| {
                        bad(format!("{table}.{column} {n} is not a 64-bit integer"))
                    })?),
                    (other, true) => {
                        return Err(bad(format!(
                            "{table}.{column} must be an integer, not {other}"
                        )))
                    }
                    (other, false) => {
                        return Err(bad(format!("{table}.{column} must be text, not {other}")))
                    }
                };
            if let ("deploys", "repository", Value::Text(repository), Value::Int(id)) = (
                *table,
                *column,
                &value,
                values.first().unwrap_or(&Value::Null),
            ) {
                repositories.insert(*id, repository.clone());
            }
            if (*table, *column) == DEFERRED && value != Value::Null {
                deferred.push((values[0].clone(), value));
                values.push(Value::Null);
            } else {
                values.push(value);
            }
        }
        sql.execute(
            &format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                columns.join(", "),
                super::sql::placeholders(1, columns.len())
            ),
            &values,
        )
        .map_err(|e| bad(format!("{table}: {}", db(e))))?;
        imported += 1;
    }
    // An empty file is no export (every export starts with its format).
    if !headed {
        return Err(ImportError::Format {
            line: 1,
            problem: format!(
                "is missing: an export's first line is {{\"format\": \"{FORMAT}\", \"version\": {VERSION}}}"
            ),
        });
    }
    if version >= 2 && ended.is_none() {
        return Err(ImportError::Format {
            line: imported + 2,
            problem: format!(
                "is missing: the export's last line is {{\"rows\": N}}, the number of rows before it; this one was cut (copied in part, or left by an export that failed) after {imported} rows"
            ),
        });
    }
    for (id, superseded_by) in deferred {
        sql.execute(
            "UPDATE deploys SET superseded_by = ?2 WHERE id = ?1",
            &[id, superseded_by],
        )
        .map_err(db)?;
    }
    if postgres {
        for table in IDENTITY_TABLES {
            sql.query(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                     (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                ),
                &[],
            )
            .map_err(db)?;
        }
    }
    Ok(imported)
}
