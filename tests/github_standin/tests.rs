//! Tests of the stand-in itself.

use super::*;
use crate::support::http;

const TOKEN: &str = "ghp_standinTestToken0123456789";

fn addr(g: &GithubStandin) -> String {
    g.base_url().trim_start_matches("http://").to_string()
}

/// Sends a request with the headers a correct client sends, plus `extra`
/// (which override by name).
fn call(
    g: &GithubStandin,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Option<&Value>,
) -> http::Response {
    let auth = format!("Bearer {TOKEN}");
    let mut headers: Vec<(&str, &str)> = vec![
        ("Authorization", auth.as_str()),
        ("Accept", MEDIA_TYPE),
        ("X-GitHub-Api-Version", API_VERSION),
        ("User-Agent", "redeploy-test"),
    ];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    for (k, v) in extra {
        headers.retain(|(h, _)| !h.eq_ignore_ascii_case(k));
        headers.push((k, v));
    }
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    http::request(&addr(g), method, path, &headers, &bytes)
}

const DEPLOYMENTS: &str = "/repos/octo/app/deployments";

#[test]
fn a_valid_deployment_passes_and_is_answered_as_documented() {
    let g = GithubStandin::start(TOKEN);
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let r = call(
        &g,
        "POST",
        DEPLOYMENTS,
        &[],
        Some(&json!({
            "ref": sha, "environment": "staging", "auto_merge": false,
            "required_contexts": [], "payload": {"redeploy": 1},
            "description": null, "task": "deploy"
        })),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let d = r.json();
    assert_eq!(d["id"], 1000);
    assert_eq!(d["sha"], sha);
    assert_eq!(d["environment"], "staging");
    assert_eq!(d["production_environment"], false);
    assert_eq!(d["payload"], json!({"redeploy": 1}));
    assert_eq!(g.violations(), Vec::<String>::new());

    let r = call(
        &g,
        "POST",
        "/repos/octo/app/deployments/1000/statuses",
        &[],
        Some(&json!({"state": "in_progress", "log_url": "http://127.0.0.1:1/log"})),
    );
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["state"], "in_progress");
    call(
        &g,
        "POST",
        "/repos/octo/app/deployments/1000/statuses",
        &[],
        Some(&json!({"state": "success"})),
    );
    assert_eq!(g.statuses(1000), ["in_progress", "success"]);
    assert_eq!(
        call(&g, "GET", "/repos/octo/app/deployments/1000", &[], None).status,
        200
    );
    assert_eq!(
        call(&g, "GET", "/repos/octo/app/deployments/999", &[], None).status,
        404
    );
    assert_eq!(g.violations(), Vec::<String>::new());
    let reqs = g.requests();
    assert_eq!(reqs.len(), 5);
    assert_eq!(reqs[0].operation, "POST /repos/{owner}/{repo}/deployments");
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].path, DEPLOYMENTS);
    assert_eq!(reqs[0].query, "");
    assert_eq!(reqs[0].body.as_ref().unwrap()["ref"], sha);
    assert_eq!(reqs[3].body, None);
    assert!(reqs[0]
        .headers
        .contains(&("user-agent".to_string(), "redeploy-test".to_string())));
}

