//! Unit tests of `redeploy post-receive`'s pure parts.

use super::{describe_answer, forced_note, parse_updates, RepositoryNames};
use crate::plugin::wit;

fn names(fixed: Option<&str>, gitolite: Option<&str>) -> RepositoryNames {
    RepositoryNames {
        fixed: fixed.map(str::to_string),
        path: "/var/lib/gitolite3/repositories/team/app.git".into(),
        gitolite: gitolite.map(str::to_string),
    }
}

#[test]
fn a_ref_name_holding_a_no_break_space_is_one_field_of_its_line() {
    let a = "a".repeat(40);
    let b = "b".repeat(40);
    let updates = parse_updates(format!("{a} {b} refs/heads/feat\u{a0}x\n").as_bytes())
        .unwrap()
        .updates;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].name, "refs/heads/feat\u{a0}x");
    assert!(parse_updates(format!("{a} {b} refs/heads/feat x\n").as_bytes()).is_err());
}

#[test]
fn a_ref_name_that_is_not_utf8_is_left_out_and_the_others_kept() {
    let (a, b) = ("a".repeat(40), "b".repeat(40));
    let mut input = format!("{a} {b} refs/heads/bad").into_bytes();
    input.extend_from_slice(b"\xff\n");
    input.extend_from_slice(format!("{a} {b} refs/heads/main\r\n\n").as_bytes());
    let parsed = parse_updates(&input).unwrap();
    assert_eq!(parsed.not_utf8, ["refs/heads/bad\\xff"]);
    assert_eq!(parsed.updates.len(), 1);
    assert_eq!(parsed.updates[0].name, "refs/heads/main");
    assert_eq!(
        (&*parsed.updates[0].old, &*parsed.updates[0].new),
        (&*a, &*b)
    );
    // Object ids that are not UTF-8 are no update at all.
    let mut bad_id = b"\xff".to_vec();
    bad_id.extend_from_slice(format!(" {b} refs/heads/main\n").as_bytes());
    assert!(parse_updates(&bad_id).is_err());
}

#[test]
fn a_stack_naming_a_path_sees_the_path_and_others_see_gitolites_name() {
    let gitolite = names(None, Some("team/app"));
    assert_eq!(
        gitolite.for_stack(["/srv/git/team/app.git"]),
        "/var/lib/gitolite3/repositories/team/app.git"
    );
    assert_eq!(
        gitolite.for_stack(["git@git.example.com:team/app"]),
        "team/app"
    );
    assert_eq!(gitolite.for_stack(["team/app"]), "team/app");
    // A stack of services, one naming a path: the path.
    assert_eq!(
        gitolite.for_stack(["acme/app", "/srv/git/team/app.git"]),
        "/var/lib/gitolite3/repositories/team/app.git"
    );
    // Without gitolite, every stack sees the path.
    assert_eq!(
        names(None, None).for_stack(["team/app"]),
        "/var/lib/gitolite3/repositories/team/app.git"
    );
    // `--repository` or `[hook] repositories` decide for every stack.
    let fixed = names(Some("acme/app"), Some("team/app"));
    assert_eq!(fixed.for_stack(["/srv/git/team/app.git"]), "acme/app");
    assert_eq!(fixed.for_stack(["team/app"]), "acme/app");
}

#[test]
fn only_an_update_whose_old_commit_is_not_an_ancestor_is_forced() {
    let update = |old: &str, new: &str| wit::RefUpdate {
        old: old.into(),
        new: new.into(),
        name: "refs/heads/main".into(),
    };
    let (a, b, zero) = ("a".repeat(40), "b".repeat(40), "0".repeat(40));
    assert_eq!(
        forced_note(&update(&a, &b), Some(false)).as_deref(),
        Some("forced push: aaaaaaa is not an ancestor of bbbbbbb")
    );
    assert_eq!(forced_note(&update(&a, &b), Some(true)), None);
    assert_eq!(forced_note(&update(&a, &b), None), None);
    assert_eq!(forced_note(&update(&zero, &b), Some(false)), None);
    assert_eq!(forced_note(&update(&a, &zero), Some(false)), None);
}

#[test]
fn each_action_of_an_answer_reads_as_its_own_remote_line() {
    let answer = |action: &str, state: &str| {
        serde_json::json!({"decisions": [{
            "stack": "web", "action": action, "state": state, "deploy_id": 4,
            "reason": "push to \"main\" of acme/web matches branch \"main\"",
        }]})
        .to_string()
    };
    let no_note = |_: &str| None;
    assert_eq!(
        describe_answer("web", 202, &answer("deploy", "queued"), "this host", &no_note),
        ["redeploy: web: deploying (push to \"main\" of acme/web matches branch \"main\"), deploy #4 on this host"]
    );
    // A stack waiting for GitHub's deployment event deploys nothing yet.
    assert_eq!(
        describe_answer("web", 202, &answer("request-deployment", "deployment-requested"), "this host", &no_note),
        ["redeploy: web: asked GitHub for a deployment (push to \"main\" of acme/web matches branch \"main\"); its deployment event deploys"]
    );
    let skipped = serde_json::json!({"decisions": [{
        "stack": "web", "action": "skip", "skip": "branch-mismatch",
        "reason": "push to \"x\" does not match branch \"main\"",
    }]});
    assert_eq!(
        describe_answer("web", 200, &skipped.to_string(), "this host", &no_note),
        ["redeploy: web: not deploying: push to \"x\" does not match branch \"main\""]
    );
}

#[test]
fn an_answer_deploying_two_refs_of_a_stack_says_each_with_its_own_forced_note() {
    let answer = serde_json::json!({"decisions": [
        {"stack": "web", "action": "deploy", "state": "queued", "deploy_id": 4,
         "ref": "refs/heads/main", "reason": "push to \"main\" matches"},
        {"stack": "web", "action": "skip", "skip": "skip-marker",
         "reason": "push to \"docs\": every commit carries a skip marker"},
        {"stack": "web", "action": "deploy", "state": "queued", "deploy_id": 5,
         "ref": "refs/heads/develop", "reason": "push to \"develop\" matches"},
    ]});
    let note = |git_ref: &str| (git_ref == "refs/heads/develop").then(|| "forced push".to_string());
    assert_eq!(
        describe_answer("web", 202, &answer.to_string(), "this host", &note),
        [
            "redeploy: web: deploying (push to \"main\" matches), deploy #4 on this host",
            "redeploy: web: deploying (push to \"develop\" matches), deploy #5 on this host (forced push)",
        ]
    );
    assert_eq!(
        describe_answer("web", 200, r#"{"decisions": []}"#, "this host", &note),
        ["redeploy: web: not deploying: the answer (200) has no decision"]
    );
}
