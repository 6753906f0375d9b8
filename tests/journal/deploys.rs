//! Deploys, deliveries, recovery and hook tokens, on both backends.

use redeploy_host::journal::*;

use super::Store;

pub(super) fn new_deploy(stack: &str, delivery_id: Option<&str>, created_at_ms: i64) -> NewDeploy {
    NewDeploy {
        stack: stack.to_owned(),
        delivery_id: delivery_id.map(str::to_owned),
        provider: "github".to_owned(),
        git_ref: Some("refs/heads/main".to_owned()),
        sha: Some("0123456789abcdef0123456789abcdef01234567".to_owned()),
        services: vec!["web".to_owned(), "worker".to_owned()],
        profile: Some("prod".to_owned()),
        reason: "push to main".to_owned(),
        event_json: r#"{"kind":"push"}"#.to_owned(),
        created_at_ms,
        pusher: Some("alice".to_owned()),
        repository: None,
    }
}

pub(super) fn new_id(inserted: Inserted) -> i64 {
    match inserted {
        Inserted::New(id) => id,
        Inserted::Duplicate(id) => panic!("expected a new deploy, got duplicate of {id}"),
    }
}

pub(super) fn total(journal: &Journal) -> u64 {
    journal.count_by_state().unwrap().values().sum()
}

/// Takes deploy `id` through `started` (at `started_ms`) to `succeeded`.
fn run_to_success(journal: &Journal, id: i64, started_ms: i64, finished_ms: i64) {
    for (state, at) in [
        (DeployState::Started, started_ms),
        (DeployState::Succeeded, finished_ms),
    ] {
        journal
            .transition(id, state, at, &TransitionDetail::default())
            .unwrap();
    }
}

/// A GitHub push delivery to stack "app", answered with `status`.
fn push_delivery(at: i64, delivery_id: &str, status: u16, summary: &str) -> NewDelivery {
    NewDelivery {
        received_at_ms: at,
        stack: Some("app".to_owned()),
        provider: Some("github".to_owned()),
        event: Some("push".to_owned()),
        delivery_id: Some(delivery_id.to_owned()),
        status,
        summary: summary.to_owned(),
    }
}

/// A delivery to a hook URL no stack has.
fn unknown_hook(at: i64) -> NewDelivery {
    NewDelivery {
        received_at_ms: at,
        stack: None,
        provider: None,
        event: None,
        delivery_id: None,
        status: 404,
        summary: "unknown hook".to_owned(),
    }
}

fn insert_transition_and_read_back(store: &Store) {
    let journal = store.open();

    let id = new_id(
        journal
            .insert_deploy(&new_deploy("app", Some("d-1"), 1_000))
            .unwrap(),
    );
    let queued = journal.deploy(id).unwrap().unwrap();
    assert_eq!(
        queued,
        DeployRecord {
            id,
            // Read back exactly as it was queued.
            queued: new_deploy("app", Some("d-1"), 1_000),
            state: DeployState::Queued,
            started_at_ms: None,
            finished_at_ms: None,
            exit_code: None,
            log_path: None,
            detail: None,
            superseded_by: None,
        }
    );

    journal
        .transition(
            id,
            DeployState::Started,
            2_000,
            &TransitionDetail {
                log_path: Some("/state/logs/1.log".to_owned()),
                ..TransitionDetail::default()
            },
        )
        .unwrap();
    journal
        .transition(
            id,
            DeployState::Failed,
            3_500,
            &TransitionDetail {
                exit_code: Some(17),
                reason: Some("docker compose up exited with 17".to_owned()),
                ..TransitionDetail::default()
            },
        )
        .unwrap();

    let failed = journal.deploy(id).unwrap().unwrap();
    assert_eq!(failed.state, DeployState::Failed);
    assert_eq!(failed.started_at_ms, Some(2_000));
    assert_eq!(failed.finished_at_ms, Some(3_500));
    assert_eq!(failed.exit_code, Some(17));
    assert_eq!(failed.log_path.as_deref(), Some("/state/logs/1.log"));
    assert_eq!(
        failed.detail.as_deref(),
        Some("docker compose up exited with 17")
    );
    assert_eq!(
        journal.transitions(id).unwrap(),
        [
            (DeployState::Queued, 1_000),
            (DeployState::Started, 2_000),
            (DeployState::Failed, 3_500)
        ]
    );
    assert!(journal.transitions(id + 100).unwrap().is_empty());
    assert_eq!(journal.deploy(id + 100).unwrap(), None);

    // The record serialises with the state as its name.
    let json = serde_json::to_value(&failed).unwrap();
    assert_eq!(json["state"], "failed");
    assert_eq!(json["services"], serde_json::json!(["web", "worker"]));

    // Cancelling a queued deploy in favour of a newer one.
    let older = new_id(
        journal
            .insert_deploy(&new_deploy("app", None, 4_000))
            .unwrap(),
    );
    let newer = new_id(
        journal
            .insert_deploy(&new_deploy("app", None, 4_100))
            .unwrap(),
    );
    journal
        .transition(
            older,
            DeployState::Cancelled,
            4_200,
            &TransitionDetail {
                reason: Some(format!("superseded by deploy {newer}")),
                superseded_by: Some(newer),
                ..TransitionDetail::default()
            },
        )
        .unwrap();
    let cancelled = journal.deploy(older).unwrap().unwrap();
    assert_eq!(cancelled.state, DeployState::Cancelled);
    assert_eq!(cancelled.superseded_by, Some(newer));
    assert_eq!(cancelled.started_at_ms, None);
    assert_eq!(cancelled.finished_at_ms, Some(4_200));

    // superseded_by must name a real deploy.
    let err = journal
        .transition(
            newer,
            DeployState::Cancelled,
            4_300,
            &TransitionDetail {
                superseded_by: Some(9_999),
                ..TransitionDetail::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, JournalError::Database { .. }), "{err}");
    assert_eq!(
        journal.deploy(newer).unwrap().unwrap().state,
        DeployState::Queued
    );

    let err = journal
        .transition(9_999, DeployState::Started, 1, &TransitionDetail::default())
        .unwrap_err();
    assert!(
        matches!(err, JournalError::UnknownDeploy { id: 9_999, .. }),
        "{err}"
    );

    let counts = journal.count_by_state().unwrap();
    assert_eq!(counts.len(), DeployState::ALL.len());
    assert_eq!(counts[&DeployState::Failed], 1);
    assert_eq!(counts[&DeployState::Cancelled], 1);
    assert_eq!(counts[&DeployState::Queued], 1);
    assert_eq!(counts[&DeployState::Succeeded], 0);
}

