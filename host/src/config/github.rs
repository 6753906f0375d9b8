//! Stage 2 for a stack's `[stacks.github]` table (GitHub continuous
//! deployment).

use std::path::Path;
use std::time::Duration;

use super::raw::RawGithub;
use super::secrets::read_token;
use super::server::{check_http_url, duration, is_https_or_loopback_http};
use super::stack::{is_owner_name, non_empty_items};
use super::{
    default_required_contexts, GithubConfig, Result, Secret, SecretSource,
    DEFAULT_ACCEPT_FOREIGN_DEPLOYMENTS, DEFAULT_AUTO_MERGE, DEFAULT_GITHUB_API_URL,
    DEFAULT_TRANSIENT_ENVIRONMENT, DEFAULT_WAIT_FOR_EVENT, PRODUCTION_ENVIRONMENT_NAME,
};

/// `retry_request_for`'s default: half an hour covers GitHub's usual
/// incidents and a network outage of the server's own, and is still soon
/// enough for a push to deploy the same working day.
pub const DEFAULT_RETRY_REQUEST_FOR: Duration = Duration::from_secs(30 * 60);

/// The longest `retry_request_for`: a day. A deployment requested later
/// than that would deploy a commit everyone has long moved past.
pub const MAX_RETRY_REQUEST_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// `event_wait`'s default: GitHub delivers its `deployment` event within
/// seconds; ten minutes leaves room for a slow delivery and for the
/// catch-up of missed deliveries, and is not so long that a lost event
/// goes unnoticed.
pub const DEFAULT_EVENT_WAIT: Duration = Duration::from_secs(10 * 60);

/// The shortest `event_wait`: a second, so the event GitHub sends at once
/// has a chance to arrive first (the tests use a few seconds).
pub const MIN_EVENT_WAIT: Duration = Duration::from_secs(1);

/// The longest `event_wait`: a day, as for [`MAX_RETRY_REQUEST_FOR`].
pub const MAX_EVENT_WAIT: Duration = Duration::from_secs(24 * 60 * 60);

/// What a push does when its GitHub deployment request failed for good
/// (refused as invalid or denied, or GitHub unreachable for
/// `retry_request_for`), `[stacks.github] on_request_failure`. GitHub's own
/// decisions about the commit (409: required checks failed or a merge
/// conflict; 202: merged with `auto_merge`) are never overridden.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnRequestFailure {
    /// Deploy the push directly, without a GitHub deployment (the default:
    /// a push is never lost).
    #[default]
    Deploy,
    /// Deploy nothing; the request's failure is recorded and reported.
    GiveUp,
}

impl OnRequestFailure {
    /// The setting's value in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            OnRequestFailure::Deploy => "deploy",
            OnRequestFailure::GiveUp => "give-up",
        }
    }
}

/// Default `[stacks.github] catch_up_every`: how often the server lists
/// the webhook's recent deliveries and asks GitHub to redeliver those that
/// did not arrive. GitHub keeps deliveries for three days; a few minutes
/// keeps a missed push's delay short at one request per look.
pub const DEFAULT_CATCH_UP_EVERY: Duration = Duration::from_secs(5 * 60);

/// The shortest `catch_up_every` (each look is at least one API request).
pub const MIN_CATCH_UP_EVERY: Duration = Duration::from_secs(1);

/// The longest `catch_up_every`: GitHub lists deliveries of the past three
/// days only, so a longer interval could miss some.
pub const MAX_CATCH_UP_EVERY: Duration = Duration::from_secs(24 * 3600);

/// The `catch_up_every` value that turns catch-up off.
pub const CATCH_UP_OFF: &str = "off";

