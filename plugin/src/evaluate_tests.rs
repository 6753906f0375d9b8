//! Unit tests of the matching rules, through `evaluate`.

use super::*;
use crate::github;
use crate::model::{GithubDeployments, Headers, PingAction, Service};
use crate::outcome::{Action, Decision, SkipCode};

// GitHub deployment events: redeploy's own and those created elsewhere.
#[path = "evaluate_deployment_tests.rs"]
mod deployment;

// The Distribution registry's notifications and Bitbucket Server's
// personal repositories, end to end.
#[path = "evaluate_sender_tests.rs"]
mod senders;

// Poll deliveries: polled refs and image tags, for the polled stack alone.
#[path = "evaluate_poll_tests.rs"]
mod poll;

const SHA1_A: &str = "1111111111111111111111111111111111111111";
const SHA1_B: &str = "2222222222222222222222222222222222222222";
const ZERO1: &str = "0000000000000000000000000000000000000000";
const SHA256_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const ZERO256: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A stack `name` of one service following `image`.
fn image_stack(name: &str, image: &str) -> Stack {
    Stack {
        name: name.into(),
        services: vec![Service {
            name: name.into(),
            image: Some(image.into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `s` with GitHub continuous deployment to `production` of acme/web,
/// waiting for GitHub's `deployment` event.
fn with_github_cd(mut s: Stack) -> Stack {
    s.github = Some(GithubDeployments {
        repository: "acme/web".into(),
        environment: "production".into(),
        wait_for_event: true,
        ..Default::default()
    });
    s
}

fn stack(name: &str, repo: &str, branch: &str) -> Stack {
    Stack {
        name: name.into(),
        services: vec![Service {
            name: name.into(),
            repository: Some(repo.into()),
            branch: Some(branch.into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `evaluate` without time or key, as most rules need neither.
fn evaluate(stacks: &[Stack], d: &Delivery) -> Result<Outcome, PluginError> {
    super::evaluate(stacks, d, &Context::default())
}

fn post_receive(repo: &str, lines: &[(&str, &str, &str)], query: &str) -> Delivery {
    Delivery::PostReceive {
        repository: repo.into(),
        updates: lines
            .iter()
            .map(|(o, n, r)| RefUpdate {
                old: o.to_string(),
                new: n.to_string(),
                name: r.to_string(),
            })
            .collect(),
        pusher: Some("alice".into()),
        query: query.into(),
    }
}

fn decision(stacks: &[Stack], d: &Delivery) -> Decision {
    evaluate(stacks, d)
        .unwrap()
        .decisions
        .into_iter()
        .next()
        .unwrap()
}

#[test]
fn push_to_the_branch_deploys_with_ref_and_sha() {
    let d = decision(
        &[stack("web", "acme/web", "main")],
        &post_receive("acme/web", &[(SHA1_A, SHA1_B, "refs/heads/main")], ""),
    );
    let e = d.deploy().cloned().expect("deploys");
    assert_eq!(e.git_ref.as_deref(), Some("refs/heads/main"));
    assert_eq!(e.branch.as_deref(), Some("main"));
    assert_eq!(e.sha.as_deref(), Some(SHA1_B));
    assert_eq!(e.services, vec!["web"]);
    assert_eq!(e.provider.as_str(), "post-receive");
}

#[test]
fn other_branches_skip_and_say_why() {
    let d = decision(
        &[stack("web", "acme/web", "main")],
        &post_receive("acme/web", &[(SHA1_A, SHA1_B, "refs/heads/feature/x")], ""),
    );
    assert!(d.deploy().is_none());
    assert_eq!(
        d.reason,
        "push to \"feature/x\" does not match branch \"main\""
    );
}

#[test]
fn a_ref_git_would_never_make_matches_no_pattern() {
    // A forge's JSON may hold any ref (git's own post-receive lines are
    // refused whole for a space or a control character, as malformed).
    let ref_push = |git_ref: &str| {
        serde_json::json!({
            "ref": git_ref, "before": SHA1_A, "after": SHA1_B, "forced": false,
            "created": false, "deleted": false, "commits": [],
            "repository": {"full_name": "acme/web"}, "pusher": {"name": "alice"},
        })
        .to_string()
    };
    let release = stack("web", "acme/web", "release/*");
    let tags = Stack {
        services: vec![Service {
            tags: Some("v*".into()),
            branch: None,
            ..release.services[0].clone()
        }],
        ..release.clone()
    };
    for (s, git_ref) in [
        (&release, "refs/heads/release/.."),
        (&release, "refs/heads/release/"),
        (&release, "refs/heads/release//x"),
        (&release, "refs/heads/release/a b"),
        (&release, "refs/heads/release/.hidden"),
        (&release, "refs/heads/release/x.lock"),
        (&release, "refs/heads/release/x."),
        (&release, "refs/heads/release/\u{1}"),
        (&release, "refs/heads/release/x\\..\\main"),
        (&release, "refs/heads/release/a~1"),
        (&release, "refs/heads/release/a^"),
        (&release, "refs/heads/release/a:b"),
        (&release, "refs/heads/release/a?"),
        (&release, "refs/heads/release/a[b"),
        (&release, "refs/heads/release/a@{1}"),
        (&release, "refs/heads/release/a\u{7f}"),
        (&tags, "refs/tags/v1 "),
        (&tags, "refs/tags/v*"),
    ] {
        let d = decision(std::slice::from_ref(s), &github_push(&ref_push(git_ref)));
        assert_eq!(
            d.skip(),
            Some(SkipCode::NotABranchOrTag),
            "{git_ref:?}: {}",
            d.reason
        );
        assert!(d.reason.contains("not a name git allows"), "{}", d.reason);
    }
    // Names git allows still deploy, non-ASCII ones too.
    for (s, git_ref) in [
        (&release, "refs/heads/release/1.2"),
        (&release, "refs/heads/release/y-z_w.2"),
        (&release, "refs/heads/release/été"),
        (&release, "refs/heads/release/a@b"),
        (&tags, "refs/tags/v1.0.0-rc.1"),
    ] {
        let d = decision(std::slice::from_ref(s), &github_push(&ref_push(git_ref)));
        assert!(d.deploy().is_some(), "{git_ref:?}: {}", d.reason);
    }
}

#[test]
fn repository_matching_is_case_insensitive_and_exact_otherwise() {
    let s = [stack("web", "Acme/Web", "main")];
    assert!(decision(
        &s,
        &post_receive("acme/web", &[(SHA1_A, SHA1_B, "refs/heads/main")], "")
    )
    .deploy()
    .is_some());
    let d = decision(
        &s,
        &post_receive("acme/web2", &[(SHA1_A, SHA1_B, "refs/heads/main")], ""),
    );
    assert!(d.deploy().is_none());
    assert!(
        d.reason.contains("does not match repository"),
        "{}",
        d.reason
    );
}

#[test]
fn globs_match_release_branches_but_not_deeper() {
    let s = [stack("web", "acme/web", "release/*")];
    assert!(decision(
        &s,
        &post_receive(
            "acme/web",
            &[(SHA1_A, SHA1_B, "refs/heads/release/1.2")],
            ""
        )
    )
    .deploy()
    .is_some());
    assert!(decision(
        &s,
        &post_receive(
            "acme/web",
            &[(SHA1_A, SHA1_B, "refs/heads/release/1.2/hotfix")],
            ""
        )
    )
    .deploy()
    .is_none());
    assert!(decision(
        &s,
        &post_receive("acme/web", &[(SHA1_A, SHA1_B, "refs/heads/release")], "")
    )
    .deploy()
    .is_none());
}

#[test]
fn an_invalid_glob_is_an_invalid_stack_error() {
    let err = evaluate(
        &[stack("web", "acme/web", "release/[")],
        &post_receive("acme/web", &[(SHA1_A, SHA1_B, "refs/heads/main")], ""),
    )
    .unwrap_err();
    assert!(
        matches!(err, PluginError::InvalidStack(ref m) if m.contains("\"release/[\" is not a valid glob")),
        "{err}"
    );
}

#[test]
fn deletions_never_deploy_sha1_or_sha256() {
    let s = [stack("web", "acme/web", "main")];
    let d = decision(
        &s,
        &post_receive("acme/web", &[(SHA1_A, ZERO1, "refs/heads/main")], ""),
    );
    assert!(d.deploy().is_none());
    assert_eq!(
        d.reason,
        "branch \"main\" was deleted; deletions never deploy"
    );
    let d = decision(
        &s,
        &post_receive("acme/web", &[(SHA256_A, ZERO256, "refs/heads/main")], ""),
    );
    assert!(d.deploy().is_none());
}

#[test]
fn sha256_branch_creation_deploys() {
    let o = evaluate(
        &[stack("web", "acme/web", "main")],
        &post_receive("acme/web", &[(ZERO256, SHA256_A, "refs/heads/main")], ""),
    )
    .unwrap();
    assert!(o.pushes[0].created);
    assert_eq!(o.pushes[0].before, None);
    assert_eq!(
        o.decisions[0].deploy().cloned().unwrap().sha.as_deref(),
        Some(SHA256_A)
    );
}

#[test]
fn mixed_length_or_bad_ids_are_malformed() {
    for (o, n) in [(SHA1_A, SHA256_A), ("xyz", SHA1_B), (SHA1_A, "")] {
        let err = evaluate(
            &[stack("web", "acme/web", "main")],
            &post_receive("acme/web", &[(o, n, "refs/heads/main")], ""),
        )
        .unwrap_err();
        assert!(matches!(err, PluginError::MalformedPayload(_)), "{err}");
    }
}

#[test]
fn tags_deploy_only_with_a_tag_pattern() {
    let d = decision(
        &[stack("web", "acme/web", "main")],
        &post_receive("acme/web", &[(ZERO1, SHA1_B, "refs/tags/v1.0")], ""),
    );
    assert!(d.deploy().is_none());
    assert!(d.reason.contains("deploys no tags"), "{}", d.reason);
    let mut s = stack("web", "acme/web", "main");
    s.services[0].tags = Some("v*".into());
    let d = decision(
        &[s.clone()],
        &post_receive("acme/web", &[(ZERO1, SHA1_B, "refs/tags/v1.0")], ""),
    );
    assert_eq!(d.deploy().cloned().unwrap().tag.as_deref(), Some("v1.0"));
    let d = decision(
        &[s],
        &post_receive("acme/web", &[(ZERO1, SHA1_B, "refs/tags/nightly")], ""),
    );
    assert_eq!(d.reason, "tag \"nightly\" does not match tags \"v*\"");
}

#[test]
fn three_refs_in_one_push_pick_the_matching_one() {
    let o = evaluate(
        &[
            stack("web", "acme/web", "main"),
            stack("docs", "acme/web", "gh-pages"),
        ],
        &post_receive(
            "acme/web",
            &[
                (SHA1_A, SHA1_B, "refs/heads/feature"),
                (SHA1_A, ZERO1, "refs/heads/gh-pages"),
                (SHA1_B, SHA1_A, "refs/heads/main"),
            ],
            "",
        ),
    )
    .unwrap();
    assert_eq!(o.pushes.len(), 3);
    assert_eq!(
        o.decisions[0].deploy().cloned().unwrap().sha.as_deref(),
        Some(SHA1_A)
    );
    assert!(o.decisions[1].deploy().is_none());
    // The first ref's reason, and how many more the push updated.
    assert_eq!(
        o.decisions[1].reason,
        "push to \"feature\" does not match branch \"gh-pages\" (the push's 2 other refs deploy nothing either)"
    );
}

/// Stack `shop`: service `web` on acme/shop's `main`, `worker` on its
/// `develop`, and `all` on every branch (`*`) when `with_all`.
fn two_branch_stack(with_all: bool) -> Stack {
    let service = |name: &str, branch: &str| Service {
        name: name.into(),
        repository: Some("acme/shop".into()),
        branch: Some(branch.into()),
        ..Default::default()
    };
    let mut services = vec![service("web", "main"), service("worker", "develop")];
    if with_all {
        services.push(service("all", "*"));
    }
    Stack {
        name: "shop".into(),
        services,
        ..Default::default()
    }
}

/// A decision as [`deploys_of`] shows it: (stack, ref, sha, services), or
/// (stack, none, none, [reason]) for a skip.
type Shown = (String, Option<String>, Option<String>, Vec<String>);

/// Each decision of `o`, shown.
fn deploys_of(o: &Outcome) -> Vec<Shown> {
    o.decisions
        .iter()
        .map(|d| match d.deploy() {
            Some(e) => (
                d.stack.clone(),
                e.git_ref.clone(),
                e.sha.clone(),
                e.services.clone(),
            ),
            None => (d.stack.clone(), None, None, vec![d.reason.clone()]),
        })
        .collect()
}

#[test]
fn a_push_moving_refs_followed_by_different_services_deploys_each_ref() {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // `git push origin main develop feature`: web follows main, worker
    // develop, none feature; `other` follows neither and skips once.
    let push = post_receive(
        "acme/shop",
        &[
            (SHA1_A, SHA1_B, "refs/heads/main"),
            (ZERO1, SHA1_A, "refs/heads/develop"),
            (SHA1_A, SHA1_B, "refs/heads/feature"),
        ],
        "",
    );
    let o = evaluate(
        &[
            two_branch_stack(false),
            stack("other", "acme/shop", "release"),
        ],
        &push,
    )
    .unwrap();
    assert_eq!(
        deploys_of(&o),
        [
            ("shop".into(), Some("refs/heads/main".into()), Some(SHA1_B.into()), strings(&["web"])),
            ("shop".into(), Some("refs/heads/develop".into()), Some(SHA1_A.into()), strings(&["worker"])),
            ("other".into(), None, None, strings(&["push to \"main\" does not match branch \"release\" (the push's 2 other refs deploy nothing either)"])),
        ]
    );
    // A service following several of the refs deploys once, at the last
    // it follows; each ref some service takes deploys those services.
    let o = evaluate(&[two_branch_stack(true)], &push).unwrap();
    let lane = |git_ref: &str, sha: &str, services: &[&str]| {
        (
            "shop".to_string(),
            Some(git_ref.to_string()),
            Some(sha.to_string()),
            strings(services),
        )
    };
    assert_eq!(
        deploys_of(&o),
        [
            lane("refs/heads/main", SHA1_B, &["web"]),
            lane("refs/heads/develop", SHA1_A, &["worker"]),
            lane("refs/heads/feature", SHA1_B, &["all"]),
        ]
    );
    // So `git push --tags` deploys a stack following tags once, at the
    // last tag: never more often than it has services.
    let mut tags = stack("rel", "acme/shop", "main");
    tags.services[0].tags = Some("v*".into());
    let o = evaluate(
        &[tags],
        &post_receive(
            "acme/shop",
            &[
                (ZERO1, SHA1_A, "refs/tags/v1"),
                (ZERO1, SHA1_B, "refs/tags/v2"),
                (SHA1_A, SHA1_B, "refs/heads/main"),
                (ZERO1, SHA1_A, "refs/tags/v3"),
            ],
            "",
        ),
    )
    .unwrap();
    assert_eq!(
        deploys_of(&o),
        [(
            "rel".to_string(),
            Some("refs/tags/v3".to_string()),
            Some(SHA1_A.to_string()),
            strings(&["rel"])
        )]
    );
    // A ref listed twice counts once, at its last update (and in its place).
    let twice = post_receive(
        "acme/shop",
        &[
            (SHA1_A, SHA1_B, "refs/heads/main"),
            (ZERO1, SHA1_A, "refs/heads/develop"),
            (SHA1_B, SHA1_A, "refs/heads/main"),
        ],
        "",
    );
    let o = evaluate(&[two_branch_stack(false)], &twice).unwrap();
    assert_eq!(
        deploys_of(&o),
        [
            (
                "shop".into(),
                Some("refs/heads/develop".into()),
                Some(SHA1_A.into()),
                strings(&["worker"])
            ),
            (
                "shop".into(),
                Some("refs/heads/main".into()),
                Some(SHA1_A.into()),
                strings(&["web"])
            ),
        ]
    );
    // A ref the stack follows that is deleted deploys nothing, beside one
    // that deploys.
    let deleted = post_receive(
        "acme/shop",
        &[
            (SHA1_A, ZERO1, "refs/heads/develop"),
            (SHA1_A, SHA1_B, "refs/heads/main"),
        ],
        "",
    );
    let o = evaluate(&[two_branch_stack(false)], &deleted).unwrap();
    assert_eq!(
        deploys_of(&o),
        [(
            "shop".into(),
            Some("refs/heads/main".into()),
            Some(SHA1_B.into()),
            strings(&["web"])
        )]
    );
    // A ref updated and then deleted in one delivery is deleted: it
    // deploys nothing, and a service on every branch takes the last ref
    // that still stands.
    let gone = post_receive(
        "acme/shop",
        &[
            (ZERO1, SHA1_A, "refs/heads/develop"),
            (SHA1_A, SHA1_B, "refs/heads/main"),
            (SHA1_B, ZERO1, "refs/heads/main"),
        ],
        "",
    );
    let o = evaluate(&[two_branch_stack(true)], &gone).unwrap();
    assert_eq!(
        deploys_of(&o),
        [(
            "shop".into(),
            Some("refs/heads/develop".into()),
            Some(SHA1_A.into()),
            strings(&["worker", "all"])
        )]
    );
}

#[test]
fn a_skip_marker_skips_only_the_ref_whose_commits_carry_it() {
    // Bitbucket Cloud's push as go-scm recorded it (brydzewski/foo's
    // `master`), with a second change added: the same `changes` entry for
    // `develop`, whose commits' messages carry the stack's skip marker.
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/bitbucket-cloud/goscm-push.json"
    ))
    .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let repo = v["repository"]["full_name"].as_str().unwrap().to_string();
    let first = v["push"]["changes"][0].clone();
    let branch = first["new"]["name"].as_str().unwrap().to_string();
    let mut second = first.clone();
    second["new"]["name"] = "develop".into();
    for commit in second["commits"].as_array_mut().unwrap() {
        commit["message"] = "docs only [skip deploy]".into();
    }
    second["new"]["target"]["message"] = "docs only [skip deploy]".into();
    v["push"]["changes"].as_array_mut().unwrap().push(second);
    let headers = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/bitbucket-cloud/goscm-push.headers"
    ))
    .unwrap();
    let delivery = Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new(headers.lines().filter_map(|l| l.split_once(": "))),
        body: v.to_string().into_bytes(),
    });
    let mut shop = two_branch_stack(false);
    for s in &mut shop.services {
        s.repository = Some(repo.clone());
    }
    shop.services[0].branch = Some(branch.clone());
    shop.skip_markers = vec!["[skip deploy]".into()];
    let o = evaluate(&[shop], &delivery).unwrap();
    assert_eq!(o.pushes.len(), 2);
    assert_eq!(o.decisions.len(), 2, "{:?}", o.decisions);
    let web = o.decisions[0]
        .deploy()
        .expect("the fixture's own branch deploys");
    assert_eq!(web.services, ["web"]);
    assert_eq!(web.branch.as_deref(), Some(branch.as_str()));
    assert_eq!(web.sha, o.pushes[0].after);
    assert_eq!(o.decisions[1].action, Action::Skip(SkipCode::SkipMarker));
    assert_eq!(o.decisions[1].services, ["worker"]);
}

#[test]
fn a_delivery_id_holding_whitespace_or_a_control_character_is_not_taken_as_one() {
    // go-scm's GitHub push (refs/heads/master of Codertocat/Hello-World),
    // its unsigned delivery header set by hand.
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/github/goscm-push.json"
    ))
    .unwrap();
    let with_id = |id: &str| {
        let d = Delivery::Http(HttpRequest {
            method: "POST".into(),
            query: String::new(),
            headers: Headers::new([("X-GitHub-Event", "push"), ("X-GitHub-Delivery", id)]),
            body: body.clone(),
        });
        let o = evaluate(&[stack("web", "Codertocat/Hello-World", "master")], &d).unwrap();
        let deployed = o.decisions[0]
            .deploy()
            .expect("master deploys")
            .delivery
            .clone();
        assert_eq!(deployed, o.delivery, "the deploy names the outcome's id");
        o.delivery
    };
    assert_eq!(
        with_id("72d3162e-cc78-11e3-81ab-4c9367dc0958").as_deref(),
        Some("72d3162e-cc78-11e3-81ab-4c9367dc0958")
    );
    let longest = "d".repeat(MAX_DELIVERY_ID_BYTES);
    assert_eq!(with_id(&longest), Some(longest.clone()));
    let too_long = format!("{longest}d");
    for odd in [
        "zz refs/heads/q1",
        "a\tb",
        "a\u{7f}b",
        "a\u{a0}b",
        " ",
        "github-deployment-7",
        &too_long,
    ] {
        assert_eq!(with_id(odd), None, "{odd:?}");
    }
}

fn multi_service_stack() -> Stack {
    Stack {
        name: "shop".into(),
        services: vec![
            Service {
                name: "web".into(),
                repository: Some("acme/web".into()),
                branch: Some("main".into()),
                ..Default::default()
            },
            Service {
                name: "worker".into(),
                repository: Some("acme/worker".into()),
                branch: Some("main".into()),
                ..Default::default()
            },
            Service {
                name: "proxy".into(),
                image: Some("nginx".into()),
                ..Default::default()
            },
        ],
        profiles: vec!["fast".into()],
        ..Default::default()
    }
}

#[test]
fn a_push_deploys_only_the_services_of_that_repository() {
    let d = decision(
        &[multi_service_stack()],
        &post_receive("acme/worker", &[(SHA1_A, SHA1_B, "refs/heads/main")], ""),
    );
    assert_eq!(d.deploy().cloned().unwrap().services, vec!["worker"]);
}

#[test]
fn a_registry_push_deploys_only_the_image_services() {
    let body = br#"{"callback_url":"https://registry.hub.docker.com/u/library/nginx/hook/x/","push_data":{"tag":"latest","pusher":"p"},"repository":{"repo_name":"library/nginx"}}"#;
    let d = decision(
        &[multi_service_stack()],
        &Delivery::Http(HttpRequest {
            method: "POST".into(),
            query: String::new(),
            headers: Headers::default(),
            body: body.to_vec(),
        }),
    );
    let e = d.deploy().cloned().expect("deploys");
    assert_eq!(e.services, vec!["proxy"]);
    assert_eq!(
        e.callback_url.as_deref(),
        Some("https://registry.hub.docker.com/u/library/nginx/hook/x/")
    );
}

#[test]
fn a_manual_trigger_deploys_every_service_and_modifiers_restrict() {
    let manual = |q: &str| Delivery::Manual {
        stack: "shop".into(),
        query: q.into(),
    };
    assert_eq!(
        decision(&[multi_service_stack()], &manual(""))
            .deploy()
            .cloned()
            .unwrap()
            .services,
        vec!["web", "worker", "proxy"]
    );
    let e = decision(
        &[multi_service_stack()],
        &manual("services=proxy,web&deployment_profile=fast"),
    )
    .deploy()
    .cloned()
    .unwrap();
    assert_eq!(e.services, vec!["web", "proxy"]);
    assert_eq!(e.profile.as_deref(), Some("fast"));
}

#[test]
fn services_modifier_also_restricts_a_push() {
    let d = decision(
        &[multi_service_stack()],
        &post_receive(
            "acme/web",
            &[(SHA1_A, SHA1_B, "refs/heads/main")],
            "services=worker",
        ),
    );
    assert!(d.deploy().is_none());
}

#[test]
fn unknown_service_or_profile_is_an_error_naming_it() {
    // The message a manual trigger of `stack` with `query` is refused with.
    let refused = |stack: Stack, query: &str| match evaluate(
        &[stack],
        &Delivery::Manual {
            stack: "shop".into(),
            query: query.into(),
        },
    ) {
        Err(PluginError::BadRequest(message)) => message,
        other => panic!("{query}: expected a bad request, got {other:?}"),
    };
    assert_eq!(
        refused(multi_service_stack(), "services=db"),
        "stack \"shop\" has no service \"db\" (services: web, worker, proxy)"
    );
    assert_eq!(
        refused(multi_service_stack(), "deployment_profile=slow"),
        "stack \"shop\" has no deploy profile \"slow\" (profiles: fast)"
    );
    // Profiles the query may not choose are not offered as choices.
    let mut guarded = multi_service_stack();
    guarded.unselectable_profiles = vec!["fast".into()];
    assert_eq!(
        refused(guarded, "deployment_profile=slow"),
        "stack \"shop\" has no deploy profile \"slow\" (it has none that deployment_profile= may choose)"
    );
    assert!(parse_modifiers("services=").is_err());
    // Either key misspelled is refused, never ignored (which would deploy
    // every service); other keys are.
    for key in [
        "Services",
        "service",
        "SERVICES",
        "deployment-profile",
        "profile",
        "Deployment_Profile",
        "services[]",
        "services[0]",
        "deployment_profile[]",
        "services;",
        "services.",
    ] {
        let refused = parse_modifiers(&format!("{key}=web")).unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!("bad request: query key \"{key}\" is not one redeploy reads: it reads services= and deployment_profile= (lower case, with an underscore)"),
        );
    }
    // A NUL or a zero-width space, percent-encoded, around the name; an
    // `=` or `&` percent-encoded after it (the key is then `services=web`).
    for key in [
        "services%00",
        "services%E2%80%8B",
        "%E2%80%8Bdeployment_profile",
        "services%3Dweb",
        "services%26web",
        "deployment_profile%3Dfast",
        "%3Bservices",
        "amp;services",
        "services+web",
        "services%EF%BC%9Dweb",
        "ser%E2%80%8Bvices",
    ] {
        let refused = parse_modifiers(&format!("{key}=web")).unwrap_err();
        assert!(
            refused.to_string().contains("is not one redeploy reads"),
            "{key}: {refused}"
        );
    }
    for query in ["services%3Dweb", "deployment_profile%3Dfast", "services%3D"] {
        let refused = parse_modifiers(query).unwrap_err();
        assert!(
            refused.to_string().contains("is not one redeploy reads"),
            "{query}: {refused}"
        );
    }
    // Keys a sender or proxy appends that only contain such a word in a
    // longer one stay other keys.
    for query in [
        "utm_source=x",
        "profile_id=7",
        "Service-Name=x",
        "servicesx=1",
    ] {
        assert!(parse_modifiers(query).is_ok(), "{query}");
    }
    assert_eq!(
        parse_modifiers("cachebust=123&services=web")
            .unwrap()
            .services,
        Some(vec!["web".to_owned()])
    );
}

fn github_push(body: &str) -> Delivery {
    Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([
            ("X-GitHub-Event", "push"),
            ("Content-Type", "application/json"),
        ]),
        body: body.as_bytes().to_vec(),
    })
}

