//! One module per subcommand; each is a struct with `execute(self)`.

pub mod check;
pub mod compile_component;
pub mod completions;
pub mod config;
pub mod deliveries;
pub mod github;
pub mod history;
pub mod hook_url;
pub mod install_hook;
pub mod journal;
pub mod logs;
pub mod man;
pub mod notify;
pub mod poll;
pub mod post_receive;
pub mod reap;
pub mod reload;
pub mod run_queued;
pub mod serve;
pub mod trigger;
pub mod ui;

use std::path::{Path, PathBuf};

use std::sync::Arc;

use anyhow::Context as _;

use crate::config::{Config, ConfigError, SecretScope, StackConfig};
use crate::journal::Journal;

/// The environment variable naming the configuration file when a command
/// is given no `--config`.
pub const CONFIG_ENV: &str = "REDEPLOY_CONFIG";

/// The configuration file when neither `--config` nor [`CONFIG_ENV`] names
/// one: where a packaged install keeps it, so an administrator types
/// `redeploy hook-url web` and nothing more.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/redeploy/redeploy.toml";

/// The `--config` option every command that reads the configuration
/// takes (flattened into each), defined once.
#[derive(Clone, Debug, clap::Args)]
pub struct ConfigFile {
    /// The configuration file.
    #[arg(
        long = "config",
        short = 'c',
        value_name = "PATH",
        env = CONFIG_ENV,
        default_value = DEFAULT_CONFIG_PATH
    )]
    pub path: PathBuf,
}

impl ConfigFile {
    /// Loads the file, reading every stack's secrets.
    pub fn load(&self) -> anyhow::Result<Config> {
        self.load_for(SecretScope::Every)
    }

    /// Loads the file, reading the secrets of the stacks in `scope` only.
    /// The error names the file; when it is the default one and missing,
    /// it also says how to name another.
    pub fn load_for(&self, scope: SecretScope<'_>) -> anyhow::Result<Config> {
        crate::config::load_for(&self.path, scope).map_err(|err| {
            let missing_default = self.path == Path::new(DEFAULT_CONFIG_PATH)
                && matches!(&err, ConfigError::Read { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound);
            let err = anyhow::Error::new(err);
            if missing_default {
                err.context(format!(
                    "no configuration file: pass --config PATH or set {CONFIG_ENV}"
                ))
            } else {
                err
            }
        })
    }
}

/// The embedded component for a one-shot command (the hook,
/// `run-queued`, `trigger`): loaded from the compiled cache in `config`'s
/// state directory, which `serve` and the hook share, with memory
/// allocated on demand rather than pooled.
pub fn one_shot_component(config: &Config) -> anyhow::Result<crate::plugin::PluginRuntime> {
    crate::plugin::PluginRuntime::cached(
        &config.server.state_dir.join("cache"),
        crate::plugin::RuntimeOptions {
            allocation: crate::plugin::Allocation::OnDemand,
            ..crate::plugin::RuntimeOptions::default()
        },
    )
}

/// The embedded component for a command that only reads `config`'s state
/// directory: loaded from the compiled cache `serve` and the hook keep
/// there when it is this user's and verifies, else compiled in this
/// process; nothing is written (`config check`, `install-hook`, run as a
/// user the state directory may not be; `check`).
pub fn read_only_component(config: &Config) -> anyhow::Result<crate::plugin::PluginRuntime> {
    crate::plugin::PluginRuntime::cached_read_only(
        &config.server.state_dir.join("cache"),
        crate::plugin::RuntimeOptions::default(),
    )
}

/// Checks `config`'s stacks (loaded from `path`) by the component's own
/// rules, with the component of [`read_only_component`]. Returns the
/// runtime, for a caller with more to ask the component.
pub fn validate_stacks_here(
    config: &Config,
    path: &Path,
) -> anyhow::Result<crate::plugin::PluginRuntime> {
    let runtime = read_only_component(config)?;
    crate::stacks::validate(&runtime, &crate::stacks::wit_stacks(config), path)?;
    Ok(runtime)
}

/// The stack `name` of `config` (loaded from `path`), or an error naming
/// both and listing the stacks there are.
pub fn stack<'c>(config: &'c Config, name: &str, path: &Path) -> anyhow::Result<&'c StackConfig> {
    config.stack(name).with_context(|| {
        let names: Vec<&str> = config.stacks.iter().map(|s| s.name.as_str()).collect();
        format!(
            "no stack named \"{name}\" in {} (its stacks: {})",
            path.display(),
            names.join(", ")
        )
    })
}

/// Creates `config`'s state directory, `0700` when created here (it holds
/// the SQLite journal, keys, logs and the compiled-component cache; an
/// existing one is left as it is, and refused if its group or others may
/// write it or the directory it lies in), and opens the journal: the SQLite file in it, or the
/// PostgreSQL database of `[journal]`.
pub fn open_state(config: &Config) -> anyhow::Result<Journal> {
    let state_dir = &config.server.state_dir;
    crate::ownership::check_state_dir_private(state_dir)?;
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(state_dir)
        .with_context(|| format!("state directory {} cannot be created", state_dir.display()))?;
    Ok(match &config.journal.postgres {
        Some(postgres) => Journal::open_postgres(&postgres.options())?,
        None => Journal::open(&Journal::path_in(state_dir))?,
    })
}

/// Where the stack locks of `config`'s journal live: files in the state
/// directory for SQLite (one machine), leases in the database for
/// PostgreSQL ([`crate::cluster`]).
pub fn stack_locks(config: &Config, journal: &Arc<Journal>) -> crate::supervise::Locks {
    match &config.journal.postgres {
        Some(postgres) => crate::supervise::Locks::Leases(crate::cluster::Cluster::new(
            journal.clone(),
            postgres.lease,
        )),
        None => crate::supervise::Locks::Files(config.server.state_dir.clone()),
    }
}

/// Opens `config`'s journal to read it (`history`, `deliveries`, `logs`),
/// creating and migrating nothing: the SQLite file read-only, beside a
/// running server, or the PostgreSQL database.
pub fn open_for_reading(config: &Config) -> anyhow::Result<Journal> {
    // A journal, or a log, others may have put there is not read either.
    crate::ownership::check_state_dir_private(&config.server.state_dir)?;
    Ok(match &config.journal.postgres {
        Some(postgres) => Journal::open_postgres_for_reading(&postgres.options())?,
        None => Journal::open_read_only(&Journal::path_in(&config.server.state_dir))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn the_state_directory_an_admin_command_creates_is_private() {
        let root = std::env::temp_dir().join(format!(
            "redeploy-open-state-{}-{}",
            std::process::id(),
            crate::journal::now_ms()
        ));
        let state = root.join("state");
        let text = format!(
            "[server]\nstate_dir = \"{}\"\n[[stacks]]\nname = \"web\"\nimage = \"acme/web\"\ncommand = [\"x\"]\n",
            state.display()
        );
        let config = crate::config::parse(&text, &root).unwrap();
        let journal = open_state(&config).unwrap();
        assert!(journal.sqlite_path().unwrap().starts_with(&state));
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(stack(&config, "web", Path::new("/etc/r.toml")).is_ok());
        let missing = stack(&config, "api", Path::new("/etc/r.toml")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "no stack named \"api\" in /etc/r.toml (its stacks: web)"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
