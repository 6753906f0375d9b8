//! The dashboard's sessions, on both backends.

use super::Store;

fn a_session_holds_until_it_expires_or_ends(store: &Store) {
    let j = store.open();
    let session = |user: &str, created_at_ms: i64| {
        Some(redeploy_host::journal::UiSession {
            user: user.to_owned(),
            credential: format!("cred-{user}"),
            created_at_ms,
        })
    };
    j.create_ui_session("hash-a", "alice", "cred-alice", 1_000, 5_000)
        .unwrap();
    j.create_ui_session("hash-v", "victor", "cred-victor", 1_000, 9_000)
        .unwrap();
    // Another process or replica on the same journal sees it.
    let reader = store.open();
    assert_eq!(
        reader.ui_session_user("hash-a", 4_999).unwrap(),
        session("alice", 1_000)
    );
    assert_eq!(
        reader.ui_session_user("hash-a", 5_000).unwrap(),
        None,
        "expired"
    );
    assert_eq!(reader.ui_session_user("hash-x", 1_000).unwrap(), None);
    // A new session prunes the expired ones.
    j.create_ui_session("hash-a2", "alice", "cred-alice", 6_000, 10_000)
        .unwrap();
    assert_eq!(store.query_i64("SELECT COUNT(*) FROM ui_sessions"), 2);
    // Sign-out ends one session and no other; ending it again is no error.
    j.end_ui_session("hash-v").unwrap();
    j.end_ui_session("hash-v").unwrap();
    assert_eq!(reader.ui_session_user("hash-v", 6_000).unwrap(), None);
    assert_eq!(
        reader.ui_session_user("hash-a2", 6_000).unwrap(),
        session("alice", 6_000)
    );
}

fn the_sessions_of_users_no_longer_kept_end(store: &Store) {
    let j = store.open();
    j.create_ui_session("hash-a", "alice", "cred-alice", 1_000, 9_000)
        .unwrap();
    j.create_ui_session("hash-b", "bob", "cred-bob", 1_000, 9_000)
        .unwrap();
    j.create_ui_session("hash-c", "carol", "cred-old", 1_000, 9_000)
        .unwrap();
    // bob was removed; carol's password changed.
    let kept = |user: &str, credential: &str| {
        matches!(
            (user, credential),
            ("alice", "cred-alice") | ("carol", "cred-new")
        )
    };
    assert_eq!(j.end_ui_sessions_unless(&kept).unwrap(), 2);
    assert!(j.ui_session_user("hash-a", 2_000).unwrap().is_some());
    assert_eq!(j.ui_session_user("hash-b", 2_000).unwrap(), None);
    assert_eq!(j.ui_session_user("hash-c", 2_000).unwrap(), None);
    assert_eq!(j.end_ui_sessions_unless(&kept).unwrap(), 0);
}

super::on_both_backends!(
    a_session_holds_until_it_expires_or_ends,
    the_sessions_of_users_no_longer_kept_end
);
