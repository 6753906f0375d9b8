//! Issue 12, points 3 and 4: replays and older commits, through a real
//! server. A delivery without a delivery id (Docker Hub, Quay, the legacy
//! Bitbucket POST service, a forwarded post-receive push) deploys once
//! however often it is replayed; an older commit does not deploy after a
//! newer one, even after a restart; a rollback and a manual trigger still
//! deploy.

use redeploy_host::journal::{DeployState, Journal};
use serde_json::{json, Value};

use crate::serve::{hook, sha, token, World};
use crate::support::{fixtures, hmac_sha256_hex, ServerProcess};

/// A stack following `main` of acme/web without secrets (the hook URL is
/// the credential), deploying with the stand-in.
fn web_stack() -> String {
    format!(
        r#"
[[stacks]]
name = "web"
repository = "acme/web"
branch = "main"
hook_token = "{t}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:web@" }}
"#,
        t = token(1)
    )
}

/// A GitHub push of `after` on top of `before` to `main` of acme/web.
fn push(before: &str, after: &str, forced: bool) -> Vec<u8> {
    json!({
        "ref": "refs/heads/main", "before": before, "after": after,
        "created": false, "deleted": false, "forced": forced,
        "repository": {"full_name": "acme/web", "clone_url": "https://github.com/acme/web.git"},
        "pusher": {"name": "alice"},
        "commits": [{"id": after, "message": "change", "added": [], "removed": [], "modified": ["app.py"]}],
        "head_commit": {"id": after, "message": "change"},
    })
    .to_string()
    .into_bytes()
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
    let (status, body) = deliver(&server, &push(&sha(0xa0), &sha(0xa), false), "push-a");
    assert_eq!(status, 202, "{body}");
    world.settle(20);
    let (status, body) = deliver(&server, &push(&sha(0xa), &sha(0xb), false), "push-b");
    assert_eq!(status, 202, "{body}");
    world.settle(20);
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
    let (status, body) = deliver(&server, &push(&sha(0xa), &sha(0xb), false), "push-b");
    assert_eq!(status, 202, "{body}");
    world.settle(20);
    server.terminate();
    let server = world.start(&[]);
    let (status, body) = deliver(&server, &push(&sha(0xa0), &sha(0xa), false), "push-a");
    assert_eq!(status, 200, "{body}");
    assert!(
        body["decisions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("the push that brought"),
        "{body}"
    );
    world.settle(20);
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
    let (status, body) = deliver(&server, &push(&sha(0xa), &sha(0xb), false), "push-b-again");
    assert_eq!(status, 200, "{body}");
    world.settle(20);
    assert_eq!(ran_commits(&world).len(), 3);
    server.terminate();
}

#[test]
fn a_manual_trigger_deploys_after_a_restart_whatever_was_deployed() {
    let (world, server) = deployed_a_then_b("replay-manual-after-restart");
    let r = server.post(&hook(1), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    world.settle(20);
    assert_eq!(ran_commits(&world), [sha(0xa), sha(0xb), String::new()]);
    server.terminate();
}

/// An image stack without secrets (registries cannot sign).
fn image_world(name: &str, image: &str, server_toml: &str) -> World {
    World::new(
        name,
        server_toml,
        &format!(
            r#"
[[stacks]]
name = "web"
image = "{image}"
hook_token = "{t}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:web@" }}
"#,
            t = token(1)
        ),
    )
}

/// Posts `body` twice: the first deploys, the second is a duplicate.
fn posted_twice_deploys_once(world: &World, headers: &[(&str, &str)], body: &[u8]) {
    let server = world.start(&[]);
    let first = server.post(&hook(1), headers, body);
    assert_eq!(first.status, 202, "{}", first.text());
    let second = server.post(&hook(1), headers, body);
    assert_eq!(second.status, 200, "{}", second.text());
    let decision = &second.json()["decisions"][0];
    assert_eq!(decision["state"], "duplicate", "{decision}");
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("was already accepted"),
        "{decision}"
    );
    assert_eq!(
        decision["deploy_id"],
        first.json()["decisions"][0]["deploy_id"]
    );
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
    let body = crate::support::fresh_docker_hub_push()
        .to_string()
        .into_bytes();
    posted_twice_deploys_once(&world, &[("Content-Type", "application/json")], &body);
}

#[test]
fn a_quay_body_posted_twice_deploys_once() {
    let world = image_world("replay-quay", "quay.io/mynamespace/repository", "");
    let body = std::fs::read(fixtures().join("quay/quaydocs-repo-push.json")).unwrap();
    posted_twice_deploys_once(&world, &[("Content-Type", "application/json")], &body);
}