#[test]
fn an_unknown_field_a_wrong_accept_and_a_bad_body_are_violations() {
    let g = GithubStandin::start(TOKEN);
    // An unknown field: GitHub ignores it (201), the stand-in records it.
    let r = call(
        &g,
        "POST",
        DEPLOYMENTS,
        &[],
        Some(&json!({"ref": "main", "enviroment": "x"})),
    );
    assert_eq!(r.status, 201);
    let v = g.violations();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].contains("\"enviroment\""), "{v:?}");

    let r = call(
        &g,
        "POST",
        DEPLOYMENTS,
        &[("Accept", "application/json")],
        Some(&json!({"ref": "main"})),
    );
    assert_eq!(r.status, 201);
    let v = g.violations();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[1].contains("Accept"), "{v:?}");

    let r = call(
        &g,
        "POST",
        DEPLOYMENTS,
        &[],
        Some(&json!({"ref": "main", "auto_merge": "yes"})),
    );
    assert_eq!(r.status, 422);
    let v = g.violations();
    assert_eq!(v.len(), 3, "{v:?}");
    assert!(v[2].contains("/auto_merge"), "{v:?}");

    // Missing required field, wrong token, unknown operation.
    assert_eq!(
        call(
            &g,
            "POST",
            DEPLOYMENTS,
            &[],
            Some(&json!({"task": "deploy"}))
        )
        .status,
        422
    );
    let r = call(
        &g,
        "POST",
        DEPLOYMENTS,
        &[("Authorization", "Bearer nope")],
        Some(&json!({"ref": "main"})),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Bad credentials");
    assert_eq!(
        call(&g, "GET", "/repos/octo/app/branches", &[], None).status,
        404
    );
    let v = g.violations();
    assert_eq!(v.len(), 6, "{v:?}");
    assert!(v[3].contains("ref"), "{v:?}");
    assert!(v[4].contains("Authorization"), "{v:?}");
    assert!(v[5].contains("no such operation"), "{v:?}");
    // Only the valid creations made deployments.
    assert_eq!(g.requests().len(), 6);
}

#[test]
fn hooks_reject_unknown_fields_and_accept_a_numeric_insecure_ssl() {
    let g = GithubStandin::start(TOKEN);
    let body = json!({"name": "web", "events": ["deployment"], "active": true,
        "config": {"url": "http://127.0.0.1:9/hook", "content_type": "json",
                   "secret": "s3cret", "insecure_ssl": 0}});
    let r = call(&g, "POST", "/repos/octo/app/hooks", &[], Some(&body));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let h = r.json();
    assert_eq!(h["config"]["secret"], MASKED_SECRET);
    assert_eq!(h["config"]["insecure_ssl"], "0");
    assert_eq!(g.violations(), Vec::<String>::new());
    let r = call(
        &g,
        "POST",
        "/repos/octo/app/hooks",
        &[],
        Some(
            &json!({"config": {"url": "http://127.0.0.1:9/other", "insecure_ssl": true}, "secrets": "x"}),
        ),
    );
    assert_eq!(r.status, 422);
    let v = g.violations();
    assert!(v.iter().any(|v| v.contains("insecure_ssl")), "{v:?}");
    assert!(v.iter().any(|v| v.contains("secrets")), "{v:?}");
    assert_eq!(g.hooks().len(), 1);

    // PATCH applies add/remove events and replaces the config.
    let id = h["id"].as_u64().unwrap();
    let r = call(
        &g,
        "PATCH",
        &format!("/repos/octo/app/hooks/{id}"),
        &[],
        Some(
            &json!({"add_events": ["push"], "remove_events": ["deployment"], "active": false,
                     "config": {"url": "http://127.0.0.1:9/new", "content_type": "json"}}),
        ),
    );
    assert_eq!(r.status, 200);
    let h = r.json();
    assert_eq!(h["events"], json!(["push"]));
    assert_eq!(h["active"], false);
    assert_eq!(h["config"]["url"], "http://127.0.0.1:9/new");
    assert!(
        h["config"].get("secret").is_none(),
        "the secret was not sent again"
    );
    assert_eq!(
        call(
            &g,
            "PATCH",
            "/repos/octo/app/hooks/77",
            &[],
            Some(&json!({"active": true}))
        )
        .status,
        404
    );
}

