//! A delivery's page: what arrived (headers redacted), what each stack
//! decided and why, and, where its request was kept, "check again": the
//! same request evaluated with the configuration in force now, as
//! `redeploy check` does (a dry run that deploys nothing).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;

use super::pages;
use super::view::{self, DecisionView, Moment};
use super::{blocking, error_page, html, require, Need, Peer, Signed, TokenForm, UiState};
use crate::journal::StoredDelivery;

pub(super) async fn delivery_page(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match require(&state, &headers, peer, Need::Page).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    match read(&state, &signed, &id).await {
        Ok(stored) => page(&signed, stored, None),
        Err(response) => response,
    }
}

/// "Check again": any signed-in user may (it changes nothing), with the
/// form's CSRF token (it costs an evaluation).
pub(super) async fn check_again(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let need = Need::Action(form.csrf.as_deref());
    let signed = match require(&state, &headers, peer, need).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    let stored = match read(&state, &signed, &id).await {
        Ok(stored) => stored,
        Err(response) => return response,
    };
    let Some(kept) = stored.kept.clone() else {
        return error_page(
            StatusCode::CONFLICT,
            signed.chrome(),
            "Not kept",
            "This delivery's request was not kept (server.keep_delivery_bodies), so it cannot be checked again.",
        );
    };
    // The stack it came to, as configured now: gone or renamed, there is
    // nothing to check it for.
    let stack_name = stored.record.recorded.stack.clone();
    let Some(stack) = stack_name
        .as_deref()
        .and_then(|name| signed.config.stack(name))
    else {
        return error_page(
            StatusCode::CONFLICT,
            signed.chrome(),
            "No stack to check it for",
            "The stack this delivery came to is not in the configuration now.",
        );
    };
    let Ok(_permit) = state.rechecks.clone().try_acquire_owned() else {
        return error_page(
            StatusCode::TOO_MANY_REQUESTS,
            signed.chrome(),
            "Busy",
            "Other deliveries are being checked again right now; try again in a moment.",
        );
    };
    let wit_stack = crate::stacks::wit_stack(stack);
    let context = crate::stacks::dry_run_context(&signed.config);
    let runtime = state.app.dispatcher.runtime().clone();
    let id = stored.record.id;
    let checked = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<DecisionView>> {
        let delivery = kept.delivery()?;
        let answer = match runtime.report(&[wit_stack], &delivery, &context)? {
            Ok(document) => document,
            Err(e) => crate::dispatch::error_body(e.kind(), e.message()).to_string(),
        };
        Ok(view::decisions(&answer))
    })
    .await;
    match checked {
        Ok(Ok(checked)) => {
            tracing::info!(user = %signed.user.name, delivery = id, "dashboard: delivery checked again");
            page(&signed, stored, Some(checked))
        }
        Ok(Err(e)) => {
            tracing::error!(delivery = id, error = %e, "dashboard: cannot check a delivery again");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                signed.chrome(),
                "Cannot check it again",
                "The component could not evaluate this delivery again; the server's log says why.",
            )
        }
        Err(e) => {
            tracing::error!(delivery = id, error = %e, "dashboard: a check-again task failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                signed.chrome(),
                "Error",
                "Something went wrong; the server's log says what.",
            )
        }
    }
}

/// Delivery `id` from the journal, or the page to answer instead.
async fn read(state: &Arc<UiState>, signed: &Signed, id: &str) -> Result<StoredDelivery, Response> {
    let missing = || {
        error_page(
            StatusCode::NOT_FOUND,
            signed.chrome(),
            "No such delivery",
            "The journal has no delivery with that number (old ones are pruned).",
        )
    };
    let Ok(id) = id.parse::<i64>() else {
        return Err(missing());
    };
    let journal = state.clone();
    match blocking(move || Ok(journal.journal().delivery(id)?)).await? {
        Some(stored) => Ok(stored),
        None => Err(missing()),
    }
}

fn page(signed: &Signed, stored: StoredDelivery, checked: Option<Vec<DecisionView>>) -> Response {
    let StoredDelivery {
        record,
        request,
        kept,
    } = stored;
    let r = record.recorded;
    html(
        StatusCode::OK,
        pages::Delivery {
            chrome: signed.chrome(),
            id: record.id,
            stack: r.stack.unwrap_or_default(),
            received: Moment::at(r.received_at_ms),
            provider: r.provider.unwrap_or_default(),
            event: r.event.unwrap_or_default(),
            delivery_id: r.delivery_id.unwrap_or_default(),
            status: r.status,
            decisions: view::decisions(&r.summary),
            request,
            kept: kept.is_some(),
            checked,
        },
    )
}
