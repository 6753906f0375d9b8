//! Unit tests of GitHub `deployment` events, through `evaluate`: those
//! redeploy created (their MAC) and those created elsewhere.

use super::*;

fn deployment_event(payload: serde_json::Value) -> Delivery {
    deployment_event_of("main", payload)
}

/// A `deployment` event of commit `SHA1_B` asked for as `git_ref`.
fn deployment_event_of(git_ref: &str, payload: serde_json::Value) -> Delivery {
    let body = serde_json::json!({
        "action": "created",
        "deployment": {
            "id": 42, "sha": SHA1_B, "ref": git_ref, "task": "deploy",
            "environment": "production", "payload": payload,
        },
        "repository": {"full_name": "acme/web", "name": "web", "owner": {"login": "acme"}},
    });
    Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([
            ("X-GitHub-Event", "deployment"),
            ("Content-Type", "application/json"),
        ]),
        body: body.to_string().into_bytes(),
    })
}

const DEPLOYMENT_KEY: &str = "server-deployment-key";

fn keyed() -> Context {
    Context {
        deployment_key: Some(DEPLOYMENT_KEY.into()),
        ..Context::default()
    }
}

/// A deployment payload as redeploy makes it, with its MAC for ref `main`
/// and environment `production`.
fn signed_payload(stack: &str, services: &[&str], profile: Option<&str>) -> serde_json::Value {
    signed_payload_of("main", stack, services, profile)
}

/// [`signed_payload`] for a deployment asked for as `git_ref`.
fn signed_payload_of(
    git_ref: &str,
    stack: &str,
    services: &[&str],
    profile: Option<&str>,
) -> serde_json::Value {
    let services: Vec<String> = services.iter().map(|s| s.to_string()).collect();
    let mac = github::deployment_mac(
        DEPLOYMENT_KEY,
        &github::MacInput {
            stack,
            git_ref,
            environment: "production",
            services: &services,
            profile,
        },
    );
    serde_json::json!({"stack": stack, "services": services, "profile": profile, "redeploy-mac": mac})
}

fn keyed_decision(stacks: &[Stack], d: &Delivery, ctx: &Context) -> Decision {
    crate::evaluate::evaluate(stacks, d, ctx)
        .unwrap()
        .decisions
        .into_iter()
        .next()
        .unwrap()
}

fn cd_stack() -> Stack {
    let mut s = multi_service_stack();
    s.services[1].repository = Some("acme/web".into());
    with_github_cd(s)
}

#[test]
fn a_deployment_event_restores_the_services_and_profile_of_its_push() {
    let s = cd_stack();
    let plain = keyed_decision(
        std::slice::from_ref(&s),
        &deployment_event(signed_payload("shop", &[], None)),
        &keyed(),
    )
    .deploy()
    .cloned()
    .unwrap();
    assert_eq!(plain.services, vec!["web", "worker"]);
    assert_eq!(plain.profile, None);
    assert_eq!(plain.github_deployment_id, Some(42));
    assert_eq!(plain.github_deployment_request, None);

    let chosen = keyed_decision(
        std::slice::from_ref(&s),
        &deployment_event(signed_payload("shop", &["worker"], Some("fast"))),
        &keyed(),
    )
    .deploy()
    .cloned()
    .unwrap();
    assert_eq!(chosen.services, vec!["worker"]);
    assert_eq!(chosen.profile.as_deref(), Some("fast"));

    // A profile the stack does not have any more is dropped.
    let unknown = keyed_decision(
        std::slice::from_ref(&s),
        &deployment_event(signed_payload("shop", &["worker"], Some("slow"))),
        &keyed(),
    )
    .deploy()
    .cloned()
    .unwrap();
    assert_eq!(unknown.services, vec!["worker"]);
    assert_eq!(unknown.profile, None);
    // Services it no longer has deploy nothing, never every service.
    let gone = keyed_decision(
        &[s],
        &deployment_event(signed_payload("shop", &["db"], None)),
        &keyed(),
    );
    assert_eq!(gone.action, Action::Skip(SkipCode::OtherStack));
    assert_eq!(
        gone.reason,
        "deployment 42 chooses services [\"db\"], none of which this stack deploys from it"
    );
}

#[test]
fn a_deployment_deploys_the_services_its_push_chose_whatever_repository_they_follow() {
    // worker follows acme/worker; continuous deployment makes deployments
    // in acme/web. A push of acme/worker asked for a deployment of its
    // commit there: its event deploys worker, never web instead.
    let s = with_github_cd(multi_service_stack());
    let services = |git_ref: &str, chosen: &[&str]| {
        let event = deployment_event_of(git_ref, signed_payload_of(git_ref, "shop", chosen, None));
        let d = keyed_decision(std::slice::from_ref(&s), &event, &keyed());
        d.deploy()
            .map(|e| e.services.clone())
            .unwrap_or_else(|| panic!("{}", d.reason))
    };
    assert_eq!(services(SHA1_B, &["worker"]), ["worker"]);
    // A deployment of a branch (a manual trigger's) is of acme/web's
    // commit: only its services, whatever the payload names.
    assert_eq!(services("main", &["web", "worker"]), ["web"]);
    // Without services in its payload, those of its repository.
    assert_eq!(services(SHA1_B, &[]), ["web"]);
}

