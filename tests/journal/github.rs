//! The GitHub outbox's journal side and the server keys, on both backends.

use redeploy_host::journal::*;

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

fn server_keys_are_kept_once_stored(store: &Store) {
    let j = store.open();
    assert_eq!(j.ensure_server_key("log", "first").unwrap(), "first");
    assert_eq!(j.ensure_server_key("log", "second").unwrap(), "first");
}

super::on_both_backends!(
    requests_are_recorded_once_per_delivery_and_settled,
    server_keys_are_kept_once_stored,
);
