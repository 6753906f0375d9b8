//! The PostgreSQL backend: a journal several `redeploy serve` replicas share
//! (`[journal] url`).
//!
//! The protocol is tokio-postgres's, the pool (with its per-connection
//! statement cache) deadpool-postgres's, and TLS rustls's; nothing here
//! speaks the wire protocol. The I/O runs on one small runtime of its own
//! ([`runtime`]), so the journal's synchronous calls work the same from
//! async code, from blocking threads and from the CLI: a call made on an
//! async worker thread hands the thread over with `block_in_place` (or, on
//! a single-threaded runtime, runs on a scoped thread) while it waits, as a
//! SQLite call blocks while it waits for the disk.
//!
//! Write transactions that read, check and then write take one
//! transaction-scoped advisory lock ([`WRITE_LOCK`]), which serializes them
//! across every replica exactly as SQLite's `BEGIN IMMEDIATE` serializes
//! them across processes; transactions that only add rows
//! ([`Commit::Append`], [`Commit::Relaxed`]) do not. A locked transaction
//! commits without waiting for the disk, so the lock is not held across a
//! flush, and (unless [`Commit::ExclusiveRelaxed`]) is then made durable by
//! [`COMMIT_THEN_FLUSH`] before the call returns: concurrent callers share
//! one flush where each waited for its own under the lock. Migrations run
//! in one transaction under [`MIGRATION_LOCK`], so replicas starting at
//! once apply each migration once.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

mod connect;
pub use connect::check_url;
use connect::ConnectConfig;
mod pipeline;
use pipeline::{in_one_round_trip, Ahead};

use super::schema::{self, Migration};
use super::sql::{dollar_placeholders, Commit, DbError, Rec, Sql, Value};
use super::JournalError;

/// Connections a replica keeps to the database at most.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// How long connecting to the database may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a journal call waits for a free connection before it fails
/// (and a webhook is answered `503`).
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one round trip to the database may take by default before the
/// connection is given up and the call fails (`[journal] answer_timeout`):
/// a connection that is open but silent (a stalled network, a frozen
/// proxy) answers nothing and resets nothing, so without it a webhook
/// would wait for as long as the stall lasts.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The advisory lock migrations run under ("redeploy" in ASCII, minus one).
pub const MIGRATION_LOCK: i64 = 0x7265_6465_706c_6f78;

/// The advisory lock every read-check-write transaction holds until it
/// ends ("redeploy" in ASCII).
pub const WRITE_LOCK: i64 = 0x7265_6465_706c_6f79;

/// How a transaction that held [`WRITE_LOCK`] ends: it commits without
/// waiting for the disk (its `SET LOCAL synchronous_commit TO OFF`), which
/// releases the lock at once, and then a second transaction writes one
/// record to the log (a transactional logical-decoding message, which
/// touches no table, so concurrent ones never wait for each other) and
/// commits with the session's `synchronous_commit`. That commit waits
/// until the log is flushed up to its own record, which comes after the
/// locked transaction's commit (and after every commit the locked
/// transaction saw): when the call returns, all it wrote and read is
/// durable, as if it had committed synchronously. PostgreSQL batches the
/// flushes of concurrent committers, which it cannot do for flushes made
/// one after the other under the lock. (A transaction that writes nothing
/// to the log, such as one that only takes a transaction id, commits
/// without waiting whatever `synchronous_commit` says, so it would not
/// do.) One simple query, one round trip.
///
/// Another session may see the locked transaction's rows in the moment
/// before they are flushed. What acts on the journal (starting a deploy,
/// sending an outbox row, answering a webhook) first commits a write of
/// its own after what it read, and the log is flushed in order, so that
/// write's flush makes what it read durable too.
const COMMIT_THEN_FLUSH: &str =
    "COMMIT; BEGIN; SELECT pg_logical_emit_message(true, 'redeploy', 'flush'); COMMIT";

/// How long a connection may be silent before TCP keepalive probes start,
/// how often they are sent, and how many may go unanswered: a database
/// machine that vanished is noticed within about half a minute, not the
/// operating system's two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// How long a transaction may sit idle on the server before the server
/// ends it: a replica cut off mid-transaction never holds [`WRITE_LOCK`]
/// (and so every other replica's writes) for longer. Longer than the
/// longest a transaction waits on this side between two statements: a
/// claim asks the component whether a queued deploy may still run
/// (`runner::follows::refusal`), which may wait
/// [`crate::plugin::INSTANCE_WAIT`] for an instance and run for
/// [`crate::plugin::PLUGIN_DEADLINE`].
const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(20);
const _: () = assert!(
    IDLE_IN_TRANSACTION_TIMEOUT.as_millis()
        > crate::plugin::INSTANCE_WAIT.as_millis() + crate::plugin::PLUGIN_DEADLINE.as_millis()
);

