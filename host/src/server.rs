//! The webhook server: `POST /hooks/{token}`, `GET /healthz`, `GET /metrics`.
//!
//! [`app`] builds the router from shared state so tests can drive it; the
//! handler only reads the request within its limits, finds the stack by its
//! token, and hands the delivery to the [`Dispatcher`] on a blocking thread.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::dispatch::{error_body, Dispatcher};
use crate::notify::LogLinks;
use crate::plugin::wit;
use crate::tokens::TokenTable;

/// What `Retry-After` says when the server is saturated.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// Shared state of the server.
pub struct AppState {
    /// The dispatch path.
    pub dispatcher: Dispatcher,
    /// Hook tokens.
    pub tokens: TokenTable,
    /// Deliveries being evaluated or journaled right now; full means 429.
    pub in_flight: Arc<Semaphore>,
    /// Checks the keys of `/logs/{id}/{key}` links.
    pub log_links: LogLinks,
}

/// The header carrying the signature of a post-receive push forwarded by a
/// git server's hook: `sha256=` + hex HMAC-SHA256, with the stack's first
/// secret, of the timestamp, the stack and the body
/// ([`sign_post_receive`]). Required when the stack has secrets.
pub const POST_RECEIVE_SIGNATURE_HEADER: &str = "x-redeploy-signature-256";

/// The header carrying when the hook forwarded the push, in seconds since
/// the Unix epoch; covered by the signature.
pub const POST_RECEIVE_TIMESTAMP_HEADER: &str = "x-redeploy-timestamp";

/// How far a forwarded push's timestamp may be from the server's clock, in
/// either direction. The hook forwards at once, so a genuine push arrives
/// within seconds; five minutes leaves room for clocks a little apart
/// (NTP keeps them within a second) and a slow network, and is the same
/// window Slack and Stripe give their signed webhooks. A captured push is
/// refused after it, and within it deploys only once (the replay key is
/// kept for twice this: a timestamp is accepted while it is within this
/// much of now).
pub const POST_RECEIVE_MAX_SKEW: std::time::Duration = std::time::Duration::from_secs(5 * 60);

/// The [`POST_RECEIVE_SIGNATURE_HEADER`] value for a push forwarded to
/// `stack` at `timestamp` (Unix seconds, the
/// [`POST_RECEIVE_TIMESTAMP_HEADER`] value) with `body`.
pub fn sign_post_receive(secret: &str, timestamp: &str, stack: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    format!(
        "sha256={}",
        hex::encode(
            post_receive_mac(secret, timestamp, stack, body)
                .finalize()
                .into_bytes()
        )
    )
}

