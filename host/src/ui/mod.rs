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

pub mod auth;
pub mod pages;
pub mod view;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use cookie::{Cookie, SameSite};
use serde::Deserialize;

use crate::config::{Config, Live, Role, UiConfig};
use crate::deploy_log::LogSource;
use crate::journal::{now_ms, DeployState, Journal};
use crate::server::AppState;
use auth::{LoginKey, LoginLimiter, Passwords, User};
use axum::response::sse::{Event, KeepAlive, Sse};
use pages::Chrome;
use view::{DeliveryView, DeployView};

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

/// Password checks run at once at most (each costs tens of milliseconds of
/// CPU and 19 MiB); the next waits up to [`PASSWORD_CHECK_WAIT`].
pub const MAX_CONCURRENT_PASSWORD_CHECKS: usize = 2;

/// How long a sign-in waits for a password check slot before 503: short,
/// so a flood of sign-ins holds few of the connections hooks share.
pub const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(2);

/// Deploys and deliveries the stack page lists.
pub const PAGE_ROWS: usize = 50;

/// The most of a deploy's log the deploy page shows: its last 256 KiB.
pub const MAX_LOG_SHOWN_BYTES: u64 = 256 * 1024;

/// How often a followed log is read for more, and for the deploy's end.
pub const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// The most of a log one event carries.
pub const MAX_FOLLOW_EVENT_BYTES: u64 = 64 * 1024;

/// Logs followed at once at most; the next follower is answered 503 (its
/// browser tries again a few seconds later).
pub const MAX_LOG_FOLLOWERS: usize = 64;

/// How long one stream follows a log before it ends (the browser
/// reconnects, resuming where it was): no stream outlives a stuck deploy.
pub const MAX_FOLLOW: Duration = Duration::from_secs(60 * 60);

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
    passwords: OnceLock<Passwords>,
    key: OnceLock<Vec<u8>>,
    limiter: Mutex<LoginLimiter>,
    checks: Arc<tokio::sync::Semaphore>,
    followers: Arc<tokio::sync::Semaphore>,
}

impl UiState {
    /// The dashboard's state beside the hook server's. The decoy password
    /// hash and the CSRF key are made at the first request that needs them,
    /// so a server without `[ui]` pays nothing.
    pub fn new(app: Arc<AppState>, config: Live<Config>, listening: SocketAddr) -> UiState {
        UiState {
            app,
            config,
            listening,
            passwords: OnceLock::new(),
            key: OnceLock::new(),
            limiter: Mutex::new(LoginLimiter::default()),
            checks: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_PASSWORD_CHECKS)),
            followers: Arc::new(tokio::sync::Semaphore::new(MAX_LOG_FOLLOWERS)),
        }
    }

    fn journal(&self) -> &Journal {
        self.app.dispatcher.journal()
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

/// The dashboard's routes, to merge into the hook server's router.
pub fn routes(state: Arc<UiState>) -> Router {
    Router::new()
        .route("/ui", get(to_stacks))
        .route("/ui/", get(stacks_page))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/stacks/{name}", get(stack_page))
        .route("/ui/stacks/{name}/hook-url", post(reveal_hook_url))
        .route("/ui/stacks/{name}/deploy", post(deploy_now))
        .route("/ui/stacks/{name}/redeploy/{id}", post(redeploy_commit))
        .route("/ui/deploys/{id}", get(deploy_page))
        .route("/ui/deploys/{id}/events", get(follow_log))
        .route("/ui/static/style.css", get(style))
        .route("/ui/static/app.js", get(script))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(secure_headers))
        // Outermost: while the dashboard is off nothing below runs, not
        // even a form's parsing or a method check.
        .layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .with_state(state)
}