fn deliveries_are_recorded_most_recent_first(store: &Store) {
    let journal = store.open();
    let first = push_delivery(10, "d-1", 202, "queued deploy 1");
    let second = unknown_hook(20);
    let a = journal.record_delivery(&first).unwrap();
    let b = journal.record_delivery(&second).unwrap();
    assert!(b > a);
    let got = journal.deliveries(10).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0],
        DeliveryRecord {
            id: b,
            recorded: unknown_hook(20),
        }
    );
    assert_eq!(got[1].id, a);
    assert_eq!(got[1].recorded.stack.as_deref(), Some("app"));
    assert_eq!(got[1].recorded.status, 202);
    assert_eq!(journal.deliveries(1).unwrap().len(), 1);
    assert!(journal.deliveries(0).unwrap().is_empty());
}

fn relaxed_delivery_is_recorded_and_seen_by_another_connection(store: &Store) {
    let journal = std::sync::Arc::new(store.open());
    let skipped = push_delivery(30, "d-2", 200, "push to another branch");
    let id = journal.record_delivery_relaxed(&skipped).unwrap();
    // Committed: another connection (`redeploy history`) sees it.
    let reader = store.reader();
    let got = reader.deliveries(10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id);
    assert_eq!(got[0].recorded.summary, "push to another branch");
}

fn duplicate_delivery_id_returns_existing_and_inserts_nothing(store: &Store) {
    let journal = store.open();
    let id = new_id(
        journal
            .insert_deploy(&new_deploy("app", Some("d-1"), 1))
            .unwrap(),
    );

    let mut again = new_deploy("app", Some("d-1"), 2);
    again.reason = "redelivery".to_owned();
    assert_eq!(
        journal.insert_deploy(&again).unwrap(),
        Inserted::Duplicate(id)
    );
    assert_eq!(total(&journal), 1);
    assert_eq!(
        journal.deploy(id).unwrap().unwrap().queued.reason,
        "push to main"
    );
    assert_eq!(journal.transitions(id).unwrap().len(), 1);

    // Also a duplicate once the first has finished.
    run_to_success(&journal, id, 3, 4);
    assert_eq!(
        journal.insert_deploy(&again).unwrap(),
        Inserted::Duplicate(id)
    );

    // The same delivery id for another stack, and deploys without a
    // delivery id, are distinct.
    assert!(matches!(
        journal
            .insert_deploy(&new_deploy("other", Some("d-1"), 5))
            .unwrap(),
        Inserted::New(_)
    ));
    assert!(matches!(
        journal.insert_deploy(&new_deploy("app", None, 6)).unwrap(),
        Inserted::New(_)
    ));
    assert!(matches!(
        journal.insert_deploy(&new_deploy("app", None, 7)).unwrap(),
        Inserted::New(_)
    ));
    assert_eq!(total(&journal), 4);
}

