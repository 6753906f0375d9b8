//! Unit tests of the state names and of what no other connection can see
//! (the SQLite writer's `synchronous` pragma). The journal's suite runs on
//! both backends in `tests/journal/`.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// A fresh, unique, empty directory under the system temp dir, removed on
/// drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    pub(super) fn new(tag: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "redeploy-journal-test-{tag}-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // Private whatever the umask: a state directory its group or
        // others may write is refused.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        TempDir(dir)
    }

    pub(super) fn journal_path(&self) -> PathBuf {
        Journal::path_in(&self.0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn state_names_round_trip() {
    for state in DeployState::ALL {
        assert_eq!(state.as_str().parse::<DeployState>(), Ok(state));
        assert_eq!(state.to_string(), state.as_str());
        assert_eq!(
            serde_json::to_string(&state).unwrap(),
            format!("\"{}\"", state.as_str())
        );
    }
    assert!("Queued".parse::<DeployState>().is_err());
    assert!("done".parse::<DeployState>().is_err());
    let finals: Vec<_> = DeployState::ALL
        .into_iter()
        .filter(|s| s.is_final())
        .collect();
    assert_eq!(
        finals,
        [
            DeployState::Succeeded,
            DeployState::Failed,
            DeployState::Cancelled,
            DeployState::Interrupted
        ]
    );
    assert!(!DeployState::Queued.can_transition_to(DeployState::Interrupted));
    assert!(!DeployState::Queued.can_transition_to(DeployState::Succeeded));
    assert!(DeployState::Started.can_transition_to(DeployState::Interrupted));
    for from in DeployState::ALL.into_iter().filter(|s| s.is_final()) {
        for to in DeployState::ALL {
            assert!(!from.can_transition_to(to), "{from} -> {to}");
        }
    }
}

/// A GitHub push to the stack `app` with delivery id `id`, answered
/// `status` and summed up as `summary`: what these tests record.
fn github_push(id: &str, status: u16, summary: &str) -> NewDelivery {
    NewDelivery {
        received_at_ms: 30,
        stack: Some("app".to_owned()),
        provider: Some("github".to_owned()),
        event: Some("push".to_owned()),
        delivery_id: Some(id.to_owned()),
        status,
        summary: summary.to_owned(),
    }
}

#[test]
fn a_relaxed_delivery_waits_for_no_sync_and_a_durable_one_does() {
    let dir = TempDir::new("relaxed");
    let journal = Arc::new(Journal::open(&dir.journal_path()).unwrap());
    let skipped = github_push("d-2", 200, "push to another branch");
    let id = journal.record_delivery_relaxed(&skipped).unwrap();
    // Committed: another connection (`redeploy history`) sees it.
    let reader = Journal::open_read_only(&dir.journal_path()).unwrap();
    let got = reader.deliveries(10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].recorded.summary, "push to another branch");
    // It waited for no sync; a durable write does, and the sync covers
    // the relaxed commit before it too (the log is written in order).
    assert_eq!(journal.sqlite_group_counts().unwrap(), (0, 0, 0));
    let durable = NewDelivery {
        delivery_id: Some("d-3".to_owned()),
        ..skipped
    };
    journal.record_delivery(&durable).unwrap();
    assert_eq!(journal.sqlite_group_counts().unwrap(), (1, 1, 1));
}

/// A relaxed delivery row the database refuses among others written
/// together is refused alone, with its own error; the rows before and
/// after it are recorded, in order.
#[test]
fn a_delivery_row_refused_among_others_is_refused_alone() {
    let dir = TempDir::new("delivery-refused");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    journal
        .write("refuse one delivery", |sql| {
            sql.execute(
                "CREATE TRIGGER refuse_bad BEFORE INSERT ON deliveries
                 WHEN NEW.delivery_id = 'bad'
                 BEGIN SELECT RAISE(ABORT, 'this delivery is refused'); END",
                args![],
            )
        })
        .unwrap();
    let row = |id: &str| deliveries::DeliveryRow {
        delivery: github_push(id, 200, id),
        request_json: None,
        kept_json: None,
    };
    let outcomes =
        journal.record_relaxed_rows(vec![row("d-1"), row("d-2"), row("bad"), row("d-4")]);
    assert_eq!(outcomes.len(), 4);
    let error = outcomes[2].as_ref().unwrap_err().to_string();
    assert!(error.contains("record delivery"), "{error}");
    assert!(error.contains("this delivery is refused"), "{error}");
    let ids: Vec<i64> = [0, 1, 3]
        .iter()
        .map(|&at| *outcomes[at].as_ref().unwrap())
        .collect();
    let recorded: Vec<(i64, Option<String>)> = journal
        .deliveries(10)
        .unwrap()
        .into_iter()
        .rev()
        .map(|d| (d.id, d.recorded.delivery_id))
        .collect();
    let expected: Vec<(i64, Option<String>)> = ids
        .iter()
        .zip(["d-1", "d-2", "d-4"])
        .map(|(id, delivery)| (*id, Some(delivery.to_owned())))
        .collect();
    assert_eq!(recorded, expected);
    assert!(ids[0] < ids[1] && ids[1] < ids[2], "{ids:?}");
}

/// Rows written together ([`Journal::write_rows`]): an error of the
/// database as a whole fails every row without another transaction; a
/// row's own error fails it alone, the rows around it written again; a
/// transaction that reports fewer outcomes than rows fails them all.
#[test]
fn rows_written_together_fail_alone_or_all_as_the_error_says() {
    let dir = TempDir::new("write-rows");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let error = |code, at: &str| {
        JournalError::database(
            "test",
            "write",
            DbError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                Some(at.to_owned()),
            )),
        )
    };
    // Each transaction, as the rows it was given; row 2 fails with `code`.
    let run = |code| {
        let transactions = std::sync::Mutex::new(Vec::new());
        let outcomes = journal.write_rows("write", &[0, 1, 2, 3], &|rows| {
            let mut given = Vec::new();
            let written = rows.each(|&row: &i32| {
                given.push(row);
                if row == 2 {
                    Err(error(code, "row 2"))
                } else {
                    Ok(row * 10)
                }
            });
            transactions.lock().unwrap().push(given);
            written
        });
        let outcomes: Vec<Result<i32, String>> = outcomes
            .into_iter()
            .map(|o| o.map_err(|e| e.to_string()))
            .collect();
        (outcomes, transactions.into_inner().unwrap())
    };
    // A constraint refuses the row alone.
    let (outcomes, transactions) = run(rusqlite::ffi::SQLITE_CONSTRAINT);
    assert_eq!(outcomes[0], Ok(0));
    assert_eq!(outcomes[1], Ok(10));
    assert!(outcomes[2].as_ref().unwrap_err().contains("row 2"));
    assert_eq!(outcomes[3], Ok(30));
    assert_eq!(transactions, [vec![0, 1, 2], vec![0, 1], vec![3]]);
    // A full disk fails them all, in one try.
    let (outcomes, transactions) = run(rusqlite::ffi::SQLITE_FULL);
    assert_eq!(outcomes.len(), 4);
    for outcome in &outcomes {
        assert!(
            outcome.as_ref().unwrap_err().contains("row 2"),
            "{outcome:?}"
        );
    }
    assert_eq!(transactions, [vec![0, 1, 2]]);
    // Rows without a failure, but one outcome short: all fail.
    let transactions = std::sync::Mutex::new(0);
    let outcomes = journal.write_rows("write", &[0, 1], &|rows| {
        *transactions.lock().unwrap() += 1;
        rows.each(|&row: &i32| Ok::<_, JournalError>(row))
            .map(|mut w| {
                w.pop();
                w
            })
    });
    assert!(outcomes.iter().all(|o| o
        .as_ref()
        .is_err_and(|e| e.to_string().contains("wrong number of outcomes"))));
    assert_eq!(*transactions.lock().unwrap(), 1);
}

