//! Polling registries for new image digests (`[stacks.poll]` on a stack
//! following an image, issue 17): a real `redeploy serve` asks a loopback
//! stand-in of the Distribution API for a tag's manifest digest, while the
//! test pushes new manifests to it between looks.
//!
//! The stand-in is written from the published specifications:
//! - the OCI distribution specification, "Pulling manifests" and "Checking
//!   if content exists in the registry" (`HEAD /v2/<name>/manifests/<tag>`,
//!   `Accept` listing the manifest types the client takes, `200` with
//!   `Content-Type`, `Content-Length` and `Docker-Content-Digest`, `404`
//!   for an unknown tag): <https://github.com/opencontainers/distribution-spec/blob/main/spec.md>;
//! - the Distribution token authentication specification (a `401` with
//!   `WWW-Authenticate: Bearer realm=...,service=...,scope=...`, a `GET` of
//!   the realm with `service` and `scope`, Basic credentials checked by the
//!   token server, `{"token": ..., "expires_in": ...}`, the request retried
//!   with `Authorization: Bearer`):
//!   <https://distribution.github.io/distribution/spec/auth/token/>;
//! - Docker Hub's `429` with `Retry-After` when a client is over its pull
//!   rate limit: <https://docs.docker.com/docker-hub/usage/pulls/>.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine as _;
use redeploy_host::journal::DeployState;
use serde_json::json;
use sha2::Digest as _;

use crate::support::cli::{stderr, stdout};
use crate::support::deliveries::{decision, fixture_headers, polled};
use crate::support::stacks::toml;
use crate::support::{wait_for, Stack, World};

/// The `service` the stand-in's challenge names and its token server
/// checks.
const SERVICE: &str = "registry.standin.test";

/// How long the stand-in's tokens live (`expires_in`): longer than a test,
/// so a poller that keeps its token asks the token server once.
const TOKEN_LIFETIME_SECS: u64 = 600;

/// The manifest types a poller must accept (OCI and Docker, images and
/// indexes).
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// `[stacks.poll]` asking every second, with its extra `lines`.
fn polling(lines: &str) -> String {
    format!("[stacks.poll]\nevery = \"1s\"\ntimeout = \"5s\"\n{lines}")
}

/// One request the stand-in received.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    status: u16,
}

/// The stand-in's state.
struct State {
    base: String,
    /// Basic credentials the token server wants, if any.
    credentials: Option<(String, String)>,
    /// Manifests by `name:tag`.
    manifests: HashMap<String, Vec<u8>>,
    /// Repositories whose `HEAD` answers carry no `Docker-Content-Digest`.
    without_digest: HashSet<String>,
    /// Tokens issued: token -> repository it grants pull on.
    tokens: HashMap<String, String>,
    issued: u64,
    /// `429` answers still to give, and their `Retry-After` (seconds).
    rate_limited: Option<(usize, u64)>,
    requests: Vec<Seen>,
    violations: Vec<String>,
}

/// A loopback stand-in of a registry and its token server.
struct Registry {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A manifest whose content is `n`: distinct bytes, a distinct digest.
fn manifest(n: u32) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPES[1],
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{}", hex::encode(sha2::Sha256::digest(n.to_string()))),
            "size": 2,
        },
        "layers": [],
    })
    .to_string()
    .into_bytes()
}

/// The digest of `bytes`.
fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

