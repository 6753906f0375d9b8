//! The webhook server: `POST /hooks/{token}` (and its `/post-receive` and
//! `/redeploy/{id}` routes), `GET /logs/{id}/{key}`, `GET /healthz`,
//! `GET /metrics`.
//!
//! [`app`] builds the router from shared state so tests can drive it; the
//! handler only reads the request within its limits, finds the stack by its
//! token, and hands the delivery to the [`Dispatcher`] off the runtime's
//! workers: on its own thread in `block_in_place` when no other delivery is
//! being dispatched, else on tokio's blocking pool.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::capacity::Capacity;
use crate::dispatch::{error_body, Dispatcher};
use crate::notify::LogLinks;
use crate::plugin::wit;
use crate::tokens::TokenTable;

mod off_workers;
use off_workers::off_the_workers;

/// What `Retry-After` says when the server is saturated.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// Shared state of the server.
pub struct AppState {
    /// The dispatch path.
    pub dispatcher: Dispatcher,
    /// Hook tokens (a reload replaces them with the new stacks').
    pub tokens: crate::config::Live<TokenTable>,
    /// Deliveries being evaluated or journaled right now; full means 429.
    pub in_flight: Arc<Capacity>,
    /// Checks the keys of `/logs/{id}/{key}` links.
    pub log_links: LogLinks,
    /// Room for request bodies held in memory, in [`BODY_BUDGET_UNIT`]s
    /// (`server.max_body_bytes_in_flight`); empty means wait, then 429.
    pub body_budget: Arc<Capacity>,
    /// What `/healthz` and `/metrics` last read from the journal.
    pub probes: JournalProbes,
    /// Deliveries to the hook routes being dispatched right now
    /// (evaluated, journaled, queued), until their dispatch ends, whether
    /// or not their client still waits: when none is, the next runs on the
    /// thread that read it ([`off_the_workers`]). The dashboard's triggers
    /// are not counted; they only make a wrong guess now and then. `serve`
    /// shares it with the journal as the delivery rows on their way
    /// ([`crate::journal::Journal::deliveries_coming`]).
    pub dispatching: Arc<AtomicUsize>,
}

/// The unit of [`AppState::body_budget`]'s permits: KiB, so a permit count
/// fits tokio's `u32` acquisitions for any body size.
pub const BODY_BUDGET_UNIT: usize = 1024;

/// How long a delivery waits for room in the body budget before it is
/// answered 429: long enough for the deliveries ahead of it to be evaluated
/// (a 25 MiB body takes well under a second), short enough to answer
/// within GitHub's 10 s delivery timeout.
pub const BODY_BUDGET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The body budget's permits for `bytes` of bodies in flight.
pub fn body_budget_permits(bytes: usize) -> usize {
    bytes.div_ceil(BODY_BUDGET_UNIT)
}

/// What an admitted delivery holds until its answer is sent: its in-flight
/// slot and its share of the body budget.
pub struct Admission {
    _in_flight: tokio::sync::OwnedSemaphorePermit,
    _body: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// How far a forwarded push's timestamp may be from the server's clock
/// (the component checks it: the plugin's `forwarding::WINDOW_MS`, five
/// minutes). A timestamp is accepted while within this much of now, so a
/// forwarded push's replay key is kept for twice this.
pub const POST_RECEIVE_MAX_SKEW: std::time::Duration = crate::rollback::MAX_SKEW;

/// The header that carries when redeploy's own tools signed a request
/// (Unix seconds): with the body, what a forwarded push is deduplicated on,
/// and part of what a rollback request signs.
const REDEPLOY_TIMESTAMP_HEADER: &str = "x-redeploy-timestamp";

/// The header that carries the signature of a rollback request
/// ([`crate::rollback`]).
const REDEPLOY_SIGNATURE_HEADER: &str = "x-redeploy-signature-256";

/// The most of a deploy log `/logs/{id}/{key}` serves: its last 1 MiB.
pub const MAX_LOG_SERVED_BYTES: u64 = 1 << 20;

/// The router.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/hooks/{token}", any(hook))
        .route(
            "/hooks/{token}/post-receive",
            axum::routing::post(post_receive),
        )
        .route(
            "/hooks/{token}/redeploy/{id}",
            axum::routing::post(redeploy),
        )
        .route("/logs/{id}/{key}", get(deploy_log))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body.to_string() + "\n").into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn reject(status: u16, kind: &str, message: &str) -> Response {
    json_response(status, &error_body(kind, message))
}