/// The statements that write a column a CHECK constraint lists the values
/// of: each runs with none of SQLite's temporary B-trees (an `IN` list of
/// more than two constants in a CHECK builds one on every run, schema 19).
const CHECKED_WRITES: [&str; 6] = [
    "INSERT INTO deploys (stack, provider, reason, event_json, state, created_at_ms)
     VALUES ('web', 'manual', 'r', '{}', 'queued', 1)",
    "INSERT INTO deploy_transitions (deploy_id, state, at_ms) VALUES (1, 'queued', 1)",
    "UPDATE deploys SET state = 'cancelled' WHERE id = 1",
    "INSERT INTO notices (stack, event, deploy_id, created_at_ms) VALUES ('web', 'queued', 1, 1)",
    "UPDATE outbox SET outcome = 'sent' WHERE id = 1",
    "UPDATE github_deployment_requests SET state = 'created' WHERE id = 1",
];

/// The commit-order query finds the newest commit pushed on top of a
/// candidate by one index search (schema 20): with only (stack,
/// before_sha) indexed, SQLite walked the stack's every commit by its
/// (stack, deploy_id) index for the order, on every push's admission.
#[test]
fn the_commit_order_query_searches_its_indexes_and_walks_no_commits() {
    let dir = TempDir::new("known-commits");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let plan: Vec<String> = journal
        .write("explain", |sql| {
            let rows = sql.query(
                &format!("EXPLAIN QUERY PLAN {}", commits::KNOWN_COMMITS),
                args!["web", "abc"],
            )?;
            rows.iter().map(|row| row.get::<String>(3)).collect()
        })
        .unwrap();
    let searches: Vec<&String> = plan
        .iter()
        .filter(|d| d.contains("stack_commits"))
        .collect();
    assert_eq!(
        searches,
        [
            "SEARCH stack_commits USING INDEX stack_commits_before_newest (stack=? AND before_sha=?)",
            "SEARCH stack_commits USING INDEX stack_commits_head (stack=?)",
            "SEARCH stack_commits USING INDEX sqlite_autoindex_stack_commits_1 (stack=? AND sha=?)",
        ],
        "{plan:#?}"
    );
}

