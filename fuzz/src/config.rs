//! The `config` fuzz target's checks: TOML text through the host's config
//! parser and validator, with secrets read from a stand-in source (never
//! this process's environment or files), then the validated stacks through
//! the plugin. Replayed by the regression test (see `lib.rs`).

use std::path::Path;

use redeploy_host::config::{parse_with, SecretSource};
use redeploy_host::stacks::wit_stacks;
use redeploy_plugin::error::PluginError;
use redeploy_plugin::evaluate::{evaluate, stack_services, Context, Delivery};
use redeploy_plugin::model::{GithubDeployments, ManualPolicy, PingAction, Service, Stack};

/// What every environment variable holds.
pub const ENV_SECRET: &str = "FUZZ-ENV-SECRET-VALUE";

/// What every secret file holds.
pub const FILE_SECRET: &str = "FUZZ-FILE-SECRET-VALUE";

/// The directory relative paths resolve against (never read).
pub const BASE_DIR: &str = "/nonexistent/redeploy-fuzz";

/// Secrets without side effects: a variable whose name starts with `UNSET`
/// is not set, others hold [`ENV_SECRET`]; a file whose path contains
/// `missing` does not exist, others hold [`FILE_SECRET`].
pub struct FakeSecrets;

impl SecretSource for FakeSecrets {
    fn var(&self, var: &str) -> Result<String, std::env::VarError> {
        if var.starts_with("UNSET") {
            Err(std::env::VarError::NotPresent)
        } else {
            Ok(ENV_SECRET.into())
        }
    }

    fn read(&self, path: &Path) -> std::io::Result<String> {
        if path.to_string_lossy().contains("missing") {
            Err(std::io::ErrorKind::NotFound.into())
        } else {
            Ok(format!("{FILE_SECRET}\n"))
        }
    }
}

/// Panics when `shown` holds a secret read from the stand-in source (one
/// the config text itself spells out proves nothing).
fn no_secret(config_text: &str, what: &str, shown: &str) {
    for secret in [ENV_SECRET, FILE_SECRET] {
        if !config_text.contains(secret) {
            assert!(!shown.contains(secret), "{what} shows a secret: {shown}");
        }
    }
}

/// Parses `text` as a config; panics when an invariant does not hold.
pub fn check_config(text: &str) {
    let config = match parse_with(text, Path::new(BASE_DIR), &FakeSecrets) {
        Ok(config) => config,
        Err(e) => {
            no_secret(text, "error", &e.to_string());
            no_secret(text, "error", &format!("{e:?}"));
            return;
        }
    };
    no_secret(text, "config", &format!("{config:?}"));
    let mut names: Vec<&str> = config.stacks.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), config.stacks.len(), "stack names are unique");
    assert!(config.server.state_dir.is_absolute());

    // A stack the config accepts, the plugin accepts too: otherwise every
    // delivery for it would fail at run time instead of at `redeploy check`.
    let stacks: Vec<Stack> = wit_stacks(&config)
        .into_iter()
        .map(|s| {
            let top = Service {
                name: String::new(),
                repository: s.repository,
                branch: s.branch,
                tags: s.tags,
                image: s.image,
            };
            let services = s
                .services
                .into_iter()
                .map(|v| Service {
                    name: v.name,
                    repository: v.repository,
                    branch: v.branch,
                    tags: v.tags,
                    image: v.image,
                })
                .collect();
            let services = stack_services(&s.name, top, services)
                .unwrap_or_else(|e| panic!("validated stack rejected: {e}"));
            Stack {
                name: s.name,
                services,
                secrets: s.secrets,
                ping: if matches!(s.ping, redeploy_host::plugin::wit::PingAction::Acknowledge) {
                    PingAction::Acknowledge
                } else {
                    PingAction::Deploy
                },
                paths: s.paths,
                skip_markers: s.skip_markers,
                profiles: s.profiles,
                unselectable_profiles: s.unselectable_profiles,
                unselectable_services: s.unselectable_services,
                refuse_query_services: s.refuse_query_services,
                manual: match s.manual {
                    redeploy_host::plugin::wit::ManualPolicy::Allow => ManualPolicy::Allow,
                    redeploy_host::plugin::wit::ManualPolicy::Signed => ManualPolicy::Signed,
                    redeploy_host::plugin::wit::ManualPolicy::Refuse => ManualPolicy::Refuse,
                },
                github: s.github.map(|g| GithubDeployments {
                    repository: g.repository,
                    environment: g.environment,
                    auto_merge: g.auto_merge,
                    required_contexts: g.required_contexts,
                    transient_environment: g.transient_environment,
                    production_environment: g.production_environment,
                    wait_for_event: g.wait_for_event,
                    accept_foreign_deployments: g.accept_foreign_deployments,
                }),
            }
        })
        .collect();
    if let Some(first) = stacks.first() {
        let delivery = Delivery::Manual {
            stack: first.name.clone(),
            query: String::new(),
        };
        match evaluate(&stacks, &delivery, &Context::default()) {
            Ok(outcome) => assert_eq!(outcome.decisions.len(), stacks.len()),
            Err(PluginError::InvalidStack(m)) => panic!("validated config, invalid stack: {m}"),
            Err(e) => panic!("manual trigger of a validated config failed: {e}"),
        }
    }
}
