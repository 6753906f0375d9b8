//! What only the SQLite journal has: its file and its mode, read-only
//! opening beside a writer, errors that name the path, and old schemas.

use redeploy_host::journal::*;

use super::admission::{commit, deploy};
use super::deploys::{new_deploy, new_id, total};
use crate::support::TempDir;

#[cfg(unix)]
#[test]
fn new_journal_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("journal-mode");
    let path = Journal::path_in(&dir.0);
    let _journal = Journal::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn read_only_sees_concurrent_writes_and_cannot_write() {
    let dir = TempDir::new("journal-readonly");
    let path = Journal::path_in(&dir.0);
    let writer = Journal::open(&path).unwrap();
    let first = new_id(writer.insert_deploy(&new_deploy("app", None, 1)).unwrap());

    let reader = Journal::open_read_only(&path).unwrap();
    assert_eq!(reader.sqlite_path(), Some(path.as_path()));
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
    let dir = TempDir::new("journal-missing");
    let path = Journal::path_in(&dir.0);
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
    let dir = TempDir::new("journal-mkdir");
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
    let dir = TempDir::new("journal-unwritable");
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

/// What schemas 7 (runners, leases), 8 (the outbox), 9 (an index), 10
/// (the dashboard's sessions), 11 (delivery requests), 12 (cancel
/// requests), 13 (polled sources), 14 (GitHub catch-up), 15 (what a
/// failed deployment request fell back to), 16 (stacks' images), 17
/// (notifications) and 18 (an index) added, undone.
const AFTER_SCHEMA_6: &str = "DROP TABLE outbox; DROP TABLE leases; \
     ALTER TABLE deploys DROP COLUMN runner; ALTER TABLE deploys DROP COLUMN pgid_host; \
     DROP INDEX deploys_stack_state_id; DROP TABLE ui_sessions; \
     ALTER TABLE deliveries DROP COLUMN request_json; \
     ALTER TABLE deliveries DROP COLUMN kept_json; \
     ALTER TABLE deploys DROP COLUMN cancel_requested; DROP TABLE poll_sources; \
     DROP TABLE github_hooks; DROP TABLE github_redeliveries; \
     DROP INDEX deliveries_delivery_id; \
     DROP INDEX github_requests_open; \
     ALTER TABLE github_deployment_requests DROP COLUMN deploy_json; \
     ALTER TABLE github_deployment_requests DROP COLUMN fallback; \
     ALTER TABLE github_deployment_requests DROP COLUMN fallback_deploy_id; \
     ALTER TABLE github_deployment_requests DROP COLUMN fallback_at_ms; \
     ALTER TABLE github_deployment_requests DROP COLUMN event_seen_at_ms; \
     DROP TABLE stack_images; DROP TABLE notifications; DROP TABLE notices; \
     DROP INDEX deploys_superseded_by; \
     ALTER TABLE deploys DROP COLUMN repository; \
     ALTER TABLE github_deployment_requests DROP COLUMN repository;";

#[test]
fn a_deploy_keeps_its_pusher_and_a_schema_5_journal_reads_without_one() {
    let dir = TempDir::new("journal-pusher");
    let path = Journal::path_in(&dir.0);
    let journal = Journal::open(&path).unwrap();
    let id = new_id(journal.insert_deploy(&new_deploy("web", None, 1)).unwrap());
    let read = journal.deploy(id).unwrap().unwrap();
    assert_eq!(read.queued.pusher.as_deref(), Some("alice"));
    drop(journal);
    // The journal as schema 5 left it: no `pusher` column.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "ALTER TABLE deploys DROP COLUMN pusher; {AFTER_SCHEMA_6} PRAGMA user_version = 5;"
        ))
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
fn a_version_2_journal_learns_its_deployed_commits_when_migrated() {
    let dir = TempDir::new("journal-migrate-v2");
    let path = Journal::path_in(&dir.0);
    {
        let j = Journal::open(&path).unwrap();
        j.insert_deploy(&deploy(Some("a"), "d1", 1)).unwrap();
        j.insert_deploy(&deploy(Some("b"), "d2", 2)).unwrap();
        drop(j);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            // Back to what schema 2 had: no commits, no replay keys
            // (3), no process group column (4), no delivery-time
            // index (5), no pusher column (6), nothing of 7 and 8.
            &format!(
                "DROP TABLE stack_commits; DROP TABLE replay_keys; \
                 ALTER TABLE deploys DROP COLUMN pgid; DROP INDEX deliveries_received; \
                 ALTER TABLE deploys DROP COLUMN pusher; {AFTER_SCHEMA_6} \
                 PRAGMA user_version = 2;"
            ),
        )
        .unwrap();
    }
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.head_commit("web").unwrap().unwrap().sha, "b");
    let older = j
        .admit_deploy(&deploy(Some("a"), "d3", 3), &commit("a", "x", false))
        .unwrap();
    assert!(matches!(older, Admitted::Older { .. }), "{older:?}");
}