/// Every `/ui` path answers as an unknown path does while the config has
/// no `[ui]`.
async fn gate(
    State(state): State<Arc<UiState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.config.current().ui.is_none() {
        return off();
    }
    next.run(request).await
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
            body,
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
    let name = blocking(move || Ok(journal.journal().ui_session_user(&hash, now_ms())?)).await?;
    // A user removed from the config, or whose password changed since, is
    // signed out.
    Ok(name.and_then(|(name, credential)| {
        ui.user(&name)
            .filter(|user| auth::credential(&user.password_hash) == credential)
            .map(|user| User {
                name: user.name.clone(),
                role: user.role,
                session: Some(id),
            })
    }))
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

async fn require(
    state: &Arc<UiState>,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    action: bool,
) -> Result<Signed, Response> {
    let config = state.config.current();
    let Some(ui) = &config.ui else {
        return Err(off());
    };
    let user = signed_in(state, ui, headers, peer).await?;
    let key = state.key().await?;
    match user {
        Some(user) => Ok(Signed {
            user,
            key,
            config: config.clone(),
        }),
        None if action => Err(error_page(
            StatusCode::FORBIDDEN,
            Chrome::default(),
            "Signed out",
            "Your session has ended; sign in again.",
        )),
        None => Err(Redirect::to("/ui/login").into_response()),
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

async fn login_form(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let config = state.config.current();
    let Some(ui) = &config.ui else {
        return off();
    };
    match signed_in(&state, ui, &headers, peer).await {
        Ok(Some(_)) => return Redirect::to("/ui/").into_response(),
        Ok(None) => {}
        Err(response) => return response,
    }
    login_page(&state, &config, StatusCode::OK, "", "").await
}

/// The sign-in form, with a fresh sign-in cookie its token is bound to.
async fn login_page(
    state: &Arc<UiState>,
    config: &Config,
    status: StatusCode,
    user: &str,
    problem: &str,
) -> Response {
    let key = match state.key().await {
        Ok(key) => key,
        Err(response) => return response,
    };
    // `<issued ms>.<random>`: the token is bound to it, and a form older
    // than LOGIN_FORM_TTL is refused even if its cookie was kept.
    let nonce = match crate::tokens::generate_token() {
        Ok(random) => format!("{}.{random}", now_ms()),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: no random bytes for a sign-in form");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Chrome::default(),
                "Unavailable",
                "The server cannot make a sign-in form right now.",
            );
        }
    };
    let mut response = html(
        status,
        pages::Login {
            chrome: Chrome::default(),
            csrf: auth::csrf_token(&key, "login", &nonce),
            user: user.to_owned(),
            problem: problem.to_owned(),
        },
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            config,
            LOGIN_COOKIE,
            &nonce,
            "/ui/login",
            Some(LOGIN_FORM_TTL),
        ),
    );
    response
}

#[derive(Deserialize)]
struct LoginForm {
    user: Option<String>,
    password: Option<String>,
    csrf: Option<String>,
}

