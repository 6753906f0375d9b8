//! Issue 12, points 3 and 4: replays and older commits, through a real
//! server. A delivery without a delivery id (Docker Hub, Quay, the legacy
//! Bitbucket POST service, a forwarded post-receive push) deploys once
//! however often it is replayed; an older commit does not deploy after a
//! newer one, even after a restart; a rollback and a manual trigger still
//! deploy.

use redeploy_host::journal::DeployState;
use serde_json::{json, Value};

use crate::support::cli::{assert_fails_saying, assert_success};
use crate::support::deliveries::{push_json, sha};
use crate::support::{fixture, hook, http, now_secs, sig, ServerProcess, Stack, World};

/// A stack following `main` of acme/web without secrets (the hook URL is
/// the credential), deploying with the stand-in.
fn web_stack() -> String {
    Stack::repo("web", "acme/web", "main", 1).toml()
}

/// A GitHub push of `after` on top of `before` to `main` of acme/web.
fn push(before: &str, after: &str, forced: bool) -> Vec<u8> {
    let mut push = push_json("refs/heads/main", before, after);
    push["forced"] = json!(forced);
    push.to_string().into_bytes()
}

fn deliver(server: &ServerProcess, body: &[u8], delivery: &str) -> (u16, Value) {
    let r = server.post(
        &hook(1),
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", delivery),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    (r.status, r.json())
}

/// Delivers the push of `after` on top of `before` and waits for what it
/// started: the delivery must be answered `status`.
fn deliver_and_settle(
    world: &World,
    server: &ServerProcess,
    (before, after): (usize, usize),
    delivery: &str,
    status: u16,
) -> Value {
    let (answered, body) = deliver(server, &push(&sha(before), &sha(after), false), delivery);
    assert_eq!(answered, status, "{body}");
    world.settle(20);
    body
}

/// The commits the stand-in ran, in order.
fn ran_commits(world: &World) -> Vec<String> {
    world
        .ran("web")
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
        .collect()
}

/// Deploys A (from X) then B (from A), one after the other, and restarts
/// the server: the state every point-4 case starts from.
fn deployed_a_then_b(name: &str) -> (World, ServerProcess) {
    let world = World::new(name, "", &web_stack());
    let server = world.start(&[]);
    deliver_and_settle(&world, &server, (0xa0, 0xa), "push-a", 202);
    deliver_and_settle(&world, &server, (0xa, 0xb), "push-b", 202);
    server.terminate();
    let server = world.start(&[]);
    (world, server)
}

#[test]
fn an_older_commit_redelivered_with_a_new_delivery_id_after_a_restart_does_not_deploy() {
    let (world, server) = deployed_a_then_b("replay-older-after-restart");
    // A's push again, as a replay or a very late retry would bring it.
    let (status, body) = deliver(&server, &push(&sha(0xa0), &sha(0xa), false), "push-a-again");
    assert_eq!(status, 200, "{body}");
    let decision = &body["decisions"][0];
    assert_eq!(decision["state"], "cancelled", "{body}");
    let reason = decision["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!(
            "commit {} is older than commit {}",
            sha(0xa),
            sha(0xb)
        )),
        "{reason}"
    );
    let deploys = world.settle(20);
    let last = deploys.last().unwrap();
    assert_eq!(last.state, DeployState::Cancelled);
    assert_eq!(last.detail.as_deref(), Some(reason), "the journal says why");
    assert_eq!(
        ran_commits(&world),
        [sha(0xa), sha(0xb)],
        "A never ran again"
    );
    server.terminate();
}