impl Registry {
    /// Starts the stand-in; its token server wants `credentials` (user,
    /// password) as HTTP Basic, or none (anonymous pulls, as Docker Hub's
    /// public images).
    fn start(credentials: Option<(&str, &str)>) -> Registry {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State {
            base: format!("http://127.0.0.1:{port}"),
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            manifests: HashMap::new(),
            without_digest: HashSet::new(),
            tokens: HashMap::new(),
            issued: 0,
            rate_limited: None,
            requests: Vec::new(),
            violations: Vec::new(),
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::select! {
                    r = axum::serve(listener, app) => r.unwrap(),
                    _ = stopped => {}
                }
            });
        });
        Registry {
            port,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Pushes `body` as `name:tag`; its digest.
    fn push(&self, name: &str, tag: &str, body: Vec<u8>) -> String {
        let d = digest(&body);
        self.lock().manifests.insert(format!("{name}:{tag}"), body);
        d
    }

    /// The image reference of `name:tag` on this registry.
    fn image(&self, name: &str, tag: &str) -> String {
        format!("127.0.0.1:{}/{name}:{tag}", self.port)
    }

    /// Answers the next `answers` manifest requests `429` with
    /// `Retry-After: secs`.
    fn rate_limit(&self, answers: usize, secs: u64) {
        self.lock().rate_limited = Some((answers, secs));
    }

    /// Every request so far.
    fn requests(&self) -> Vec<Seen> {
        self.lock().requests.clone()
    }

    /// The manifest requests so far.
    fn manifest_requests(&self) -> Vec<Seen> {
        let mut seen = self.requests();
        seen.retain(|s| s.path.contains("/manifests/"));
        seen
    }

    /// The token requests so far.
    fn token_requests(&self) -> Vec<Seen> {
        let mut seen = self.requests();
        seen.retain(|s| s.path == "/token");
        seen
    }

    /// Every token issued.
    fn issued_tokens(&self) -> Vec<String> {
        self.lock().tokens.keys().cloned().collect()
    }

    /// What broke the specifications: must stay empty.
    fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Waits until the stand-in has answered `n` more manifest requests
    /// than `since`.
    fn wait_looks(&self, since: usize, n: usize) {
        wait_for(30, &format!("{n} more looks at the registry"), || {
            (self.manifest_requests().len() >= since + n).then_some(())
        });
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer(status: u16, headers: &[(&str, String)], body: Vec<u8>) -> Response {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Body::from(body)).unwrap()
}

fn error_body(code: &str, message: &str) -> Vec<u8> {
    json!({"errors": [{"code": code, "message": message, "detail": null}]})
        .to_string()
        .into_bytes()
}

async fn handle(
    AxumState(state): AxumState<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = serve(&mut st, &method, &uri, &headers, authorization.as_deref());
    st.requests.push(Seen {
        at: Instant::now(),
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        authorization,
        status: response.status().as_u16(),
    });
    response
}

fn serve(
    st: &mut State,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    authorization: Option<&str>,
) -> Response {
    let path = uri.path();
    if path == "/token" {
        return token(st, method, uri, authorization);
    }
    let Some((name, tag)) = path
        .strip_prefix("/v2/")
        .and_then(|rest| rest.split_once("/manifests/"))
    else {
        st.violations
            .push(format!("{method} {path}: not a path polling asks"));
        return answer(404, &[], Vec::new());
    };
    if method != Method::HEAD && method != Method::GET {
        st.violations
            .push(format!("{method} {path}: polling only reads"));
        return answer(405, &[], Vec::new());
    }
    // The client SHOULD list the manifest types it takes; a poller that
    // does not would be served whatever the registry prefers.
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let listed: Vec<&str> = accept.split(',').map(|t| t.trim()).collect();
    if let Some(missing) = MANIFEST_TYPES.iter().find(|t| !listed.contains(t)) {
        st.violations.push(format!(
            "{method} {path}: Accept {accept:?} lacks {missing}"
        ));
        return answer(400, &[], Vec::new());
    }
    if let Some((left, secs)) = st.rate_limited {
        st.rate_limited = (left > 1).then_some((left - 1, secs));
        return answer(
            429,
            &[
                ("retry-after", secs.to_string()),
                ("content-type", "application/json".into()),
            ],
            error_body("TOOMANYREQUESTS", "You have reached your pull rate limit."),
        );
    }
    let granted = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| st.tokens.get(t));
    if granted.map(String::as_str) != Some(name) {
        let challenge = format!(
            "Bearer realm=\"{}/token\",service=\"{SERVICE}\",scope=\"repository:{name}:pull\"",
            st.base
        );
        return answer(
            401,
            &[
                ("www-authenticate", challenge),
                ("content-type", "application/json".into()),
            ],
            error_body("UNAUTHORIZED", "authentication required"),
        );
    }
    let Some(body) = st.manifests.get(&format!("{name}:{tag}")).cloned() else {
        return answer(
            404,
            &[("content-type", "application/json".into())],
            error_body("MANIFEST_UNKNOWN", "manifest unknown"),
        );
    };
    let mut reply = vec![
        ("content-type", MANIFEST_TYPES[1].to_owned()),
        ("content-length", body.len().to_string()),
        ("docker-distribution-api-version", "registry/2.0".to_owned()),
    ];
    if !st.without_digest.contains(name) {
        reply.push(("docker-content-digest", digest(&body)));
    }
    let body = if method == Method::HEAD {
        Vec::new()
    } else {
        body
    };
    answer(200, &reply, body)
}