fn illegal_transition_is_rejected_and_changes_nothing(store: &Store) {
    let journal = store.open();
    let id = new_id(journal.insert_deploy(&new_deploy("app", None, 1)).unwrap());
    let before = journal.deploy(id).unwrap().unwrap();

    let detail = TransitionDetail {
        exit_code: Some(0),
        reason: Some("should not be stored".to_owned()),
        log_path: Some("/nope".to_owned()),
        superseded_by: None,
        runner: Some("nobody".to_owned()),
    };
    for to in [
        DeployState::Queued,
        DeployState::Succeeded,
        DeployState::Failed,
        DeployState::Interrupted,
    ] {
        let err = journal.transition(id, to, 2, &detail).unwrap_err();
        match err {
            JournalError::IllegalTransition {
                id: got_id,
                from,
                to: got_to,
            } => {
                assert_eq!((got_id, from, got_to), (id, DeployState::Queued, to));
            }
            other => panic!("expected IllegalTransition, got {other}"),
        }
        assert_eq!(journal.deploy(id).unwrap().unwrap(), before);
        assert_eq!(journal.transitions(id).unwrap(), [(DeployState::Queued, 1)]);
    }

    run_to_success(&journal, id, 3, 4);
    let done = journal.deploy(id).unwrap().unwrap();
    let err = journal
        .transition(id, DeployState::Started, 5, &detail)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("journal: cannot transition deploy {id}: illegal transition succeeded -> started")
    );
    assert_eq!(journal.deploy(id).unwrap().unwrap(), done);
    assert_eq!(journal.transitions(id).unwrap().len(), 3);
}

fn recover_interrupts_started_and_returns_queued_oldest_first(store: &Store) {
    let (running_a, running_b, queued_late, queued_early, done);
    {
        let journal = store.open();
        running_a = new_id(journal.insert_deploy(&new_deploy("a", None, 100)).unwrap());
        running_b = new_id(journal.insert_deploy(&new_deploy("b", None, 110)).unwrap());
        // Inserted first but created later: "oldest" is by creation time.
        queued_late = new_id(journal.insert_deploy(&new_deploy("c", None, 300)).unwrap());
        queued_early = new_id(journal.insert_deploy(&new_deploy("d", None, 200)).unwrap());
        done = new_id(journal.insert_deploy(&new_deploy("e", None, 50)).unwrap());
        for id in [running_a, running_b, done] {
            journal
                .transition(id, DeployState::Started, 400, &TransitionDetail::default())
                .unwrap();
        }
        journal
            .transition(
                done,
                DeployState::Succeeded,
                450,
                &TransitionDetail::default(),
            )
            .unwrap();
    }

    let journal = store.open();
    let recovery = journal.recover(1_000).unwrap();
    let ids = |records: &[DeployRecord]| records.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(&recovery.interrupted), [running_a, running_b]);
    assert_eq!(ids(&recovery.queued), [queued_early, queued_late]);
    for record in &recovery.interrupted {
        assert_eq!(record.state, DeployState::Interrupted);
        assert_eq!(record.started_at_ms, Some(400));
        assert_eq!(record.finished_at_ms, Some(1_000));
        assert_eq!(record.detail.as_deref(), Some(INTERRUPTED_REASON));
        assert_eq!(journal.deploy(record.id).unwrap().as_ref(), Some(record));
        assert_eq!(
            journal.transitions(record.id).unwrap().last(),
            Some(&(DeployState::Interrupted, 1_000))
        );
    }
    assert!(recovery
        .queued
        .iter()
        .all(|r| r.state == DeployState::Queued));
    assert_eq!(
        journal.deploy(done).unwrap().unwrap().state,
        DeployState::Succeeded
    );

    // Idempotent: nothing is left started.
    let again = journal.recover(2_000).unwrap();
    assert!(again.interrupted.is_empty());
    assert_eq!(ids(&again.queued), [queued_early, queued_late]);
}

fn data_survives_close_and_reopen(store: &Store) {
    let id;
    {
        let journal = store.open();
        id = new_id(
            journal
                .insert_deploy(&new_deploy("app", Some("d-9"), 5))
                .unwrap(),
        );
        journal
            .transition(id, DeployState::Started, 6, &TransitionDetail::default())
            .unwrap();
        journal
            .record_delivery(&push_delivery(5, "d-9", 202, "queued"))
            .unwrap();
        journal.ensure_hook_token("app", "tok-1").unwrap();
    }
    let journal = store.open();
    let record = journal.deploy(id).unwrap().unwrap();
    assert_eq!(record.state, DeployState::Started);
    assert_eq!(record.queued.delivery_id.as_deref(), Some("d-9"));
    assert_eq!(journal.deliveries(10).unwrap().len(), 1);
    assert_eq!(journal.hook_token("app").unwrap().as_deref(), Some("tok-1"));
    assert_eq!(
        journal
            .insert_deploy(&new_deploy("app", Some("d-9"), 7))
            .unwrap(),
        Inserted::Duplicate(id)
    );
    // New ids keep increasing after reopening.
    let next = new_id(journal.insert_deploy(&new_deploy("app", None, 8)).unwrap());
    assert!(next > id);
    drop(journal);

    // And the read-only view sees it after the writer has closed.
    let reader = store.reader();
    assert_eq!(reader.deploys(None, 10).unwrap().len(), 2);
    assert_eq!(reader.transitions(id).unwrap().len(), 2);
}

