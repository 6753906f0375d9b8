//! The SQLite backend: one database file in the state directory
//! (`journal.sqlite3`), one connection behind a mutex, WAL mode so a reader
//! (`redeploy history`) never blocks the writer, durable commits synced
//! in groups ([`group_commit`]: `synchronous=FULL`'s guarantee, one sync
//! shared by the commits made while the last one ran), checkpoints on a
//! thread of their own ([`checkpoint`]) rather than in the commit that
//! fills the log, and
//! write transactions that start with `BEGIN IMMEDIATE` so a
//! read-check-write sequence cannot race another writer, in this process or
//! another one.
//!
//! The file holds the hook tokens and server keys, so it is created `0600`
//! in a directory created `0700`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

mod checkpoint;
mod group_commit;

use checkpoint::Checkpointer;
use group_commit::GroupCommit;

use super::schema::{self, Migration};
use super::sql::{Commit, DbError, Rec, Sql, Value};
use super::JournalError;

/// How long a call waits for another connection's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening waits between attempts to switch a journal another
/// process is opening to WAL mode.
const WAL_SWITCH_RETRY: Duration = Duration::from_millis(10);

/// How many prepared statements the writing connection keeps for reuse.
/// The journal has well over a hundred distinct statements and a deploy
/// alone runs dozens; with rusqlite's default of 16, most were parsed and
/// planned again on every call (about 4% of the server's CPU on the deploy
/// path in a profile, an eighth of its own code's). Each kept statement
/// costs a few KiB.
const STATEMENT_CACHE_CAPACITY: usize = 256;

/// The SQLite schema version this build writes and understands
/// (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = schema::latest(schema::SQLITE);

/// The schema that added `github_deployment_requests`.
const GITHUB_SCHEMA: i64 = 2;
/// The schema that added `deploys.pusher`.
const PUSHER_SCHEMA: i64 = 6;
/// The schema that added the `repository` of deploys and deployment
/// requests (their lane, `crate::queue::Lane`).
const REPOSITORY_SCHEMA: i64 = 21;
/// The schema that added `poll_sources`.
const POLL_SCHEMA: i64 = 13;
/// The schema that added the refs a poll keeps (`poll_sources.ref_filter`).
const REF_FILTER_SCHEMA: i64 = 23;

/// An open SQLite journal.
pub struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// The shared syncs of the log that make writes durable (none on a
    /// read-only journal, which writes nothing).
    group: Option<GroupCommit>,
    /// The thread that checkpoints the log off the commit path (none on a
    /// read-only journal). Dropped after the connection above, so that the
    /// last connection to close, its own, leaves the journal checkpointed.
    /// Told of every commit, so that a burst after a quiet spell wakes it.
    checkpointer: Option<Checkpointer>,
}

