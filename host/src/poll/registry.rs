//! Asking a registry for an image tag's manifest digest: `HEAD
//! /v2/<name>/manifests/<tag>` with the manifest types of OCI and Docker
//! in `Accept`, the digest read from `Docker-Content-Digest` (or, from a
//! registry that does not send it, the SHA-256 of the manifest read whole
//! by a `GET`). A `HEAD` is what Docker Hub does not count as a pull.
//!
//! Authentication follows the Docker token specification: a `401` with a
//! `Bearer` challenge sends polling to the challenge's `realm` for a token
//! (with `service` and `scope`; the stack's `poll.username` and token as
//! HTTP Basic credentials when configured, anonymous otherwise), kept per
//! source until shortly before it expires; a `Basic` challenge gets the
//! credentials themselves. Both only for a registry `poll.token_hosts`
//! lists, and a realm only on the registry's host or domain or itself
//! listed ([`crate::config::PollConfig::realm_gets_token`]): anything else
//! is asked anonymously. Credentials go only over https (or plain http
//! to a loopback host), never across a redirect to another origin, and
//! never into a message: the errors here name statuses and hosts only.
//!
//! Sources: the OCI distribution specification, "Pulling manifests" and
//! "Checking if content exists in the registry"
//! (<https://github.com/opencontainers/distribution-spec/blob/main/spec.md>),
//! and the token authentication specification
//! (<https://distribution.github.io/distribution/spec/auth/token/>).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use sha2::Digest as _;
use tokio::time::Instant;

use super::image::{
    is_sha256_digest, parse_challenges, read_token_answer, sha256_digest, Challenge,
};
use crate::config::{is_https_or_loopback_http, ImageReference, PollConfig};

/// The manifest types polling accepts, OCI's and Docker's, indexes (of a
/// multi-platform image) first: the digest of what `docker pull` of the
/// tag resolves first.
pub const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// The largest manifest read whole (from a registry that sends no
/// `Docker-Content-Digest`): the OCI distribution specification lets
/// registries refuse manifests over 4 MiB, so none larger is served.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// The largest token server answer read: a token is a few kilobytes.
pub const MAX_TOKEN_ANSWER_BYTES: u64 = 64 * 1024;

/// Redirects followed within one origin (scheme, host and port); one to
/// another origin is refused, so credentials never follow it.
pub const MAX_REDIRECTS: usize = 5;

/// What a registry sent that polling cannot use, or why it could not be
/// asked. The messages hold no credential and no token.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// No connection, or it broke.
    #[error("cannot reach {host}: {reason}")]
    Unreachable {
        /// The host asked.
        host: String,
        /// Why, as the network said.
        reason: String,
    },
    /// The look took longer than `poll.timeout`.
    #[error("the registry took longer than {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The registry refused the credentials (or has none for anonymous
    /// callers).
    #[error("{0}")]
    Denied(String),
    /// The tag (or the repository) does not exist.
    #[error("{0} is not in the registry (404)")]
    NotFound(String),
    /// `429` or `503`: come back later.
    #[error("the registry answered {status}{}", .wait.map(|w| format!(" (Retry-After: {})", humantime::format_duration(w))).unwrap_or_default())]
    RateLimited {
        /// The status.
        status: u16,
        /// How long it asked to wait, bounded by
        /// [`super::image::MAX_RETRY_AFTER`].
        wait: Option<Duration>,
    },
    /// Any other answer polling cannot use.
    #[error("{0}")]
    Answer(String),
}

impl RegistryError {
    /// How long the registry asked polling to wait before the next look.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::RateLimited { wait, .. } => *wait,
            _ => None,
        }
    }
}

/// A token kept for one source.
struct Kept {
    /// Which credentials obtained it (a hash): a reload that changes them
    /// makes it unusable.
    credentials: [u8; 32],
    /// What goes into `Authorization` (`Bearer ...`, or `Basic ...` for a
    /// registry that asked for Basic credentials).
    authorization: String,
    /// When it stops being used.
    until: Instant,
}

/// The tokens kept, per stack and source, for the process: every look at
/// a source (the scheduler's, one at a time) reads and replaces its own.
fn kept() -> &'static Mutex<HashMap<String, Kept>> {
    static KEPT: OnceLock<Mutex<HashMap<String, Kept>>> = OnceLock::new();
    KEPT.get_or_init(Default::default)
}

