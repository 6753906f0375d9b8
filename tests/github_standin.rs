//! A local stand-in for GitHub's REST API, on loopback, for the end-to-end
//! tests of redeploy's GitHub continuous deployment.
//!
//! Every request is checked against GitHub's own published request schemas
//! (`tests/github-api/operations.json`, `operations-extra.json` and
//! `operations-catchup.json`, an excerpt of
//! `github/rest-api-description` with every `$ref` resolved; see `SOURCE.md`
//! there): the operation must exist, the headers GitHub documents must be
//! there, the body must satisfy the OpenAPI request schema (with
//! `nullable: true` turned into a JSON Schema type union) and every top-level
//! field must be a declared property (GitHub ignores unknown fields on most
//! operations, so a misspelt field would otherwise pass silently). Every
//! departure is recorded as a violation; tests assert there are none.
//!
//! The stand-in's own default answers are validated against the documented
//! 2xx response schema too, so it cannot drift from what GitHub returns.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::{json, Value};

mod deliveries;
mod forward;
mod hooks;
mod lists;
mod spec;
#[cfg(test)]
mod tests;

use forward::{Delivery, ThenDeliver};
use hooks::{create_hook, list_hooks, render_hook, update_hook};
use spec::{find_op, spec};

/// The API version the client must ask for (`X-GitHub-Api-Version`).
const API_VERSION: &str = "2022-11-28";
/// The media type the client must accept (`Accept`).
const MEDIA_TYPE: &str = "application/vnd.github+json";
/// GitHub's default page size for list operations.
const DEFAULT_PER_PAGE: usize = 30;
/// GitHub's largest page size for list operations.
const MAX_PER_PAGE: usize = 100;
/// The first deployment id the stand-in hands out.
const FIRST_DEPLOYMENT_ID: u64 = 1000;
/// The first deployment status id the stand-in hands out.
const FIRST_STATUS_ID: u64 = 1;
/// The first webhook id the stand-in hands out.
const FIRST_HOOK_ID: u64 = 1;
/// The first webhook delivery id the stand-in hands out (GitHub's are
/// large and increasing).
const FIRST_HOOK_DELIVERY_ID: u64 = 10_000_000_000;
/// The commit a deployment resolves to when its `ref` is not a full hex SHA
/// (the sha of the deployment in GitHub's own `deployment` event fixture).
const FIXED_SHA: &str = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";
/// What GitHub shows instead of a webhook's secret.
const MASKED_SECRET: &str = "********";
/// The rate limit the stand-in reports (GitHub's for an authenticated user).
const RATE_LIMIT: u64 = 5000;
/// Connect, read and write timeout when delivering a webhook event.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Where GitHub's error bodies point.
const DOCS_URL: &str = "https://docs.github.com/rest";

/// One request the stand-in received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The `operations.json` key it matched, e.g.
    /// `"POST /repos/{owner}/{repo}/deployments"`; empty when none matched.
    pub operation: String,
    /// The HTTP method, e.g. `"POST"`.
    pub method: String,
    /// The request path, e.g. `"/repos/octo/app/deployments"`.
    pub path: String,
    /// The raw query string without `?` (empty when there is none).
    pub query: String,
    /// Every header, names lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `None` when empty or not JSON.
    pub body: Option<Value>,
}

/// An answer queued with [`GithubStandin::push_response`].
#[derive(Debug, Clone)]
pub struct Canned {
    /// The HTTP status.
    pub status: u16,
    /// Extra headers (e.g. `Retry-After`).
    pub headers: Vec<(String, String)>,
    /// The JSON body; `Value::Null` sends an empty body.
    pub body: Value,
}