/// How long the listening connection waits between attempts to connect
/// again after it was lost.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// How often the listening connection checks that the database still
/// answers (a connection cut off without a reset says nothing otherwise).
const LISTEN_PING: Duration = Duration::from_secs(10);

/// The newest PostgreSQL schema version this build knows.
pub const SCHEMA_VERSION: i64 = schema::latest(schema::POSTGRES);

/// The `application_name` replicas connect with (what `pg_stat_activity`
/// shows) unless the URL names another.
const APPLICATION_NAME: &str = "redeploy";

/// How to reach the database. The URL carries the password: `Debug` leaves
/// it out, and no message ever prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// A libpq-style URL, `postgres://user:password@host:port/dbname`, with
    /// optional `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`) and `sslrootcert` (a PEM file) parameters, and any
    /// other parameter tokio-postgres reads.
    pub url: String,
    /// Connections kept at most.
    pub pool_size: usize,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// How long a call waits for a free connection.
    pub acquire_timeout: Duration,
    /// How long one round trip may take before the connection is given up.
    pub answer_timeout: Duration,
}

impl PostgresOptions {
    /// Options for `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> PostgresOptions {
        PostgresOptions {
            url: url.into(),
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            answer_timeout: DEFAULT_ANSWER_TIMEOUT,
        }
    }
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &"<redacted>")
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("answer_timeout", &self.answer_timeout)
            .finish()
    }
}

/// An open PostgreSQL journal: a pool of connections.
pub struct Db {
    pool: Pool,
    location: String,
    /// How to connect outside the pool (the listening connection).
    connect: tokio_postgres::Config,
    /// How long a transaction waits for [`WRITE_LOCK`] (the pool's acquire
    /// timeout): past it the call fails, and the webhook it serves gets 503.
    lock_timeout: Duration,
    /// How long one round trip may take ([`PostgresOptions::answer_timeout`]).
    answer_timeout: Duration,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
}

/// The runtime the PostgreSQL I/O runs on: one worker thread for every
/// journal of the process, never dropped (a runtime cannot be dropped from
/// async code, where a journal may be).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("redeploy-postgres")
            .enable_all()
            .build()
            .expect("the PostgreSQL runtime's one thread can be started")
    })
}

/// Runs `f`, which blocks on [`runtime`], from wherever the caller is: on
/// an async worker thread of a multi-threaded runtime the thread is handed
/// over (`block_in_place`); on a single-threaded runtime `f` runs on a
/// scoped thread; elsewhere it runs here.
fn blocking<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => f(),
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|scope| match scope.spawn(f).join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }),
    }
}

impl Db {
    /// Connects (the pool opens its first connection here, so a wrong URL
    /// or password fails now, not at the first webhook) and creates or
    /// migrates the schema (`migrate`), or only checks that it is this
    /// build's (to read, with a user that may create nothing, and never
    /// migrating a database under a running older server).
    pub fn open(options: &PostgresOptions, migrate: bool) -> Result<Db, JournalError> {
        let parsed = ConnectConfig::parse(&options.url).map_err(|problem| {
            JournalError::database(
                "[journal] url",
                "read the database URL",
                DbError::Unavailable(problem),
            )
        })?;
        let location = parsed.location();
        let mut pg = parsed.config;
        if pg.get_application_name().is_none() {
            pg.application_name(APPLICATION_NAME);
        }
        pg.connect_timeout(options.connect_timeout)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES);
        pg.ssl_mode(parsed.ssl_mode);
        let manager = Manager::from_config(
            pg.clone(),
            parsed.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(options.acquire_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| {
                JournalError::database(
                    &location,
                    "create the connection pool",
                    DbError::Unavailable(e.to_string()),
                )
            })?;
        let db = Db {
            pool,
            location,
            connect: pg,
            tls: parsed.tls,
            lock_timeout: options.acquire_timeout,
            answer_timeout: options.answer_timeout,
        };
        if migrate {
            db.migrate(schema::POSTGRES)?;
        } else {
            db.check_schema(schema::latest(schema::POSTGRES))?;
        }
        Ok(db)
    }