fn push_body(messages: &[&str], files: &[&str]) -> String {
    let commits: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| serde_json::json!({"id": SHA1_B, "message": m, "added": files, "removed": [], "modified": []}))
        .collect();
    serde_json::json!({
        "ref": "refs/heads/main", "before": SHA1_A, "after": SHA1_B, "created": false, "deleted": false, "forced": false,
        "repository": {"full_name": "acme/web", "clone_url": "https://github.com/acme/web.git"},
        "pusher": {"name": "alice"}, "commits": commits, "head_commit": commits.last(),
    })
    .to_string()
}

#[test]
fn skip_markers_skip_only_when_every_commit_has_one() {
    let mut s = stack("web", "acme/web", "main");
    s.skip_markers = vec!["[skip deploy]".into()];
    let d = decision(
        &[s.clone()],
        &github_push(&push_body(&["a [skip deploy]", "b [skip deploy]"], &["x"])),
    );
    assert!(d.deploy().is_none());
    assert!(d.reason.contains("skip marker"), "{}", d.reason);
    let d = decision(
        &[s],
        &github_push(&push_body(&["a [skip deploy]", "b"], &["x"])),
    );
    assert!(d.deploy().is_some());
}

#[test]
fn path_filters_apply_only_to_complete_file_lists() {
    let mut s = stack("web", "acme/web", "main");
    s.paths = vec!["src/**".into()];
    let d = decision(
        &[s.clone()],
        &github_push(&push_body(&["a"], &["docs/readme.md"])),
    );
    assert!(d.deploy().is_none());
    assert_eq!(
        d.reason,
        "push to \"main\": no changed file matches paths \"src/**\""
    );
    assert!(decision(
        &[s.clone()],
        &github_push(&push_body(&["a"], &["src/main.rs"]))
    )
    .deploy()
    .is_some());
    // Post-receive pushes carry no file list: they deploy.
    assert!(decision(
        &[s],
        &post_receive("acme/web", &[(SHA1_A, SHA1_B, "refs/heads/main")], "")
    )
    .deploy()
    .is_some());
}

