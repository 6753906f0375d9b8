//! Issue 17: a push to a stack that waits for GitHub's `deployment` event
//! is never lost. A real `redeploy serve` against the GitHub stand-in
//! (every request checked against GitHub's schemas; its failures are
//! canned answers queued per operation):
//!
//! - a deployment request answered 500 longer than the client's own quick
//!   retries is tried again later and deploys once, by its event;
//! - one refused for good (422) deploys directly (the default), once, and
//!   says so, or deploys nothing with `on_request_failure = "give-up"`;
//! - one GitHub never takes deploys directly once `retry_request_for` is
//!   over;
//! - one GitHub answers 409 (its required checks failed) never deploys;
//! - a created deployment whose event the stand-in never sends runs after
//!   `event_wait`, once, reporting its statuses to that deployment, and
//!   the event sent late is a duplicate; one whose event came in time is
//!   never run again;
//! - a server killed in the middle of the retries, restarted, still ends
//!   in one deployment and one deploy;
//! - a deployment the window's last try created, whose answer was lost, is
//!   found on GitHub and adopted, not deployed directly: its (late) event
//!   deploys it, once; while GitHub cannot be asked, nothing deploys;
//! - one GitHub cannot be asked about deploys directly only once the
//!   asking has failed for the stack's `event_wait`.

use std::time::{Duration, Instant};

use redeploy_host::github::{MAX_ATTEMPTS, REQUEST_TIMEOUT};
use redeploy_host::journal::{DeploymentRequest, RequestFallback, RequestState};
use serde_json::{json, Value};

use crate::github_standin::{Canned, GithubStandin};
use crate::support::cli::stdout;
use crate::support::deliveries::{sha, signed_github, signed_push};
use crate::support::stacks::toml;
use crate::support::{fixture, free_port, hook, wait_for, ServerProcess, Stack, World};

const TOKEN: &str = "ghp_standin_token_0123456789";
const SECRET: &str = "s3cret-s3cret";
const DEPLOYMENTS: &str = "POST /repos/{owner}/{repo}/deployments";
const LIST_DEPLOYMENTS: &str = "GET /repos/{owner}/{repo}/deployments";

/// A bound on anything these tests wait for: the retries' back-off (5 s,
/// then 10 s) plus a killed holder's outbox lease (10 s), with room.
const WAIT_SECS: u64 = 90;

/// A GitHub CD stack `label` (hook token `n`) that waits for the
/// `deployment` event, with `extra` lines in `[stacks.github]`.
fn cd_stack(n: u32, label: &str, api_url: &str, extra: &str) -> Stack {
    Stack::repo(label, "acme/web", "main", n)
        .secret(SECRET)
        .timeout("1m")
        .github(api_url, &format!("{label}-env"), extra)
}

/// A server of `stacks` on `port`, whose public URL is loopback there.
fn world(name: &str, port: u16, stacks: &[Stack]) -> World {
    let public = format!("http://127.0.0.1:{port}");
    let world = World::new(name, &format!("public_url = \"{public}\""), &toml(stacks));
    world.write_gh_token(&format!("{TOKEN}\n"));
    world
}

/// `n` answers `status` to the next deployment requests.
fn fail_requests(standin: &GithubStandin, n: usize, status: u16, message: &str) {
    fail_operation(standin, DEPLOYMENTS, n, status, message);
}

/// `n` answers `status` to the next requests to `operation`.
fn fail_operation(standin: &GithubStandin, operation: &str, n: usize, status: u16, message: &str) {
    for _ in 0..n {
        standin.push_response(
            operation,
            Canned {
                status,
                headers: vec![],
                body: json!({"message": message, "documentation_url": "https://docs.github.com/rest/deployments/deployments#create-a-deployment"}),
            },
        );
    }
}

/// The one request of `stack`, once `done` says it is where the test
/// wants it.
fn request_of(
    world: &World,
    stack: &str,
    done: impl Fn(&DeploymentRequest) -> bool,
) -> DeploymentRequest {
    wait_for(WAIT_SECS, &format!("the request of {stack}"), || {
        let requests = world
            .journal()
            .deployment_requests(Some(stack), 10)
            .unwrap();
        assert!(requests.len() <= 1, "{requests:?}");
        requests.into_iter().find(|r| done(r))
    })
}

