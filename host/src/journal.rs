//! The durable journal: every delivery and every deploy, with its state
//! transitions, in one database: SQLite in the state directory
//! (`<state_dir>/journal.sqlite3`, the default) or a PostgreSQL database
//! several replicas share (`[journal] url`).
//!
//! Every operation is written once, against [`sql::Sql`], and runs on
//! either backend ([`sqlite`], [`postgres`]). Every state change is one
//! transaction: a deploy's row and the row that records the transition in
//! `deploy_transitions` are written together or not at all. Write
//! transactions are serialized against every other writer (SQLite: `BEGIN
//! IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock), so a
//! read-check-write sequence (the duplicate check in
//! [`Journal::insert_deploy`], the legality check in [`Journal::transition`],
//! the order check in [`Journal::admit_deploy`]) cannot race another writer,
//! in this process, another process or another replica.
//!
//! The schema is a list of versioned migrations per backend
//! ([`schema`]), applied when the journal is opened; both open functions
//! refuse a journal written by a newer `redeploy`.
//!
//! The journal never receives secrets (webhook secrets, signatures, headers
//! with credentials), with one deliberate exception: the per-stack hook
//! tokens, the secret path segment of each stack's hook URL, which must
//! survive restarts (and, with PostgreSQL, be the same on every replica),
//! and the server's keys. For that reason a SQLite journal file is created
//! with mode `0600`.
//!
//! All methods are short synchronous calls (each one small transaction),
//! meant to be called from async code directly, as the SQLite calls always
//! were; the PostgreSQL backend runs its I/O on its own runtime.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

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
pub use github::{DeploymentRequest, DeploymentRequestClaim, NewDeploymentRequest, RequestState};
mod leases;
mod logs;
pub use logs::StoredDeployLog;
mod notices;
pub use notices::{
    Notification, NotificationOutcome, NotificationRecord, FAN_OUT_MARK_IDS, NOTIFICATIONS_LEASE,
    TIMED_OUT_REASON,
};
mod outbox;
pub use outbox::{
    Claim, EventRefs, OutboxKind, OutboxOutcome, OutboxRow, ReportLine, RequestAnswer, Settlement,
    OUTBOX_LEASE,
};
mod poll;
pub use poll::PollSource;
mod request_fallback;
pub use request_fallback::{
    deployment_delivery_key, FallbackRun, FellBack, OpenRequest, RequestFallback, RequestedDeploy,
    OPEN_REQUESTS_BATCH,
};
mod catch_up;
pub use catch_up::{GithubHook, NewRedelivery, RedeliveryClaim, RedeliveryState};
mod retention;
pub use retention::{PrunePolicy, Pruned, PrunedLog};
mod cancel;
// Admissions written together by concurrent callers.
mod batch;
mod deliveries;
pub use deliveries::Recording;
mod row_queue;
mod ui_sessions;
pub use cancel::CancelOutcome;
pub use ui_sessions::UiSession;

mod admission;
mod commits;
mod images;
pub use admission::{
    Admission, AdmissionOutcome, Admitted, CommitClaim, Placed, Placer, ReplayClaim, ToRun,
};
pub use images::{ImageClaim, ImageClaimKind};
mod claim;
pub use claim::Start;
mod records;
pub use records::{
    Claimed, DeliveryRecord, DeployRecord, DeployState, Inserted, NewDelivery, NewDeploy, Recovery,
    StartedDeploy, StoredDelivery, TransitionDetail, UnknownDeployState,
};
mod error;
pub use error::JournalError;
pub mod postgres;
pub mod schema;
pub mod sql;
pub mod sqlite;
pub mod transfer;
pub use postgres::PostgresOptions;
use sql::{args, Commit, DbError, Rec, Sql};
pub use sqlite::{BUSY_TIMEOUT, SCHEMA_VERSION};

/// The journal's file name inside the state directory.
/// The channel each new queued deploy is announced on, its stack's name as
/// the payload, so that every replica's runner wakes at once
/// ([`crate::cluster`]); PostgreSQL only.
pub const QUEUED_CHANNEL: &str = "redeploy_queued";

