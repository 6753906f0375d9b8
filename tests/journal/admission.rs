//! Admission: an older commit never deploys after a newer one, and a
//! replay key deduplicates deliveries without an id, on both backends.

use redeploy_host::journal::*;

use super::Store;

pub(super) fn deploy(sha: Option<&str>, delivery: &str, at: i64) -> NewDeploy {
    NewDeploy {
        stack: "web".into(),
        delivery_id: Some(delivery.into()),
        provider: "github".into(),
        git_ref: Some("refs/heads/main".into()),
        sha: sha.map(str::to_string),
        services: vec![],
        profile: None,
        reason: "push".into(),
        event_json: "{}".into(),
        created_at_ms: at,
        pusher: None,
    }
}

pub(super) fn commit(sha: &str, before: &str, forced: bool) -> Admission {
    Admission {
        replay: None,
        commit: Some(CommitClaim {
            sha: sha.into(),
            before: Some(before.into()),
            forced,
            sender_reports_forced: true,
            requested: false,
        }),
        ..Admission::default()
    }
}

fn new_id(a: Admitted) -> i64 {
    match a {
        Admitted::Inserted(Inserted::New(id)) => id,
        other => panic!("expected a new deploy, got {other:?}"),
    }
}

fn an_older_commit_is_recorded_cancelled_with_the_reason_across_reopening(store: &Store) {
    let (a, b) = {
        let j = store.open();
        let a = new_id(
            j.admit_deploy(&deploy(Some("a"), "d1", 1), &commit("a", "x", false))
                .unwrap(),
        );
        let b = new_id(
            j.admit_deploy(&deploy(Some("b"), "d2", 2), &commit("b", "a", false))
                .unwrap(),
        );
        (a, b)
    };
    let j = store.open();
    assert_eq!(j.head_commit("web").unwrap().unwrap().deploy_id, b);
    let older = j
        .admit_deploy(&deploy(Some("a"), "d3", 3), &commit("a", "x", false))
        .unwrap();
    let Admitted::Older { deploy_id, reason } = older else {
        panic!("{older:?}")
    };
    let record = j.deploy(deploy_id).unwrap().unwrap();
    assert_eq!(record.state, DeployState::Cancelled);
    assert_eq!(record.detail.as_deref(), Some(reason.as_str()));
    assert_eq!(record.superseded_by, Some(b));
    // The head did not move; a forced push back from it is a rollback.
    assert_eq!(j.head_commit("web").unwrap().unwrap().sha, "b");
    let rollback = new_id(
        j.admit_deploy(&deploy(Some("a"), "d4", 4), &commit("a", "b", true))
            .unwrap(),
    );
    assert!(rollback > a);
    assert_eq!(j.head_commit("web").unwrap().unwrap().deploy_id, rollback);
    // The same delivery id is still a plain duplicate.
    assert_eq!(
        j.admit_deploy(&deploy(Some("a"), "d4", 5), &commit("a", "b", true))
            .unwrap(),
        Admitted::Inserted(Inserted::Duplicate(rollback))
    );
}

fn a_replay_key_deduplicates_until_it_expires_and_is_then_pruned(store: &Store) {
    let j = store.open();
    let claim = |now: i64| Admission {
        replay: Some(ReplayClaim {
            key: "k".into(),
            now_ms: now,
            expires_at_ms: now + 1000,
        }),
        ..Admission::default()
    };
    let mut registry = deploy(None, "", 0);
    registry.delivery_id = None;
    let first = new_id(j.admit_deploy(&registry, &claim(0)).unwrap());
    assert_eq!(
        j.admit_deploy(&registry, &claim(999)).unwrap(),
        Admitted::Replayed {
            first_seen_ms: 0,
            deploy_id: Some(first)
        }
    );
    let second = new_id(j.admit_deploy(&registry, &claim(1000)).unwrap());
    assert!(second > first);
    // The expired key was pruned when the new one was claimed.
    let keys = store.query_i64("SELECT COUNT(*) FROM replay_keys");
    assert_eq!(keys, 1);
}

super::on_both_backends!(
    an_older_commit_is_recorded_cancelled_with_the_reason_across_reopening,
    a_replay_key_deduplicates_until_it_expires_and_is_then_pruned,
);