fn ping(repo: &str) -> Delivery {
    let body = serde_json::json!({"zen": "z", "hook_id": 1, "repository": {"full_name": repo}})
        .to_string();
    Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([("X-GitHub-Event", "ping")]),
        body: body.into_bytes(),
    })
}

#[test]
fn ping_deploys_the_branch_by_default_or_is_acknowledged() {
    let s = stack("web", "acme/web", "main");
    let e = decision(std::slice::from_ref(&s), &ping("acme/web"))
        .deploy()
        .cloned()
        .expect("ping deploys");
    assert_eq!(e.git_ref.as_deref(), Some("refs/heads/main"));
    let mut ack = s;
    ack.ping = PingAction::Acknowledge;
    let d = decision(&[ack], &ping("acme/web"));
    assert!(d.deploy().is_none());
    assert!(d.reason.starts_with("ping acknowledged"), "{}", d.reason);
}

#[test]
fn a_ping_deploys_only_a_stack_that_takes_manual_triggers_from_its_url_alone() {
    let s = stack("web", "bradrydzewski/drone-test-go", "master");
    // Any signed body sent again as a `ping` (the event header is not
    // signed): here a real GitHub `pull_request` delivery's body, of the
    // stack's repository.
    let relabelled = Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([("X-GitHub-Event", "ping")]),
        body: crate::providers::test_support::fixture("github/goscm-pr_opened.json"),
    });
    for policy in [ManualPolicy::Refuse, ManualPolicy::Signed] {
        let mut guarded = s.clone();
        guarded.manual = policy;
        for delivery in [ping("bradrydzewski/drone-test-go"), relabelled.clone()] {
            let d = decision(std::slice::from_ref(&guarded), &delivery);
            assert!(d.deploy().is_none(), "{policy:?}: {}", d.reason);
            assert_eq!(d.skip(), Some(SkipCode::PingAcknowledged), "{}", d.reason);
            assert!(d.reason.contains("manual = \""), "{}", d.reason);
        }
    }
    // Where the URL alone may trigger a deploy, a ping still does.
    assert!(decision(std::slice::from_ref(&s), &relabelled)
        .deploy()
        .is_some());
}

