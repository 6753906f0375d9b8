//! Stage 2 for a stack's `[stacks.poll]` table: polling its git
//! repositories for new commits and its images' registries for new
//! digests, for senders that cannot call the hook.

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
    /// How often each repository is asked for its refs, and each image's
    /// registry for its tag's digest (each wait jittered by up to a tenth
    /// either way).
    pub every: Duration,
    /// How long one look may take before it is abandoned as failed.
    pub timeout: Duration,
    /// What is polled: each repository and each image the stack or its
    /// services follow.
    pub sources: Vec<PollTarget>,
    /// The user name sent with `token` over HTTPS (to git, or to a
    /// registry or its token server).
    pub username: String,
    /// An HTTPS token (from `token_env` or `token_file`), sent as HTTP
    /// Basic credentials; `None` when not configured or not read.
    pub token: Option<Secret>,
    /// An SSH private key for `ssh://` and `host:path` repositories.
    pub ssh_key_file: Option<PathBuf>,
    /// The hosts `token` may be sent to (`token_hosts`, or its default):
    /// a source on any other host is polled anonymously. See
    /// [`sends_token_to`] and [`realm_gets_token`].
    pub token_hosts: Vec<TokenHost>,
}

impl PollConfig {
    /// Whether the token goes to `url` (a git repository's or a
    /// registry's): whether its host is in `token_hosts`.
    pub fn sends_token_to(&self, url: &url::Url) -> bool {
        self.token.is_some() && sends_token_to(&self.token_hosts, url)
    }

    /// Whether the token goes to the token server at `realm` that the
    /// registry at `registry` named in its `Bearer` challenge.
    pub fn realm_gets_token(&self, registry: &url::Url, realm: &url::Url) -> bool {
        self.token.is_some() && realm_gets_token(&self.token_hosts, registry, realm)
    }
}

/// One `token_hosts` entry: a host name or IP address, lowercase, and the
/// port, if the entry names one (none: the URL's default port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenHost {
    /// The host as a URL serializes it (`ghcr.io`, `127.0.0.1`, `[::1]`).
    pub host: String,
    /// The port named, if any.
    pub port: Option<u16>,
}

impl std::fmt::Display for TokenHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

impl TokenHost {
    /// Reads a bare `host[:port]` (a DNS name, an IPv4 address or a
    /// bracketed IPv6 address): nothing else, so no scheme, user, path,
    /// query, fragment or space. `None` when it is not one.
    pub fn parse(text: &str) -> Option<TokenHost> {
        let text = text.to_ascii_lowercase();
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let (inside, after) = rest.split_once(']')?;
                let port = match after {
                    "" => None,
                    _ => Some(after.strip_prefix(':')?),
                };
                if !inside
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
                {
                    return None;
                }
                (&text[..inside.len() + 2], port)
            }
            None => match text.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (text.as_str(), None),
            },
        };
        let port = match port {
            None => None,
            Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()) => {
                Some(p.parse::<u16>().ok().filter(|p| *p != 0)?)
            }
            Some(_) => return None,
        };
        if !host.starts_with('[') {
            let label = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            };
            if host.len() > 253 || !host.split('.').all(label) {
                return None;
            }
        }
        let host = match url::Host::parse(host).ok()? {
            url::Host::Domain(d) => d,
            ip => ip.to_string(),
        };
        Some(TokenHost { host, port })
    }

    /// Whether `url`'s host and port are this entry's (no port named: the
    /// URL's default port).
    fn matches(&self, url: &url::Url) -> bool {
        url.host_str() == Some(self.host.as_str())
            && match self.port {
                None => url.port().is_none(),
                Some(port) => url.port_or_known_default() == Some(port),
            }
    }

    /// The entry naming `url`'s host (and its port, unless the default).
    fn of(url: &url::Url) -> Option<TokenHost> {
        Some(TokenHost {
            host: url.host_str()?.to_owned(),
            port: url.port(),
        })
    }
}

