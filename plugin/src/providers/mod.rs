//! Provider detection and per-provider payload normalization.
//!
//! Detection looks at headers first, in an order that matters: Gitea and
//! Forgejo also send Gogs- and GitHub-style headers, and Forgejo also sends
//! Gitea's, so the most specific header wins. Senders without an identifying
//! header (registries, Azure DevOps, the legacy Bitbucket POST service) are
//! told apart by the shape of the body, except the Distribution registry,
//! whose `Content-Type` names its notifications when no proxy rewrote it.

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
#[cfg(test)]
mod test_support;

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
    // Distribution's envelope: `{"events": [...]}`
    events: Option<IgnoredAny>,
    // Azure Container Registry (one Distribution-style event, no envelope)
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
        None => detect_by_body(headers, json),
    }
}

/// Whether the `Content-Type` is one of Distribution's notification media
/// types (parameters and case ignored).
fn is_distribution_media_type(headers: &Headers) -> bool {
    let Some(content_type) = headers.get("content-type") else {
        return false;
    };
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    registries::DISTRIBUTION_EVENTS_MEDIA_TYPES
        .iter()
        .any(|m| m.eq_ignore_ascii_case(media_type))
}

/// The name and delivery id detection gives a Distribution notification
/// until parsing reads its events ([`parse`] replaces both).
const DISTRIBUTION_ENVELOPE: &str = "notification";

/// Detects a sender without a provider header from the shape of its body
/// (and, for the Distribution registry, its `Content-Type`). An empty (or
/// blank) body is a manual trigger.
pub fn detect_by_body(headers: &Headers, json: &[u8]) -> Result<Detected, PluginError> {
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
    // Distribution says what it sends in its media type; a body under that
    // type that is no envelope is then malformed, not another sender's.
    if is_distribution_media_type(headers) {
        return detected(Provider::Distribution, DISTRIBUTION_ENVELOPE, None);
    }
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
    // Distribution wraps its events in an envelope; ACR posts one event
    // bare. Each shape excludes the other's top-level fields, so a body
    // with both is neither.
    if shape.events.is_some() && shape.action.is_none() && shape.target.is_none() {
        return detected(Provider::Distribution, DISTRIBUTION_ENVELOPE, None);
    }
    if let (Some(action), Some(_), Some(_), None) =
        (&shape.action, &shape.target, &shape.request, &shape.events)
    {
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
///
/// A Distribution envelope names its event and delivery id only inside
/// (several events may share one request), so for it parsing also sets
/// `detected.event_name` and `detected.delivery`: those of its first manifest
/// push, or of its first event when it has none.
pub fn parse(detected: &mut Detected, json: &[u8]) -> Result<Event, PluginError> {
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
        Provider::Distribution => {
            let notification = registries::distribution(json)?;
            if let Some(name) = notification.event_name {
                detected.event_name = name;
            }
            detected.delivery = notification.delivery;
            Ok(notification.event)
        }
        Provider::Manual => Ok(Event::Manual),
        Provider::PostReceive => Err(PluginError::MalformedPayload(
            "post-receive input is not an HTTP body".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    fn shared_fixture(path: &str) -> Vec<u8> {
        read(&format!(
            "{}/../tests/fixtures/{path}",
            env!("CARGO_MANIFEST_DIR")
        ))
    }

    fn distribution_fixture(name: &str) -> Vec<u8> {
        read(&format!(
            "{}/../tests/fixtures/distribution/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
    }

    fn content_type(value: &str) -> Headers {
        Headers::new([("Content-Type", value)])
    }

    fn provider(headers: &Headers, json: &[u8]) -> Result<Provider, PluginError> {
        detect(headers, json).map(|d| d.provider)
    }

    #[test]
    fn a_distribution_envelope_is_distribution_with_or_without_its_media_type() {
        let envelope = distribution_fixture("distdocs-push-envelope.json");
        for headers in [
            Headers::default(),
            content_type("application/json"),
            content_type("application/vnd.docker.distribution.events.v1+json"),
            content_type("Application/VND.docker.distribution.events.v2+json; charset=utf-8"),
        ] {
            assert_eq!(
                detect(&headers, &envelope),
                Ok(Detected {
                    provider: Provider::Distribution,
                    event_name: "notification".into(),
                    delivery: None,
                }),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn parsing_a_distribution_envelope_names_its_event_and_delivery() {
        let envelope = distribution_fixture("distdocs-pull-envelope.json");
        let mut detected = detect(&Headers::default(), &envelope).unwrap();
        let event = parse(&mut detected, &envelope).unwrap();
        assert!(matches!(event, Event::Ignored { .. }), "{event:?}");
        assert_eq!(detected.event_name, "pull");
        assert_eq!(
            detected.delivery.as_deref(),
            Some("320678d8-ca14-430f-8bb6-4ca139cd83f7")
        );
    }

    #[test]
    fn an_acr_event_is_acr_not_distribution() {
        for body in [
            shared_fixture("acr/jenkins-acr-payload-valid.json"),
            distribution_fixture("azuredocs-acr-push.json"),
        ] {
            assert_eq!(
                provider(&content_type("application/json"), &body),
                Ok(Provider::Acr)
            );
        }
        let d = detect(
            &Headers::default(),
            &distribution_fixture("azuredocs-acr-push.json"),
        )
        .unwrap();
        assert_eq!(d.event_name, "push");
        assert_eq!(
            d.delivery.as_deref(),
            Some("cb8c3971-9adc-488b-xxxx-43cbb4974ff5")
        );
    }

    #[test]
    fn distribution_media_type_wins_over_shape_and_then_needs_an_envelope() {
        // An ACR-shaped body sent as a Distribution notification is a
        // malformed notification, not an ACR event.
        let headers = content_type("application/vnd.docker.distribution.events.v2+json");
        let body = distribution_fixture("azuredocs-acr-push.json");
        let mut detected = detect(&headers, &body).unwrap();
        assert_eq!(detected.provider, Provider::Distribution);
        assert!(matches!(
            parse(&mut detected, &body),
            Err(PluginError::MalformedPayload(_))
        ));
    }

    #[test]
    fn a_body_with_both_shapes_is_neither() {
        let body = br#"{"events": [], "action": "push", "target": {}, "request": {}}"#;
        assert!(matches!(
            provider(&Headers::default(), body),
            Err(PluginError::UnknownProvider(_))
        ));
    }

    #[test]
    fn docker_hub_and_harbor_are_neither_acr_nor_distribution() {
        for (path, expected) in [
            (
                "dockerhub/dockerdocs-webhook-example.json",
                Provider::DockerHub,
            ),
            ("harbor/harbordocs-push-artifact.json", Provider::Harbor),
            ("quay/quaydocs-repo-push.json", Provider::Quay),
        ] {
            assert_eq!(
                provider(&content_type("application/json"), &shared_fixture(path)),
                Ok(expected),
                "{path}"
            );
        }
    }
}
