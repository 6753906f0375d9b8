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
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};

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
mod records;
pub use records::{
    DeliveryRecord, DeployRecord, DeployState, Inserted, NewDelivery, NewDeploy, Recovery,
    TransitionDetail, UnknownDeployState,
};
mod schema;
use schema::{create_dir, create_file, migrate};

/// The journal's file name inside the state directory.
pub const FILE_NAME: &str = "journal.sqlite3";

/// The schema version this build writes and understands
/// (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 6;

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
        "journal {}: does not exist yet: nothing has run with this state directory (`redeploy serve`, the post-receive hook, `hook-url` and `trigger --local` create it); check server.state_dir",
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
    /// The state directory belongs to another user
    /// ([`crate::ownership::check_state_dir`]): nothing was created.
    #[error(transparent)]
    NotOwner(crate::ownership::OwnershipError),
    /// The file system refuses this user the journal (or a directory on the
    /// way to it): who owns what, instead of SQLite's "unable to open
    /// database file".
    #[error("journal {}: {denied}", path.display())]
    PermissionDenied {
        /// The journal file.
        path: PathBuf,
        /// Who owns what refuses access, and who is running (part of this
        /// message, not a source: the chain prints it once).
        denied: crate::ownership::OwnershipError,
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

/// Replaces an error opening the journal at `path` by who owns what, when
/// the file system refuses this user the file or a directory on the way to
/// it (for reading, and for writing when `write`); any other error is kept.
fn explain_permissions(err: JournalError, path: &Path, write: bool) -> JournalError {
    let may_be_permissions = match &err {
        JournalError::CreateDir { source, .. } | JournalError::CreateFile { source, .. } => {
            source.kind() == io::ErrorKind::PermissionDenied
        }
        JournalError::Sqlite { source, .. } => matches!(
            source.sqlite_error_code(),
            Some(
                rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::PermissionDenied
                    | rusqlite::ErrorCode::SystemIoFailure
            )
        ),
        _ => false,
    };
    if !may_be_permissions {
        return err;
    }
    match crate::ownership::permission_problem(path, write) {
        Some(denied) => JournalError::PermissionDenied {
            path: path.to_path_buf(),
            denied,
        },
        None => err,
    }
}

/// The columns of `deploys`, in the order [`deploy_from_row`] reads them.
const DEPLOY_COLUMNS: &str = "id, stack, delivery_id, provider, git_ref, sha, services, profile, \
     reason, event_json, state, created_at_ms, started_at_ms, finished_at_ms, exit_code, \
     log_path, detail, superseded_by, pusher";

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
    ///
    /// The journal's directory is the state directory: one that exists and
    /// belongs to another user is refused before anything is created in it
    /// ([`JournalError::NotOwner`]), and a journal the file system refuses
    /// this user is reported with its owner
    /// ([`JournalError::PermissionDenied`]).
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::ownership::check_state_dir(dir).map_err(JournalError::NotOwner)?;
        }
        Self::open_writable(path).map_err(|e| explain_permissions(e, path, true))
    }

    fn open_writable(path: &Path) -> Result<Journal, JournalError> {
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
        Self::open_reading(path).map_err(|e| explain_permissions(e, path, false))
    }

    fn open_reading(path: &Path) -> Result<Journal, JournalError> {
        let path_buf = path.to_path_buf();
        // SQLite would report a missing file only as "unable to open
        // database file"; say what is wrong instead. A permission problem
        // is explained by `explain_permissions`; others (a directory) are
        // left to SQLite to report.
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
        if version < 6 {
            // A journal older than schema 6 has no `pusher` column, and a
            // read-only connection cannot add it: a temporary view (temp
            // names are found before main ones) lends every query the
            // column, empty.
            conn.execute_batch(
                "CREATE TEMP VIEW deploys AS SELECT *, NULL AS pusher FROM main.deploys",
            )
            .map_err(sqlite("read a journal older than schema 6"))?;
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
        self.deliveries_of(None, limit)
    }

    /// The most recent `limit` deliveries to `stack`'s hook URL (or to any,
    /// with `None`), most recent first.
    pub fn deliveries_of(
        &self,
        stack: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, JournalError> {
        let conn = self.lock();
        (|| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, received_at_ms, stack, provider, event, delivery_id, status, summary
                 FROM deliveries WHERE ?1 IS NULL OR stack = ?1
                 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(rusqlite::params![stack, sql_limit(limit)], |row| {
                Ok(DeliveryRecord {
                    id: row.get(0)?,
                    recorded: NewDelivery {
                        received_at_ms: row.get(1)?,
                        stack: row.get(2)?,
                        provider: row.get(3)?,
                        event: row.get(4)?,
                        delivery_id: row.get(5)?,
                        status: row.get(6)?,
                        summary: row.get(7)?,
                    },
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
             profile, reason, event_json, state, created_at_ms, pusher)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
        d.created_at_ms,
        d.pusher
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
        queued: NewDeploy {
            stack: row.get(1)?,
            delivery_id: row.get(2)?,
            provider: row.get(3)?,
            git_ref: row.get(4)?,
            sha: row.get(5)?,
            services,
            profile: row.get(7)?,
            reason: row.get(8)?,
            event_json: row.get(9)?,
            created_at_ms: row.get(11)?,
            pusher: row.get(18)?,
        },
        state: row.get(10)?,
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
mod tests;
