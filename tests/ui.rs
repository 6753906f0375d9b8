//! The dashboard (`[ui]`) over HTTP: sign-in, sessions, CSRF, roles,
//! security headers and each page's content, against a real server, a real
//! journal and real signed deliveries (GitHub's documented push).

use std::collections::BTreeMap;

use crate::support::cli::{assert_success, stdout};
use crate::support::deliveries::post_fixture;
use crate::support::http::{self, Response};
use crate::support::{hook, token, wait_for, ServerProcess, Stack, World};

/// The password of every test user.
pub(crate) const PASSWORD: &str = "correct horse battery staple";

/// The fixture `github/goscm-push`'s webhook secret.
pub(crate) const FIXTURE_SECRET: &str = "topsecret";

/// An Argon2id hash of [`PASSWORD`], made by `redeploy ui passwd` (once per
/// test process).
pub(crate) fn password_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        let out = passwd(&format!("{PASSWORD}\n"));
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// Runs `redeploy ui passwd` with `input` on standard input.
fn passwd(input: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(crate::support::redeploy_bin())
        .args(["ui", "passwd"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `[ui]` with operator alice, viewer victor, and `extra` lines.
pub(crate) fn ui_table(extra: &str) -> String {
    let hash = password_hash();
    format!(
        "\n[ui]\n{extra}\nusers = [\n  {{ name = \"alice\", role = \"operator\", password_hash = \"{hash}\" }},\n  {{ name = \"victor\", role = \"viewer\", password_hash = \"{hash}\" }},\n]\n"
    )
}

/// Stack `hello` follows the fixture push's repository and branch; stack
/// `other` the same repository on `develop`.
pub(crate) fn stacks() -> String {
    let hello = "Codertocat/Hello-World";
    crate::support::stacks::toml(&[
        Stack::repo("hello", hello, "master", 1).secret(FIXTURE_SECRET),
        Stack::repo("other", hello, "develop", 2).secret(FIXTURE_SECRET),
    ])
}

/// A world with the dashboard on (`[ui]` plus `ui_extra`) and its server.
pub(crate) fn dashboard(name: &str, server_toml: &str, ui_extra: &str) -> (World, ServerProcess) {
    let world = World::new(name, server_toml, &(stacks() + &ui_table(ui_extra)));
    let server = world.start(&[]);
    (world, server)
}

/// A client that keeps cookies, as a browser does.
pub(crate) struct Browser {
    addr: String,
    cookies: BTreeMap<String, String>,
}

impl Browser {
    /// A browser for `server`'s address.
    pub(crate) fn new(server: &ServerProcess) -> Browser {
        Browser::at(&server.addr)
    }

    /// A browser for the server at `addr` (`host:port`).
    pub(crate) fn at(addr: &str) -> Browser {
        Browser {
            addr: addr.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    pub(crate) fn send(
        &mut self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let cookie = cookie.join("; ");
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if !cookie.is_empty() {
            headers.push(("Cookie", &cookie));
        }
        let response = http::request(&self.addr, method, path, &headers, body);
        for (name, value) in &response.headers {
            if !name.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let pair = value.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if value.contains("Max-Age=0") {
                self.cookies.remove(k.trim());
            } else {
                self.cookies
                    .insert(k.trim().to_owned(), v.trim().to_owned());
            }
        }
        response
    }

    pub(crate) fn get(&mut self, path: &str) -> Response {
        self.send("GET", path, &[], b"")
    }

    pub(crate) fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.send(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            body.as_bytes(),
        )
    }

    /// Opens the sign-in page and signs in as `user` with `password`.
    pub(crate) fn sign_in(&mut self, user: &str, password: &str) -> Response {
        let form = self.get("/ui/login");
        assert_eq!(form.status, 200, "{}", form.text());
        let csrf = csrf(&form.text());
        self.post(
            "/ui/login",
            &[("user", user), ("password", password), ("csrf", &csrf)],
        )
    }
}

/// The CSRF token of the first form in `page`.
pub(crate) fn csrf(page: &str) -> String {
    let at = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no CSRF field in {page}"));
    let rest = &page[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn set_cookie<'r>(response: &'r Response, name: &str) -> &'r str {
    response
        .headers
        .iter()
        .find(|(k, v)| k.eq_ignore_ascii_case("set-cookie") && v.starts_with(&format!("{name}=")))
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} cookie in {:?}", response.headers))
}

#[test]
fn ui_passwd_prints_an_argon2id_hash_and_never_the_password() {
    let hash = password_hash();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
    // A fresh salt each time.
    let again = passwd(&format!("{PASSWORD}\n"));
    assert_ne!(String::from_utf8_lossy(&again.stdout).trim(), hash);
    let empty = passwd("\n");
    assert_eq!(
        empty.status.code(),
        Some(redeploy_host::cli::exit::ERROR),
        "{empty:?}"
    );
    assert!(empty.stdout.is_empty());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("the password is empty"));
}

#[test]
fn without_a_ui_table_the_dashboard_is_off_and_answers_as_an_unknown_path() {
    let world = World::new("ui-off", "", &stacks());
    let server = world.start(&[]);
    let unknown = server.get("/no-such-path");
    let same = |r: &Response, what: &str| {
        assert_eq!(
            (r.status, &r.body),
            (unknown.status, &unknown.body),
            "{what}"
        );
        assert_eq!(r.header("content-security-policy"), None, "{what}");
    };
    for path in [
        "/ui",
        "/ui/",
        "/ui/login",
        "/ui/stacks/hello",
        "/ui/static/app.js",
    ] {
        same(&server.get(path), path);
    }
    // Forms are not even read, and no method is checked.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    for (method, path, body) in [
        ("POST", "/ui/login", "user=alice&password=x&csrf=00"),
        ("POST", "/ui/logout", "not a form \u{1}"),
        ("PUT", "/ui/", ""),
        ("DELETE", "/ui/stacks/hello", ""),
    ] {
        let r = http::request(&server.addr, method, path, &form, body.as_bytes());
        same(&r, &format!("{method} {path}"));
    }
    // The hooks work as ever.
    post_fixture(&server, &hook(1), "github/goscm-push").assert_status(202);
    server.terminate();
}

#[test]
fn a_page_without_a_session_leads_to_the_sign_in_page() {
    let (_world, server) = dashboard("ui-redirect", "", "");
    for path in ["/ui/", "/ui/stacks/hello", "/ui/deploys/1"] {
        let r = server.get(path);
        assert_eq!(r.status, 303, "{path}");
        assert_eq!(r.header("location"), Some("/ui/login"), "{path}");
    }
    server.terminate();
}

#[test]
fn signing_in_takes_the_right_password_and_a_wrong_name_is_answered_like_a_wrong_password() {
    let (world, server) = dashboard("ui-sign-in", "", "");
    let mut browser = Browser::new(&server);
    let wrong_password = browser.sign_in("alice", "not the password");
    let unknown_user = browser.sign_in("mallory", PASSWORD);
    for r in [&wrong_password, &unknown_user] {
        assert_eq!(r.status, 401);
        assert!(
            r.text().contains("Wrong user name or password."),
            "{}",
            r.text()
        );
        assert!(!browser.cookies.contains_key("redeploy_session"));
    }
    // The two pages differ only in the name filled in and the form's token.
    let normalize = |r: &Response, name: &str| {
        let text = r.text().replace(name, "NAME");
        text.replace(&csrf(&text), "TOKEN")
    };
    assert_eq!(
        normalize(&wrong_password, "alice"),
        normalize(&unknown_user, "mallory")
    );

    let signed = browser.sign_in("alice", PASSWORD);
    assert_eq!(signed.status, 303, "{}", signed.text());
    assert_eq!(signed.header("location"), Some("/ui/"));
    let cookie = set_cookie(&signed, "redeploy_session");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
    // The journal keeps the session's SHA-256, never the cookie's value.
    let id = browser.cookies["redeploy_session"].clone();
    assert_eq!(id.len(), 64);
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(id.as_bytes()));
    let stored = |value: &str| -> i64 {
        world.query_journal(&format!(
            "SELECT COUNT(*) FROM ui_sessions \
             WHERE id_hash = '{value}' OR user_name = '{value}' OR credential = '{value}'"
        ))
    };
    assert_eq!((stored(&id), stored(&digest)), (0, 1));
    let stacks = browser.get("/ui/");
    assert_eq!(stacks.status, 200);
    let text = stacks.text();
    assert!(text.contains("alice"), "{text}");
    assert!(
        text.contains("<a href=\"/ui/stacks/hello\">hello</a>"),
        "{text}"
    );
    assert!(
        text.contains("Codertocat/Hello-World, branch master"),
        "{text}"
    );
    assert!(
        text.contains("Codertocat/Hello-World, branch develop"),
        "{text}"
    );
    server.terminate();
}