/// The commit-order query of a deploy of some services (per scope,
/// schema 22) searches an index for each part too: the candidate among
/// its scopes' commits, the commit pushed on top of it, and each scope's
/// newest commit (one search of the (stack, scope, deploy_id) index each,
/// never a walk through every commit of the scopes).
#[test]
fn the_commit_order_query_of_some_services_searches_its_indexes_and_walks_no_commits() {
    let dir = TempDir::new("known-commits-of-services");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let plan: Vec<String> = journal
        .write("explain", |sql| {
            let rows = sql.query(
                &format!("EXPLAIN QUERY PLAN {}", commits::known_commits_of(2)),
                args!["web", "abc", "service web", ""],
            )?;
            rows.iter().map(|row| row.get::<String>(3)).collect()
        })
        .unwrap();
    let searches: Vec<&String> = plan
        .iter()
        .filter(|d| d.contains("stack_commits"))
        .collect();
    assert_eq!(
        searches,
        [
            "SEARCH stack_commits USING INDEX stack_commits_before_newest (stack=? AND before_sha=?)",
            "SEARCH stack_commits USING INDEX stack_commits_scope_head (stack=? AND scope=?)",
            "SEARCH stack_commits USING INDEX stack_commits_scope_head (stack=? AND scope=?)",
            "SEARCH stack_commits USING INDEX sqlite_autoindex_stack_commits_1 (stack=? AND sha=? AND scope=?)",
        ],
        "{plan:#?}"
    );
}

