//! Provider detection and per-provider payload normalization.
//!
//! Detection looks at headers first, in an order that matters: Gitea and
//! Forgejo also send Gogs- and GitHub-style headers, and Forgejo also sends
//! Gitea's, so the most specific header wins. Senders without an identifying
//! header (registries, Azure DevOps, the legacy Bitbucket POST service) are
//! told apart by the shape of the body.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::error::{malformed, PluginError};
use crate::model::{Event, Headers, Provider};

pub mod azure_devops;
pub mod bitbucket_cloud;
pub mod bitbucket_legacy;
pub mod bitbucket_server;
pub mod common;
pub mod gitea;
pub mod gitee;
pub mod github;
pub mod gitlab;
pub mod harness;
pub mod registries;

/// A provider and event name found in a delivery's headers or body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detected {
    /// The sender.
    pub provider: Provider,
    /// The provider's event name (from a header, or from the body).
    pub event_name: String,
    /// The provider's delivery id, when it sends one.
    pub delivery: Option<String>,
}

/// Header-identified providers, most specific first. Each entry is the event
/// header, the provider, and the delivery-id headers to look at in order.
const HEADER_PROVIDERS: &[(&str, Provider, &[&str])] = &[
    (
        "x-forgejo-event",
        Provider::Forgejo,
        &["x-forgejo-delivery", "x-gitea-delivery"],
    ),
    ("x-gitea-event", Provider::Gitea, &["x-gitea-delivery"]),
    ("x-gogs-event", Provider::Gogs, &["x-gogs-delivery"]),
    (
        "x-gitee-event",
        Provider::Gitee,
        &["x-gitee-delivery", "x-gitee-timestamp"],
    ),
    ("x-github-event", Provider::Github, &["x-github-delivery"]),
    (
        "x-harness-trigger",
        Provider::Harness,
        &["x-harness-webhook-id"],
    ),
    (
        "x-gitlab-event",
        Provider::Gitlab,
        &[
            "x-gitlab-event-uuid",
            "x-gitlab-webhook-uuid",
            "x-request-id",
        ],
    ),
];

/// Bitbucket Server / Data Center event keys (prefixes). Every other
/// `X-Event-Key` is Bitbucket Cloud's.
const BITBUCKET_SERVER_KEYS: &[&str] = &[
    "repo:refs_changed",
    "repo:modified",
    "repo:forked",
    "repo:comment:",
    "repo:secret_detected",
    "pr:",
    "mirror:",
    "project:",
    "diagnostics:ping",
];

/// Fields whose presence identifies a header-less sender.
#[derive(Deserialize, Default)]
struct BodyShape {
    // Docker Hub
    callback_url: Option<IgnoredAny>,
    push_data: Option<IgnoredAny>,
    // Harbor
    #[serde(rename = "type")]
    kind: Option<String>,
    event_data: Option<IgnoredAny>,
    // Quay
    docker_url: Option<IgnoredAny>,
    updated_tags: Option<IgnoredAny>,
    // Azure Container Registry
    action: Option<String>,
    target: Option<IgnoredAny>,
    request: Option<IgnoredAny>,
    // Azure DevOps service hooks (and ACR's event id)
    #[serde(rename = "eventType")]
    event_type: Option<String>,
    #[serde(rename = "publisherId")]
    publisher_id: Option<String>,
    id: Option<serde_json::Value>,
    // Legacy Bitbucket POST service
    canon_url: Option<IgnoredAny>,
    commits: Option<IgnoredAny>,
    repository: Option<IgnoredAny>,
}