/// The deploys of `stack`, once there are `n` and all have ended.
fn deploys_of(world: &World, stack: &str, n: usize) -> Vec<redeploy_host::journal::DeployRecord> {
    wait_for(
        WAIT_SECS,
        &format!("{n} finished deploys of {stack}"),
        || {
            let d: Vec<_> = world
                .deploys()
                .into_iter()
                .filter(|d| d.queued.stack == stack)
                .collect();
            (d.len() >= n && d.iter().all(|d| d.state.is_final())).then_some(d)
        },
    )
}

/// The `/metrics` line of the fallback counter of `stack` and `action`.
fn fallback_metric(stack: &str, action: &str, n: u64) -> String {
    format!(
        "\nredeploy_github_request_fallbacks_total{{stack=\"{stack}\",action=\"{action}\"}} {n}\n"
    )
}

/// The statuses GitHub holds for `deployment`, once there are `n`.
fn statuses_of(standin: &GithubStandin, deployment: u64, n: usize) -> Vec<String> {
    wait_for(WAIT_SECS, &format!("{n} statuses of {deployment}"), || {
        let s = standin.statuses(deployment);
        (s.len() >= n).then_some(s)
    })
}

/// The `deployment` event GitHub would send for deployment `id`, created
/// from request `body` (its payload is redeploy's, with its MAC).
fn deployment_event(id: u64, body: &Value) -> Vec<u8> {
    let mut event: Value =
        serde_json::from_slice(&fixture("github/octokit-deployment-default.json")).unwrap();
    event["deployment"]["id"] = json!(id);
    event["deployment"]["sha"] = body["ref"].clone();
    event["deployment"]["ref"] = body["ref"].clone();
    event["deployment"]["environment"] = body["environment"].clone();
    event["deployment"]["payload"] = body["payload"].clone();
    event["repository"]["full_name"] = json!("acme/web");
    event.to_string().into_bytes()
}

/// The body of the one deployment request that reached the stand-in.
fn request_body(standin: &GithubStandin) -> Value {
    let bodies: Vec<Value> = standin
        .requests()
        .into_iter()
        .filter(|r| r.operation == DEPLOYMENTS)
        .filter_map(|r| r.body)
        .collect();
    bodies.last().cloned().unwrap()
}

fn push(server: &ServerProcess, n: u32, commit: usize, delivery: &str) {
    let r = signed_push(server, &hook(n), SECRET, &sha(commit), delivery);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        r.json()["decisions"][0]["state"],
        "deployment-requested",
        "{}",
        r.text()
    );
}