/// The channel a released lease is announced on, its name as the payload,
/// so that a replica waiting for it takes it at once; PostgreSQL only.
pub const RELEASED_CHANNEL: &str = "redeploy_released";

pub const FILE_NAME: &str = "journal.sqlite3";

/// The reason recorded for deploys that [`Journal::recover`] marks
/// `interrupted`.
pub const INTERRUPTED_REASON: &str = "redeploy stopped while it ran";

/// The journal: a handle on its database. Cheap calls, safe to share
/// between threads (`Journal: Send + Sync`).
pub struct Journal {
    /// The file, or the database URL without its password: what messages
    /// name.
    location: String,
    backend: Backend,
    /// Relaxed delivery rows on SQLite, written together; a webhook's
    /// answer awaits its row without a thread ([`row_queue`]).
    relaxed_deliveries: row_queue::RowQueue<deliveries::DeliveryRow, Result<i64, JournalError>>,
    /// Admissions on SQLite, written together ([`batch`]).
    admissions: batch::Batcher<admission::AdmissionRow, admission::AdmissionOutcome>,
}

/// Where the journal lives.
enum Backend {
    Sqlite(sqlite::Db),
    Postgres(postgres::Db),
}

impl fmt::Debug for Journal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("location", &self.location)
            .finish()
    }
}

/// The columns of `deploys`, in the order [`deploy_from_row`] reads them.
const DEPLOY_COLUMNS: &str = "id, stack, delivery_id, provider, git_ref, sha, services, profile, \
     reason, event_json, state, created_at_ms, started_at_ms, finished_at_ms, exit_code, \
     log_path, detail, superseded_by, pusher, repository";

impl Journal {
    /// The journal's path inside a state directory:
    /// `<state_dir>/journal.sqlite3`.
    pub fn path_in(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Opens the SQLite journal at `path` for reading and writing, creating
    /// its parent directory and the file (mode `0600` on Unix) if needed,
    /// and creating or migrating the schema. Fails with a message naming the
    /// path if the directory cannot be created or written.
    ///
    /// The journal's directory is the state directory: one that exists and
    /// belongs to another user is refused before anything is created in it
    /// ([`JournalError::NotOwner`]), and a journal the file system refuses
    /// this user is reported with its owner
    /// ([`JournalError::PermissionDenied`]).
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let db = sqlite::Db::open(path)?;
        Ok(Journal {
            location: path.display().to_string(),
            backend: Backend::Sqlite(db),
            relaxed_deliveries: Default::default(),
            admissions: Default::default(),
        })
    }

    /// Opens an existing SQLite journal read-only (for `redeploy history`),
    /// possibly while the server has it open for writing; reads see the
    /// latest committed state. Fails if the file does not exist, holds no
    /// journal, or was written by a newer `redeploy`.
    pub fn open_read_only(path: &Path) -> Result<Journal, JournalError> {
        let db = sqlite::Db::open_read_only(path)?;
        Ok(Journal {
            location: path.display().to_string(),
            backend: Backend::Sqlite(db),
            relaxed_deliveries: Default::default(),
            admissions: Default::default(),
        })
    }

    /// Opens the PostgreSQL journal `options` describe, creating or
    /// migrating its schema (under an advisory lock, so replicas starting
    /// at once migrate once).
    pub fn open_postgres(options: &PostgresOptions) -> Result<Journal, JournalError> {
        Ok(Journal::on_postgres(postgres::Db::open(options, true)?))
    }

    /// Opens the PostgreSQL journal `options` describe to read it
    /// (`history`, `deliveries`, `logs`): nothing is created or migrated,
    /// so a user that may only read can, and a newer CLI never migrates
    /// the database under a running older server.
    pub fn open_postgres_for_reading(options: &PostgresOptions) -> Result<Journal, JournalError> {
        Ok(Journal::on_postgres(postgres::Db::open(options, false)?))
    }

    fn on_postgres(db: postgres::Db) -> Journal {
        Journal {
            location: db.location().to_owned(),
            backend: Backend::Postgres(db),
            relaxed_deliveries: Default::default(),
            admissions: Default::default(),
        }
    }

