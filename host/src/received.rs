//! What a delivery's request looked like, as its journal row keeps it for
//! the dashboard's delivery page: the headers with every secret-bearing one
//! redacted, the query likewise, and the body's size; and, only where
//! `server.keep_delivery_bodies` allows, the request exactly as sent, so
//! that "check again" can evaluate it with the current configuration.
//!
//! Redaction happens here, before anything is written: what the page shows
//! was never stored in the clear. The kept request is stored as sent
//! (signatures and tokens included, or a dry run could not check them) and
//! is never shown; it is as private as the rest of the journal, which holds
//! the hook URL tokens too.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::plugin::wit;

/// What a redacted header or query value shows instead.
pub const REDACTED: &str = "(redacted)";

/// Parts of a header (or query parameter) name that mark it as carrying a
/// credential: `Authorization`, `Cookie`, `X-Hub-Signature-256`,
/// `X-Gitlab-Token`, `X-Gitee-Token`, `X-Redeploy-Signature-256`,
/// `X-Api-Key`, `X-Shopify-Hmac-Sha256`, the identity proxies'
/// `Cf-Access-Jwt-Assertion`, `X-Goog-Iap-Jwt-Assertion`,
/// `X-Amzn-Oidc-Data` and `X-Ms-Client-Principal`, and whatever a sender or
/// proxy names alike. Matched case-insensitively anywhere in the name
/// (percent-decoded, for a query's); redacting a harmless header is the
/// safe mistake.
pub const SECRET_NAME_PARTS: &[&str] = &[
    "auth",
    "token",
    "secret",
    "sig",
    "hmac",
    "key",
    "cookie",
    "pass",
    "credential",
    "session",
    "jwt",
    "assertion",
    "oidc",
    "bearer",
    "principal",
];

/// How a JSON Web Token starts (`{"` in base64url): a value holding one is
/// a bearer credential, whatever its header's name.
pub const JWT_MARKER: &str = "eyJ";

/// Parts of a value that mark it as holding a hook URL (a `Referer` or a
/// proxy's `X-Original-URI` naming the path): the path's token is a
/// credential. Matched case-insensitively in the value as sent and in it
/// percent-decoded (up to [`MAX_DECODINGS`] times). The hook token itself
/// is redacted wherever it appears, whatever the path around it.
pub const HOOK_URL_MARKERS: &[&str] = &["hooks/"];

/// How many times a value is percent-decoded, each form searched for
/// secrets and hook URLs (`%252F` is `/` encoded twice).
pub const MAX_DECODINGS: usize = 3;

/// The longest header value the recorded view keeps; a longer one is
/// replaced by its size (never cut), so a sender's giant headers cannot
/// bloat the journal.
pub const MAX_RECORDED_VALUE_BYTES: usize = 2048;

/// The most headers the recorded view keeps; the rest are only counted.
pub const MAX_RECORDED_HEADERS: usize = 64;

/// The most bytes of names and values the recorded view keeps over all its
/// headers and its query; the headers past it are only counted, a query
/// past it is replaced by its size.
pub const MAX_RECORDED_BYTES: usize = 16 * 1024;

/// What a delivery's row keeps of its request: the redacted view, and the
/// request as sent where it is kept.
pub type RequestRecord = (Received, Option<KeptRequest>);

/// A delivery's request as its row keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// Every header in the order received, secret-bearing values replaced
    /// by [`REDACTED`].
    pub headers: Vec<(String, String)>,
    /// The hook URL's query, secret-bearing values replaced likewise.
    pub query: String,
    /// Headers beyond [`MAX_RECORDED_HEADERS`], not kept.
    #[serde(default)]
    pub more_headers: usize,
    /// The body's size in bytes.
    pub body_size: u64,
    /// Why the body was not kept, when bodies are kept but this one was not
    /// (over the size cap).
    pub not_kept: Option<String>,
}

/// A request exactly as sent, for a dry run (never shown; its `Debug`
/// leaves the headers and body out).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptRequest {
    /// Whether it was a post-receive push forwarded by a git server's hook
    /// (`/hooks/<token>/post-receive`) rather than a webhook.
    pub forwarded: bool,
    /// The HTTP method.
    pub method: String,
    /// The hook URL's query.
    pub query: String,
    /// Every header as sent.
    pub headers: Vec<(String, String)>,
    /// The body, in standard base64 (a body need not be text).
    pub body_base64: String,
}

