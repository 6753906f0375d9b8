//! The providers: one [`Sender`] each, listed once in [`SENDERS`], which
//! detection, signature checking and parsing all read.
//!
//! A sender says its id, how a delivery of its is recognized (by its headers,
//! or for senders without an identifying header by the `Content-Type` or the
//! shape of the body), what proves such a delivery authentic, and how its
//! payload becomes the normalized [`Event`]. The forges, known by one event
//! header, are data: a [`HeaderSender`] static each. The steps every forge
//! shares live in [`common`]. Adding a provider is one new file with its
//! sender, and one line in [`SENDERS`].
//!
//! Detection asks the senders in the registry's order, and the order
//! matters: Forgejo also sends Gitea's and Gogs' headers, and Gitea and
//! Forgejo send GitHub-style ones, so the most specific header wins; and a
//! body that fits several shapes belongs to the first sender that claims it.
//! Only the Distribution registry is recognized by its `Content-Type` (when
//! no proxy rewrote it), before any body shape.

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::error::{malformed, PluginError};
use crate::model::{Event, Headers, Provider};
use crate::signature::FoundProof;

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
pub(crate) mod test_support;

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

impl Detected {
    /// A detection of `provider`'s `event_name`, with its delivery id.
    pub fn new(provider: Provider, event_name: &str, delivery: Option<String>) -> Self {
        Detected {
            provider,
            event_name: event_name.to_string(),
            delivery,
        }
    }
}

/// One webhook sender (a forge, a registry, a service): how its deliveries
/// are recognized, proven and read.
pub trait Sender: Sync {
    /// The provider it is.
    fn id(&self) -> Provider;

    /// Whether it reads deliveries of `provider`: its own, and for GitHub
    /// also GHCR's (GitHub's package events, renamed once parsed).
    fn serves(&self, provider: Provider) -> bool {
        provider == self.id()
    }

    /// Recognizes a delivery of its from the headers alone, before any of
    /// the body is read. `None`: not one of its deliveries (or it sends no
    /// identifying header).
    fn detect_by_headers(&self, _headers: &Headers) -> Option<Detected> {
        None
    }

    /// Recognizes a delivery without a provider header from its
    /// `Content-Type`, before any body shape is looked at.
    fn detect_by_content_type(&self, _headers: &Headers) -> Option<Detected> {
        None
    }

    /// Recognizes a delivery without a provider header from the shape of
    /// its body.
    fn detect_by_body(&self, _shape: &BodyShape) -> Option<Detected> {
        None
    }

    /// What in the headers proves the delivery authentic, with the scheme
    /// it implies; `None` when it carries nothing (or the sender signs
    /// nothing, so only stacks without secrets accept it).
    ///
    /// # Errors
    ///
    /// [`PluginError::BadSignature`] when the header is there but not in
    /// the sender's format.
    fn proof<'h>(&self, _headers: &'h Headers) -> Result<FoundProof<'h>, PluginError> {
        Ok(None)
    }

    /// Normalizes the payload of a detected delivery. A sender whose event
    /// name or delivery id is only inside the body updates `detected`.
    ///
    /// # Errors
    ///
    /// [`PluginError::MalformedPayload`] when the payload of an event that
    /// could deploy is not what the sender documents.
    fn parse(&self, detected: &mut Detected, json: &[u8]) -> Result<Event, PluginError>;
}

/// Every provider, in detection order: the header-identified forges most
/// specific header first, then the senders known by their body.
pub static SENDERS: &[&dyn Sender] = &[
    &gitea::FORGEJO,
    &gitea::GITEA,
    &gitea::GOGS,
    &gitee::GITEE,
    &github::GITHUB,
    &harness::HARNESS,
    &gitlab::GITLAB,
    &bitbucket_server::BITBUCKET_SERVER,
    &bitbucket_cloud::BITBUCKET_CLOUD,
    &azure_devops::AzureDevops,
    &registries::DockerHub,
    &registries::Harbor,
    &registries::Quay,
    &registries::Distribution,
    &registries::Acr,
    &bitbucket_legacy::BitbucketLegacy,
];