fn ensure_hook_token_is_idempotent(store: &Store) {
    let journal = store.open();
    assert_eq!(journal.hook_token("app").unwrap(), None);
    assert_eq!(journal.ensure_hook_token("app", "first").unwrap(), "first");
    assert_eq!(journal.ensure_hook_token("app", "first").unwrap(), "first");
    assert_eq!(journal.ensure_hook_token("app", "second").unwrap(), "first");
    assert_eq!(journal.hook_token("app").unwrap().as_deref(), Some("first"));

    // A second connection (another process) agrees.
    let other = store.open();
    assert_eq!(other.ensure_hook_token("app", "third").unwrap(), "first");
    assert_eq!(other.ensure_hook_token("web", "w-1").unwrap(), "w-1");
    assert_eq!(journal.hook_token("web").unwrap().as_deref(), Some("w-1"));
    assert_eq!(journal.hook_token("nope").unwrap(), None);
}

fn deploys_filters_by_stack_and_orders_most_recent_first(store: &Store) {
    let journal = store.open();
    let mut app = Vec::new();
    let mut web = Vec::new();
    for i in 0..5 {
        app.push(new_id(
            journal.insert_deploy(&new_deploy("app", None, i)).unwrap(),
        ));
        web.push(new_id(
            journal.insert_deploy(&new_deploy("web", None, i)).unwrap(),
        ));
    }
    let ids = |records: Vec<DeployRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();

    let mut all: Vec<i64> = app.iter().chain(&web).copied().collect();
    all.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids(journal.deploys(None, 100).unwrap()), all);
    assert_eq!(ids(journal.deploys(None, 3).unwrap()), all[..3]);

    let app_desc: Vec<i64> = app.iter().rev().copied().collect();
    assert_eq!(ids(journal.deploys(Some("app"), 100).unwrap()), app_desc);
    assert_eq!(ids(journal.deploys(Some("app"), 2).unwrap()), app_desc[..2]);
    assert!(journal
        .deploys(Some("web"), 100)
        .unwrap()
        .iter()
        .all(|r| r.queued.stack == "web"));
    assert!(journal.deploys(Some("nope"), 100).unwrap().is_empty());
    assert!(journal.deploys(None, 0).unwrap().is_empty());
    assert_eq!(journal.deploys(None, usize::MAX).unwrap().len(), 10);
}