/// How many temporary B-trees `statement`'s program opens, compiled on
/// `sql`'s connection.
fn temporary_trees(sql: &mut dyn Sql, statement: &str) -> usize {
    let program = sql.query(&format!("EXPLAIN {statement}"), args![]).unwrap();
    program
        .iter()
        .filter(|op| op.get::<String>(1).unwrap() == "OpenEphemeral")
        .count()
}

/// A schema-18 journal, whose CHECK constraints list values with `IN`,
/// migrated to schema 19: its rows kept, its constraints the same (a
/// value outside the list refused), its schema as a new journal's, and
/// no CHECK that builds a temporary B-tree, on the migrating (writing)
/// connection and on one opened before the migration.
#[test]
fn a_schema_18_journal_checks_values_without_temporary_trees_once_migrated() {
    let dir = TempDir::new("migrate-18");
    let path = dir.journal_path();
    let schema_of = |conn: &rusqlite::Connection| -> Vec<(String, String, Option<String>)> {
        let mut statement = conn
            .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
            .unwrap();
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    };
    let old = rusqlite::Connection::open(&path).unwrap();
    for migration in &schema::SQLITE[..18] {
        old.execute_batch(migration.sql).unwrap();
    }
    old.execute_batch(
        "PRAGMA user_version = 18;
         INSERT INTO deploys (stack, provider, reason, event_json, state, created_at_ms)
         VALUES ('web', 'manual', 'r', '{}', 'queued', 1);",
    )
    .unwrap();
    let in_lists = |schema: &[(String, String, Option<String>)]| {
        schema
            .iter()
            .filter(|(_, _, sql)| {
                sql.as_deref()
                    .is_some_and(|sql| sql.contains(" IN (") || sql.contains(" IN\n"))
            })
            .count()
    };
    assert_eq!(in_lists(&schema_of(&old)), 6, "the tables schema 18 left");
    let explain = |conn: &rusqlite::Connection, statement: &str| -> usize {
        let mut program = conn.prepare(&format!("EXPLAIN {statement}")).unwrap();
        let ops = program
            .query_map([], |row| row.get::<_, String>(1))
            .unwrap();
        ops.filter(|op| op.as_deref().unwrap() == "OpenEphemeral")
            .count()
    };
    assert_eq!(
        explain(&old, CHECKED_WRITES[1]),
        1,
        "an IN list builds a tree"
    );

    let journal = Journal::open(&path).unwrap();
    let migrated = journal
        .write("explain", |sql| {
            Ok(CHECKED_WRITES.map(|statement| temporary_trees(sql, statement)))
        })
        .unwrap();
    assert_eq!(migrated, [0; 6], "the migrating connection");
    // The connection opened before reads the schema again at its next
    // statement (the migration moved the schema cookie on).
    let deploys: i64 = old
        .query_row("SELECT COUNT(*) FROM deploys", [], |row| row.get(0))
        .unwrap();
    assert_eq!(deploys, 1);
    for statement in CHECKED_WRITES {
        assert_eq!(explain(&old, statement), 0, "{statement}");
    }
    let schema = schema_of(&old);
    assert_eq!(in_lists(&schema), 0);
    let new_dir = TempDir::new("new-19");
    drop(Journal::open(&new_dir.journal_path()).unwrap());
    let new = rusqlite::Connection::open(new_dir.journal_path()).unwrap();
    assert_eq!(
        schema,
        schema_of(&new),
        "a migrated journal's schema is a new one's"
    );
    let integrity: String = old
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let refused = old
        .execute("UPDATE deploys SET state = 'deployed' WHERE id = 1", [])
        .unwrap_err()
        .to_string();
    assert!(refused.contains("CHECK constraint failed"), "{refused}");
    let refused = old
        .execute(
            "INSERT INTO deploy_transitions (deploy_id, state, at_ms) VALUES (1, 'done', 1)",
            [],
        )
        .unwrap_err()
        .to_string();
    assert!(refused.contains("CHECK constraint failed"), "{refused}");
    assert_eq!(
        journal.deploy(1).unwrap().map(|d| d.state),
        Some(DeployState::Queued)
    );
}

