//! Unit tests of the journal against real SQLite files.

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, unique, empty directory under the system temp dir, removed on
/// drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
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
        TempDir(dir)
    }

    fn journal_path(&self) -> PathBuf {
        Journal::path_in(&self.0)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn new_deploy(stack: &str, delivery_id: Option<&str>, created_at_ms: i64) -> NewDeploy {
    NewDeploy {
        stack: stack.to_owned(),
        delivery_id: delivery_id.map(str::to_owned),
        provider: "github".to_owned(),
        git_ref: Some("refs/heads/main".to_owned()),
        sha: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
        services: vec!["web".to_owned(), "worker".to_owned()],
        profile: Some("prod".to_owned()),
        reason: "push to main".to_owned(),
        event_json: r#"{"kind":"push"}"#.to_owned(),
        created_at_ms,
        pusher: Some("alice".to_owned()),
    }
}

fn new_id(inserted: Inserted) -> i64 {
    match inserted {
        Inserted::New(id) => id,
        Inserted::Duplicate(id) => panic!("expected a new deploy, got duplicate of {id}"),
    }
}

fn total(journal: &Journal) -> u64 {
    journal.count_by_state().unwrap().values().sum()
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

#[test]
fn insert_transition_and_read_back() {
    let dir = TempDir::new("roundtrip");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    assert_eq!(journal.path(), dir.journal_path());

    let id = new_id(
        journal
            .insert_deploy(&new_deploy("app", Some("d-1"), 1_000))
            .unwrap(),
    );
    let queued = journal.deploy(id).unwrap().unwrap();
    assert_eq!(
        queued,
        DeployRecord {
            id,
            // Read back exactly as it was queued.
            queued: new_deploy("app", Some("d-1"), 1_000),
            state: DeployState::Queued,
            started_at_ms: None,
            finished_at_ms: None,
            exit_code: None,
            log_path: None,
            detail: None,
            superseded_by: None,
        }
    );

    journal
        .transition(
            id,
            DeployState::Started,
            2_000,
            &TransitionDetail {
                log_path: Some("/state/logs/1.log".to_owned()),
                ..TransitionDetail::default()
            },
        )
        .unwrap();
    journal
        .transition(
            id,
            DeployState::Failed,
            3_500,
            &TransitionDetail {
                exit_code: Some(17),
                reason: Some("docker compose up exited with 17".to_owned()),
                ..TransitionDetail::default()
            },
        )
        .unwrap();

    let failed = journal.deploy(id).unwrap().unwrap();
    assert_eq!(failed.state, DeployState::Failed);
    assert_eq!(failed.started_at_ms, Some(2_000));
    assert_eq!(failed.finished_at_ms, Some(3_500));
    assert_eq!(failed.exit_code, Some(17));
    assert_eq!(failed.log_path.as_deref(), Some("/state/logs/1.log"));
    assert_eq!(
        failed.detail.as_deref(),
        Some("docker compose up exited with 17")
    );
    assert_eq!(
        journal.transitions(id).unwrap(),
        [
            (DeployState::Queued, 1_000),
            (DeployState::Started, 2_000),
            (DeployState::Failed, 3_500)
        ]
    );
    assert!(journal.transitions(id + 100).unwrap().is_empty());
    assert_eq!(journal.deploy(id + 100).unwrap(), None);

    // The record serialises with the state as its name.
    let json = serde_json::to_value(&failed).unwrap();
    assert_eq!(json["state"], "failed");
    assert_eq!(json["services"], serde_json::json!(["web", "worker"]));

    // Cancelling a queued deploy in favour of a newer one.
    let older = new_id(
        journal
            .insert_deploy(&new_deploy("app", None, 4_000))
            .unwrap(),
    );
    let newer = new_id(
        journal
            .insert_deploy(&new_deploy("app", None, 4_100))
            .unwrap(),
    );
    journal
        .transition(
            older,
            DeployState::Cancelled,
            4_200,
            &TransitionDetail {
                reason: Some(format!("superseded by deploy {newer}")),
                superseded_by: Some(newer),
                ..TransitionDetail::default()
            },
        )
        .unwrap();
    let cancelled = journal.deploy(older).unwrap().unwrap();
    assert_eq!(cancelled.state, DeployState::Cancelled);
    assert_eq!(cancelled.superseded_by, Some(newer));
    assert_eq!(cancelled.started_at_ms, None);
    assert_eq!(cancelled.finished_at_ms, Some(4_200));

    // superseded_by must name a real deploy.
    let err = journal
        .transition(
            newer,
            DeployState::Cancelled,
            4_300,
            &TransitionDetail {
                superseded_by: Some(9_999),
                ..TransitionDetail::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, JournalError::Sqlite { .. }), "{err}");
    assert_eq!(
        journal.deploy(newer).unwrap().unwrap().state,
        DeployState::Queued
    );

    let err = journal
        .transition(9_999, DeployState::Started, 1, &TransitionDetail::default())
        .unwrap_err();
    assert!(
        matches!(err, JournalError::UnknownDeploy { id: 9_999, .. }),
        "{err}"
    );

    let counts = journal.count_by_state().unwrap();
    assert_eq!(counts.len(), DeployState::ALL.len());
    assert_eq!(counts[&DeployState::Failed], 1);
    assert_eq!(counts[&DeployState::Cancelled], 1);
    assert_eq!(counts[&DeployState::Queued], 1);
    assert_eq!(counts[&DeployState::Succeeded], 0);
}

/// Takes deploy `id` through `started` (at `started_ms`) to `succeeded`.
fn run_to_success(journal: &Journal, id: i64, started_ms: i64, finished_ms: i64) {
    for (state, at) in [
        (DeployState::Started, started_ms),
        (DeployState::Succeeded, finished_ms),
    ] {
        journal
            .transition(id, state, at, &TransitionDetail::default())
            .unwrap();
    }
}

/// A GitHub push delivery to stack "app", answered with `status`.
fn push_delivery(at: i64, delivery_id: &str, status: u16, summary: &str) -> NewDelivery {
    NewDelivery {
        received_at_ms: at,
        stack: Some("app".to_owned()),
        provider: Some("github".to_owned()),
        event: Some("push".to_owned()),
        delivery_id: Some(delivery_id.to_owned()),
        status,
        summary: summary.to_owned(),
    }
}

/// A delivery to a hook URL no stack has.
fn unknown_hook(at: i64) -> NewDelivery {
    NewDelivery {
        received_at_ms: at,
        stack: None,
        provider: None,
        event: None,
        delivery_id: None,
        status: 404,
        summary: "unknown hook".to_owned(),
    }
}

#[test]
fn deliveries_are_recorded_most_recent_first() {
    let dir = TempDir::new("deliveries");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let first = push_delivery(10, "d-1", 202, "queued deploy 1");
    let second = unknown_hook(20);
    let a = journal.record_delivery(&first).unwrap();
    let b = journal.record_delivery(&second).unwrap();
    assert!(b > a);
    let got = journal.deliveries(10).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        DeliveryRecord {
            id: b,
            recorded: unknown_hook(20),
        }
    );
    assert_eq!(got[1].id, a);
    assert_eq!(got[1].recorded.stack.as_deref(), Some("app"));
    assert_eq!(got[1].recorded.status, 202);
    assert_eq!(journal.deliveries(1).unwrap().len(), 1);
    assert!(journal.deliveries(0).unwrap().is_empty());
}

#[test]
fn relaxed_delivery_is_recorded_and_full_durability_is_restored() {
    let dir = TempDir::new("relaxed");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let skipped = push_delivery(30, "d-2", 200, "push to another branch");
    let id = journal.record_delivery_relaxed(&skipped).unwrap();
    // Committed: another connection (`redeploy history`) sees it.
    let reader = Journal::open_read_only(&dir.journal_path()).unwrap();
    let got = reader.deliveries(10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].recorded.summary, "push to another branch");
    // Every later write (deploys, transitions) is back to an fsync per commit.
    let synchronous: i64 = journal
        .lock()
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .unwrap();
    assert_eq!(synchronous, 2, "synchronous=FULL is 2");
}

