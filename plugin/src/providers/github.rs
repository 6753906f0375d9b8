//! GitHub (github.com and GitHub Enterprise Server) webhook payloads.
//!
//! Follows GitHub's "Webhook events and payloads" reference:
//! - `push` → [`Event::Push`] (one ref update). The `commits` array holds at
//!   most 2048 commits and each commit reports at most 3000 changed files, so
//!   the file list is only trusted below those limits.
//! - `ping` → [`Event::Ping`], with the repository for repository hooks and
//!   none for organization / app hooks.
//! - `deployment` → [`Event::Deployment`]; `deployment.payload` may be an
//!   object, an empty string or a string holding a JSON object.
//! - `package` / `registry_package` with action `published` or `updated` for a
//!   container image → [`Event::ImagePush`]; other package types are ignored.
//! - `create`, `delete`, `deployment_status` and every other event →
//!   [`Event::Ignored`].

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::common::{
    first_non_empty, message_of, missing, named_repository, non_empty, pushed_after, required,
    Commit, ForgePush, ForgeRepo, PushPayload, RefChange, Str, User,
};
use crate::error::{malformed, PluginError};
use crate::model::{Deployment, Event, Headers, ImagePush, Provider, Repository};
use crate::outcome::SignatureScheme;
use crate::providers::{any_event, HeaderSender};
use crate::signature::{prefixed_sha1, prefixed_sha256, FoundProof, Signed};

/// GitHub lists at most this many commits in a push payload.
const MAX_PUSH_COMMITS: usize = 2048;
/// GitHub reports at most this many changed files per commit.
const MAX_COMMIT_FILES: usize = 3000;

/// The repository as GitHub describes it, with its clone and web URLs.
fn to_model(repo: &ForgeRepo<'_>, what: &str) -> Result<Repository, PluginError> {
    let urls = [
        &repo.clone_url,
        &repo.ssh_url,
        &repo.git_url,
        &repo.html_url,
    ];
    named_repository(&repo.full_name, what, urls)
}

/// Whether the commit carries all three file lists, none of them capped.
fn has_full_file_lists(commit: &Commit<'_>) -> bool {
    commit.has_file_lists() && commit.file_count() < MAX_COMMIT_FILES
}

/// Normalizes one GitHub delivery; `event` is the `X-GitHub-Event` value.
pub fn parse(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    match event {
        "push" => parse_push(json),
        "ping" => parse_ping(json),
        "deployment" => parse_deployment(json),
        "package" | "registry_package" => parse_package(event, json),
        "create" | "delete" => Ok(ignored(format!(
            "{event} events are not pushes; the push event for the same ref decides"
        ))),
        "deployment_status" => Ok(ignored(
            "deployment_status events are reports (including redeploy's own) and never deploy",
        )),
        other => Ok(ignored(format!("{other} events never deploy"))),
    }
}

fn ignored(reason: impl Into<String>) -> Event {
    Event::Ignored {
        reason: reason.into(),
    }
}

fn parse_push(json: &[u8]) -> Result<Event, PluginError> {
    const WHAT: &str = "github push";
    let p: PushPayload = serde_json::from_slice(json).map_err(|e| malformed(WHAT, e))?;
    let git_ref = required(&p.git_ref, WHAT, "ref")?;
    let repository = p
        .repository
        .as_ref()
        .ok_or_else(|| missing(WHAT, "repository"))
        .and_then(|r| to_model(r, WHAT))?;
    let change = RefChange::new(
        p.before.as_ref().map(Str::as_str),
        Some(pushed_after(&p.after, WHAT)?),
        p.created,
        p.deleted,
    );
    let pusher = p
        .pusher
        .as_ref()
        .and_then(|u| first_non_empty(&[&u.name, &u.login, &u.username]))
        .or_else(|| p.sender.as_ref().and_then(|u| non_empty(&u.login)))
        .map(str::to_string);
    let commits = p.commits();
    let head = p.head(change.after.as_deref(), commits.last());
    let push = ForgePush {
        forced: p.forced.unwrap_or(false),
        pusher,
        head_message: message_of(head),
        commits_complete: commits.len() < MAX_PUSH_COMMITS,
        files_listed: commits.iter().all(has_full_file_lists),
        ..ForgePush::new(repository, git_ref, change, commits)
    };
    Ok(Event::Push(vec![push.into_push()]))
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct PingPayload<'a> {
    repository: Option<ForgeRepo<'a>>,
}