    /// The database URL without its password, as messages name it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Runs `f` in one transaction, committed if it returns `Ok` and rolled
    /// back otherwise; [`Commit::Exclusive`], [`Commit::ExclusiveRelaxed`]
    /// and [`Commit::Snapshot`] transactions first take [`WRITE_LOCK`],
    /// waiting for it no longer than the acquire timeout;
    /// [`Commit::Relaxed`] and [`Commit::ExclusiveRelaxed`] ones commit with
    /// `synchronous_commit = off`, and are not flushed after.
    pub fn write<R: Send>(
        &self,
        commit: Commit,
        f: impl FnOnce(&mut dyn Sql) -> Result<R, DbError> + Send,
    ) -> Result<R, DbError> {
        blocking(|| {
            let rt = runtime();
            let mut conn = Checkout::new(rt.block_on(self.pool.get()).map_err(unavailable)?);
            // A statement runs no longer than this call waits for its
            // answer: once the call gives the connection up, the server
            // stops the statement too, and its locks go with it, instead
            // of holding them for as long as it would have run.
            let idle = format!(
                "SET LOCAL idle_in_transaction_session_timeout = {}; \
                 SET LOCAL statement_timeout = {}",
                IDLE_IN_TRANSACTION_TIMEOUT.as_millis(),
                self.answer_timeout.as_millis().max(1)
            );
            let wait = format!(
                "{idle}; SET LOCAL synchronous_commit TO OFF; \
                 SET LOCAL lock_timeout = {}; SELECT pg_advisory_xact_lock({WRITE_LOCK})",
                self.lock_timeout.as_millis().max(1)
            );
            let begin = match commit {
                Commit::Exclusive | Commit::ExclusiveRelaxed => format!("BEGIN; {wait}"),
                // One snapshot for every statement: what the transaction
                // reads is consistent. PostgreSQL takes it as the lock's
                // statement starts, before any wait for the lock, so it may
                // miss what the writer waited behind committed.
                Commit::Snapshot => format!("BEGIN ISOLATION LEVEL REPEATABLE READ; {wait}"),
                Commit::Append => format!("BEGIN; {idle}"),
                Commit::Relaxed => format!("BEGIN; {idle}; SET LOCAL synchronous_commit TO OFF"),
            };
            let end = match commit {
                Commit::Exclusive | Commit::Snapshot => COMMIT_THEN_FLUSH,
                Commit::Append | Commit::Relaxed | Commit::ExclusiveRelaxed => "COMMIT",
            };
            let mut tx = Tx {
                client: conn.client(),
                begin: Some(begin),
                ahead: Vec::new(),
                announced: Vec::new(),
                answer_timeout: self.answer_timeout,
                silent: false,
            };
            let outcome = f(&mut tx);
            if tx.silent {
                // Never a success: what was sent may not have run.
                return outcome.and(Err(no_answer(self.answer_timeout)));
            }
            let announced = std::mem::take(&mut tx.announced);
            let ahead = std::mem::take(&mut tx.ahead);
            match (tx.begin.take(), &outcome) {
                // Nothing was sent: there is no transaction to end, unless
                // there is something to write or to announce.
                (Some(_), Ok(_)) if ahead.is_empty() && announced.is_empty() => {}
                // Nothing was sent, nor will be.
                (Some(_), Err(_)) => {}
                (begin, Ok(_)) => answered(
                    self.answer_timeout,
                    commit_announcing(conn.client(), begin.as_deref(), &ahead, &announced, end),
                )??,
                (None, Err(_)) => answered(self.answer_timeout, async {
                    Ok(conn.client().batch_execute("ROLLBACK").await?)
                })??,
            }
            conn.release();
            outcome
        })
    }

    /// Runs `f`, which only reads, on a pooled connection.
    pub fn read<R: Send>(
        &self,
        f: impl FnOnce(&mut dyn Sql) -> Result<R, DbError> + Send,
    ) -> Result<R, DbError> {
        blocking(|| {
            let rt = runtime();
            let mut conn = Checkout::new(rt.block_on(self.pool.get()).map_err(unavailable)?);
            let mut tx = Tx {
                client: conn.client(),
                begin: None,
                ahead: Vec::new(),
                announced: Vec::new(),
                answer_timeout: self.answer_timeout,
                silent: false,
            };
            let outcome = f(&mut tx);
            if tx.silent {
                // Never a success: what was sent may not have run.
                return outcome.and(Err(no_answer(self.answer_timeout)));
            }
            // Outside a transaction, a statement sent ahead runs on its own;
            // a read that sent one still gets its answer.
            let ahead = std::mem::take(&mut tx.ahead);
            if outcome.is_ok() && !ahead.is_empty() {
                let done = async { Ok(()) };
                answered(
                    self.answer_timeout,
                    in_one_round_trip(conn.client(), None, &ahead, done),
                )??;
            }
            conn.release();
            outcome
        })
    }

