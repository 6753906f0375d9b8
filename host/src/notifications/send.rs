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
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;
    use crate::config::NoticeEvent;

    /// The secret parts of the test URLs: no failure may show them.
    const PATH_SECRET: &str = "T0PATHSECRET";
    const QUERY_SECRET: &str = "Q0QUERYSECRET";
    const KEY: &str = "It is a secret of at least 32 bytes!!";

    /// A failed deploy's message, without links.
    fn message() -> Message {
        let mut m = crate::notifications::message::sample_failed();
        if let Some(d) = m.deploy.as_mut() {
            d.commit_url = None;
            d.log_url = None;
        }
        m
    }

    fn channel(target: ChannelTarget) -> NotificationChannel {
        NotificationChannel {
            name: "ops".into(),
            events: NoticeEvent::ALL.into_iter().collect(),
            stacks: None,
            give_up_after: Duration::from_secs(3600),
            target,
            secrets_read: true,
        }
    }

    fn webhook(url: String) -> NotificationChannel {
        channel(ChannelTarget::Webhook {
            url: Secret::new(url),
            secret: Secret::new(KEY),
        })
    }

    /// A server on 127.0.0.1 that answers one request with `answer`; its
    /// URL (with secrets in path and query) and the request it read.
    async fn serve_once(answer: String) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/hooks/{PATH_SECRET}?token={QUERY_SECRET}");
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            conn.write_all(answer.as_bytes()).await.unwrap();
            conn.shutdown().await.unwrap();
            String::from_utf8(request).unwrap()
        });
        (url, task)
    }

    fn header<'a>(request: &'a str, name: &str) -> Option<&'a str> {
        request.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn body(request: &str) -> &str {
        request.split_once("\r\n\r\n").unwrap().1
    }

    #[test]
    fn the_signature_is_hmac_sha256_in_lowercase_hex() {
        // Computed independently: python3 -c 'import hmac,hashlib;
        // print(hmac.new(b"key", b"The quick brown fox jumps over the lazy dog",
        // hashlib.sha256).hexdigest())'
        assert_eq!(
            sign(b"key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        assert_eq!(
            sign(KEY.as_bytes(), br#"{"id":1}"#),
            "sha256=bb29190c4f876af34cf48666e1b9eeb0c1bd2d9282a8d3a041c76c22c5c30de9"
        );
    }

    #[tokio::test]
    async fn a_webhook_is_signed_and_a_2xx_is_taken() {
        let (url, server) =
            serve_once("HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".into()).await;
        let answer = send(&client().unwrap(), &webhook(url), &message()).await;
        assert_eq!(
            answer,
            Ok(Answer {
                detail: "HTTP 204".into()
            })
        );
        let request = server.await.unwrap();
        assert!(
            request.starts_with(&format!(
                "POST /hooks/{PATH_SECRET}?token={QUERY_SECRET} HTTP/1.1\r\n"
            )),
            "{request}"
        );
        let sent = body(&request);
        assert_eq!(sent.as_bytes(), webhook_body(&message()));
        assert_eq!(
            header(&request, SIGNATURE_HEADER),
            Some(sign(KEY.as_bytes(), sent.as_bytes()).as_str())
        );
        assert_eq!(header(&request, EVENT_HEADER), Some("failed"));
        assert_eq!(header(&request, DELIVERY_HEADER), Some("a1b2c3d4e5f6-17"));
        let doc: serde_json::Value = serde_json::from_str(sent).unwrap();
        assert_eq!(doc["delivery"], "a1b2c3d4e5f6-17");
        assert_eq!(doc["id"], 17);
        assert_eq!(header(&request, "content-type"), Some("application/json"));
        assert_eq!(header(&request, "user-agent"), Some(USER_AGENT));
    }

    #[tokio::test]
    async fn a_chat_gets_the_slack_body() {
        let (url, server) =
            serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".into()).await;
        let chat = channel(ChannelTarget::Chat {
            url: Secret::new(url),
        });
        let answer = send(&client().unwrap(), &chat, &message()).await;
        assert_eq!(answer.unwrap().detail, "HTTP 200");
        let request = server.await.unwrap();
        let sent: serde_json::Value = serde_json::from_str(body(&request)).unwrap();
        assert_eq!(sent, chat_body(&message()));
        assert_eq!(header(&request, SIGNATURE_HEADER), None);
        assert_eq!(header(&request, "content-type"), Some("application/json"));
    }

    #[tokio::test]
    async fn a_5xx_is_transient_with_its_retry_after_and_no_url() {
        let page = format!(
            "\n  no hook at /hooks/{PATH_SECRET}?token={QUERY_SECRET} today\nsecond line\n"
        );
        let (url, _server) = serve_once(format!(
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 120\r\ncontent-length: {}\r\n\r\n{page}",
            page.len()
        ))
        .await;
        let failure = send(&client().unwrap(), &webhook(url), &message())
            .await
            .unwrap_err();
        assert_eq!(
            failure,
            Failure {
                transient: true,
                detail: "HTTP 503: no hook at [url] today".into(),
                retry_after: Some(Duration::from_secs(120)),
            }
        );
    }

    #[tokio::test]
    async fn a_500_with_an_http_date_retry_after() {
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(300));
        let (url, _server) = serve_once(format!(
            "HTTP/1.1 500 Internal Server Error\r\nretry-after: {later}\r\ncontent-length: 0\r\n\r\n"
        ))
        .await;
        let failure = send(&client().unwrap(), &webhook(url), &message())
            .await
            .unwrap_err();
        assert!(failure.transient);
        assert_eq!(failure.detail, "HTTP 500");
        let wait = failure.retry_after.unwrap();
        assert!(
            wait > Duration::from_secs(290) && wait <= Duration::from_secs(300),
            "{wait:?}"
        );
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed_and_is_permanent() {
        let (url, _server) = serve_once(format!(
            "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/{PATH_SECRET}\r\ncontent-length: 0\r\n\r\n"
        ))
        .await;
        let failure = send(&client().unwrap(), &webhook(url), &message())
            .await
            .unwrap_err();
        assert_eq!(
            failure,
            Failure {
                transient: false,
                detail: "HTTP 302: redirects are not followed".into(),
                retry_after: None,
            }
        );
    }

    #[tokio::test]
    async fn statuses_are_classified() {
        for (status, transient) in [
            ("400 Bad Request", false),
            ("401 Unauthorized", false),
            ("404 Not Found", false),
            ("408 Request Timeout", true),
            ("410 Gone", false),
            ("425 Too Early", true),
            ("429 Too Many Requests", true),
            ("502 Bad Gateway", true),
        ] {
            let (url, _server) = serve_once(format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{PATH_SECRET}",
                PATH_SECRET.len()
            ))
            .await;
            let failure = send(&client().unwrap(), &webhook(url), &message())
                .await
                .unwrap_err();
            assert_eq!(failure.transient, transient, "{status}");
            assert_eq!(
                failure.detail,
                format!("HTTP {}: [url]", &status[..3]),
                "{status}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_receiver_is_transient_and_its_url_not_shown() {
        // A port nothing listens on: bound, then closed.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let url = format!("http://127.0.0.1:{port}/hooks/{PATH_SECRET}?token={QUERY_SECRET}");
        let failure = send(&client().unwrap(), &webhook(url), &message())
            .await
            .unwrap_err();
        assert!(failure.transient, "{failure:?}");
        assert!(!failure.detail.contains(PATH_SECRET), "{}", failure.detail);
        assert!(!failure.detail.contains(QUERY_SECRET), "{}", failure.detail);
        assert!(!failure.detail.contains("http://"), "{}", failure.detail);
        assert!(!failure.detail.is_empty());
    }

    #[tokio::test]
    async fn a_channel_loaded_without_its_credentials_sends_nothing() {
        let mut ops = webhook("http://127.0.0.1:1/x".into());
        ops.secrets_read = false;
        let failure = send(&client().unwrap(), &ops, &message())
            .await
            .unwrap_err();
        assert!(!failure.transient);
        let bad = webhook("not a url".into());
        let failure = send(&client().unwrap(), &bad, &message())
            .await
            .unwrap_err();
        assert_eq!(
            failure,
            Failure::permanent("the channel's url is not a valid URL")
        );
    }

    #[test]
    fn the_url_its_path_and_query_are_scrubbed() {
        let url = format!("https://hooks.example.com/services/{PATH_SECRET}?k={QUERY_SECRET}");
        assert_eq!(
            scrub(
                &format!(
                    "at {url}, /services/{PATH_SECRET}, services/{PATH_SECRET}, \
                     k={QUERY_SECRET}, {PATH_SECRET} and {QUERY_SECRET} in hooks"
                ),
                &url
            ),
            "at [url], [url], [url], [url], [url] and [url] in hooks"
        );
        assert_eq!(
            scrub("HTTP 404: / not found", "https://x.example/"),
            "HTTP 404: / not found"
        );
    }

    #[test]
    fn answers_are_one_line_and_cut() {
        assert_eq!(one_line("a\r\nb\tc", 10), "a  b c");
        assert_eq!(
            one_line(&"x".repeat(300), MAX_ANSWER_CHARS).chars().count(),
            MAX_ANSWER_CHARS
        );
    }

    fn email(ca_file: Option<std::path::PathBuf>) -> EmailChannel {
        EmailChannel {
            host: "smtp.example.com".into(),
            port: 587,
            tls: SmtpTls::StartTls,
            ca_file,
            login: Some(("deploy".into(), Secret::new("hunter2-password"))),
            from: "redeploy <redeploy@example.com>".into(),
            to: vec![
                "ops@example.com".into(),
                "Dev Team <dev@example.org>".into(),
            ],
        }
    }

    #[test]
    fn the_email_has_a_stable_message_id_and_every_recipient() {
        let built = email_message(&email(None), &message()).unwrap();
        let text = String::from_utf8(built.formatted()).unwrap();
        assert!(
            text.contains("Message-ID: <redeploy.a1b2c3d4e5f6-17.web@example.com>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Subject: [redeploy] web: deploy failed\r\n"),
            "{text}"
        );
        assert!(
            text.contains("From: redeploy <redeploy@example.com>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("To: ops@example.com, \"Dev Team\" <dev@example.org>\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Auto-Submitted: auto-generated\r\n"),
            "{text}"
        );
        assert!(
            text.contains("Content-Type: text/plain; charset=utf-8\r\n"),
            "{text}"
        );
        assert!(text.contains("Date: "), "{text}");
        assert!(text.contains("State: deploy failed"), "{text}");
        assert!(!text.contains("hunter2"));
        let recipients: Vec<String> = built
            .envelope()
            .to()
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(recipients, ["ops@example.com", "dev@example.org"]);
    }

    #[test]
    fn message_ids_are_kept_to_safe_characters() {
        let mut m = message();
        m.stack = "we b>\n<x".into();
        assert_eq!(
            message_id(&m, "example.com"),
            "<redeploy.a1b2c3d4e5f6-17.we-b---x@example.com>"
        );
        m.stack = String::new();
        assert_eq!(
            message_id(&m, "exa mple>.com"),
            "<redeploy.a1b2c3d4e5f6-17.test@example.com>"
        );
        assert_eq!(
            message_id(&m, ""),
            "<redeploy.a1b2c3d4e5f6-17.test@redeploy.invalid>"
        );
        m.delivery = "test-1a2b> <x@y".into();
        assert_eq!(
            message_id(&m, "example.com"),
            "<redeploy.test-1a2b---x-y.test@example.com>"
        );
        // Two journals' notifications of the same id differ.
        let mut other = message();
        other.delivery = "0f9e8d7c6b5a-17".into();
        assert_ne!(
            message_id(&other, "example.com"),
            message_id(&message(), "example.com")
        );
    }

    #[tokio::test]
    async fn a_ca_file_that_cannot_be_used_is_a_permanent_failure_naming_it() {
        let dir = std::env::temp_dir().join(format!("redeploy-notify-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let failure = smtp_transport(&email(Some(missing.clone())))
            .await
            .err()
            .unwrap();
        assert!(!failure.transient);
        assert!(
            failure
                .detail
                .starts_with(&format!("ca_file {}: ", missing.display())),
            "{}",
            failure.detail
        );
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let failure = smtp_transport(&email(Some(empty.clone())))
            .await
            .err()
            .unwrap();
        assert_eq!(
            failure,
            Failure::permanent(format!(
                "ca_file {}: holds no PEM certificate",
                empty.display()
            ))
        );
        std::fs::remove_dir_all(&dir).unwrap();
        // Without a ca_file, every TLS mode builds.
        for tls in [SmtpTls::StartTls, SmtpTls::Tls, SmtpTls::None] {
            let mut e = email(None);
            e.tls = tls;
            assert!(smtp_transport(&e).await.is_ok());
        }
    }
}
