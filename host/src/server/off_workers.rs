//! Where a delivery's blocking dispatch runs: inline in `block_in_place`
//! on the worker that read it when no other delivery is being dispatched,
//! else on tokio's blocking pool ([`off_the_workers`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Whether a delivery is dispatched on the thread that read it rather than
/// handed to tokio's blocking pool: when no other delivery is being
/// dispatched (`others` is how many are), on a multi-threaded runtime.
///
/// Either way the dispatch blocks a thread, not the runtime: inline it
/// runs in `block_in_place`, which hands this worker's other tasks to
/// another thread. The hand-off to the blocking pool puts two wake-ups of
/// sleeping threads on the request's path, one there and one back (about
/// 45 µs of a delivery's 375 at one connection, BENCHMARKS.md part 5,
/// tenth pass); `block_in_place` wakes (or, with none idle, starts) the
/// thread that takes over the worker's other tasks beside the dispatch
/// instead of before it. Under concurrent deliveries it is the other way
/// round: each `block_in_place` moves a worker's core to another thread,
/// and the blocking pool answered more requests, with a lower p99.
fn dispatch_inline(others: usize, flavor: Option<tokio::runtime::RuntimeFlavor>) -> bool {
    others == 0 && flavor == Some(tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Counts a delivery in [`super::AppState::dispatching`] until dropped: moved
/// into the dispatch, so it counts the dispatch, not the request.
#[must_use]
struct Dispatching(Arc<AtomicUsize>);

impl Dispatching {
    /// Counts one more delivery; returns how many others were counted. A
    /// count only steers guesses ([`dispatch_inline`]'s, and whether the
    /// journal's row queue waits for rows on their way before a batch), so
    /// no ordering with other memory is needed.
    fn enter(count: &Arc<AtomicUsize>) -> (Self, usize) {
        let others = count.fetch_add(1, Ordering::Relaxed);
        (Dispatching(count.clone()), others)
    }
}

impl Drop for Dispatching {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The message of a caught panic, for the log.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// Runs the blocking `run`, counted in `count` until it ends, inline in
/// `block_in_place` or on tokio's blocking pool as [`dispatch_inline`]
/// says, and returns its result, or what became of a panic in it.
pub(super) async fn off_the_workers<T: Send + 'static>(
    count: &Arc<AtomicUsize>,
    run: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (counted, others) = Dispatching::enter(count);
    let run = move || {
        let _counted = counted;
        run()
    };
    let flavor = tokio::runtime::Handle::try_current()
        .ok()
        .map(|h| h.runtime_flavor());
    if dispatch_inline(others, flavor) {
        // A multi-threaded runtime, so `block_in_place` itself does not
        // panic; a panic is the dispatch's.
        tokio::task::block_in_place(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
                .map_err(|payload| format!("the dispatch panicked: {}", panic_message(&*payload)))
        })
    } else {
        tokio::task::spawn_blocking(run)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::{dispatch_inline, off_the_workers, panic_message, Dispatching};

    #[test]
    fn a_delivery_is_dispatched_inline_only_alone_on_a_multi_threaded_runtime() {
        assert!(dispatch_inline(0, Some(RuntimeFlavor::MultiThread)));
        assert!(!dispatch_inline(1, Some(RuntimeFlavor::MultiThread)));
        assert!(!dispatch_inline(63, Some(RuntimeFlavor::MultiThread)));
        // `block_in_place` panics on a current-thread runtime.
        assert!(!dispatch_inline(0, Some(RuntimeFlavor::CurrentThread)));
        assert!(!dispatch_inline(0, None));
    }

    /// Runs `run` through [`off_the_workers`] from a task on a worker of
    /// the test's multi-threaded runtime, as a connection's handler runs:
    /// its result, and whether it ran on the thread that called it.
    async fn from_a_worker<T: Send + 'static>(
        count: &Arc<AtomicUsize>,
        run: impl FnOnce() -> T + Send + 'static,
    ) -> (Result<T, String>, bool) {
        let count = count.clone();
        tokio::spawn(async move {
            let caller = std::thread::current().id();
            let result =
                off_the_workers(&count, move || (run(), std::thread::current().id())).await;
            match result {
                Ok((value, ran_on)) => (Ok(value), ran_on == caller),
                Err(e) => (Err(e), false),
            }
        })
        .await
        .expect("the handler task")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dispatch_alone_runs_inline_and_one_beside_another_on_the_pool() {
        let count = Arc::new(AtomicUsize::new(0));
        let (answer, inline) = from_a_worker(&count, || 7).await;
        assert_eq!(answer, Ok(7));
        assert!(inline, "alone, it runs on the thread that read it");
        assert_eq!(count.load(Ordering::Relaxed), 0);

        let (_another, others) = Dispatching::enter(&count);
        assert_eq!(others, 0);
        let (answer, inline) = from_a_worker(&count, || 8).await;
        assert_eq!(answer, Ok(8));
        assert!(!inline, "beside another, it runs on the blocking pool");
        assert_eq!(count.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_a_dispatch_is_an_error_either_way_and_the_count_comes_back_down() {
        let count = Arc::new(AtomicUsize::new(0));
        let (answer, _) = from_a_worker(&count, || -> u8 { panic!("a bug in the dispatch") }).await;
        assert_eq!(
            answer,
            Err("the dispatch panicked: a bug in the dispatch".to_owned())
        );
        assert_eq!(count.load(Ordering::Relaxed), 0);

        let another = Dispatching::enter(&count).0;
        let deploy = 7;
        let (answer, _) =
            from_a_worker(&count, move || -> u8 { panic!("deploy {deploy} failed") }).await;
        let error = answer.expect_err("the pool's task panicked");
        assert!(error.contains("panic"), "{error}");
        drop(another);
        assert_eq!(count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_panic_message_is_read_from_either_payload() {
        let literal = std::panic::catch_unwind(|| panic!("a bug")).expect_err("it panicked");
        assert_eq!(panic_message(&*literal), "a bug");
        let formatted =
            std::panic::catch_unwind(|| std::panic::panic_any(String::from("deploy 7")))
                .expect_err("it panicked");
        assert!(formatted.is::<String>());
        assert_eq!(panic_message(&*formatted), "deploy 7");
        let other =
            std::panic::catch_unwind(|| std::panic::panic_any(7_u8)).expect_err("it panicked");
        assert_eq!(panic_message(&*other), "a panic without a message");
    }
}
