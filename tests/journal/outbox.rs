//! The outbox on both backends: rows written with their causes, in the
//! order they arose; a row claimed only by the lease's holder and settled
//! once; two replicas on one store never holding the lease at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use redeploy_host::journal::*;

use super::deploys::{new_deploy, new_id};
use super::Store;

/// Long enough that no test machine's pause lets a lease run out by
/// accident.
const LONG: Duration = Duration::from_secs(600);

/// Rows the two racing replicas send.
const RACED_ROWS: usize = 40;

/// A deploy of `stack` whose event carries `event_json`.
fn deploy_with(j: &Journal, stack: &str, delivery: &str, event_json: &str) -> i64 {
    let mut d = new_deploy(stack, Some(delivery), 1);
    d.event_json = event_json.to_owned();
    new_id(j.insert_deploy(&d).unwrap())
}

fn request_for(stack: &str, delivery: &str, deploy_id: Option<i64>) -> NewDeploymentRequest {
    NewDeploymentRequest {
        stack: stack.into(),
        delivery_id: Some(delivery.into()),
        deploy_id,
        git_ref: Some("refs/heads/main".into()),
        sha: Some("a".repeat(40)),
        request_json: "{}".into(),
        created_at_ms: 2,
        repository: None,
    }
}

fn to(j: &Journal, id: i64, state: DeployState, reason: Option<&str>) {
    let detail = TransitionDetail {
        reason: reason.map(str::to_owned),
        ..TransitionDetail::default()
    };
    j.transition(id, state, 3, &detail).unwrap();
}

/// Each row as (kind, request or deploy id, state, detail).
fn summary(rows: &[OutboxRow]) -> Vec<(OutboxKind, i64, Option<DeployState>, Option<String>)> {
    rows.iter()
        .map(|r| {
            let about = r.request_id.or(r.deploy_id).unwrap();
            (r.kind, about, r.state, r.detail.clone())
        })
        .collect()
}

