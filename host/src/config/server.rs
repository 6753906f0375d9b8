//! Stage 2 for the `[server]` and `[hook]` tables, and the helpers the
//! other tables share: paths resolved against the config's directory,
//! durations, and http(s) URLs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawHook, RawServer};
use super::{
    ConfigError, HookConfig, Result, Retention, ServerConfig, DEFAULT_BODY_TIMEOUT,
    DEFAULT_CALLBACK_HOSTS, DEFAULT_HEADER_TIMEOUT, DEFAULT_KEEP_DELIVERIES, DEFAULT_KEEP_DEPLOYS,
    DEFAULT_KEEP_DEPLOYS_MAX, DEFAULT_KEEP_DEPLOYS_MIN, DEFAULT_KEEP_REFUSED_DELIVERIES,
    DEFAULT_LISTEN, DEFAULT_LOG_LINKS, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_BODY_BYTES_IN_FLIGHT,
    DEFAULT_MAX_CONCURRENT_DEPLOYS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_DEPLOY_LOG_BYTES,
    DEFAULT_MAX_EVENT_AGE, DEFAULT_MAX_QUEUED_DELIVERIES,
    DEFAULT_MAX_REFUSED_DELIVERIES_PER_MINUTE, DEFAULT_REPLAY_WINDOW, DEFAULT_SHUTDOWN_GRACE,
    DEFAULT_STATE_DIR, DEFAULT_WRITE_TIMEOUT, MAX_KEEP_DELIVERY_BODIES,
};

pub(super) fn validate_hook(raw: RawHook) -> Result<HookConfig> {
    let err = |message: String| ConfigError::invalid(format!("hook: {message}"));
    let server = match raw.server {
        Some(url) => Some(server_url(&url).map_err(|why| err(format!("server {why}")))?),
        None => None,
    };
    for (path, name) in &raw.repositories {
        if !path.is_absolute() {
            return Err(err(format!(
                "repositories: {path:?} is not an absolute path"
            )));
        }
        if name.trim().is_empty() {
            return Err(err(format!("repositories: {path:?} maps to an empty name")));
        }
    }
    let wait = raw.wait.unwrap_or(false);
    if wait && server.is_some() {
        return Err(err(
            "wait = true with server: the hook hands each deploy to the server and returns \
             (the server runs it, and its log and `redeploy history` show it); wait applies only \
             to deploys the hook runs itself: remove one of the two"
                .into(),
        ));
    }
    Ok(HookConfig {
        server,
        wait,
        repositories: raw.repositories,
    })
}

