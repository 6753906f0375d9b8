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

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::common::push_url;
use crate::error::{malformed, PluginError};
use crate::model::{ChangedFiles, Deployment, Event, ImagePush, Push, Repository};
use crate::providers::common::{changed_files, is_zero_sha, real_sha};

/// GitHub lists at most this many commits in a push payload.
const MAX_PUSH_COMMITS: usize = 2048;
/// GitHub reports at most this many changed files per commit.
const MAX_COMMIT_FILES: usize = 3000;

/// A string that borrows from the input unless it holds escapes.
#[derive(Deserialize, Debug, Clone)]
#[serde(transparent)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

impl Str<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

/// `Some(&str)` for a present, non-empty string.
fn non_empty<'s>(s: &'s Option<Str<'_>>) -> Option<&'s str> {
    s.as_ref().map(Str::as_str).filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
struct User<'a> {
    #[serde(borrow)]
    login: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    username: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Repo<'a> {
    #[serde(borrow)]
    full_name: Option<Str<'a>>,
    #[serde(borrow)]
    clone_url: Option<Str<'a>>,
    #[serde(borrow)]
    ssh_url: Option<Str<'a>>,
    #[serde(borrow)]
    git_url: Option<Str<'a>>,
    #[serde(borrow)]
    html_url: Option<Str<'a>>,
}

impl Repo<'_> {
    fn to_model(&self, what: &str) -> Result<Repository, PluginError> {
        let full_name = non_empty(&self.full_name).ok_or_else(|| {
            PluginError::MalformedPayload(format!("{what}: missing repository.full_name"))
        })?;
        let mut urls: Vec<String> = Vec::new();
        for url in [
            &self.clone_url,
            &self.ssh_url,
            &self.git_url,
            &self.html_url,
        ] {
            if let Some(u) = non_empty(url) {
                push_url(&mut urls, u);
            }
        }
        Ok(Repository {
            full_name: full_name.to_string(),
            urls,
        })
    }
}

#[derive(Deserialize)]
struct Commit<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    message: Option<Str<'a>>,
    #[serde(borrow)]
    added: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    removed: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    modified: Option<Vec<Str<'a>>>,
}

impl Commit<'_> {
    /// Whether the commit carries all three file lists, none of them capped.
    fn has_full_file_lists(&self) -> bool {
        match (&self.added, &self.removed, &self.modified) {
            (Some(a), Some(r), Some(m)) => a.len() + r.len() + m.len() < MAX_COMMIT_FILES,
            _ => false,
        }
    }

    fn files(&self) -> impl Iterator<Item = &str> {
        [&self.added, &self.removed, &self.modified]
            .into_iter()
            .flatten()
            .flatten()
            .map(Str::as_str)
    }
}

#[derive(Deserialize)]
struct PushPayload<'a> {
    #[serde(borrow, rename = "ref")]
    git_ref: Option<Str<'a>>,
    #[serde(borrow)]
    before: Option<Str<'a>>,
    #[serde(borrow)]
    after: Option<Str<'a>>,
    created: Option<bool>,
    deleted: Option<bool>,
    forced: Option<bool>,
    #[serde(borrow)]
    commits: Option<Vec<Commit<'a>>>,
    #[serde(borrow)]
    head_commit: Option<Commit<'a>>,
    #[serde(borrow)]
    repository: Option<Repo<'a>>,
    #[serde(borrow)]
    pusher: Option<User<'a>>,
    #[serde(borrow)]
    sender: Option<User<'a>>,
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
    let git_ref = non_empty(&p.git_ref)
        .ok_or_else(|| PluginError::MalformedPayload(format!("{WHAT}: missing ref")))?
        .to_string();
    let repository = p
        .repository
        .as_ref()
        .ok_or_else(|| PluginError::MalformedPayload(format!("{WHAT}: missing repository")))?
        .to_model(WHAT)?;

    let before_raw = p.before.as_ref().map(Str::as_str);
    let after_raw = p.after.as_ref().map(Str::as_str);
    let before = real_sha(before_raw);
    let after = real_sha(after_raw);
    let created = p.created.unwrap_or(false) || before.is_none();
    let deleted = p.deleted.unwrap_or(false) || after_raw.is_some_and(is_zero_sha);
    let forced = p.forced.unwrap_or(false);

    let pusher = p
        .pusher
        .as_ref()
        .and_then(|u| {
            non_empty(&u.name)
                .or(non_empty(&u.login))
                .or(non_empty(&u.username))
        })
        .or_else(|| p.sender.as_ref().and_then(|u| non_empty(&u.login)))
        .map(str::to_string);

    let commits: &[Commit] = p.commits.as_deref().unwrap_or(&[]);
    let head_message = p
        .head_commit
        .as_ref()
        .or_else(|| {
            commits
                .iter()
                .find(|c| c.id.as_ref().map(Str::as_str) == after.as_deref())
        })
        .or_else(|| commits.last())
        .and_then(|c| c.message.as_ref())
        .map(|m| m.as_str().to_string());
    let commit_messages: Vec<String> = commits
        .iter()
        .filter_map(|c| c.message.as_ref().map(|m| m.as_str().to_string()))
        .collect();
    let commits_complete = commits.len() < MAX_PUSH_COMMITS;

    let changed = if deleted {
        ChangedFiles::Complete(Vec::new())
    } else {
        let trusted = commits_complete
            && !created
            && !forced
            && commits.iter().all(Commit::has_full_file_lists);
        changed_files(commits.iter().flat_map(Commit::files), trusted)
    };

    Ok(Event::Push(vec![Push {
        repository,
        git_ref,
        before,
        after,
        created,
        deleted,
        forced,
        pusher,
        head_message,
        commit_messages,
        commits_complete,
        changed_files: changed,
    }]))
}

