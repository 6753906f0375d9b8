//! A local stand-in for GitHub's REST API, on loopback, for the end-to-end
//! tests of redeploy's GitHub continuous deployment.
//!
//! Every request is checked against GitHub's own published request schemas
//! (`../shared/github-api/operations.json`, an excerpt of
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
    hooks: Vec<Hook>,
    forward: Option<(String, String)>,
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
            hooks: Vec::new(),
            forward: None,
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
// The published description, compiled once.

/// One operation of `operations.json`.
struct Operation {
    key: String,
    method: String,
    /// Path segments; `None` for a `{parameter}`.
    segments: Vec<Option<String>>,
    /// `(required, validator, declared top-level properties)`.
    request: Option<(bool, jsonschema::Validator, Vec<String>)>,
    /// Validators of the documented 2xx response schemas, by status.
    responses: HashMap<u16, jsonschema::Validator>,
    /// Declared query parameters.
    query: Vec<String>,
    /// The documentation page.
    docs: String,
}

/// The compiled description.
struct Spec {
    ops: Vec<Operation>,
    /// The `deployment` event fixture from GitHub's own webhook examples.
    deployment_event: Value,
}

/// `tests/github-api/`: GitHub's REST description of the operations the
/// stand-in serves, vendored byte for byte (its origin in `SOURCE.md`).
fn github_api() -> std::path::PathBuf {
    crate::support::workspace().join("tests").join("github-api")
}

fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = github_api().join("operations.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text).expect("operations.json is JSON");
        let mut ops = Vec::new();
        for (key, op) in doc.as_object().unwrap() {
            if key.starts_with('_') {
                continue;
            }
            let (method, path) = key.split_once(' ').unwrap();
            let segments = path
                .split('/')
                .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
                .collect();
            let request = op.get("requestBody").filter(|b| !b.is_null()).map(|b| {
                let schema = b["schema"].clone();
                let props = schema["properties"]
                    .as_object()
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                (
                    b["required"].as_bool().unwrap_or(false),
                    compile(&schema, true),
                    props,
                )
            });
            let responses = op["responses"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(code, r)| code.starts_with('2') && r.get("schema").is_some())
                .map(|(code, r)| (code.parse().unwrap(), compile(&r["schema"], false)))
                .collect();
            let query = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "query")
                        .map(|p| p["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            ops.push(Operation {
                key: key.clone(),
                method: method.to_string(),
                segments,
                request,
                responses,
                query,
                docs: op["externalDocs"]["url"]
                    .as_str()
                    .unwrap_or(DOCS_URL)
                    .to_string(),
            });
        }
        let fixture = crate::support::fixtures()
            .join("github")
            .join("octokit-deployment-default.json");
        let deployment_event =
            serde_json::from_slice(&std::fs::read(&fixture).expect("deployment fixture"))
                .expect("deployment fixture is JSON");
        Spec {
            ops,
            deployment_event,
        }
    })
}

/// Compiles an OpenAPI 3.0 schema as JSON Schema. Formats are asserted on
/// requests (GitHub rejects a hook `url` that is not a URI) but not on
/// responses: GitHub itself answers `""` for an unset `target_url`, which is
/// documented with `format: uri`.
fn compile(schema: &Value, formats: bool) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(formats)
        .build(&openapi_to_json_schema(schema.clone()))
        .expect("a valid schema")
}

/// OpenAPI 3.0's `nullable: true` is not JSON Schema: `{type: T, nullable:
/// true}` becomes `{type: [T, "null"]}`, and a nullable schema without a
/// `type` becomes `{anyOf: [schema, {type: "null"}]}`.
fn openapi_to_json_schema(v: Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.into_iter().map(openapi_to_json_schema).collect()),
        Value::Object(m) => {
            let mut m: serde_json::Map<String, Value> = m
                .into_iter()
                .map(|(k, v)| (k, openapi_to_json_schema(v)))
                .collect();
            match m.remove("nullable") {
                Some(Value::Bool(true)) => match m.get("type").cloned() {
                    Some(Value::String(t)) => {
                        m.insert("type".into(), json!([t, "null"]));
                        Value::Object(m)
                    }
                    _ => json!({"anyOf": [Value::Object(m), {"type": "null"}]}),
                },
                Some(other) if !other.is_boolean() => {
                    // A property named "nullable", not the keyword.
                    m.insert("nullable".into(), other);
                    Value::Object(m)
                }
                _ => Value::Object(m),
            }
        }
        other => other,
    }
}

