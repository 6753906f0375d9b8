//! The notifications outbox on both backends: a notice written with every
//! transition (a timeout's failure as `timed_out`), fanned out once into
//! one notification per channel that wants it, by the lease's holder
//! only; each (channel, stack)'s oldest unsettled one the only one sent,
//! a deferred one holding back its successors, and settled once.

use std::time::Duration;

use redeploy_host::journal::*;

use super::deploys::{new_deploy, new_id};
use super::Store;

/// Long enough that no test machine's pause lets a lease run out.
const LONG: Duration = Duration::from_secs(600);

fn to(j: &Journal, id: i64, state: DeployState, reason: &str) {
    let detail = TransitionDetail {
        reason: Some(reason.to_owned()),
        ..TransitionDetail::default()
    };
    j.transition(id, state, 3, &detail).unwrap();
}

/// Routes `failed`, `timed_out` and `refused` to "ops", everything of
/// stack "api" to "api-team".
fn route(event: &str, stack: &str) -> Vec<String> {
    let mut out = Vec::new();
    if matches!(event, "failed" | "timed_out" | "refused") {
        out.push("ops".to_owned());
    }
    if stack == "api" {
        out.push("api-team".to_owned());
    }
    out
}

fn heads(j: &Journal) -> Vec<(String, String, String)> {
    j.notification_heads()
        .unwrap()
        .into_iter()
        .map(|n| (n.channel, n.stack, n.event))
        .collect()
}

fn notices_are_fanned_out_once_to_the_channels_that_want_them(store: &Store) {
    use DeployState::*;
    let j = store.open();
    let web = new_id(j.insert_deploy(&new_deploy("web", Some("w1"), 1)).unwrap());
    to(&j, web, Started, "started");
    to(&j, web, Failed, "timed out after 10m");
    let api = new_id(j.insert_deploy(&new_deploy("api", Some("a1"), 1)).unwrap());
    to(&j, api, Started, "started");
    to(&j, api, Failed, "exit code 3");
    j.add_refused_notice("web", 1, Duration::ZERO, "bad-signature: no", 4)
        .unwrap();
    assert_eq!(
        store.query_i64("SELECT COUNT(*) FROM notices"),
        7,
        "queued, started and the end of each deploy, and the refusal"
    );
    // Only the lease's holder fans out.
    assert!(j.take_lease(NOTIFICATIONS_LEASE, "a", LONG).unwrap());
    assert_eq!(j.fan_out_notices("b", &route, 5, 100).unwrap(), None);
    assert_eq!(store.query_i64("SELECT COUNT(*) FROM notifications"), 0);
    assert_eq!(j.fan_out_notices("a", &route, 5, 100).unwrap(), Some(7));
    // Once: a second fan-out finds nothing new.
    assert_eq!(j.fan_out_notices("a", &route, 6, 100).unwrap(), Some(0));
    let all: Vec<(String, String, String)> = j
        .notifications(0, 100)
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.notification.channel,
                r.notification.stack,
                r.notification.event,
            )
        })
        .collect();
    let s = |c: &str, st: &str, e: &str| (c.to_owned(), st.to_owned(), e.to_owned());
    assert_eq!(
        all,
        vec![
            s("ops", "web", "timed_out"),
            s("api-team", "api", "queued"),
            s("api-team", "api", "started"),
            s("ops", "api", "failed"),
            s("api-team", "api", "failed"),
            s("ops", "web", "refused"),
        ]
    );
    // The oldest of each (channel, stack) only.
    assert_eq!(
        heads(&j),
        vec![
            s("ops", "web", "timed_out"),
            s("api-team", "api", "queued"),
            s("ops", "api", "failed"),
        ]
    );
}