/// The token server: `GET /token?service=...&scope=repository:<name>:pull`.
fn token(st: &mut State, method: &Method, uri: &Uri, authorization: Option<&str>) -> Response {
    if method != Method::GET {
        st.violations.push(format!(
            "{method} /token: the token server is asked with GET"
        ));
        return answer(405, &[], Vec::new());
    }
    let query: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if query.get("service").map(String::as_str) != Some(SERVICE) {
        st.violations.push(format!(
            "/token: service {:?}, not the challenge's",
            query.get("service")
        ));
        return answer(400, &[], Vec::new());
    }
    let Some(name) = query
        .get("scope")
        .and_then(|s| s.strip_prefix("repository:"))
        .and_then(|s| s.strip_suffix(":pull"))
        .map(str::to_owned)
    else {
        st.violations.push(format!(
            "/token: scope {:?}, not the challenge's",
            query.get("scope")
        ));
        return answer(400, &[], Vec::new());
    };
    if let Some((user, password)) = &st.credentials {
        let wanted = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        if authorization != Some(wanted.as_str()) {
            return answer(
                401,
                &[("www-authenticate", "Basic realm=\"token server\"".into())],
                error_body("UNAUTHORIZED", "incorrect username or password"),
            );
        }
    }
    st.issued += 1;
    let token = format!("standin-bearer-{}-{}", st.issued, name.replace('/', "-"));
    st.tokens.insert(token.clone(), name);
    answer(
        200,
        &[("content-type", "application/json".into())],
        json!({"token": token, "expires_in": TOKEN_LIFETIME_SECS})
            .to_string()
            .into_bytes(),
    )
}

/// Waits until the journal remembers a successful look at `source` of
/// `stack` that saw `digest`.
fn seen(world: &World, stack: &str, source: &str, digest: &str) {
    wait_for(30, &format!("a poll of {source} seeing {digest}"), || {
        let s = world.journal().poll_source(stack, source).unwrap()?;
        s.tips_json.filter(|t| t.contains(digest)).map(|_| ())
    });
}

#[test]
fn a_new_digest_deploys_once_an_unchanged_one_never_and_nothing_at_start() {
    let registry = Registry::start(None);
    let first = registry.push("team/app", "latest", manifest(1));
    let api_first = registry.push("team/api", "v1", manifest(10));
    // A registry that sends no Docker-Content-Digest: the manifest is read.
    registry.lock().without_digest.insert("team/api".into());
    let image = registry.image("team/app", "latest");
    let api_image = registry.image("team/api", "v1");
    let stacks = [
        Stack::image("web", &image, 1).table(&polling("")),
        Stack::image("api", &api_image, 2).table(&polling("")),
    ];
    let world = World::new("poll-registry", "", &toml(&stacks));
    let server = world.start(&[]);

    // The first look only records the digest.
    seen(&world, "web", &image, &first);
    seen(&world, "api", &api_image, &api_first);
    // Several looks at an unchanged digest deploy nothing.
    registry.wait_looks(registry.manifest_requests().len(), 8);
    assert_eq!(world.deploys().len(), 0, "nothing deploys at start");
    assert_eq!(
        polled(&world).len(),
        0,
        "no delivery for an unchanged digest"
    );

    // A new digest deploys, once.
    let second = registry.push("team/app", "latest", manifest(2));
    let api_second = registry.push("team/api", "v1", manifest(11));
    seen(&world, "web", &image, &second);
    seen(&world, "api", &api_image, &api_second);
    registry.wait_looks(registry.manifest_requests().len(), 6);
    let deploys = world.settle(30);
    let stacks: Vec<&str> = deploys.iter().map(|d| d.queued.stack.as_str()).collect();
    assert_eq!(stacks.len(), 2, "{deploys:?}");
    crate::support::world::assert_all_succeeded(&deploys);
    let web = deploys.iter().find(|d| d.queued.stack == "web").unwrap();
    assert_eq!(web.queued.provider, "poll");
    world.assert_env(
        "web",
        web.id,
        &[
            ("REDEPLOY_IMAGE", image.as_str()),
            ("REDEPLOY_PROVIDER", "poll"),
        ],
    );
    // The deploy event names the image and tag polled, and the digest.
    let event: serde_json::Value = serde_json::from_str(&web.queued.event_json).unwrap();
    assert_eq!(event["image"], image.as_str(), "{event}");
    assert_eq!(event["provider"], "poll", "{event}");
    assert!(
        event["reason"].as_str().unwrap().contains(&second),
        "{event}"
    );
    let api = deploys.iter().find(|d| d.queued.stack == "api").unwrap();
    assert!(
        api.queued.event_json.contains(&api_second),
        "{}",
        api.queued.event_json
    );
    assert_eq!(polled(&world).len(), 2);

    // The token handshake: anonymous, once per source (the token is kept
    // while it lives), and every look after it carries the token.
    let tokens = registry.token_requests();
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert!(
        tokens.iter().all(|t| t.authorization.is_none()),
        "{tokens:?}"
    );
    assert!(tokens
        .iter()
        .any(|t| t.query.contains("scope=repository%3Ateam%2Fapp%3Apull")));
    let unauthorized = registry
        .manifest_requests()
        .iter()
        .filter(|s| s.status == 401)
        .count();
    assert_eq!(unauthorized, 2, "one challenge per source");
    let gets: Vec<Seen> = registry
        .manifest_requests()
        .into_iter()
        .filter(|s| s.method == "GET")
        .collect();
    assert!(
        gets.iter().all(|s| s.path == "/v2/team/api/manifests/v1"),
        "a manifest is read only where the digest header is missing: {gets:?}"
    );
    assert!(!gets.is_empty());
    server.terminate();

    // Pushed while the server was down: deployed at the first look after
    // the restart, once.
    let third = registry.push("team/app", "latest", manifest(3));
    let server = world.start(&[]);
    seen(&world, "web", &image, &third);
    registry.wait_looks(registry.manifest_requests().len(), 4);
    let deploys = world.settle(30);
    let web: Vec<&str> = deploys
        .iter()
        .filter(|d| d.queued.stack == "web")
        .map(|d| d.queued.event_json.as_str())
        .collect();
    assert_eq!(web.len(), 2, "{deploys:?}");
    assert!(web[1].contains(&third), "{}", web[1]);
    crate::support::world::assert_all_succeeded(&deploys);
    assert_eq!(deploys.len(), 3);
    server.terminate();
    assert_eq!(registry.violations(), Vec::<String>::new());
    for d in &deploys {
        assert_eq!(d.state, DeployState::Succeeded);
    }
}