/// The sources a registry asked to be left alone (`429`/`503` with
/// `Retry-After`), per stack and source: the status, and until when. The
/// scheduler waits that out by itself; this keeps a registry webhook's
/// question ([`crate::dispatch`]) from asking before then.
fn held_back() -> &'static Mutex<HashMap<String, (u16, Instant)>> {
    static HELD: OnceLock<Mutex<HashMap<String, (u16, Instant)>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

/// The HTTP client: rustls, no redirect outside the origin, redeploy's
/// user agent.
fn client() -> Result<&'static reqwest::Client, RegistryError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client);
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("redeploy/", env!("CARGO_PKG_VERSION")))
        .redirect(redirect_policy())
        .build()
        .map_err(|e| RegistryError::Answer(format!("cannot build the HTTP client: {e}")))?;
    Ok(CLIENT.get_or_init(|| client))
}

/// Redirects: at most [`MAX_REDIRECTS`], each within the first request's
/// origin. reqwest's `previous()` holds every URL asked so far, the first
/// request's included, so when the `n`th redirect is weighed it holds `n`
/// URLs: `> MAX_REDIRECTS` refuses the one after the last allowed (as
/// reqwest's own `Policy::limited` counts; the unit test below proves the
/// boundary against a server).
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let same_origin = attempt.previous().first().is_some_and(|first| {
            first.scheme() == attempt.url().scheme()
                && first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else if same_origin {
            attempt.follow()
        } else {
            // Answered as the 3xx it is: polling reports it.
            attempt.stop()
        }
    })
}

/// The stack's credentials, as HTTP Basic's header value, if configured.
fn basic(poll: &PollConfig) -> Option<String> {
    poll.token.as_ref().map(|token| {
        let pair = format!("{}:{}", poll.username, token.expose());
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    })
}

/// A hash naming which credentials `poll` holds and where they may go.
fn credentials_id(poll: &PollConfig) -> [u8; 32] {
    let mut hash = sha2::Sha256::new();
    hash.update(poll.username.as_bytes());
    hash.update([0]);
    if let Some(token) = &poll.token {
        hash.update(token.expose().as_bytes());
    }
    for host in &poll.token_hosts {
        hash.update([0]);
        hash.update(host.to_string().as_bytes());
    }
    hash.finalize().into()
}

/// Whether the stack's token goes to `image`'s registry (its host is in
/// `poll.token_hosts`).
fn sends_token(image: &ImageReference, poll: &PollConfig) -> bool {
    image
        .registry_url()
        .is_some_and(|url| poll.sends_token_to(&url))
}

/// Why a registry or token server wanting credentials did not get them.
fn no_credentials(image: &ImageReference, poll: &PollConfig) -> &'static str {
    if poll.token.is_none() {
        "set poll.token_env or poll.token_file (and poll.username)"
    } else if !sends_token(image, poll) {
        "poll.token_hosts does not list the registry, so the token is not sent there"
    } else {
        "the token is not sent to that token server (not the registry's host or domain, nor in poll.token_hosts)"
    }
}

/// A network failure in one line, without the URL: the error and its
/// causes.
fn unreachable(host: &str, error: reqwest::Error) -> RegistryError {
    if error.is_timeout() {
        return RegistryError::Answer(format!("{host} did not answer in time"));
    }
    let error = error.without_url();
    let mut reason = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&error);
    while let Some(e) = source {
        let text = e.to_string();
        if !reason.contains(&text) {
            if !reason.is_empty() {
                reason.push_str(": ");
            }
            reason.push_str(&text);
        }
        source = e.source();
    }
    RegistryError::Unreachable {
        host: host.to_owned(),
        reason: crate::text::one_line(&reason).into_owned(),
    }
}

/// The host (and port) of `url`, for messages.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| u.port().map_or(h.to_owned(), |p| format!("{h}:{p}")))
        })
        .unwrap_or_else(|| "the registry".to_owned())
}