/// More notices than one marking statement holds
/// ([`FAN_OUT_MARK_IDS`]), fanned out in passes cut by the limit: each is
/// fanned out once, none is skipped, none is marked that a pass did not
/// read.
fn many_notices_are_fanned_out_once_across_marking_statements_and_passes(store: &Store) {
    use DeployState::*;
    let j = store.open();
    let mut deploys = Vec::new();
    for n in 0..FAN_OUT_MARK_IDS + 5 {
        let delivery = format!("a{n}");
        let id = new_id(
            j.insert_deploy(&new_deploy("api", Some(&delivery), 1))
                .unwrap(),
        );
        to(&j, id, Cancelled, "superseded");
        deploys.push(id);
    }
    let notices = i64::try_from(deploys.len() * 2).unwrap();
    assert_eq!(store.query_i64("SELECT COUNT(*) FROM notices"), notices);
    assert!(j.take_lease(NOTIFICATIONS_LEASE, "a", LONG).unwrap());
    // A first pass cut by its limit after more than one statement's ids,
    // and not on a multiple of it.
    let first = FAN_OUT_MARK_IDS + 7;
    assert_eq!(
        j.fan_out_notices("a", &route, 5, first).unwrap(),
        Some(first)
    );
    assert_eq!(
        store.query_i64("SELECT COUNT(*) FROM notices WHERE fanned_out_at_ms IS NULL"),
        notices - i64::try_from(first).unwrap(),
        "exactly the notices the pass read are marked"
    );
    assert_eq!(
        store.query_i64(
            "SELECT COUNT(*) FROM notices a, notices b \
             WHERE a.fanned_out_at_ms IS NULL AND b.fanned_out_at_ms IS NOT NULL AND a.id < b.id"
        ),
        0,
        "the oldest notices first"
    );
    let rest = usize::try_from(notices).unwrap() - first;
    assert_eq!(j.fan_out_notices("a", &route, 6, 1000).unwrap(), Some(rest));
    assert_eq!(j.fan_out_notices("a", &route, 7, 1000).unwrap(), Some(0));
    // One notification per notice (every event of stack "api" goes to
    // "api-team"), each made once.
    assert_eq!(
        store.query_i64("SELECT COUNT(*) FROM notifications WHERE channel = 'api-team'"),
        notices
    );
    assert_eq!(
        store.query_i64("SELECT COUNT(DISTINCT notice_id) FROM notifications"),
        notices
    );
}

fn a_deferred_notification_holds_back_its_successors_until_settled(store: &Store) {
    use DeployState::*;
    let j = store.open();
    let api = new_id(j.insert_deploy(&new_deploy("api", Some("a1"), 1)).unwrap());
    to(&j, api, Started, "started");
    assert!(j.take_lease(NOTIFICATIONS_LEASE, "a", LONG).unwrap());
    j.fan_out_notices("a", &route, 5, 100).unwrap();
    let first = j.notification_heads().unwrap().remove(0);
    assert_eq!((first.event.as_str(), first.attempts), ("queued", 0));
    // Another holder claims nothing.
    assert_eq!(
        j.claim_notification(first.id, "b", LONG, 6).unwrap(),
        Claim::LeaseLost
    );
    assert_eq!(
        j.claim_notification(first.id, "a", LONG, 6).unwrap(),
        Claim::Claimed
    );
    assert!(j
        .defer_notification(first.id, 10_000, "attempt 1: HTTP 500")
        .unwrap());
    let again = j.notification_heads().unwrap();
    assert_eq!(again.len(), 1, "the started one waits behind it");
    assert_eq!(
        (again[0].id, again[0].attempts, again[0].not_before_ms),
        (first.id, 1, Some(10_000))
    );
    assert!(j
        .settle_notification(first.id, NotificationOutcome::Sent, "HTTP 200", 7)
        .unwrap());
    // Settled once.
    assert!(!j
        .settle_notification(first.id, NotificationOutcome::Failed, "late", 8)
        .unwrap());
    assert_eq!(
        j.claim_notification(first.id, "a", LONG, 9).unwrap(),
        Claim::Settled
    );
    let next = j.notification_heads().unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].event, "started");
    let records = j.notifications(0, 10).unwrap();
    assert_eq!(records[0].outcome.as_deref(), Some("sent"));
    assert_eq!(records[0].detail.as_deref(), Some("HTTP 200"));
    assert_eq!(records[1].outcome, None);
}

