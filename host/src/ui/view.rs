//! What the pages show, computed from the config and the journal's records
//! with no I/O: the templates ([`super::pages`]) only lay it out.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::Value;

use crate::config::StackConfig;
use crate::journal::{DeliveryRecord, DeployRecord, DeploymentRequest, RequestState};

/// The last millisecond of the year 9999: the latest moment RFC 3339 writes.
const MAX_MOMENT_MS: i64 = 253_402_300_799_999;

/// How many characters of a commit the pages show (the full one is in the
/// element's title).
pub const SHORT_SHA: usize = 12;

/// A moment, for a `<time>` element: machine-readable (RFC 3339, UTC) and
/// as text (the same, until the page's script puts it in the viewer's time
/// zone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moment {
    /// `2026-12-02T05:11:21Z`.
    pub iso: String,
}

impl Moment {
    /// The moment `ms` milliseconds after the Unix epoch (clamped to the
    /// years 1970 to 9999, which RFC 3339 can write).
    pub fn at(ms: i64) -> Moment {
        let time = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, MAX_MOMENT_MS) as u64);
        Moment {
            iso: humantime::format_rfc3339_seconds(time).to_string(),
        }
    }
}

/// A duration as people read it: `850ms`, `12s`, `3m 4s`, `1h 2m`.
pub fn human_duration(ms: i64) -> String {
    let ms = ms.max(0) as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m"),
    }
}

/// A deploy, as a row of the stacks and stack pages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployView {
    /// The journal's id.
    pub id: i64,
    /// `queued`, `started`, `succeeded`...
    pub state: &'static str,
    /// The commit, shortened, and in full.
    pub sha_short: String,
    /// The full commit, or empty.
    pub sha: String,
    /// The ref (`refs/heads/main`), or empty.
    pub git_ref: String,
    /// What caused it: the provider (`github`, `manual`...).
    pub trigger: String,
    /// The services, comma-separated; empty for all.
    pub services: String,
    /// The deploy profile, or empty.
    pub profile: String,
    /// When it was queued.
    pub queued: Moment,
    /// When it started, if it did.
    pub started: Option<Moment>,
    /// How long it ran, once it ended.
    pub duration: Option<String>,
    /// The latest reason recorded (why it was cancelled, how it failed).
    pub detail: String,
    /// The commit's page on its forge, when the stack says where that is.
    pub commit_url: Option<String>,
}

impl DeployView {
    /// The row of `d`.
    pub fn of(d: &DeployRecord) -> DeployView {
        let sha = d.queued.sha.clone().unwrap_or_default();
        DeployView {
            id: d.id,
            state: d.state.as_str(),
            sha_short: sha.chars().take(SHORT_SHA).collect(),
            sha,
            git_ref: d.queued.git_ref.clone().unwrap_or_default(),
            trigger: d.queued.provider.clone(),
            services: d.queued.services.join(", "),
            profile: d.queued.profile.clone().unwrap_or_default(),
            queued: Moment::at(d.queued.created_at_ms),
            started: d.started_at_ms.map(Moment::at),
            duration: d
                .started_at_ms
                .zip(d.finished_at_ms)
                .map(|(start, end)| human_duration(end - start)),
            detail: d.detail.clone().unwrap_or_default(),
            commit_url: None,
        }
    }

    /// The row of `d` of `stack` (as configured now), with its commit
    /// linked to the forge.
    pub fn of_stack(d: &DeployRecord, stack: Option<&StackConfig>) -> DeployView {
        let mut view = DeployView::of(d);
        view.commit_url = stack.and_then(|s| commit_url(s, &d.queued.provider, &view.sha));
        view
    }
}