impl Db {
    /// Opens the journal at `path` for reading and writing, creating its
    /// directory (`0700`) and file (`0600`) if needed, and the schema.
    pub fn open(path: &Path) -> Result<Db, JournalError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::ownership::check_state_dir(dir).map_err(JournalError::NotOwner)?;
        }
        Self::open_writable(path).map_err(|e| explain_permissions(e, path, true))
    }

    /// Opens an existing journal read-only.
    pub fn open_read_only(path: &Path) -> Result<Db, JournalError> {
        Self::open_reading(path).map_err(|e| explain_permissions(e, path, false))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_writable(path: &Path) -> Result<Db, JournalError> {
        let path_buf = path.to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_dir(&path_buf, dir)?;
        }
        create_file(&path_buf)?;

        let sqlite = |op| {
            let path = path_buf.clone();
            move |source: rusqlite::Error| JournalError::database(path.display(), op, source)
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(sqlite("open"))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(sqlite("set busy_timeout"))?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(sqlite("enable foreign_keys"))?;
        // Switching a new file to WAL needs it to itself, and SQLite answers
        // "database is locked" at once (no busy handler) while another
        // process opening it at the same moment holds it: tried again
        // until BUSY_TIMEOUT.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mode: String = loop {
            match conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)) {
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(WAL_SWITCH_RETRY);
                }
                other => break other.map_err(sqlite("set journal_mode=WAL"))?,
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(JournalError::WalUnsupported {
                path: path_buf,
                mode,
            });
        }
        // synchronous=FULL while migrating: in WAL mode, NORMAL is safe
        // against a crash of this process but a power loss or OS crash can
        // roll back the last committed transactions. The journal is what
        // makes "deploy queued" (and the 202 already sent to the provider)
        // survive a reboot.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sqlite("set synchronous=FULL"))?;
        migrate(&mut conn, &path_buf, schema::SQLITE)?;
        // From here on commits do not sync the log themselves: a durable
        // write waits for a sync shared with the writes committed beside it
        // (group commit, see `group_commit`), which gives the same
        // guarantee as FULL at a fraction of the syncs.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sqlite("set synchronous=NORMAL"))?;
        // Checkpoints run on a thread of their own (`checkpoint`); this
        // connection checkpoints only a log that thread let grow.
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            checkpoint::WRITER_AUTOCHECKPOINT_PAGES,
        )
        .map_err(sqlite("set wal_autocheckpoint"))?;
        // SQLite's own name for the file (absolute, symbolic links
        // resolved): its log is that name with `-wal`. rusqlite gives it
        // only as UTF-8; without it, the log cannot be named for sure.
        let resolved = conn
            .path()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| JournalError::OpenLog {
                path: path_buf.clone(),
                source: io::Error::other("SQLite's name for the journal file is not UTF-8"),
            })?;
        let group = Some(GroupCommit::open(&resolved)?);
        let checkpointer =
            Checkpointer::start(&resolved).map_err(sqlite("start the checkpoint thread"))?;
        Ok(Db {
            group,
            path: path_buf,
            conn: Mutex::new(conn),
            checkpointer: Some(checkpointer),
        })
    }

    fn open_reading(path: &Path) -> Result<Db, JournalError> {
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
            move |source: rusqlite::Error| JournalError::database(path.display(), op, source)
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
                location: path_buf.display().to_string(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        // Columns a later schema added, which a read-only connection cannot
        // add: a temporary view (temp names are found before main ones)
        // lends every query the column, empty. The deploy's `pusher`
        // (schema 6) and the repository of a deploy's or request's ref
        // (schema 21; a newer `redeploy` reads the journal an older server
        // still writes, before its restart migrates it).
        let lent: Vec<&str> = [
            (PUSHER_SCHEMA, "NULL AS pusher"),
            (REPOSITORY_SCHEMA, "NULL AS repository"),
        ]
        .into_iter()
        .filter(|(added, _)| version < *added)
        .map(|(_, column)| column)
        .collect();
        if !lent.is_empty() {
            let mut views = format!(
                "CREATE TEMP VIEW deploys AS SELECT *, {} FROM main.deploys;",
                lent.join(", ")
            );
            if (GITHUB_SCHEMA..REPOSITORY_SCHEMA).contains(&version) {
                views.push_str(
                    "CREATE TEMP VIEW github_deployment_requests AS \
                     SELECT *, NULL AS repository FROM main.github_deployment_requests;",
                );
            }
            conn.execute_batch(&views)
                .map_err(sqlite("read a journal of an older schema"))?;
        }
        // The refs a poll kept (schema 23): none recorded, every ref.
        if (POLL_SCHEMA..REF_FILTER_SCHEMA).contains(&version) {
            conn.execute_batch(
                "CREATE TEMP VIEW poll_sources AS \
                 SELECT *, NULL AS ref_filter FROM main.poll_sources;",
            )
            .map_err(sqlite("read a journal of an older schema"))?;
        }
        Ok(Db {
            group: None,
            path: path_buf,
            conn: Mutex::new(conn),
            checkpointer: None,
        })
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction: committed if it
    /// returns `Ok`, rolled back otherwise (and if it panics). Every commit
    /// that [`Commit::waits_for_disk`] is on the disk before this returns:
    /// the connection is released at the commit, and the call then waits
    /// for a sync of the log shared with the commits made beside it
    /// ([`group_commit`]). Such a write, called on an async worker thread,
    /// hands the thread over while it runs ([`off_worker`]).
    pub fn write<R>(
        &self,
        commit: Commit,
        f: impl FnOnce(&mut dyn Sql) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        self.write_or_undo(commit, f, || {})
    }

    /// [`Db::write`], running `undo` if the transaction does not commit
    /// (`f` fails or panics, or the commit fails), after its rollback and
    /// before the connection is released: no other write (which could be
    /// given the rolled-back rows' ids again) sees the journal in between.
    pub fn write_or_undo<R>(
        &self,
        commit: Commit,
        f: impl FnOnce(&mut dyn Sql) -> Result<R, DbError>,
        undo: impl FnOnce(),
    ) -> Result<R, DbError> {
        if commit.waits_for_disk() {
            off_worker(|| self.write_here(commit, f, undo))
        } else {
            self.write_here(commit, f, undo)
        }
    }

    fn write_here<R>(
        &self,
        commit: Commit,
        f: impl FnOnce(&mut dyn Sql) -> Result<R, DbError>,
        undo: impl FnOnce(),
    ) -> Result<R, DbError> {
        let conn = self.lock();
        // Dropped after the transaction and before the connection: an
        // early return or a panic rolls back, then undoes.
        let mut undo = OnDrop(Some(undo));
        // A panic in `f` drops the transaction, which rolls it back.
        let tx = Immediate::begin(&conn)?;
        let value = f(&mut Tx { conn: tx.conn })?;
        tx.commit()?;
        undo.0 = None;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.written();
        }
        // Numbered before the connection is released, so the numbers
        // follow the log's order.
        let ticket = match &self.group {
            Some(group) if commit.waits_for_disk() => Some((group, group.committed())),
            _ => None,
        };
        drop(conn);
        if let Some((group, ticket)) = ticket {
            group.durable(ticket);
        }
        Ok(value)
    }

    /// Runs `f` on the connection, outside an explicit transaction (each
    /// statement sees the latest committed state).
    pub fn read<R>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<R, DbError>,
    ) -> Result<R, DbError> {
        let conn = self.lock();
        f(&mut Tx { conn: &conn })
    }

    /// (commits made, commits on the disk, syncs that did it).
    #[cfg(test)]
    pub fn group_counts(&self) -> (u64, u64, u64) {
        self.group.as_ref().map_or((0, 0, 0), GroupCommit::counts)
    }

    /// Whether the checkpoint thread is waiting out an idle interval (none
    /// on a read-only journal).
    #[cfg(test)]
    pub fn checkpoint_idle(&self) -> Option<bool> {
        self.checkpointer.as_ref().map(Checkpointer::is_idle)
    }

    /// Locks the connection. A poisoned lock is taken anyway: a panic while
    /// holding it cannot leave a transaction open (dropping an
    /// [`Immediate`] rolls it back), so the connection is still consistent.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs `f`, which waits for the disk, from wherever the caller is: on an
