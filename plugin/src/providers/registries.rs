//! Container registry webhooks: Docker Hub, Harbor, Quay and Azure Container
//! Registry. None sends an identifying header; detection tells them apart by
//! body shape and passes the event name found in the body.
//!
//! - Docker Hub ("Webhooks" in the Docker Hub manual): one event, a push:
//!   `repository.repo_name`, `push_data.tag`, `push_data.pusher` and the
//!   (legacy) `callback_url`.
//! - Harbor ("Configure Webhooks", payload format "Default"): `type`
//!   `PUSH_ARTIFACT` (`pushImage` before Harbor 2.0) deploys, with one image
//!   per `event_data.resources[]` (`tag`, `digest`, `resource_url` whose host
//!   is the registry) in `event_data.repository.repo_full_name`, pushed by
//!   `operator`. Pulls, deletions, scans, quota, replication and retention
//!   events are ignored.
//! - Quay ("Repository notifications", Repository Push): `repository` is the
//!   path, `docker_url`'s host the registry, one image per `updated_tags`
//!   entry. Old Quay sent `updated_tags` as an object of tag to image id; its
//!   keys are the tags (the ids are not manifest digests).
//! - Azure Container Registry ("webhook reference"): `action` `push` deploys
//!   `target.repository` / `target.tag` / `target.digest` on `request.host`;
//!   `delete`, `chart_push`, `chart_delete`, `quarantine`... are ignored.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{malformed, PluginError};
use crate::model::{Event, ImagePush, Provider};

/// Normalizes one registry delivery; `event` is the name detection found:
/// `push` for Docker Hub, Harbor's `type`, `repo_push` for Quay and ACR's
/// `action`.
///
/// A push becomes [`Event::ImagePush`]; other events become
/// [`Event::Ignored`]. Providers that are not registries are rejected as
/// malformed, since detection never sends them here.
///
/// # Errors
///
/// [`PluginError::MalformedPayload`] when a push body is not JSON or lacks the
/// image's repository (`repository.repo_name`, `event_data.repository`,
/// `repository`, `target.repository`).
pub fn parse(provider: Provider, event: &str, json: &[u8]) -> Result<Event, PluginError> {
    match provider {
        Provider::DockerHub => docker_hub(event, json),
        Provider::Harbor => harbor(event, json),
        Provider::Quay => quay(event, json),
        Provider::Acr => acr(event, json),
        other => Err(PluginError::MalformedPayload(format!(
            "{} {event}: not a container registry payload",
            other.as_str()
        ))),
    }
}

fn ignored(reason: String) -> Result<Event, PluginError> {
    Ok(Event::Ignored { reason })
}

fn missing(what: &str, field: &str) -> PluginError {
    PluginError::MalformedPayload(format!("{what}: {field} is missing or empty"))
}

/// A trimmed, non-empty string.
fn text(s: &Option<Cow<'_, str>>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// The registry host at the front of an image reference or URL
/// (`quay.io/ns/repo`, `hub.harbor.com/p/r:tag`, `https://host:5000/r`).
/// As in Docker's own reference rules, the first path component is only a
/// host when it contains a `.` or a `:` or is `localhost`.
fn registry_host(reference: &str) -> Option<String> {
    let reference = reference.trim();
    let rest = reference.split_once("://").map_or(reference, |(_, r)| r);
    let (host, path) = rest.split_once('/')?;
    let is_host = host.contains('.') || host.contains(':') || host == "localhost";
    (is_host && !path.is_empty()).then(|| host.to_ascii_lowercase())
}

/// The latest Unix time in seconds a registry's event time may hold
/// (year 2286); a larger number is not a time, and is ignored.
const MAX_EPOCH_SECONDS: f64 = 1e10;

/// A registry's event time (Unix seconds, an integer or a fraction) in
/// milliseconds; `None` when absent or not a plausible time.
fn epoch_ms(value: Option<&serde_json::Value>) -> Option<u64> {
    let seconds = value?.as_f64()?;
    (seconds.is_finite() && (0.0..MAX_EPOCH_SECONDS).contains(&seconds))
        .then(|| (seconds * 1000.0) as u64)
}

// ---------------------------------------------------------------- Docker Hub

#[derive(Deserialize)]
struct DockerHubPush<'a> {
    #[serde(borrow, default)]
    callback_url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    push_data: Option<DockerHubPushData<'a>>,
    #[serde(borrow)]
    repository: DockerHubRepository<'a>,
}

