//! GitHub catch-up's journal side, on both backends: the webhook
//! `github connect` recorded, how far looks settled its deliveries, and
//! redeliveries claimed once across processes.

use redeploy_host::journal::*;

use super::Store;

fn redelivery(guid: &str, at_ms: i64) -> NewRedelivery {
    NewRedelivery {
        stack: "web".into(),
        guid: guid.into(),
        hook_id: 7,
        github_delivery_id: 100,
        event: "push".into(),
        at_ms,
    }
}

fn the_journal_remembers_the_webhook_and_how_far_catch_up_looked(store: &Store) {
    let j = store.open();
    assert_eq!(j.github_hook("web").unwrap(), None);
    j.record_github_hook("web", "https://api.github.com", "acme/web", 7, 1_000)
        .unwrap();
    let hook = j.github_hook("web").unwrap().unwrap();
    assert_eq!(
        (hook.hook_id, hook.connected_at_ms, hook.cursor_id),
        (7, 1_000, None)
    );
    // The cursor only moves forward; `None` leaves it.
    j.record_catch_up("web", 7, Some(50), 2_000).unwrap();
    j.record_catch_up("web", 7, Some(40), 3_000).unwrap();
    j.record_catch_up("web", 7, None, 4_000).unwrap();
    let hook = j.github_hook("web").unwrap().unwrap();
    assert_eq!((hook.cursor_id, hook.ok_at_ms), (Some(50), Some(4_000)));
    // Failures count in a row, and a success clears them.
    assert_eq!(
        j.record_catch_up_failure("web", 7, "denied", 5_000)
            .unwrap(),
        1
    );
    assert_eq!(
        j.record_catch_up_failure("web", 7, "denied", 6_000)
            .unwrap(),
        2
    );
    let hook = j.github_hook("web").unwrap().unwrap();
    assert_eq!((hook.failures, hook.error.as_deref()), (2, Some("denied")));
    j.record_catch_up("web", 7, None, 7_000).unwrap();
    assert_eq!(j.github_hook("web").unwrap().unwrap().failures, 0);
    // Connecting the same webhook again keeps the cursor; another webhook
    // starts over.
    j.record_github_hook("web", "https://api.github.com", "acme/web", 7, 8_000)
        .unwrap();
    assert_eq!(j.github_hook("web").unwrap().unwrap().cursor_id, Some(50));
    j.record_github_hook("web", "https://api.github.com", "acme/web", 9, 9_000)
        .unwrap();
    let hook = j.github_hook("web").unwrap().unwrap();
    assert_eq!(
        (hook.hook_id, hook.connected_at_ms, hook.cursor_id),
        (9, 9_000, None)
    );
    // A look recorded for the old webhook changes nothing.
    j.record_catch_up("web", 7, Some(60), 10_000).unwrap();
    assert_eq!(j.github_hook("web").unwrap().unwrap().cursor_id, None);
    assert_eq!(j.github_hooks().unwrap().len(), 1);
}

fn a_redelivery_is_claimed_by_one_process_once(store: &Store) {
    let (a, b) = (store.open(), store.open());
    let guids = vec!["g1".to_string(), "g2".to_string()];
    assert!(a.redelivery_claims("web", 7, &guids).unwrap().is_empty());
    assert!(a.claim_redelivery(&redelivery("g1", 10), false).unwrap());
    // Another replica, or this one after a restart, does not ask again.
    assert!(!b.claim_redelivery(&redelivery("g1", 11), false).unwrap());
    assert_eq!(
        b.redelivery_claims("web", 7, &guids).unwrap().get("g1"),
        Some(&RedeliveryClaim {
            state: RedeliveryState::InDoubt,
            asked_at_ms: 10
        })
    );
    // A claim in doubt is taken over by one process only.
    assert!(b.claim_redelivery(&redelivery("g1", 12), true).unwrap());
    assert!(!a.claim_redelivery(&redelivery("g1", 12), true).unwrap());
    b.settle_redelivery("web", "g1", Some(RedeliveryState::Asked))
        .unwrap();
    assert_eq!(
        a.redelivery_claims("web", 7, &guids).unwrap()["g1"].state,
        RedeliveryState::Asked
    );
    // Asked for good: never taken over.
    assert!(!a.claim_redelivery(&redelivery("g1", 20), true).unwrap());
    // A request GitHub did not take (rate limited) drops the claim, so a
    // later look asks.
    assert!(a.claim_redelivery(&redelivery("g2", 30), false).unwrap());
    a.settle_redelivery("web", "g2", None).unwrap();
    assert!(!a
        .redelivery_claims("web", 7, &guids)
        .unwrap()
        .contains_key("g2"));
    assert!(b.claim_redelivery(&redelivery("g2", 31), false).unwrap());
    // Refused by GitHub, or its redelivery failed too: kept for good.
    for state in [
        RedeliveryState::Refused(422),
        RedeliveryState::RedeliveryFailed,
    ] {
        b.settle_redelivery("web", "g2", Some(state)).unwrap();
        assert_eq!(
            a.redelivery_claims("web", 7, &guids).unwrap()["g2"].state,
            state
        );
        assert!(!a.claim_redelivery(&redelivery("g2", 40), true).unwrap());
    }
}

fn deliveries_are_found_by_their_guid(store: &Store) {
    let j = store.open();
    j.record_delivery(&NewDelivery {
        received_at_ms: 1,
        stack: Some("web".into()),
        provider: Some("github".into()),
        event: Some("push".into()),
        delivery_id: Some("arrived".into()),
        status: 503,
        summary: "shutting down".into(),
    })
    .unwrap();
    let found = j
        .deliveries_received(&["arrived".to_string(), "lost".to_string()])
        .unwrap();
    assert_eq!(found.into_iter().collect::<Vec<_>>(), ["arrived"]);
}

super::on_both_backends!(
    the_journal_remembers_the_webhook_and_how_far_catch_up_looked,
    a_redelivery_is_claimed_by_one_process_once,
    deliveries_are_found_by_their_guid,
);
