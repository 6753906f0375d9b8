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
//!   `target.repository` / `target.tag` / `target.digest` on `request.host`,
//!   sent at `timestamp`; `delete`, `chart_push`, `chart_delete`,
//!   `quarantine`... are ignored.
//! - The CNCF Distribution registry ("Work with notifications"): ACR's event
//!   shape, several events in an envelope `{"events": [...]}` sent as
//!   `application/vnd.docker.distribution.events.v1+json` (2.x) or `v2+json`
//!   (3.x). Each `push` of a manifest is one image on `request.host`, pushed
//!   by `actor.name` at `timestamp`; `target.tag` is absent before
//!   Distribution 2.4 and for a push by digest. Pushes of blobs (layers,
//!   configs), pulls, mounts and deletions are ignored.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use crate::error::{malformed, PluginError};
use crate::model::{Event, Headers, ImagePush, Provider};
use crate::providers::{BodyShape, Detected, Sender};

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
/// (year 2286); a larger number is not a time in seconds.
const MAX_EPOCH_SECONDS: f64 = 1e10;

/// A registry's event time `field` (Unix seconds, an integer or a
/// fraction) in milliseconds; `None` when absent or `null`.
///
/// # Errors
///
/// [`PluginError::MalformedPayload`] for a time that is there but is not a
/// number of seconds from the epoch to [`MAX_EPOCH_SECONDS`] (a string, a
/// negative number, milliseconds): read as no time, it would take a
/// replayed event past the age check.
fn epoch_ms(
    value: Option<&serde_json::Value>,
    what: &str,
    field: &str,
) -> Result<Option<u64>, PluginError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    match value.as_f64() {
        Some(seconds) if seconds.is_finite() && (0.0..MAX_EPOCH_SECONDS).contains(&seconds) => {
            Ok(Some((seconds * 1000.0) as u64))
        }
        _ => Err(PluginError::MalformedPayload(format!(
            "{what}: {field} is not a Unix time in seconds"
        ))),
    }
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
    let sent_at_ms = epoch_ms(
        data.and_then(|d| d.pushed_at.as_ref()),
        &what,
        "push_data.pushed_at",
    )?;
    Ok(Event::ImagePush(vec![ImagePush {
        registry: Some("docker.io".into()),
        repository,
        tag: data.and_then(|d| text(&d.tag)),
        digest: None,
        pusher: data.and_then(|d| text(&d.pusher)),
        callback_url: text(&p.callback_url),
        sent_at_ms,
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
    let sent_at_ms = epoch_ms(e.occur_at.as_ref(), &what, "occur_at")?;
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
    /// When the registry sent it (RFC 3339), which `server.max_event_age`
    /// judges, as Distribution's own `timestamp`.
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    target: AcrTarget<'a>,
    #[serde(borrow, default)]
    request: Option<AcrRequest<'a>>,
}

/// The `target` of an ACR or Distribution event.
#[derive(Deserialize)]
struct AcrTarget<'a> {
    #[serde(borrow, default, rename = "mediaType")]
    media_type: Option<Cow<'a, str>>,
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
        sent_at_ms: e.timestamp.as_deref().and_then(rfc3339_ms),
    }]))
}

// ------------------------------------------------------------- Distribution

/// The media types of Distribution's notifications: `v1` in Distribution 2.x
/// (`docker/distribution`), `v2` since 3.0 (`notifications.EventsMediaType`).
pub const DISTRIBUTION_EVENTS_MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
];

/// The most events one Distribution envelope may carry. Distribution 3 sends
/// one event per request; 2.x grouped queued events, at most the manifest
/// and layers of a few pushes (a Docker image has fewer than 128 layers). A
/// thousand is far beyond any real envelope: a larger one is refused whole
/// as malformed, never cut.
pub const MAX_DISTRIBUTION_EVENTS: usize = 1000;

/// Image manifest and index media types (Docker schema 1 and 2, OCI). A
/// Distribution `push` of any other media type is a blob: a layer, an image
/// config, or an upload Distribution could not type
/// (`application/octet-stream`). Only a manifest names an image one can
/// run, and the URL cannot tell them apart (Distribution's own event test
/// gives layers a `/manifests/` URL).
const MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
];

