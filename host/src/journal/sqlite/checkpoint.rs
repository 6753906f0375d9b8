//! Checkpoints off the commit path: a thread with a connection of its own
//! copies the log's committed pages into the database file every
//! [`CHECKPOINT_INTERVAL`] (`PRAGMA wal_checkpoint(PASSIVE)`, which never
//! waits for a writer nor makes one wait).
//!
//! Left to SQLite, the commit that takes the log past 1000 pages runs the
//! checkpoint itself, with the connection's lock held: it syncs the log,
//! copies the pages and syncs the database file, about 16 ms on this
//! project's machine, during which every request behind it waits. That
//! was the p99 of the decision path at one connection (BENCHMARKS.md,
//! part 5: 17-20 ms, 2.5-3.6 ms with this thread). The writing connection
//! keeps a much higher threshold of its own
//! ([`WRITER_AUTOCHECKPOINT_PAGES`]), so the log still stays bounded should
//! this thread fall behind or fail.
//!
//! While nothing is written the thread looks only once a second
//! ([`IDLE_CHECKPOINT_INTERVAL`]); the first commit after a quiet spell
//! wakes it ([`Checkpointer::written`]), so a burst of writes is copied
//! from its first [`CHECKPOINT_INTERVAL`] on. Left to sleep out its second,
//! the thread could find a burst's log already at
//! [`WRITER_AUTOCHECKPOINT_PAGES`] with nothing copied (some 2,000
//! deliveries fill it: 0.7-0.85 s at 2,500 a second), and the writer then
//! copied and synced all of it while every request waited: 73-117 ms
//! in the measured runs (BENCHMARKS.md, part 5, seventh pass).
//!
//! Durability is unchanged: a checkpoint syncs the log before it copies
//! anything and syncs the database file before it marks the pages copied,
//! and only then may a writer start the log over; a commit waiting for its
//! group sync ([`super::group_commit`]) is on the disk either way.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::BUSY_TIMEOUT;

/// How often the log's committed pages are copied into the database file
/// while the journal is being written: often enough that each checkpoint's
/// syncs flush only a little (at 250 ms they took long enough to show in
/// the p99 of requests that never sync, BENCHMARKS.md part 5).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(50);

