//! GitHub continuous deployment end to end: a real `redeploy serve`, the
//! local GitHub API stand-in (which checks every request against GitHub's
//! published schemas and sends the `deployment` event back, signed), and
//! the stand-in deploy program.

use redeploy_host::journal::{DeployState, RequestState};
use serde_json::{json, Value};

use crate::github_standin::{unreachable_base_url, Canned, GithubStandin};
use crate::support::cli::{stderr, stdout};
use crate::support::deliveries::{sha, signed_github, signed_push};
use crate::support::http::serve_once;
use crate::support::stacks::toml;
use crate::support::{fixture, free_port, hook, http, wait_for, ServerProcess, Stack, World};

const TOKEN: &str = "ghp_standin_token_0123456789";
const SECRET: &str = "s3cret-s3cret";
const DEPLOYMENTS: &str = "POST /repos/{owner}/{repo}/deployments";

/// A GitHub CD stack `label` with hook token `n`, reading its API token
/// from `@DIR@/gh-token`; its environment is `<label>-env`.
fn cd_stack(n: u32, label: &str, api_url: &str, extra_github: &str) -> Stack {
    let stack = Stack::repo(label, "acme/web", "main", n)
        .secret(SECRET)
        .timeout("1m");
    let stack = stack.key("environment_url", &format!("https://{label}.example.com"));
    stack.github(api_url, &format!("{label}-env"), extra_github)
}

/// POSTs a GitHub `event` delivery of `body` to stack 1 of `cd`, signed
/// with [`SECRET`].
fn deliver(cd: &Cd, event: &str, delivery: &str, body: &[u8]) -> http::Response {
    signed_github(&cd.server, &hook(1), SECRET, (event, delivery), body)
}

/// Delivers a `deployment` event of deployment `id` of `sha` to
/// `environment`, whose payload names stack "web" without redeploy's MAC.
fn deliver_deployment(
    cd: &Cd,
    delivery: &str,
    (id, sha, environment): (u64, &str, &str),
) -> http::Response {
    let event = deployment_event(id, sha, environment, json!({"stack": "web"}));
    deliver(cd, "deployment", delivery, &event)
}

/// A world with a GitHub API token and a public URL, and its server.
struct Cd {
    world: World,
    server: ServerProcess,
    public: String,
}

/// A world of `stacks` with its API token file and a `public_url`, and its
/// server listening there.
fn start(name: &str, stacks: &[Stack]) -> Cd {
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let world = World::new(name, &format!("public_url = \"{public}\""), &toml(stacks));
    world.write_gh_token(&format!("{TOKEN}\n"));
    let server = world.start_on(port, &[], &[]);
    Cd {
        world,
        server,
        public,
    }
}

fn statuses_of(standin: &GithubStandin, deployment: u64, n: usize) -> Vec<String> {
    wait_for(
        20,
        &format!("{n} statuses of deployment {deployment}"),
        || {
            let s = standin.statuses(deployment);
            (s.len() >= n).then_some(s)
        },
    )
}

/// The status bodies posted for `deployment`, in order.
fn status_bodies(standin: &GithubStandin, deployment: u64) -> Vec<Value> {
    standin
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST"
                && r.path
                    .ends_with(&format!("/deployments/{deployment}/statuses"))
        })
        .filter_map(|r| r.body)
        .collect()
}

/// A `deployment` event; `payload` is the deployment's payload (redeploy's
/// own, with its MAC, for a deployment redeploy requested).
fn deployment_event(id: u64, sha: &str, environment: &str, payload: Value) -> Vec<u8> {
    let mut event: Value =
        serde_json::from_slice(&fixture("github/octokit-deployment-default.json")).unwrap();
    event["deployment"]["id"] = json!(id);
    event["deployment"]["sha"] = json!(sha);
    event["deployment"]["ref"] = json!(sha);
    event["deployment"]["environment"] = json!(environment);
    event["deployment"]["payload"] = payload;
    event["repository"]["full_name"] = json!("acme/web");
    event.to_string().into_bytes()
}

/// What `redeploy history` prints for the world.
fn history(world: &World) -> String {
    stdout(&world.redeploy(&["history"]))
}