/// How many distinct other actions a skip reason names; the rest are
/// counted, so a hostile envelope cannot make the reason long.
const MAX_NAMED_ACTIONS: usize = 4;

/// The longest action name a skip reason quotes, in characters.
const MAX_ACTION_CHARS: usize = 32;

/// A Distribution notification after parsing.
#[derive(Debug, PartialEq, Eq)]
pub struct DistributionNotification {
    /// The image pushes, or why the notification deploys nothing.
    pub event: Event,
    /// The `action` of its first manifest push, or of its first event when it
    /// has none; `None` for an envelope without events.
    pub event_name: Option<String>,
    /// The `id` of that same event: Distribution gives every event a unique
    /// id and resends it unchanged, so it identifies the delivery.
    pub delivery: Option<String>,
}

#[derive(Deserialize)]
struct DistributionEnvelope<'a> {
    #[serde(borrow, deserialize_with = "bounded_events")]
    events: Vec<DistributionEvent<'a>>,
}

#[derive(Deserialize)]
struct DistributionEvent<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    target: Option<AcrTarget<'a>>,
    #[serde(borrow, default)]
    request: Option<AcrRequest<'a>>,
    #[serde(borrow, default)]
    actor: Option<DistributionActor<'a>>,
}

#[derive(Deserialize)]
struct DistributionActor<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

/// Reads `events`, keeping at most [`MAX_DISTRIBUTION_EVENTS`]: one more
/// (skipped, never kept) refuses the whole envelope.
fn bounded_events<'de, D>(deserializer: D) -> Result<Vec<DistributionEvent<'de>>, D::Error>
where
    D: Deserializer<'de>,
{
    struct Bounded;
    impl<'de> Visitor<'de> for Bounded {
        type Value = Vec<DistributionEvent<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a list of at most {MAX_DISTRIBUTION_EVENTS} events")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut events = Vec::new();
            loop {
                if events.len() == MAX_DISTRIBUTION_EVENTS {
                    // One more element, even `null`, is one event too many.
                    return match seq.next_element::<serde::de::IgnoredAny>()? {
                        Some(_) => Err(A::Error::custom(format!(
                            "more than {MAX_DISTRIBUTION_EVENTS} events in one envelope"
                        ))),
                        None => Ok(events),
                    };
                }
                match seq.next_element()? {
                    Some(event) => events.push(event),
                    None => return Ok(events),
                }
            }
        }
    }
    deserializer.deserialize_seq(Bounded)
}

/// Whether a Distribution event target is an image manifest or index.
fn is_manifest(target: &AcrTarget<'_>) -> bool {
    let Some(media_type) = target.media_type.as_deref() else {
        return false;
    };
    let media_type = media_type.split(';').next().unwrap_or("").trim();
    MANIFEST_MEDIA_TYPES
        .iter()
        .any(|m| m.eq_ignore_ascii_case(media_type))
}