/// Every commit tells the checkpoint thread (`sqlite::checkpoint`), so
/// that the first one after a quiet spell wakes it: `Checkpointer::written`
/// clears the idle flag in the commit's own call, so the check below
/// needs no wait.
#[test]
fn a_commit_wakes_the_idle_checkpoint_thread() {
    let dir = TempDir::new("wake");
    let journal = Arc::new(Journal::open(&dir.journal_path()).unwrap());
    // Two looks without a commit between them: the thread goes idle.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while journal.sqlite_checkpoint_idle() != Some(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "the checkpoint thread never went idle"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let skipped = github_push("d-wake", 200, "push to another branch");
    journal.record_delivery_relaxed(&skipped).unwrap();
    assert_eq!(journal.sqlite_checkpoint_idle(), Some(false));
}

/// Group commit keeps the write-ahead log open: a journal closed cleanly
/// (SQLite deletes its log then) opens again, up to date, and its durable
/// writes are synced.
#[test]
fn a_journal_closed_cleanly_reopens_with_its_log_and_syncs() {
    let dir = TempDir::new("reopen");
    let delivery = |id: &str| github_push(id, 202, "push");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    journal.record_delivery(&delivery("d-1")).unwrap();
    drop(journal);
    let mut wal = dir.journal_path().into_os_string();
    wal.push("-wal");
    assert!(
        !std::path::Path::new(&wal).exists(),
        "the last close removes the log"
    );
    let journal = Journal::open(&dir.journal_path()).unwrap();
    journal.record_delivery(&delivery("d-2")).unwrap();
    assert_eq!(journal.sqlite_group_counts().unwrap(), (1, 1, 1));
    assert_eq!(journal.deliveries(10).unwrap().len(), 2);
}

/// Each stack's queue ([`crate::queue::StackQueue`]) as the placer of
/// admissions written together, recording what it undoes; it panics
/// placing a deploy of `panics_on`.
#[derive(Default)]
struct Queues {
    queues: std::sync::Mutex<BTreeMap<String, crate::queue::StackQueue>>,
    undone: std::sync::Mutex<Vec<i64>>,
    panics_on: Option<&'static str>,
    /// Undoing a placement panics (after recording it).
    unplace_panics: bool,
}

impl Placer for Queues {
    fn place(
        &self,
        record: &DeployRecord,
        _cancelled: &mut dyn FnMut(i64) -> bool,
    ) -> Option<crate::queue::Placement> {
        let stack = &record.queued.stack;
        assert_ne!(self.panics_on, Some(stack.as_str()), "placing a deploy");
        let slot = record.slot();
        let mut queues = self.queues.lock().unwrap();
        Some(queues.entry(stack.clone()).or_default().place(stack, slot))
    }

    fn unplace(&self, placement: crate::queue::Placement) {
        let mut queues = self.queues.lock().unwrap();
        queues.get_mut(&placement.stack).unwrap().undo(&placement);
        self.undone.lock().unwrap().push(placement.id);
        assert!(!self.unplace_panics, "undoing a placement");
    }
}

/// Commit `sha`, pushed on top of `before`, to `stack`'s `main`.
fn push_row(stack: &str, sha: &str, before: &str, placer: &Arc<Queues>) -> admission::AdmissionRow {
    admission::AdmissionRow {
        deploy: NewDeploy {
            stack: stack.to_owned(),
            delivery_id: Some(format!("{stack}-{sha}")),
            provider: "github".to_owned(),
            git_ref: Some("refs/heads/main".to_owned()),
            sha: Some(sha.to_owned()),
            services: vec![],
            profile: None,
            reason: "push".to_owned(),
            event_json: "{}".to_owned(),
            created_at_ms: 1,
            pusher: None,
            repository: None,
        },
        admission: Admission {
            commit: Some(CommitClaim {
                sha: sha.to_owned(),
                before: Some(before.to_owned()),
                forced: false,
                sender_reports_forced: true,
                requested: false,
                once: false,
            }),
            ..Admission::default()
        },
        placer: Some(placer.clone()),
    }
}

