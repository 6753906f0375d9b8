//! The dashboard's sessions (schema: SQLite 10, PostgreSQL 6): who signed
//! in, by the SHA-256 of the session cookie's value, with what credential,
//! and until when. In the journal, not in one replica's memory, so a
//! session works on every replica behind a load balancer and ends on all of
//! them at sign-out. Export leaves them out: a moved journal signs
//! everybody out.

use super::sql::args;
use super::{Journal, JournalError};

impl Journal {
    /// Records a session of `user`, signed in with `credential` (a digest
    /// of what they signed in with), that ends at `expires_at_ms`, and drops
    /// every session that has ended by `now_ms`.
    pub fn create_ui_session(
        &self,
        id_hash: &str,
        user: &str,
        credential: &str,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), JournalError> {
        self.write("record a dashboard session", |sql| {
            sql.execute(
                "DELETE FROM ui_sessions WHERE expires_at_ms <= ?1",
                args![now_ms],
            )?;
            sql.execute(
                "INSERT INTO ui_sessions
                     (id_hash, user_name, credential, created_at_ms, expires_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                args![id_hash, user, credential, now_ms, expires_at_ms],
            )?;
            Ok(())
        })
    }

    /// The session `id_hash` names, unless there is none or it has ended
    /// by `now_ms`.
    pub fn ui_session_user(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> Result<Option<UiSession>, JournalError> {
        self.read("read a dashboard session", |sql| {
            sql.query_opt(
                "SELECT user_name, credential, created_at_ms FROM ui_sessions
                 WHERE id_hash = ?1 AND expires_at_ms > ?2",
                args![id_hash, now_ms],
            )?
            .map(|row| {
                Ok(UiSession {
                    user: row.get(0)?,
                    credential: row.get(1)?,
                    created_at_ms: row.get(2)?,
                })
            })
            .transpose()
        })
    }

    /// Ends every session whose user and credential `keep` does not accept
    /// (a user removed from the config, or whose password changed), so
    /// that a user put back later is not signed in again by an old cookie.
    /// How many ended.
    pub fn end_ui_sessions_unless(
        &self,
        keep: &(dyn Fn(&str, &str) -> bool + Sync),
    ) -> Result<usize, JournalError> {
        self.write("end dashboard sessions of removed users", |sql| {
            let rows = sql.query(
                "SELECT id_hash, user_name, credential FROM ui_sessions",
                &[],
            )?;
            let mut ended = 0;
            for row in rows {
                let (id_hash, user, credential): (String, String, String) =
                    (row.get(0)?, row.get(1)?, row.get(2)?);
                if !keep(&user, &credential) {
                    sql.execute("DELETE FROM ui_sessions WHERE id_hash = ?1", args![id_hash])?;
                    ended += 1;
                }
            }
            Ok(ended)
        })
    }

    /// Ends the session `id_hash` (sign-out); none is no error.
    pub fn end_ui_session(&self, id_hash: &str) -> Result<(), JournalError> {
        self.write("end a dashboard session", |sql| {
            sql.execute("DELETE FROM ui_sessions WHERE id_hash = ?1", args![id_hash])?;
            Ok(())
        })
    }
}

/// A dashboard session as the journal holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UiSession {
    /// The user signed in.
    pub user: String,
    /// A digest of the credential they signed in with.
    pub credential: String,
    /// When they signed in.
    pub created_at_ms: i64,
}
