//! Group commit for the SQLite journal: concurrent durable writes share one
//! `fdatasync` of the write-ahead log.
//!
//! Every transaction commits with `synchronous=NORMAL`, which in WAL mode
//! appends the commit's frames to `journal.sqlite3-wal` without syncing
//! it. A write that must be durable before its caller goes on (an accepted
//! deploy before its 202, every state transition) then waits here until an
//! `fdatasync` of the log that began after its commit has returned. The
//! log is written in commit order, so one sync makes every commit before
//! it durable: while one writer syncs, the writers that commit meanwhile
//! wait for the next sync, which covers them all. That is SQLite's
//! `synchronous=FULL` guarantee (the log synced after the commit, before
//! the call returns) at one sync per batch instead of one per commit, with
//! the connection's lock released during the sync.
//!
//! A writer that waits sleeps until it is woken by name: when a sync has
//! covered its commit, or when it is the oldest writer waiting and the
//! sync before it is done (it runs the next). A wake-up of every waiter at
//! the end of each sync woke those whose commits came after the sync
//! began only to put them to sleep again (BENCHMARKS.md, part 5, sixteenth
//! pass); now a writer sleeps again only when a newcomer started the next
//! sync before the writer woken to run it could.
//!
//! The log is opened once, with the journal, and kept open: Linux reports a
//! write-back error to every descriptor open when it happened, so a failure
//! that SQLite's own checkpoint sync met (and ignores) is still reported to
//! the next sync here; a descriptor opened later would never hear of it.
//! Its path is SQLite's own name for the database (symbolic links
//! resolved) with `-wal`.
//!
//! A failed sync leaves it unknown what reached the disk, while the commit
//! is already visible to every reader, in this process and others; a later
//! sync can succeed without having written the lost pages. So, as
//! PostgreSQL does on a failed fsync, the process stops there (an error
//! line, then `abort`): its supervisor starts it again and SQLite recovers
//! the journal from what the disk holds, so nothing that was answered as
//! accepted was lost and nothing refused runs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::thread::Thread;

use crate::journal::JournalError;

/// Commits and syncs of one journal file.
#[derive(Default)]
struct State {
    /// Commits made, numbered from 1 in commit order.
    committed: u64,
    /// Every commit up to this one is on the disk.
    synced: u64,
    /// A sync is running.
    syncing: bool,
    /// Syncs that succeeded.
    syncs: u64,
    /// The directory's entry for the log has been synced once.
    dir_synced: bool,
    /// The writers asleep until a sync covers their commit or they are to
    /// run the next, by their commit's number. Two writers never share a
    /// number.
    asleep: BTreeMap<u64, Thread>,
}

/// The group-commit state of one open journal.
pub struct GroupCommit {
    /// The log's path, for messages and its directory.
    wal: PathBuf,
    /// The log, open since the journal was.
    log: File,
    state: Mutex<State>,
    /// What a failed sync does: stop the process (tests observe it instead).
    on_failure: fn(&Path, &io::Error) -> !,
}

/// A commit's place in the log, to wait for with [`GroupCommit::durable`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

impl GroupCommit {
    /// For the journal database SQLite names `db` (its log is
    /// `<db>-wal`, which exists once a connection has opened the database
    /// in WAL mode, and stays while one is open), opening the log.
    pub fn open(db: &Path) -> Result<GroupCommit, JournalError> {
        Self::with_failure(db, stop)
    }

    fn with_failure(
        db: &Path,
        on_failure: fn(&Path, &io::Error) -> !,
    ) -> Result<GroupCommit, JournalError> {
        let mut wal = db.as_os_str().to_os_string();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let log = File::open(&wal).map_err(|source| JournalError::OpenLog {
            path: wal.clone(),
            source,
        })?;
        Ok(GroupCommit {
            wal,
            log,
            state: Mutex::new(State::default()),
            on_failure,
        })
    }

    /// Numbers a commit just made. Called while the connection is still
    /// locked, so tickets follow the log's order.
    pub fn committed(&self) -> Ticket {
        let mut state = self.lock();
        state.committed += 1;
        Ticket(state.committed)
    }

