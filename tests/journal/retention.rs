//! Pruning on both backends: old deliveries and old finished deploys go
//! (with their transitions and reports), unfinished deploys and deploys a
//! pending GitHub request needs stay.

use redeploy_host::journal::*;

use super::Store;

fn delivery(at: i64, status: u16) -> NewDelivery {
    NewDelivery {
        received_at_ms: at,
        stack: Some("app".to_owned()),
        provider: Some("github".to_owned()),
        event: Some("push".to_owned()),
        delivery_id: None,
        status,
        summary: format!("answered {status}"),
    }
}

/// A deploy of stack "app" queued at `at`.
pub(super) fn deploy(at: i64) -> NewDeploy {
    NewDeploy {
        stack: "app".to_owned(),
        delivery_id: None,
        provider: "github".to_owned(),
        git_ref: Some("refs/heads/main".to_owned()),
        sha: None,
        services: vec![],
        profile: None,
        reason: "push to main".to_owned(),
        event_json: "{}".to_owned(),
        created_at_ms: at,
        pusher: None,
        repository: None,
    }
}

fn old_rows_go_and_unfinished_or_still_needed_ones_stay(store: &Store) {
    let j = store.open();
    j.record_delivery(&delivery(10, 401)).unwrap();
    j.record_delivery(&delivery(20, 202)).unwrap();
    let recent = j.record_delivery(&delivery(1_000, 202)).unwrap();

    // Five finished deploys, oldest first, each with a log.
    let mut finished = Vec::new();
    for at in 1..=5 {
        let Inserted::New(id) = j.insert_deploy(&deploy(at)).unwrap() else {
            panic!("a new deploy")
        };
        let log = TransitionDetail {
            log_path: Some(format!("/state/logs/{id}.log")),
            ..TransitionDetail::default()
        };
        j.transition(id, DeployState::Started, at, &log).unwrap();
        j.transition(id, DeployState::Succeeded, at, &TransitionDetail::default())
            .unwrap();
        finished.push(id);
    }
    let [d1, d2, d3, d4, d5] = finished[..] else {
        unreachable!()
    };
    j.record_report(d1, "github", "success", "sent", 6).unwrap();
    // d3 still has a GitHub request pending: it stays.
    j.insert_deployment_request(&NewDeploymentRequest {
        stack: "app".to_owned(),
        delivery_id: None,
        deploy_id: Some(d3),
        git_ref: None,
        sha: None,
        request_json: "{}".to_owned(),
        created_at_ms: 3,
        repository: None,
    })
    .unwrap();
    // d2's final status still waits in the outbox: it stays until sent.
    store.execute(&format!(
        "INSERT INTO outbox (kind, stack, deploy_id, state, created_at_ms)
         VALUES ('status', 'app', {d2}, 'succeeded', 5)"
    ));
    // Unfinished deploys stay whatever their age.
    let Inserted::New(queued) = j.insert_deploy(&deploy(7)).unwrap() else {
        panic!("a new deploy")
    };
    let Inserted::New(started) = j.insert_deploy(&deploy(8)).unwrap() else {
        panic!("a new deploy")
    };
    j.transition(
        started,
        DeployState::Started,
        9,
        &TransitionDetail::default(),
    )
    .unwrap();

    let policy = PrunePolicy {
        deliveries_before_ms: 100,
        refused_before_ms: 100,
        deploys_before_ms: 100,
        keep_deploys_min: 1,
        keep_deploys_max: 3,
    };
    let pruned = j.prune(&policy).unwrap();
    // Ranked newest first, d5 is kept as the minimum; d4..d1 are past it
    // and old, but d3 and d2 are still needed.
    assert_eq!(pruned.deliveries, 2);
    assert_eq!(pruned.deploys, 2);
    let mut logged = pruned.logged.clone();
    logged.sort();
    let mut expected: Vec<PrunedLog> = [d1, d4]
        .iter()
        .map(|&id| PrunedLog {
            stack: "app".to_owned(),
            id,
        })
        .collect();
    expected.sort();
    assert_eq!(logged, expected);
    let left: Vec<i64> = j.deploys(None, 100).unwrap().iter().map(|d| d.id).collect();
    assert_eq!(left, [started, queued, d5, d3, d2]);
    assert!(j.transitions(d1).unwrap().is_empty());
    assert!(j.reports(d1).unwrap().is_empty());
    assert_eq!(
        j.deliveries(10)
            .unwrap()
            .iter()
            .map(|d| d.id)
            .collect::<Vec<_>>(),
        [recent]
    );
    assert_eq!(
        store.query_i64(&format!(
            "SELECT COUNT(*) FROM deploy_transitions WHERE deploy_id IN ({d1}, {d4})"
        )),
        0
    );
    // Once its status is sent, d2 goes at the next prune.
    store.execute(&format!(
        "UPDATE outbox SET outcome = 'sent', settled_at_ms = 6 WHERE deploy_id = {d2}"
    ));
    assert_eq!(j.prune(&policy).unwrap().deploys, 1);
    let left: Vec<i64> = j.deploys(None, 100).unwrap().iter().map(|d| d.id).collect();
    assert_eq!(left, [started, queued, d5, d3]);
}

super::on_both_backends!(old_rows_go_and_unfinished_or_still_needed_ones_stay);