#[test]
fn a_canned_answer_is_used_once_then_the_default() {
    let g = GithubStandin::start(TOKEN);
    g.push_response(
        "POST /repos/{owner}/{repo}/deployments",
        Canned {
            status: 409,
            headers: vec![("retry-after".into(), "1".into())],
            body: json!({"message": "Conflict: Commit status checks failed for main."}),
        },
    );
    let body = json!({"ref": "main"});
    let r = call(&g, "POST", DEPLOYMENTS, &[], Some(&body));
    assert_eq!(r.status, 409);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("Conflict"));
    let r = call(&g, "POST", DEPLOYMENTS, &[], Some(&body));
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["id"], 1000);
    assert_eq!(r.json()["sha"], FIXED_SHA);
    assert_eq!(g.violations(), Vec::<String>::new());
}

#[test]
fn forwarding_delivers_a_signed_deployment_event() {
    use std::net::TcpListener;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let hook = format!("http://{}/hooks/github", listener.local_addr().unwrap());
    let received = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = s.read(&mut buf).unwrap();
            raw.extend_from_slice(&buf[..n]);
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                if raw.len() >= i + 4 + len {
                    s.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                        .unwrap();
                    let head = String::from_utf8_lossy(&raw[..i]).to_string();
                    return (head, raw[i + 4..i + 4 + len].to_vec());
                }
            }
            assert!(n > 0, "connection closed early");
        }
    });
    let g = GithubStandin::start(TOKEN);
    g.forward_deployments_to(&hook, "webhook-secret");
    let r = call(
        &g,
        "POST",
        "/repos/acme/shop/deployments",
        &[],
        Some(&json!({"ref": "main", "environment": "production", "payload": {"k": "v"}})),
    );
    assert_eq!(r.status, 201);
    let created = r.json();
    let (head, body) = received.join().unwrap();
    let header = |name: &str| {
        head.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {head}"))
    };
    assert!(head.starts_with("POST /hooks/github HTTP/1.1"), "{head}");
    assert_eq!(header("X-GitHub-Event"), "deployment");
    assert_eq!(header("Content-Type"), "application/json");
    assert_eq!(header("User-Agent"), "GitHub-Hookshot/standin");
    assert_eq!(header("X-GitHub-Delivery").len(), 36);
    assert_eq!(
        header("X-Hub-Signature-256"),
        format!(
            "sha256={}",
            crate::support::hmac_sha256_hex("webhook-secret", &body)
        )
    );
    assert_ne!(
        header("X-Hub-Signature-256"),
        format!(
            "sha256={}",
            crate::support::hmac_sha256_hex("other-secret", &body)
        )
    );
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["action"], "created");
    assert_eq!(event["deployment"], created);
    assert_eq!(event["repository"]["full_name"], "acme/shop");
    assert_eq!(event["repository"]["name"], "shop");
    assert_eq!(event["repository"]["owner"]["login"], "acme");
    assert_eq!(g.violations(), Vec::<String>::new());
}

#[test]
fn hooks_are_listed_in_pages_with_a_link_header() {
    let g = GithubStandin::start(TOKEN);
    let ids: Vec<u64> = (0..5)
        .map(|i| g.add_hook(&format!("http://127.0.0.1:9/h{i}"), &["push"], i % 2 == 0))
        .collect();
    let r = call(&g, "GET", "/repos/octo/app/hooks?per_page=2", &[], None);
    assert_eq!(r.status, 200);
    let page1: Vec<u64> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect();
    assert_eq!(page1, ids[..2]);
    let link = r.header("link").expect("a Link header");
    let next = format!(
        "<{}/repos/octo/app/hooks?per_page=2&page=2>; rel=\"next\"",
        g.base_url()
    );
    assert!(link.contains(&next), "{link}");
    assert!(link.contains("page=3>; rel=\"last\""), "{link}");
    let r = call(
        &g,
        "GET",
        "/repos/octo/app/hooks?per_page=2&page=3",
        &[],
        None,
    );
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    assert!(!r.header("link").unwrap().contains("rel=\"next\""));
    // The default page size holds them all: no Link header.
    let r = call(&g, "GET", "/repos/octo/app/hooks", &[], None);
    assert_eq!(r.json().as_array().unwrap().len(), 5);
    assert_eq!(r.header("link"), None);
    assert_eq!(g.hooks().len(), 5);
    assert_eq!(g.violations(), Vec::<String>::new());
}