/// Whether a source at `url` gets the token: its host (and port) is one
/// of `hosts`.
pub fn sends_token_to(hosts: &[TokenHost], url: &url::Url) -> bool {
    hosts.iter().any(|h| h.matches(url))
}

/// Whether the token server at `realm`, named by the `Bearer` challenge of
/// the registry at `registry`, gets the token: only when the registry's
/// own host is listed, and then only a realm on the registry's host name
/// or address (any port), on a listed host, or on a DNS name sharing the registry's
/// parent domain when that parent has at least two labels
/// (`registry-1.docker.io` to `auth.docker.io`, never `ghcr.io` to
/// another `.io`). Anything else is asked anonymously.
pub fn realm_gets_token(hosts: &[TokenHost], registry: &url::Url, realm: &url::Url) -> bool {
    if !sends_token_to(hosts, registry) {
        return false;
    }
    if sends_token_to(hosts, realm) {
        return true;
    }
    // The registry's own host name (or address), on any port.
    if registry.host_str().is_some() && registry.host_str() == realm.host_str() {
        return true;
    }
    // A DNS name in the registry's parent domain (no address has one).
    let (Some(url::Host::Domain(own)), Some(url::Host::Domain(theirs))) =
        (registry.host(), realm.host())
    else {
        return false;
    };
    let parent = |d: &str| d.split_once('.').map(|(_, p)| p.to_owned());
    match parent(own) {
        Some(p) if p.split('.').count() >= 2 => {
            theirs == p || parent(theirs).as_deref() == Some(p.as_str())
        }
        _ => false,
    }
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

/// One source a stack polls: a git repository or an image tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PollTarget {
    /// The repository (or image, without its tag) as the stack or service
    /// names it: what the component matches a poll's change against.
    pub repository: String,
    /// The source's name in the journal, logs and metrics: where git asks
    /// for its refs (`repository` itself, or `poll.url` for a stack that
    /// names its repository `owner/name`), or for an image
    /// `registry/name:tag` ([`ImageReference::source`]).
    pub url: String,
    /// What is asked: git for refs, or a registry for a tag's digest.
    pub kind: PollKind,
}

/// What a polled source is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollKind {
    /// A git repository, asked with `git ls-remote`.
    Git,
    /// An image tag, asked at its registry for its manifest digest.
    Image(ImageReference),
}

/// Docker Hub's registry API host: where `docker pull` sends a name
/// without a registry (`nginx`, `owner/app`) and one naming `docker.io`.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

/// The tag a reference without one means, as `docker pull` reads it.
pub const DEFAULT_IMAGE_TAG: &str = "latest";

/// The longest tag (the Distribution reference grammar's 128 characters).
const MAX_TAG_CHARS: usize = 128;

/// An image reference as polling asks its registry about it, read by
/// Docker's rules: a first path component with a `.` or `:`, or
/// `localhost`, is the registry host, else the image is on Docker Hub
/// (`library/` before a one-component name); the tag defaults to
/// `latest`. A pinned reference (`@sha256:...`) never changes, so it is
/// not polled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageReference {
    /// The registry's API host (and port): `registry-1.docker.io`,
    /// `ghcr.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// The repository name in the registry's API (`library/nginx`).
    pub name: String,
    /// The tag polled.
    pub tag: String,
    /// `https`, or `http` for a loopback registry (Docker's own rule for
    /// local registries): nothing else is asked over plain http.
    pub scheme: &'static str,
}