#[test]
fn github_a_request_answered_500_for_a_while_is_retried_and_deploys_once_by_its_event() {
    let standin = GithubStandin::start(TOKEN);
    // Four 500s exhaust the client's quick tries; so do the next four, 5 s
    // later; the try after that, 10 s later, gets two more, then the
    // deployment.
    fail_requests(&standin, 10, 500, "Server Error");
    let port = free_port();
    let world = world(
        "github-cd-retry-500",
        port,
        &[cd_stack(
            1,
            "web",
            &standin.base_url(),
            "retry_request_for = \"2m\"",
        )],
    );
    let server = world.start_on(port, &[], &[]);
    standin.forward_deployments_to(&format!("http://127.0.0.1:{port}{}", hook(1)), SECRET);
    push(&server, 1, 1, "push-1");

    // Retried, not failed: still pending, saying why.
    let waiting = request_of(&world, "web", |r| {
        r.detail
            .as_deref()
            .is_some_and(|d| d.starts_with("retrying after attempt 1"))
    });
    assert_eq!(waiting.state, RequestState::Pending, "{waiting:?}");
    let created = request_of(&world, "web", |r| r.state == RequestState::Created);
    assert_eq!(created.deployment_id, Some(1000));
    let deploys = deploys_of(&world, "web", 1);
    assert_eq!(
        statuses_of(&standin, 1000, 3),
        ["queued", "in_progress", "success"]
    );
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(
        deploys[0].queued.delivery_id.as_deref(),
        Some("github-deployment-1000")
    );
    // Eleven tries in all, and each later try asked GitHub first whether
    // an earlier one had created it: one deployment.
    assert_eq!(standin.count(DEPLOYMENTS), 11);
    assert_eq!(standin.count(LIST_DEPLOYMENTS), 2);
    // Put off twice, logged once.
    let log = world.server_log();
    assert_eq!(
        log.matches("GitHub deployment request not taken; trying again")
            .count(),
        1,
        "{log}"
    );
    assert!(standin.statuses(1001).is_empty());
    // No fallback: not run by the journal, nothing counted.
    let settled = world
        .journal()
        .deployment_request(created.id)
        .unwrap()
        .unwrap();
    assert_eq!(settled.fallback, None);
    let metrics = server.get("/metrics").text();
    assert!(
        !metrics.contains("redeploy_github_request_fallbacks_total{"),
        "{metrics}"
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
    server.terminate();
}

#[test]
fn github_a_refused_request_deploys_directly_or_gives_up_as_the_stack_says() {
    let standin = GithubStandin::start(TOKEN);
    let base = standin.base_url();
    let port = free_port();
    let world = world(
        "github-cd-refused",
        port,
        &[
            cd_stack(1, "web", &base, ""),
            cd_stack(2, "quiet", &base, "on_request_failure = \"give-up\""),
        ],
    );
    let server = world.start_on(port, &[], &[]);

    // 422, the default: the push deploys directly, once, and says so.
    fail_requests(&standin, 1, 422, "Validation Failed");
    push(&server, 1, 1, "push-web");
    let request = request_of(&world, "web", |r| r.fallback.is_some());
    let deploys = deploys_of(&world, "web", 1);
    assert_eq!(deploys.len(), 1);
    let d = &deploys[0];
    assert_eq!(
        (
            request.state,
            request.http_status,
            request.fallback,
            request.fallback_deploy_id
        ),
        (
            RequestState::Invalid,
            Some(422),
            Some(RequestFallback::DeployedDirectly),
            Some(d.id)
        )
    );
    assert_eq!(d.state, redeploy_host::journal::DeployState::Succeeded);
    assert_eq!(d.queued.delivery_id.as_deref(), Some("push-web"));
    assert_eq!(d.queued.sha.as_deref(), Some(sha(1).as_str()));
    assert_eq!(
        d.queued.reason,
        "deployed directly: GitHub deployment request failed: Validation Failed"
    );
    // The push redelivered asks nothing and deploys nothing more.
    let again = signed_push(&server, &hook(1), SECRET, &sha(1), "push-web");
    assert_eq!(again.json()["decisions"][0]["state"], "duplicate");

    // 422 on a stack that gives up: nothing deploys, and it is recorded.
    fail_requests(&standin, 1, 422, "Validation Failed");
    push(&server, 2, 2, "push-quiet");
    let quiet = request_of(&world, "quiet", |r| r.fallback.is_some());
    assert_eq!(
        (quiet.state, quiet.fallback, quiet.fallback_deploy_id),
        (RequestState::Invalid, Some(RequestFallback::GaveUp), None)
    );
    // A look after it changes nothing.
    std::thread::sleep(Duration::from_secs(2));
    let all = world.deploys();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(standin.count(DEPLOYMENTS), 2);

    // Logged once each, counted, and shown by `history`.
    let log = server.log_text();
    assert_eq!(
        log.matches("deployed directly: GitHub deployment request failed")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        log.matches("nothing deploys (on_request_failure = \\\"give-up\\\")")
            .count()
            + log
                .matches("nothing deploys (on_request_failure = \"give-up\")")
                .count(),
        1,
        "{log}"
    );
    let metrics = server.get("/metrics").text();
    for line in [
        fallback_metric("web", "deploy", 1),
        fallback_metric("quiet", "give-up", 1),
    ] {
        assert!(metrics.contains(&line), "{line} not in {metrics}");
    }
    let history = stdout(&world.redeploy(&["history"]));
    assert!(
        history.contains(&format!("deployed directly as deploy #{}", d.id)),
        "{history}"
    );
    assert!(history.contains("gave up: nothing deployed"), "{history}");
    assert_eq!(standin.violations(), Vec::<String>::new());
    server.terminate();
}

#[test]
fn github_a_request_github_refuses_for_its_checks_never_deploys() {
    let standin = GithubStandin::start(TOKEN);
    let port = free_port();
    let world = world(
        "github-cd-409",
        port,
        &[cd_stack(1, "web", &standin.base_url(), "")],
    );
    let server = world.start_on(port, &[], &[]);
    fail_requests(
        &standin,
        1,
        409,
        "Conflict: Commit status checks failed for main.",
    );
    push(&server, 1, 1, "push-1");
    let request = request_of(&world, "web", |r| r.fallback.is_some());
    assert_eq!(
        (request.state, request.fallback, request.fallback_deploy_id),
        (
            RequestState::Conflict,
            Some(RequestFallback::NotOverridden),
            None
        )
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(world.deploys().is_empty());
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains(&fallback_metric("web", "not-overridden", 1)),
        "{metrics}"
    );
    assert!(!metrics.contains("action=\"deploy\""), "{metrics}");
    let log = server.log_text();
    assert_eq!(
        log.matches("GitHub's decision about the commit is not overridden")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(standin.count(DEPLOYMENTS), 1);
    assert_eq!(standin.violations(), Vec::<String>::new());
    server.terminate();
}

#[test]
fn github_a_created_deployment_whose_event_never_comes_runs_once_after_event_wait() {
    let standin = GithubStandin::start(TOKEN);
    let base = standin.base_url();
    let port = free_port();
    let world = world(
        "github-cd-event-wait",
        port,
        &[
            cd_stack(1, "web", &base, "event_wait = \"3s\""),
            // Long enough that a loaded machine delivers the event in
            // time: this stack checks the wait never runs it.
            cd_stack(2, "prompt", &base, "event_wait = \"10s\""),
        ],
    );
    let server = world.start_on(port, &[], &[]);

    // The stand-in sends no `deployment` event: the journal runs it.
    let pushed = Instant::now();
    push(&server, 1, 1, "push-1");
    let deploys = deploys_of(&world, "web", 1);
    assert!(
        pushed.elapsed() >= Duration::from_secs(3),
        "ran after {:?}",
        pushed.elapsed()
    );
    assert_eq!(deploys.len(), 1);
    let d = &deploys[0];
    assert_eq!(
        d.queued.delivery_id.as_deref(),
        Some("github-deployment-1000")
    );
    assert!(
        d.queued
            .reason
            .starts_with("GitHub deployment 1000 run from the journal: its deployment event did not arrive within 3s"),
        "{}",
        d.queued.reason
    );
    // Its statuses go to the created deployment, as usual.
    assert_eq!(
        statuses_of(&standin, 1000, 3),
        ["queued", "in_progress", "success"]
    );
    let request = request_of(&world, "web", |r| r.fallback.is_some());
    assert_eq!(
        (
            request.state,
            request.deployment_id,
            request.asked.deploy_id,
            request.fallback
        ),
        (
            RequestState::Created,
            Some(1000),
            Some(d.id),
            Some(RequestFallback::RanWithoutEvent)
        )
    );

    // The event sent late anyway is a duplicate: no second deploy.
    let body = request_body(&standin);
    let late = signed_github(
        &server,
        &hook(1),
        SECRET,
        ("deployment", "late-event"),
        &deployment_event(1000, &body),
    );
    assert_eq!(late.status, 200, "{}", late.text());
    assert_eq!(
        late.json()["decisions"][0]["state"],
        "duplicate",
        "{}",
        late.text()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(world.deploys().len(), 1);
    assert_eq!(standin.statuses(1000).len(), 3);

    // A deployment whose event comes in time is run by it, and never by
    // the wait.
    standin.forward_deployments_to(&format!("http://127.0.0.1:{port}{}", hook(2)), SECRET);
    push(&server, 2, 2, "push-2");
    let prompt = deploys_of(&world, "prompt", 1);
    assert_eq!(
        prompt[0].queued.delivery_id.as_deref(),
        Some("github-deployment-1001")
    );
    // Past its event_wait (10 s from the request): still the one deploy.
    std::thread::sleep(Duration::from_secs(11));
    let prompt = deploys_of(&world, "prompt", 1);
    assert_eq!(prompt.len(), 1, "{prompt:?}");
    assert_eq!(request_of(&world, "prompt", |_| true).fallback, None);

    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains(&fallback_metric("web", "event-missing", 1)),
        "{metrics}"
    );
    assert!(!metrics.contains("stack=\"prompt\",action"), "{metrics}");
    let log = server.log_text();
    assert_eq!(
        log.matches("its deployment event did not arrive within 3s; running it from the journal")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
    server.terminate();
}

#[test]
fn github_a_restart_in_the_middle_of_the_retries_still_deploys_once() {
    let standin = GithubStandin::start(TOKEN);
    // Ten 500s: the first server's four quick tries, then (after the
    // restart) four more, then two before the deployment.
    fail_requests(&standin, 10, 503, "Service Unavailable");
    let port = free_port();
    let world = world(
        "github-cd-retry-restart",
        port,
        &[cd_stack(
            1,
            "web",
            &standin.base_url(),
            "retry_request_for = \"3m\"",
        )],
    );
    let server = world.start_on(port, &[], &[]);
    standin.forward_deployments_to(&format!("http://127.0.0.1:{port}{}", hook(1)), SECRET);
    push(&server, 1, 1, "push-1");
    request_of(&world, "web", |r| {
        r.detail
            .as_deref()
            .is_some_and(|d| d.starts_with("retrying"))
    });
    server.kill();
    assert_eq!(standin.count(DEPLOYMENTS), 4);

    let restarted = world.start_on(port, &[], &[]);
    let created = request_of(&world, "web", |r| r.state == RequestState::Created);
    assert_eq!(
        (created.deployment_id, created.fallback),
        (Some(1000), None)
    );
    let deploys = deploys_of(&world, "web", 1);
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(
        statuses_of(&standin, 1000, 3),
        ["queued", "in_progress", "success"]
    );
    assert!(standin.statuses(1001).is_empty());
    assert_eq!(standin.count(DEPLOYMENTS), 11);
    assert_eq!(standin.violations(), Vec::<String>::new());
    restarted.terminate();
}

#[test]
fn github_a_request_github_never_takes_deploys_directly_once_retry_request_for_is_over() {
    let standin = GithubStandin::start(TOKEN);
    fail_requests(&standin, 20, 503, "Service Unavailable");
    let port = free_port();
    let world = world(
        "github-cd-retry-bound",
        port,
        &[cd_stack(
            1,
            "web",
            &standin.base_url(),
            "retry_request_for = \"6s\"",
        )],
    );
    let server = world.start_on(port, &[], &[]);
    let pushed = Instant::now();
    push(&server, 1, 1, "push-1");
    let request = request_of(&world, "web", |r| r.fallback.is_some());
    // Tried for the bound (a first round, then one more at its end), not
    // longer, then deployed directly.
    assert!(
        pushed.elapsed() >= Duration::from_secs(6),
        "{:?}",
        pushed.elapsed()
    );
    // Eight: two rounds of the client's four quick tries (0.5, 1 and 2 s
    // apart: about 3.5 s a round). The first at the push; its back-off
    // (REQUEST_RETRY_FIRST, 5 s) is cut to the 6 s bound; the second round
    // starts at the bound and ends after it, so it is the last.
    assert_eq!(standin.count(DEPLOYMENTS), 8);
    // Two lists: the second round asked first whether the first had
    // created it, and before deploying directly the fallback asked whether
    // the last try had: no.
    assert_eq!(standin.count(LIST_DEPLOYMENTS), 2);
    let deploys = deploys_of(&world, "web", 1);
    assert_eq!(deploys.len(), 1);
    assert_eq!(
        (request.state, request.fallback, request.fallback_deploy_id),
        (
            RequestState::Failed,
            Some(RequestFallback::DeployedDirectly),
            Some(deploys[0].id)
        )
    );
    assert_eq!(
        deploys[0].queued.reason,
        "deployed directly: GitHub deployment request failed: \
         GitHub API unreachable after 4 tries: 503: Service Unavailable"
    );
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains(&fallback_metric("web", "deploy", 1)),
        "{metrics}"
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
    server.terminate();
}

/// The bodies of the deployment requests that reached the stand-in, in
/// order.
fn request_bodies(standin: &GithubStandin) -> Vec<Value> {
    standin
        .requests()
        .into_iter()
        .filter(|r| r.operation == DEPLOYMENTS)
        .filter_map(|r| r.body)
        .collect()
}

#[test]
fn github_an_older_push_whose_event_is_lost_never_runs_after_a_newer_one() {
    let standin = GithubStandin::start(TOKEN);
    let port = free_port();
    let world = world(
        "github-cd-superseded",
        port,
        &[cd_stack(
            1,
            "web",
            &standin.base_url(),
            "event_wait = \"5s\"",
        )],
    );
    let server = world.start_on(port, &[], &[]);
    // Push A creates deployment 1000, whose event is lost; push B creates
    // 1001, whose event arrives and deploys B.
    push(&server, 1, 1, "push-a");
    push(&server, 1, 2, "push-b");
    let bodies = wait_for(WAIT_SECS, "two deployment requests", || {
        let b = request_bodies(&standin);
        (b.len() >= 2).then_some(b)
    });
    let event = signed_github(
        &server,
        &hook(1),
        SECRET,
        ("deployment", "event-b"),
        &deployment_event(1001, &bodies[1]),
    );
    assert_eq!(event.status, 202, "{}", event.text());
    let a = wait_for(WAIT_SECS, "push A superseded", || {
        world
            .journal()
            .deployment_requests(Some("web"), 10)
            .unwrap()
            .into_iter()
            .find(|r| r.deployment_id == Some(1000) && r.fallback.is_some())
    });
    assert_eq!(a.fallback, Some(RequestFallback::Superseded));
    assert_eq!(a.fallback_deploy_id, None);
    // A never runs: B's is the one deploy, and stays so.
    std::thread::sleep(Duration::from_secs(2));
    let deploys = deploys_of(&world, "web", 1);
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(
        deploys[0].queued.delivery_id.as_deref(),
        Some("github-deployment-1001")
    );
    assert!(standin.statuses(1000).is_empty());
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains(&fallback_metric("web", "superseded", 1)),
        "{metrics}"
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
    server.terminate();
}

#[test]
fn github_a_deployment_event_that_arrives_and_is_skipped_is_never_run_by_the_wait() {
    let standin = GithubStandin::start(TOKEN);
    let port = free_port();
    let world = world(
        "github-cd-event-skipped",
        port,
        &[cd_stack(
            1,
            "web",
            &standin.base_url(),
            "event_wait = \"3s\"",
        )],
    );
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1, "push-1");
    let created = request_of(&world, "web", |r| r.state == RequestState::Created);
    // Its event arrives, for another environment: the component skips it.
    let mut body = request_body(&standin);
    body["environment"] = json!("elsewhere");
    let event = signed_github(
        &server,
        &hook(1),
        SECRET,
        ("deployment", "event-other-env"),
        &deployment_event(created.deployment_id.unwrap(), &body),
    );
    assert_eq!(event.status, 200, "{}", event.text());
    // Well past the wait: nothing ran it.
    std::thread::sleep(Duration::from_secs(6));
    assert!(world.deploys().is_empty(), "{:?}", world.deploys());
    let request = request_of(&world, "web", |_| true);
    assert_eq!(request.fallback, None);
    assert!(!server
        .get("/metrics")
        .text()
        .contains("redeploy_github_request_fallbacks_total{"));
    server.terminate();
}

#[test]
fn github_a_created_deployment_of_a_stack_no_longer_on_github_is_given_up() {
    let standin = GithubStandin::start(TOKEN);
    let port = free_port();
    let world = world(
        "github-cd-stack-gone",
        port,
        &[cd_stack(
            1,
            "web",
            &standin.base_url(),
            "event_wait = \"1h\"",
        )],
    );
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1, "push-1");
    request_of(&world, "web", |r| r.state == RequestState::Created);
    server.terminate();

    // The stack no longer has [stacks.github]: nothing would ever run the
    // deployment, so it is given up on, not left open.
    let config = std::fs::read_to_string(&world.config).unwrap();
    let start = config.find("[stacks.github]").unwrap();
    let end = config[start + 1..]
        .find("\n[")
        .map_or(config.len(), |i| start + 1 + i + 1);
    std::fs::write(
        &world.config,
        format!("{}{}", &config[..start], &config[end..]),
    )
    .unwrap();
    let server = world.start_on(port, &[], &[]);
    let request = request_of(&world, "web", |r| r.fallback.is_some());
    assert_eq!(request.fallback, Some(RequestFallback::GaveUp));
    assert!(world.deploys().is_empty());
    server.terminate();
}

/// How long the stand-in holds back the answer to a deployment request it
/// created: longer than the client waits for one try, so the answer is
/// lost to a timeout after GitHub stored the deployment.
const LOST_ANSWER_HOLD: Duration = Duration::from_secs(REQUEST_TIMEOUT.as_secs() + 5);

/// The client's tries of one request, as a count of the stand-in's.
fn tries() -> usize {
    usize::try_from(MAX_ATTEMPTS).unwrap()
}

#[test]
fn github_a_deployment_the_last_try_created_whose_answer_was_lost_is_adopted_and_deploys_once() {
    let standin = GithubStandin::start(TOKEN);
    // The one round of tries `retry_request_for` allows: the first tries
    // are answered 502 (nothing created); the last creates deployment 1000
    // and its answer never comes (the client stops waiting for it).
    fail_requests(&standin, tries() - 1, 502, "Bad Gateway");
    standin.hold_response(DEPLOYMENTS, tries() - 1, LOST_ANSWER_HOLD);
    // The first check finds GitHub unreachable (every try 503): nothing
    // deploys on that; a later check finds the deployment.
    fail_operation(
        &standin,
        LIST_DEPLOYMENTS,
        tries(),
        503,
        "Service Unavailable",
    );
    let port = free_port();
    let world = world(
        "github-cd-lost-answer",
        port,
        // No `deployment` event until the test sends it, late; the journal
        // never runs it meanwhile (`event_wait` is long).
        &[cd_stack(
            1,
            "web",
            &standin.base_url(),
            "retry_request_for = \"1s\"\nevent_wait = \"1h\"",
        )],
    );
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1, "push-1");

    // Adopted: recorded created, with the deployment GitHub holds, and no
    // fallback (neither deployed directly nor given up).
    let adopted = request_of(&world, "web", |r| r.state == RequestState::Created);
    assert_eq!(
        (
            adopted.deployment_id,
            adopted.http_status,
            adopted.fallback,
            adopted.fallback_deploy_id
        ),
        (Some(1000), None, None, None),
        "{adopted:?}"
    );
    let detail = adopted.detail.clone().unwrap_or_default();
    assert!(
        detail.starts_with("created (found on GitHub after the answer to its last try was lost)"),
        "{detail}"
    );
    assert_eq!(standin.count(DEPLOYMENTS), tries());
    // Two checks: the one GitHub failed (every try), the one that found it.
    assert_eq!(standin.count(LIST_DEPLOYMENTS), tries() + 1);
    assert!(world.deploys().is_empty(), "{:?}", world.deploys());

    // GitHub's event for it, late: the one deploy, reporting to it.
    let body = request_body(&standin);
    let event = signed_github(
        &server,
        &hook(1),
        SECRET,
        ("deployment", "late-event"),
        &deployment_event(1000, &body),
    );
    assert_eq!(event.status, 202, "{}", event.text());
    let deploys = deploys_of(&world, "web", 1);
    assert_eq!(
        statuses_of(&standin, 1000, 3),
        ["queued", "in_progress", "success"]
    );
    std::thread::sleep(Duration::from_secs(2));
    let deploys_after = world.deploys();
    assert_eq!(deploys_after.len(), 1, "{deploys_after:?}");
    assert_eq!(
        deploys[0].queued.delivery_id.as_deref(),
        Some("github-deployment-1000")
    );
    assert_eq!(
        deploys[0].state,
        redeploy_host::journal::DeployState::Succeeded
    );
    assert_eq!(
        world
            .journal()
            .deployment_request(adopted.id)
            .unwrap()
            .unwrap()
            .fallback,
        None
    );

    // Said once each: the check that failed, the adoption; nothing counted
    // as a fallback; `history` shows the request created with it.
    let log = server.log_text();
    assert_eq!(
        log.matches("cannot ask GitHub whether the last try created the deployment")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(log.matches("adopted: found on GitHub").count(), 1, "{log}");
    assert!(!log.contains("deployed directly"), "{log}");
    // Counted as adopted, and as nothing else.
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains(&fallback_metric("web", "adopted", 1)),
        "{metrics}"
    );
    assert_eq!(
        metrics
            .matches("redeploy_github_request_fallbacks_total{")
            .count(),
        1,
        "{metrics}"
    );
    let history = stdout(&world.redeploy(&["history"]));
    let line = history
        .lines()
        .find(|l| l.contains("found on GitHub after the answer to its last try was lost"))
        .unwrap_or_else(|| panic!("{history}"));
    assert!(
        line.contains("created") && line.contains("1000"),
        "{history}"
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
    server.terminate();
}

#[test]
fn github_a_failed_request_github_cannot_be_asked_about_deploys_directly_only_after_event_wait() {
    let standin = GithubStandin::start(TOKEN);
    // Nothing created (every try 503), and GitHub cannot be asked whether
    // it was: every list 503 too.
    fail_requests(&standin, tries(), 503, "Service Unavailable");
    fail_operation(
        &standin,
        LIST_DEPLOYMENTS,
        40 * tries(),
        503,
        "Service Unavailable",
    );
    let port = free_port();
    let world = world(
        "github-cd-unaskable",
        port,
        &[cd_stack(
            1,
            "web",
            &standin.base_url(),
            "retry_request_for = \"1s\"\nevent_wait = \"6s\"",
        )],
    );
    let server = world.start_on(port, &[], &[]);
    push(&server, 1, 1, "push-1");
    wait_for(WAIT_SECS, "the first check", || {
        (standin.count(LIST_DEPLOYMENTS) >= 1).then_some(())
    });
    let first_check = Instant::now();
    let request = request_of(&world, "web", |r| r.fallback.is_some());
    // Not before the asking had failed for `event_wait` (6 s), counted
    // from the end of the first check that failed.
    assert!(
        first_check.elapsed() >= Duration::from_secs(6),
        "{:?}",
        first_check.elapsed()
    );
    let deploys = deploys_of(&world, "web", 1);
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(
        (request.state, request.fallback, request.fallback_deploy_id),
        (
            RequestState::Failed,
            Some(RequestFallback::DeployedDirectly),
            Some(deploys[0].id)
        )
    );
    assert_eq!(deploys[0].queued.delivery_id.as_deref(), Some("push-1"));
    let reason = &deploys[0].queued.reason;
    assert!(
        reason.starts_with("deployed directly: GitHub deployment request failed: GitHub API unreachable after 4 tries: 503: Service Unavailable; GitHub could not be asked for 6s whether its last try created the deployment"),
        "{reason}"
    );
    // Asked more than once (each check the client's tries), said once.
    assert!(
        standin.count(LIST_DEPLOYMENTS) >= 2 * tries(),
        "{}",
        standin.count(LIST_DEPLOYMENTS)
    );
    let log = server.log_text();
    assert_eq!(
        log.matches("cannot ask GitHub whether the last try created the deployment")
            .count(),
        1,
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(world.deploys().len(), 1);
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains(&fallback_metric("web", "deploy", 1)),
        "{metrics}"
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
    server.terminate();
}