fn parse_ping(json: &[u8]) -> Result<Event, PluginError> {
    const WHAT: &str = "github ping";
    let p: PingPayload = serde_json::from_slice(json).map_err(|e| malformed(WHAT, e))?;
    let repository = match &p.repository {
        Some(r) => Some(to_model(r, WHAT)?),
        None => None,
    };
    Ok(Event::Ping { repository })
}

/// The fields redeploy reads from `deployment.payload`.
#[derive(Deserialize, Default)]
struct DeploymentExtra {
    stack: Option<String>,
    delivery: Option<String>,
    services: Option<Vec<String>>,
    profile: Option<String>,
    #[serde(rename = "redeploy-mac")]
    redeploy_mac: Option<String>,
}

/// `deployment.payload`: an object, or a string that may hold a JSON object.
#[derive(Deserialize)]
#[serde(untagged)]
enum DeploymentPayloadField {
    Object(DeploymentExtra),
    Text(String),
    Other(IgnoredAny),
}

impl DeploymentPayloadField {
    fn extra(self) -> DeploymentExtra {
        match self {
            DeploymentPayloadField::Object(x) => x,
            DeploymentPayloadField::Text(s) => {
                serde_json::from_str::<DeploymentExtra>(&s).unwrap_or_default()
            }
            DeploymentPayloadField::Other(_) => DeploymentExtra::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct DeploymentObject<'a> {
    id: Option<u64>,
    sha: Option<Str<'a>>,
    #[serde(rename = "ref")]
    git_ref: Option<Str<'a>>,
    task: Option<Str<'a>>,
    environment: Option<Str<'a>>,
    payload: Option<DeploymentPayloadField>,
    creator: Option<User<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct DeploymentEvent<'a> {
    deployment: Option<DeploymentObject<'a>>,
    repository: Option<ForgeRepo<'a>>,
}

fn parse_deployment(json: &[u8]) -> Result<Event, PluginError> {
    const WHAT: &str = "github deployment";
    let missing = |field: &str| PluginError::MalformedPayload(format!("{WHAT}: missing {field}"));
    let p: DeploymentEvent = serde_json::from_slice(json).map_err(|e| malformed(WHAT, e))?;
    let d = p.deployment.ok_or_else(|| missing("deployment"))?;
    let repository = p
        .repository
        .as_ref()
        .ok_or_else(|| missing("repository"))
        .and_then(|r| to_model(r, WHAT))?;
    let id = d.id.ok_or_else(|| missing("deployment.id"))?;
    let sha = non_empty(&d.sha)
        .ok_or_else(|| missing("deployment.sha"))?
        .to_string();
    let git_ref = non_empty(&d.git_ref)
        .ok_or_else(|| missing("deployment.ref"))?
        .to_string();
    let environment = non_empty(&d.environment)
        .ok_or_else(|| missing("deployment.environment"))?
        .to_string();
    // GitHub's API defaults the task to `deploy`.
    let task = non_empty(&d.task).unwrap_or("deploy").to_string();
    let creator = d
        .creator
        .as_ref()
        .and_then(|u| non_empty(&u.login))
        .map(str::to_string);
    let extra = d
        .payload
        .map(DeploymentPayloadField::extra)
        .unwrap_or_default();
    Ok(Event::Deployment(Box::new(Deployment {
        id,
        repository,
        environment,
        git_ref,
        sha,
        task,
        payload_stack: extra.stack.filter(|s| !s.is_empty()),
        payload_delivery: extra.delivery.filter(|s| !s.is_empty()),
        payload_services: extra.services.unwrap_or_default(),
        payload_profile: extra.profile.filter(|s| !s.is_empty()),
        payload_mac: extra.redeploy_mac.filter(|s| !s.is_empty()),
        creator,
    })))
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct ContainerTag<'a> {
    name: Option<Str<'a>>,
    digest: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct ContainerManifest<'a> {
    digest: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct ContainerMetadata<'a> {
    tag: Option<ContainerTag<'a>>,
    manifest: Option<ContainerManifest<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct PackageVersion<'a> {
    version: Option<Str<'a>>,
    name: Option<Str<'a>>,
    tag_name: Option<Str<'a>>,
    package_url: Option<Str<'a>>,
    installation_command: Option<Str<'a>>,
    container_metadata: Option<ContainerMetadata<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct PackageRegistry<'a> {
    #[serde(rename = "type")]
    kind: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct Package<'a> {
    name: Option<Str<'a>>,
    namespace: Option<Str<'a>>,
    ecosystem: Option<Str<'a>>,
    package_type: Option<Str<'a>>,
    owner: Option<User<'a>>,
    package_version: Option<PackageVersion<'a>>,
    registry: Option<PackageRegistry<'a>>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct PackageEvent<'a> {
    action: Option<Str<'a>>,
    package: Option<Package<'a>>,
    registry_package: Option<Package<'a>>,
    sender: Option<User<'a>>,
}

fn is_container_type(t: &str) -> bool {
    t.eq_ignore_ascii_case("container") || t.eq_ignore_ascii_case("docker")
}

/// Whether the package is a container image, and its type name otherwise.
///
/// `registry.type` and `package_type` are GitHub's own statements of the
/// type; `ecosystem` and the presence of `container_metadata` only count when
/// neither is given (GitHub's examples carry contradicting `ecosystem` values).
fn container_kind(pkg: &Package) -> Result<(), String> {
    let registry_type = pkg.registry.as_ref().and_then(|r| non_empty(&r.kind));
    let package_type = non_empty(&pkg.package_type);
    let stated = [registry_type, package_type];
    if stated.iter().flatten().any(|t| is_container_type(t)) {
        return Ok(());
    }
    if let Some(t) = package_type.or(registry_type) {
        return Err(t.to_ascii_lowercase());
    }
    let has_container_metadata = pkg
        .package_version
        .as_ref()
        .is_some_and(|v| v.container_metadata.is_some());
    match non_empty(&pkg.ecosystem) {
        Some(e) if is_container_type(e) => Ok(()),
        Some(e) if !has_container_metadata => Err(e.to_ascii_lowercase()),
        _ if has_container_metadata => Ok(()),
        _ => Err("unknown".into()),
    }
}

/// An image reference split into registry host, repository path, tag and digest.
struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Parses `ghcr.io/owner/name:tag` (also `...@sha256:...`); the first path
/// component must be a registry host (contain a `.` or `:`).
fn parse_image_ref(s: &str) -> Option<ImageRef> {
    let s = s.trim();
    let (host, rest) = s.split_once('/')?;
    if host.is_empty() || !(host.contains('.') || host.contains(':')) || rest.is_empty() {
        return None;
    }
    let (rest, digest) = match rest.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (rest, None),
    };
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if path.is_empty() || path.ends_with('/') {
        return None;
    }
    Some(ImageRef {
        registry: host.to_ascii_lowercase(),
        repository: path.to_ascii_lowercase(),
        tag: tag.filter(|t| !t.is_empty()).map(str::to_string),
        digest: digest.filter(|d| !d.is_empty()).map(str::to_string),
    })
}

fn is_digest(s: &str) -> bool {
    s.starts_with("sha256:") || s.starts_with("sha512:")
}

fn parse_package(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    let what = format!("github {event}");
    let p: PackageEvent = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;
    let action = non_empty(&p.action).unwrap_or("");
    if action != "published" && action != "updated" {
        let action = if action.is_empty() { "none" } else { action };
        return Ok(ignored(format!(
            "{event} events with action {action} never deploy"
        )));
    }
    let (pkg, field) = if event == "package" {
        (
            p.package.as_ref().or(p.registry_package.as_ref()),
            "package",
        )
    } else {
        (
            p.registry_package.as_ref().or(p.package.as_ref()),
            "registry_package",
        )
    };
    let pkg =
        pkg.ok_or_else(|| PluginError::MalformedPayload(format!("{what}: missing {field}")))?;
    if let Err(kind) = container_kind(pkg) {
        return Ok(ignored(format!(
            "{kind} packages never deploy; only container images do"
        )));
    }

    let version = pkg.package_version.as_ref();
    let image_ref = version.and_then(|v| {
        non_empty(&v.package_url)
            .and_then(parse_image_ref)
            .or_else(|| {
                non_empty(&v.installation_command)
                    .and_then(|c| c.trim().strip_prefix("docker pull "))
                    .and_then(parse_image_ref)
            })
    });
    let (registry, repository, ref_tag, ref_digest) = match image_ref {
        Some(r) => (r.registry, r.repository, r.tag, r.digest),
        None => {
            let name = non_empty(&pkg.name).ok_or_else(|| {
                PluginError::MalformedPayload(format!("{what}: missing {field}.name"))
            })?;
            let owner = pkg
                .owner
                .as_ref()
                .and_then(|o| non_empty(&o.login))
                .or_else(|| non_empty(&pkg.namespace))
                .ok_or_else(|| {
                    PluginError::MalformedPayload(format!("{what}: missing {field}.owner.login"))
                })?;
            let repository = format!("{owner}/{name}").to_ascii_lowercase();
            ("ghcr.io".to_string(), repository, None, None)
        }
    };

    let metadata = version.and_then(|v| v.container_metadata.as_ref());
    let meta_tag = metadata.and_then(|m| m.tag.as_ref());
    let tag = meta_tag
        .and_then(|t| non_empty(&t.name))
        .map(str::to_string)
        .or(ref_tag)
        .or_else(|| {
            version
                .and_then(|v| non_empty(&v.version))
                .filter(|v| !is_digest(v))
                .map(str::to_string)
        })
        .or_else(|| {
            version
                .and_then(|v| non_empty(&v.tag_name))
                .map(str::to_string)
        });
    let digest = meta_tag
        .and_then(|t| non_empty(&t.digest))
        .or_else(|| {
            metadata
                .and_then(|m| m.manifest.as_ref())
                .and_then(|m| non_empty(&m.digest))
        })
        .map(str::to_string)
        .or(ref_digest)
        .or_else(|| {
            version
                .and_then(|v| {
                    non_empty(&v.version)
                        .filter(|s| is_digest(s))
                        .or(non_empty(&v.name).filter(|s| is_digest(s)))
                })
                .map(str::to_string)
        });
    let pusher = p
        .sender
        .as_ref()
        .and_then(|u| non_empty(&u.login))
        .map(str::to_string);

    Ok(Event::ImagePush(vec![ImagePush {
        registry: Some(registry),
        repository,
        tag,
        digest,
        pusher,
        callback_url: None,
        sent_at_ms: None,
    }]))
}

/// GitHub's signature: `X-Hub-Signature-256` (or, from old GitHub
/// Enterprise Server, only `X-Hub-Signature`'s SHA-1) over the raw body.
fn github_proof(headers: &Headers) -> Result<FoundProof<'_>, PluginError> {
    let sha256 = prefixed_sha256(
        headers,
        "X-Hub-Signature-256",
        SignatureScheme::GithubSha256,
        Signed::RawBody,
    )?;
    match sha256 {
        Some(found) => Ok(Some(found)),
        None => prefixed_sha1(headers, "X-Hub-Signature", SignatureScheme::GithubSha1),
    }
}

/// GitHub: `X-GitHub-Event`, signed by [`github_proof`]; it also reads
/// GHCR's deliveries (GitHub's package events, renamed once parsed).
pub static GITHUB: HeaderSender = HeaderSender {
    id: Provider::Github,
    also_serves: &[Provider::Ghcr],
    event_header: "x-github-event",
    claims: any_event,
    delivery_headers: &["x-github-delivery"],
    proof: github_proof,
    parse,
};

#[cfg(test)]
#[path = "github_tests.rs"]
mod tests;
