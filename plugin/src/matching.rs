//! Matching rules: branch and tag globs, repository identities, images.

use glob::{MatchOptions, Pattern};

use crate::error::PluginError;
use crate::model::{ImagePush, Repository};

/// Glob options for refs and paths: `*` and `?` stop at `/`, `**` crosses it,
/// and matching is case-sensitive, as git ref names are.
const GLOB_OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// A compiled branch, tag or path glob.
#[derive(Clone, Debug)]
pub struct Glob {
    text: String,
    pattern: Pattern,
}

impl Glob {
    /// Compiles `text`; `what` names it in the error (`stack "web": branch
    /// pattern`), written only when there is one.
    pub fn new(text: &str, what: impl FnOnce() -> String) -> Result<Glob, PluginError> {
        if text.trim().is_empty() {
            return Err(PluginError::InvalidStack(format!("{} is empty", what())));
        }
        let pattern = Pattern::new(text).map_err(|e| {
            PluginError::InvalidStack(format!(
                "{} \"{text}\" is not a valid glob: {}",
                what(),
                e.msg
            ))
        })?;
        Ok(Glob {
            text: text.to_string(),
            pattern,
        })
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.pattern.matches_with(name, GLOB_OPTIONS)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern is a plain name (no glob characters), so it names
    /// one branch a ping or manual trigger can deploy.
    pub fn literal(&self) -> Option<&str> {
        (!self.text.contains(['*', '?', '[', ']'])).then_some(self.text.as_str())
    }
}

/// Whether a path glob matches a changed file. A pattern ending in `/`
/// matches everything below that directory.
pub fn path_matches(pattern: &Glob, file: &str) -> bool {
    match pattern.as_str().strip_suffix('/') {
        Some(dir) => file.starts_with(dir) && file[dir.len()..].starts_with('/'),
        None => pattern.matches(file),
    }
}

/// A repository identity reduced for comparison: an optional host and a
/// lowercase path without `.git`, or an absolute local path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoKey {
    host: Option<String>,
    path: String,
}

impl RepoKey {
    /// Parses `owner/name`, `https://host/owner/name(.git)`,
    /// `ssh://git@host:port/owner/name.git`, `git@host:owner/name.git`, or an
    /// absolute path (`/srv/git/app.git`, compared as written).
    pub fn parse(text: &str) -> Option<RepoKey> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        if text.starts_with('/') {
            let path = text.trim_end_matches('/');
            return Some(RepoKey {
                host: None,
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.to_string()
                },
            });
        }
        let (host, path) = if let Some((_, rest)) = text.split_once("://") {
            // scheme://[user@]host[:port]/path
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            let host = host.split(':').next().unwrap_or(host);
            (Some(host.to_ascii_lowercase()), path)
        } else if let Some((authority, path)) =
            text.split_once(':').filter(|(a, _)| a.contains('@'))
        {
            // scp-like: git@host:owner/name.git
            let host = authority.rsplit('@').next().unwrap_or(authority);
            (Some(host.to_ascii_lowercase()), path)
        } else {
            (None, text)
        };
        let mut path = path.trim_matches('/').to_ascii_lowercase();
        if let Some(stripped) = path.strip_suffix(".git") {
            path = stripped.to_string();
        }
        // Bitbucket Server's HTTP clone URLs name the repository under
        // /scm/: read so only where what follows is the repository's own
        // name (`RepoKey::without_scm`); on other forges `scm` is an owner
        // like any other.
        if path.is_empty() {
            return None;
        }
        Some(RepoKey { host, path })
    }

    /// Parses a stack's `repository` setting: as [`RepoKey::parse`], but
    /// refused when it holds whitespace or control characters, or when it is
    /// neither a URL, an absolute path nor at least `owner/name` (a bare
    /// `name` names no forge repository). Any owner a forge allows is
    /// accepted, including a Bitbucket Server personal project (`~user/repo`).
    pub fn setting(text: &str) -> Option<RepoKey> {
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return None;
        }
        let key = RepoKey::parse(text)?;
        let named = key.host.is_some() || key.path.starts_with('/') || key.path.contains('/');
        named.then_some(key)
    }

    /// This key of one of `full_name`'s URLs without the `scm/` that
    /// Bitbucket Server's HTTP clone URLs put before the repository
    /// (`https://host/scm/PRJ/repo.git` is also `https://host/PRJ/repo`),
    /// when what follows it is `full_name` itself. A GitLab project
    /// `scm/acme/web` has none: its URL's path is its full name, not `scm/`
    /// and its full name.
    fn without_scm(&self, full_name: &str) -> Option<RepoKey> {
        let rest = self.path.strip_prefix("scm/")?;
        let own = RepoKey::parse(full_name)?;
        (self.host.is_some() && own.path == rest).then(|| RepoKey {
            host: self.host.clone(),
            path: rest.to_string(),
        })
    }

    fn matches(&self, other: &RepoKey) -> bool {
        let hosts_agree = match (&self.host, &other.host) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        hosts_agree && self.path == other.path
    }
}

