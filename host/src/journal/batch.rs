//! Rows written together: concurrent callers that each need one row
//! recorded hand it to a [`Batcher`], and whichever of them finds no batch
//! being written writes every row waiting, in one transaction, for all of
//! them (flat combining). Each caller still returns only once its own row
//! is written, with its own outcome.
//!
//! The admissions of deploys on SQLite
//! ([`super::Journal::admit_deploy_to_run`]) are written so: a transaction
//! of its own would cost each its `BEGIN`, its locks, its log frames and
//! its wait for the disk; written together they share them. A webhook's
//! delivery row is written together with others too, by
//! [`super::row_queue`], where the server awaits it without a thread: a
//! dispatch needs its admission's outcome to go on, but only its answer
//! waits for its delivery row.
//!
//! A caller that waits sleeps until it is woken by name: when its row is
//! written, or when it is the oldest caller waiting and the batch before
//! it is done (it writes the next one). A wake-up of every sleeper at the
//! end of each batch woke those whose rows wait for the next batch only to
//! put them to sleep again (BENCHMARKS.md, part 5, sixteenth pass); now a
//! caller sleeps again only when a newcomer started the next batch before
//! the caller woken to write it could.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};
use std::thread::Thread;

use super::sql::DbError;
use super::{Journal, JournalError};

/// The most rows one batch writes: a bound on one transaction's size, and
/// so on how long the rows behind it wait.
pub const MAX_BATCH_ROWS: usize = 64;

/// `write`'s outcomes for a batch of `rows`, one per row in order; or, when
/// it panics or gives a wrong number of outcomes, `failed()` for every row
/// (a row is never reported written that was not). The one rule of
/// [`Batcher`] and [`super::row_queue`].
pub(super) fn write_batch<In, Out>(
    rows: Vec<In>,
    write: impl FnOnce(Vec<In>) -> Vec<Out>,
    failed: impl Fn() -> Out,
) -> Vec<Out> {
    let count = rows.len();
    match catch_unwind(AssertUnwindSafe(|| write(rows))) {
        Ok(outcomes) if outcomes.len() == count => outcomes,
        _ => {
            tracing::error!(
                rows = count,
                "journal: writing a batch of rows failed unexpectedly; each is reported not recorded, though some may be"
            );
            (0..count).map(|_| failed()).collect()
        }
    }
}

/// Rows of type `In` waiting to be written, and the outcomes (`Out`) of
/// those written, until their callers take them.
pub struct Batcher<In, Out> {
    state: Mutex<State<In, Out>>,
}

struct State<In, Out> {
    /// Rows waiting, oldest first, each with its caller's ticket.
    waiting: VecDeque<(u64, In)>,
    /// Outcomes of rows written, by ticket, until their callers take them.
    outcomes: HashMap<u64, Out>,
    /// The callers asleep until their row is written or they are to write
    /// the next batch, by ticket (the oldest first).
    asleep: BTreeMap<u64, Thread>,
    next_ticket: u64,
    /// Whether a caller is writing a batch now.
    writing: bool,
}

impl<In, Out> Default for Batcher<In, Out> {
    fn default() -> Self {
        Batcher {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                outcomes: HashMap::new(),
                asleep: BTreeMap::new(),
                next_ticket: 0,
                writing: false,
            }),
        }
    }
}