#[test]
fn a_sign_in_without_its_form_token_is_refused() {
    let (_world, server) = dashboard("ui-login-csrf", "", "");
    let mut browser = Browser::new(&server);
    // No form cookie, no token: as a forged cross-site post would be.
    let forged = browser.post(
        "/ui/login",
        &[("user", "alice"), ("password", PASSWORD), ("csrf", "00")],
    );
    assert_eq!(forged.status, 403);
    assert!(!browser.cookies.contains_key("redeploy_session"));
    // The form's cookie with another form's token.
    let form = browser.get("/ui/login");
    let token = csrf(&form.text());
    browser.get("/ui/login");
    let stale = browser.post(
        "/ui/login",
        &[("user", "alice"), ("password", PASSWORD), ("csrf", &token)],
    );
    assert_eq!(stale.status, 403);
    assert!(!browser.cookies.contains_key("redeploy_session"));
    server.terminate();
}

#[test]
fn the_session_cookie_is_secure_when_the_public_url_is_https() {
    let (_world, server) = dashboard(
        "ui-secure",
        "public_url = \"https://deploy.example.com\"",
        "session_ttl = \"1h\"",
    );
    let mut browser = Browser::new(&server);
    let signed = browser.sign_in("alice", PASSWORD);
    let cookie = set_cookie(&signed, "redeploy_session");
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("Max-Age=3600"), "{cookie}");
    server.terminate();
}