/// A `repository` setting as a reason may quote it: the credentials of a
/// URL (`https://user:token@host/...`, or a token written as the user of
/// an `http(s)` URL, `git+https` too) replaced by `<redacted>`. An SSH URL's user alone
/// (`ssh://git@host/...`) and every other setting are quoted as written.
/// Reasons reach the sender of a delivery and the journal.
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

/// Whether a stack's `repository` setting names the repository of a delivery:
/// its full name or any of its URLs, case-insensitive.
///
/// When the setting names a host (a URL) and the delivery gives URLs with
/// hosts, only those URLs count, so `https://gitlab.com/o/r` does not match
/// GitHub's `o/r`.
pub fn repository_matches(wanted: &RepoKey, repo: &Repository) -> bool {
    let urls = repo.urls.iter().filter_map(|url| RepoKey::parse(url));
    let candidates: Vec<RepoKey> = RepoKey::parse(&repo.full_name)
        .into_iter()
        .chain(urls.flat_map(|key| {
            let bare = key.without_scm(&repo.full_name);
            std::iter::once(key).chain(bare)
        }))
        .collect();
    let hosted = wanted.host.is_some() && candidates.iter().any(|c| c.host.is_some());
    candidates
        .iter()
        .filter(|c| !hosted || c.host.is_some())
        .any(|candidate| wanted.matches(candidate))
}

/// An image reference reduced for comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageKey {
    registry: Option<String>,
    /// The repository path as written (lowercase, no slashes around). Docker
    /// Hub's `library/` is added only when comparing, once the registry is
    /// known: `app` is `library/app` on Docker Hub but `app` elsewhere.
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a pushed image is not the one an [`ImageKey`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageMismatch {
    /// Another registry, or the push names none and the key does.
    Registry,
    /// Another repository path.
    Repository,
    /// The key names a digest the push does not carry.
    Digest,
    /// The key names a tag and the push another one.
    Tag,
    /// The key names a tag and the push none (a push by digest): a digest
    /// alone does not say which tag, if any, points at it.
    Untagged,
}

/// Docker Hub's names for itself.
const DOCKER_HUB_HOSTS: &[&str] = &[
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
    "hub.docker.com",
];

fn canonical_registry(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    if DOCKER_HUB_HOSTS.contains(&host.as_str()) {
        "docker.io".into()
    } else {
        host
    }
}

fn canonical_path(registry: Option<&str>, path: &str) -> String {
    let path = path.trim_matches('/').to_ascii_lowercase();
    // Docker Hub's official images live under `library/`.
    if registry.is_none_or(|r| r == "docker.io") && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    }
}

/// Longest image tag the Distribution reference grammar allows.
const MAX_TAG_CHARS: usize = 128;

/// A registry host: DNS labels of letters, digits and inner `-` joined by
/// `.`, or a bracketed IPv6 address, with an optional numeric port of at
/// most five digits.
pub(crate) fn is_registry_host(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
        _ => (text, None),
    };
    if port.is_some_and(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// One path component (lower case): runs of `[a-z0-9]` joined by one of
/// `.`, `_`, `__` or any number of `-`.
fn is_path_component(text: &str) -> bool {
    let b = text.as_bytes();
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

/// A tag: a word character, then up to 127 word characters, `.` or `-`.
pub(crate) fn is_tag(text: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = text.as_bytes();
    b.len() <= MAX_TAG_CHARS
        && b.first().is_some_and(|c| word(*c))
        && b.iter().all(|c| word(*c) || matches!(c, b'.' | b'-'))
}

/// A digest as the OCI image specification writes it: `algorithm:encoded`,
/// the algorithm `[a-z0-9]+` parts joined by `+`, `.`, `_` or `-`, the
/// encoded part `[a-zA-Z0-9=_-]+`.
pub(crate) fn is_digest(text: &str) -> bool {
    let Some((algorithm, encoded)) = text.split_once(':') else {
        return false;
    };
    let part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    };
    algorithm.split(['+', '.', '_', '-']).all(part)
        && !encoded.is_empty()
        && encoded
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'=' | b'_' | b'-'))
}

