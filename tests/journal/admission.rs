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
        repository: None,
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
            once: false,
        }),
        ..Admission::default()
    }
}

/// Commit `c` (one character) as a 40-character id.
fn sha(c: char) -> String {
    c.to_string().repeat(40)
}

/// A push's deploy of `services` of `git_ref` at commit `c`.
fn deploy_of(services: &[&str], git_ref: &str, c: char, delivery: &str, at: i64) -> NewDeploy {
    NewDeploy {
        services: services.iter().map(|s| s.to_string()).collect(),
        git_ref: Some(git_ref.to_owned()),
        ..deploy(Some(&sha(c)), delivery, at)
    }
}

/// Admits `d`, the deploy of a push of commit `c` from `before`.
fn admit_push(j: &Journal, d: &NewDeploy, c: char, before: char, forced: bool) -> Admitted {
    j.admit_deploy(d, &commit(&sha(c), &sha(before), forced))
        .unwrap()
}

/// Records deploy `id` started, then succeeded: it ran.
fn ran(j: &Journal, id: i64) -> i64 {
    for state in [DeployState::Started, DeployState::Succeeded] {
        j.transition(id, state, 0, &TransitionDetail::default())
            .unwrap();
    }
    id
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

/// Claims replay key "k" at `now`, for 1 s.
fn replay(now: i64) -> Admission {
    Admission {
        replay: Some(ReplayClaim {
            key: "k".into(),
            now_ms: now,
            expires_at_ms: now + 1000,
        }),
        ..Admission::default()
    }
}

fn a_replay_key_deduplicates_until_it_expires_and_is_then_pruned(store: &Store) {
    let j = store.open();
    let mut registry = deploy(None, "", 0);
    registry.delivery_id = None;
    let first = new_id(j.admit_deploy(&registry, &replay(0)).unwrap());
    assert_eq!(
        j.admit_deploy(&registry, &replay(999)).unwrap(),
        Admitted::Replayed {
            first_seen_ms: 0,
            deploy_id: Some(first)
        }
    );
    let second = new_id(j.admit_deploy(&registry, &replay(1000)).unwrap());
    assert!(second > first);
    // The expired key was pruned when the new one was claimed.
    let keys = store.query_i64("SELECT COUNT(*) FROM replay_keys");
    assert_eq!(keys, 1);
}

fn a_stack_that_polls_deploys_its_head_commit_once(store: &Store) {
    let j = store.open();
    let once = |sha: &str, before: &str| {
        let mut admission = commit(sha, before, false);
        admission.commit.as_mut().unwrap().once = true;
        admission
    };
    let of = |delivery: &str, services: &[&str], at: i64| NewDeploy {
        services: services.iter().map(|s| s.to_string()).collect(),
        ..deploy(Some("a"), delivery, at)
    };
    let a = new_id(
        j.admit_deploy(&of("hook-1", &["web"], 1), &once("a", "x"))
            .unwrap(),
    );
    // The poll sees the same commit (no delivery id of its own).
    let mut polled = of("", &["web"], 2);
    polled.delivery_id = None;
    assert_eq!(
        j.admit_deploy(&polled, &once("a", "x")).unwrap(),
        Admitted::SameCommit { deploy_id: a }
    );
    assert_eq!(j.deploys(Some("web"), 10).unwrap().len(), 1);
    // The head commit under another ref (a tag a service follows) or for
    // other services is another push: it deploys.
    let mut tagged = of("tag-1", &["web"], 3);
    tagged.git_ref = Some("refs/tags/v1".into());
    new_id(j.admit_deploy(&tagged, &once("a", "x")).unwrap());
    let api = new_id(
        j.admit_deploy(&of("hook-api", &["api"], 3), &once("a", "x"))
            .unwrap(),
    );
    // Any deploy of the head commit counts, not only the newest: web's push
    // again, after the tag's and api's, is still the first one.
    assert_eq!(
        j.admit_deploy(&of("hook-1-again", &["web"], 3), &once("a", "x"))
            .unwrap(),
        Admitted::SameCommit { deploy_id: a }
    );
    assert!(api > a);
    // A new commit deploys; without `once` the head deploys again.
    let mut next = deploy(Some("b"), "", 3);
    next.delivery_id = None;
    let b = new_id(j.admit_deploy(&next, &once("b", "a")).unwrap());
    let again = new_id(
        j.admit_deploy(&deploy(Some("b"), "hook-2", 4), &commit("b", "a", false))
            .unwrap(),
    );
    assert!(again > b);
}

fn the_journal_remembers_each_polled_source(store: &Store) {
    let j = store.open();
    assert_eq!(j.poll_source("web", "file:///srv/app.git").unwrap(), None);
    assert_eq!(
        j.record_poll_failure("web", "file:///srv/app.git", "unreachable", 1)
            .unwrap(),
        1
    );
    assert_eq!(
        j.record_poll_failure("web", "file:///srv/app.git", "still", 2)
            .unwrap(),
        2
    );
    let failing = j
        .poll_source("web", "file:///srv/app.git")
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            failing.tips_json,
            failing.ok_at_ms,
            failing.error.as_deref(),
            failing.failures
        ),
        (None, None, Some("still"), 2)
    );
    let main = r#"["refs/heads/main"]"#;
    j.record_poll_success(
        "web",
        "file:///srv/app.git",
        Some((r#"{"refs/heads/main":"a"}"#, Some(main))),
        3,
    )
    .unwrap();
    j.record_poll_success("api", "git://h/api.git", Some(("{}", None)), 4)
        .unwrap();
    let ok = j
        .poll_source("web", "file:///srv/app.git")
        .unwrap()
        .unwrap();
    assert_eq!(ok.tips_json.as_deref(), Some(r#"{"refs/heads/main":"a"}"#));
    assert_eq!(ok.ref_filter.as_deref(), Some(main));
    assert_eq!(
        (ok.polled_at_ms, ok.ok_at_ms, ok.error, ok.failures),
        (3, Some(3), None, 0)
    );
    // A failure keeps the tips seen last.
    j.record_poll_failure("web", "file:///srv/app.git", "down", 5)
        .unwrap();
    let kept = j
        .poll_source("web", "file:///srv/app.git")
        .unwrap()
        .unwrap();
    assert_eq!(
        (kept.tips_json, kept.ok_at_ms, kept.failures),
        (ok.tips_json, Some(3), 1)
    );
    let all: Vec<String> = j
        .poll_sources(None)
        .unwrap()
        .into_iter()
        .map(|s| s.stack)
        .collect();
    assert_eq!(all, ["api", "web"]);
    assert_eq!(j.poll_sources(Some("api")).unwrap().len(), 1);
    // A look that saw nothing new keeps the tips and moves the times.
    j.record_poll_success("web", "file:///srv/app.git", None, 6)
        .unwrap();
    let same = j
        .poll_source("web", "file:///srv/app.git")
        .unwrap()
        .unwrap();
    assert_eq!(
        (same.tips_json.as_deref(), same.ref_filter.as_deref()),
        (Some(r#"{"refs/heads/main":"a"}"#), Some(main))
    );
    assert_eq!(
        (same.polled_at_ms, same.ok_at_ms, same.failures),
        (6, Some(6), 0)
    );
}

/// An image digest claimed by one deploy (the webhook's or the poll's)
/// deploys nothing when it comes again for services that deploy covers, of
/// its profile; another digest, or other services, deploy, and the digest
/// seen last is the image's claim (across reopening): one seen earlier but
/// admitted later is covered by it.
fn a_stack_that_polls_an_image_deploys_each_digest_once(store: &Store) {
    const IMAGE: &str = "ghcr.io/acme/web:latest";
    let image = |digest: &str, seen_at_ms: i64| Admission {
        image: Some(ImageClaim {
            image: IMAGE.into(),
            repository: "ghcr.io/acme/web".into(),
            digest: digest.into(),
            seen_at_ms,
            kind: ImageClaimKind::Polled,
        }),
        ..Admission::default()
    };
    let pushed = |delivery: &str, services: &[&str]| NewDeploy {
        git_ref: None,
        provider: "dockerhub".into(),
        services: services.iter().map(|s| s.to_string()).collect(),
        ..deploy(None, delivery, 1)
    };
    let digest = |n: char| format!("sha256:{}", n.to_string().repeat(64));
    let (d1, d2, d3) = (digest('1'), digest('2'), digest('3'));
    let first = {
        let j = store.open();
        new_id(
            j.admit_deploy(&pushed("hook-1", &["web"]), &image(&d1, 10))
                .unwrap(),
        )
    };
    let j = store.open();
    // The poll's delivery of the same digest.
    let polled = NewDeploy {
        delivery_id: None,
        provider: "poll".into(),
        ..pushed("", &["web"])
    };
    assert_eq!(
        j.admit_deploy(&polled, &image(&d1, 11)).unwrap(),
        Admitted::SameCommit { deploy_id: first }
    );
    // Other services on the same digest deploy; that deploy (redeploying
    // more than the poll's) then covers the poll's delivery; another
    // profile does not.
    let both = new_id(
        j.admit_deploy(&pushed("hook-2", &["web", "worker"]), &image(&d1, 12))
            .unwrap(),
    );
    assert_eq!(
        j.admit_deploy(&polled, &image(&d1, 13)).unwrap(),
        Admitted::SameCommit { deploy_id: both }
    );
    let canary = NewDeploy {
        profile: Some("canary".into()),
        ..polled.clone()
    };
    new_id(j.admit_deploy(&canary, &image(&d1, 13)).unwrap());
    // A new digest deploys, and is the claim from then on.
    let second = new_id(
        j.admit_deploy(&pushed("hook-3", &["web"]), &image(&d2, 30))
            .unwrap(),
    );
    assert_eq!(
        j.admit_deploy(&polled, &image(&d2, 31)).unwrap(),
        Admitted::SameCommit { deploy_id: second }
    );
    // A digest seen before that one but admitted after it (a slow poll):
    // the claimed deploy, which pulls the tag later, covers it; the claim
    // stays, so the tag moving back to it later deploys.
    assert_eq!(
        j.admit_deploy(&polled, &image(&d3, 20)).unwrap(),
        Admitted::SameCommit { deploy_id: second }
    );
    assert_eq!(
        j.admit_deploy(&polled, &image(&d2, 32)).unwrap(),
        Admitted::SameCommit { deploy_id: second }
    );
    new_id(
        j.admit_deploy(&pushed("hook-4", &["web"]), &image(&d3, 40))
            .unwrap(),
    );
    // The old digest again (the tag moved back) deploys too.
    new_id(
        j.admit_deploy(&pushed("hook-5", &["web"]), &image(&d1, 50))
            .unwrap(),
    );
    // Without a claim (a webhook whose digest nobody could say), it deploys.
    new_id(
        j.admit_deploy(&pushed("hook-6", &["web"]), &Admission::default())
            .unwrap(),
    );
    assert_eq!(j.deploys(Some("web"), 100).unwrap().len(), 7);
}

/// An image pushed by digest alone (its deploy runs that digest) deploys
/// each digest once per services and profile, whatever
/// the delivery's time, and, once a later digest or a push of a tag
/// deployed, never again for any query (a rollback by delivery); a tag's
/// push always deploys, and so does a poll's, each moving the image on. A
/// deploy the configuration running it refused never ran and covers
/// nothing; one an operator cancelled does; one that ran no digest (a
/// manual trigger) covers nothing of it. The delivery id seen before is
/// answered as that delivery.
fn an_image_pushed_by_digest_deploys_each_digest_once_and_never_an_earlier_one(store: &Store) {
    let digest = |n: char| format!("sha256:{}", n.to_string().repeat(64));
    let (d1, d2, d3) = (digest('1'), digest('2'), digest('3'));
    let image = |digest: &str, seen_at_ms: i64| Admission {
        image: Some(ImageClaim {
            image: format!("ghcr.io/acme/web@{digest}"),
            repository: "ghcr.io/acme/web".into(),
            digest: digest.into(),
            seen_at_ms,
            kind: ImageClaimKind::Pinned,
        }),
        ..Admission::default()
    };
    // A deploy of `image` (its event's, the command's REDEPLOY_IMAGE).
    let of = |image: &str, delivery: &str, profile: Option<&str>| NewDeploy {
        git_ref: None,
        provider: "ghcr".into(),
        services: vec!["web".into()],
        profile: profile.map(str::to_string),
        event_json: serde_json::json!({ "image": image }).to_string(),
        ..deploy(None, delivery, 1)
    };
    let pushed = |delivery: &str, profile: Option<&str>| {
        let digest = delivery.split('-').nth(1).unwrap();
        of(
            &format!("ghcr.io/acme/web@sha256:{}", digest.repeat(64)),
            delivery,
            profile,
        )
    };
    let tagged = |delivery: &str| of("ghcr.io/acme/web:v1", delivery, None);
    let first = {
        let j = store.open();
        new_id(
            j.admit_deploy(&pushed("p-1", None), &image(&d1, 100))
                .unwrap(),
        )
    };
    let j = store.open();
    // The same digest under another delivery id, sighted before or after.
    for (delivery, at) in [("p-1-again", 200), ("p-1-early", 50)] {
        assert_eq!(
            j.admit_deploy(&pushed(delivery, None), &image(&d1, at))
                .unwrap(),
            Admitted::SameCommit { deploy_id: first }
        );
    }
    // The same delivery id again is that delivery.
    assert_eq!(
        j.admit_deploy(&pushed("p-1", None), &image(&d1, 300))
            .unwrap(),
        Admitted::Inserted(Inserted::Duplicate(first))
    );
    // Another profile deploys the latest digest once more.
    let canary = new_id(
        j.admit_deploy(&pushed("p-1-canary", Some("canary")), &image(&d1, 301))
            .unwrap(),
    );
    assert_eq!(
        j.admit_deploy(
            &pushed("p-1-canary-again", Some("canary")),
            &image(&d1, 302)
        )
        .unwrap(),
        Admitted::SameCommit { deploy_id: canary }
    );
    // Switched back, each query stays a duplicate of its own deploy.
    assert_eq!(
        j.admit_deploy(&pushed("p-1-plain-again", None), &image(&d1, 303))
            .unwrap(),
        Admitted::SameCommit { deploy_id: first }
    );
    // A later digest deploys; the first one again is then a duplicate (of
    // its first deploy) for any query.
    let second = new_id(
        j.admit_deploy(&pushed("p-2", None), &image(&d2, 10))
            .unwrap(),
    );
    for (delivery, profile) in [
        ("p-1-late", None),
        ("p-1-late-canary", Some("canary")),
        ("p-1-late-other", Some("other")),
    ] {
        assert_eq!(
            j.admit_deploy(&pushed(delivery, profile), &image(&d1, 400))
                .unwrap(),
            Admitted::SameCommit { deploy_id: first },
            "{delivery}"
        );
    }
    // A push of the image's tag deploys, always, and moves the image on:
    // the digest pushed by digest before it is then a duplicate for any
    // query, as an earlier one is; a new digest deploys (below).
    let tag = || Admission {
        image: Some(ImageClaim {
            image: "ghcr.io/acme/web:v1".into(),
            repository: "ghcr.io/acme/web".into(),
            digest: String::new(),
            seen_at_ms: 500,
            kind: ImageClaimKind::Tag,
        }),
        ..Admission::default()
    };
    new_id(j.admit_deploy(&tagged("t-1"), &tag()).unwrap());
    new_id(j.admit_deploy(&tagged("t-2"), &tag()).unwrap());
    assert_eq!(
        j.admit_deploy(&pushed("p-2-canary", Some("canary")), &image(&d2, 501))
            .unwrap(),
        Admitted::SameCommit { deploy_id: second }
    );
    // A deploy refused by the configuration running it covers nothing.
    let refused = new_id(
        j.admit_deploy(&pushed("p-3", None), &image(&d3, 400))
            .unwrap(),
    );
    let refusal = format!(
        "{}stack \"web\" as configured here has none of the services \"web\"",
        redeploy_host::runner::follows::REFUSED_PREFIX
    );
    assert!(matches!(
        j.cancel_deploy(refused, &refusal, 401).unwrap(),
        CancelOutcome::Cancelled(_)
    ));
    let again = new_id(
        j.admit_deploy(&pushed("p-3-again", None), &image(&d3, 402))
            .unwrap(),
    );
    // One an operator cancelled does.
    j.cancel_deploy(again, "cancelled by an operator", 403)
        .unwrap();
    assert_eq!(
        j.admit_deploy(&pushed("p-3-third", None), &image(&d3, 404))
            .unwrap(),
        Admitted::SameCommit { deploy_id: again }
    );
    // A deploy that ran no digest (a manual trigger, whose command's
    // REDEPLOY_IMAGE is empty) covers nothing of the digest, whatever its
    // profile: a delivery of the digest for that profile deploys it once.
    let trigger = NewDeploy {
        delivery_id: None,
        provider: "manual".into(),
        event_json: "{}".into(),
        ..pushed("m-3", Some("p1"))
    };
    new_id(j.admit_deploy(&trigger, &Admission::default()).unwrap());
    let p1 = new_id(
        j.admit_deploy(&pushed("p-3-p1", Some("p1")), &image(&d3, 405))
            .unwrap(),
    );
    assert_eq!(
        j.admit_deploy(&pushed("p-3-p1-again", Some("p1")), &image(&d3, 406))
            .unwrap(),
        Admitted::SameCommit { deploy_id: p1 }
    );
    // A deploy that pulls the image's tag as a poll follows it (the
    // registry said the tag points to some digest) moves the image on, as
    // a tag's push does: the digest pushed by digest before it is then a
    // duplicate (of its first deploy) for a query none of its deploys had.
    let polled = Admission {
        image: Some(ImageClaim {
            image: "ghcr.io/acme/web:latest".into(),
            repository: "ghcr.io/acme/web".into(),
            digest: d2.clone(),
            seen_at_ms: 407,
            kind: ImageClaimKind::Polled,
        }),
        ..Admission::default()
    };
    new_id(
        j.admit_deploy(&of("ghcr.io/acme/web:latest", "w-1", None), &polled)
            .unwrap(),
    );
    assert_eq!(
        j.admit_deploy(&pushed("p-3-p2", Some("p2")), &image(&d3, 408))
            .unwrap(),
        Admitted::SameCommit { deploy_id: refused }
    );
    // A deploy superseded while it waited by one of another profile never
    // ran the digest with its profile, and covers nothing.
    let d4 = digest('4');
    let fast = new_id(
        j.admit_deploy(&pushed("p-4-fast", Some("fast")), &image(&d4, 500))
            .unwrap(),
    );
    let plain = new_id(
        j.admit_deploy(&pushed("p-4", None), &image(&d4, 501))
            .unwrap(),
    );
    superseded(&j, fast, plain);
    let again = new_id(
        j.admit_deploy(&pushed("p-4-fast-again", Some("fast")), &image(&d4, 503))
            .unwrap(),
    );
    assert_eq!(
        j.admit_deploy(&pushed("p-4-fast-third", Some("fast")), &image(&d4, 504))
            .unwrap(),
        Admitted::SameCommit { deploy_id: again }
    );
    assert_eq!(j.deploys(Some("web"), 100).unwrap().len(), 13);
}

/// Records queued deploy `id` cancelled, superseded by deploy `by`.
fn superseded(j: &Journal, id: i64, by: i64) {
    j.transition(
        id,
        DeployState::Cancelled,
        0,
        &TransitionDetail {
            reason: Some(format!("superseded by deploy #{by}")),
            superseded_by: Some(by),
            ..TransitionDetail::default()
        },
    )
    .unwrap();
}

/// The same push again (the stack's head commit, another delivery id) is a
/// duplicate of a deploy of it superseded while it waited only when every
/// deploy that superseded it, one after the other, had its profile (and so
/// took its services over): a deploy superseded by one of another profile
/// never ran the push with its profile.
fn a_push_superseded_by_a_deploy_of_another_profile_deploys_again(store: &Store) {
    let j = store.open();
    let admit = |delivery: &str, profile: Option<&str>, services: &[&str]| {
        let d = NewDeploy {
            profile: profile.map(str::to_string),
            ..deploy_of(services, "refs/heads/main", 'c', delivery, 1)
        };
        // Each push deploys once (`once`: the dispatcher's for a webhook).
        let mut push = commit(&sha('c'), &sha('b'), false);
        push.commit.as_mut().unwrap().once = true;
        j.admit_deploy(&d, &push).unwrap()
    };
    let fast = new_id(admit("c-fast", Some("fast"), &["web"]));
    let worker = new_id(admit("c-fast-worker", Some("fast"), &["worker"]));
    // Superseded by a deploy of its own profile: covered.
    superseded(&j, fast, worker);
    assert_eq!(
        admit("c-fast-2", Some("fast"), &["web"]),
        Admitted::SameCommit { deploy_id: fast }
    );
    // That one superseded in turn by a deploy of another profile: neither
    // ran the push with its profile.
    let canary = new_id(admit("c-canary", Some("canary"), &[]));
    superseded(&j, worker, canary);
    let rerun = new_id(admit("c-fast-3", Some("fast"), &["web"]));
    assert_eq!(
        admit("c-fast-4", Some("fast"), &["web"]),
        Admitted::SameCommit { deploy_id: rerun }
    );
    assert_eq!(j.deploys(Some("web"), 100).unwrap().len(), 4);
}

/// A commit delivered after a newer one was queued (a late or redelivered
/// push) is cancelled as older, and the newer commit's deploy, still
/// waiting, takes its services; one that already ran is left as it is.
fn a_late_older_commit_leaves_its_services_to_the_newer_deploy_waiting(store: &Store) {
    let j = store.open();
    let of = |sha: &str, delivery: &str, services: &[&str]| NewDeploy {
        services: services.iter().map(|s| s.to_string()).collect(),
        ..deploy(Some(sha), delivery, 1)
    };
    let y = new_id(
        j.admit_deploy(&of("y", "d-y", &["web"]), &commit("y", "x", false))
            .unwrap(),
    );
    let late = j
        .admit_deploy(&of("x", "d-x", &["worker"]), &commit("x", "w", false))
        .unwrap();
    let Admitted::Older { deploy_id: x, .. } = late else {
        panic!("{late:?}")
    };
    assert_eq!(j.deploy(x).unwrap().unwrap().superseded_by, Some(y));
    let waiting = j.deploy(y).unwrap().unwrap();
    assert_eq!(waiting.queued.services, ["web", "worker"]);
    let event: serde_json::Value = serde_json::from_str(&waiting.queued.event_json).unwrap();
    assert_eq!(event["services"], serde_json::json!(["web", "worker"]));
    // Once it ran, a late one changes nothing of it.
    for state in [DeployState::Started, DeployState::Succeeded] {
        j.transition(y, state, 2, &TransitionDetail::default())
            .unwrap();
    }
    let again = j
        .admit_deploy(&of("x", "d-x2", &["cron"]), &commit("x", "w", false))
        .unwrap();
    assert!(matches!(again, Admitted::Older { .. }), "{again:?}");
    assert_eq!(
        j.deploy(y).unwrap().unwrap().queued.services,
        ["web", "worker"]
    );
}

/// `admit_deploy_to_run` hands over the deploy it queued exactly as the
/// journal then holds it (read back apart, after the admission), for a new
/// deploy with and without a deployment request, and nothing for a
/// duplicate, an older commit or a replay.
fn the_admission_hands_over_exactly_the_deploy_it_queued(store: &Store) {
    let j = store.open();
    let (admitted, queued) = j
        .admit_deploy_to_run(&deploy(Some("a"), "d1", 1), &commit("a", "x", false), None)
        .unwrap();
    let a = new_id(admitted);
    let queued = queued.expect("a new deploy is handed over");
    assert_eq!(queued.placed, None, "no placer, nothing placed");
    assert_eq!(queued.record.state, DeployState::Queued);
    assert_eq!(Some(queued.record), j.deploy(a).unwrap());
    // The same delivery id again: a duplicate, nothing to run.
    let (admitted, queued) = j
        .admit_deploy_to_run(&deploy(Some("a"), "d1", 2), &commit("a", "x", false), None)
        .unwrap();
    assert_eq!(admitted, Admitted::Inserted(Inserted::Duplicate(a)));
    assert_eq!(queued, None);
    // A newer commit with its deployment request.
    let request = Admission {
        deployment_request: Some(DeploymentRequestClaim {
            delivery_id: Some("d2".into()),
            git_ref: Some("refs/heads/main".into()),
            sha: Some("b".into()),
            request_json: "{}".into(),
            created_at_ms: 3,
            repository: None,
        }),
        ..commit("b", "a", false)
    };
    let (admitted, queued) = j
        .admit_deploy_to_run(&deploy(Some("b"), "d2", 3), &request, None)
        .unwrap();
    let Admitted::Requested { deploy_id: b, .. } = admitted else {
        panic!("{admitted:?}")
    };
    let queued = queued.map(|q| q.record);
    assert_eq!(queued.as_ref().map(|r| r.id), Some(b));
    assert_eq!(queued, j.deploy(b).unwrap());
    // The older commit again: recorded cancelled at once, nothing to run.
    let (admitted, queued) = j
        .admit_deploy_to_run(&deploy(Some("a"), "d3", 4), &commit("a", "x", false), None)
        .unwrap();
    assert!(matches!(admitted, Admitted::Older { .. }), "{admitted:?}");
    assert_eq!(queued, None);
    // A replayed delivery without an id: nothing to run the second time.
    let mut registry = deploy(None, "", 5);
    registry.delivery_id = None;
    let (admitted, queued) = j.admit_deploy_to_run(&registry, &replay(5), None).unwrap();
    let first = new_id(admitted);
    assert_eq!(queued.map(|q| q.record), j.deploy(first).unwrap());
    let (admitted, queued) = j.admit_deploy_to_run(&registry, &replay(6), None).unwrap();
    assert!(
        matches!(admitted, Admitted::Replayed { .. }),
        "{admitted:?}"
    );
    assert_eq!(queued, None);
}

/// The commit order is per service: a commit one service's branch
/// deployed is not older for a service of another branch (`main`
/// fast-forwarded to a commit `develop` deployed to `worker` deploys `web`);
/// within a service an older commit still never deploys after a newer one;
/// a commit deployed to the whole stack counts for every service, and a
/// deploy of the whole stack is judged by every service's commits.
fn a_commit_one_services_branch_deployed_is_not_older_for_another_service(store: &Store) {
    let j = store.open();
    let of = |service: &str, git_ref: &str, c: char, delivery: &str, at: i64| NewDeploy {
        services: vec![service.to_owned()],
        git_ref: Some(git_ref.to_owned()),
        ..deploy(Some(&sha(c)), delivery, at)
    };
    let (main, develop) = ("refs/heads/main", "refs/heads/develop");
    // worker follows develop: d1, then d2 on top of it.
    new_id(
        j.admit_deploy(
            &of("worker", develop, '1', "w1", 1),
            &commit(&sha('1'), &sha('0'), false),
        )
        .unwrap(),
    );
    new_id(
        j.admit_deploy(
            &of("worker", develop, '2', "w2", 2),
            &commit(&sha('2'), &sha('1'), false),
        )
        .unwrap(),
    );
    // main fast-forwards to d1: worker deployed it and moved past it, web
    // never had it.
    let web_d1 = new_id(
        j.admit_deploy(
            &of("web", main, '1', "m1", 3),
            &commit(&sha('1'), &sha('9'), false),
        )
        .unwrap(),
    );
    // main moves on to d2; d1 pushed late again is older, for web.
    new_id(
        j.admit_deploy(
            &of("web", main, '2', "m2", 4),
            &commit(&sha('2'), &sha('1'), false),
        )
        .unwrap(),
    );
    let late = j
        .admit_deploy(
            &of("web", main, '1', "m3", 5),
            &commit(&sha('1'), &sha('9'), false),
        )
        .unwrap();
    let Admitted::Older { reason, .. } = late else {
        panic!("{late:?}")
    };
    assert!(
        reason.contains(&format!("commit {} is older", sha('1'))),
        "{reason}"
    );
    assert!(web_d1 > 0);
    // A commit deployed to the whole stack is older for each service once
    // one moved past it; a deploy of the whole stack is judged by every
    // service's commits: d1 is older than worker's d2.
    let whole = |c: char, before: char, delivery: &str, at: i64| {
        j.admit_deploy(
            &deploy(Some(&sha(c)), delivery, at),
            &commit(&sha(c), &sha(before), false),
        )
        .unwrap()
    };
    assert!(matches!(whole('1', '9', "s1", 6), Admitted::Older { .. }));
    new_id(whole('5', '2', "s2", 7));
    let proxy = j
        .admit_deploy(
            &of("proxy", main, '2', "p1", 8),
            &commit(&sha('2'), &sha('1'), false),
        )
        .unwrap();
    assert!(
        matches!(proxy, Admitted::Older { .. }),
        "the whole stack moved past d2: {proxy:?}"
    );
    // The whole stack's: d5, and d2, whose waiting deploy took the whole
    // stack's d1 deploy's services (all of them).
    assert_eq!(
        store.query_i64("SELECT COUNT(*) FROM stack_commits WHERE scope = ''"),
        2
    );
}

/// A deploy that took a superseded one's services deployed its commit to
/// them: for those services, the superseded commit is older from then on,
/// and is not deployed again by a later push naming only them, of another
/// branch they follow too.
fn a_deploy_that_took_another_ones_services_is_their_newest_commit(store: &Store) {
    let j = store.open();
    let of = |services: &[&str], c: char, delivery: &str, at: i64| NewDeploy {
        services: services.iter().map(|s| s.to_string()).collect(),
        ..deploy(Some(&sha(c)), delivery, at)
    };
    let both = new_id(
        j.admit_deploy(
            &of(&["web", "worker"], '1', "a1", 1),
            &commit(&sha('1'), &sha('0'), false),
        )
        .unwrap(),
    );
    let web = new_id(
        j.admit_deploy(
            &of(&["web"], '2', "a2", 2),
            &commit(&sha('2'), &sha('1'), false),
        )
        .unwrap(),
    );
    let claimed = j.claim_next("web", 3).unwrap();
    let next = claimed.next.unwrap();
    assert_eq!(
        (next.id, next.queued.services.clone()),
        (web, vec!["web".to_owned(), "worker".to_owned()])
    );
    assert_eq!(
        claimed.cancelled,
        vec![(both, format!("superseded by deploy #{web}"))]
    );
    // worker also follows develop: commit 1 pushed there later is older
    // for worker, which runs commit 2 now (another lane's push: its own
    // lane knows nothing of either).
    let develop = NewDeploy {
        git_ref: Some("refs/heads/develop".into()),
        ..of(&["worker"], '1', "a3", 4)
    };
    let late = j
        .admit_deploy(&develop, &commit(&sha('1'), &sha('0'), false))
        .unwrap();
    assert!(
        matches!(late, Admitted::Older { .. }),
        "worker runs commit 2 now: {late:?}"
    );
}

/// The newest commit of all a deploy's scopes together may be one another
/// service or another lane deployed last: it is no head, and a push on
/// top of it no rollback, for a service or a lane that moved past it.
fn a_commit_another_service_deployed_last_is_still_older_for_a_service_past_it(store: &Store) {
    let j = store.open();
    // Each deploy admitted runs at once: nothing waits.
    let (main, v1, v2) = ("refs/heads/main", "refs/tags/v1", "refs/tags/v2");
    // web follows main and tags, worker main: main at a, tag v1 at 5,
    // tag v2 at 6.
    ran(
        &j,
        new_id(admit_push(
            &j,
            &deploy_of(&["web", "worker"], main, 'a', "m1", 1),
            'a',
            '0',
            false,
        )),
    );
    ran(
        &j,
        new_id(admit_push(
            &j,
            &deploy_of(&["web"], v1, '5', "t1", 2),
            '5',
            '0',
            false,
        )),
    );
    let six = ran(
        &j,
        new_id(admit_push(
            &j,
            &deploy_of(&["web"], v2, '6', "t2", 3),
            '6',
            '0',
            false,
        )),
    );
    // main moves a→5: older for web, which had 5 before 6.
    let both = admit_push(
        &j,
        &deploy_of(&["web", "worker"], main, '5', "m2", 4),
        '5',
        'a',
        false,
    );
    assert!(matches!(both, Admitted::Older { .. }), "{both:?}");
    // worker alone deploys it: 5 is new to worker and to main.
    let worker = ran(
        &j,
        new_id(admit_push(
            &j,
            &deploy_of(&["worker"], main, '5', "m3", 5),
            '5',
            'a',
            false,
        )),
    );
    assert_eq!(j.head_commit("web").unwrap().unwrap().deploy_id, worker);
    // 5 is now the newest commit of web's scopes together (main's), and
    // still older than 6 for web.
    let web = admit_push(
        &j,
        &deploy_of(&["web"], main, '5', "m4", 6),
        '5',
        'a',
        false,
    );
    let Admitted::Older { deploy_id, reason } = web else {
        panic!("web must stay on 6: {web:?}")
    };
    assert!(
        reason.contains(&format!(
            "commit {} is older than commit {}",
            sha('5'),
            sha('6')
        )),
        "{reason}"
    );
    assert!(reason.ends_with("(judged for service web)"), "{reason}");
    assert_eq!(
        j.deploy(deploy_id).unwrap().unwrap().superseded_by,
        Some(six)
    );
    // A forced push from 5, main's newest commit, back to a is a rollback,
    // for web too (the latest move of its branch), and for worker.
    ran(
        &j,
        new_id(admit_push(
            &j,
            &deploy_of(&["web"], main, 'a', "m5", 7),
            'a',
            '5',
            true,
        )),
    );
    ran(
        &j,
        new_id(admit_push(
            &j,
            &deploy_of(&["worker"], main, 'a', "m6", 8),
            'a',
            '5',
            true,
        )),
    );

    // A lane: main had 7 then 8 (web); worker's tag v2 then deployed 7,
    // the newest of worker's scopes and main's together. A push of main
    // at 7, not on top of 8, is older in main, though worker's head.
    let seven = ran(
        &j,
        new_id(admit_push(
            &j,
            &deploy_of(&["web"], main, '7', "n1", 9),
            '7',
            'a',
            false,
        )),
    );
    let eight = ran(
        &j,
        new_id(admit_push(
            &j,
            &deploy_of(&["web"], main, '8', "n2", 10),
            '8',
            '7',
            false,
        )),
    );
    ran(
        &j,
        new_id(admit_push(
            &j,
            &deploy_of(&["worker"], v2, '7', "n3", 11),
            '7',
            '6',
            false,
        )),
    );
    let late = admit_push(
        &j,
        &deploy_of(&["worker"], main, '7', "n4", 12),
        '7',
        'a',
        false,
    );
    let Admitted::Older { reason, .. } = late else {
        panic!("main is at 8: {late:?}")
    };
    assert!(
        reason.ends_with("(judged for ref refs/heads/main)"),
        "{reason}"
    );
    assert!(seven < eight);
}

/// A deploy takes over the services of its lane's waiting deploys (at its
/// claim, or when an older push is cancelled for it): it is judged for
/// them too, and never takes a service its commit is older for. worker
/// follows main and tags, and had k1 (tag v1) then k2 (tag v2), then its
/// push of main k2→k3 waits.
fn a_deploy_never_takes_over_a_service_its_commit_is_older_for(store: &Store) {
    let j = store.open();
    let (main, v1, v2) = ("refs/heads/main", "refs/tags/v1", "refs/tags/v2");
    new_id(admit_push(
        &j,
        &deploy_of(&["worker"], v1, '1', "t1", 1),
        '1',
        'z',
        false,
    ));
    new_id(admit_push(
        &j,
        &deploy_of(&["worker"], v2, '2', "t2", 2),
        '2',
        'z',
        false,
    ));
    // worker's main push of k3 waits; web's main push of k1 (new to web
    // and to main) would take worker over at k1, older than k2 and k3 for it.
    let k3 = new_id(admit_push(
        &j,
        &deploy_of(&["worker"], main, '3', "m1", 3),
        '3',
        '2',
        false,
    ));
    let web = admit_push(
        &j,
        &deploy_of(&["web"], main, '1', "m2", 4),
        '1',
        '0',
        false,
    );
    let Admitted::Older { deploy_id, reason } = web else {
        panic!("worker must not go back to k1: {web:?}")
    };
    assert!(
        reason.contains(&format!("commit {} is older", sha('1'))),
        "{reason}"
    );
    assert!(
        reason.contains(&format!(
            "; deploy #{k3}, waiting in the same branch or tag, deploys that service"
        )),
        "{reason}"
    );
    assert_eq!(
        j.deploy(deploy_id).unwrap().unwrap().state,
        DeployState::Cancelled
    );
    // worker's deploy still waits, to run k3, and takes web's push over
    // as main's newer commit (k3 is new to web).
    let waiting = j.deploy(k3).unwrap().unwrap();
    assert_eq!(waiting.state, DeployState::Queued);
    assert_eq!(waiting.queued.services, ["worker", "web"]);
    assert_eq!(
        j.deploy(deploy_id).unwrap().unwrap().superseded_by,
        Some(k3)
    );
    // On develop nothing waits: web's push of k1 deploys web. A late push
    // of k0 for worker, older, is cancelled for it, and leaves worker out
    // (k1 is older than k2 and k3 for worker).
    let develop = "refs/heads/develop";
    let web = new_id(admit_push(
        &j,
        &deploy_of(&["web"], develop, '1', "d1", 5),
        '1',
        '0',
        false,
    ));
    let late = admit_push(
        &j,
        &deploy_of(&["worker"], develop, '0', "d2", 6),
        '0',
        '9',
        false,
    );
    let Admitted::Older { deploy_id, .. } = late else {
        panic!("{late:?}")
    };
    assert_eq!(
        j.deploy(deploy_id).unwrap().unwrap().superseded_by,
        Some(web)
    );
    let web = j.deploy(web).unwrap().unwrap();
    assert_eq!(web.queued.services, ["web"]);
    assert_eq!(web.queued.event_json, "{}");
}

/// A push that starts from its branch's newest commit (the waiting
/// deploy's) is that branch's latest move: it supersedes the deploys
/// waiting there, takes over each service its commit is not older for, and
/// leaves out one that already has it. worker had k2 from tag v2 (cut ahead
/// of main); main moved 1→c for worker, then c→k2 for web: worker keeps
/// k2, which it runs, and never goes back to c.
fn a_push_from_its_branchs_newest_commit_supersedes_the_deploys_waiting_there(store: &Store) {
    let j = store.open();
    let main = "refs/heads/main";
    ran(
        &j,
        new_id(admit_push(
            &j,
            &deploy_of(&["worker"], "refs/tags/v2", '2', "t2", 1),
            '2',
            '0',
            false,
        )),
    );
    let waiting = new_id(admit_push(
        &j,
        &deploy_of(&["worker", "cron"], main, 'c', "m1", 2),
        'c',
        '1',
        false,
    ));
    let web = new_id(admit_push(
        &j,
        &deploy_of(&["web"], main, '2', "m2", 3),
        '2',
        'c',
        false,
    ));
    let claimed = j.claim_next("web", 4).unwrap();
    let next = claimed.next.unwrap();
    // cron never had k2: it is taken over.
    assert_eq!(
        (next.id, next.queued.services),
        (web, vec!["web".to_owned(), "cron".to_owned()])
    );
    assert_eq!(
        claimed.cancelled,
        vec![(waiting, format!("superseded by deploy #{web}"))]
    );
    ran(&j, web);
    // worker's push k2→3 waits; web's forced push from 3 back to c is a
    // rollback, for every service it takes over from a deploy waiting there.
    let waiting = new_id(admit_push(
        &j,
        &deploy_of(&["worker"], main, '3', "m3", 5),
        '3',
        '2',
        false,
    ));
    let back = new_id(admit_push(
        &j,
        &deploy_of(&["web"], main, 'c', "m4", 6),
        'c',
        '3',
        true,
    ));
    let claimed = j.claim_next("web", 7).unwrap();
    let next = claimed.next.unwrap();
    assert_eq!(
        (next.id, next.queued.services),
        (back, vec!["web".to_owned(), "worker".to_owned()])
    );
    assert_eq!(
        claimed.cancelled,
        vec![(waiting, format!("superseded by deploy #{back}"))]
    );
}

/// Judged by all its scopes together, a commit may look older though it
/// is older for none of them: "seen" from the lane's commits (another
/// service deployed it on that branch), the head from the service's own
/// (another branch). Judged by each, it deploys. web follows main and
/// develop, worker main, and each gets its own webhook of a push.
fn a_commit_older_only_for_the_scopes_together_deploys(store: &Store) {
    let j = store.open();
    let (main, develop) = ("refs/heads/main", "refs/heads/develop");
    let both = deploy_of(&["web", "worker"], main, 'g', "m1", 1);
    ran(&j, new_id(admit_push(&j, &both, 'g', '0', false)));
    let worker = deploy_of(&["worker"], main, 'x', "m2w", 2);
    ran(&j, new_id(admit_push(&j, &worker, 'x', 'g', false)));
    let web = deploy_of(&["web"], develop, 'd', "d1", 3);
    ran(&j, new_id(admit_push(&j, &web, 'd', '0', false)));
    let web = deploy_of(&["web"], main, 'x', "m2web", 4);
    let admitted = admit_push(&j, &web, 'x', 'g', false);
    assert!(
        matches!(admitted, Admitted::Inserted(Inserted::New(_))),
        "x is new to web and main's head: {admitted:?}"
    );
    // Still older where one group says so: g, which web had, on main.
    let late = deploy_of(&["web"], main, 'g', "m3", 5);
    let late = admit_push(&j, &late, 'g', '0', false);
    assert!(matches!(late, Admitted::Older { .. }), "{late:?}");
}

/// An operator's redeploy of one service's earlier deploy rolls back that
/// service alone: a deploy of another service waiting in its branch is
/// superseded, and that service is not taken back to the redeployed commit.
fn an_operators_redeploy_rolls_back_only_the_services_it_names(store: &Store) {
    let j = store.open();
    let main = "refs/heads/main";
    ran(
        &j,
        new_id(admit_push(
            &j,
            &deploy_of(&["web"], main, 'a', "w1", 1),
            'a',
            '0',
            false,
        )),
    );
    let worker = |c: char, before: char, delivery: &str, at: i64| {
        admit_push(
            &j,
            &deploy_of(&["worker"], main, c, delivery, at),
            c,
            before,
            false,
        )
    };
    ran(&j, new_id(worker('a', '0', "k1", 2)));
    ran(&j, new_id(worker('b', 'a', "k2", 3)));
    let waiting = new_id(worker('c', 'b', "k3", 4));
    let mut redeploy = commit(&sha('a'), &sha('0'), false);
    if let Some(claim) = redeploy.commit.as_mut() {
        claim.requested = true;
        claim.before = None;
    }
    let again = deploy_of(&["web"], main, 'a', "r1", 5);
    let again = new_id(j.admit_deploy(&again, &redeploy).unwrap());
    let claimed = j.claim_next("web", 6).unwrap();
    let next = claimed.next.unwrap();
    assert_eq!(
        (next.id, next.queued.services),
        (again, vec!["web".to_owned()])
    );
    assert_eq!(
        claimed.cancelled,
        vec![(waiting, format!("superseded by deploy #{again}"))]
    );
}

/// Pushes missed while redeploy was down come back (the catch-up asks GitHub
/// to deliver them again) after the live push that followed them: none
/// deploys, however many there were, since each starts from a commit the
/// branch had before its head and was not forced.
fn pushes_redelivered_after_the_live_one_deploy_nothing(store: &Store) {
    let j = store.open();
    let main = "refs/heads/main";
    let push = |c: char, before: char, delivery: &str, at: i64| {
        admit_push(&j, &deploy_of(&[], main, c, delivery, at), c, before, false)
    };
    ran(&j, new_id(push('a', '0', "p1", 1)));
    // a→b, b→c and c→d are missed; the live d→e deploys.
    let live = ran(&j, new_id(push('e', 'd', "p5", 2)));
    // The catch-up asks GitHub for the missed ones again.
    for (n, guid) in ["p2", "p3", "p4", "p4b", "p11"].into_iter().enumerate() {
        let asked = NewRedelivery {
            stack: "web".into(),
            guid: guid.into(),
            hook_id: 1,
            github_delivery_id: n as u64 + 1,
            event: "push".into(),
            at_ms: 3,
        };
        assert!(j.claim_redelivery(&asked, false).unwrap());
    }
    for (c, before, delivery) in [('b', 'a', "p2"), ('c', 'b', "p3"), ('d', 'c', "p4")] {
        let Admitted::Older { reason, .. } = push(c, before, delivery, 3) else {
            panic!("{delivery} deployed after the live push");
        };
        assert!(
            reason.contains(&format!("older than commit {} (deploy #{live})", sha('e'))),
            "{delivery}: {reason}"
        );
    }
    // A push from one of those commits is older too.
    let Admitted::Older { reason, .. } = push('g', 'c', "p4b", 4) else {
        panic!("a push from a commit found behind the head deployed");
    };
    assert!(
        reason.contains(&format!("started from commit {}", sha('c'))),
        "{reason}"
    );
    // Through continuous deployment: the deploy of the deployment that a
    // redelivered push asked for is judged by that push.
    let request = NewDeploymentRequest {
        stack: "web".into(),
        delivery_id: Some("p11".into()),
        deploy_id: None,
        git_ref: Some(main.into()),
        repository: None,
        sha: Some(sha('m')),
        request_json: "{}".into(),
        created_at_ms: 4,
    };
    let Inserted::New(request) = j.insert_deployment_request(&request).unwrap() else {
        panic!("a new request")
    };
    j.settle_deployment_request(
        request,
        RequestState::Created,
        Some(1000),
        Some(201),
        None,
        4,
    )
    .unwrap();
    let event = NewDeploy {
        delivery_id: Some(deployment_delivery_key(1000)),
        ..deploy_of(&[], main, 'm', "unused", 4)
    };
    let Admitted::Older { reason, .. } = j
        .admit_deploy(&event, &commit(&sha('m'), &sha('a'), false))
        .unwrap()
    else {
        panic!("the deployment of a redelivered push deployed");
    };
    assert!(
        reason.contains(&format!("started from commit {}", sha('a'))),
        "{reason}"
    );
    // The branch's next push deploys; so does the same push for another
    // service (the head, by another webhook).
    let next = new_id(admit_push(
        &j,
        &deploy_of(&["web"], main, 'f', "p6", 5),
        'f',
        'e',
        false,
    ));
    let other = admit_push(
        &j,
        &deploy_of(&["worker"], main, 'f', "p6-worker", 6),
        'f',
        'e',
        false,
    );
    assert!(
        matches!(other, Admitted::Inserted(Inserted::New(_))),
        "{other:?}"
    );
    ran(&j, next);
    // An operator redeploys a: the branch stays at f, and its next push
    // from there deploys.
    let mut redeploy = commit(&sha('a'), &sha('0'), false);
    if let Some(claim) = redeploy.commit.as_mut() {
        claim.requested = true;
        claim.before = None;
    }
    let again = NewDeploy {
        provider: redeploy_host::rollback::PROVIDER.into(),
        ..deploy_of(&[], main, 'a', "r1", 6)
    };
    ran(&j, new_id(j.admit_deploy(&again, &redeploy).unwrap()));
    let after = push('h', 'f', "p6b", 6);
    assert!(
        matches!(after, Admitted::Inserted(Inserted::New(_))),
        "{after:?}"
    );
    // A late push from an earlier commit that its sender says was forced,
    // or whose sender never says, is not known to be older: it deploys.
    let forced = admit_push(&j, &deploy_of(&[], main, 'x', "p7", 7), 'x', 'a', true);
    assert!(
        matches!(forced, Admitted::Inserted(Inserted::New(_))),
        "{forced:?}"
    );
    let mut unsaid = commit(&sha('y'), &sha('b'), false);
    if let Some(claim) = unsaid.commit.as_mut() {
        claim.sender_reports_forced = false;
    }
    let unsaid = j
        .admit_deploy(&deploy_of(&[], main, 'y', "p8", 8), &unsaid)
        .unwrap();
    assert!(
        matches!(unsaid, Admitted::Inserted(Inserted::New(_))),
        "{unsaid:?}"
    );
    // A live push from a commit main had before its head (GitHub delivered
    // a forced push back after it, or the branch was recreated there) is
    // not known to be late: it deploys.
    let live = push('k', 'c', "p10", 10);
    assert!(
        matches!(live, Admitted::Inserted(Inserted::New(_))),
        "{live:?}"
    );
    // Another branch's push from a commit main had is no late push of main.
    let develop = admit_push(
        &j,
        &deploy_of(&[], "refs/heads/develop", 'z', "p9", 9),
        'z',
        'a',
        false,
    );
    assert!(
        matches!(develop, Admitted::Inserted(Inserted::New(_))),
        "{develop:?}"
    );
}

super::on_both_backends!(
    pushes_redelivered_after_the_live_one_deploy_nothing,
    a_commit_older_only_for_the_scopes_together_deploys,
    an_operators_redeploy_rolls_back_only_the_services_it_names,
    a_push_from_its_branchs_newest_commit_supersedes_the_deploys_waiting_there,
    a_deploy_never_takes_over_a_service_its_commit_is_older_for,
    a_commit_another_service_deployed_last_is_still_older_for_a_service_past_it,
    the_admission_hands_over_exactly_the_deploy_it_queued,
    a_deploy_that_took_another_ones_services_is_their_newest_commit,
    a_commit_one_services_branch_deployed_is_not_older_for_another_service,
    an_older_commit_is_recorded_cancelled_with_the_reason_across_reopening,
    a_replay_key_deduplicates_until_it_expires_and_is_then_pruned,
    a_stack_that_polls_deploys_its_head_commit_once,
    a_stack_that_polls_an_image_deploys_each_digest_once,
    an_image_pushed_by_digest_deploys_each_digest_once_and_never_an_earlier_one,
    a_push_superseded_by_a_deploy_of_another_profile_deploys_again,
    a_late_older_commit_leaves_its_services_to_the_newer_deploy_waiting,
    the_journal_remembers_each_polled_source,
);
