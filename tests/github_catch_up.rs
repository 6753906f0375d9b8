//! GitHub catch-up end to end: `redeploy github connect` records the
//! webhook, the GitHub stand-in delivers pushes to it like GitHub (and logs
//! how each was answered), the server is down for some, and when it starts
//! it lists the webhook's deliveries and asks for each one that did not
//! arrive again, once; the redeliveries deploy once, and a restart asks
//! for nothing more.

use serde_json::{json, Value};

use crate::github_standin::{Canned, GithubStandin};
use crate::support::cli::{stderr, stdout};
use crate::support::deliveries::{push_json, sha};
use crate::support::stacks::toml;
use crate::support::{free_port, wait_for, Stack, World};

const TOKEN: &str = "ghp_standin_token_catch_up_0123";
const SECRET: &str = "catch-up-s3cret";
const ATTEMPTS: &str =
    "POST /repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}/attempts";
const LIST: &str = "GET /repos/{owner}/{repo}/hooks/{hook_id}/deliveries";

/// The logged deliveries of `hook` with `guid`.
fn deliveries_of(standin: &GithubStandin, hook: u64, guid: &str) -> Vec<Value> {
    standin
        .hook_delivery_log(hook)
        .into_iter()
        .filter(|d| d["guid"] == guid)
        .collect()
}

/// A push of `after` on top of `before` to `branch` of acme/web.
fn push(branch: &str, before: usize, after: usize) -> Value {
    push_json(&format!("refs/heads/{branch}"), &sha(before), &sha(after))
}

#[test]
fn github_catch_up_redelivers_what_did_not_arrive_once() {
    let standin = GithubStandin::start(TOKEN);
    // Two deliveries a page: catch-up follows the `Link` header's cursor.
    standin.cap_page_size(2);
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let stack = Stack::repo("web", "acme/web", "main", 1)
        .secret(SECRET)
        .timeout("1m")
        .github(
            &standin.base_url(),
            "web-env",
            "wait_for_event = false\ncatch_up_every = \"1s\"",
        );
    let world = World::new(
        "github-catch-up",
        &format!("public_url = \"{public}\""),
        &toml(&[stack]),
    );
    world.write_gh_token(TOKEN);
    let out = world.redeploy(&["github", "connect", "web"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let hook = standin.hooks()[0]["id"].as_u64().unwrap();

    // A push that arrives.
    let server = world.start_on(port, &[], &[]);
    let (arrived, status) = standin.send_hook_event(hook, "push", &push("main", 100, 1));
    assert_eq!(status, 202, "the push was answered");
    wait_for(60, "the first push deployed", || {
        (world
            .deploys()
            .iter()
            .any(|d| d.queued.sha.as_deref() == Some(&sha(1)[..]) && d.state.is_final()))
        .then_some(())
    });
    assert!(server.terminate().success());

    // Pushes made while the server is down: GitHub logs them as failed.
    let (missed_main, s1) = standin.send_hook_event(hook, "push", &push("main", 1, 2));
    let (missed_feature, s2) = standin.send_hook_event(hook, "push", &push("feature", 100, 3));
    let (missed_last, s3) = standin.send_hook_event(hook, "push", &push("main", 2, 4));
    assert_eq!((s1, s2, s3), (0, 0, 0), "nothing answered while down");

    // The server starts: each missed one is asked for once and arrives,
    // but the oldest, which GitHub refuses to redeliver (422): the look
    // goes on with the others, and it is not asked for again.
    standin.push_response(
        ATTEMPTS,
        Canned {
            status: 422,
            headers: Vec::new(),
            body: json!({"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest"}),
        },
    );
    let server = world.start_on(port, &[], &[]);
    for guid in [&missed_feature, &missed_last] {
        let answered = |d: &Value| {
            d["redelivery"] == true
                && d["status_code"]
                    .as_u64()
                    .is_some_and(|c| (200..300).contains(&c))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !deliveries_of(&standin, hook, guid).iter().any(answered) {
            assert!(
                std::time::Instant::now() < deadline,
                "delivery {guid} was not redelivered and answered; server log:\n{}\nrequests: {:#?}\nlog: {:#?}",
                world.server_log(),
                standin.requests().iter().map(|r| format!("{} {}?{}", r.method, r.path, r.query)).collect::<Vec<_>>(),
                standin.hook_delivery_log(hook)
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert_eq!(
        standin.count(ATTEMPTS),
        3,
        "one request per missed delivery"
    );
    assert_eq!(
        deliveries_of(&standin, hook, &missed_main).len(),
        1,
        "refused: not redelivered"
    );
    assert!(
        standin
            .requests()
            .iter()
            .any(|r| r.operation == LIST && r.query.contains("cursor=")),
        "the list was read past its first page"
    );
    // The one that arrived was never asked for again.
    assert_eq!(deliveries_of(&standin, hook, &arrived).len(), 1);
    // The newest push to main deploys; the feature push deploys nothing.
    let deploys = wait_for(60, "the last missed push deployed", || {
        let deploys = world.deploys();
        deploys
            .iter()
            .any(|d| d.queued.sha.as_deref() == Some(&sha(4)[..]) && d.state.is_final())
            .then_some(deploys)
    });
    for d in &deploys {
        assert_ne!(
            d.queued.delivery_id.as_deref(),
            Some(missed_feature.as_str())
        );
    }
    let per_delivery = |guid: &str| {
        deploys
            .iter()
            .filter(|d| d.queued.delivery_id.as_deref() == Some(guid))
            .count()
    };
    assert_eq!(per_delivery(&arrived), 1);
    assert_eq!(per_delivery(&missed_main), 0);
    assert_eq!(per_delivery(&missed_last), 1);
    let metrics = server.get("/metrics").text();
    for line in [
        "redeploy_github_redeliveries_total{stack=\"web\",event=\"push\"} 2",
        "redeploy_github_redeliveries_failed_total{stack=\"web\",event=\"push\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(
        metrics.contains("redeploy_github_catch_up_failures_in_a_row{stack=\"web\"} 0"),
        "{metrics}"
    );
    let log = world.server_log();
    assert_eq!(
        log.matches("asked GitHub to redeliver a webhook delivery that did not arrive")
            .count(),
        2,
        "{log}"
    );
    assert_eq!(
        log.matches("GitHub refused to redeliver a webhook delivery")
            .count(),
        1,
        "{log}"
    );
    assert!(server.terminate().success());

    // A second start asks for nothing: the looks settle the same list.
    let looks = standin.count(LIST);
    let server = world.start_on(port, &[], &[]);
    wait_for(60, "two more looks after the restart", || {
        (standin.count(LIST) >= looks + 2).then_some(())
    });
    assert_eq!(standin.count(ATTEMPTS), 3, "nothing redelivered twice");
    assert_eq!(
        world.deploys().len(),
        deploys.len(),
        "nothing deployed again"
    );
    drop(server);
    let history = world.redeploy(&["history"]);
    let history = stdout(&history);
    assert!(
        history.contains("GitHub webhooks (catch-up")
            && history.contains(&format!("acme/web hook {hook}")),
        "{history}"
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
}