#[test]
fn the_unreachable_url_refuses_connections() {
    let url = unreachable_base_url();
    let addr = url.trim_start_matches("http://");
    assert!(TcpStream::connect(addr).is_err());
}

/// Creates a deployment of `sha` to `environment` on octo/app; its id.
fn deploy(g: &GithubStandin, sha: &str, environment: &str) -> u64 {
    let r = call(
        g,
        "POST",
        DEPLOYMENTS,
        &[],
        Some(
            &json!({"ref": sha, "environment": environment, "task": "deploy",
                     "required_contexts": [], "payload": {"stack": environment}}),
        ),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["id"].as_u64().unwrap()
}

fn ids(r: &http::Response) -> Vec<u64> {
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn deployments_are_listed_newest_first_by_sha_and_environment() {
    let g = GithubStandin::start(TOKEN);
    let a = "0123456789abcdef0123456789abcdef01234567";
    let b = "89abcdef0123456789abcdef0123456789abcdef";
    let first = deploy(&g, a, "prod env");
    let other_sha = deploy(&g, b, "prod env");
    let other_env = deploy(&g, a, "staging");
    let second = deploy(&g, a, "prod env");
    let r = call(
        &g,
        "GET",
        &format!("{DEPLOYMENTS}?sha={a}&task=deploy&environment=prod+env&per_page=100"),
        &[],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(ids(&r), [second, first]);
    assert!(!ids(&r).contains(&other_sha) && !ids(&r).contains(&other_env));
    assert_eq!(r.header("link"), None);
    // Capped pages keep the filters in their links.
    g.cap_page_size(1);
    let r = call(
        &g,
        "GET",
        &format!("{DEPLOYMENTS}?sha={a}&environment=prod+env&per_page=100"),
        &[],
        None,
    );
    assert_eq!(ids(&r), [second]);
    let link = r.header("link").expect("a Link header");
    let next = format!(
        "<{}{DEPLOYMENTS}?sha={a}&environment=prod+env&per_page=1&page=2>; rel=\"next\"",
        g.base_url()
    );
    assert!(link.contains(&next), "{link}");
    let r = call(
        &g,
        "GET",
        &format!("{DEPLOYMENTS}?sha={a}&environment=prod+env&per_page=1&page=2"),
        &[],
        None,
    );
    assert_eq!(ids(&r), [first]);
    // A string parameter is not an integer, and an unknown one is a
    // violation.
    assert_eq!(g.violations(), Vec::<String>::new());
    call(
        &g,
        "GET",
        &format!("{DEPLOYMENTS}?sha={a}&colour=red"),
        &[],
        None,
    );
    assert_eq!(
        g.violations(),
        ["GET /repos/{owner}/{repo}/deployments: undeclared query parameter \"colour\""]
    );
}

#[test]
fn statuses_are_listed_newest_first_in_pages_and_an_answer_can_be_held() {
    let g = GithubStandin::start(TOKEN);
    let id = deploy(&g, "0123456789abcdef0123456789abcdef01234567", "production");
    let statuses = format!("{DEPLOYMENTS}/{id}/statuses");
    let hold = Duration::from_millis(1500);
    g.hold_response(
        "POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses",
        1,
        hold,
    );
    for state in ["queued", "in_progress", "success"] {
        let started = std::time::Instant::now();
        let r = call(
            &g,
            "POST",
            &statuses,
            &[],
            Some(&json!({"state": state, "description": state})),
        );
        assert_eq!(r.status, 201);
        // Only the second answer is held back.
        assert_eq!(started.elapsed() >= hold, state == "in_progress", "{state}");
    }
    g.cap_page_size(2);
    let r = call(&g, "GET", &format!("{statuses}?per_page=100"), &[], None);
    assert_eq!(r.status, 200);
    let states: Vec<Value> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].clone())
        .collect();
    assert_eq!(states, [json!("success"), json!("in_progress")]);
    let link = r.header("link").expect("a Link header");
    assert!(link.contains("per_page=2&page=2>; rel=\"next\""), "{link}");
    let r = call(
        &g,
        "GET",
        &format!("{statuses}?per_page=2&page=2"),
        &[],
        None,
    );
    assert_eq!(r.json()[0]["state"], "queued");
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = call(&g, "GET", &format!("{DEPLOYMENTS}/99/statuses"), &[], None);
    assert_eq!(r.status, 404);
    assert_eq!(g.violations(), Vec::<String>::new());
}

#[test]
fn webhook_deliveries_are_logged_listed_by_cursor_and_redelivered_as_documented() {
    let g = GithubStandin::start(TOKEN);
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    // A loopback hook URL that answers 204 and records each delivery id.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = vec![0u8; 65536];
            let n = std::io::Read::read(&mut stream, &mut buf).unwrap_or(0);
            let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
            if let Some(line) = head.lines().find(|l| l.starts_with("x-github-delivery:")) {
                seen.lock().unwrap().push(line[18..].trim().to_string());
            }
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let hook = g.add_hook(&hook_url, &["push"], true);
    let down = unreachable_base_url();
    let dead = g.add_hook(&format!("{down}/hook"), &["push"], true);
    let (first, status) = g.send_hook_event(hook, "push", &json!({"ref": "refs/heads/main"}));
    assert_eq!(status, 204);
    let (lost, status) = g.send_hook_event(dead, "push", &json!({"ref": "refs/heads/main"}));
    assert_eq!(status, 0, "nothing listens there");
    for _ in 0..2 {
        g.send_hook_event(hook, "issues", &json!({"action": "opened"}));
    }
    g.cap_page_size(2);
    let path = format!("/repos/octo/app/hooks/{hook}/deliveries");
    let r = call(&g, "GET", &format!("{path}?per_page=100"), &[], None);
    assert_eq!(r.status, 200);
    let page: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(page.len(), 2, "newest first, two a page");
    assert_eq!(page[0]["event"], "issues");
    assert_eq!(page[0]["action"], "opened");
    assert!(page[0]["id"].as_u64() > page[1]["id"].as_u64());
    let link = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("link"))
        .map(|(_, v)| v.clone())
        .expect("a Link header to the older page");
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .trim_start_matches(&g.base_url())
        .to_string();
    assert!(next.contains("cursor="), "{next}");
    let older: Vec<Value> = call(&g, "GET", &next, &[], None)
        .json()
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0]["guid"], first);
    assert_eq!(older[0]["status_code"], 204);
    // One delivery whole, then a redelivery of the lost one: 202, sent
    // again with the same GUID once the answer is written.
    let id = older[0]["id"].as_u64().unwrap();
    let one = call(&g, "GET", &format!("{path}/{id}"), &[], None);
    assert_eq!(one.status, 200);
    assert_eq!(one.json()["request"]["payload"]["ref"], "refs/heads/main");
    let lost_id = g.hook_delivery_log(dead)[0]["id"].as_u64().unwrap();
    let r = call(
        &g,
        "POST",
        &format!("/repos/octo/app/hooks/{dead}/deliveries/{lost_id}/attempts"),
        &[],
        None,
    );
    assert_eq!(r.status, 202);
    let log = crate::support::wait_for(10, "the redelivery logged", || {
        let log = g.hook_delivery_log(dead);
        (log.len() == 2).then_some(log)
    });
    assert_eq!(log[1]["guid"], lost);
    assert_eq!(log[1]["redelivery"], true);
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "the push and the two issues events: {got:?}");
    assert_eq!(got[0], first);
    assert_eq!(g.violations(), Vec::<String>::new());
}