/// A local stand-in for GitHub's REST API; stops when dropped.
pub struct GithubStandin {
    base: String,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A webhook as the stand-in holds it.
#[derive(Debug, Clone)]
struct Hook {
    id: u64,
    /// `owner/repo` it was created on (`None` for [`GithubStandin::add_hook`]).
    repo: Option<String>,
    active: bool,
    events: Vec<String>,
    /// The config without its secret.
    config: serde_json::Map<String, Value>,
    secret: Option<String>,
    created_at: String,
    updated_at: String,
}

/// A deployment the stand-in created.
#[derive(Debug, Clone)]
struct Deployment {
    repo: String,
    object: Value,
}

/// Everything the stand-in knows, behind one lock.
struct State {
    token: String,
    base: String,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    canned: HashMap<String, VecDeque<Canned>>,
    next_deployment_id: u64,
    next_status_id: u64,
    next_hook_id: u64,
    deployments: HashMap<u64, Deployment>,
    statuses: HashMap<u64, Vec<String>>,
    /// The status objects created by default answers, per deployment,
    /// oldest first (what GET .../statuses lists).
    status_objects: HashMap<u64, Vec<Value>>,
    /// Per operation, for each next request: how long to hold its answer
    /// back after handling it ([`GithubStandin::hold_response`]).
    holds: HashMap<String, VecDeque<Option<Duration>>>,
    /// The largest page a list answers ([`GithubStandin::cap_page_size`]).
    page_cap: usize,
    hooks: Vec<Hook>,
    forward: Option<(String, String)>,
    /// Every webhook delivery sent ([`GithubStandin::send_hook_event`] and
    /// redeliveries), oldest first.
    hook_deliveries: Vec<deliveries::Logged>,
    next_hook_delivery_id: u64,
    /// Redeliveries accepted, sent once their 202 is handled.
    pending_redeliveries: Vec<deliveries::Pending>,
}

impl GithubStandin {
    /// Starts the stand-in; requests must carry `Authorization: Bearer {token}`.
    pub fn start(token: &str) -> GithubStandin {
        // Compile the schemas before the first request.
        spec();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding loopback");
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{addr}");
        let state = Arc::new(Mutex::new(State {
            token: token.to_string(),
            base: base.clone(),
            requests: Vec::new(),
            violations: Vec::new(),
            canned: HashMap::new(),
            next_deployment_id: FIRST_DEPLOYMENT_ID,
            next_status_id: FIRST_STATUS_ID,
            next_hook_id: FIRST_HOOK_ID,
            deployments: HashMap::new(),
            statuses: HashMap::new(),
            status_objects: HashMap::new(),
            holds: HashMap::new(),
            page_cap: MAX_PER_PAGE,
            hooks: Vec::new(),
            forward: None,
            hook_deliveries: Vec::new(),
            next_hook_delivery_id: FIRST_HOOK_DELIVERY_ID,
            pending_redeliveries: Vec::new(),
        }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let thread = std::thread::Builder::new()
            .name("github-standin".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    tokio::select! {
                        r = axum::serve(listener, app) => r.expect("stand-in server"),
                        _ = stopped => {}
                    }
                });
            })
            .unwrap();
        GithubStandin {
            base,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Base URL, e.g. "http://127.0.0.1:PORT" (what redeploy's api_url is set to).
    pub fn base_url(&self) -> String {
        self.base.clone()
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// How many requests matched `operation` (an `operations.json` key).
    pub fn count(&self, operation: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.operation == operation)
            .count()
    }

    /// Every way a request broke the documented shape (unknown operation,
    /// wrong/missing header, body failing the schema, unknown field...), and
    /// every default answer of the stand-in that failed the documented
    /// response schema. Tests assert this is empty.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Queues a canned answer for the next request to `operation` (FIFO per
    /// operation), used before the default behaviour. It is sent as given
    /// (not checked against the response schema) once the request passed
    /// authentication; the request's other checks are still recorded.
    pub fn push_response(&self, operation: &str, canned: Canned) {
        assert!(
            spec().ops.iter().any(|o| o.key == operation),
            "no operation {operation:?} in operations.json"
        );
        self.lock()
            .canned
            .entry(operation.to_string())
            .or_default()
            .push_back(canned);
    }

    /// Handles request number `after + 1` from now to `operation` as usual
    /// (checked, recorded, answered: a status or deployment is created),
    /// then holds its answer back for `hold` before writing it: GitHub took
    /// the request, and its answer is not there yet. A test kills the
    /// client meanwhile to leave the request in doubt.
    pub fn hold_response(&self, operation: &str, after: usize, hold: Duration) {
        assert!(
            spec().ops.iter().any(|o| o.key == operation),
            "no operation {operation:?} in operations.json"
        );
        let mut st = self.lock();
        let queue = st.holds.entry(operation.to_string()).or_default();
        queue.extend(std::iter::repeat_n(None, after));
        queue.push_back(Some(hold));
    }

    /// Lists answer at most `cap` items a page (GitHub's own cap is 100),
    /// so a client's `per_page=100` still has to follow `Link` headers.
    pub fn cap_page_size(&self, cap: usize) {
        self.lock().page_cap = cap.clamp(1, MAX_PER_PAGE);
    }

    /// After each 201 to POST .../deployments, send the `deployment` webhook
    /// event to `hook_url` (an `http://` loopback URL), signed with
    /// X-Hub-Signature-256 using `secret`, with headers X-GitHub-Event:
    /// deployment, X-GitHub-Delivery: a fresh GUID-like id, Content-Type:
    /// application/json, User-Agent: GitHub-Hookshot/standin. Sent from a
    /// background thread once the 201 response body has been handed to the
    /// connection (as GitHub does, asynchronously); a failed delivery is
    /// reported on stderr only, as GitHub only shows it in the hook's log.
    pub fn forward_deployments_to(&self, hook_url: &str, secret: &str) {
        assert!(
            hook_url.starts_with("http://"),
            "the stand-in delivers over plain http only: {hook_url}"
        );
        self.lock().forward = Some((hook_url.to_string(), secret.to_string()));
    }

    /// The `state`s posted to POST .../deployments/{id}/statuses for that
    /// deployment id, in order (those the stand-in accepted with a 2xx answer,
    /// default or canned).
    pub fn statuses(&self, deployment_id: u64) -> Vec<String> {
        self.lock()
            .statuses
            .get(&deployment_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The repository webhooks the stand-in holds (as GitHub returns them from
    /// GET /repos/{o}/{r}/hooks; a hook pre-loaded with [`Self::add_hook`] is
    /// shown under `octocat/Hello-World` here, and under the asked repository
    /// in API answers).
    pub fn hooks(&self) -> Vec<Value> {
        let st = self.lock();
        st.hooks
            .iter()
            .map(|h| {
                let repo = h.repo.as_deref().unwrap_or("octocat/Hello-World");
                render_hook(&st.base, repo, h)
            })
            .collect()
    }

    /// Pre-loads a webhook (tests of `github connect`), returns its id. Its
    /// config is `{url, content_type: "json", insecure_ssl: "0"}`, no secret.
    pub fn add_hook(&self, url: &str, events: &[&str], active: bool) -> u64 {
        let mut st = self.lock();
        let id = st.next_hook_id;
        st.next_hook_id += 1;
        let now = now_rfc3339();
        let mut config = serde_json::Map::new();
        config.insert("content_type".into(), json!("json"));
        config.insert("insecure_ssl".into(), json!("0"));
        config.insert("url".into(), json!(url));
        st.hooks.push(Hook {
            id,
            repo: None,
            active,
            events: events.iter().map(|e| e.to_string()).collect(),
            config,
            secret: None,
            created_at: now.clone(),
            updated_at: now,
        });
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for GithubStandin {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A loopback URL where nothing listens (a port bound, then released), for
/// connection-failure tests.
pub fn unreachable_base_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------
// Serving.

/// What a handler decided to answer.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
    /// A deployment event to deliver once the answer is written.
    deliver: Option<Delivery>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body,
            deliver: None,
        }
    }
}

fn error(status: u16, message: &str, docs: &str) -> Answer {
    Answer::json(
        status,
        json!({"message": message, "documentation_url": docs, "status": status.to_string()}),
    )
}

async fn handle(
    AxumState(state): AxumState<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let answer = serve(&mut st, method.as_str(), &uri, &headers, &body);
        let operation = st.requests.last().map(|r| r.operation.clone());
        let hold = operation
            .and_then(|op| st.holds.get_mut(&op)?.pop_front())
            .flatten();
        let redeliveries = std::mem::take(&mut st.pending_redeliveries);
        (answer, hold, redeliveries)
    };
    let (answer, hold, redeliveries) = answer;
    deliveries::send_pending(&state, redeliveries);
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    let n = state.lock().map(|s| s.requests.len()).unwrap_or(0) as u64;
    let mut resp = Response::builder().status(answer.status);
    let reset = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    for (k, v) in [
        ("x-ratelimit-limit", RATE_LIMIT.to_string()),
        (
            "x-ratelimit-remaining",
            RATE_LIMIT.saturating_sub(n).to_string(),
        ),
        ("x-ratelimit-reset", reset.to_string()),
        ("x-ratelimit-used", n.to_string()),
        ("x-ratelimit-resource", "core".to_string()),
        ("x-github-api-version-selected", API_VERSION.to_string()),
    ] {
        // A canned answer's own header replaces the default one.
        if !answer
            .headers
            .iter()
            .any(|(ck, _)| ck.eq_ignore_ascii_case(k))
        {
            resp = resp.header(k, v);
        }
    }
    let bytes = if answer.body.is_null() {
        Vec::new()
    } else {
        resp = resp.header("content-type", "application/json; charset=utf-8");
        serde_json::to_vec(&answer.body).unwrap()
    };
    for (k, v) in &answer.headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    resp.body(Body::new(ThenDeliver {
        data: Some(Bytes::from(bytes)),
        deliver: answer.deliver,
    }))
    .unwrap()
}

/// The core: checks, records and answers one request.
fn serve(st: &mut State, method: &str, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Answer {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let op = find_op(method, &path);
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    st.requests.push(Recorded {
        operation: op.map(|o| o.key.clone()).unwrap_or_default(),
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: parsed.clone(),
    });
    let Some(op) = op else {
        st.violations.push(format!(
            "{method} {path}: no such operation in operations.json"
        ));
        return error(404, "Not Found", DOCS_URL);
    };
    let key = op.key.as_str();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());

    // Authentication first, as GitHub does.
    let expected = format!("Bearer {}", st.token);
    match header("authorization") {
        None => {
            st.violations
                .push(format!("{key}: no Authorization header"));
            return error(401, "Requires authentication", DOCS_URL);
        }
        Some(a) if !constant_time_eq(a.as_bytes(), expected.as_bytes()) => {
            st.violations
                .push(format!("{key}: Authorization is not `Bearer <the token>`"));
            return error(401, "Bad credentials", DOCS_URL);
        }
        Some(_) => {}
    }
    if header("accept") != Some(MEDIA_TYPE) {
        st.violations.push(format!(
            "{key}: Accept is {:?}, want {MEDIA_TYPE:?}",
            header("accept")
        ));
    }
    if header("x-github-api-version") != Some(API_VERSION) {
        st.violations.push(format!(
            "{key}: X-GitHub-Api-Version is {:?}, want {API_VERSION:?}",
            header("x-github-api-version")
        ));
    }
    if header("user-agent").is_none_or(|u| u.trim().is_empty()) {
        st.violations.push(format!(
            "{key}: no User-Agent (GitHub rejects such requests)"
        ));
    }
    if !body.is_empty() {
        let ct = header("content-type").unwrap_or("");
        if ct.split(';').next().map(str::trim) != Some("application/json") {
            st.violations.push(format!(
                "{key}: a body with Content-Type {ct:?}, want application/json"
            ));
        }
    }
    for pair in form_urlencoded::parse(query.as_bytes()) {
        let declared = op.query.iter().find(|(name, _)| *name == pair.0);
        if declared.is_none() {
            st.violations
                .push(format!("{key}: undeclared query parameter {:?}", pair.0));
        } else if declared.is_some_and(|(_, kind)| kind == "integer")
            && pair.1.parse::<u64>().is_err()
        {
            st.violations.push(format!(
                "{key}: query parameter {} is not an integer: {:?}",
                pair.0, pair.1
            ));
        }
    }

    // The body.
    let mut invalid: Option<String> = None;
    match (&op.request, body.is_empty()) {
        (None, false) => {
            st.violations
                .push(format!("{key}: a body where the operation takes none"));
        }
        (None, true) => {}
        (Some((required, _, _)), true) => {
            if *required {
                st.violations
                    .push(format!("{key}: no body where one is required"));
                invalid = Some("Invalid request.\n\nNo body.".into());
            }
        }
        (Some((_, validator, props)), false) => match &parsed {
            None => {
                st.violations.push(format!("{key}: the body is not JSON"));
                return error(400, "Problems parsing JSON", &op.docs);
            }
            Some(v) => {
                let errors: Vec<String> = validator
                    .iter_errors(v)
                    .map(|e| format!("{key}: body{}: {e}", e.instance_path()))
                    .collect();
                if let Some(first) = errors.first() {
                    invalid = Some(format!("Invalid request.\n\n{first}"));
                }
                st.violations.extend(errors);
                if let Some(obj) = v.as_object() {
                    for k in obj.keys().filter(|k| !props.contains(k)) {
                        st.violations.push(format!(
                            "{key}: field {k:?} is not a property of the request schema"
                        ));
                    }
                }
            }
        },
    }

    if let Some(c) = st.canned.get_mut(key).and_then(VecDeque::pop_front) {
        if key.ends_with("/statuses") && (200..300).contains(&c.status) {
            record_status(st, &path, parsed.as_ref());
        }
        return Answer {
            status: c.status,
            headers: c.headers,
            body: c.body,
            deliver: None,
        };
    }
    if let Some(message) = invalid {
        return error(422, &message, &op.docs);
    }

    let segs: Vec<&str> = path.split('/').collect();
    let repo = format!("{}/{}", segs[2], segs[3]);
    let body = parsed.unwrap_or(Value::Null);
    let answer = match key {
        "POST /repos/{owner}/{repo}/deployments" => create_deployment(st, &repo, &body),
        "POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses" => {
            create_status(st, &repo, segs[5], &body)
        }
        "GET /repos/{owner}/{repo}/deployments/{deployment_id}" => {
            match lookup_deployment(st, &repo, segs[5]) {
                Some(d) => Answer::json(200, d.object.clone()),
                None => error(404, "Not Found", &op.docs),
            }
        }
        "GET /repos/{owner}/{repo}/deployments" => lists::list_deployments(st, &repo, &query),
        "GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses" => {
            match lookup_deployment(st, &repo, segs[5]) {
                Some(d) => {
                    let id = d.object["id"].as_u64().unwrap();
                    lists::list_statuses(st, &repo, id, &query)
                }
                None => error(404, "Not Found", &op.docs),
            }
        }
        "GET /repos/{owner}/{repo}/hooks" => list_hooks(st, &repo, &query),
        "POST /repos/{owner}/{repo}/hooks" => create_hook(st, &repo, &body),
        "PATCH /repos/{owner}/{repo}/hooks/{hook_id}" => update_hook(st, &repo, segs[5], &body),
        "GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries" => {
            deliveries::list(st, &repo, segs[5], &query)
        }
        "GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}" => {
            deliveries::get(st, segs[5], segs[7])
        }
        "POST /repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}/attempts" => {
            deliveries::redeliver(st, segs[5], segs[7])
        }
        other => {
            st.violations
                .push(format!("{other}: the stand-in has no default answer"));
            error(404, "Not Found", DOCS_URL)
        }
    };
    if let Some(v) = op.responses.get(&answer.status) {
        for e in v.iter_errors(&answer.body) {
            st.violations.push(format!(
                "{key}: the stand-in's own {} answer fails the response schema at {}: {e}",
                answer.status,
                e.instance_path()
            ));
        }
    }
    answer
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn creator() -> Value {
    spec().deployment_event["deployment"]["creator"].clone()
}

fn is_full_sha(r: &str) -> bool {
    (r.len() == 40 || r.len() == 64) && r.bytes().all(|b| b.is_ascii_hexdigit())
}

fn create_deployment(st: &mut State, repo: &str, req: &Value) -> Answer {
    let id = st.next_deployment_id;
    st.next_deployment_id += 1;
    let r#ref = req["ref"].as_str().unwrap_or_default();
    let sha = if is_full_sha(r#ref) {
        r#ref.to_ascii_lowercase()
    } else {
        FIXED_SHA.to_string()
    };
    let environment = req["environment"].as_str().unwrap_or("production");
    let now = now_rfc3339();
    let url = format!("{}/repos/{repo}/deployments/{id}", st.base);
    let object = json!({
        "url": url,
        "id": id,
        "node_id": format!("DE_standin{id}"),
        "sha": sha,
        "ref": r#ref,
        "task": req["task"].as_str().unwrap_or("deploy"),
        "payload": req.get("payload").cloned().unwrap_or(json!({})),
        "original_environment": environment,
        "environment": environment,
        "description": req.get("description").cloned().unwrap_or(Value::Null),
        "creator": creator(),
        "created_at": now,
        "updated_at": now,
        "statuses_url": format!("{url}/statuses"),
        "repository_url": format!("{}/repos/{repo}", st.base),
        "transient_environment": req["transient_environment"].as_bool().unwrap_or(false),
        "production_environment": req["production_environment"]
            .as_bool()
            .unwrap_or(environment == "production"),
    });
    st.deployments.insert(
        id,
        Deployment {
            repo: repo.to_string(),
            object: object.clone(),
        },
    );
    let deliver = st.forward.as_ref().map(|(hook_url, secret)| {
        let mut event = spec().deployment_event.clone();
        event["deployment"] = object.clone();
        let (owner, name) = repo.split_once('/').unwrap();
        event["repository"]["full_name"] = json!(repo);
        event["repository"]["name"] = json!(name);
        event["repository"]["owner"]["login"] = json!(owner);
        Delivery {
            url: hook_url.clone(),
            secret: secret.clone(),
            body: serde_json::to_vec(&event).unwrap(),
        }
    });
    Answer {
        status: 201,
        headers: vec![("location".into(), url)],
        body: object,
        deliver,
    }
}

fn lookup_deployment<'a>(st: &'a State, repo: &str, id: &str) -> Option<&'a Deployment> {
    let id: u64 = id.parse().ok()?;
    st.deployments
        .get(&id)
        .filter(|d| d.repo.eq_ignore_ascii_case(repo))
}

fn record_status(st: &mut State, path: &str, req: Option<&Value>) {
    let id = path.split('/').nth(5).and_then(|s| s.parse::<u64>().ok());
    if let (Some(id), Some(state)) = (id, req.and_then(|r| r["state"].as_str())) {
        st.statuses.entry(id).or_default().push(state.to_string());
    }
}

fn create_status(st: &mut State, repo: &str, id: &str, req: &Value) -> Answer {
    let Some(d) = lookup_deployment(st, repo, id).cloned() else {
        return error(404, "Not Found", DOCS_URL);
    };
    let deployment_id = d.object["id"].as_u64().unwrap();
    let sid = st.next_status_id;
    st.next_status_id += 1;
    let state = req["state"].as_str().unwrap_or_default().to_string();
    st.statuses
        .entry(deployment_id)
        .or_default()
        .push(state.clone());
    let now = now_rfc3339();
    let deployment_url = d.object["url"].as_str().unwrap().to_string();
    let url = format!("{deployment_url}/statuses/{sid}");
    let mut object = json!({
        "url": url,
        "id": sid,
        "node_id": format!("DES_standin{sid}"),
        "state": state,
        "creator": creator(),
        "description": req["description"].as_str().unwrap_or(""),
        "environment": req["environment"]
            .as_str()
            .unwrap_or(d.object["environment"].as_str().unwrap()),
        "target_url": req["target_url"]
            .as_str()
            .or(req["log_url"].as_str())
            .unwrap_or(""),
        "log_url": req["log_url"]
            .as_str()
            .or(req["target_url"].as_str())
            .unwrap_or(""),
        "created_at": now,
        "updated_at": now,
        "deployment_url": deployment_url,
        "repository_url": d.object["repository_url"],
        "environment_url": req["environment_url"].as_str().unwrap_or(""),
    });
    if let Some(o) = object.as_object_mut() {
        o.retain(|_, v| !v.is_null());
    }
    st.status_objects
        .entry(deployment_id)
        .or_default()
        .push(object.clone());
    Answer {
        status: 201,
        headers: vec![("location".into(), url)],
        body: object,
        deliver: None,
    }
}
