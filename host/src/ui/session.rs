//! Signing in and out: the sign-in form (bound to a cookie of its own),
//! the password check under the limiter, the session cookie.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::auth::{LoginKey, Passwords};
use super::pages::{self, Chrome};
use super::{auth, blocking, error_page, html, require, Peer, UiState};
use super::{cookie, off, set_cookie, signed_in, Need, TokenForm};
use super::{LOGIN_COOKIE, LOGIN_FORM_TTL, PASSWORD_CHECK_WAIT, SESSION_COOKIE};
use crate::config::Config;
use crate::journal::now_ms;

pub(super) async fn login_form(
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
pub(super) struct LoginForm {
    user: Option<String>,
    password: Option<String>,
    csrf: Option<String>,
}

pub(super) async fn login(
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
    let attempt_ms = now_ms();
    let wait = {
        let mut limiter = state.limiter.lock().unwrap();
        let wait = limiter.wait(&keys, attempt_ms);
        if wait.is_none() {
            limiter.failed(&keys, attempt_ms);
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
    state.limiter.lock().unwrap().succeeded(&keys, attempt_ms);
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

pub(super) async fn logout(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let need = Need::Action(form.csrf.as_deref());
    let signed = match require(&state, &headers, peer, need).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
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