/// The deploys of `stack` in the journal, with their states, oldest first.
fn deploys_of(journal: &Journal, stack: &str) -> Vec<(String, String)> {
    journal
        .read("read deploys", |sql| {
            sql.query(
                "SELECT sha, state FROM deploys WHERE stack = ?1 ORDER BY id",
                args![stack],
            )?
            .iter()
            .map(|row| Ok((row.get(0)?, row.get(1)?)))
            .collect()
        })
        .unwrap()
}

/// What admitting `a1`, `b1` and then `a2` (on top of `a1`) leaves in the
/// journal: `a1` cancelled for `a2`, which is queued, and `b1` queued.
fn a2_superseded_a1_and_b1_is_queued(journal: &Journal) {
    let states = |stack| -> Vec<(String, String)> { deploys_of(journal, stack) };
    let row = |sha: &str, state: &str| (sha.to_owned(), state.to_owned());
    assert_eq!(states("a"), [row("a1", "cancelled"), row("a2", "queued")]);
    assert_eq!(states("b"), [row("b1", "queued")]);
}

/// The deploy `outcome` queued, with what its placement decided.
fn queued(outcome: &AdmissionOutcome) -> (i64, Option<Placed>) {
    match outcome {
        Ok((Admitted::Inserted(Inserted::New(id)), Some(to_run))) => (*id, to_run.placed.clone()),
        other => panic!("not a new queued deploy: {other:?}"),
    }
}

/// Admissions written together commit once and are judged one after the
/// other: the third supersedes the first, written in the same
/// transaction, and cancels it there.
#[test]
fn admissions_written_together_commit_once_and_are_judged_in_order() {
    let dir = TempDir::new("admit-together");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let placer = Arc::new(Queues::default());
    let outcomes = journal.admit_rows(&[
        push_row("a", "a1", "a0", &placer),
        push_row("b", "b1", "b0", &placer),
        push_row("a", "a2", "a1", &placer),
    ]);
    assert_eq!(journal.sqlite_group_counts().unwrap().0, 1, "one commit");
    let (a1, first) = queued(&outcomes[0]);
    assert_eq!(first.map(|p| p.superseded_cancelled), Some(false));
    queued(&outcomes[1]);
    let (a2, third) = queued(&outcomes[2]);
    let third = third.unwrap();
    assert!(third.superseded_cancelled, "{third:?}");
    match third.placement.admit {
        crate::queue::Admit::Pending {
            superseded: Some((superseded, _)),
            ..
        } => assert_eq!(superseded, a1),
        other => panic!("{other:?}"),
    }
    a2_superseded_a1_and_b1_is_queued(&journal);
    assert!(placer.undone.lock().unwrap().is_empty());
    assert!(a2 > a1);
}

