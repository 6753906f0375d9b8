//! Which listed webhook deliveries to ask GitHub to redeliver, and how far
//! a look settles the list: pure, from what GitHub listed and what the
//! journal knows.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::github::HookDelivery;
use crate::journal::{RedeliveryClaim, RedeliveryState};

/// From where a look considers deliveries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// Deliveries with a greater id than this one (settled before).
    After(u64),
    /// Deliveries made at or after this time (ms since the epoch): the
    /// first look after `github connect` recorded the webhook.
    Time(i64),
}

impl Since {
    /// Whether `d` is one the look considers.
    pub fn includes(self, d: &HookDelivery) -> bool {
        match self {
            Since::After(id) => d.id > id,
            // GitHub writes whole seconds: a delivery in the second the
            // webhook was recorded is looked at. A time that does not
            // parse is looked at too.
            Since::Time(ms) => d
                .delivered_at_ms()
                .is_none_or(|at| at.div_euclid(1000) >= ms.div_euclid(1000)),
        }
    }
}

/// One redelivery to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redeliver {
    /// The delivery to name in the request (the oldest listed one with
    /// its GUID).
    pub delivery: HookDelivery,
    /// A claim of an earlier look was never settled, and GitHub lists no
    /// redelivery of it: the claim is taken over and asked again.
    pub in_doubt: bool,
}

/// What a look does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The deliveries to redeliver, oldest first, one per GUID.
    pub redeliver: Vec<Redeliver>,
    /// GUIDs whose claim was in doubt and whose redelivery GitHub lists
    /// (made since the claim): asked already.
    pub seen_redelivered: Vec<String>,
    /// Redeliveries catch-up asked for that were not answered with a 2xx
    /// either (the failed redelivery as listed): said once, never asked
    /// again.
    pub failed_redeliveries: Vec<HookDelivery>,
    /// The newest delivery id considered (`None`: none was).
    pub newest: Option<u64>,
    /// Deliveries needing a redelivery left for a later look (over the
    /// limit of one look).
    pub left: usize,
    /// The oldest of those.
    pub first_left: Option<u64>,
}

/// The GUIDs of the deliveries `since` includes, in the order listed.
pub fn considered_guids(listed: &[HookDelivery], since: Since) -> Vec<String> {
    let mut seen = HashSet::new();
    listed
        .iter()
        .filter(|d| since.includes(d))
        .filter(|d| seen.insert(d.guid.as_str()))
        .map(|d| d.guid.clone())
        .collect()
}

/// Plans a look. A delivery `since` includes is redelivered when the
/// journal never `received` its GUID or no listed delivery of that GUID
/// was answered with a 2xx status, unless its redelivery was asked for
/// already (`claims`). At most `max` are planned; the rest are `left`.
pub fn plan(
    listed: &[HookDelivery],
    since: Since,
    received: &HashSet<String>,
    claims: &HashMap<String, RedeliveryClaim>,
    max: usize,
) -> Plan {
    let mut by_guid: BTreeMap<&str, Vec<&HookDelivery>> = BTreeMap::new();
    for d in listed {
        by_guid.entry(d.guid.as_str()).or_default().push(d);
    }
    let mut out = Plan {
        newest: listed
            .iter()
            .filter(|d| since.includes(d))
            .map(|d| d.id)
            .max(),
        ..Plan::default()
    };
    let mut wanted: Vec<Redeliver> = Vec::new();
    for (guid, items) in by_guid {
        if !items.iter().any(|d| since.includes(d)) {
            continue;
        }
        let answered = items.iter().any(|d| d.answered_ok());
        if received.contains(guid) && answered {
            continue;
        }
        let in_doubt = match claims.get(guid) {
            None => false,
            Some(claim) => {
                // A redelivery made since the claim (not, say, one someone
                // asked for by hand before it).
                let since_claim = items.iter().find(|d| {
                    d.redelivery
                        && d.delivered_at_ms().is_some_and(|t| {
                            t.div_euclid(1000) >= claim.asked_at_ms.div_euclid(1000)
                        })
                });
                match (claim.state, since_claim) {
                    (RedeliveryState::InDoubt, Some(_)) => {
                        out.seen_redelivered.push(guid.to_string());
                        continue;
                    }
                    (RedeliveryState::InDoubt, None) => true,
                    (RedeliveryState::Asked, Some(failed)) => {
                        out.failed_redeliveries.push((*failed).clone());
                        continue;
                    }
                    _ => continue,
                }
            }
        };
        let Some(oldest) = items.iter().min_by_key(|d| d.id) else {
            continue;
        };
        wanted.push(Redeliver {
            delivery: (*oldest).clone(),
            in_doubt,
        });
    }
    wanted.sort_by_key(|r| r.delivery.id);
    out.left = wanted.len().saturating_sub(max);
    out.first_left = wanted.get(max).map(|r| r.delivery.id);
    wanted.truncate(max);
    out.redeliver = wanted;
    out
}

