//! Stage 2 for one `[[stacks]]` entry: its name, services, secrets and hook
//! token, action (command or http), profiles, and the name, argv and
//! environment checks they use. Its sources (repository, branch, tags,
//! image, paths) are passed through as written: the component judges them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::github::validate_github;
use super::poll::validate_poll;
use super::raw::{RawCommand, RawStack};
use super::secrets::{check_hook_token, check_secret_len, read_env, read_secret_file};
use super::server::{check_http_url, duration, non_zero, resolve};
use super::{
    ConfigError, DeployAction, ManualSetting, PingSetting, ProfileConfig, Result, Secret,
    SecretScope, SecretSource, ServiceConfig, StackConfig, DEFAULT_DEPLOY_TIMEOUT, DEFAULT_MANUAL,
    DEFAULT_QUERY_SERVICES, DEFAULT_SELECTABLE, DEFAULT_SKIP_MARKERS, MAX_STACK_NAME_LEN,
};

pub(super) fn validate_stack(
    index: usize,
    raw: RawStack,
    base_dir: &Path,
    sources: &dyn SecretSource,
    scope: SecretScope<'_>,
) -> Result<StackConfig> {
    let name = match raw.name {
        Some(name) => name,
        None => {
            return Err(ConfigError::invalid(format!(
                "stacks[{index}]: name is required"
            )))
        }
    };
    let err = |message: String| ConfigError::invalid(format!("stack {name:?}: {message}"));
    if !is_stack_name(&name) {
        return Err(err(format!(
            "name must be 1 to {MAX_STACK_NAME_LEN} characters of A-Z a-z 0-9 . _ -, \
             starting with a letter or digit"
        )));
    }

    // Which sources a stack or service sets, and whether its patterns,
    // repositories and images are valid, is the component's to judge
    // (`validate-stacks`, called by `crate::stacks::validate`).
    let mut services = Vec::with_capacity(raw.services.len());
    let mut service_names = BTreeSet::new();
    for (i, service) in raw.services.into_iter().enumerate() {
        let service_name = match service.name {
            Some(n) if !n.is_empty() => n,
            Some(_) => return Err(err(format!("services[{i}]: name is empty"))),
            None => return Err(err(format!("services[{i}]: name is required"))),
        };
        let serr = |message: String| err(format!("service {service_name:?}: {message}"));
        if !service_names.insert(service_name.clone()) {
            return Err(serr("name is used by more than one service".into()));
        }
        services.push(ServiceConfig {
            name: service_name,
            repository: service.repository,
            branch: service.branch,
            tags: service.tags,
            image: service.image,
            selectable: service.selectable.unwrap_or(DEFAULT_SELECTABLE),
        });
    }

    // Secrets: those in the file always; those named by environment
    // variable or file only for a stack in the command's scope (its own
    // errors surface when a command uses it).
    let read_secrets = scope.includes(&name);
    let secret_env = raw.secrets_env.unwrap_or_default();
    let has_secrets = raw.secrets.as_ref().is_some_and(|l| !l.0.is_empty())
        || !secret_env.is_empty()
        || raw.secrets_file.is_some();
    let mut secrets = Vec::new();
    for (i, secret) in raw
        .secrets
        .map(|l| l.0)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        if secret.is_empty() {
            return Err(err(format!("secrets[{i}] is empty")));
        }
        check_secret_len(&format!("secrets[{i}]"), &secret).map_err(&err)?;
        secrets.push(Secret(secret));
    }
    for var in secret_env.into_iter().filter(|_| read_secrets) {
        let value = read_env(sources, "secrets_env", &var).map_err(&err)?;
        check_secret_len(&format!("secrets_env: environment variable {var}"), &value)
            .map_err(&err)?;
        secrets.push(Secret(value));
    }
    if let Some(file) = raw.secrets_file.filter(|_| read_secrets) {
        let path = resolve(base_dir, &file);
        let text = read_secret_file(sources, "secrets_file", &path).map_err(&err)?;
        let before = secrets.len();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            check_secret_len(
                &format!("secrets_file {}: line {}", path.display(), n + 1),
                line,
            )
            .map_err(&err)?;
            secrets.push(Secret(line.to_string()));
        }
        if secrets.len() == before {
            return Err(err(format!(
                "secrets_file {} holds no secret",
                path.display()
            )));
        }
    }

    // Hook token: at most one of hook_token, hook_token_env, hook_token_file.
    let given = [
        raw.hook_token.is_some(),
        raw.hook_token_env.is_some(),
        raw.hook_token_file.is_some(),
    ];
    if given.iter().filter(|&&g| g).count() > 1 {
        return Err(err(
            "set only one of hook_token, hook_token_env and hook_token_file".into(),
        ));
    }
    let read_token = scope.includes_token(&name);
    let hook_token = if let Some(token) = raw.hook_token {
        Some(check_hook_token("hook_token", token.0).map_err(&err)?)
    } else if !read_token {
        None
    } else if let Some(var) = raw.hook_token_env {
        let value = read_env(sources, "hook_token_env", &var).map_err(&err)?;
        Some(check_hook_token("hook_token_env", value).map_err(&err)?)
    } else if let Some(file) = raw.hook_token_file {
        let path = resolve(base_dir, &file);
        let value = read_secret_file(sources, "hook_token_file", &path).map_err(&err)?;
        Some(check_hook_token("hook_token_file", value.trim().to_string()).map_err(&err)?)
    } else {
        None
    };

    let paths = raw.paths.unwrap_or_default();
    let skip_markers = raw
        .skip_markers
        .unwrap_or_else(|| DEFAULT_SKIP_MARKERS.iter().map(|s| s.to_string()).collect());
    non_empty_items("skip_markers", &skip_markers).map_err(&err)?;

    // The action: command xor http.
    let action = match (raw.command, raw.http) {
        (Some(_), Some(_)) => return Err(err("set either command or http, not both".into())),
        (None, None) => return Err(err("set command or http".into())),
        (Some(RawCommand(argv)), None) => {
            check_argv("command", &argv).map_err(&err)?;
            let workdir = match raw.workdir {
                Some(dir) if dir.as_os_str().is_empty() => {
                    return Err(err("workdir is empty".into()))
                }
                Some(dir) => resolve(base_dir, &dir),
                None => base_dir.to_path_buf(),
            };
            let env = raw.env.map(|m| m.0).unwrap_or_default();
            check_env("env", &env).map_err(&err)?;
            DeployAction::Command { argv, workdir, env }
        }
        (None, Some(http)) => {
            if raw.workdir.is_some() {
                return Err(err("workdir only applies to command, not http".into()));
            }
            if raw.env.is_some() {
                return Err(err("env only applies to command, not http".into()));
            }
            let Some(url) = http.url else {
                return Err(err("http.url is required".into()));
            };
            // The URL may carry a credential, so it is not echoed.
            check_http_url(&url.0, true).map_err(|why| err(format!("http.url {why}")))?;
            let headers = http.headers.map(|m| m.0).unwrap_or_default();
            for name in headers.keys() {
                if name.is_empty() || !name.bytes().all(is_header_name_byte) {
                    return Err(err(format!(
                        "http.headers: {name:?} is not a valid header name"
                    )));
                }
            }
            for (name, value) in &headers {
                if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
                    return Err(err(format!(
                        "http.headers: the value of {name:?} contains a line break or NUL"
                    )));
                }
            }
            DeployAction::Http {
                url: url.0,
                headers,
            }
        }
    };

    let timeout = duration("timeout", raw.timeout, DEFAULT_DEPLOY_TIMEOUT)
        .and_then(|d| non_zero("timeout", d))
        .map_err(&err)?;

    let mut profiles = BTreeMap::new();
    for (profile_name, profile) in raw.profiles {
        if !is_name(&profile_name) {
            return Err(err(format!(
                "profile {profile_name:?}: name must be 1 or more characters of A-Z a-z 0-9 . _ -"
            )));
        }
        let perr = |message: String| err(format!("profile {profile_name:?}: {message}"));
        let is_http = matches!(action, DeployAction::Http { .. });
        if is_http && profile.command.is_some() {
            return Err(perr(
                "command only applies to command stacks, not http".into(),
            ));
        }
        if is_http && profile.env.is_some() {
            return Err(perr("env only applies to command stacks, not http".into()));
        }
        let command = profile.command.map(|RawCommand(argv)| argv);
        if let Some(argv) = &command {
            check_argv("command", argv).map_err(perr)?;
        }
        let env = profile.env.map(|m| m.0).unwrap_or_default();
        check_env("env", &env).map_err(perr)?;
        profiles.insert(
            profile_name,
            ProfileConfig {
                command,
                env,
                selectable: profile.selectable.unwrap_or(DEFAULT_SELECTABLE),
            },
        );
    }

    let environment_url = match raw.environment_url {
        Some(url) => {
            check_http_url(&url, true)
                .map_err(|why| err(format!("environment_url {url:?} {why}")))?;
            Some(url)
        }
        None => None,
    };

    let github = match raw.github {
        Some(github) => Some(
            validate_github(&name, github, base_dir, read_secrets.then_some(sources))
                .map_err(&err)?,
        ),
        None => None,
    };

    let poll = match raw.poll {
        Some(poll) => {
            if poll.token.is_some() {
                return Err(err(
                    "poll.token is not allowed: keep the token out of the config file, use token_env or token_file".into(),
                ));
            }
            Some(
                validate_poll(
                    poll,
                    (raw.repository.as_deref(), raw.image.as_deref()),
                    &services,
                    base_dir,
                    read_secrets.then_some(sources),
                )
                .map_err(&err)?,
            )
        }
        None => None,
    };

    let manual = raw.manual.unwrap_or(DEFAULT_MANUAL);
    // Judged by what the file names, so a stack whose secrets were not
    // read is judged as when they are.
    if manual == ManualSetting::Signed && !has_secrets {
        return Err(err(
            "manual = \"signed\" needs secrets to sign manual triggers with".into(),
        ));
    }

    Ok(StackConfig {
        name: name.clone(),
        repository: raw.repository,
        branch: raw.branch,
        tags: raw.tags,
        image: raw.image,
        services,
        secrets,
        hook_token,
        ping: raw.ping.unwrap_or(PingSetting::Deploy),
        paths,
        skip_markers,
        action,
        timeout,
        profiles,
        environment_url,
        github,
        poll,
        manual,
        query_services: raw.query_services.unwrap_or(DEFAULT_QUERY_SERVICES),
        secrets_read: read_secrets,
        token_read: read_token,
    })
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A stack name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most
/// [`MAX_STACK_NAME_LEN`]. Names become file names (`logs/<stack>/`,
/// `locks/<stack>.lock`) and command-line values, so `.`, `..`, hidden
/// names and names that read as options (`-x`) are refused.
pub fn is_stack_name(name: &str) -> bool {
    name.len() <= MAX_STACK_NAME_LEN
        && name
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
        && is_name(name)
}

