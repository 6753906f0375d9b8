//! Delivery rows: every delivery recorded, whatever its outcome, with what
//! its request looked like ([`crate::received`]) where it was one.

use std::sync::Arc;

use super::row_queue::{self, Pending, RowQueue, Rows};
use super::sql::{args, Commit, DbError, Rec, Sql};
use super::{DeliveryRecord, Journal, JournalError, NewDelivery, StoredDelivery};
use crate::received::{KeptRequest, Received};

/// A delivery's row being written ([`Journal::record_received_relaxed`]):
/// its outcome, known at once or once its batch is written.
#[must_use = "a delivery is answered only once its row is written"]
pub struct Recording(Written);

enum Written {
    /// Written, with its id where one is known (SQLite's), or refused.
    Now(Result<Option<i64>, JournalError>),
    /// Waiting for its batch on SQLite.
    Queued(Pending<Result<i64, JournalError>>),
}

impl Recording {
    /// A recording with nothing to write: no row was asked for (a refused
    /// delivery over its stack's rate, summed up instead).
    pub fn nothing() -> Recording {
        Recording(Written::Now(Ok(None)))
    }

    /// Waits, without holding a thread, until the row is written; its id
    /// where one is known (SQLite's), or why it was not written.
    pub async fn written(self) -> Result<Option<i64>, JournalError> {
        match self.0 {
            Written::Now(out) => out,
            Written::Queued(pending) => pending.outcome(gone).await.map(Some),
        }
    }

    /// [`Recording::written`], waited for on this thread. Blocking: call it
    /// off the runtime's workers ([`Pending::wait`]).
    pub fn wait(self) -> Result<Option<i64>, JournalError> {
        match self.0 {
            Written::Now(out) => out,
            Written::Queued(pending) => pending.wait(gone).map(Some),
        }
    }
}

/// The outcome of a row whose writer went away without one (it should
/// not: a writing that ends unfinished fails every row waiting).
fn gone<T>() -> Result<T, JournalError> {
    Err(JournalError::database(
        "journal",
        "record delivery",
        DbError::Unavailable("the delivery's row was never written".to_owned()),
    ))
}

/// The journal's relaxed delivery rows on SQLite, as [`row_queue`] writes
/// them.
struct DeliveryRows(Arc<Journal>);

impl Rows for DeliveryRows {
    type Row = DeliveryRow;
    type Out = Result<i64, JournalError>;

    fn queue(&self) -> &RowQueue<DeliveryRow, Result<i64, JournalError>> {
        &self.0.relaxed_deliveries
    }

    fn write(&self, rows: Vec<DeliveryRow>) -> Vec<Result<i64, JournalError>> {
        self.0.record_relaxed_rows(rows)
    }

    fn failed(&self) -> Result<i64, JournalError> {
        Err(self.0.unrecorded())
    }
}

impl Journal {
    /// Records a delivery; returns its id.
    pub fn record_delivery(&self, d: &NewDelivery) -> Result<i64, JournalError> {
        self.commit(Commit::Append, "record delivery", |sql| {
            insert_delivery(sql, d, None, None)
        })
    }

    /// Records a delivery that started no deploy, as
    /// [`Journal::record_delivery_relaxed`] does, with what its request
    /// looked like (redacted, and the request itself where it is kept),
    /// for a caller that needs no id (a webhook's own row).
    ///
    /// On SQLite the row is written with the rows of other deliveries
    /// ([`row_queue`](super::row_queue)): at once on this thread when no
    /// batch is being written, else with the next batch, and the
    /// [`Recording`] is awaited without a thread. On PostgreSQL it is written
    /// here, in a transaction of its own that is one round trip: its
    /// `INSERT` is sent with its `COMMIT` ([`Sql::execute_pipelined`]).
    /// PostgreSQL writes each row on the pool's connections side by side: a
    /// batch there would hold one connection for every row, and
    /// [`Journal::write_rows`] would blame a failure of a write sent ahead on
    /// the row after it.
    pub fn record_received_relaxed(
        self: &Arc<Self>,
        d: &NewDelivery,
        request: Option<&(Received, Option<KeptRequest>)>,
    ) -> Recording {
        if matches!(self.backend, super::Backend::Postgres(_)) {
            return Recording(Written::Now(
                self.commit(Commit::Relaxed, "record delivery", |sql| {
                    let (request_json, kept_json) = request_columns(request)?;
                    let args = delivery_args(d, request_json.as_deref(), kept_json.as_deref());
                    sql.execute_pipelined(INSERT_DELIVERY, &args)
                })
                .map(|()| None),
            ));
        }
        Recording(Written::Queued(self.queue_relaxed(d, request)))
    }

