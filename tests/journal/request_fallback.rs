//! Issue 17: a push to a stack that waits for GitHub's `deployment` event
//! is never lost, the journal's side, on both backends: a deployment
//! request's outbox row that waits without holding back the rows after it,
//! a failed request that falls back once, and a created deployment that
//! runs once, whether the journal (on either of two processes) or its
//! `deployment` event gets there first.

use redeploy_host::journal::*;

use super::admission::{commit, deploy};
use super::Store;

const SHA: &str = "1111111111111111111111111111111111111111";

fn request(delivery: &str) -> NewDeploymentRequest {
    NewDeploymentRequest {
        stack: "web".into(),
        delivery_id: Some(delivery.into()),
        deploy_id: None,
        git_ref: Some("refs/heads/main".into()),
        sha: Some(SHA.into()),
        request_json: "{}".into(),
        created_at_ms: 5,
        repository: None,
    }
}

/// The deploy a push of [`SHA`] stands for.
fn kept(delivery: &str) -> RequestedDeploy {
    RequestedDeploy {
        deploy: deploy(Some(SHA), delivery, 5),
        before: Some("0".repeat(40)),
        forced: false,
        sender_reports_forced: true,
    }
}

/// A request of delivery `delivery` keeping its push, answered `state`
/// (with deployment `deployment`) at 10 ms.
fn answered(j: &Journal, delivery: &str, state: RequestState, deployment: Option<u64>) -> i64 {
    let Inserted::New(id) = j
        .insert_deployment_request_keeping(&request(delivery), false, Some(&kept(delivery)))
        .unwrap()
    else {
        panic!("a new request")
    };
    j.settle_deployment_request(id, state, deployment, Some(201), Some("answer"), 10)
        .unwrap();
    id
}

