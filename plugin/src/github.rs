//! GitHub continuous deployment: the bodies of the Deployments API requests
//! the host sends, generated here so every runtime sends the same ones.
//!
//! Request shapes follow GitHub's REST description for
//! `POST /repos/{owner}/{repo}/deployments` and
//! `POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses`.

use serde::Serialize;

use crate::model::GithubDeployments;
use crate::outcome::{DeployEvent, DeployPhase, StatusInput};

/// GitHub's cap on a deployment status description.
pub const MAX_STATUS_DESCRIPTION_CHARS: usize = 140;

/// The deployment task redeploy creates.
pub const DEPLOYMENT_TASK: &str = "deploy";

#[derive(Serialize)]
struct DeploymentPayload<'a> {
    stack: &'a str,
    delivery: Option<&'a str>,
    services: &'a [String],
    profile: Option<&'a str>,
    #[serde(rename = "redeploy-mac", skip_serializing_if = "Option::is_none")]
    redeploy_mac: Option<String>,
}

/// What redeploy's deployment MAC covers: everything in a deployment that
/// chooses what runs.
#[derive(Clone, Copy, Debug)]
pub struct MacInput<'a> {
    /// The stack the deployment is for.
    pub stack: &'a str,
    /// The requested ref (a commit SHA, branch or tag).
    pub git_ref: &'a str,
    /// The environment.
    pub environment: &'a str,
    /// The services chosen.
    pub services: &'a [String],
    /// The deploy profile chosen.
    pub profile: Option<&'a str>,
}

impl MacInput<'_> {
    /// The text the MAC covers: the fields as one JSON array, so no two
    /// inputs share a text.
    fn text(&self) -> String {
        serde_json::json!([
            "redeploy-deployment/1",
            self.stack,
            self.git_ref,
            self.environment,
            self.services,
            self.profile
        ])
        .to_string()
    }
}

/// `payload.redeploy-mac` of a deployment redeploy requests: hex HMAC-SHA256
/// with the server's deployment key over the input's text.
pub fn deployment_mac(key: &str, input: &MacInput<'_>) -> String {
    crate::signature::hmac_sha256_hex(key.as_bytes(), input.text().as_bytes())
}

/// Whether a `deployment` event carries a valid `payload.redeploy-mac`
/// made with `key` for exactly this stack, ref, environment, services and
/// profile (constant-time comparison).
pub fn deployment_mac_valid(key: &str, stack: &str, d: &crate::model::Deployment) -> bool {
    let Some(mac) = &d.payload_mac else {
        return false;
    };
    let input = MacInput {
        stack,
        git_ref: &d.git_ref,
        environment: &d.environment,
        services: &d.payload_services,
        profile: d.payload_profile.as_deref(),
    };
    crate::signature::hmac_sha256_verify(key.as_bytes(), input.text().as_bytes(), mac)
}

#[derive(Serialize)]
struct DeploymentRequest<'a> {
    #[serde(rename = "ref")]
    git_ref: &'a str,
    task: &'static str,
    auto_merge: bool,
    required_contexts: &'a [String],
    payload: DeploymentPayload<'a>,
    environment: &'a str,
    description: String,
    transient_environment: bool,
    production_environment: bool,
}

/// The body of `POST /repos/{owner}/{repo}/deployments` for a deploy event:
/// `ref` is the pushed commit SHA when known (so GitHub deploys exactly that
/// commit), else the branch or tag. `None` when the event names nothing to deploy.
/// With the server's deployment `key`, the payload carries `redeploy-mac`,
/// which the `deployment` event must bring back for the stack to deploy.
pub fn deployment_request(
    gh: &GithubDeployments,
    event: &DeployEvent,
    key: Option<&str>,
) -> Option<String> {
    let git_ref = event
        .sha
        .as_deref()
        .or(event.branch.as_deref())
        .or(event.tag.as_deref())?;
    let what = match (&event.branch, &event.tag) {
        (Some(b), _) => format!("push to {b}"),
        (_, Some(t)) => format!("tag {t}"),
        _ => event.provider.as_str().to_string(),
    };
    let body = DeploymentRequest {
        git_ref,
        task: DEPLOYMENT_TASK,
        auto_merge: gh.auto_merge,
        required_contexts: &gh.required_contexts,
        payload: DeploymentPayload {
            stack: &event.stack,
            delivery: event.delivery.as_deref(),
            services: &event.services,
            profile: event.profile.as_deref(),
            redeploy_mac: key.map(|k| {
                let input = MacInput {
                    stack: &event.stack,
                    git_ref,
                    environment: &gh.environment,
                    services: &event.services,
                    profile: event.profile.as_deref(),
                };
                deployment_mac(k, &input)
            }),
        },
        environment: &gh.environment,
        description: truncate(
            &format!("redeploy {}: {what}", event.stack),
            MAX_STATUS_DESCRIPTION_CHARS,
        ),
        transient_environment: gh.transient_environment,
        production_environment: gh.production_environment,
    };
    serde_json::to_string(&body).ok()
}

