//! The hostile-input matrix: bad requests through real HTTP to a running
//! `redeploy serve`, each with the status it must get and why, and none of
//! them deploying anything.
//!
//! The server runs with its default body limit (25 MiB) and short header and
//! body timeouts so the slow-client cases finish quickly. Every case that is
//! not about the signature carries a valid one, so the case reaches the check
//! it is about.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::serve::World;
use crate::support::{hmac_sha256_hex, http, ServerProcess};

const SECRET: &str = "hostile-webhook-secret-Vq8Lr2Ns";
const OTHER_SECRET: &str = "hostile-other-secret-Kt5Pw9Yb";
const TOKEN: &str = "hostile-hook-token-abcdefghijklmnopqrstuv";
const PLAIN_TOKEN: &str = "hostile-hook-token-open-0123456789abcdef";

/// What a case sends.
enum Send {
    /// A well-formed HTTP/1.1 request from the normal client.
    Http {
        method: &'static str,
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Bytes on the wire as they are.
    Raw(Vec<u8>),
}

/// One row of the matrix.
struct Case {
    /// A one-line reason: what is wrong with the request.
    what: &'static str,
    send: Send,
    /// The status it must get.
    status: u16,
    /// The `error` field of the JSON answer, when the answer comes from
    /// redeploy (rather than from the HTTP parser, which answers with an
    /// empty body).
    error: Option<&'static str>,
}

fn hook() -> String {
    format!("/hooks/{TOKEN}")
}

/// A GitHub push body for `git_ref` of acme/web.
fn push(git_ref: &str, sha: &str) -> Vec<u8> {
    json!({
        "ref": git_ref,
        "before": "1".repeat(40),
        "after": sha,
        "created": false, "deleted": false, "forced": false,
        "repository": {"full_name": "acme/web", "clone_url": "https://github.com/acme/web.git"},
        "pusher": {"name": "mallory"},
        "commits": [{"id": sha, "message": "change", "added": [], "removed": [], "modified": ["app.py"]}],
        "head_commit": {"id": sha, "message": "change"},
    })
    .to_string()
    .into_bytes()
}

fn sig(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret, body))
}