#[test]
fn a_push_creates_a_deployment_whose_event_deploys_and_reports_each_phase() {
    let standin = GithubStandin::start(TOKEN);
    let base = standin.base_url();
    let stacks = [
        cd_stack(1, "web", &base, ""),
        cd_stack(2, "broken", &base, "").env("EXIT_CODE", "3"),
        cd_stack(3, "slow", &base, "").env("SLEEP", "2"),
    ];
    let cd = start("github-cd-flow", &stacks);
    standin.forward_deployments_to(&format!("{}{}", cd.public, hook(1)), SECRET);

    // The push only asks GitHub for a deployment...
    let r = signed_push(&cd.server, &hook(1), SECRET, &sha(1), "push-1");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["decisions"][0]["state"], "deployment-requested");
    assert_eq!(r.json()["decisions"][0]["action"], "request-deployment");
    let deployment = wait_for(20, "the deployment request", || {
        standin
            .requests()
            .into_iter()
            .find(|q| q.operation == DEPLOYMENTS)
    });
    let body = deployment.body.unwrap();
    assert_eq!(body["ref"], sha(1));
    assert_eq!(body["task"], "deploy");
    assert_eq!(body["environment"], "web-env");
    assert_eq!(body["auto_merge"], false);
    assert_eq!(body["required_contexts"], json!([]));
    assert_eq!(body["payload"]["stack"], "web");
    assert_eq!(body["payload"]["delivery"], "push-1");

    // ...GitHub's deployment event runs it, and each phase is reported.
    let states = statuses_of(&standin, 1000, 3);
    assert_eq!(states, ["queued", "in_progress", "success"]);
    let deploys = cd.world.settle(20);
    assert_eq!(deploys.len(), 1, "one deploy, run by the deployment event");
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    assert_eq!(deploys[0].queued.sha.as_deref(), Some(sha(1).as_str()));
    let env = cd.world.recorded_env("web", deploys[0].id);
    assert_eq!(env["REDEPLOY_SHA"], sha(1));
    // The deployment names the commit alone; the branch is its push's.
    assert_eq!(env["REDEPLOY_REF"], "refs/heads/main");
    assert_eq!(env["REDEPLOY_BRANCH"], "main");
    assert_eq!(
        env["REDEPLOY_PUSHER"], "alice",
        "who pushed, as the push said"
    );
    assert_eq!(
        deploys[0].queued.git_ref.as_deref(),
        Some("refs/heads/main")
    );
    assert_eq!(deploys[0].queued.provider, "github");
    let bodies = status_bodies(&standin, 1000);
    let last = bodies.last().unwrap();
    assert_eq!(last["environment"], "web-env");
    assert_eq!(last["environment_url"], "https://web.example.com");
    let log_url = last["log_url"].as_str().unwrap();
    let prefix = format!("{}/logs/{}/", cd.public, deploys[0].id);
    assert!(log_url.starts_with(&prefix), "{log_url}");
    // The log link works, and only with its key.
    let path = &log_url[cd.public.len()..];
    assert_eq!(
        http::request(&cd.server.addr, "GET", path, &[], b"").status,
        200
    );
    let forged = format!(
        "{}{}",
        &path[..path.len() - 1],
        if path.ends_with('0') { '1' } else { '0' }
    );
    assert_eq!(
        http::request(&cd.server.addr, "GET", &forged, &[], b"").status,
        404
    );

    // A redelivered deployment event (new delivery id) deploys nothing more.
    let again = deliver(
        &cd,
        "deployment",
        "redelivery",
        &deployment_event(1000, &sha(1), "web-env", body["payload"].clone()),
    );
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["decisions"][0]["state"], "duplicate");
    // Our own statuses come back as deployment_status events: never deploy.
    let status_event = fixture("github/octokit-deployment_status-default.json");
    let r = deliver(&cd, "deployment_status", "status-1", &status_event);
    assert_eq!(r.status, 200, "{}", r.text());
    // A deployment to an environment no stack owns is skipped with a reason.
    let other = deliver_deployment(&cd, "other-env", (77, &sha(9), "staging"));
    assert_eq!(other.status, 200);
    assert!(
        other.json()["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("staging"),
        "{}",
        other.text()
    );
    assert_eq!(cd.world.deploys().len(), 1);

    // A failing deploy ends in `failure`.
    standin.forward_deployments_to(&format!("{}{}", cd.public, hook(2)), SECRET);
    let r = signed_push(&cd.server, &hook(2), SECRET, &sha(2), "push-2");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        statuses_of(&standin, 1001, 3),
        ["queued", "in_progress", "failure"]
    );
    let failed = status_bodies(&standin, 1001);
    assert!(
        failed[2]["description"]
            .as_str()
            .unwrap()
            .contains("exit code 3"),
        "{}",
        failed[2]
    );

    // A superseded deploy ends `inactive` (the cancelled mapping).
    standin.forward_deployments_to(&format!("{}{}", cd.public, hook(3)), SECRET);
    let deploys_of_slow = |n: usize| {
        wait_for(20, &format!("{n} deploys of slow"), || {
            let d: Vec<_> = cd
                .world
                .deploys()
                .into_iter()
                .filter(|d| d.queued.stack == "slow")
                .collect();
            (d.len() >= n).then_some(d)
        })
    };
    for (i, n) in [(10, 1), (11, 2), (12, 3)] {
        let r = signed_push(&cd.server, &hook(3), SECRET, &sha(i), &format!("slow-{i}"));
        assert_eq!(r.status, 202, "{}", r.text());
        deploys_of_slow(n);
    }
    assert_eq!(
        statuses_of(&standin, 1004, 3),
        ["queued", "in_progress", "success"]
    );
    assert_eq!(statuses_of(&standin, 1003, 2), ["queued", "inactive"]);
    assert_eq!(
        statuses_of(&standin, 1002, 3),
        ["queued", "in_progress", "success"]
    );

    assert_eq!(standin.violations(), Vec::<String>::new());
    let text = history(&cd.world);
    assert!(text.contains("GitHub deployment requests:"), "{text}");
    assert!(!text.contains(TOKEN) && !cd.server.log_text().contains(TOKEN));
    cd.server.terminate();
}