fn journal_is_shareable_between_threads(store: &Store) {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Journal>();

    let journal = std::sync::Arc::new(store.open());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let journal = journal.clone();
            std::thread::spawn(move || {
                for i in 0..10 {
                    let delivery = format!("d-{t}-{i}");
                    journal
                        .insert_deploy(&new_deploy("app", Some(&delivery), i))
                        .unwrap();
                    // Every thread also redelivers thread 0's first one.
                    journal
                        .insert_deploy(&new_deploy("app", Some("d-0-0"), i))
                        .unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }
    assert_eq!(total(&journal), 40);
}

/// A deploy cancelled for a newer one still queued (by the claim, or one
/// by one) leaves it its services: a service only it named still deploys;
/// one that named every service (none) leaves every one.
fn a_superseded_deploy_leaves_its_services_to_the_deploy_it_is_cancelled_for(store: &Store) {
    let journal = store.open();
    let with = |delivery: &str, services: &[&str]| {
        let d = NewDeploy {
            services: services.iter().map(|s| s.to_string()).collect(),
            ..new_deploy("app", Some(delivery), 1)
        };
        new_id(journal.insert_deploy(&d).unwrap())
    };
    let services = |id: i64| journal.deploy(id).unwrap().unwrap().queued.services;
    let first = with("d1", &["db"]);
    let second = with("d2", &["web", "db"]);
    let third = with("d3", &["worker"]);
    let claimed = journal.claim_next("app", 10).unwrap();
    assert_eq!(claimed.next.as_ref().map(|d| d.id), Some(third));
    assert_eq!(
        claimed.next.unwrap().queued.services,
        ["worker", "web", "db"],
        "the claimed deploy is read after it was widened"
    );
    assert_eq!(services(first), ["db"], "a cancelled deploy keeps its own");
    assert_eq!(
        journal.deploy(second).unwrap().unwrap().superseded_by,
        Some(third)
    );
    journal
        .transition(
            third,
            DeployState::Started,
            11,
            &TransitionDetail::default(),
        )
        .unwrap();

    // One by one, as a runner supersedes its pending deploy.
    let fourth = with("d4", &["web"]);
    let fifth = with("d5", &["worker"]);
    let superseded = |by: i64| TransitionDetail {
        reason: Some(format!("superseded by deploy #{by}")),
        superseded_by: Some(by),
        ..TransitionDetail::default()
    };
    assert!(journal
        .cancel_queued(fourth, 12, &superseded(fifth))
        .unwrap());
    assert_eq!(services(fifth), ["worker", "web"]);
    // The event the deploy is handed says so too.
    let event: serde_json::Value =
        serde_json::from_str(&journal.deploy(fifth).unwrap().unwrap().queued.event_json).unwrap();
    assert_eq!(event["services"], serde_json::json!(["worker", "web"]));
    assert_eq!(event["kind"], "push");
    // A deploy of another profile is not merged into it.
    let canary = NewDeploy {
        services: vec!["db".to_owned()],
        profile: Some("canary".to_owned()),
        ..new_deploy("app", Some("d4b"), 1)
    };
    let canary = new_id(journal.insert_deploy(&canary).unwrap());
    assert!(journal
        .cancel_queued(canary, 12, &superseded(fifth))
        .unwrap());
    assert_eq!(services(fifth), ["worker", "web"]);
    // For a deploy that already started: nothing to widen.
    let sixth = with("d6", &["cron"]);
    assert!(journal
        .cancel_queued(sixth, 13, &superseded(third))
        .unwrap());
    assert_eq!(services(third), ["worker", "web", "db"]);
    // Every service (none named) covers all.
    let seventh = with("d7", &[]);
    assert!(journal
        .cancel_queued(seventh, 14, &superseded(fifth))
        .unwrap());
    assert_eq!(services(fifth), Vec::<String>::new());
}

/// Claiming a stack's next deploy takes its newest queued one, whichever
/// process queued it, and cancels the older ones as superseded by it;
/// other stacks are untouched; a queued deploy older than one that already
/// started is cancelled instead of run.
fn claiming_takes_the_newest_queued_deploy_and_cancels_older_ones(store: &Store) {
    let (a, b) = (store.open(), store.open());
    let first = new_id(a.insert_deploy(&new_deploy("app", Some("d1"), 1)).unwrap());
    let second = new_id(b.insert_deploy(&new_deploy("app", Some("d2"), 2)).unwrap());
    let other = new_id(a.insert_deploy(&new_deploy("api", Some("d3"), 3)).unwrap());
    let third = new_id(b.insert_deploy(&new_deploy("app", Some("d4"), 4)).unwrap());
    let claimed = a.claim_next("app", 10).unwrap();
    assert_eq!(claimed.next.as_ref().map(|d| d.id), Some(third));
    let superseded = format!("superseded by deploy #{third}");
    assert_eq!(
        claimed.cancelled,
        vec![(second, superseded.clone()), (first, superseded)]
    );
    for id in [first, second] {
        let d = b.deploy(id).unwrap().unwrap();
        assert_eq!(d.state, DeployState::Cancelled);
        assert_eq!(d.superseded_by, Some(third));
        assert_eq!(
            d.detail.as_deref(),
            Some(format!("superseded by deploy #{third}").as_str())
        );
    }
    assert_eq!(b.deploy(other).unwrap().unwrap().state, DeployState::Queued);
    // Started by a runner, with its process group on a machine.
    let detail = TransitionDetail {
        runner: Some("host-a pid 7".to_owned()),
        log_path: Some("/state/logs/app/3.log".to_owned()),
        ..TransitionDetail::default()
    };
    a.transition(third, DeployState::Started, 11, &detail)
        .unwrap();
    let started = StartedDeploy {
        id: third,
        pgid: None,
        pgid_host: None,
        log_path: Some("/state/logs/app/3.log".to_owned()),
    };
    assert_eq!(b.started_deploys("app").unwrap(), vec![started.clone()]);
    a.set_pgid(third, 4242, "boot-a").unwrap();
    assert_eq!(
        b.started_deploys("app").unwrap(),
        vec![StartedDeploy {
            pgid: Some(4242),
            pgid_host: Some("boot-a".to_owned()),
            ..started
        }]
    );
    assert_eq!(
        store.query_i64(&format!(
            "SELECT COUNT(*) FROM deploys WHERE id = {third} AND runner = 'host-a pid 7'"
        )),
        1
    );
    // Nothing left to claim; an older deploy queued behind the back of the
    // journal's ordering (an import, a hand edit) never runs after a newer one.
    assert_eq!(b.claim_next("app", 12).unwrap(), Claimed::default());
    store.execute(&format!(
        "UPDATE deploys SET state = 'queued', superseded_by = NULL WHERE id = {second}"
    ));
    let claimed = b.claim_next("app", 13).unwrap();
    assert_eq!(claimed.next, None);
    assert_eq!(
        claimed.cancelled,
        vec![(
            second,
            format!("deploy #{third}, newer, already ran: an older commit never runs after it")
        )]
    );
    assert_eq!(
        b.deploy(second).unwrap().unwrap().superseded_by,
        Some(third)
    );
}

/// A claim whose refusal refuses the newest queued deploy of a ref (the
/// claimer's configuration no longer gives that ref one of its services)
/// cancels it with that reason and claims the next newest of the ref: a
/// refused deploy never supersedes the older. A deploy of a ref it does
/// not follow at all is refused when its turn comes.
fn a_refused_deploy_is_cancelled_alone_and_the_next_newest_is_claimed(store: &Store) {
    let (a, b) = (store.open(), store.open());
    let first = new_id(a.insert_deploy(&new_deploy("app", Some("d1"), 1)).unwrap());
    let second = new_id(a.insert_deploy(&new_deploy("app", Some("d2"), 2)).unwrap());
    let moved = NewDeploy {
        services: vec!["api".to_owned()],
        ..new_deploy("app", Some("d3"), 3)
    };
    let third = new_id(b.insert_deploy(&moved).unwrap());
    let refusal = |d: &DeployRecord| {
        let evil = d.queued.git_ref.as_deref() == Some("refs/heads/evil");
        (evil || d.queued.services == ["api"]).then(|| "not main".to_owned())
    };
    let start = Start {
        lease: None,
        lost: &|| false,
        detail: &|_| TransitionDetail::default(),
        refusal: &refusal,
    };
    let claimed = a.claim_and_start("app", 10, &start).unwrap();
    assert_eq!(claimed.next.as_ref().map(|d| d.id), Some(second));
    let next = claimed.next.unwrap();
    assert_eq!(next.state, DeployState::Started);
    assert_eq!(
        next.queued.services,
        ["web", "worker"],
        "not widened to api"
    );
    let superseded = format!("superseded by deploy #{second}");
    assert_eq!(
        claimed.cancelled,
        vec![(third, "not main".to_owned()), (first, superseded)]
    );
    let refused = b.deploy(third).unwrap().unwrap();
    assert_eq!(refused.state, DeployState::Cancelled);
    assert_eq!(refused.detail.as_deref(), Some("not main"));
    assert_eq!(refused.superseded_by, None);
    assert_eq!(refused.started_at_ms, None);
    // A ref not followed: nothing to run, and it says why.
    let fourth = new_id(
        b.insert_deploy(&NewDeploy {
            git_ref: Some("refs/heads/evil".to_owned()),
            ..new_deploy("app", Some("d4"), 4)
        })
        .unwrap(),
    );
    a.transition(
        second,
        DeployState::Succeeded,
        11,
        &TransitionDetail::default(),
    )
    .unwrap();
    let claimed = a.claim_and_start("app", 12, &start).unwrap();
    assert_eq!(claimed.next, None);
    assert_eq!(claimed.cancelled, vec![(fourth, "not main".to_owned())]);
}

/// Services of one stack on two branches: a deploy gives way only to a
/// newer one of its own ref, is widened only by its own ref's, and of each
/// ref's newest the oldest runs first; an operator's cancel takes only its
/// own ref's older deploys with it.
fn deploys_of_two_refs_of_a_stack_never_supersede_each_other(store: &Store) {
    let (a, b) = (store.open(), store.open());
    let of = |services: &str, git_ref: &str, sha: char, delivery: &str, at: i64| NewDeploy {
        services: vec![services.to_owned()],
        git_ref: Some(git_ref.to_owned()),
        sha: Some(sha.to_string().repeat(40)),
        ..new_deploy("app", Some(delivery), at)
    };
    let (main, develop) = ("refs/heads/main", "refs/heads/develop");
    let worker = new_id(
        a.insert_deploy(&of("worker", develop, 'd', "d1", 1))
            .unwrap(),
    );
    let web1 = new_id(b.insert_deploy(&of("web", main, 'a', "d2", 2)).unwrap());
    let web2 = new_id(a.insert_deploy(&of("web", main, 'b', "d3", 3)).unwrap());
    let claimed = a.claim_next("app", 10).unwrap();
    assert_eq!(claimed.next.as_ref().map(|d| d.id), Some(worker));
    assert_eq!(claimed.cancelled, vec![], "main's deploys wait their turn");
    a.transition(
        worker,
        DeployState::Started,
        10,
        &TransitionDetail::default(),
    )
    .unwrap();
    a.transition(
        worker,
        DeployState::Succeeded,
        11,
        &TransitionDetail::default(),
    )
    .unwrap();
    let claimed = b.claim_next("app", 12).unwrap();
    let next = claimed.next.unwrap();
    assert_eq!(next.id, web2);
    assert_eq!(
        next.queued.services,
        ["web"],
        "worker's branch is not main's"
    );
    assert_eq!(
        claimed.cancelled,
        vec![(web1, format!("superseded by deploy #{web2}"))]
    );
    b.transition(web2, DeployState::Started, 12, &TransitionDetail::default())
        .unwrap();
    // An older deploy of develop than main's started one still runs (an
    // import, a hand edit put it back in the queue); an older one of main
    // never does.
    store.execute(&format!(
        "UPDATE deploys SET state = 'queued', superseded_by = NULL WHERE id IN ({worker}, {web1})"
    ));
    let claimed = a.claim_next("app", 13).unwrap();
    assert_eq!(claimed.next.map(|d| d.id), Some(worker));
    assert_eq!(claimed.cancelled, vec![]);
    store.execute(&format!(
        "UPDATE deploys SET state = 'cancelled' WHERE id = {worker}"
    ));
    // main's older one is cancelled, and the claim goes on to develop's.
    let worker1 = new_id(
        a.insert_deploy(&of("worker", develop, 'g', "d4", 14))
            .unwrap(),
    );
    let claimed = a.claim_next("app", 14).unwrap();
    assert_eq!(claimed.next.map(|d| d.id), Some(worker1));
    assert_eq!(
        claimed.cancelled,
        vec![(
            web1,
            format!("deploy #{web2}, newer, already ran: an older commit never runs after it")
        )]
    );
    store.execute(&format!(
        "UPDATE deploys SET state = 'cancelled' WHERE id = {worker1}"
    ));
    // Cancelling a queued deploy of main takes main's older ones with it,
    // and leaves develop's queued.
    let worker2 = new_id(
        a.insert_deploy(&of("worker", develop, 'e', "d5", 15))
            .unwrap(),
    );
    let web3 = new_id(b.insert_deploy(&of("web", main, 'c', "d6", 16)).unwrap());
    let web4 = new_id(a.insert_deploy(&of("web", main, 'f', "d7", 17)).unwrap());
    assert_eq!(
        b.cancel_deploy(web4, "operator", 18).unwrap(),
        CancelOutcome::Cancelled(vec![(web3, format!("superseded by deploy #{web4}"))])
    );
    assert_eq!(
        a.deploy(worker2).unwrap().unwrap().state,
        DeployState::Queued
    );
    // main's newer deploy was admitted after develop's: develop's runs
    // first, whichever deploy the claimer's own queue took.
    let web5 = new_id(b.insert_deploy(&of("web", main, '9', "d8", 19)).unwrap());
    let claimed = a.claim_next("app", 20).unwrap();
    assert_eq!(claimed.next.map(|d| d.id), Some(worker2));
    for (state, at) in [(DeployState::Started, 20), (DeployState::Succeeded, 21)] {
        a.transition(worker2, state, at, &TransitionDetail::default())
            .unwrap();
    }
    let claimed = a.claim_next("app", 22).unwrap();
    assert_eq!(claimed.next.map(|d| d.id), Some(web5));
}

/// A service following a branch and tags, whose branch's second push is
/// admitted after a tag's: of each lane's newest deploy the oldest runs
/// first, so the tag's commit runs before the branch's newer one and never
/// after it (the branch's newer push does not take its first push's place
/// in line). The claims start ever larger ids, whichever process claims.
fn a_lanes_newer_deploy_runs_after_another_lanes_admitted_before_it(store: &Store) {
    let (a, b) = (store.open(), store.open());
    let of = |git_ref: &str, sha: char, delivery: &str, at: i64| NewDeploy {
        services: vec!["web".to_owned()],
        git_ref: Some(git_ref.to_owned()),
        sha: Some(sha.to_string().repeat(40)),
        ..new_deploy("app", Some(delivery), at)
    };
    let (main, tag) = ("refs/heads/main", "refs/tags/v2");
    let d = new_id(a.insert_deploy(&of(main, 'd', "t1", 1)).unwrap());
    let e = new_id(b.insert_deploy(&of(tag, 'e', "t2", 2)).unwrap());
    let f = new_id(a.insert_deploy(&of(main, 'f', "t3", 3)).unwrap());
    let claimed = b.claim_next("app", 10).unwrap();
    assert_eq!(
        claimed.next.map(|d| d.id),
        Some(e),
        "the tag's, admitted before f"
    );
    assert_eq!(claimed.cancelled, vec![], "main's wait their turn");
    for (state, at) in [(DeployState::Started, 10), (DeployState::Succeeded, 11)] {
        b.transition(e, state, at, &TransitionDetail::default())
            .unwrap();
    }
    let claimed = a.claim_next("app", 12).unwrap();
    assert_eq!(claimed.next.map(|d| d.id), Some(f));
    assert_eq!(
        claimed.cancelled,
        vec![(d, format!("superseded by deploy #{f}"))]
    );
}

/// Services of one stack on the same branch name of two repositories: a
/// deploy gives way only to a newer one of its own ref *and repository*,
/// is widened only by its own lane's, is older only than its own lane's
/// started one, and an operator's cancel takes only its own lane's older
/// deploys with it.
fn deploys_of_one_branch_of_two_repositories_never_supersede_each_other(store: &Store) {
    let (a, b) = (store.open(), store.open());
    let of = |services: &str, repository: &str, sha: char, delivery: &str, at: i64| NewDeploy {
        services: vec![services.to_owned()],
        git_ref: Some("refs/heads/main".to_owned()),
        repository: Some(repository.to_owned()),
        sha: Some(sha.to_string().repeat(40)),
        ..new_deploy("shop", Some(delivery), at)
    };
    let (web, worker) = ("acme/shop-web", "acme/shop-worker");
    let worker1 = new_id(
        a.insert_deploy(&of("worker", worker, 'd', "r1", 1))
            .unwrap(),
    );
    let web1 = new_id(b.insert_deploy(&of("web", web, 'a', "r2", 2)).unwrap());
    let web2 = new_id(a.insert_deploy(&of("web", web, 'b', "r3", 3)).unwrap());
    let claimed = a.claim_next("shop", 10).unwrap();
    let next = claimed.next.unwrap();
    assert_eq!(next.id, worker1, "the lane waiting longest");
    assert_eq!(next.queued.services, ["worker"]);
    assert_eq!(claimed.cancelled, vec![], "web's deploys wait their turn");
    for (state, at) in [(DeployState::Started, 10), (DeployState::Succeeded, 11)] {
        a.transition(worker1, state, at, &TransitionDetail::default())
            .unwrap();
    }
    let claimed = b.claim_next("shop", 12).unwrap();
    let next = claimed.next.unwrap();
    assert_eq!(next.id, web2);
    assert_eq!(
        next.queued.services,
        ["web"],
        "worker's repository is not web's"
    );
    assert_eq!(
        claimed.cancelled,
        vec![(web1, format!("superseded by deploy #{web2}"))]
    );
    b.transition(web2, DeployState::Started, 12, &TransitionDetail::default())
        .unwrap();
    // An older deploy of the worker's repository than web's started one
    // still runs; an older one of web's never does.
    store.execute(&format!(
        "UPDATE deploys SET state = 'queued', superseded_by = NULL WHERE id IN ({worker1}, {web1})"
    ));
    let claimed = a.claim_next("shop", 13).unwrap();
    assert_eq!(claimed.next.map(|d| d.id), Some(worker1));
    assert_eq!(claimed.cancelled, vec![]);
    store.execute(&format!(
        "UPDATE deploys SET state = 'cancelled' WHERE id = {worker1}"
    ));
    let claimed = a.claim_next("shop", 13).unwrap();
    assert_eq!(claimed.next.map(|d| d.id), None);
    assert_eq!(
        claimed.cancelled,
        vec![(
            web1,
            format!("deploy #{web2}, newer, already ran: an older commit never runs after it")
        )]
    );
    // Cancelling web's newest queued deploy takes web's older one with it,
    // and leaves the worker's queued.
    let worker2 = new_id(
        a.insert_deploy(&of("worker", worker, 'e', "r4", 14))
            .unwrap(),
    );
    let web3 = new_id(b.insert_deploy(&of("web", web, 'c', "r5", 15)).unwrap());
    let web4 = new_id(a.insert_deploy(&of("web", web, 'f', "r6", 16)).unwrap());
    assert_eq!(
        b.cancel_deploy(web4, "operator", 17).unwrap(),
        CancelOutcome::Cancelled(vec![(web3, format!("superseded by deploy #{web4}"))])
    );
    let left = a.deploy(worker2).unwrap().unwrap();
    assert_eq!(
        (left.state, left.queued.repository.as_deref()),
        (DeployState::Queued, Some(worker))
    );
}

super::on_both_backends!(
    a_refused_deploy_is_cancelled_alone_and_the_next_newest_is_claimed,
    deploys_of_two_refs_of_a_stack_never_supersede_each_other,
    a_lanes_newer_deploy_runs_after_another_lanes_admitted_before_it,
    deploys_of_one_branch_of_two_repositories_never_supersede_each_other,
    claiming_takes_the_newest_queued_deploy_and_cancels_older_ones,
    a_superseded_deploy_leaves_its_services_to_the_deploy_it_is_cancelled_for,
    insert_transition_and_read_back,
    deliveries_are_recorded_most_recent_first,
    relaxed_delivery_is_recorded_and_seen_by_another_connection,
    duplicate_delivery_id_returns_existing_and_inserts_nothing,
    illegal_transition_is_rejected_and_changes_nothing,
    recover_interrupts_started_and_returns_queued_oldest_first,
    data_survives_close_and_reopen,
    ensure_hook_token_is_idempotent,
    deploys_filters_by_stack_and_orders_most_recent_first,
    journal_is_shareable_between_threads,
);
