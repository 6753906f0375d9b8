//! Recording a deploy's end, retried while the journal cannot be written
//! (a database restart, a dropped connection) and the stack is still this
//! runner's: left unrecorded, recovery would call the deploy interrupted.

use std::time::Duration;

use super::Runner;
use crate::journal::{now_ms, DeployRecord, DeployState, JournalError, TransitionDetail};

/// How long a runner retries recording a deploy's end while the journal
/// cannot be written (the stack's lease, if any, still held): a database
/// restart or a dropped connection, not an outage.
pub const END_RETRY_FOR: Duration = Duration::from_secs(60);

/// The first wait between tries to record a deploy's end, doubled after
/// each failed try up to [`END_RETRY_MAX_WAIT`].
pub const END_RETRY_FIRST_WAIT: Duration = Duration::from_millis(250);

/// The longest wait between tries to record a deploy's end.
pub const END_RETRY_MAX_WAIT: Duration = Duration::from_secs(5);

impl Runner {
    /// Records that `record` ended in `state` with `detail`, then counts and
    /// tells of it; retried for up to [`END_RETRY_FOR`] while the journal
    /// cannot be written and `is_lost` says the stack is still this
    /// runner's. A try whose commit went through before its answer was lost
    /// finds the deploy ended already.
    pub(super) async fn record_end(
        &self,
        record: &DeployRecord,
        state: DeployState,
        detail: &TransitionDetail,
        is_lost: &(dyn Fn() -> bool + Sync),
    ) {
        let id = record.id;
        let finished_ms = now_ms();
        let mut wait = END_RETRY_FIRST_WAIT;
        let gave_up_at = std::time::Instant::now() + END_RETRY_FOR;
        let recorded = loop {
            match self
                .inner
                .journal
                .transition(id, state, finished_ms, detail)
            {
                Ok(()) => break true,
                // A try whose commit went through, its answer lost (not
                // `interrupted`: recovery records that too, and tells).
                Err(JournalError::IllegalTransition { from, .. })
                    if from == state && state != DeployState::Interrupted =>
                {
                    break true
                }
                Err(JournalError::IllegalTransition { from, .. }) if from.is_final() => {
                    tracing::warn!(
                        deploy = id,
                        recorded = from.as_str(),
                        "journal: the deploy's end was recorded already, by recovery"
                    );
                    break false;
                }
                Err(
                    e @ (JournalError::IllegalTransition { .. }
                    | JournalError::UnknownDeploy { .. }),
                ) => {
                    tracing::error!(deploy = id, error = %e, "journal: cannot record the end of a deploy");
                    break false;
                }
                Err(e) if !is_lost() && std::time::Instant::now() + wait < gave_up_at => {
                    tracing::warn!(deploy = id, error = %e, retry_in = ?wait, "journal: cannot record the end of a deploy yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(END_RETRY_MAX_WAIT);
                }
                Err(e) => {
                    tracing::error!(deploy = id, error = %e, "journal: cannot record the end of a deploy");
                    break false;
                }
            }
        };
        if recorded {
            self.inner
                .metrics
                .deploy_finished(&record.queued.stack, state, finished_ms);
            self.notify(id, state, detail.reason.as_deref());
        }
    }
}
