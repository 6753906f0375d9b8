//! Delivery rows: every delivery recorded, whatever its outcome, with what
//! its request looked like ([`crate::received`]) where it was one.

use super::sql::{args, Commit, DbError, Rec, Sql};
use super::{DeliveryRecord, Journal, JournalError, NewDelivery, StoredDelivery};
use crate::received::{KeptRequest, Received};

impl Journal {
    /// Records a delivery; returns its id.
    pub fn record_delivery(&self, d: &NewDelivery) -> Result<i64, JournalError> {
        self.record_received(d, None, true)
    }

    /// Records a delivery with what its request looked like (redacted, and
    /// the request itself where it is kept): durably, or as
    /// [`Journal::record_delivery_relaxed`] does. Returns its id.
    pub fn record_received(
        &self,
        d: &NewDelivery,
        request: Option<&(Received, Option<KeptRequest>)>,
        durable: bool,
    ) -> Result<i64, JournalError> {
        let json = || request_columns(request);
        // PostgreSQL writes each row in a transaction of its own, on the
        // pool's connections side by side: a batch there would hold one
        // connection for every row's insert, each answering with its id
        // (one round trip after another), and `write_rows` would blame a
        // failure of a write sent ahead on the row after it.
        if durable || matches!(self.backend, super::Backend::Postgres(_)) {
            let commit = if durable {
                Commit::Append
            } else {
                Commit::Relaxed
            };
            return self.commit(commit, "record delivery", |sql| {
                let (request_json, kept_json) = json()?;
                insert_delivery(sql, d, request_json.as_deref(), kept_json.as_deref())
            });
        }
        let (request_json, kept_json) = json()
            .map_err(|source| JournalError::database(&self.location, "record delivery", source))?;
        let row = DeliveryRow {
            delivery: d.clone(),
            request_json,
            kept_json,
        };
        self.relaxed_deliveries.write(
            row,
            |rows| self.record_relaxed_rows(rows),
            || {
                Err(JournalError::database(
                    &self.location,
                    "record delivery",
                    DbError::Unavailable("recording a batch of deliveries failed".to_owned()),
                ))
            },
        )
    }

    /// Records a delivery that started no deploy, as
    /// [`Journal::record_received`] does without waiting for the disk, for
    /// a caller that needs no id (a webhook's own row). On PostgreSQL the
    /// row's transaction is then one round trip: its `INSERT` is sent with
    /// its `COMMIT` ([`Sql::execute_pipelined`]), where an `INSERT` that
    /// answers with the new id needs a round trip of its own before it.
    pub fn record_received_relaxed(
        &self,
        d: &NewDelivery,
        request: Option<&(Received, Option<KeptRequest>)>,
    ) -> Result<(), JournalError> {
        if !matches!(self.backend, super::Backend::Postgres(_)) {
            return self.record_received(d, request, false).map(drop);
        }
        self.commit(Commit::Relaxed, "record delivery", |sql| {
            let (request_json, kept_json) = request_columns(request)?;
            let args = delivery_args(d, request_json.as_deref(), kept_json.as_deref());
            sql.execute_pipelined(INSERT_DELIVERY, &args)
        })
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
    pub fn record_delivery_relaxed(&self, d: &NewDelivery) -> Result<i64, JournalError> {
        self.record_received(d, None, false)
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
/// ([`super::batch`]): the delivery and its request's JSON columns.
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