pub(super) fn validate_server(raw: RawServer, base_dir: &Path) -> Result<ServerConfig> {
    let err = |message: String| ConfigError::invalid(format!("server: {message}"));

    let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen: SocketAddr = listen_text.parse().map_err(|_| {
        err(format!(
            "listen {listen_text:?} is not a socket address (like 127.0.0.1:8080 or [::]:8080)"
        ))
    })?;

    let public_url = match raw.public_url {
        Some(url) => {
            check_http_url(&url, false).map_err(|why| err(format!("public_url {url:?} {why}")))?;
            Some(url.trim_end_matches('/').to_string())
        }
        None => None,
    };

    let state_dir = resolve(
        base_dir,
        raw.state_dir
            .as_deref()
            .unwrap_or(Path::new(DEFAULT_STATE_DIR)),
    );
    if raw
        .state_dir
        .as_ref()
        .is_some_and(|dir| dir.as_os_str().is_empty())
    {
        return Err(err("state_dir is empty".into()));
    }

    let at_least_one = |key: &str, value: Option<usize>, default: usize| match value {
        Some(0) => Err(err(format!("{key} must be at least 1"))),
        Some(n) => Ok(n),
        None => Ok(default),
    };
    let max_body_bytes =
        at_least_one("max_body_bytes", raw.max_body_bytes, DEFAULT_MAX_BODY_BYTES)?;
    let max_concurrent_deploys = at_least_one(
        "max_concurrent_deploys",
        raw.max_concurrent_deploys,
        DEFAULT_MAX_CONCURRENT_DEPLOYS,
    )?;
    let max_queued_deliveries = at_least_one(
        "max_queued_deliveries",
        raw.max_queued_deliveries,
        DEFAULT_MAX_QUEUED_DELIVERIES,
    )?;

    let shutdown_grace =
        duration("shutdown_grace", raw.shutdown_grace, DEFAULT_SHUTDOWN_GRACE).map_err(err)?;
    let replay_window = duration("replay_window", raw.replay_window, DEFAULT_REPLAY_WINDOW)
        .and_then(|d| non_zero("replay_window", d))
        .map_err(err)?;
    let header_timeout = duration("header_timeout", raw.header_timeout, DEFAULT_HEADER_TIMEOUT)
        .and_then(|d| non_zero("header_timeout", d))
        .map_err(err)?;
    let max_body_bytes_in_flight = at_least_one(
        "max_body_bytes_in_flight",
        raw.max_body_bytes_in_flight,
        DEFAULT_MAX_BODY_BYTES_IN_FLIGHT.max(max_body_bytes),
    )?;
    if max_body_bytes_in_flight < max_body_bytes {
        return Err(err(format!(
            "max_body_bytes_in_flight ({max_body_bytes_in_flight}) must be at least max_body_bytes ({max_body_bytes})"
        )));
    }
    let max_connections = at_least_one(
        "max_connections",
        raw.max_connections,
        DEFAULT_MAX_CONNECTIONS,
    )?;
    let write_timeout = duration("write_timeout", raw.write_timeout, DEFAULT_WRITE_TIMEOUT)
        .and_then(|d| non_zero("write_timeout", d))
        .map_err(err)?;
    let keep = |key: &str, value: Option<String>, default: Duration| {
        duration(key, value, default)
            .and_then(|d| non_zero(key, d))
            .map_err(err)
    };
    let deploys_min = raw.keep_deploys_min.unwrap_or(DEFAULT_KEEP_DEPLOYS_MIN);
    let deploys_max = at_least_one(
        "keep_deploys_max",
        raw.keep_deploys_max,
        DEFAULT_KEEP_DEPLOYS_MAX.max(deploys_min),
    )?;
    if deploys_max < deploys_min {
        return Err(err(format!(
            "keep_deploys_max ({deploys_max}) must be at least keep_deploys_min ({deploys_min})"
        )));
    }
    let delivery_bodies = raw.keep_delivery_bodies.unwrap_or(0);
    if delivery_bodies > MAX_KEEP_DELIVERY_BODIES {
        return Err(err(format!(
            "keep_delivery_bodies ({delivery_bodies}) may be at most {MAX_KEEP_DELIVERY_BODIES} bytes"
        )));
    }
    let retention = Retention {
        deploys: keep("keep_deploys", raw.keep_deploys, DEFAULT_KEEP_DEPLOYS)?,
        deploys_min,
        deploys_max,
        deliveries: keep(
            "keep_deliveries",
            raw.keep_deliveries,
            DEFAULT_KEEP_DELIVERIES,
        )?,
        refused_deliveries: keep(
            "keep_refused_deliveries",
            raw.keep_refused_deliveries,
            DEFAULT_KEEP_REFUSED_DELIVERIES,
        )?,
        refused_per_minute: raw
            .max_refused_deliveries_per_minute
            .unwrap_or(DEFAULT_MAX_REFUSED_DELIVERIES_PER_MINUTE),
        delivery_bodies,
    };
    let max_deploy_log_bytes = match raw.max_deploy_log_bytes {
        Some(0) => return Err(err("max_deploy_log_bytes must be at least 1".into())),
        Some(n) => n,
        None => DEFAULT_MAX_DEPLOY_LOG_BYTES,
    };
    let links_off = raw.log_links.as_deref().map(str::trim) == Some("off");
    let log_links = match links_off {
        true => None,
        false => Some(
            duration("log_links", raw.log_links, DEFAULT_LOG_LINKS)
                .and_then(|d| non_zero("log_links", d))
                .map_err(|why| err(format!("{why}, or \"off\"")))?,
        ),
    };
    let body_timeout = duration("body_timeout", raw.body_timeout, DEFAULT_BODY_TIMEOUT)
        .and_then(|d| non_zero("body_timeout", d))
        .map_err(err)?;

    let callback_hosts = raw.callback_hosts.unwrap_or_else(|| {
        DEFAULT_CALLBACK_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect()
    });
    if let Some(bad) = callback_hosts
        .iter()
        .find(|h| h.is_empty() || h.contains(['/', ':', '@', ' ']))
    {
        return Err(err(format!(
            "callback_hosts entry {bad:?} is not a host name (like registry.hub.docker.com)"
        )));
    }

    let max_event_age = duration("max_event_age", raw.max_event_age, DEFAULT_MAX_EVENT_AGE)
        .and_then(|d| non_zero("max_event_age", d))
        .map_err(err)?;

    Ok(ServerConfig {
        listen,
        public_url,
        state_dir,
        max_body_bytes,
        max_concurrent_deploys,
        max_queued_deliveries,
        shutdown_grace,
        replay_window,
        header_timeout,
        max_body_bytes_in_flight,
        max_connections,
        write_timeout,
        retention,
        max_deploy_log_bytes,
        log_links,
        body_timeout,
        callback_hosts,
        max_event_age,
    })
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `base_dir.join(path)`, made absolute (`.` components removed).
pub(super) fn resolve(base_dir: &Path, path: &Path) -> PathBuf {
    let joined = base_dir.join(path);
    std::path::absolute(&joined).unwrap_or(joined)
}

/// The longest duration any setting takes: 100 years (humantime's `100y`,
/// of 365.25 days each). Longer than any
/// setting needs, and short enough that a deadline counted from now cannot
/// overflow the clock (hyper adds `header_timeout` to the time each
/// request starts: a larger one panicked on every connection).
pub const MAX_DURATION: Duration = Duration::from_secs(3_155_760_000);

/// Parses a humantime duration (`"10m"`, `"1h 30m"`), refusing one longer
/// than [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(text.trim())
        .map_err(|_| format!("{text:?} is not a duration (like \"30s\" or \"10m\")"))?;
    if parsed > MAX_DURATION {
        return Err(format!("{text:?} is longer than 100 years"));
    }
    Ok(parsed)
}