#[test]
fn a_commit_the_chain_puts_before_the_deployed_one_does_not_deploy() {
    let world = World::new("replay-chain-older", "", &web_stack());
    let server = world.start(&[]);
    // B's push (from A) arrives first; A's own push (from X) is late.
    deliver_and_settle(&world, &server, (0xa, 0xb), "push-b", 202);
    server.terminate();
    let server = world.start(&[]);
    let body = deliver_and_settle(&world, &server, (0xa0, 0xa), "push-a", 200);
    assert!(
        body["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("the push that brought"),
        "{body}"
    );
    assert_eq!(ran_commits(&world), [sha(0xb)]);
    server.terminate();
}

#[test]
fn a_forced_push_back_from_the_deployed_commit_rolls_back_after_a_restart() {
    let (world, server) = deployed_a_then_b("replay-rollback");
    let (status, body) = deliver(&server, &push(&sha(0xb), &sha(0xa), true), "rollback");
    assert_eq!(status, 202, "{body}");
    world.settle(20);
    assert_eq!(ran_commits(&world), [sha(0xa), sha(0xb), sha(0xa)]);
    // The same push, not forced, is not a rollback: it would be a replay
    // of a push GitHub says was a fast-forward.
    deliver_and_settle(&world, &server, (0xa, 0xb), "push-b-again", 200);
    assert_eq!(ran_commits(&world).len(), 3);
    server.terminate();
}

#[test]
fn a_manual_trigger_deploys_after_a_restart_whatever_was_deployed() {
    let (world, server) = deployed_a_then_b("replay-manual-after-restart");
    server.post(&hook(1), &[], b"").assert_status(202);
    world.settle(20);
    assert_eq!(ran_commits(&world), [sha(0xa), sha(0xb), String::new()]);
    server.terminate();
}

/// Runs `redeploy trigger STACK --redeploy ID` against `server`.
fn redeploy_from_history(
    world: &World,
    server: &ServerProcess,
    stack: &str,
    id: i64,
) -> std::process::Output {
    let id = id.to_string();
    world.redeploy(&[
        "trigger",
        stack,
        "--server",
        &server.url(),
        "--redeploy",
        &id,
    ])
}

#[test]
fn a_redeploy_of_an_earlier_deploy_from_history_rolls_back_after_a_restart() {
    let (world, server) = deployed_a_then_b("replay-redeploy-from-history");
    let a = world.deploys()[0].clone();
    assert_eq!(a.queued.sha.as_deref(), Some(sha(0xa).as_str()));
    let out = redeploy_from_history(&world, &server, "web", a.id);
    assert_success(&out);
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["decisions"][0]["state"], "queued", "{answer}");
    assert_eq!(answer["decisions"][0]["redeploy_of"], a.id);
    let deploys = world.settle(20);
    let rollback = deploys.last().unwrap();
    assert_eq!(rollback.state, DeployState::Succeeded, "{deploys:#?}");
    assert_eq!(rollback.queued.sha, a.queued.sha);
    assert_eq!(rollback.queued.git_ref, a.queued.git_ref);
    assert_eq!(rollback.queued.provider, "manual");
    assert_eq!(ran_commits(&world), [sha(0xa), sha(0xb), sha(0xa)]);
    let env = world.recorded_env("web", rollback.id);
    assert_eq!(env.get("REDEPLOY_SHA"), Some(&sha(0xa)), "{env:?}");
    assert_eq!(
        env.get("REDEPLOY_BRANCH").map(String::as_str),
        Some("main"),
        "{env:?}"
    );
    // The rollback sticks: a late delivery of B's push does not undo it.
    let body = deliver_and_settle(&world, &server, (0xa, 0xb), "push-b-late", 200);
    assert_eq!(body["decisions"][0]["state"], "cancelled", "{body}");
    assert_eq!(ran_commits(&world).len(), 3);
    // A deploy id the stack does not have is refused, and nothing runs.
    let out = redeploy_from_history(&world, &server, "web", 999);
    assert_fails_saying(&out, "has no deploy #999");
    server.terminate();
}

#[test]
fn a_redeploy_from_history_on_a_stack_with_secrets_must_be_signed_and_deploys_once() {
    let (world, server) = signed_world("replay-redeploy-signed");
    let at = now_secs();
    forward(&server, 1, "web", at).assert_status(202);
    forward(&server, 2, "api", at).assert_status(202);
    let deploys = world.settle(20);
    let web = deploys.iter().find(|d| d.queued.stack == "web").unwrap().id;
    let api = deploys.iter().find(|d| d.queued.stack == "api").unwrap().id;
    let route = |n: u32, id: i64| format!("{}/redeploy/{id}", hook(n));
    // The hook URL alone does not choose a commit on a stack with secrets.
    server
        .post(&route(1, web), &[], b"")
        .assert_error(401, "missing-signature");
    // Signed as the CLI signs it, but for another deploy, another stack
    // or long ago.
    let signed = |stack: &str, id: i64, at: u64| {
        let at = at.to_string();
        let sig = redeploy_host::rollback::sign(SECRET, stack, id, &at);
        vec![
            ("X-Redeploy-Timestamp".to_string(), at),
            ("X-Redeploy-Signature-256".to_string(), sig),
        ]
    };
    let post = |path: String, headers: Vec<(String, String)>| {
        server.post(&path, &crate::support::deliveries::borrowed(&headers), b"")
    };
    for (path, headers, error) in [
        (route(1, web), signed("web", api, at), "bad-signature"),
        (route(1, web), signed("api", web, at), "bad-signature"),
        (
            route(1, web),
            signed("web", web, at - 600),
            "stale-signature",
        ),
    ] {
        post(path, headers).assert_error(401, error);
    }
    // Another stack's deploy, through this stack's URL, signed for this
    // stack: not found.
    post(route(1, api), signed("web", api, at)).assert_status(404);
    assert_eq!(world.settle(20).len(), 2, "nothing ran yet");
    // The CLI signs it; the same signed request sent again deploys once.
    assert_success(&redeploy_from_history(&world, &server, "web", web));
    // Let it run: the runner refuses the same commit while it deploys.
    world.settle(20);
    // (Two seconds ahead, so it is not the CLI's own signed request.)
    let headers = signed("web", web, now_secs() + 2);
    post(route(1, web), headers.clone()).assert_status(202);
    let again = post(route(1, web), headers);
    assert_eq!(again.assert_status(200).decision()["state"], "duplicate");
    let deploys = world.settle(20);
    let redeploys: Vec<_> = deploys
        .iter()
        .filter(|d| d.queued.stack == "web" && d.id != web)
        .collect();
    assert_eq!(redeploys.len(), 2, "{deploys:#?}");
    assert!(redeploys
        .iter()
        .all(|d| d.queued.sha.as_deref() == Some(sha(0xb).as_str())));
    server.terminate();
}