    /// Queues a relaxed delivery row on SQLite ([`row_queue`](super::row_queue)).
    fn queue_relaxed(
        self: &Arc<Self>,
        d: &NewDelivery,
        request: Option<&(Received, Option<KeptRequest>)>,
    ) -> Pending<Result<i64, JournalError>> {
        let row = request_columns(request).map(|(request_json, kept_json)| DeliveryRow {
            delivery: d.clone(),
            request_json,
            kept_json,
        });
        match row {
            Ok(row) => row_queue::submit(DeliveryRows(Arc::clone(self)), row),
            Err(source) => Pending::Now(Err(JournalError::database(
                &self.location,
                "record delivery",
                source,
            ))),
        }
    }

    /// Records relaxed delivery rows in one transaction, in order; a row
    /// the database refuses is refused alone ([`Journal::write_rows`]).
    /// One outcome per row, in order.
    pub(super) fn record_relaxed_rows(
        &self,
        rows: Vec<DeliveryRow>,
    ) -> Vec<Result<i64, JournalError>> {
        self.write_rows("record delivery", &rows, &|rows| {
            self.commit(Commit::Relaxed, "record delivery", |sql| {
                rows.each(|row| {
                    insert_delivery(
                        sql,
                        &row.delivery,
                        row.request_json.as_deref(),
                        row.kept_json.as_deref(),
                    )
                })
            })
        })
    }

    /// The count of relaxed delivery rows on their way, for whoever makes
    /// them to keep (the server counts each webhook's delivery while it is
    /// dispatched, [`crate::server::AppState::dispatching`]): with enough
    /// coming, the rows waiting on SQLite are written a moment later, in
    /// one transaction with those ([`row_queue`](super::row_queue)'s
    /// commit delay). A count nobody keeps stays at zero, and rows are
    /// written as soon as they can be.
    pub fn deliveries_coming(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.relaxed_deliveries.coming().clone()
    }

    /// The failure of a relaxed row whose batch was not written.
    fn unrecorded(&self) -> JournalError {
        JournalError::database(
            &self.location,
            "record delivery",
            DbError::Unavailable("recording a batch of deliveries failed".to_owned()),
        )
    }

    /// Delivery `id` with what its request looked like (when it was a
    /// request and recorded so), or `None` when there is no such row.
    pub fn delivery(&self, id: i64) -> Result<Option<StoredDelivery>, JournalError> {
        let stored = self.read("read a delivery", |sql| {
            sql.query_opt(
                "SELECT id, received_at_ms, stack, provider, event, delivery_id, status, summary,
                        request_json, kept_json
                 FROM deliveries WHERE id = ?1",
                args![id],
            )?
            .map(|row| {
                Ok(StoredDelivery {
                    record: delivery_row(&row)?,
                    request: from_json(8, row.get(8)?)?,
                    kept: from_json(9, row.get(9)?)?,
                })
            })
            .transpose()
        })?;
        Ok(stored)
    }

