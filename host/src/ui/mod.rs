//! The dashboard: `redeploy serve`'s pages under `/ui/`, behind a sign-in
//! (`[ui]`). Off (every `/ui/` path answers as an unknown path does) while
//! the config has no `[ui]` table; a reload that adds or removes users
//! applies to the next request.
//!
//! - [`auth`]: passwords, sessions, CSRF tokens, the sign-in limiter.
//! - [`view`]: what the pages show, computed from records (pure).
//! - [`pages`]: the templates.
//!
//! Every answer carries a strict `Content-Security-Policy`, `X-Frame-Options:
//! DENY`, `Referrer-Policy: no-referrer` (hook URLs are credentials) and
//! `Cache-Control: no-store`. Every state-changing request carries the CSRF
//! token of whoever is signed in; sessions live in the journal, so they
//! hold on every replica and end on all of them at sign-out.

mod actions;
pub mod auth;
mod deliveries;
mod deploys;
pub mod pages;
mod session;
mod stacks;
pub mod view;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use cookie::{Cookie, SameSite};
use serde::Deserialize;

use crate::config::{Config, Live, Role, UiConfig};
use crate::journal::{now_ms, Journal};
use crate::server::AppState;
use auth::{LoginLimiter, Passwords, User};
use pages::Chrome;

/// The session cookie (`Path=/ui`, `HttpOnly`, `SameSite=Strict`, `Secure`
/// when `server.public_url` is https).
pub const SESSION_COOKIE: &str = "redeploy_session";

/// The sign-in form's cookie: a random value the form's CSRF token is bound
/// to, so a sign-in cannot be forged from another site either.
pub const LOGIN_COOKIE: &str = "redeploy_login";

/// How long a sign-in form stays good.
pub const LOGIN_FORM_TTL: Duration = Duration::from_secs(60 * 60);

/// The largest form body accepted (sign-in, actions); more is 413.
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// "Check again" dry runs at once at most, over all users: each evaluates
/// a kept request (up to 1 MiB) in the component; one more is answered
/// 429 rather than queued.
pub const MAX_RECHECKS_AT_ONCE: usize = 2;

/// Password checks run at once at most (each costs tens of milliseconds of
/// CPU and 19 MiB); the next waits up to [`PASSWORD_CHECK_WAIT`].
pub const MAX_CONCURRENT_PASSWORD_CHECKS: usize = 2;

/// How long a sign-in waits for a password check slot before 503: short,
/// so a flood of sign-ins holds few of the connections hooks share.
pub const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(2);

/// Deploys and deliveries the stack page lists.
pub const PAGE_ROWS: usize = 50;

/// The most notifications the deploy page lists (a deploy has at most a
/// few per channel).
pub const MAX_NOTIFICATIONS_SHOWN: usize = 200;

/// The most of a deploy's log the deploy page shows: its last 256 KiB.
pub const MAX_LOG_SHOWN_BYTES: u64 = 256 * 1024;

/// How often a followed log is read for more, and for the deploy's end.
pub const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// The most of a log one event carries.
pub const MAX_FOLLOW_EVENT_BYTES: u64 = 64 * 1024;

/// Logs followed at once at most; the next follower is answered 503.
pub const MAX_LOG_FOLLOWERS: usize = 64;

/// How long one stream follows a log before it ends (the browser
/// reconnects, resuming where it was): no stream outlives a stuck deploy.
pub const MAX_FOLLOW: Duration = Duration::from_secs(60 * 60);

/// How often a followed log's stream checks that its user is still signed
/// in (not signed out, removed from the config or given another
/// password), and ends if not.
pub const FOLLOW_RECHECK: Duration = Duration::from_secs(10);

/// The name of the server key the CSRF tokens are made with.
const CSRF_KEY_NAME: &str = "ui-csrf";

/// The policy every page is served with: its own styles and script only,
/// no frames, forms that post only here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The dashboard's share of the server's state.
pub struct UiState {
    /// The hook server's state: the journal, the hook tokens.
    pub app: Arc<AppState>,
    /// The config, as reloads change it.
    pub config: Live<Config>,
    /// The address the server listens on: hook URLs are made with it when
    /// the config has no `public_url`.
    pub listening: SocketAddr,
    /// The dashboard has a socket of its own (`[ui] listen` at start);
    /// else it is on the hook port.
    own_socket: bool,
    passwords: OnceLock<Passwords>,
    key: OnceLock<Vec<u8>>,
    limiter: Mutex<LoginLimiter>,
    checks: Arc<tokio::sync::Semaphore>,
    followers: Arc<tokio::sync::Semaphore>,
    /// "Check again" dry runs in progress ([`MAX_RECHECKS_AT_ONCE`]).
    rechecks: Arc<tokio::sync::Semaphore>,
    /// The server is stopping: followed logs end (an open stream would
    /// hold the graceful stop for its whole grace).
    stopping: std::sync::atomic::AtomicBool,
}