/// Validates `[stacks.github]`; its token is read from `sources`, or not
/// at all when the stack's secrets are not read (`None`).
pub(super) fn validate_github(
    stack: &str,
    raw: RawGithub,
    base_dir: &Path,
    sources: Option<&dyn SecretSource>,
) -> Result<GithubConfig, String> {
    if raw.token.is_some() {
        return Err(
            "github.token is not allowed: keep the token out of the config file, use token_env or token_file"
                .into(),
        );
    }
    let repository = match raw.repository {
        Some(repo) if is_owner_name(&repo) => repo,
        Some(repo) => return Err(format!("github.repository {repo:?} must be owner/name")),
        None => return Err("github.repository is required".into()),
    };
    let api_url = raw
        .api_url
        .unwrap_or_else(|| DEFAULT_GITHUB_API_URL.to_string());
    check_http_url(&api_url, false).map_err(|why| format!("github.api_url {api_url:?} {why}"))?;
    if !is_https_or_loopback_http(&api_url) {
        return Err(format!(
            "github.api_url {api_url:?} must be https (plain http only to a loopback host): \
             the token is sent with every request"
        ));
    }
    let api_url = api_url.trim_end_matches('/').to_string();

    if raw.token_env.is_none() && raw.token_file.is_none() {
        return Err("github needs a token: set github.token_env or github.token_file".into());
    }
    // `None` when the stack's secrets are not read (`SecretScope`).
    let token = read_token("github", (raw.token_env, raw.token_file), base_dir, sources)?;

    let environment = raw.environment.unwrap_or_else(|| stack.to_string());
    if environment.is_empty() {
        return Err("github.environment is empty".into());
    }
    let production_environment = raw
        .production_environment
        .unwrap_or(environment == PRODUCTION_ENVIRONMENT_NAME);
    let required_contexts = raw
        .required_contexts
        .unwrap_or_else(default_required_contexts);
    non_empty_items("github.required_contexts", &required_contexts)?;

    let retry_request_for = duration(
        "github.retry_request_for",
        raw.retry_request_for,
        DEFAULT_RETRY_REQUEST_FOR,
    )?;
    if retry_request_for > MAX_RETRY_REQUEST_FOR {
        return Err(format!(
            "github.retry_request_for must be at most {}",
            humantime::format_duration(MAX_RETRY_REQUEST_FOR)
        ));
    }
    let on_request_failure = match raw.on_request_failure.as_deref() {
        None | Some("deploy") => OnRequestFailure::Deploy,
        Some("give-up") => OnRequestFailure::GiveUp,
        Some(other) => {
            return Err(format!(
                "github.on_request_failure {other:?} must be \"deploy\" or \"give-up\""
            ))
        }
    };
    let event_wait = duration("github.event_wait", raw.event_wait, DEFAULT_EVENT_WAIT)?;
    if !(MIN_EVENT_WAIT..=MAX_EVENT_WAIT).contains(&event_wait) {
        return Err(format!(
            "github.event_wait must be between {} and {}",
            humantime::format_duration(MIN_EVENT_WAIT),
            humantime::format_duration(MAX_EVENT_WAIT)
        ));
    }

    let catch_up_every = match raw.catch_up_every {
        Some(v) if v.trim() == CATCH_UP_OFF => None,
        v => {
            let every =
                super::server::duration("github.catch_up_every", v, DEFAULT_CATCH_UP_EVERY)?;
            if !(MIN_CATCH_UP_EVERY..=MAX_CATCH_UP_EVERY).contains(&every) {
                return Err(format!(
                    "github.catch_up_every must be from {} to {} (or \"{CATCH_UP_OFF}\")",
                    humantime::format_duration(MIN_CATCH_UP_EVERY),
                    humantime::format_duration(MAX_CATCH_UP_EVERY)
                ));
            }
            Some(every)
        }
    };

    Ok(GithubConfig {
        catch_up_every,
        repository,
        api_url,
        token: token.map(Secret),
        environment,
        transient_environment: raw
            .transient_environment
            .unwrap_or(DEFAULT_TRANSIENT_ENVIRONMENT),
        production_environment,
        auto_merge: raw.auto_merge.unwrap_or(DEFAULT_AUTO_MERGE),
        required_contexts,
        wait_for_event: raw.wait_for_event.unwrap_or(DEFAULT_WAIT_FOR_EVENT),
        accept_foreign_deployments: raw
            .accept_foreign_deployments
            .unwrap_or(DEFAULT_ACCEPT_FOREIGN_DEPLOYMENTS),
        retry_request_for,
        on_request_failure,
        event_wait,
    })
}
