//! The floor server: as fast as a webhook server gets on this machine.
//!
//! bench/serve_vs_webhook.py loads it beside `redeploy serve` and
//! adnanh/webhook, and reports their figures as fractions of its own. It
//! does what any GitHub webhook receiver must do for a push and nothing
//! more: it reads the body (up to [`MAX_BODY_BYTES`], redeploy's default
//! `server.max_body_bytes`), verifies the body's HMAC-SHA256 against
//! `X-Hub-Signature-256` in constant time, parses the push's `ref`, `after`
//! and `repository.full_name` without copying them, decides whether the
//! push is to the branch it follows, and answers a small JSON decision. It
//! keeps no journal, runs no sandbox and starts no deploys, so a push it
//! would deploy costs the same as one it skips. What redeploy does on top
//! (a fresh component instance per delivery, a durable journal, queued
//! deploys) accounts for the gap between the two. Its HTTP layer matches
//! redeploy's: hyper 1's HTTP/1 server on a multi-threaded tokio runtime.
//!
//! ```text
//! floor --listen 127.0.0.1:PORT --secret SECRET --branch BRANCH
//! ```
//!
//! Every path is the hook. A POST is answered:
//! - 200 `{"stack":"hello","action":"deploy"|"skip","repository":…,"ref":…,"after":…}`;
//! - 401 when the signature is missing, malformed or wrong;
//! - 400 when the body cannot be read, or is not a push's JSON;
//! - 413 when the body is over [`MAX_BODY_BYTES`] (refused whole, never cut).
//!
//! Any other method gets 405.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::net::TcpListener;

/// The largest body read: 25 MiB, redeploy's default `server.max_body_bytes`
/// (GitHub sends no delivery over 25 MB).
const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// The header GitHub signs a delivery in: [`SIGNATURE_PREFIX`], then the
/// hex HMAC-SHA256 of the raw body keyed with the hook's secret.
const SIGNATURE_HEADER: &str = "x-hub-signature-256";
const SIGNATURE_PREFIX: &[u8] = b"sha256=";

/// The one stack's name in the answer (the stack bench's redeploy serves).
const STACK: &str = "hello";

/// How long to wait after a failed accept (out of file descriptors and
/// the like) before the next, as redeploy does.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

const USAGE: &str = "usage: floor --listen ADDR:PORT --secret SECRET --branch BRANCH";

type HmacSha256 = Hmac<Sha256>;

/// What every request reads.
struct Hook {
    /// The HMAC keyed with the secret, cloned for each delivery, so the key
    /// is prepared once.
    keyed: HmacSha256,
    /// `refs/heads/<branch>`: the ref a push must name to be deployed.
    deploy_ref: String,
}

/// The fields of a GitHub push the decision reads, borrowed from the body
/// (a `Cow`, because a JSON string with escapes has to be unescaped into a
/// copy).
#[derive(Deserialize)]
struct Push<'a> {
    #[serde(borrow, rename = "ref")]
    git_ref: Cow<'a, str>,
    #[serde(borrow)]
    after: Cow<'a, str>,
    #[serde(borrow)]
    repository: Repository<'a>,
}

#[derive(Deserialize)]
struct Repository<'a> {
    #[serde(borrow)]
    full_name: Cow<'a, str>,
}

/// The answer to a signed push.
#[derive(Serialize)]
struct Decision<'a> {
    stack: &'a str,
    action: &'a str,
    repository: &'a str,
    #[serde(rename = "ref")]
    git_ref: &'a str,
    after: &'a str,
}

/// Answers one request.
async fn answer(hook: &Hook, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST a GitHub push\n");
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    let Some(signature) = request
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.as_bytes().strip_prefix(SIGNATURE_PREFIX))
        .and_then(|digits| hex::decode(digits).ok())
    else {
        return text(StatusCode::UNAUTHORIZED, "missing or malformed signature\n");
    };
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return too_large(),
        Err(_) => return text(StatusCode::BAD_REQUEST, "the body could not be read\n"),
    };
    // verify_slice compares in constant time.
    if hook
        .keyed
        .clone()
        .chain_update(&body)
        .verify_slice(&signature)
        .is_err()
    {
        return text(StatusCode::UNAUTHORIZED, "wrong signature\n");
    }
    let push: Push = match serde_json::from_slice(&body) {
        Ok(push) => push,
        Err(_) => return text(StatusCode::BAD_REQUEST, "not a GitHub push\n"),
    };
    let action = if *push.git_ref == *hook.deploy_ref {
        "deploy"
    } else {
        "skip"
    };
    let decision = Decision {
        stack: STACK,
        action,
        repository: &push.repository.full_name,
        git_ref: &push.git_ref,
        after: &push.after,
    };
    let mut json = serde_json::to_vec(&decision).expect("a struct of strings serializes");
    json.push(b'\n');
    respond(StatusCode::OK, "application/json", json)
}

fn too_large() -> Response<Full<Bytes>> {
    text(StatusCode::PAYLOAD_TOO_LARGE, "the body is over 25 MiB\n")
}

fn text(status: StatusCode, message: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", message)
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The command line.
struct Args {
    listen: SocketAddr,
    secret: String,
    branch: String,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut listen, mut secret, mut branch) = (None, None, None);
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut listen,
            "--secret" => &mut secret,
            "--branch" => &mut branch,
            _ => return Err(format!("unknown argument {flag:?}")),
        };
        *slot = Some(args.next().ok_or(format!("{flag} needs a value"))?);
    }
    let listen = listen.ok_or("--listen is required")?;
    Ok(Args {
        listen: listen
            .parse()
            .map_err(|e| format!("--listen {listen:?}: {e}"))?,
        secret: secret.ok_or("--secret is required")?,
        branch: branch.ok_or("--branch is required")?,
    })
}

#[tokio::main]
async fn main() {
    let args = parse_args(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("floor: {e}\n{USAGE}");
        std::process::exit(2)
    });
    let hook = Arc::new(Hook {
        keyed: HmacSha256::new_from_slice(args.secret.as_bytes())
            .expect("HMAC takes a key of any length"),
        deploy_ref: format!("refs/heads/{}", args.branch),
    });
    let listener = TcpListener::bind(args.listen).await.unwrap_or_else(|e| {
        eprintln!("floor: cannot listen on {}: {e}", args.listen);
        std::process::exit(1)
    });
    eprintln!(
        "floor: listening on {}, deploying {}",
        args.listen, hook.deploy_ref
    );
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                eprintln!("floor: accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let hook = hook.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let hook = hook.clone();
                async move { Ok::<_, Infallible>(answer(&hook, request).await) }
            });
            // Errors here are the client's (reset, bad request): nothing to do.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