#[test]
fn signing_out_needs_the_csrf_token_and_ends_the_session_everywhere() {
    let (_world, server) = dashboard("ui-sign-out", "", "");
    let mut browser = Browser::new(&server);
    browser.sign_in("alice", PASSWORD);
    let page = browser.get("/ui/").text();
    let session = browser.cookies["redeploy_session"].clone();

    let forged = browser.post("/ui/logout", &[]);
    assert_eq!(forged.status, 403);
    assert!(
        forged.text().contains("security token"),
        "{}",
        forged.text()
    );
    let wrong = browser.post("/ui/logout", &[("csrf", &"0".repeat(64))]);
    assert_eq!(wrong.status, 403);
    assert_eq!(browser.get("/ui/").status, 200, "still signed in");

    let out = browser.post("/ui/logout", &[("csrf", &csrf(&page))]);
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/ui/login"));
    assert!(!browser.cookies.contains_key("redeploy_session"));
    // The old cookie, presented again (a copy an attacker kept), is dead.
    browser.cookies.insert("redeploy_session".into(), session);
    assert_eq!(browser.get("/ui/").status, 303);
    server.terminate();
}

/// A world whose stack `live` (hook 1) runs `sh -c script`, its server, a
/// browser signed in as the viewer, and the deploy GitHub's documented
/// push started.
fn live_deploy(name: &str, script: &str) -> (World, ServerProcess, Browser, i64) {
    let stacks = crate::support::stacks::toml(&[Stack::new("live")
        .follows("Codertocat/Hello-World", "master")
        .token(1)
        .secret(FIXTURE_SECRET)
        .line(&format!("command = [\"sh\", \"-c\", {script:?}]"))]);
    let world = World::new(name, "", &(stacks + &ui_table("")));
    let server = world.start(&[]);
    let mut browser = Browser::new(&server);
    browser.sign_in("victor", PASSWORD);
    let pushed = post_fixture(&server, &hook(1), "github/goscm-push");
    let id = pushed.assert_status(202).decision()["deploy_id"]
        .as_i64()
        .unwrap();
    (world, server, browser, id)
}

