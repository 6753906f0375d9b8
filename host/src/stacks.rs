//! The validated configuration's stacks as the plugin's WIT records.

use crate::config::{Config, ManualSetting, PingSetting, StackConfig};
use crate::plugin::wit;

/// One stack as the plugin sees it: patterns, secrets, ping and GitHub
/// settings. Deploy actions, timeouts and tokens stay in the host.
pub fn wit_stack(stack: &StackConfig) -> wit::Stack {
    wit::Stack {
        name: stack.name.clone(),
        repository: stack.repository.clone(),
        branch: stack.branch.clone(),
        tags: stack.tags.clone(),
        image: stack.image.clone(),
        services: stack
            .services
            .iter()
            .map(|s| wit::Service {
                name: s.name.clone(),
                repository: s.repository.clone(),
                branch: s.branch.clone(),
                tags: s.tags.clone(),
                image: s.image.clone(),
            })
            .collect(),
        secrets: stack
            .secrets
            .iter()
            .map(|s| s.expose().to_string())
            .collect(),
        ping: match stack.ping {
            PingSetting::Deploy => wit::PingAction::Deploy,
            PingSetting::Acknowledge => wit::PingAction::Acknowledge,
        },
        paths: stack.paths.clone(),
        skip_markers: stack.skip_markers.clone(),
        profiles: stack.profiles.keys().cloned().collect(),
        unselectable_profiles: stack
            .profiles
            .iter()
            .filter(|(_, p)| !p.selectable)
            .map(|(name, _)| name.clone())
            .collect(),
        unselectable_services: stack
            .services
            .iter()
            .filter(|s| !s.selectable)
            .map(|s| s.name.clone())
            .collect(),
        refuse_query_services: !stack.query_services,
        manual: match stack.manual {
            ManualSetting::Allow => wit::ManualPolicy::Allow,
            ManualSetting::Signed => wit::ManualPolicy::Signed,
            ManualSetting::Refuse => wit::ManualPolicy::Refuse,
        },
        github: stack.github.as_ref().map(|g| wit::GithubDeployments {
            repository: g.repository.clone(),
            environment: g.environment.clone(),
            auto_merge: g.auto_merge,
            accept_foreign_deployments: g.accept_foreign_deployments,
            required_contexts: g.required_contexts.clone(),
            transient_environment: g.transient_environment,
            production_environment: g.production_environment,
            wait_for_event: g.wait_for_event,
        }),
    }
}

/// Every stack of the configuration, in order.
pub fn wit_stacks(config: &Config) -> Vec<wit::Stack> {
    config.stacks.iter().map(wit_stack).collect()
}

/// The name of the server key (in the journal's `server_keys`) that signs
/// the GitHub deployments redeploy creates.
pub const DEPLOYMENT_KEY_NAME: &str = "github-deployment";

/// What the component needs besides the stacks and the delivery: the time
/// now, the server's deployment key (when the host has one) and
/// `server.max_event_age`.
pub fn evaluation_context(config: &Config, deployment_key: Option<&str>) -> wit::EvaluationContext {
    wit::EvaluationContext {
        now_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| u64::try_from(d.as_millis()).ok()),
        deployment_key: deployment_key.map(str::to_string),
        max_event_age_ms: u64::try_from(config.server.max_event_age.as_millis())
            .unwrap_or(u64::MAX),
    }
}

/// The server's deployment key, created in the journal on first use (like
/// the log-link key), so every process on a state directory shares it.
pub fn deployment_key(journal: &crate::journal::Journal) -> anyhow::Result<String> {
    let candidate = crate::tokens::generate_token()?;
    Ok(journal.ensure_server_key(DEPLOYMENT_KEY_NAME, &candidate)?)
}
