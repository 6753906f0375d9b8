//! Unit tests of the state names and of what no other connection can see
//! (the SQLite writer's `synchronous` pragma). The journal's suite runs on
//! both backends in `tests/journal/`.

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
    let journal = Journal::open(&dir.journal_path()).unwrap();
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

/// Every commit tells the checkpoint thread (`sqlite::checkpoint`), so
/// that the first one after a quiet spell wakes it: `Checkpointer::written`
/// clears the idle flag in the commit's own call, so the check below
/// needs no wait.
#[test]
fn a_commit_wakes_the_idle_checkpoint_thread() {
    let dir = TempDir::new("wake");
    let journal = Journal::open(&dir.journal_path()).unwrap();
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
