//! The durable journal: every delivery and every deploy, with its state
//! transitions, in one SQLite database (`<state_dir>/journal.sqlite3`).
//!
//! The server owns the file and writes to it through [`Journal::open`]; a
//! second process (`redeploy history`) may read it at the same time through
//! [`Journal::open_read_only`]. The database runs in WAL mode so that reader
//! never blocks the writer and always sees a consistent snapshot.
//!
//! Every state change is one transaction: a deploy's row and the row that
//! records the transition in `deploy_transitions` are written together or not
//! at all. Write transactions start with `BEGIN IMMEDIATE`, so a
//! read-check-write sequence (the duplicate check in
//! [`Journal::insert_deploy`], the legality check in [`Journal::transition`])
//! cannot race another writer, in this process or another one.
//!
//! The schema version lives in `PRAGMA user_version`; [`Journal::open`]
//! creates or migrates the schema, and both `open` functions refuse a
//! journal written by a newer `redeploy`.
//!
//! The journal never receives secrets (webhook secrets, signatures, headers
//! with credentials), with one deliberate exception: the per-stack hook
//! tokens, the secret path segment of each stack's hook URL, which must
//! survive restarts. For that reason a journal file created by
//! [`Journal::open`] is created with mode `0600` on Unix.
//!
//! All methods are short synchronous calls guarded by a mutex, meant to be
//! called from async code directly (each is one small transaction).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};

/// The time now in Unix milliseconds, as the journal records every time.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Told of every state change of a deploy, after the journal recorded it:
/// how deployment statuses and registry callbacks learn of deploys.
pub trait DeployObserver: Send + Sync {
    /// Deploy `deploy_id` entered `state`; `detail` is the reason recorded.
    fn changed(&self, deploy_id: i64, state: DeployState, detail: Option<&str>);
}

mod github;
pub use github::{DeploymentRequest, NewDeploymentRequest, RequestState};
mod retention;
pub use retention::{PrunePolicy, Pruned};

mod admission;
pub use admission::{Admission, Admitted, CommitClaim, ReplayClaim};

/// The journal's file name inside the state directory.
pub const FILE_NAME: &str = "journal.sqlite3";

/// The schema version this build writes and understands
/// (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 5;

/// How long a call waits for another connection's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The reason recorded for deploys that [`Journal::recover`] marks
/// `interrupted`.
pub const INTERRUPTED_REASON: &str = "redeploy stopped while it ran";

/// Everything that can go wrong with the journal. Each message names the
/// journal file and, where there is one, the operation that failed, e.g.
/// `journal /x/journal.sqlite3: cannot open: unable to open database file`.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The journal's directory does not exist and cannot be created (or
    /// exists and is not a directory).
    #[error("journal {}: cannot create directory {}: {source}", path.display(), dir.display())]
    CreateDir {
        /// The journal file.
        path: PathBuf,
        /// The directory that could not be created.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The journal file does not exist and cannot be created (typically: its
    /// directory is not writable).
    #[error("journal {}: cannot create file: {source}", path.display())]
    CreateFile {
        /// The journal file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// [`Journal::open_read_only`] was asked for a journal that does not
    /// exist.
    #[error(
        "journal {}: does not exist (has `redeploy serve` run with this state directory?)",
        path.display()
    )]
    Missing {
        /// The journal file.
        path: PathBuf,
    },
    /// The file exists but has no journal schema in it (read-only open of a
    /// file that was never initialised by `redeploy serve`).
    #[error("journal {}: is not a redeploy journal (no schema)", path.display())]
    NotAJournal {
        /// The journal file.
        path: PathBuf,
    },
    /// The journal was written by a newer `redeploy` whose schema this build
    /// does not know.
    #[error(
        "journal {}: schema version {found} is newer than this redeploy supports ({supported}); \
         upgrade redeploy",
        path.display()
    )]
    TooNew {
        /// The journal file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// [`SCHEMA_VERSION`].
        supported: i64,
    },
    /// SQLite refused to switch the journal to WAL mode (e.g. on a network
    /// file system without shared memory support).
    #[error(
        "journal {}: cannot set journal_mode=WAL: SQLite kept journal_mode={mode} \
         (does the file system support WAL?)",
        path.display()
    )]
    WalUnsupported {
        /// The journal file.
        path: PathBuf,
        /// The journal mode SQLite reported instead.
        mode: String,
    },
    /// SQLite failed during `op` (e.g. `"open"`, `"insert deploy"`).
    #[error("journal {}: cannot {op}: {source}", path.display())]
    Sqlite {
        /// The journal file.
        path: PathBuf,
        /// What was being done, as a verb phrase.
        op: &'static str,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// [`Journal::transition`] was asked for a deploy id that does not exist.
    #[error("journal {}: cannot transition deploy {id}: no such deploy", path.display())]
    UnknownDeploy {
        /// The journal file.
        path: PathBuf,
        /// The deploy id asked for.
        id: i64,
    },
    /// [`Journal::transition`] was asked for a transition that
    /// [`DeployState::can_transition_to`] forbids; nothing was changed.
    #[error("journal: cannot transition deploy {id}: illegal transition {from} -> {to}")]
    IllegalTransition {
        /// The deploy id.
        id: i64,
        /// The deploy's current state.
        from: DeployState,
        /// The state asked for.
        to: DeployState,
    },
}

/// The state of a deploy. See [`DeployState::can_transition_to`] for the
/// legal transitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeployState {
    /// Accepted and waiting to run. Queued deploys survive restarts and run
    /// after the server starts again.
    Queued,
    /// Running.
    Started,
    /// Ran and succeeded.
    Succeeded,
    /// Ran and failed.
    Failed,
    /// Cancelled before or while running (e.g. superseded by a newer deploy
    /// of the same stack).
    Cancelled,
    /// Was running when `redeploy` stopped; marked by [`Journal::recover`].
    Interrupted,
}

impl DeployState {
    /// Every state, in declaration order.
    pub const ALL: [DeployState; 6] = [
        DeployState::Queued,
        DeployState::Started,
        DeployState::Succeeded,
        DeployState::Failed,
        DeployState::Cancelled,
        DeployState::Interrupted,
    ];

    /// The state's name as stored in the journal: `"queued"`, `"started"`,
    /// `"succeeded"`, `"failed"`, `"cancelled"` or `"interrupted"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Queued => "queued",
            DeployState::Started => "started",
            DeployState::Succeeded => "succeeded",
            DeployState::Failed => "failed",
            DeployState::Cancelled => "cancelled",
            DeployState::Interrupted => "interrupted",
        }
    }

    /// Whether the state is final (no transition leaves it): succeeded,
    /// failed, cancelled or interrupted.
    pub fn is_final(self) -> bool {
        !matches!(self, DeployState::Queued | DeployState::Started)
    }

    /// Whether `self -> to` is a legal transition. The legal ones are
    /// queued -> started | cancelled and
    /// started -> succeeded | failed | cancelled | interrupted.
    /// (queued -> interrupted is not legal: queued deploys survive restarts
    /// and run.)
    pub fn can_transition_to(self, to: DeployState) -> bool {
        use DeployState::*;
        matches!(
            (self, to),
            (Queued, Started)
                | (Queued, Cancelled)
                | (Started, Succeeded)
                | (Started, Failed)
                | (Started, Cancelled)
                | (Started, Interrupted)
        )
    }
}

