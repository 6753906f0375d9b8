//! Sending one notification to one channel: the I/O edge of
//! notifications. A chat gets [`chat_body`] POSTed; a webhook gets
//! [`webhook_body`] POSTed, signed ([`SIGNATURE_HEADER`]); an email goes
//! over SMTP with lettre. The outcome is an [`Answer`] (the receiver took
//! it) or a [`Failure`] saying whether trying again may help.
//!
//! A chat's or webhook's URL is a credential (whoever holds it can post,
//! and chat services put their key in it): no error, detail or log line
//! here contains it. reqwest's errors are stripped of it
//! ([`reqwest::Error::without_url`]), and what a receiver answers is
//! scrubbed of it too, in case it echoes the path. Nor does anything here
//! format a signing key or an SMTP password.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use hmac::{Hmac, Mac as _};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use sha2::Sha256;

use super::message::{chat_body, email_subject, email_text, event_name, webhook_body, Message};
use crate::config::{ChannelTarget, EmailChannel, NotificationChannel, Secret, SmtpTls};

/// How long one HTTP notification may take, connecting and reading the
/// answer included: a chat service or webhook receiver answers in well
/// under a second; one that does not in ten is down, and the notification
/// is retried later rather than holding up the ones after it.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one SMTP conversation may take (connecting, TLS, login,
/// sending): mail servers are slower than webhooks (greeting delays, DNS
/// checks of the sender), but one stuck for longer is retried later.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The most characters of a receiver's answer kept in the journal and
/// printed: enough for an error message, not a page of HTML.
pub const MAX_ANSWER_CHARS: usize = 200;

/// The most bytes of an HTTP answer's body read: its first line is all
/// that is kept ([`MAX_ANSWER_CHARS`]), so a receiver answering with a
/// large page costs no more than this.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024;

/// The largest `ca_file` read: a bundle of a few hundred certificates.
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// The webhook's signature header: `sha256=` and the lowercase hex
/// HMAC-SHA256 of the raw body with the channel's key, as GitHub's
/// `X-Hub-Signature-256`.
pub const SIGNATURE_HEADER: &str = "X-Redeploy-Signature-256";

/// The webhook's event header: the body's `event` (`failed`, `test`...).
pub const EVENT_HEADER: &str = "X-Redeploy-Event";

/// The webhook's delivery header: the notification's delivery id
/// ([`Message::delivery`], the body's `delivery`), the same on every
/// attempt and unique across journals, so a receiver can drop a duplicate.
pub const DELIVERY_HEADER: &str = "X-Redeploy-Delivery";

/// The user agent of the notifications' HTTP requests.
pub const USER_AGENT: &str = concat!("redeploy/", env!("CARGO_PKG_VERSION"));

/// What the receiver said when it took the notification (`HTTP 200`,
/// `250 2.0.0 Ok: queued as X`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The answer, one line, at most [`MAX_ANSWER_CHARS`] of it the
    /// receiver's own words.
    pub detail: String,
}

/// Why a notification was not taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Worth retrying: connection failures, timeouts, HTTP 408, 425, 429
    /// and 5xx, SMTP 4xx and every SMTP failure that is not a 5xx reply.
    pub transient: bool,
    /// What went wrong, one line, never a credential.
    pub detail: String,
    /// The receiver's `Retry-After` (seconds or an HTTP date, at most
    /// [`crate::notifications::RETRY_AFTER_MAX`]), if it sent one.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// A failure that trying again cannot mend.
    fn permanent(detail: impl Into<String>) -> Failure {
        Failure {
            transient: false,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A failure that may pass.
    fn transient(detail: impl Into<String>) -> Failure {
        Failure {
            transient: true,
            detail: detail.into(),
            retry_after: None,
        }
    }
}

/// The HTTP client notifications use: [`HTTP_TIMEOUT`], user agent
/// [`USER_AGENT`], and no redirects followed (a redirect would carry a
/// signed body where the channel's owner did not point it; a 3xx is a
/// permanent failure that says so).
pub fn client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(USER_AGENT)
        .build()
        .context("building the HTTP client of notifications")
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `body` with `key`: the
/// webhook's [`SIGNATURE_HEADER`].
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends `m` to `channel` (`http`: a client built with [`client`]).
pub async fn send(
    http: &reqwest::Client,
    channel: &NotificationChannel,
    m: &Message,
) -> Result<Answer, Failure> {
    if !channel.secrets_read {
        return Err(Failure::permanent(
            "the channel's credentials were not read (this command loads the config without them)",
        ));
    }
    match &channel.target {
        ChannelTarget::Chat { url } => {
            let body = chat_body(m).to_string().into_bytes();
            post(http, url, body, Vec::new()).await
        }
        ChannelTarget::Webhook { url, secret } => {
            let body = webhook_body(m);
            let headers = vec![
                (SIGNATURE_HEADER, sign(secret.expose().as_bytes(), &body)),
                (EVENT_HEADER, event_name(m).to_string()),
                (DELIVERY_HEADER, m.delivery.clone()),
            ];
            post(http, url, body, headers).await
        }
        ChannelTarget::Email(email) => send_email(email, m).await,
    }
}

/// POSTs the JSON `body` with `headers` to `url`; a 2xx is taken.
async fn post(
    http: &reqwest::Client,
    url: &Secret,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
) -> Result<Answer, Failure> {
    let url = url.expose();
    let parsed = reqwest::Url::parse(url)
        .map_err(|_| Failure::permanent("the channel's url is not a valid URL"))?;
    let mut request = http
        .post(parsed)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Err(scrubbed(unsent(e), url)),
    };
    let status = response.status();
    if status.is_success() {
        return Ok(Answer {
            detail: format!("HTTP {}", status.as_u16()),
        });
    }
    if status.is_redirection() {
        return Err(Failure::permanent(format!(
            "HTTP {}: redirects are not followed",
            status.as_u16()
        )));
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            crate::headers::retry_after(v, SystemTime::now(), crate::notifications::RETRY_AFTER_MAX)
        });
    let said = first_line(response).await;
    let code = status.as_u16();
    let detail = if said.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code}: {said}")
    };
    let failure = Failure {
        transient: matches!(code, 408 | 425 | 429) || status.is_server_error(),
        detail,
        retry_after,
    };
    Err(scrubbed(failure, url))
}