/// How far a look settled the list: up to the newest delivery considered,
/// unless a redelivery it planned was not asked for (`unsettled`: their
/// ids) or was left over the limit (from `plan.first_left` on), in which
/// case up to just before the oldest of those, so the next look considers
/// it again. `None`: no further than before.
pub fn settled_up_to(plan: &Plan, unsettled: &[u64]) -> Option<u64> {
    let oldest_open = unsettled.iter().copied().chain(plan.first_left).min();
    match oldest_open {
        Some(id) => id
            .checked_sub(1)
            .filter(|c| plan.newest.is_some_and(|n| *c <= n)),
        None => plan.newest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: u64, guid: &str, status: i64, redelivery: bool) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.to_string(),
            delivered_at: "2026-12-02T10:00:00Z".to_string(),
            redelivery,
            status_code: status,
            event: "push".to_string(),
            action: None,
        }
    }

    /// A claim made at 2026-12-02T10:00:00Z, when [`d`]'s deliveries are.
    fn claim(state: RedeliveryState) -> RedeliveryClaim {
        RedeliveryClaim {
            state,
            asked_at_ms: 1_796_205_600_000,
        }
    }

    fn set(guids: &[&str]) -> HashSet<String> {
        guids.iter().map(|g| g.to_string()).collect()
    }

    fn ids(p: &Plan) -> Vec<u64> {
        p.redeliver.iter().map(|r| r.delivery.id).collect()
    }

    #[test]
    fn failed_and_unknown_deliveries_are_redelivered_oldest_first() {
        // Newest first, as GitHub lists them.
        let listed = [
            d(14, "e", 200, false), // answered, and in the journal
            d(13, "d", 200, false), // answered, but the journal never got it
            d(12, "c", 502, false), // a proxy answered 502
            d(11, "b", 0, false),   // nobody answered
            d(10, "a", 200, false), // settled by the last look
        ];
        let p = plan(
            &listed,
            Since::After(10),
            &set(&["a", "e", "c"]),
            &HashMap::new(),
            100,
        );
        assert_eq!(ids(&p), [11, 12, 13]);
        assert_eq!(p.newest, Some(14));
        assert_eq!(settled_up_to(&p, &[]), Some(14));
    }

    #[test]
    fn a_delivery_answered_by_a_later_redelivery_is_settled() {
        let listed = [d(21, "x", 202, true), d(20, "x", 503, false)];
        let p = plan(
            &listed,
            Since::After(19),
            &set(&["x"]),
            &HashMap::new(),
            100,
        );
        assert!(p.redeliver.is_empty());
        assert_eq!(p.newest, Some(21));
    }

    #[test]
    fn a_delivery_is_never_asked_for_twice() {
        let listed = [d(31, "y", 0, true), d(30, "y", 0, false)];
        // Asked, and its redelivery failed too: said once, not asked again.
        let asked = HashMap::from([("y".to_string(), claim(RedeliveryState::Asked))]);
        let p = plan(&listed, Since::After(29), &set(&[]), &asked, 100);
        assert!(p.redeliver.is_empty());
        assert_eq!(p.failed_redeliveries.len(), 1);
        assert_eq!(p.failed_redeliveries[0].id, 31);
        for settled in [
            RedeliveryState::RedeliveryFailed,
            RedeliveryState::Refused(422),
        ] {
            let claims = HashMap::from([("y".to_string(), claim(settled))]);
            let p = plan(&listed, Since::After(29), &set(&[]), &claims, 100);
            assert_eq!((p.redeliver.len(), p.failed_redeliveries.len()), (0, 0));
        }
        // In doubt, and GitHub lists a redelivery since the claim: asked.
        let doubt = HashMap::from([("y".to_string(), claim(RedeliveryState::InDoubt))]);
        let p = plan(&listed, Since::After(29), &set(&[]), &doubt, 100);
        assert!(p.redeliver.is_empty());
        assert_eq!(p.seen_redelivered, ["y"]);
        // In doubt, and no redelivery listed: asked again, once.
        let p = plan(&listed[1..], Since::After(29), &set(&[]), &doubt, 100);
        assert_eq!(ids(&p), [30]);
        assert!(p.redeliver[0].in_doubt);
        // In doubt, and the only redelivery listed is older than the claim
        // (someone asked by hand before): asked again.
        let later = HashMap::from([(
            "y".to_string(),
            RedeliveryClaim {
                state: RedeliveryState::InDoubt,
                asked_at_ms: 1_796_205_660_000,
            },
        )]);
        let p = plan(&listed, Since::After(29), &set(&[]), &later, 100);
        assert_eq!(ids(&p), [30]);
    }

    #[test]
    fn the_first_look_starts_at_the_time_the_webhook_was_recorded() {
        let mut old = d(40, "old", 0, false);
        old.delivered_at = "2026-12-01T00:00:00Z".to_string();
        let listed = [d(41, "new", 0, false), old];
        let since = Since::Time(1_796_169_600_000); // 2026-12-02T00:00:00Z
        let p = plan(&listed, since, &set(&[]), &HashMap::new(), 100);
        assert_eq!(ids(&p), [41]);
        assert_eq!(considered_guids(&listed, since), ["new"]);
    }

    #[test]
    fn a_look_asks_for_at_most_its_limit_and_settles_only_what_it_asked() {
        let listed: Vec<_> = (1..=5)
            .rev()
            .map(|i| d(i, &format!("g{i}"), 0, false))
            .collect();
        let p = plan(&listed, Since::After(0), &set(&[]), &HashMap::new(), 2);
        assert_eq!(ids(&p), [1, 2]);
        assert_eq!(p.left, 3);
        assert_eq!(p.first_left, Some(3));
        // The third (id 3) is left: settled up to 2.
        assert_eq!(settled_up_to(&p, &[]), Some(2));
        // The request for 2 failed: settled up to 1.
        assert_eq!(settled_up_to(&p, &[2]), Some(1));
        // The request for 1 failed: no further than before.
        assert_eq!(settled_up_to(&p, &[1]), Some(0));
    }
}