#[test]
fn duplicate_delivery_id_returns_existing_and_inserts_nothing() {
    let dir = TempDir::new("duplicate");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let id = new_id(
        journal
            .insert_deploy(&new_deploy("app", Some("d-1"), 1))
            .unwrap(),
    );

    let mut again = new_deploy("app", Some("d-1"), 2);
    again.reason = "redelivery".to_owned();
    assert_eq!(
        journal.insert_deploy(&again).unwrap(),
        Inserted::Duplicate(id)
    );
    assert_eq!(total(&journal), 1);
    assert_eq!(
        journal.deploy(id).unwrap().unwrap().queued.reason,
        "push to main"
    );
    assert_eq!(journal.transitions(id).unwrap().len(), 1);

    // Also a duplicate once the first has finished.
    run_to_success(&journal, id, 3, 4);
    assert_eq!(
        journal.insert_deploy(&again).unwrap(),
        Inserted::Duplicate(id)
    );

    // The same delivery id for another stack, and deploys without a
    // delivery id, are distinct.
    assert!(matches!(
        journal
            .insert_deploy(&new_deploy("other", Some("d-1"), 5))
            .unwrap(),
        Inserted::New(_)
    ));
    assert!(matches!(
        journal.insert_deploy(&new_deploy("app", None, 6)).unwrap(),
        Inserted::New(_)
    ));
    assert!(matches!(
        journal.insert_deploy(&new_deploy("app", None, 7)).unwrap(),
        Inserted::New(_)
    ));
    assert_eq!(total(&journal), 4);
}