/// The first line of `response`'s body (of its first [`MAX_ANSWER_BYTES`]),
/// one line, at most [`MAX_ANSWER_CHARS`]; empty when there is none or it
/// cannot be read.
async fn first_line(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ANSWER_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(MAX_ANSWER_BYTES);
    let text = String::from_utf8_lossy(&body);
    let line = text.trim_start().lines().next().unwrap_or("").trim_end();
    one_line(line, MAX_ANSWER_CHARS)
}

/// Why a request got no answer: a timeout or a connection failure
/// (transient), or a request that could not be built (permanent). The
/// error's text without the URL, with its causes.
fn unsent(e: reqwest::Error) -> Failure {
    if e.is_timeout() {
        return Failure::transient(format!(
            "no answer within {}",
            humantime::format_duration(HTTP_TIMEOUT)
        ));
    }
    let permanent = e.is_builder() || e.is_redirect();
    let detail = chain(&e.without_url());
    if permanent {
        Failure::permanent(detail)
    } else {
        Failure::transient(detail)
    }
}

/// An error and its causes in one line, each cause once (reqwest's and
/// hyper's errors often repeat their source in their own text).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut next: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = next {
        let part = e.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
        next = e.source();
    }
    one_line(&text, 2 * MAX_ANSWER_CHARS)
}

/// `failure` with every appearance of `url` (whole, or its path or query,
/// which hold a chat service's key) in its detail replaced by `[url]`: a
/// receiver's answer may quote the path it was asked.
fn scrubbed(mut failure: Failure, url: &str) -> Failure {
    failure.detail = scrub(&failure.detail, url);
    failure
}

/// The shortest path segment or query value [`scrub`] removes on its own:
/// a key is longer (Slack's are 24 characters), and shorter words (`hooks`,
/// `services`) are left readable.
const MIN_SCRUBBED_PART_CHARS: usize = 9;

/// `text` with `url`, its path and query, and each of its path segments
/// and query values of [`MIN_SCRUBBED_PART_CHARS`] or more, replaced by
/// `[url]`.
fn scrub(text: &str, url: &str) -> String {
    let mut parts = vec![url.to_string(), url.trim_end_matches('/').to_string()];
    if let Ok(parsed) = reqwest::Url::parse(url) {
        let path = parsed.path();
        let query = parsed.query().unwrap_or("");
        if !query.is_empty() {
            parts.push(format!("{path}?{query}"));
            parts.push(query.to_string());
        }
        if path.len() > 1 {
            parts.push(path.to_string());
            parts.push(path.trim_start_matches('/').to_string());
        }
        let values = parsed.query_pairs().map(|(_, v)| v.into_owned());
        let segments = path.split('/').map(str::to_string);
        parts.extend(
            segments
                .chain(values)
                .filter(|p| p.chars().count() >= MIN_SCRUBBED_PART_CHARS),
        );
    }
    parts.retain(|p| p.len() > 1);
    parts.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let mut text = text.to_string();
    for part in parts {
        text = text.replace(&part, "[url]");
    }
    text
}

/// `text` on one line (control characters as spaces), cut to `max`
/// characters with `…`.
fn one_line(text: &str, max: usize) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Sends `m` as an email through `email`'s SMTP server, within
/// [`SMTP_TIMEOUT`].
async fn send_email(email: &EmailChannel, m: &Message) -> Result<Answer, Failure> {
    let message = email_message(email, m)?;
    let transport = smtp_transport(email).await?;
    match tokio::time::timeout(SMTP_TIMEOUT, transport.send(message)).await {
        Err(_) => Err(Failure::transient(format!(
            "the SMTP server did not finish within {}",
            humantime::format_duration(SMTP_TIMEOUT)
        ))),
        Ok(Err(e)) => Err(smtp_failure(&e)),
        Ok(Ok(response)) => {
            let said = response.first_line().unwrap_or("");
            Ok(Answer {
                detail: one_line(
                    format!("{} {said}", response.code()).trim_end(),
                    MAX_ANSWER_CHARS,
                ),
            })
        }
    }
}