/// What two processes' `fall_back` of request `id` did, run at once.
fn fall_back_twice(store: &Store, id: i64, fallback: RequestFallback, link: bool) -> Vec<FellBack> {
    let journals = [store.open(), store.open()];
    std::thread::scope(|scope| {
        let runs: Vec<_> = journals
            .iter()
            .map(|j| {
                scope.spawn(move || {
                    let open = j.deployment_request(id).unwrap().unwrap();
                    let key = match open.deployment_id {
                        Some(d) => deployment_delivery_key(d),
                        None => "push".into(),
                    };
                    let (new, admission) = kept("push").to_run(Some(key), "ran".into(), 20);
                    let run = FallbackRun {
                        deploy: &new,
                        admission: &admission,
                        link,
                    };
                    j.fall_back(id, fallback, Some(run), 20).unwrap()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// The one new deploy among `outcomes`; the other did nothing.
fn the_one_run(outcomes: &[FellBack]) -> i64 {
    let new: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| match o {
            FellBack::Recorded(Some(Admitted::Inserted(Inserted::New(id)))) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(new.len(), 1, "{outcomes:?}");
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == FellBack::AlreadyDone)
            .count(),
        1,
        "{outcomes:?}"
    );
    new[0]
}

fn a_created_deployment_without_its_event_runs_once_and_the_late_event_is_a_duplicate(
    store: &Store,
) {
    let j = store.open();
    let id = answered(&j, "push", RequestState::Created, Some(1000));
    // Not before its time: only what was created by the bound is listed.
    assert!(j.requests_awaiting_event(9, 0).unwrap().is_empty());
    let open = j.requests_awaiting_event(10, 0).unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].deploy, kept("push"));

    let run = the_one_run(&fall_back_twice(
        store,
        id,
        RequestFallback::RanWithoutEvent,
        true,
    ));
    let r = j.deployment_request(id).unwrap().unwrap();
    assert_eq!(
        (r.state, r.deploy_id(), r.fallback, r.fallback_deploy_id),
        (
            RequestState::Created,
            Some(run),
            Some(RequestFallback::RanWithoutEvent),
            Some(run)
        )
    );
    assert!(j.requests_awaiting_event(i64::MAX, 0).unwrap().is_empty());
    let d = j.deploy(run).unwrap().unwrap();
    assert_eq!(
        d.queued.delivery_id.as_deref(),
        Some("github-deployment-1000")
    );
    // Its statuses go to the created deployment: the `queued` one waits.
    let rows = j.outbox_unsettled(10).unwrap();
    assert!(
        rows.iter()
            .any(|o| o.deploy_id == Some(run) && o.state == Some(DeployState::Queued)),
        "{rows:?}"
    );
    assert_eq!(j.request_of_deploy(run).unwrap().map(|r| r.id), Some(id));

    // The `deployment` event arriving late is the same deploy.
    let event = NewDeploy {
        delivery_id: Some(deployment_delivery_key(1000)),
        ..deploy(Some(SHA), "late", 30)
    };
    assert_eq!(
        j.admit_deploy(&event, &Admission::default()).unwrap(),
        Admitted::Inserted(Inserted::Duplicate(run))
    );
    assert_eq!(j.deploys(None, 10).unwrap().len(), 1);
}

fn a_deployment_whose_event_came_first_is_never_run_again(store: &Store) {
    let j = store.open();
    let id = answered(&j, "push", RequestState::Created, Some(1001));
    let event = NewDeploy {
        delivery_id: Some(deployment_delivery_key(1001)),
        ..deploy(Some(SHA), "event", 15)
    };
    let Admitted::Inserted(Inserted::New(by_event)) =
        j.admit_deploy(&event, &Admission::default()).unwrap()
    else {
        panic!("the event's deploy")
    };
    assert!(j.requests_awaiting_event(i64::MAX, 0).unwrap().is_empty());
    // A look that read the request before the event came: it links the
    // event's deploy and runs nothing.
    let outcomes = fall_back_twice(store, id, RequestFallback::RanWithoutEvent, true);
    assert!(
        outcomes.contains(&FellBack::EventArrived(by_event)),
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, FellBack::EventArrived(_) | FellBack::AlreadyDone)),
        "{outcomes:?}"
    );
    let r = j.deployment_request(id).unwrap().unwrap();
    assert_eq!((r.deploy_id(), r.fallback), (Some(by_event), None));
    assert_eq!(j.deploys(None, 10).unwrap().len(), 1);
}

fn a_failed_request_falls_back_once(store: &Store) {
    let j = store.open();
    let id = answered(&j, "push", RequestState::Invalid, None);
    // A request that keeps no push (wait_for_event = false) is never listed.
    let Inserted::New(other) = j.insert_deployment_request(&request("other")).unwrap() else {
        panic!("a new request")
    };
    j.settle_deployment_request(other, RequestState::Failed, None, None, Some("x"), 10)
        .unwrap();
    let open = j.requests_to_fall_back(0, 0).unwrap();
    assert_eq!(open.iter().map(|o| o.request.id).collect::<Vec<_>>(), [id]);

    let run = the_one_run(&fall_back_twice(
        store,
        id,
        RequestFallback::DeployedDirectly,
        false,
    ));
    let r = j.deployment_request(id).unwrap().unwrap();
    assert_eq!(
        (r.state, r.deploy_id(), r.fallback, r.fallback_deploy_id),
        (
            RequestState::Invalid,
            None,
            Some(RequestFallback::DeployedDirectly),
            Some(run)
        )
    );
    assert_eq!(
        j.request_fallen_back_to(run).unwrap().map(|r| r.id),
        Some(id)
    );
    assert!(j.requests_to_fall_back(0, 0).unwrap().is_empty());
    // No GitHub deployment: the deploy reports no status.
    assert!(j
        .outbox_unsettled(10)
        .unwrap()
        .iter()
        .all(|o| o.deploy_id != Some(run)));

    // Giving up runs nothing, once.
    let gave_up = answered(&j, "push-2", RequestState::Denied, None);
    assert_eq!(
        j.fall_back(gave_up, RequestFallback::GaveUp, None, 30)
            .unwrap(),
        FellBack::Recorded(None)
    );
    assert_eq!(
        j.fall_back(gave_up, RequestFallback::GaveUp, None, 31)
            .unwrap(),
        FellBack::AlreadyDone
    );
    assert_eq!(j.deploys(None, 10).unwrap().len(), 1);
}

fn a_deferred_deployment_row_holds_back_no_later_row(store: &Store) {
    let j = store.open();
    let Inserted::New(first) = j.insert_deployment_request(&request("a")).unwrap() else {
        panic!("a new request")
    };
    let Inserted::New(second) = j.insert_deployment_request(&request("b")).unwrap() else {
        panic!("a new request")
    };
    let rows = j.outbox_due(0, 10, 10).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.request_id).collect::<Vec<_>>(),
        [Some(first), Some(second)]
    );
    assert!(j
        .defer_outbox_row(
            rows[0].id,
            first,
            1_000,
            "retrying after attempt 1: 503",
            None,
            10
        )
        .unwrap());
    let due: Vec<_> = j.outbox_due(0, 999, 10).unwrap();
    assert_eq!(
        due.iter().map(|r| r.request_id).collect::<Vec<_>>(),
        [Some(second)]
    );
    // Paging past the first row, and the row back once due.
    assert_eq!(j.outbox_due(rows[0].id, 1_000, 10).unwrap().len(), 1);
    assert_eq!(j.outbox_due(0, 1_000, 10).unwrap().len(), 2);
    let r = j.deployment_request(first).unwrap().unwrap();
    assert_eq!(
        (r.state, r.detail.as_deref()),
        (RequestState::Pending, Some("retrying after attempt 1: 503"))
    );
    // Still unsettled for every reader that looks at the whole outbox.
    assert_eq!(j.outbox_unsettled(10).unwrap().len(), 2);
}

