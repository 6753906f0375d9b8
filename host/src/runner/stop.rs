//! What stops a running deploy ([`Stop`]): the end of shutdown's grace
//! period, the loss of the stack's lock, or an operator's cancel request in
//! the journal, whichever replica recorded it.

use std::time::Duration;

use tokio::sync::watch;

use super::Runner;

/// Why a running deploy must stop, if it must.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// It runs on.
    Run,
    /// The server is shutting down and the grace period is over: SIGTERM,
    /// then SIGKILL.
    Shutdown,
    /// The stack's lease may be lost: another replica may start the stack's
    /// next deploy soon, so this one is killed at once.
    LeaseLost,
    /// An operator cancelled it (the journal's `cancel_requested`): SIGTERM,
    /// then SIGKILL; recorded `cancelled`.
    Cancelled,
}

/// How often a running deploy's runner looks in the journal for an
/// operator's request to cancel it (any replica may have recorded it).
pub const CANCEL_POLL: Duration = Duration::from_secs(1);

/// Why a deploy stopped when redeploy shut down while it ran.
pub const SHUTDOWN_REASON: &str = "stopped: redeploy shut down while it ran";

/// Why a deploy was cancelled while it ran, when the journal's request
/// cannot be read back.
pub const CANCELLED_REASON: &str = "cancelled by an operator while it ran";

impl Runner {
    /// What stops deploy `id`: the end of shutdown's grace period, the
    /// loss of the stack's lock (`lost`), or an operator's cancel request,
    /// whichever comes first; and the task that watches them, to abort once
    /// the deploy ends.
    pub(super) fn stop_signal(
        &self,
        id: i64,
        lost: Option<watch::Receiver<bool>>,
    ) -> (watch::Receiver<Stop>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(Stop::Run);
        let mut kill = self.inner.kill.subscribe();
        let journal = self.inner.journal.clone();
        let watcher = tokio::spawn(async move {
            let cancelled = async move {
                let mut every = tokio::time::interval(CANCEL_POLL);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    every.tick().await;
                    let journal = journal.clone();
                    let asked =
                        tokio::task::spawn_blocking(move || journal.cancel_requested(id)).await;
                    match asked {
                        Ok(Ok(Some(_))) => return,
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => {
                            tracing::debug!(deploy = id, error = %e, "journal: cannot read the deploy's cancel request; looking again")
                        }
                        Err(_) => {}
                    }
                }
            };
            let lease_lost = async move {
                if let Some(mut lost) = lost {
                    // An error means the keeper ended without losing it.
                    if lost.wait_for(|l| *l).await.is_ok() {
                        return;
                    }
                }
                std::future::pending::<()>().await
            };
            let why = tokio::select! {
                _ = kill.wait_for(|k| *k) => Stop::Shutdown,
                () = lease_lost => Stop::LeaseLost,
                () = cancelled => Stop::Cancelled,
            };
            let _ = tx.send(why);
        });
        (rx, watcher)
    }
}
