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

/// An export written before the commit order was per scope (its
/// `stack_commits` rows have no `scope`) imports each commit as the whole
/// stack's, as the migration made them; one of this build keeps its scope.
fn an_older_exports_commits_import_as_the_whole_stacks(store: &Store) {
    let j = store.open();
    let sha = "a".repeat(40);
    let lines = [
        r#"{"format":"redeploy-journal-export","version":1}"#.to_owned(),
        format!(
            r#"{{"table":"stack_commits","row":{{"stack":"web","sha":"{sha}","before_sha":null,"deploy_id":7,"seen_at_ms":1}}}}"#
        ),
        format!(
            r#"{{"table":"stack_commits","row":{{"stack":"web","sha":"{sha}","before_sha":null,"deploy_id":7,"seen_at_ms":1,"scope":"service web"}}}}"#
        ),
    ];
    assert_eq!(j.import(lines.into_iter().map(Ok)).unwrap(), 2);
    assert_eq!(
        store.query_i64("SELECT COUNT(*) FROM stack_commits WHERE scope = ''"),
        1
    );
    assert_eq!(
        store.query_i64("SELECT COUNT(*) FROM stack_commits WHERE scope = 'service web'"),
        1
    );
}

/// An export written before lanes (no `repository`) imports each deploy's
/// repository from the event it journaled, and a GitHub deployment
/// request's from its deploy, else from the push it kept, as the upgrade
/// of a journal does: an imported queued deploy is in its repository's
/// lane, not one of its own.
fn an_older_exports_deploys_and_requests_learn_their_repository(store: &Store) {
    let j = store.open();
    let event = |repository: &str| {
        serde_json::json!(serde_json::json!({"repository": repository}).to_string())
    };
    let deploy = |id: i64, event_json: serde_json::Value| {
        serde_json::json!({"table": "deploys", "row": {
            "id": id, "stack": "web", "delivery_id": format!("d{id}"), "provider": "github",
            "git_ref": "refs/heads/main", "sha": "a".repeat(40), "services": "[\"web\"]",
            "profile": null, "reason": "push", "event_json": event_json, "state": "queued",
            "created_at_ms": id}})
    };
    let request = |id: i64, deploy_id: Option<i64>, kept: &str| {
        let kept = serde_json::json!({"deploy": {"event_json": event(kept)}}).to_string();
        serde_json::json!({"table": "github_deployment_requests", "row": {
            "id": id, "stack": "web", "delivery_id": format!("r{id}"), "deploy_id": deploy_id,
            "git_ref": "refs/heads/main", "sha": "a".repeat(40), "request_json": "{}",
            "state": "pending", "created_at_ms": 1, "updated_at_ms": 1, "deploy_json": kept}})
    };
    let lines = [
        serde_json::json!({"format": "redeploy-journal-export", "version": 1}),
        deploy(1, event("acme/web")),
        deploy(2, serde_json::json!("not JSON")),
        request(1, Some(1), "acme/kept"),
        request(2, None, "acme/kept"),
        request(3, Some(2), "acme/kept"),
    ];
    let count = lines.len() - 1;
    let imported = j.import(lines.into_iter().map(|line| Ok(line.to_string())));
    assert_eq!(imported.unwrap(), count);
    let repository = |table: &str, id: i64| {
        let is = |condition: &str| {
            store.query_i64(&format!(
                "SELECT COUNT(*) FROM {table} WHERE id = {id} AND repository {condition}"
            )) == 1
        };
        ["acme/web", "acme/kept"]
            .into_iter()
            .find(|r| is(&format!("= '{r}'")))
            .or(is("IS NULL").then_some("NULL"))
            .unwrap_or("something else")
    };
    assert_eq!(repository("deploys", 1), "acme/web");
    assert_eq!(repository("deploys", 2), "NULL", "nothing to learn it from");
    assert_eq!(
        repository("github_deployment_requests", 1),
        "acme/web",
        "its deploy's"
    );
    assert_eq!(
        repository("github_deployment_requests", 2),
        "acme/kept",
        "its push's"
    );
    assert_eq!(repository("github_deployment_requests", 3), "acme/kept");
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

/// A journal from before lanes (SQLite schema 20, PostgreSQL 14),
/// upgraded: each deploy learns the repository of its ref from the event it
/// journaled, each deployment request from its deploy or the push it
/// keeps, and the commits it knows become the whole stack's, so that a deploy queued before the upgrade gives way only to its
/// own lane's after it. A row whose event is not JSON (no writer of
/// redeploy's makes one) is left without, and does not stop the upgrade.
/// Before the upgrade, a read-only reader (SQLite) reads the rows without
/// a repository.
fn a_journal_from_before_lanes_learns_each_deploys_repository(store: &Store) {
    /// The schemas before lanes and the commit order per service (and the
    /// refs a poll keeps).
    const LANES_SQLITE: i64 = 20;
    const LANES_POSTGRES: i64 = 14;
    let event = r#"{"repository":"acme/shop-worker","ref":"refs/heads/main"}"#;
    let pushed = NewDeploy {
        stack: "shop".into(),
        delivery_id: Some("p1".into()),
        provider: "github".into(),
        git_ref: Some("refs/heads/main".into()),
        sha: Some("a".repeat(40)),
        services: vec!["worker".into()],
        profile: None,
        reason: "push".into(),
        event_json: event.into(),
        created_at_ms: 1,
        pusher: None,
        repository: Some("acme/shop-worker".into()),
    };
    let (queued, broken, request) = {
        let j = store.open();
        let id = |inserted| match inserted {
            Inserted::New(id) => id,
            Inserted::Duplicate(id) => panic!("#{id} was new"),
        };
        let admission = Admission {
            commit: Some(CommitClaim {
                sha: "a".repeat(40),
                before: None,
                forced: false,
                sender_reports_forced: true,
                requested: false,
                once: false,
            }),
            ..Admission::default()
        };
        let queued = match j.admit_deploy(&pushed, &admission).unwrap() {
            Admitted::Inserted(inserted) => id(inserted),
            other => panic!("{other:?}"),
        };
        let broken = id(j
            .insert_deploy(&NewDeploy {
                delivery_id: Some("p2".into()),
                ..pushed.clone()
            })
            .unwrap());
        let asked = NewDeploymentRequest {
            stack: "shop".into(),
            delivery_id: Some("p3".into()),
            deploy_id: None,
            git_ref: pushed.git_ref.clone(),
            repository: pushed.repository.clone(),
            sha: pushed.sha.clone(),
            request_json: "{}".into(),
            created_at_ms: 2,
        };
        let kept = RequestedDeploy {
            deploy: pushed.clone(),
            before: None,
            forced: false,
            sender_reports_forced: true,
        };
        let request = id(j
            .insert_deployment_request_keeping(&asked, false, Some(&kept))
            .unwrap());
        j.record_poll_success(
            "shop",
            "file:///srv/shop.git",
            Some((r#"{"refs/heads/main":"a"}"#, Some(r#"["refs/heads/main"]"#))),
            3,
        )
        .unwrap();
        (queued, broken, request)
    };
    // Back to the schema before: no repository columns, an event that is
    // not JSON, the commits of the whole stack (one row per commit).
    let back = format!(
        "ALTER TABLE deploys DROP COLUMN repository;
         ALTER TABLE github_deployment_requests DROP COLUMN repository;
         ALTER TABLE poll_sources DROP COLUMN ref_filter;
         UPDATE deploys SET event_json = 'not json' WHERE id = {broken};"
    );
    match store {
        Store::Sqlite(_) => store.execute(&format!(
            "{back}
             CREATE TABLE commits_before (stack TEXT NOT NULL, sha TEXT NOT NULL,
                 before_sha TEXT, deploy_id INTEGER NOT NULL, seen_at_ms INTEGER NOT NULL,
                 PRIMARY KEY (stack, sha));
             INSERT INTO commits_before
                 SELECT stack, sha, MIN(before_sha), MAX(deploy_id), MIN(seen_at_ms)
                 FROM stack_commits GROUP BY stack, sha;
             DROP TABLE stack_commits;
             ALTER TABLE commits_before RENAME TO stack_commits;
             CREATE INDEX stack_commits_head ON stack_commits (stack, deploy_id);
             CREATE INDEX stack_commits_before_newest
                 ON stack_commits (stack, before_sha, deploy_id);
             PRAGMA user_version = {LANES_SQLITE};"
        )),
        Store::Postgres(_) => store.execute(&format!(
            "{back}
             ALTER TABLE stack_commits DROP CONSTRAINT stack_commits_pkey;
             DROP INDEX stack_commits_scope_head;
             DELETE FROM stack_commits a USING stack_commits b
                 WHERE a.stack = b.stack AND a.sha = b.sha AND a.ctid < b.ctid;
             ALTER TABLE stack_commits DROP COLUMN scope;
             ALTER TABLE stack_commits ADD PRIMARY KEY (stack, sha);
             DELETE FROM schema_migrations WHERE version > {LANES_POSTGRES};"
        )),
    }
    assert_eq!(store.query_i64("SELECT COUNT(*) FROM stack_commits"), 1);
    // A newer redeploy's reader (`history`) reads it before the server's
    // restart migrates it, each repository unknown.
    if let Store::Sqlite(dir) = store {
        let old = Journal::open_read_only(&Journal::path_in(&dir.0)).unwrap();
        assert_eq!(old.deploy(queued).unwrap().unwrap().queued.repository, None);
        let asked = old.deployment_request(request).unwrap().unwrap().asked;
        assert_eq!(asked.repository, None);
        // Nor the refs a poll kept (schema 23): every ref, as then.
        let polled = old.poll_sources(None).unwrap();
        assert_eq!(polled.len(), 1);
        assert_eq!(polled[0].ref_filter, None);
    }
    let j = store.open();
    let repository_of = |id| j.deploy(id).unwrap().unwrap().queued.repository;
    assert_eq!(repository_of(queued).as_deref(), Some("acme/shop-worker"));
    assert_eq!(repository_of(broken), None);
    let asked = j.deployment_request(request).unwrap().unwrap().asked;
    assert_eq!(asked.repository.as_deref(), Some("acme/shop-worker"));
    let polled = j
        .poll_source("shop", "file:///srv/shop.git")
        .unwrap()
        .unwrap();
    assert_eq!(
        (polled.tips_json.as_deref(), polled.ref_filter),
        (Some(r#"{"refs/heads/main":"a"}"#), None)
    );
    // The commit worker deployed counts for the whole stack: older, for
    // web too, once the stack moved past it.
    assert_eq!(
        store.query_i64("SELECT COUNT(*) FROM stack_commits WHERE scope = ''"),
        1
    );
}

super::on_both_backends!(
    every_foreign_key_leads_an_index,
    a_journal_from_before_lanes_learns_each_deploys_repository,
    replicas_opening_a_new_journal_at_once_migrate_it_once,
    a_journal_a_newer_redeploy_migrated_is_refused,
    an_export_holds_every_column_of_each_table_it_moves,
    an_older_exports_commits_import_as_the_whole_stacks,
    an_older_exports_deploys_and_requests_learn_their_repository,
);