fn rows_are_written_with_their_cause_in_the_order_they_arose(store: &Store) {
    use DeployState::*;
    use OutboxKind::*;
    let j = store.open();
    // A deploy run by a GitHub deployment event, whose registry push also
    // asked for a callback; a deploy that reports nowhere; a deploy run on
    // the push that reports to the deployment its request creates.
    let event = deploy_with(
        &j,
        "web",
        "event",
        r#"{"github_deployment_id":7,"callback_url":"https://hub.example/cb"}"#,
    );
    let quiet = deploy_with(&j, "web", "quiet", r#"{"kind":"push"}"#);
    let pushed = deploy_with(&j, "api", "pushed", r#"{"kind":"push"}"#);
    let Inserted::New(request) = j
        .insert_deployment_request(&request_for("api", "pushed", Some(pushed)))
        .unwrap()
    else {
        panic!("expected a new request")
    };
    let Inserted::New(alone) = j
        .insert_deployment_request(&request_for("web", "alone", None))
        .unwrap()
    else {
        panic!("expected a new request")
    };
    // A redelivered request writes nothing.
    assert!(matches!(
        j.insert_deployment_request(&request_for("web", "alone", None))
            .unwrap(),
        Inserted::Duplicate(_)
    ));
    to(&j, event, Started, None);
    to(&j, quiet, Started, None);
    to(&j, pushed, Started, None);
    to(&j, event, Succeeded, Some("exit code 0"));
    to(&j, quiet, Failed, Some("exit code 1"));
    to(&j, pushed, Failed, Some("exit code 3"));

    let rows = j.outbox_rows(0, 100).unwrap();
    assert_eq!(
        summary(&rows),
        [
            (Status, event, Some(Queued), None),
            (Deployment, request, None, None),
            (Status, pushed, Some(Queued), None),
            (Deployment, alone, None, None),
            (Status, event, Some(Started), None),
            (Status, pushed, Some(Started), None),
            (Status, event, Some(Succeeded), Some("exit code 0".into())),
            (Callback, event, Some(Succeeded), Some("exit code 0".into())),
            (Status, pushed, Some(Failed), Some("exit code 3".into())),
        ]
    );
    assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
    assert!(rows
        .iter()
        .all(|r| r.outcome.is_none() && r.attempts == 0 && !r.stack.is_empty()));
    assert_eq!(j.outbox_unsettled(100).unwrap(), rows);
    assert_eq!(j.outbox_last_id().unwrap(), rows.last().unwrap().id);
    assert_eq!(j.outbox_unsettled_through(rows[2].id).unwrap(), 3);
    // Every pending request already has its row: nothing to adopt.
    assert_eq!(j.adopt_pending_requests(9).unwrap(), 0);
}

fn a_pending_request_without_a_row_is_adopted_once(store: &Store) {
    let j = store.open();
    let Inserted::New(request) = j
        .insert_deployment_request(&request_for("web", "imported", None))
        .unwrap()
    else {
        panic!("expected a new request")
    };
    // As an import leaves it: the request, no outbox row.
    store.execute("DELETE FROM outbox");
    assert_eq!(j.adopt_pending_requests(9).unwrap(), 1);
    assert_eq!(j.adopt_pending_requests(9).unwrap(), 0);
    let rows = j.outbox_unsettled(10).unwrap();
    assert_eq!(
        (rows.len(), rows[0].kind, rows[0].request_id),
        (1, OutboxKind::Deployment, Some(request))
    );
}

fn a_row_is_claimed_by_the_holder_and_settled_once(store: &Store) {
    let (a, b) = (store.open(), store.open());
    let deploy = deploy_with(&a, "web", "d", r#"{"github_deployment_id":7}"#);
    let Inserted::New(request) = a
        .insert_deployment_request(&request_for("web", "r", None))
        .unwrap()
    else {
        panic!("expected a new request")
    };
    let rows = a.outbox_unsettled(10).unwrap();
    let (status, creation) = (rows[0].id, rows[1].id);
    assert!(a.take_lease(OUTBOX_LEASE, "replica-a", LONG).unwrap());
    assert!(!b.take_lease(OUTBOX_LEASE, "replica-b", LONG).unwrap());
    assert_eq!(
        b.claim_outbox_row(status, "replica-b", LONG, 5).unwrap(),
        Claim::LeaseLost,
        "only the holder claims"
    );
    assert_eq!(
        a.claim_outbox_row(status, "replica-a", LONG, 5).unwrap(),
        Claim::Claimed
    );
    let sent = Settlement {
        outcome: OutboxOutcome::Sent,
        detail: "deployment 7: sent".into(),
        answer: None,
        report: Some(ReportLine {
            deploy_id: deploy,
            target: "github",
            state: DeployState::Queued,
            outcome: "deployment 7: sent".into(),
        }),
        at_ms: 6,
    };
    assert!(a.settle_outbox_row(status, &sent).unwrap());
    assert!(!b.settle_outbox_row(status, &sent).unwrap(), "settled once");
    assert_eq!(
        a.claim_outbox_row(status, "replica-a", LONG, 7).unwrap(),
        Claim::Settled
    );
    assert_eq!(
        a.reports(deploy).unwrap(),
        [(
            "github".to_string(),
            "queued".to_string(),
            "deployment 7: sent".to_string()
        )]
    );
    // A deployment row settles its request in the same transaction.
    assert_eq!(
        a.claim_outbox_row(creation, "replica-a", LONG, 8).unwrap(),
        Claim::Claimed
    );
    let created = Settlement {
        outcome: OutboxOutcome::Sent,
        detail: "created".into(),
        answer: Some((
            request,
            RequestAnswer {
                state: RequestState::Created,
                deployment_id: Some(1000),
                http_status: Some(201),
                detail: "created".into(),
            },
        )),
        report: None,
        at_ms: 9,
    };
    assert!(a.settle_outbox_row(creation, &created).unwrap());
    let r = a.deployment_request(request).unwrap().unwrap();
    assert_eq!(
        (r.state, r.deployment_id, r.http_status, r.updated_at_ms),
        (RequestState::Created, Some(1000), Some(201), 9)
    );
    let settled = a.outbox_rows(0, 10).unwrap();
    assert_eq!(
        settled
            .iter()
            .map(|r| (r.outcome, r.attempts))
            .collect::<Vec<_>>(),
        [
            (Some(OutboxOutcome::Sent), 1),
            (Some(OutboxOutcome::Sent), 1)
        ]
    );
    assert!(a.outbox_unsettled(10).unwrap().is_empty());
}

/// The one window of a second send: a holder that claimed a row and
/// stopped before settling it leaves it to the next holder, and the row's
/// attempts say so.
fn a_row_claimed_by_a_holder_that_stopped_is_claimed_again_after_its_lease(store: &Store) {
    let (a, b) = (store.open(), store.open());
    deploy_with(&a, "web", "d", r#"{"github_deployment_id":7}"#);
    let row = a.outbox_unsettled(1).unwrap()[0].id;
    let short = Duration::from_millis(50);
    assert!(a.take_lease(OUTBOX_LEASE, "replica-a", short).unwrap());
    assert_eq!(
        a.claim_outbox_row(row, "replica-a", short, 1).unwrap(),
        Claim::Claimed
    );
    // Replica a dies here. Until its lease runs out nobody else claims.
    assert_eq!(
        b.claim_outbox_row(row, "replica-b", LONG, 2).unwrap(),
        Claim::LeaseLost
    );
    std::thread::sleep(short * 3);
    assert!(b.take_lease(OUTBOX_LEASE, "replica-b", LONG).unwrap());
    assert_eq!(
        a.claim_outbox_row(row, "replica-a", LONG, 3).unwrap(),
        Claim::LeaseLost,
        "a holder whose lease ran out claims nothing"
    );
    assert_eq!(
        b.claim_outbox_row(row, "replica-b", LONG, 4).unwrap(),
        Claim::Claimed
    );
    assert_eq!(a.outbox_unsettled(1).unwrap()[0].attempts, 2);
}

/// Two replicas, each sending whatever the outbox holds whenever it holds
/// the lease, while a third writes deploys: the lease never has two
/// holders, and every row is sent exactly once.
fn two_replicas_never_hold_the_lease_together_and_send_each_row_once(store: &Store) {
    let writer = store.open();
    let holders = AtomicUsize::new(0);
    let writing = AtomicBool::new(true);
    let sends: Mutex<Vec<(usize, i64)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for replica in 0..2 {
            let journal = store.open();
            let (holders, writing, sends) = (&holders, &writing, &sends);
            scope.spawn(move || {
                let me = format!("replica-{replica}");
                loop {
                    let done = !writing.load(Ordering::SeqCst);
                    if journal.take_lease(OUTBOX_LEASE, &me, LONG).unwrap() {
                        assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        for row in journal.outbox_unsettled(8).unwrap() {
                            match journal.claim_outbox_row(row.id, &me, LONG, 1).unwrap() {
                                Claim::Claimed => {}
                                other => panic!("{me} holds the lease: {other:?}"),
                            }
                            sends.lock().unwrap().push((replica, row.id));
                            let sent = Settlement {
                                outcome: OutboxOutcome::Sent,
                                detail: me.clone(),
                                answer: None,
                                report: None,
                                at_ms: 2,
                            };
                            assert!(journal.settle_outbox_row(row.id, &sent).unwrap());
                        }
                        holders.fetch_sub(1, Ordering::SeqCst);
                        journal.release_lease(OUTBOX_LEASE, &me).unwrap();
                    }
                    if done && journal.outbox_unsettled(1).unwrap().is_empty() {
                        return;
                    }
                    std::thread::yield_now();
                }
            });
        }
        for i in 0..RACED_ROWS {
            deploy_with(
                &writer,
                "web",
                &format!("d{i}"),
                r#"{"github_deployment_id":7}"#,
            );
        }
        writing.store(false, Ordering::SeqCst);
    });
    let sends = sends.into_inner().unwrap();
    let mut times: BTreeMap<i64, usize> = BTreeMap::new();
    for (_, id) in &sends {
        *times.entry(*id).or_default() += 1;
    }
    assert_eq!(times.len(), RACED_ROWS, "every row sent");
    assert!(
        times.values().all(|&n| n == 1),
        "a row sent twice: {times:?}"
    );
    assert!(
        sends.windows(2).all(|w| w[0].1 < w[1].1),
        "rows sent out of order: {sends:?}"
    );
    let rows = writer.outbox_rows(0, RACED_ROWS * 2).unwrap();
    assert!(rows
        .iter()
        .all(|r| r.outcome == Some(OutboxOutcome::Sent) && r.attempts == 1));
}

super::on_both_backends!(
    rows_are_written_with_their_cause_in_the_order_they_arose,
    a_pending_request_without_a_row_is_adopted_once,
    a_row_is_claimed_by_the_holder_and_settled_once,
    a_row_claimed_by_a_holder_that_stopped_is_claimed_again_after_its_lease,
    two_replicas_never_hold_the_lease_together_and_send_each_row_once,
);
