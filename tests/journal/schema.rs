//! The schema on both backends: migrations applied once, under a lock, by
//! processes or replicas starting at once, and a journal a newer redeploy
//! wrote refused.

use std::sync::{Arc, Barrier};

use redeploy_host::journal::*;

use super::Store;

/// How many processes (or replicas) open a new journal at the same moment.
const OPENING_AT_ONCE: usize = 8;

fn replicas_opening_a_new_journal_at_once_migrate_it_once(store: &Store) {
    let store = Arc::new(store);
    let barrier = Arc::new(Barrier::new(OPENING_AT_ONCE));
    std::thread::scope(|scope| {
        for i in 0..OPENING_AT_ONCE {
            let barrier = barrier.clone();
            let store = store.clone();
            scope.spawn(move || {
                barrier.wait();
                let journal = store.open();
                journal
                    .ensure_hook_token(&format!("stack-{i}"), "t")
                    .unwrap();
            });
        }
    });
    let journal = store.open();
    for i in 0..OPENING_AT_ONCE {
        assert!(journal.hook_token(&format!("stack-{i}")).unwrap().is_some());
    }
    match *store {
        Store::Sqlite(_) => assert_eq!(store.query_i64("PRAGMA user_version"), SCHEMA_VERSION),
        Store::Postgres(_) => {
            let latest = schema::latest(schema::POSTGRES);
            assert_eq!(
                store.query_i64("SELECT COUNT(*) FROM schema_migrations"),
                latest
            );
            assert_eq!(
                store.query_i64("SELECT MAX(version) FROM schema_migrations"),
                latest
            );
        }
    }
}

fn a_journal_a_newer_redeploy_migrated_is_refused(store: &Store) {
    drop(store.open());
    let newer = match store {
        Store::Sqlite(_) => {
            store.execute(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1));
            SCHEMA_VERSION + 1
        }
        Store::Postgres(_) => {
            let newer = schema::latest(schema::POSTGRES) + 1;
            store.execute(&format!(
                "INSERT INTO schema_migrations VALUES ({newer}, '{newer:04}_future', 0)"
            ));
            newer
        }
    };
    let err = match store {
        Store::Sqlite(dir) => Journal::open(&Journal::path_in(&dir.0)).unwrap_err(),
        Store::Postgres(url) => Journal::open_postgres(&PostgresOptions::new(url)).unwrap_err(),
    };
    assert!(
        matches!(err, JournalError::TooNew { found, .. } if found == newer),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade redeploy"), "{err}");
}

/// `journal export` names each table's columns (`transfer::TABLES`): a
/// column a migration adds and the list leaves out would be lost moving a
/// journal.
fn an_export_holds_every_column_of_each_table_it_moves(store: &Store) {
    drop(store.open());
    for (table, columns) in transfer::TABLES {
        let count = match store {
            Store::Sqlite(_) => format!("SELECT COUNT(*) FROM pragma_table_info('{table}')"),
            Store::Postgres(_) => format!(
                "SELECT COUNT(*) FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = '{table}'"
            ),
        };
        assert_eq!(
            store.query_i64(&count),
            columns.len() as i64,
            "{table}: the export's columns {columns:?}"
        );
    }
}

/// A journal's foreign keys at least (SQLite has 8: `deploys.superseded_by`,
/// and the columns of the tables that hang off a deploy, a GitHub
/// deployment request or a notice; PostgreSQL has those and more).
const MIN_FOREIGN_KEYS: i64 = 8;

/// Every column that references a row (a foreign key) leads an index of
/// its table that can find it: a full one, or a partial one whose only
/// condition is that column `IS NOT NULL`. Deleting the row it references
/// (a prune deletes thousands) makes the database look for the rows that
/// name it, and without such an index each look is a scan of the whole
/// table, under the journal's write lock. (Every key is of one column, as
/// the check asks.)
fn every_foreign_key_leads_an_index(store: &Store) {
    drop(store.open());
    let [keys, wider, unindexed] = match store {
        Store::Sqlite(_) => [
            "SELECT COUNT(*) FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f
             WHERE m.type = 'table' AND f.seq = 0",
            "SELECT COUNT(*) FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f
             WHERE m.type = 'table' AND f.seq > 0",
            "SELECT COUNT(*) FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f
             WHERE m.type = 'table' AND f.seq = 0 AND NOT EXISTS (
                 SELECT 1 FROM pragma_index_list(m.name) il
                 JOIN pragma_index_info(il.name) ii
                 WHERE ii.seqno = 0 AND ii.name = f.\"from\"
                   AND (il.partial = 0
                        OR (SELECT s.sql FROM sqlite_master s WHERE s.name = il.name)
                           LIKE '%WHERE ' || f.\"from\" || ' IS NOT NULL'))",
        ],
        Store::Postgres(_) => [
            "SELECT COUNT(*) FROM pg_constraint c
             WHERE c.contype = 'f'
               AND c.connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())",
            "SELECT COUNT(*) FROM pg_constraint c
             WHERE c.contype = 'f'
               AND c.connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
               AND array_length(c.conkey, 1) > 1",
            "SELECT COUNT(*) FROM pg_constraint c
             WHERE c.contype = 'f'
               AND c.connamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
               AND NOT EXISTS (
                   SELECT 1 FROM pg_index i
                   WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1]
                     AND (i.indpred IS NULL
                          OR pg_get_expr(i.indpred, i.indrelid) = '(' || (
                              SELECT a.attname FROM pg_attribute a
                              WHERE a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                          ) || ' IS NOT NULL)'))",
        ],
    }
    .map(|sql| store.query_i64(sql));
    assert!(
        keys >= MIN_FOREIGN_KEYS,
        "the query found {keys} foreign keys"
    );
    assert_eq!(wider, 0, "{wider} foreign keys are of several columns");
    assert_eq!(
        unindexed, 0,
        "{unindexed} of the journal's {keys} foreign keys lead no index that finds them"
    );
}

super::on_both_backends!(
    every_foreign_key_leads_an_index,
    replicas_opening_a_new_journal_at_once_migrate_it_once,
    a_journal_a_newer_redeploy_migrated_is_refused,
    an_export_holds_every_column_of_each_table_it_moves,
);
