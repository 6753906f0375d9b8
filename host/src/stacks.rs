//! The validated configuration's stacks as the plugin's WIT records.

use crate::config::{Config, PingSetting, StackConfig};
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
        github: stack.github.as_ref().map(|g| wit::GithubDeployments {
            repository: g.repository.clone(),
            environment: g.environment.clone(),
            auto_merge: g.auto_merge,
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
