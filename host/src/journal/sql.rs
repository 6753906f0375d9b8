//! The little SQL surface the journal's operations are written against, once,
//! for both backends: a statement with `?1`-style placeholders, parameters
//! and columns that are integers, text or null, run inside a transaction the
//! backend opened ([`super::sqlite`], [`super::postgres`]).
//!
//! Every journal column is an integer or text, so one value type carries
//! both ways; [`FromValue`] reads a column as the Rust type the caller
//! expects and says which column did not fit when it does not.

use std::fmt;

use super::DeployState;

/// One parameter or column value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// SQL `NULL`.
    Null,
    /// An integer (SQLite `INTEGER`, PostgreSQL `BIGINT`; PostgreSQL
    /// `boolean` reads as 0 or 1).
    Int(i64),
    /// Text.
    Text(String),
}

/// What a statement failed with.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// SQLite's error.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL's (or the connection's) error.
    #[error("{}", super::postgres::describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool in time, or the database
    /// could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// A column held something the journal never writes there.
    #[error("column {column}: {problem}")]
    Decode {
        /// The column's position in the select list.
        column: usize,
        /// What did not fit.
        problem: String,
    },
}

/// A row read back: its columns in select-list order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rec(pub Vec<Value>);

impl Rec {
    /// Column `i` as a `T`.
    pub fn get<T: FromValue>(&self, i: usize) -> Result<T, DbError> {
        let value = self.0.get(i).ok_or_else(|| DbError::Decode {
            column: i,
            problem: "no such column".to_owned(),
        })?;
        T::from_value(value).map_err(|problem| DbError::Decode { column: i, problem })
    }
}

/// A Rust type a column is read as.
pub trait FromValue: Sized {
    /// Converts, or says what did not fit.
    fn from_value(value: &Value) -> Result<Self, String>;
}