fn find_op(method: &str, path: &str) -> Option<&'static Operation> {
    let segs: Vec<&str> = path.split('/').collect();
    spec().ops.iter().find(|op| {
        op.method == method
            && op.segments.len() == segs.len()
            && op.segments.iter().zip(&segs).all(|(t, s)| match t {
                Some(lit) => lit == s,
                None => !s.is_empty(),
            })
    })
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
        serve(&mut st, method.as_str(), &uri, &headers, &body)
    };
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
        if !op.query.iter().any(|q| *q == pair.0) {
            st.violations
                .push(format!("{key}: undeclared query parameter {:?}", pair.0));
        } else if pair.1.parse::<u64>().is_err() {
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
        "GET /repos/{owner}/{repo}/hooks" => list_hooks(st, &repo, &query),
        "POST /repos/{owner}/{repo}/hooks" => create_hook(st, &repo, &body),
        "PATCH /repos/{owner}/{repo}/hooks/{hook_id}" => update_hook(st, &repo, segs[5], &body),
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
    Answer {
        status: 201,
        headers: vec![("location".into(), url)],
        body: object,
        deliver: None,
    }
}

fn render_hook(base: &str, repo: &str, h: &Hook) -> Value {
    let mut config = h.config.clone();
    if h.secret.is_some() {
        config.insert("secret".into(), json!(MASKED_SECRET));
    }
    let url = format!("{base}/repos/{repo}/hooks/{}", h.id);
    json!({
        "type": "Repository",
        "id": h.id,
        "name": "web",
        "active": h.active,
        "events": h.events,
        "config": config,
        "updated_at": h.updated_at,
        "created_at": h.created_at,
        "url": url,
        "test_url": format!("{url}/test"),
        "ping_url": format!("{url}/pings"),
        "deliveries_url": format!("{url}/deliveries"),
        "last_response": {"code": null, "status": "unused", "message": null},
    })
}

fn list_hooks(st: &mut State, repo: &str, query: &str) -> Answer {
    let mut per_page = DEFAULT_PER_PAGE;
    let mut page = 1usize;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match (&*k, v.parse::<usize>()) {
            ("per_page", Ok(n)) => per_page = n.clamp(1, MAX_PER_PAGE),
            ("page", Ok(n)) => page = n.max(1),
            _ => {}
        }
    }
    let visible: Vec<&Hook> = st
        .hooks
        .iter()
        .filter(|h| {
            h.repo
                .as_deref()
                .is_none_or(|r| r.eq_ignore_ascii_case(repo))
        })
        .collect();
    let last = visible.len().div_ceil(per_page).max(1);
    let items: Vec<Value> = visible
        .iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .map(|h| render_hook(&st.base, repo, h))
        .collect();
    let link_to = |p: usize, rel: &str| {
        format!(
            "<{}/repos/{repo}/hooks?per_page={per_page}&page={p}>; rel=\"{rel}\"",
            st.base
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to(page - 1, "prev"));
    }
    if page < last {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(last, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
    }
    let mut answer = Answer::json(200, Value::Array(items));
    if !links.is_empty() {
        answer.headers.push(("link".into(), links.join(", ")));
    }
    answer
}

/// `config` as GitHub stores it: defaults filled in, the secret apart.
fn hook_config(config: &Value) -> (serde_json::Map<String, Value>, Option<String>) {
    let mut c = config.as_object().cloned().unwrap_or_default();
    let secret = c
        .remove("secret")
        .and_then(|s| s.as_str().map(str::to_string))
        .filter(|s| !s.is_empty());
    c.entry("content_type").or_insert(json!("form"));
    let ssl = match c.get("insecure_ssl") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => "0".to_string(),
    };
    c.insert("insecure_ssl".into(), json!(ssl));
    (c, secret)
}

