//! Unit tests of what only the SQLite journal has: its file, its mode,
//! read-only opening and old schemas. What both backends do is tested on
//! both by the integration suite (`tests/journal/`).

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
fn relaxed_delivery_is_recorded_and_full_durability_is_restored() {
    let dir = TempDir::new("relaxed");
    let journal = Journal::open(&dir.journal_path()).unwrap();
    let skipped = NewDelivery {
        received_at_ms: 30,
        stack: Some("app".to_owned()),
        provider: Some("github".to_owned()),
        event: Some("push".to_owned()),
        delivery_id: Some("d-2".to_owned()),
        status: 200,
        summary: "push to another branch".to_owned(),
    };
    let id = journal.record_delivery_relaxed(&skipped).unwrap();
    // Committed: another connection (`redeploy history`) sees it.
    let reader = Journal::open_read_only(&dir.journal_path()).unwrap();
    let got = reader.deliveries(10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].recorded.summary, "push to another branch");
    // Every later write (deploys, transitions) is back to an fsync per commit.
    let synchronous: i64 = journal.sqlite_synchronous().unwrap();
    assert_eq!(synchronous, 2, "synchronous=FULL is 2");
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
        let conn = rusqlite::Connection::open(&path).unwrap();
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