impl UiState {
    /// The dashboard's state beside the hook server's. The decoy password
    /// hash and the CSRF key are made at the first request that needs them,
    /// so a server without `[ui]` pays nothing.
    pub fn new(
        app: Arc<AppState>,
        config: Live<Config>,
        listening: SocketAddr,
        own_socket: bool,
    ) -> UiState {
        UiState {
            app,
            config,
            listening,
            own_socket,
            passwords: OnceLock::new(),
            key: OnceLock::new(),
            limiter: Mutex::new(LoginLimiter::default()),
            checks: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_PASSWORD_CHECKS)),
            followers: Arc::new(tokio::sync::Semaphore::new(MAX_LOG_FOLLOWERS)),
            rechecks: Arc::new(tokio::sync::Semaphore::new(MAX_RECHECKS_AT_ONCE)),
            stopping: Default::default(),
        }
    }

    /// The server is stopping: ends the followed logs at their next look.
    pub fn stop(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn journal(&self) -> &Journal {
        self.app.dispatcher.journal()
    }

    /// This machine's state directory, under which its deploy logs are.
    fn state_dir(&self) -> std::path::PathBuf {
        self.app.dispatcher.config().server.state_dir.clone()
    }

    /// The CSRF key: the journal's server key [`CSRF_KEY_NAME`] (one for
    /// every replica), stored on first use.
    async fn key(self: &Arc<Self>) -> Result<Vec<u8>, Response> {
        if let Some(key) = self.key.get() {
            return Ok(key.clone());
        }
        let state = self.clone();
        let key = blocking(move || {
            let candidate = crate::tokens::generate_token()?;
            Ok(state
                .journal()
                .ensure_server_key(CSRF_KEY_NAME, &candidate)?
                .into_bytes())
        })
        .await?;
        Ok(self.key.get_or_init(|| key).clone())
    }
}

/// Connections the dashboard's own socket (`[ui] listen`) holds open at
/// once; more wait in the listen backlog. Its own, so a crowd of browsers
/// never takes the hook port's `server.max_connections`.
pub const MAX_UI_CONNECTIONS: usize = 256;

/// The dashboard's routes, to merge into the hook server's router.
pub fn routes(state: Arc<UiState>) -> Router {
    Router::new()
        .route("/ui", get(to_stacks))
        .route("/ui/", get(stacks::stacks_page))
        .route("/ui/login", get(session::login_form).post(session::login))
        .route("/ui/logout", post(session::logout))
        .route("/ui/stacks/{name}", get(stacks::stack_page))
        .route("/ui/stacks/{name}/hook-url", post(stacks::reveal_hook_url))
        .route("/ui/stacks/{name}/deploy", post(actions::deploy_now))
        .route(
            "/ui/stacks/{name}/redeploy/{id}",
            post(actions::redeploy_commit),
        )
        .route("/ui/deploys/{id}", get(deploys::deploy_page))
        .route("/ui/deliveries/{id}", get(deliveries::delivery_page))
        .route("/ui/deliveries/{id}/check", post(deliveries::check_again))
        .route("/ui/deploys/{id}/events", get(deploys::follow_log))
        .route("/ui/deploys/{id}/cancel", post(actions::cancel))
        .route("/ui/static/style.css", get(style))
        .route("/ui/static/app.js", get(script))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            body_in_time,
        ))
        .layer(axum::middleware::map_response(secure_headers))
        // Outermost: while the dashboard is off nothing below runs, not
        // even a form's parsing or a method check.
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Every `/ui` path answers as an unknown path does while the config has
/// no `[ui]`, and on the hook port while `[ui] listen` asks for a socket
/// of its own (a reload added it; a restart opens it).
async fn gate(
    State(state): State<Arc<UiState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let config = state.config.current();
    let Some(ui) = &config.ui else {
        return off();
    };
    // On the hook port, a `listen` a reload asked for turns the dashboard
    // off there until a restart opens its own socket.
    if !state.own_socket && ui.listen.is_some() {
        return off();
    }
    next.run(request).await
}

/// Reads a request's body (a form) within `server.body_timeout`, as the
/// hook routes read theirs: a client that trickles one is answered 408, and
/// holds no connection longer; one over [`MAX_FORM_BYTES`] is answered 413.
async fn body_in_time(
    State(state): State<Arc<UiState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let timeout = state.config.current().server.body_timeout;
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_FORM_BYTES)).await {
        Ok(Ok(bytes)) => {
            next.run(axum::extract::Request::from_parts(parts, bytes.into()))
                .await
        }
        Ok(Err(_)) => (StatusCode::PAYLOAD_TOO_LARGE, "the form is too large\n").into_response(),
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            "the form did not arrive in time\n",
        )
            .into_response(),
    }
}