fn create_hook(st: &mut State, repo: &str, req: &Value) -> Answer {
    let docs = "https://docs.github.com/rest/repos/webhooks#create-a-repository-webhook";
    if req["name"].as_str().is_some_and(|n| n != "web") {
        return error(422, "Validation Failed: name must be \"web\"", docs);
    }
    let (config, secret) = hook_config(&req["config"]);
    let Some(url) = config
        .get("url")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return error(422, "Validation Failed: url is missing", docs);
    };
    if st.hooks.iter().any(|h| {
        h.repo
            .as_deref()
            .is_none_or(|r| r.eq_ignore_ascii_case(repo))
            && h.config.get("url").and_then(Value::as_str) == Some(url.as_str())
    }) {
        return error(
            422,
            "Validation Failed: Hook already exists on this repository",
            docs,
        );
    }
    let id = st.next_hook_id;
    st.next_hook_id += 1;
    let now = now_rfc3339();
    let hook = Hook {
        id,
        repo: Some(repo.to_string()),
        active: req["active"].as_bool().unwrap_or(true),
        events: req["events"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_else(|| vec!["push".to_string()]),
        config,
        secret,
        created_at: now.clone(),
        updated_at: now,
    };
    let body = render_hook(&st.base, repo, &hook);
    st.hooks.push(hook);
    Answer {
        status: 201,
        headers: vec![("location".into(), body["url"].as_str().unwrap().into())],
        body,
        deliver: None,
    }
}