async fn login(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let config = state.config.current();
    let Some(ui) = config.ui.clone() else {
        return off();
    };
    let key = match state.key().await {
        Ok(key) => key,
        Err(response) => return response,
    };
    let user = form.user.unwrap_or_default();
    let nonce = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    let fresh = nonce
        .split_once('.')
        .and_then(|(issued, _)| issued.parse::<i64>().ok())
        .is_some_and(|issued| {
            let age = now_ms().saturating_sub(issued);
            (0..=LOGIN_FORM_TTL.as_millis() as i64).contains(&age)
        });
    let form_ok = fresh
        && form
            .csrf
            .as_deref()
            .is_some_and(|t| auth::csrf_ok(&key, "login", &nonce, t));
    if !form_ok {
        return login_page(
            &state,
            &config,
            StatusCode::FORBIDDEN,
            &user,
            "This sign-in form has expired or was not sent from this site; try again.",
        )
        .await;
    }
    // A name no user could have is counted under one key, so the limiter
    // keeps no long strings.
    let name_key = if user.len() <= crate::config::MAX_USER_NAME_BYTES {
        user.clone()
    } else {
        "(too long)".to_owned()
    };
    let mut keys = vec![LoginKey::Name(name_key)];
    if let Some(ip) = peer {
        keys.push(LoginKey::Client(ip));
    }
    // The attempt counts as failed from now on (a success clears it), so
    // sign-ins sent at once, or dropped while their password is checked,
    // cannot get past the limit.
    let wait = {
        let mut limiter = state.limiter.lock().unwrap();
        let now = now_ms();
        let wait = limiter.wait(&keys, now);
        if wait.is_none() {
            limiter.failed(&keys, now);
        }
        wait
    };
    if let Some(wait) = wait {
        let mut response = login_page(
            &state,
            &config,
            StatusCode::TOO_MANY_REQUESTS,
            &user,
            &format!(
                "Too many failed sign-ins; try again in {}.",
                humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)))
            ),
        )
        .await;
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return response;
    }
    let password = form.password.unwrap_or_default();
    let Ok(Ok(permit)) =
        tokio::time::timeout(PASSWORD_CHECK_WAIT, state.checks.clone().acquire_owned()).await
    else {
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            Chrome::default(),
            "Busy",
            "Too many sign-ins at once; try again shortly.",
        );
    };
    let checker = state.clone();
    let (name, ui_for_check) = (user.clone(), ui.clone());
    let found = blocking(move || {
        // Held until the check ends, even if the client went away.
        let _permit = permit;
        let passwords = match checker.passwords.get() {
            Some(p) => p,
            None => {
                let made = Passwords::new()?;
                checker.passwords.get_or_init(|| made)
            }
        };
        // An over-long password is wrong without hashing it.
        Ok(if password.len() > auth::MAX_PASSWORD_BYTES {
            None
        } else {
            passwords.check(&ui_for_check, &name, &password)
        })
    })
    .await;
    let found = match found {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(found) = found else {
        // Only a configured name is logged: a password typed into the name
        // field, or a forged log line, never is.
        let known = ui.user(&user).map_or("(no such user)", |u| u.name.as_str());
        tracing::info!(user = known, client = ?peer, "dashboard: a sign-in failed");
        return login_page(
            &state,
            &config,
            StatusCode::UNAUTHORIZED,
            &user,
            "Wrong user name or password.",
        )
        .await;
    };
    state.limiter.lock().unwrap().succeeded(&keys);
    let mut random = [0u8; auth::SESSION_ID_BYTES];
    let id = match getrandom::fill(&mut random) {
        Ok(()) => auth::session_id(&random),
        Err(e) => {
            tracing::error!(error = %e, "dashboard: no random bytes for a session");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                Chrome::default(),
                "Unavailable",
                "The server cannot start a session right now.",
            );
        }
    };
    let hash = auth::session_hash(&id);
    let now = now_ms();
    let expires = now.saturating_add(ui.session_ttl.as_millis() as i64);
    let journal = state.clone();
    let who = found.name.clone();
    let credential = ui
        .user(&found.name)
        .map(|u| auth::credential(&u.password_hash))
        .unwrap_or_default();
    if let Err(response) = blocking(move || {
        Ok(journal
            .journal()
            .create_ui_session(&hash, &who, &credential, now, expires)?)
    })
    .await
    {
        return response;
    }
    tracing::info!(user = %found.name, role = found.role.as_str(), "dashboard: signed in");
    let mut response = Redirect::to("/ui/").into_response();
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(&config, SESSION_COOKIE, &id, "/ui", Some(ui.session_ttl)),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(&config, LOGIN_COOKIE, "", "/ui/login", None),
    );
    response
}

async fn logout(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let signed = match require(&state, &headers, peer, true).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    if let Some(refusal) = csrf_refusal(&signed, form.csrf.as_deref()) {
        return refusal;
    }
    if let Some(id) = signed.user.session.clone() {
        let journal = state.clone();
        let hash = auth::session_hash(&id);
        if let Err(response) = blocking(move || Ok(journal.journal().end_ui_session(&hash)?)).await
        {
            return response;
        }
    }
    tracing::info!(user = %signed.user.name, "dashboard: signed out");
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&signed.config, SESSION_COOKIE, "", "/ui", None),
    );
    response
}

/// GitHub continuous deployment, in words.
fn github_state(stack: &crate::config::StackConfig) -> String {
    match &stack.github {
        None => "off".to_owned(),
        Some(g) if g.wait_for_event => format!(
            "on for {} (deploys on GitHub's deployment event)",
            g.repository
        ),
        Some(g) => format!(
            "on for {} (deploys at once, reports to GitHub)",
            g.repository
        ),
    }
}