/// How often the thread looks while nothing is being written (no commit
/// since the last look, and the log copied in full): an idle server wakes
/// once a second for it, not twenty times. A commit through this
/// process's journal cuts the wait short to [`CHECKPOINT_INTERVAL`]
/// ([`Checkpointer::written`]); one by another process is seen at the next
/// look.
pub const IDLE_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// The log's size, in pages, at which the writing connection checkpoints
/// it itself: ten times SQLite's default, reached only if the checkpoint
/// thread falls behind or cannot checkpoint.
pub const WRITER_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// The checkpoint thread; stopped and joined when dropped, so its
/// connection is closed when the journal is.
pub struct Checkpointer {
    /// Tells the thread that a commit was made while it was idle (look
    /// again after [`CHECKPOINT_INTERVAL`], not after the rest of its idle
    /// interval); dropped, it stops the thread.
    written: Option<mpsc::Sender<()>>,
    /// Whether the thread is waiting out its idle interval: set by the
    /// thread after a look that found nothing new, cleared by the thread
    /// after any other look and by the first commit that finds it set.
    idle: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection to the journal at `path` (SQLite's resolved name)
    /// and starts checkpointing it.
    pub fn start(path: &Path) -> Result<Checkpointer, rusqlite::Error> {
        Self::start_with(path, IDLE_CHECKPOINT_INTERVAL)
    }

    /// [`Checkpointer::start`] with another idle interval (a test's, long
    /// enough that only [`Checkpointer::written`] can end it).
    fn start_with(path: &Path, idle_interval: Duration) -> Result<Checkpointer, rusqlite::Error> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // A checkpoint syncs the log before copying and the database file
        // before marking the pages copied only when its connection syncs:
        // stated here rather than left to SQLite's default.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let (written, received) = mpsc::channel();
        let idle = Arc::new(AtomicBool::new(false));
        let thread_idle = Arc::clone(&idle);
        let thread = std::thread::Builder::new()
            .name("journal-checkpoint".to_owned())
            .spawn(move || checkpoint_until_stopped(&conn, &received, &thread_idle, idle_interval))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer {
            written: Some(written),
            idle,
            thread: Some(thread),
        })
    }

    /// Tells the thread that this process committed: if it is waiting out
    /// an idle interval, it looks again after [`CHECKPOINT_INTERVAL`]. Called
    /// after every commit; while the thread is not idle this is one atomic
    /// load. (A commit made while the thread is deciding to go idle is
    /// missed; the next one wakes it, and the idle look sees both.)
    pub fn written(&self) {
        if self.idle.load(Ordering::Relaxed) && self.idle.swap(false, Ordering::AcqRel) {
            if let Some(written) = &self.written {
                // A stopped thread has nothing left to wake.
                let _ = written.send(());
            }
        }
    }

    /// Whether the thread is waiting out an idle interval.
    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Acquire)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.written.take());
        if let Some(thread) = self.thread.take() {
            // The thread stops at once, or after the checkpoint it is in;
            // a panic in it has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

/// Checkpoints every [`CHECKPOINT_INTERVAL`] (every `idle_interval`
/// while nothing is written, with `idle` set, until a commit clears it and
/// says so) until the sender is dropped. A failure is
/// logged when it starts and when it ends, not on every attempt.
fn checkpoint_until_stopped(
    conn: &Connection,
    written: &mpsc::Receiver<()>,
    idle: &AtomicBool,
    idle_interval: Duration,
) {
    let mut failing = false;
    let mut last_version = None;
    let mut interval = CHECKPOINT_INTERVAL;
    loop {
        match written.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) => {
                interval = CHECKPOINT_INTERVAL;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let copied = data_version(conn).and_then(|version| Ok((version, checkpoint(conn)?)));
        match copied {
            Ok((version, (log, done))) => {
                // Idle only when no other connection committed since the
                // last look and the log is copied in full.
                let quiet = last_version == Some(version) && log == done;
                interval = if quiet {
                    idle_interval
                } else {
                    CHECKPOINT_INTERVAL
                };
                idle.store(quiet, Ordering::Release);
                last_version = Some(version);
                if failing {
                    failing = false;
                    tracing::info!("journal: checkpoints work again");
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "journal: cannot checkpoint the log; the writer checkpoints it once it grows to {WRITER_AUTOCHECKPOINT_PAGES} pages");
            }
            Err(_) => {}
        }
    }
}

/// SQLite's count of commits by other connections (`PRAGMA
/// data_version`): it changes between two reads on this connection if and
/// only if another connection committed in between.
fn data_version(conn: &Connection) -> Result<i64, rusqlite::Error> {
    conn.query_row("PRAGMA data_version", [], |row| row.get(0))
}

/// One passive checkpoint: copies what it can without waiting for anyone
/// (a reader still using older pages only stops it short of the end).
/// Returns the frames in the log and the frames copied, as SQLite reports
/// them.
fn checkpoint(conn: &Connection) -> Result<(i64, i64), rusqlite::Error> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get(1)?, row.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The database file's size: it grows only when a checkpoint copies
    /// pages from the log into it.
    fn file_size(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// A fresh journal file in WAL mode in a directory of its own (named
    /// by `tag`), holding one small table, whose writer never checkpoints
    /// (only the thread may copy pages into the file): the directory, the
    /// file and the writer.
    fn wal_journal(tag: &str) -> (PathBuf, PathBuf, Connection) {
        let dir =
            std::env::temp_dir().join(format!("redeploy-checkpoint-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.sqlite3");
        let writer = Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "WAL").unwrap();
        writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        writer
            .execute_batch("CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a');")
            .unwrap();
        (dir, path, writer)
    }

    /// Waits, polling, until `done` holds, failing with `what` after
    /// `deadline`.
    fn wait_until(deadline: std::time::Instant, what: &str, done: impl Fn() -> bool) {
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_thread_copies_what_the_writer_commits_and_stops_when_dropped() {
        let (dir, path, writer) = wal_journal("copies");
        let before = file_size(&path);
        let checkpointer = Checkpointer::start(&path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        wait_until(deadline, "nothing was checkpointed", || {
            file_size(&path) > before
        });
        drop(checkpointer);
        // Stopped: pages committed now stay in the log.
        let copied = file_size(&path);
        writer
            .execute(
                "INSERT INTO t SELECT printf('%.1000c', 'x') FROM t, t AS u, t AS v",
                [],
            )
            .unwrap();
        for _ in 0..4 {
            writer.execute("INSERT INTO t SELECT x FROM t", []).unwrap();
        }
        std::thread::sleep(CHECKPOINT_INTERVAL * 3);
        assert_eq!(file_size(&path), copied);
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_commit_wakes_the_thread_from_its_idle_interval() {
        let (dir, path, writer) = wal_journal("wake");
        // An idle interval no test waits out: only `written` can end it.
        let checkpointer = Checkpointer::start_with(&path, Duration::from_secs(3600)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        wait_until(deadline, "the thread never went idle", || {
            checkpointer.is_idle()
        });
        let before = file_size(&path);
        // A row over several pages: copied, it grows the file.
        writer
            .execute("INSERT INTO t VALUES (printf('%.20000c', 'y'))", [])
            .unwrap();
        // Not told, the idle thread copies nothing.
        std::thread::sleep(CHECKPOINT_INTERVAL * 3);
        assert_eq!(file_size(&path), before);
        checkpointer.written();
        wait_until(deadline, "the commit did not wake the thread", || {
            file_size(&path) > before
        });
        drop(checkpointer);
        drop(writer);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