impl FromValue for i64 {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Int(i) => Ok(*i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}

impl FromValue for String {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Text(s) => Ok(s.clone()),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}

impl FromValue for bool {
    fn from_value(value: &Value) -> Result<Self, String> {
        i64::from_value(value).map(|i| i != 0)
    }
}

impl FromValue for u16 {
    fn from_value(value: &Value) -> Result<Self, String> {
        let i = i64::from_value(value)?;
        u16::try_from(i).map_err(|_| format!("{i} is not a 16-bit unsigned integer"))
    }
}

impl FromValue for DeployState {
    fn from_value(value: &Value) -> Result<Self, String> {
        String::from_value(value)?
            .parse()
            .map_err(|e| format!("{e}"))
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Result<Self, String> {
        match value {
            Value::Null => Ok(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A Rust value a parameter is given as.
pub trait ToValue {
    /// The value bound.
    fn to_value(&self) -> Value;
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}

impl ToValue for u32 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for u16 {
    fn to_value(&self) -> Value {
        Value::Int(i64::from(*self))
    }
}

impl ToValue for usize {
    /// Saturates at `i64::MAX` (a `LIMIT` of "everything").
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for u64 {
    /// Stored as its two's-complement `i64`, the way the journal has always
    /// kept GitHub's (63-bit in practice) deployment ids.
    fn to_value(&self) -> Value {
        Value::Int(*self as i64)
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for DeployState {
    fn to_value(&self) -> Value {
        Value::Text(self.as_str().to_owned())
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::Null,
        }
    }
}

/// The parameters of one statement: `args![a, b, c]` binds `?1`, `?2`, `?3`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        &[$($crate::journal::sql::ToValue::to_value(&$value)),*][..]
    };
}
pub(crate) use args;

/// How a write transaction commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Read-check-write: serialized against every other such transaction
    /// (any process, any replica), durable before the call returns.
    Exclusive,
    /// [`Commit::Exclusive`], and every statement sees the journal as it was
    /// when the transaction began, appends by others included (an export).
    Snapshot,
    /// Only adds rows nothing checks before writing: no exclusion needed,
    /// durable before the call returns.
    Append,
    /// Like [`Commit::Append`], without waiting for the disk: it may be lost,
    /// with the few before it, to a power loss (SQLite
    /// `synchronous=NORMAL`) or to a crash of the database server
    /// (PostgreSQL `synchronous_commit = off`), never to a crash of this
    /// process; a later commit that waits makes it durable too (a log is
    /// written in order). For writes whose loss neither loses a deploy nor
    /// runs one twice: a delivery's record, a lease's release.
    Relaxed,
    /// [`Commit::Exclusive`] without waiting for the disk, with
    /// [`Commit::Relaxed`]'s loss window: for read-check-writes whose loss
    /// only undoes bookkeeping that is then done again the same way, and
    /// that every write depending on them (a durable one) makes durable
    /// too: fanning notices out into notifications.
    ExclusiveRelaxed,
}

impl Commit {
    /// Whether the write is on the disk before its call returns.
    pub fn waits_for_disk(self) -> bool {
        !matches!(self, Commit::Relaxed | Commit::ExclusiveRelaxed)
    }
}

/// A transaction (or a single-statement read) on either backend. SQL is
/// written once, for both: `?N` placeholders, `ON CONFLICT`, and nothing
/// else that SQLite and PostgreSQL spell differently; a new row's id is
/// had through [`Sql::insert_id`].
pub trait Sql {
    /// Runs a statement; returns how many rows it changed.
    fn execute(&mut self, sql: &str, args: &[Value]) -> Result<u64, DbError>;

    /// Runs a statement whose answer the caller does not need, not even
    /// how many rows it changed. On PostgreSQL it is sent with the
    /// transaction's next statement, or its end, in the same round trip,
    /// and its error is that statement's (the transaction then fails); the
    /// next statement sees what it wrote. On SQLite it runs now
    /// ([`Sql::execute`]). For a write whose failure only ever fails the
    /// whole transaction, never one a caller inspects and goes on from.
    fn execute_pipelined(&mut self, sql: &str, args: &[Value]) -> Result<(), DbError> {
        self.execute(sql, args).map(drop)
    }

    /// Runs a query; returns every row.
    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Rec>, DbError>;

    /// Runs an `INSERT` of at most one row into a table keyed by its `id`
    /// column (SQLite's `INTEGER PRIMARY KEY`, PostgreSQL's `BIGSERIAL`),
    /// written without a `RETURNING` clause; returns the new row's id, or
    /// `None` when it inserted none (`ON CONFLICT ... DO NOTHING`). Not for
    /// `ON CONFLICT ... DO UPDATE`: SQLite would count the update as a
    /// change but leave the last inserted row id as it was.
    ///
    /// SQLite runs an `INSERT ... RETURNING` through a temporary table of
    /// its own, opened and closed on every run of the statement (a B-tree,
    /// its pager and its page cache): asked for the connection's last
    /// inserted row id instead, it opens none.
    fn insert_id(&mut self, sql: &str, args: &[Value]) -> Result<Option<i64>, DbError>;

    /// [`Sql::insert_id`] of an `INSERT` that always adds its row.
    fn insert_one_id(&mut self, sql: &str, args: &[Value]) -> Result<i64, DbError> {
        self.insert_id(sql, args)?.ok_or_else(|| DbError::Decode {
            column: 0,
            problem: "the insert added no row".to_owned(),
        })
    }

    /// Runs a query that returns at most one row.
    fn query_opt(&mut self, sql: &str, args: &[Value]) -> Result<Option<Rec>, DbError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Tells every process listening on `channel` (other replicas)
    /// `payload` once the transaction commits, and never if it rolls back
    /// (PostgreSQL's `pg_notify`). SQLite has no listeners: nothing.
    fn announce(&mut self, _channel: &str, _payload: &str) -> Result<(), DbError> {
        Ok(())
    }

    /// Runs a query that returns exactly one row.
    fn query_one(&mut self, sql: &str, args: &[Value]) -> Result<Rec, DbError> {
        self.query_opt(sql, args)?.ok_or_else(|| DbError::Decode {
            column: 0,
            problem: "the query returned no row".to_owned(),
        })
    }
}

/// `count` placeholders numbered from `?from` on, comma-separated
/// (`?3, ?4, ?5`): a list of values to bind in a statement.
pub fn placeholders(from: usize, count: usize) -> String {
    let marks: Vec<String> = (from..from + count).map(|n| format!("?{n}")).collect();
    marks.join(", ")
}

/// `sql` with each `?N` placeholder written `$N`, as PostgreSQL spells it.
/// The journal's statements hold no `?` anywhere else.
pub fn dollar_placeholders(sql: &str) -> String {
    sql.replace('?', "$")
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Text(s) => write!(f, "{s:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars_and_columns_decode_or_say_which() {
        assert_eq!(
            dollar_placeholders("SELECT a FROM t WHERE ?1 IS NULL OR b = ?1 LIMIT ?2"),
            "SELECT a FROM t WHERE $1 IS NULL OR b = $1 LIMIT $2"
        );
        assert_eq!(placeholders(3, 3), "?3, ?4, ?5");
        assert_eq!(placeholders(1, 0), "");
        let rec = Rec(vec![
            Value::Int(7),
            Value::Null,
            Value::Text("started".into()),
        ]);
        assert_eq!(rec.get::<i64>(0).unwrap(), 7);
        assert_eq!(rec.get::<Option<String>>(1).unwrap(), None);
        assert_eq!(rec.get::<DeployState>(2).unwrap(), DeployState::Started);
        let err = rec.get::<String>(0).unwrap_err().to_string();
        assert_eq!(err, "column 0: expected text, found Int(7)");
        assert!(rec.get::<i64>(3).is_err());
        assert_eq!(
            args![1i64, "x", None::<String>, Some(3u16)],
            &[
                Value::Int(1),
                Value::Text("x".into()),
                Value::Null,
                Value::Int(3)
            ]
        );
    }
}