impl fmt::Display for DeployState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`DeployState`] from a string that names none.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown deploy state {0:?} (expected one of queued, started, succeeded, failed, cancelled, interrupted)")]
pub struct UnknownDeployState(pub String);

impl FromStr for DeployState {
    type Err = UnknownDeployState;

    /// Parses the names [`DeployState::as_str`] returns (exactly, lowercase).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeployState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownDeployState(s.to_owned()))
    }
}

impl ToSql for DeployState {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

impl FromSql for DeployState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: UnknownDeployState| FromSqlError::Other(Box::new(e)))
    }
}

/// A webhook delivery to record, whatever its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDelivery {
    /// When it was received, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// The stack its URL named, if any.
    pub stack: Option<String>,
    /// The provider it came from (e.g. `"github"`), if recognised.
    pub provider: Option<String>,
    /// The provider's event name (e.g. `"push"`), if any.
    pub event: Option<String>,
    /// The provider's delivery id (e.g. `X-GitHub-Delivery`), if any.
    pub delivery_id: Option<String>,
    /// The HTTP status the server answered with.
    pub status: u16,
    /// A one-line human summary of what happened.
    pub summary: String,
}

/// A recorded delivery, as read back from the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The journal's id for it (increasing with time of recording).
    pub id: i64,
    /// When it was received, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// The stack its URL named, if any.
    pub stack: Option<String>,
    /// The provider it came from, if recognised.
    pub provider: Option<String>,
    /// The provider's event name, if any.
    pub event: Option<String>,
    /// The provider's delivery id, if any.
    pub delivery_id: Option<String>,
    /// The HTTP status the server answered with.
    pub status: u16,
    /// A one-line human summary of what happened.
    pub summary: String,
}

/// A deploy to queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeploy {
    /// The stack to deploy.
    pub stack: String,
    /// The delivery that caused it (e.g. `X-GitHub-Delivery`), if any; at
    /// most one deploy per (stack, delivery id) is ever recorded.
    pub delivery_id: Option<String>,
    /// The provider the delivery came from (or e.g. `"manual"`).
    pub provider: String,
    /// The git ref the event named, if any.
    pub git_ref: Option<String>,
    /// The commit the event named, if any.
    pub sha: Option<String>,
    /// The services to redeploy; empty means all.
    pub services: Vec<String>,
    /// The compose profile, if any.
    pub profile: Option<String>,
    /// Why the plugin decided to deploy.
    pub reason: String,
    /// The normalised event, as JSON (no secrets).
    pub event_json: String,
    /// When it was queued, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
}

/// The outcome of [`Journal::insert_deploy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Inserted {
    /// A new queued deploy with this id.
    New(i64),
    /// A deploy for the same (stack, delivery id) already existed, with this
    /// id; nothing was inserted.
    Duplicate(i64),
}

impl Inserted {
    /// The deploy's id, new or existing.
    pub fn id(self) -> i64 {
        match self {
            Inserted::New(id) | Inserted::Duplicate(id) => id,
        }
    }
}

/// What a transition records besides the new state. Fields left `None` keep
/// the deploy's previous value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransitionDetail {
    /// The deploy command's exit code.
    pub exit_code: Option<i32>,
    /// A human explanation (stored as the deploy's `detail` and on the
    /// transition's history row).
    pub reason: Option<String>,
    /// Where the deploy's log is.
    pub log_path: Option<String>,
    /// The deploy that superseded this one (when cancelling); must exist.
    pub superseded_by: Option<i64>,
}

/// A deploy, as read back from the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRecord {
    /// The journal's id for it (increasing with time of queueing).
    pub id: i64,
    /// The stack.
    pub stack: String,
    /// The delivery that caused it, if any.
    pub delivery_id: Option<String>,
    /// The provider the delivery came from.
    pub provider: String,
    /// The git ref the event named, if any.
    pub git_ref: Option<String>,
    /// The commit the event named, if any.
    pub sha: Option<String>,
    /// The services to redeploy; empty means all.
    pub services: Vec<String>,
    /// The compose profile, if any.
    pub profile: Option<String>,
    /// Why the plugin decided to deploy.
    pub reason: String,
    /// The normalised event, as JSON.
    pub event_json: String,
    /// The current state.
    pub state: DeployState,
    /// When it was queued (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// When it started, if it did.
    pub started_at_ms: Option<i64>,
    /// When it reached a final state, if it did.
    pub finished_at_ms: Option<i64>,
    /// The deploy command's exit code, if recorded.
    pub exit_code: Option<i32>,
    /// Where its log is, if recorded.
    pub log_path: Option<String>,
    /// The latest transition reason, if any.
    pub detail: Option<String>,
    /// The deploy that superseded it, if any.
    pub superseded_by: Option<i64>,
}

/// The result of [`Journal::recover`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Deploys that were `started` and are now `interrupted`, oldest first.
    pub interrupted: Vec<DeployRecord>,
    /// Deploys still `queued`, oldest first; the server should run them.
    pub queued: Vec<DeployRecord>,
}

/// The journal: a handle on the SQLite database. Cheap calls, safe to share
/// between threads (`Journal: Send + Sync`).
pub struct Journal {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

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

/// The columns of `deploys`, in the order [`deploy_from_row`] reads them.
const DEPLOY_COLUMNS: &str = "id, stack, delivery_id, provider, git_ref, sha, services, profile, \
     reason, event_json, state, created_at_ms, started_at_ms, finished_at_ms, exit_code, \
     log_path, detail, superseded_by";

impl Journal {
    /// The journal's path inside a state directory:
    /// `<state_dir>/journal.sqlite3`.
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Opens the journal for reading and writing, creating its parent
    /// directory and the file (mode `0600` on Unix) if needed, and creating or
    /// migrating the schema. Fails with a message naming the path if the
    /// directory cannot be created or written.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let path_buf = path.to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_dir(&path_buf, dir)?;
        }
        create_file(&path_buf)?;