#[test]
fn illegal_transition_is_rejected_and_changes_nothing() {
    let dir = TempDir::new("illegal");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let id = new_id(journal.insert_deploy(&new_deploy("app", None, 1)).unwrap());
    let before = journal.deploy(id).unwrap().unwrap();

    let detail = TransitionDetail {
        exit_code: Some(0),
        reason: Some("should not be stored".to_owned()),
        log_path: Some("/nope".to_owned()),
        superseded_by: None,
    };
    for to in [
        DeployState::Queued,
        DeployState::Succeeded,
        DeployState::Failed,
        DeployState::Interrupted,
    ] {
        let err = journal.transition(id, to, 2, &detail).unwrap_err();
        match err {
            JournalError::IllegalTransition {
                id: got_id,
                from,
                to: got_to,
            } => {
                assert_eq!((got_id, from, got_to), (id, DeployState::Queued, to));
            }
            other => panic!("expected IllegalTransition, got {other}"),
        }
        assert_eq!(journal.deploy(id).unwrap().unwrap(), before);
        assert_eq!(journal.transitions(id).unwrap(), [(DeployState::Queued, 1)]);
    }

    run_to_success(&journal, id, 3, 4);
    let done = journal.deploy(id).unwrap().unwrap();
    let err = journal
        .transition(id, DeployState::Started, 5, &detail)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("journal: cannot transition deploy {id}: illegal transition succeeded -> started")
    );
    assert_eq!(journal.deploy(id).unwrap().unwrap(), done);
    assert_eq!(journal.transitions(id).unwrap().len(), 3);
}