#[test]
fn a_copied_redeploy_mac_deploys_nothing_on_a_deployment_redeploy_never_asked_for() {
    // Anyone who may create deployments copies the payload of one of
    // redeploy's (its MAC covers stack, ref, environment, services and
    // profile, never the id GitHub gives) onto a deployment of their own:
    // GitHub signs and sends it like any other.
    let standin = GithubStandin::start(TOKEN);
    let base = standin.base_url();
    let stacks = [
        cd_stack(1, "web", &base, ""),
        cd_stack(2, "open", &base, "accept_foreign_deployments = true"),
    ];
    let cd = start("github-cd-copied-mac", &stacks);
    standin.forward_deployments_to(&format!("{}{}", cd.public, hook(1)), SECRET);
    let r = signed_push(&cd.server, &hook(1), SECRET, &sha(1), "push-1");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        statuses_of(&standin, 1000, 3),
        ["queued", "in_progress", "success"]
    );
    let payload = wait_for(20, "the deployment request", || {
        standin
            .requests()
            .into_iter()
            .find(|q| q.operation == DEPLOYMENTS)
    })
    .body
    .unwrap()["payload"]
        .clone();
    assert!(payload["redeploy-mac"].is_string(), "{payload}");
    let deploys = cd.world.settle(20);
    assert_eq!(deploys.len(), 1);

    // The copy, as deployment 1500: a valid MAC, but no request of the
    // stack made it. Judged as made elsewhere, which this stack refuses.
    let copy = deployment_event(1500, &sha(1), "web-env", payload.clone());
    let r = deliver(&cd, "deployment", "copy-1", &copy);
    assert_eq!(r.status, 200, "{}", r.text());
    let decision = &r.json()["decisions"][0];
    assert_eq!(decision["action"], "skip", "{decision}");
    assert_eq!(decision["skip"], "foreign-deployment", "{decision}");
    let reason = decision["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("redeploy never asked GitHub for deployment 1500, whose redeploy-mac is copied from one it did: judged as a deployment created elsewhere: deployment 1500 was not created by redeploy"),
        "{reason}"
    );
    // Again, under another delivery id: still nothing.
    let r = deliver(&cd, "deployment", "copy-2", &copy);
    assert_eq!(r.json()["decisions"][0]["action"], "skip", "{}", r.text());
    assert_eq!(cd.world.settle(20).len(), 1, "the copies deployed nothing");

    // A stack that accepts foreign deployments judges the copy by their
    // rules: its ref is a bare commit, which names no branch it follows.
    let mut open_payload = payload.clone();
    open_payload["stack"] = json!("open");
    let copy = deployment_event(1501, &sha(1), "open-env", open_payload);
    let r = signed_github(
        &cd.server,
        &hook(2),
        SECRET,
        ("deployment", "copy-3"),
        &copy,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let decision = &r.json()["decisions"][0];
    assert_eq!(decision["action"], "skip", "{decision}");
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("names the bare commit"),
        "{decision}"
    );
    assert_eq!(cd.world.settle(20).len(), 1);
    assert_eq!(standin.violations(), Vec::<String>::new());
    cd.server.terminate();
}