/// HMAC-SHA256 of `timestamp`, `.`, `stack`, a newline and the body, keyed
/// by a stack secret. Neither a timestamp (digits) nor a stack name
/// (`[A-Za-z0-9._-]`) holds a newline, so the parts cannot be shifted.
fn post_receive_mac(
    secret: &str,
    timestamp: &str,
    stack: &str,
    body: &[u8],
) -> hmac::Hmac<sha2::Sha256> {
    use hmac::Mac as _;
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(stack.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// Whether `presented` signs (`timestamp`, `stack`, `body`) with `secret`
/// (constant time).
fn verify_post_receive(
    secret: &str,
    timestamp: &str,
    stack: &str,
    body: &[u8],
    presented: &str,
) -> bool {
    use hmac::Mac as _;
    let Some(hex_sig) = presented.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    post_receive_mac(secret, timestamp, stack, body)
        .verify_slice(&sig)
        .is_ok()
}

/// Whether a forwarded push's timestamp is within [`POST_RECEIVE_MAX_SKEW`]
/// of `now_secs`.
fn fresh_post_receive(timestamp: u64, now_secs: u64) -> bool {
    timestamp.abs_diff(now_secs) <= POST_RECEIVE_MAX_SKEW.as_secs()
}

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
    let text = tokio::task::spawn_blocking(move || -> Option<String> {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let path = journal.deploy(id).ok()??.log_path?;
        let mut file = std::fs::File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        let mut buf = Vec::new();
        if len > MAX_LOG_SERVED_BYTES {
            file.seek(SeekFrom::Start(len - MAX_LOG_SERVED_BYTES))
                .ok()?;
            buf.extend_from_slice(b"[... earlier output cut ...]\n");
        }
        file.take(MAX_LOG_SERVED_BYTES).read_to_end(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf).into_owned())
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

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut resp = state.dispatcher.metrics().render().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    resp
}

/// What every hook route does first: find the stack by its token (404),
/// take an in-flight slot (429 with `Retry-After`), read the body within its
/// limits (413, 408). The slot is held until the returned permit drops.
async fn admit(
    state: &AppState,
    token: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(String, Vec<u8>, tokio::sync::OwnedSemaphorePermit), Response> {
    let Some(stack_name) = state.tokens.lookup(token).map(str::to_string) else {
        return Err(reject(404, "not-found", "no such hook"));
    };
    let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
        let mut resp = reject(
            429,
            "too-many-requests",
            "too many deliveries in flight; retry later",
        );
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        return Err(resp);
    };
    let server = &state.dispatcher.config().server;
    let body = read_body(body, headers, server.max_body_bytes, server.body_timeout).await?;
    Ok((stack_name, body, permit))
}

/// Reads the body, refusing more than `limit` bytes (413) or a body that
/// does not arrive within `timeout` (408).
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(reject(
            413,
            "payload-too-large",
            &format!("the body is larger than {limit} bytes"),
        ));
    }
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(reject(
            408,
            "request-timeout",
            "the body did not arrive in time",
        )),
        Ok(Ok(bytes)) => Ok(bytes.to_vec()),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e).is_some_and(|s| {
                s.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
            }) || e.to_string().contains("length limit");
            if too_large {
                Err(reject(
                    413,
                    "payload-too-large",
                    &format!("the body is larger than {limit} bytes"),
                ))
            } else {
                Err(reject(400, "bad-body", "the body could not be read"))
            }
        }
    }
}

async fn hook(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (stack_name, body, _permit) = match admit(&state, &token, &headers, body).await {
        Ok(admitted) => admitted,
        Err(resp) => return resp,
    };
    if let Some(name) = repeated_header(&headers) {
        tracing::warn!(stack = %stack_name, header = name, "delivery rejected: a header appears twice");
        return reject(
            400,
            "bad-request",
            &format!("header {name} appears more than once"),
        );
    }
    let delivery = wit::Delivery::Http(wit::HttpRequest {
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
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
    });
    dispatch_blocking(state, stack_name, delivery, None).await
}

/// The first header that appears more than once and must not: the content
/// type and every `X-` header (event names, delivery ids, signatures and
/// tokens are all `X-` headers), except the `X-Forwarded-*` headers proxies
/// may repeat. Two values would leave it to chance which event or which
/// signature counts, so such a request is refused.
fn repeated_header(headers: &HeaderMap) -> Option<&str> {
    headers.keys().map(|name| name.as_str()).find(|&name| {
        (name == "content-type" || (name.starts_with("x-") && !name.starts_with("x-forwarded-")))
            && headers.get_all(name).iter().nth(1).is_some()
    })
}

/// The body a post-receive hook forwards to `/hooks/{token}/post-receive`.
#[derive(serde::Deserialize, serde::Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ForwardedPush {
    /// The repository identity (forge name or absolute path).
    pub repository: String,
    /// The `<old> <new> <ref>` updates.
    pub updates: Vec<ForwardedUpdate>,
    /// Who pushed, when the git server says.
    pub pusher: Option<String>,
}

/// One forwarded ref update.
#[derive(serde::Deserialize, serde::Serialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ForwardedUpdate {
    /// Old object id.
    pub old: String,
    /// New object id.
    pub new: String,
    /// Full ref name.
    pub name: String,
}