impl ImageReference {
    /// Reads `image` (a stack's or service's `image`) by Docker's rules;
    /// the error says why it cannot be polled.
    pub fn parse(image: &str) -> Result<ImageReference, String> {
        let text = image.trim();
        if text.contains('@') {
            return Err(format!(
                "image {image:?} is pinned by digest: a pinned image never changes, so it cannot be polled (follow a tag to poll it)"
            ));
        }
        let (host, rest) = match text.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (Some(first), rest)
            }
            _ => (None, text),
        };
        let (path, tag) = match rest.rsplit_once(':') {
            Some((path, tag)) => (path, tag),
            None => (rest, DEFAULT_IMAGE_TAG),
        };
        let not_image = || format!("image {image:?} is not an image reference");
        if !is_image_tag(tag) {
            return Err(not_image());
        }
        let path = path.to_ascii_lowercase();
        if !path.split('/').all(is_path_component) {
            return Err(not_image());
        }
        let (registry, name) = match host {
            None | Some("docker.io" | "index.docker.io" | "registry-1.docker.io") => {
                let name = if path.contains('/') {
                    path
                } else {
                    format!("library/{path}")
                };
                (DOCKER_HUB_REGISTRY.to_owned(), name)
            }
            Some(host) => {
                // A bare `host[:port]` and nothing else: a `#`, `?`, `@` or
                // `/` would make the host contacted differ from the one
                // the source is named by.
                if TokenHost::parse(host).is_none() {
                    return Err(not_image());
                }
                (host.to_ascii_lowercase(), path)
            }
        };
        let scheme = if is_loopback_host(&registry) {
            "http"
        } else {
            "https"
        };
        Ok(ImageReference {
            registry,
            name,
            tag: tag.to_owned(),
            scheme,
        })
    }

    /// The registry's root URL: `<scheme>://<registry>/`.
    pub fn registry_url(&self) -> Option<url::Url> {
        url::Url::parse(&format!("{}://{}/", self.scheme, self.registry)).ok()
    }

    /// The source's name: `registry/name:tag`.
    pub fn source(&self) -> String {
        format!("{}/{}:{}", self.registry, self.name, self.tag)
    }

    /// The manifest's URL: `<scheme>://<registry>/v2/<name>/manifests/<tag>`.
    pub fn manifest_url(&self) -> String {
        format!(
            "{}://{}/v2/{}/manifests/{}",
            self.scheme, self.registry, self.name, self.tag
        )
    }
}

/// Whether `host` (`host[:port]`) is `localhost`, in `127.0.0.0/8` or `::1`.
fn is_loopback_host(host: &str) -> bool {
    url::Url::parse(&format!("http://{host}/"))
        .ok()
        .and_then(|u| {
            u.host().map(|h| match h {
                url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
                url::Host::Ipv4(ip) => ip.is_loopback(),
                url::Host::Ipv6(ip) => ip.is_loopback(),
            })
        })
        .unwrap_or(false)
}

/// A tag: a word character, then up to 127 word characters, `.` or `-`.
fn is_image_tag(tag: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = tag.as_bytes();
    b.len() <= MAX_TAG_CHARS
        && b.first().is_some_and(|c| word(*c))
        && b.iter().all(|c| word(*c) || matches!(c, b'.' | b'-'))
}

/// A repository path component: lower-case letters and digits joined by
/// `.`, `_`, `__` or runs of `-`.
fn is_path_component(part: &str) -> bool {
    let b = part.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !b.first().is_some_and(alnum) || !b.last().is_some_and(alnum) {
        return false;
    }
    b.split(alnum).all(|sep| {
        sep.is_empty()
            || sep == b"."
            || sep == b"_"
            || sep == b"__"
            || sep.iter().all(|c| *c == b'-')
    })
}

/// `image` without its tag, as the stack names it: what the component
/// matches an image poll against.
fn without_tag(image: &str) -> &str {
    let text = image.trim();
    let last = text.rfind('/').map_or(0, |i| i + 1);
    match text[last..].rfind(':') {
        Some(i) => &text[..last + i],
        None => text,
    }
}

