//! The journal's schema, its migrations, and the creation of its file
//! (private) and directory.

use std::io;
use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::{admission, github, retention, JournalError, SCHEMA_VERSION};

/// Schema version 1. Applied in one transaction by [`migrate`].
///
/// * `services` is a JSON array of strings.
/// * `state` columns hold [`DeployState::as_str`] names (checked).
/// * `AUTOINCREMENT` so ids are never reused, even after rows are deleted
///   by hand: log files and history output refer to them.
const SCHEMA_V1: &str = "
CREATE TABLE deliveries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at_ms INTEGER NOT NULL,
    stack          TEXT,
    provider       TEXT,
    event          TEXT,
    delivery_id    TEXT,
    status         INTEGER NOT NULL CHECK (status BETWEEN 0 AND 65535),
    summary        TEXT NOT NULL
);
CREATE TABLE deploys (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    stack          TEXT NOT NULL,
    delivery_id    TEXT,
    provider       TEXT NOT NULL,
    git_ref        TEXT,
    sha            TEXT,
    services       TEXT NOT NULL DEFAULT '[]',
    profile        TEXT,
    reason         TEXT NOT NULL,
    event_json     TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN
                       ('queued','started','succeeded','failed','cancelled','interrupted')),
    created_at_ms  INTEGER NOT NULL,
    started_at_ms  INTEGER,
    finished_at_ms INTEGER,
    exit_code      INTEGER,
    log_path       TEXT,
    detail         TEXT,
    superseded_by  INTEGER REFERENCES deploys(id)
);
CREATE INDEX deploys_stack_id ON deploys (stack, id);
CREATE UNIQUE INDEX deploys_stack_delivery ON deploys (stack, delivery_id)
    WHERE delivery_id IS NOT NULL;
CREATE INDEX deploys_state_id ON deploys (state, id);
CREATE TABLE deploy_transitions (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    deploy_id INTEGER NOT NULL REFERENCES deploys(id) ON DELETE CASCADE,
    state     TEXT NOT NULL CHECK (state IN
                  ('queued','started','succeeded','failed','cancelled','interrupted')),
    at_ms     INTEGER NOT NULL,
    detail    TEXT
);
CREATE INDEX deploy_transitions_deploy ON deploy_transitions (deploy_id, id);
CREATE TABLE hook_tokens (
    stack TEXT PRIMARY KEY NOT NULL,
    token TEXT NOT NULL
);
";

/// Schema version 4: the process group of a started deploy's command, so
/// a runner that finds the deploy left `started` by a dead runner can stop
/// what is left of it before the stack's next deploy starts
/// ([`crate::supervise`]). Null for HTTP actions and for deploys started
/// before version 4.
const SCHEMA_V4: &str = "
ALTER TABLE deploys ADD COLUMN pgid INTEGER;
";

/// Schema version 6: who pushed the commit a deploy deploys, when the
/// sender says (`GL_USER` under gitolite, a forge's pusher), handed to the
/// deploy command as `REDEPLOY_PUSHER`. Null for deploys queued before
/// version 6 and for deliveries that name no pusher.
const SCHEMA_V6: &str = "
ALTER TABLE deploys ADD COLUMN pusher TEXT;
";

/// Creates `dir` (the journal's parent) if needed, private to its owner.
pub(super) fn create_dir(path: &Path, dir: &Path) -> Result<(), JournalError> {
    let fail = |source| JournalError::CreateDir {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        source,
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(fail(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "it exists and is not a directory",
        ))),
        // 0700: the journal's directory is the state directory, which
        // holds the journal, keys and logs.
        Err(_) => std::os::unix::fs::DirBuilderExt::mode(
            std::fs::DirBuilder::new().recursive(true),
            0o700,
        )
        .create(dir)
        .map_err(fail),
    }
}

/// Creates the journal file if it does not exist yet, readable only by its
/// owner on Unix (it holds the hook tokens). SQLite gives the `-wal` and
/// `-shm` files the database file's permissions. An existing file's
/// permissions are left alone.
pub(super) fn create_file(path: &Path) -> Result<(), JournalError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(JournalError::CreateFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Creates or migrates the schema to [`SCHEMA_VERSION`], in one immediate
/// transaction (so two processes opening a new journal at once do not both
/// create it).
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), JournalError> {
    let err = |source| JournalError::Sqlite {
        path: path.to_path_buf(),
        op: "create or migrate schema",
        source,
    };
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(JournalError::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    if version < 1 {
        tx.execute_batch(SCHEMA_V1).map_err(err)?;
    }
    if version < 2 {
        tx.execute_batch(github::SCHEMA_V2).map_err(err)?;
    }
    if version < 3 {
        tx.execute_batch(admission::SCHEMA_V3).map_err(err)?;
    }
    if version < 4 {
        tx.execute_batch(SCHEMA_V4).map_err(err)?;
    }
    if version < 5 {
        tx.execute_batch(retention::SCHEMA_V5).map_err(err)?;
    }
    if version < 6 {
        tx.execute_batch(SCHEMA_V6).map_err(err)?;
    }
    // Future migrations: `if version < 7 { ... }` here, in order.
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
    }
    tx.commit().map_err(err)
}
