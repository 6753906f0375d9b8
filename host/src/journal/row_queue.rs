//! Rows written together whose callers need not hold a thread while they
//! wait: a webhook's own delivery row on SQLite.
//!
//! [`super::batch::Batcher`] writes rows together too, but each caller
//! waiting for its batch sleeps on its thread, and a dispatch holds a
//! thread of tokio's blocking pool for as long as it runs: under load the
//! pool grew to a thread per delivery in flight (about 90 at 64
//! connections), each put to sleep in the row's batch and woken again.
//! Here a caller that finds no batch being written writes its row at once,
//! on its own thread (one connection's delivery pays no hand-off); one that
//! finds a batch being written leaves its row waiting and gets a [`Pending`]
//! that an async caller awaits without a thread. Whoever ends a batch with
//! rows waiting hands the writing on to the queue's writer thread, which
//! writes batch after batch until none waits. (Not to tokio's blocking
//! pool: a caller that waits on its thread, [`Pending::wait`], is on that
//! pool, and a pool full of such callers would never run their writer.)
//!
//! Either way a caller that answers only after its row's outcome answers
//! only after its row is committed, as before.
//!
//! Under load the writer thread waits a moment ([`COMMIT_DELAY`]) before it
//! takes a batch, when enough rows are on their way ([`COMMIT_SIBLINGS`],
//! counted by their callers: [`RowQueue::coming`]) to be written in it
//! rather than in transactions of their own; as PostgreSQL's `commit_delay`
//! with its `commit_siblings`. One connection's rows never wait for it,
//! nor those of fewer connections than [`COMMIT_SIBLINGS`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use super::batch::MAX_BATCH_ROWS;

/// What a [`RowQueue`]'s rows are written with: the queue, the writing of
/// a batch, and the outcome of a row whose batch could not be written.
/// Owned (`'static`), so that the writing can move to another thread.
pub(super) trait Rows: Send + 'static {
    /// A row waiting to be written.
    type Row: Send + 'static;
    /// A row's outcome.
    type Out: Send + 'static;
    /// The queue the rows wait in.
    fn queue(&self) -> &RowQueue<Self::Row, Self::Out>;
    /// Writes a batch (at most [`MAX_BATCH_ROWS`], oldest first); one
    /// outcome per row, in order.
    fn write(&self, rows: Vec<Self::Row>) -> Vec<Self::Out>;
    /// The outcome of a row whose batch was not written: the writing
    /// panicked, gave a wrong number of outcomes, or never ran.
    fn failed(&self) -> Self::Out;
}

/// Rows waiting to be written, each with where its outcome goes.
pub(super) struct RowQueue<Row, Out> {
    state: Mutex<State<Row, Out>>,
    /// Hands the writing to the queue's writer thread, started at the first
    /// hand-over; the thread ends when the queue is dropped.
    writer: Mutex<Option<mpsc::Sender<Job>>>,
    /// Rows on their way: how many callers will submit one soon, counted
    /// by them ([`RowQueue::coming`]); steers [`delay_before_batch`] only.
    coming: Arc<AtomicUsize>,
    /// [`COMMIT_DELAY`] (a test's own, longer one in this module's tests).
    delay: Duration,
}

/// A writing handed to the writer thread.
type Job = Box<dyn FnOnce() + Send>;

struct State<Row, Out> {
    /// Rows waiting, oldest first. Rows wait only while a batch is being
    /// written (`writing`): whoever writes takes them next.
    waiting: VecDeque<(Row, oneshot::Sender<Out>)>,
    /// Whether someone writes the queue's rows now.
    writing: bool,
}

impl<Row, Out> Default for RowQueue<Row, Out> {
    fn default() -> Self {
        RowQueue {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                writing: false,
            }),
            writer: Mutex::new(None),
            coming: Default::default(),
            delay: COMMIT_DELAY,
        }
    }
}

/// How long the writer thread waits before it takes a batch when enough
/// rows are on their way ([`COMMIT_SIBLINGS`]), so that they are written
/// in it rather than each in a transaction of its own: PostgreSQL's
/// `commit_delay`. Measured in BENCHMARKS.md part 5, twenty-third pass.
pub(super) const COMMIT_DELAY: Duration = Duration::from_micros(300);