/// The sender that reads deliveries of `provider`; `None` for the manual
/// trigger and post-receive input, which no webhook sender delivers.
pub fn sender(provider: Provider) -> Option<&'static dyn Sender> {
    SENDERS.iter().copied().find(|s| s.serves(provider))
}

/// The first non-empty value of the headers `names`, in order.
pub fn header_value(headers: &Headers, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| headers.get(n))
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// A payload parser that reads the event name and the JSON document.
pub type ParseFn = fn(&str, &[u8]) -> Result<Event, PluginError>;

/// What in the headers proves a delivery authentic ([`Sender::proof`]).
pub type ProofFn = for<'h> fn(&'h Headers) -> Result<FoundProof<'h>, PluginError>;

/// A sender known by one event header: the forges. They differ only in
/// data (the header names, which event values are theirs, how they sign and
/// how their payload reads), so one implementation serves them all.
pub struct HeaderSender {
    /// The provider it is.
    pub id: Provider,
    /// The other providers whose deliveries it reads (GitHub: GHCR's).
    pub also_serves: &'static [Provider],
    /// The header naming the event.
    pub event_header: &'static str,
    /// Whether an event header value is this sender's: Bitbucket Server
    /// and Cloud share `X-Event-Key` and tell each other apart by its value.
    pub claims: fn(&str) -> bool,
    /// The headers that may carry the delivery id, in order.
    pub delivery_headers: &'static [&'static str],
    /// What proves a delivery authentic.
    pub proof: ProofFn,
    /// The payload parser, given the event header's value.
    pub parse: ParseFn,
}

/// A [`HeaderSender::claims`] for a sender whose event header is its alone.
pub fn any_event(_event: &str) -> bool {
    true
}

/// A [`HeaderSender::proof`] for a sender that signs nothing redeploy can
/// check, so only stacks without secrets accept it.
pub fn no_proof(_headers: &Headers) -> Result<FoundProof<'_>, PluginError> {
    Ok(None)
}

impl Sender for HeaderSender {
    fn id(&self) -> Provider {
        self.id
    }

    fn serves(&self, provider: Provider) -> bool {
        provider == self.id || self.also_serves.contains(&provider)
    }

    fn detect_by_headers(&self, headers: &Headers) -> Option<Detected> {
        let event = headers
            .get(self.event_header)
            .filter(|e| (self.claims)(e))?;
        let delivery = header_value(headers, self.delivery_headers);
        Some(Detected::new(self.id, event, delivery))
    }

    fn proof<'h>(&self, headers: &'h Headers) -> Result<FoundProof<'h>, PluginError> {
        (self.proof)(headers)
    }

    /// A blank event header names no event: refused, rather than read as
    /// an event called "" that never deploys.
    fn parse(&self, detected: &mut Detected, json: &[u8]) -> Result<Event, PluginError> {
        if detected.event_name.trim().is_empty() {
            return Err(PluginError::MalformedPayload(format!(
                "the {} header is blank: it names no event",
                self.event_header
            )));
        }
        (self.parse)(&detected.event_name, json)
    }
}