#[test]
fn github_cd_stacks_get_a_deployment_request() {
    let mut s = with_github_cd(stack("web", "acme/web", "main"));
    let push = github_push(&push_body(&["a"], &["x"]));
    // Waiting for GitHub's `deployment` event, the push only asks for the
    // deployment: the component says so, not the host.
    let waiting = decision(std::slice::from_ref(&s), &push);
    let Action::RequestDeployment(e) = &waiting.action else {
        panic!("expected a deployment request, got {:?}", waiting.action);
    };
    let body: serde_json::Value =
        serde_json::from_str(e.github_deployment_request.as_deref().unwrap()).unwrap();
    assert_eq!(body["ref"], SHA1_B);
    assert_eq!(body["environment"], "production");
    assert_eq!(body["payload"]["stack"], "web");
    // Not waiting, the push deploys now and carries the same request, to
    // report the deploy's statuses to.
    if let Some(gh) = s.github.as_mut() {
        gh.wait_for_event = false;
    }
    let now = decision(&[s], &push);
    let Action::Deploy(e) = &now.action else {
        panic!("expected a deploy, got {:?}", now.action);
    };
    assert!(e.github_deployment_request.is_some());
    assert_eq!(
        waiting.deploy().map(|e| &e.sha),
        now.deploy().map(|e| &e.sha)
    );
}

