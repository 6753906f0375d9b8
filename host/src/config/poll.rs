//! Stage 2 for a stack's `[stacks.poll]` table: polling its git
//! repositories for new commits, for senders that cannot call the hook.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawPoll;
use super::secrets::read_token;
use super::server::{duration, is_https_or_loopback_http, resolve};
use super::{Secret, SecretSource, ServiceConfig};

/// The shortest `every`: a git server on the same machine or network can
/// be asked this often; a public forge rate-limits far sooner (ask it
/// every few minutes).
pub const MIN_POLL_EVERY: Duration = Duration::from_secs(1);

/// The longest `every`.
pub const MAX_POLL_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// Default `timeout`: how long one look at a repository may take.
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest `timeout`.
pub const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Default `username`: the user name sent with an HTTPS token. GitHub
/// takes any name with a token and documents this one; GitLab, Gitea and
/// others want theirs (`oauth2` for a GitLab OAuth token).
pub const DEFAULT_POLL_USERNAME: &str = "x-access-token";

/// The validated `[stacks.poll]` table.
#[derive(Clone)]
pub struct PollConfig {
    /// How often each repository is asked for its refs (each wait jittered
    /// by up to a tenth either way).
    pub every: Duration,
    /// How long one look may take before it is abandoned as failed.
    pub timeout: Duration,
    /// What is polled: each repository the stack or its services follow.
    pub sources: Vec<PollTarget>,
    /// The user name sent with `token` over HTTPS.
    pub username: String,
    /// An HTTPS token (from `token_env` or `token_file`), sent as HTTP
    /// Basic credentials; `None` when not configured or not read.
    pub token: Option<Secret>,
    /// An SSH private key for `ssh://` and `host:path` repositories.
    pub ssh_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for PollConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PollConfig")
            .field("every", &self.every)
            .field("timeout", &self.timeout)
            .field("sources", &self.sources)
            .field("username", &self.username)
            .field("token", &self.token.as_ref().map(|_| "(redacted)"))
            .field("ssh_key_file", &self.ssh_key_file)
            .finish()
    }
}

/// One repository a stack polls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollTarget {
    /// The repository as the stack (or service) names it: what the
    /// component matches a poll's change against.
    pub repository: String,
    /// Where git asks for its refs: `repository` itself, or `poll.url`
    /// for a stack that names its repository `owner/name`.
    pub url: String,
}

/// Validates `[stacks.poll]` of a stack following `repository` (and
/// `services`); its token is read from `sources`, or not at all when the
/// stack's secrets are not read (`None`).
pub(super) fn validate_poll(
    raw: RawPoll,
    repository: Option<&str>,
    services: &[ServiceConfig],
    base_dir: &Path,
    sources: Option<&dyn SecretSource>,
) -> Result<PollConfig, String> {
    let every = match raw.every {
        Some(text) => duration("poll.every", Some(text), MIN_POLL_EVERY)?,
        None => return Err("poll.every is required (like \"5m\")".into()),
    };
    if !(MIN_POLL_EVERY..=MAX_POLL_EVERY).contains(&every) {
        return Err(format!(
            "poll.every must be between {} and {}",
            humantime::format_duration(MIN_POLL_EVERY),
            humantime::format_duration(MAX_POLL_EVERY)
        ));
    }
    // A look that takes longer than `every` delays the next: looks at one
    // source never overlap.
    let timeout = duration("poll.timeout", raw.timeout, DEFAULT_POLL_TIMEOUT)?;
    if timeout.is_zero() || timeout > MAX_POLL_TIMEOUT {
        return Err(format!(
            "poll.timeout must be greater than zero and at most {}",
            humantime::format_duration(MAX_POLL_TIMEOUT)
        ));
    }

    // Each repository followed, once.
    let mut followed: Vec<&str> = repository.into_iter().collect();
    for service in services {
        if let Some(r) = service.repository.as_deref() {
            if !followed.contains(&r) {
                followed.push(r);
            }
        }
    }
    if followed.is_empty() {
        return Err(
            "poll asks git repositories for new commits: the stack and its services follow none"
                .into(),
        );
    }
    let targets = match raw.url {
        Some(url) if followed.len() == 1 => vec![PollTarget {
            repository: followed[0].to_owned(),
            url: git_url("poll.url", &url)?,
        }],
        Some(_) => {
            return Err(
                "poll.url names one repository, but the stack's services follow several".into(),
            )
        }
        None => followed
            .into_iter()
            .map(|r| {
                Ok(PollTarget {
                    repository: r.to_owned(),
                    url: git_url("repository", r).map_err(|why| {
                        format!("{why}; to poll it, set poll.url to where git can fetch it")
                    })?,
                })
            })
            .collect::<Result<_, String>>()?,
    };

    let token_configured = raw.token_env.is_some() || raw.token_file.is_some();
    let token = read_token("poll", (raw.token_env, raw.token_file), base_dir, sources)?;
    if token_configured {
        // A token goes only where no one on the network can read it.
        for target in &targets {
            let http = target.url.starts_with("http://") || target.url.starts_with("https://");
            if http && !is_https_or_loopback_http(&target.url) {
                return Err(format!(
                    "poll sends its token to {:?}: it must be https (plain http only to a loopback host)",
                    target.url
                ));
            }
        }
    }
    let username = raw
        .username
        .unwrap_or_else(|| DEFAULT_POLL_USERNAME.to_owned());
    if username.is_empty() || username.contains(':') || username.chars().any(char::is_control) {
        return Err("poll.username must be non-empty, without ':' or control characters".into());
    }
    Ok(PollConfig {
        every,
        timeout,
        sources: targets,
        username,
        token: token.map(Secret),
        ssh_key_file: raw.ssh_key_file.map(|p| resolve(base_dir, &p)),
    })
}