/// Azure Container Registry's documented push event (a Distribution-style
/// notification) of `hello-world:v1`, as this stand-in's registry would
/// send it: its `request.host` is the stand-in's, its time now (the
/// fixture's 2023 is older than the server's `max_event_age`), and its own
/// `target.digest` is the documentation's placeholder, not the pushed one.
fn acr_push(registry: &Registry, id: &str) -> Vec<u8> {
    let mut body: serde_json::Value = serde_json::from_slice(&crate::support::fixture(
        "distribution/azuredocs-acr-push.json",
    ))
    .unwrap();
    body["id"] = json!(id);
    body["request"]["host"] = json!(format!("127.0.0.1:{}", registry.port));
    body["timestamp"] =
        json!(humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string());
    body.to_string().into_bytes()
}

#[test]
fn an_image_seen_by_its_registrys_webhook_and_by_the_poll_deploys_once() {
    let registry = Registry::start(None);
    let first = registry.push("hello-world", "v1", manifest(1));
    let image = registry.image("hello-world", "v1");
    let stacks = [Stack::image("web", &image, 1).table(&polling(""))];
    let world = World::new("poll-and-registry-hook", "", &toml(&stacks));
    let server = world.start(&[]);
    seen(&world, "web", &image, &first);
    let headers = fixture_headers("distribution/azuredocs-acr-push.headers");
    let headers = crate::support::deliveries::borrowed(&headers);
    let hook = crate::support::hook(1);

    // A push, and its registry's webhook at once: whichever of the webhook
    // and the poll comes first deploys the digest, the other is a
    // duplicate of that deploy.
    let second = registry.push("hello-world", "v1", manifest(2));
    let r = server.post(&hook, &headers, &acr_push(&registry, "push-2"));
    assert!(matches!(r.status, 200 | 202), "{}", r.text());
    seen(&world, "web", &image, &second);
    registry.wait_looks(registry.manifest_requests().len(), 3);
    let deploys = world.settle(30);
    assert_eq!(
        deploys.len(),
        1,
        "one digest, one deploy: {deploys:?}\n{}",
        world.server_log()
    );
    let answers: Vec<serde_json::Value> = polled(&world)
        .iter()
        .map(decision)
        .chain(std::iter::once(r.json()["decisions"][0].clone()))
        .collect();
    assert_eq!(answers.len(), 2, "{answers:?}");
    let duplicate: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|a| a["state"] == "duplicate")
        .collect();
    assert_eq!(duplicate.len(), 1, "{answers:?}");
    let reason = duplicate[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{second} is already deploy #{}", deploys[0].id)),
        "{reason}"
    );

    // The poll sees the next digest first; the webhook that comes after it
    // deploys nothing more: the registry says the tag is at that digest.
    let third = registry.push("hello-world", "v1", manifest(3));
    seen(&world, "web", &image, &third);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    assert_eq!(deploys[1].queued.provider, "poll");
    let r = server.post(&hook, &headers, &acr_push(&registry, "push-3"));
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = &r.json()["decisions"][0];
    assert_eq!(answer["state"], "duplicate", "{answer}");
    assert_eq!(answer["deploy_id"], deploys[1].id, "{answer}");
    assert!(
        answer["reason"].as_str().unwrap().contains(&third),
        "{answer}"
    );

    // A webhook of a tag the registry has moved on from (the pushed image
    // is the same again, as after a rollback of the tag): a new digest for
    // the stack, which deploys.
    let back = registry.push("hello-world", "v1", manifest(1));
    assert_eq!(back, first);
    let r = server.post(&hook, &headers, &acr_push(&registry, "push-4"));
    assert!(matches!(r.status, 200 | 202), "{}", r.text());
    seen(&world, "web", &image, &first);
    registry.wait_looks(registry.manifest_requests().len(), 3);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 3, "{deploys:?}");
    crate::support::world::assert_all_succeeded(&deploys);
    server.terminate();
    assert_eq!(registry.violations(), Vec::<String>::new());
}

