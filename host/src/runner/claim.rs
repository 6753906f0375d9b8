//! Claiming a stack's next deploy and recording it started
//! ([`crate::journal::Journal::claim_and_start`]), tried again while the
//! journal cannot be written and the stack is still this runner's. A try
//! whose commit went through with its answer lost is found and run: left
//! as it was, its deploy would stay `started` with no command, and
//! recovery would record it `interrupted`.

use super::retry::Backoff;
use super::Runner;
use crate::journal::{now_ms, Claimed, Start};

impl Runner {
    /// The claim of `stack`'s next deploy, by `runner` (this process's
    /// replica name), as `start` says; `None` when no try got an answer
    /// within [`super::JOURNAL_RETRY_FOR`], or `is_lost` says the stack's
    /// lease may be lost, or the runner is stopping. A try found to have committed after all returns
    /// the deploy it started, without the deploys it cancelled (they are
    /// journaled, but not told of).
    pub(super) async fn claim_retried(
        &self,
        stack: &str,
        runner: &str,
        start: &Start<'_>,
        is_lost: &(dyn Fn() -> bool + Sync),
    ) -> Option<Claimed> {
        let journal = &self.inner.journal;
        let mut backoff = Backoff::new();
        loop {
            let at_ms = now_ms();
            let mut error = match journal.claim_and_start(stack, at_ms, start) {
                Ok(claimed) => return Some(claimed),
                Err(e) => e,
            };
            // Whether the try committed all the same, asked until the
            // journal answers; a try that did not is made again.
            loop {
                // At shutdown the deploy stays queued, for the next start:
                // claimed then, it would be interrupted, never run again.
                let stopping = self
                    .inner
                    .stopping
                    .load(std::sync::atomic::Ordering::SeqCst);
                let wait = backoff.next_wait().filter(|_| !is_lost() && !stopping);
                let Some(wait) = wait else {
                    tracing::error!(stack, error = %error, "journal: cannot claim and start the stack's next deploy; not running it");
                    return None;
                };
                tracing::warn!(stack, error = %error, retry_in = ?wait, "journal: cannot claim and start the stack's next deploy yet; retrying");
                backoff.sleep().await;
                match journal.started_by(stack, runner, at_ms) {
                    Ok(Some(record)) => {
                        tracing::warn!(
                            deploy = record.id,
                            stack,
                            "journal: the claim's commit went through, its answer lost; running the deploy it started"
                        );
                        return Some(Claimed {
                            next: Some(record),
                            ..Claimed::default()
                        });
                    }
                    Ok(None) => break,
                    Err(e) => error = e,
                }
            }
        }
    }
}