/// The web page of commit `sha` of `stack`'s repository, when the
/// configuration says which forge that is: a repository given as an
/// `https://` (or `http://`) URL (any credentials in it dropped, `.git`
/// trimmed), else a stack with GitHub continuous deployment (its API's
/// host), else a GitHub push to an `owner/name` repository.
pub fn commit_url(stack: &StackConfig, provider: &str, sha: &str) -> Option<String> {
    let is_commit = (7..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_commit {
        return None;
    }
    let repository = stack.repository.as_deref().or_else(|| {
        // A multi-service stack: the one repository its services follow.
        let mut repos = stack
            .services
            .iter()
            .filter_map(|s| s.repository.as_deref());
        let first = repos.next()?;
        repos.all(|r| r == first).then_some(first)
    })?;
    if let Ok(mut url) = url::Url::parse(repository) {
        // Bitbucket Server's clone path (`/scm/PROJECT/repo.git`) is not
        // its web page's: no link rather than a wrong one.
        let scm = url.path().starts_with("/scm/");
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() || scm {
            return None;
        }
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);
        let path = url
            .path()
            .trim_end_matches('/')
            .trim_end_matches(".git")
            .to_owned();
        // Bitbucket names a commit's page `commits`; GitLab `-/commit`
        // (its `commit` redirects there); the others `commit`.
        let bitbucket =
            url.host_str() == Some("bitbucket.org") || provider.starts_with("bitbucket");
        let page = match provider {
            _ if bitbucket => "commits",
            "gitlab" => "-/commit",
            _ => "commit",
        };
        url.set_path(&format!("{path}/{page}/{sha}"));
        return Some(url.into());
    }
    let owner_name = {
        let mut parts = repository.split('/');
        let ok = matches!((parts.next(), parts.next(), parts.next()), (Some(o), Some(n), None)
            if !o.is_empty() && !n.is_empty());
        ok && repository
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    };
    if !owner_name {
        return None;
    }
    let web = match &stack.github {
        Some(g) => crate::github::web_url(&g.api_url)?,
        None if provider == "github" => "https://github.com".to_owned(),
        None => return None,
    };
    Some(format!("{web}/{repository}/commit/{sha}"))
}

/// A deploy's GitHub continuous deployment, as its page shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GithubView {
    /// The GitHub deployment it ran for or reports to, once GitHub created
    /// one.
    pub deployment_id: Option<u64>,
    /// What became of redeploy's request to create that deployment, when
    /// the deploy ran on the push: `pending`, `created`, or the refusal
    /// with GitHub's status and message.
    pub request: Option<String>,
    /// The deployment in GitHub's REST API (`.../deployments/ID`), when the
    /// stack still has `[stacks.github]`.
    pub deployment_api: Option<String>,
    /// Its statuses in GitHub's REST API (`.../deployments/ID/statuses`).
    pub statuses_api: Option<String>,
    /// The repository's deployments on GitHub's web.
    pub deployments_page: Option<String>,
    /// Each report of the deploy's states, oldest first: (to whom, state,
    /// how it went).
    pub reports: Vec<(String, String, String)>,
}

/// What a deploy's page lists of its notifications: channel, event, and
/// how it went (`sent: HTTP 200`, `waiting (attempt 2: HTTP 503)`,
/// `failed: ...`).
pub fn notifications_view(
    records: &[crate::journal::NotificationRecord],
) -> Vec<(String, String, String)> {
    records
        .iter()
        .map(|r| {
            let n = &r.notification;
            let detail = r.detail.as_deref().unwrap_or("");
            let how = match (&r.outcome, detail.is_empty()) {
                (Some(outcome), true) => outcome.clone(),
                (Some(outcome), false) => format!("{outcome}: {detail}"),
                (None, true) => "waiting".to_owned(),
                (None, false) => format!("waiting ({detail})"),
            };
            (n.channel.clone(), n.event.clone(), how)
        })
        .collect()
}