/// Normalizes a Distribution notification envelope: one [`ImagePush`] per
/// manifest push, in the envelope's order. The envelope's other events
/// (blob pushes, pulls, mounts, deletions) deploy nothing; an envelope with
/// no manifest push is [`Event::Ignored`] with a reason naming what it held.
///
/// # Errors
///
/// [`PluginError::MalformedPayload`] when the body is not an envelope, has
/// more than [`MAX_DISTRIBUTION_EVENTS`] events, or a manifest push lacks
/// `target.repository`.
pub fn distribution(json: &[u8]) -> Result<DistributionNotification, PluginError> {
    let what = "distribution notification";
    let envelope: DistributionEnvelope =
        serde_json::from_slice(json).map_err(|e| malformed(what, e))?;
    let mut images = Vec::new();
    let mut representative: Option<&DistributionEvent> = None;
    let mut other_actions: Vec<String> = Vec::new();
    let mut more_actions = false;
    let mut blob_pushes = 0usize;
    for (i, event) in envelope.events.iter().enumerate() {
        let action = text(&event.action).unwrap_or_default();
        let manifest = event.target.as_ref().filter(|t| is_manifest(t));
        match (action.as_str(), manifest) {
            ("push", Some(target)) => {
                let repository = text(&target.repository)
                    .ok_or_else(|| missing(what, &format!("events[{i}].target.repository")))?;
                representative.get_or_insert(event);
                images.push(ImagePush {
                    registry: event
                        .request
                        .as_ref()
                        .and_then(|r| text(&r.host))
                        .map(|h| h.to_ascii_lowercase()),
                    repository,
                    tag: text(&target.tag),
                    digest: text(&target.digest),
                    pusher: event.actor.as_ref().and_then(|a| text(&a.name)),
                    callback_url: None,
                    sent_at_ms: event.timestamp.as_deref().and_then(rfc3339_ms),
                });
            }
            ("push", None) => blob_pushes += 1,
            _ => {
                let action = if action.is_empty() {
                    "unnamed".to_string()
                } else {
                    action.chars().take(MAX_ACTION_CHARS).collect()
                };
                if !other_actions.contains(&action) {
                    if other_actions.len() < MAX_NAMED_ACTIONS {
                        other_actions.push(action);
                    } else {
                        more_actions = true;
                    }
                }
            }
        }
    }
    let representative = representative.or(envelope.events.first());
    let event_name = representative.and_then(|e| text(&e.action));
    let delivery = representative.and_then(|e| text(&e.id));
    let event = if !images.is_empty() {
        Event::ImagePush(images)
    } else if envelope.events.is_empty() {
        Event::Ignored {
            reason: "distribution notification carries no events".into(),
        }
    } else {
        let mut kinds = Vec::new();
        if !other_actions.is_empty() {
            let more = if more_actions { "/..." } else { "" };
            kinds.push(format!("{}{more} events", other_actions.join("/")));
        }
        if blob_pushes > 0 {
            kinds.push("blob pushes (layers, configs)".to_string());
        }
        Event::Ignored {
            reason: format!(
                "distribution {} never deploy; only a manifest push names an image",
                kinds.join(" and ")
            ),
        }
    };
    Ok(DistributionNotification {
        event,
        event_name,
        delivery,
    })
}

/// An RFC 3339 time (`2016-03-09T14:44:26.402973972-08:00`, as Go writes a
/// `time.Time`) in Unix milliseconds; `None` when it is not RFC 3339 or not
/// between 1970 and the year 2286 (as [`epoch_ms`]), such as Go's zero time.
fn rfc3339_ms(text: &str) -> Option<u64> {
    let b = text.trim().as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(range)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let at = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":")) {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    // Fractional seconds: any number of digits, milliseconds kept.
    let mut i = 19;
    let mut millis = 0;
    if at(i, b".") {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let kept = (i - start).min(3);
        millis = digits(start..start + kept)? * 10i64.pow(3 - kept as u32);
    }
    let offset = if at(i, b"Zz") && i + 1 == b.len() {
        0
    } else if at(i, b"+-") && at(i + 3, b":") && i + 6 == b.len() {
        let (h, m) = (digits(i + 1..i + 3)?, digits(i + 4..i + 6)?);
        if h > 23 || m > 59 {
            return None;
        }
        let sign = if b.get(i) == Some(&b'-') { -1 } else { 1 };
        sign * (h * 3600 + m * 60)
    } else {
        return None;
    };
    // Days since 1970-01-01 in the proleptic Gregorian calendar (Howard
    // Hinnant's `days_from_civil`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    (0..MAX_EPOCH_SECONDS as i64)
        .contains(&seconds)
        .then(|| (seconds * 1000 + millis) as u64)
}

// ------------------------------------------------------------------ senders
// None signs its deliveries: only stacks without secrets accept them.

/// Docker Hub: a body with `push_data` and `callback_url`.
pub struct DockerHub;

impl Sender for DockerHub {
    fn id(&self) -> Provider {
        Provider::DockerHub
    }

