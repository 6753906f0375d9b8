//! Webhook bodies and deliveries: GitHub pushes (signed or not), vendored
//! fixtures sent with their recorded headers, Docker Hub pushes.

use serde_json::{json, Value};

use super::{fixture, fixtures, http, now_secs, sig, ServerProcess};

/// The `n`th test commit: `n` as 40 hex digits.
pub fn sha(n: usize) -> String {
    format!("{n:040x}")
}

/// A GitHub push event of `after` on top of `before` to `git_ref` of
/// acme/web, by alice, not forced.
pub fn push_json(git_ref: &str, before: &str, after: &str) -> Value {
    json!({
        "ref": git_ref,
        "before": before,
        "after": after,
        "created": false, "deleted": false, "forced": false,
        "repository": {"full_name": "acme/web", "clone_url": "https://github.com/acme/web.git"},
        "pusher": {"name": "alice"},
        "commits": [{"id": after, "message": "change", "added": [], "removed": [], "modified": ["app.py"]}],
        "head_commit": {"id": after, "message": "change"},
    })
}

/// A GitHub push body for `sha` on `main` of acme/web. Its `before` is a
/// commit no test deploys (the journal orders commits by that chain).
pub fn push_body(sha: &str) -> Vec<u8> {
    push_json("refs/heads/main", &"beef".repeat(10), sha)
        .to_string()
        .into_bytes()
}

/// POSTs a GitHub `event` delivery of `body` to `path`, JSON, signed with
/// `secret` in `X-Hub-Signature-256`.
pub fn signed_github(
    server: &ServerProcess,
    path: &str,
    secret: &str,
    (event, delivery): (&str, &str),
    body: &[u8],
) -> http::Response {
    let sig = sig(secret, body);
    server.post(
        path,
        &[
            ("X-GitHub-Event", event),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        body,
    )
}

/// POSTs a signed GitHub push of `sha` ([`push_body`]) to `hook`.
pub fn signed_push(
    server: &ServerProcess,
    hook: &str,
    secret: &str,
    sha: &str,
    delivery: &str,
) -> http::Response {
    signed_github(server, hook, secret, ("push", delivery), &push_body(sha))
}

/// The headers recorded beside a fixture (`<name>.headers`).
pub fn fixture_headers(path: &str) -> Vec<(String, String)> {
    redeploy_host::headers::read_headers(&fixtures().join(path)).unwrap()
}

/// Borrows owned header pairs as the HTTP client takes them.
pub fn borrowed(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// POSTs the fixture `<name>.json` with its recorded `<name>.headers`,
/// the body changed by `tamper` first.
pub fn post_fixture_with(
    server: &ServerProcess,
    hook: &str,
    name: &str,
    tamper: impl FnOnce(&mut Vec<u8>),
) -> http::Response {
    let mut body = fixture(&format!("{name}.json"));
    tamper(&mut body);
    let headers = fixture_headers(&format!("{name}.headers"));
    server.post(hook, &borrowed(&headers), &body)
}

/// POSTs the fixture `<name>.json` with its recorded `<name>.headers`.
pub fn post_fixture(server: &ServerProcess, hook: &str, name: &str) -> http::Response {
    post_fixture_with(server, hook, name, |_| {})
}

/// The deliveries the poller made (provider `poll`), oldest first.
pub fn polled(world: &super::World) -> Vec<redeploy_host::journal::DeliveryRecord> {
    let mut all = world.journal().deliveries(1000).unwrap();
    all.retain(|d| d.recorded.provider.as_deref() == Some("poll"));
    all.reverse();
    all
}

/// The first decision of a recorded delivery's answer.
pub fn decision(d: &redeploy_host::journal::DeliveryRecord) -> Value {
    let summary: Value = serde_json::from_str(&d.recorded.summary).unwrap();
    summary["decisions"][0].clone()
}

/// Docker Hub's documented webhook payload with `push_data.pushed_at` set to
/// now: the fixture's own time (2014) is far older than the server's
/// `max_event_age`, and a stale event is refused.
pub fn fresh_docker_hub_push() -> Value {
    let mut body: Value =
        serde_json::from_slice(&fixture("dockerhub/dockerdocs-webhook-example.json")).unwrap();
    body["push_data"]["pushed_at"] = json!(now_secs());
    body
}