/// [`acr_push`] of `hello-world` by digest alone (no `tag`): a
/// Distribution registry's per-platform manifest, whose deploy runs
/// exactly that digest.
fn acr_push_by_digest(registry: &Registry, id: &str, digest: &str) -> Vec<u8> {
    let mut body: serde_json::Value = serde_json::from_slice(&acr_push(registry, id)).unwrap();
    body["target"]["digest"] = json!(digest);
    body["target"].as_object_mut().unwrap().remove("tag");
    body.to_string().into_bytes()
}

/// A stack following an image untagged and polling its `latest` tag: a
/// push by digest alone deploys that digest, and a deploy of the polled
/// tag (its webhook's, as the registry says the tag points to) moves the
/// image on, so the earlier digest's push sent again deploys nothing, with
/// the unsigned query changed too (a rollback by delivery).
#[test]
fn a_polled_tags_deploy_moves_an_image_pushed_by_digest_on() {
    let registry = Registry::start(None);
    let first = registry.push("hello-world", "latest", manifest(1));
    let untagged = format!("127.0.0.1:{}/hello-world", registry.port);
    let stacks = [Stack::image("web", &untagged, 1).table(&format!(
        "{}[stacks.profiles.fast]\nenv = {{ FAST = \"1\" }}\n",
        polling("")
    ))];
    let world = World::new("poll-tag-moves-pinned", "", &toml(&stacks));
    let server = world.start(&[]);
    let source = registry.image("hello-world", "latest");
    seen(&world, "web", &source, &first);
    let headers = fixture_headers("distribution/azuredocs-acr-push.headers");
    let headers = crate::support::deliveries::borrowed(&headers);
    let hook = crate::support::hook(1);

    // A platform's manifest pushed by digest alone deploys that digest.
    let pinned = digest(&manifest(2));
    let r = server.post(
        &hook,
        &headers,
        &acr_push_by_digest(&registry, "pin-1", &pinned),
    );
    let decision = r.assert_status(202).decision();
    let pinned_id = decision["deploy_id"].as_i64().unwrap();
    world.settle(30);

    // The tag moves, and its webhook deploys it: the registry says which
    // digest (the poll then has nothing to add).
    let moved = registry.push("hello-world", "latest", manifest(3));
    let mut tag_push: serde_json::Value =
        serde_json::from_slice(&acr_push(&registry, "tag-1")).unwrap();
    tag_push["target"]["tag"] = json!("latest");
    let r = server.post(&hook, &headers, tag_push.to_string().as_bytes());
    r.assert_status(202);
    seen(&world, "web", &source, &moved);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 2, "{deploys:?}\n{}", world.server_log());
    let event: serde_json::Value = serde_json::from_str(&deploys[1].queued.event_json).unwrap();
    assert_eq!(event["image"], format!("{source}"), "{event}");

    // The digest pushed before, sent again under a new id with a profile
    // none of its deploys had: a duplicate of its deploy, no rollback.
    for (id, query) in [
        ("pin-1-again", ""),
        ("pin-1-fast", "?deployment_profile=fast"),
    ] {
        let r = server.post(
            &format!("{hook}{query}"),
            &headers,
            &acr_push_by_digest(&registry, id, &pinned),
        );
        let decision = r.assert_status(200).decision();
        assert_eq!(decision["state"], "duplicate", "{id}: {decision}");
        assert_eq!(
            decision["deploy_id"].as_i64(),
            Some(pinned_id),
            "{id}: {decision}"
        );
    }
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    crate::support::world::assert_all_succeeded(&deploys);
    server.terminate();
    assert_eq!(registry.violations(), Vec::<String>::new());
}