/// What deploy's page says of its GitHub deployment: `deployment_id` is
/// the one whose `deployment` event queued it, `request` the request made
/// for it on the push (its deployment, if created, is the one it reports
/// to), `reports` the journal's record of each state reported (GitHub
/// statuses and registry callbacks). `None` when there is nothing to say.
pub fn github_view(
    stack: Option<&StackConfig>,
    deployment_id: Option<u64>,
    request: Option<&DeploymentRequest>,
    reports: Vec<(String, String, String)>,
) -> Option<GithubView> {
    let deployment_id = deployment_id.or(request.and_then(|r| r.deployment_id));
    if deployment_id.is_none() && request.is_none() && reports.is_empty() {
        return None;
    }
    let request = request.map(|r| {
        let mut words = r.state.as_str().to_owned();
        if !matches!(r.state, RequestState::Pending | RequestState::Created) {
            if let Some(status) = r.http_status {
                words.push_str(&format!(" (HTTP {status})"));
            }
            if let Some(detail) = r.detail.as_deref().filter(|d| !d.is_empty()) {
                words.push_str(&format!(": {detail}"));
            }
        }
        if let Some(fallback) = r.fallback {
            words.push_str(&format!("; {}", fallback.describe(r.fallback_deploy_id)));
        }
        words
    });
    let github = stack.and_then(|s| s.github.as_ref());
    let deployment_api = match (github, deployment_id) {
        (Some(g), Some(id)) => Some(format!(
            "{}/repos/{}/deployments/{id}",
            g.api_url, g.repository
        )),
        _ => None,
    };
    Some(GithubView {
        deployment_id,
        request,
        statuses_api: deployment_api.as_ref().map(|api| format!("{api}/statuses")),
        deployment_api,
        deployments_page: github.and_then(|g| {
            Some(format!(
                "{}/{}/deployments",
                crate::github::web_url(&g.api_url)?,
                g.repository
            ))
        }),
        reports,
    })
}

/// What a stack follows, in a few words: `acme/web, branch main`, `image
/// ghcr.io/acme/api:latest`, and each service's own.
pub fn follows(stack: &StackConfig) -> String {
    let mut parts = Vec::new();
    let source = |repository: &Option<String>,
                  branch: &Option<String>,
                  tags: &Option<String>,
                  image: &Option<String>| {
        let mut what = Vec::new();
        if let Some(repository) = repository {
            what.push(crate::config::shown_setting(repository).into_owned());
        }
        if let Some(branch) = branch {
            what.push(format!("branch {branch}"));
        }
        if let Some(tags) = tags {
            what.push(format!("tags {tags}"));
        }
        if let Some(image) = image {
            what.push(format!("image {image}"));
        }
        what.join(", ")
    };
    let own = source(&stack.repository, &stack.branch, &stack.tags, &stack.image);
    if !own.is_empty() {
        parts.push(own);
    }
    for service in &stack.services {
        let theirs = source(
            &service.repository,
            &service.branch,
            &service.tags,
            &service.image,
        );
        if !theirs.is_empty() {
            parts.push(format!("{}: {theirs}", service.name));
        }
    }
    if parts.is_empty() {
        "manual deploys only".to_owned()
    } else {
        parts.join("; ")
    }
}

/// A delivery, as a row of the stack page: what was decided for this stack,
/// and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryView {
    /// The journal's id.
    pub id: i64,
    /// When it arrived.
    pub received: Moment,
    /// Who sent it (`github`...), or empty when not recognised.
    pub provider: String,
    /// The provider's event (`push`...), or empty.
    pub event: String,
    /// The provider's delivery id, or empty.
    pub delivery_id: String,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// The decision for the stack: `deploy`, `skip`, or the error's kind.
    pub decision: String,
    /// Why, in the words the answer gave.
    pub reason: String,
}

impl DeliveryView {
    /// The row of `d` as seen from `stack`.
    pub fn of(d: &DeliveryRecord, stack: &str) -> DeliveryView {
        let (decision, reason) = decision_for(&d.recorded.summary, stack);
        DeliveryView {
            id: d.id,
            received: Moment::at(d.recorded.received_at_ms),
            provider: d.recorded.provider.clone().unwrap_or_default(),
            event: d.recorded.event.clone().unwrap_or_default(),
            delivery_id: d.recorded.delivery_id.clone().unwrap_or_default(),
            status: d.recorded.status,
            decision,
            reason,
        }
    }
}