/// Validates `[stacks.poll]` of a stack following `repository` and
/// `image` (and `services`); its token is read from `sources`, or not at
/// all when the stack's secrets are not read (`None`).
pub(super) fn validate_poll(
    raw: RawPoll,
    (repository, image): (Option<&str>, Option<&str>),
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

    // Each repository and each image followed, once.
    let mut followed: Vec<&str> = repository.into_iter().collect();
    let mut images: Vec<&str> = image.into_iter().collect();
    for service in services {
        if let Some(r) = service.repository.as_deref() {
            if !followed.contains(&r) {
                followed.push(r);
            }
        }
        if let Some(i) = service.image.as_deref() {
            if !images.contains(&i) {
                images.push(i);
            }
        }
    }
    if followed.is_empty() && images.is_empty() {
        return Err(
            "poll asks git repositories for new commits and registries for new image digests: the stack and its services follow neither"
                .into(),
        );
    }
    let mut targets = match raw.url {
        Some(url) if followed.len() == 1 => vec![PollTarget {
            repository: followed[0].to_owned(),
            url: git_url("poll.url", &url)?,
            kind: PollKind::Git,
        }],
        Some(_) if followed.is_empty() => {
            return Err(
                "poll.url names a git repository, but the stack follows none (an image is asked at its registry)".into(),
            )
        }
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
                    kind: PollKind::Git,
                })
            })
            .collect::<Result<Vec<_>, String>>()?,
    };
    for image in images {
        let reference = ImageReference::parse(image).map_err(|why| format!("poll: {why}"))?;
        let url = reference.source();
        if !targets.iter().any(|t| t.url == url) {
            targets.push(PollTarget {
                repository: without_tag(image).to_owned(),
                url,
                kind: PollKind::Image(reference),
            });
        }
    }

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
    let token_hosts = token_hosts(raw.token_hosts, &targets, token_configured)?;
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
        token_hosts,
    })
}

/// Docker Hub's names for its registry host, as `token_hosts` may spell
/// it.
const DOCKER_HUB_SPELLINGS: [&str; 2] = ["docker.io", "index.docker.io"];

/// The validated `token_hosts`, or its default for `targets`: the host of
/// the stack's https (or http) git repositories, else the one registry of
/// its images. A token with several of either and no `token_hosts` is an
/// error: the token would go to hosts the stack does not say it is for.
fn token_hosts(
    raw: Option<Vec<String>>,
    targets: &[PollTarget],
    token_configured: bool,
) -> Result<Vec<TokenHost>, String> {
    if let Some(entries) = raw {
        let mut hosts = Vec::new();
        for (n, entry) in entries.iter().enumerate() {
            // Not echoed: a URL pasted here may hold a credential.
            let mut host = TokenHost::parse(entry).ok_or_else(|| {
                format!(
                    "poll.token_hosts[{n}] is not a bare host name (like \"ghcr.io\" or \"registry.example:5000\"): no scheme, user, path, '#', '?' or spaces"
                )
            })?;
            if host.port.is_none() && DOCKER_HUB_SPELLINGS.contains(&host.host.as_str()) {
                host.host = DOCKER_HUB_REGISTRY.to_owned();
            }
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        return Ok(hosts);
    }
    let distinct = |urls: Vec<url::Url>| {
        let mut hosts: Vec<TokenHost> = Vec::new();
        for host in urls.iter().filter_map(TokenHost::of) {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    };
    // git sends the token only over http(s); an ssh, git:// or file
    // repository never carries it.
    let git = distinct(
        targets
            .iter()
            .filter(|t| t.kind == PollKind::Git)
            .filter_map(|t| url::Url::parse(&t.url).ok())
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .collect(),
    );
    let registries = distinct(
        targets
            .iter()
            .filter_map(|t| match &t.kind {
                PollKind::Image(image) => image.registry_url(),
                PollKind::Git => None,
            })
            .collect(),
    );
    let (what, hosts) = if git.is_empty() {
        ("registries", registries)
    } else {
        ("git hosts", git)
    };
    if hosts.len() > 1 && token_configured {
        let names: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        return Err(format!(
            "poll's token would go to several {what} ({}): list the hosts it is for in poll.token_hosts (the others are polled anonymously)",
            names.join(", ")
        ));
    }
    Ok(hosts)
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
mod tests;