    /// Records a delivery that started no deploy, without waiting for the
    /// disk: it survives a crash of this process but a power loss may drop
    /// it (and the few before it). With SQLite in WAL mode the next
    /// durable commit (every deploy and every transition) syncs the whole
    /// log, these rows included; PostgreSQL's
    /// `synchronous_commit = off` likewise never lets a later synchronous
    /// commit become durable before an earlier asynchronous one. So a durable
    /// deploy never depends on a relaxed row, and this keeps a disk flush
    /// off the path of every delivery (a 202's deploy row is written
    /// durably before its delivery row).
    ///
    /// Blocking: call it off the runtime's workers (on SQLite it may wait
    /// for the batch its row is written with, [`Pending::wait`]).
    pub fn record_delivery_relaxed(self: &Arc<Self>, d: &NewDelivery) -> Result<i64, JournalError> {
        if matches!(self.backend, super::Backend::Postgres(_)) {
            return self.commit(Commit::Relaxed, "record delivery", |sql| {
                insert_delivery(sql, d, None, None)
            });
        }
        self.queue_relaxed(d, None).wait(|| Err(self.unrecorded()))
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
        self.read("read deliveries", |sql| {
            sql.query(
                "SELECT id, received_at_ms, stack, provider, event, delivery_id, status, summary
                 FROM deliveries WHERE CAST(?1 AS TEXT) IS NULL OR stack = ?1
                 ORDER BY id DESC LIMIT ?2",
                args![stack, limit],
            )?
            .iter()
            .map(delivery_row)
            .collect()
        })
    }
}

/// The statement that records a delivery, its arguments [`delivery_args`].
const INSERT_DELIVERY: &str = "INSERT INTO deliveries
     (received_at_ms, stack, provider, event, delivery_id, status, summary,
      request_json, kept_json)
 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// [`INSERT_DELIVERY`]'s arguments.
fn delivery_args(
    d: &NewDelivery,
    request_json: Option<&str>,
    kept_json: Option<&str>,
) -> Vec<super::sql::Value> {
    args![
        d.received_at_ms,
        d.stack,
        d.provider,
        d.event,
        d.delivery_id,
        d.status,
        d.summary,
        request_json,
        kept_json
    ]
    .to_vec()
}

/// Inserts one delivery row, with its request's JSON columns; returns its
/// id.
fn insert_delivery(
    sql: &mut dyn Sql,
    d: &NewDelivery,
    request_json: Option<&str>,
    kept_json: Option<&str>,
) -> Result<i64, DbError> {
    sql.insert_one_id(INSERT_DELIVERY, &delivery_args(d, request_json, kept_json))
}

/// The JSON columns of what a delivery's request looked like: the redacted
/// view, and the request itself where it is kept.
fn request_columns(
    request: Option<&(Received, Option<KeptRequest>)>,
) -> Result<(Option<String>, Option<String>), DbError> {
    let request_json = request.map(|(view, _)| to_json(8, view)).transpose()?;
    let kept_json = request
        .and_then(|(_, kept)| kept.as_ref())
        .map(|kept| to_json(9, kept))
        .transpose()?;
    Ok((request_json, kept_json))
}

/// A relaxed delivery row waiting to be written with others
/// ([`super::row_queue`]): the delivery and its request's JSON columns.
pub(super) struct DeliveryRow {
    pub(super) delivery: NewDelivery,
    pub(super) request_json: Option<String>,
    pub(super) kept_json: Option<String>,
}

/// `value` as the JSON text column `column` stores.
fn to_json(column: usize, value: &impl serde::Serialize) -> Result<String, DbError> {
    serde_json::to_string(value).map_err(|e| DbError::Decode {
        column,
        problem: e.to_string(),
    })
}

/// The JSON text column `column` read back, if not `NULL`.
fn from_json<T: serde::de::DeserializeOwned>(
    column: usize,
    text: Option<String>,
) -> Result<Option<T>, DbError> {
    text.map(|text| {
        serde_json::from_str(&text).map_err(|e| DbError::Decode {
            column,
            problem: e.to_string(),
        })
    })
    .transpose()
}

/// A delivery row's first eight columns (`id` to `summary`).
fn delivery_row(row: &Rec) -> Result<DeliveryRecord, DbError> {
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
}