impl std::fmt::Debug for KeptRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptRequest")
            .field("forwarded", &self.forwarded)
            .field("method", &self.method)
            .field("headers", &self.headers.len())
            .field("body_base64", &self.body_base64.len())
            .finish_non_exhaustive()
    }
}

impl KeptRequest {
    /// The delivery to evaluate again.
    pub fn delivery(&self) -> Result<wit::Delivery, base64::DecodeError> {
        let request = wit::HttpRequest {
            method: self.method.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: base64::engine::general_purpose::STANDARD.decode(&self.body_base64)?,
        };
        Ok(match self.forwarded {
            true => wit::Delivery::ForwardedPostReceive(request),
            false => wit::Delivery::Http(request),
        })
    }
}

/// What the row of `delivery`, answered `status`, keeps when it is a
/// request: a webhook, a forwarded push, or a manual trigger sent as one
/// (`redeploy trigger`, the dashboard's "Redeploy now"); a local
/// post-receive push and a poll have none. That is the redacted view, and the request
/// itself when it (body, headers and query) is at most `keep_up_to` bytes
/// (0 keeps none) and was not refused (a status below 400: anyone with the
/// hook URL can send refused deliveries, so theirs would let a stranger
/// fill the journal). `secrets` are the stack's webhook secrets and the
/// hook token: a value that contains one is redacted whatever its name.
pub fn received(
    delivery: &wit::Delivery,
    secrets: &[&str],
    keep_up_to: u64,
    status: u16,
) -> Option<RequestRecord> {
    let (request, forwarded) = match delivery {
        wit::Delivery::Http(r) => (r, false),
        wit::Delivery::ForwardedPostReceive(r) => (r, true),
        wit::Delivery::PostReceive(_) | wit::Delivery::Manual(_) | wit::Delivery::Poll(_) => {
            return None
        }
    };
    // Lower-cased once for every value's comparison (they match in any case).
    let lowered: Vec<String> = secrets
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let secrets: Vec<&str> = lowered.iter().map(String::as_str).collect();
    let secrets = secrets.as_slice();
    // A kept request's size counts its headers and query with its body.
    let headers_size: usize = request.headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    let body_size = request.body.len() as u64;
    let kept_size = body_size + (headers_size + request.query.len()) as u64;
    let not_kept = if keep_up_to == 0 {
        None
    } else if status >= 400 {
        Some("the body of a refused delivery is not kept".to_owned())
    } else if kept_size > keep_up_to {
        Some(format!(
            "the request ({kept_size} bytes with its headers) is over keep_delivery_bodies ({keep_up_to} bytes)"
        ))
    } else {
        None
    };
    let keeps = keep_up_to > 0 && not_kept.is_none();
    let query = if request.query.len() > MAX_RECORDED_VALUE_BYTES {
        format!("({} bytes, not recorded)", request.query.len())
    } else {
        redacted_query(&request.query, secrets)
    };
    let mut budget = MAX_RECORDED_BYTES.saturating_sub(query.len());
    let mut headers = Vec::new();
    for (name, value) in request.headers.iter().take(MAX_RECORDED_HEADERS) {
        let shown = if value.len() > MAX_RECORDED_VALUE_BYTES {
            format!("({} bytes, not recorded)", value.len())
        } else {
            redacted(name, value, secrets).to_owned()
        };
        let Some(left) = budget.checked_sub(name.len() + shown.len()) else {
            break;
        };
        budget = left;
        headers.push((name.clone(), shown));
    }
    let view = Received {
        more_headers: request.headers.len() - headers.len(),
        headers,
        query,
        body_size,
        not_kept,
    };
    let kept = keeps.then(|| KeptRequest {
        forwarded,
        method: request.method.clone(),
        query: request.query.clone(),
        headers: request.headers.clone(),
        body_base64: base64::engine::general_purpose::STANDARD.encode(&request.body),
    });
    Some((view, kept))
}