#[test]
fn a_legacy_bitbucket_body_posted_twice_deploys_once() {
    let world = World::new(
        "replay-bitbucket-legacy",
        "",
        &format!(
            r#"
[[stacks]]
name = "web"
repository = "kolaszek/repository-name"
branch = "master"
hook_token = "{t}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:web@" }}
"#,
            t = token(1)
        ),
    );
    let payload =
        std::fs::read_to_string(fixtures().join("bitbucket-legacy-post/zulip-bitbucket_push.json"))
            .unwrap();
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", &payload)
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
    let body = std::fs::read(fixtures().join("quay/quaydocs-repo-push.json")).unwrap();
    let headers = [("Content-Type", "application/json")];
    let server = world.start(&[]);
    assert_eq!(server.post(&hook(1), &headers, &body).status, 202);
    assert_eq!(server.post(&hook(1), &headers, &body).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let again = server.post(&hook(1), &headers, &body);
    assert_eq!(again.status, 202, "{}", again.text());
    world.settle(20);
    assert_eq!(world.ran("web").len(), 2);
    let conn = rusqlite::Connection::open_with_flags(
        Journal::path_in(&world.dir.join("state")),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let keys: i64 = conn
        .query_row("SELECT COUNT(*) FROM replay_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(keys, 1, "the expired key was pruned");
    server.terminate();
}

#[test]
fn the_empty_manual_trigger_twice_deploys_twice() {
    let world = image_world("replay-manual-twice", "acme/web", "");
    let server = world.start(&[]);
    assert_eq!(server.post(&hook(1), &[], b"").status, 202);
    world.settle(20);
    let r = server.post(&hook(1), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    world.settle(20);
    assert_eq!(world.ran("web").len(), 2);
    server.terminate();
}

const SECRET: &str = "post-receive-s3cret";

/// Two stacks with one secret, following `main` of acme/web.
fn signed_world(name: &str) -> World {
    let mut stacks = String::new();
    for (n, label) in [(1, "web"), (2, "api")] {
        stacks.push_str(&format!(
            r#"
[[stacks]]
name = "{label}"
repository = "acme/web"
branch = "main"
secrets = ["{SECRET}"]
hook_token = "{t}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:{label}@" }}
"#,
            t = token(n)
        ));
    }
    World::new(name, "", &stacks)
}

fn forwarded_body() -> Vec<u8> {
    json!({"repository": "acme/web", "pusher": "alice",
        "updates": [{"old": sha(0xa), "new": sha(0xb), "name": "refs/heads/main"}]})
    .to_string()
    .into_bytes()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Forwards `body` to stack `n`'s post-receive route, signed for `stack`
/// at `timestamp` as `redeploy post-receive` signs it.
fn forward(
    server: &ServerProcess,
    n: u32,
    stack: &str,
    timestamp: u64,
    body: &[u8],
) -> crate::support::http::Response {
    let timestamp = timestamp.to_string();
    let signature = redeploy_host::server::sign_post_receive(SECRET, &timestamp, stack, body);
    server.post(
        &format!("{}/post-receive", hook(n)),
        &[
            ("Content-Type", "application/json"),
            ("X-Redeploy-Timestamp", &timestamp),
            ("X-Redeploy-Signature-256", &signature),
        ],
        body,
    )
}

#[test]
fn a_forwarded_post_receive_push_replayed_later_is_refused() {
    let world = signed_world("replay-forwarded-old");
    let server = world.start(&[]);
    let r = forward(&server, 1, "web", now_secs() - 600, &forwarded_body());
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "stale-signature");
    assert!(world.deploys().is_empty());
    server.terminate();
}

#[test]
fn the_same_forwarded_post_receive_push_twice_deploys_once() {
    let world = signed_world("replay-forwarded-twice");
    let server = world.start(&[]);
    let at = now_secs();
    let first = forward(&server, 1, "web", at, &forwarded_body());
    assert_eq!(first.status, 202, "{}", first.text());
    let second = forward(&server, 1, "web", at, &forwarded_body());
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.json()["decisions"][0]["state"], "duplicate");
    let deploys = world.settle(20);
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    server.terminate();
}

#[test]
fn a_forwarded_post_receive_push_signed_over_the_body_alone_is_refused() {
    // The signature before issue 12 covered only the body: a captured one
    // must not pass with any timestamp put beside it.
    let world = signed_world("replay-forwarded-body-only");
    let server = world.start(&[]);
    let body = forwarded_body();
    let r = server.post(
        &format!("{}/post-receive", hook(1)),
        &[
            ("Content-Type", "application/json"),
            ("X-Redeploy-Timestamp", &now_secs().to_string()),
            (
                "X-Redeploy-Signature-256",
                &format!("sha256={}", hmac_sha256_hex(SECRET, &body)),
            ),
        ],
        &body,
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "bad-signature");
    assert!(world.deploys().is_empty());
    server.terminate();
}

#[test]
fn a_forwarded_post_receive_push_signed_for_another_stack_is_refused() {
    // Both stacks share the secret: a push signed for "web" is sent to "api".
    let world = signed_world("replay-forwarded-other-stack");
    let server = world.start(&[]);
    let r = forward(&server, 2, "web", now_secs(), &forwarded_body());
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "bad-signature");
    assert!(world.deploys().is_empty());
    server.terminate();
}