async fn not_found() -> Response {
    not_found_response()
}

/// What a path the server does not know is answered (the dashboard's paths
/// too, while it is off).
pub fn not_found_response() -> Response {
    reject(404, "not-found", "no such hook")
}

/// A deploy's log, behind the unguessable link deployment statuses carry
/// (`log_url`). Any wrong id or key is the same 404.
async fn deploy_log(
    State(state): State<Arc<AppState>>,
    Path((id, key)): Path<(String, String)>,
) -> Response {
    let gone = || reject(404, "not-found", "no such log");
    let Ok(id) = id.parse::<i64>() else {
        return gone();
    };
    if !state.log_links.verify(id, &key) {
        return gone();
    }
    let journal = state.dispatcher.journal().clone();
    let config = state.dispatcher.config();
    // This machine's file, else the journal's copy (a PostgreSQL journal
    // shared with the replica that ran the deploy).
    let text = tokio::task::spawn_blocking(move || {
        let state_dir = &config.server.state_dir;
        crate::deploy_log::read_tail(&journal, state_dir, id, MAX_LOG_SERVED_BYTES)
    })
    .await
    .ok()
    .flatten();
    match text {
        Some(text) => {
            let mut resp = text.into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            resp
        }
        None => gone(),
    }
}

/// How long `/healthz` and `/metrics` reuse what they last read from the
/// journal: a flood of probes (both routes need no token) costs the
/// journal one query per this, and takes no connection webhooks need.
pub const PROBE_REUSE: std::time::Duration = std::time::Duration::from_secs(1);

/// What `/healthz` and `/metrics` last read from the journal, and when.
/// Concurrent requests wait for the one read in flight.
#[derive(Default)]
pub struct JournalProbes {
    health: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
    queued: tokio::sync::Mutex<Option<std::time::Instant>>,
}

/// `GET /healthz`: `200 ok` while the journal answers a query, `503
/// journal unreachable` when it does not (the reason goes to the log, not
/// to whoever asks: it names the database).
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let mut last = state.probes.health.lock().await;
    let healthy = match *last {
        Some((at, healthy)) if at.elapsed() < PROBE_REUSE => healthy,
        _ => {
            let journal = state.dispatcher.journal().clone();
            let healthy = match tokio::task::spawn_blocking(move || journal.ping()).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "health check: the journal does not answer");
                    false
                }
                Err(e) => {
                    tracing::error!(error = %e, "health check failed");
                    false
                }
            };
            *last = Some((std::time::Instant::now(), healthy));
            healthy
        }
    };
    if healthy {
        "ok\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "journal unreachable\n").into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    {
        let mut counted = state.probes.queued.lock().await;
        if !counted.is_some_and(|at| at.elapsed() < PROBE_REUSE) {
            let journal = state.dispatcher.journal().clone();
            match tokio::task::spawn_blocking(move || journal.queued_by_stack()).await {
                Ok(Ok(queued)) => state.dispatcher.metrics().set_queued(&queued),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "metrics: cannot count the queued deploys")
                }
                Err(e) => tracing::error!(error = %e, "metrics: cannot count the queued deploys"),
            }
            *counted = Some(std::time::Instant::now());
        }
    }
    let mut resp = state.dispatcher.metrics().render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// What every hook route does first: find the stack by its token (404),
/// take an in-flight slot (429 with `Retry-After`), read the body within its
/// limits (413, 408) and the body budget (429). The slot and the body's
/// share of the budget are held until the returned [`Admission`] drops.
async fn admit(
    state: &AppState,
    token: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, Vec<u8>, Admission), Response> {
    let Some(stack_name) = state.tokens.current().lookup(token).map(str::to_string) else {
        return Err(reject(404, "not-found", "no such hook"));
    };
    let Ok(permit) = state.in_flight.semaphore().clone().try_acquire_owned() else {
        return Err(too_many("too many deliveries in flight; retry later"));
    };
    let server = &state.dispatcher.config().server;
    let mut held = None;
    let body = read_body(
        body,
        headers,
        server.max_body_bytes,
        server.body_timeout,
        state.body_budget.semaphore(),
        &mut held,
    )
    .await?;
    // The body may have taken `body_timeout` to arrive: a reload meanwhile
    // may have taken this token away, or given it to another stack.
    if state.tokens.current().lookup(token) != Some(stack_name.as_str()) {
        return Err(reject(404, "not-found", "no such hook"));
    }
    Ok((
        stack_name,
        body,
        Admission {
            _in_flight: permit,
            _body: held,
        },
    ))
}