#[test]
fn a_followed_log_stops_soon_after_its_user_signs_out() {
    let (_world, server, mut browser, id) =
        live_deploy("ui-live-sign-out", "echo started; sleep 60");
    let page = browser.get(&format!("/ui/deploys/{id}")).text();
    // The stream, on a copy of the signed-in browser.
    let mut follower = Browser::at(&server.addr);
    follower.cookies = browser.cookies.clone();
    let started = std::time::Instant::now();
    let stream = std::thread::spawn(move || {
        let response = follower.get(&format!("/ui/deploys/{id}/events"));
        (response, started.elapsed())
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    let out = browser.post("/ui/logout", &[("csrf", &csrf(&page))]);
    assert_eq!(out.status, 303);
    let (stream, took) = stream.join().unwrap();
    // The stream was served, and sent the log, until the check every 10 s
    // ended it, long before the deploy's 60 s.
    assert_eq!(stream.status, 200);
    assert!(took < std::time::Duration::from_secs(30), "{took:?}");
    let events = sse_events(&stream.text());
    assert!(
        events
            .iter()
            .any(|(e, d, _)| e == "log" && d.contains("started")),
        "{events:?}"
    );
    assert!(events.iter().all(|(e, _, _)| e != "end"), "{events:?}");
    server.terminate();
}

#[test]
fn a_session_ends_when_its_time_is_up() {
    let (_world, server) = dashboard("ui-expiry", "", "session_ttl = \"2s\"");
    let mut browser = Browser::new(&server);
    browser.sign_in("alice", PASSWORD);
    assert_eq!(browser.get("/ui/").status, 200);
    wait_for(10, "the session to expire", || {
        (browser.get("/ui/").status == 303).then_some(())
    });
    server.terminate();
}

#[test]
fn failed_sign_ins_are_limited_even_for_the_right_password() {
    let (_world, server) = dashboard("ui-limit", "", "");
    let mut browser = Browser::new(&server);
    for _ in 0..5 {
        assert_eq!(browser.sign_in("alice", "guess").status, 401);
    }
    let limited = browser.sign_in("alice", PASSWORD);
    assert_eq!(limited.status, 429, "{}", limited.text());
    let wait: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&wait), "{wait}");
    assert!(limited.text().contains("Too many failed sign-ins"));
    assert!(!browser.cookies.contains_key("redeploy_session"));
    // Another user from this address is limited too (the address counts).
    assert_eq!(browser.sign_in("victor", PASSWORD).status, 429);
    server.terminate();
}

#[test]
fn every_dashboard_answer_carries_the_security_headers() {
    let (_world, server) = dashboard("ui-headers", "", "");
    let mut browser = Browser::new(&server);
    let mut answers = vec![browser.get("/ui/"), browser.get("/ui/login")];
    answers.push(browser.sign_in("alice", "wrong"));
    browser.sign_in("alice", PASSWORD);
    for path in [
        "/ui/",
        "/ui/stacks/hello",
        "/ui/stacks/nope",
        "/ui/static/style.css",
    ] {
        answers.push(browser.get(path));
    }
    for r in &answers {
        let csp = r.header("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'none'",
            "frame-ancestors 'none'",
            "script-src 'self'",
        ] {
            assert!(csp.contains(directive), "{csp}");
        }
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
    }
    server.terminate();
}

#[test]
fn the_stack_page_shows_each_delivery_with_its_decision_and_reason_and_the_deploys() {
    let (world, server) = dashboard("ui-stack", "", "");
    // GitHub's documented push (master of Codertocat/Hello-World): stack
    // hello deploys it, stack other (develop) skips it.
    let deployed = post_fixture(&server, &hook(1), "github/goscm-push");
    deployed.assert_status(202);
    let skipped = post_fixture(&server, &hook(2), "github/goscm-push");
    skipped.assert_status(200);
    let reason = skipped.decision()["reason"].as_str().unwrap().to_owned();
    assert_eq!(
        reason,
        "push to \"master\" does not match branch \"develop\""
    );
    crate::support::world::assert_all_succeeded(&world.settle(30));

    let mut browser = Browser::new(&server);
    browser.sign_in("victor", PASSWORD);
    let other = browser.get("/ui/stacks/other").text();
    // The reason, as the page escapes it.
    let escaped = reason.replace('"', "&#34;");
    assert!(other.contains(&escaped), "{other}");
    assert!(
        other.contains("f2467dea-70d6-11e8-8955-3c83993e0aef"),
        "{other}"
    );
    assert!(other.contains("<td>skip</td>"), "{other}");
    assert!(other.contains("No deploys yet."), "{other}");

    let hello = browser.get("/ui/stacks/hello").text();
    let id = deployed.decision()["deploy_id"].as_i64().unwrap();
    assert!(
        hello.contains(&format!("<td>deploy: queued (#{id})</td>")),
        "{hello}"
    );
    assert!(
        hello.contains(&format!(
            "<a href=\"/ui/deploys/{id}\" aria-label=\"Deploy #{id}\">#{id}</a>"
        )),
        "{hello}"
    );
    assert!(hello.contains("state-succeeded"), "{hello}");
    assert!(
        hello.contains("title=\"199eddf46df50de8d02e99bf1c5fdb4101338224\""),
        "{hello}"
    );
    // The commit links to its page on GitHub (a GitHub push to owner/name).
    assert!(
        hello.contains("href=\"https://github.com/Codertocat/Hello-World/commit/199eddf46df50de8d02e99bf1c5fdb4101338224\""),
        "{hello}"
    );
    assert!(hello.contains("refs/heads/master"), "{hello}");

    let deploy = browser.get(&format!("/ui/deploys/{id}")).text();
    assert!(deploy.contains("state-succeeded"), "{deploy}");
    assert!(
        deploy.contains("<dt>Exit status</dt><dd>0</dd>"),
        "{deploy}"
    );
    // The whole log, and nothing to follow: the deploy is over.
    let log_start =
        format!("<pre id=\"log\" class=\"log\" tabindex=\"0\">-- redeploy: deploy #{id} succeeded");
    assert!(deploy.contains(&log_start), "{deploy}");
    assert!(!deploy.contains("data-follow"), "{deploy}");
    assert_eq!(browser.get("/ui/deploys/999999").status, 404);
    assert_eq!(browser.get("/ui/stacks/nope").status, 404);
    server.terminate();
}

