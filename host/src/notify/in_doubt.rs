//! Rows in doubt: a row whose earlier attempt was claimed and never
//! settled (the sender was killed, or lost its lease, while the request
//! was on its way) may have reached GitHub. Before such a row is sent
//! again, GitHub is asked what it holds, and a request that arrived is
//! settled as sent instead of being made twice.
//!
//! - A deployment status is looked for among the deployment's statuses
//!   ([`status_arrived`]).
//! - A deployment creation is looked for among the deployments of its
//!   commit (or ref), task and environment ([`deployment_candidates`]); one
//!   found is adopted as the request's deployment. The fallback asks the
//!   same ([`deployment_on_github`]) before a request that failed for good
//!   after a try that may have reached GitHub deploys directly or gives up
//!   (`super::fallback`).
//! - A registry callback cannot be checked (a callback URL has nothing to
//!   ask): it is sent again, as before.
//!
//! A check that fails (GitHub unreachable, 5xx after the client's retries,
//! rate limited, a list too long to read whole) is a failed send, never
//! "not there": nothing is sent blind.
//!
//! What remains: a request GitHub received but had not stored yet when the
//! next holder listed (the next holder takes over only after the killed
//! one's lease ran out, [`super::OUTBOX_LEASE_TTL`], so GitHub had that
//! long), and a request the GitHub client itself tried again after a try
//! that timed out or broke off mid-answer (a single send's retries, before
//! any row is settled).

use serde::Deserialize;
use serde_json::Value;

use crate::github::{ApiError, DeploymentFilter, GithubClient};
use crate::journal::{Journal, JournalError};

use super::LogLinks;

/// Why a row in doubt could not be checked.
#[derive(Debug, thiserror::Error)]
pub(super) enum CheckError {
    /// GitHub's list failed.
    #[error("cannot check whether an earlier attempt arrived: {0}")]
    Github(#[from] ApiError),
    /// The journal could not say which deployments are other requests'.
    #[error("cannot check whether an earlier attempt arrived: journal: {0}")]
    Journal(#[from] JournalError),
}

impl CheckError {
    /// The HTTP status GitHub answered, when it answered.
    pub(super) fn status(&self) -> Option<u16> {
        match self {
            CheckError::Github(e) => e.status(),
            CheckError::Journal(_) => None,
        }
    }
}

/// What identifies one of redeploy's deployment statuses: the fields of
/// the body the plugin makes (`github.deployment-status`) that GitHub
/// lists back.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub(crate) struct StatusBody {
    /// GitHub's state name (`queued`, `in_progress`, `success`, ...).
    pub state: String,
    /// The description.
    #[serde(default)]
    pub description: Option<String>,
    /// The environment.
    #[serde(default)]
    pub environment: Option<String>,
    /// The deploy's log link, when the server has a public URL.
    #[serde(default)]
    pub log_url: Option<String>,
    /// The application's URL, when the stack sets one.
    #[serde(default)]
    pub environment_url: Option<String>,
}

/// A text field of a listed object; GitHub answers `""` (or nothing) for
/// an unset one.
fn text<'a>(item: &'a Value, field: &str) -> Option<&'a str> {
    item.get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Whether the status `ours` (of deploy `deploy_id`) is among `listed`,
/// GitHub's statuses of its deployment. `names_deploy(url)` says whether a
/// log link is this server's link to the deploy's log
/// ([`LogLinks::names_deploy`]).
///
/// With a log link, the status is ours when its state is ours and its
/// `log_url` (or `target_url`, which GitHub fills with it) is a link to
/// this deploy made with this server's key: that pair names one deploy's
/// one state, whatever else a reload changed (the link's expiry differs
/// between attempts, so it is checked by its MAC, not compared).
///
/// Without one (no public URL, or log links off) the body names no deploy,
/// and two deploys reporting to one deployment (a re-run of its
/// `deployment` event) send the same body for the same state. Then only
/// the newest status (the greatest id) is taken for ours, when it is the
/// same state, description, environment and environment URL, with no log
/// link: the sender posts a deployment's statuses in journal order and
/// posts nothing after a row in doubt before settling it, so if the
/// earlier attempt arrived it is the newest status redeploy put there; an
/// identical status further back is another deploy's. A status another
/// party posted after ours hides ours, and ours is sent again: a second
/// copy is preferred to a status lost.
pub(crate) fn status_arrived(
    ours: &StatusBody,
    listed: &[Value],
    names_deploy: impl Fn(&str) -> bool,
) -> bool {
    if ours.log_url.is_some() {
        return listed.iter().any(|s| {
            text(s, "state") == Some(ours.state.as_str())
                && (text(s, "log_url").is_some_and(&names_deploy)
                    || text(s, "target_url").is_some_and(&names_deploy))
        });
    }
    let Some(newest) = listed
        .iter()
        .max_by_key(|s| s.get("id").and_then(Value::as_u64))
    else {
        return false;
    };
    text(newest, "state") == Some(ours.state.as_str())
        && text(newest, "description") == ours.description.as_deref().filter(|d| !d.is_empty())
        && text(newest, "environment") == ours.environment.as_deref().filter(|e| !e.is_empty())
        && text(newest, "environment_url")
            == ours.environment_url.as_deref().filter(|u| !u.is_empty())
        && text(newest, "log_url").is_none()
        && text(newest, "target_url").is_none()
}

