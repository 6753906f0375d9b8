//! The dashboard's sessions, on both backends.

use super::Store;

fn a_session_holds_until_it_expires_or_ends_and_only_its_hash_is_stored(store: &Store) {
    let j = store.open();
    let id = "a".repeat(64);
    let hash = redeploy_host::ui::auth::session_hash(&id);
    j.create_ui_session(&hash, "alice", 1_000, 5_000).unwrap();
    j.create_ui_session("other-hash", "victor", 1_000, 9_000)
        .unwrap();
    // Another process or replica on the same journal sees it.
    let reader = store.open();
    assert_eq!(
        reader.ui_session_user(&hash, 4_999).unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(
        reader.ui_session_user(&hash, 5_000).unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        reader.ui_session_user(&id, 1_000).unwrap(),
        None,
        "the id itself is not stored"
    );
    assert_eq!(
        store.query_i64(&format!(
            "SELECT COUNT(*) FROM ui_sessions WHERE id_hash = '{id}'"
        )),
        0
    );
    // A new session prunes the expired ones.
    j.create_ui_session("third-hash", "alice", 6_000, 10_000)
        .unwrap();
    assert_eq!(store.query_i64("SELECT COUNT(*) FROM ui_sessions"), 2);
    // Sign-out ends one session and no other; ending it again is no error.
    j.end_ui_session("other-hash").unwrap();
    j.end_ui_session("other-hash").unwrap();
    assert_eq!(reader.ui_session_user("other-hash", 6_000).unwrap(), None);
    assert_eq!(
        reader
            .ui_session_user("third-hash", 6_000)
            .unwrap()
            .as_deref(),
        Some("alice")
    );
}

super::on_both_backends!(a_session_holds_until_it_expires_or_ends_and_only_its_hash_is_stored);