#[test]
fn recover_interrupts_started_and_returns_queued_oldest_first() {
    let dir = TempDir::new("recover");
    let path = dir.journal_path();
    let (running_a, running_b, queued_late, queued_early, done);
    {
        let journal = Journal::open(&path).unwrap();
        running_a = new_id(journal.insert_deploy(&new_deploy("a", None, 100)).unwrap());
        running_b = new_id(journal.insert_deploy(&new_deploy("b", None, 110)).unwrap());
        // Inserted first but created later: "oldest" is by creation time.
        queued_late = new_id(journal.insert_deploy(&new_deploy("c", None, 300)).unwrap());
        queued_early = new_id(journal.insert_deploy(&new_deploy("d", None, 200)).unwrap());
        done = new_id(journal.insert_deploy(&new_deploy("e", None, 50)).unwrap());
        for id in [running_a, running_b, done] {
            journal
                .transition(id, DeployState::Started, 400, &TransitionDetail::default())
                .unwrap();
        }
        journal
            .transition(
                done,
                DeployState::Succeeded,
                450,
                &TransitionDetail::default(),
            )
            .unwrap();
    }

    let journal = Journal::open(&path).unwrap();
    let recovery = journal.recover(1_000).unwrap();
    let ids = |records: &[DeployRecord]| records.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(&recovery.interrupted), [running_a, running_b]);
    assert_eq!(ids(&recovery.queued), [queued_early, queued_late]);
    for record in &recovery.interrupted {
        assert_eq!(record.state, DeployState::Interrupted);
        assert_eq!(record.started_at_ms, Some(400));
        assert_eq!(record.finished_at_ms, Some(1_000));
        assert_eq!(record.detail.as_deref(), Some(INTERRUPTED_REASON));
        assert_eq!(journal.deploy(record.id).unwrap().as_ref(), Some(record));
        assert_eq!(
            journal.transitions(record.id).unwrap().last(),
            Some(&(DeployState::Interrupted, 1_000))
        );
    }
    assert!(recovery
        .queued
        .iter()
        .all(|r| r.state == DeployState::Queued));
    assert_eq!(
        journal.deploy(done).unwrap().unwrap().state,
        DeployState::Succeeded
    );

    // Idempotent: nothing is left started.
    let again = journal.recover(2_000).unwrap();
    assert!(again.interrupted.is_empty());
    assert_eq!(ids(&again.queued), [queued_early, queued_late]);
}

#[test]
fn data_survives_close_and_reopen() {
    let dir = TempDir::new("reopen");
    let path = dir.journal_path();
    let id;
    {
        let journal = Journal::open(&path).unwrap();
        id = new_id(
            journal
                .insert_deploy(&new_deploy("app", Some("d-9"), 5))
                .unwrap(),
        );
        journal
            .transition(id, DeployState::Started, 6, &TransitionDetail::default())
            .unwrap();
        journal
            .record_delivery(&push_delivery(5, "d-9", 202, "queued"))
            .unwrap();
        journal.ensure_hook_token("app", "tok-1").unwrap();
    }
    let journal = Journal::open(&path).unwrap();
    let record = journal.deploy(id).unwrap().unwrap();
    assert_eq!(record.state, DeployState::Started);
    assert_eq!(record.queued.delivery_id.as_deref(), Some("d-9"));
    assert_eq!(journal.deliveries(10).unwrap().len(), 1);
    assert_eq!(journal.hook_token("app").unwrap().as_deref(), Some("tok-1"));
    assert_eq!(
        journal
            .insert_deploy(&new_deploy("app", Some("d-9"), 7))
            .unwrap(),
        Inserted::Duplicate(id)
    );
    // New ids keep increasing after reopening.
    let next = new_id(journal.insert_deploy(&new_deploy("app", None, 8)).unwrap());
    assert!(next > id);
    drop(journal);

    // And the read-only view sees it after the writer has closed.
    let reader = Journal::open_read_only(&path).unwrap();
    assert_eq!(reader.deploys(None, 10).unwrap().len(), 2);
    assert_eq!(reader.transitions(id).unwrap().len(), 2);
}