    /// The journal file, or the database URL without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The SQLite file, for a SQLite journal.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite(db) => Some(db.path()),
            Backend::Postgres(_) => None,
        }
    }

    /// The SQLite journal's group commit: (commits made, commits on the
    /// disk, syncs that did it).
    #[cfg(test)]
    fn sqlite_group_counts(&self) -> Option<(u64, u64, u64)> {
        match &self.backend {
            Backend::Sqlite(db) => Some(db.group_counts()),
            Backend::Postgres(_) => None,
        }
    }

    /// Whether the SQLite journal's checkpoint thread is waiting out an
    /// idle interval.
    #[cfg(test)]
    fn sqlite_checkpoint_idle(&self) -> Option<bool> {
        match &self.backend {
            Backend::Sqlite(db) => db.checkpoint_idle(),
            Backend::Postgres(_) => None,
        }
    }

    /// Runs `f` in one write transaction, serialized against every other
    /// writer of the journal (any process, any replica).
    fn write<R: Send>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut dyn Sql) -> Result<R, DbError> + Send,
    ) -> Result<R, JournalError> {
        self.commit(Commit::Exclusive, op, f)
    }

    /// Runs `f` in one transaction that only adds rows no read-check-write
    /// sequence depends on: it needs no exclusion from other writers.
    fn append<R: Send>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut dyn Sql) -> Result<R, DbError> + Send,
    ) -> Result<R, JournalError> {
        self.commit(Commit::Append, op, f)
    }

    /// Runs `f` in one write transaction committed as `commit` says.
    fn commit<R: Send>(
        &self,
        commit: Commit,
        op: &'static str,
        f: impl FnOnce(&mut dyn Sql) -> Result<R, DbError> + Send,
    ) -> Result<R, JournalError> {
        self.commit_or_undo(commit, op, f, || {})
    }

    /// [`Journal::commit`], running `undo` if the transaction does not
    /// commit: on SQLite before any other write can begin
    /// ([`sqlite::Db::write_or_undo`]); on PostgreSQL after a call that
    /// failed (which, its `COMMIT` sent, may have committed after all: no
    /// caller passes an `undo` there).
    fn commit_or_undo<R: Send>(
        &self,
        commit: Commit,
        op: &'static str,
        f: impl FnOnce(&mut dyn Sql) -> Result<R, DbError> + Send,
        undo: impl FnOnce() + Send,
    ) -> Result<R, JournalError> {
        tracing::trace!(op, ?commit, "journal write");
        let started = std::time::Instant::now();
        let outcome = match &self.backend {
            Backend::Sqlite(db) => db.write_or_undo(commit, f, undo),
            Backend::Postgres(db) => db.write(commit, f).inspect_err(|_| undo()),
        };
        self.timed("write", started);
        outcome.map_err(|source| JournalError::database(&self.location, op, source))
    }

    /// Runs `f`, which only reads.
    fn read<R: Send>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut dyn Sql) -> Result<R, DbError> + Send,
    ) -> Result<R, JournalError> {
        let started = std::time::Instant::now();
        let outcome = match &self.backend {
            Backend::Sqlite(db) => db.read(f),
            Backend::Postgres(db) => db.read(f),
        };
        self.timed("read", started);
        outcome.map_err(|source| JournalError::database(&self.location, op, source))
    }

    /// Records how long a call of `kind` begun at `started` took
    /// (`redeploy_journal_seconds`).
    fn timed(&self, kind: &'static str, started: std::time::Instant) {
        let backend = match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        };
        crate::metrics::process::journal_call(backend, kind, started.elapsed().as_secs_f64());
    }

    /// `LISTEN`s to `channels` until the returned task is aborted
    /// ([`postgres::Db::listen`]); `None` on SQLite, where no other replica
    /// announces anything.
    pub fn listen(
        &self,
        channels: &[&'static str],
        on: impl Fn(Option<(String, String)>) + Send + Sync + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(db) => Some(db.listen(channels, on)),
        }
    }

    /// The schema version the journal is at (SQLite's `user_version`,
    /// PostgreSQL's newest `schema_migrations` row).
    pub fn schema_version(&self) -> Result<i64, JournalError> {
        let query = match self.backend {
            Backend::Sqlite(_) => "PRAGMA user_version",
            Backend::Postgres(_) => "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        };
        self.read("read the schema version", |sql| {
            sql.query_one(query, args![])?.get(0)
        })
    }

    /// Checks that the database answers (for `/healthz`).
    pub fn ping(&self) -> Result<(), JournalError> {
        self.read("reach the database", |sql| {
            sql.query_one("SELECT 1", args![])?;
            Ok(())
        })
    }

    /// Inserts a queued deploy (and its `queued` transition row). If a deploy
    /// with the same (stack, delivery_id) already exists (delivery_id not
    /// null) it inserts nothing and returns [`Inserted::Duplicate`] with the
    /// existing id: GitHub redelivers with the same `X-GitHub-Delivery`.
    pub fn insert_deploy(&self, d: &NewDeploy) -> Result<Inserted, JournalError> {
        self.write("insert deploy", |sql| insert_deploy_in(sql, d))
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
        let location = &self.location;
        self.write("transition deploy", |sql| {
            let from: Option<DeployState> = sql
                .query_opt("SELECT state FROM deploys WHERE id = ?1", args![id])?
                .map(|row| row.get(0))
                .transpose()?;
            let Some(from) = from else {
                return Ok(Err(JournalError::UnknownDeploy {
                    location: location.clone(),
                    id,
                }));
            };
            if !from.can_transition_to(to) {
                return Ok(Err(JournalError::IllegalTransition { id, from, to }));
            }
            apply_transition(sql, id, to, at_ms, detail)?;
            Ok(Ok(()))
        })?
    }

    /// Cancels deploy `id` with `detail` if it is still queued, in one
    /// transaction: true if it did; false if a runner (maybe another
    /// replica's) started, cancelled or finished it first, and nothing
    /// changed. A queued deploy it is cancelled for
    /// (`detail.superseded_by`) takes its services.
    pub fn cancel_queued(
        &self,
        id: i64,
        at_ms: i64,
        detail: &TransitionDetail,
    ) -> Result<bool, JournalError> {
        // A deploy that left `queued` never comes back to it: found so
        // without the write lock, the answer is already false. (The queue
        // asks to cancel deploys a runner's claim often cancelled first;
        // each such ask was a transaction under the lock that every writer
        // of every replica waits for.)
        let queued = self.read("read whether a deploy is queued", |sql| {
            sql.query_opt(
                "SELECT 1 FROM deploys WHERE id = ?1 AND state = ?2",
                args![id, DeployState::Queued],
            )
        })?;
        if queued.is_none() {
            return Ok(false);
        }
        self.write("cancel deploy", |sql| {
            claim::cancel_one(sql, id, at_ms, detail)
        })
    }

    /// For start-up: every deploy left `started` becomes `interrupted`
    /// (`finished_at_ms = now_ms`, reason [`INTERRUPTED_REASON`]), in one
    /// transaction. Returns those, and every deploy still `queued`, each list
    /// oldest first.
    pub fn recover(&self, now_ms: i64) -> Result<Recovery, JournalError> {
        self.write("recover deploys", |sql| {
            let started: Vec<i64> = sql
                .query(
                    "SELECT id FROM deploys WHERE state = ?1 ORDER BY id",
                    args![DeployState::Started],
                )?
                .iter()
                .map(|row| row.get(0))
                .collect::<Result<_, _>>()?;
            let detail = TransitionDetail {
                reason: Some(INTERRUPTED_REASON.to_owned()),
                ..TransitionDetail::default()
            };
            for &id in &started {
                apply_transition(sql, id, DeployState::Interrupted, now_ms, &detail)?;
            }
            let mut interrupted = Vec::with_capacity(started.len());
            for &id in &started {
                interrupted.extend(select_deploy(sql, id)?);
            }
            let queued = select_queued(sql)?;
            Ok(Recovery {
                interrupted,
                queued,
            })
        })
    }

    /// Records the process group of started deploy `id`'s command, and the
    /// machine it lives on (`host`, [`crate::cluster::host_id`]).
    pub fn set_pgid(&self, id: i64, pgid: u32, host: &str) -> Result<(), JournalError> {
        // One row's own columns, guarded by its state: no read-check-write
        // that needs the journal's write lock. Durable before it returns:
        // recovery stops the whole group by it, children that dropped the
        // environment (`sudo`, `env -i`) included, which its fallback
        // ([`crate::supervise::groups_with_env`]) cannot find.
        self.append("record a deploy's process group", |sql| {
            sql.execute(
                "UPDATE deploys SET pgid = ?2, pgid_host = ?4 WHERE id = ?1 AND state = ?3",
                args![id, pgid, DeployState::Started, host],
            )?;
            Ok(())
        })
    }

    /// The deploys of `stack` in state `started`, oldest first, each with
    /// its command's process group and that group's machine, if they were
    /// recorded, and its log. For recovery, with the stack's lock held
    /// ([`crate::supervise::recover_stack`]).
    pub fn started_deploys(&self, stack: &str) -> Result<Vec<StartedDeploy>, JournalError> {
        self.read("read started deploys", |sql| {
            sql.query(
                "SELECT id, pgid, pgid_host, log_path FROM deploys \
                 WHERE stack = ?1 AND state = ?2 ORDER BY id",
                args![stack, DeployState::Started],
            )?
            .iter()
            .map(|row| {
                Ok(StartedDeploy {
                    id: row.get(0)?,
                    pgid: row.get(1)?,
                    pgid_host: row.get(2)?,
                    log_path: row.get(3)?,
                })
            })
            .collect()
        })
    }

    /// The stacks that have a deploy in state `started`, by name.
    pub fn stacks_with_started_deploys(&self) -> Result<Vec<String>, JournalError> {
        self.read("read started deploys", |sql| {
            sql.query(
                "SELECT DISTINCT stack FROM deploys WHERE state = ?1 ORDER BY stack",
                args![DeployState::Started],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect()
        })
    }

    /// Every deploy still `queued`, oldest first (what a starting server
    /// runs).
    pub fn queued_deploys(&self) -> Result<Vec<DeployRecord>, JournalError> {
        self.read("read queued deploys", select_queued)
    }

    /// The deploy with this id, if any.
    pub fn deploy(&self, id: i64) -> Result<Option<DeployRecord>, JournalError> {
        self.read("read deploy", |sql| select_deploy(sql, id))
    }

    /// The most recent `limit` deploys, most recent first, of one stack or of
    /// all.
    pub fn deploys(
        &self,
        stack: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeployRecord>, JournalError> {
        self.read("read deploys", |sql| {
            // Two statements rather than `?1 IS NULL OR stack = ?1`, so the
            // one for a stack walks the (stack, id) index.
            let rows = match stack {
                Some(stack) => sql.query(
                    &format!(
                        "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE stack = ?1
                         ORDER BY id DESC LIMIT ?2"
                    ),
                    args![stack, limit],
                )?,
                None => sql.query(
                    &format!("SELECT {DEPLOY_COLUMNS} FROM deploys ORDER BY id DESC LIMIT ?1"),
                    args![limit],
                )?,
            };
            rows.iter().map(deploy_from_row).collect()
        })
    }

    /// The history of deploy `id`'s states with their times, oldest first
    /// (starting with `queued`); empty if there is no such deploy.
    pub fn transitions(&self, id: i64) -> Result<Vec<(DeployState, i64)>, JournalError> {
        self.read("read deploy transitions", |sql| {
            sql.query(
                "SELECT state, at_ms FROM deploy_transitions WHERE deploy_id = ?1 ORDER BY id",
                args![id],
            )?
            .iter()
            .map(|row| Ok((row.get(0)?, row.get(1)?)))
            .collect()
        })
    }

    /// The number of deploys in each state. Every state is present, with 0
    /// if no deploy is in it (so metrics always export every series).
    pub fn count_by_state(&self) -> Result<BTreeMap<DeployState, u64>, JournalError> {
        let mut counts: BTreeMap<DeployState, u64> =
            DeployState::ALL.into_iter().map(|s| (s, 0)).collect();
        let rows = self.read("count deploys", |sql| {
            sql.query(
                "SELECT state, COUNT(*) FROM deploys GROUP BY state",
                args![],
            )?
            .iter()
            .map(|row| Ok((row.get::<DeployState>(0)?, row.get::<i64>(1)?)))
            .collect::<Result<Vec<_>, DbError>>()
        })?;
        for (state, n) in rows {
            counts.insert(state, u64::try_from(n).unwrap_or(0));
        }
        Ok(counts)
    }

    /// How many deploys each stack has queued (stacks with none are left
    /// out).
    pub fn queued_by_stack(&self) -> Result<BTreeMap<String, u64>, JournalError> {
        self.read("count queued deploys", |sql| {
            sql.query(
                "SELECT stack, COUNT(*) FROM deploys WHERE state = ?1 GROUP BY stack",
                args![DeployState::Queued],
            )?
            .iter()
            .map(|row| Ok((row.get(0)?, u64::try_from(row.get::<i64>(1)?).unwrap_or(0))))
            .collect()
        })
    }

    /// The stored hook token of `stack` (the secret path segment of its hook
    /// URL), if it has one.
    pub fn hook_token(&self, stack: &str) -> Result<Option<String>, JournalError> {
        self.read("read hook token", |sql| {
            sql.query_opt(
                "SELECT token FROM hook_tokens WHERE stack = ?1",
                args![stack],
            )?
            .map(|row| row.get(0))
            .transpose()
        })
    }

    /// Stores `candidate` as `stack`'s hook token if the stack has none yet,
    /// and returns the stored token: the existing one if there was one (so
    /// two racing processes, or replicas, agree on one token).
    pub fn ensure_hook_token(&self, stack: &str, candidate: &str) -> Result<String, JournalError> {
        self.write("store hook token", |sql| {
            sql.execute(
                "INSERT INTO hook_tokens (stack, token) VALUES (?1, ?2)
                 ON CONFLICT (stack) DO NOTHING",
                args![stack, candidate],
            )?;
            sql.query_one(
                "SELECT token FROM hook_tokens WHERE stack = ?1",
                args![stack],
            )?
            .get(0)
        })
    }
}

/// Inserts a queued deploy and its `queued` transition inside the caller's
/// transaction, unless its (stack, delivery id) is already there.
fn insert_deploy_in(sql: &mut dyn Sql, d: &NewDeploy) -> Result<Inserted, DbError> {
    let services = serde_json::to_string(&d.services).map_err(|e| DbError::Decode {
        column: 6,
        problem: e.to_string(),
    })?;
    // One statement whether or not the delivery was seen: a (stack,
    // delivery id) pair already there inserts nothing, and has no new id.
    let inserted = sql.insert_id(
        "INSERT INTO deploys (stack, delivery_id, provider, git_ref, sha, services,
             profile, reason, event_json, state, created_at_ms, pusher, repository)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (stack, delivery_id) WHERE delivery_id IS NOT NULL DO NOTHING",
        args![
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
            d.pusher,
            d.repository
        ],
    )?;
    let Some(id) = inserted else {
        let existing = sql.query_one(
            "SELECT id FROM deploys WHERE stack = ?1 AND delivery_id = ?2",
            args![d.stack, d.delivery_id],
        )?;
        return Ok(Inserted::Duplicate(existing.get(0)?));
    };
    insert_transition_row(
        sql,
        id,
        DeployState::Queued,
        d.created_at_ms,
        Some(&d.reason),
    )?;
    // A new deploy has no deployment request yet (one is inserted after
    // it, and writes the statuses it missed then).
    let change = outbox::Change {
        stack: &d.stack,
        deploy_id: id,
        state: DeployState::Queued,
        at_ms: d.created_at_ms,
        reason: Some(&d.reason),
    };
    outbox::queue_reports(sql, &change, &d.event_json, false)?;
    sql.announce(QUEUED_CHANNEL, &d.stack)?;
    Ok(Inserted::New(id))
}

/// Appends one row to a deploy's history.
fn append_transition(
    sql: &mut dyn Sql,
    id: i64,
    state: DeployState,
    at_ms: i64,
    detail: Option<&str>,
) -> Result<(), DbError> {
    insert_transition_row(sql, id, state, at_ms, detail)?;
    // What the change tells the outside world, in the same transaction.
    outbox::queue_for_transition(sql, id, state, at_ms, detail)
}

/// The `deploy_transitions` row of [`append_transition`], alone.
fn insert_transition_row(
    sql: &mut dyn Sql,
    id: i64,
    state: DeployState,
    at_ms: i64,
    detail: Option<&str>,
) -> Result<(), DbError> {
    sql.execute_pipelined(
        "INSERT INTO deploy_transitions (deploy_id, state, at_ms, detail)
         VALUES (?1, ?2, ?3, ?4)",
        args![id, state, at_ms, detail],
    )?;
    Ok(())
}

/// Updates a deploy's row to `to` and appends the history row; the caller
/// has checked legality and owns the transaction.
fn apply_transition(
    sql: &mut dyn Sql,
    id: i64,
    to: DeployState,
    at_ms: i64,
    detail: &TransitionDetail,
) -> Result<(), DbError> {
    let started_at = (to == DeployState::Started).then_some(at_ms);
    let finished_at = to.is_final().then_some(at_ms);
    sql.execute_pipelined(
        "UPDATE deploys SET
             state          = ?2,
             started_at_ms  = COALESCE(?3, started_at_ms),
             finished_at_ms = COALESCE(?4, finished_at_ms),
             exit_code      = COALESCE(?5, exit_code),
             detail         = COALESCE(?6, detail),
             log_path       = COALESCE(?7, log_path),
             superseded_by  = COALESCE(?8, superseded_by),
             runner         = COALESCE(?9, runner)
         WHERE id = ?1",
        args![
            id,
            to,
            started_at,
            finished_at,
            detail.exit_code.map(i64::from),
            detail.reason,
            detail.log_path,
            detail.superseded_by,
            detail.runner
        ],
    )?;
    append_transition(sql, id, to, at_ms, detail.reason.as_deref())
}

/// Reads one deploy.
fn select_deploy(sql: &mut dyn Sql, id: i64) -> Result<Option<DeployRecord>, DbError> {
    sql.query_opt(
        &format!("SELECT {DEPLOY_COLUMNS} FROM deploys WHERE id = ?1"),
        args![id],
    )?
    .as_ref()
    .map(deploy_from_row)
    .transpose()
}

/// Every queued deploy, oldest first.
fn select_queued(sql: &mut dyn Sql) -> Result<Vec<DeployRecord>, DbError> {
    sql.query(
        &format!(
            "SELECT {DEPLOY_COLUMNS} FROM deploys WHERE state = ?1 ORDER BY created_at_ms, id"
        ),
        args![DeployState::Queued],
    )?
    .iter()
    .map(deploy_from_row)
    .collect()
}

/// Builds a [`DeployRecord`] from a row selected with [`DEPLOY_COLUMNS`].
fn deploy_from_row(row: &Rec) -> Result<DeployRecord, DbError> {
    let services: String = row.get(6)?;
    let services: Vec<String> = serde_json::from_str(&services).map_err(|e| DbError::Decode {
        column: 6,
        problem: e.to_string(),
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
            repository: row.get(19)?,
        },
        state: row.get(10)?,
        started_at_ms: row.get(12)?,
        finished_at_ms: row.get(13)?,
        exit_code: row
            .get::<Option<i64>>(14)?
            .map(|code| {
                i32::try_from(code).map_err(|_| DbError::Decode {
                    column: 14,
                    problem: format!("exit code {code} out of range"),
                })
            })
            .transpose()?,
        log_path: row.get(15)?,
        detail: row.get(16)?,
        superseded_by: row.get(17)?,
    })
}

#[cfg(test)]
mod tests;
