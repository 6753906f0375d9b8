//! Where a notification points: the commit on its forge, and the deploy's
//! page or log.

use crate::config::{Config, StackConfig};

/// The web address of `repository` (a stack's setting, or the push's
/// `owner/name`) for a push from `provider`: an http(s) URL as it is
/// (without credentials, `.git` or a trailing `/`), an `owner/name` on the
/// public host of the provider's forge, or `None` when it cannot be known
/// (an SSH address, a self-hosted forge known by name only).
fn web_base(repository: &str, provider: &str) -> Option<String> {
    if repository.starts_with("https://") || repository.starts_with("http://") {
        let mut url = url::Url::parse(repository).ok()?;
        url.set_username("").ok()?;
        url.set_password(None).ok()?;
        url.set_query(None);
        url.set_fragment(None);
        let text = url.as_str().trim_end_matches('/');
        return Some(text.strip_suffix(".git").unwrap_or(text).to_owned());
    }
    let is_owner_name = repository.split('/').count() >= 2
        && repository
            .split('/')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || "-_.~".contains(c)));
    if !is_owner_name {
        return None;
    }
    let host = match provider {
        "github" => "https://github.com",
        "gitlab" => "https://gitlab.com",
        "bitbucket-cloud" => "https://bitbucket.org",
        "gitee" => "https://gitee.com",
        _ => return None,
    };
    Some(format!("{host}/{repository}"))
}

/// The link to commit `sha` of a deploy of `stack` whose push came from
/// `provider` for `pushed` (the push's repository, `owner/name`).
pub fn commit_url(
    stack: &StackConfig,
    provider: &str,
    pushed: Option<&str>,
    sha: &str,
) -> Option<String> {
    if sha.is_empty() || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let base = if let Some(gh) = &stack.github {
        let web = crate::github::web_url(&gh.api_url)?;
        format!("{web}/{}", gh.repository)
    } else {
        let configured = stack
            .repository
            .iter()
            .chain(stack.services.iter().filter_map(|s| s.repository.as_ref()))
            .find_map(|r| web_base(r, provider).filter(|_| r.contains("://")));
        match configured {
            Some(base) => base,
            None => web_base(pushed?, provider)?,
        }
    };
    let path = match provider {
        "gitlab" => "-/commit",
        "bitbucket-cloud" | "bitbucket-server" => "commits",
        _ => "commit",
    };
    Some(format!("{base}/{path}/{sha}"))
}

/// Where a notification of deploy `id` points for its log: the dashboard's
/// page of it, when the dashboard is on the server's own listener and the
/// server has a `public_url`; with no dashboard, the signed link to its log
/// (`signed_log`, `None` when `log_links` is off or there is no
/// `public_url`). A dashboard on an address of its own (`[ui] listen`) is
/// private by choice: its notifications point nowhere, rather than at a
/// link that reads the log with no sign-in.
pub fn deploy_link(
    config: &Config,
    id: i64,
    signed_log: impl FnOnce(i64) -> Option<String>,
) -> Option<String> {
    match &config.ui {
        Some(ui) if ui.listen.is_some() => None,
        Some(_) => {
            let base = config.server.public_url.as_ref()?;
            Some(format!("{base}/ui/deploys/{id}"))
        }
        None => signed_log(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_url_loses_its_credentials_and_git_suffix() {
        assert_eq!(
            web_base("https://user:pw@git.example.com/acme/app.git", "gitea").as_deref(),
            Some("https://git.example.com/acme/app")
        );
        assert_eq!(web_base("git@github.com:acme/app.git", "github"), None);
        assert_eq!(
            web_base("acme/app", "gitlab").as_deref(),
            Some("https://gitlab.com/acme/app")
        );
        assert_eq!(web_base("acme/app", "gitea"), None);
        assert_eq!(web_base("/srv/git/app.git", "post-receive"), None);
    }
}
