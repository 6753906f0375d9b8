//! Leases: the right to do one thing (run a stack's deploys, send the
//! report outbox) held by one process of the cluster at a time, until a
//! time the database's clock reads, so no replica's clock decides who holds
//! what. A holder renews its lease well before it runs out and stops what
//! the lease covers as soon as it cannot renew ([`crate::cluster`]); a
//! lease whose holder died runs out and another process takes it.

use std::time::Duration;

use super::{args, Backend, Claim, Commit, Journal, JournalError, RELEASED_CHANNEL};

/// The expression for "now" in milliseconds on the database's clock
/// (PostgreSQL's `clock_timestamp()`, not the transaction's start time;
/// SQLite's is this machine's).
pub(super) fn clock(backend: &Backend) -> &'static str {
    match backend {
        Backend::Sqlite(_) => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        Backend::Postgres(_) => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
    }
}

fn millis(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Journal {
    /// Takes lease `name` for `holder` until `ttl` from now, if it is free,
    /// has run out, or is already `holder`'s (then it is renewed). True if
    /// `holder` holds it now.
    pub fn take_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, JournalError> {
        let now = clock(&self.backend);
        let statement = format!(
            "INSERT INTO leases (name, holder, expires_at_ms) VALUES (?1, ?2, {now} + ?3)
             ON CONFLICT (name) DO UPDATE
                SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
              WHERE leases.expires_at_ms < {now} OR leases.holder = excluded.holder"
        );
        self.append("take a lease", |sql| {
            Ok(sql.execute(&statement, args![name, holder, millis(ttl)])? == 1)
        })
    }

    /// Extends `holder`'s lease `name` to `ttl` from now. False if `holder`
    /// no longer holds it (it ran out and another process took it).
    pub fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, JournalError> {
        let now = clock(&self.backend);
        let statement =
            format!("UPDATE leases SET expires_at_ms = {now} + ?3 WHERE name = ?1 AND holder = ?2");
        self.append("renew a lease", |sql| {
            Ok(sql.execute(&statement, args![name, holder, millis(ttl)])? == 1)
        })
    }

    /// Gives up `holder`'s lease `name` (nothing if it holds it no longer).
    /// Not waited for on disk: a release the database loses to a crash
    /// only keeps the lease held until it runs out.
    pub fn release_lease(&self, name: &str, holder: &str) -> Result<(), JournalError> {
        self.commit(Commit::Relaxed, "release a lease", |sql| {
            if sql.execute(
                "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
                args![name, holder],
            )? == 1
            {
                sql.announce(RELEASED_CHANNEL, name)?;
            }
            Ok(())
        })
    }

    /// For `holder` of lease `lease` about to send row `id` of outbox
    /// table `table` (`outbox`, `notifications`; a name of this crate's,
    /// never input): renews the lease to `ttl` from now on the database's
    /// clock and counts the attempt, in one transaction.
    /// [`Claim::LeaseLost`] when `holder` no longer holds the lease
    /// (nothing is written), [`Claim::Settled`] when the row needs no
    /// sending.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn claim_row(
        &self,
        op: &'static str,
        lease: &str,
        table: &'static str,
        id: i64,
        holder: &str,
        ttl: Duration,
        at_ms: i64,
    ) -> Result<Claim, JournalError> {
        let now = clock(&self.backend);
        let renew = format!(
            "UPDATE leases SET expires_at_ms = {now} + ?3
             WHERE name = ?1 AND holder = ?2 AND expires_at_ms >= {now}"
        );
        let count = format!(
            "UPDATE {table} SET attempts = attempts + 1, tried_at_ms = ?2
             WHERE id = ?1 AND outcome IS NULL"
        );
        self.append(op, |sql| {
            if sql.execute(&renew, args![lease, holder, millis(ttl)])? != 1 {
                return Ok(Claim::LeaseLost);
            }
            Ok(if sql.execute(&count, args![id, at_ms])? == 1 {
                Claim::Claimed
            } else {
                Claim::Settled
            })
        })
    }

    /// Who holds lease `name` now, if anyone (a lease that ran out is held
    /// by no one).
    pub fn lease_holder(&self, name: &str) -> Result<Option<String>, JournalError> {
        let now = clock(&self.backend);
        let query = format!("SELECT holder FROM leases WHERE name = ?1 AND expires_at_ms >= {now}");
        self.read("read a lease", |sql| {
            sql.query_opt(&query, args![name])?
                .map(|row| row.get(0))
                .transpose()
        })
    }
}