/// A request of push `delivery` recorded at `at_ms`, answered `state`
/// (with `deployment`) at `at_ms + 1`.
fn answered_at(
    j: &Journal,
    delivery: &str,
    at_ms: i64,
    state: RequestState,
    deployment: Option<u64>,
) -> i64 {
    let asked = NewDeploymentRequest {
        created_at_ms: at_ms,
        ..request(delivery)
    };
    let Inserted::New(id) = j
        .insert_deployment_request_keeping(&asked, false, Some(&kept(delivery)))
        .unwrap()
    else {
        panic!("a new request")
    };
    j.settle_deployment_request(id, state, deployment, Some(201), Some("answer"), at_ms + 1)
        .unwrap();
    id
}

/// Runs request `id`'s kept push as `fallback` at 50.
fn run_kept(j: &Journal, id: i64, fallback: RequestFallback, key: &str, link: bool) -> FellBack {
    let (new, admission) = kept("push").to_run(Some(key.into()), "ran".into(), 50);
    let run = FallbackRun {
        deploy: &new,
        admission: &admission,
        link,
    };
    j.fall_back(id, fallback, Some(run), 50).unwrap()
}

fn a_later_push_that_deployed_supersedes_an_older_request(store: &Store) {
    let j = store.open();
    // Push A's deployment (1000) never sends its event; push B's (1001)
    // does, and deploys; A failing request (refused) is older still.
    let refused = answered_at(&j, "push-0", 4, RequestState::Invalid, None);
    let a = answered_at(&j, "push-a", 5, RequestState::Created, Some(1000));
    let _b = answered_at(&j, "push-b", 6, RequestState::Created, Some(1001));
    let event = NewDeploy {
        delivery_id: Some(deployment_delivery_key(1001)),
        ..deploy(Some(SHA), "event-b", 15)
    };
    assert!(matches!(
        j.admit_deploy(&event, &Admission::default()).unwrap(),
        Admitted::Inserted(Inserted::New(_))
    ));
    let key = deployment_delivery_key(1000);
    assert_eq!(
        run_kept(&j, a, RequestFallback::RanWithoutEvent, &key, true),
        FellBack::Recorded(None)
    );
    assert_eq!(
        run_kept(
            &j,
            refused,
            RequestFallback::DeployedDirectly,
            "push-0",
            false
        ),
        FellBack::Recorded(None)
    );
    for id in [a, refused] {
        let r = j.deployment_request(id).unwrap().unwrap();
        assert_eq!(
            (r.fallback, r.fallback_deploy_id, r.deploy_id()),
            (Some(RequestFallback::Superseded), None, None)
        );
    }
    assert_eq!(j.deploys(None, 10).unwrap().len(), 1);
}

