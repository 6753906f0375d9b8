//! What an operator does: redeploy now, redeploy a commit, cancel a
//! deploy. Each goes through the dispatcher, as a delivery to the hook URL
//! would.

use anyhow::Context as _;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;

use super::{blocking, error_page, require, Peer, Signed, UiState};
use super::{operators_only, Need, TokenForm};
use crate::config::{ManualSetting, StackConfig};
use crate::dispatch::{Dispatched, Dispatcher};
use crate::journal::now_ms;

/// What an action's dispatch answered, as the operator sees it: the new
/// deploy's page when one deploy was queued (its log follows there live),
/// the stack page when several were, else a page saying why nothing
/// deployed.
fn after_action(signed: &Signed, stack: &str, answer: Dispatched) -> Response {
    let body = &answer.body;
    if answer.status == 202 {
        let queued: Vec<i64> = body["decisions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| d["state"] == "queued")
            .filter_map(|d| d["deploy_id"].as_i64())
            .collect();
        let to = match queued.as_slice() {
            [id] => format!("/ui/deploys/{id}"),
            _ => format!("/ui/stacks/{stack}"),
        };
        return Redirect::to(&to).into_response();
    }
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
pub(super) async fn deploy_now(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let signed = match require(&state, &headers, peer, Need::Action(field("csrf"))).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
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
    dispatch(&state, &signed, &name, move |dispatcher, stack| {
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
    .await
}

/// "Redeploy this commit": a redeploy of an earlier deploy (a rollback,
/// [`crate::rollback`]), through the dispatcher as the signed
/// `/hooks/{token}/redeploy/{id}` route's is; the operator's session
/// authorized it.
pub(super) async fn redeploy_commit(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let need = Need::Action(form.csrf.as_deref());
    let signed = match require(&state, &headers, peer, need).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    if let Some(refusal) = operators_only(&signed, "deploy") {
        return refusal;
    }
    let stack = signed.config.stack(&name);
    if stack.is_some_and(|s| s.manual == ManualSetting::Refuse) {
        return error_page(
            StatusCode::FORBIDDEN,
            signed.chrome(),
            "Refused",
            "This stack refuses manual triggers (manual = \"refuse\"), and so redeploys.",
        );
    }
    let (Some(_), Some(id)) = (stack, id.parse::<i64>().ok().filter(|id| *id > 0)) else {
        return error_page(
            StatusCode::NOT_FOUND,
            signed.chrome(),
            "No such deploy",
            "The configuration has no such stack, or that is no deploy number.",
        );
    };
    tracing::info!(user = %signed.user.name, stack = %name, deploy = id, "dashboard: redeploy this commit");
    dispatch(&state, &signed, &name, move |dispatcher, stack| {
        Ok(dispatcher.redeploy(stack, id, None, crate::rollback::MAX_SKEW * 2))
    })
    .await
}

/// Runs `act` with the dispatcher and stack `name` on a blocking thread
/// (as the hook routes run a delivery), and answers as [`after_action`]
/// says.
async fn dispatch(
    state: &Arc<UiState>,
    signed: &Signed,
    name: &str,
    act: impl FnOnce(&Dispatcher, &StackConfig) -> anyhow::Result<Dispatched> + Send + 'static,
) -> Response {
    let app = state.app.clone();
    let config = signed.config.clone();
    let stack_name = name.to_owned();
    let answer = blocking(move || {
        let stack = config
            .stack(&stack_name)
            .context("the stack went from the config")?;
        act(&app.dispatcher, stack)
    })
    .await;
    match answer {
        Ok(answer) => after_action(signed, name, answer),
        Err(response) => response,
    }
}

/// "Cancel" on a queued or running deploy: through the dispatcher, which
/// cancels a queued one at once and asks a running one's runner (on
/// whichever replica) to stop it; then back to the deploy's page, which
/// shows it end.
pub(super) async fn cancel(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    use crate::journal::CancelOutcome;
    let need = Need::Action(form.csrf.as_deref());
    let signed = match require(&state, &headers, peer, need).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    if let Some(refusal) = operators_only(&signed, "cancel deploys") {
        return refusal;
    }
    let missing = |signed: &Signed| {
        error_page(
            StatusCode::NOT_FOUND,
            signed.chrome(),
            "No such deploy",
            "The journal has no deploy with that number.",
        )
    };
    let Some(id) = id.parse::<i64>().ok().filter(|id| *id > 0) else {
        return missing(&signed);
    };
    tracing::info!(user = %signed.user.name, deploy = id, "dashboard: cancel");
    let app = state.app.clone();
    let reason = format!("cancelled by {} from the dashboard", signed.user.name);
    let outcome = blocking(move || Ok(app.dispatcher.cancel(id, &reason)?)).await;
    match outcome {
        Ok(CancelOutcome::Cancelled(_) | CancelOutcome::Requested) => {
            Redirect::to(&format!("/ui/deploys/{id}")).into_response()
        }
        Ok(CancelOutcome::AlreadyOver(state)) => error_page(
            StatusCode::CONFLICT,
            signed.chrome(),
            "Already over",
            &format!("Deploy #{id} had already ended ({}).", state.as_str()),
        ),
        Ok(CancelOutcome::NotFound) => missing(&signed),
        Err(response) => response,
    }
}