async fn to_stacks() -> Response {
    Redirect::to("/ui/").into_response()
}

async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The client's address, when the server recorded it
/// ([`crate::server::serve_http`] does for every connection).
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Runs journal work on a blocking thread; a failure is a 503 page.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Response> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "dashboard: the journal failed");
            Err(error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Chrome::default(),
                "Unavailable",
                "The journal cannot be read right now; try again shortly.",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard: a journal task failed");
            Err(error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                Chrome::default(),
                "Error",
                "Something went wrong; the server's log says what.",
            ))
        }
    }
}

fn html(status: StatusCode, page: impl askama::Template) -> Response {
    match page.render() {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            // Text from senders (a ref, a message, a log) may hold Unicode's
            // reordering or invisible characters; the templates hold none,
            // so each one on the page is shown as its escape, not obeyed.
            if body.chars().any(crate::text::is_deceptive) {
                crate::text::without_reordering(&body).into_owned()
            } else {
                body
            },
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: a page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render\n",
            )
                .into_response()
        }
    }
}

fn error_page(status: StatusCode, chrome: Chrome, title: &str, message: &str) -> Response {
    html(
        status,
        pages::Error {
            chrome,
            title: title.to_owned(),
            message: message.to_owned(),
        },
    )
}

/// What every `/ui/` path answers while the dashboard is off: what the hook
/// server answers for any path it does not know.
fn off() -> Response {
    crate::server::not_found_response()
}

/// The cookie named `name` the request carries.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value for this server: `HttpOnly`, `SameSite=Strict`,
/// `Secure` when the public URL is https; `None` as `max_age` removes it.
fn set_cookie(
    config: &Config,
    name: &str,
    value: &str,
    path: &str,
    max_age: Option<Duration>,
) -> HeaderValue {
    let secure = config.server.public_url.as_deref().is_some_and(|u| {
        u.get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
    });
    let mut c = Cookie::build((name.to_owned(), value.to_owned()))
        .path(path.to_owned())
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure);
    c = match max_age {
        Some(age) => c.max_age(cookie::time::Duration::seconds(age.as_secs() as i64)),
        None => c.removal(),
    };
    HeaderValue::from_str(&c.build().to_string())
        .expect("a cookie of hex and ASCII attributes is a header value")
}