/// A `429` or `503` answer (the registry's or its token server's) as
/// [`RegistryError::RateLimited`], with its `Retry-After`; `None` for any
/// other answer.
fn rate_limited(response: &reqwest::Response) -> Option<RegistryError> {
    let status = response.status();
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let wait = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            crate::headers::retry_after(v, SystemTime::now(), super::image::MAX_RETRY_AFTER)
        });
    Some(RegistryError::RateLimited {
        status: status.as_u16(),
        wait,
    })
}

/// The digest `image`'s tag points to now, asked with `poll`'s
/// credentials within `poll.timeout`; `key` names the source's kept token.
/// A `429`/`503` with `Retry-After` holds the source back for
/// [`manifest_digest_unless_held`] (the scheduler waits it out itself).
pub async fn manifest_digest(
    image: &ImageReference,
    poll: &PollConfig,
    key: &str,
) -> Result<String, RegistryError> {
    let answer = match tokio::time::timeout(poll.timeout, look(image, poll, key)).await {
        Ok(answer) => answer,
        Err(_) => Err(RegistryError::Timeout(poll.timeout)),
    };
    let mut held = held_back().lock().unwrap_or_else(|e| e.into_inner());
    match &answer {
        Err(RegistryError::RateLimited {
            status,
            wait: Some(wait),
        }) => {
            held.insert(key.to_owned(), (*status, Instant::now() + *wait));
        }
        _ => {
            held.remove(key);
        }
    }
    answer
}

/// [`manifest_digest`], but not asked while the registry's last
/// `Retry-After` for the source runs (answered
/// [`RegistryError::RateLimited`] with what is left of it): a registry
/// webhook's question, which must not add to a rate limit.
pub async fn manifest_digest_unless_held(
    image: &ImageReference,
    poll: &PollConfig,
    key: &str,
) -> Result<String, RegistryError> {
    let held = held_back()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(key)
        .copied();
    if let Some((status, until)) = held {
        let now = Instant::now();
        if now < until {
            return Err(RegistryError::RateLimited {
                status,
                wait: Some(until - now),
            });
        }
    }
    manifest_digest(image, poll, key).await
}

/// What one request is: the manifest's `HEAD`, or its `GET`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ask {
    Head,
    Get,
}

async fn request(
    image: &ImageReference,
    ask: Ask,
    authorization: Option<&str>,
) -> Result<reqwest::Response, RegistryError> {
    let url = image.manifest_url();
    let method = match ask {
        Ask::Head => reqwest::Method::HEAD,
        Ask::Get => reqwest::Method::GET,
    };
    let mut request = client()?
        .request(method, &url)
        .header(ACCEPT, MANIFEST_TYPES.join(", "));
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    request
        .send()
        .await
        .map_err(|e| unreachable(&image.registry, e))
}

/// The look: asks with the kept authorization (if any), answers a
/// challenge once, and reads the digest.
async fn look(
    image: &ImageReference,
    poll: &PollConfig,
    key: &str,
) -> Result<String, RegistryError> {
    let credentials = credentials_id(poll);
    let kept_now = {
        let kept = kept().lock().unwrap_or_else(|e| e.into_inner());
        kept.get(key)
            .filter(|k| k.credentials == credentials && k.until > Instant::now())
            .map(|k| k.authorization.clone())
    };
    let mut authorization = kept_now;
    let mut answered = false;
    let mut ask = Ask::Head;
    loop {
        let response = request(image, ask, authorization.as_deref()).await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            if answered {
                kept().lock().unwrap_or_else(|e| e.into_inner()).remove(key);
                return Err(RegistryError::Denied(if sends_token(image, poll) {
                    format!(
                        "{} refused the credentials (401): check poll.username and the token",
                        image.registry
                    )
                } else {
                    format!(
                        "{} wants credentials (401): {}",
                        image.registry,
                        no_credentials(image, poll)
                    )
                }));
            }
            answered = true;
            let challenges = challenges(response.headers(), &image.registry)?;
            let value = authorize(image, poll, &challenges).await?;
            kept().lock().unwrap_or_else(|e| e.into_inner()).insert(
                key.to_owned(),
                Kept {
                    credentials,
                    authorization: value.0.clone(),
                    until: Instant::now() + value.1,
                },
            );
            authorization = Some(value.0);
            continue;
        }
        if let Some(limited) = rate_limited(&response) {
            return Err(limited);
        }
        if status == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound(format!(
                "{}:{}",
                image.name, image.tag
            )));
        }
        if status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Denied(format!(
                "{} refused access to {} (403)",
                image.registry, image.name
            )));
        }
        if !status.is_success() {
            return Err(RegistryError::Answer(format!(
                "{} answered {}{}",
                image.registry,
                status.as_u16(),
                if status.is_redirection() {
                    " (a redirect to another origin, not followed)"
                } else {
                    ""
                }
            )));
        }
        if ask == Ask::Get {
            let body = crate::bounded::response_body(response, MAX_MANIFEST_BYTES)
                .await
                .map_err(|e| RegistryError::Answer(format!("the manifest: {e}")))?;
            return Ok(sha256_digest(&body));
        }
        match response.headers().get("docker-content-digest") {
            Some(value) => {
                let digest = value.to_str().unwrap_or("");
                if !is_sha256_digest(digest) {
                    return Err(RegistryError::Answer(format!(
                        "{}'s Docker-Content-Digest is not sha256: and 64 lowercase hex digits",
                        image.registry
                    )));
                }
                return Ok(digest.to_owned());
            }
            // The header is optional in the OCI specification: the
            // manifest itself says.
            None => ask = Ask::Get,
        }
    }
}

