//! Deploy logs kept in the journal: a PostgreSQL journal stores them
//! (appended where the writer left off, read from an offset, pruned with
//! their deploy); a SQLite journal keeps none, and the calls do nothing.

use redeploy_host::journal::*;

use super::retention::deploy;
use super::Store;

/// A deploy started at `at`, and finished if `finish`.
fn started(j: &Journal, at: i64, finish: bool) -> i64 {
    let Inserted::New(id) = j.insert_deploy(&deploy(at)).unwrap() else {
        panic!("a new deploy")
    };
    j.transition(id, DeployState::Started, at, &TransitionDetail::default())
        .unwrap();
    if finish {
        j.transition(id, DeployState::Succeeded, at, &TransitionDetail::default())
            .unwrap();
    }
    id
}

fn deploy_logs_are_stored_appended_read_and_pruned_with_their_deploy(store: &Store) {
    let j = store.open();
    let id = started(&j, 1, false);
    let known = |ids: &[i64]| j.known_deploys(&ids.iter().copied().collect()).unwrap();
    assert_eq!(known(&[id, id + 1000]), [id].into());
    if matches!(store, Store::Sqlite(_)) {
        // One machine's journal: its logs are its files.
        assert!(!j.keeps_deploy_logs());
        assert!(!j.append_deploy_log(id, 0, "x", false).unwrap());
        j.replace_deploy_log(id, "x", false).unwrap();
        assert_eq!(j.deploy_log(id).unwrap(), None);
        assert_eq!(j.deploy_log_size(id).unwrap(), None);
        return;
    }
    assert!(j.keeps_deploy_logs());
    assert_eq!(j.deploy_log(id).unwrap(), None);
    assert!(j.append_deploy_log(id, 0, "", false).unwrap());
    assert!(j.append_deploy_log(id, 0, "élan\n", false).unwrap());
    // An append that expects another size changes nothing.
    assert!(!j.append_deploy_log(id, 3, "lost", false).unwrap());
    assert!(j.append_deploy_log(id, 6, "b\u{fffd}\n", true).unwrap());
    let log = j.deploy_log(id).unwrap().unwrap();
    assert_eq!(log.text, "élan\nb\u{fffd}\n");
    assert_eq!(log.size_bytes, log.text.len() as u64);
    assert!(log.truncated);
    assert_eq!(j.deploy_log_size(id).unwrap(), Some(11));
    // From a byte offset (where a reader left off), and past the end.
    assert_eq!(
        j.deploy_log_from(id, 6).unwrap().unwrap().text,
        "b\u{fffd}\n"
    );
    assert_eq!(j.deploy_log_from(id, 11).unwrap().unwrap().text, "");
    assert_eq!(j.deploy_log_from(id, u64::MAX).unwrap().unwrap().text, "");
    j.replace_deploy_log(id, "whole", false).unwrap();
    let log = j.deploy_log(id).unwrap().unwrap();
    assert_eq!(
        (log.text.as_str(), log.size_bytes, log.truncated),
        ("whole", 5, false)
    );

    // Retention deletes a finished deploy's stored log with it.
    j.transition(id, DeployState::Succeeded, 2, &TransitionDetail::default())
        .unwrap();
    let kept = started(&j, 3, true);
    j.replace_deploy_log(kept, "kept", false).unwrap();
    let pruned = j
        .prune(&PrunePolicy {
            deliveries_before_ms: 100,
            refused_before_ms: 100,
            deploys_before_ms: 100,
            keep_deploys_min: 1,
            keep_deploys_max: 1,
        })
        .unwrap();
    assert_eq!(pruned.deploys, 1);
    assert_eq!(j.deploy_log(id).unwrap(), None);
    assert_eq!(known(&[id, kept]), [kept].into());
    assert_eq!(j.deploy_log(kept).unwrap().unwrap().text, "kept");
    assert_eq!(
        store.query_i64(&format!(
            "SELECT COUNT(*) FROM deploy_logs WHERE deploy_id = {id}"
        )),
        0
    );
}

super::on_both_backends!(deploy_logs_are_stored_appended_read_and_pruned_with_their_deploy);