        let sqlite = |op| {
            let path = path_buf.clone();
            move |source| JournalError::Sqlite { path, op, source }
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(sqlite("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sqlite("set busy_timeout"))?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(sqlite("enable foreign_keys"))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(sqlite("set journal_mode=WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(JournalError::WalUnsupported {
                path: path_buf,
                mode,
            });
        }
        // synchronous=FULL: in WAL mode, NORMAL is safe against a crash of
        // this process but a power loss or OS crash can roll back the last
        // committed transactions. The journal is what makes "deploy queued"
        // (and the 202 already sent to the provider) survive a reboot, and
        // the write rate is a handful of tiny transactions per deploy, so the
        // extra fsync per commit costs nothing that matters.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite("set synchronous=FULL"))?;
        migrate(&mut conn, &path_buf)?;
        Ok(Journal {
            path: path_buf,
            conn: Mutex::new(conn),
        })
    }

    /// Opens an existing journal read-only (for `redeploy history`), possibly
    /// while the server has it open for writing; reads see the latest
    /// committed state. Fails if the file does not exist, holds no journal, or
    /// was written by a newer `redeploy`.
    pub fn open_read_only(path: &Path) -> Result<Journal, JournalError> {
        let path_buf = path.to_path_buf();
        // SQLite would report a missing file only as "unable to open
        // database file"; say what is wrong instead. Other problems (a
        // directory, no permission) are left to SQLite to report.
        if let Err(e) = std::fs::metadata(path) {
            if e.kind() == io::ErrorKind::NotFound {
                return Err(JournalError::Missing { path: path_buf });
            }
        }
        let sqlite = |op| {
            let path = path_buf.clone();
            move |source| JournalError::Sqlite { path, op, source }
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sqlite("set busy_timeout"))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(sqlite("read schema version"))?;
        if version == 0 {
            return Err(JournalError::NotAJournal { path: path_buf });
        }
        if version > SCHEMA_VERSION {
            return Err(JournalError::TooNew {
                path: path_buf,
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Journal {
            path: path_buf,
            conn: Mutex::new(conn),
        })
    }

    /// The journal file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records a delivery; returns its id.
    pub fn record_delivery(&self, d: &NewDelivery) -> Result<i64, JournalError> {
        self.insert_delivery(&self.lock(), d)
    }

    /// Records a delivery that started no deploy, without waiting for the
    /// disk: the transaction commits with `synchronous=NORMAL`, so it
    /// survives a crash of this process but a power loss may drop it (and
    /// the few before it). In WAL mode the next `synchronous=FULL` commit
    /// (every deploy and every transition) syncs the whole log, these rows
    /// included, so a durable deploy never depends on a relaxed row and no
    /// accepted deploy is ever less durable than before. This keeps an fsync
    /// off the path of every push that deploys nothing, which is most of them.
    pub fn record_delivery_relaxed(&self, d: &NewDelivery) -> Result<i64, JournalError> {
        let conn = self.lock();
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(self.err("set synchronous=NORMAL"))?;
        let inserted = self.insert_delivery(&conn, d);
        // Back to FULL before the lock is released, so no other write runs
        // relaxed. Setting this pragma only sets a flag on the connection;
        // SQLite fails it only on a connection that fails every write.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(self.err("restore synchronous=FULL"))?;
        inserted
    }

    fn insert_delivery(&self, conn: &Connection, d: &NewDelivery) -> Result<i64, JournalError> {
        conn.prepare_cached(
            "INSERT INTO deliveries
                 (received_at_ms, stack, provider, event, delivery_id, status, summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                d.received_at_ms,
                d.stack,
                d.provider,
                d.event,
                d.delivery_id,
                d.status,
                d.summary
            ])
        })
        .map(|_| conn.last_insert_rowid())
        .map_err(self.err("record delivery"))
    }

    /// The most recent `limit` deliveries, most recent first.
    pub fn deliveries(&self, limit: usize) -> Result<Vec<DeliveryRecord>, JournalError> {
        let conn = self.lock();
        (|| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, received_at_ms, stack, provider, event, delivery_id, status, summary
                 FROM deliveries ORDER BY id DESC LIMIT ?1",
            )?;
            let rows = stmt.query_map([sql_limit(limit)], |row| {
                Ok(DeliveryRecord {
                    id: row.get(0)?,
                    received_at_ms: row.get(1)?,
                    stack: row.get(2)?,
                    provider: row.get(3)?,
                    event: row.get(4)?,
                    delivery_id: row.get(5)?,
                    status: row.get(6)?,
                    summary: row.get(7)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(self.err("read deliveries"))
    }

    /// Inserts a queued deploy (and its `queued` transition row). If a deploy
    /// with the same (stack, delivery_id) already exists (delivery_id not
    /// null) it inserts nothing and returns [`Inserted::Duplicate`] with the
    /// existing id: GitHub redelivers with the same `X-GitHub-Delivery`.
    pub fn insert_deploy(&self, d: &NewDeploy) -> Result<Inserted, JournalError> {
        let mut conn = self.lock();
        (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let inserted = insert_deploy_in(&tx, d)?;
            tx.commit()?;
            Ok(inserted)
        })()
        .map_err(self.err("insert deploy"))
    }

    /// Moves deploy `id` to state `to` at `at_ms`, in one transaction that
    /// also appends the transition to the deploy's history. Only legal
    /// transitions ([`DeployState::can_transition_to`]) are allowed; anything
    /// else is [`JournalError::IllegalTransition`] and changes nothing.
    ///
    /// Entering `started` sets `started_at_ms`; entering a final state sets
    /// `finished_at_ms`. Each `Some` field of `detail` is stored (`reason` as
    /// the deploy's `detail`); `None` fields keep the previous value.
    pub fn transition(
        &self,
        id: i64,
        to: DeployState,
        at_ms: i64,
        detail: &TransitionDetail,
    ) -> Result<(), JournalError> {
        let mut conn = self.lock();
        let outcome = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let from: Option<DeployState> = tx
                .prepare_cached("SELECT state FROM deploys WHERE id = ?1")?
                .query_row([id], |row| row.get(0))
                .optional()?;
            let Some(from) = from else {
                return Ok(Err(JournalError::UnknownDeploy {
                    path: self.path.clone(),
                    id,
                }));
            };
            if !from.can_transition_to(to) {
                return Ok(Err(JournalError::IllegalTransition { id, from, to }));
            }
            apply_transition(&tx, id, to, at_ms, detail)?;
            tx.commit()?;
            Ok(Ok(()))
        })();
        outcome.map_err(self.err("transition deploy"))?
    }

    /// For start-up: every deploy left `started` becomes `interrupted`
    /// (`finished_at_ms = now_ms`, reason [`INTERRUPTED_REASON`]), in one
    /// transaction. Returns those, and every deploy still `queued`, each list
    /// oldest first.
    pub fn recover(&self, now_ms: i64) -> Result<Recovery, JournalError> {
        let mut conn = self.lock();
        (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let started: Vec<i64> = tx
                .prepare_cached("SELECT id FROM deploys WHERE state = ?1 ORDER BY id")?
                .query_map([DeployState::Started], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let detail = TransitionDetail {
                reason: Some(INTERRUPTED_REASON.to_owned()),
                ..TransitionDetail::default()
            };
            for &id in &started {
                apply_transition(&tx, id, DeployState::Interrupted, now_ms, &detail)?;
            }
            let mut interrupted = Vec::with_capacity(started.len());
            for &id in &started {
                interrupted.extend(select_deploy(&tx, id)?);
            }
            let queued = tx
                .prepare_cached(&format!(
                    "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE state = ?1
                     ORDER BY created_at_ms, id"
                ))?
                .query_map([DeployState::Queued], deploy_from_row)?
                .collect::<rusqlite::Result<_>>()?;
            tx.commit()?;
            Ok(Recovery {
                interrupted,
                queued,
            })
        })()
        .map_err(self.err("recover deploys"))
    }

    /// Records the process group of started deploy `id`'s command.
    pub fn set_pgid(&self, id: i64, pgid: u32) -> Result<(), JournalError> {
        let conn = self.lock();
        conn.prepare_cached("UPDATE deploys SET pgid = ?2 WHERE id = ?1 AND state = ?3")
            .and_then(|mut stmt| stmt.execute(params![id, pgid, DeployState::Started]))
            .map(|_| ())
            .map_err(self.err("record a deploy's process group"))
    }

    /// The deploys of `stack` in state `started`, oldest first, each with
    /// its command's process group if one was recorded. For recovery, with
    /// the stack's lock held ([`crate::supervise::recover_stack`]).
    pub fn started_deploys(&self, stack: &str) -> Result<Vec<(i64, Option<i64>)>, JournalError> {
        let conn = self.lock();
        (|| {
            conn.prepare_cached(
                "SELECT id, pgid FROM deploys WHERE stack = ?1 AND state = ?2 ORDER BY id",
            )?
            .query_map(params![stack, DeployState::Started], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(self.err("read started deploys"))
    }

    /// The stacks that have a deploy in state `started`, by name.
    pub fn stacks_with_started_deploys(&self) -> Result<Vec<String>, JournalError> {
        let conn = self.lock();
        (|| {
            conn.prepare_cached(
                "SELECT DISTINCT stack FROM deploys WHERE state = ?1 ORDER BY stack",
            )?
            .query_map([DeployState::Started], |row| row.get(0))?
            .collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(self.err("read started deploys"))
    }

    /// Every deploy still `queued`, oldest first (what a starting server
    /// runs).
    pub fn queued_deploys(&self) -> Result<Vec<DeployRecord>, JournalError> {
        let conn = self.lock();
        (|| {
            conn.prepare_cached(&format!(
                "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE state = ?1
                 ORDER BY created_at_ms, id"
            ))?
            .query_map([DeployState::Queued], deploy_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(self.err("read queued deploys"))
    }

    /// The deploy with this id, if any.
    pub fn deploy(&self, id: i64) -> Result<Option<DeployRecord>, JournalError> {
        let conn = self.lock();
        select_deploy(&conn, id).map_err(self.err("read deploy"))
    }

    /// The most recent `limit` deploys, most recent first, of one stack or of
    /// all.
    pub fn deploys(
        &self,
        stack: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeployRecord>, JournalError> {
        let conn = self.lock();
        (|| match stack {
            Some(stack) => conn
                .prepare_cached(&format!(
                    "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE stack = ?1
                     ORDER BY id DESC LIMIT ?2"
                ))?
                .query_map(params![stack, sql_limit(limit)], deploy_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>(),
            None => conn
                .prepare_cached(&format!(
                    "SELECT {DEPLOY_COLUMNS} FROM deploys ORDER BY id DESC LIMIT ?1"
                ))?
                .query_map([sql_limit(limit)], deploy_from_row)?
                .collect(),
        })()
        .map_err(self.err("read deploys"))
    }

    /// The history of deploy `id`'s states with their times, oldest first
    /// (starting with `queued`); empty if there is no such deploy.
    pub fn transitions(&self, id: i64) -> Result<Vec<(DeployState, i64)>, JournalError> {
        let conn = self.lock();
        (|| {
            conn.prepare_cached(
                "SELECT state, at_ms FROM deploy_transitions WHERE deploy_id = ?1 ORDER BY id",
            )?
            .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(self.err("read deploy transitions"))
    }

    /// The number of deploys in each state. Every state is present, with 0
    /// if no deploy is in it (so metrics always export every series).
    pub fn count_by_state(&self) -> Result<BTreeMap<DeployState, u64>, JournalError> {
        let conn = self.lock();
        let mut counts: BTreeMap<DeployState, u64> =
            DeployState::ALL.into_iter().map(|s| (s, 0)).collect();
        (|| {
            let mut stmt =
                conn.prepare_cached("SELECT state, COUNT(*) FROM deploys GROUP BY state")?;
            let rows = stmt.query_map([], |row| {
                Ok((row.get::<_, DeployState>(0)?, row.get::<_, i64>(1)?))
            })?;
            for row in rows {
                let (state, n) = row?;
                counts.insert(state, u64::try_from(n).unwrap_or(0));
            }
            Ok(())
        })()
        .map_err(self.err("count deploys"))?;
        Ok(counts)
    }

    /// The stored hook token of `stack` (the secret path segment of its hook
    /// URL), if it has one.
    pub fn hook_token(&self, stack: &str) -> Result<Option<String>, JournalError> {
        let conn = self.lock();
        (|| {
            conn.prepare_cached("SELECT token FROM hook_tokens WHERE stack = ?1")?
                .query_row([stack], |row| row.get(0))
                .optional()
        })()
        .map_err(self.err("read hook token"))
    }

    /// Stores `candidate` as `stack`'s hook token if the stack has none yet,
    /// and returns the stored token: the existing one if there was one (so
    /// two racing processes agree on one token).
    pub fn ensure_hook_token(&self, stack: &str, candidate: &str) -> Result<String, JournalError> {
        let mut conn = self.lock();
        (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO hook_tokens (stack, token) VALUES (?1, ?2)
                 ON CONFLICT (stack) DO NOTHING",
            )?
            .execute([stack, candidate])?;
            let token: String = tx
                .prepare_cached("SELECT token FROM hook_tokens WHERE stack = ?1")?
                .query_row([stack], |row| row.get(0))?;
            tx.commit()?;
            Ok(token)
        })()
        .map_err(self.err("store hook token"))
    }

    /// Locks the connection. A poisoned lock is taken anyway: a panic while
    /// holding it cannot leave a transaction open (dropping a rusqlite
    /// `Transaction` rolls it back), so the connection is still consistent.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A mapper from a rusqlite error to [`JournalError::Sqlite`] for `op`.
    fn err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> JournalError + '_ {
        move |source| JournalError::Sqlite {
            path: self.path.clone(),
            op,
            source,
        }
    }
}

/// Creates `dir` (the journal's parent) if needed.
fn create_dir(path: &Path, dir: &Path) -> Result<(), JournalError> {
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
        Err(_) => std::fs::create_dir_all(dir).map_err(fail),
    }
}

/// Creates the journal file if it does not exist yet, readable only by its
/// owner on Unix (it holds the hook tokens). SQLite gives the `-wal` and
/// `-shm` files the database file's permissions. An existing file's
/// permissions are left alone.
fn create_file(path: &Path) -> Result<(), JournalError> {
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
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), JournalError> {
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
    // Future migrations: `if version < 6 { ... }` here, in order.
    if version < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
    }
    tx.commit().map_err(err)
}

/// Inserts a queued deploy and its `queued` transition inside the caller's
/// transaction, unless its (stack, delivery id) is already there.
fn insert_deploy_in(tx: &Connection, d: &NewDeploy) -> rusqlite::Result<Inserted> {
    if let Some(delivery_id) = &d.delivery_id {
        let existing: Option<i64> = tx
            .prepare_cached("SELECT id FROM deploys WHERE stack = ?1 AND delivery_id = ?2")?
            .query_row(params![d.stack, delivery_id], |row| row.get(0))
            .optional()?;
        if let Some(id) = existing {
            return Ok(Inserted::Duplicate(id));
        }
    }
    let services = serde_json::to_string(&d.services)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    tx.prepare_cached(
        "INSERT INTO deploys (stack, delivery_id, provider, git_ref, sha, services,
             profile, reason, event_json, state, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        d.stack,
        d.delivery_id,
        d.provider,
        d.git_ref,
        d.sha,
        services,
        d.profile,
        d.reason,
        d.event_json,
        DeployState::Queued,
        d.created_at_ms
    ])?;
    let id = tx.last_insert_rowid();
    append_transition(
        tx,
        id,
        DeployState::Queued,
        d.created_at_ms,
        Some(&d.reason),
    )?;
    Ok(Inserted::New(id))
}

/// Appends one row to a deploy's history.
fn append_transition(
    conn: &Connection,
    id: i64,
    state: DeployState,
    at_ms: i64,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO deploy_transitions (deploy_id, state, at_ms, detail)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, state, at_ms, detail])?;
    Ok(())
}

/// Updates a deploy's row to `to` and appends the history row; the caller
/// has checked legality and owns the transaction.
fn apply_transition(
    conn: &Connection,
    id: i64,
    to: DeployState,
    at_ms: i64,
    detail: &TransitionDetail,
) -> rusqlite::Result<()> {
    let started_at = (to == DeployState::Started).then_some(at_ms);
    let finished_at = to.is_final().then_some(at_ms);
    conn.prepare_cached(
        "UPDATE deploys SET
             state          = ?2,
             started_at_ms  = COALESCE(?3, started_at_ms),
             finished_at_ms = COALESCE(?4, finished_at_ms),
             exit_code      = COALESCE(?5, exit_code),
             detail         = COALESCE(?6, detail),
             log_path       = COALESCE(?7, log_path),
             superseded_by  = COALESCE(?8, superseded_by)
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        to,
        started_at,
        finished_at,
        detail.exit_code,
        detail.reason,
        detail.log_path,
        detail.superseded_by
    ])?;
    append_transition(conn, id, to, at_ms, detail.reason.as_deref())
}

/// Reads one deploy.
fn select_deploy(conn: &Connection, id: i64) -> rusqlite::Result<Option<DeployRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE id = ?1"
    ))?
    .query_row([id], deploy_from_row)
    .optional()
}

/// Builds a [`DeployRecord`] from a row selected with [`DEPLOY_COLUMNS`].
fn deploy_from_row(row: &Row<'_>) -> rusqlite::Result<DeployRecord> {
    let services: String = row.get(6)?;
    let services: Vec<String> = serde_json::from_str(&services).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(DeployRecord {
        id: row.get(0)?,
        stack: row.get(1)?,
        delivery_id: row.get(2)?,
        provider: row.get(3)?,
        git_ref: row.get(4)?,
        sha: row.get(5)?,
        services,
        profile: row.get(7)?,
        reason: row.get(8)?,
        event_json: row.get(9)?,
        state: row.get(10)?,
        created_at_ms: row.get(11)?,
        started_at_ms: row.get(12)?,
        finished_at_ms: row.get(13)?,
        exit_code: row.get(14)?,
        log_path: row.get(15)?,
        detail: row.get(16)?,
        superseded_by: row.get(17)?,
    })
}

/// A `LIMIT` value: SQLite takes an i64.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh, unique, empty directory under the system temp dir, removed on
    /// drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            let dir = std::env::temp_dir().join(format!(
                "redeploy-journal-test-{tag}-{}-{}-{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn journal_path(&self) -> PathBuf {
            Journal::path_in(&self.0)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn new_deploy(stack: &str, delivery_id: Option<&str>, created_at_ms: i64) -> NewDeploy {
        NewDeploy {
            stack: stack.to_owned(),
            delivery_id: delivery_id.map(str::to_owned),
            provider: "github".to_owned(),
            git_ref: Some("refs/heads/main".to_owned()),
            sha: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
            services: vec!["web".to_owned(), "worker".to_owned()],
            profile: Some("prod".to_owned()),
            reason: "push to main".to_owned(),
            event_json: r#"{"kind":"push"}"#.to_owned(),
            created_at_ms,
        }
    }

    fn new_id(inserted: Inserted) -> i64 {
        match inserted {
            Inserted::New(id) => id,
            Inserted::Duplicate(id) => panic!("expected a new deploy, got duplicate of {id}"),
        }
    }

    fn total(journal: &Journal) -> u64 {
        journal.count_by_state().unwrap().values().sum()
    }

    #[test]
    fn state_names_round_trip() {
        for state in DeployState::ALL {
            assert_eq!(state.as_str().parse::<DeployState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        assert!("Queued".parse::<DeployState>().is_err());
        assert!("done".parse::<DeployState>().is_err());
        let finals: Vec<_> = DeployState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [
                DeployState::Succeeded,
                DeployState::Failed,
                DeployState::Cancelled,
                DeployState::Interrupted
            ]
        );
        assert!(!DeployState::Queued.can_transition_to(DeployState::Interrupted));
        assert!(!DeployState::Queued.can_transition_to(DeployState::Succeeded));
        assert!(DeployState::Started.can_transition_to(DeployState::Interrupted));
        for from in DeployState::ALL.into_iter().filter(|s| s.is_final()) {
            for to in DeployState::ALL {
                assert!(!from.can_transition_to(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn insert_transition_and_read_back() {
        let dir = TempDir::new("roundtrip");
        let journal = Journal::open(&dir.journal_path()).unwrap();
        assert_eq!(journal.path(), dir.journal_path());

        let id = new_id(
            journal
                .insert_deploy(&new_deploy("app", Some("d-1"), 1_000))
                .unwrap(),
        );
        let queued = journal.deploy(id).unwrap().unwrap();
        assert_eq!(
            queued,
            DeployRecord {
                id,
                stack: "app".to_owned(),
                delivery_id: Some("d-1".to_owned()),
                provider: "github".to_owned(),
                git_ref: Some("refs/heads/main".to_owned()),
                sha: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
                services: vec!["web".to_owned(), "worker".to_owned()],
                profile: Some("prod".to_owned()),
                reason: "push to main".to_owned(),
                event_json: r#"{"kind":"push"}"#.to_owned(),
                state: DeployState::Queued,
                created_at_ms: 1_000,
                started_at_ms: None,
                finished_at_ms: None,
                exit_code: None,
                log_path: None,
                detail: None,
                superseded_by: None,
            }
        );

        journal
            .transition(
                id,
                DeployState::Started,
                2_000,
                &TransitionDetail {
                    log_path: Some("/state/logs/1.log".to_owned()),
                    ..TransitionDetail::default()
                },
            )
            .unwrap();
        journal
            .transition(
                id,
                DeployState::Failed,
                3_500,
                &TransitionDetail {
                    exit_code: Some(17),
                    reason: Some("docker compose up exited with 17".to_owned()),
                    ..TransitionDetail::default()
                },
            )
            .unwrap();

        let failed = journal.deploy(id).unwrap().unwrap();
        assert_eq!(failed.state, DeployState::Failed);
        assert_eq!(failed.started_at_ms, Some(2_000));
        assert_eq!(failed.finished_at_ms, Some(3_500));
        assert_eq!(failed.exit_code, Some(17));
        assert_eq!(failed.log_path.as_deref(), Some("/state/logs/1.log"));
        assert_eq!(
            failed.detail.as_deref(),
            Some("docker compose up exited with 17")
        );
        assert_eq!(
            journal.transitions(id).unwrap(),
            [
                (DeployState::Queued, 1_000),
                (DeployState::Started, 2_000),
                (DeployState::Failed, 3_500)
            ]
        );
        assert!(journal.transitions(id + 100).unwrap().is_empty());
        assert_eq!(journal.deploy(id + 100).unwrap(), None);

        // The record serialises with the state as its name.
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["state"], "failed");
        assert_eq!(json["services"], serde_json::json!(["web", "worker"]));

        // Cancelling a queued deploy in favour of a newer one.
        let older = new_id(
            journal
                .insert_deploy(&new_deploy("app", None, 4_000))
                .unwrap(),
        );
        let newer = new_id(
            journal
                .insert_deploy(&new_deploy("app", None, 4_100))
                .unwrap(),
        );
        journal
            .transition(
                older,
                DeployState::Cancelled,
                4_200,
                &TransitionDetail {
                    reason: Some(format!("superseded by deploy {newer}")),
                    superseded_by: Some(newer),
                    ..TransitionDetail::default()
                },
            )
            .unwrap();
        let cancelled = journal.deploy(older).unwrap().unwrap();
        assert_eq!(cancelled.state, DeployState::Cancelled);
        assert_eq!(cancelled.superseded_by, Some(newer));
        assert_eq!(cancelled.started_at_ms, None);
        assert_eq!(cancelled.finished_at_ms, Some(4_200));

        // superseded_by must name a real deploy.
        let err = journal
            .transition(
                newer,
                DeployState::Cancelled,
                4_300,
                &TransitionDetail {
                    superseded_by: Some(9_999),
                    ..TransitionDetail::default()
                },
            )
            .unwrap_err();
        assert!(matches!(err, JournalError::Sqlite { .. }), "{err}");
        assert_eq!(
            journal.deploy(newer).unwrap().unwrap().state,
            DeployState::Queued
        );

        let err = journal
            .transition(9_999, DeployState::Started, 1, &TransitionDetail::default())
            .unwrap_err();
        assert!(
            matches!(err, JournalError::UnknownDeploy { id: 9_999, .. }),
            "{err}"
        );

        let counts = journal.count_by_state().unwrap();
        assert_eq!(counts.len(), DeployState::ALL.len());
        assert_eq!(counts[&DeployState::Failed], 1);
        assert_eq!(counts[&DeployState::Cancelled], 1);
        assert_eq!(counts[&DeployState::Queued], 1);
        assert_eq!(counts[&DeployState::Succeeded], 0);
    }

    #[test]
    fn deliveries_are_recorded_most_recent_first() {
        let dir = TempDir::new("deliveries");
        let journal = Journal::open(&dir.journal_path()).unwrap();
        let first = NewDelivery {
            received_at_ms: 10,
            stack: Some("app".to_owned()),
            provider: Some("github".to_owned()),
            event: Some("push".to_owned()),
            delivery_id: Some("d-1".to_owned()),
            status: 202,
            summary: "queued deploy 1".to_owned(),
        };
        let second = NewDelivery {
            received_at_ms: 20,
            stack: None,
            provider: None,
            event: None,
            delivery_id: None,
            status: 404,
            summary: "unknown hook".to_owned(),
        };
        let a = journal.record_delivery(&first).unwrap();
        let b = journal.record_delivery(&second).unwrap();
        assert!(b > a);
        let got = journal.deliveries(10).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            DeliveryRecord {
                id: b,
                received_at_ms: 20,
                stack: None,
                provider: None,
                event: None,
                delivery_id: None,
                status: 404,
                summary: "unknown hook".to_owned(),
            }
        );
        assert_eq!(got[1].id, a);
        assert_eq!(got[1].stack.as_deref(), Some("app"));
        assert_eq!(got[1].status, 202);
        assert_eq!(journal.deliveries(1).unwrap().len(), 1);
        assert!(journal.deliveries(0).unwrap().is_empty());
    }

    #[test]
    fn relaxed_delivery_is_recorded_and_full_durability_is_restored() {
        let dir = TempDir::new("relaxed");
        let journal = Journal::open(&dir.journal_path()).unwrap();
        let skipped = NewDelivery {
            received_at_ms: 30,
            stack: Some("app".to_owned()),
            provider: Some("github".to_owned()),
            event: Some("push".to_owned()),
            delivery_id: Some("d-2".to_owned()),
            status: 200,
            summary: "push to another branch".to_owned(),
        };
        let id = journal.record_delivery_relaxed(&skipped).unwrap();
        // Committed: another connection (`redeploy history`) sees it.
        let reader = Journal::open_read_only(&dir.journal_path()).unwrap();
        let got = reader.deliveries(10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].id, id);
        assert_eq!(got[0].summary, "push to another branch");
        // Every later write (deploys, transitions) is back to an fsync per commit.
        let synchronous: i64 = journal
            .lock()
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .unwrap();
        assert_eq!(synchronous, 2, "synchronous=FULL is 2");
    }

    #[test]
    fn duplicate_delivery_id_returns_existing_and_inserts_nothing() {
        let dir = TempDir::new("duplicate");
        let journal = Journal::open(&dir.journal_path()).unwrap();
        let id = new_id(
            journal
                .insert_deploy(&new_deploy("app", Some("d-1"), 1))
                .unwrap(),
        );

        let mut again = new_deploy("app", Some("d-1"), 2);
        again.reason = "redelivery".to_owned();
        assert_eq!(
            journal.insert_deploy(&again).unwrap(),
            Inserted::Duplicate(id)
        );
        assert_eq!(total(&journal), 1);
        assert_eq!(journal.deploy(id).unwrap().unwrap().reason, "push to main");
        assert_eq!(journal.transitions(id).unwrap().len(), 1);

        // Also a duplicate once the first has finished.
        journal
            .transition(id, DeployState::Started, 3, &TransitionDetail::default())
            .unwrap();
        journal
            .transition(id, DeployState::Succeeded, 4, &TransitionDetail::default())
            .unwrap();
        assert_eq!(
            journal.insert_deploy(&again).unwrap(),
            Inserted::Duplicate(id)
        );

        // The same delivery id for another stack, and deploys without a
        // delivery id, are distinct.
        assert!(matches!(
            journal
                .insert_deploy(&new_deploy("other", Some("d-1"), 5))
                .unwrap(),
            Inserted::New(_)
        ));
        assert!(matches!(
            journal.insert_deploy(&new_deploy("app", None, 6)).unwrap(),
            Inserted::New(_)
        ));
        assert!(matches!(
            journal.insert_deploy(&new_deploy("app", None, 7)).unwrap(),
            Inserted::New(_)
        ));
        assert_eq!(total(&journal), 4);
    }

    #[test]
    fn illegal_transition_is_rejected_and_changes_nothing() {
        let dir = TempDir::new("illegal");
        let journal = Journal::open(&dir.journal_path()).unwrap();
        let id = new_id(journal.insert_deploy(&new_deploy("app", None, 1)).unwrap());
        let before = journal.deploy(id).unwrap().unwrap();

        let detail = TransitionDetail {
            exit_code: Some(0),
            reason: Some("should not be stored".to_owned()),
            log_path: Some("/nope".to_owned()),
            superseded_by: None,
        };
        for to in [
            DeployState::Queued,
            DeployState::Succeeded,
            DeployState::Failed,
            DeployState::Interrupted,
        ] {
            let err = journal.transition(id, to, 2, &detail).unwrap_err();
            match err {
                JournalError::IllegalTransition {
                    id: got_id,
                    from,
                    to: got_to,
                } => {
                    assert_eq!((got_id, from, got_to), (id, DeployState::Queued, to));
                }
                other => panic!("expected IllegalTransition, got {other}"),
            }
            assert_eq!(journal.deploy(id).unwrap().unwrap(), before);
            assert_eq!(journal.transitions(id).unwrap(), [(DeployState::Queued, 1)]);
        }

        journal
            .transition(id, DeployState::Started, 3, &TransitionDetail::default())
            .unwrap();
        journal
            .transition(id, DeployState::Succeeded, 4, &TransitionDetail::default())
            .unwrap();
        let done = journal.deploy(id).unwrap().unwrap();
        let err = journal
            .transition(id, DeployState::Started, 5, &detail)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "journal: cannot transition deploy {id}: illegal transition succeeded -> started"
            )
        );
        assert_eq!(journal.deploy(id).unwrap().unwrap(), done);
        assert_eq!(journal.transitions(id).unwrap().len(), 3);
    }

    #[test]
    fn recover_interrupts_started_and_returns_queued_oldest_first() {
        let dir = TempDir::new("recover");
        let path = dir.journal_path();
        let (running_a, running_b, queued_late, queued_early, done);
        {
            let journal = Journal::open(&path).unwrap();
            running_a = new_id(journal.insert_deploy(&new_deploy("a", None, 100)).unwrap());
            running_b = new_id(journal.insert_deploy(&new_deploy("b", None, 110)).unwrap());
            // Inserted first but created later: "oldest" is by creation time.
            queued_late = new_id(journal.insert_deploy(&new_deploy("c", None, 300)).unwrap());
            queued_early = new_id(journal.insert_deploy(&new_deploy("d", None, 200)).unwrap());
            done = new_id(journal.insert_deploy(&new_deploy("e", None, 50)).unwrap());
            for id in [running_a, running_b, done] {
                journal
                    .transition(id, DeployState::Started, 400, &TransitionDetail::default())
                    .unwrap();
            }
            journal
                .transition(
                    done,
                    DeployState::Succeeded,
                    450,
                    &TransitionDetail::default(),
                )
                .unwrap();
        }

        let journal = Journal::open(&path).unwrap();
        let recovery = journal.recover(1_000).unwrap();
        let ids = |records: &[DeployRecord]| records.iter().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(&recovery.interrupted), [running_a, running_b]);
        assert_eq!(ids(&recovery.queued), [queued_early, queued_late]);
        for record in &recovery.interrupted {
            assert_eq!(record.state, DeployState::Interrupted);
            assert_eq!(record.started_at_ms, Some(400));
            assert_eq!(record.finished_at_ms, Some(1_000));
            assert_eq!(record.detail.as_deref(), Some(INTERRUPTED_REASON));
            assert_eq!(journal.deploy(record.id).unwrap().as_ref(), Some(record));
            assert_eq!(
                journal.transitions(record.id).unwrap().last(),
                Some(&(DeployState::Interrupted, 1_000))
            );
        }
        assert!(recovery
            .queued
            .iter()
            .all(|r| r.state == DeployState::Queued));
        assert_eq!(
            journal.deploy(done).unwrap().unwrap().state,
            DeployState::Succeeded
        );

        // Idempotent: nothing is left started.
        let again = journal.recover(2_000).unwrap();
        assert!(again.interrupted.is_empty());
        assert_eq!(ids(&again.queued), [queued_early, queued_late]);
    }

    #[test]
    fn data_survives_close_and_reopen() {
        let dir = TempDir::new("reopen");
        let path = dir.journal_path();
        let id;
        {
            let journal = Journal::open(&path).unwrap();
            id = new_id(
                journal
                    .insert_deploy(&new_deploy("app", Some("d-9"), 5))
                    .unwrap(),
            );
            journal
                .transition(id, DeployState::Started, 6, &TransitionDetail::default())
                .unwrap();
            journal
                .record_delivery(&NewDelivery {
                    received_at_ms: 5,
                    stack: Some("app".to_owned()),
                    provider: Some("github".to_owned()),
                    event: Some("push".to_owned()),
                    delivery_id: Some("d-9".to_owned()),
                    status: 202,
                    summary: "queued".to_owned(),
                })
                .unwrap();
            journal.ensure_hook_token("app", "tok-1").unwrap();
        }
        let journal = Journal::open(&path).unwrap();
        let record = journal.deploy(id).unwrap().unwrap();
        assert_eq!(record.state, DeployState::Started);
        assert_eq!(record.delivery_id.as_deref(), Some("d-9"));
        assert_eq!(journal.deliveries(10).unwrap().len(), 1);
        assert_eq!(journal.hook_token("app").unwrap().as_deref(), Some("tok-1"));
        assert_eq!(
            journal
                .insert_deploy(&new_deploy("app", Some("d-9"), 7))
                .unwrap(),
            Inserted::Duplicate(id)
        );
        // New ids keep increasing after reopening.
        let next = new_id(journal.insert_deploy(&new_deploy("app", None, 8)).unwrap());
        assert!(next > id);
        drop(journal);

        // And the read-only view sees it after the writer has closed.
        let reader = Journal::open_read_only(&path).unwrap();
        assert_eq!(reader.deploys(None, 10).unwrap().len(), 2);
        assert_eq!(reader.transitions(id).unwrap().len(), 2);
    }

    #[cfg(unix)]
    #[test]
    fn new_journal_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("mode");
        let path = dir.journal_path();
        let _journal = Journal::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn read_only_sees_concurrent_writes_and_cannot_write() {
        let dir = TempDir::new("readonly");
        let path = dir.journal_path();
        let writer = Journal::open(&path).unwrap();
        let first = new_id(writer.insert_deploy(&new_deploy("app", None, 1)).unwrap());

        let reader = Journal::open_read_only(&path).unwrap();
        assert_eq!(reader.path(), path);
        assert_eq!(reader.deploys(None, 10).unwrap().len(), 1);

        // Written while the reader is open: the reader sees it next call.
        let second = new_id(writer.insert_deploy(&new_deploy("app", None, 2)).unwrap());
        writer
            .transition(first, DeployState::Started, 3, &TransitionDetail::default())
            .unwrap();
        writer.ensure_hook_token("app", "tok").unwrap();
        let seen: Vec<i64> = reader
            .deploys(None, 10)
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(seen, [second, first]);
        assert_eq!(
            reader.deploy(first).unwrap().unwrap().state,
            DeployState::Started
        );
        assert_eq!(reader.hook_token("app").unwrap().as_deref(), Some("tok"));
        assert_eq!(reader.count_by_state().unwrap()[&DeployState::Queued], 1);

        // A reader holding no lock does not block the writer, and writes
        // through the read-only handle fail without touching anything.
        let err = reader
            .insert_deploy(&new_deploy("app", None, 4))
            .unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "journal {}: cannot insert deploy:",
                path.display()
            )),
            "{err}"
        );
        writer.insert_deploy(&new_deploy("app", None, 5)).unwrap();
        assert_eq!(total(&writer), 3);
        assert_eq!(total(&reader), 3);
    }

    #[test]
    fn open_read_only_requires_an_existing_journal() {
        let dir = TempDir::new("missing");
        let path = dir.journal_path();
        let err = Journal::open_read_only(&path).unwrap_err();
        assert!(matches!(err, JournalError::Missing { .. }), "{err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(!path.exists(), "open_read_only must not create the file");

        // An empty (non-journal) file is not a journal.
        std::fs::write(&path, b"").unwrap();
        let err = Journal::open_read_only(&path).unwrap_err();
        assert!(matches!(err, JournalError::NotAJournal { .. }), "{err}");
    }

    #[test]
    fn open_creates_missing_parent_directories() {
        let dir = TempDir::new("mkdir");
        let path = dir.0.join("a").join("b").join(FILE_NAME);
        let journal = Journal::open(&path).unwrap();
        assert!(path.is_file());
        assert_eq!(journal.deploys(None, 1).unwrap(), []);
    }

    #[test]
    fn open_under_a_regular_file_fails_clearly() {
        let dir = TempDir::new("unwritable");
        let file = dir.0.join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();

        // The journal's directory is a regular file.
        let path = file.join(FILE_NAME);
        let err = Journal::open(&path).unwrap_err();
        assert!(matches!(err, JournalError::CreateDir { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "journal {}: cannot create directory {}:",
                path.display(),
                file.display()
            )),
            "{message}"
        );
        assert!(message.contains("not a directory"), "{message}");

        // The journal's directory would have to be created under a file.
        let path = file.join("state").join(FILE_NAME);
        let err = Journal::open(&path).unwrap_err();
        assert!(matches!(err, JournalError::CreateDir { .. }), "{err}");
        assert!(
            err.to_string().starts_with(&format!(
                "journal {}: cannot create directory",
                path.display()
            )),
            "{err}"
        );
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = TempDir::new("toonew");
        let path = dir.journal_path();
        drop(Journal::open(&path).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = Journal::open(&path).unwrap_err();
        assert!(
            matches!(err, JournalError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
            "{err}"
        );
        let err = Journal::open_read_only(&path).unwrap_err();
        assert!(matches!(err, JournalError::TooNew { .. }), "{err}");
    }

    #[test]
    fn ensure_hook_token_is_idempotent() {
        let dir = TempDir::new("token");
        let path = dir.journal_path();
        let journal = Journal::open(&path).unwrap();
        assert_eq!(journal.hook_token("app").unwrap(), None);
        assert_eq!(journal.ensure_hook_token("app", "first").unwrap(), "first");
        assert_eq!(journal.ensure_hook_token("app", "first").unwrap(), "first");
        assert_eq!(journal.ensure_hook_token("app", "second").unwrap(), "first");
        assert_eq!(journal.hook_token("app").unwrap().as_deref(), Some("first"));

        // A second connection (another process) agrees.
        let other = Journal::open(&path).unwrap();
        assert_eq!(other.ensure_hook_token("app", "third").unwrap(), "first");
        assert_eq!(other.ensure_hook_token("web", "w-1").unwrap(), "w-1");
        assert_eq!(journal.hook_token("web").unwrap().as_deref(), Some("w-1"));
        assert_eq!(journal.hook_token("nope").unwrap(), None);
    }

    #[test]
    fn deploys_filters_by_stack_and_orders_most_recent_first() {
        let dir = TempDir::new("list");
        let journal = Journal::open(&dir.journal_path()).unwrap();
        let mut app = Vec::new();
        let mut web = Vec::new();
        for i in 0..5 {
            app.push(new_id(
                journal.insert_deploy(&new_deploy("app", None, i)).unwrap(),
            ));
            web.push(new_id(
                journal.insert_deploy(&new_deploy("web", None, i)).unwrap(),
            ));
        }
        let ids =
            |records: Vec<DeployRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();

        let mut all: Vec<i64> = app.iter().chain(&web).copied().collect();
        all.sort_unstable_by(|a, b| b.cmp(a));
        assert_eq!(ids(journal.deploys(None, 100).unwrap()), all);
        assert_eq!(ids(journal.deploys(None, 3).unwrap()), all[..3]);

        let app_desc: Vec<i64> = app.iter().rev().copied().collect();
        assert_eq!(ids(journal.deploys(Some("app"), 100).unwrap()), app_desc);
        assert_eq!(ids(journal.deploys(Some("app"), 2).unwrap()), app_desc[..2]);
        assert!(journal
            .deploys(Some("web"), 100)
            .unwrap()
            .iter()
            .all(|r| r.stack == "web"));
        assert!(journal.deploys(Some("nope"), 100).unwrap().is_empty());
        assert!(journal.deploys(None, 0).unwrap().is_empty());
        assert_eq!(journal.deploys(None, usize::MAX).unwrap().len(), 10);
    }

    #[test]
    fn journal_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Journal>();

        let dir = TempDir::new("threads");
        let journal = std::sync::Arc::new(Journal::open(&dir.journal_path()).unwrap());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    for i in 0..10 {
                        let delivery = format!("d-{t}-{i}");
                        journal
                            .insert_deploy(&new_deploy("app", Some(&delivery), i))
                            .unwrap();
                        // Every thread also redelivers thread 0's first one.
                        journal
                            .insert_deploy(&new_deploy("app", Some("d-0-0"), i))
                            .unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(total(&journal), 40);
    }
}