#[test]
fn every_skip_says_why_in_a_code_beside_the_sentence() {
    let s = stack("web", "acme/web", "main");
    let body = push_body(&["a"], &["x"]);
    let cases = [
        (
            "refs/heads/main",
            "refs/heads/feature",
            SkipCode::BranchMismatch,
        ),
        ("refs/heads/main", "refs/tags/v1", SkipCode::TagMismatch),
        ("refs/heads/main", "refs/notes/x", SkipCode::NotABranchOrTag),
        ("acme/web", "acme/api", SkipCode::OtherRepository),
        (
            "\"deleted\":false",
            "\"deleted\":true",
            SkipCode::RefDeleted,
        ),
    ];
    for (from, to, code) in cases {
        assert!(body.contains(from), "{from}");
        let d = decision(
            std::slice::from_ref(&s),
            &github_push(&body.replace(from, to)),
        );
        assert_eq!(d.skip(), Some(code), "{to}: {}", d.reason);
        assert!(d.deploy().is_none());
    }
    let mut ack = s.clone();
    ack.ping = PingAction::Acknowledge;
    let d = decision(&[ack], &ping("acme/web"));
    assert_eq!(d.skip(), Some(SkipCode::PingAcknowledged));
    let d = decision(std::slice::from_ref(&s), &ping("acme/other"));
    assert_eq!(d.skip(), Some(SkipCode::OtherRepository));
}