impl<In, Out> Batcher<In, Out> {
    /// Writes `row`, together with the rows other callers are waiting to
    /// write, and returns its outcome.
    ///
    /// `write` writes a batch (oldest row first, at most
    /// [`MAX_BATCH_ROWS`]) and returns one outcome per row, in order; it
    /// runs on whichever caller writes that batch, one batch at a time.
    /// Should it panic or return the wrong number of outcomes, every row
    /// of that batch gets `failed()` instead (a row is never reported
    /// written that was not), and the next batch is written as usual.
    pub fn write(
        &self,
        row: In,
        mut write: impl FnMut(Vec<In>) -> Vec<Out>,
        failed: impl Fn() -> Out,
    ) -> Out {
        let mut state = self.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.waiting.push_back((ticket, row));
        loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                return outcome;
            }
            if state.writing {
                // Woken by the writer (or spuriously: the loop checks
                // again). A wake-up given before this caller parks is
                // kept by `park`, so none is lost in between.
                state.asleep.insert(ticket, std::thread::current());
                drop(state);
                std::thread::park();
                state = self.lock();
                state.asleep.remove(&ticket);
                continue;
            }
            // This caller's row is still waiting and no batch is being
            // written: write one, from the oldest row.
            state.writing = true;
            let take = state.waiting.len().min(MAX_BATCH_ROWS);
            let (tickets, rows): (Vec<u64>, Vec<In>) = state.waiting.drain(..take).unzip();
            drop(state);
            let outcomes = write_batch(rows, &mut write, &failed);
            state = self.lock();
            state.writing = false;
            state.outcomes.extend(tickets.iter().copied().zip(outcomes));
            // Wake the callers whose rows this batch wrote; and, when this
            // caller's own row is written (it leaves), the oldest still
            // asleep, to write the next batch. Otherwise this caller
            // writes it.
            let mut wake: Vec<Thread> = tickets
                .iter()
                .filter_map(|t| state.asleep.remove(t))
                .collect();
            let mine = state.outcomes.remove(&ticket);
            if mine.is_some() {
                wake.extend(state.asleep.pop_first().map(|(_, thread)| thread));
            }
            drop(state);
            for thread in wake {
                thread.unpark();
            }
            if let Some(outcome) = mine {
                return outcome;
            }
            state = self.lock();
        }
    }

    /// Locks the state. A poisoned lock is taken anyway: nothing panics
    /// while holding it (`write` runs outside it).
    fn lock(&self) -> MutexGuard<'_, State<In, Out>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Journal {
    /// Writes `rows` in order, as `transaction` writes them: in one
    /// transaction, every row or none, each row through
    /// [`RowsInOrder::each`] (which notes the row being written). One
    /// outcome per row, in order.
    ///
    /// A row whose writing fails (an error, or a panic) is refused alone,
    /// with its own error, as it would have been written alone after the
    /// rows before it: its transaction rolled back, the rows before it are
    /// written again together, then the rows after it together. An error
    /// outside any row (`BEGIN`, the commit), or one of the database as a
    /// whole ([`whole_database`]: a full disk, an I/O error, the write lock
    /// not had in time), fails every row, without another try.
    ///
    /// Rows are written together on SQLite only, where
    /// [`super::sql::Sql::execute_pipelined`] runs at once: on PostgreSQL a
    /// statement sent ahead fails at the next row's first statement (or at
    /// the commit), and its failure would be blamed on that row.
    ///
    /// No savepoint per row: a savepoint refuses a row alone without
    /// writing the others again, but costs every row of every batch, where
    /// a row that fails is rare (SQLite copies each page about to change
    /// inside a savepoint to its sub-journal first). One connection's
    /// deploy path measured 0.91x with them, in three alternating pairs,
    /// against 1.00x without (BENCHMARKS.md, part 5, seventeenth pass).
    pub(super) fn write_rows<Row, Out, T>(
        &self,
        op: &'static str,
        rows: &[Row],
        transaction: &T,
    ) -> Vec<Result<Out, JournalError>>
    where
        T: Fn(RowsInOrder<'_, Row>) -> Result<Vec<Out>, JournalError>,
    {
        if rows.is_empty() {
            return Vec::new();
        }
        let failed = |reason: &str| {
            JournalError::database(&self.location, op, DbError::Unavailable(reason.to_owned()))
        };
        // The row being written, while one is.
        let current = Mutex::new(None);
        let written = catch_unwind(AssertUnwindSafe(|| {
            transaction(RowsInOrder {
                rows,
                current: &current,
            })
        }));
        let at = *current.lock().unwrap_or_else(|e| e.into_inner());
        let (at, e) = match (written, at) {
            (Ok(Ok(outcomes)), _) if outcomes.len() == rows.len() => {
                return outcomes.into_iter().map(Ok).collect()
            }
            (Ok(Ok(_)), _) => (
                None,
                failed("a batch was written with a wrong number of outcomes"),
            ),
            (Ok(Err(e)), at) if !whole_database(&e) => (at, e),
            (Ok(Err(e)), _) => (None, e),
            (Err(_), at) => {
                tracing::error!(
                    op,
                    row = ?at,
                    "journal: writing a row failed unexpectedly; nothing of its transaction was recorded"
                );
                (at, failed("writing this row failed unexpectedly"))
            }
        };
        match at {
            Some(at) if at < rows.len() => {
                let mut outcomes = self.write_rows(op, &rows[..at], transaction);
                outcomes.push(Err(e));
                outcomes.extend(self.write_rows(op, &rows[at + 1..], transaction));
                outcomes
            }
            _ => {
                let reason = match e {
                    JournalError::Database { source, .. } => source.to_string(),
                    other => other.to_string(),
                };
                rows.iter().map(|_| Err(failed(&reason))).collect()
            }
        }
    }
}

/// The rows of a [`Journal::write_rows`] transaction, to write in order.
pub(super) struct RowsInOrder<'a, Row> {
    rows: &'a [Row],
    /// The index of the row being written, while one is.
    current: &'a Mutex<Option<usize>>,
}

impl<Row> RowsInOrder<'_, Row> {
    /// Writes each row with `write`, in order, noting which row is being
    /// written (so that its failure is the row's); stops at the first
    /// error. One outcome per row.
    pub(super) fn each<Out, E>(
        &self,
        mut write: impl FnMut(&Row) -> Result<Out, E>,
    ) -> Result<Vec<Out>, E> {
        let note = |at| *self.current.lock().unwrap_or_else(|e| e.into_inner()) = at;
        let mut outcomes = Vec::with_capacity(self.rows.len());
        for (at, row) in self.rows.iter().enumerate() {
            note(Some(at));
            outcomes.push(write(row)?);
        }
        note(None);
        Ok(outcomes)
    }
}