/// A post-receive hook handing its push to this server: the same dispatch
/// path as a webhook, with the push as a post-receive delivery.
async fn post_receive(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (stack_name, body, _permit) = match admit(&state, &token, &headers, body).await {
        Ok(admitted) => admitted,
        Err(resp) => return resp,
    };
    let timestamp = headers
        .get(POST_RECEIVE_TIMESTAMP_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(stack) = state.dispatcher.config().stack(&stack_name) {
        if !stack.secrets.is_empty() {
            let presented = headers
                .get(POST_RECEIVE_SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok());
            let Some(presented) = presented else {
                return reject(
                    401,
                    "missing-signature",
                    "this stack has secrets: a forwarded post-receive push must carry X-Redeploy-Signature-256",
                );
            };
            let Some(timestamp) = timestamp.as_deref() else {
                return reject(
                    401,
                    "bad-signature",
                    "X-Redeploy-Timestamp is missing: the signature covers the time the push was forwarded",
                );
            };
            let valid = stack
                .secrets
                .iter()
                .any(|s| verify_post_receive(s.expose(), timestamp, &stack_name, &body, presented));
            if !valid {
                return reject(
                    401,
                    "bad-signature",
                    "X-Redeploy-Signature-256 does not match the timestamp, stack and body with any of the stack's secrets",
                );
            }
        }
    }
    // Signed or not, a timestamp must be a recent one.
    if let Some(timestamp) = timestamp.as_deref() {
        let now = u64::try_from(crate::runner::now_ms() / 1000).unwrap_or(0);
        if !timestamp.parse().is_ok_and(|t| fresh_post_receive(t, now)) {
            return reject(
                401,
                "stale-signature",
                &format!(
                    "X-Redeploy-Timestamp is not within {} of the server's clock: a replayed or delayed push",
                    humantime::format_duration(POST_RECEIVE_MAX_SKEW)
                ),
            );
        }
    }
    let push: ForwardedPush = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return reject(400, "malformed-payload", &format!("post-receive body: {e}")),
    };
    let delivery = wit::Delivery::PostReceive(wit::PostReceive {
        repository: push.repository,
        updates: push
            .updates
            .into_iter()
            .map(|u| wit::RefUpdate {
                old: u.old,
                new: u.new,
                name: u.name,
            })
            .collect(),
        pusher: push.pusher,
        query: uri.query().unwrap_or("").to_string(),
    });
    // Deduplicated on what was signed: the same push forwarded twice (or
    // replayed within the window) deploys once.
    let mut identity = timestamp.unwrap_or_default().into_bytes();
    identity.push(b'\n');
    identity.extend_from_slice(&body);
    dispatch_blocking(state, stack_name, delivery, Some(identity)).await
}

/// Dispatches on a blocking thread; `identity` is what a forwarded
/// post-receive push is deduplicated on.
async fn dispatch_blocking(
    state: Arc<AppState>,
    stack_name: String,
    delivery: wit::Delivery,
    identity: Option<Vec<u8>>,
) -> Response {
    let dispatcher = state.dispatcher.clone();
    let result = tokio::task::spawn_blocking(move || {
        let config = dispatcher.config().clone();
        let Some(stack) = config.stack(&stack_name) else {
            return crate::dispatch::Dispatched {
                status: 404,
                body: error_body("not-found", "no such hook"),
            };
        };
        let identity = identity
            .as_deref()
            .map(|bytes| crate::dispatch::ReplayIdentity {
                bytes,
                window: POST_RECEIVE_MAX_SKEW * 2,
            });
        dispatcher.dispatch_identified(&[stack], &delivery, identity)
    })
    .await;
    match result {
        Ok(d) => json_response(d.status, &d.body),
        Err(e) => {
            tracing::error!(error = %e, "delivery task failed");
            reject(500, "internal-error", "the delivery could not be processed")
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open
/// connections finish their current request. A client that has not sent its
/// request headers within `header_timeout` is disconnected, so slow clients
/// cannot hold connections open (axum's own `serve` has no such limit).
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(router.clone());
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    // Errors here are the client's (reset, timeout): nothing to do.
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