#[test]
fn non_post_methods_are_rejected() {
    let d = Delivery::Http(HttpRequest {
        method: "GET".into(),
        query: String::new(),
        headers: Headers::default(),
        body: vec![],
    });
    assert!(matches!(
        evaluate(&[stack("web", "acme/web", "main")], &d),
        Err(PluginError::UnsupportedMethod(_))
    ));
}

#[test]
fn an_empty_post_is_a_manual_trigger_of_every_service() {
    let d = Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::default(),
        body: vec![],
    });
    let o = evaluate(&[multi_service_stack()], &d).unwrap();
    assert_eq!(o.provider, Provider::Manual);
    assert_eq!(
        o.decisions[0].deploy().cloned().unwrap().services,
        vec!["web", "worker", "proxy"]
    );
}

#[test]
fn top_level_and_services_cannot_mix() {
    let top = Service {
        repository: Some("a/b".into()),
        branch: Some("main".into()),
        ..Default::default()
    };
    assert!(stack_services(
        "x",
        top.clone(),
        vec![Service {
            name: "s".into(),
            ..Default::default()
        }]
    )
    .is_err());
    assert_eq!(stack_services("x", top, vec![]).unwrap()[0].name, "x");
}

#[test]
fn curl_empty_form_post_is_a_manual_trigger() {
    // `curl -X POST -d "" URL` sends Content-Type application/x-www-form-urlencoded.
    let d = Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Content-Length", "0"),
        ]),
        body: vec![],
    });
    let o = evaluate(&[multi_service_stack()], &d).unwrap();
    assert_eq!(o.provider, Provider::Manual);
    assert!(o.decisions[0].deploy().is_some());
}

fn github_form_push(secret_signature: &str, body: &str) -> Delivery {
    Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([
            ("X-GitHub-Event", "push"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Hub-Signature-256", secret_signature),
        ]),
        body: body.as_bytes().to_vec(),
    })
}