fn settled_notices_are_pruned_with_their_notifications(store: &Store) {
    let j = store.open();
    j.add_refused_notice("web", 3, Duration::from_secs(600), "bad-signature", 1)
        .unwrap();
    j.add_refused_notice("web", 1, Duration::ZERO, "bad-signature", 50)
        .unwrap();
    assert!(j.take_lease(NOTIFICATIONS_LEASE, "a", LONG).unwrap());
    j.fan_out_notices("a", &route, 60, 100).unwrap();
    let ids: Vec<i64> = j
        .notifications(0, 10)
        .unwrap()
        .iter()
        .map(|r| r.notification.id)
        .collect();
    assert_eq!(ids.len(), 2);
    // An unsettled notification keeps its notice.
    assert_eq!(j.prune_notices(100).unwrap(), 0);
    j.settle_notification(ids[0], NotificationOutcome::Sent, "ok", 70)
        .unwrap();
    assert_eq!(j.prune_notices(10).unwrap(), 1);
    assert_eq!(store.query_i64("SELECT COUNT(*) FROM notifications"), 1);
    let left = j.notifications(0, 10).unwrap();
    assert_eq!(left[0].notification.refused, Some((1, 0)));
}

fn old_notifications_are_given_up_and_unsent_ones_keep_their_deploy(store: &Store) {
    use DeployState::*;
    let j = store.open();
    let api = new_id(j.insert_deploy(&new_deploy("api", Some("a1"), 1)).unwrap());
    to(&j, api, Started, "started");
    to(&j, api, Succeeded, "exit code 0");
    assert!(
        j.notifications_pending().unwrap(),
        "notices wait to be fanned out"
    );
    let prune_all = PrunePolicy {
        deliveries_before_ms: i64::MAX,
        refused_before_ms: i64::MAX,
        deploys_before_ms: i64::MAX,
        keep_deploys_min: 0,
        keep_deploys_max: 0,
    };
    assert!(j.take_lease(NOTIFICATIONS_LEASE, "a", LONG).unwrap());
    j.fan_out_notices("a", &route, 5, 100).unwrap();
    // Retention keeps a deploy with a notification not yet sent.
    assert_eq!(j.prune(&prune_all).unwrap().deploys, 0);
    // Events from before 2 ms ago (all three, at 1 and 3 ms) given up on
    // "api-team" only.
    assert_eq!(j.give_up_notifications("ops", 10, &[], 20).unwrap(), 0);
    let api_team: Vec<i64> = j
        .notifications(0, 10)
        .unwrap()
        .iter()
        .filter(|r| r.notification.channel == "api-team")
        .map(|r| r.notification.id)
        .collect();
    assert_eq!(api_team.len(), 3);
    // One being sent is spared, wherever it is among the others being sent
    // (41 ids: two clauses of SPARED_IDS_PER_CLAUSE, the second padded).
    for place in [0, 35, 40] {
        let mut sending: Vec<i64> = (1000..1040).collect();
        sending.insert(place, api_team[1]);
        let spared = j.give_up_notifications("api-team", 10, &sending, 20);
        assert_eq!(spared.unwrap(), if place == 0 { 2 } else { 0 });
    }
    let left: Vec<i64> = j
        .notifications(0, 10)
        .unwrap()
        .iter()
        .filter(|r| r.outcome.is_none())
        .map(|r| r.notification.id)
        .collect();
    assert_eq!(left, [api_team[1]]);
    assert_eq!(j.give_up_notifications("api-team", 10, &[], 20).unwrap(), 1);
    let records = j.notifications(0, 10).unwrap();
    assert!(records
        .iter()
        .all(|r| r.outcome.as_deref() == Some("failed")));
    assert!(records[0]
        .detail
        .as_deref()
        .unwrap()
        .starts_with("not sent within the channel's give_up_after"));
    assert!(!j.notifications_pending().unwrap());
    assert_eq!(j.prune(&prune_all).unwrap().deploys, 1);
    assert_eq!(store.query_i64("SELECT COUNT(*) FROM notifications"), 0);
}

super::on_both_backends!(
    old_notifications_are_given_up_and_unsent_ones_keep_their_deploy,
    notices_are_fanned_out_once_to_the_channels_that_want_them,
    many_notices_are_fanned_out_once_across_marking_statements_and_passes,
    a_deferred_notification_holds_back_its_successors_until_settled,
    settled_notices_are_pruned_with_their_notifications,
);