/// A later push of another branch of the stack (another service's), or of
/// its branch in another repository, is no later push of the request's:
/// its fallback still runs. And a stack that
/// sees each push twice asks once per commit and branch.
fn a_later_push_of_another_branch_or_repository_never_supersedes_a_request(store: &Store) {
    let j = store.open();
    let a = answered_at(&j, "push-a", 5, RequestState::Created, Some(1000));
    let develop = NewDeploy {
        git_ref: Some("refs/heads/develop".into()),
        ..deploy(Some(&"6".repeat(40)), "push-develop", 15)
    };
    assert!(matches!(
        j.admit_deploy(&develop, &Admission::default()).unwrap(),
        Admitted::Inserted(Inserted::New(_))
    ));
    // Nor a later push of the same branch of another repository.
    let other_repository = NewDeploy {
        repository: Some("acme/other".into()),
        ..deploy(Some(&"7".repeat(40)), "push-other", 16)
    };
    assert!(matches!(
        j.admit_deploy(&other_repository, &Admission::default())
            .unwrap(),
        Admitted::Inserted(Inserted::New(_))
    ));
    let key = deployment_delivery_key(1000);
    assert!(matches!(
        run_kept(&j, a, RequestFallback::RanWithoutEvent, &key, true),
        FellBack::Recorded(Some(_))
    ));
    let once = |delivery: &str, git_ref: &str| {
        let asked = NewDeploymentRequest {
            git_ref: Some(git_ref.into()),
            ..request(delivery)
        };
        j.insert_deployment_request_for(&asked, true).unwrap()
    };
    // push-a asked about SHA on main.
    assert_eq!(once("poll-main", "refs/heads/main"), Inserted::Duplicate(a));
    let Inserted::New(develop) = once("hook-develop", "refs/heads/develop") else {
        panic!("the same commit on another branch is asked about again")
    };
    assert_eq!(
        once("poll-develop", "refs/heads/develop"),
        Inserted::Duplicate(develop)
    );
}

/// A deployment's event that comes before GitHub's answer to its request
/// is recorded finds its push by commit, services and profile among the
/// requests not answered yet, when they are all of one ref.
fn a_deployment_event_before_its_answer_finds_its_push_by_commit(store: &Store) {
    let j = store.open();
    let event = NewDeploy {
        git_ref: None,
        delivery_id: Some(deployment_delivery_key(1000)),
        ..deploy(Some(SHA), "event", 9)
    };
    let ask = |delivery: &str, git_ref: &str| {
        let asked = NewDeploymentRequest {
            git_ref: Some(git_ref.into()),
            ..request(delivery)
        };
        let pushed = RequestedDeploy {
            deploy: NewDeploy {
                git_ref: Some(git_ref.into()),
                ..kept(delivery).deploy
            },
            ..kept(delivery)
        };
        j.insert_deployment_request_keeping(&asked, false, Some(&pushed))
            .unwrap();
    };
    assert_eq!(
        j.kept_push_of_deployment("web", 1000, &event).unwrap(),
        None
    );
    ask("push-main", "refs/heads/main");
    let found = j
        .kept_push_of_deployment("web", 1000, &event)
        .unwrap()
        .unwrap();
    assert_eq!(found.deploy.git_ref.as_deref(), Some("refs/heads/main"));
    // Other services: not its push.
    let other = NewDeploy {
        services: vec!["api".into()],
        ..event.clone()
    };
    assert_eq!(
        j.kept_push_of_deployment("web", 1000, &other).unwrap(),
        None
    );
    // The same commit pushed to develop too: which one is not known.
    ask("push-develop", "refs/heads/develop");
    assert_eq!(
        j.kept_push_of_deployment("web", 1000, &event).unwrap(),
        None
    );
}

fn an_older_push_deployed_late_never_supersedes_a_newer_request(store: &Store) {
    let j = store.open();
    // A's event arrives late (after B was requested); B's never does: B
    // still runs, and a direct deploy of a refused newer push too.
    let _a = answered_at(&j, "push-a", 5, RequestState::Created, Some(1000));
    let b = answered_at(&j, "push-b", 6, RequestState::Created, Some(1001));
    let refused = answered_at(&j, "push-c", 7, RequestState::Invalid, None);
    let event = NewDeploy {
        delivery_id: Some(deployment_delivery_key(1000)),
        ..deploy(Some(SHA), "event-a", 15)
    };
    assert!(matches!(
        j.admit_deploy(&event, &Admission::default()).unwrap(),
        Admitted::Inserted(Inserted::New(_))
    ));
    let key = deployment_delivery_key(1001);
    assert!(matches!(
        run_kept(&j, b, RequestFallback::RanWithoutEvent, &key, true),
        FellBack::Recorded(Some(_))
    ));
    // B's run is an older request's: it never supersedes C, newer.
    assert!(matches!(
        run_kept(
            &j,
            refused,
            RequestFallback::DeployedDirectly,
            "push-c",
            false
        ),
        FellBack::Recorded(Some(_))
    ));
    let r = j.deployment_request(b).unwrap().unwrap();
    assert_eq!(r.fallback, Some(RequestFallback::RanWithoutEvent));
}