/// The decision for `stack` and its reason (its decisions and reasons,
/// each joined by `; `, when it has several), read from a delivery's
/// recorded answer (`{"decisions": [{"stack", "action", "reason"}...]}`,
/// or `{"error", "message"}` when it was refused before any decision).
pub fn decision_for(summary: &str, stack: &str) -> (String, String) {
    let Ok(answer) = serde_json::from_str::<Value>(summary) else {
        return ("recorded".to_owned(), summary.to_owned());
    };
    if let Some(refused) = refusal(&answer) {
        return refused;
    }
    // A push moving several refs the stack follows has one decision per
    // ref: each is said, in order.
    let mine: Vec<(String, String)> = answer
        .get("decisions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|d| d.get("stack").and_then(Value::as_str) == Some(stack))
        .map(describe)
        .collect();
    if mine.is_empty() {
        return ("none".to_owned(), "no decision for this stack".to_owned());
    }
    let (actions, reasons): (Vec<String>, Vec<String>) = mine.into_iter().unzip();
    (actions.join("; "), reasons.join("; "))
}

/// One stack's decision on a delivery, as the delivery page lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionView {
    /// The stack, or empty when the delivery was refused before any
    /// decision.
    pub stack: String,
    /// `deploy: queued (#7)`, `skip`, or the refusal's kind.
    pub decision: String,
    /// Why.
    pub reason: String,
}

/// Every stack's decision in a delivery's answer (the recorded one, or a
/// dry run's document: both list `decisions`), or the one refusal.
pub fn decisions(answer: &str) -> Vec<DecisionView> {
    let Ok(value) = serde_json::from_str::<Value>(answer) else {
        return vec![DecisionView {
            stack: String::new(),
            decision: "recorded".to_owned(),
            reason: answer.to_owned(),
        }];
    };
    if let Some((decision, reason)) = refusal(&value) {
        return vec![DecisionView {
            stack: String::new(),
            decision,
            reason,
        }];
    }
    let all = value.get("decisions").and_then(Value::as_array);
    all.into_iter()
        .flatten()
        .map(|d| {
            let (decision, reason) = describe(d);
            DecisionView {
                stack: d
                    .get("stack")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                decision,
                reason,
            }
        })
        .collect()
}

/// An answer that refused the delivery before any decision: its kind and
/// message.
fn refusal(answer: &Value) -> Option<(String, String)> {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let kind = answer.get("error")?;
    Some((text(Some(kind)), text(answer.get("message"))))
}

