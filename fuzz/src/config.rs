//! The `config` fuzz target's checks: TOML text through the host's config
//! parser and validator, with secrets read from a stand-in source (never
//! this process's environment or files), then the validated stacks through
//! the embedded component, as `serve` loads it. Replayed by the regression
//! test (see `lib.rs`).

use std::path::Path;
use std::sync::OnceLock;

use redeploy_host::config::{parse_with, SecretSource};
use redeploy_host::plugin::{wit, ComponentSource, PluginRuntime, RuntimeOptions};
use redeploy_host::stacks::wit_stacks;

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

    // The component judges the stacks, as `serve`, `check` and the git
    // hook have it do at start (`validate-stacks`); a set it accepts never
    // fails a delivery as an invalid stack.
    let runtime = runtime();
    let stacks = wit_stacks(&config);
    let verdict = runtime
        .validate_stacks(&stacks)
        .unwrap_or_else(|trap| panic!("validate-stacks trapped: {trap:?}"));
    if let Err(e) = verdict {
        assert_eq!(e.kind(), "invalid-stack", "{}", e.describe());
        no_secret(text, "stack error", e.message());
        return;
    }
    if let Some(first) = stacks.first() {
        let delivery = wit::Delivery::Manual(wit::ManualTrigger {
            stack: first.name.clone(),
            query: String::new(),
        });
        let context = wit::EvaluationContext {
            now_ms: None,
            deployment_key: None,
            max_event_age_ms: u64::MAX,
            body_macs: None,
        };
        match runtime
            .evaluate(&stacks, &delivery, &context)
            .unwrap_or_else(|trap| panic!("evaluate trapped: {trap:?}"))
        {
            Ok(outcome) => assert_eq!(outcome.decisions.len(), stacks.len()),
            Err(e) => panic!(
                "manual trigger of a validated config failed: {}",
                e.describe()
            ),
        }
    }
}

/// The embedded component, compiled once per process.
fn runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<PluginRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        PluginRuntime::new(&ComponentSource::Embedded, RuntimeOptions::default())
            .expect("the embedded component loads")
    })
}
