//! The hostile-input matrix: bad requests through real HTTP to a running
//! `redeploy serve`, each its own named test with the status it must get
//! and why, and none of them deploying anything.
//!
//! One server serves the whole matrix (starting one per case would cost a
//! component compile each). Every case gets two stacks of its own, named
//! after the case: `<case>` with a webhook secret and `<case>-open` without
//! one, each with its own hook token. So cases run in parallel and in any
//! order, and "deployed nothing" is checked per case: after its answer, the
//! journal holds no deploy of the case's stacks (a deploy is journaled
//! before the answer is sent, so nothing can still be on its way).
//!
//! The server runs with its default body limit (25 MiB) and short header
//! and body timeouts so the slow-client cases finish quickly. Every case
//! that is not about the signature carries a valid one, so the case reaches
//! the check it is about.
//!
//! Beside the matrix, the cases of issue 12 that need a world of their own
//! (a restart, a git repository, a deploy in flight) are named tests in
//! `plugin.rs` (decisions the component now makes: signatures before
//! parsing, manual triggers, deployments, query modifiers, stale events),
//! `replay.rs` (replays and older commits), `runner.rs` (the hook's input,
//! runners, process groups, log forging), `server.rs` (memory, connections,
//! pruning, private expiring logs, the compiled-component cache).
//!
//! Run one case: `cargo test --release -p redeploy-host --test integration
//! -- hostile::matrix::invalid_json`.