/// 429 with `Retry-After`.
fn too_many(message: &str) -> Response {
    let mut resp = reject(429, "too-many-requests", message);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    resp
}

/// Grows `held` to cover `bytes` of body, waiting up to
/// [`BODY_BUDGET_WAIT`] for room (429 after that).
async fn reserve(
    budget: &Arc<Semaphore>,
    held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    bytes: usize,
) -> Result<(), Response> {
    let want = bytes.div_ceil(BODY_BUDGET_UNIT);
    let have = held.as_ref().map_or(0, |p| p.num_permits());
    if want <= have {
        return Ok(());
    }
    let busy = || too_many("too many request bodies in memory; retry later");
    let more = u32::try_from(want - have).map_err(|_| busy())?;
    match tokio::time::timeout(BODY_BUDGET_WAIT, budget.clone().acquire_many_owned(more)).await {
        Ok(Ok(permit)) => {
            match held {
                Some(h) => h.merge(permit),
                None => *held = Some(permit),
            }
            Ok(())
        }
        _ => Err(busy()),
    }
}

/// Reads the body, refusing more than `limit` bytes (413) or a body that
/// does not arrive within `timeout` (408). The body's bytes are taken from
/// `budget` into `held` before they are read: the declared
/// `Content-Length` up front, a chunked body's bytes as they arrive.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: std::time::Duration,
    budget: &Arc<Semaphore>,
    held: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<Vec<u8>, Response> {
    use http_body_util::BodyExt as _;
    let too_large = || {
        reject(
            413,
            "payload-too-large",
            &format!("the body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    // At most `limit` (checked above), so this fits in usize.
    let declared = declared.map_or(0, |n| n as usize);
    reserve(budget, held, declared).await?;
    let read = async {
        let mut body = body;
        let mut buf = Vec::with_capacity(declared);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| reject(400, "bad-body", "the body could not be read"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let total = buf.len() + data.len();
            if total > limit {
                return Err(too_large());
            }
            reserve(budget, held, total).await?;
            buf.extend_from_slice(&data);
        }
        Ok(buf)
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(reject(
            408,
            "request-timeout",
            "the body did not arrive in time",
        )),
        Ok(result) => result,
    }
}

/// A delivery admitted on a hook route ([`admit`]): its stack, its
/// headers, and its request as the component reads it. It holds the
/// in-flight slot and the body's share of the budget until it drops, so a
/// handler keeps it until its answer is ready.
struct Admitted {
    stack: String,
    /// The hook token the path presented: the recorded request's view
    /// redacts it wherever a header repeats it.
    token: String,
    headers: HeaderMap,
    request: wit::HttpRequest,
    _admission: Admission,
}

impl FromRequest<Arc<AppState>> for Admitted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Path(token) = Path::<String>::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let (stack, body, admission) = admit(state, &token, &parts.headers, body).await?;
        let request = request(&parts.method, &parts.uri, &parts.headers, body);
        Ok(Admitted {
            stack,
            token,
            headers: parts.headers,
            request,
            _admission: admission,
        })
    }
}

async fn hook(State(state): State<Arc<AppState>>, admitted: Admitted) -> Response {
    if let Some(name) = repeated_header(&admitted.headers) {
        tracing::warn!(stack = %admitted.stack, header = name, "delivery rejected: a header appears twice");
        return reject(
            400,
            "bad-request",
            &format!("header {name} appears more than once"),
        );
    }
    let Admitted {
        stack,
        token,
        request,
        _admission,
        ..
    } = admitted;
    dispatch_blocking(state, stack, token, wit::Delivery::Http(request), None).await
}

/// An HTTP request as the component reads it.
fn request(method: &Method, uri: &Uri, headers: &HeaderMap, body: Vec<u8>) -> wit::HttpRequest {
    wit::HttpRequest {
        method: method.as_str().to_string(),
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    }
}

/// The first header that appears more than once and must not
/// ([`crate::headers::must_not_repeat`]).
fn repeated_header(headers: &HeaderMap) -> Option<&str> {
    headers.keys().map(|name| name.as_str()).find(|&name| {
        crate::headers::must_not_repeat(name) && headers.get_all(name).iter().nth(1).is_some()
    })
}

/// A post-receive hook handing its push to this server: the same dispatch
/// path as a webhook, with the request as a forwarded post-receive
/// delivery, whose signature, timestamp and body the component checks.
async fn post_receive(State(state): State<Arc<AppState>>, admitted: Admitted) -> Response {
    let Admitted {
        stack,
        token,
        headers,
        request,
        _admission,
    } = admitted;
    // Deduplicated on what was signed: the same push forwarded twice (or
    // replayed within the window) deploys once.
    // The timestamp as the component reads it (trimmed of whitespace,
    // Unicode's included): no other spelling of it is a new push.
    let mut identity = headers
        .get(REDEPLOY_TIMESTAMP_HEADER)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .as_bytes()
                .to_vec()
        })
        .unwrap_or_default();
    identity.push(b'\n');
    identity.extend_from_slice(&request.body);
    let delivery = wit::Delivery::ForwardedPostReceive(request);
    dispatch_blocking(state, stack, token, delivery, Some(identity)).await
}