#[test]
fn a_ref_that_would_show_itself_reversed_or_hidden_is_shown_escaped() {
    let (world, server) = dashboard("ui-reordering", "", "");
    // GitHub's documented push, its branch named with a right-to-left
    // override (shown as is, `develop` would read as the branch), then with
    // a zero-width space after `master` (shown as is, "push to master does
    // not match branch master" would read as a lie).
    let mut push: serde_json::Value =
        serde_json::from_slice(&crate::support::fixture("github/goscm-push.json")).unwrap();
    for (n, name) in ["\u{202E}poleved", "master\u{200B}"]
        .into_iter()
        .enumerate()
    {
        push["ref"] = format!("refs/heads/{name}").into();
        let body = push.to_string().into_bytes();
        let r = crate::support::deliveries::signed_github(
            &server,
            &hook(2),
            FIXTURE_SECRET,
            ("push", &format!("reordering-{n}")),
            &body,
        );
        assert_eq!(r.assert_status(200).decision()["skip"], "branch-mismatch");
    }
    let mut browser = Browser::new(&server);
    browser.sign_in("victor", PASSWORD);
    let page = browser.get("/ui/stacks/other").text();
    let cli = world.redeploy(&["deliveries", "other"]);
    assert_success(&cli);
    for shown in [page, stdout(&cli)] {
        assert!(!shown.contains(['\u{202E}', '\u{200B}']), "{shown}");
        assert!(shown.contains("\\u{202e}poleved"), "{shown}");
        assert!(shown.contains("master\\u{200b}"), "{shown}");
    }
    server.terminate();
}

#[test]
fn a_hook_url_is_shown_only_to_an_operator_who_asks() {
    let (_world, server) = dashboard("ui-hook-url", "", "");
    let secret = token(1);
    let mut viewer = Browser::new(&server);
    viewer.sign_in("victor", PASSWORD);
    let page = viewer.get("/ui/stacks/hello").text();
    assert!(!page.contains(&secret), "hidden until asked for");
    // A viewer is offered no form it may not use; the route refuses anyway.
    assert!(!page.contains("Show hook URL"), "{page}");
    assert!(
        page.contains("Only an operator can see this stack's hook URL"),
        "{page}"
    );
    let refused = viewer.post("/ui/stacks/hello/hook-url", &[("csrf", &csrf(&page))]);
    assert_eq!(refused.status, 403);
    assert!(!refused.text().contains(&secret));

    let mut operator = Browser::new(&server);
    operator.sign_in("alice", PASSWORD);
    let page = operator.get("/ui/stacks/hello").text();
    assert!(!page.contains(&secret));
    assert!(page.contains("Show hook URL"), "{page}");
    let forged = operator.post("/ui/stacks/hello/hook-url", &[]);
    assert_eq!(forged.status, 403);
    assert!(!forged.text().contains(&secret));
    let shown = operator.post("/ui/stacks/hello/hook-url", &[("csrf", &csrf(&page))]);
    assert_eq!(shown.status, 200);
    let url = format!("{}{}", server.url(), hook(1));
    assert!(
        shown.text().contains(&format!("value=\"{url}\"")),
        "{}",
        shown.text()
    );
    assert!(shown.text().contains("data-copy=\"hook-url\""));
    // The URL the page showed is the stack's: a push to it deploys.
    let pushed = post_fixture(&server, &hook(1), "github/goscm-push");
    pushed.assert_status(202);
    server.terminate();
}