/// A lettre SMTP error as a [`Failure`]: a 5xx reply is permanent, every
/// other failure (4xx, network, TLS, timeout) transient.
fn smtp_failure(e: &lettre::transport::smtp::Error) -> Failure {
    let detail = if e.is_timeout() {
        "the SMTP server did not answer in time".to_string()
    } else {
        chain(e)
    };
    if e.is_permanent() {
        Failure::permanent(detail)
    } else {
        Failure::transient(detail)
    }
}

/// The email: From, To (every recipient), Subject, a `Message-ID` stable
/// across retries ([`message_id`]), `Auto-Submitted: auto-generated` (RFC
/// 3834: no vacation replies), and the plain text in UTF-8. `Date` is when
/// it is sent.
fn email_message(email: &EmailChannel, m: &Message) -> Result<lettre::Message, Failure> {
    let address = |key: &str, value: &str| {
        value
            .parse::<Mailbox>()
            .map_err(|_| Failure::permanent(format!("{key}: {value:?} is not an email address")))
    };
    let from = address("from", &email.from)?;
    let mut builder = lettre::Message::builder()
        .message_id(Some(message_id(m, from.email.domain())))
        .from(from)
        .subject(email_subject(m))
        .header(ContentType::TEXT_PLAIN)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".into(),
        ));
    for to in &email.to {
        builder = builder.to(address("to", to)?);
    }
    builder
        .body(email_text(m))
        .map_err(|e| Failure::permanent(format!("the email could not be built: {e}")))
}

/// `<redeploy.{delivery}.{stack}@{domain}>` ([`Message::delivery`]): the
/// same on every attempt and unique across journals, so a receiver (or
/// its mail client) can drop a duplicate. The delivery id and the stack
/// are kept to `A-Z a-z 0-9 . _ -` (others become `-`); the domain is the
/// `From` address's.
pub fn message_id(m: &Message, domain: &str) -> String {
    let safe = |text: &str| -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let delivery = if m.delivery.is_empty() {
        m.id.to_string()
    } else {
        safe(&m.delivery)
    };
    let stack = if m.stack.is_empty() {
        "test".into()
    } else {
        safe(&m.stack)
    };
    let domain: String = domain
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'))
        .collect();
    let domain = if domain.is_empty() {
        "redeploy.invalid".into()
    } else {
        domain
    };
    format!("<redeploy.{delivery}.{stack}@{domain}>")
}

/// The SMTP transport for `email`: STARTTLS required, implicit TLS, or
/// none (loopback only, as the config checks); the web's roots plus the
/// channel's `ca_file`; its login; [`SMTP_TIMEOUT`] for each command.
async fn smtp_transport(
    email: &EmailChannel,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, Failure> {
    let host = email.host.trim_start_matches('[').trim_end_matches(']');
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(email.port)
        .timeout(Some(SMTP_TIMEOUT))
        // EHLO with this machine's name: some servers refuse lettre's
        // default, an address literal.
        .hello_name(lettre::transport::smtp::extension::ClientId::Domain(
            crate::cluster::host_name(),
        ));
    let tls = match email.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::StartTls => Tls::Required(tls_parameters(email).await?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters(email).await?),
    };
    builder = builder.tls(tls);
    if let Some((user, password)) = &email.login {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    Ok(builder.build())
}

/// TLS for `email.host`: the web's roots and, when set, the certificates
/// of `ca_file`, read now (a file that cannot be read is a permanent
/// failure naming it).
async fn tls_parameters(email: &EmailChannel) -> Result<TlsParameters, Failure> {
    let host = email.host.trim_start_matches('[').trim_end_matches(']');
    let mut params = TlsParameters::builder(host.to_string());
    if let Some(path) = &email.ca_file {
        params = params.add_root_certificate(ca_certificates(path).await?);
    }
    params
        .build()
        .map_err(|e| Failure::permanent(format!("TLS setup: {}", chain(&e))))
}

/// The certificates of the PEM file at `path`.
async fn ca_certificates(path: &Path) -> Result<Certificate, Failure> {
    let fail = |why: String| Failure::permanent(format!("ca_file {}: {why}", path.display()));
    let owned = path.to_path_buf();
    let pem =
        tokio::task::spawn_blocking(move || crate::bounded::read_file(&owned, MAX_CA_FILE_BYTES))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(fail("holds no PEM certificate".into()));
    }
    Certificate::from_pem(&pem).map_err(|e| fail(chain(&e)))
}

#[cfg(test)]
#[path = "send_tests.rs"]
mod tests;