/// `[A-Za-z0-9._-]+`.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `owner/name`, both parts `[A-Za-z0-9._-]+`.
pub(super) fn is_owner_name(repo: &str) -> bool {
    matches!(repo.split_once('/'), Some((owner, name)) if is_name(owner) && is_name(name))
}

pub(super) fn non_empty_items(key: &str, items: &[String]) -> Result<(), String> {
    match items.iter().position(String::is_empty) {
        Some(i) => Err(format!("{key}[{i}] is empty")),
        None => Ok(()),
    }
}

fn check_argv(key: &str, argv: &[String]) -> Result<(), String> {
    match argv.first() {
        None => Err(format!("{key} is empty")),
        Some(program) if program.is_empty() => Err(format!("{key}[0] is empty")),
        Some(_) => match argv.iter().position(|arg| arg.contains('\0')) {
            Some(i) => Err(format!("{key}[{i}] contains a NUL character")),
            None => Ok(()),
        },
    }
}

/// Environment names must be non-empty without `=` or NUL; values (which may
/// be secret, so never echoed) must not contain NUL.
fn check_env(key: &str, env: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in env {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(format!("{key}: {name:?} is not a valid variable name"));
        }
        if value.contains('\0') {
            return Err(format!(
                "{key}: the value of {name} contains a NUL character"
            ));
        }
    }
    Ok(())
}