#[derive(Deserialize)]
struct DockerHubPushData<'a> {
    #[serde(default)]
    pushed_at: Option<serde_json::Value>,
    #[serde(borrow, default)]
    tag: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pusher: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DockerHubRepository<'a> {
    #[serde(borrow, default)]
    repo_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

fn docker_hub(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    if event != "push" {
        return ignored(format!("docker hub {event} events never deploy"));
    }
    let what = format!("docker-hub {event}");
    let p: DockerHubPush = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;
    let repository = text(&p.repository.repo_name)
        .or_else(
            || match (text(&p.repository.namespace), text(&p.repository.name)) {
                (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
                _ => None,
            },
        )
        .ok_or_else(|| missing(&what, "repository.repo_name"))?;
    let data = p.push_data.as_ref();
    Ok(Event::ImagePush(vec![ImagePush {
        registry: Some("docker.io".into()),
        repository,
        tag: data.and_then(|d| text(&d.tag)),
        digest: None,
        pusher: data.and_then(|d| text(&d.pusher)),
        callback_url: text(&p.callback_url),
        sent_at_ms: data.and_then(|d| epoch_ms(d.pushed_at.as_ref())),
    }]))
}

// -------------------------------------------------------------------- Harbor

#[derive(Deserialize)]
struct HarborEvent<'a> {
    #[serde(default)]
    occur_at: Option<serde_json::Value>,
    #[serde(borrow, default)]
    operator: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_data: HarborEventData<'a>,
}

#[derive(Deserialize)]
struct HarborEventData<'a> {
    #[serde(borrow, default)]
    resources: Option<Vec<HarborResource<'a>>>,
    #[serde(borrow)]
    repository: HarborRepository<'a>,
}

#[derive(Deserialize)]
struct HarborResource<'a> {
    #[serde(borrow, default)]
    digest: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tag: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    resource_url: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct HarborRepository<'a> {
    #[serde(borrow, default)]
    repo_full_name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

fn harbor(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    if event != "PUSH_ARTIFACT" && event != "pushImage" {
        return ignored(format!("harbor {event} events never deploy"));
    }
    let what = format!("harbor {event}");
    let e: HarborEvent = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;
    let repo = &e.event_data.repository;
    let repository = text(&repo.repo_full_name)
        .or_else(|| match (text(&repo.namespace), text(&repo.name)) {
            (Some(ns), Some(name)) => Some(format!("{ns}/{name}")),
            _ => None,
        })
        .ok_or_else(|| missing(&what, "event_data.repository.repo_full_name"))?;
    let pusher = text(&e.operator);
    let sent_at_ms = epoch_ms(e.occur_at.as_ref());
    let images: Vec<ImagePush> = e
        .event_data
        .resources
        .unwrap_or_default()
        .iter()
        .map(|r| ImagePush {
            registry: r.resource_url.as_deref().and_then(registry_host),
            repository: repository.clone(),
            tag: text(&r.tag),
            digest: text(&r.digest),
            pusher: pusher.clone(),
            callback_url: None,
            sent_at_ms,
        })
        .collect();
    if images.is_empty() {
        return ignored(format!("harbor {event} lists no pushed artifacts"));
    }
    Ok(Event::ImagePush(images))
}

// ---------------------------------------------------------------------- Quay

#[derive(Deserialize)]
struct QuayPush<'a> {
    #[serde(borrow)]
    repository: Cow<'a, str>,
    #[serde(borrow, default)]
    docker_url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    updated_tags: Option<QuayTags<'a>>,
}

/// `updated_tags`: a list of tags now, an object of tag to image id in old
/// Quay releases.
#[derive(Deserialize)]
#[serde(untagged)]
enum QuayTags<'a> {
    List(#[serde(borrow)] Vec<Cow<'a, str>>),
    Map(#[serde(borrow)] BTreeMap<Cow<'a, str>, serde::de::IgnoredAny>),
}

fn quay(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    if event != "repo_push" {
        return ignored(format!("quay {event} notifications never deploy"));
    }
    let what = format!("quay {event}");
    let p: QuayPush = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;
    let repository = p.repository.trim().trim_matches('/').to_string();
    if repository.is_empty() {
        return Err(missing(&what, "repository"));
    }
    let registry = p.docker_url.as_deref().and_then(registry_host);
    let tags: Vec<&str> = match &p.updated_tags {
        Some(QuayTags::List(tags)) => tags.iter().map(|t| t.as_ref()).collect(),
        Some(QuayTags::Map(tags)) => tags.keys().map(|t| t.as_ref()).collect(),
        None => Vec::new(),
    };
    let images: Vec<ImagePush> = tags
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|tag| ImagePush {
            registry: registry.clone(),
            repository: repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
            pusher: None,
            callback_url: None,
            sent_at_ms: None,
        })
        .collect();
    if images.is_empty() {
        return ignored(format!("quay {event} updated no tags"));
    }
    Ok(Event::ImagePush(images))
}

