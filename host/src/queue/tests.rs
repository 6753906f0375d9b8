//! The queue policy's cases.

use super::*;

fn slot(id: i64, sha: Option<&str>) -> Slot {
    Slot {
        id,
        sha: sha.map(str::to_string),
        services: vec![],
        profile: None,
        lane: Lane::default(),
    }
}

fn of(id: i64, sha: Option<&str>, services: &[&str]) -> Slot {
    Slot {
        services: services.iter().map(|s| s.to_string()).collect(),
        ..slot(id, sha)
    }
}

fn names(services: &[&str]) -> Vec<String> {
    services.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_union_covers_each_service_and_all_covers_everything() {
    let (a, b, ab) = (names(&["a"]), names(&["b"]), names(&["a", "b"]));
    assert!(covers(&[], &a));
    assert!(covers(&ab, &a));
    assert!(!covers(&a, &b));
    assert!(!covers(&a, &[]), "some services never cover all");
    assert_eq!(union(&a, [b.as_slice()]), Some(ab.clone()));
    assert_eq!(union(&ab, [a.as_slice(), b.as_slice()]), None);
    assert_eq!(union(&a, [b.as_slice(), &[]]), Some(vec![]));
    assert_eq!(union(&[], [a.as_slice()]), None);
}

#[test]
fn a_deploy_superseded_or_cancelled_for_another_leaves_it_its_services() {
    let mut q = StackQueue::default();
    assert_eq!(q.admit(of(1, Some("x"), &["a"])), pending(None, true));
    assert_eq!(q.next(false), Some(of(1, Some("x"), &["a"])));
    // The commit running, other services: no duplicate.
    assert_eq!(q.admit(of(2, Some("x"), &["b"])), pending(None, false));
    // Superseding the pending deploy takes its services.
    assert_eq!(
        q.admit(of(3, None, &["c"])),
        pending(Some((2, "superseded by deploy #3")), false)
    );
    // Cancelled for the pending one (the same commit), which takes its
    // services.
    assert_eq!(
        q.admit(of(5, Some("y"), &["d"])),
        pending(Some((3, "superseded by commit y (#5)")), false)
    );
    assert_eq!(
        q.admit(of(4, Some("y"), &["e"])),
        cancel("the same commit is already queued (#5)", 5)
    );
    q.finished();
    assert_eq!(q.next(false), Some(of(5, Some("y"), &["d", "c", "b", "e"])));
    // The commit running with the same services (or fewer): a
    // duplicate.
    assert_eq!(
        q.admit(of(6, Some("y"), &["b"])),
        cancel("commit y is already deploying (#5)", 5)
    );
}

fn pending(superseded: Option<(i64, &str)>, start_worker: bool) -> Admit {
    Admit::Pending {
        superseded: superseded.map(|(id, r)| (id, r.to_string())),
        start_worker,
    }
}

fn cancel(reason: &str, because_of: i64) -> Admit {
    Admit::Cancel {
        reason: reason.to_string(),
        because_of,
    }
}

fn on(git_ref: &str, slot: Slot) -> Slot {
    Slot {
        lane: Lane {
            git_ref: Some(git_ref.to_string()),
            repository: None,
        },
        ..slot
    }
}

fn of_repository(repository: &str, slot: Slot) -> Slot {
    Slot {
        lane: Lane {
            repository: Some(repository.to_string()),
            ..slot.lane
        },
        ..slot
    }
}

#[test]
fn a_deploy_gives_way_only_to_deploys_of_its_own_ref_and_refs_run_oldest_first() {
    let (main, develop) = ("refs/heads/main", "refs/heads/develop");
    let mut q = StackQueue::default();
    assert_eq!(
        q.admit(on(main, of(1, Some("m1"), &["web"]))),
        pending(None, true)
    );
    assert_eq!(q.next(false), Some(on(main, of(1, Some("m1"), &["web"]))));
    // develop's deploy of worker waits behind main's running one: older
    // or not, another ref's deploy is no reason to cancel it.
    let worker = on(develop, of(2, Some("d1"), &["worker"]));
    assert_eq!(q.admit(worker.clone()), pending(None, false));
    // A newer push of main supersedes nothing of develop's, and takes
    // none of its services.
    assert_eq!(
        q.admit(on(main, of(3, Some("m2"), &["web"]))),
        pending(None, false)
    );
    assert_eq!(
        q.admit(on(main, of(4, Some("m3"), &["web"]))),
        pending(Some((3, "superseded by commit m3 (#4)")), false)
    );
    q.finished();
    assert_eq!(q.next(false), Some(worker), "the ref waiting longest first");
    assert_eq!(
        q.admit(on(main, of(5, Some("m3"), &["web"]))),
        cancel("the same commit is already queued (#4)", 4)
    );
    // The commit running on develop, pushed to develop again: a
    // duplicate.
    assert_eq!(
        q.admit(on(develop, of(6, Some("d1"), &["worker"]))),
        cancel("commit d1 is already deploying (#2)", 2)
    );
    q.finished();
    assert_eq!(q.next(false), Some(on(main, of(4, Some("m3"), &["web"]))));
    // Deploys naming no ref share a lane of their own.
    assert_eq!(q.admit(of(7, None, &["proxy"])), pending(None, false));
    assert_eq!(
        q.admit(of(8, None, &["web"])),
        pending(Some((7, "superseded by deploy #8")), false)
    );
    assert_eq!(
        q.admit(on(develop, of(9, Some("d2"), &["worker"]))),
        pending(None, false)
    );
    q.finished();
    assert_eq!(q.next(false), Some(of(8, None, &["web", "proxy"])));
    q.finished();
    assert_eq!(
        q.next(false),
        Some(on(develop, of(9, Some("d2"), &["worker"])))
    );
    q.finished();
    assert_eq!(q.next(false), None);
    assert!(q.is_idle());
}

#[test]
fn a_ref_pushed_again_and_again_never_keeps_another_refs_deploy_from_running() {
    let (main, develop) = ("refs/heads/main", "refs/heads/develop");
    let mut q = StackQueue::default();
    q.admit(on(develop, slot(1, Some("d0"))));
    q.next(false);
    q.admit(on(main, slot(2, Some("m1"))));
    q.admit(on(develop, slot(3, Some("d1"))));
    for n in 4..10 {
        let sha = format!("m{n}");
        assert!(matches!(
            q.admit(on(main, slot(n, Some(&sha)))),
            Admit::Pending {
                superseded: Some(_),
                ..
            }
        ));
    }
    q.finished();
    // main's newest went behind develop's, admitted before it.
    assert_eq!(q.next(false), Some(on(develop, slot(3, Some("d1")))));
    q.admit(on(develop, slot(10, Some("d10"))));
    q.finished();
    assert_eq!(
        q.next(false),
        Some(on(main, slot(9, Some("m9")))),
        "develop pushed again waits behind main's"
    );
    q.finished();
    assert_eq!(q.next(false), Some(on(develop, slot(10, Some("d10")))));
}

#[test]
fn a_placement_undone_with_several_refs_pending_restores_its_own_ref_alone() {
    let (main, develop) = ("refs/heads/main", "refs/heads/develop");
    let mut q = StackQueue::default();
    q.admit(on(main, slot(1, Some("m1"))));
    q.next(false);
    q.admit(on(develop, slot(2, Some("d1"))));
    q.admit(on(main, slot(3, Some("m2"))));
    let before = q.clone();
    let placed = q.place("s", on(main, slot(4, Some("m3"))));
    assert_eq!(
        placed.admit,
        pending(Some((3, "superseded by commit m3 (#4)")), false)
    );
    assert!(!q.undo(&placed));
    assert_eq!(q, before, "undone at once: as it was");
    // Undone after the worker took develop's: main's superseded deploy
    // is pending again, in line after develop's.
    let placed = q.place("s", on(main, slot(5, Some("m4"))));
    q.finished();
    assert_eq!(q.next(false), Some(on(develop, slot(2, Some("d1")))));
    assert!(!q.undo(&placed));
    q.finished();
    assert_eq!(q.next(false), Some(on(main, slot(3, Some("m2")))));
    q.finished();
    assert_eq!(q.next(false), None);
}

#[test]
fn what_the_claim_started_is_the_running_deploy() {
    let main = "refs/heads/main";
    let mut q = StackQueue::default();
    q.admit(on(main, of(1, Some("a"), &["web"])));
    let taken = q.next(false).unwrap();
    assert_eq!(taken.id, 1);
    // A replica queued #2, newer, which the claim started instead.
    q.admit(on("refs/heads/develop", of(3, Some("d"), &["worker"])));
    q.started(on(main, of(2, Some("b"), &["web"])), taken);
    // The commit it runs with other services is no duplicate of it.
    assert_eq!(
        q.admit(on(main, of(4, Some("b"), &["cron"]))),
        pending(None, false)
    );
    assert_eq!(
        q.admit(on(main, of(5, Some("b"), &["web"]))),
        cancel("the same commit is already queued (#4)", 4)
    );
    q.finished();
    assert_eq!(q.next(false).map(|s| s.id), Some(3));
}

#[test]
fn an_older_deploy_of_a_ref_than_its_running_one_is_cancelled_not_of_another_ref() {
    let mut q = StackQueue::default();
    q.admit(on("refs/heads/main", slot(5, Some("new"))));
    q.next(false);
    assert_eq!(
        q.admit(on("refs/heads/main", slot(4, Some("old")))),
        cancel("commit old is older than the deploy running (#5)", 5)
    );
    assert_eq!(
        q.admit(on("refs/tags/v1", slot(3, Some("old")))),
        pending(None, false)
    );
}

#[test]
fn the_same_branch_of_two_repositories_makes_two_lanes() {
    let main = "refs/heads/main";
    let web = |id, sha| of_repository("acme/shop-web", on(main, of(id, Some(sha), &["web"])));
    let worker =
        |id, sha| of_repository("acme/shop-worker", on(main, of(id, Some(sha), &["worker"])));
    let mut q = StackQueue::default();
    q.admit(web(1, "w1"));
    q.next(false);
    // The worker's push waits; web's next push neither supersedes it
    // nor takes its service; web's push after supersedes web's own.
    assert_eq!(q.admit(worker(2, "k1")), pending(None, false));
    assert_eq!(q.admit(web(3, "w2")), pending(None, false));
    assert_eq!(
        q.admit(web(4, "w3")),
        pending(Some((3, "superseded by commit w3 (#4)")), false)
    );
    // The same commit running in web's lane is no duplicate for the
    // worker's lane, and an older worker deploy is only older than the
    // worker's.
    assert_eq!(
        q.admit(worker(5, "w1")),
        pending(Some((2, "superseded by commit w1 (#5)")), false)
    );
    q.finished();
    assert_eq!(
        q.next(false),
        Some(web(4, "w3")),
        "admitted before the worker's newer push, web's services alone"
    );
    q.finished();
    assert_eq!(q.next(false), Some(worker(5, "w1")));
}

#[test]
fn a_lanes_newer_deploy_goes_behind_every_deploy_admitted_before_it() {
    let (main, tag) = ("refs/heads/main", "refs/tags/v2");
    let mut q = StackQueue::default();
    q.admit(on(main, of(1, Some("a"), &["web"])));
    q.next(false);
    // While main's `a` runs: main `d`, a tag at `e`, main `f`.
    assert_eq!(
        q.admit(on(main, of(2, Some("d"), &["web"]))),
        pending(None, false)
    );
    assert_eq!(
        q.admit(on(tag, of(3, Some("e"), &["web"]))),
        pending(None, false)
    );
    assert_eq!(
        q.admit(on(main, of(4, Some("f"), &["web"]))),
        pending(Some((2, "superseded by commit f (#4)")), false)
    );
    q.finished();
    // `f` is the newest push: run before the tag's `e`, it would be undone
    // by it.
    assert_eq!(q.next(false), Some(on(tag, of(3, Some("e"), &["web"]))));
    q.finished();
    assert_eq!(q.next(false), Some(on(main, of(4, Some("f"), &["web"]))));
    assert_eq!(q.next(false), None);
}

#[test]
fn a_taken_deploy_the_journal_did_not_start_waits_again() {
    let (main, tag) = ("refs/heads/main", "refs/tags/v2");
    let mut q = StackQueue::default();
    q.admit(on(main, of(5, Some("f"), &["web"])));
    let taken = q.next(false).unwrap();
    // Another process queued the tag's deploy before it: the journal's
    // claim starts that one. The taken deploy waits again, for the worker
    // to ask the journal for it next.
    let other = on(tag, of(3, Some("e"), &["web"]));
    q.started(other.clone(), taken.clone());
    assert_eq!(q.running, Some(other.clone()));
    q.finished();
    assert_eq!(q.next(false), Some(taken.clone()));
    // Started itself, or a newer one of its lane: nothing waits again.
    q.started(taken.clone(), taken.clone());
    assert_eq!(q.pending, vec![]);
    let newer = on(main, of(6, Some("g"), &["web"]));
    q.started(newer.clone(), taken.clone());
    assert_eq!((q.running, q.pending), (Some(newer), vec![]));
    // Of another lane, while a newer deploy of its own lane waits: that
    // one supersedes it in the journal when claimed.
    let mut q = StackQueue::default();
    q.admit(on(main, of(5, Some("f"), &["web"])));
    let taken = q.next(false).unwrap();
    q.admit(on(main, of(7, Some("h"), &["web"])));
    q.started(other, taken);
    assert_eq!(q.pending, vec![on(main, of(7, Some("h"), &["web"]))]);
}

#[test]
fn the_first_deploy_is_pending_and_starts_a_worker() {
    let mut q = StackQueue::default();
    assert_eq!(q.admit(slot(1, Some("a"))), pending(None, true));
    assert_eq!(q.next(false), Some(slot(1, Some("a"))));
    assert_eq!(q.next(false), None, "nothing else is pending");
    assert!(!q.worker_active, "the worker ends when nothing is pending");
    q.finished();
    assert!(q.is_idle());
}

#[test]
fn a_newer_deploy_supersedes_the_pending_one_without_a_second_worker() {
    let mut q = StackQueue::default();
    q.admit(slot(1, Some("a")));
    assert_eq!(q.next(false), Some(slot(1, Some("a"))));
    assert_eq!(q.admit(slot(2, Some("b"))), pending(None, false));
    assert_eq!(
        q.admit(slot(3, Some("c"))),
        pending(Some((2, "superseded by commit c (#3)")), false)
    );
    assert_eq!(
        q.admit(slot(4, None)),
        pending(Some((3, "superseded by deploy #4")), false)
    );
    q.finished();
    assert_eq!(q.next(false), Some(slot(4, None)), "the newest runs next");
}

#[test]
fn a_deploy_handed_over_twice_changes_nothing() {
    let mut q = StackQueue::default();
    assert_eq!(q.admit(slot(1, Some("a"))), pending(None, true));
    assert_eq!(q.admit(slot(1, Some("a"))), Admit::Known, "pending twice");
    assert_eq!(q.next(false), Some(slot(1, Some("a"))));
    assert_eq!(q.admit(slot(1, Some("a"))), Admit::Known, "running twice");
    assert_eq!(q.admit(slot(2, Some("b"))), pending(None, false));
    assert_eq!(q.admit(slot(2, Some("b"))), Admit::Known);
    assert_eq!(q.admit(slot(1, Some("a"))), Admit::Known, "still running");
}

#[test]
fn an_older_deploy_than_the_running_one_is_cancelled() {
    let mut q = StackQueue::default();
    q.admit(slot(5, Some("new")));
    q.next(false);
    assert_eq!(
        q.admit(slot(4, Some("old"))),
        cancel("commit old is older than the deploy running (#5)", 5)
    );
    assert_eq!(q.next(false), None, "the cancelled deploy never runs");
}

#[test]
fn the_commit_already_running_is_not_queued_again_unless_something_is_pending() {
    let mut q = StackQueue::default();
    q.admit(slot(1, Some("a")));
    q.next(false);
    assert_eq!(
        q.admit(slot(2, Some("a"))),
        cancel("commit a is already deploying (#1)", 1)
    );
    // With b pending, a second deploy of a is newer than b: a rollback
    // to a after b must run, so it supersedes b.
    q.admit(slot(3, Some("b")));
    assert_eq!(
        q.admit(slot(4, Some("a"))),
        pending(Some((3, "superseded by commit a (#4)")), false)
    );
}

#[test]
fn an_older_or_identical_deploy_than_the_pending_one_is_cancelled() {
    let mut q = StackQueue::default();
    q.admit(slot(1, Some("a")));
    q.next(false);
    q.admit(slot(3, Some("c")));
    assert_eq!(
        q.admit(slot(2, Some("b"))),
        cancel("a newer commit is already queued (#3)", 3)
    );
    assert_eq!(
        q.admit(slot(4, Some("c"))),
        cancel("the same commit is already queued (#3)", 3)
    );
    q.finished();
    assert_eq!(q.next(false), Some(slot(3, Some("c"))));
}

#[test]
fn deploys_without_a_commit_never_count_as_the_same_commit() {
    let mut q = StackQueue::default();
    q.admit(slot(1, None));
    q.next(false);
    assert_eq!(q.admit(slot(2, None)), pending(None, false));
    assert_eq!(
        q.admit(slot(3, None)),
        pending(Some((2, "superseded by deploy #3")), false)
    );
}

#[test]
fn stopping_leaves_the_pending_deploy_queued_and_ends_the_worker() {
    let mut q = StackQueue::default();
    q.admit(slot(1, Some("a")));
    assert_eq!(q.next(true), None);
    assert!(!q.worker_active);
    // It is still pending: a deploy admitted after starts a worker again.
    assert_eq!(
        q.admit(slot(2, Some("b"))),
        pending(Some((1, "superseded by commit b (#2)")), true)
    );
}

#[test]
fn an_abandoned_deploy_frees_the_stack_for_a_new_worker() {
    let mut q = StackQueue::default();
    q.admit(slot(1, Some("a")));
    assert_eq!(q.next(false), Some(slot(1, Some("a"))));
    q.abandon();
    assert!(q.is_idle());
    assert_eq!(q.admit(slot(2, Some("b"))), pending(None, true));
}

#[test]
fn a_placement_undone_at_once_leaves_the_queue_as_it_was() {
    let mut q = StackQueue::default();
    q.admit(slot(1, Some("a")));
    q.next(false);
    q.admit(slot(2, Some("b")));
    let before = q.clone();
    let superseding = q.place("s", slot(3, Some("c")));
    assert_eq!(
        superseding.admit,
        pending(Some((2, "superseded by commit c (#3)")), false)
    );
    assert!(!q.undo(&superseding), "the worker runs already");
    assert_eq!(q, before);
    // A duplicate of the pending commit widens its services: undone too.
    let duplicate = q.place("s", of(4, Some("b"), &["x"]));
    assert_eq!(
        duplicate.admit,
        cancel("the same commit is already queued (#2)", 2)
    );
    assert!(!q.undo(&duplicate));
    assert_eq!(q, before);
    // The first deploy of an idle stack starts no worker once undone.
    let mut idle = StackQueue::default();
    let first = idle.place("s", slot(1, Some("a")));
    assert!(!idle.undo(&first));
    assert!(idle.is_idle());
}

#[test]
fn a_placement_undone_after_the_queue_moved_keeps_the_superseded_deploy() {
    // The worker took the deploy before its transaction failed: it is
    // forgotten, and the one it superseded is pending again.
    let mut q = StackQueue::default();
    q.admit(slot(1, Some("a")));
    q.next(false);
    q.admit(slot(2, Some("b")));
    let placed = q.place("s", slot(3, Some("c")));
    q.finished();
    assert_eq!(q.next(false), Some(slot(3, Some("c"))));
    assert!(!q.undo(&placed), "the worker is still serving the stack");
    q.finished();
    assert_eq!(q.next(false), Some(slot(2, Some("b"))));
    // A placement that was to start the stack's worker, undone after
    // another deploy was admitted behind it (which started none): the
    // caller starts the worker.
    let mut q = StackQueue::default();
    let first = q.place("s", slot(1, Some("a")));
    assert_eq!(first.admit, pending(None, true));
    assert_eq!(
        q.admit(slot(2, Some("b"))),
        pending(Some((1, "superseded by commit b (#2)")), false)
    );
    assert!(q.undo(&first));
    assert_eq!(q.next(false), Some(slot(2, Some("b"))));
    // A superseded deploy admitted again to a queue whose worker ended
    // starts one.
    let mut q = StackQueue::default();
    q.admit(slot(1, Some("a")));
    let placed = q.place("s", slot(2, Some("b")));
    assert_eq!(q.next(false), Some(slot(2, Some("b"))));
    q.finished();
    assert_eq!(q.next(false), None);
    assert!(q.undo(&placed));
    assert_eq!(q.next(false), Some(slot(1, Some("a"))));
}

#[test]
fn a_duplicate_undone_after_the_queue_moved_takes_back_its_services() {
    let mut q = StackQueue::default();
    q.admit(slot(1, Some("a")));
    q.next(false);
    q.admit(of(2, Some("b"), &["web"]));
    let duplicate = q.place("s", of(3, Some("b"), &["cron"]));
    assert_eq!(
        duplicate.admit,
        cancel("the same commit is already queued (#2)", 2)
    );
    // The worker takes #2, widened, before the transaction fails.
    q.finished();
    assert_eq!(q.next(false), Some(of(2, Some("b"), &["web", "cron"])));
    assert!(!q.undo(&duplicate));
    // #2 no longer counts as deploying "cron": that commit again, for
    // it, is no duplicate.
    assert_eq!(q.admit(of(4, Some("b"), &["cron"])), pending(None, false));
}

#[test]
fn a_cancelled_deploy_is_no_reason_to_cancel_its_commit_again() {
    let mut q = StackQueue::default();
    assert_eq!(q.admit(slot(1, Some("a"))), pending(None, true));
    assert_eq!(q.next(false), Some(slot(1, Some("a"))));
    assert_eq!(q.admit(slot(2, Some("b"))), pending(None, false));
    // The pending one cancelled: the same commit queued again waits.
    q.forget(2);
    assert_eq!(q.admit(slot(3, Some("b"))), pending(None, false));
    // The running one cancelled: its commit again is not "deploying".
    q.forget(3);
    q.forget(1);
    assert_eq!(q.admit(slot(4, Some("a"))), pending(None, false));
    assert_eq!(q.next(false), Some(slot(4, Some("a"))));
}