/// An operator's redeploy of an earlier deploy of the stack
/// ([`crate::rollback`]): refused where the stack refuses manual triggers;
/// signed over the stack, the deploy id and a fresh timestamp where the
/// stack has secrets (it names a commit, so the URL alone is not enough);
/// each signed request deploys once.
async fn redeploy(
    State(state): State<Arc<AppState>>,
    Path((token, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use crate::config::ManualSetting;
    let (stack_name, body, _permit) = match admit(&state, &token, &headers, body).await {
        Ok(admitted) => admitted,
        Err(resp) => return resp,
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        return reject(400, "bad-request", "a redeploy request has no body");
    }
    let Some(deploy_id) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return reject(400, "bad-request", "the deploy id is not a positive number");
    };
    let config = state.dispatcher.config().clone();
    let Some(stack) = config.stack(&stack_name) else {
        return reject(404, "not-found", "no such hook");
    };
    if stack.manual == ManualSetting::Refuse {
        return reject(
            403,
            "refused",
            &format!(
                "stack \"{stack_name}\" refuses manual triggers (manual = \"refuse\"), and so redeploys"
            ),
        );
    }
    let signed = if stack.secrets.is_empty() {
        None
    } else {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let (Some(presented), Some(timestamp)) = (
            header(REDEPLOY_SIGNATURE_HEADER),
            header(REDEPLOY_TIMESTAMP_HEADER),
        ) else {
            return reject(
                401,
                "missing-signature",
                "this stack has secrets: a redeploy names a commit, so it must carry X-Redeploy-Timestamp and X-Redeploy-Signature-256 (redeploy trigger --redeploy signs it)",
            );
        };
        let now = u64::try_from(crate::journal::now_ms() / 1000).unwrap_or(0);
        if !timestamp
            .parse::<u64>()
            .is_ok_and(|t| crate::rollback::is_fresh(t, now))
        {
            return reject(
                401,
                "stale-signature",
                &format!(
                    "X-Redeploy-Timestamp is not within {} of the server's clock",
                    humantime::format_duration(crate::rollback::MAX_SKEW)
                ),
            );
        }
        let secrets = stack.secrets.iter().map(|s| s.expose());
        if !crate::rollback::verify(secrets, &stack_name, deploy_id, timestamp, presented) {
            return reject(
                401,
                "bad-signature",
                "X-Redeploy-Signature-256 does not sign this stack, deploy and timestamp with any of the stack's secrets",
            );
        }
        Some(crate::rollback::signed_text(&stack_name, deploy_id, timestamp).into_bytes())
    };
    // A timestamp is accepted while within the skew of now, so its key is
    // kept for twice that.
    on_blocking_thread(state, stack_name, move |dispatcher, stack| {
        dispatcher.redeploy(
            stack,
            deploy_id,
            signed.as_deref(),
            crate::rollback::MAX_SKEW * 2,
        )
    })
    .await
}

/// Dispatches off the runtime's workers; `token` is the hook token the path
/// presented, `identity` what a forwarded post-receive push is
/// deduplicated on.
async fn dispatch_blocking(
    state: Arc<AppState>,
    stack_name: String,
    token: String,
    delivery: wit::Delivery,
    identity: Option<Vec<u8>>,
) -> Response {
    on_blocking_thread(state, stack_name, move |dispatcher, stack| {
        let identity = identity
            .as_deref()
            .map(|bytes| crate::dispatch::ReplayIdentity {
                bytes,
                window: POST_RECEIVE_MAX_SKEW * 2,
                on: "its signed time and body",
            });
        dispatcher.dispatch_identified(&[stack], &delivery, identity, Some(&token))
    })
    .await
}

/// Runs `work` (evaluation, journal, runner: all blocking) for the stack
/// named `stack_name` off the runtime's workers ([`off_the_workers`]), and
/// answers with its result: a panic in it is a 500.
async fn on_blocking_thread(
    state: Arc<AppState>,
    stack_name: String,
    work: impl FnOnce(&Dispatcher, &crate::config::StackConfig) -> crate::dispatch::Dispatched
        + Send
        + 'static,
) -> Response {
    let dispatcher = state.dispatcher.clone();
    let result = off_the_workers(&state.dispatching, move || {
        let config = dispatcher.config();
        match config.stack(&stack_name) {
            Some(stack) => work(&dispatcher, stack),
            None => crate::dispatch::Dispatched::unrecorded(
                404,
                error_body("not-found", "no such hook"),
            ),
        }
    })
    .await;
    match result {
        Ok(d) => {
            let d = d.recorded().await;
            json_response(d.status, &d.body)
        }
        Err(e) => {
            tracing::error!(error = %e, "delivery task failed");
            reject(500, "internal-error", "the delivery could not be processed")
        }
    }
}

/// The per-connection limits [`serve_http`] applies.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// A client must send its request headers within this, and an idle
    /// keep-alive connection is closed after it (hyper starts the header
    /// timer when it waits for the next request).
    pub header_timeout: std::time::Duration,
    /// A write to the client may make no progress for at most this long.
    pub write_timeout: std::time::Duration,
    /// After `shutdown`, how long open connections may take to finish
    /// their current request before they are dropped.
    pub shutdown_grace: std::time::Duration,
}