#[derive(Deserialize)]
struct PingPayload<'a> {
    #[serde(borrow)]
    repository: Option<Repo<'a>>,
}

fn parse_ping(json: &[u8]) -> Result<Event, PluginError> {
    const WHAT: &str = "github ping";
    let p: PingPayload = serde_json::from_slice(json).map_err(|e| malformed(WHAT, e))?;
    let repository = match &p.repository {
        Some(r) => Some(r.to_model(WHAT)?),
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
struct DeploymentObject<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    sha: Option<Str<'a>>,
    #[serde(borrow, rename = "ref")]
    git_ref: Option<Str<'a>>,
    #[serde(borrow)]
    task: Option<Str<'a>>,
    #[serde(borrow)]
    environment: Option<Str<'a>>,
    payload: Option<DeploymentPayloadField>,
    #[serde(borrow)]
    creator: Option<User<'a>>,
}

#[derive(Deserialize)]
struct DeploymentEvent<'a> {
    #[serde(borrow)]
    deployment: Option<DeploymentObject<'a>>,
    #[serde(borrow)]
    repository: Option<Repo<'a>>,
}

fn parse_deployment(json: &[u8]) -> Result<Event, PluginError> {
    const WHAT: &str = "github deployment";
    let missing = |field: &str| PluginError::MalformedPayload(format!("{WHAT}: missing {field}"));
    let p: DeploymentEvent = serde_json::from_slice(json).map_err(|e| malformed(WHAT, e))?;
    let d = p.deployment.ok_or_else(|| missing("deployment"))?;
    let repository = p
        .repository
        .as_ref()
        .ok_or_else(|| missing("repository"))?
        .to_model(WHAT)?;
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
struct ContainerTag<'a> {
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    digest: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct ContainerManifest<'a> {
    #[serde(borrow)]
    digest: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct ContainerMetadata<'a> {
    #[serde(borrow)]
    tag: Option<ContainerTag<'a>>,
    #[serde(borrow)]
    manifest: Option<ContainerManifest<'a>>,
}

#[derive(Deserialize)]
struct PackageVersion<'a> {
    #[serde(borrow)]
    version: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    tag_name: Option<Str<'a>>,
    #[serde(borrow)]
    package_url: Option<Str<'a>>,
    #[serde(borrow)]
    installation_command: Option<Str<'a>>,
    #[serde(borrow)]
    container_metadata: Option<ContainerMetadata<'a>>,
}

#[derive(Deserialize)]
struct PackageRegistry<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Package<'a> {
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    namespace: Option<Str<'a>>,
    #[serde(borrow)]
    ecosystem: Option<Str<'a>>,
    #[serde(borrow)]
    package_type: Option<Str<'a>>,
    #[serde(borrow)]
    owner: Option<User<'a>>,
    #[serde(borrow)]
    package_version: Option<PackageVersion<'a>>,
    #[serde(borrow)]
    registry: Option<PackageRegistry<'a>>,
}

#[derive(Deserialize)]
struct PackageEvent<'a> {
    #[serde(borrow)]
    action: Option<Str<'a>>,
    #[serde(borrow)]
    package: Option<Package<'a>>,
    #[serde(borrow)]
    registry_package: Option<Package<'a>>,
    #[serde(borrow)]
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

#[cfg(test)]
#[path = "github_tests.rs"]
mod tests;
