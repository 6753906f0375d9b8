//! One module per subcommand; each is a struct with `execute(self)`.

pub mod check;
pub mod github;
pub mod history;
pub mod hook_url;
pub mod install_hook;
pub mod post_receive;
pub mod run_queued;
pub mod serve;
pub mod trigger;

use std::path::Path;

use anyhow::Context as _;

use crate::config::{Config, StackConfig};
use crate::journal::Journal;

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
/// the journal, keys, logs and the compiled-component cache; an existing
/// one is left as it is), and opens the journal in it.
pub fn open_state(config: &Config) -> anyhow::Result<Journal> {
    let state_dir = &config.server.state_dir;
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(state_dir)
        .with_context(|| format!("state directory {} cannot be created", state_dir.display()))?;
    Ok(Journal::open(&Journal::path_in(state_dir))?)
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
        assert!(journal.path().starts_with(&state));
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