// ---------------------------------------------------- Azure Container Registry

#[derive(Deserialize)]
struct AcrEvent<'a> {
    #[serde(borrow)]
    target: AcrTarget<'a>,
    #[serde(borrow, default)]
    request: Option<AcrRequest<'a>>,
}

#[derive(Deserialize)]
struct AcrTarget<'a> {
    #[serde(borrow, default)]
    repository: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tag: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    digest: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct AcrRequest<'a> {
    #[serde(borrow, default)]
    host: Option<Cow<'a, str>>,
}

fn acr(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    if event != "push" {
        return ignored(format!(
            "azure container registry {event} events never deploy"
        ));
    }
    let what = format!("acr {event}");
    let e: AcrEvent = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;
    let repository =
        text(&e.target.repository).ok_or_else(|| missing(&what, "target.repository"))?;
    Ok(Event::ImagePush(vec![ImagePush {
        registry: e
            .request
            .as_ref()
            .and_then(|r| text(&r.host))
            .map(|h| h.to_ascii_lowercase()),
        repository,
        tag: text(&e.target.tag),
        digest: text(&e.target.digest),
        pusher: None,
        callback_url: None,
        sent_at_ms: None,
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/{path}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    }

    fn image(registry: &str, repository: &str, tag: &str) -> ImagePush {
        ImagePush {
            registry: Some(registry.into()),
            repository: repository.into(),
            tag: Some(tag.into()),
            digest: None,
            pusher: None,
            callback_url: None,
            sent_at_ms: None,
        }
    }

    #[test]
    fn docker_hub_docs_example() {
        let json = fixture("dockerhub/dockerdocs-webhook-example.json");
        assert_eq!(
            parse(Provider::DockerHub, "push", &json),
            Ok(Event::ImagePush(vec![ImagePush {
                pusher: Some("trustedbuilder".into()),
                callback_url: Some(
                    "https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/"
                        .into()
                ),
                sent_at_ms: Some(1_417_566_161_000),
                ..image("docker.io", "svendowideit/testhook", "latest")
            }]))
        );
    }

    #[test]
    fn docker_hub_official_image_keeps_its_name() {
        let json = br#"{"callback_url": null, "push_data": {"tag": "1.27", "pusher": null},
            "repository": {"repo_name": "nginx", "namespace": "library", "name": "nginx"}}"#;
        assert_eq!(
            parse(Provider::DockerHub, "push", json),
            Ok(Event::ImagePush(vec![image("docker.io", "nginx", "1.27")]))
        );
    }

    #[test]
    fn harbor_docs_push_artifact() {
        let json = fixture("harbor/harbordocs-push-artifact.json");
        assert_eq!(
            parse(Provider::Harbor, "PUSH_ARTIFACT", &json),
            Ok(Event::ImagePush(vec![ImagePush {
                digest: Some(
                    "sha256:8a9e9863dbb6e10edb5adfe917c00da84e1700fa76e7ed02476aa6e6fb8ee0d8"
                        .into()
                ),
                pusher: Some("admin".into()),
                sent_at_ms: Some(1_586_922_308_000),
                ..image("hub.harbor.com", "test-webhook/debian", "latest")
            }]))
        );
    }

    #[test]
    fn harbor_one_image_per_resource_and_v1_event_name() {
        let json = br#"{"type": "pushImage", "occur_at": 1, "operator": "robot$ci",
            "event_data": {"resources": [
                {"digest": "sha256:aa", "tag": "7", "resource_url": "harbor.example.com:8443/library/centos:7"},
                {"digest": "sha256:aa", "tag": "latest", "resource_url": "harbor.example.com:8443/library/centos:latest"},
                {"digest": "sha256:bb"}
            ], "repository": {"name": "centos", "namespace": "library", "repo_full_name": "library/centos"}}}"#;
        let Ok(Event::ImagePush(images)) = parse(Provider::Harbor, "pushImage", json) else {
            panic!("expected an image push");
        };
        assert_eq!(images.len(), 3);
        assert_eq!(
            images[0].registry.as_deref(),
            Some("harbor.example.com:8443")
        );
        assert_eq!(images[1].tag.as_deref(), Some("latest"));
        assert_eq!(images[2].registry, None);
        assert_eq!(images[2].tag, None);
        assert_eq!(images[2].digest.as_deref(), Some("sha256:bb"));
        assert!(images.iter().all(|i| i.repository == "library/centos"));
        assert!(images
            .iter()
            .all(|i| i.pusher.as_deref() == Some("robot$ci")));
    }

    #[test]
    fn harbor_other_types_are_ignored() {
        let json = fixture("harbor/harbordocs-push-artifact.json");
        for event in [
            "PULL_ARTIFACT",
            "DELETE_ARTIFACT",
            "SCANNING_COMPLETED",
            "QUOTA_EXCEED",
            "REPLICATION",
        ] {
            match parse(Provider::Harbor, event, &json) {
                Ok(Event::Ignored { reason }) => assert!(reason.contains(event), "{reason}"),
                other => panic!("{event}: {other:?}"),
            }
        }
    }

    #[test]
    fn quay_docs_repo_push() {
        let json = fixture("quay/quaydocs-repo-push.json");
        assert_eq!(
            parse(Provider::Quay, "repo_push", &json),
            Ok(Event::ImagePush(vec![image(
                "quay.io",
                "mynamespace/repository",
                "latest"
            )]))
        );
    }

    #[test]
    fn quay_old_object_form_of_updated_tags() {
        let json = br#"{"pushed_image_count": 2, "name": "ubuntu", "repository": "devtable/ubuntu",
            "docker_url": "quay.io/devtable/ubuntu",
            "updated_tags": {"latest": "b750fe79269d2ec9a3c593ef05b4332b1d1a02a62b4accb2c21d589ff2f5f2dc", "20.04": "b750"},
            "namespace": "devtable", "visibility": "private", "homepage": "https://quay.io/repository/devtable/ubuntu"}"#;
        assert_eq!(
            parse(Provider::Quay, "repo_push", json),
            Ok(Event::ImagePush(vec![
                image("quay.io", "devtable/ubuntu", "20.04"),
                image("quay.io", "devtable/ubuntu", "latest"),
            ]))
        );
        let none = br#"{"repository": "a/b", "docker_url": "quay.io/a/b", "updated_tags": []}"#;
        assert!(matches!(
            parse(Provider::Quay, "repo_push", none),
            Ok(Event::Ignored { .. })
        ));
    }

    #[test]
    fn acr_push() {
        let json = fixture("acr/jenkins-acr-payload-valid.json");
        assert_eq!(
            parse(Provider::Acr, "push", &json),
            Ok(Event::ImagePush(vec![ImagePush {
                digest: Some(
                    "sha256:f5233545e43561214ca4891fd1157e1c3c563316ed8e237750d59bde73361e77"
                        .into()
                ),
                ..image("myregistry.azurecr.io", "hello-world", "v1")
            }]))
        );
        for action in ["delete", "chart_push", "quarantine"] {
            match parse(Provider::Acr, action, &json) {
                Ok(Event::Ignored { reason }) => assert!(reason.contains(action), "{reason}"),
                other => panic!("{action}: {other:?}"),
            }
        }
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("quay.io/ns/repo").as_deref(), Some("quay.io"));
        assert_eq!(
            registry_host("https://Reg.Example:5000/r").as_deref(),
            Some("reg.example:5000")
        );
        assert_eq!(registry_host("localhost/r:1").as_deref(), Some("localhost"));
        assert_eq!(registry_host("library/nginx:latest"), None);
        assert_eq!(registry_host("debian:latest"), None);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let cases: [(Provider, &str, &[u8], &str); 5] = [
            (Provider::DockerHub, "push", b"{}", "docker-hub push: "),
            (
                Provider::DockerHub,
                "push",
                br#"{"repository": {}}"#,
                "docker-hub push: ",
            ),
            (
                Provider::Harbor,
                "PUSH_ARTIFACT",
                br#"{"event_data": []}"#,
                "harbor PUSH_ARTIFACT: ",
            ),
            (Provider::Quay, "repo_push", b"nope", "quay repo_push: "),
            (
                Provider::Acr,
                "push",
                br#"{"target": {"tag": "v1"}}"#,
                "acr push: ",
            ),
        ];
        for (provider, event, body, prefix) in cases {
            match parse(provider, event, body) {
                Err(PluginError::MalformedPayload(m)) => assert!(m.starts_with(prefix), "{m}"),
                other => panic!("{provider:?} {event}: {other:?}"),
            }
        }
    }
}