/// One decision of an answer: its action (with what became of a deploy:
/// queued, cancelled, a duplicate...) and its reason.
fn describe(d: &Value) -> (String, String) {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut action = text(d.get("action"));
    if let Some(state) = d.get("state").and_then(Value::as_str) {
        action = format!("{action}: {state}");
    }
    if let Some(id) = d.get("deploy_id").and_then(Value::as_i64) {
        action = format!("{action} (#{id})");
    }
    (action, text(d.get("reason")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stack `web` following `repository`, with `extra` lines in its table.
    fn stack(repository: &str, extra: &str) -> StackConfig {
        let text = format!(
            "[[stacks]]\nname = \"web\"\nrepository = \"{repository}\"\nbranch = \"main\"\ncommand = [\"true\"]\n{extra}"
        );
        let config = crate::config::parse(&text, std::path::Path::new("/etc/redeploy"))
            .unwrap_or_else(|e| panic!("{e}"));
        config.stack("web").unwrap().clone()
    }

    #[test]
    fn a_commit_links_to_its_forge_only_where_the_config_says_which() {
        let sha = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
        let link = |repository: &str, extra: &str, provider: &str| {
            commit_url(&stack(repository, extra), provider, sha)
        };
        assert_eq!(
            link("https://gitlab.example/group/sub/app.git", "", "gitlab").as_deref(),
            Some("https://gitlab.example/group/sub/app/-/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246")
        );
        // Credentials in a clone URL never reach the page.
        assert_eq!(
            link("https://deploy:t0ken@git.example/o/app", "", "gitea").as_deref(),
            Some("https://git.example/o/app/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246")
        );
        assert_eq!(
            link("https://bitbucket.org/o/app", "", "bitbucket-cloud").as_deref(),
            Some("https://bitbucket.org/o/app/commits/6113728f27ae82c7b1a177c8d03f9e96e0adf246")
        );
        // A manual redeploy of a Bitbucket commit links there too.
        assert_eq!(
            link("https://bitbucket.org/o/app", "", "manual").as_deref(),
            Some("https://bitbucket.org/o/app/commits/6113728f27ae82c7b1a177c8d03f9e96e0adf246")
        );
        assert_eq!(
            link("Codertocat/Hello-World", "", "github").as_deref(),
            Some("https://github.com/Codertocat/Hello-World/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246")
        );
        // `owner/name` from another forge: which host is unknown.
        assert_eq!(link("o/app", "", "gitlab"), None);
        assert_eq!(
            link(
                "https://git.example/scm/PROJ/app.git",
                "",
                "bitbucket-server"
            ),
            None
        );
        // An SSH URL or a local path names no web page.
        assert_eq!(link("git@github.com:o/app.git", "", "github"), None);
        assert_eq!(link("/srv/git/app.git", "", "post-receive"), None);
        // A manual deploy has no commit; a made-up one is no commit.
        assert_eq!(commit_url(&stack("o/app", ""), "github", ""), None);
        assert_eq!(
            commit_url(&stack("o/app", ""), "github", "\"><script>"),
            None
        );
    }

    #[test]
    fn github_enterprise_commits_link_to_its_own_host() {
        std::env::set_var("REDEPLOY_VIEW_TEST_TOKEN", "t");
        let ghes = stack(
            "o/app",
            "[stacks.github]\nrepository = \"o/app\"\ntoken_env = \"REDEPLOY_VIEW_TEST_TOKEN\"\napi_url = \"https://ghe.example/api/v3\"",
        );
        assert_eq!(
            commit_url(&ghes, "github", "6113728f27ae82c7b1a177c8d03f9e96e0adf246").as_deref(),
            Some("https://ghe.example/o/app/commit/6113728f27ae82c7b1a177c8d03f9e96e0adf246")
        );
    }

    #[test]
    fn a_deploys_github_deployment_links_to_the_stacks_api_and_says_what_its_request_got() {
        std::env::set_var("REDEPLOY_VIEW_TEST_TOKEN", "t");
        let ghes = stack(
            "o/app",
            "[stacks.github]\nrepository = \"o/app\"\ntoken_env = \"REDEPLOY_VIEW_TEST_TOKEN\"\napi_url = \"https://ghe.example/api/v3\"",
        );
        let request = |state, deployment_id, http_status, detail: &str| DeploymentRequest {
            id: 1,
            asked: crate::journal::NewDeploymentRequest {
                stack: "web".into(),
                delivery_id: Some("d".into()),
                deploy_id: Some(7),
                git_ref: None,
                sha: None,
                request_json: "{}".into(),
                created_at_ms: 0,
                repository: None,
            },
            state,
            deployment_id,
            http_status,
            detail: Some(detail.into()),
            updated_at_ms: 0,
            fallback: None,
            fallback_deploy_id: None,
        };
        let report = ("github".to_owned(), "success".to_owned(), "sent".to_owned());
        // Run by the deployment's event.
        let view = github_view(Some(&ghes), Some(42), None, vec![report.clone()]).unwrap();
        let api = "https://ghe.example/api/v3/repos/o/app/deployments/42";
        assert_eq!(view.deployment_api.as_deref(), Some(api));
        assert_eq!(view.statuses_api, Some(format!("{api}/statuses")));
        assert_eq!(
            view.deployments_page.as_deref(),
            Some("https://ghe.example/o/app/deployments")
        );
        assert_eq!((view.request, view.reports), (None, vec![report]));
        // Run on the push: the deployment its request created.
        let created = request(RequestState::Created, Some(43), Some(201), "created");
        let view = github_view(Some(&ghes), None, Some(&created), vec![]).unwrap();
        assert_eq!(view.deployment_id, Some(43));
        assert_eq!(view.request.as_deref(), Some("created"));
        // A refused request: why, and no deployment to link.
        let denied = request(
            RequestState::Denied,
            None,
            Some(403),
            "Resource not accessible",
        );
        let view = github_view(Some(&ghes), None, Some(&denied), vec![]).unwrap();
        assert_eq!(
            view.request.as_deref(),
            Some("denied (HTTP 403): Resource not accessible")
        );
        assert_eq!((view.deployment_id, view.deployment_api), (None, None));
        // A refused request whose push deployed directly says so.
        let invalid = DeploymentRequest {
            fallback: Some(crate::journal::RequestFallback::DeployedDirectly),
            fallback_deploy_id: Some(9),
            ..request(RequestState::Invalid, None, Some(422), "Validation Failed")
        };
        let view = github_view(Some(&ghes), None, Some(&invalid), vec![]).unwrap();
        assert_eq!(
            view.request.as_deref(),
            Some("invalid (HTTP 422): Validation Failed; deployed directly as deploy #9")
        );
        // A stack that lost [stacks.github]: the id, no links.
        let view = github_view(Some(&stack("o/app", "")), Some(42), None, vec![]).unwrap();
        assert_eq!(view.deployment_id, Some(42));
        assert_eq!((view.deployment_api, view.deployments_page), (None, None));
        // Nothing to say: no section.
        assert_eq!(github_view(Some(&ghes), None, None, vec![]), None);
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(850), "850ms");
        assert_eq!(human_duration(12_400), "12s");
        assert_eq!(human_duration(184_000), "3m 4s");
        assert_eq!(human_duration(3_725_000), "1h 2m");
        assert_eq!(human_duration(-5), "0ms");
    }

    #[test]
    fn a_moment_is_rfc3339_in_utc() {
        assert_eq!(Moment::at(0).iso, "1970-01-01T00:00:00Z");
        assert_eq!(Moment::at(1_764_652_281_999).iso, "2025-12-02T05:11:21Z");
        assert_eq!(Moment::at(i64::MAX).iso, "9999-12-31T23:59:59Z");
        assert_eq!(Moment::at(i64::MIN).iso, "1970-01-01T00:00:00Z");
    }

    #[test]
    fn the_decision_for_a_stack_is_read_from_the_recorded_answer() {
        let answer = r#"{"provider":"github","event":"push","delivery":"d1","decisions":[
            {"stack":"api","action":"deploy","reason":"push to main","deploy_id":7,"state":"queued"},
            {"stack":"web","action":"skip","skip":"branch-mismatch","reason":"push to feature/x does not match branch main"}]}"#;
        assert_eq!(
            decision_for(answer, "web"),
            (
                "skip".into(),
                "push to feature/x does not match branch main".into()
            )
        );
        assert_eq!(
            decision_for(answer, "api"),
            ("deploy: queued (#7)".into(), "push to main".into())
        );
        assert_eq!(
            decision_for(answer, "db"),
            ("none".into(), "no decision for this stack".into())
        );
        // A push of two refs the stack follows: one decision per ref.
        let two = r#"{"decisions":[
            {"stack":"api","action":"deploy","reason":"push to main","deploy_id":7,"state":"queued"},
            {"stack":"api","action":"deploy","reason":"push to develop","deploy_id":8,"state":"queued"}]}"#;
        assert_eq!(
            decision_for(two, "api"),
            (
                "deploy: queued (#7); deploy: queued (#8)".into(),
                "push to main; push to develop".into()
            )
        );
        assert_eq!(
            decision_for(
                r#"{"error":"bad-signature","message":"signature does not match"}"#,
                "web"
            ),
            ("bad-signature".into(), "signature does not match".into())
        );
        assert_eq!(
            decision_for("3 refused", "web"),
            ("recorded".into(), "3 refused".into())
        );
        let all = decisions(answer);
        assert_eq!(
            all.iter()
                .map(|d| (d.stack.as_str(), d.decision.as_str()))
                .collect::<Vec<_>>(),
            [("api", "deploy: queued (#7)"), ("web", "skip")]
        );
        assert_eq!(
            decisions(r#"{"error":"bad-signature","message":"signature does not match"}"#),
            [DecisionView {
                stack: String::new(),
                decision: "bad-signature".into(),
                reason: "signature does not match".into()
            }]
        );
    }
}