/// Fields whose presence identifies a header-less sender.
#[derive(Deserialize, Default)]
pub struct BodyShape {
    /// Docker Hub's (legacy) callback URL.
    pub callback_url: Option<IgnoredAny>,
    /// Docker Hub's push data.
    pub push_data: Option<IgnoredAny>,
    /// Harbor's event type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Harbor's event data.
    pub event_data: Option<IgnoredAny>,
    /// Quay's image URL.
    pub docker_url: Option<IgnoredAny>,
    /// Quay's updated tags.
    pub updated_tags: Option<IgnoredAny>,
    /// Distribution's envelope: `{"events": [...]}`.
    pub events: Option<IgnoredAny>,
    /// Azure Container Registry's action (one Distribution-style event, no
    /// envelope).
    pub action: Option<String>,
    /// ACR's target.
    pub target: Option<IgnoredAny>,
    /// ACR's request.
    pub request: Option<IgnoredAny>,
    /// Azure DevOps service hooks' event type.
    #[serde(rename = "eventType")]
    pub event_type: Option<String>,
    /// Azure DevOps service hooks' publisher.
    #[serde(rename = "publisherId")]
    pub publisher_id: Option<String>,
    /// Azure DevOps' notification id, ACR's event id.
    pub id: Option<serde_json::Value>,
    /// The legacy Bitbucket POST service's site URL.
    pub canon_url: Option<IgnoredAny>,
    /// The legacy Bitbucket POST service's commits.
    pub commits: Option<IgnoredAny>,
    /// The legacy Bitbucket POST service's repository.
    pub repository: Option<IgnoredAny>,
}