/// async worker thread of a multi-threaded runtime the thread is handed
/// over (`block_in_place`), so the runtime's other tasks (the requests
/// being answered) go on while it waits; elsewhere (a blocking thread, the
/// CLI) it runs here. A deploy's runner records its claim and its end from
/// async code: without this, each of those waits held one of the (on two
/// cores, two) worker threads for a sync of the log.
pub(super) fn off_worker<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Runs its function when dropped, unless taken out first.
struct OnDrop<F: FnOnce()>(Option<F>);

impl<F: FnOnce()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

/// A `BEGIN IMMEDIATE` transaction on the locked connection, rolled back
/// when dropped uncommitted (an error, a panic, a failed `COMMIT`). Its
/// three statements are kept prepared in the connection's statement cache
/// (parsed again only once pushed out of it): rusqlite's own `Transaction`
/// parses `BEGIN IMMEDIATE` and `COMMIT` again on every write
/// (BENCHMARKS.md part 5, twenty-second pass). The migrations still use
/// rusqlite's.
struct Immediate<'a> {
    conn: &'a Connection,
}

impl<'a> Immediate<'a> {
    /// Begins the transaction, waiting up to [`BUSY_TIMEOUT`] for another
    /// connection's write lock.
    fn begin(conn: &'a Connection) -> rusqlite::Result<Immediate<'a>> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Immediate { conn })
    }

    /// Commits; on failure the transaction is rolled back as it is dropped.
    fn commit(self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }
}

impl Drop for Immediate<'_> {
    fn drop(&mut self) {
        // Committed, or ended by SQLite itself (some errors roll back on
        // their own): nothing to undo.
        if self.conn.is_autocommit() {
            return;
        }
        // As rusqlite's `Transaction` does, a rollback that fails is not
        // reported: the next `BEGIN` on this connection then fails loudly.
        let _ = self
            .conn
            .prepare_cached("ROLLBACK")
            .and_then(|mut rollback| rollback.execute([]));
    }
}

/// A statement runner on the locked connection.
struct Tx<'a> {
    conn: &'a Connection,
}

