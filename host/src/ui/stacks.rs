//! The stacks page, a stack's page, and its hook URL shown to an operator
//! who asks.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;

use super::pages::{self};
use super::view::{self, DeliveryView, DeployView};
use super::{blocking, error_page, html, require, Peer, Signed, UiState};
use super::{operators_only, Need, TokenForm, PAGE_ROWS};
use crate::config::Role;

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

pub(super) async fn stacks_page(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    headers: HeaderMap,
) -> Response {
    let signed = match require(&state, &headers, peer, Need::Page).await {
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
            last: last.as_ref().map(|d| DeployView::of_stack(d, Some(stack))),
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

pub(super) async fn stack_page(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let signed = match require(&state, &headers, peer, Need::Page).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
    render_stack(&state, &signed, &name, false).await
}

pub(super) async fn reveal_hook_url(
    State(state): State<Arc<UiState>>,
    Peer(peer): Peer,
    Path(name): Path<String>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let need = Need::Action(form.csrf.as_deref());
    let signed = match require(&state, &headers, peer, need).await {
        Ok(signed) => signed,
        Err(response) => return response,
    };
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
            operator: signed.user.role >= Role::Operator
                && stack.manual != crate::config::ManualSetting::Refuse,
            can_cancel: signed.user.role >= Role::Operator,
            can_reveal: signed.user.role >= Role::Operator,
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
            deploys: deploys
                .iter()
                .map(|d| DeployView::of_stack(d, Some(stack)))
                .collect(),
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