fn with_secret(mut s: Stack) -> Stack {
    s.secrets = vec!["s3cret".into()];
    s
}

#[test]
fn issue_12_signatures_are_checked_before_the_body_is_parsed() {
    let s = with_secret(stack("web", "acme/web", "main"));
    let zeros = format!("sha256={}", "0".repeat(64));
    // A form body without a payload field would be malformed: the signature comes first.
    for body in ["not a form at all", "{\"ref\": 1}", "payload=%7B"] {
        let err = evaluate(std::slice::from_ref(&s), &github_form_push(&zeros, body)).unwrap_err();
        assert!(matches!(err, PluginError::BadSignature(_)), "{body}: {err}");
    }
    // Without a provider header, a stack with secrets refuses an unsigned
    // body before reading it as a registry's.
    let d = Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([("Content-Type", "application/json")]),
        body: b"{not json".to_vec(),
    });
    let err = evaluate(std::slice::from_ref(&s), &d).unwrap_err();
    assert!(matches!(err, PluginError::MissingSignature(_)), "{err}");
    // Gitea signs the JSON inside a form's payload: still accepted.
    let json = r#"{"ref":"refs/heads/main","after":"2222222222222222222222222222222222222222","repository":{"full_name":"acme/web"}}"#;
    let sig = signature::hmac_sha256_hex(b"s3cret", json.as_bytes());
    let body = format!(
        "payload={}",
        form_urlencoded::byte_serialize(json.as_bytes()).collect::<String>()
    );
    let d = Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([
            ("X-Gitea-Event", "push"),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Gitea-Signature", sig.as_str()),
        ]),
        body: body.into_bytes(),
    });
    let o = evaluate(std::slice::from_ref(&s), &d).unwrap();
    assert_eq!(o.signature, SignatureScheme::GiteaSha256);
}

/// The host's MAC of the body is what the component checks a signature of
/// the body as sent against, when the host gives one: a wrong one given
/// for the right secret refuses a correctly signed push, and the right one
/// accepts it. Gitea's JSON body (not a form) is checked as sent; its
/// form's `payload` is not the body, so there the host's MAC is not used.
#[test]
fn the_hosts_body_mac_is_used_for_the_body_as_sent_and_only_for_it() {
    let s = with_secret(stack("web", "acme/web", "main"));
    let json = r#"{"ref":"refs/heads/main","after":"2222222222222222222222222222222222222222","repository":{"full_name":"acme/web"}}"#;
    let sig = signature::hmac_sha256_hex(b"s3cret", json.as_bytes());
    let right = hex::decode(&sig).unwrap();
    let given = |mac: Vec<u8>| Context {
        body_macs: vec![signature::BodyMac {
            algorithm: signature::MacAlgorithm::HmacSha256,
            secret: "s3cret".into(),
            mac,
        }],
        ..Default::default()
    };
    let gitea = |content_type: &str, body: String| {
        Delivery::Http(HttpRequest {
            method: "POST".into(),
            query: String::new(),
            headers: Headers::new([
                ("X-Gitea-Event", "push"),
                ("Content-Type", content_type),
                ("X-Gitea-Signature", sig.as_str()),
            ]),
            body: body.into_bytes(),
        })
    };
    let as_sent = gitea("application/json", json.to_owned());
    let stacks = std::slice::from_ref(&s);
    let err = super::evaluate(stacks, &as_sent, &given(vec![0; 32])).unwrap_err();
    assert!(matches!(err, PluginError::BadSignature(_)), "{err}");
    let o = super::evaluate(stacks, &as_sent, &given(right)).unwrap();
    assert_eq!(o.signature, SignatureScheme::GiteaSha256);
    // The same JSON inside a form: the body's MAC does not cover it, so a
    // wrong one given for the body changes nothing.
    let form = format!(
        "payload={}",
        form_urlencoded::byte_serialize(json.as_bytes()).collect::<String>()
    );
    let in_form = gitea("application/x-www-form-urlencoded", form);
    let o = super::evaluate(stacks, &in_form, &given(vec![0; 32])).unwrap();
    assert_eq!(o.signature, SignatureScheme::GiteaSha256);
}

fn empty_post(headers: &[(&str, &str)]) -> Delivery {
    Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new(headers.iter().copied()),
        body: vec![],
    })
}

#[test]
fn issue_12_manual_triggers_follow_the_stack_policy() {
    let curl = [("Content-Type", "application/x-www-form-urlencoded")];
    let s = with_secret(stack("web", "acme/web", "main"));
    let o = evaluate(std::slice::from_ref(&s), &empty_post(&curl)).unwrap();
    assert_eq!(o.provider, Provider::Manual);
    assert_eq!(
        o.decisions[0].deploy().cloned().unwrap().branch.as_deref(),
        Some("main")
    );
    assert!(evaluate(std::slice::from_ref(&s), &empty_post(&[])).is_ok());

    let mut refuse = s.clone();
    refuse.manual = ManualPolicy::Refuse;
    let err = evaluate(&[refuse], &empty_post(&curl)).unwrap_err();
    assert!(matches!(err, PluginError::Refused(_)), "{err}");

    let mut signed = s.clone();
    signed.manual = ManualPolicy::Signed;
    let now_ms = 1_700_000_000_000;
    let ctx = Context {
        now_ms: Some(now_ms),
        ..Context::default()
    };
    let run = |ts: &str, sig: &str, ctx: &Context| {
        super::evaluate(
            std::slice::from_ref(&signed),
            &empty_post(&[
                ("X-Redeploy-Timestamp", ts),
                ("X-Redeploy-Signature-256", sig),
            ]),
            ctx,
        )
    };
    let err = super::evaluate(std::slice::from_ref(&signed), &empty_post(&curl), &ctx).unwrap_err();
    assert!(matches!(err, PluginError::MissingSignature(_)), "{err}");
    let ts = "1700000000";
    let good = signature::sign_manual("s3cret", "web", ts);
    let o = run(ts, &good, &ctx).unwrap();
    assert_eq!(o.signature, SignatureScheme::RedeploySha256);
    assert!(o.decisions[0].deploy().is_some());
    // Another stack's signature, another secret, an old timestamp, no clock.
    for (ts, sig) in [
        (ts.to_string(), signature::sign_manual("s3cret", "api", ts)),
        (ts.to_string(), signature::sign_manual("other", "web", ts)),
        (
            "1699999000".to_string(),
            signature::sign_manual("s3cret", "web", "1699999000"),
        ),
    ] {
        let err = run(&ts, &sig, &ctx).unwrap_err();
        assert!(matches!(err, PluginError::BadSignature(_)), "{ts}: {err}");
    }
    assert!(run(ts, &good, &Context::default()).is_err());
}

