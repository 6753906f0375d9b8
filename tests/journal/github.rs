//! The GitHub outbox's journal side and the server keys, on both backends.

use redeploy_host::journal::*;

use super::admission::{commit, deploy};
use super::Store;

fn request(delivery: Option<&str>) -> NewDeploymentRequest {
    NewDeploymentRequest {
        stack: "web".into(),
        delivery_id: delivery.map(str::to_string),
        deploy_id: None,
        git_ref: Some("refs/heads/main".into()),
        sha: Some("a".repeat(40)),
        request_json: "{}".into(),
        created_at_ms: 5,
        repository: None,
    }
}

fn requests_are_recorded_once_per_delivery_and_settled(store: &Store) {
    let j = store.open();
    let Inserted::New(id) = j.insert_deployment_request(&request(Some("d1"))).unwrap() else {
        panic!("expected a new request")
    };
    assert_eq!(
        j.insert_deployment_request(&request(Some("d1"))).unwrap(),
        Inserted::Duplicate(id)
    );
    assert!(matches!(
        j.insert_deployment_request(&request(None)).unwrap(),
        Inserted::New(_)
    ));
    assert_eq!(j.pending_deployment_requests(Some("web")).unwrap().len(), 2);
    j.settle_deployment_request(
        id,
        RequestState::Conflict,
        None,
        Some(409),
        Some("Conflict"),
        9,
    )
    .unwrap();
    let r = j.deployment_request(id).unwrap().unwrap();
    assert_eq!(
        (r.state, r.http_status, r.detail.as_deref(), r.updated_at_ms),
        (RequestState::Conflict, Some(409), Some("Conflict"), 9)
    );
    assert_eq!(j.pending_deployment_requests(None).unwrap().len(), 1);
    assert_eq!(
        j.pending_deployment_requests(Some("other")).unwrap().len(),
        0
    );
}

/// The deployment request of delivery `delivery`'s deploy, which runs at
/// once and reports to it.
fn claim(delivery: &str) -> DeploymentRequestClaim {
    DeploymentRequestClaim {
        delivery_id: Some(delivery.into()),
        git_ref: Some("refs/heads/main".into()),
        sha: Some("a".into()),
        request_json: "{}".into(),
        created_at_ms: 5,
        repository: None,
    }
}

/// Deploys, deployment requests, `deployment` outbox rows, and the status
/// rows of requests made for a deploy, in the journal now.
fn counts(store: &Store) -> [i64; 4] {
    [
        "SELECT COUNT(*) FROM deploys",
        "SELECT COUNT(*) FROM github_deployment_requests",
        "SELECT COUNT(*) FROM outbox WHERE kind = 'deployment'",
        "SELECT COUNT(*) FROM outbox WHERE kind = 'status'",
    ]
    .map(|sql| store.query_i64(sql))
}

fn a_deploy_is_admitted_with_its_deployment_request_in_one_transaction(store: &Store) {
    let j = store.open();
    let admission = |sha: &str, before: &str, delivery: &str| Admission {
        deployment_request: Some(claim(delivery)),
        ..commit(sha, before, false)
    };
    let first = deploy(Some("a"), "d1", 5);

    // A failure after the deploy's insert (its request's outbox row cannot
    // be written) records neither the deploy nor the request.
    store.execute("ALTER TABLE outbox RENAME TO outbox_gone");
    let failed = j.admit_deploy(&first, &admission("a", "x", "d1"));
    store.execute("ALTER TABLE outbox_gone RENAME TO outbox");
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(counts(store), [0, 0, 0, 0]);
    assert_eq!(store.query_i64("SELECT COUNT(*) FROM stack_commits"), 0);

    // Retried, the deploy, its request and the request's outbox rows (the
    // deployment to create, and the `queued` status to report to it) are
    // all recorded.
    let Admitted::Requested {
        deploy_id,
        request: Inserted::New(request_id),
    } = j.admit_deploy(&first, &admission("a", "x", "d1")).unwrap()
    else {
        panic!("expected a new deploy with a new request")
    };
    let r = j.deployment_request(request_id).unwrap().unwrap();
    assert_eq!(
        (
            r.asked.deploy_id,
            r.asked.stack.as_str(),
            r.asked.delivery_id.as_deref()
        ),
        (Some(deploy_id), "web", Some("d1"))
    );
    assert_eq!(r.state, RequestState::Pending);
    assert_eq!(
        j.request_of_deploy(deploy_id).unwrap().unwrap().id,
        request_id
    );
    assert_eq!(counts(store), [1, 1, 1, 1]);
    assert_eq!(
        store.query_i64(&format!(
            "SELECT COUNT(*) FROM outbox WHERE kind = 'deployment' AND request_id = {request_id}"
        )),
        1
    );
    assert_eq!(
        store.query_i64(&format!(
            "SELECT COUNT(*) FROM outbox
             WHERE kind = 'status' AND deploy_id = {deploy_id} AND state = 'queued'"
        )),
        1
    );

    // The same delivery again records neither again.
    assert_eq!(
        j.admit_deploy(&first, &admission("a", "x", "d1")).unwrap(),
        Admitted::Inserted(Inserted::Duplicate(deploy_id))
    );
    assert_eq!(counts(store), [1, 1, 1, 1]);

    // A deploy cancelled at once as older asks GitHub for nothing.
    let Admitted::Requested { .. } = j
        .admit_deploy(&deploy(Some("b"), "d2", 6), &admission("b", "a", "d2"))
        .unwrap()
    else {
        panic!("expected a new deploy with a request")
    };
    let older = j
        .admit_deploy(&deploy(Some("a"), "d3", 7), &admission("a", "x", "d3"))
        .unwrap();
    assert!(matches!(older, Admitted::Older { .. }), "{older:?}");
    assert_eq!(counts(store), [3, 2, 2, 2]);
}

fn server_keys_are_kept_once_stored(store: &Store) {
    let j = store.open();
    assert_eq!(j.ensure_server_key("log", "first").unwrap(), "first");
    assert_eq!(j.ensure_server_key("log", "second").unwrap(), "first");
}

super::on_both_backends!(
    requests_are_recorded_once_per_delivery_and_settled,
    a_deploy_is_admitted_with_its_deployment_request_in_one_transaction,
    server_keys_are_kept_once_stored,
);