async fn stacks_page(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let signed = match require(&state, &headers, peer, false).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let names: Vec<String> = signed
        .config
        .stacks
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let journal = state.clone();
    let last = match blocking(move || {
        names
            .iter()
            .map(|name| Ok(journal.journal().deploys(Some(name), 1)?.into_iter().next()))
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await
    {
        Ok(last) => last,
        Err(response) => return response,
    };
    let stacks = signed
        .config
        .stacks
        .iter()
        .zip(last)
        .map(|(stack, last)| pages::StackRow {
            name: stack.name.clone(),
            follows: view::follows(stack),
            last: last.as_ref().map(DeployView::of),
            github: github_state(stack),
        })
        .collect();
    html(
        StatusCode::OK,
        pages::Stacks {
            chrome: signed.chrome(),
            stacks,
        },
    )
}

async fn stack_page(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match require(&state, &headers, peer, false).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    render_stack(&state, &signed, &name, false).await
}

async fn reveal_hook_url(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let signed = match require(&state, &headers, peer, true).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    if let Some(refusal) = csrf_refusal(&signed, form.csrf.as_deref()) {
        return refusal;
    }
    if let Some(refusal) = operators_only(
        &signed,
        "see hook URLs: whoever has one can trigger deploys",
    ) {
        return refusal;
    }
    tracing::info!(user = %signed.user.name, stack = %name, "dashboard: hook URL shown");
    render_stack(&state, &signed, &name, true).await
}

async fn render_stack(state: &Arc<UiState>, signed: &Signed, name: &str, reveal: bool) -> Response {
    let Some(stack) = signed.config.stack(name) else {
        return error_page(
            StatusCode::NOT_FOUND,
            signed.chrome(),
            "No such stack",
            "The configuration has no stack of that name.",
        );
    };
    let journal = state.clone();
    let stack_name = stack.name.clone();
    let records = blocking(move || {
        let journal = journal.journal();
        Ok((
            journal.deploys(Some(&stack_name), PAGE_ROWS)?,
            journal.deliveries_of(Some(&stack_name), PAGE_ROWS)?,
        ))
    })
    .await;
    let (deploys, deliveries) = match records {
        Ok(records) => records,
        Err(response) => return response,
    };
    let (hook_url, variants) = if reveal {
        let token = state
            .app
            .tokens
            .current()
            .token(&stack.name)
            .map(str::to_owned);
        match token {
            Some(token) => {
                let base = crate::tokens::hook_base_listening(&signed.config, state.listening);
                let url = crate::tokens::hook_url(&base, &token);
                (Some(url.clone()), hook_variants(stack, &url))
            }
            None => {
                return error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    signed.chrome(),
                    "No hook URL yet",
                    "This stack has no hook token yet (a reload that added it is still being applied); try again shortly.",
                )
            }
        }
    } else {
        (None, Vec::new())
    };
    html(
        StatusCode::OK,
        pages::Stack {
            chrome: signed.chrome(),
            name: stack.name.clone(),
            follows: view::follows(stack),
            github: github_state(stack),
            operator: signed.user.role >= Role::Operator,
            services: if stack.query_services {
                stack
                    .services
                    .iter()
                    .filter(|s| s.selectable)
                    .map(|s| s.name.clone())
                    .collect()
            } else {
                Vec::new()
            },
            profiles: stack.profiles.keys().cloned().collect(),
            hook_url,
            variants,
            deploys: deploys.iter().map(DeployView::of).collect(),
            deliveries: deliveries
                .iter()
                .map(|d| DeliveryView::of(d, &stack.name))
                .collect(),
        },
    )
}

/// The hook URL's variants a stack offers: one per service a push may
/// choose (`?services=`) and one per deploy profile
/// (`?deployment_profile=`).
fn hook_variants(stack: &crate::config::StackConfig, url: &str) -> Vec<(String, String)> {
    let mut variants = Vec::new();
    if stack.query_services {
        for service in stack.services.iter().filter(|s| s.selectable) {
            variants.push((
                format!("Only service {}", service.name),
                format!("{url}?services={}", encode(&service.name)),
            ));
        }
    }
    for profile in stack.profiles.keys() {
        variants.push((
            format!("Profile {profile}"),
            format!("{url}?deployment_profile={}", encode(profile)),
        ));
    }
    variants
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn deploy_page(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match require(&state, &headers, peer, false).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let missing = |signed: &Signed| {
        error_page(
            StatusCode::NOT_FOUND,
            signed.chrome(),
            "No such deploy",
            "The journal has no deploy with that number.",
        )
    };
    let Ok(id) = id.parse::<i64>() else {
        return missing(&signed);
    };
    let journal = state.clone();
    let found = blocking(move || {
        let journal = journal.journal();
        let Some(deploy) = journal.deploy(id)? else {
            return Ok(None);
        };
        // Its size first, then what it held up to there: the live log
        // goes on from exactly that byte, so nothing shows twice or never.
        let Some(source) = LogSource::of(journal, &deploy)? else {
            return Ok(Some((deploy, None, 0)));
        };
        let size = source.size(journal, id)?;
        let start = size.saturating_sub(MAX_LOG_SHOWN_BYTES);
        let bytes = source.read_from(journal, id, start, size - start)?;
        let cut = if start > 0 {
            crate::deploy_log::EARLIER_OUTPUT_CUT
        } else {
            ""
        };
        let text = format!("{cut}{}", String::from_utf8_lossy(&bytes));
        Ok(Some((deploy, Some(text), start + bytes.len() as u64)))
    })
    .await;
    let (deploy, log, shown) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return missing(&signed),
        Err(response) => return response,
    };
    html(
        StatusCode::OK,
        pages::Deploy {
            chrome: signed.chrome(),
            stack: deploy.queued.stack.clone(),
            d: DeployView::of(&deploy),
            exit_code: deploy.exit_code,
            follow: !deploy.state.is_final(),
            shown,
            log,
        },
    )
}

/// Where a followed log is.
struct Following {
    state: Arc<UiState>,
    id: i64,
    offset: u64,
    source: Option<LogSource>,
    last_state: Option<DeployState>,
    pending: std::collections::VecDeque<Event>,
    ended: bool,
    first: bool,
    until: tokio::time::Instant,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

/// What one look at a followed deploy found.
struct Look {
    state: DeployState,
    source: Option<LogSource>,
    bytes: Vec<u8>,
}

/// The live log of deploy `id`, as server-sent events: `log` (the text
/// written since; the event id is the byte offset after it, which a
/// reconnecting browser sends back as `Last-Event-ID` to resume there),
/// `state` (each new state) and `end` (the deploy ended and all of its log
/// was sent). Starts at `?from=` (the deploy page says where its log ended).
async fn follow_log(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = require(&state, &headers, peer, false).await {
        return response;
    }
    let Ok(id) = id.parse::<i64>() else {
        return (StatusCode::NOT_FOUND, "no such deploy\n").into_response();
    };
    let Ok(slot) = state.followers.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "too many logs followed at once\n",
        )
            .into_response();
    };
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let offset = resume
        .or_else(|| query.get("from").and_then(|v| v.parse().ok()))
        .unwrap_or(0);
    let following = Following {
        state,
        id,
        offset,
        source: None,
        last_state: None,
        pending: Default::default(),
        ended: false,
        first: true,
        until: tokio::time::Instant::now() + MAX_FOLLOW,
        _slot: slot,
    };
    let events = futures_util::stream::unfold(following, |mut f| async move {
        loop {
            if let Some(event) = f.pending.pop_front() {
                return Some((Ok::<_, std::convert::Infallible>(event), f));
            }
            if f.ended || tokio::time::Instant::now() >= f.until {
                return None;
            }
            if !f.first {
                tokio::time::sleep(FOLLOW_POLL).await;
            }
            f.first = false;
            f.look().await;
        }
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

impl Following {
    /// Reads the deploy's state and what its log gained, and queues the
    /// events that say so.
    async fn look(&mut self) {
        let (state, id, offset, source) = (
            self.state.clone(),
            self.id,
            self.offset,
            self.source.clone(),
        );
        let looked = tokio::task::spawn_blocking(move || -> anyhow::Result<Option<Look>> {
            let journal = state.journal();
            let Some(deploy) = journal.deploy(id)? else {
                return Ok(None);
            };
            let source = match source {
                Some(source) => Some(source),
                None => LogSource::of(journal, &deploy)?,
            };
            let bytes = match &source {
                Some(source) => source.read_from(journal, id, offset, MAX_FOLLOW_EVENT_BYTES)?,
                None => Vec::new(),
            };
            Ok(Some(Look {
                state: deploy.state,
                source,
                bytes,
            }))
        })
        .await;
        let look = match looked {
            Ok(Ok(Some(look))) => look,
            Ok(Ok(None)) => {
                self.pending
                    .push_back(Event::default().event("end").data("no such deploy"));
                self.ended = true;
                return;
            }
            // The journal failed: try again at the next look.
            Ok(Err(e)) => {
                tracing::warn!(deploy = self.id, error = %e, "dashboard: cannot read a followed log");
                return;
            }
            Err(_) => return,
        };
        self.source = self.source.take().or(look.source);
        if !look.bytes.is_empty() {
            // Whole characters only: an incomplete one at the end waits
            // for the rest of its bytes.
            let keep = match std::str::from_utf8(&look.bytes) {
                Ok(_) => look.bytes.len(),
                Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => e.valid_up_to(),
                Err(_) => look.bytes.len(),
            };
            self.offset += keep as u64;
            // An event's data is lines: a CR LF is one line break, and a
            // lone CR (a progress bar's) becomes one.
            let text = String::from_utf8_lossy(&look.bytes[..keep])
                .replace("\r\n", "\n")
                .replace('\r', "\n");
            self.pending.push_back(
                Event::default()
                    .event("log")
                    .id(self.offset.to_string())
                    .data(text),
            );
        }
        if self.last_state != Some(look.state) {
            self.last_state = Some(look.state);
            self.pending
                .push_back(Event::default().event("state").data(look.state.as_str()));
        }
        let more = look.bytes.len() as u64 >= MAX_FOLLOW_EVENT_BYTES;
        if look.state.is_final() && !more {
            self.pending
                .push_back(Event::default().event("end").data(look.state.as_str()));
            self.ended = true;
        }
    }
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

/// What an action's dispatch answered, as the operator sees it: back to
/// the stack page when a deploy was queued (it is listed there with the
/// delivery that made it), else a page saying why nothing deployed.
fn after_action(signed: &Signed, stack: &str, answer: crate::dispatch::Dispatched) -> Response {
    if answer.status == 202 {
        return Redirect::to(&format!("/ui/stacks/{stack}")).into_response();
    }
    let body = &answer.body;
    let why = body["message"]
        .as_str()
        .or_else(|| body["decisions"][0]["reason"].as_str())
        .unwrap_or("no reason given")
        .to_owned();
    let status = if answer.status < 300 {
        StatusCode::OK
    } else {
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    };
    error_page(status, signed.chrome(), "Nothing deployed", &why)
}

/// "Redeploy now": a manual trigger of the stack, with the services and
/// profile chosen, through the component, the journal and the queue as
/// `curl -X POST -d "" <hook URL>` is.
async fn deploy_now(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let signed = match require(&state, &headers, peer, true).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    if let Some(refusal) = csrf_refusal(&signed, field("csrf")) {
        return refusal;
    }
    if let Some(refusal) = operators_only(&signed, "deploy") {
        return refusal;
    }
    if signed.config.stack(&name).is_none() {
        return error_page(
            StatusCode::NOT_FOUND,
            signed.chrome(),
            "No such stack",
            "The configuration has no stack of that name.",
        );
    }
    let services: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "service")
        .map(|(_, v)| v.as_str())
        .collect();
    let services = (!services.is_empty()).then(|| services.join(","));
    let profile = field("profile")
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    tracing::info!(user = %signed.user.name, stack = %name, services = ?services, profile = ?profile, "dashboard: redeploy now");
    let app = state.app.clone();
    let config = signed.config.clone();
    let stack_name = name.clone();
    let answer = blocking(move || {
        let stack = config
            .stack(&stack_name)
            .context("the stack went from the config")?;
        let dispatcher = &app.dispatcher;
        let unix_secs = (now_ms() / 1000) as u64;
        let (query, headers) = crate::manual::manual_request(
            Some(dispatcher.runtime()),
            stack,
            services.as_deref(),
            profile.as_deref(),
            unix_secs,
        )?;
        Ok(dispatcher.dispatch(&[stack], &crate::manual::manual_delivery(query, headers)))
    })
    .await;
    match answer {
        Ok(answer) => after_action(&signed, &name, answer),
        Err(response) => response,
    }
}

/// "Redeploy this commit": a redeploy of an earlier deploy (a rollback,
/// [`crate::rollback`]), through the dispatcher as the signed
/// `/hooks/{token}/redeploy/{id}` route's is; the operator's session
/// authorized it.
async fn redeploy_commit(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let signed = match require(&state, &headers, peer, true).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    if let Some(refusal) = csrf_refusal(&signed, form.csrf.as_deref()) {
        return refusal;
    }
    if let Some(refusal) = operators_only(&signed, "deploy") {
        return refusal;
    }
    let (Some(_), Ok(id)) = (signed.config.stack(&name), id.parse::<i64>()) else {
        return error_page(
            StatusCode::NOT_FOUND,
            signed.chrome(),
            "No such deploy",
            "The configuration has no such stack, or that is no deploy number.",
        );
    };
    tracing::info!(user = %signed.user.name, stack = %name, deploy = id, "dashboard: redeploy this commit");
    let app = state.app.clone();
    let config = signed.config.clone();
    let stack_name = name.clone();
    let answer = blocking(move || {
        let stack = config
            .stack(&stack_name)
            .context("the stack went from the config")?;
        Ok(app
            .dispatcher
            .redeploy(stack, id, None, crate::rollback::MAX_SKEW * 2))
    })
    .await;
    match answer {
        Ok(answer) => after_action(&signed, &name, answer),
        Err(response) => response,
    }
}