use std::io::{Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use redeploy_host::journal::Journal;

use crate::support::deliveries::{borrowed, push_json};
use crate::support::stacks::toml;
use crate::support::{http, Stack, World};

pub use crate::support::sig;

mod matrix;
mod plugin;
mod replay;
mod runner;
mod server;

/// The webhook secret of every case's `<case>` stack.
pub const SECRET: &str = "hostile-webhook-secret-Vq8Lr2Ns";
/// A secret no stack has.
pub const OTHER_SECRET: &str = "hostile-other-secret-Kt5Pw9Yb";

/// What a case sends.
pub enum Send {
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

impl Send {
    /// The same request on another path.
    pub fn with_path(self, new: String) -> Send {
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

/// One row of the matrix.
pub struct Case {
    /// What it sends.
    pub send: Send,
    /// The status it must get.
    pub status: u16,
    /// The `error` field of the JSON answer, when the answer comes from
    /// redeploy (rather than from the HTTP parser, which answers with an
    /// empty body).
    pub error: Option<&'static str>,
}

/// A case expecting `status` and, when given, the `error` kind.
pub fn expect(send: Send, status: u16, error: Option<&'static str>) -> Case {
    Case {
        send,
        status,
        error,
    }
}

/// The stacks and hook URLs of one case.
pub struct Target {
    /// The stack with [`SECRET`], named after the case.
    pub stack: String,
    /// Its hook token.
    pub token: String,
    /// The stack without a secret.
    pub open_stack: String,
    /// Its hook token.
    pub open_token: String,
}

impl Target {
    /// The targets of the case `name`.
    pub fn of(name: &str) -> Target {
        // Stack names are short (at most 64 characters): a digest of the case's name.
        let token_of = |stack: &str| format!("hostile-{}", &sha256_hex(stack.as_bytes())[..40]);
        let stack = format!("case-{}", &sha256_hex(name.as_bytes())[..16]);
        let open_stack = format!("{stack}-open");
        Target {
            stack,
            token: token_of(name),
            open_token: token_of(&open_stack),
            open_stack,
        }
    }

    /// `/hooks/<token>` of the stack with a secret.
    pub fn hook(&self) -> String {
        format!("/hooks/{}", self.token)
    }

    /// `/hooks/<token>` of the stack without a secret.
    pub fn open_hook(&self) -> String {
        format!("/hooks/{}", self.open_token)
    }

    /// The TOML of both stacks.
    fn toml(&self) -> String {
        let stack = |name: &str, token: &str| {
            let stack = Stack::new(name).follows("acme/web", "main");
            stack.key("hook_token", token).standin()
        };
        let signed = stack(&self.stack, &self.token).secret(SECRET);
        toml(&[signed, stack(&self.open_stack, &self.open_token)])
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

/// The cases that are not rows of the matrix but share its server.
const SPECIAL: &[&str] = &[
    "a_replayed_delivery_deploys_once",
    "a_client_sending_its_headers_one_byte_a_second_is_dropped",
    "a_client_sending_its_body_one_byte_a_second_is_dropped",
    "the_matrix_server_leaks_no_secret",
];

/// The matrix's one server, started by the first case that runs and
/// killed (its temp dir removed) when the test binary exits.
struct Shared {
    world: World,
    addr: String,
    pid: u32,
}

static SHARED: OnceLock<Shared> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(shared) = SHARED.get() {
        // SAFETY: kill(2) on the server process this binary started.
        unsafe {
            libc::kill(shared.pid as i32, libc::SIGKILL);
        }
        let _ = std::fs::remove_dir_all(&shared.world.dir.0);
    }
}

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let stacks: String = matrix::CASES
            .iter()
            .chain(SPECIAL)
            .map(|name| Target::of(name).toml())
            .collect();
        let world = World::new(
            "hostile",
            "header_timeout = \"1s\"\nbody_timeout = \"2s\"",
            &stacks,
        );
        let server = world.start(&[]);
        let addr = server.addr.clone();
        let pid = server.child.id();
        // The server outlives this test's thread; the exit hook stops it.
        std::mem::forget(server);
        // SAFETY: registers a plain `extern "C" fn` to run at process exit.
        unsafe {
            libc::atexit(stop_shared);
        }
        Shared { world, addr, pid }
    })
}

/// Every secret and token a response must never carry.
fn secrets(t: &Target) -> Vec<String> {
    vec![
        SECRET.to_string(),
        OTHER_SECRET.to_string(),
        t.token.clone(),
        t.open_token.clone(),
    ]
}

fn deploys_of(world: &World, stack: &str) -> Vec<i64> {
    Journal::open_read_only(&Journal::path_in(&world.dir.join("state")))
        .unwrap()
        .deploys(Some(stack), 1000)
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect()
}

fn send(addr: &str, send: &Send) -> Option<http::Response> {
    match send {
        Send::Http {
            method,
            path,
            headers,
            body,
        } => Some(http::request(addr, method, path, &borrowed(headers), body)),
        Send::Raw(bytes) => http::raw(addr, bytes),
    }
}

/// Runs the case `name`: sends it, checks the status, the error kind, that a
/// 200 says why nothing deploys, that the answer holds no secret, and that
/// neither of the case's stacks has a deploy.
pub fn run(name: &str, build: fn(&Target) -> Case) {
    let shared = shared();
    let target = Target::of(name);
    let case = build(&target);
    let answer = send(&shared.addr, &case.send);
    let (status, body) = match &answer {
        Some(r) => (r.status, r.body.clone()),
        None => (0, Vec::new()),
    };
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
    let json = serde_json::from_slice::<serde_json::Value>(&body).ok();
    let error = json
        .as_ref()
        .and_then(|j| j["error"].as_str().map(str::to_string));
    assert_eq!(status, case.status, "{name}: answered {text}");
    if let Some(kind) = case.error {
        assert_eq!(error.as_deref(), Some(kind), "{name}: answered {text}");
    }
    if status == 200 {
        let j = json.expect("a 200 answer is JSON");
        let decision = &j["decisions"][0];
        let nothing = decision["action"] == "skip" || decision["state"] == "duplicate";
        assert!(nothing, "{name}: 200 that deploys: {j}");
        assert!(
            decision["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{name}: 200 without a reason: {j}"
        );
    }
    for secret in secrets(&target) {
        assert!(
            !String::from_utf8_lossy(&body).contains(&secret),
            "{name}: the answer carries a secret or token"
        );
    }
    for stack in [&target.stack, &target.open_stack] {
        assert_eq!(
            deploys_of(&shared.world, stack),
            Vec::<i64>::new(),
            "{name}: stack {stack} got a deploy"
        );
    }
}

/// A GitHub push of `sha` to `git_ref` of acme/web by mallory.
pub fn push(git_ref: &str, sha: &str) -> Vec<u8> {
    let mut push = push_json(git_ref, &"1".repeat(40), sha);
    push["pusher"]["name"] = serde_json::json!("mallory");
    push.to_string().into_bytes()
}

/// A GitHub delivery of `body` to the case's stack with a secret, with
/// `extra` headers, signed with [`SECRET`] unless `extra` carries its own
/// `X-Hub-Signature-256`. A `Content-Type` in `extra` replaces the default.
pub fn github(t: &Target, event: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> Send {
    let mut headers = vec![
        ("X-GitHub-Event".to_string(), event.to_string()),
        (
            "X-GitHub-Delivery".to_string(),
            format!("hostile-{}-{}", t.stack, body.len()),
        ),
    ];
    if !extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        headers.push(("Content-Type".to_string(), "application/json".to_string()));
    }
    if !extra
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("x-hub-signature-256"))
    {
        headers.push(("X-Hub-Signature-256".to_string(), sig(SECRET, &body)));
    }
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Send::Http {
        method: "POST",
        path: t.hook(),
        headers,
        body,
    }
}

/// A POST of `body` with exactly `headers`.
pub fn post(path: String, headers: &[(&str, &str)], body: &[u8]) -> Send {
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

/// A raw GitHub-labelled POST to the case's stack with a secret:
/// `extra_head` ends the head, `body` follows as it is.
pub fn raw_post(t: &Target, extra_head: &str, body: &[u8]) -> Send {
    let mut raw = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-GitHub-Event: push\r\n{extra_head}\r\n",
        t.hook()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    Send::Raw(raw)
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

/// Dropped at a `timeout`-second limit: not at once, and not only when the
/// whole request had trickled in.
fn dropped_in_time(waited: Duration, timeout: u64) -> bool {
    waited >= Duration::from_millis(timeout * 1000 - 100)
        && waited < Duration::from_secs(timeout + 6)
}

#[test]
fn a_replayed_delivery_deploys_once() {
    let shared = shared();
    let t = Target::of("a_replayed_delivery_deploys_once");
    let body = push("refs/heads/main", &"e".repeat(40));
    let signature = sig(SECRET, &body);
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "hostile-original"),
        ("X-Hub-Signature-256", signature.as_str()),
        ("Content-Type", "application/json"),
    ];
    let first = http::request(&shared.addr, "POST", &t.hook(), &headers, &body);
    assert_eq!(first.status, 202, "{}", first.text());
    let again = http::request(&shared.addr, "POST", &t.hook(), &headers, &body);
    assert_eq!(again.status, 200, "{}", again.text());
    let j = again.json();
    assert_eq!(j["decisions"][0]["state"], "duplicate", "{j}");
    assert!(j["decisions"][0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("already accepted")));
    assert_eq!(deploys_of(&shared.world, &t.stack).len(), 1);
}

#[test]
fn a_client_sending_its_headers_one_byte_a_second_is_dropped() {
    let shared = shared();
    let t = Target::of("a_client_sending_its_headers_one_byte_a_second_is_dropped");
    let head = format!("POST {} HTTP/1.1\r\n", t.hook());
    let (answer, waited) = slow_client(
        &shared.addr,
        head.as_bytes(),
        b"Host: x\r\nX-GitHub-Event: push\r\n\r\n",
    );
    // hyper answers 408 or just closes once the header timeout passes.
    let text = String::from_utf8_lossy(&answer);
    assert!(
        dropped_in_time(waited, 1) && (answer.is_empty() || text.starts_with("HTTP/1.1 408")),
        "dropped after {waited:?} with {text:?}"
    );
    assert!(deploys_of(&shared.world, &t.stack).is_empty());
}

#[test]
fn a_client_sending_its_body_one_byte_a_second_is_dropped() {
    let shared = shared();
    let t = Target::of("a_client_sending_its_body_one_byte_a_second_is_dropped");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-GitHub-Event: push\r\nContent-Length: 40\r\n\r\n",
        t.hook()
    );
    let (answer, waited) = slow_client(&shared.addr, head.as_bytes(), &[b' '; 40]);
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(
        dropped_in_time(waited, 2)
            && text.starts_with("HTTP/1.1 408")
            && text.contains("request-timeout"),
        "dropped after {waited:?} with {text:?}"
    );
    assert!(deploys_of(&shared.world, &t.stack).is_empty());
}

#[test]
fn the_matrix_server_leaks_no_secret() {
    let shared = shared();
    let t = Target::of("the_matrix_server_leaks_no_secret");
    let body = push("refs/heads/main", &"c".repeat(40));
    let mut responses = Vec::new();
    // A wrong HMAC, a GitLab token in clear, and a wrong hook token: each
    // puts a secret or token where a careless log line would show it.
    let wrong = sig(OTHER_SECRET, &body);
    for (path, headers) in [
        (
            t.hook(),
            vec![
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", wrong.as_str()),
            ],
        ),
        (
            t.hook(),
            vec![
                ("X-Gitlab-Event", "Push Hook"),
                ("X-Gitlab-Token", OTHER_SECRET),
            ],
        ),
        (format!("/hooks/{}x", t.token), vec![]),
    ] {
        let r = http::request(&shared.addr, "POST", &path, &headers, &body);
        assert!(r.status >= 400, "{}", r.text());
        responses.push(r.body);
    }
    let all: Vec<String> = matrix::CASES
        .iter()
        .chain(SPECIAL)
        .flat_map(|name| {
            let t = Target::of(name);
            [t.token, t.open_token]
        })
        .chain([SECRET.to_string(), OTHER_SECRET.to_string()])
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    crate::secrets::assert_no_leak(&shared.world.dir.0, &responses, &all);
}
