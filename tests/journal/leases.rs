//! Leases: one holder at a time, until the lease runs out on the
//! database's clock.

use std::time::Duration;

use super::Store;

/// Long enough that no test machine's pause lets it run out by accident.
const LONG: Duration = Duration::from_secs(600);

/// One holder at a time; the holder renews and releases; a released or
/// run-out lease goes to the next taker; another holder can neither renew
/// nor release it.
fn a_lease_has_one_holder_until_released_or_run_out(store: &Store) {
    let (a, b) = (store.open(), store.open());
    assert!(a.take_lease("stack:web", "replica-a", LONG).unwrap());
    assert!(!b.take_lease("stack:web", "replica-b", LONG).unwrap());
    assert!(
        b.take_lease("stack:api", "replica-b", LONG).unwrap(),
        "leases are per name"
    );
    assert_eq!(
        a.lease_holder("stack:web").unwrap().as_deref(),
        Some("replica-a")
    );
    // Taking again is renewing, for the holder only.
    assert!(a.take_lease("stack:web", "replica-a", LONG).unwrap());
    assert!(a.renew_lease("stack:web", "replica-a", LONG).unwrap());
    assert!(!b.renew_lease("stack:web", "replica-b", LONG).unwrap());
    b.release_lease("stack:web", "replica-b").unwrap();
    assert_eq!(
        a.lease_holder("stack:web").unwrap().as_deref(),
        Some("replica-a"),
        "a non-holder released it"
    );
    a.release_lease("stack:web", "replica-a").unwrap();
    assert_eq!(a.lease_holder("stack:web").unwrap(), None);
    assert!(b.take_lease("stack:web", "replica-b", LONG).unwrap());
    // A lease that runs out is free: nobody holds it, its holder cannot
    // renew it, and the next taker gets it.
    assert!(a
        .take_lease("outbox", "replica-a", Duration::from_millis(1))
        .unwrap());
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(b.lease_holder("outbox").unwrap(), None);
    assert!(b.take_lease("outbox", "replica-b", LONG).unwrap());
    assert!(!a.renew_lease("outbox", "replica-a", LONG).unwrap());
    assert_eq!(
        a.lease_holder("outbox").unwrap().as_deref(),
        Some("replica-b")
    );
    assert_eq!(
        store.query_i64("SELECT COUNT(*) FROM leases"),
        3,
        "one row per lease name"
    );
}

/// Many processes racing for one lease: exactly one wins each round.
fn racing_takers_get_one_lease_once(store: &Store) {
    for round in 0..5 {
        let name = format!("stack:race-{round}");
        let winners: usize = std::thread::scope(|scope| {
            let takers: Vec<_> = (0..8)
                .map(|i| {
                    let journal = store.open();
                    let name = name.clone();
                    scope.spawn(move || {
                        journal
                            .take_lease(&name, &format!("replica-{i}"), LONG)
                            .unwrap()
                    })
                })
                .collect();
            takers
                .into_iter()
                .map(|t| usize::from(t.join().unwrap()))
                .sum()
        });
        assert_eq!(winners, 1, "round {round}");
    }
}

super::on_both_backends!(
    a_lease_has_one_holder_until_released_or_run_out,
    racing_takers_get_one_lease_once,
);