/// The challenges of a `401`'s `WWW-Authenticate` headers.
fn challenges(headers: &HeaderMap, registry: &str) -> Result<Vec<Challenge>, RegistryError> {
    let mut all = Vec::new();
    for value in headers.get_all(WWW_AUTHENTICATE) {
        let text = value.to_str().map_err(|_| {
            RegistryError::Answer(format!("{registry}'s WWW-Authenticate is not text"))
        })?;
        all.extend(
            parse_challenges(text).map_err(|why| {
                RegistryError::Answer(format!("{registry} answered 401 and {why}"))
            })?,
        );
    }
    if all.is_empty() {
        return Err(RegistryError::Answer(format!(
            "{registry} answered 401 without a WWW-Authenticate challenge"
        )));
    }
    Ok(all)
}

/// The `Authorization` value answering `challenges`, and how long it may
/// be kept: a bearer token from the realm, or Basic credentials.
async fn authorize(
    image: &ImageReference,
    poll: &PollConfig,
    challenges: &[Challenge],
) -> Result<(String, Duration), RegistryError> {
    if let Some(bearer) = challenges.iter().find(|c| c.scheme == "bearer") {
        return bearer_token(image, poll, bearer).await;
    }
    if challenges.iter().any(|c| c.scheme == "basic") {
        // The registry's own URL is https, or loopback http.
        // Only to a registry `poll.token_hosts` lists.
        return match basic(poll).filter(|_| sends_token(image, poll)) {
            // Kept as long as a day's token: the credentials do not expire.
            Some(value) => Ok((value, super::image::MAX_TOKEN_LIFETIME)),
            None => Err(RegistryError::Denied(format!(
                "{} wants Basic credentials (401): {}",
                image.registry,
                no_credentials(image, poll)
            ))),
        };
    }
    let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
    Err(RegistryError::Answer(format!(
        "{} asks for {} authentication, which polling does not speak (Bearer or Basic)",
        image.registry,
        schemes.join(", ")
    )))
}

