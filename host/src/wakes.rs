//! Waking a background sender, with the wakes of a burst taken together.
//!
//! The GitHub outbox's sender ([`crate::notify`]) and the notifications'
//! ([`crate::notifications`]) are woken by every deploy transition this
//! process journals, so that what a transition wrote is sent at once. Under
//! load that is thousands of wakes a second, and every pass a wake starts
//! costs journal work of its own (the outbox's reads its rows; the
//! notifications' reads the notices, and fans out those waiting in a write
//! transaction), on the connection the deliveries being answered wait for
//! on SQLite, under the write lock on PostgreSQL. So a sender that is idle
//! (the outbox's last pass sent nothing; the notifications' has no send
//! under way) and whose last pass began less than [`WAKE_COALESCE`] ago
//! waits out the rest of it before it answers a wake ([`after_wake`]): the
//! wakes that arrive meanwhile make one pass, not one each. A pass that
//! sent something is followed by the next at once, and a sender with sends
//! under way answers a wake at once, as before; only an idle sender's
//! reaction to news is delayed, by at most [`WAKE_COALESCE`].

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The least time between the starts of two passes a wake starts: the
/// most a report or a notification waits because another pass began just
/// before it was written. Small beside what a report takes to send (an
/// HTTP request to GitHub, a registry, a mail server), large beside the
/// time between two deploy transitions under load (a fraction of a
/// millisecond).
pub const WAKE_COALESCE: Duration = Duration::from_millis(20);

/// Called when an idle sender is woken: returns [`WAKE_COALESCE`] after
/// `began` (when its last pass began), at once if that is past, or as soon
/// as `stop` changes or its sender is gone. The caller stops as it would
/// without the wait: a new value is seen at its next look at `stop`, a
/// sender gone at its next wait on it.
pub async fn after_wake(began: Instant, stop: &mut watch::Receiver<Option<Instant>>) {
    let until = began + WAKE_COALESCE;
    if Instant::now() >= until {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep_until(until) => {}
        _ = stop.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Waker};

    use super::*;

    /// Whether `after_wake(began, stop)` returns at its first poll.
    fn returns_at_once(began: Instant, stop: &mut watch::Receiver<Option<Instant>>) -> bool {
        let waiting = std::pin::pin!(after_wake(began, stop));
        waiting
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    #[tokio::test]
    async fn a_wake_soon_after_a_pass_waits_out_the_rest_of_the_interval() {
        let (_tx, mut stop) = watch::channel(None);
        // A pass that began just now (or, for the first poll, a moment
        // from now: the poll cannot be late for it).
        assert!(!returns_at_once(Instant::now() + WAKE_COALESCE, &mut stop));
        let began = Instant::now();
        after_wake(began, &mut stop).await;
        assert!(Instant::now() >= began + WAKE_COALESCE);
    }

    #[tokio::test]
    async fn a_wake_long_after_a_pass_returns_at_once() {
        let (_tx, mut stop) = watch::channel(None);
        let began = Instant::now() - WAKE_COALESCE;
        assert!(returns_at_once(began, &mut stop));
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait() {
        let (tx, mut stop) = watch::channel(None);
        tx.send(Some(Instant::now())).unwrap();
        assert!(returns_at_once(Instant::now() + WAKE_COALESCE, &mut stop));
    }

    #[tokio::test]
    async fn a_stop_whose_sender_is_gone_ends_the_wait() {
        let (tx, mut stop) = watch::channel(None);
        drop(tx);
        assert!(returns_at_once(Instant::now() + WAKE_COALESCE, &mut stop));
    }
}
