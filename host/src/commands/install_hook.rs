//! `redeploy install-hook REPO_DIR`: installs redeploy as a repository's
//! post-receive hook, keeping and chaining any hook already there. It
//! refuses a repository gitolite manages (with the recipe for gitolite's
//! repo-specific hooks, [`gitolite`]), passes on git's own refusal (a
//! repository of another owner is "dubious" to git), and checks that the
//! hook's user, the repository's owner, can read the config and write the
//! state directory ([`access`]) before any push needs it.

mod access;
pub mod gitolite;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::journal::Journal;

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

/// What the hook's user must be able to do in the state directory: the
/// directory itself (it creates the journal, logs, locks), and each entry
/// that already exists, which a command run as another user may have
/// created: the journal and its WAL files, the key and the directories of
/// the compiled-component cache, locks and logs.
const STATE_ENTRIES: &[(&str, access::Want)] = &[
    ("journal.sqlite3-wal", access::Want::Write),
    ("journal.sqlite3-shm", access::Want::Write),
    ("cache", access::Want::Write),
    ("cache.key", access::Want::Read),
    ("locks", access::Want::Write),
    ("logs", access::Want::Write),
];

/// Why the hook, run as `owner`, would fail: the config it cannot read,
/// the state directory or an entry of it it cannot write.
fn hook_access_problems(
    owner: &access::Account,
    config_path: &Path,
    state_dir: &Path,
) -> Vec<String> {
    let mut wants = vec![
        (config_path.to_path_buf(), access::Want::Read),
        (state_dir.to_path_buf(), access::Want::Write),
        (Journal::path_in(state_dir), access::Want::Write),
    ];
    for (entry, want) in STATE_ENTRIES {
        let path = state_dir.join(entry);
        if path.exists() {
            wants.push((path, *want));
        }
    }
    let mut problems: Vec<String> = wants
        .iter()
        .filter(|(path, want)| {
            // The journal need not exist yet: the directory's check covers creating it.
            *want != access::Want::Write || path.exists() || path == state_dir
        })
        .filter_map(|(path, want)| access::problem(owner, path, *want))
        .collect();
    // The rules the hook itself applies (`ownership::check_state_dir`): a
    // state directory is used only by its owner, whatever the mode allows,
    // and not at all while its group or others may write it or the
    // directory it lies in.
    if let Ok(meta) = std::fs::metadata(state_dir) {
        if !crate::ownership::may_write_state(meta.uid(), owner.uid) {
            problems.push(format!(
                "{} is owned by {}, and redeploy uses a state directory only as its owner",
                state_dir.display(),
                crate::ownership::User::from_uid(meta.uid())
            ));
        }
    }
    if let Err(refusal) = crate::ownership::check_state_dir_private(state_dir) {
        problems.push(refusal.to_string());
    }
    problems
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
        // gitolite first, read from the files without git: its repositories
        // belong to its hosting user, whom git would call dubious to anyone else.
        let candidate = if dir.join("hooks").is_dir() {
            dir.clone()
        } else {
            dir.join(".git")
        };
        if let Some(sign) = gitolite::Facts::read(&candidate).sign() {
            let exe = std::env::current_exe().context("finding the redeploy binary")?;
            let config_path = self
                .config
                .path
                .canonicalize()
                .unwrap_or_else(|_| self.config.path.clone());
            bail!(
                "{}",
                gitolite::refusal(
                    &self.repo_dir,
                    &sign,
                    gitolite::repository_name(&candidate).as_deref(),
                    &exe,
                    &config_path
                )
            );
        }
        let probe = git(&["rev-parse", "--is-bare-repository", "--absolute-git-dir"])?;
        let text = String::from_utf8_lossy(&probe.stdout).to_string();
        let mut lines = text.lines();
        let bare = lines.next() == Some("true");
        let git_dir = lines.next().map(PathBuf::from);
        let own = if bare {
            git_dir.clone()
        } else {
            let top = git(&["rev-parse", "--show-toplevel"])?;
            top.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&top.stdout).trim()))
        };
        let is_repo = probe.status.success()
            && own.and_then(|p| p.canonicalize().ok()).as_deref() == Some(dir.as_path());
        let owner_uid = std::fs::metadata(&dir)
            .with_context(|| format!("{}", dir.display()))?
            .uid();
        let owner = access::account(owner_uid);
        let git_said = String::from_utf8_lossy(&probe.stderr).trim().to_string();
        if !probe.status.success() && git_said.contains("dubious ownership") {
            // git refuses a repository another user owns; the hook runs as
            // that owner anyway, so install it as them.
            // SAFETY: geteuid has no preconditions and cannot fail.
            let me = access::account(unsafe { libc::geteuid() });
            bail!(
                "{} belongs to {}, and git refuses it to {}: {git_said}\n\
                 git runs the hook as the repository's owner: install it as that user \
                 (sudo -u {} redeploy install-hook ...)",
                self.repo_dir.display(),
                owner.name,
                me.name,
                owner.name
            );
        }
        if !is_repo {
            bail!("{} is not a git repository", self.repo_dir.display());
        }
        let hooks_out = git(&["rev-parse", "--git-path", "hooks"])?;
        let hooks_rel = String::from_utf8_lossy(&hooks_out.stdout)
            .trim()
            .to_string();
        let hooks = self.repo_dir.join(hooks_rel);
        let config = self.config.load()?;
        let config_path = self
            .config
            .path
            .canonicalize()
            .with_context(|| format!("config {}", self.config.path.display()))?;
        let exe = std::env::current_exe().context("finding the redeploy binary")?;
        let problems = hook_access_problems(&owner, &config_path, &config.server.state_dir);
        if !problems.is_empty() {
            bail!(
                "the hook would fail: git runs it as {}, the owner of {}, and {}; \
                 nothing was installed (give the hook's user a config with a state_dir of its own, \
                 or give these to that user)",
                owner.name,
                self.repo_dir.display(),
                problems.join("; ")
            );
        }
        // The component's rules too, as the hook applies them: a config it
        // would refuse at every push is refused here (the state directory's
        // cache is the hook's user's: read if it is this user's too, never
        // written).
        let runtime = super::validate_stacks_here(&config, &self.config.path)
            .context("nothing was installed: the hook would refuse every push with this config")?;
        // The names the hook will see this repository by (git runs it with
        // `$GIT_DIR` set to this directory), and the stacks that follow it.
        let git_dir = git_dir
            .and_then(|d| d.canonicalize().ok())
            .with_context(|| format!("finding the git directory of {}", dir.display()))?;
        let names = super::post_receive::repository_names_at(&config, git_dir, None, None);
        let following = super::post_receive::stacks_following(&runtime, &config, &names)?;
        let seen_as = crate::config::shown_setting(names.fixed.as_deref().unwrap_or(&names.path))
            .into_owned();
        drop((runtime, config));
        std::fs::create_dir_all(&hooks).with_context(|| format!("creating {}", hooks.display()))?;
        let hook = hooks.join("post-receive");
        let chained = hooks.join(CHAINED_HOOK);
        if hook.exists() {
            let existing = std::fs::read_to_string(&hook).unwrap_or_default();
            if existing.contains(HOOK_MARKER) {
                crate::cli::print_line(format_args!(
                    "{}: redeploy's hook was already installed; updated it",
                    hook.display()
                ))?;
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
                crate::cli::print_line(format_args!(
                    "kept the existing post-receive hook as {}; it runs before redeploy",
                    chained.display()
                ))?;
            }
        }
        let tmp = hooks.join(".post-receive.redeploy.tmp");
        std::fs::write(&tmp, hook_script(&exe, &config_path))
            .with_context(|| format!("writing {}", tmp.display()))?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &hook).with_context(|| format!("installing {}", hook.display()))?;
        crate::cli::print_line(format_args!(
            "installed {} (config {})",
            hook.display(),
            config_path.display()
        ))?;
        if following.is_empty() {
            crate::cli::say(format_args!(
                "warning: no stack in {} follows this repository (the hook sees it as {seen_as:?}): \
                 a push to it will deploy nothing; name it in a stack's `repository`, \
                 or map this path to the stack's name in [hook] repositories",
                config_path.display()
            ));
        } else {
            crate::cli::print_line(format_args!(
                "pushes to it (seen as {seen_as:?}) are evaluated for: {}",
                following.join(", ")
            ))?;
        }
        Ok(())
    }
}