#[cfg(unix)]
#[test]
fn new_journal_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("mode");
    let path = dir.journal_path();
    let _journal = Journal::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn read_only_sees_concurrent_writes_and_cannot_write() {
    let dir = TempDir::new("readonly");
    let path = dir.journal_path();
    let writer = Journal::open(&path).unwrap();
    let first = new_id(writer.insert_deploy(&new_deploy("app", None, 1)).unwrap());

    let reader = Journal::open_read_only(&path).unwrap();
    assert_eq!(reader.path(), path);
    assert_eq!(reader.deploys(None, 10).unwrap().len(), 1);

    // Written while the reader is open: the reader sees it next call.
    let second = new_id(writer.insert_deploy(&new_deploy("app", None, 2)).unwrap());
    writer
        .transition(first, DeployState::Started, 3, &TransitionDetail::default())
        .unwrap();
    writer.ensure_hook_token("app", "tok").unwrap();
    let seen: Vec<i64> = reader
        .deploys(None, 10)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(seen, [second, first]);
    assert_eq!(
        reader.deploy(first).unwrap().unwrap().state,
        DeployState::Started
    );
    assert_eq!(reader.hook_token("app").unwrap().as_deref(), Some("tok"));
    assert_eq!(reader.count_by_state().unwrap()[&DeployState::Queued], 1);

    // A reader holding no lock does not block the writer, and writes
    // through the read-only handle fail without touching anything.
    let err = reader
        .insert_deploy(&new_deploy("app", None, 4))
        .unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "journal {}: cannot insert deploy:",
            path.display()
        )),
        "{err}"
    );
    writer.insert_deploy(&new_deploy("app", None, 5)).unwrap();
    assert_eq!(total(&writer), 3);
    assert_eq!(total(&reader), 3);
}