#[test]
fn issue_12_unselectable_profiles_and_services_are_refused_from_the_query() {
    let manual = |query: &str| Delivery::Manual {
        stack: "shop".into(),
        query: query.into(),
    };
    let mut s = multi_service_stack();
    s.unselectable_profiles = vec!["fast".into()];
    s.unselectable_services = vec!["worker".into()];
    for query in [
        "deployment_profile=fast",
        "services=worker",
        "services=web,worker",
    ] {
        let err = evaluate(std::slice::from_ref(&s), &manual(query)).unwrap_err();
        assert!(
            matches!(err, PluginError::BadRequest(ref m) if m.contains("selectable = false")),
            "{query}: {err}"
        );
    }
    assert!(evaluate(std::slice::from_ref(&s), &manual("services=web")).is_ok());
    s.refuse_query_services = true;
    let err = evaluate(std::slice::from_ref(&s), &manual("services=web")).unwrap_err();
    assert!(
        matches!(err, PluginError::BadRequest(ref m) if m.contains("query_services = false")),
        "{err}"
    );
}

/// A Docker Hub push of `acme/web:latest` whose `push_data.pushed_at` is
/// `pushed_at`.
fn docker_hub_push(pushed_at: serde_json::Value) -> Delivery {
    Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([("Content-Type", "application/json")]),
        body: serde_json::json!({
            "callback_url": "https://registry.hub.docker.com/u/acme/web/hook/x/",
            "push_data": {"pushed_at": pushed_at, "pusher": "ci", "tag": "latest"},
            "repository": {"repo_name": "acme/web"},
        })
        .to_string()
        .into_bytes(),
    })
}

#[test]
fn issue_12_registry_events_older_than_the_window_are_refused() {
    let mut s = stack("web", "acme/web", "main");
    s.services[0].image = Some("acme/web".into());
    let push = |pushed_at: u64| docker_hub_push(serde_json::json!(pushed_at));
    let now_s = 1_700_000_000;
    let ctx = Context {
        now_ms: Some(now_s * 1000),
        ..Context::default()
    };
    let fresh = super::evaluate(std::slice::from_ref(&s), &push(now_s - 60), &ctx).unwrap();
    assert_eq!(fresh.sent_at_ms, Some((now_s - 60) * 1000));
    assert!(fresh.decisions[0].deploy().is_some());
    for pushed_at in [now_s - 11 * 60, now_s + 10 * 60] {
        let err = super::evaluate(std::slice::from_ref(&s), &push(pushed_at), &ctx).unwrap_err();
        assert!(
            matches!(err, PluginError::StaleEvent(_)),
            "{pushed_at}: {err}"
        );
    }
    // Without a clock (a dry run) the time is reported, not judged.
    let old = evaluate(std::slice::from_ref(&s), &push(1)).unwrap();
    assert_eq!(old.sent_at_ms, Some(1000));
}

#[test]
fn a_registry_event_time_that_is_not_unix_seconds_is_refused_not_read_as_none() {
    let mut s = stack("web", "acme/web", "main");
    s.services[0].image = Some("acme/web".into());
    let push = docker_hub_push;
    let now_s: u64 = 1_700_000_000;
    let ctx = Context {
        now_ms: Some(now_s * 1000),
        ..Context::default()
    };
    // Each would have taken a replayed event past the age check.
    let unreadable = [
        serde_json::json!(1e300),
        serde_json::json!(-5),
        serde_json::json!("1700000000"),
        serde_json::json!(now_s * 1000),
    ];
    for pushed_at in unreadable {
        let err =
            super::evaluate(std::slice::from_ref(&s), &push(pushed_at.clone()), &ctx).unwrap_err();
        assert_eq!(
            err,
            PluginError::MalformedPayload(
                "docker-hub push: push_data.pushed_at is not a Unix time in seconds".into()
            ),
            "{pushed_at}"
        );
    }
    // Absent, or `null`, is no time: nothing to judge.
    let none = super::evaluate(
        std::slice::from_ref(&s),
        &push(serde_json::Value::Null),
        &ctx,
    )
    .unwrap();
    assert_eq!(none.sent_at_ms, None);
    assert!(none.decisions[0].deploy().is_some());
}

#[test]
fn a_pushed_ref_name_git_takes_with_a_no_break_space_is_evaluated_and_ascii_whitespace_refused() {
    let stacks = [stack("web", "acme/web", "*")];
    let o = evaluate(
        &stacks,
        &post_receive(
            "acme/web",
            &[(SHA1_A, SHA1_B, "refs/heads/feat\u{a0}x")],
            "",
        ),
    )
    .unwrap();
    let deploy = o.decisions[0].deploy().cloned().unwrap();
    assert_eq!(deploy.branch.as_deref(), Some("feat\u{a0}x"));
    for name in [
        "refs/heads/feat x",
        "refs/heads/feat\tx",
        "refs/heads/feat\nx",
    ] {
        let err = evaluate(
            &stacks,
            &post_receive("acme/web", &[(SHA1_A, SHA1_B, name)], ""),
        )
        .unwrap_err();
        assert!(
            matches!(err, PluginError::MalformedPayload(ref m) if m.contains("bad ref name")),
            "{name:?}: {err}"
        );
    }
}