/// A session id as the cookie carries it: [`auth::SESSION_ID_BYTES`] in hex.
fn well_formed_session_id(id: &str) -> bool {
    id.len() == 2 * auth::SESSION_ID_BYTES && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Who is signed in: the user an identity proxy names (only on a
/// connection from one of `trusted_proxies`), else the session cookie's.
async fn signed_in(
    state: &Arc<UiState>,
    ui: &UiConfig,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Option<User>, Response> {
    if let Some(proxy) = &ui.proxy {
        let from_proxy = peer.is_some_and(|ip| {
            proxy
                .from
                .iter()
                .any(|p| p.to_canonical() == ip.to_canonical())
        });
        // Exactly one value: a proxy that appends to a header a client sent
        // would otherwise let the client's copy speak first.
        let mut values = headers.get_all(proxy.header.as_str()).iter();
        let only = match (values.next(), values.next()) {
            (Some(value), None) => Some(value),
            _ => None,
        };
        if from_proxy {
            if let Some(name) = only.and_then(|v| std::str::from_utf8(v.as_bytes()).ok()) {
                let name = name.trim();
                let fits = !name.is_empty()
                    && name.len() <= crate::config::MAX_USER_NAME_BYTES
                    && !name.chars().any(char::is_control);
                if fits {
                    return Ok(Some(User {
                        name: name.to_owned(),
                        role: proxy.role,
                        session: None,
                    }));
                }
            }
        }
    }
    let Some(id) = cookie(headers, SESSION_COOKIE).filter(|id| well_formed_session_id(id)) else {
        return Ok(None);
    };
    let hash = auth::session_hash(&id);
    let journal = state.clone();
    let now = now_ms();
    let session = blocking(move || Ok(journal.journal().ui_session_user(&hash, now)?)).await?;
    // A user removed from the config, or whose password changed since, is
    // signed out; so is a session older than the config's `session_ttl`
    // now is (it may have been shortened since the sign-in).
    Ok(session.and_then(|session| {
        let ttl = i64::try_from(ui.session_ttl.as_millis()).unwrap_or(i64::MAX);
        if session.created_at_ms.saturating_add(ttl) <= now {
            return None;
        }
        ui.user(&session.user)
            .filter(|user| auth::credential(&user.password_hash) == session.credential)
            .map(|user| User {
                name: user.name.clone(),
                role: user.role,
                session: Some(id),
            })
    }))
}

/// Ends the sessions of users `config`'s dashboard no longer has, or whose
/// password it changed, so that putting a user back does not sign in an
/// old cookie again; the server's start and each reload call it, and it
/// logs what it did. A config without a dashboard ends none: a replica
/// that serves only hooks does not speak for the dashboard of the others
/// on the journal.
pub fn end_sessions_of_removed_users(journal: &crate::journal::Journal, config: &Config) {
    let Some(ui) = &config.ui else {
        return;
    };
    let ended = journal.end_ui_sessions_unless(&|name, credential| {
        ui.user(name)
            .is_some_and(|user| auth::credential(&user.password_hash) == credential)
    });
    match ended {
        Ok(0) => {}
        Ok(n) => tracing::info!(sessions = n, "dashboard sessions of removed users ended"),
        Err(e) => tracing::warn!(error = %e, "cannot end the dashboard sessions of removed users"),
    }
}

/// The CSRF token of `user`, bound to their session (or, for a user a proxy
/// names, to their name).
fn csrf_subject(user: &User) -> (&'static str, String) {
    match &user.session {
        Some(id) => ("session", id.clone()),
        None => ("proxy", user.name.clone()),
    }
}

fn chrome(user: &User, key: &[u8]) -> Chrome {
    let (purpose, subject) = csrf_subject(user);
    Chrome {
        user: Some(user.name.clone()),
        role: user.role.as_str(),
        csrf: auth::csrf_token(key, purpose, &subject),
        can_sign_out: user.session.is_some(),
    }
}

/// The signed-in user and the page frame, or the answer to give instead:
/// the sign-in page (for a page) or 403 (for an action).
struct Signed {
    user: User,
    key: Vec<u8>,
    config: Arc<Config>,
}

impl Signed {
    fn chrome(&self) -> Chrome {
        chrome(&self.user, &self.key)
    }
}

/// What a request needs of who is signed in.
#[derive(Clone, Copy)]
enum Need<'a> {
    /// A page: without a session, the sign-in page instead.
    Page,
    /// An action: without a session, 403; with one, the form's CSRF token
    /// (`presented`) must be the session's.
    Action(Option<&'a str>),
}

/// The signed-in user, or the answer to give instead ([`Need`]).
async fn require(
    state: &Arc<UiState>,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    need: Need<'_>,
) -> Result<Signed, Response> {
    let config = state.config.current();
    let Some(ui) = &config.ui else {
        return Err(off());
    };
    let user = signed_in(state, ui, headers, peer).await?;
    let key = state.key().await?;
    match (user, need) {
        (Some(user), _) => {
            let signed = Signed {
                user,
                key,
                config: config.clone(),
            };
            match need {
                Need::Action(presented) => match csrf_refusal(&signed, presented) {
                    Some(refusal) => Err(refusal),
                    None => Ok(signed),
                },
                Need::Page => Ok(signed),
            }
        }
        (None, Need::Action(_)) => Err(error_page(
            StatusCode::FORBIDDEN,
            Chrome::default(),
            "Signed out",
            "Your session has ended; sign in again.",
        )),
        (None, Need::Page) => Err(Redirect::to("/ui/login").into_response()),
    }
}

/// The answer to an action whose CSRF token is wrong or missing (403), or
/// `None` when it is right.
fn csrf_refusal(signed: &Signed, presented: Option<&str>) -> Option<Response> {
    let (purpose, subject) = csrf_subject(&signed.user);
    if presented.is_some_and(|t| auth::csrf_ok(&signed.key, purpose, &subject, t)) {
        return None;
    }
    Some(error_page(
        StatusCode::FORBIDDEN,
        signed.chrome(),
        "Refused",
        "This form's security token is missing or wrong (was it sent from another site?). Reload the page and try again.",
    ))
}

/// A form with only the CSRF token.
#[derive(Deserialize)]
struct TokenForm {
    csrf: Option<String>,
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("static/style.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/app.js"),
    )
        .into_response()
}

/// The 403 answer for a viewer who tries what only operators may do
/// (`what`), or `None` for an operator.
fn operators_only(signed: &Signed, what: &str) -> Option<Response> {
    (signed.user.role < Role::Operator).then(|| {
        error_page(
            StatusCode::FORBIDDEN,
            signed.chrome(),
            "Not allowed",
            &format!("Only operators may {what}."),
        )
    })
}
