//! Recording a deploy's end, retried while the journal cannot be written
//! (a database restart, a dropped connection) and the stack is still this
//! runner's: left unrecorded, recovery would call the deploy interrupted.

use super::retry::Backoff;
use super::Runner;
use crate::journal::{now_ms, DeployRecord, DeployState, JournalError, TransitionDetail};

impl Runner {
    /// Records that `record` ended in `state` with `detail`, then counts and
    /// tells of it; retried for up to [`super::JOURNAL_RETRY_FOR`] while the journal
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
        let mut backoff = Backoff::new();
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
                Err(e) => {
                    let Some(wait) = backoff.next_wait().filter(|_| !is_lost()) else {
                        tracing::error!(deploy = id, error = %e, "journal: cannot record the end of a deploy");
                        break false;
                    };
                    tracing::warn!(deploy = id, error = %e, retry_in = ?wait, "journal: cannot record the end of a deploy yet; retrying");
                    backoff.sleep().await;
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