impl Sql for Tx<'_> {
    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, DbError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        Ok(stmt.execute(rusqlite::params_from_iter(args))? as u64)
    }

    fn insert_id(&mut self, sql: &str, args: &[Value]) -> Result<Option<i64>, DbError> {
        // The statement's own count of rows changed (a trigger's are not
        // counted), and the last row id inserted on this connection, which
        // is locked for the transaction (a trigger's insert does not
        // change it once the trigger ends).
        let inserted = self.execute(sql, args)?;
        Ok((inserted > 0).then(|| self.conn.last_insert_rowid()))
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Rec>, DbError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut rec = Vec::with_capacity(columns);
            for i in 0..columns {
                rec.push(match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    other => {
                        return Err(DbError::Decode {
                            column: i,
                            problem: format!("unexpected {:?} value", other.data_type()),
                        })
                    }
                });
            }
            out.push(Rec(rec));
        }
        Ok(out)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::from(rusqlite::types::Null),
            Value::Int(n) => ToSqlOutput::from(*n),
            Value::Text(s) => ToSqlOutput::from(s.as_str()),
        })
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
        JournalError::Database {
            source: DbError::Sqlite(source),
            ..
        } => matches!(
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

/// Creates `dir` (the journal's parent) if needed, private to its owner.
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

/// Creates or migrates the schema to the newest of `migrations`, in one
/// immediate transaction (so two processes opening a new journal at once do
/// not both create it).
fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[Migration],
) -> Result<(), JournalError> {
    let err = |source: rusqlite::Error| {
        JournalError::database(path.display(), "create or migrate schema", source)
    };
    let supported = schema::latest(migrations);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let version: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(err)?;
    if version > supported {
        return Err(JournalError::TooNew {
            location: path.display().to_string(),
            found: version,
            supported,
        });
    }
    for migration in migrations.iter().filter(|m| m.version > version) {
        tx.execute_batch(migration.sql).map_err(err)?;
    }
    if version < supported {
        tx.pragma_update(None, "user_version", supported)
            .map_err(err)?;
    }
    tx.commit().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::sql::args;
    use crate::journal::tests::TempDir;

    /// A fresh journal in a directory of its own (named by `tag`, removed
    /// when the first value is dropped), with a parent and a child table
    /// whose foreign key is checked at `COMMIT` (deferred), so that a
    /// commit can be made to fail.
    fn journal(tag: &str) -> (TempDir, Db) {
        let dir = TempDir::new(tag);
        let db = Db::open(&dir.journal_path()).unwrap();
        db.write(Commit::Append, |sql| {
            sql.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)", &[])?;
            sql.execute(
                "CREATE TABLE child (parent INTEGER REFERENCES parent (id)
                     DEFERRABLE INITIALLY DEFERRED)",
                &[],
            )
        })
        .unwrap();
        (dir, db)
    }

    /// The parents' ids, in order.
    fn parents(db: &Db) -> Vec<i64> {
        db.read(|sql| {
            sql.query("SELECT id FROM parent ORDER BY id", &[])?
                .iter()
                .map(|row| row.get(0))
                .collect()
        })
        .unwrap()
    }

    /// Writes parent `id` in a transaction of its own.
    fn add_parent(db: &Db, id: i64) {
        db.write(Commit::Append, |sql| {
            sql.execute("INSERT INTO parent (id) VALUES (?1)", args![id])
        })
        .unwrap();
    }

    #[test]
    fn a_write_that_fails_or_panics_leaves_nothing_and_the_next_one_commits() {
        let (_dir, db) = journal("sqlite-fails");
        let failed = db.write(Commit::Relaxed, |sql| {
            sql.execute("INSERT INTO parent (id) VALUES (1)", &[])?;
            sql.execute("INSERT INTO parent (id) VALUES (1)", &[])
        });
        assert!(failed.is_err(), "the second insert breaks the primary key");
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            db.write(Commit::Relaxed, |sql| -> Result<(), DbError> {
                sql.execute("INSERT INTO parent (id) VALUES (2)", &[])?;
                panic!("a bug in the write");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(parents(&db), Vec::<i64>::new(), "both rolled back");
        add_parent(&db, 3);
        add_parent(&db, 4);
        assert_eq!(parents(&db), [3, 4]);
    }

    #[test]
    fn a_commit_that_fails_is_rolled_back_and_the_next_write_begins_afresh() {
        let (_dir, db) = journal("sqlite-commit");
        // The child's parent is checked at COMMIT, which fails and, in
        // SQLite, leaves the transaction open: only the rollback ends it.
        let failed = db.write(Commit::Append, |sql| {
            sql.execute("INSERT INTO parent (id) VALUES (5)", &[])?;
            sql.execute("INSERT INTO child (parent) VALUES (99)", &[])
        });
        let error = failed.expect_err("the deferred foreign key fails the commit");
        assert!(error.to_string().contains("FOREIGN KEY"), "{error}");
        assert_eq!(parents(&db), Vec::<i64>::new(), "the parent went with it");
        // A transaction left open would make this BEGIN fail ("cannot
        // start a transaction within a transaction"), and the parent above
        // commit with it.
        add_parent(&db, 6);
        assert_eq!(parents(&db), [6]);
        let children = db
            .read(|sql| sql.query("SELECT parent FROM child", &[]))
            .unwrap();
        assert!(children.is_empty());
    }
}