fn header_value(headers: &Headers, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| headers.get(n))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Detects a sender from its headers alone, before any of the body is
/// read, so a signing sender's signature can be checked before its body
/// reaches a parser. `None`: no provider header (a registry, Azure DevOps,
/// the legacy Bitbucket POST service, or a manual trigger).
pub fn detect_by_headers(headers: &Headers) -> Option<Detected> {
    for (header, provider, delivery_headers) in HEADER_PROVIDERS {
        if let Some(event) = headers.get(header) {
            return Some(Detected {
                provider: *provider,
                event_name: event.to_string(),
                delivery: header_value(headers, delivery_headers),
            });
        }
    }
    let key = headers.get("x-event-key")?;
    let server = BITBUCKET_SERVER_KEYS.iter().any(|p| key.starts_with(p));
    let (provider, delivery) = if server {
        (
            Provider::BitbucketServer,
            header_value(headers, &["x-request-id"]),
        )
    } else {
        (
            Provider::BitbucketCloud,
            header_value(headers, &["x-request-uuid", "x-hook-uuid"]),
        )
    };
    Some(Detected {
        provider,
        event_name: key.to_string(),
        delivery,
    })
}

/// Detects the sender of a delivery. `json` is the decoded JSON document
/// (the `payload` field for form-encoded bodies); it is empty for an empty body.
pub fn detect(headers: &Headers, json: &[u8]) -> Result<Detected, PluginError> {
    match detect_by_headers(headers) {
        Some(d) => Ok(d),
        None => detect_by_body(json),
    }
}

/// Detects a sender without a provider header from the shape of its body.
/// An empty (or blank) body is a manual trigger.
pub fn detect_by_body(json: &[u8]) -> Result<Detected, PluginError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Detected {
            provider: Provider::Manual,
            event_name: "manual".into(),
            delivery: None,
        });
    }

    let shape: BodyShape = serde_json::from_slice(json).map_err(|e| {
        if e.is_data() {
            PluginError::UnknownProvider(
                "the body is JSON but not an object and no provider header is present".into(),
            )
        } else {
            malformed("body is not JSON and no provider header is present", e)
        }
    })?;
    let id = match &shape.id {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let detected = |provider, event_name: &str, delivery| {
        Ok(Detected {
            provider,
            event_name: event_name.to_string(),
            delivery,
        })
    };
    if let (Some(event), Some(_)) = (&shape.event_type, &shape.publisher_id) {
        return detected(Provider::AzureDevops, event, id);
    }
    if shape.push_data.is_some() && shape.callback_url.is_some() {
        return detected(Provider::DockerHub, "push", None);
    }
    if let (Some(kind), Some(_)) = (&shape.kind, &shape.event_data) {
        return detected(Provider::Harbor, kind, None);
    }
    if shape.docker_url.is_some() && shape.updated_tags.is_some() {
        return detected(Provider::Quay, "repo_push", None);
    }
    if let (Some(action), Some(_), Some(_)) = (&shape.action, &shape.target, &shape.request) {
        return detected(Provider::Acr, action, id);
    }
    if shape.canon_url.is_some() && shape.repository.is_some() && shape.commits.is_some() {
        return detected(Provider::BitbucketLegacy, "push", None);
    }
    Err(PluginError::UnknownProvider(
        "no provider header (X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event, X-Event-Key...) and the body matches no known registry or service payload".into(),
    ))
}

/// Normalizes the payload of a detected delivery.
pub fn parse(detected: &Detected, json: &[u8]) -> Result<Event, PluginError> {
    let event = detected.event_name.as_str();
    match detected.provider {
        Provider::Github | Provider::Ghcr => github::parse(event, json),
        Provider::Gitea | Provider::Forgejo | Provider::Gogs => {
            gitea::parse(detected.provider, event, json)
        }
        Provider::Gitee => gitee::parse(event, json),
        Provider::Harness => harness::parse(event, json),
        Provider::Gitlab => gitlab::parse(event, json),
        Provider::BitbucketCloud => bitbucket_cloud::parse(event, json),
        Provider::BitbucketServer => bitbucket_server::parse(event, json),
        Provider::BitbucketLegacy => bitbucket_legacy::parse(json),
        Provider::AzureDevops => azure_devops::parse(event, json),
        Provider::DockerHub | Provider::Harbor | Provider::Quay | Provider::Acr => {
            registries::parse(detected.provider, event, json)
        }
        Provider::Manual => Ok(Event::Manual),
        Provider::PostReceive => Err(PluginError::MalformedPayload(
            "post-receive input is not an HTTP body".into(),
        )),
    }
}