impl ImageKey {
    /// Parses a stack's image setting: `name`, `owner/name`, `owner/name:tag`,
    /// `host[:port]/owner/name[:tag]` (a first segment with a `.` or `:` or
    /// `localhost` is a registry host), each optionally followed by
    /// `@digest`, in the grammar of the Distribution project's references:
    /// path components of letters and digits joined by `.`, `_`, `__` or
    /// runs of `-`; a tag of word characters, `.` and `-` (at most 128, not
    /// starting with `.` or `-`); a digest `algorithm:encoded` as the OCI
    /// image specification writes it. Letter case in the path is ignored
    /// (registries store it lower case). `None` for anything else, such as
    /// text with spaces or an empty digest.
    pub fn parse(text: &str) -> Option<ImageKey> {
        let text = text.trim();
        let (text, digest) = match text.split_once('@') {
            Some((name, digest)) if is_digest(digest) => (name, Some(digest.to_string())),
            Some(_) => return None,
            None => (text, None),
        };
        let (registry, rest) = match text.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                if !is_registry_host(first) {
                    return None;
                }
                (Some(canonical_registry(first)), rest)
            }
            _ => (None, text),
        };
        let (path, tag) = match rest.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => {
                if !is_tag(t) {
                    return None;
                }
                (p, Some(t.to_string()))
            }
            _ => (rest, None),
        };
        let path = path.to_ascii_lowercase();
        if !path.split('/').all(is_path_component) {
            return None;
        }
        Some(ImageKey {
            registry,
            path,
            tag,
            digest,
        })
    }

    /// The tag this key follows, when it names one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Whether a pushed image is this one (see [`ImageKey::compare`]).
    pub fn matches(&self, push: &ImagePush) -> bool {
        self.compare(push).is_ok()
    }

    /// Compares a pushed image with this key: the same path, the same
    /// registry when this key names one (a key without a host follows the
    /// path on any registry), the same digest when this key names one (its
    /// tag, as in `docker pull name:tag@digest`, is then not compared), else
    /// the same tag when this key names one.
    pub fn compare(&self, push: &ImagePush) -> Result<(), ImageMismatch> {
        let push_registry = push.registry.as_deref().map(canonical_registry);
        match (&self.registry, &push_registry) {
            (Some(want), Some(got)) if want != got => return Err(ImageMismatch::Registry),
            (Some(_), None) => return Err(ImageMismatch::Registry),
            _ => {}
        }
        let registry = push_registry.as_deref().or(self.registry.as_deref());
        if canonical_path(registry, &push.repository) != canonical_path(registry, &self.path) {
            return Err(ImageMismatch::Repository);
        }
        if let Some(digest) = &self.digest {
            return match &push.digest {
                Some(pushed) if pushed.eq_ignore_ascii_case(digest) => Ok(()),
                _ => Err(ImageMismatch::Digest),
            };
        }
        match (&self.tag, &push.tag) {
            (None, _) => Ok(()),
            (Some(want), Some(got)) if want == got => Ok(()),
            (Some(_), Some(_)) => Err(ImageMismatch::Tag),
            (Some(_), None) => Err(ImageMismatch::Untagged),
        }
    }
}

/// An image name and tag as polling names them (`ghcr.io/acme/api` and
/// `latest`): the registry host when the name starts with one, and the
/// repository path, by the rules of [`ImageKey::parse`] (the host
/// canonical, the path lower case). `None` when the name carries a tag or
/// digest of its own, or either is not in the reference grammar.
pub fn polled_image(name: &str, tag: &str) -> Option<(Option<String>, String)> {
    if name.contains('@') || name.trim() != name || !is_tag(tag) {
        return None;
    }
    let key = ImageKey::parse(&format!("{name}:{tag}"))?;
    (key.tag.as_deref() == Some(tag) && key.digest.is_none()).then_some((key.registry, key.path))
}