/// Whether `r` is a full commit SHA (SHA-1 or SHA-256), which GitHub's
/// list filters as `sha`.
fn is_full_sha(r: &str) -> bool {
    (r.len() == 40 || r.len() == 64) && r.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The list filter that selects the deployments a create `body` could
/// have made: its commit (`sha`, when its `ref` is a full SHA, else its
/// `ref`), its task and its environment.
pub(crate) fn deployment_filter(body: &Value) -> DeploymentFilter {
    let git_ref = text(body, "ref").map(str::to_owned);
    let (sha, git_ref) = match git_ref {
        Some(r) if is_full_sha(&r) => (Some(r.to_ascii_lowercase()), None),
        other => (None, other),
    };
    DeploymentFilter {
        sha,
        git_ref,
        task: text(body, "task").map(str::to_owned),
        environment: text(body, "environment").map(str::to_owned),
    }
}

/// The ids, oldest first, of the deployments among `listed` that the
/// create `body` may have made: same ref (or commit), task and environment,
/// and the same `payload`. The payload the plugin makes names the stack,
/// the delivery, the services and profile, and carries `redeploy-mac` made
/// with this server's deployment key, and the journal records one request
/// per stack and delivery; so with a delivery id (every GitHub push has
/// one) at most one deployment matches. A request without one (a
/// post-receive push) shares its payload with any other request of the
/// same stack for the same commit: the caller skips deployments the
/// journal already gave another request, and takes the oldest left. A
/// body without a payload identifies nothing: no candidates.
pub(crate) fn deployment_candidates(body: &Value, listed: &[Value]) -> Vec<u64> {
    let Some(payload) = body.get("payload") else {
        return Vec::new();
    };
    let git_ref = text(body, "ref");
    let environment = text(body, "environment");
    let mut ids: Vec<u64> = listed
        .iter()
        .filter(|d| {
            let same_ref = git_ref.is_some_and(|r| {
                text(d, "ref") == Some(r)
                    || (is_full_sha(r) && text(d, "sha").is_some_and(|s| s.eq_ignore_ascii_case(r)))
            });
            let same_environment = environment.is_some()
                && (text(d, "environment") == environment
                    || text(d, "original_environment") == environment);
            same_ref
                && same_environment
                && text(d, "task") == text(body, "task")
                && d.get("payload") == Some(payload)
        })
        .filter_map(|d| d.get("id").and_then(Value::as_u64))
        .collect();
    ids.sort_unstable();
    ids
}

/// Whether deploy `deploy_id`'s status `body` is on deployment
/// `deployment` already (see [`status_arrived`]).
pub(super) async fn status_on_github(
    client: &GithubClient,
    links: &LogLinks,
    deploy_id: i64,
    deployment: u64,
    body: &str,
) -> Result<bool, CheckError> {
    let ours: StatusBody = serde_json::from_str(body).map_err(|e| {
        CheckError::Github(ApiError::BadAnswer(format!("status body is not JSON: {e}")))
    })?;
    let listed = client.list_statuses(deployment).await?;
    Ok(status_arrived(&ours, &listed, |url| {
        links.names_deploy(url, deploy_id)
    }))
}

/// The deployment an earlier attempt of request `request_id` created, if
/// GitHub holds one (see [`deployment_candidates`]).
pub(super) async fn deployment_on_github(
    client: &GithubClient,
    journal: &Journal,
    request_id: i64,
    body: &str,
) -> Result<Option<u64>, CheckError> {
    let body: Value = serde_json::from_str(body).map_err(|e| {
        CheckError::Github(ApiError::BadAnswer(format!(
            "deployment request is not JSON: {e}"
        )))
    })?;
    let listed = client.list_deployments(&deployment_filter(&body)).await?;
    for id in deployment_candidates(&body, &listed) {
        match journal.request_of_deployment(id)? {
            Some(other) if other != request_id => continue,
            _ => return Ok(Some(id)),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHA: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

    fn ours(log_url: Option<&str>) -> StatusBody {
        StatusBody {
            state: "in_progress".into(),
            description: Some("Deploying".into()),
            environment: Some("production".into()),
            log_url: log_url.map(str::to_owned),
            environment_url: None,
        }
    }

    fn listed(id: u64, state: &str, log_url: &str) -> Value {
        json!({"id": id, "state": state, "description": "Deploying", "environment": "production",
               "log_url": log_url, "target_url": log_url, "environment_url": ""})
    }

    /// Links of deploy 7 are the ones ending in `/logs/7/good`.
    fn names_7(url: &str) -> bool {
        url.ends_with("/logs/7/good")
    }

    #[test]
    fn a_status_with_a_log_link_is_found_by_state_and_link() {
        let ours = ours(Some("https://d.example/logs/7/fresh-link"));
        let found = [
            listed(1, "queued", "https://d.example/logs/7/good"),
            listed(2, "in_progress", "https://d.example/logs/7/good"),
            listed(3, "queued", "https://d.example/logs/8/good"),
        ];
        assert!(status_arrived(&ours, &found, names_7));
        // Another state of this deploy, or this state of another deploy,
        // is not it.
        assert!(!status_arrived(&ours, &found[..1], names_7));
        let other_deploy = [listed(4, "in_progress", "https://d.example/logs/8/x")];
        assert!(!status_arrived(&ours, &other_deploy, names_7));
        assert!(!status_arrived(&ours, &[], names_7));
        // GitHub's exact state names: `in_progress`, not `started`.
        let renamed = [listed(2, "started", "https://d.example/logs/7/good")];
        assert!(!status_arrived(&ours, &renamed, names_7));
        // A link only in `target_url` counts too.
        let target_only = [
            json!({"id": 9, "state": "in_progress", "target_url": "https://d.example/logs/7/good"}),
        ];
        assert!(status_arrived(&ours, &target_only, names_7));
    }

    #[test]
    fn without_a_log_link_only_the_newest_identical_status_counts() {
        let ours = ours(None);
        // Newest first, as GitHub lists them; the order given does not matter.
        let arrived = [listed(5, "in_progress", ""), listed(4, "queued", "")];
        assert!(status_arrived(&ours, &arrived, |_| false));
        let reversed = [listed(4, "queued", ""), listed(5, "in_progress", "")];
        assert!(status_arrived(&ours, &reversed, |_| false));
        // Another deploy's identical status further back is not ours.
        let older = [listed(3, "in_progress", ""), listed(4, "success", "")];
        assert!(!status_arrived(&ours, &older, |_| false));
        // Another description, environment or a log link: not ours.
        let mut d = listed(5, "in_progress", "");
        d["description"] = json!("Deploying: other");
        assert!(!status_arrived(&ours, &[d], |_| false));
        let mut e = listed(5, "in_progress", "");
        e["environment"] = json!("staging");
        assert!(!status_arrived(&ours, &[e], |_| false));
        assert!(!status_arrived(
            &ours,
            &[listed(5, "in_progress", "https://x/logs/1/k")],
            |_| true
        ));
        assert!(!status_arrived(&ours, &[], |_| false));
    }

    fn body(payload: Value) -> Value {
        json!({"ref": SHA, "task": "deploy", "environment": "production", "payload": payload,
               "auto_merge": false, "required_contexts": [], "description": "redeploy web: push to main"})
    }

    fn deployment(id: u64, payload: Value) -> Value {
        json!({"id": id, "sha": SHA, "ref": SHA, "task": "deploy", "environment": "production",
               "original_environment": "production", "payload": payload})
    }

    #[test]
    fn a_deployment_is_ours_by_ref_task_environment_and_payload() {
        let payload = json!({"stack": "web", "delivery": "d-1", "services": [], "profile": null});
        let ours = body(payload.clone());
        let listed = [
            deployment(
                1003,
                json!({"stack": "web", "delivery": "d-2", "services": [], "profile": null}),
            ),
            deployment(1002, payload.clone()),
            deployment(1001, payload.clone()),
        ];
        assert_eq!(deployment_candidates(&ours, &listed), [1001, 1002]);
        let mut other_task = deployment(1004, payload.clone());
        other_task["task"] = json!("deploy:migrations");
        let mut other_env = deployment(1005, payload.clone());
        other_env["environment"] = json!("staging");
        other_env["original_environment"] = json!("staging");
        let mut other_sha = deployment(1006, payload.clone());
        other_sha["sha"] = json!("0".repeat(40));
        other_sha["ref"] = json!("main");
        assert!(deployment_candidates(&ours, &[other_task, other_env, other_sha]).is_empty());
        // A branch ref matches the deployment's ref.
        let mut by_branch = ours.clone();
        by_branch["ref"] = json!("main");
        let mut on_main = deployment(1007, payload.clone());
        on_main["ref"] = json!("main");
        assert_eq!(deployment_candidates(&by_branch, &[on_main]), [1007]);
        // No payload, nothing to tell ours by.
        let mut bare = ours.clone();
        bare.as_object_mut().unwrap().remove("payload");
        assert!(deployment_candidates(&bare, &listed).is_empty());
    }

    #[test]
    fn the_list_filter_is_the_commit_task_and_environment() {
        let f = deployment_filter(&body(json!({})));
        assert_eq!(
            f,
            DeploymentFilter {
                sha: Some(SHA.into()),
                git_ref: None,
                task: Some("deploy".into()),
                environment: Some("production".into()),
            }
        );
        let mut tag = body(json!({}));
        tag["ref"] = json!("v1.2.0");
        let f = deployment_filter(&tag);
        assert_eq!((f.sha, f.git_ref.as_deref()), (None, Some("v1.2.0")));
    }
}