/// A GitHub delivery of `body` with `extra` headers, signed with [`SECRET`]
/// unless `extra` carries its own `X-Hub-Signature-256`.
fn github(event: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> Send {
    let mut headers = vec![
        ("X-GitHub-Event".to_string(), event.to_string()),
        (
            "X-GitHub-Delivery".to_string(),
            format!("hostile-{}", body.len()),
        ),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    if !extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("x-hub-signature-256"))
    {
        headers.push(("X-Hub-Signature-256".to_string(), sig(SECRET, &body)));
    }
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let headers = dedupe_content_type(headers);
    Send::Http {
        method: "POST",
        path: hook(),
        headers,
        body,
    }
}

/// Lets a case replace the default `Content-Type` by giving its own.
fn dedupe_content_type(mut headers: Vec<(String, String)>) -> Vec<(String, String)> {
    let count = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .count();
    if count > 1 {
        let first = headers
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .unwrap();
        headers.remove(first);
    }
    headers
}

fn post(path: String, headers: &[(&str, &str)], body: &[u8]) -> Send {
    Send::Http {
        method: "POST",
        path,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_vec(),
    }
}

fn raw_post(extra_head: &str, body: &[u8]) -> Send {
    let mut raw = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-GitHub-Event: push\r\n{extra_head}\r\n",
        hook()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    Send::Raw(raw)
}

fn cases() -> Vec<Case> {
    let main_sha = "c".repeat(40);
    let good = push("refs/heads/main", &main_sha);
    let mut cases = Vec::new();
    let mut case = |what, send, status, error| {
        cases.push(Case {
            what,
            send,
            status,
            error,
        })
    };

    // Bodies that are not the JSON they claim to be.
    case(
        "invalid JSON",
        github("push", b"{ref: refs/heads/main}".to_vec(), &[]),
        400,
        Some("malformed-payload"),
    );
    case(
        "truncated JSON",
        github("push", good[..good.len() / 2].to_vec(), &[]),
        400,
        Some("malformed-payload"),
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    case(
        "JSON nested 100000 deep",
        github("push", deep.into_bytes(), &[]),
        400,
        Some("malformed-payload"),
    );
    let deep_field = format!(
        "{{\"ref\":\"refs/heads/main\",\"after\":\"{main_sha}\",\"repository\":{{\"full_name\":\"acme/web\"}},\"commits\":{}{}}}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    case(
        "a push whose commits are nested 5000 deep",
        github("push", deep_field.into_bytes(), &[]),
        400,
        Some("malformed-payload"),
    );
    case(
        "a body that is not UTF-8",
        github("push", vec![0xff, 0xfe, 0x7b, 0x00, 0xc3, 0x28, 0x80], &[]),
        400,
        Some("malformed-payload"),
    );
    let mut bad_utf8 = br#"{"ref":"refs/heads/ma"#.to_vec();
    bad_utf8.extend_from_slice(&[0xc3, 0x28]);
    bad_utf8.extend_from_slice(
        format!("in\",\"after\":\"{main_sha}\",\"repository\":{{\"full_name\":\"acme/web\"}}}}")
            .as_bytes(),
    );
    case(
        "invalid UTF-8 inside a JSON string",
        github("push", bad_utf8, &[]),
        400,
        Some("malformed-payload"),
    );
    case(
        "a JSON array instead of an object",
        github("push", b"[1, 2, 3]".to_vec(), &[]),
        400,
        Some("malformed-payload"),
    );
    case(
        "JSON null",
        github("push", b"null".to_vec(), &[]),
        400,
        Some("malformed-payload"),
    );
    case(
        "an empty body under a push event",
        github("push", Vec::new(), &[]),
        400,
        Some("malformed-payload"),
    );
    case(
        "a JSON body labelled as a form",
        github(
            "push",
            good.clone(),
            &[("Content-Type", "application/x-www-form-urlencoded")],
        ),
        400,
        Some("malformed-payload"),
    );
    case(
        "a form body without a payload field",
        github(
            "push",
            b"ref=refs%2Fheads%2Fmain&after=cc".to_vec(),
            &[("Content-Type", "application/x-www-form-urlencoded")],
        ),
        400,
        Some("malformed-payload"),
    );
    case(
        "a form whose payload is not JSON",
        github(
            "push",
            b"payload=%7Bnot+json".to_vec(),
            &[("Content-Type", "application/x-www-form-urlencoded")],
        ),
        400,
        Some("malformed-payload"),
    );
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&good).unwrap())
        .finish();
    case(
        "a form body labelled as JSON",
        github("push", form.into_bytes(), &[]),
        400,
        Some("malformed-payload"),
    );

    // Signatures.
    let mut hex = hmac_sha256_hex(SECRET, &good);
    case(
        "no signature on a stack with a secret",
        post(
            hook(),
            &[
                ("X-GitHub-Event", "push"),
                ("Content-Type", "application/json"),
            ],
            &good,
        ),
        401,
        Some("missing-signature"),
    );
    case(
        "an empty signature header",
        github("push", good.clone(), &[("X-Hub-Signature-256", "")]),
        401,
        Some("bad-signature"),
    );
    let wrong_prefix = format!("sha1={hex}");
    case(
        "a signature with the wrong prefix",
        github(
            "push",
            good.clone(),
            &[("X-Hub-Signature-256", &wrong_prefix)],
        ),
        401,
        Some("bad-signature"),
    );
    let short = format!("sha256={}", &hex[..40]);
    case(
        "a signature of the wrong length",
        github("push", good.clone(), &[("X-Hub-Signature-256", &short)]),
        401,
        Some("bad-signature"),
    );
    let long = format!("sha256={hex}00");
    case(
        "a signature one byte too long",
        github("push", good.clone(), &[("X-Hub-Signature-256", &long)]),
        401,
        Some("bad-signature"),
    );
    let non_hex = format!("sha256={}", "zz".repeat(32));
    case(
        "a signature that is not hexadecimal",
        github("push", good.clone(), &[("X-Hub-Signature-256", &non_hex)]),
        401,
        Some("bad-signature"),
    );
    let wrong_secret = sig(OTHER_SECRET, &good);
    case(
        "the right HMAC with the wrong secret",
        github(
            "push",
            good.clone(),
            &[("X-Hub-Signature-256", &wrong_secret)],
        ),
        401,
        Some("bad-signature"),
    );
    let other_body = sig(SECRET, &push("refs/heads/main", &"d".repeat(40)));
    case(
        "a valid signature of a different body",
        github(
            "push",
            good.clone(),
            &[("X-Hub-Signature-256", &other_body)],
        ),
        401,
        Some("bad-signature"),
    );
    // Flip one bit of the last byte: every byte of the MAC is compared.
    let last = u8::from_str_radix(&hex[62..], 16).unwrap() ^ 1;
    hex.replace_range(62.., &format!("{last:02x}"));
    let one_bit = format!("sha256={hex}");
    case(
        "a signature one bit off in its last byte",
        github("push", good.clone(), &[("X-Hub-Signature-256", &one_bit)]),
        401,
        Some("bad-signature"),
    );
    let sha1_only = [
        ("X-GitHub-Event", "push"),
        (
            "X-Hub-Signature",
            "sha1=0000000000000000000000000000000000000000",
        ),
    ];
    case(
        "a wrong SHA-1 signature and no SHA-256 one",
        post(hook(), &sha1_only, &good),
        401,
        Some("bad-signature"),
    );
    // An empty POST without provider headers is a manual trigger, which a
    // stack with secrets takes by default (tests/hostile_plugin.rs); one that
    // names a signing sender still needs its signature.
    case(
        "an empty POST under a GitLab event header without the token",
        post(hook(), &[("X-Gitlab-Event", "Push Hook")], b""),
        401,
        Some("missing-signature"),
    );
    // The GitHub-style signature ("sha256=" prefix) where Gitea sends bare hex.
    let gh_sig = sig(SECRET, &good);
    case(
        "a GitHub payload under Gitea headers",
        post(
            hook(),
            &[
                ("X-Gitea-Event", "push"),
                ("X-Gitea-Delivery", "hostile-gitea"),
                ("X-Gitea-Signature", &gh_sig),
                ("Content-Type", "application/json"),
            ],
            &good,
        ),
        401,
        Some("bad-signature"),
    );
    // Gitea's bare-hex signature, which GitHub never sends.
    let gitea_sig = hmac_sha256_hex(SECRET, &good);
    case(
        "a Gitea payload under GitHub headers",
        post(
            hook(),
            &[
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", "hostile-github"),
                ("X-Gitea-Signature", &gitea_sig),
                ("Content-Type", "application/json"),
            ],
            &good,
        ),
        401,
        Some("missing-signature"),
    );
    case(
        "a GitLab token header on a stack whose secret is an HMAC key",
        post(
            hook(),
            &[
                ("X-Gitlab-Event", "Push Hook"),
                ("X-Gitlab-Token", OTHER_SECRET),
            ],
            &good,
        ),
        401,
        Some("bad-signature"),
    );

    // Headers.
    case(
        "a replayed delivery (same X-GitHub-Delivery as the accepted one)",
        replay(),
        200,
        None,
    );
    case(
        "the signature header twice, the wrong one first",
        github(
            "push",
            good.clone(),
            &[
                ("X-Hub-Signature-256", &wrong_secret),
                ("X-Hub-Signature-256", &gh_sig),
            ],
        ),
        400,
        Some("bad-request"),
    );
    case(
        "the event header twice",
        github("push", good.clone(), &[("X-GitHub-Event", "ping")]),
        400,
        Some("bad-request"),
    );
    let mut many = String::new();
    for i in 0..200 {
        many.push_str(&format!("X-Pad-{i}: {i}\r\n"));
    }
    case(
        "200 headers",
        raw_post(&format!("{many}Content-Length: 0\r\n"), b""),
        431,
        None,
    );
    let huge_header = format!(
        "X-Pad: {}\r\nContent-Length: 0\r\n",
        "a".repeat(1024 * 1024)
    );
    case("a 1 MiB header", raw_post(&huge_header, b""), 431, None);
    case(
        "two different Content-Length headers",
        raw_post("Content-Length: 2\r\nContent-Length: 3\r\n", b"{}x"),
        400,
        None,
    );
    // RFC 9112: the chunked framing wins and the connection is closed after
    // the answer, so the request hidden behind the body is never served (a
    // second answer would make the body unreadable as JSON).
    case(
        "Content-Length and Transfer-Encoding together (request smuggling)",
        Send::Raw(
            format!(
                "POST {} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n\
                 Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n\
                 2\r\n{{}}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                hook()
            )
            .into_bytes(),
        ),
        401,
        Some("missing-signature"),
    );
    case(
        "a malformed chunked body",
        raw_post("Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n"),
        400,
        Some("bad-body"),
    );
    case(
        "a request line that is not HTTP",
        Send::Raw(b"POST\r\n\r\n".to_vec()),
        400,
        None,
    );
    let mut binary_event = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-GitHub-Event: pu",
        hook()
    )
    .into_bytes();
    binary_event.extend_from_slice(&[0xff, 0xfe]);
    binary_event.extend_from_slice(
        format!(
            "sh\r\nX-Hub-Signature-256: {gh_sig}\r\nContent-Length: {}\r\n\r\n",
            good.len()
        )
        .as_bytes(),
    );
    binary_event.extend_from_slice(&good);
    case(
        "an event header with bytes that are not UTF-8",
        Send::Raw(binary_event),
        200,
        None,
    );

    // Payload contents: well-formed, signed, and still nothing to deploy.
    case(
        "a ref without refs/heads/",
        github("push", push("main", &main_sha), &[]),
        200,
        None,
    );
    case(
        "a branch named like a path traversal",
        github(
            "push",
            push("refs/heads/../../../etc/passwd", &main_sha),
            &[],
        ),
        200,
        None,
    );
    case(
        "a branch that walks back to main",
        github("push", push("refs/heads/feature/../main", &main_sha), &[]),
        200,
        None,
    );
    case(
        "a tag named like the branch",
        github("push", push("refs/tags/main", &main_sha), &[]),
        200,
        None,
    );
    let mut deleted: serde_json::Value = serde_json::from_slice(&good).unwrap();
    deleted["after"] = json!("0".repeat(40));
    deleted["deleted"] = json!(true);
    case(
        "a deletion of the deployed branch",
        github("push", deleted.to_string().into_bytes(), &[]),
        200,
        None,
    );
    let mut other_repo: serde_json::Value = serde_json::from_slice(&good).unwrap();
    other_repo["repository"]["full_name"] = json!("acme/web/../evil");
    other_repo["repository"]["clone_url"] = json!("https://github.com/acme/evil.git");
    case(
        "a repository named like a path traversal",
        github("push", other_repo.to_string().into_bytes(), &[]),
        200,
        None,
    );
    let commits: Vec<serde_json::Value> = (0..60_000)
        .map(|i| json!({"id": format!("{i:040x}"), "message": "x", "added": [], "removed": [], "modified": ["a"]}))
        .collect();
    let huge = json!({
        "ref": "refs/heads/feature", "before": "1".repeat(40), "after": format!("{:040x}", 59_999),
        "repository": {"full_name": "acme/web"}, "pusher": {"name": "mallory"},
        "commits": commits, "head_commit": {"id": format!("{:040x}", 59_999), "message": "x"},
    })
    .to_string()
    .into_bytes();
    assert!(huge.len() > 5_000_000, "{}", huge.len());
    case(
        "a push of 60000 commits to another branch",
        github("push", huge.clone(), &[]),
        200,
        None,
    );
    let huge_sig = sig(OTHER_SECRET, &huge);
    case(
        "a push of 60000 commits with a wrong signature",
        github("push", huge, &[("X-Hub-Signature-256", &huge_sig)]),
        401,
        Some("bad-signature"),
    );
    case(
        "an event that never deploys",
        post(
            hook(),
            &[
                ("X-GitHub-Event", "issues"),
                ("X-Hub-Signature-256", &gh_sig),
                ("Content-Type", "application/json"),
            ],
            &good,
        ),
        200,
        None,
    );
    // Unsigned senders are refused before their body is parsed.
    case(
        "no provider header and a body of no known shape",
        post(hook(), &[], br#"{"hello": "world"}"#),
        401,
        Some("missing-signature"),
    );

    // Sizes.
    let big = vec![b' '; 26 * 1024 * 1024];
    case(
        "a 26 MiB body",
        github("push", big.clone(), &[]),
        413,
        Some("payload-too-large"),
    );
    let mut chunked = Vec::new();
    for chunk in big.chunks(1024 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    case(
        "a 26 MiB chunked body (no Content-Length)",
        raw_post("Transfer-Encoding: chunked\r\n", &chunked),
        413,
        Some("payload-too-large"),
    );

    // URLs and methods.
    case(
        "an empty POST to an unknown token",
        post("/hooks/not-a-configured-token-0000000000".into(), &[], b""),
        404,
        Some("not-found"),
    );
    case(
        "a prefix of the right token",
        post(format!("/hooks/{}", &TOKEN[..TOKEN.len() - 1]), &[], b""),
        404,
        Some("not-found"),
    );
    case(
        "the right token in upper case",
        post(format!("/hooks/{}", TOKEN.to_uppercase()), &[], b""),
        404,
        Some("not-found"),
    );
    case(
        "an empty token",
        post("/hooks/".into(), &[], b""),
        404,
        Some("not-found"),
    );
    case(
        "a path below the hook",
        post(format!("{}/../../healthz", hook()), &[], b""),
        404,
        Some("not-found"),
    );
    case(
        "GET on a hook URL",
        Send::Http {
            method: "GET",
            path: hook(),
            headers: vec![],
            body: vec![],
        },
        405,
        Some("unsupported-method"),
    );
    case(
        "DELETE on a hook URL",
        Send::Http {
            method: "DELETE",
            path: hook(),
            headers: vec![],
            body: vec![],
        },
        405,
        Some("unsupported-method"),
    );
    let long_query = format!("{}?services={}", hook(), "a".repeat(5000));
    case(
        "a query longer than the plugin parses",
        github("push", good.clone(), &[]).with_path(long_query),
        400,
        Some("bad-request"),
    );
    case(
        "an unknown service modifier",
        github("push", good.clone(), &[]).with_path(format!("{}?services=db", hook())),
        400,
        Some("bad-request"),
    );

    // The post-receive route of a stack without a secret.
    let pr = format!("/hooks/{PLAIN_TOKEN}/post-receive");
    let json_ct = [("Content-Type", "application/json")];
    case(
        "post-receive: a body that is not JSON",
        post(pr.clone(), &json_ct, b"deadbeef refs/heads/main"),
        400,
        Some("malformed-payload"),
    );
    case(
        "post-receive: an unknown field",
        post(
            pr.clone(),
            &json_ct,
            br#"{"repository":"acme/web","updates":[],"pusher":null,"admin":true}"#,
        ),
        400,
        Some("malformed-payload"),
    );
    let bad_line = json!({"repository": "acme/web", "pusher": null,
        "updates": [{"old": "1".repeat(40), "new": "../../etc/passwd", "name": "refs/heads/main"}]});
    case(
        "post-receive: an object id that is not one",
        post(pr.clone(), &json_ct, bad_line.to_string().as_bytes()),
        400,
        Some("malformed-payload"),
    );
    let updates: Vec<serde_json::Value> = (0..10_001)
        .map(|i| json!({"old": "1".repeat(40), "new": "2".repeat(40), "name": format!("refs/heads/b{i}")}))
        .collect();
    let too_many = json!({"repository": "acme/web", "pusher": null, "updates": updates});
    case(
        "post-receive: more ref updates than the limit",
        post(pr, &json_ct, too_many.to_string().as_bytes()),
        400,
        Some("malformed-payload"),
    );
    // The post-receive route of a stack with secrets wants a signature.
    let signed_pr = format!("/hooks/{TOKEN}/post-receive");
    let main_push = json!({"repository": "acme/web", "pusher": null,
        "updates": [{"old": "1".repeat(40), "new": "2".repeat(40), "name": "refs/heads/main"}]})
    .to_string();
    case(
        "post-receive: a stack with secrets, unsigned",
        post(signed_pr.clone(), &json_ct, main_push.as_bytes()),
        401,
        Some("missing-signature"),
    );
    let forged = format!(
        "sha256={}",
        hmac_sha256_hex("not-the-secret", main_push.as_bytes())
    );
    case(
        "post-receive: a stack with secrets, signed with another secret",
        post(
            signed_pr,
            &[
                ("Content-Type", "application/json"),
                ("X-Redeploy-Signature-256", &forged),
            ],
            main_push.as_bytes(),
        ),
        401,
        Some("bad-signature"),
    );
    cases
}

impl Send {
    fn with_path(self, new: String) -> Send {
        match self {
            Send::Http {
                method,
                headers,
                body,
                ..
            } => Send::Http {
                method,
                path: new,
                headers,
                body,
            },
            raw => raw,
        }
    }
}

/// The delivery [`replay`] repeats, accepted (and deployed) before the
/// matrix runs.
fn original() -> (Vec<u8>, Vec<(String, String)>) {
    let body = push("refs/heads/main", &"e".repeat(40));
    let headers = vec![
        ("X-GitHub-Event".to_string(), "push".to_string()),
        (
            "X-GitHub-Delivery".to_string(),
            "hostile-original".to_string(),
        ),
        ("X-Hub-Signature-256".to_string(), sig(SECRET, &body)),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    (body, headers)
}

fn replay() -> Send {
    let (body, headers) = original();
    Send::Http {
        method: "POST",
        path: hook(),
        headers,
        body,
    }
}

fn send(server: &ServerProcess, send: &Send) -> Option<http::Response> {
    match send {
        Send::Http {
            method,
            path,
            headers,
            body,
        } => {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            Some(http::request(&server.addr, method, path, &h, body))
        }
        Send::Raw(bytes) => http::raw(&server.addr, bytes),
    }
}

/// Sends `head` then `trickle` one byte a second; returns what the server
/// answered (if anything) and how long it took to close the connection.
fn slow_client(addr: &str, head: &[u8], trickle: &[u8]) -> (Vec<u8>, Duration) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let started = Instant::now();
    s.write_all(head).unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    for byte in trickle {
        if s.write_all(std::slice::from_ref(byte)).is_err() {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => return (answer, started.elapsed()),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return (answer, started.elapsed()),
        }
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (answer, started.elapsed()),
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
}

#[test]
fn the_hostile_input_matrix_gets_its_statuses_and_deploys_nothing() {
    let stacks = format!(
        r#"
[[stacks]]
name = "web"
repository = "acme/web"
branch = "main"
secrets = ["{SECRET}"]
hook_token = "{TOKEN}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:web@" }}

[[stacks]]
name = "open"
repository = "acme/web"
branch = "main"
hook_token = "{PLAIN_TOKEN}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:open@" }}
"#
    );
    let world = World::new(
        "hostile",
        "header_timeout = \"1s\"\nbody_timeout = \"2s\"",
        &stacks,
    );
    let server = world.start(&[]);
    let mut responses: Vec<Vec<u8>> = Vec::new();

    // The one delivery that deploys: the original of the replay case.
    let (body, headers) = original();
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let accepted = server.post(&hook(), &h, &body);
    assert_eq!(
        accepted.status,
        202,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
    responses.push(accepted.body.clone());
    let accepted_id = accepted.json()["decisions"][0]["deploy_id"]
        .as_i64()
        .unwrap();
    world.settle(20);

    // The slow clients run beside the matrix.
    let addr = server.addr.clone();
    let slow_headers = std::thread::spawn(move || {
        let head = format!("POST /hooks/{TOKEN} HTTP/1.1\r\n");
        slow_client(
            &addr,
            head.as_bytes(),
            b"Host: x\r\nX-GitHub-Event: push\r\n\r\n",
        )
    });
    let addr = server.addr.clone();
    let slow_body = std::thread::spawn(move || {
        let head = format!(
            "POST /hooks/{TOKEN} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-GitHub-Event: push\r\nContent-Length: 40\r\n\r\n"
        );
        slow_client(&addr, head.as_bytes(), &[b' '; 40])
    });

    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let answer = send(&server, &c.send);
        let (status, body) = match &answer {
            Some(r) => (r.status, r.body.clone()),
            None => (0, Vec::new()),
        };
        responses.push(body.clone());
        let error = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|j| j["error"].as_str().map(str::to_string));
        let error_ok = match c.error {
            Some(kind) => error.as_deref() == Some(kind),
            None => true,
        };
        if status != c.status || !error_ok {
            failures.push(format!(
                "#{i} {}: expected {} {:?}, got {status} {}",
                c.what,
                c.status,
                c.error,
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        // A 200 answer says why nothing deploys.
        if status == 200 {
            let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let decision = &j["decisions"][0];
            let nothing = decision["action"] == "skip" || decision["state"] == "duplicate";
            if !nothing || decision["reason"].as_str().is_none_or(str::is_empty) {
                failures.push(format!("#{i} {}: 200 without a reason: {j}", c.what));
            }
        }
    }

    let (answer, waited) = slow_headers.join().unwrap();
    // hyper answers 408 or just closes once the header timeout passes.
    let text = String::from_utf8_lossy(&answer);
    // Dropped at the 1 s header timeout: not at once, and not only when the
    // headers were complete (after about 30 s).
    let in_time = |waited: Duration, timeout: u64| {
        waited >= Duration::from_millis(timeout * 1000 - 100)
            && waited < Duration::from_secs(timeout + 6)
    };
    if !(in_time(waited, 1) && (answer.is_empty() || text.starts_with("HTTP/1.1 408"))) {
        failures.push(format!(
            "a client sending its headers one byte a second: dropped after {waited:?} with {text:?}"
        ));
    }
    let (answer, waited) = slow_body.join().unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    if !(in_time(waited, 2) && text.starts_with("HTTP/1.1 408") && text.contains("request-timeout"))
    {
        failures.push(format!(
            "a client sending its body one byte a second: dropped after {waited:?} with {text:?}"
        ));
    }
    responses.push(answer);

    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len() + 2,
        failures.join("\n")
    );

    // Nothing but the original deployed, and the server still serves.
    let deploys = world.settle(20);
    assert_eq!(
        deploys.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![accepted_id],
        "{deploys:#?}"
    );
    assert_eq!(world.ran("web").len(), 1);
    assert_eq!(world.ran("open").len(), 0);
    assert_eq!(
        http::request(&server.addr, "GET", "/healthz", &[], b"").status,
        200
    );
    server.terminate();
    crate::secrets::assert_no_leak(
        &world.dir.0,
        &responses,
        &[SECRET, OTHER_SECRET, TOKEN, PLAIN_TOKEN],
    );
}
