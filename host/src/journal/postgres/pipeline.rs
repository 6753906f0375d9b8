//! Statements sent together: a transaction's `BEGIN`, the statements whose
//! answers nobody waits for ([`super::super::sql::Sql::execute_pipelined`])
//! and the statement (or the transaction's end) the caller waits for, all
//! in one round trip to the database.
//!
//! Under [`super::WRITE_LOCK`] a round trip is what every other writer of
//! every replica waits for: a deploy's admission, the claim that starts it
//! and its end were 7, up to 13 and 6 of them, one after the other
//! (BENCHMARKS.md, part 5, twentieth pass).
//!
//! tokio-postgres sends a request when its future is first polled, and
//! pipelines the requests of futures polled together; the database runs
//! them in the order they arrive. [`in_one_round_trip`] polls them first in
//! the order given, every time (`join_all` from `futures` promises no order
//! for a long list), so the database runs them in that order.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use super::super::sql::{DbError, Value};

/// A statement to send ahead of the next one, prepared, with its arguments.
pub(super) struct Ahead {
    pub statement: Statement,
    pub args: Vec<Value>,
}

/// An answer of a statement sent ahead: only whether it failed.
type Answer<'a> = Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + 'a>>;

/// Sends `begin` (a simple query, when given), each of `ahead`, then
/// `last`, in that order, in one round trip, and waits for every answer:
/// `last`'s, or the first error in that order. (After a statement fails,
/// the database refuses every later one of the transaction, and answers
/// its `COMMIT` with a rollback rather than an error: the first error is
/// the one that says what happened.)
///
/// A request that fails before it is sent (its arguments do not fit its
/// statement, or the connection is closed: tokio-postgres checks both
/// before it sends) sends nothing after it, `last` included: the database
/// would otherwise run, and maybe commit, the transaction without it.
pub(super) async fn in_one_round_trip<'a, T>(
    client: &'a Object,
    begin: Option<&'a str>,
    ahead: impl IntoIterator<Item = &'a Ahead>,
    last: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, DbError> {
    let ahead: Vec<&Ahead> = ahead.into_iter().collect();
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = ahead
        .iter()
        .map(|a| a.args.iter().map(|v| v as _).collect())
        .collect();
    let mut first: Vec<Answer<'_>> = Vec::with_capacity(ahead.len() + 1);
    if let Some(begin) = begin {
        first.push(Box::pin(client.batch_execute(begin)));
    }
    for (a, params) in ahead.into_iter().zip(&params) {
        first.push(Box::pin(async move {
            client.execute(&a.statement, params).await.map(drop)
        }));
    }
    let mut answers: Vec<Option<Result<(), tokio_postgres::Error>>> =
        first.iter().map(|_| None).collect();
    let mut last = std::pin::pin!(last);
    let mut answer = None;
    // How many of `first` were polled (and so sent, unless refused).
    let mut polled = 0;
    // One of them failed at its first poll: it was never sent.
    let mut refused = false;
    let answer = std::future::poll_fn(|cx| {
        for (i, (future, slot)) in first.iter_mut().zip(answers.iter_mut()).enumerate() {
            if refused && i >= polled {
                break;
            }
            if slot.is_none() {
                let fresh = i >= polled;
                polled = polled.max(i + 1);
                if let Poll::Ready(done) = future.as_mut().poll(cx) {
                    refused |= fresh && done.is_err();
                    *slot = Some(done);
                }
            }
        }
        if !refused && answer.is_none() {
            if let Poll::Ready(done) = last.as_mut().poll(cx) {
                answer = Some(done);
            }
        }
        let sent_answered = answers[..polled].iter().all(Option::is_some);
        match answer.take() {
            _ if refused && sent_answered => Poll::Ready(None),
            Some(done) if sent_answered && polled == answers.len() => Poll::Ready(Some(done)),
            kept => {
                answer = kept;
                Poll::Pending
            }
        }
    })
    .await;
    for earlier in answers.into_iter().flatten() {
        earlier?;
    }
    match answer {
        Some(answer) => Ok(answer?),
        // A refused request's error was returned above.
        None => Err(DbError::Unavailable(
            "a statement was not sent to the database".to_owned(),
        )),
    }
}
