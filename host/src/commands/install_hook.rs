//! `redeploy install-hook REPO_DIR`: installs redeploy as a repository's
//! post-receive hook, keeping and chaining any hook already there.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// The line that marks a hook as redeploy's own.
pub const HOOK_MARKER: &str = "# redeploy-hook: installed by `redeploy install-hook`";

/// What an existing post-receive hook is renamed to; redeploy's hook runs it first.
pub const CHAINED_HOOK: &str = "post-receive.chained";

/// Installs the post-receive hook.
#[derive(Debug, clap::Args)]
pub struct InstallHook {
    /// The git repository (bare or not).
    pub repo_dir: PathBuf,
    /// The configuration file the hook runs with (`--config`).
    #[command(flatten)]
    pub config: super::ConfigFile,
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The hook script.
pub fn hook_script(redeploy: &Path, config: &Path) -> String {
    format!(
        "#!/bin/sh\n{HOOK_MARKER}\n# The previous post-receive hook, if any, was kept as {CHAINED_HOOK} and runs first.\n\
         input=$(cat)\n\
         hooks=$(dirname \"$0\")\n\
         if [ -x \"$hooks/{CHAINED_HOOK}\" ]; then\n  printf '%s\\n' \"$input\" | \"$hooks/{CHAINED_HOOK}\" \"$@\"\nfi\n\
         printf '%s\\n' \"$input\" | exec {} post-receive --config {}\n",
        sh_quote(&redeploy.display().to_string()),
        sh_quote(&config.display().to_string())
    )
}

impl InstallHook {
    /// Installs it and says what it did.
    pub fn execute(self) -> anyhow::Result<()> {
        if !self.repo_dir.is_dir() {
            bail!("{} is not a directory", self.repo_dir.display());
        }
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(&self.repo_dir)
                .args(args)
                .output()
                .context("running git (is it installed?)")
        };
        // The directory must be the repository itself, not a folder inside one.
        let dir = self
            .repo_dir
            .canonicalize()
            .with_context(|| format!("{}", self.repo_dir.display()))?;
        let probe = git(&["rev-parse", "--is-bare-repository", "--absolute-git-dir"])?;
        let text = String::from_utf8_lossy(&probe.stdout).to_string();
        let mut lines = text.lines();
        let bare = lines.next() == Some("true");
        let git_dir = lines.next().map(PathBuf::from);
        let own = if bare {
            git_dir
        } else {
            let top = git(&["rev-parse", "--show-toplevel"])?;
            top.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&top.stdout).trim()))
        };
        let is_repo = probe.status.success()
            && own.and_then(|p| p.canonicalize().ok()).as_deref() == Some(dir.as_path());
        if !is_repo {
            bail!("{} is not a git repository", self.repo_dir.display());
        }
        let hooks_out = git(&["rev-parse", "--git-path", "hooks"])?;
        let hooks_rel = String::from_utf8_lossy(&hooks_out.stdout)
            .trim()
            .to_string();
        let hooks = self.repo_dir.join(hooks_rel);
        std::fs::create_dir_all(&hooks).with_context(|| format!("creating {}", hooks.display()))?;
        let config = self.config.load()?;
        drop(config);
        let config_path = self
            .config
            .path
            .canonicalize()
            .with_context(|| format!("config {}", self.config.path.display()))?;
        let exe = std::env::current_exe().context("finding the redeploy binary")?;
        let hook = hooks.join("post-receive");
        let chained = hooks.join(CHAINED_HOOK);
        if hook.exists() {
            let existing = std::fs::read_to_string(&hook).unwrap_or_default();
            if existing.contains(HOOK_MARKER) {
                println!(
                    "{}: redeploy's hook was already installed; updated it",
                    hook.display()
                );
            } else if chained.exists() {
                bail!(
                    "{} exists and so does {}: merge them by hand, then run install-hook again",
                    hook.display(),
                    chained.display()
                );
            } else {
                std::fs::rename(&hook, &chained).with_context(|| {
                    format!("keeping the existing hook as {}", chained.display())
                })?;
                println!(
                    "kept the existing post-receive hook as {}; it runs before redeploy",
                    chained.display()
                );
            }
        }
        let tmp = hooks.join(".post-receive.redeploy.tmp");
        std::fs::write(&tmp, hook_script(&exe, &config_path))
            .with_context(|| format!("writing {}", tmp.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &hook).with_context(|| format!("installing {}", hook.display()))?;
        println!(
            "installed {} (config {})",
            hook.display(),
            config_path.display()
        );
        Ok(())
    }
}
