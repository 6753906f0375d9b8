//! A deploy placed in its stack's queue inside the transaction that
//! admits it (`Journal::admit_deploy_to_run` with a `Placer`): what the
//! queue cancels is journaled in that transaction, and a transaction that
//! does not commit leaves neither the journal nor the queue changed.

use std::sync::{Arc, Mutex};

use redeploy_host::journal::*;
use redeploy_host::queue::{Admit, Placement, StackQueue};

use super::admission::{commit, deploy};
use super::Store;

/// One stack's queue as the placer: the runner's policy
/// ([`StackQueue::place`]) without the runner around it.
#[derive(Default)]
struct OneQueue {
    queue: Mutex<StackQueue>,
    undone: Mutex<Vec<i64>>,
}

impl Placer for OneQueue {
    fn place(
        &self,
        record: &DeployRecord,
        cancelled: &mut dyn FnMut(i64) -> bool,
    ) -> Option<Placement> {
        let mut queue = self.queue.lock().unwrap();
        let placement = queue.place(&record.queued.stack, record.slot());
        match placement.admit {
            Admit::Cancel { because_of, .. } if cancelled(because_of) => {
                queue.undo(&placement);
                None
            }
            _ => Some(placement),
        }
    }

    fn unplace(&self, placement: Placement) {
        self.queue.lock().unwrap().undo(&placement);
        self.undone.lock().unwrap().push(placement.id);
    }
}

fn with_services(sha: &str, delivery: &str, at: i64, services: &[&str]) -> NewDeploy {
    NewDeploy {
        services: services.iter().map(|s| s.to_string()).collect(),
        ..deploy(Some(sha), delivery, at)
    }
}

/// Admits `d` (commit `sha` after `before`) through `placer`: the deploy
/// and what was placed.
fn admit(
    j: &Journal,
    placer: &Arc<OneQueue>,
    d: &NewDeploy,
    before: &str,
) -> (i64, Option<Placed>) {
    let sha = d.sha.as_deref().unwrap();
    let (admitted, queued) = j
        .admit_deploy_to_run(d, &commit(sha, before, false), Some(placer.clone()))
        .unwrap();
    let queued = queued.unwrap_or_else(|| panic!("{admitted:?} queued nothing"));
    (queued.record.id, queued.placed)
}

/// What `placed` says the queue decided, and whether the deploy it
/// superseded was cancelled.
fn decided(placed: Option<Placed>) -> (Admit, bool) {
    let placed = placed.expect("placed");
    (placed.placement.admit, placed.superseded_cancelled)
}

/// Deploy `id`'s state, reason and the deploy it was cancelled for.
fn cancelled_for(j: &Journal, id: i64) -> (DeployState, Option<String>, Option<i64>) {
    let d = j.deploy(id).unwrap().unwrap();
    (d.state, d.detail, d.superseded_by)
}

/// The queue's cancellations are journaled by the admission that decides
/// them: the pending deploy a newer one supersedes, and a duplicate of the
/// pending commit, each with its reason and the deploy it was cancelled
/// for, which takes its services. A deploy cancelled for one an operator
/// cancelled meanwhile is not placed (the runner decides it after the
/// commit).
fn the_admission_journals_what_the_queue_cancels(store: &Store) {
    let j = store.open();
    let placer = Arc::new(OneQueue::default());
    let (first, p) = admit(&j, &placer, &with_services("a", "d1", 1, &["web"]), "x");
    let pending = Admit::Pending {
        superseded: None,
        start_worker: true,
    };
    assert_eq!(decided(p), (pending, false));
    assert_eq!(j.deploy(first).unwrap().unwrap().state, DeployState::Queued);

    // A newer commit supersedes the pending one, in the same transaction.
    let (second, p) = admit(&j, &placer, &with_services("b", "d2", 2, &["worker"]), "a");
    let reason = format!("superseded by commit b (#{second})");
    let superseding = Admit::Pending {
        superseded: Some((first, reason.clone())),
        start_worker: false,
    };
    assert_eq!(decided(p), (superseding, true));
    assert_eq!(
        cancelled_for(&j, first),
        (DeployState::Cancelled, Some(reason), Some(second))
    );
    let pending = j.deploy(second).unwrap().unwrap();
    assert_eq!(pending.state, DeployState::Queued);
    assert_eq!(pending.queued.services, ["worker", "web"]);

    // The pending commit again: the new deploy is cancelled for it, which
    // takes its services.
    let (third, p) = admit(&j, &placer, &with_services("b", "d3", 3, &["cron"]), "a");
    let reason = format!("the same commit is already queued (#{second})");
    let duplicate = Admit::Cancel {
        reason: reason.clone(),
        because_of: second,
    };
    assert_eq!(decided(p), (duplicate, false));
    assert_eq!(
        cancelled_for(&j, third),
        (DeployState::Cancelled, Some(reason), Some(second))
    );
    let pending = j.deploy(second).unwrap().unwrap();
    assert_eq!(pending.state, DeployState::Queued);
    assert_eq!(pending.queued.services, ["worker", "web", "cron"]);

    // An operator cancels the pending deploy behind the queue's back: a
    // duplicate of it is not placed, and stays queued for the runner.
    j.cancel_deploy(second, "by an operator", 4).unwrap();
    let queue = placer.queue.lock().unwrap().clone();
    let (fourth, p) = admit(&j, &placer, &deploy(Some("b"), "d4", 5), "a");
    assert_eq!(p, None);
    assert_eq!(
        *placer.queue.lock().unwrap(),
        queue,
        "the queue is as it was"
    );
    assert_eq!(
        j.deploy(fourth).unwrap().unwrap().state,
        DeployState::Queued
    );
    // A newer commit supersedes it in the queue, and finds it already
    // cancelled in the journal: nothing more is cancelled.
    let (fifth, p) = admit(&j, &placer, &deploy(Some("c"), "d5", 6), "b");
    let reason = format!("superseded by commit c (#{fifth})");
    let superseding = Admit::Pending {
        superseded: Some((second, reason)),
        start_worker: false,
    };
    assert_eq!(decided(p), (superseding, false));
    let by_operator = (DeployState::Cancelled, Some("by an operator".into()), None);
    assert_eq!(cancelled_for(&j, second), by_operator);
    assert!(placer.undone.lock().unwrap().is_empty());
}

