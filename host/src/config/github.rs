//! Stage 2 for a stack's `[stacks.github]` table (GitHub continuous
//! deployment).

use std::path::Path;

use super::raw::RawGithub;
use super::secrets::read_token;
use super::server::{check_http_url, is_https_or_loopback_http};
use super::stack::{is_owner_name, non_empty_items};
use super::{
    default_required_contexts, GithubConfig, Result, Secret, SecretSource,
    DEFAULT_ACCEPT_FOREIGN_DEPLOYMENTS, DEFAULT_AUTO_MERGE, DEFAULT_GITHUB_API_URL,
    DEFAULT_TRANSIENT_ENVIRONMENT, DEFAULT_WAIT_FOR_EVENT, PRODUCTION_ENVIRONMENT_NAME,
};

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

    Ok(GithubConfig {
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
    })
}
