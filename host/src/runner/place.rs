//! A deploy placed in its stack's queue inside the journal transaction
//! that queues it ([`Placer`]): on a journal no other replica shares, a
//! push the queue cancels at once (a duplicate of the deploy pending or
//! running), or whose deploy supersedes the one pending, then commits and
//! waits for the disk once instead of twice (BENCHMARKS.md, part 5,
//! fifteenth pass).
//!
//! On PostgreSQL nothing is placed there: a deploy is handed over after
//! the commit ([`Runner::enqueue`]), judged by a queue that may not hold
//! every replica's deploys, and the stack's next claim cancels the deploys
//! a newer one superseded
//! ([`crate::journal::Journal::claim_and_start`]). Deploys handed over
//! otherwise (recovery at start, the GitHub deployment fallback, the
//! sweep of deploys nobody runs, [`Runner::sweep`]) go through
//! [`Runner::enqueue`] on SQLite too.

use super::{Enqueued, Runner};
use crate::journal::{DeployRecord, DeployState, Placed, Placer};
use crate::queue::{Admit, Placement};

impl Placer for Runner {
    fn place(
        &self,
        record: &DeployRecord,
        cancelled: &mut dyn FnMut(i64) -> bool,
    ) -> Option<Placement> {
        // The journal asks only on SQLite (whose readers share the
        // writer's one connection: see `Journal::admit_deploy_to_run`);
        // stack locks that are leases would mean replicas share it.
        if self.shares_journal() || !self.runs_deploys() {
            return None;
        }
        let stack = &record.queued.stack;
        // Held until the placement is decided: `cancelled` reads in the
        // caller's transaction and takes no lock.
        let mut queues = self.queues();
        let queue = queues.entry(stack.clone()).or_default();
        let placement = queue.place(stack, record.slot());
        // The deploy it would be cancelled for may have been cancelled
        // meanwhile (by an operator, through another process): then it is
        // no reason, and the queue, which has not forgotten it, must
        // (`Runner::enqueue` does, after the commit).
        if let Admit::Cancel { because_of, .. } = placement.admit {
            if cancelled(because_of) {
                queue.undo(&placement);
                return None;
            }
        }
        Some(placement)
    }

    fn unplace(&self, placement: Placement) {
        // Maybe while a panic unwinds: a poisoned lock is taken anyway.
        let start_worker = self
            .queues()
            .get_mut(&placement.stack)
            .is_some_and(|queue| queue.undo(&placement));
        if start_worker {
            self.spawn_worker(placement.stack);
        }
    }
}

impl Runner {
    /// Takes deploy `record`, which its admission's transaction placed in
    /// its stack's queue (`placed`): tells of what that transaction
    /// journaled, and starts the stack's worker if the queue asks.
    pub fn placed(&self, record: &DeployRecord, placed: Placed) -> Enqueued {
        match placed.placement.admit {
            Admit::Known => Enqueued::Queued,
            Admit::Cancel { reason, .. } => {
                self.report_cancel(record.id, Some(&reason));
                Enqueued::Cancelled(reason)
            }
            Admit::Pending {
                superseded,
                start_worker,
            } => {
                self.notify(record.id, DeployState::Queued, None);
                if let Some((pending, reason)) = superseded.filter(|_| placed.superseded_cancelled)
                {
                    self.report_cancel(pending, Some(&reason));
                }
                if start_worker {
                    self.spawn_worker(record.queued.stack.clone());
                }
                Enqueued::Queued
            }
        }
    }
}