#[derive(Serialize)]
struct StatusBody<'a> {
    state: &'static str,
    description: String,
    environment: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment_url: Option<&'a str>,
}

/// GitHub's state for a deploy phase, and the description's first words.
///
/// GitHub has no "cancelled" state. A cancelled deploy (superseded by a newer
/// commit before it ran, or stopped at shutdown) maps to `inactive`: the
/// deployment never became the environment's active one, and `inactive` says
/// so without marking the commit as broken, which `failure` or `error` would.
/// A deploy interrupted by a crash of the host maps to `error`: something went
/// wrong with the deploying itself, not with the commit.
pub fn phase_state(phase: DeployPhase) -> (&'static str, &'static str) {
    match phase {
        DeployPhase::Queued => ("queued", "Deploy queued"),
        DeployPhase::Started => ("in_progress", "Deploying"),
        DeployPhase::Succeeded => ("success", "Deployed"),
        DeployPhase::Failed => ("failure", "Deploy failed"),
        DeployPhase::Cancelled => ("inactive", "Cancelled"),
        DeployPhase::Interrupted => ("error", "Interrupted"),
    }
}

/// The body of `POST .../deployments/{id}/statuses` for a phase.
pub fn deployment_status(input: &StatusInput) -> String {
    let (state, words) = phase_state(input.phase);
    let description = match input.detail.as_deref().filter(|d| !d.trim().is_empty()) {
        Some(d) => format!("{words}: {}", d.trim()),
        None => words.to_string(),
    };
    let body = StatusBody {
        state,
        description: truncate(&description, MAX_STATUS_DESCRIPTION_CHARS),
        environment: &input.environment,
        log_url: input.log_url.as_deref(),
        environment_url: input.environment_url.as_deref(),
    };
    serde_json::to_string(&body).unwrap_or_default()
}

/// Cuts `s` to at most `max` characters, ending in `…` when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(phase: DeployPhase, detail: Option<&str>) -> StatusInput {
        StatusInput {
            phase,
            environment: "production".into(),
            log_url: Some("https://deploy.example.com/logs/1".into()),
            environment_url: None,
            detail: detail.map(str::to_string),
        }
    }

    #[test]
    fn every_phase_has_a_github_state() {
        let states: Vec<&str> = [
            DeployPhase::Queued,
            DeployPhase::Started,
            DeployPhase::Succeeded,
            DeployPhase::Failed,
            DeployPhase::Cancelled,
            DeployPhase::Interrupted,
        ]
        .into_iter()
        .map(|p| phase_state(p).0)
        .collect();
        assert_eq!(
            states,
            [
                "queued",
                "in_progress",
                "success",
                "failure",
                "inactive",
                "error"
            ]
        );
    }

    #[test]
    fn status_body_has_the_documented_fields() {
        let body: serde_json::Value = serde_json::from_str(&deployment_status(&input(
            DeployPhase::Failed,
            Some("exit code 2"),
        )))
        .unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "state": "failure",
                "description": "Deploy failed: exit code 2",
                "environment": "production",
                "log_url": "https://deploy.example.com/logs/1"
            })
        );
    }

    #[test]
    fn descriptions_are_cut_to_140_characters() {
        let long = "é".repeat(500);
        let body: serde_json::Value = serde_json::from_str(&deployment_status(&input(
            DeployPhase::Cancelled,
            Some(&long),
        )))
        .unwrap();
        let d = body["description"].as_str().unwrap();
        assert_eq!(d.chars().count(), MAX_STATUS_DESCRIPTION_CHARS);
        assert!(d.starts_with("Cancelled: é") && d.ends_with('…'));
    }

    #[test]
    fn deployment_request_deploys_the_pushed_sha() {
        let gh = GithubDeployments {
            repository: "octocat/hello-world".into(),
            environment: "production".into(),
            production_environment: true,
            wait_for_event: true,
            ..Default::default()
        };
        let event = DeployEvent {
            stack: "web".into(),
            services: vec!["web".into()],
            profile: None,
            git_ref: Some("refs/heads/main".into()),
            branch: Some("main".into()),
            tag: None,
            sha: Some("6113728f27ae82c7b1a177c8d03f9e96e0adf246".into()),
            repository: Some("acme/web".into()),
            image: None,
            provider: crate::model::Provider::Github,
            delivery: Some("d-1".into()),
            reason: "push to \"main\" of acme/web matches branch \"main\"".into(),
            github_deployment_request: None,
            github_deployment_id: None,
            callback_url: None,
        };
        let body: serde_json::Value =
            serde_json::from_str(&deployment_request(&gh, &event, None).unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "ref": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
                "task": "deploy",
                "auto_merge": false,
                "required_contexts": [],
                "payload": {"stack": "web", "delivery": "d-1", "services": ["web"], "profile": null},
                "environment": "production",
                "description": "redeploy web: push to main",
                "transient_environment": false,
                "production_environment": true
            })
        );
    }
}