/// How many rows must be on their way ([`RowQueue::coming`]) for the
/// writer thread to wait [`COMMIT_DELAY`] before a batch: PostgreSQL's
/// `commit_siblings`. With fewer, a batch's rows would wait the delay for
/// few others to share it (a fixed delay cost four connections 12-13%,
/// twenty-second pass).
pub(super) const COMMIT_SIBLINGS: usize = 4;

/// Whether the writer thread waits [`COMMIT_DELAY`] before it takes a
/// batch of the `waiting` rows while `coming` more are on their way: only
/// when there is a batch to take, it is not full, and enough rows are
/// coming to fill more of it.
fn delay_before_batch(waiting: usize, coming: usize) -> bool {
    waiting > 0 && waiting < MAX_BATCH_ROWS && coming >= COMMIT_SIBLINGS
}

impl<Row, Out> RowQueue<Row, Out> {
    /// The count of rows on their way, for the callers to keep: each adds
    /// one while it makes a row it will submit (a webhook's delivery being
    /// dispatched), and takes it off after. Only a hint for the writer
    /// thread's [`COMMIT_DELAY`]; a count that is off makes a batch wait
    /// when it need not, or not when it could have, and nothing else.
    pub(super) fn coming(&self) -> &Arc<AtomicUsize> {
        &self.coming
    }

    /// Locks the state. A poisoned lock is taken anyway: nothing panics
    /// while holding it (rows are written outside it).
    fn lock(&self) -> MutexGuard<'_, State<Row, Out>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where to hand the writing: the writer thread, started now if it is
    /// not yet; `None` if it cannot be started.
    fn writer(&self) -> Option<mpsc::Sender<Job>> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if writer.is_none() {
            let (tx, rx) = mpsc::channel::<Job>();
            let started = std::thread::Builder::new()
                .name("journal-rows".to_owned())
                .spawn(move || rx.into_iter().for_each(|job| job()));
            if let Err(e) = started {
                tracing::warn!(error = %e, "journal: cannot start the thread that writes delivery rows; a caller writes them");
                return None;
            }
            *writer = Some(tx);
        }
        writer.clone()
    }
}

/// A row's outcome: known at once (it was written on the caller's thread),
/// or once the batch it waits for is written.
#[must_use = "a row's outcome says whether it was written"]
pub enum Pending<Out> {
    /// Written (or refused) already.
    Now(Out),
    /// Waiting for its batch.
    Later(oneshot::Receiver<Out>),
}

impl<Out> Pending<Out> {
    /// The outcome, awaited without holding a thread; `gone()` if its
    /// batch's writer went away without one (it should not: a writing that
    /// ends unfinished gives every waiting row its failure).
    pub async fn outcome(self, gone: impl FnOnce() -> Out) -> Out {
        match self {
            Pending::Now(out) => out,
            Pending::Later(rx) => rx.await.unwrap_or_else(|_| gone()),
        }
    }

    /// [`Pending::outcome`], waited for on this thread. Blocking: meant
    /// for callers off the runtime's workers. Called on a worker of a
    /// multi-threaded runtime, it hands the worker's other tasks over first
    /// ([`super::sqlite::off_worker`]), as a journal call that waits for
    /// the disk does, rather than have tokio refuse the wait (a panic, and
    /// only when the row had to wait: under load).
    pub fn wait(self, gone: impl FnOnce() -> Out) -> Out {
        match self {
            Pending::Now(out) => out,
            Pending::Later(rx) => {
                super::sqlite::off_worker(|| rx.blocking_recv()).unwrap_or_else(|_| gone())
            }
        }
    }
}