/// An image stack without secrets (registries cannot sign).
fn image_world(name: &str, image: &str, server_toml: &str) -> World {
    World::new(name, server_toml, &Stack::image("web", image, 1).toml())
}

/// The JSON content type, as registries send it.
const JSON: [(&str, &str); 1] = [("Content-Type", "application/json")];

/// Posts `body` twice: the first deploys, the second is a duplicate.
fn posted_twice_deploys_once(world: &World, headers: &[(&str, &str)], body: &[u8]) {
    let server = world.start(&[]);
    let first = server.post(&hook(1), headers, body);
    first.assert_status(202);
    let second = server.post(&hook(1), headers, body);
    let decision = second.assert_status(200).decision();
    assert_eq!(decision["state"], "duplicate", "{decision}");
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("was already accepted"),
        "{decision}"
    );
    assert_eq!(decision["deploy_id"], first.decision()["deploy_id"]);
    let deploys = world.settle(20);
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    assert_eq!(world.ran("web").len(), 1);
    server.terminate();
}

#[test]
fn a_docker_hub_body_posted_twice_deploys_once() {
    // No callback host allowed: this test stays on loopback.
    let world = image_world(
        "replay-dockerhub",
        "svendowideit/testhook",
        "callback_hosts = []",
    );
    let body = crate::support::deliveries::fresh_docker_hub_push()
        .to_string()
        .into_bytes();
    posted_twice_deploys_once(&world, &JSON, &body);
}

#[test]
fn a_quay_body_posted_twice_deploys_once() {
    let world = image_world("replay-quay", "quay.io/mynamespace/repository", "");
    let body = fixture("quay/quaydocs-repo-push.json");
    posted_twice_deploys_once(&world, &JSON, &body);
}

#[test]
fn a_legacy_bitbucket_body_posted_twice_deploys_once() {
    let stack = Stack::repo("web", "kolaszek/repository-name", "master", 1);
    let world = World::new("replay-bitbucket-legacy", "", &stack.toml());
    let payload = fixture("bitbucket-legacy-post/zulip-bitbucket_push.json");
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&payload).unwrap())
        .finish();
    posted_twice_deploys_once(
        &world,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
}

