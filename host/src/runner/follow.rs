//! A replica's runner following the rest of the cluster
//! ([`crate::cluster`]): deploys other replicas queued, and deploys of
//! replicas that died.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use super::Runner;
use crate::cluster::{Cluster, Wake, SWEEP_EVERY};
use crate::journal::{now_ms, DeployObserver, DeployState};

impl Runner {
    /// Until aborted: whenever another replica announces a queued deploy,
    /// and every [`SWEEP_EVERY`] in any case, hands every queued deploy of
    /// the journal to this runner (those it has already change nothing),
    /// and recovers the deploys that replicas which died left `started`
    /// once their stack's lease ran out. Wake-ups that arrive together are
    /// handled with one read.
    pub fn follow(
        &self,
        cluster: Arc<Cluster>,
        observer: Option<Arc<dyn DeployObserver>>,
    ) -> tokio::task::JoinHandle<()> {
        let runner = self.clone();
        let mut wakes = cluster.subscribe();
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let recover = tokio::select! {
                    _ = sweep.tick() => true,
                    wake = wakes.recv() => match wake {
                        Ok(Wake::Queued(_)) => false,
                        Ok(Wake::Released(_)) => continue,
                        Ok(Wake::Resync) | Err(RecvError::Lagged(_)) => true,
                        Err(RecvError::Closed) => return,
                    },
                };
                // What else arrived meanwhile is covered by this one read.
                while let Ok(wake) = wakes.try_recv() {
                    let _ = wake;
                }
                if recover {
                    runner.recover_dead(&cluster, observer.as_deref()).await;
                }
                runner.take_queued();
            }
        })
    }

    /// Until aborted: every [`SWEEP_EVERY`], hands the queued deploys of
    /// the journal nobody runs to this runner ([`Runner::take_left_queued`]),
    /// as [`Runner::follow`] does on a journal replicas share. A deploy whose claim failed (the journal could not
    /// be written, a full disk, for longer than the claim's retries) stays
    /// queued: it runs once the journal can be written again, not only
    /// when the stack's next delivery comes, or a restart.
    pub fn sweep(&self) -> tokio::task::JoinHandle<()> {
        let runner = self.clone();
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is at once: the queued deploys were just resumed.
            sweep.tick().await;
            loop {
                sweep.tick().await;
                runner.take_left_queued();
            }
        })
    }

    /// Hands this runner the queued deploys of the journal that were
    /// queued at least [`SWEEP_EVERY`] ago, of stacks its configuration
    /// has: on SQLite, another process on the state directory (a git
    /// hook's `run-queued`, `trigger --local`) runs what it queued, and
    /// this one must not take a deploy of a stack it does not have (its
    /// claim would cancel it as no longer configured) nor race that
    /// runner for one it just queued. What is left is a deploy nobody
    /// runs: one whose claim failed.
    fn take_left_queued(&self) {
        let config = self.inner.config.current();
        let left_before = now_ms() - SWEEP_EVERY.as_millis() as i64;
        match self.inner.journal.queued_deploys() {
            Ok(queued) => {
                for record in queued.iter().filter(|r| {
                    r.queued.created_at_ms <= left_before && config.stack(&r.queued.stack).is_some()
                }) {
                    self.enqueue(record);
                }
            }
            Err(e) => tracing::warn!(error = %e, "journal: cannot read the queued deploys"),
        }
    }

    /// Hands every queued deploy of the journal to this runner.
    fn take_queued(&self) {
        match self.inner.journal.queued_deploys() {
            Ok(queued) => {
                for record in &queued {
                    self.enqueue(record);
                }
            }
            Err(e) => tracing::warn!(error = %e, "journal: cannot read the queued deploys"),
        }
    }

    /// Recovers the deploys left `started` on stacks whose lease is free.
    async fn recover_dead(&self, cluster: &Arc<Cluster>, observer: Option<&dyn DeployObserver>) {
        let locks = crate::supervise::Locks::Leases(cluster.clone());
        match crate::supervise::recover_free_stacks(cluster.journal(), &locks, observer).await {
            Ok(ids) => {
                for id in ids {
                    let stack = cluster
                        .journal()
                        .deploy(id)
                        .ok()
                        .flatten()
                        .map(|d| d.queued.stack);
                    if let Some(stack) = stack {
                        self.inner.metrics.deploy_finished(
                            &stack,
                            DeployState::Interrupted,
                            now_ms(),
                        );
                    }
                }
            }
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "cannot recover the deploys of stopped replicas"
            ),
        }
    }
}
