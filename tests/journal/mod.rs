//! The journal's test suite, run against both backends: every case is one
//! function taking a [`Store`], and [`on_both_backends!`] makes two named
//! tests of it, `<case>::sqlite` (a journal file in a temporary directory)
//! and `<case>::postgres` (a fresh database in this test process's
//! throwaway PostgreSQL cluster).

use redeploy_host::journal::{Journal, PostgresOptions};

use crate::support::{postgres, TempDir};

mod admission;
mod catch_up;
mod deploys;
mod github;
mod leases;
mod logs;
mod notices;
mod outbox;
mod placement;
mod request_fallback;
mod retention;
mod schema;
mod sqlite;
mod ui_sessions;

/// Where a case's journal lives.
pub enum Store {
    /// A SQLite journal file in its own directory.
    Sqlite(TempDir),
    /// A database of its own in the shared cluster (its URL).
    Postgres(String),
}

impl Store {
    /// An empty SQLite store.
    pub fn sqlite(tag: &str) -> Store {
        Store::Sqlite(TempDir::new(&format!("journal-{tag}")))
    }

    /// An empty PostgreSQL store.
    pub fn postgres(tag: &str) -> Store {
        Store::Postgres(postgres::shared().database(tag))
    }

    /// Opens the journal for writing (a second call is a second process or
    /// replica on the same journal).
    pub fn open(&self) -> Journal {
        match self {
            Store::Sqlite(dir) => Journal::open(&Journal::path_in(&dir.0)).unwrap(),
            Store::Postgres(url) => Journal::open_postgres(&PostgresOptions::new(url)).unwrap(),
        }
    }

    /// Opens the journal the way `redeploy history` does: SQLite read-only,
    /// PostgreSQL as any client.
    pub fn reader(&self) -> Journal {
        match self {
            Store::Sqlite(dir) => Journal::open_read_only(&Journal::path_in(&dir.0)).unwrap(),
            Store::Postgres(_) => self.open(),
        }
    }

    /// The single integer `sql` selects, read behind the journal's back.
    pub fn query_i64(&self, sql: &str) -> i64 {
        match self {
            Store::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(Journal::path_in(&dir.0)).unwrap();
                conn.query_row(sql, [], |row| row.get(0)).unwrap()
            }
            Store::Postgres(url) => {
                let name = url.rsplit('/').next().unwrap();
                postgres::shared().psql(name, sql).parse().unwrap()
            }
        }
    }

    /// Runs `sql` behind the journal's back.
    pub fn execute(&self, sql: &str) {
        match self {
            Store::Sqlite(dir) => {
                let conn = rusqlite::Connection::open(Journal::path_in(&dir.0)).unwrap();
                conn.execute_batch(sql).unwrap();
            }
            Store::Postgres(url) => {
                let name = url.rsplit('/').next().unwrap();
                postgres::shared().psql(name, sql);
            }
        }
    }
}

/// For each case `f(store: &Store)`, a module `f` with the tests `sqlite`
/// and `postgres`.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[test]
                fn sqlite() {
                    super::$case(&crate::journal::Store::sqlite(stringify!($case)));
                }

                #[test]
                fn postgres() {
                    super::$case(&crate::journal::Store::postgres(stringify!($case)));
                }
            }
        )*
    };
}
use on_both_backends;