impl ConnectionLimits {
    /// The limits of `server`.
    pub fn of(server: &crate::config::ServerConfig) -> ConnectionLimits {
        ConnectionLimits {
            header_timeout: server.header_timeout,
            write_timeout: server.write_timeout,
            shutdown_grace: server.shutdown_grace,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open
/// connections finish their current request, for at most
/// `shutdown_grace`. A client that has not sent its request headers within
/// `header_timeout` is disconnected, so slow clients cannot hold connections
/// open (axum's own `serve` has no such limit); one that stops reading its
/// answer is disconnected after `write_timeout`; at most `open`'s size
/// (`max_connections`) are open at once (the next waits in the listen
/// backlog). `limits` is read for each new connection, and once more for
/// the grace, so a reload applies to what comes next.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: impl Fn() -> ConnectionLimits,
    open: Arc<Capacity>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = open.semaphore().clone().acquire_owned() => slot,
            _ = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // The client's address, for whoever asks (the dashboard's
                // sign-in limiter and trusted proxies).
                let router = router.clone();
                let service = TowerToHyperService::new(tower::service_fn(
                    move |mut request: axum::http::Request<hyper::body::Incoming>| {
                        request
                            .extensions_mut()
                            .insert(axum::extract::ConnectInfo(peer));
                        tower::ServiceExt::oneshot(router.clone(), request)
                    },
                ));
                // Read per connection: a reload applies to the next one.
                let limits = limits();
                let io = WriteTimeout::new(stream, limits.write_timeout);
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(limits.header_timeout)
                    .serve_connection(TokioIo::new(io), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    // Errors here are the client's (reset, timeout): nothing to do.
                    let _ = conn.await;
                    drop(slot);
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    let limits = limits();
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.shutdown_grace, "connections still open after the shutdown grace; dropping them");
    }
    Ok(())
}

/// A stream whose writes fail with `TimedOut` once a write (or flush) has
/// made no progress for the timeout: a client that stops reading cannot
/// hold its connection, or a graceful stop, forever.
struct WriteTimeout<T> {
    io: T,
    timeout: std::time::Duration,
    stalled: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteTimeout<T> {
    fn new(io: T, timeout: std::time::Duration) -> Self {
        WriteTimeout {
            io,
            timeout,
            stalled: None,
        }
    }

    /// Maps a write's poll: progress disarms the timer, `Pending` arms it
    /// (once) and fails the write when it fires.
    fn watch<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<R>>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::future::Future as _;
        use std::task::Poll;
        match polled {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let timeout = self.timeout;
                let sleep = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client did not read its answer in time",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteTimeout<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteTimeout<T> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = std::pin::Pin::new(&mut this.io).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}
