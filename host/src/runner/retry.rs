//! How a runner retries a journal write it cannot leave undone (starting a
//! deploy it claimed, recording a deploy's end) while the journal cannot
//! be written: a database restart or a dropped connection, not an outage.

use std::time::{Duration, Instant};

/// How long a runner retries a journal write while the journal cannot be
/// written (the stack's lease, if any, still held).
pub const JOURNAL_RETRY_FOR: Duration = Duration::from_secs(60);

/// The first wait between tries, doubled after each failed try up to
/// [`JOURNAL_RETRY_MAX_WAIT`].
pub const JOURNAL_RETRY_FIRST_WAIT: Duration = Duration::from_millis(250);

/// The longest wait between tries.
pub const JOURNAL_RETRY_MAX_WAIT: Duration = Duration::from_secs(5);

/// The waits between the tries of one write, for [`JOURNAL_RETRY_FOR`] in
/// all.
pub(super) struct Backoff {
    wait: Duration,
    gave_up_at: Instant,
}

impl Backoff {
    /// Starts counting now.
    pub(super) fn new() -> Backoff {
        Backoff {
            wait: JOURNAL_RETRY_FIRST_WAIT,
            gave_up_at: Instant::now() + JOURNAL_RETRY_FOR,
        }
    }

    /// The next wait, or `None` once it would end past
    /// [`JOURNAL_RETRY_FOR`].
    pub(super) fn next_wait(&self) -> Option<Duration> {
        (Instant::now() + self.wait < self.gave_up_at).then_some(self.wait)
    }

    /// Sleeps the next wait, and doubles the one after.
    pub(super) async fn sleep(&mut self) {
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(JOURNAL_RETRY_MAX_WAIT);
    }
}