#[test]
fn every_documented_github_answer_is_journaled_and_deploys_nothing() {
    let standin = GithubStandin::start(TOKEN);
    let base = standin.base_url();
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    // In order: 409, 422, 202, a rate limit then 201, 401.
    standin.push_response(DEPLOYMENTS, Canned {
        status: 409,
        headers: vec![],
        body: json!({"message": "Conflict: Commit status checks failed for main.", "documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment"}),
    });
    standin.push_response(DEPLOYMENTS, Canned {
        status: 422,
        headers: vec![],
        body: json!({"message": "Validation Failed", "errors": [{"resource": "Deployment", "code": "custom", "message": "ref not found"}], "documentation_url": "https://docs.github.com/rest"}),
    });
    standin.push_response(
        DEPLOYMENTS,
        Canned {
            status: 202,
            headers: vec![],
            body: json!({"message": "Auto-merged main into topic-branch on deployment."}),
        },
    );
    standin.push_response(DEPLOYMENTS, Canned {
        status: 403,
        headers: vec![
            ("x-ratelimit-limit".into(), "5000".into()),
            ("x-ratelimit-remaining".into(), "0".into()),
            ("x-ratelimit-reset".into(), reset.to_string()),
        ],
        body: json!({"message": "API rate limit exceeded for user ID 1.", "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}),
    });
    // Stacks that give up at once on a failed request (issue 17's retries
    // and direct deploys are `github_cd_retry`'s), so nothing deploys.
    let give_up = "on_request_failure = \"give-up\"\nretry_request_for = \"0s\"";
    let stacks = [
        cd_stack(1, "web", &base, give_up),
        cd_stack(2, "offline", &unreachable_base_url(), give_up),
    ];
    let cd = start("github-cd-answers", &stacks);
    for i in 1..=4 {
        let r = signed_push(&cd.server, &hook(1), SECRET, &sha(i), &format!("d-{i}"));
        assert_eq!(r.status, 202, "{}", r.text());
    }
    // A redelivery of a push asks once.
    let r = signed_push(&cd.server, &hook(1), SECRET, &sha(4), "d-4");
    assert_eq!(
        r.json()["decisions"][0]["state"],
        "duplicate",
        "{}",
        r.text()
    );
    // GitHub unreachable: retried, then recorded as failed.
    let r = signed_push(&cd.server, &hook(2), SECRET, &sha(5), "d-5");
    assert_eq!(r.status, 202, "{}", r.text());

    let journal = || cd.world.journal();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let requests = loop {
        let mut r = journal().deployment_requests(None, 100).unwrap();
        r.reverse();
        let settled = r.len() == 5 && r.iter().all(|q| q.state != RequestState::Pending);
        if settled || std::time::Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let summary: Vec<(String, RequestState, Option<u16>, Option<u64>)> = requests
        .iter()
        .map(|q| {
            (
                q.asked.delivery_id.clone().unwrap(),
                q.state,
                q.http_status,
                q.deployment_id,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("d-1".to_string(), RequestState::Conflict, Some(409), None),
            ("d-2".to_string(), RequestState::Invalid, Some(422), None),
            ("d-3".to_string(), RequestState::Merged, Some(202), None),
            (
                "d-4".to_string(),
                RequestState::Created,
                Some(201),
                Some(1000)
            ),
            ("d-5".to_string(), RequestState::Failed, None, None),
        ]
    );
    assert!(requests[0]
        .detail
        .as_deref()
        .unwrap()
        .contains("status checks failed"));
    assert!(requests[1]
        .detail
        .as_deref()
        .unwrap()
        .contains("ref not found"));
    assert!(
        requests[4]
            .detail
            .as_deref()
            .unwrap()
            .contains("unreachable after 4 tries"),
        "{:?}",
        requests[4].detail
    );
    // The rate-limited request was sent again after the reset.
    let creates = standin
        .requests()
        .into_iter()
        .filter(|q| q.operation == DEPLOYMENTS)
        .count();
    assert_eq!(creates, 5);
    // No deployment event came (none was forwarded): nothing deployed.
    assert!(cd.world.deploys().is_empty());
    let text = history(&cd.world);
    for word in ["conflict", "invalid", "merged", "created", "failed"] {
        assert!(text.contains(word), "history does not say {word}: {text}");
    }
    assert_eq!(standin.violations(), Vec::<String>::new());
    cd.server.terminate();
}

#[test]
fn a_refused_token_names_the_permission_it_needs() {
    let standin = GithubStandin::start("some-other-token");
    let cd = start(
        "github-cd-denied",
        &[cd_stack(1, "web", &standin.base_url(), "")],
    );
    let r = signed_push(&cd.server, &hook(1), SECRET, &sha(1), "d-1");
    assert_eq!(r.status, 202);
    let request = wait_for(20, "the request settled", || {
        cd.world
            .journal()
            .deployment_requests(None, 10)
            .unwrap()
            .into_iter()
            .find(|q| q.state != RequestState::Pending)
    });
    assert_eq!(request.state, RequestState::Denied);
    assert_eq!(request.http_status, Some(401));
    assert!(request.detail.unwrap().contains("Deployments: write"));
    cd.server.terminate();
}

#[test]
fn without_waiting_for_the_event_a_push_deploys_and_reports_to_its_deployment() {
    let standin = GithubStandin::start(TOKEN);
    let stack = cd_stack(1, "web", &standin.base_url(), "wait_for_event = false");
    let cd = start("github-cd-direct", &[stack]);
    let r = signed_push(&cd.server, &hook(1), SECRET, &sha(7), "d-7");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["decisions"][0]["state"], "queued");
    assert_eq!(
        statuses_of(&standin, 1000, 3),
        ["queued", "in_progress", "success"]
    );
    let deploys = cd.world.settle(20);
    assert_eq!(deploys.len(), 1);
    // The deployment event for it (had GitHub reached us) is only acknowledged.
    let r = deliver_deployment(&cd, "event-1000", (1000, &sha(7), "web-env"));
    assert_eq!(r.status, 200);
    assert_eq!(cd.world.deploys().len(), 1);
    assert_eq!(standin.violations(), Vec::<String>::new());
    cd.server.terminate();
}

#[test]
fn token_env_supplies_the_api_token() {
    let standin = GithubStandin::start(TOKEN);
    let stacks = cd_stack(1, "web", &standin.base_url(), "wait_for_event = false")
        .toml()
        .replace(
            "token_file = \"@DIR@/gh-token\"",
            "token_env = \"REDEPLOY_TEST_GH_TOKEN\"",
        );
    let world = World::new("github-cd-token-env", "", &stacks);
    let server = world.start_env(&[], &[("REDEPLOY_TEST_GH_TOKEN", TOKEN)]);
    let r = signed_push(&server, &hook(1), SECRET, &sha(8), "d-8");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        statuses_of(&standin, 1000, 3),
        ["queued", "in_progress", "success"]
    );
    // No public_url: statuses carry no log_url.
    assert!(status_bodies(&standin, 1000)
        .iter()
        .all(|b| b.get("log_url").is_none()));
    assert_eq!(standin.violations(), Vec::<String>::new());
    server.terminate();
}

/// Runs `redeploy github connect web`: whether it succeeded, and what it
/// printed.
fn connect(world: &World) -> (bool, String) {
    let out = world.redeploy(&["github", "connect", "web"]);
    (
        out.status.success(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

fn connect_world(name: &str, standin: &GithubStandin) -> (World, String) {
    let public = "https://deploy.example.com";
    let world = World::new(
        name,
        &format!("public_url = \"{public}\""),
        &cd_stack(1, "web", &standin.base_url(), "").toml(),
    );
    world.write_gh_token(TOKEN);
    let url = format!("{public}{}", hook(1));
    (world, url)
}

#[test]
fn github_connect_creates_the_webhook_then_changes_nothing() {
    let standin = GithubStandin::start(TOKEN);
    standin.add_hook("https://ci.example.com/hook", &["push"], true);
    let (world, url) = connect_world("github-connect-create", &standin);
    let (ok, out) = connect(&world);
    assert!(ok, "{out}");
    assert!(out.contains("created webhook"), "{out}");
    let hooks = standin.hooks();
    let ours: Vec<&Value> = hooks.iter().filter(|h| h["config"]["url"] == url).collect();
    assert_eq!(ours.len(), 1, "{hooks:?}");
    assert_eq!(ours[0]["events"], json!(["push", "deployment"]));
    assert_eq!(ours[0]["active"], true);
    assert_eq!(ours[0]["config"]["content_type"], "json");
    let create = standin
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(create.body.unwrap()["config"]["secret"], SECRET);

    let before = standin.requests().len();
    let (ok, out) = connect(&world);
    assert!(ok && out.contains("nothing changed"), "{out}");
    let again = &standin.requests()[before..];
    assert!(
        again.iter().all(|r| r.method == "GET"),
        "second run changed something"
    );
    assert!(!out.contains(SECRET) && !out.contains(TOKEN));
    assert_eq!(standin.violations(), Vec::<String>::new());
}

#[test]
fn github_connect_adds_deployment_to_a_push_only_webhook() {
    let standin = GithubStandin::start(TOKEN);
    let (world, url) = connect_world("github-connect-update", &standin);
    let id = standin.add_hook(&url, &["push", "issues"], true);
    let (ok, out) = connect(&world);
    assert!(
        ok && out.contains(&format!("updated webhook {id}")),
        "{out}"
    );
    let hook = standin.hooks().into_iter().find(|h| h["id"] == id).unwrap();
    let mut events: Vec<String> = serde_json::from_value(hook["events"].clone()).unwrap();
    events.sort();
    assert_eq!(events, ["deployment", "issues", "push"]);
    let patch = standin
        .requests()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert_eq!(patch.body.unwrap()["add_events"], json!(["deployment"]));
    let (ok, out) = connect(&world);
    assert!(ok && out.contains("nothing changed"), "{out}");
    assert_eq!(
        standin
            .requests()
            .iter()
            .filter(|r| r.method != "GET")
            .count(),
        1
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
}

#[test]
fn a_docker_hub_push_reports_its_deploy_to_the_callback_url() {
    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (port, received) = serve_once(ok.to_string());
    let (world, server) = World::serving(
        "dockerhub-callback",
        "callback_hosts = [\"127.0.0.1\"]",
        &[Stack::image("app", "svendowideit/testhook", 1)],
    );
    let mut body: Value = crate::support::deliveries::fresh_docker_hub_push();
    body["callback_url"] = json!(format!(
        "http://127.0.0.1:{port}/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/"
    ));
    let r = server.post(
        &hook(1),
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let callback: Value = serde_json::from_slice(&received.join().unwrap().body).unwrap();
    assert_eq!(callback["state"], "success");
    assert_eq!(callback["context"], "redeploy");
    assert!(callback["description"]
        .as_str()
        .unwrap()
        .starts_with("Deployed"));
    let deploys = world.settle(10);
    let reports = wait_for(10, "the callback's report", || {
        let r = world.journal().reports(deploys[0].id).unwrap();
        (!r.is_empty()).then_some(r)
    });
    assert_eq!(
        reports,
        [(
            "callback".to_string(),
            "succeeded".to_string(),
            "success: sent".to_string()
        )]
    );
    server.terminate();
}

/// Issue 14: a Docker Hub callback that fails is logged (without its URL,
/// which carries Docker Hub's secret path) and counted by reason.
#[test]
fn a_failed_docker_hub_callback_is_logged_and_counted() {
    let failing =
        "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let (port, received) = serve_once(failing.to_string());
    let (world, server) = World::serving(
        "dockerhub-callback-fails",
        "callback_hosts = [\"127.0.0.1\"]",
        &[Stack::image("app", "svendowideit/testhook", 1)],
    );
    let secret_path = "/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/";
    let mut body: Value = crate::support::deliveries::fresh_docker_hub_push();
    body["callback_url"] = json!(format!("http://127.0.0.1:{port}{secret_path}"));
    let r = server.post(
        &hook(1),
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    received.join().unwrap();
    let deploys = world.settle(10);
    wait_for(10, "the callback's report", || {
        let r = world.journal().reports(deploys[0].id).unwrap();
        (!r.is_empty()).then_some(r)
    });
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("\nredeploy_callback_failures_total{reason=\"status\"} 1\n"),
        "{metrics}"
    );
    let log = server.log_text();
    assert!(
        log.contains(
            "registry callback not delivered: success: answered 500 Internal Server Error"
        ),
        "{log}"
    );
    // Which host, never the secret path.
    assert!(log.contains("host=127.0.0.1"), "{log}");
    assert!(!log.contains(secret_path), "{log}");
    server.terminate();
}

#[test]
fn the_deploy_page_links_its_github_deployment_and_lists_the_statuses_reported() {
    let standin = GithubStandin::start(TOKEN);
    let base = standin.base_url();
    let stacks = [
        cd_stack(1, "web", &base, ""),
        cd_stack(2, "direct", &base, "wait_for_event = false"),
        Stack::repo("plain", "acme/web", "main", 3).secret(SECRET),
    ];
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let config = toml(&stacks) + &crate::ui::ui_table("");
    let world = World::new(
        "github-cd-ui",
        &format!("public_url = \"{public}\""),
        &config,
    );
    world.write_gh_token(&format!("{TOKEN}\n"));
    let server = world.start_on(port, &[], &[]);
    standin.forward_deployments_to(&format!("{public}{}", hook(1)), SECRET);

    // Stack web: the push asks for a deployment, whose event deploys.
    let r = signed_push(&server, &hook(1), SECRET, &sha(1), "push-web");
    assert_eq!(r.json()["decisions"][0]["state"], "deployment-requested");
    assert_eq!(statuses_of(&standin, 1000, 3).len(), 3);
    // Stack direct: the push deploys and reports to the deployment it asked for.
    let r = signed_push(&server, &hook(2), SECRET, &sha(2), "push-direct");
    assert_eq!(r.json()["decisions"][0]["state"], "queued");
    let journal = world.journal();
    let request = wait_for(20, "the direct stack's deployment", || {
        let requests = journal.deployment_requests(Some("direct"), 1).unwrap();
        requests.into_iter().find_map(|r| r.deployment_id)
    });
    assert_ne!(request, 1000);
    assert_eq!(
        statuses_of(&standin, request, 3),
        ["queued", "in_progress", "success"]
    );
    // Stack plain: no continuous deployment.
    let r = signed_push(&server, &hook(3), SECRET, &sha(3), "push-plain");
    assert_eq!(r.json()["decisions"][0]["state"], "queued");
    let deploys = world.settle(20);
    assert_eq!(deploys.len(), 3, "{deploys:?}");
    let id_of = |stack: &str| deploys.iter().find(|d| d.queued.stack == stack).unwrap().id;
    // Each status is journaled once it is sent: wait for the last.
    for stack in ["web", "direct"] {
        wait_for(20, "the success status journaled", || {
            let reports = journal.reports(id_of(stack)).unwrap();
            (reports.len() == 3).then_some(())
        });
    }

    let mut browser = crate::ui::Browser::new(&server);
    assert_eq!(browser.sign_in("victor", crate::ui::PASSWORD).status, 303);
    for (stack, deployment, requested) in [("web", 1000, false), ("direct", request, true)] {
        let page = browser.get(&format!("/ui/deploys/{}", id_of(stack)));
        assert_eq!(page.status, 200);
        let text = page.text();
        let api = format!("{base}/repos/acme/web/deployments/{deployment}");
        crate::support::assert_contains_all(
            &text,
            &[
                "<h2 id=\"github\">GitHub deployment</h2>",
                &format!("<a id=\"github-deployment\" href=\"{api}\" rel=\"noreferrer\">{deployment}</a>"),
                &format!("<a id=\"github-statuses\" href=\"{api}/statuses\""),
                &format!("<a id=\"github-deployments\" href=\"{base}/acme/web/deployments\""),
            ],
        );
        // The journal's reports, in order: each of the deploy's three
        // states, sent (GitHub's `queued`, `in_progress`, `success`).
        let rows: Vec<&str> = text
            .split("<tr><td>github</td><td>")
            .skip(1)
            .map(|row| &row[..row.find("</tr>").unwrap()])
            .collect();
        assert_eq!(rows.len(), 3, "{stack}: {text}");
        for (row, state) in rows.iter().zip(["queued", "started", "succeeded"]) {
            let sent = format!("{state}</td><td>deployment {deployment}: sent</td>");
            assert_eq!(*row, sent, "{stack}");
        }
        // The request made on the push is the direct deploy's own.
        assert_eq!(
            text.contains("<dt>Requested on the push</dt><dd>created</dd>"),
            requested,
            "{stack}: {text}"
        );
    }
    let plain = browser
        .get(&format!("/ui/deploys/{}", id_of("plain")))
        .text();
    assert!(!plain.contains("GitHub deployment"), "{plain}");
    assert_eq!(standin.violations(), Vec::<String>::new());
    server.terminate();
}