    /// Returns once the commit of `ticket` is on the disk: at once if a sync
    /// since covered it, after the running sync and the next one otherwise
    /// (the running one may have begun before the commit). A failed sync
    /// stops the process (see the module's docs).
    pub fn durable(&self, ticket: Ticket) {
        let mut state = self.lock();
        loop {
            if state.synced >= ticket.0 {
                return;
            }
            if state.syncing {
                // Woken by the syncing writer (or spuriously: the loop
                // checks again). A wake-up given before this writer parks
                // is kept by `park`, so none is lost in between.
                state.asleep.insert(ticket.0, std::thread::current());
                drop(state);
                std::thread::park();
                state = self.lock();
                state.asleep.remove(&ticket.0);
                continue;
            }
            // This writer syncs for every commit made so far.
            let upto = state.committed;
            let dir = !state.dir_synced;
            state.syncing = true;
            drop(state);
            if let Err(e) = self.sync(dir) {
                (self.on_failure)(&self.wal, &e);
            }
            state = self.lock();
            state.syncing = false;
            state.synced = state.synced.max(upto);
            state.syncs += 1;
            state.dir_synced = true;
            // This sync covered this writer's own commit (`upto` was
            // counted after it), which leaves: wake the writers it covered
            // too, and the oldest still asleep, to run the next sync.
            debug_assert!(state.synced >= ticket.0);
            let synced = state.synced;
            let mut wake = Vec::new();
            while let Some(entry) = state.asleep.first_entry() {
                if *entry.key() > synced {
                    break;
                }
                wake.push(entry.remove());
            }
            wake.extend(state.asleep.pop_first().map(|(_, thread)| thread));
            drop(state);
            for thread in wake {
                thread.unpark();
            }
            return;
        }
    }

    /// `fdatasync` of the log (a descriptor flushes all the file's written
    /// pages, whoever wrote them), and the first time also of its
    /// directory, so the log's entry survives a power loss too.
    fn sync(&self, dir: bool) -> io::Result<()> {
        self.log.sync_data()?;
        if dir {
            if let Some(parent) = self.wal.parent().filter(|p| !p.as_os_str().is_empty()) {
                File::open(parent)?.sync_all()?;
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (commits made, commits on the disk, syncs that did it), for tests.
    #[cfg(test)]
    pub fn counts(&self) -> (u64, u64, u64) {
        let state = self.lock();
        (state.committed, state.synced, state.syncs)
    }
}

/// Stops the process after a failed sync of the journal's log (see the
/// module's docs): one line on stderr and in the log, then `abort`, which
/// runs no destructor that could write to the journal.
fn stop(wal: &Path, error: &io::Error) -> ! {
    let line = format!(
        "syncing the journal's log {} failed ({error}); stopping so that the journal is recovered from the disk on the next start",
        wal.display()
    );
    tracing::error!("{line}");
    crate::cli::say(format_args!("redeploy: {line}"));
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("redeploy-group-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Private whatever the umask: a state directory its group or
        // others may write is refused.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        dir
    }

    #[test]
    fn every_commit_is_durable_when_its_wait_returns_and_concurrent_ones_share_syncs() {
        let dir = dir("share");
        let db = dir.join("journal.sqlite3");
        std::fs::write(dir.join("journal.sqlite3-wal"), b"log").unwrap();
        let group = GroupCommit::open(&db).unwrap();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..50 {
                        let ticket = group.committed();
                        group.durable(ticket);
                        let (_, synced, _) = group.counts();
                        assert!(synced >= ticket.0, "{ticket:?} returned before its sync");
                    }
                });
            }
        });
        let (committed, synced, syncs) = group.counts();
        assert_eq!((committed, synced), (400, 400));
        assert!((1..=400).contains(&syncs), "{syncs}");
        // A ticket already covered returns without another sync.
        group.durable(Ticket(1));
        assert_eq!(group.counts().2, syncs);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The log must be there to be kept open: a journal without one is
    /// refused at open, naming the file.
    #[test]
    fn a_missing_log_is_an_error_at_open() {
        let dir = dir("missing");
        let err = GroupCommit::open(&dir.join("journal.sqlite3"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("journal.sqlite3-wal"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A failed sync goes to the failure handler (in the server: stop),
    /// never back to the caller as a durable commit.
    #[test]
    fn a_failed_sync_is_never_taken_for_durable() {
        fn fail(_: &Path, e: &io::Error) -> ! {
            panic!("sync failed: {e}");
        }
        let dir = dir("fail");
        std::fs::write(dir.join("journal.sqlite3-wal"), b"log").unwrap();
        let mut group = GroupCommit::with_failure(&dir.join("journal.sqlite3"), fail).unwrap();
        // A descriptor that cannot sync: a pipe's read end.
        let (reader, _writer) = std::io::pipe().unwrap();
        group.log = File::from(std::os::fd::OwnedFd::from(reader));
        let ticket = group.committed();
        let caught =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| group.durable(ticket)));
        let message = caught.unwrap_err();
        let message = message.downcast_ref::<String>().unwrap();
        assert!(message.starts_with("sync failed"), "{message}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