/// Writes `row` with the rows of `owner`'s queue: at once on this thread
/// when no batch is being written, else with the next batch. Rows are
/// written in the order they were queued.
pub(super) fn submit<R: Rows>(owner: R, row: R::Row) -> Pending<R::Out> {
    let mut state = owner.queue().lock();
    if state.writing {
        let (tx, rx) = oneshot::channel();
        state.waiting.push_back((row, tx));
        return Pending::Later(rx);
    }
    state.writing = true;
    drop(state);
    let writing = Writing { owner, done: false };
    let mine = write_batch(&writing.owner, vec![row])
        .pop()
        .unwrap_or_else(|| writing.owner.failed());
    writing.hand_on();
    Pending::Now(mine)
}

/// The writing of a queue's rows, held by whoever writes them. Dropped
/// unfinished (a panic outside the writing of a batch, which catches its
/// own), it gives every row waiting its failure and ends the writing, so
/// that no caller waits for good and the next row is written.
struct Writing<R: Rows> {
    owner: R,
    /// Set, under the queue's lock, when the writing ended with no row
    /// waiting.
    done: bool,
}

impl<R: Rows> Writing<R> {
    /// Ends the writing if no row waits; else hands it to the writer
    /// thread, or writes the rows waiting here when there is none (it could
    /// not be started, or it is gone).
    fn hand_on(mut self) {
        {
            let mut state = self.owner.queue().lock();
            if state.waiting.is_empty() {
                state.writing = false;
                self.done = true;
                return;
            }
        }
        let Some(writer) = self.owner.queue().writer() else {
            return self.write_waiting();
        };
        if let Err(mpsc::SendError(job)) = writer.send(Box::new(move || self.write_waiting())) {
            job();
        }
    }

    /// Writes batches of the rows waiting, oldest first, until none waits.
    fn write_waiting(mut self) {
        loop {
            let queue = self.owner.queue();
            let waiting = queue.lock().waiting.len();
            if delay_before_batch(waiting, queue.coming.load(Ordering::Relaxed)) {
                std::thread::sleep(queue.delay);
            }
            let mut state = self.owner.queue().lock();
            if state.waiting.is_empty() {
                state.writing = false;
                self.done = true;
                return;
            }
            let take = state.waiting.len().min(MAX_BATCH_ROWS);
            let (rows, senders): (Vec<R::Row>, Vec<oneshot::Sender<R::Out>>) =
                state.waiting.drain(..take).unzip();
            drop(state);
            for (sender, out) in senders.into_iter().zip(write_batch(&self.owner, rows)) {
                // A caller that stopped waiting (its connection closed) has
                // its row written all the same.
                let _ = sender.send(out);
            }
        }
    }
}

impl<R: Rows> Drop for Writing<R> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let waiting = {
            let mut state = self.owner.queue().lock();
            state.writing = false;
            std::mem::take(&mut state.waiting)
        };
        if !waiting.is_empty() {
            tracing::error!(
                rows = waiting.len(),
                "journal: rows waiting to be written were left unwritten; each is reported not recorded"
            );
        }
        for (_, sender) in waiting {
            let _ = sender.send(self.owner.failed());
        }
    }
}