#[test]
fn issue_12_a_deployment_redeploy_did_not_create_does_not_deploy() {
    let s = cd_stack();
    // No MAC at all: anyone with deployments: write could have sent it.
    let d = keyed_decision(
        std::slice::from_ref(&s),
        &deployment_event(serde_json::json!({"stack": "shop"})),
        &keyed(),
    );
    assert!(d.deploy().is_none());
    assert!(d.reason.contains("not created by redeploy"), "{}", d.reason);
    // A MAC made with another key, or copied onto a changed payload.
    let mut forged = signed_payload("shop", &[], None);
    forged["profile"] = serde_json::json!("fast");
    let d = keyed_decision(
        std::slice::from_ref(&s),
        &deployment_event(forged),
        &keyed(),
    );
    assert!(d.deploy().is_none(), "{}", d.reason);
    // A valid MAC but no key on this side: nothing verifies.
    let d = decision(
        std::slice::from_ref(&s),
        &deployment_event(signed_payload("shop", &[], None)),
    );
    assert!(d.deploy().is_none(), "{}", d.reason);
}

#[test]
fn issue_12_a_deployment_request_carries_a_mac_its_event_verifies() {
    let s = cd_stack();
    let o = crate::evaluate::evaluate(
        std::slice::from_ref(&s),
        &post_receive("acme/web", &[(SHA1_A, SHA1_B, "refs/heads/main")], ""),
        &keyed(),
    )
    .unwrap();
    let request = o.decisions[0]
        .deploy()
        .as_ref()
        .unwrap()
        .github_deployment_request
        .clone()
        .unwrap();
    let request: serde_json::Value = serde_json::from_str(&request).unwrap();
    assert!(request["payload"]["redeploy-mac"].is_string(), "{request}");
    // GitHub sends the deployment back with the ref and payload as requested.
    let body = serde_json::json!({
        "deployment": {
            "id": 7, "sha": SHA1_B, "ref": request["ref"], "task": request["task"],
            "environment": request["environment"], "payload": request["payload"],
        },
        "repository": {"full_name": "acme/web"},
    });
    let d = Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([("X-GitHub-Event", "deployment")]),
        body: body.to_string().into_bytes(),
    });
    let decided = keyed_decision(std::slice::from_ref(&s), &d, &keyed());
    let e = decided
        .deploy()
        .cloned()
        .expect("redeploy's own deployment deploys");
    assert_eq!(e.sha.as_deref(), Some(SHA1_B));
}

fn foreign_stack() -> Stack {
    let mut s = cd_stack();
    if let Some(gh) = s.github.as_mut() {
        gh.accept_foreign_deployments = true;
    }
    s.services[0].branch = Some("main".into());
    s.services[1].branch = Some("main".into());
    s
}

fn foreign_event(git_ref: &str, task: &str, payload: serde_json::Value) -> Delivery {
    let body = serde_json::json!({
        "deployment": {
            "id": 9, "sha": SHA1_B, "ref": git_ref, "task": task,
            "environment": "production", "payload": payload,
        },
        "repository": {"full_name": "acme/web"},
    });
    Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new([("X-GitHub-Event", "deployment")]),
        body: body.to_string().into_bytes(),
    })
}

#[test]
fn issue_12_foreign_deployments_deploy_only_a_followed_ref_when_accepted() {
    let s = foreign_stack();
    let ok = keyed_decision(
        std::slice::from_ref(&s),
        &foreign_event("main", "deploy", serde_json::json!({})),
        &keyed(),
    );
    assert_eq!(
        ok.deploy()
            .cloned()
            .expect("main is followed")
            .branch
            .as_deref(),
        Some("main")
    );
    let ok = keyed_decision(
        std::slice::from_ref(&s),
        &foreign_event("refs/heads/main", "deploy", serde_json::json!({})),
        &keyed(),
    );
    assert!(ok.deploy().is_some(), "{}", ok.reason);
    for (git_ref, task, payload, why) in [
        (
            "feature/x",
            "deploy",
            serde_json::json!({}),
            "does not match branch",
        ),
        (SHA1_B, "deploy", serde_json::json!({}), "bare commit"),
        (
            "main ",
            "deploy",
            serde_json::json!({}),
            "not a name git allows",
        ),
        (
            "refs/heads/ma..in",
            "deploy",
            serde_json::json!({}),
            "not a name git allows",
        ),
        (
            "refs/tags/v1\u{0}",
            "deploy",
            serde_json::json!({}),
            "not a name git allows",
        ),
        (
            "main",
            "deploy:migrations",
            serde_json::json!({}),
            "only \"deploy\" deploys",
        ),
        (
            "main",
            "deploy",
            serde_json::json!({"profile": "slow"}),
            "does not have",
        ),
    ] {
        let d = keyed_decision(
            std::slice::from_ref(&s),
            &foreign_event(git_ref, task, payload),
            &keyed(),
        );
        assert!(d.deploy().is_none(), "{git_ref} {task}");
        assert!(d.reason.contains(why), "{git_ref} {task}: {}", d.reason);
    }
    let mut fixed = s.clone();
    fixed.unselectable_profiles = vec!["fast".into()];
    let d = keyed_decision(
        &[fixed],
        &foreign_event("main", "deploy", serde_json::json!({"profile": "fast"})),
        &keyed(),
    );
    assert!(d.deploy().is_none());
    assert!(d.reason.contains("selectable = false"), "{}", d.reason);
}
