//! Unit tests of `send.rs`, beside it so that file stays short.
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

/// How sending to a receiver that answers `answer` once fails.
async fn failure_for(answer: String) -> Failure {
    let (url, _server) = serve_once(answer).await;
    send(&client().unwrap(), &webhook(url), &message())
        .await
        .unwrap_err()
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
    let (url, server) = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".into()).await;
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
    let page =
        format!("\n  no hook at /hooks/{PATH_SECRET}?token={QUERY_SECRET} today\nsecond line\n");
    let failure = failure_for(format!(
        "HTTP/1.1 503 Service Unavailable\r\nretry-after: 120\r\ncontent-length: {}\r\n\r\n{page}",
        page.len()
    ))
    .await;
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
    let failure = failure_for(format!(
        "HTTP/1.1 500 Internal Server Error\r\nretry-after: {later}\r\ncontent-length: 0\r\n\r\n"
    ))
    .await;
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
    let failure = failure_for(format!(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:1/{PATH_SECRET}\r\ncontent-length: 0\r\n\r\n"
    ))
    .await;
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
        let failure = failure_for(format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\n\r\n{PATH_SECRET}",
            PATH_SECRET.len()
        ))
        .await;
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