/// A late delivery of a push older than what the stack deployed, recorded
/// cancelled as older after a newer request, is no later push: the
/// request still falls back.
fn a_late_older_push_cancelled_as_older_never_supersedes_a_newer_request(store: &Store) {
    let j = store.open();
    let (head, older) = ("3".repeat(40), "4".repeat(40));
    // The stack deployed `head` (on top of `older`) before the request.
    let deployed = deploy(Some(&head), "push-head", 1);
    assert!(matches!(
        j.admit_deploy(&deployed, &commit(&head, &older, false))
            .unwrap(),
        Admitted::Inserted(Inserted::New(_))
    ));
    let refused = answered_at(&j, "push-c", 7, RequestState::Invalid, None);
    // `older` arrives late: cancelled as older than `head`.
    let late = j
        .admit_deploy(
            &deploy(Some(&older), "push-late", 15),
            &commit(&older, "5555555555555555555555555555555555555555", false),
        )
        .unwrap();
    assert!(matches!(late, Admitted::Older { .. }), "{late:?}");
    assert!(matches!(
        run_kept(
            &j,
            refused,
            RequestFallback::DeployedDirectly,
            "push-c",
            false
        ),
        FellBack::Recorded(Some(_))
    ));
    let r = j.deployment_request(refused).unwrap().unwrap();
    assert_eq!(r.fallback, Some(RequestFallback::DeployedDirectly));
}

fn a_deployment_whose_event_was_seen_is_never_awaited(store: &Store) {
    let j = store.open();
    let seen = answered_at(&j, "push-a", 5, RequestState::Created, Some(1000));
    let unseen = answered_at(&j, "push-b", 6, RequestState::Created, Some(1001));
    // The component skipped the event: no deploy, yet it came.
    j.note_deployment_event("web", 1000, 12).unwrap();
    j.note_deployment_event("other", 1001, 12).unwrap();
    let open = j.requests_awaiting_event(i64::MAX, 0).unwrap();
    assert_eq!(
        open.iter().map(|o| o.request.id).collect::<Vec<_>>(),
        [unseen]
    );
    // Paged by id.
    assert!(j
        .requests_awaiting_event(i64::MAX, unseen)
        .unwrap()
        .is_empty());
    assert_ne!(seen, unseen);
}

fn a_pending_request_nothing_will_answer_fails_after_its_bound(store: &Store) {
    let j = store.open();
    let Inserted::New(id) = j
        .insert_deployment_request_keeping(&request("push"), false, Some(&kept("push")))
        .unwrap()
    else {
        panic!("a new request")
    };
    // Its row is still to be sent: not failed, whatever the bound.
    assert!(j.requests_to_fall_back(0, i64::MAX).unwrap().is_empty());
    let rows = j.outbox_due(0, 10, 10).unwrap();
    let failed = Settlement {
        outcome: OutboxOutcome::Failed,
        detail: "journal: unreadable".into(),
        answer: None,
        report: None,
        at_ms: 8,
    };
    j.settle_outbox_row(rows[0].id, &failed).unwrap();
    // Settled with no answer: failed once its bound (created at 5) is over.
    assert!(j.requests_to_fall_back(0, 4).unwrap().is_empty());
    let open = j.requests_to_fall_back(0, 5).unwrap();
    assert_eq!(open.iter().map(|o| o.request.id).collect::<Vec<_>>(), [id]);
    assert_eq!(open[0].request.state, RequestState::Pending);
    assert!(j.requests_to_fall_back(id, 5).unwrap().is_empty());
}

super::on_both_backends!(
    a_later_push_that_deployed_supersedes_an_older_request,
    a_later_push_of_another_branch_or_repository_never_supersedes_a_request,
    a_deployment_event_before_its_answer_finds_its_push_by_commit,
    an_older_push_deployed_late_never_supersedes_a_newer_request,
    a_late_older_push_cancelled_as_older_never_supersedes_a_newer_request,
    a_deployment_whose_event_was_seen_is_never_awaited,
    a_pending_request_nothing_will_answer_fails_after_its_bound,
);

super::on_both_backends!(
    a_created_deployment_without_its_event_runs_once_and_the_late_event_is_a_duplicate,
    a_deployment_whose_event_came_first_is_never_run_again,
    a_failed_request_falls_back_once,
    a_deferred_deployment_row_holds_back_no_later_row,
);

/// The deploy a request reports to.
trait LinkedDeploy {
    fn deploy_id(&self) -> Option<i64>;
}

impl LinkedDeploy for DeploymentRequest {
    fn deploy_id(&self) -> Option<i64> {
        self.asked.deploy_id
    }
}