    fn detect_by_body(&self, shape: &BodyShape) -> Option<Detected> {
        (shape.push_data.is_some() && shape.callback_url.is_some())
            .then(|| Detected::new(Provider::DockerHub, "push", None))
    }

    fn parse(&self, detected: &mut Detected, json: &[u8]) -> Result<Event, PluginError> {
        docker_hub(&detected.event_name, json)
    }
}

/// Harbor: a body with `type` (the event name) and `event_data`.
pub struct Harbor;

impl Sender for Harbor {
    fn id(&self) -> Provider {
        Provider::Harbor
    }

    fn detect_by_body(&self, shape: &BodyShape) -> Option<Detected> {
        let kind = shape.kind.as_deref()?;
        shape.event_data.as_ref()?;
        Some(Detected::new(Provider::Harbor, kind, None))
    }

    fn parse(&self, detected: &mut Detected, json: &[u8]) -> Result<Event, PluginError> {
        harbor(&detected.event_name, json)
    }
}

/// Quay: a body with `docker_url` and `updated_tags`.
pub struct Quay;

impl Sender for Quay {
    fn id(&self) -> Provider {
        Provider::Quay
    }

    fn detect_by_body(&self, shape: &BodyShape) -> Option<Detected> {
        (shape.docker_url.is_some() && shape.updated_tags.is_some())
            .then(|| Detected::new(Provider::Quay, "repo_push", None))
    }

    fn parse(&self, detected: &mut Detected, json: &[u8]) -> Result<Event, PluginError> {
        quay(&detected.event_name, json)
    }
}

/// The name and delivery id detection gives a Distribution notification
/// until parsing reads its events (which replaces both).
const DISTRIBUTION_ENVELOPE: &str = "notification";

/// The CNCF Distribution registry: its media type, or a body that is an
/// envelope `{"events": [...]}` without ACR's top-level fields.
pub struct Distribution;

impl Sender for Distribution {
    fn id(&self) -> Provider {
        Provider::Distribution
    }

    /// Distribution says what it sends in its media type; a body under that
    /// type that is no envelope is then malformed, not another sender's.
    fn detect_by_content_type(&self, headers: &Headers) -> Option<Detected> {
        let content_type = headers.get("content-type")?;
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        DISTRIBUTION_EVENTS_MEDIA_TYPES
            .iter()
            .any(|m| m.eq_ignore_ascii_case(media_type))
            .then(|| Detected::new(Provider::Distribution, DISTRIBUTION_ENVELOPE, None))
    }

    /// Distribution wraps its events in an envelope; ACR posts one event
    /// bare. Each shape excludes the other's top-level fields, so a body
    /// with both is neither.
    fn detect_by_body(&self, shape: &BodyShape) -> Option<Detected> {
        (shape.events.is_some() && shape.action.is_none() && shape.target.is_none())
            .then(|| Detected::new(Provider::Distribution, DISTRIBUTION_ENVELOPE, None))
    }

    /// An envelope names its event and delivery id only inside (several
    /// events may share one request): parsing sets `detected`'s to those of
    /// its first manifest push, or of its first event when it has none.
    fn parse(&self, detected: &mut Detected, json: &[u8]) -> Result<Event, PluginError> {
        let notification = distribution(json)?;
        if let Some(name) = notification.event_name {
            detected.event_name = name;
        }
        detected.delivery = notification.delivery;
        Ok(notification.event)
    }
}

/// Azure Container Registry: one Distribution-style event (`action`,
/// `target`, `request`) without an envelope.
pub struct Acr;

impl Sender for Acr {
    fn id(&self) -> Provider {
        Provider::Acr
    }

    fn detect_by_body(&self, shape: &BodyShape) -> Option<Detected> {
        let action = shape.action.as_deref()?;
        let bare = shape.target.is_some() && shape.request.is_some() && shape.events.is_none();
        bare.then(|| Detected::new(Provider::Acr, action, shape.id()))
    }

    fn parse(&self, detected: &mut Detected, json: &[u8]) -> Result<Event, PluginError> {
        acr(&detected.event_name, json)
    }
}

#[cfg(test)]
#[path = "registries_tests.rs"]
mod tests;