    /// `LISTEN`s to `channels` on a connection of its own, outside the
    /// pool, until the returned task is aborted: `on` gets each
    /// notification as `Some((channel, payload))`, and `None` each time it
    /// (re)starts listening, since notifications sent while it was not
    /// listening are lost. A lost connection is made again every
    /// [`LISTEN_RETRY`]; one that stops answering is noticed within
    /// [`LISTEN_PING`].
    pub fn listen(
        &self,
        channels: &[&'static str],
        on: impl Fn(Option<(String, String)>) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let connect = self.connect.clone();
        let tls = self.tls.clone();
        let location = self.location.clone();
        let statement: String = channels.iter().map(|c| format!("LISTEN {c};")).collect();
        let on = Arc::new(on);
        runtime().spawn(async move {
            loop {
                match listen_once(&connect, &tls, &statement, on.clone()).await {
                    Ok(()) => tracing::warn!(journal = %location, "the listening connection closed; listening again"),
                    Err(e) => tracing::warn!(journal = %location, error = %e, "the listening connection failed; listening again"),
                }
                tokio::time::sleep(LISTEN_RETRY).await;
            }
        })
    }

    /// Refuses a database whose schema is not `supported`: none or older
    /// ([`JournalError::Outdated`]) or newer ([`JournalError::TooNew`]).
    fn check_schema(&self, supported: i64) -> Result<(), JournalError> {
        let found = self
            .read(|sql| {
                let exists: bool = sql
                    .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
                    .get(0)?;
                if !exists {
                    return Ok(0);
                }
                sql.query_one(
                    "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                    &[],
                )?
                .get(0)
            })
            .map_err(|source| {
                JournalError::database(&self.location, "read the schema version", source)
            })?;
        let location = self.location.clone();
        match found.cmp(&supported) {
            std::cmp::Ordering::Equal => Ok(()),
            std::cmp::Ordering::Less => Err(JournalError::Outdated {
                location,
                found,
                supported,
            }),
            std::cmp::Ordering::Greater => Err(JournalError::TooNew {
                location,
                found,
                supported,
            }),
        }
    }

    /// Applies every migration of `migrations` the database has not seen,
    /// in one transaction under [`MIGRATION_LOCK`]; refuses a database a
    /// newer `redeploy` migrated.
    fn migrate(&self, migrations: &'static [Migration]) -> Result<(), JournalError> {
        let supported = schema::latest(migrations);
        let location = self.location.clone();
        let outcome = blocking(|| {
            runtime().block_on(async {
                let mut client = self.pool.get().await.map_err(unavailable)?;
                let tx = client.transaction().await?;
                tx.batch_execute(&format!(
                    "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
                     CREATE TABLE IF NOT EXISTS schema_migrations (
                         version       BIGINT PRIMARY KEY,
                         name          TEXT NOT NULL,
                         applied_at_ms BIGINT NOT NULL
                     )"
                ))
                .await?;
                let current: i64 = tx
                    .query_one(
                        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                        &[],
                    )
                    .await?
                    .get(0);
                if current > supported {
                    return Ok(Err(current));
                }
                for migration in migrations.iter().filter(|m| m.version > current) {
                    tx.batch_execute(migration.sql).await?;
                    tx.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at_ms)
                         VALUES ($1, $2, $3)",
                        &[&migration.version, &migration.name, &super::now_ms()],
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok::<_, DbError>(Ok(()))
            })
        })
        .map_err(|source| JournalError::database(&location, "create or migrate schema", source))?;
        outcome.map_err(|found| JournalError::TooNew {
            location,
            found,
            supported,
        })
    }
}

/// Connects, runs `statement` (the `LISTEN`s), tells `on` to re-read
/// (`None`), then hands it every notification until the connection ends or
/// stops answering.
async fn listen_once(
    connect: &tokio_postgres::Config,
    tls: &tokio_postgres_rustls::MakeRustlsConnect,
    statement: &str,
    on: Arc<impl Fn(Option<(String, String)>) + Send + Sync + 'static>,
) -> Result<(), DbError> {
    let (client, mut connection) = connect.connect(tls.clone()).await?;
    let deliver = on.clone();
    let mut driver = tokio::spawn(async move {
        while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
            if let tokio_postgres::AsyncMessage::Notification(n) = message? {
                deliver(Some((n.channel().to_owned(), n.payload().to_owned())));
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    client.batch_execute(statement).await?;
    on(None);
    loop {
        tokio::select! {
            ended = &mut driver => {
                return match ended {
                    Ok(result) => result.map_err(DbError::from),
                    Err(e) => Err(DbError::Unavailable(e.to_string())),
                };
            }
            () = tokio::time::sleep(LISTEN_PING) => {
                let ping = tokio::time::timeout(LISTEN_PING, client.simple_query("SELECT 1")).await;
                match ping {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        driver.abort();
                        return Err(e.into());
                    }
                    Err(_) => {
                        driver.abort();
                        return Err(DbError::Unavailable("the database stopped answering".to_owned()));
                    }
                }
            }
        }
    }
}

/// A pooled connection that goes back to the pool only when released: one
/// dropped unreleased (a panic or an error mid-transaction) is closed
/// instead, so no connection returns to the pool inside a transaction.
struct Checkout(Option<Object>);

impl Checkout {
    fn new(object: Object) -> Checkout {
        Checkout(Some(object))
    }

    fn client(&self) -> &Object {
        self.0
            .as_ref()
            .expect("a checkout holds its connection until released")
    }

    fn release(&mut self) {
        self.0.take();
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

/// Sends what the transaction has left to send (its `begin`, if nothing
/// was sent yet, and the statements sent `ahead`), its `pg_notify`s and its
/// end (`end`: `COMMIT`, or [`COMMIT_THEN_FLUSH`]) together, in one round
/// trip ([`in_one_round_trip`]): a notification is only delivered if the
/// transaction commits. A statement or a notify that fails aborts the
/// transaction, and PostgreSQL then answers the `COMMIT` with a rollback
/// rather than an error, so that failure is the transaction's.
async fn commit_announcing(
    client: &Object,
    begin: Option<&str>,
    ahead: &[Ahead],
    announced: &[(String, String)],
    end: &str,
) -> Result<(), DbError> {
    if announced.is_empty() {
        return in_one_round_trip(client, begin, ahead, client.batch_execute(end)).await;
    }
    let calls: Vec<String> = (0..announced.len())
        .map(|i| format!("pg_notify(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    let notify = Ahead {
        statement: client
            .prepare_cached(&format!("SELECT {}", calls.join(", ")))
            .await?,
        args: announced
            .iter()
            .flat_map(|(channel, payload)| {
                [Value::Text(channel.clone()), Value::Text(payload.clone())]
            })
            .collect(),
    };
    let ahead = ahead.iter().chain([&notify]);
    in_one_round_trip(client, begin, ahead, client.batch_execute(end)).await
}

/// Statements on one pooled connection, each prepared once per connection
/// (deadpool's statement cache).
struct Tx<'a> {
    client: &'a Object,
    /// The transaction's `BEGIN` (and lock), until it is sent, pipelined
    /// with the first statement ([`in_one_round_trip`]): the lock is taken
    /// and the statement run in one round trip.
    begin: Option<String>,
    /// Statements run with [`Sql::execute_pipelined`], to send ahead of the
    /// transaction's next statement, or its end, in the same round trip.
    ahead: Vec<Ahead>,
    /// What [`Sql::announce`] was asked to tell, sent with the `COMMIT`
    /// ([`commit_announcing`]), each (channel, payload) once.
    announced: Vec<(String, String)>,
    /// How long one round trip may take ([`answered`]).
    answer_timeout: Duration,
    /// A round trip went unanswered: nothing more is sent on the
    /// connection, not even a `ROLLBACK`.
    silent: bool,
}

/// Runs `round_trip` on [`runtime`]: its outcome, or, once `timeout` has
/// passed without an answer, the outer error. The caller then sends
/// nothing more on the connection and drops it (a checkout not released is
/// taken out of the pool, `Checkout`), so the next call connects again
/// instead of waiting on a silent one.
fn answered<T>(
    timeout: Duration,
    round_trip: impl std::future::Future<Output = Result<T, DbError>>,
) -> Result<Result<T, DbError>, DbError> {
    runtime().block_on(async {
        tokio::time::timeout(timeout, round_trip)
            .await
            .map_err(|_| no_answer(timeout))
    })
}

/// The error of a round trip [`answered`] gave up on after `timeout`.
fn no_answer(timeout: Duration) -> DbError {
    DbError::Unavailable(format!(
        "the database did not answer within {} ([journal] answer_timeout); the connection is given up",
        humantime::format_duration(timeout)
    ))
}

impl Tx<'_> {
    /// What is still to be sent ahead of the next statement: the `BEGIN`,
    /// if not sent yet, and the statements sent ahead.
    fn unsent(&mut self) -> (Option<String>, Vec<Ahead>) {
        (self.begin.take(), std::mem::take(&mut self.ahead))
    }

    async fn prepared(&self, sql: &str) -> Result<tokio_postgres::Statement, DbError> {
        Ok(self
            .client
            .prepare_cached(&dollar_placeholders(sql))
            .await?)
    }
}

impl Sql for Tx<'_> {
    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, DbError> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|v| v as _).collect();
        let outcome = answered(self.answer_timeout, async {
            let statement = self.prepared(sql).await?;
            let (begin, ahead) = self.unsent();
            let done = self.client.execute(&statement, &params);
            in_one_round_trip(self.client, begin.as_deref(), &ahead, done).await
        });
        self.silent |= outcome.is_err();
        outcome?
    }

    fn execute_pipelined(&mut self, sql: &str, args: &[Value]) -> Result<(), DbError> {
        let statement = answered(self.answer_timeout, self.prepared(sql));
        self.silent |= statement.is_err();
        let statement = statement??;
        self.ahead.push(Ahead {
            statement,
            args: args.to_vec(),
        });
        Ok(())
    }

    fn announce(&mut self, channel: &str, payload: &str) -> Result<(), DbError> {
        let said = (channel.to_owned(), payload.to_owned());
        if !self.announced.contains(&said) {
            self.announced.push(said);
        }
        Ok(())
    }

    fn insert_id(&mut self, sql: &str, args: &[Value]) -> Result<Option<i64>, DbError> {
        self.query_opt(&format!("{sql} RETURNING id"), args)?
            .map(|row| row.get(0))
            .transpose()
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Rec>, DbError> {
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|v| v as _).collect();
        let rows = answered(self.answer_timeout, async {
            let statement = self.prepared(sql).await?;
            let (begin, ahead) = self.unsent();
            let done = self.client.query(&statement, &params);
            in_one_round_trip(self.client, begin.as_deref(), &ahead, done).await
        });
        self.silent |= rows.is_err();
        let rows = rows??;
        rows.iter().map(rec).collect()
    }
}

/// The types a text value binds to and reads from.
fn is_text(ty: &Type) -> bool {
    [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty)
}

/// A row read back as the journal's values.
fn rec(row: &tokio_postgres::Row) -> Result<Rec, DbError> {
    let mut values = Vec::with_capacity(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        let value = if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(i)?.map(Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(i)?
                .map(|n| Value::Int(n.into()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(i)?
                .map(|n| Value::Int(n.into()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(i)?
                .map(|b| Value::Int(b.into()))
        } else if is_text(ty) {
            row.try_get::<_, Option<String>>(i)?.map(Value::Text)
        } else {
            return Err(DbError::Decode {
                column: i,
                problem: format!("unexpected column type {ty}"),
            });
        };
        values.push(value.unwrap_or(Value::Null));
    }
    Ok(Rec(values))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(n) if *ty == Type::INT8 => n.to_sql(ty, out),
            Value::Int(n) if *ty == Type::INT4 => i32::try_from(*n)?.to_sql(ty, out),
            Value::Int(n) if *ty == Type::INT2 => i16::try_from(*n)?.to_sql(ty, out),
            Value::Int(n) if *ty == Type::BOOL => (*n != 0).to_sql(ty, out),
            Value::Int(_) => Err(format!("an integer cannot be bound to a {ty} parameter").into()),
            Value::Text(s) if is_text(ty) => s.to_sql(ty, out),
            Value::Text(_) => Err(format!("text cannot be bound to a {ty} parameter").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A pool error as the journal reports it: the database is unavailable.
fn unavailable(e: deadpool_postgres::PoolError) -> DbError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => DbError::Postgres(e),
        deadpool_postgres::PoolError::Timeout(kind) => DbError::Unavailable(format!(
            "no database connection within the time allowed ({kind:?}); is PostgreSQL up?"
        )),
        other => DbError::Unavailable(other.to_string()),
    }
}

/// tokio-postgres's error with what the server said (severity, message,
/// SQLSTATE) or the chain of causes, which its `Display` leaves out.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}