#[test]
fn the_token_handshake_sends_the_credentials_and_nothing_else_holds_them() {
    const TOKEN: &str = "dckr_pat_poll-s3cret-registry-token";
    let registry = Registry::start(Some(("alice", TOKEN)));
    let first = registry.push("team/app", "latest", manifest(1));
    let image = registry.image("team/app", "latest");
    let with_token = |file: &str| {
        polling(&format!(
            "username = \"alice\"\ntoken_file = \"@DIR@/{file}\"\n"
        ))
    };
    let stacks = [
        Stack::image("web", &image, 1).table(&with_token("registry-token")),
        Stack::image("denied", &image, 2).table(&with_token("wrong-token")),
    ];
    let world = World::new("poll-registry-token", "", &toml(&stacks));
    std::fs::write(world.dir.join("registry-token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(world.dir.join("wrong-token"), "not-the-token\n").unwrap();
    let server = world.start(&[]);

    seen(&world, "web", &image, &first);
    let second = registry.push("team/app", "latest", manifest(2));
    seen(&world, "web", &image, &second);
    wait_for(30, "the wrong credentials failing three times", || {
        let s = world.journal().poll_source("denied", &image).unwrap()?;
        (s.failures >= 3).then_some(())
    });
    let deploys = world.settle(30);
    let stacks: Vec<&str> = deploys.iter().map(|d| d.queued.stack.as_str()).collect();
    assert_eq!(
        stacks,
        ["web"],
        "only the stack whose credentials work deploys"
    );
    let denied = world
        .journal()
        .poll_source("denied", &image)
        .unwrap()
        .unwrap();
    assert_eq!(denied.tips_json, None);
    let error = denied.error.unwrap();
    assert!(error.contains("refused the credentials"), "{error}");
    let log = server.log_text();
    assert_eq!(log.matches("polling failed").count(), 1, "{log}");

    // The token server got the credentials as HTTP Basic...
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("alice:{TOKEN}"));
    let tokens = registry.token_requests();
    assert!(
        tokens.iter().any(
            |t| t.authorization.as_deref() == Some(&format!("Basic {basic}")) && t.status == 200
        ),
        "{tokens:?}"
    );
    // ...the registry only bearer tokens, never the credentials...
    for look in registry.manifest_requests() {
        if let Some(a) = &look.authorization {
            assert!(a.starts_with("Bearer standin-bearer-"), "{look:?}");
        }
    }
    // ...and nothing else holds the credentials or the tokens.
    let history = stdout(&world.redeploy(&["history"]));
    assert!(history.contains(&image), "{history}");
    let dry_run = world.redeploy(&["poll", "web"]);
    assert!(dry_run.status.success(), "{}", stderr(&dry_run));
    let metrics = server.get("/metrics").text();
    server.terminate();
    let mut places = vec![
        (
            "the server's log",
            std::fs::read(world.dir.join("server.log")).unwrap(),
        ),
        ("history", history.into_bytes()),
        ("redeploy poll", [dry_run.stdout, dry_run.stderr].concat()),
        ("/metrics", metrics.into_bytes()),
    ];
    for entry in std::fs::read_dir(world.dir.join("state")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            places.push(("the state directory", std::fs::read(&path).unwrap()));
        }
    }
    let issued = registry.issued_tokens();
    assert!(!issued.is_empty());
    for (place, bytes) in places {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(TOKEN) && !text.contains(&basic),
            "the credentials in {place}: {text}"
        );
        for token in &issued {
            assert!(
                !text.contains(token.as_str()),
                "a bearer token in {place}: {text}"
            );
        }
    }
    assert_eq!(registry.violations(), Vec::<String>::new());
}