#[test]
fn an_identity_proxys_user_header_is_believed_only_from_the_proxy() {
    // The server sees this test's connections from 127.0.0.1.
    let (_world, server) = dashboard(
        "ui-proxy",
        "",
        "trusted_user_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"127.0.0.1\"]",
    );
    let proxied = http::request(
        &server.addr,
        "GET",
        "/ui/",
        &[("X-Forwarded-User", "pat")],
        b"",
    );
    assert_eq!(proxied.status, 200);
    assert!(
        proxied.text().contains("pat <small>(viewer)</small>"),
        "{}",
        proxied.text()
    );
    server.terminate();

    let (_world, server) = dashboard(
        "ui-proxy-elsewhere",
        "",
        "trusted_user_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"192.0.2.10\"]",
    );
    let forged = http::request(
        &server.addr,
        "GET",
        "/ui/",
        &[("X-Forwarded-User", "pat")],
        b"",
    );
    assert_eq!(forged.status, 303, "the header from elsewhere is ignored");
    server.terminate();
}

#[test]
fn a_changed_password_ends_the_sessions_signed_in_with_the_old_one() {
    let (world, server) = dashboard("ui-new-password", "", "");
    let mut browser = Browser::new(&server);
    browser.sign_in("alice", PASSWORD);
    assert_eq!(browser.get("/ui/").status, 200);
    // alice's password changes (a new hash, as `ui passwd` prints); the
    // server reloads its config.
    let out = passwd("a new password\n");
    let new_hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let config = std::fs::read_to_string(&world.config).unwrap();
    let changed = config.replacen(password_hash(), &new_hash, 1);
    assert_ne!(changed, config);
    std::fs::write(&world.config, changed).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    wait_for(10, "the old session to end", || {
        (browser.get("/ui/").status == 303).then_some(())
    });
    assert_eq!(browser.sign_in("alice", "a new password").status, 303);
    assert_eq!(browser.get("/ui/").status, 200);
    server.terminate();
}

/// Takes victor's line out of the world's config; the config as it was.
fn remove_victor(world: &World) -> String {
    let config = std::fs::read_to_string(&world.config).unwrap();
    let line = config
        .lines()
        .find(|l| l.contains("\"victor\""))
        .unwrap()
        .to_owned();
    std::fs::write(&world.config, config.replace(&format!("{line}\n"), "")).unwrap();
    config
}

#[test]
fn a_user_removed_then_put_back_is_not_signed_in_again_by_an_old_cookie() {
    let (world, server) = dashboard("ui-removed-user", "", "");
    let mut browser = Browser::new(&server);
    browser.sign_in("victor", PASSWORD);
    assert_eq!(browser.get("/ui/").status, 200);
    let reloads = |n: usize| {
        unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
        wait_for(10, "the reload in the log", || {
            (world.server_log().matches("configuration reloaded").count() >= n).then_some(())
        });
    };
    // victor leaves the config (no request of his comes meanwhile), then
    // the same line is put back.
    let config = remove_victor(&world);
    reloads(1);
    std::fs::write(&world.config, &config).unwrap();
    reloads(2);
    assert_eq!(
        browser.get("/ui/").status,
        303,
        "the old cookie is signed out"
    );
    assert_eq!(browser.sign_in("victor", PASSWORD).status, 303);
    assert_eq!(browser.get("/ui/").status, 200);
    server.terminate();
}