/// `registry/repository:tag` for a pushed image, for deploy events; a push
/// without a tag is named by its digest, `registry/repository@digest`, so
/// that what deploys is the image pushed and not `latest`.
pub fn image_reference(push: &ImagePush) -> String {
    let mut s = String::new();
    if let Some(r) = &push.registry {
        s.push_str(r);
        s.push('/');
    }
    s.push_str(&push.repository);
    match (&push.tag, &push.digest) {
        (Some(t), _) => {
            s.push(':');
            s.push_str(t);
        }
        (None, Some(d)) => {
            s.push('@');
            s.push_str(d);
        }
        (None, None) => {}
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_is_quoted_without_the_credentials_of_its_url() {
        for (setting, shown) in [
            (
                "https://bot:glpat-s3cret@git.example.com/acme/app.git",
                "https://<redacted>@git.example.com/acme/app.git",
            ),
            (
                "https://ghp_t0ken@github.com/acme/app",
                "https://<redacted>@github.com/acme/app",
            ),
            (
                "HTTP://t0ken:x-oauth-basic@host/a/b",
                "HTTP://<redacted>@host/a/b",
            ),
            (
                "ssh://git:pw@host/acme/app.git",
                "ssh://<redacted>@host/acme/app.git",
            ),
            (
                "git+https://ghp_t0ken@github.com/acme/app",
                "git+https://<redacted>@github.com/acme/app",
            ),
        ] {
            assert_eq!(shown_setting(setting), shown, "{setting}");
        }
        for kept in [
            "acme/app",
            "git@github.com:acme/app.git",
            "ssh://git@host:2222/acme/app.git",
            "https://host/a@b",
            "/srv/git/app.git",
        ] {
            assert_eq!(shown_setting(kept), kept);
        }
    }

    fn glob(p: &str) -> Glob {
        Glob::new(p, || "branch pattern".into()).unwrap()
    }

    #[test]
    fn exact_branch_matches_only_itself() {
        assert!(glob("main").matches("main"));
        assert!(!glob("main").matches("main2"));
        assert!(!glob("main").matches("Main"));
        assert!(!glob("main").matches("feature/main"));
    }

    #[test]
    fn star_stops_at_slash_and_double_star_crosses_it() {
        assert!(glob("release/*").matches("release/1.0"));
        assert!(!glob("release/*").matches("release/1.0/hotfix"));
        assert!(!glob("release/*").matches("release"));
        assert!(glob("release/**").matches("release/1.0/hotfix"));
        assert!(glob("v?.*").matches("v1.2"));
        assert!(glob("[ab]*").matches("beta"));
        assert!(!glob("[ab]*").matches("gamma"));
    }

    #[test]
    fn invalid_glob_names_the_pattern() {
        let err = Glob::new("release/[", || "stack \"web\": branch pattern".into()).unwrap_err();
        assert!(
            err.to_string()
                .contains("stack \"web\": branch pattern \"release/[\" is not a valid glob"),
            "{err}"
        );
        assert!(Glob::new("", || "branch pattern".into()).is_err());
    }

    #[test]
    fn literal_detects_plain_names() {
        assert_eq!(glob("main").literal(), Some("main"));
        assert_eq!(glob("release/*").literal(), None);
    }

    #[test]
    fn path_filters() {
        let g = Glob::new("docs/", || "path".into()).unwrap();
        assert!(path_matches(&g, "docs/index.md"));
        assert!(!path_matches(&g, "docsite/x"));
        let g = Glob::new("src/**/*.rs", || "path".into()).unwrap();
        assert!(path_matches(&g, "src/a/b.rs"));
        assert!(!path_matches(&g, "tests/a.rs"));
    }

    fn repo(full: &str, urls: &[&str]) -> Repository {
        Repository {
            full_name: full.into(),
            urls: urls.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn repositories_match_case_insensitively_and_by_url() {
        let r = repo(
            "Octocat/Hello-World",
            &[
                "https://github.com/Octocat/Hello-World.git",
                "git@github.com:Octocat/Hello-World.git",
            ],
        );
        for wanted in [
            "octocat/hello-world",
            "OCTOCAT/Hello-World",
            "https://github.com/octocat/hello-world",
            "https://github.com/octocat/hello-world.git",
            "git@github.com:octocat/Hello-World.git",
            "ssh://git@github.com/octocat/hello-world.git",
        ] {
            assert!(
                repository_matches(&RepoKey::parse(wanted).unwrap(), &r),
                "{wanted}"
            );
        }
        for wanted in [
            "octocat/hello",
            "other/hello-world",
            "https://gitlab.com/octocat/hello-world",
        ] {
            assert!(
                !repository_matches(&RepoKey::parse(wanted).unwrap(), &r),
                "{wanted}"
            );
        }
    }

    #[test]
    fn a_group_named_scm_is_not_dropped_from_another_forges_path() {
        // A GitLab project `scm/acme/web` (a group `scm`, a subgroup
        // `acme`) is not the repository `acme/web` on any host.
        let r = repo(
            "scm/acme/web",
            &[
                "https://gitlab.example.com/scm/acme/web",
                "https://gitlab.example.com/scm/acme/web.git",
            ],
        );
        for wanted in ["acme/web", "https://gitlab.example.com/acme/web.git"] {
            assert!(
                !repository_matches(&RepoKey::parse(wanted).unwrap(), &r),
                "{wanted}"
            );
        }
        assert!(repository_matches(
            &RepoKey::parse("https://gitlab.example.com/scm/acme/web").unwrap(),
            &r
        ));
    }

    #[test]
    fn local_paths_compare_as_written() {
        let r = repo("/srv/git/app.git", &[]);
        assert!(repository_matches(
            &RepoKey::parse("/srv/git/app.git/").unwrap(),
            &r
        ));
        assert!(!repository_matches(
            &RepoKey::parse("/srv/git/other.git").unwrap(),
            &r
        ));
    }

    fn image(registry: Option<&str>, repository: &str, tag: Option<&str>) -> ImagePush {
        ImagePush {
            registry: registry.map(str::to_string),
            repository: repository.into(),
            tag: tag.map(str::to_string),
            digest: None,
            pusher: None,
            callback_url: None,
            sent_at_ms: None,
        }
    }

    /// A stack's image setting follows the Distribution reference grammar;
    /// the `config` fuzz target found `name@` (an empty digest) accepted by
    /// a copy of this rule in the host while this parser refused it.
    #[test]
    fn image_settings_follow_the_reference_grammar() {
        let key =
            ImageKey::parse("Registry.Example.com:5000/Team/web_api__x/a-b--c:v1.2_rc@sha256:0123")
                .unwrap();
        assert_eq!(key.registry.as_deref(), Some("registry.example.com:5000"));
        assert_eq!(key.path, "team/web_api__x/a-b--c");
        assert_eq!(key.tag.as_deref(), Some("v1.2_rc"));
        assert_eq!(key.digest.as_deref(), Some("sha256:0123"));
        let key = ImageKey::parse("[fe80::1]:5000/web@sha512+b64u:AbC-_=").unwrap();
        assert_eq!(key.registry.as_deref(), Some("[fe80::1]:5000"));
        assert_eq!(key.tag, None);
        assert_eq!(
            ImageKey::parse("docker.io/nginx")
                .unwrap()
                .registry
                .as_deref(),
            Some("docker.io")
        );
        let long_tag = format!("web:{}", "t".repeat(MAX_TAG_CHARS));
        assert!(ImageKey::parse(&long_tag).is_some());
        for bad in [
            "",
            "web@",
            "web@sha256",
            "web@:abc",
            "web@SHA256:abc",
            "web:",
            "web:-x",
            "a b",
            "web/",
            "/web",
            "a..b",
            "a___b",
            "a._b",
            "web_",
            "exa_mple.com/web",
            "example.com:/web",
            "example.com:port/web",
            "-example.com/web",
            "[fe80::zz]:5000/web",
            "ghcr.io/",
            "web\u{0}",
            &format!("web:{}", "t".repeat(MAX_TAG_CHARS + 1)),
        ] {
            assert!(ImageKey::parse(bad).is_none(), "{bad:?} parsed");
        }
    }

    /// A stack's repository setting: any forge owner (a Bitbucket Server
    /// personal project is `~user`), never whitespace, never a bare name.
    #[test]
    fn repository_settings_name_a_repository() {
        for good in [
            "~gopher/webhook-test",
            "group/sub/project",
            "/srv/git/app.git",
            "git@host:single",
            "https://bitbucket.example.com/scm/~gopher/webhook-test.git",
        ] {
            assert!(RepoKey::setting(good).is_some(), "{good:?} refused");
        }
        for bad in [
            "",
            "name",
            "owner/",
            "o /r",
            "o/r\n",
            "https://host/",
            "https://host/.git",
        ] {
            assert!(RepoKey::setting(bad).is_none(), "{bad:?} parsed");
        }
        // Payload identities are not settings: a bare name still parses there.
        assert!(RepoKey::parse("name").is_some());
    }

    #[test]
    fn images_match_by_path_registry_and_tag() {
        let hub = image(Some("docker.io"), "acme/web", Some("latest"));
        assert!(ImageKey::parse("acme/web").unwrap().matches(&hub));
        assert!(ImageKey::parse("acme/web:latest").unwrap().matches(&hub));
        assert!(ImageKey::parse("docker.io/acme/web").unwrap().matches(&hub));
        assert!(ImageKey::parse("index.docker.io/acme/web:latest")
            .unwrap()
            .matches(&hub));
        assert!(!ImageKey::parse("acme/web:v2").unwrap().matches(&hub));
        assert!(!ImageKey::parse("ghcr.io/acme/web").unwrap().matches(&hub));
        assert!(!ImageKey::parse("acme/api").unwrap().matches(&hub));
        let official = image(Some("docker.io"), "nginx", Some("1.27"));
        assert!(ImageKey::parse("library/nginx").unwrap().matches(&official));
        assert!(ImageKey::parse("nginx:1.27").unwrap().matches(&official));
        let ghcr = image(Some("ghcr.io"), "acme/web", Some("sha-1"));
        assert!(ImageKey::parse("ghcr.io/Acme/web").unwrap().matches(&ghcr));
        let local = image(Some("localhost:5000"), "web", None);
        assert!(ImageKey::parse("localhost:5000/web")
            .unwrap()
            .matches(&local));
        assert!(!ImageKey::parse("localhost:5000/web:v1")
            .unwrap()
            .matches(&local));
    }

    #[test]
    fn a_key_without_a_host_follows_its_path_on_any_registry() {
        // `app` is Docker Hub's `library/app`, but plain `app` on a
        // private registry (ACR's and Distribution's `hello-world`).
        let acr = image(Some("myregistry.azurecr.io"), "hello-world", Some("v1"));
        assert!(ImageKey::parse("hello-world").unwrap().matches(&acr));
        assert!(ImageKey::parse("hello-world:v1").unwrap().matches(&acr));
        assert_eq!(
            ImageKey::parse("library/hello-world")
                .unwrap()
                .compare(&acr),
            Err(ImageMismatch::Repository)
        );
        let private = image(Some("registry.example.com:5000"), "team/app", Some("v1"));
        assert!(ImageKey::parse("team/app").unwrap().matches(&private));
        assert!(ImageKey::parse("Registry.Example.com:5000/team/app:v1")
            .unwrap()
            .matches(&private));
        assert_eq!(
            ImageKey::parse("registry.example.com/team/app")
                .unwrap()
                .compare(&private),
            Err(ImageMismatch::Registry)
        );
        assert_eq!(
            ImageKey::parse("team/app:v2").unwrap().compare(&private),
            Err(ImageMismatch::Tag)
        );
    }

    #[test]
    fn a_push_by_digest_matches_untagged_keys_and_its_digest_only() {
        let digest = "sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf";
        let push = ImagePush {
            digest: Some(digest.into()),
            ..image(Some("registrycluster.local"), "library/test", None)
        };
        assert!(ImageKey::parse("library/test").unwrap().matches(&push));
        assert!(
            ImageKey::parse(&format!("registrycluster.local/library/test@{digest}"))
                .unwrap()
                .matches(&push)
        );
        // A tag beside the digest is not compared, as `docker pull` ignores it.
        assert!(ImageKey::parse(&format!("library/test:latest@{digest}"))
            .unwrap()
            .matches(&push));
        assert_eq!(
            ImageKey::parse("library/test:latest")
                .unwrap()
                .compare(&push),
            Err(ImageMismatch::Untagged)
        );
        assert_eq!(
            ImageKey::parse("library/test@sha256:0123")
                .unwrap()
                .compare(&push),
            Err(ImageMismatch::Digest)
        );
        // A push that names no digest cannot be a pinned one.
        let hub = image(Some("docker.io"), "acme/web", Some("latest"));
        assert_eq!(
            ImageKey::parse(&format!("acme/web@{digest}"))
                .unwrap()
                .compare(&hub),
            Err(ImageMismatch::Digest)
        );
        assert_eq!(ImageKey::parse("acme/web@"), None);
        assert_eq!(
            image_reference(&push),
            format!("registrycluster.local/library/test@{digest}")
        );
        let tagged = ImagePush {
            tag: Some("v1".into()),
            ..push
        };
        assert_eq!(
            image_reference(&tagged),
            "registrycluster.local/library/test:v1"
        );
    }
}