/// `url` as git fetches it: an `https://`, `http://`, `ssh://`, `git://`
/// or `file://` URL, an absolute path, or scp-like `user@host:path`.
/// Credentials in it are refused (they would reach logs and the journal;
/// the token belongs in `token_env` or `token_file`), and so is anything
/// git would read as an option or a transport helper (`ext::`).
fn git_url(key: &str, url: &str) -> Result<String, String> {
    if url.is_empty()
        || url.starts_with('-')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("{key} {url:?} is not a git URL"));
    }
    if url.starts_with('/') {
        return Ok(url.to_owned());
    }
    if let Some((scheme, _)) = url.split_once("://") {
        if !matches!(scheme, "https" | "http" | "ssh" | "git" | "file") {
            return Err(format!(
                "{key} {url:?}: git cannot be asked over {scheme}://"
            ));
        }
        // Not echoed: a URL that does not parse may still hold a token.
        let parsed = url::Url::parse(url).map_err(|_| format!("{key} is not a URL"))?;
        // A token in a query (`?private_token=`) is as much a credential.
        if parsed.password().is_some()
            || (scheme != "ssh" && !parsed.username().is_empty())
            || parsed.query().is_some()
            || parsed.fragment().is_some()
        {
            return Err(format!(
                "{key}: the URL holds credentials; keep them out of the config (poll.token_env or poll.token_file)"
            ));
        }
        return Ok(url.to_owned());
    }
    // scp-like: `[user@]host:path`, with no `::` (a transport helper).
    match url.split_once(':') {
        Some((host, path)) if !host.is_empty() && !path.is_empty() && !host.contains('/') && !path.starts_with(':') => {
            Ok(url.to_owned())
        }
        _ => Err(format!("{key} {url:?} is not a git URL (https://, ssh://, git://, file://, user@host:path or an absolute path)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_urls_git_fetches_without_credentials_are_polled() {
        for ok in [
            "https://git.example/o/app.git",
            "http://127.0.0.1:9418/app.git",
            "ssh://git@git.example/o/app.git",
            "git@github.com:o/app.git",
            "git://127.0.0.1/app.git",
            "file:///srv/git/app.git",
            "/srv/git/app.git",
        ] {
            assert_eq!(git_url("repository", ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "o/app",
            "https://user:t0ken@git.example/o/app.git",
            "https://t0ken@git.example/o/app.git",
            "https://git.example/o/app.git?private_token=t0ken",
            "https://git.example/o/app.git#t0ken",
            "ext::sh -c touch% /tmp/x",
            "ext::sh",
            "--upload-pack=touch /tmp/x",
            "ftp://git.example/app.git",
            "",
            "https://git.example/app .git",
        ] {
            let refused = git_url("repository", bad).unwrap_err();
            assert!(!refused.contains("t0ken"), "{refused}");
        }
    }
}