/// `owner`'s writing of `rows`, or its failure for each row when the
/// writing panics or gives a wrong number of outcomes
/// ([`super::batch::write_batch`]).
fn write_batch<R: Rows>(owner: &R, rows: Vec<R::Row>) -> Vec<R::Out> {
    super::batch::write_batch(rows, |rows| owner.write(rows), || owner.failed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{mpsc, Arc};
    use std::thread::ThreadId;

    /// A queue of numbers whose write doubles each (and panics on
    /// `PANICS`), noting every batch and the thread that wrote it; a write
    /// may be held until the test lets it go.
    #[derive(Default)]
    struct Shared {
        queue: RowQueue<u64, u64>,
        batches: std::sync::Mutex<Vec<(Vec<u64>, ThreadId)>>,
        /// While set, each write waits for a message on it first.
        hold: std::sync::Mutex<Option<mpsc::Receiver<()>>>,
        writes: AtomicUsize,
    }

    const PANICS: u64 = 666;
    const FAILED: u64 = u64::MAX;

    #[derive(Clone)]
    struct Numbers(Arc<Shared>);

    impl Rows for Numbers {
        type Row = u64;
        type Out = u64;
        fn queue(&self) -> &RowQueue<u64, u64> {
            &self.0.queue
        }
        fn write(&self, rows: Vec<u64>) -> Vec<u64> {
            self.0.writes.fetch_add(1, Ordering::SeqCst);
            if let Some(hold) = self.0.hold.lock().unwrap().as_ref() {
                hold.recv().expect("the test lets the write go");
            }
            assert!(!rows.is_empty() && rows.len() <= MAX_BATCH_ROWS);
            self.0
                .batches
                .lock()
                .unwrap()
                .push((rows.clone(), std::thread::current().id()));
            assert!(!rows.contains(&PANICS), "a row that cannot be written");
            rows.iter().map(|r| r * 2).collect()
        }
        fn failed(&self) -> u64 {
            FAILED
        }
    }

    fn numbers() -> Numbers {
        Numbers(Arc::new(Shared::default()))
    }

    /// Whether the queue is idle: nobody writing, no row waiting.
    fn idle(n: &Numbers) -> bool {
        let state = n.0.queue.lock();
        !state.writing && state.waiting.is_empty()
    }

    /// Waits until `n` has started `writes` writes.
    fn until_writes(n: &Numbers, writes: usize) {
        until("no write started", || {
            n.0.writes.load(Ordering::SeqCst) >= writes
        });
    }

    /// Waits until `done()`, failing with `never` after 10 s.
    fn until(never: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{never}");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn a_row_alone_is_written_at_once_on_the_callers_thread() {
        let n = numbers();
        let Pending::Now(out) = submit(n.clone(), 21) else {
            panic!("a row alone waited");
        };
        assert_eq!(out, 42);
        let batches = n.0.batches.lock().unwrap().clone();
        assert_eq!(batches, vec![(vec![21], std::thread::current().id())]);
        assert!(idle(&n));
    }

    #[test]
    fn concurrent_callers_each_get_their_own_rows_outcome_in_order() {
        let n = numbers();
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let n = n.clone();
                std::thread::spawn(move || {
                    for i in 0..200u64 {
                        let row = t * 1000 + i;
                        assert_eq!(submit(n.clone(), row).wait(|| FAILED), row * 2);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a caller panicked");
        }
        assert!(idle(&n));
        let batches = n.0.batches.lock().unwrap().clone();
        let written: Vec<u64> = batches.iter().flat_map(|(rows, _)| rows.clone()).collect();
        assert_eq!(written.len(), 1600, "each row written once");
        // Each caller's rows were written in the order it queued them.
        for t in 0..8u64 {
            let mine: Vec<u64> = written.iter().copied().filter(|r| r / 1000 == t).collect();
            assert_eq!(mine, (0..200).map(|i| t * 1000 + i).collect::<Vec<_>>());
        }
    }

    /// Holds `n`'s writes until each is let go on the returned sender.
    fn held(n: &Numbers) -> mpsc::Sender<()> {
        let (let_go, hold) = mpsc::channel();
        *n.0.hold.lock().unwrap() = Some(hold);
        let_go
    }

    /// Submits `row` on a thread of its own, returning its outcome and
    /// that thread's id once it is done.
    fn submit_apart(n: &Numbers, row: u64) -> std::thread::JoinHandle<(Pending<u64>, ThreadId)> {
        let n = n.clone();
        std::thread::spawn(move || (submit(n, row), std::thread::current().id()))
    }

    /// Waits until `n` is idle.
    fn until_idle(n: &Numbers) {
        until("the writing never ended", || idle(n));
    }

    #[test]
    fn rows_waiting_are_written_by_the_writer_thread_in_order_and_awaited_without_a_thread() {
        let n = numbers();
        let let_go = held(&n);
        // The first row is written on its caller's thread, held there.
        let first = submit_apart(&n, 1);
        until_writes(&n, 1);
        // More than a batch waits for it, each row with a pending outcome.
        let rows: Vec<u64> = (2..=(MAX_BATCH_ROWS as u64 + 10)).collect();
        let waiting: Vec<Pending<u64>> = rows.iter().map(|&r| submit(n.clone(), r)).collect();
        assert!(waiting.iter().all(|p| matches!(p, Pending::Later(_))));
        let_go.send(()).unwrap();
        let (first, first_thread) = first.join().unwrap();
        assert!(matches!(first, Pending::Now(2)));
        // Written next, oldest first, a batch at most at a time, on
        // another thread: the queue's writer.
        let_go.send(()).unwrap();
        let_go.send(()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let outcomes: Vec<u64> = runtime.block_on(async {
            let mut outcomes = Vec::new();
            for pending in waiting {
                outcomes.push(pending.outcome(|| FAILED).await);
            }
            outcomes
        });
        assert_eq!(outcomes, rows.iter().map(|r| r * 2).collect::<Vec<_>>());
        let batches = n.0.batches.lock().unwrap().clone();
        let sizes: Vec<usize> = batches.iter().map(|(rows, _)| rows.len()).collect();
        assert_eq!(sizes, [1, MAX_BATCH_ROWS, 9]);
        let written: Vec<u64> = batches.iter().flat_map(|(rows, _)| rows.clone()).collect();
        assert_eq!(
            written,
            (1..=(MAX_BATCH_ROWS as u64 + 10)).collect::<Vec<_>>()
        );
        assert_eq!(batches[0].1, first_thread);
        assert_ne!(batches[1].1, first_thread);
        assert_eq!(
            batches[1].1, batches[2].1,
            "one writer wrote the rows waiting"
        );
        until_idle(&n);
    }

    #[test]
    fn a_row_waited_for_on_a_runtimes_worker_is_waited_for_without_a_panic() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let n = numbers();
        let let_go = held(&n);
        let first = submit_apart(&n, 1);
        until_writes(&n, 1);
        // A task on a worker queues its row and waits for it on its thread.
        let waiter = {
            let n = n.clone();
            runtime.spawn(async move { submit(n, 2).wait(|| FAILED) })
        };
        until("the row was never queued", || {
            !n.0.queue.lock().waiting.is_empty()
        });
        let_go.send(()).unwrap();
        let_go.send(()).unwrap();
        assert!(matches!(first.join().unwrap().0, Pending::Now(2)));
        assert_eq!(
            runtime.block_on(waiter).expect("the waiting task panicked"),
            4
        );
        until_idle(&n);
    }

    #[test]
    fn the_writer_waits_before_a_batch_only_when_enough_rows_are_coming_to_share_it() {
        // Nothing waiting: nothing to write, whatever is coming.
        assert!(!delay_before_batch(0, COMMIT_SIBLINGS));
        // Too few coming: the rows waiting are written at once.
        assert!(!delay_before_batch(1, 0));
        assert!(!delay_before_batch(1, COMMIT_SIBLINGS - 1));
        assert!(!delay_before_batch(MAX_BATCH_ROWS - 1, COMMIT_SIBLINGS - 1));
        // Enough coming, and room in the batch: it waits for them.
        assert!(delay_before_batch(1, COMMIT_SIBLINGS));
        assert!(delay_before_batch(MAX_BATCH_ROWS - 1, 1000));
        // A full batch is written at once.
        assert!(!delay_before_batch(MAX_BATCH_ROWS, 1000));
        assert!(!delay_before_batch(MAX_BATCH_ROWS + 1, COMMIT_SIBLINGS));
    }

    /// Rows 1 (written on its caller's thread, held), then 2 (waiting for
    /// it), with `coming` rows on their way and a writer's delay of a
    /// second; once row 1 is written and row 2 handed to the writer thread,
    /// rows 3 and 4 are submitted: at once with enough rows coming (the
    /// writer is then waiting out its delay), else once the writer has
    /// taken row 2 (which it does at once). The batches written.
    fn batches_with_rows_coming(coming: usize) -> Vec<Vec<u64>> {
        let mut shared = Shared::default();
        shared.queue.delay = std::time::Duration::from_secs(1);
        shared.queue.coming.store(coming, Ordering::Relaxed);
        let n = Numbers(Arc::new(shared));
        let let_go = held(&n);
        let first = submit_apart(&n, 1);
        until_writes(&n, 1);
        let second = submit(n.clone(), 2);
        let_go.send(()).unwrap();
        assert!(matches!(first.join().unwrap().0, Pending::Now(2)));
        if !delay_before_batch(1, coming) {
            until_writes(&n, 2);
        }
        let later = [submit(n.clone(), 3), submit(n.clone(), 4)];
        for _ in 0..3 {
            let_go.send(()).unwrap();
        }
        assert_eq!(second.wait(|| FAILED), 4);
        for (pending, row) in later.into_iter().zip([3, 4]) {
            assert_eq!(pending.wait(|| FAILED), row * 2);
        }
        until_idle(&n);
        let batches = n.0.batches.lock().unwrap().clone();
        batches.into_iter().map(|(rows, _)| rows).collect()
    }

    #[test]
    fn with_enough_rows_coming_the_writer_waits_and_writes_them_in_one_batch() {
        assert_eq!(
            batches_with_rows_coming(COMMIT_SIBLINGS),
            [vec![1], vec![2, 3, 4]]
        );
    }

    #[test]
    fn with_too_few_rows_coming_the_writer_writes_the_rows_waiting_at_once() {
        assert_eq!(
            batches_with_rows_coming(COMMIT_SIBLINGS - 1),
            [vec![1], vec![2], vec![3, 4]]
        );
    }

    #[test]
    fn a_batch_of_rows_waiting_whose_writing_panics_fails_those_rows_alone() {
        let n = numbers();
        let let_go = held(&n);
        let first = submit_apart(&n, 1);
        until_writes(&n, 1);
        let doomed = [submit(n.clone(), 2), submit(n.clone(), PANICS)];
        let_go.send(()).unwrap();
        let_go.send(()).unwrap();
        assert!(matches!(first.join().unwrap().0, Pending::Now(2)));
        for pending in doomed {
            assert_eq!(pending.wait(|| 0), FAILED);
        }
        until_idle(&n);
        *n.0.hold.lock().unwrap() = None;
        assert!(matches!(submit(n.clone(), 5), Pending::Now(10)));
    }

    #[test]
    fn a_batch_whose_writing_panics_fails_its_rows_alone() {
        let n = numbers();
        assert_eq!(submit(n.clone(), PANICS).wait(|| 0), FAILED);
        assert!(idle(&n), "the next row is written as usual");
        assert_eq!(submit(n.clone(), 5).wait(|| 0), 10);
    }

    #[test]
    fn a_writing_dropped_unfinished_fails_every_row_waiting_and_ends() {
        let n = numbers();
        n.0.queue.lock().writing = true;
        let waiting = [submit(n.clone(), 1), submit(n.clone(), 2)];
        assert!(waiting.iter().all(|p| matches!(p, Pending::Later(_))));
        // As a writing that ends with a panic outside its batches' writes.
        drop(Writing {
            owner: n.clone(),
            done: false,
        });
        for pending in waiting {
            assert_eq!(pending.wait(|| 0), FAILED);
        }
        assert!(idle(&n));
        assert_eq!(n.0.writes.load(Ordering::SeqCst), 0, "nothing was written");
        assert!(matches!(submit(n.clone(), 3), Pending::Now(6)));
    }

    #[test]
    fn with_its_writer_thread_gone_the_rows_waiting_are_written_by_whoever_hands_them_on() {
        let n = numbers();
        let (gone, _) = mpsc::channel::<Job>();
        *n.0.queue.writer.lock().unwrap() = Some(gone);
        let let_go = held(&n);
        let first = submit_apart(&n, 1);
        until_writes(&n, 1);
        let second = submit(n.clone(), 2);
        let_go.send(()).unwrap();
        let_go.send(()).unwrap();
        let (first, first_thread) = first.join().unwrap();
        assert!(matches!(first, Pending::Now(2)));
        assert_eq!(second.wait(|| 0), 4);
        let batches = n.0.batches.lock().unwrap().clone();
        assert_eq!(
            batches,
            vec![(vec![1], first_thread), (vec![2], first_thread)]
        );
        assert!(idle(&n));
    }
}
