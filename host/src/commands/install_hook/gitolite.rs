//! Recognizing a repository gitolite manages, and the recipe that
//! installs redeploy there. gitolite owns its repositories' hooks: it links
//! `hooks/update` to its own, and once any repository has a repo-specific
//! `post-receive` hook it makes that repository's `hooks/post-receive` a
//! link to its hook driver and deletes `post-receive.*` on the next
//! gitolite-admin push. A hook `install-hook` wrote would stop running
//! without a word, so a gitolite repository gets the recipe instead.

use std::path::{Path, PathBuf};

/// The directory gitolite keeps its repositories in, under its hosting
/// user's home (`$rc{GL_REPO_BASE}`, `~/repositories` unless changed).
const REPOSITORIES_DIR: &str = "repositories";

/// What gitolite leaves in a repository it manages, read from the disk by
/// [`Facts::read`] and judged by [`Facts::sign`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The repository has a `gl-conf` file (gitolite writes its rules for
    /// the repository there).
    pub gl_conf: bool,
    /// Where `hooks/update` links to, when it is a symbolic link.
    pub update_link: Option<PathBuf>,
    /// Where `hooks/post-receive` links to, when it is a symbolic link.
    pub post_receive_link: Option<PathBuf>,
    /// The text of what `hooks/post-receive` is or links to, when readable.
    pub post_receive_text: Option<String>,
    /// `GL_BINDIR`, set when gitolite itself runs the command.
    pub gl_bindir: Option<String>,
}

/// The line of gitolite's repo-specific hook driver (`multi-hook-driver`)
/// that runs each `post-receive.*` hook.
const DRIVER_LOOP: &str = "for h in $0.*; do";

impl Facts {
    /// Reads what gitolite would have left in the repository whose git
    /// directory is `git_dir`.
    pub fn read(git_dir: &Path) -> Facts {
        let hooks = git_dir.join("hooks");
        Facts {
            gl_conf: git_dir.join("gl-conf").is_file(),
            update_link: std::fs::read_link(hooks.join("update")).ok(),
            post_receive_link: std::fs::read_link(hooks.join("post-receive")).ok(),
            post_receive_text: std::fs::read_to_string(hooks.join("post-receive")).ok(),
            gl_bindir: std::env::var("GL_BINDIR").ok().filter(|v| !v.is_empty()),
        }
    }

    /// Why the repository is gitolite's, in a phrase, or `None` when
    /// nothing says it is.
    pub fn sign(&self) -> Option<String> {
        if self.gl_conf {
            return Some("it has gitolite's gl-conf file".into());
        }
        if let Some(link) = &self.update_link {
            if link.ends_with("hooks/common/update") {
                return Some(format!(
                    "its hooks/update links to gitolite's {}",
                    link.display()
                ));
            }
        }
        let driver = self
            .post_receive_text
            .as_deref()
            .is_some_and(|t| t.contains(DRIVER_LOOP));
        if driver
            || self
                .post_receive_link
                .as_ref()
                .is_some_and(|l| l.ends_with("multi-hook-driver"))
        {
            return Some("its hooks/post-receive is gitolite's hook driver".into());
        }
        self.gl_bindir
            .as_ref()
            .map(|dir| format!("GL_BINDIR is set ({dir}): gitolite runs this command"))
    }
}

/// gitolite's name for the repository at `git_dir`: its path under a
/// `repositories/` directory, without `.git` (`team/app`), or `None`.
pub fn repository_name(git_dir: &Path) -> Option<String> {
    let text = git_dir.to_str()?;
    let (_, rest) = text.rsplit_once(&format!("/{REPOSITORIES_DIR}/"))?;
    let name = rest.trim_end_matches('/').trim_end_matches(".git");
    (!name.is_empty()).then(|| name.to_string())
}

/// The refusal for a gitolite repository: one line saying why, then the
/// steps that install redeploy as gitolite's repo-specific hook, with
/// this binary and config (docs/gitolite.md says the same, with the why).
pub fn refusal(
    repo: &Path,
    sign: &str,
    name: Option<&str>,
    redeploy: &Path,
    config: &Path,
) -> String {
    let name = name.unwrap_or("REPO");
    let repo = repo.display();
    format!(
        "{repo} is managed by gitolite ({sign}); gitolite replaces a post-receive hook written there \
         and deletes it on the next gitolite-admin push, so nothing was installed. \
         Install redeploy as a gitolite repo-specific hook instead:\n\
         \x20 1. as gitolite's hosting user, in ~/.gitolite.rc: uncomment LOCAL_CODE => \"$ENV{{HOME}}/local\", \
         and 'repo-specific-hooks' in ENABLE\n\
         \x20 2. as that user: mkdir -p ~/local/hooks/repo-specific, and make ~/local/hooks/repo-specific/redeploy \
         (chmod 0755) this script:\n\
         \x20      #!/bin/sh\n\
         \x20      exec {} post-receive --config {}\n\
         \x20 3. in the gitolite-admin clone, conf/gitolite.conf, under `repo {name}`: \
         option hook.post-receive = redeploy; commit and push\n\
         \x20 (docs/gitolite.md has the whole recipe)",
        super::sh_quote(&redeploy.display().to_string()),
        super::sh_quote(&config.display().to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_trace_gitolite_leaves_is_a_sign() {
        assert_eq!(Facts::default().sign(), None);
        let gl_conf = Facts {
            gl_conf: true,
            ..Facts::default()
        };
        assert_eq!(
            gl_conf.sign().as_deref(),
            Some("it has gitolite's gl-conf file")
        );
        let update = Facts {
            update_link: Some("/var/lib/gitolite3/.gitolite/hooks/common/update".into()),
            ..Facts::default()
        };
        assert!(update
            .sign()
            .unwrap()
            .contains("hooks/update links to gitolite's"));
        // A hook of one's own linked as `update` is not gitolite's.
        let own = Facts {
            update_link: Some("/opt/hooks/update".into()),
            ..Facts::default()
        };
        assert_eq!(own.sign(), None);
        let driver = Facts {
            post_receive_text: Some(format!("#!/bin/sh\n{DRIVER_LOOP}\n")),
            ..Facts::default()
        };
        assert!(driver.sign().unwrap().contains("hook driver"));
        let env = Facts {
            gl_bindir: Some("/usr/share/gitolite3".into()),
            ..Facts::default()
        };
        assert!(env.sign().unwrap().starts_with("GL_BINDIR is set"));
    }

    #[test]
    fn gitolites_name_is_the_path_under_repositories_without_git() {
        let name = |p: &str| repository_name(Path::new(p));
        assert_eq!(
            name("/var/lib/gitolite3/repositories/team/app.git").as_deref(),
            Some("team/app")
        );
        assert_eq!(
            name("/home/git/repositories/app.git").as_deref(),
            Some("app")
        );
        assert_eq!(name("/srv/git/app.git"), None);
    }
}