#[test]
fn a_quay_body_deploys_again_once_its_replay_window_is_over() {
    // A body with no time in it cannot tell a replay from a second push of
    // the tag: it is deduplicated only within the window, then pruned.
    let world = image_world(
        "replay-quay-window",
        "quay.io/mynamespace/repository",
        "replay_window = \"2s\"",
    );
    let body = fixture("quay/quaydocs-repo-push.json");
    let server = world.start(&[]);
    assert_eq!(server.post(&hook(1), &JSON, &body).status, 202);
    assert_eq!(server.post(&hook(1), &JSON, &body).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    server.post(&hook(1), &JSON, &body).assert_status(202);
    world.settle(20);
    assert_eq!(world.ran("web").len(), 2);
    let keys: i64 = world.query_journal("SELECT COUNT(*) FROM replay_keys");
    assert_eq!(keys, 1, "the expired key was pruned");
    server.terminate();
}

#[test]
fn the_empty_manual_trigger_twice_deploys_twice() {
    let world = image_world("replay-manual-twice", "acme/web", "");
    let server = world.start(&[]);
    assert_eq!(server.post(&hook(1), &[], b"").status, 202);
    world.settle(20);
    server.post(&hook(1), &[], b"").assert_status(202);
    world.settle(20);
    assert_eq!(world.ran("web").len(), 2);
    server.terminate();
}

const SECRET: &str = "post-receive-s3cret";

/// Two stacks with one secret, following `main` of acme/web, and their
/// server.
fn signed_world(name: &str) -> (World, ServerProcess) {
    let stack = |n: u32, label: &str| Stack::repo(label, "acme/web", "main", n).secret(SECRET);
    World::serving(name, "", &[stack(1, "web"), stack(2, "api")])
}

fn forwarded_body() -> Vec<u8> {
    json!({"repository": "acme/web", "pusher": "alice",
        "updates": [{"old": sha(0xa), "new": sha(0xb), "name": "refs/heads/main"}]})
    .to_string()
    .into_bytes()
}

/// POSTs the forwarded push to stack `n`'s post-receive route with a
/// timestamp and a signature.
fn post_receive_route(
    server: &ServerProcess,
    n: u32,
    timestamp: &str,
    signature: &str,
) -> http::Response {
    server.post(
        &format!("{}/post-receive", hook(n)),
        &[
            ("Content-Type", "application/json"),
            ("X-Redeploy-Timestamp", timestamp),
            ("X-Redeploy-Signature-256", signature),
        ],
        &forwarded_body(),
    )
}

/// Forwards [`forwarded_body`] to stack `n`'s post-receive route, signed
/// for `stack` at `timestamp` as the WIT documents it (`forward-push`): the
/// HMAC of the timestamp, ".", the stack, a newline and the body.
fn forward(server: &ServerProcess, n: u32, stack: &str, timestamp: u64) -> http::Response {
    let timestamp = timestamp.to_string();
    let mut signed = format!("{timestamp}.{stack}\n").into_bytes();
    signed.extend_from_slice(&forwarded_body());
    post_receive_route(server, n, &timestamp, &sig(SECRET, &signed))
}

/// Asserts a refused forward, and that nothing deployed.
#[track_caller]
fn refused(world: World, server: ServerProcess, r: http::Response, error: &str) {
    r.assert_error(401, error);
    assert!(world.deploys().is_empty());
    server.terminate();
}

#[test]
fn a_forwarded_post_receive_push_replayed_later_is_refused() {
    let (world, server) = signed_world("replay-forwarded-old");
    let r = forward(&server, 1, "web", now_secs() - 600);
    refused(world, server, r, "stale-signature");
}

#[test]
fn the_same_forwarded_post_receive_push_twice_deploys_once() {
    let (world, server) = signed_world("replay-forwarded-twice");
    let at = now_secs();
    forward(&server, 1, "web", at).assert_status(202);
    let second = forward(&server, 1, "web", at);
    assert_eq!(second.assert_status(200).decision()["state"], "duplicate");
    let deploys = world.settle(20);
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    server.terminate();
}

#[test]
fn a_forwarded_post_receive_push_signed_over_the_body_alone_is_refused() {
    // The signature before issue 12 covered only the body: a captured one
    // must not pass with any timestamp put beside it.
    let (world, server) = signed_world("replay-forwarded-body-only");
    let body_only = sig(SECRET, &forwarded_body());
    let r = post_receive_route(&server, 1, &now_secs().to_string(), &body_only);
    refused(world, server, r, "bad-signature");
}

#[test]
fn a_forwarded_post_receive_push_signed_for_another_stack_is_refused() {
    // Both stacks share the secret: a push signed for "web" is sent to "api".
    let (world, server) = signed_world("replay-forwarded-other-stack");
    let r = forward(&server, 2, "web", now_secs());
    refused(world, server, r, "bad-signature");
}

/// Stack `web` (hook token 1) of Bitbucket Server's PENGINE/product-engine:
/// service `web` on `main`, `worker` on `develop`.
fn two_branch_world(name: &str) -> World {
    let stack = Stack::new("web").token(1).standin().table(
        "[[stacks.services]]\nname = \"web\"\nrepository = \"PENGINE/product-engine\"\nbranch = \"main\"\n\n\
         [[stacks.services]]\nname = \"worker\"\nrepository = \"PENGINE/product-engine\"\nbranch = \"develop\"",
    );
    World::new(name, "", &stack.toml())
}

/// go-scm's Bitbucket Server push of `develop`, with a second change, of
/// `main`, as a push of both branches sends it.
fn push_of_main_and_develop() -> Vec<u8> {
    let mut body: Value =
        serde_json::from_slice(&fixture("bitbucket-server/goscm-fnb_push_update.json")).unwrap();
    let changes = body["changes"].as_array_mut().unwrap();
    let mut main = changes[0].clone();
    main["ref"]["id"] = json!("refs/heads/main");
    main["ref"]["displayId"] = json!("main");
    main["refId"] = json!("refs/heads/main");
    main["fromHash"] = json!(sha(1));
    main["toHash"] = json!(sha(2));
    changes.insert(0, main);
    body.to_string().into_bytes()
}

/// (state, ref, services, deploy id) of each decision of `answer`.
fn deploys_said(answer: &http::Response) -> Vec<(String, String, String, i64)> {
    answer.json()["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["state"].as_str().unwrap_or_default().to_owned(),
                d["ref"].as_str().unwrap_or_default().to_owned(),
                d["services"][0].as_str().unwrap_or_default().to_owned(),
                d["deploy_id"].as_i64().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_push_of_two_followed_branches_deploys_each_once_however_often_it_is_sent() {
    let world = two_branch_world("replay-two-lanes");
    let server = world.start(&[]);
    let body = push_of_main_and_develop();
    let with_id = [
        ("X-Event-Key", "repo:refs_changed"),
        ("X-Request-Id", "r-1"),
    ];
    let first = server.post(&hook(1), &with_id, &body);
    first.assert_status(202);
    let said = deploys_said(&first);
    let (main, develop) = ("refs/heads/main", "refs/heads/develop");
    assert_eq!(
        said.iter()
            .map(|(state, r, service, _)| (state.as_str(), r.as_str(), service.as_str()))
            .collect::<Vec<_>>(),
        [("queued", main, "web"), ("queued", develop, "worker")],
        "{}",
        first.text()
    );
    // Sent again with its delivery id: each ref is a duplicate of its own
    // deploy.
    let again = server.post(&hook(1), &with_id, &body);
    again.assert_status(200);
    let ids: Vec<i64> = said.iter().map(|d| d.3).collect();
    assert_eq!(
        deploys_said(&again)
            .iter()
            .map(|(state, r, _, id)| (state.as_str(), r.as_str(), *id))
            .collect::<Vec<_>>(),
        [("duplicate", main, ids[0]), ("duplicate", develop, ids[1])],
        "{}",
        again.text()
    );
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 2, "{deploys:#?}");
    assert!(deploys.iter().all(|d| d.state == DeployState::Succeeded));
    // Each deploy's delivery key names its ref; the command's event keeps
    // the sender's id.
    world.assert_env(
        "web",
        ids[0],
        &[("REDEPLOY_DELIVERY", "r-1 refs/heads/main")],
    );
    world.assert_env(
        "web",
        ids[1],
        &[
            ("REDEPLOY_DELIVERY", "r-1 refs/heads/develop"),
            ("REDEPLOY_SERVICES", "worker"),
        ],
    );
    server.terminate();

    // Without a delivery id, each ref's deploy is deduplicated on the body.
    let world = two_branch_world("replay-two-lanes-no-id");
    let server = world.start(&[]);
    let without_id = [("X-Event-Key", "repo:refs_changed")];
    let first = server.post(&hook(1), &without_id, &body);
    first.assert_status(202);
    assert_eq!(
        deploys_said(&first)
            .iter()
            .map(|d| d.0.as_str())
            .collect::<Vec<_>>(),
        ["queued", "queued"],
        "{}",
        first.text()
    );
    let again = server.post(&hook(1), &without_id, &body);
    again.assert_status(200);
    assert_eq!(
        deploys_said(&again)
            .iter()
            .map(|d| d.0.as_str())
            .collect::<Vec<_>>(),
        ["duplicate", "duplicate"],
        "{}",
        again.text()
    );
    assert_eq!(world.settle(30).len(), 2);
    server.terminate();
}

const GHCR_SECRET: &str = "ghcr-webhook-s3cret";

/// The digest the octokit GitHub Packages fixtures name (as its
/// `package_version.version`): a placeholder of 40 hex digits, where a
/// real SHA-256 digest has 64.
const GHCR_DIGEST: &str = "6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b";

/// [`GHCR_DIGEST`] made a digest of the real length.
const FIRST: &str = "6c62fb45fe66bfb1ea9a66abc38f6a0cc974292b0123456789abcdef01234567";

/// The octokit `event` fixture (`package` or `registry_package`, published,
/// ghcr.io/codertocat/hello-world pushed by digest alone), its digest
/// replaced by `digest`, signed with [`GHCR_SECRET`] and sent as delivery
/// `delivery` to hook 1 with `query`.
fn ghcr_with(
    server: &ServerProcess,
    query: &str,
    (event, delivery): (&str, &str),
    digest: &str,
) -> http::Response {
    let body = String::from_utf8(fixture(&format!(
        "github/octokit-{event}-published-docker.json"
    )))
    .unwrap()
    .replace(GHCR_DIGEST, digest);
    server.post(
        &format!("{}{query}", hook(1)),
        &[
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig(GHCR_SECRET, body.as_bytes())),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

/// [`ghcr_with`] without a query.
fn ghcr(server: &ServerProcess, event: &str, digest: &str, delivery: &str) -> http::Response {
    ghcr_with(server, "", (event, delivery), digest)
}

/// A captured signed GitHub Packages delivery sent again under new delivery
/// ids (the header is not signed), or as the other of the two events GitHub
/// sends for one publish, deploys nothing; nor does an earlier version's,
/// once a newer one deployed: a push by digest alone deploys exactly that
/// digest, so it would roll the stack back. Before and after a restart.
#[test]
fn a_signed_image_push_replayed_under_new_delivery_ids_deploys_once_and_never_rolls_back() {
    let stack = Stack::image("web", "ghcr.io/Codertocat/hello-world", 1)
        .secret(GHCR_SECRET)
        .table("[stacks.profiles.fast]\nenv = { FAST = \"1\" }");
    // Deploys are kept a second (but the newest), so that the first is
    // pruned at the restart.
    let (world, server) = World::serving(
        "replay-ghcr",
        "keep_deploys = \"1s\"\nkeep_deploys_min = 1",
        &[stack],
    );
    let first = ghcr(&server, "registry_package", FIRST, "g-1");
    let first_id = first.assert_status(202).decision()["deploy_id"]
        .as_i64()
        .unwrap();
    let image = format!("ghcr.io/codertocat/hello-world@sha256:{FIRST}");
    let duplicate = |r: http::Response, of: i64, digest: &str| {
        let decision = r.assert_status(200).decision();
        assert_eq!(decision["state"], "duplicate", "{decision}");
        assert_eq!(decision["deploy_id"].as_i64(), Some(of), "{decision}");
        assert_eq!(
            decision["reason"],
            format!(
                "image ghcr.io/codertocat/hello-world@sha256:{digest} is already deploy #{of}: an image pushed by digest deploys each digest once per services and profile, and never again once the image moved on to a later digest or a tag (the same push delivered again, by another delivery id or another webhook, deploys nothing; `redeploy trigger web --redeploy ID` redeploys a deploy of `redeploy history`)"
            )
        );
    };
    duplicate(
        ghcr(&server, "registry_package", FIRST, "g-1-replayed"),
        first_id,
        FIRST,
    );
    duplicate(
        ghcr(&server, "package", FIRST, "g-1-package"),
        first_id,
        FIRST,
    );
    // The same delivery id again is that delivery.
    let again = ghcr(&server, "registry_package", FIRST, "g-1");
    let decision = again.assert_status(200).decision();
    assert_eq!(
        decision["reason"],
        format!("delivery g-1 was already accepted as deploy #{first_id}")
    );
    // A newer version deploys.
    let newer = "7".repeat(64);
    let second = ghcr(&server, "registry_package", &newer, "g-2");
    let second_id = second.assert_status(202).decision()["deploy_id"]
        .as_i64()
        .unwrap();
    world.settle(20);
    // The first version's delivery again, after the newer one ran, and
    // after a restart: nothing deploys.
    duplicate(
        ghcr(&server, "registry_package", FIRST, "g-1-late"),
        first_id,
        FIRST,
    );
    // Nor with the unsigned query changed: a later digest deployed.
    duplicate(
        ghcr_with(
            &server,
            "?deployment_profile=fast",
            ("registry_package", "g-1-fast"),
            FIRST,
        ),
        first_id,
        FIRST,
    );
    let deploys = world.deploys();
    let images: Vec<Value> = deploys
        .iter()
        .map(|d| serde_json::from_str::<Value>(&d.queued.event_json).unwrap()["image"].clone())
        .collect();
    assert_eq!(
        images,
        [
            json!(image),
            json!(format!("ghcr.io/codertocat/hello-world@sha256:{newer}"))
        ]
    );
    server.terminate();
    // After a restart that pruned the first deploy, its digest is still
    // the same push: sent again it rolls nothing back.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let server = world.start(&[]);
    let kept: Vec<i64> = world.deploys().iter().map(|d| d.id).collect();
    assert_eq!(kept, [second_id], "the first deploy was pruned");
    duplicate(
        ghcr(&server, "package", FIRST, "g-1-restart"),
        first_id,
        FIRST,
    );
    duplicate(
        ghcr(&server, "registry_package", &newer, "g-2-restart"),
        second_id,
        &newer,
    );
    assert_eq!(world.settle(20).len(), 1);
    let ran = world.ran("web");
    assert_eq!(ran.len(), 2, "{ran:?}");
    // A push of a tag of the image deploys (it pulls the tag) and moves the
    // image on: the newer digest, the latest before it, is then a
    // duplicate too, whatever the query.
    let tagged = ghcr_tagged(&server, "latest", "g-tag");
    assert_eq!(tagged.assert_status(202).decision()["state"], "queued");
    world.settle(20);
    duplicate(
        ghcr_with(
            &server,
            "?deployment_profile=fast",
            ("registry_package", "g-2-fast"),
            &newer,
        ),
        second_id,
        &newer,
    );
    assert_eq!(world.ran("web").len(), 3);
    server.terminate();
}

/// The octokit `registry_package` fixture with its version tagged `tag`
/// (`container_metadata.tag.name`, empty in the fixture), signed with
/// [`GHCR_SECRET`] and sent to hook 1 as delivery `delivery`.
fn ghcr_tagged(server: &ServerProcess, tag: &str, delivery: &str) -> http::Response {
    let mut body: Value = serde_json::from_slice(&fixture(
        "github/octokit-registry_package-published-docker.json",
    ))
    .unwrap();
    body["registry_package"]["package_version"]["container_metadata"]["tag"]["name"] = json!(tag);
    let body = body.to_string();
    server.post(
        &hook(1),
        &[
            ("X-GitHub-Event", "registry_package"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig(GHCR_SECRET, body.as_bytes())),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

/// A GitHub Packages delivery whose digest is not one a registry gives
/// (the octokit fixture's placeholder, 40 hex digits) claims nothing: each
/// delivery of it deploys, as a tag's does.
#[test]
fn a_signed_image_push_whose_digest_is_no_real_digest_deploys_each_time() {
    let stack = Stack::image("web", "ghcr.io/Codertocat/hello-world", 1).secret(GHCR_SECRET);
    let (world, server) = World::serving("replay-ghcr-placeholder", "", &[stack]);
    for delivery in ["p-1", "p-2"] {
        let answer = ghcr(&server, "registry_package", GHCR_DIGEST, delivery);
        assert_eq!(answer.assert_status(202).decision()["state"], "queued");
    }
    assert_eq!(world.settle(20).len(), 2);
    server.terminate();
}

/// Harbor's documented push of `test-webhook/debian:latest`, at `digest`,
/// stamped `at` (Unix seconds; the fixture's 2020 is past the server's
/// `max_event_age`). Harbor sends no delivery id: each time makes another
/// body, and so another replay key.
fn harbor_push(digest: &str, at: u64) -> Vec<u8> {
    let mut body: Value =
        serde_json::from_slice(&fixture("harbor/harbordocs-push-artifact.json")).unwrap();
    body["occur_at"] = json!(at);
    body["event_data"]["resources"][0]["digest"] = json!(digest);
    body.to_string().into_bytes()
}

/// A tag's push at the digest it deployed before deploys again: its deploy
/// pulls the tag, at whatever digest the tag points to by then, so the
/// body's digest says nothing of what the stack runs (a late delivery, a
/// manual trigger in between), and a claim of it could refuse the tag's
/// next move. (Harbor's body carries a time, judged by `max_event_age`.)
#[test]
fn a_tag_pushed_again_at_the_same_digest_deploys_again() {
    let world = image_world(
        "replay-harbor-tag",
        "hub.harbor.com/test-webhook/debian",
        "",
    );
    let server = world.start(&[]);
    let (a, b) = (
        format!("sha256:{}", "a".repeat(64)),
        format!("sha256:{}", "b".repeat(64)),
    );
    let now = now_secs();
    for (digest, at) in [(&a, now), (&a, now - 1), (&b, now), (&a, now - 2)] {
        let answer = server.post(&hook(1), &JSON, &harbor_push(digest, at));
        assert_eq!(answer.assert_status(202).decision()["state"], "queued");
        world.settle(20);
    }
    let deploys = world.settle(20);
    assert_eq!(deploys.len(), 4, "{deploys:#?}");
    server.terminate();
}

/// Azure Container Registry's documented push event (a Distribution-style
/// notification) of `repository` at `digest` alone (no tag), from `host`,
/// under the delivery id `id`, timed now.
fn acr_push_by_digest(host: &str, repository: &str, digest: &str, id: &str) -> Vec<u8> {
    let mut body: Value =
        serde_json::from_slice(&fixture("distribution/azuredocs-acr-push.json")).unwrap();
    body["id"] = json!(id);
    body["timestamp"] =
        json!(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string());
    body["request"]["host"] = json!(host);
    body["target"]["repository"] = json!(repository);
    body["target"]["digest"] = json!(digest);
    body["target"].as_object_mut().unwrap().remove("tag");
    body.to_string().into_bytes()
}

/// An image pushed by digest alone is one image however its sender spells
/// it, as the stack follows it: Docker Hub's hosts, `library/`, letter
/// case, `/` around the name, and another registry (the stack's `nginx`
/// names none). A digest sent again spelled another way deploys nothing,
/// and an earlier one never rolls the stack back.
#[test]
fn an_image_pushed_by_digest_spelled_another_way_is_the_same_image() {
    let world = image_world("replay-acr-spellings", "nginx", "");
    let server = world.start(&[]);
    let (a, b) = (
        format!("sha256:{}", "a".repeat(64)),
        format!("sha256:{}", "b".repeat(64)),
    );
    let push = |host: &str, repository: &str, digest: &str, id: &str| {
        server.post(
            &hook(1),
            &JSON,
            &acr_push_by_digest(host, repository, digest, id),
        )
    };
    let first = push("docker.io", "library/nginx", &a, "a-1");
    let first_id = first.assert_status(202).decision()["deploy_id"]
        .as_i64()
        .unwrap();
    world.settle(20);
    let second = push("docker.io", "library/nginx", &b, "b-1");
    let second_id = second.assert_status(202).decision()["deploy_id"]
        .as_i64()
        .unwrap();
    world.settle(20);
    let spellings = [
        ("docker.io", "nginx"),
        ("index.docker.io", "library/nginx"),
        ("registry-1.docker.io", "library/nginx"),
        ("hub.docker.com", "Library/Nginx"),
        ("docker.io", "/library/nginx/"),
        // The stack follows `nginx` on any registry: a mirror's is the
        // same image.
        ("mirror.example:5000", "nginx"),
        ("mirror.example:5000", "Nginx/"),
    ];
    for (n, (host, repository)) in spellings.iter().enumerate() {
        for (digest, of) in [(&a, first_id), (&b, second_id)] {
            let answer = push(host, repository, digest, &format!("again-{n}-{of}"));
            let decision = answer.assert_status(200).decision();
            assert_eq!(
                decision["state"], "duplicate",
                "{host}/{repository}: {decision}"
            );
            assert_eq!(
                decision["deploy_id"].as_i64(),
                Some(of),
                "{host}/{repository}: {decision}"
            );
        }
    }
    let deploys = world.settle(20);
    assert_eq!(deploys.len(), 2, "{deploys:#?}");
    assert_eq!(world.ran("web").len(), 2);
    server.terminate();
}

/// Two images a stack's services follow under names one reading could
/// merge (`acme/app` on any registry, and Docker Hub's `myreg/acme/app`)
/// stay two: a push of `acme/app` from a registry whose host is `myreg`
/// deploys the first service and moves nothing of the second's image, so
/// the second's digest sent again with a profile it never ran deploys. The
/// first's image pushed from another registry is the same image.
#[test]
fn images_a_stack_follows_under_two_names_are_two_images() {
    let stack = Stack::new("merge").token(1).standin().table(
        "[stacks.profiles.fast]\nenv = { FAST = \"1\" }\n\n\
         [[stacks.services]]\nname = \"a\"\nimage = \"acme/app\"\n\n\
         [[stacks.services]]\nname = \"b\"\nimage = \"myreg/acme/app\"",
    );
    let (world, server) = World::serving("replay-two-names", "", &[stack]);
    let (three, four) = (
        format!("sha256:{}", "3".repeat(64)),
        format!("sha256:{}", "4".repeat(64)),
    );
    let push = |host: &str, repository: &str, digest: &str, id: &str, query: &str| {
        server.post(
            &format!("{}{query}", hook(1)),
            &JSON,
            &acr_push_by_digest(host, repository, digest, id),
        )
    };
    let b = push("docker.io", "myreg/acme/app", &three, "b-3", "");
    assert_eq!(b.assert_status(202).decision()["services"], json!(["b"]));
    world.settle(20);
    let a = push("myreg", "acme/app", &four, "a-4", "");
    assert_eq!(a.assert_status(202).decision()["services"], json!(["a"]));
    world.settle(20);
    // The first service's image, which it follows on any registry, from
    // another registry (a mirror's notifications): the same image, the
    // same digest, and neither it nor `?services=` narrowing deploys it
    // again.
    for (id, query) in [("a-4-mirror", ""), ("a-4-mirror-a", "?services=a")] {
        let mirror = push("mirror.example:5000", "acme/app", &four, id, query);
        let decision = mirror.assert_status(200).decision();
        assert_eq!(decision["state"], "duplicate", "{id}: {decision}");
    }
    let fast = push(
        "docker.io",
        "myreg/acme/app",
        &three,
        "b-3-fast",
        "?deployment_profile=fast",
    );
    let decision = fast.assert_status(202).decision();
    assert_eq!(decision["services"], json!(["b"]), "{decision}");
    // ... once.
    let again = push(
        "docker.io",
        "myreg/acme/app",
        &three,
        "b-3-fast-2",
        "?deployment_profile=fast",
    );
    let decision = again.assert_status(200).decision();
    assert_eq!(decision["state"], "duplicate", "{decision}");
    let deploys = world.settle(20);
    assert_eq!(deploys.len(), 3, "{deploys:#?}");
    server.terminate();
}