#[test]
fn a_registry_answering_429_is_left_alone_for_retry_after_and_polled_again_after() {
    const RETRY_AFTER: u64 = 5;
    let registry = Registry::start(None);
    let first = registry.push("team/app", "latest", manifest(1));
    let image = registry.image("team/app", "latest");
    let stacks = [Stack::image("web", &image, 1).table(&polling(""))];
    let world = World::new("poll-registry-429", "", &toml(&stacks));
    let server = world.start(&[]);
    seen(&world, "web", &image, &first);

    // Over the limit: two looks answered 429, and a new digest meanwhile.
    registry.rate_limit(2, RETRY_AFTER);
    let second = registry.push("team/app", "latest", manifest(2));
    wait_for(30, "two rate-limited looks", || {
        let s = world.journal().poll_source("web", &image).unwrap()?;
        (s.failures >= 2).then_some(())
    });
    assert_eq!(world.deploys().len(), 0, "nothing deploys while limited");
    // The metrics are set just after the journal records the failure: the
    // gauge itself is waited for (well within Retry-After, before the next
    // look could reset it).
    let gauge = format!("redeploy_poll_failures_in_a_row{{stack=\"web\",source=\"{image}\"}} 2");
    let counter = "redeploy_polls_total{stack=\"web\",outcome=\"failed\"} 2";
    let deadline = Instant::now() + Duration::from_secs(RETRY_AFTER - 1);
    let metrics = loop {
        let metrics = server.get("/metrics").text();
        if (metrics.contains(&gauge) && metrics.contains(counter)) || Instant::now() >= deadline {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(metrics.contains(&gauge), "{metrics}");
    assert!(metrics.contains(counter), "{metrics}");
    let history = stdout(&world.redeploy(&["history", "web"]));
    let row = history
        .lines()
        .find(|l| l.contains(&image))
        .unwrap_or_else(|| panic!("{history}"));
    assert!(row.contains("429"), "{row}");

    // Polling resumes once the limit is over, and the new digest deploys.
    seen(&world, "web", &image, &second);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert!(deploys[0].queued.event_json.contains(&second));
    wait_for(10, "the log saying polling works again", || {
        server
            .log_text()
            .contains("polling works again")
            .then_some(())
    });
    let log = server.log_text();
    assert_eq!(
        log.matches("polling failed").count(),
        1,
        "logged once: {log}"
    );
    assert!(log.contains("429"), "{log}");

    // The registry was not asked again before Retry-After had passed.
    let looks = registry.manifest_requests();
    let limited: Vec<usize> = (0..looks.len())
        .filter(|&i| looks[i].status == 429)
        .collect();
    assert_eq!(limited.len(), 2, "{looks:?}");
    for i in limited {
        let next = looks
            .get(i + 1)
            .unwrap_or_else(|| panic!("no look after a 429: {looks:?}"));
        let waited = next.at.duration_since(looks[i].at);
        assert!(
            waited >= Duration::from_secs(RETRY_AFTER),
            "asked again {waited:?} after a 429 with Retry-After: {RETRY_AFTER}"
        );
    }
    server.terminate();
    assert_eq!(registry.violations(), Vec::<String>::new());
}

#[test]
fn redeploy_poll_shows_an_image_source_and_a_pinned_image_is_refused() {
    let registry = Registry::start(None);
    let first = registry.push("team/app", "latest", manifest(1));
    let image = registry.image("team/app", "latest");
    let repository = image.trim_end_matches(":latest");
    // A port nothing listens on.
    let down = crate::support::free_port();
    let stacks = [
        Stack::image("web", &image, 1).table(&polling("")),
        Stack::image("gone", &registry.image("team/gone", "v9"), 2).table(&polling("")),
        Stack::image("down", &format!("127.0.0.1:{down}/team/app"), 3).table(&polling("")),
    ];
    let world = World::new("poll-registry-cli", "", &toml(&stacks));

    // Never polled: what the server's first look would record.
    let out = world.redeploy(&["poll", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("{image} ({repository})")), "{text}");
    assert!(
        text.contains(&format!("latest: digest now {first}")),
        "{text}"
    );
    assert!(text.contains("never polled"), "{text}");

    // After the server's first look, a push: what would deploy.
    let server = world.start(&[]);
    seen(&world, "web", &image, &first);
    server.terminate();
    let second = registry.push("team/app", "latest", manifest(2));
    let out = world.redeploy(&["poll", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("last poll "), "{text}");
    assert!(
        text.contains(&format!("latest: digest now {second}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("latest: remembered {first}")),
        "{text}"
    );
    let line = text
        .lines()
        .find(|l| l.contains(" -> "))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.trim_start().starts_with(&format!(
            "latest {} -> {}: deploy",
            &first[..19],
            &second[..19]
        )),
        "{text}"
    );
    // A dry run: nothing deployed, nothing recorded.
    assert_eq!(world.deploys().len(), 0);
    let source = world.journal().poll_source("web", &image).unwrap().unwrap();
    assert!(!source.tips_json.unwrap().contains(&second));

    // An unknown tag: exit 2, and why.
    let out = world.redeploy(&["poll", "gone"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("cannot poll: team/gone:v9 is not in the registry (404)"),
        "{}",
        stdout(&out)
    );
    // A registry that cannot be reached: exit 2, and why.
    let out = world.redeploy(&["poll", "down"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains(&format!("cannot poll: cannot reach 127.0.0.1:{down}: ")),
        "{}",
        stdout(&out)
    );

    // A pinned image cannot be polled: the configuration says so.
    let pinned = format!("{repository}@{first}");
    let world = World::new(
        "poll-registry-pinned",
        "",
        &toml(&[Stack::image("web", &pinned, 1).table(&polling(""))]),
    );
    let out = world.redeploy(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let why = stderr(&out);
    assert!(
        why.contains("pinned by digest") && why.contains("cannot be polled"),
        "{why}"
    );
    assert_eq!(registry.violations(), Vec::<String>::new());
}

#[test]
fn the_token_goes_only_to_the_registries_token_hosts_lists() {
    const TOKEN: &str = "ghp_poll-s3cret-for-one-registry-only";
    // Both stand-ins are 127.0.0.1: `token_hosts` tells them apart by port.
    let private = Registry::start(Some(("alice", TOKEN)));
    let public = Registry::start(None);
    let app_first = private.push("team/app", "latest", manifest(1));
    let proxy_first = public.push("library/proxy", "stable", manifest(20));
    let app = private.image("team/app", "latest");
    let proxy = public.image("library/proxy", "stable");
    let stack = |name: &str, n: u32, token_hosts: &str| {
        Stack::new(name)
            .token(n)
            .standin()
            .table(&format!(
                "[[stacks.services]]\nname = \"app\"\nimage = {app:?}\n\n\
                 [[stacks.services]]\nname = \"proxy\"\nimage = {proxy:?}"
            ))
            .table(&polling(&format!(
                "username = \"alice\"\ntoken_file = \"@DIR@/registry-token\"\n{token_hosts}"
            )))
    };

    // Two registries and a token, and no token_hosts: the configuration
    // says to list them.
    let unlisted = World::new(
        "poll-registry-token-hosts-unlisted",
        "",
        &toml(&[stack("web", 1, "")]),
    );
    std::fs::write(unlisted.dir.join("registry-token"), format!("{TOKEN}\n")).unwrap();
    let out = unlisted.redeploy(&["config", "check"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let why = stderr(&out);
    assert!(
        why.contains("poll.token_hosts") && why.contains("several registries"),
        "{why}"
    );
    assert!(!why.contains(TOKEN), "{why}");

    let listed = format!("token_hosts = [\"127.0.0.1:{}\"]\n", private.port);
    let world = World::new(
        "poll-registry-token-hosts",
        "",
        &toml(&[stack("web", 1, &listed)]),
    );
    std::fs::write(world.dir.join("registry-token"), format!("{TOKEN}\n")).unwrap();
    let server = world.start(&[]);
    seen(&world, "web", &app, &app_first);
    seen(&world, "web", &proxy, &proxy_first);
    // New digests on both: each found (the anonymous registry polled
    // anonymously, not refused) and deployed.
    let app_second = private.push("team/app", "latest", manifest(2));
    let proxy_second = public.push("library/proxy", "stable", manifest(21));
    seen(&world, "web", &app, &app_second);
    seen(&world, "web", &proxy, &proxy_second);
    public.wait_looks(public.manifest_requests().len(), 2);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    // Both services redeploy: one deploy each, or (when the second came
    // while the first was still queued) the first superseded by the second,
    // which redeploys both.
    let mut deployed: Vec<&str> = deploys
        .iter()
        .filter(|d| d.state == DeployState::Succeeded)
        .flat_map(|d| d.queued.services.iter().map(String::as_str))
        .collect();
    deployed.sort_unstable();
    deployed.dedup();
    assert_eq!(deployed, ["app", "proxy"], "{deploys:?}");
    assert!(
        deploys
            .iter()
            .all(|d| d.state == DeployState::Succeeded || d.superseded_by.is_some()),
        "{deploys:?}"
    );
    server.terminate();

    // The listed registry's token server got the credentials...
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("alice:{TOKEN}"))
    );
    let tokens = private.token_requests();
    assert!(
        tokens
            .iter()
            .any(|t| t.authorization.as_deref() == Some(basic.as_str()) && t.status == 200),
        "{tokens:?}"
    );
    // ...the other registry and its token server never any Basic header:
    // asked anonymously, and answered.
    let asked = public.requests();
    assert!(!public.token_requests().is_empty(), "{asked:?}");
    for seen in &asked {
        let a = seen.authorization.as_deref().unwrap_or("");
        assert!(
            !a.to_ascii_lowercase().starts_with("basic") && !a.contains(TOKEN),
            "the token went to the unlisted registry: {seen:?}"
        );
    }
    assert!(
        public.token_requests().iter().all(|t| t.status == 200),
        "{asked:?}"
    );
    assert_eq!(private.violations(), Vec::<String>::new());
    assert_eq!(public.violations(), Vec::<String>::new());
}