/// Whether `e` is the database's failure as a whole (its disk, space,
/// file, lock or memory) rather than one row's: every row of a batch
/// fails with it, none is written again.
fn whole_database(e: &JournalError) -> bool {
    use rusqlite::ErrorCode as Code;
    let JournalError::Database {
        source: DbError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)),
        ..
    } = e
    else {
        return false;
    };
    matches!(
        failure.code,
        Code::SystemIoFailure
            | Code::DiskFull
            | Code::ReadOnly
            | Code::DatabaseCorrupt
            | Code::NotADatabase
            | Code::OutOfMemory
            | Code::DatabaseBusy
            | Code::DatabaseLocked
            | Code::CannotOpen
            | Code::FileLockingProtocolFailed
            | Code::PermissionDenied
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    #[test]
    fn each_caller_gets_its_own_rows_outcome() {
        let batcher = Arc::new(Batcher::<u64, u64>::default());
        let batches = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let batcher = Arc::clone(&batcher);
                let batches = Arc::clone(&batches);
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let row = t * 1000 + i;
                        let out = batcher.write(
                            row,
                            |rows| {
                                assert!(!rows.is_empty() && rows.len() <= MAX_BATCH_ROWS);
                                batches.fetch_add(1, Ordering::Relaxed);
                                rows.iter().map(|r| r * 2 + 1).collect()
                            },
                            || u64::MAX,
                        );
                        assert_eq!(out, row * 2 + 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a writer thread panicked");
        }
        assert!(batches.load(Ordering::Relaxed) > 0);
        let state = batcher.lock();
        assert!(
            state.waiting.is_empty()
                && state.outcomes.is_empty()
                && state.asleep.is_empty()
                && !state.writing
        );
    }

    #[test]
    fn rows_that_wait_behind_a_batch_are_written_together_in_order() {
        let batcher = Arc::new(Batcher::<u64, u64>::default());
        let first_started = Arc::new(Barrier::new(2));
        let written: Arc<Mutex<Vec<Vec<u64>>>> = Arc::default();
        let release = Arc::new(Mutex::new(()));
        let held = release.lock().unwrap();
        let first = {
            let (batcher, first_started, written, release) = (
                Arc::clone(&batcher),
                Arc::clone(&first_started),
                Arc::clone(&written),
                Arc::clone(&release),
            );
            std::thread::spawn(move || {
                batcher.write(
                    0,
                    |rows| {
                        first_started.wait();
                        drop(release.lock().unwrap());
                        written.lock().unwrap().push(rows.clone());
                        rows
                    },
                    || u64::MAX,
                )
            })
        };
        first_started.wait();
        // The first batch is being written: these five rows wait behind it.
        let others: Vec<_> = (1..=5u64)
            .map(|row| {
                let (writer, written) = (Arc::clone(&batcher), Arc::clone(&written));
                let handle = std::thread::spawn(move || {
                    writer.write(
                        row,
                        |rows| {
                            written.lock().unwrap().push(rows.clone());
                            rows
                        },
                        || u64::MAX,
                    )
                });
                // Queued in this order before the next is started.
                while batcher.lock().waiting.len() < row as usize {
                    std::thread::yield_now();
                }
                (row, handle)
            })
            .collect();
        drop(held);
        assert_eq!(first.join().unwrap(), 0);
        for (row, handle) in others {
            assert_eq!(handle.join().unwrap(), row);
        }
        assert_eq!(*written.lock().unwrap(), vec![vec![0], vec![1, 2, 3, 4, 5]]);
    }

    #[test]
    fn a_batch_that_panics_fails_its_rows_and_the_next_is_written() {
        let batcher = Batcher::<u64, Result<u64, &'static str>>::default();
        let out = batcher.write(7, |_| panic!("a bug in the writer"), || Err("failed"));
        assert_eq!(out, Err("failed"));
        let out = batcher.write(8, |_| Vec::new(), || Err("failed"));
        assert_eq!(out, Err("failed"), "too few outcomes fails the batch");
        let out = batcher.write(
            9,
            |rows| rows.into_iter().map(Ok).collect(),
            || Err("failed"),
        );
        assert_eq!(out, Ok(9));
        let state = batcher.lock();
        assert!(
            state.waiting.is_empty()
                && state.outcomes.is_empty()
                && state.asleep.is_empty()
                && !state.writing
        );
    }

    #[test]
    fn a_long_queue_is_written_in_bounded_batches() {
        let batcher = Batcher::<usize, usize>::default();
        // Rows left waiting by callers that have not come back yet are
        // written by the next caller, at most MAX_BATCH_ROWS at a time.
        {
            let mut state = batcher.lock();
            for row in 0..(MAX_BATCH_ROWS * 2 + 3) {
                let ticket = state.next_ticket;
                state.next_ticket += 1;
                state.waiting.push_back((ticket, row));
            }
        }
        let mut sizes = Vec::new();
        let out = batcher.write(
            1000,
            |rows| {
                sizes.push(rows.len());
                rows
            },
            || usize::MAX,
        );
        assert_eq!(out, 1000);
        assert_eq!(sizes, vec![MAX_BATCH_ROWS, MAX_BATCH_ROWS, 4]);
    }
}