/// RFC 9110 `tchar`.
fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A `repository` setting as redeploy shows it (`config check`, the
/// dashboard): the credentials of a URL (`https://user:token@host/...`, or
/// a token written as the user of an `http(s)` URL) replaced by
/// `<redacted>`; an SSH URL's user alone (`ssh://git@host/...`) and every
/// other setting as written. The component quotes settings in its reasons
/// by the same rule.
pub fn shown_setting(text: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    let Some((scheme, rest)) = text.split_once("://") else {
        return Cow::Borrowed(text);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return Cow::Borrowed(text);
    };
    // `git+https://` and the like are web URLs too.
    let transport = scheme.rsplit('+').next().unwrap_or(scheme);
    let web = transport.eq_ignore_ascii_case("http") || transport.eq_ignore_ascii_case("https");
    if !web && !rest[..at].contains(':') {
        return Cow::Borrowed(text);
    }
    Cow::Owned(format!("{scheme}://<redacted>{}", &rest[at..]))
}

#[cfg(test)]
mod tests {
    use super::shown_setting;

    #[test]
    fn a_repository_url_is_shown_without_its_credentials() {
        for (setting, shown) in [
            (
                "https://bot:s3cret@git.example.com/acme/app.git",
                "https://<redacted>@git.example.com/acme/app.git",
            ),
            (
                "https://ghp_t0ken@github.com/acme/app",
                "https://<redacted>@github.com/acme/app",
            ),
            (
                "ssh://git:pw@host/acme/app.git",
                "ssh://<redacted>@host/acme/app.git",
            ),
            (
                "git+https://t0ken@host/a/b",
                "git+https://<redacted>@host/a/b",
            ),
        ] {
            assert_eq!(shown_setting(setting), shown);
        }
        for kept in [
            "acme/app",
            "git@github.com:acme/app.git",
            "ssh://git@host/acme/app",
            "https://host/a@b",
        ] {
            assert_eq!(shown_setting(kept), kept);
        }
    }
}