/// Nothing is placed on PostgreSQL: a pooled reader could look for a
/// placed deploy before its transaction commits.
fn nothing_is_placed(store: &Store) {
    let j = store.open();
    let placer = Arc::new(OneQueue::default());
    let d = deploy(Some("a"), "d1", 1);
    let (_, queued) = j
        .admit_deploy_to_run(&d, &commit("a", "x", false), Some(placer.clone()))
        .unwrap();
    assert_eq!(queued.unwrap().placed, None);
    assert_eq!(*placer.queue.lock().unwrap(), StackQueue::default());
}

/// A deploy the journal does not hold, or holds cancelled or being
/// cancelled, is no reason to cancel another for; one queued or running is.
fn a_deploy_gone_or_cancelled_is_no_reason_to_cancel_for(store: &Store) {
    let j = store.open();
    let (_, queued) = j
        .admit_deploy_to_run(&deploy(Some("a"), "d1", 1), &commit("a", "x", false), None)
        .unwrap();
    let id = queued.unwrap().record.id;
    assert!(!j.gone_or_cancelling(id).unwrap(), "queued");
    assert!(j.gone_or_cancelling(id + 1).unwrap(), "never admitted");
    j.transition(id, DeployState::Started, 2, &TransitionDetail::default())
        .unwrap();
    assert!(!j.gone_or_cancelling(id).unwrap(), "running");
    assert_eq!(
        j.cancel_deploy(id, "stop", 3).unwrap(),
        CancelOutcome::Requested
    );
    assert!(j.gone_or_cancelling(id).unwrap(), "being cancelled");
}

/// An admission whose transaction fails after its deploy was placed (a
/// row the journal cannot read, written behind its back) records nothing,
/// and the placement is undone: the queue is as it was.
fn a_placement_whose_admission_fails_is_undone(store: &Store) {
    let j = store.open();
    let placer = Arc::new(OneQueue::default());
    let (first, _) = admit(&j, &placer, &deploy(Some("a"), "d1", 1), "x");
    store.execute(&format!(
        "UPDATE deploys SET services = 'not json' WHERE id = {first}"
    ));
    let queue = placer.queue.lock().unwrap().clone();
    // Superseding the pending deploy reads its services; so does
    // cancelling a duplicate of it for it.
    for (n, sha) in [(2, "b"), (3, "a")] {
        let d = deploy(Some(sha), &format!("d{n}"), n);
        let outcome = j.admit_deploy_to_run(&d, &commit(sha, "a", false), Some(placer.clone()));
        assert!(outcome.is_err(), "{outcome:?}");
        assert_eq!(*placer.queue.lock().unwrap(), queue, "undone");
    }
    assert_eq!(placer.undone.lock().unwrap().len(), 2);
    assert_eq!(store.query_i64("SELECT COUNT(*) FROM deploys"), 1);
    assert_eq!(
        store.query_i64(&format!(
            "SELECT COUNT(*) FROM deploys WHERE id = {first} AND state = 'queued'"
        )),
        1
    );
}

/// Placement is SQLite's alone.
mod sqlite {
    use super::super::Store;

    #[test]
    fn the_admission_journals_what_the_queue_cancels() {
        super::the_admission_journals_what_the_queue_cancels(&Store::sqlite("placed"));
    }

    #[test]
    fn a_placement_whose_admission_fails_is_undone() {
        super::a_placement_whose_admission_fails_is_undone(&Store::sqlite("unplaced"));
    }
}

#[test]
fn nothing_is_placed_on_postgres() {
    nothing_is_placed(&Store::postgres("not-placed"));
}

super::on_both_backends!(a_deploy_gone_or_cancelled_is_no_reason_to_cancel_for);