#[test]
fn a_user_removed_while_the_server_was_stopped_is_signed_out_for_good_at_its_start() {
    let (world, server) = dashboard("ui-removed-stopped", "", "");
    let mut browser = Browser::new(&server);
    assert_eq!(browser.sign_in("victor", PASSWORD).status, 303);
    assert_eq!(browser.get("/ui/").status, 200);
    server.terminate();
    // victor leaves the file while no server runs; one starts, and stops.
    let config = remove_victor(&world);
    let server = world.start(&[]);
    wait_for(10, "the start's sign-outs in the log", || {
        world
            .server_log()
            .contains("dashboard sessions of removed users ended")
            .then_some(())
    });
    server.terminate();
    // Put back, the same line: his old cookie signs nobody in.
    std::fs::write(&world.config, &config).unwrap();
    let server = world.start(&[]);
    let mut browser = Browser {
        addr: server.addr.clone(),
        cookies: browser.cookies,
    };
    assert_eq!(
        browser.get("/ui/").status,
        303,
        "the old cookie is signed out"
    );
    assert_eq!(browser.sign_in("victor", PASSWORD).status, 303);
    assert_eq!(browser.get("/ui/").status, 200);
    server.terminate();
}

#[test]
fn an_operator_redeploys_now_and_redeploys_a_commit_through_the_dispatcher() {
    let (world, server) = dashboard("ui-actions", "", "");
    let pushed = post_fixture(&server, &hook(1), "github/goscm-push");
    pushed.assert_status(202);
    let first = pushed.decision()["deploy_id"].as_i64().unwrap();
    crate::support::world::assert_all_succeeded(&world.settle(30));

    let mut viewer = Browser::new(&server);
    viewer.sign_in("victor", PASSWORD);
    let page = viewer.get("/ui/stacks/hello").text();
    assert!(!page.contains("Redeploy now"), "a viewer sees no actions");
    let token = csrf(&page);
    assert_eq!(
        viewer
            .post("/ui/stacks/hello/deploy", &[("csrf", &token)])
            .status,
        403
    );
    let path = format!("/ui/stacks/hello/redeploy/{first}");
    assert_eq!(viewer.post(&path, &[("csrf", &token)]).status, 403);
    assert_eq!(world.deploys().len(), 1, "nothing deployed");

    let mut operator = Browser::new(&server);
    operator.sign_in("alice", PASSWORD);
    let page = operator.get("/ui/stacks/hello").text();
    assert!(page.contains("Redeploy now"), "{page}");
    assert!(page.contains("Redeploy this commit"), "{page}");
    let token = csrf(&page);
    assert_eq!(
        operator.post("/ui/stacks/hello/deploy", &[]).status,
        403,
        "no token"
    );
    assert_eq!(world.deploys().len(), 1, "nothing deployed");

    let now = operator.post("/ui/stacks/hello/deploy", &[("csrf", &token)]);
    assert_eq!(now.status, 303, "{}", now.text());
    // One deploy queued: its page, where its log follows live.
    let manual = world.deploys().last().unwrap().id;
    assert_eq!(
        now.header("location"),
        Some(format!("/ui/deploys/{manual}").as_str())
    );
    // Settled before the next, which would otherwise supersede it.
    world.settle(30);
    let again = operator.post(&path, &[("csrf", &token)]);
    assert_eq!(again.status, 303, "{}", again.text());
    let deploys = world.settle(30);
    crate::support::world::assert_all_succeeded(&deploys);
    assert_eq!(deploys.len(), 3, "{deploys:?}");
    // The manual deploy names no commit; the redeploy names the first's.
    assert_eq!(deploys[1].queued.provider, "manual");
    assert_eq!(deploys[2].queued.sha, deploys[0].queued.sha);
    // Each went through the dispatcher: journaled as a delivery too.
    let deliveries = |events: &str| -> i64 {
        world.query_journal(&format!(
            "SELECT COUNT(*) FROM deliveries WHERE stack = 'hello' \
             AND provider = 'manual' AND {events} AND status = 202"
        ))
    };
    assert_eq!(deliveries("event = 'redeploy'"), 1, "the redeploy");
    assert_eq!(deliveries("event <> 'redeploy'"), 1, "the manual trigger");
    // A deploy of another stack, or no deploy at all, is refused.
    let missing = operator.post("/ui/stacks/hello/redeploy/999999", &[("csrf", &token)]);
    assert_eq!(missing.status, 404, "{}", missing.text());
    assert_eq!(world.deploys().len(), 3);
    server.terminate();
}