/// Parses an optional humantime duration ([`parse_duration`]), naming
/// `key` in the error.
pub(super) fn duration(
    key: &str,
    value: Option<String>,
    default: Duration,
) -> Result<Duration, String> {
    match value {
        None => Ok(default),
        Some(text) => parse_duration(&text).map_err(|e| format!("{key} {e}")),
    }
}

pub(super) fn non_zero(key: &str, value: Duration) -> Result<Duration, String> {
    if value.is_zero() {
        Err(format!("{key} must be greater than zero"))
    } else {
        Ok(value)
    }
}

/// Whether `url` is `https`, or `http` to a loopback host (`localhost`,
/// `127.0.0.0/8`, `::1`), where no one on the network can read what is sent.
pub fn is_https_or_loopback_http(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => match url.host_str() {
            Some(host) => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                host.eq_ignore_ascii_case("localhost")
                    || bare
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }
            None => false,
        },
        _ => false,
    }
}

/// Checks the URL of a running `redeploy serve` that hook tokens are sent
/// to (`[hook] server`, `post-receive --server`, `trigger --server`) and
/// returns it without a trailing `/`; the reason follows the key naming
/// it. git shows the hook's messages, this URL among them, to whoever
/// pushes, so it may hold no user or password (and one that does is not
/// quoted); and what is sent there (a stack's hook token, a push) must not
/// cross a network in the clear: `https`, or `http` to a loopback host.
pub fn server_url(url: &str) -> std::result::Result<String, String> {
    if has_credentials(url) {
        return Err(
            "must not hold a user or password: git shows it to whoever pushes (the hook authenticates with each stack's hook token)".to_owned(),
        );
    }
    check_http_url(url, false).map_err(|why| format!("{url:?} {why}"))?;
    if !is_https_or_loopback_http(url) {
        return Err(format!(
            "{url:?} must be https, or http to this host (127.0.0.1, ::1, localhost): each stack's hook token is sent to it"
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Whether the URL `url` names a user or a password before its host
/// (`http://user:password@host`).
fn has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest[..authority_end].contains('@')
}

/// Checks that `url` is an absolute http or https URL with a host, no
/// whitespace, no fragment, and (unless `allow_query`) no query. Returns the
/// reason as text that follows the key, e.g. `is not an http(s) URL`.
pub(super) fn check_http_url(url: &str, allow_query: bool) -> Result<(), &'static str> {
    const NOT_HTTP: &str = "is not an http(s) URL";
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain whitespace");
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(NOT_HTTP);
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(NOT_HTTP);
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let tail = &rest[authority_end..];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(after_bracket) = host_port.strip_prefix('[') {
        match after_bracket.split_once(']') {
            Some((ip, port)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => {
                (ip, port.strip_prefix(':').map(Some).unwrap_or(None))
            }
            _ => return Err("has an invalid host"),
        }
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("has no host");
    }
    if !host_port.starts_with('[')
        && !host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '.' | '_' | '%'))
    {
        return Err("has an invalid host");
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err("has an invalid port");
        }
    }
    if tail.contains('#') {
        return Err("must not have a fragment");
    }
    if !allow_query && tail.contains('?') {
        return Err("must not have a query");
    }
    Ok(())
}