fn update_hook(st: &mut State, repo: &str, id: &str, req: &Value) -> Answer {
    let docs = "https://docs.github.com/rest/repos/webhooks#update-a-repository-webhook";
    let id: Option<u64> = id.parse().ok();
    let base = st.base.clone();
    let Some(h) = st.hooks.iter_mut().find(|h| {
        Some(h.id) == id
            && h.repo
                .as_deref()
                .is_none_or(|r| r.eq_ignore_ascii_case(repo))
    }) else {
        return error(404, "Not Found", docs);
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    if req.get("events").is_some() {
        h.events = strings(&req["events"]);
    }
    for e in strings(&req["add_events"]) {
        if !h.events.contains(&e) {
            h.events.push(e);
        }
    }
    let remove = strings(&req["remove_events"]);
    h.events.retain(|e| !remove.contains(e));
    if let Some(a) = req["active"].as_bool() {
        h.active = a;
    }
    if req.get("config").is_some_and(Value::is_object) {
        // The whole config is replaced: a secret not sent again is removed.
        let (config, secret) = hook_config(&req["config"]);
        if !config.contains_key("url") {
            return error(422, "Validation Failed: url is missing", docs);
        }
        h.config = config;
        h.secret = secret;
    }
    h.updated_at = now_rfc3339();
    let h = h.clone();
    Answer::json(200, render_hook(&base, repo, &h))
}

// ---------------------------------------------------------------------------
// Webhook delivery.

/// A `deployment` event to send.
struct Delivery {
    url: String,
    secret: String,
    body: Vec<u8>,
}

/// A response body that starts the delivery (on its own thread) once hyper
/// has taken the whole body, or when the response is dropped unsent.
struct ThenDeliver {
    data: Option<Bytes>,
    deliver: Option<Delivery>,
}

impl ThenDeliver {
    fn fire(&mut self) {
        if let Some(d) = self.deliver.take() {
            std::thread::spawn(move || {
                if let Err(e) = deliver(&d) {
                    eprintln!("github stand-in: delivering to {} failed: {e}", d.url);
                }
            });
        }
    }
}

impl hyper::body::Body for ThenDeliver {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        match this.data.take() {
            Some(d) if !d.is_empty() => Poll::Ready(Some(Ok(hyper::body::Frame::data(d)))),
            _ => {
                this.fire();
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for ThenDeliver {
    fn drop(&mut self) {
        self.fire();
    }
}

/// A GUID-like delivery id, fresh each call.
fn delivery_id() -> String {
    use sha2::Digest;
    static N: AtomicU64 = AtomicU64::new(0);
    let seed = format!(
        "{:?}-{}-{}",
        SystemTime::now(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let h = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// POSTs one signed event over HTTP/1.1; `Ok` carries nothing, the status is
/// not judged (GitHub only logs it).
fn deliver(d: &Delivery) -> Result<(), String> {
    let rest = d.url.strip_prefix("http://").ok_or("not an http:// URL")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr: SocketAddr = authority
        .parse()
        .map_err(|e| format!("{authority} is not ip:port: {e}"))?;
    let mut s = TcpStream::connect_timeout(&addr, DELIVERY_TIMEOUT).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(DELIVERY_TIMEOUT)).ok();
    s.set_write_timeout(Some(DELIVERY_TIMEOUT)).ok();
    let signature = format!(
        "sha256={}",
        crate::support::hmac_sha256_hex(&d.secret, &d.body)
    );
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\
         User-Agent: GitHub-Hookshot/standin\r\nX-GitHub-Event: deployment\r\n\
         X-GitHub-Delivery: {}\r\nX-Hub-Signature-256: {signature}\r\n\r\n",
        d.body.len(),
        delivery_id()
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(&d.body).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    Ok(())
}

// ---------------------------------------------------------------------------
// Tests of the stand-in itself.

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::http;

    const TOKEN: &str = "ghp_standinTestToken0123456789";

    fn addr(g: &GithubStandin) -> String {
        g.base_url().trim_start_matches("http://").to_string()
    }

    /// Sends a request with the headers a correct client sends, plus `extra`
    /// (which override by name).
    fn call(
        g: &GithubStandin,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: Option<&Value>,
    ) -> http::Response {
        let auth = format!("Bearer {TOKEN}");
        let mut headers: Vec<(&str, &str)> = vec![
            ("Authorization", auth.as_str()),
            ("Accept", MEDIA_TYPE),
            ("X-GitHub-Api-Version", API_VERSION),
            ("User-Agent", "redeploy-test"),
        ];
        if body.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        for (k, v) in extra {
            headers.retain(|(h, _)| !h.eq_ignore_ascii_case(k));
            headers.push((k, v));
        }
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        http::request(&addr(g), method, path, &headers, &bytes)
    }

    const DEPLOYMENTS: &str = "/repos/octo/app/deployments";

    #[test]
    fn a_valid_deployment_passes_and_is_answered_as_documented() {
        let g = GithubStandin::start(TOKEN);
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let r = call(
            &g,
            "POST",
            DEPLOYMENTS,
            &[],
            Some(&json!({
                "ref": sha, "environment": "staging", "auto_merge": false,
                "required_contexts": [], "payload": {"redeploy": 1},
                "description": null, "task": "deploy"
            })),
        );
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let d = r.json();
        assert_eq!(d["id"], 1000);
        assert_eq!(d["sha"], sha);
        assert_eq!(d["environment"], "staging");
        assert_eq!(d["production_environment"], false);
        assert_eq!(d["payload"], json!({"redeploy": 1}));
        assert_eq!(g.violations(), Vec::<String>::new());

        let r = call(
            &g,
            "POST",
            "/repos/octo/app/deployments/1000/statuses",
            &[],
            Some(&json!({"state": "in_progress", "log_url": "http://127.0.0.1:1/log"})),
        );
        assert_eq!(r.status, 201);
        assert_eq!(r.json()["state"], "in_progress");
        call(
            &g,
            "POST",
            "/repos/octo/app/deployments/1000/statuses",
            &[],
            Some(&json!({"state": "success"})),
        );
        assert_eq!(g.statuses(1000), ["in_progress", "success"]);
        assert_eq!(
            call(&g, "GET", "/repos/octo/app/deployments/1000", &[], None).status,
            200
        );
        assert_eq!(
            call(&g, "GET", "/repos/octo/app/deployments/999", &[], None).status,
            404
        );
        assert_eq!(g.violations(), Vec::<String>::new());
        let reqs = g.requests();
        assert_eq!(reqs.len(), 5);
        assert_eq!(reqs[0].operation, "POST /repos/{owner}/{repo}/deployments");
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].path, DEPLOYMENTS);
        assert_eq!(reqs[0].query, "");
        assert_eq!(reqs[0].body.as_ref().unwrap()["ref"], sha);
        assert_eq!(reqs[3].body, None);
        assert!(reqs[0]
            .headers
            .contains(&("user-agent".to_string(), "redeploy-test".to_string())));
    }

    #[test]
    fn an_unknown_field_a_wrong_accept_and_a_bad_body_are_violations() {
        let g = GithubStandin::start(TOKEN);
        // An unknown field: GitHub ignores it (201), the stand-in records it.
        let r = call(
            &g,
            "POST",
            DEPLOYMENTS,
            &[],
            Some(&json!({"ref": "main", "enviroment": "x"})),
        );
        assert_eq!(r.status, 201);
        let v = g.violations();
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("\"enviroment\""), "{v:?}");

        let r = call(
            &g,
            "POST",
            DEPLOYMENTS,
            &[("Accept", "application/json")],
            Some(&json!({"ref": "main"})),
        );
        assert_eq!(r.status, 201);
        let v = g.violations();
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(v[1].contains("Accept"), "{v:?}");

        let r = call(
            &g,
            "POST",
            DEPLOYMENTS,
            &[],
            Some(&json!({"ref": "main", "auto_merge": "yes"})),
        );
        assert_eq!(r.status, 422);
        let v = g.violations();
        assert_eq!(v.len(), 3, "{v:?}");
        assert!(v[2].contains("/auto_merge"), "{v:?}");

        // Missing required field, wrong token, unknown operation.
        assert_eq!(
            call(
                &g,
                "POST",
                DEPLOYMENTS,
                &[],
                Some(&json!({"task": "deploy"}))
            )
            .status,
            422
        );
        let r = call(
            &g,
            "POST",
            DEPLOYMENTS,
            &[("Authorization", "Bearer nope")],
            Some(&json!({"ref": "main"})),
        );
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["message"], "Bad credentials");
        assert_eq!(
            call(&g, "GET", "/repos/octo/app/branches", &[], None).status,
            404
        );
        let v = g.violations();
        assert_eq!(v.len(), 6, "{v:?}");
        assert!(v[3].contains("ref"), "{v:?}");
        assert!(v[4].contains("Authorization"), "{v:?}");
        assert!(v[5].contains("no such operation"), "{v:?}");
        // Only the valid creations made deployments.
        assert_eq!(g.requests().len(), 6);
    }

    #[test]
    fn hooks_reject_unknown_fields_and_accept_a_numeric_insecure_ssl() {
        let g = GithubStandin::start(TOKEN);
        let body = json!({"name": "web", "events": ["deployment"], "active": true,
            "config": {"url": "http://127.0.0.1:9/hook", "content_type": "json",
                       "secret": "s3cret", "insecure_ssl": 0}});
        let r = call(&g, "POST", "/repos/octo/app/hooks", &[], Some(&body));
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        let h = r.json();
        assert_eq!(h["config"]["secret"], MASKED_SECRET);
        assert_eq!(h["config"]["insecure_ssl"], "0");
        assert_eq!(g.violations(), Vec::<String>::new());
        let r = call(
            &g,
            "POST",
            "/repos/octo/app/hooks",
            &[],
            Some(
                &json!({"config": {"url": "http://127.0.0.1:9/other", "insecure_ssl": true}, "secrets": "x"}),
            ),
        );
        assert_eq!(r.status, 422);
        let v = g.violations();
        assert!(v.iter().any(|v| v.contains("insecure_ssl")), "{v:?}");
        assert!(v.iter().any(|v| v.contains("secrets")), "{v:?}");
        assert_eq!(g.hooks().len(), 1);

        // PATCH applies add/remove events and replaces the config.
        let id = h["id"].as_u64().unwrap();
        let r = call(
            &g,
            "PATCH",
            &format!("/repos/octo/app/hooks/{id}"),
            &[],
            Some(
                &json!({"add_events": ["push"], "remove_events": ["deployment"], "active": false,
                         "config": {"url": "http://127.0.0.1:9/new", "content_type": "json"}}),
            ),
        );
        assert_eq!(r.status, 200);
        let h = r.json();
        assert_eq!(h["events"], json!(["push"]));
        assert_eq!(h["active"], false);
        assert_eq!(h["config"]["url"], "http://127.0.0.1:9/new");
        assert!(
            h["config"].get("secret").is_none(),
            "the secret was not sent again"
        );
        assert_eq!(
            call(
                &g,
                "PATCH",
                "/repos/octo/app/hooks/77",
                &[],
                Some(&json!({"active": true}))
            )
            .status,
            404
        );
    }

    #[test]
    fn a_canned_answer_is_used_once_then_the_default() {
        let g = GithubStandin::start(TOKEN);
        g.push_response(
            "POST /repos/{owner}/{repo}/deployments",
            Canned {
                status: 409,
                headers: vec![("retry-after".into(), "1".into())],
                body: json!({"message": "Conflict: Commit status checks failed for main."}),
            },
        );
        let body = json!({"ref": "main"});
        let r = call(&g, "POST", DEPLOYMENTS, &[], Some(&body));
        assert_eq!(r.status, 409);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("Conflict"));
        let r = call(&g, "POST", DEPLOYMENTS, &[], Some(&body));
        assert_eq!(r.status, 201);
        assert_eq!(r.json()["id"], 1000);
        assert_eq!(r.json()["sha"], FIXED_SHA);
        assert_eq!(g.violations(), Vec::<String>::new());
    }

    #[test]
    fn forwarding_delivers_a_signed_deployment_event() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let hook = format!("http://{}/hooks/github", listener.local_addr().unwrap());
        let received = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 8192];
            loop {
                let n = s.read(&mut buf).unwrap();
                raw.extend_from_slice(&buf[..n]);
                if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap();
                    if raw.len() >= i + 4 + len {
                        s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                            .unwrap();
                        let head = String::from_utf8_lossy(&raw[..i]).to_string();
                        return (head, raw[i + 4..i + 4 + len].to_vec());
                    }
                }
                assert!(n > 0, "connection closed early");
            }
        });
        let g = GithubStandin::start(TOKEN);
        g.forward_deployments_to(&hook, "webhook-secret");
        let r = call(
            &g,
            "POST",
            "/repos/acme/shop/deployments",
            &[],
            Some(&json!({"ref": "main", "environment": "production", "payload": {"k": "v"}})),
        );
        assert_eq!(r.status, 201);
        let created = r.json();
        let (head, body) = received.join().unwrap();
        let header = |name: &str| {
            head.lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {name} in {head}"))
        };
        assert!(head.starts_with("POST /hooks/github HTTP/1.1"), "{head}");
        assert_eq!(header("X-GitHub-Event"), "deployment");
        assert_eq!(header("Content-Type"), "application/json");
        assert_eq!(header("User-Agent"), "GitHub-Hookshot/standin");
        assert_eq!(header("X-GitHub-Delivery").len(), 36);
        assert_eq!(
            header("X-Hub-Signature-256"),
            format!(
                "sha256={}",
                crate::support::hmac_sha256_hex("webhook-secret", &body)
            )
        );
        assert_ne!(
            header("X-Hub-Signature-256"),
            format!(
                "sha256={}",
                crate::support::hmac_sha256_hex("other-secret", &body)
            )
        );
        let event: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(event["action"], "created");
        assert_eq!(event["deployment"], created);
        assert_eq!(event["repository"]["full_name"], "acme/shop");
        assert_eq!(event["repository"]["name"], "shop");
        assert_eq!(event["repository"]["owner"]["login"], "acme");
        assert_eq!(g.violations(), Vec::<String>::new());
    }

    #[test]
    fn hooks_are_listed_in_pages_with_a_link_header() {
        let g = GithubStandin::start(TOKEN);
        let ids: Vec<u64> = (0..5)
            .map(|i| g.add_hook(&format!("http://127.0.0.1:9/h{i}"), &["push"], i % 2 == 0))
            .collect();
        let r = call(&g, "GET", "/repos/octo/app/hooks?per_page=2", &[], None);
        assert_eq!(r.status, 200);
        let page1: Vec<u64> = r
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_u64().unwrap())
            .collect();
        assert_eq!(page1, ids[..2]);
        let link = r.header("link").expect("a Link header");
        let next = format!(
            "<{}/repos/octo/app/hooks?per_page=2&page=2>; rel=\"next\"",
            g.base_url()
        );
        assert!(link.contains(&next), "{link}");
        assert!(link.contains("page=3>; rel=\"last\""), "{link}");
        let r = call(
            &g,
            "GET",
            "/repos/octo/app/hooks?per_page=2&page=3",
            &[],
            None,
        );
        assert_eq!(r.json().as_array().unwrap().len(), 1);
        assert!(!r.header("link").unwrap().contains("rel=\"next\""));
        // The default page size holds them all: no Link header.
        let r = call(&g, "GET", "/repos/octo/app/hooks", &[], None);
        assert_eq!(r.json().as_array().unwrap().len(), 5);
        assert_eq!(r.header("link"), None);
        assert_eq!(g.hooks().len(), 5);
        assert_eq!(g.violations(), Vec::<String>::new());
    }

    #[test]
    fn the_unreachable_url_refuses_connections() {
        let url = unreachable_base_url();
        let addr = url.trim_start_matches("http://");
        assert!(TcpStream::connect(addr).is_err());
    }
}