/// `value`, or [`REDACTED`] when its name or its content marks it as a
/// credential.
fn redacted<'a>(name: &str, value: &'a str, secrets: &[&str]) -> &'a str {
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8_lossy()
        .to_ascii_lowercase();
    let secret_name = SECRET_NAME_PARTS.iter().any(|part| name.contains(part));
    if secret_name || holds_credential(value, secrets) {
        REDACTED
    } else {
        value
    }
}

/// Whether `value`, as sent or percent-decoded, holds one of `secrets`
/// (non-empty and lower-cased, as [`received`] makes them) or a hook URL's
/// path, in any case.
fn holds_credential(value: &str, secrets: &[&str]) -> bool {
    let mut form = value.to_owned();
    for _ in 0..=MAX_DECODINGS {
        let lower = form.to_ascii_lowercase();
        if HOOK_URL_MARKERS.iter().any(|m| lower.contains(m))
            || secrets.iter().any(|s| lower.contains(s))
            || form.contains(JWT_MARKER)
        {
            return true;
        }
        let decoded = percent_encoding::percent_decode_str(&form.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned();
        if decoded == form {
            break;
        }
        form = decoded;
    }
    false
}

/// `query` with each secret-bearing parameter's value redacted (the names
/// stay, so the page still says which were sent).
fn redacted_query(query: &str, secrets: &[&str]) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            // A credential anywhere in it (its name too): all of it goes.
            _ if holds_credential(pair, secrets) => REDACTED.to_owned(),
            Some((name, value)) if redacted(name, value, secrets) == REDACTED => {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(headers: &[(&str, &str)], query: &str, body: &[u8]) -> wit::Delivery {
        wit::Delivery::Http(wit::HttpRequest {
            method: "POST".into(),
            query: query.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: body.to_vec(),
        })
    }

    #[test]
    fn every_credential_bearing_header_is_redacted_and_the_rest_shown() {
        let delivery = http(
            &[
                ("content-type", "application/json"),
                ("x-github-event", "push"),
                ("x-hub-signature-256", "sha256=abc"),
                ("X-Hub-Signature", "sha1=abc"),
                ("x-gitlab-token", "hunter2"),
                ("authorization", "Basic dXNlcjpwYXNz"),
                ("cookie", "a=b"),
                ("x-api-key", "k"),
                ("referer", "https://ci.example/HOOKS/t0ken"),
                ("x-original-uri", "%2Fhooks%2Ft0ken"),
                ("x-custom", "carries s3cr3t-value inside"),
                ("user-agent", "GitHub-Hookshot/abc"),
            ],
            "",
            b"{}",
        );
        let (view, kept) = received(&delivery, &["s3cr3t-value"], 0, 200).unwrap();
        let shown: Vec<(&str, &str)> = view
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            shown,
            [
                ("content-type", "application/json"),
                ("x-github-event", "push"),
                ("x-hub-signature-256", REDACTED),
                ("X-Hub-Signature", REDACTED),
                ("x-gitlab-token", REDACTED),
                ("authorization", REDACTED),
                ("cookie", REDACTED),
                ("x-api-key", REDACTED),
                ("referer", REDACTED),
                ("x-original-uri", REDACTED),
                ("x-custom", REDACTED),
                ("user-agent", "GitHub-Hookshot/abc"),
            ]
        );
        assert_eq!(view.body_size, 2);
        assert_eq!(view.not_kept, None, "bodies are not kept at all");
        assert_eq!(kept, None);
    }

    #[test]
    fn the_hook_token_is_redacted_however_a_proxy_wrote_it() {
        let token = "Zm9vYmFyLXRva2VuLTEyMzQ";
        let delivery = http(
            &[
                ("x-forwarded-uri", "/deploy/Zm9vYmFyLXRva2VuLTEyMzQ"),
                ("x-envoy-original-path", "%252Fhooks%252Fanything"),
                ("x-rewrite", "hooks%2Fx"),
                ("x-encoded", "Zm9vYmFy%2DdG9rZW4%2D"),
                ("x-twice", "%255A%256D9vYmFyLXRva2VuLTEyMzQ"),
                ("x-plain", "nothing here"),
                ("x-upper", "ZM9VYMFYLXRVA2VULTEYMZQ"),
                ("cf-access-jwt-assertion", "eyJhbGciOi.eyJzdWIi.c2ln"),
                ("x-forwarded-client", "eyJhbGciOi.eyJzdWIi.c2ln"),
            ],
            "",
            b"",
        );
        let (view, _) = received(&delivery, &[token], 0, 200).unwrap();
        let shown: Vec<&str> = view.headers.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            shown,
            [
                REDACTED,
                REDACTED,
                REDACTED,
                "Zm9vYmFy%2DdG9rZW4%2D",
                REDACTED,
                "nothing here",
                REDACTED,
                REDACTED,
                REDACTED
            ]
        );
    }

    #[test]
    fn giant_and_countless_headers_are_counted_not_kept() {
        let big = "v".repeat(MAX_RECORDED_VALUE_BYTES + 1);
        let mut headers: Vec<(String, String)> = vec![("x-big".into(), big)];
        headers.extend((0..MAX_RECORDED_HEADERS).map(|i| (format!("x-{i}"), "1".into())));
        let delivery = wit::Delivery::Http(wit::HttpRequest {
            method: "POST".into(),
            query: String::new(),
            headers,
            body: vec![],
        });
        let (view, _) = received(&delivery, &[], 0, 200).unwrap();
        assert_eq!(view.headers.len(), MAX_RECORDED_HEADERS);
        assert_eq!(view.more_headers, 1);
        assert_eq!(view.headers[0].1, "(2049 bytes, not recorded)");
    }

    #[test]
    fn a_refused_deliverys_body_is_not_kept() {
        let delivery = http(&[], "", b"{}");
        let (view, kept) = received(&delivery, &[], 1024, 401).unwrap();
        assert_eq!(kept, None);
        assert_eq!(
            view.not_kept.as_deref(),
            Some("the body of a refused delivery is not kept")
        );
    }

    #[test]
    fn a_query_keeps_its_names_and_loses_its_secrets() {
        let delivery = http(
            &[],
            "services=web&token=abc&x=s3cr3t&%74oken=1&S3CR3T=1&flag",
            b"",
        );
        let (view, _) = received(&delivery, &["s3cr3t"], 0, 200).unwrap();
        assert_eq!(
            view.query,
            "services=web&token=(redacted)&(redacted)&%74oken=(redacted)&(redacted)&flag"
        );
    }

    #[test]
    fn a_body_is_kept_whole_up_to_the_cap_and_never_cut() {
        let body = vec![0xff_u8, 0, b'{'];
        let delivery = http(
            &[("x-hub-signature-256", "sha256=abc")],
            "services=web",
            &body,
        );
        // The body, its header's name and value, and the query: 3 + 29 + 12.
        let whole = 44;
        let (view, kept) = received(&delivery, &[], whole, 202).unwrap();
        assert_eq!(view.not_kept, None);
        let kept = kept.unwrap();
        assert_eq!(
            kept.headers,
            [("x-hub-signature-256".to_owned(), "sha256=abc".to_owned())]
        );
        let wit::Delivery::Http(again) = kept.delivery().unwrap() else {
            panic!("a webhook is kept as a webhook");
        };
        assert_eq!(again.body, body);
        assert_eq!(again.query, "services=web");

        let (view, kept) = received(&delivery, &[], whole - 1, 200).unwrap();
        assert_eq!(kept, None);
        assert_eq!(
            view.not_kept.as_deref(),
            Some("the request (44 bytes with its headers) is over keep_delivery_bodies (43 bytes)")
        );
    }

    #[test]
    fn a_forwarded_push_is_kept_as_one_and_a_manual_trigger_has_no_request() {
        let request = wit::HttpRequest {
            method: "POST".into(),
            query: String::new(),
            headers: vec![],
            body: b"{}".to_vec(),
        };
        let (_, kept) =
            received(&wit::Delivery::ForwardedPostReceive(request), &[], 10, 202).unwrap();
        assert!(matches!(
            kept.unwrap().delivery().unwrap(),
            wit::Delivery::ForwardedPostReceive(_)
        ));
        let manual = wit::Delivery::Manual(wit::ManualTrigger {
            stack: "web".into(),
            query: String::new(),
        });
        assert_eq!(received(&manual, &[], 10, 202), None);
    }
}