/// The events of a server-sent event stream: (event, data, id).
fn sse_events(stream: &str) -> Vec<(String, String, Option<String>)> {
    let mut events = Vec::new();
    for block in stream.split("\n\n") {
        let (mut event, mut data, mut id) = (String::from("message"), Vec::new(), None);
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                event = v.to_owned();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push(v.to_owned());
            } else if line == "data:" {
                data.push(String::new());
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_owned());
            }
        }
        if !data.is_empty() {
            events.push((event, data.join("\n"), id));
        }
    }
    events
}

#[test]
fn the_deploy_page_follows_a_running_deploys_log_until_it_ends() {
    let (world, server, mut browser, id) = live_deploy(
        "ui-live",
        "echo first line; sleep 1; printf 'second\\r\\nthird'; sleep 1; echo ' and more'; echo done",
    );
    let page = browser.get(&format!("/ui/deploys/{id}")).text();
    assert!(page.contains("data-follow"), "{page}");
    let from = {
        let at = page.find("events?from=").unwrap() + "events?from=".len();
        page[at..page[at..].find('"').unwrap() + at]
            .parse::<u64>()
            .unwrap()
    };
    // What the page showed, then the stream from there.
    let stream = browser.get(&format!("/ui/deploys/{id}/events?from={from}"));
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    let events = sse_events(&stream.text());
    let (last, data, _) = events.last().unwrap();
    assert_eq!(
        (last.as_str(), data.as_str()),
        ("end", "succeeded"),
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|(e, d, _)| e == "state" && d == "succeeded"));
    let streamed: String = events
        .iter()
        .filter(|(e, _, _)| e == "log")
        .map(|(_, d, _)| d.as_str())
        .collect();
    // The page's part and the stream's are the whole log, once, with its
    // CR LF read as a line break.
    let shown = {
        let start = page.find("<pre id=\"log\"").unwrap();
        let start = start + page[start..].find('>').unwrap() + 1;
        let end = start + page[start..].find("</pre>").unwrap();
        page[start..end].to_owned()
    };
    let whole = world.redeploy(&["logs", &id.to_string()]);
    assert!(whole.status.success(), "{whole:?}");
    let whole = String::from_utf8(whole.stdout)
        .unwrap()
        .replace("\r\n", "\n");
    assert_eq!(format!("{shown}{streamed}"), whole, "{events:?}");
    assert!(
        whole.starts_with("first line\nsecond\nthird and more\ndone\n"),
        "{whole}"
    );
    // The last log event's id is the byte after it: where a reconnecting
    // browser resumes, with nothing left to send.
    let resume = events
        .iter()
        .filter_map(|(e, _, id)| (e == "log").then_some(id.clone()).flatten())
        .next_back()
        .unwrap();
    let again = browser.send(
        "GET",
        &format!("/ui/deploys/{id}/events"),
        &[("Last-Event-ID", &resume)],
        b"",
    );
    let again = sse_events(&again.text());
    assert!(again.iter().all(|(e, _, _)| e != "log"), "{again:?}");
    assert_eq!(again.last().unwrap().0, "end");
    server.terminate();
}

#[test]
fn a_stack_that_refuses_manual_triggers_offers_and_takes_no_action() {
    let stacks = crate::support::stacks::toml(&[Stack::repo(
        "closed",
        "Codertocat/Hello-World",
        "master",
        1,
    )
    .secret(FIXTURE_SECRET)
    .key("manual", "refuse")]);
    let world = World::new("ui-refuse", "", &(stacks + &ui_table("")));
    let server = world.start(&[]);
    let pushed = post_fixture(&server, &hook(1), "github/goscm-push");
    let first = pushed.assert_status(202).decision()["deploy_id"]
        .as_i64()
        .unwrap();
    world.settle(30);
    let mut operator = Browser::new(&server);
    operator.sign_in("alice", PASSWORD);
    let page = operator.get("/ui/stacks/closed").text();
    assert!(!page.contains("Redeploy now"), "{page}");
    assert!(!page.contains("Redeploy this commit"), "{page}");
    let token = csrf(&page);
    let now = operator.post("/ui/stacks/closed/deploy", &[("csrf", &token)]);
    assert_ne!(now.status, 303, "{}", now.text());
    let path = format!("/ui/stacks/closed/redeploy/{first}");
    let again = operator.post(&path, &[("csrf", &token)]);
    assert_eq!(again.status, 403, "{}", again.text());
    assert!(again.text().contains("refuses manual triggers"));
    assert_eq!(world.deploys().len(), 1, "nothing more deployed");
    server.terminate();
}