/// An admission the database refuses among others written together is
/// refused alone, with its own error: its transaction's placements are
/// undone, the latest first, and the rows before and after it are
/// admitted as they would have been without it.
#[test]
fn an_admission_refused_among_others_is_refused_alone() {
    let dir = TempDir::new("admit-refused");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let placer = Arc::new(Queues::default());
    let first_b = push_row("b", "b1", "b0", &placer);
    let (_, queued_b) = journal
        .admit_deploy_to_run(&first_b.deploy, &first_b.admission, first_b.placer)
        .unwrap();
    let pending_b = queued_b.unwrap().record.id;
    // Superseding the pending deploy of `b` reads its services: unreadable,
    // the admission that supersedes it fails there, after its placement.
    journal
        .write("break a deploy", |sql| {
            sql.execute(
                "UPDATE deploys SET services = 'not json' WHERE id = ?1",
                args![pending_b],
            )
        })
        .unwrap();
    let queues_before = placer.queues.lock().unwrap().clone();
    let commits_before = journal.sqlite_group_counts().unwrap().0;
    let outcomes = journal.admit_rows(&[
        push_row("a", "a1", "a0", &placer),
        push_row("b", "b2", "b1", &placer),
        push_row("a", "a2", "a1", &placer),
    ]);
    assert_eq!(outcomes.len(), 3);
    let (a1, _) = queued(&outcomes[0]);
    let error = outcomes[1].as_ref().unwrap_err().to_string();
    assert!(error.contains("admit deploy"), "{error}");
    // Its own: the pending deploy's services did not parse as JSON.
    assert!(error.contains("expected ident"), "{error}");
    let (a2, third) = queued(&outcomes[2]);
    assert!(third.unwrap().superseded_cancelled);
    // The rows before the refused one, then the rows after it.
    assert_eq!(journal.sqlite_group_counts().unwrap().0, commits_before + 2);
    // The failed transaction's placements, `b2` (given the id after `a1`)
    // then `a1`, were undone; nothing else was.
    assert_eq!(*placer.undone.lock().unwrap(), [a1 + 1, a1]);
    a2_superseded_a1_and_b1_is_queued(&journal);
    let queues = placer.queues.lock().unwrap();
    assert_eq!(queues["b"], queues_before["b"]);
    let mut alone = crate::queue::StackQueue::default();
    for (id, sha) in [(a1, "a1"), (a2, "a2")] {
        let slot = crate::queue::Slot {
            id,
            sha: Some(sha.to_owned()),
            services: vec![],
            profile: None,
            lane: crate::queue::Lane {
                git_ref: Some("refs/heads/main".to_owned()),
                repository: None,
            },
        };
        alone.place("a", slot);
    }
    assert_eq!(queues["a"], alone);
}

/// An admission that panics among others written together (here its
/// placer) is refused alone: the transaction is rolled back, every
/// placement made in it undone, the latest first, and the rows before it
/// are admitted again.
#[test]
fn an_admission_that_panics_among_others_is_refused_alone() {
    a_row_that_panics_is_refused_alone(false);
}

/// Undoing placements that panics, while a row's panic unwinds, neither
/// aborts the process nor keeps the other placements from being undone.
#[test]
fn an_undo_that_panics_while_a_row_panics_undoes_the_rest() {
    a_row_that_panics_is_refused_alone(true);
}

/// Admits `a1`, `b1` and `c1` together, placing `c1` panicking (and each
/// undo, if `unplace_panics`).
fn a_row_that_panics_is_refused_alone(unplace_panics: bool) {
    let dir = TempDir::new("admit-panic");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let placer = Arc::new(Queues {
        panics_on: Some("c"),
        unplace_panics,
        ..Queues::default()
    });
    let outcomes = journal.admit_rows(&[
        push_row("a", "a1", "a0", &placer),
        push_row("b", "b1", "b0", &placer),
        push_row("c", "c1", "c0", &placer),
    ]);
    let (a1, _) = queued(&outcomes[0]);
    let (b1, _) = queued(&outcomes[1]);
    let error = outcomes[2].as_ref().unwrap_err().to_string();
    assert!(error.contains("failed unexpectedly"), "{error}");
    assert_eq!(*placer.undone.lock().unwrap(), [b1, a1], "the latest first");
    assert_eq!(deploys_of(&journal, "a").len(), 1);
    assert_eq!(deploys_of(&journal, "b").len(), 1);
    assert!(deploys_of(&journal, "c").is_empty());
    let queues = placer.queues.lock().unwrap();
    assert!(!queues.contains_key("c"));
    assert_ne!(queues["a"], crate::queue::StackQueue::default());
}