impl BodyShape {
    /// The body's `id`, a string or a number.
    pub fn id(&self) -> Option<String> {
        match &self.id {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Detects a sender from its headers alone, before any of the body is
/// read, so a signing sender's signature can be checked before its body
/// reaches a parser. `None`: no provider header (a registry, Azure DevOps,
/// the legacy Bitbucket POST service, or a manual trigger).
pub fn detect_by_headers(headers: &Headers) -> Option<Detected> {
    SENDERS.iter().find_map(|s| s.detect_by_headers(headers))
}

/// Detects the sender of a delivery. `json` is the decoded JSON document
/// (the `payload` field for form-encoded bodies); it is empty for an empty body.
pub fn detect(headers: &Headers, json: &[u8]) -> Result<Detected, PluginError> {
    match detect_by_headers(headers) {
        Some(d) => Ok(d),
        None => detect_by_body(headers, json),
    }
}

/// Detects a sender without a provider header from its `Content-Type` or
/// the shape of its body. An empty (or blank) body is a manual trigger.
pub fn detect_by_body(headers: &Headers, json: &[u8]) -> Result<Detected, PluginError> {
    if json.iter().all(u8::is_ascii_whitespace) {
        return Ok(Detected::new(Provider::Manual, "manual", None));
    }
    let shape: BodyShape = serde_json::from_slice(json).map_err(|e| {
        let object = json.trim_ascii_start().starts_with(b"{");
        if e.is_data() && !object {
            PluginError::UnknownProvider(
                "the body is JSON but not an object and no provider header is present".into(),
            )
        } else if e.is_data() {
            // An object whose fields do not read as any sender's (a field
            // twice, a field of the wrong type): say which.
            malformed(
                "the body, sent with no provider header, reads as no sender's",
                e,
            )
        } else {
            malformed("body is not JSON and no provider header is present", e)
        }
    })?;
    SENDERS
        .iter()
        .find_map(|s| s.detect_by_content_type(headers))
        .or_else(|| SENDERS.iter().find_map(|s| s.detect_by_body(&shape)))
        .ok_or_else(|| PluginError::UnknownProvider(
            "no provider header (X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event, X-Event-Key...) and the body matches no known registry or service payload".into(),
        ))
}

/// Normalizes the payload of a detected delivery, by its sender's
/// [`Sender::parse`]. A sender may update `detected`: a Distribution
/// envelope names its event and delivery id only inside.
pub fn parse(detected: &mut Detected, json: &[u8]) -> Result<Event, PluginError> {
    match (sender(detected.provider), detected.provider) {
        (Some(sender), _) => sender.parse(detected, json),
        (None, Provider::Manual) => Ok(Event::Manual),
        (None, _) => Err(PluginError::MalformedPayload(
            "post-receive input is not an HTTP body".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use test_support::fixture as shared_fixture;

    fn distribution_fixture(name: &str) -> Vec<u8> {
        shared_fixture(&format!("distribution/{name}"))
    }

    fn content_type(value: &str) -> Headers {
        Headers::new([("Content-Type", value)])
    }

    fn provider(headers: &Headers, json: &[u8]) -> Result<Provider, PluginError> {
        detect(headers, json).map(|d| d.provider)
    }

    #[test]
    fn a_blank_event_header_is_refused_naming_the_header() {
        // go-scm's GitHub push body, under a blank event header (header
        // names are told in lower case).
        let body = shared_fixture("github/goscm-push.json");
        for (header, value) in [
            ("X-GitHub-Event", ""),
            ("X-GitHub-Event", "  "),
            ("X-Gitlab-Event", "\t"),
            ("X-Gitea-Event", " "),
        ] {
            let mut detected = detect(&Headers::new([(header, value)]), &body).unwrap();
            assert_eq!(
                parse(&mut detected, &body),
                Err(PluginError::MalformedPayload(format!(
                    "the {} header is blank: it names no event",
                    header.to_ascii_lowercase()
                ))),
                "{header}: {value:?}"
            );
        }
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
    fn by_headers(pairs: &[(&str, &str)]) -> Option<(Provider, Option<String>)> {
        detect_by_headers(&Headers::new(pairs.iter().copied())).map(|d| (d.provider, d.delivery))
    }

    #[test]
    fn a_headerless_object_that_reads_as_no_sender_says_why_and_a_non_object_says_so() {
        let none = Headers::default();
        match detect_by_body(&none, br#"{"push_data": {}, "push_data": {}}"#) {
            Err(PluginError::MalformedPayload(m)) => {
                assert!(m.contains("duplicate field `push_data`"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        for body in [&b"[1, 2]"[..], b"\"text\"", b"42"] {
            match detect_by_body(&none, body) {
                Err(PluginError::UnknownProvider(m)) => {
                    assert!(m.contains("JSON but not an object"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn the_registry_lists_every_webhook_sender_once_in_detection_order() {
        let order: Vec<Provider> = SENDERS.iter().map(|s| s.id()).collect();
        assert_eq!(
            order,
            [
                Provider::Forgejo,
                Provider::Gitea,
                Provider::Gogs,
                Provider::Gitee,
                Provider::Github,
                Provider::Harness,
                Provider::Gitlab,
                Provider::BitbucketServer,
                Provider::BitbucketCloud,
                Provider::AzureDevops,
                Provider::DockerHub,
                Provider::Harbor,
                Provider::Quay,
                Provider::Distribution,
                Provider::Acr,
                Provider::BitbucketLegacy,
            ]
        );
        for (i, s) in SENDERS.iter().enumerate() {
            assert_eq!(sender(s.id()).map(|t| t.id()), Some(s.id()), "{i}");
        }
        assert_eq!(
            sender(Provider::Ghcr).map(|s| s.id()),
            Some(Provider::Github)
        );
        assert!(sender(Provider::Manual).is_none());
        assert!(sender(Provider::PostReceive).is_none());
        assert!(sender(Provider::Poll).is_none());
    }

    #[test]
    fn the_most_specific_forge_header_wins() {
        // Forgejo sends Gitea's, Gogs' and GitHub-style headers too.
        let forgejo = [
            ("X-GitHub-Event", "push"),
            ("X-Gogs-Event", "push"),
            ("X-Gitea-Event", "push"),
            ("X-Forgejo-Event", "push"),
            ("X-Gitea-Delivery", "gitea-id"),
            ("X-Forgejo-Delivery", "forgejo-id"),
        ];
        assert_eq!(
            by_headers(&forgejo),
            Some((Provider::Forgejo, Some("forgejo-id".into())))
        );
        assert_eq!(
            by_headers(&forgejo[..5]),
            Some((Provider::Forgejo, Some("gitea-id".into())))
        );
        assert_eq!(
            by_headers(&forgejo[..3]).map(|d| d.0),
            Some(Provider::Gitea)
        );
        assert_eq!(by_headers(&forgejo[..2]).map(|d| d.0), Some(Provider::Gogs));
        assert_eq!(
            by_headers(&forgejo[..1]).map(|d| d.0),
            Some(Provider::Github)
        );
        let gitee_github = [("X-GitHub-Event", "push"), ("X-Gitee-Event", "Push Hook")];
        assert_eq!(
            by_headers(&gitee_github).map(|d| d.0),
            Some(Provider::Gitee)
        );
        let github_harness = [
            ("X-Harness-Trigger", "branch_updated"),
            ("X-GitHub-Event", "push"),
        ];
        assert_eq!(
            by_headers(&github_harness).map(|d| d.0),
            Some(Provider::Github)
        );
        let harness_gitlab = [
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Harness-Trigger", "branch_updated"),
        ];
        assert_eq!(
            by_headers(&harness_gitlab).map(|d| d.0),
            Some(Provider::Harness)
        );
        // A forge's own header wins over Bitbucket's `X-Event-Key`.
        let gitlab_key = [
            ("X-Event-Key", "repo:push"),
            ("X-Gitlab-Event", "Push Hook"),
        ];
        assert_eq!(by_headers(&gitlab_key).map(|d| d.0), Some(Provider::Gitlab));
    }

    #[test]
    fn bitbucket_server_keys_are_told_from_cloud_keys() {
        for (key, provider) in [
            ("repo:refs_changed", Provider::BitbucketServer),
            ("pr:opened", Provider::BitbucketServer),
            ("mirror:repo_synchronized", Provider::BitbucketServer),
            ("diagnostics:ping", Provider::BitbucketServer),
            ("repo:push", Provider::BitbucketCloud),
            ("pullrequest:created", Provider::BitbucketCloud),
            ("repo:commit_status_created", Provider::BitbucketCloud),
        ] {
            let headers = [
                ("X-Event-Key", key),
                ("X-Request-Id", "server-id"),
                ("X-Request-UUID", "cloud-id"),
            ];
            let delivery = match provider {
                Provider::BitbucketServer => "server-id",
                _ => "cloud-id",
            };
            assert_eq!(
                by_headers(&headers),
                Some((provider, Some(delivery.into()))),
                "{key}"
            );
        }
    }

    #[test]
    fn a_body_fitting_several_shapes_is_the_first_senders() {
        let azure_and_docker_hub = br#"{"eventType": "git.push", "publisherId": "tfs",
            "push_data": {}, "callback_url": "https://x"}"#;
        assert_eq!(
            provider(&Headers::default(), azure_and_docker_hub),
            Ok(Provider::AzureDevops)
        );
        let docker_hub_and_harbor = br#"{"push_data": {}, "callback_url": "https://x",
            "type": "PUSH_ARTIFACT", "event_data": {}}"#;
        assert_eq!(
            provider(&Headers::default(), docker_hub_and_harbor),
            Ok(Provider::DockerHub)
        );
        let quay_and_legacy = br#"{"docker_url": "quay.io/a/b", "updated_tags": [],
            "canon_url": "https://bitbucket.org", "repository": {}, "commits": []}"#;
        assert_eq!(
            provider(&Headers::default(), quay_and_legacy),
            Ok(Provider::Quay)
        );
        // Distribution's media type comes before any shape.
        let typed = content_type("application/vnd.docker.distribution.events.v1+json");
        assert_eq!(
            provider(&typed, azure_and_docker_hub),
            Ok(Provider::Distribution)
        );
        // Headers come before the body.
        let github = Headers::new([("X-GitHub-Event", "push")]);
        assert_eq!(
            provider(&github, azure_and_docker_hub),
            Ok(Provider::Github)
        );
    }
}