#[test]
fn open_read_only_requires_an_existing_journal() {
    let dir = TempDir::new("missing");
    let path = dir.journal_path();
    let err = Journal::open_read_only(&path).unwrap_err();
    assert!(matches!(err, JournalError::Missing { .. }), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(!path.exists(), "open_read_only must not create the file");

    // An empty (non-journal) file is not a journal.
    std::fs::write(&path, b"").unwrap();
    let err = Journal::open_read_only(&path).unwrap_err();
    assert!(matches!(err, JournalError::NotAJournal { .. }), "{err}");
}

#[test]
fn open_creates_missing_parent_directories() {
    let dir = TempDir::new("mkdir");
    let path = dir.0.join("a").join("b").join(FILE_NAME);
    let journal = Journal::open(&path).unwrap();
    assert!(path.is_file());
    assert_eq!(journal.deploys(None, 1).unwrap(), []);
    use std::os::unix::fs::PermissionsExt as _;
    for created in [dir.0.join("a"), dir.0.join("a").join("b")] {
        let mode = std::fs::metadata(&created).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{} is private", created.display());
    }
}

#[test]
fn open_under_a_regular_file_fails_clearly() {
    let dir = TempDir::new("unwritable");
    let file = dir.0.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();

    // The journal's directory is a regular file.
    let path = file.join(FILE_NAME);
    let err = Journal::open(&path).unwrap_err();
    assert!(matches!(err, JournalError::CreateDir { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "journal {}: cannot create directory {}:",
            path.display(),
            file.display()
        )),
        "{message}"
    );
    assert!(message.contains("not a directory"), "{message}");

    // The journal's directory would have to be created under a file.
    let path = file.join("state").join(FILE_NAME);
    let err = Journal::open(&path).unwrap_err();
    assert!(matches!(err, JournalError::CreateDir { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "journal {}: cannot create directory",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn newer_schema_is_refused() {
    let dir = TempDir::new("toonew");
    let path = dir.journal_path();
    drop(Journal::open(&path).unwrap());
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = Journal::open(&path).unwrap_err();
    assert!(
        matches!(err, JournalError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{err}"
    );
    let err = Journal::open_read_only(&path).unwrap_err();
    assert!(matches!(err, JournalError::TooNew { .. }), "{err}");
}

#[test]
fn a_deploy_keeps_its_pusher_and_a_schema_5_journal_reads_without_one() {
    let dir = TempDir::new("pusher");
    let path = dir.journal_path();
    let journal = Journal::open(&path).unwrap();
    let id = new_id(journal.insert_deploy(&new_deploy("web", None, 1)).unwrap());
    let read = journal.deploy(id).unwrap().unwrap();
    assert_eq!(read.queued.pusher.as_deref(), Some("alice"));
    drop(journal);
    // The journal as schema 5 left it: no `pusher` column.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("ALTER TABLE deploys DROP COLUMN pusher; PRAGMA user_version = 5;")
            .unwrap();
    }
    let old = Journal::open_read_only(&path).unwrap();
    let read = old.deploy(id).unwrap().unwrap();
    assert_eq!(read.queued.pusher, None);
    assert_eq!(old.deploys(Some("web"), 10).unwrap().len(), 1);
    drop(old);
    // A writer migrates it; the old deploy has no pusher.
    let migrated = Journal::open(&path).unwrap();
    assert_eq!(migrated.deploy(id).unwrap().unwrap().queued.pusher, None);
}

#[test]
fn ensure_hook_token_is_idempotent() {
    let dir = TempDir::new("token");
    let path = dir.journal_path();
    let journal = Journal::open(&path).unwrap();
    assert_eq!(journal.hook_token("app").unwrap(), None);
    assert_eq!(journal.ensure_hook_token("app", "first").unwrap(), "first");
    assert_eq!(journal.ensure_hook_token("app", "first").unwrap(), "first");
    assert_eq!(journal.ensure_hook_token("app", "second").unwrap(), "first");
    assert_eq!(journal.hook_token("app").unwrap().as_deref(), Some("first"));

    // A second connection (another process) agrees.
    let other = Journal::open(&path).unwrap();
    assert_eq!(other.ensure_hook_token("app", "third").unwrap(), "first");
    assert_eq!(other.ensure_hook_token("web", "w-1").unwrap(), "w-1");
    assert_eq!(journal.hook_token("web").unwrap().as_deref(), Some("w-1"));
    assert_eq!(journal.hook_token("nope").unwrap(), None);
}

#[test]
fn deploys_filters_by_stack_and_orders_most_recent_first() {
    let dir = TempDir::new("list");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let mut app = Vec::new();
    let mut web = Vec::new();
    for i in 0..5 {
        app.push(new_id(
            journal.insert_deploy(&new_deploy("app", None, i)).unwrap(),
        ));
        web.push(new_id(
            journal.insert_deploy(&new_deploy("web", None, i)).unwrap(),
        ));
    }
    let ids = |records: Vec<DeployRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();

    let mut all: Vec<i64> = app.iter().chain(&web).copied().collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids(journal.deploys(None, 100).unwrap()), all);
    assert_eq!(ids(journal.deploys(None, 3).unwrap()), all[..3]);

    let app_desc: Vec<i64> = app.iter().rev().copied().collect();
    assert_eq!(ids(journal.deploys(Some("app"), 100).unwrap()), app_desc);
    assert_eq!(ids(journal.deploys(Some("app"), 2).unwrap()), app_desc[..2]);
    assert!(journal
        .deploys(Some("web"), 100)
        .unwrap()
        .iter()
        .all(|r| r.queued.stack == "web"));
    assert!(journal.deploys(Some("nope"), 100).unwrap().is_empty());
    assert!(journal.deploys(None, 0).unwrap().is_empty());
    assert_eq!(journal.deploys(None, usize::MAX).unwrap().len(), 10);
}

#[test]
fn journal_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Journal>();

    let dir = TempDir::new("threads");
    let journal = std::sync::Arc::new(Journal::open(&dir.journal_path()).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let journal = journal.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let delivery = format!("d-{t}-{i}");
                    journal
                        .insert_deploy(&new_deploy("app", Some(&delivery), i))
                        .unwrap();
                    // Every thread also redelivers thread 0's first one.
                    journal
                        .insert_deploy(&new_deploy("app", Some("d-0-0"), i))
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(total(&journal), 40);
}