/// A bearer token for `image` from the realm of `challenge`.
async fn bearer_token(
    image: &ImageReference,
    poll: &PollConfig,
    challenge: &Challenge,
) -> Result<(String, Duration), RegistryError> {
    let realm = challenge.param("realm").ok_or_else(|| {
        RegistryError::Answer(format!(
            "{}'s Bearer challenge names no realm",
            image.registry
        ))
    })?;
    let mut url = reqwest::Url::parse(realm).map_err(|_| {
        RegistryError::Answer(format!("{}'s Bearer realm is not a URL", image.registry))
    })?;
    // Credentials and tokens go only where no one on the network reads them.
    if !is_https_or_loopback_http(url.as_str()) || !url.username().is_empty() {
        return Err(RegistryError::Answer(format!(
            "{}'s token realm {} is not https (plain http only to a loopback host): refused",
            image.registry,
            host_of(url.as_str())
        )));
    }
    {
        let mut query = url.query_pairs_mut();
        if let Some(service) = challenge.param("service") {
            query.append_pair("service", service);
        }
        // The challenge's scope, else the one the specification names for
        // pulling this repository.
        let wanted = format!("repository:{}:pull", image.name);
        query.append_pair("scope", challenge.param("scope").unwrap_or(&wanted));
    }
    let realm_host = host_of(url.as_str());
    // The token goes to the realm only for a registry `poll.token_hosts`
    // lists, and only to a realm on its host or domain or itself listed:
    // anyone else is asked anonymously.
    let credentialed = image
        .registry_url()
        .is_some_and(|registry| poll.realm_gets_token(&registry, &url));
    let mut request = client()?.get(url).header(ACCEPT, "application/json");
    if let Some(value) = basic(poll).filter(|_| credentialed) {
        request = request.header(AUTHORIZATION, value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| unreachable(&realm_host, e))?;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return Err(RegistryError::Denied(if credentialed {
            format!(
                "the token server {realm_host} refused the credentials ({})",
                status.as_u16()
            )
        } else {
            format!(
                "the token server {realm_host} wants credentials ({}): {}",
                status.as_u16(),
                no_credentials(image, poll)
            )
        }));
    }
    if let Some(limited) = rate_limited(&response) {
        return Err(limited);
    }
    if !status.is_success() {
        return Err(RegistryError::Answer(format!(
            "the token server {realm_host} answered {}",
            status.as_u16()
        )));
    }
    let body = crate::bounded::response_body(response, MAX_TOKEN_ANSWER_BYTES)
        .await
        .map_err(|e| RegistryError::Answer(format!("the token server {realm_host}: {e}")))?;
    let issued = read_token_answer(&body)
        .map_err(|why| RegistryError::Answer(format!("{realm_host}: {why}")))?;
    Ok((format!("Bearer {}", issued.token), issued.usable_for))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_header_lists_oci_and_docker_manifests() {
        let accept = MANIFEST_TYPES.join(", ");
        for t in [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ] {
            assert!(accept.contains(t), "{accept}");
        }
    }

    #[test]
    fn errors_name_hosts_not_urls() {
        assert_eq!(
            host_of("https://auth.docker.io/token?x=1"),
            "auth.docker.io"
        );
        assert_eq!(host_of("http://127.0.0.1:5000/token"), "127.0.0.1:5000");
        assert_eq!(host_of("not a url"), "the registry");
        let limited = RegistryError::RateLimited {
            status: 429,
            wait: Some(Duration::from_secs(5)),
        };
        assert_eq!(
            limited.to_string(),
            "the registry answered 429 (Retry-After: 5s)"
        );
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(5)));
    }

    /// A loopback server answering `/r/<n>` with a redirect to
    /// `/r/<n - 1>`, and `/r/0` with `200`; how many requests it served.
    async fn redirect_chain() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut got = Vec::new();
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let line = String::from_utf8_lossy(&got)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let n: usize = line
                        .split_whitespace()
                        .nth(1)
                        .and_then(|p| p.strip_prefix("/r/"))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    let reply = if n == 0 {
                        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_owned()
                    } else {
                        format!(
                            "HTTP/1.1 302 Found\r\nLocation: /r/{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            n - 1
                        )
                    };
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        (port, served)
    }

    #[tokio::test]
    async fn at_most_max_redirects_are_followed() {
        let (port, served) = redirect_chain().await;
        let client = reqwest::Client::builder()
            .redirect(redirect_policy())
            .build()
            .unwrap();
        let ask = |n: usize| client.get(format!("http://127.0.0.1:{port}/r/{n}")).send();
        // Exactly MAX_REDIRECTS redirects: followed to the end.
        let answer = ask(MAX_REDIRECTS).await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
        assert_eq!(
            served.swap(0, std::sync::atomic::Ordering::SeqCst),
            MAX_REDIRECTS + 1
        );
        // One more: refused, the redirect after the last allowed never
        // asked.
        let refused = ask(MAX_REDIRECTS + 1).await.unwrap_err();
        assert!(refused.is_redirect(), "{refused}");
        assert_eq!(
            served.load(std::sync::atomic::Ordering::SeqCst),
            MAX_REDIRECTS + 1
        );
    }
}
