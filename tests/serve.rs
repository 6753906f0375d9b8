//! `redeploy serve` end to end: a real server on a loopback port, real
//! signed deliveries built from the fixtures, and a stand-in deploy program
//! that records its environment and stdin.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;

use redeploy_host::journal::{DeployRecord, DeployState, Journal};

use crate::support::cli::{assert_fails_saying, assert_success, stderr, stdout};
use crate::support::deliveries::{
    post_fixture, post_fixture_with, push_json, sha, signed_github, signed_push,
};
use crate::support::http::{serve_once, Received};
use crate::support::server::{example_config, example_server};
use crate::support::world::assert_all_succeeded;
use crate::support::{
    assert_contains_all, fixture, hook, token, wait_for, ServerProcess, Stack, TempDir, World,
};

/// The secret of the stacks of [`web_stack`].
const WEB_SECRET: &str = "s3cret-s3cret";

/// A signed stack `label` following `main` of acme/web with hook token
/// `n`, whose stand-in sleeps `sleep` seconds.
fn web_stack(n: u32, label: &str, sleep: &str) -> Stack {
    Stack::repo(label, "acme/web", "main", n)
        .secret(WEB_SECRET)
        .timeout("1m")
        .env("SLEEP", sleep)
}

/// A signed push of commit `n` to [`web_stack`] 1.
fn push(server: &ServerProcess, n: usize, delivery: &str) -> u16 {
    signed_push(server, &hook(1), WEB_SECRET, &sha(n), delivery).status
}

/// A signed push of `git_ref` from `before` to `after` (`push_json`) to
/// hook 1, answered 202.
fn push_accepted(
    server: &ServerProcess,
    git_ref: &str,
    (before, after): (&str, &str),
    delivery: &str,
) -> crate::support::http::Response {
    let body = push_json(git_ref, before, after).to_string();
    let answer = signed_github(
        server,
        &hook(1),
        WEB_SECRET,
        ("push", delivery),
        body.as_bytes(),
    );
    answer.assert_status(202);
    answer
}

#[test]
fn serve_deploys_exactly_what_it_should() {
    let hello = "Codertocat/Hello-World";
    let stacks = [
        Stack::repo("hello", hello, "master", 1)
            .secret("topsecret")
            .env("APP_ENV", "production"),
        Stack::repo("hello-dev", hello, "develop", 2).secret("topsecret"),
        Stack::repo("drone", "bradrydzewski/drone-test-go", "**", 3),
        Stack::repo("pinged", "Octocoders/Hello-World", "main", 4),
        Stack::repo("ping-ack", "Octocoders/Hello-World", "main", 5).key("ping", "acknowledge"),
    ];
    let (world, server) = World::serving("serve-deploys", "max_body_bytes = 65536", &stacks);

    // A matching, signed push: 202, deployed once.
    let r = post_fixture(&server, &hook(1), "github/goscm-push");
    assert_eq!(r.assert_status(202).decision()["action"], "deploy");
    let hello_id = r.decision()["deploy_id"].as_i64().unwrap();
    // GitHub redelivers with the same X-GitHub-Delivery: deployed once.
    let again = post_fixture(&server, &hook(1), "github/goscm-push");
    assert_eq!(again.assert_status(200).decision()["state"], "duplicate");

    // The same push to a stack on another branch: 200, nothing.
    let r = post_fixture(&server, &hook(2), "github/goscm-push");
    assert_eq!(
        r.assert_status(200).decision()["reason"],
        "push to \"master\" does not match branch \"develop\""
    );

    // Deletion, tag without a tag pattern, pull request, release: 200, nothing.
    for (name, reason) in [
        (
            "github/goscm-push_branch_delete",
            "branch \"feature-branch\" was deleted; deletions never deploy",
        ),
        (
            "github/goscm-push_tag",
            "tag \"v0.0.1\" pushed; this stack deploys no tags (no tags pattern)",
        ),
        ("github/goscm-pr_opened", "pull_request events never deploy"),
        (
            "github/goscm-release_published",
            "release events never deploy",
        ),
    ] {
        let r = post_fixture(&server, &hook(3), name);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.decision()["action"], "skip", "{name}");
        assert_eq!(r.decision()["reason"], reason, "{name}");
    }

    // The seed's manual trigger: curl -X POST -d "" URL.
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = server.post(&hook(3), &form, b"");
    let manual_id = r.assert_status(202).decision()["deploy_id"]
        .as_i64()
        .unwrap();

    // A ping deploys by default, or is only acknowledged.
    let ping = fixture("github/octokit-ping-default.json");
    let ping_event = [("X-GitHub-Event", "ping")];
    let r = server.post(&hook(4), &ping_event, &ping);
    let ping_id = r.assert_status(202).decision()["deploy_id"]
        .as_i64()
        .unwrap();
    assert_eq!(server.post(&hook(5), &ping_event, &ping).status, 200);

    // Rejections deploy nothing.
    post_fixture_with(&server, &hook(1), "github/goscm-push", |body| body[10] ^= 1)
        .assert_error(401, "bad-signature");
    let push_event = [("X-GitHub-Event", "push")];
    let unsigned = fixture("github/goscm-push.json");
    server
        .post(&hook(1), &push_event, &unsigned)
        .assert_error(401, "missing-signature");
    let r = server.post(&format!("/hooks/{}", token(99)), &[], b"");
    assert_eq!(r.status, 404);
    let r = server.post(&hook(3), &push_event, &vec![b' '; 100 * 1024]);
    assert_eq!(r.status, 413);
    assert_eq!(r.header("content-type"), Some("application/json"));
    server
        .post(&hook(3), &push_event, b"{\"ref\": \"refs/heads/main\", ")
        .assert_error(400, "malformed-payload");
    assert_eq!(server.get(&hook(3)).status, 405);

    let deploys = world.settle(30);
    let ids: Vec<i64> = deploys.iter().map(|d| d.id).collect();
    assert_eq!(
        ids,
        vec![hello_id, manual_id, ping_id],
        "exactly three deploys: {deploys:#?}"
    );
    assert_all_succeeded(&deploys);
    assert_eq!(world.ran("hello").len(), 1);
    assert_eq!(world.ran("hello-dev").len(), 0);
    assert_eq!(world.ran("ping-ack").len(), 0);
    // /metrics counts each stack's finished deploys and its last success.
    let metrics = server.get("/metrics").text();
    for stack in ["hello", "drone", "pinged"] {
        assert!(
            metrics.contains(&format!(
                "redeploy_stack_deploys_total{{stack=\"{stack}\",state=\"succeeded\"}} 1\n"
            )),
            "{metrics}"
        );
        let finished = deploys
            .iter()
            .find(|d| d.queued.stack == stack)
            .and_then(|d| d.finished_at_ms)
            .unwrap();
        assert!(
            metrics.contains(&format!(
                "redeploy_stack_last_success_timestamp_seconds{{stack=\"{stack}\"}} {}\n",
                finished / 1000
            )),
            "{metrics}"
        );
    }
    assert!(!metrics.contains("stack=\"hello-dev\""), "{metrics}");

    world.assert_env(
        "hello",
        hello_id,
        &[
            ("REDEPLOY_STACK", "hello"),
            ("REDEPLOY_SERVICES", "hello"),
            ("REDEPLOY_REF", "refs/heads/master"),
            ("REDEPLOY_BRANCH", "master"),
            ("REDEPLOY_SHA", "199eddf46df50de8d02e99bf1c5fdb4101338224"),
            ("REDEPLOY_PROVIDER", "github"),
            ("REDEPLOY_DELIVERY", "f2467dea-70d6-11e8-8955-3c83993e0aef"),
            ("REDEPLOY_REPOSITORY", "Codertocat/Hello-World"),
            ("APP_ENV", "production"),
        ],
    );
    let stdin: serde_json::Value = serde_json::from_slice(
        &std::fs::read(world.record("hello").join(format!("{hello_id}.stdin"))).unwrap(),
    )
    .unwrap();
    assert_eq!(stdin["sha"], "199eddf46df50de8d02e99bf1c5fdb4101338224");
    assert_eq!(stdin["stack"], "hello");
    world.assert_env("drone", manual_id, &[("REDEPLOY_PROVIDER", "manual")]);
    // The log of each deploy is kept in the state directory.
    assert!(Path::new(deploys[0].log_path.as_deref().unwrap()).exists());
    server.terminate();
}

#[test]
fn a_deploy_whose_claim_fails_longer_than_its_retries_runs_once_the_journal_can_be_written() {
    let world = World::new("claim-fails", "", &web_stack(1, "web", "0").toml());
    let server = world.start(&[]);
    // The journal refuses to record any deploy started, as a full disk
    // would (the database file itself stays writable for the admission).
    let journal = rusqlite::Connection::open(Journal::path_in(&world.dir.join("state"))).unwrap();
    journal
        .busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    journal
        .execute_batch(
            "CREATE TRIGGER no_start BEFORE UPDATE OF state ON deploys
             WHEN NEW.state = 'started' BEGIN SELECT RAISE(ABORT, 'no space left (test)'); END",
        )
        .unwrap();
    assert_eq!(push(&server, 1, "c-1"), 202);
    wait_for(30, "a claim to be tried again", || {
        server
            .log_text()
            .contains("cannot claim and start the stack's next deploy yet; retrying")
            .then_some(())
    });
    // Past the claim's retries (a minute), the deploy is left queued.
    wait_for(90, "the claim to give up", || {
        server
            .log_text()
            .contains("cannot claim and start the stack's next deploy; not running it")
            .then_some(())
    });
    assert_eq!(world.deploys()[0].state, DeployState::Queued);
    journal.execute_batch("DROP TRIGGER no_start").unwrap();
    // Nothing else arrives: the server's own sweep finds it.
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1, "{deploys:#?}");
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    assert_eq!(world.ran("web").len(), 1);
    server.terminate();
}

#[test]
fn fifty_deliveries_over_ten_commits_run_one_at_a_time_and_the_newest_last() {
    let (world, server) = World::serving("serve-concurrency", "", &[web_stack(1, "web", "0.3")]);
    // A slow deploy is running...
    assert_eq!(push(&server, 1000, "first"), 202);
    world.wait_ran_more_than("web", 0, 10);
    // ...while 50 deliveries for 10 commits arrive, 5 per commit, concurrently.
    std::thread::scope(|scope| {
        for commit in 1..=10 {
            let handles: Vec<_> = (0..5)
                .map(|k| {
                    let server = &server;
                    scope.spawn(move || push(server, commit, &format!("c{commit}-d{k}")))
                })
                .collect();
            for h in handles {
                let status = h.join().unwrap();
                assert!(status == 202 || status == 200, "status {status}");
            }
        }
    });
    let deploys = world.settle(60);
    assert_eq!(
        world.journal().deliveries(100).unwrap().len(),
        51,
        "every delivery is in the journal"
    );
    // Each commit's first delivery queued a deploy; a later one of the same
    // push is the head's duplicate (nothing queued) or, once a newer
    // commit came, an older commit's deploy, recorded cancelled.
    assert!((11..=51).contains(&deploys.len()), "{deploys:#?}");
    for commit in 1..=10 {
        assert!(
            deploys
                .iter()
                .any(|d| d.queued.sha.as_deref() == Some(sha(commit).as_str())),
            "commit {commit} has no deploy"
        );
    }
    assert!(
        !world.record("web").join("overlaps").exists(),
        "two deploys of one stack overlapped"
    );
    let ran = world.ran("web");
    let last = ran.last().unwrap();
    assert!(
        last.ends_with(&sha(10)),
        "the newest commit deploys last: {ran:?}"
    );
    let succeeded: Vec<&DeployRecord> = deploys
        .iter()
        .filter(|d| d.state == DeployState::Succeeded)
        .collect();
    let cancelled = deploys
        .iter()
        .filter(|d| d.state == DeployState::Cancelled)
        .count();
    assert_eq!(succeeded.len() + cancelled, deploys.len(), "{deploys:#?}");
    assert_eq!(succeeded.len(), ran.len());
    // Commits only ever move forward: the first deploy was commit 1000, then 1..=10 in order.
    let index = |s: &str| match usize::from_str_radix(s, 16).unwrap() {
        1000 => 0,
        n => n,
    };
    let order: Vec<usize> = succeeded
        .iter()
        .map(|d| index(d.queued.sha.as_deref().unwrap()))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "an older commit ran after a newer one: {order:?}"
    );
    server.terminate();
}

#[test]
fn each_of_many_concurrent_deliveries_is_journaled_before_it_is_answered() {
    // A stack following `production`: each push to `main` is answered 200
    // (nothing deploys) once its delivery row is in the journal, whether
    // its caller wrote the row or waited for a batch another wrote.
    let stack = Stack::repo("web", "acme/web", "production", 1).secret(WEB_SECRET);
    let (world, server) = World::serving("serve-rows", "", &[stack]);
    const THREADS: usize = 8;
    const EACH: usize = 25;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let (world, server) = (&world, &server);
            scope.spawn(move || {
                let journal = world.journal();
                for i in 0..EACH {
                    let delivery = format!("t{t}-{i}");
                    let r = signed_push(server, &hook(1), WEB_SECRET, &sha(i + 1), &delivery);
                    r.assert_status(200);
                    assert_eq!(r.decision()["skip"], "branch-mismatch", "{}", r.text());
                    let journaled = journal.deliveries(THREADS * EACH + 1).unwrap();
                    let row = journaled
                        .iter()
                        .find(|d| d.recorded.delivery_id.as_deref() == Some(&delivery))
                        .unwrap_or_else(|| {
                            panic!("delivery {delivery} was answered before it was journaled")
                        });
                    assert_eq!(row.recorded.status, 200);
                }
            });
        }
    });
    let all = world.journal().deliveries(THREADS * EACH + 1).unwrap();
    assert_eq!(all.len(), THREADS * EACH, "one row per delivery");
    assert!(world.deploys().is_empty());
    server.terminate();
}

/// Pushes commit 1 to [`web_stack`] 1, waits for its deploy to start, and
/// pushes commit 2 to queue behind it.
fn one_running_one_queued(world: &World, server: &ServerProcess) {
    assert_eq!(push(server, 1, "d1"), 202);
    world.wait_ran_more_than("web", 0, 10);
    assert_eq!(push(server, 2, "d2"), 202);
}

#[test]
fn a_push_is_answered_with_what_the_queue_made_of_it_already_journaled() {
    let (world, server) = World::serving("serve-placed", "", &[web_stack(1, "web", "3")]);
    one_running_one_queued(&world, &server);
    let second = world.deploys()[1].id;
    let state = |id: i64| {
        let d = world.journal().deploy(id).unwrap().unwrap();
        (d.state, d.detail, d.superseded_by)
    };
    // Commit 3 supersedes commit 2, queued behind commit 1: by the time
    // the push is answered, the journal says so.
    let r = signed_push(&server, &hook(1), WEB_SECRET, &sha(3), "d3");
    let decision = r.assert_status(202).decision();
    assert_eq!(decision["state"], "queued", "{decision}");
    let third = decision["deploy_id"].as_i64().unwrap();
    let superseded = format!("superseded by commit {} (#{third})", sha(3));
    assert_eq!(
        state(second),
        (
            DeployState::Cancelled,
            Some(superseded.clone()),
            Some(third)
        )
    );
    // The same push of commit 3 again, another delivery id: the push is
    // the stack's head, and each push deploys once; nothing is queued.
    let r = signed_push(&server, &hook(1), WEB_SECRET, &sha(3), "d3-again");
    let decision = r.assert_status(200).decision();
    let duplicate = format!(
        "commit {} of refs/heads/main is already deploy #{third}: each push deploys once (the same push delivered again, by another delivery id, another webhook or a poll, deploys nothing; `redeploy trigger` redeploys)",
        sha(3)
    );
    assert_eq!(decision["state"], "duplicate", "{decision}");
    assert_eq!(decision["reason"], duplicate);
    assert_eq!(decision["deploy_id"].as_i64(), Some(third));
    let deploys = world.settle(30);
    let states: Vec<DeployState> = deploys.iter().map(|d| d.state).collect();
    use DeployState::{Cancelled, Succeeded};
    assert_eq!(states, [Succeeded, Cancelled, Succeeded]);
    assert_eq!(world.ran("web").len(), 2, "commits 1 and 3 ran, once each");
    // Once it ran, a replay of it under a new delivery id does not run it
    // again, before or after a restart.
    let r = signed_push(&server, &hook(1), WEB_SECRET, &sha(3), "d3-replayed");
    assert_eq!(r.assert_status(200).decision()["state"], "duplicate");
    server.terminate();
    let server = world.start(&[]);
    let r = signed_push(&server, &hook(1), WEB_SECRET, &sha(3), "d3-after-restart");
    assert_eq!(r.assert_status(200).decision()["reason"], duplicate);
    let after = world.settle(30);
    assert_eq!(after, deploys);
    assert_eq!(world.ran("web").len(), 2);
    server.terminate();
}

/// Sends the server SIGHUP and waits for its log to tell of its `n`th
/// reload since it started.
fn reload(world: &World, server: &ServerProcess, n: usize) {
    send_signal(server, libc::SIGHUP);
    wait_for(10, "the reload in the log", || {
        (world.server_log().matches("configuration reloaded").count() >= n).then_some(())
    });
}

/// The stack's `branch` in the world's config moved from `main` to
/// `release`.
fn follow_release_instead(world: &World) {
    let text = std::fs::read_to_string(&world.config).unwrap();
    let moved = text.replace("branch = \"main\"", "branch = \"release\"");
    assert_ne!(moved, text);
    std::fs::write(&world.config, moved).unwrap();
}

/// The reason a deploy of `main` is not run once the stack follows
/// `release`.
const NOT_MAIN_ANY_MORE: &str = "not run: stack \"web\" as configured here does not follow refs/heads/main: push to \"main\" does not match branch \"release\"";

#[test]
fn a_deploy_queued_for_a_branch_a_reload_stopped_following_is_cancelled_and_never_runs() {
    let (world, server) = World::serving("serve-reload-branch", "", &[web_stack(1, "web", "3")]);
    one_running_one_queued(&world, &server);
    follow_release_instead(&world);
    reload(&world, &server, 1);
    let deploys = world.settle(30);
    let states: Vec<DeployState> = deploys.iter().map(|d| d.state).collect();
    assert_eq!(states, [DeployState::Succeeded, DeployState::Cancelled]);
    assert_eq!(deploys[1].detail.as_deref(), Some(NOT_MAIN_ANY_MORE));
    assert_eq!(
        world.ran("web").len(),
        1,
        "only the deploy running then ran"
    );
    // A redeploy of the deploy that ran, a commit of `main`, is not run
    // either: the rollback is queued, and cancelled for the same reason.
    let first = deploys[0].id.to_string();
    let out = world.redeploy(&[
        "trigger",
        "web",
        "--redeploy",
        &first,
        "--server",
        &server.url(),
    ]);
    assert_success(&out);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 3);
    assert_eq!(deploys[2].state, DeployState::Cancelled);
    assert_eq!(deploys[2].detail.as_deref(), Some(NOT_MAIN_ANY_MORE));
    assert_eq!(world.ran("web").len(), 1);
    server.terminate();
}

#[test]
fn a_deploy_queued_for_a_branch_the_restarted_server_does_not_follow_is_cancelled() {
    let (world, server) = World::serving("serve-restart-branch", "", &[web_stack(1, "web", "3")]);
    one_running_one_queued(&world, &server);
    server.kill();
    let _ = std::fs::remove_dir(world.record("web").join("running.lock"));
    follow_release_instead(&world);
    let server = world.start(&[]);
    let deploys = world.settle(30);
    let states: Vec<DeployState> = deploys.iter().map(|d| d.state).collect();
    assert_eq!(states, [DeployState::Interrupted, DeployState::Cancelled]);
    assert_eq!(deploys[1].detail.as_deref(), Some(NOT_MAIN_ANY_MORE));
    assert_eq!(
        world.ran("web").len(),
        1,
        "only the deploy killed with the server ran"
    );
    // A push to `release` deploys.
    let r = signed_github(
        &server,
        &hook(1),
        WEB_SECRET,
        ("push", "d-release"),
        push_json("refs/heads/release", &sha(2), &sha(3))
            .to_string()
            .as_bytes(),
    );
    r.assert_status(202);
    let deploys = world.settle(30);
    assert_eq!(deploys.last().unwrap().state, DeployState::Succeeded);
    assert_eq!(world.ran("web").len(), 2);
    server.terminate();
}

#[test]
fn a_push_sent_again_with_its_unsigned_query_changed_back_and_forth_deploys_once_per_query() {
    let web = web_stack(1, "web", "0").table("[stacks.profiles.fast]\nenv = { FAST = \"1\" }");
    let (world, server) = World::serving("serve-once-query", "", &[web]);
    let fast = format!("{}?deployment_profile=fast", hook(1));
    for (n, path) in [&hook(1), &fast, &hook(1), &fast, &hook(1)]
        .into_iter()
        .enumerate()
    {
        let r = signed_push(&server, path, WEB_SECRET, &sha(1), &format!("q-{n}"));
        let decision = r.decision();
        match n {
            0 | 1 => assert_eq!(decision["state"], "queued", "{n}: {decision}"),
            _ => assert_eq!(decision["state"], "duplicate", "{n}: {decision}"),
        }
        world.settle(30);
    }
    assert_eq!(
        world.ran("web").len(),
        2,
        "once without the profile, once with it"
    );
    server.terminate();
}

#[test]
fn a_push_whose_deploy_was_not_run_deploys_when_it_arrives_again() {
    let (world, server) = World::serving("serve-not-run-again", "", &[web_stack(1, "web", "3")]);
    one_running_one_queued(&world, &server);
    let original = std::fs::read_to_string(&world.config).unwrap();
    follow_release_instead(&world);
    reload(&world, &server, 1);
    let deploys = world.settle(30);
    assert_eq!(deploys[1].detail.as_deref(), Some(NOT_MAIN_ANY_MORE));
    // The file put back: the same push of commit 2, under a new delivery
    // id, is no duplicate of a deploy that never ran.
    std::fs::write(&world.config, original).unwrap();
    reload(&world, &server, 2);
    assert_eq!(push(&server, 2, "d2-again"), 202);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 3);
    assert_eq!(deploys[2].state, DeployState::Succeeded);
    assert_eq!(deploys[2].queued.sha.as_deref(), Some(sha(2).as_str()));
    server.terminate();
}

/// Stack `name` (hook 1, [`WEB_SECRET`]) of services `web` and `worker`,
/// each following a (repository, branch), whose stand-in deploys take 3 s.
fn web_and_worker(name: &str, web: (&str, &str), worker: (&str, &str)) -> Stack {
    Stack::new(name)
        .token(1)
        .secret(WEB_SECRET)
        .line("command = [\"@STANDIN@\"]")
        .timeout("1m")
        .env("RECORD_DIR", &format!("@RECORD:{name}@"))
        .env("SLEEP", "3")
        .table(&format!(
            "[[stacks.services]]\nname = \"web\"\nrepository = \"{}\"\nbranch = \"{}\"\n\n\
             [[stacks.services]]\nname = \"worker\"\nrepository = \"{}\"\nbranch = \"{}\"",
            web.0, web.1, worker.0, worker.1
        ))
}

#[test]
fn a_queued_deploy_of_a_service_a_reload_moved_to_another_branch_is_not_run() {
    let duo = web_and_worker("duo", ("acme/web", "develop"), ("acme/web", "develop"));
    let (world, server) = World::serving("serve-reload-service", "", &[duo]);
    let develop = |n: usize| push_json("refs/heads/develop", &sha(n - 1), &sha(n)).to_string();
    let send = |path: &str, n: usize, delivery: &str| {
        signed_github(
            &server,
            path,
            WEB_SECRET,
            ("push", delivery),
            develop(n).as_bytes(),
        )
    };
    send(&hook(1), 1, "s-1").assert_status(202);
    world.wait_ran_more_than("duo", 0, 10);
    let only_web = format!("{}?services=web", hook(1));
    send(&only_web, 2, "s-2").assert_status(202);
    // web now follows main; worker still develop.
    let text = std::fs::read_to_string(&world.config).unwrap();
    let moved = text.replacen("branch = \"develop\"", "branch = \"main\"", 1);
    assert_ne!(moved, text);
    std::fs::write(&world.config, moved).unwrap();
    reload(&world, &server, 1);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 2);
    assert_eq!(deploys[1].queued.services, ["web"]);
    assert_eq!(deploys[1].state, DeployState::Cancelled);
    assert_eq!(
        deploys[1].detail.as_deref(),
        Some("not run: stack \"duo\" as configured here does not follow refs/heads/develop: push to \"develop\" does not match branch \"main\"")
    );
    assert_eq!(world.ran("duo").len(), 1);
    server.terminate();
}

/// Two services of one stack on two branches of one repository: a push of
/// one branch never cancels the other's waiting deploy, nor hands it its
/// service to run at its own commit; each branch's newest push runs, in the
/// order they were admitted, each with its own services, ref and commit.
#[test]
fn a_push_of_one_services_branch_never_supersedes_the_other_branchs_waiting_deploy() {
    let shop = web_and_worker("shop", ("acme/web", "main"), ("acme/web", "develop"));
    let (world, server) = World::serving("serve-two-branches", "", &[shop]);
    let push = |branch: &str, n: usize, delivery: &str| {
        let git_ref = format!("refs/heads/{branch}");
        push_accepted(&server, &git_ref, (&sha(n - 1), &sha(n)), delivery);
    };
    push("main", 1, "b-1");
    world.wait_ran_more_than("shop", 0, 10);
    // While main's first deploy runs: develop, main, develop again.
    push("develop", 11, "b-2");
    push("main", 2, "b-3");
    push("develop", 12, "b-4");
    let deploys = world.settle(30);
    let shown = |d: &DeployRecord| {
        (
            d.state,
            d.queued.git_ref.clone().unwrap_or_default(),
            d.queued.services.join(","),
        )
    };
    let (main, develop) = (
        "refs/heads/main".to_owned(),
        "refs/heads/develop".to_owned(),
    );
    assert_eq!(
        deploys.iter().map(shown).collect::<Vec<_>>(),
        [
            (DeployState::Succeeded, main.clone(), "web".to_owned()),
            (DeployState::Cancelled, develop.clone(), "worker".to_owned()),
            (DeployState::Succeeded, main, "web".to_owned()),
            (DeployState::Succeeded, develop, "worker".to_owned()),
        ]
    );
    let ids: Vec<i64> = deploys.iter().map(|d| d.id).collect();
    assert_eq!(
        deploys[1].superseded_by,
        Some(ids[3]),
        "develop's by develop's"
    );
    // main's push was admitted before develop's newer one (which does not
    // take its first push's place in line): it ran first.
    let started = |at: usize| deploys[at].started_at_ms.unwrap();
    assert!(started(2) < started(3), "{deploys:#?}");
    for (at, services, branch, n) in [(2, "web", "main", 2), (3, "worker", "develop", 12)] {
        world.assert_env(
            "shop",
            ids[at],
            &[
                ("REDEPLOY_SERVICES", services),
                ("REDEPLOY_REF", &format!("refs/heads/{branch}")),
                ("REDEPLOY_SHA", &sha(n)),
            ],
        );
    }
    server.terminate();
}

/// Distribution's documented push envelope, its manifest event (the one
/// of its events that deploys) pushing `digest` to each of `repositories`
/// of registrycluster.local (`name` or `name:tag`), stamped now (the
/// fixture's 2006 is past the server's `max_event_age`); the layer events
/// stay.
fn distribution_push(repositories: &[&str], digest: &str) -> Vec<u8> {
    let mut envelope: serde_json::Value =
        serde_json::from_slice(&fixture("distribution/distdocs-push-envelope.json")).unwrap();
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let events = envelope["events"].as_array_mut().unwrap();
    for event in events.iter_mut() {
        event["timestamp"] = now.clone().into();
    }
    let manifest = events[0].clone();
    events.retain(|e| {
        !e["target"]["mediaType"]
            .as_str()
            .unwrap()
            .contains("manifest")
    });
    for (n, repository) in repositories.iter().enumerate() {
        let mut pushed = manifest.clone();
        pushed["id"] = format!("{digest}-{n}").into();
        let (name, tag) = repository
            .split_once(':')
            .map_or((*repository, None), |(n, t)| (n, Some(t)));
        pushed["target"]["repository"] = name.into();
        pushed["target"]["digest"] = digest.into();
        if let Some(tag) = tag {
            pushed["target"]["tag"] = tag.into();
        }
        events.push(pushed);
    }
    envelope.to_string().into_bytes()
}

/// A registry envelope of two images followed by two services of one
/// stack, sent while a manual deploy runs: each image is its own deploy
/// of its own services, and neither supersedes the other (each image
/// repository is a lane). A later push of one of them supersedes that
/// image's deploy alone: one repository's pushes share its lane, whatever
/// their tag or digest.
#[test]
fn the_images_of_two_repositories_never_supersede_each_others_waiting_deploy() {
    let shop = Stack::new("shop")
        .token(1)
        .standin()
        .timeout("1m")
        .env("SLEEP", "3")
        .table(
            "[[stacks.services]]\nname = \"test\"\nimage = \"registrycluster.local/library/test\"\n\n\
             [[stacks.services]]\nname = \"worker\"\nimage = \"registrycluster.local/library/worker\"",
        );
    let (world, server) = World::serving("serve-two-images", "", &[shop]);
    server.post(&hook(1), &[], b"").assert_status(202);
    world.wait_ran_more_than("shop", 0, 10);
    let distribution = [(
        "Content-Type",
        "application/vnd.docker.distribution.events.v2+json",
    )];
    let (first, second) = (
        format!("sha256:{}", "a1".repeat(32)),
        format!("sha256:{}", "b2".repeat(32)),
    );
    // While it runs: an envelope of both images, then test's again.
    let both = distribution_push(&["library/test", "library/worker"], &first);
    let answer = server.post(&hook(1), &distribution, &both);
    answer.assert_status(202);
    let queued: Vec<String> = answer.json()["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(queued, ["queued", "queued"], "{}", answer.text());
    let again = distribution_push(&["library/test"], &second);
    server
        .post(&hook(1), &distribution, &again)
        .assert_status(202);
    let deploys = world.settle(30);
    let shown = |d: &DeployRecord| (d.state, d.queued.services.join(","));
    assert_eq!(
        deploys.iter().map(shown).collect::<Vec<_>>(),
        [
            (DeployState::Succeeded, "test,worker".to_owned()),
            (DeployState::Cancelled, "test".to_owned()),
            (DeployState::Succeeded, "worker".to_owned()),
            (DeployState::Succeeded, "test".to_owned()),
        ],
        "{deploys:#?}"
    );
    let ids: Vec<i64> = deploys.iter().map(|d| d.id).collect();
    assert_eq!(deploys[1].superseded_by, Some(ids[3]), "test's by test's");
    let image = |repository: &str, digest: &str| {
        format!("registrycluster.local/library/{repository}@{digest}")
    };
    for (at, services, pushed) in [
        (2, "worker", image("worker", &first)),
        (3, "test", image("test", &second)),
    ] {
        world.assert_env(
            "shop",
            ids[at],
            &[("REDEPLOY_SERVICES", services), ("REDEPLOY_IMAGE", &pushed)],
        );
    }
    server.terminate();
}

/// Services following two tags of one image (`stable`, `canary`), both
/// pushed in one envelope while a manual deploy runs: each tag's deploy
/// runs its own service at its own image. Neither supersedes the other nor
/// takes its service: the lane is the image each follows, as configured.
#[test]
fn services_following_two_tags_of_one_image_each_deploy_their_own() {
    let app = Stack::new("app")
        .token(1)
        .standin()
        .timeout("1m")
        .env("SLEEP", "3")
        .table(
            "[[stacks.services]]\nname = \"stable\"\nimage = \"registrycluster.local/acme/app:stable\"\n\n\
             [[stacks.services]]\nname = \"canary\"\nimage = \"registrycluster.local/acme/app:canary\"",
        );
    let (world, server) = World::serving("serve-two-tags", "", &[app]);
    server.post(&hook(1), &[], b"").assert_status(202);
    world.wait_ran_more_than("app", 0, 10);
    let distribution = [(
        "Content-Type",
        "application/vnd.docker.distribution.events.v2+json",
    )];
    let digest = format!("sha256:{}", "c3".repeat(32));
    let both = distribution_push(&["acme/app:stable", "acme/app:canary"], &digest);
    server
        .post(&hook(1), &distribution, &both)
        .assert_status(202);
    let deploys = world.settle(30);
    let shown = |d: &DeployRecord| (d.state, d.queued.services.join(","));
    assert_eq!(
        deploys.iter().map(shown).collect::<Vec<_>>(),
        [
            (DeployState::Succeeded, "stable,canary".to_owned()),
            (DeployState::Succeeded, "stable".to_owned()),
            (DeployState::Succeeded, "canary".to_owned()),
        ],
        "{deploys:#?}"
    );
    for (at, service) in [(1, "stable"), (2, "canary")] {
        world.assert_env(
            "app",
            deploys[at].id,
            &[
                ("REDEPLOY_SERVICES", service),
                (
                    "REDEPLOY_IMAGE",
                    &format!("registrycluster.local/acme/app:{service}"),
                ),
            ],
        );
    }
    server.terminate();
}

/// A service following a branch and tags: main's `2`, a tag at `20` and
/// main's `3` pushed while main's first deploy runs. `3`, pushed last, runs
/// last: a branch's newer push goes behind the tag's pushed before it (not
/// into the place in line of the push it supersedes), so the service ends
/// on the newest push, never rolled back to the tag's commit after it.
#[test]
fn a_branchs_newer_push_runs_after_a_tag_pushed_before_it() {
    let app = Stack::new("app")
        .token(1)
        .secret(WEB_SECRET)
        .line("command = [\"@STANDIN@\"]")
        .timeout("1m")
        .env("RECORD_DIR", "@RECORD:app@")
        .env("SLEEP", "3")
        .table(
            "[[stacks.services]]\nname = \"web\"\nrepository = \"acme/web\"\n\
             branch = \"main\"\ntags = \"v*\"",
        );
    let (world, server) = World::serving("serve-branch-and-tag", "", &[app]);
    let push = |git_ref: &str, before: &str, after: usize, delivery: &str| {
        push_accepted(&server, git_ref, (before, &sha(after)), delivery);
    };
    let main = "refs/heads/main";
    push(main, &sha(0), 1, "t-1");
    world.wait_ran_more_than("app", 0, 10);
    push(main, &sha(1), 2, "t-2");
    push("refs/tags/v2", &"0".repeat(40), 20, "t-3");
    push(main, &sha(2), 3, "t-4");
    let deploys = world.settle(30);
    let shown = |d: &DeployRecord| {
        (
            d.state,
            d.queued.git_ref.clone().unwrap_or_default(),
            d.queued.sha.clone().unwrap_or_default(),
        )
    };
    assert_eq!(
        deploys.iter().map(shown).collect::<Vec<_>>(),
        [
            (DeployState::Succeeded, main.to_owned(), sha(1)),
            (DeployState::Cancelled, main.to_owned(), sha(2)),
            (DeployState::Succeeded, "refs/tags/v2".to_owned(), sha(20)),
            (DeployState::Succeeded, main.to_owned(), sha(3)),
        ]
    );
    assert_eq!(deploys[1].superseded_by, Some(deploys[3].id));
    let started = |at: usize| deploys[at].started_at_ms.unwrap();
    assert!(started(2) < started(3), "{deploys:#?}");
    world.assert_env("app", deploys[3].id, &[("REDEPLOY_SHA", &sha(3))]);
    server.terminate();
}

/// A push whose commit is older for a service of a waiting deploy of its
/// branch, which it would take over, is cancelled; the waiting deploy runs
/// its own, newer commit, for its services and the cancelled push's. worker
/// had k1 (tag v1) and k2 (tag v2); its push of main k2→k3 waits; web's
/// push of main k0→k1 would have run worker back at k1, and k3 never.
#[test]
fn a_push_never_takes_a_waiting_deploy_of_its_branch_back_to_an_older_commit() {
    let both = "repository = \"acme/web\"\nbranch = \"main\"\ntags = \"v*\"";
    let shop = Stack::new("shop")
        .token(1)
        .secret(WEB_SECRET)
        .line("command = [\"@STANDIN@\"]")
        .timeout("1m")
        .env("RECORD_DIR", "@RECORD:shop@")
        .env("SLEEP", "2")
        .table(&format!(
            "[[stacks.services]]\nname = \"web\"\n{both}\n\n\
             [[stacks.services]]\nname = \"worker\"\n{both}"
        ));
    let (world, server) = World::serving("serve-waiting-older", "", &[shop]);
    let zeros = "0".repeat(40);
    let send = |services: &str, git_ref: &str, (before, after): (&str, usize), delivery: &str| {
        let body = push_json(git_ref, before, &sha(after)).to_string();
        let path = format!("{}?services={services}", hook(1));
        signed_github(
            &server,
            &path,
            WEB_SECRET,
            ("push", delivery),
            body.as_bytes(),
        )
    };
    send("worker", "refs/tags/v1", (&zeros, 1), "o-1").assert_status(202);
    world.settle(30);
    send("worker", "refs/tags/v2", (&zeros, 2), "o-2").assert_status(202);
    world.settle(30);
    // web's tag v3 runs for 2 s: main's two pushes wait behind it.
    send("web", "refs/tags/v3", (&zeros, 9), "o-3").assert_status(202);
    let main = "refs/heads/main";
    send("worker", main, (&sha(2), 3), "o-4").assert_status(202);
    let older = send("web", main, (&sha(0), 1), "o-5");
    older.assert_status(200);
    assert!(older.text().contains("is older than"), "{}", older.text());
    let deploys = world.settle(30);
    let shown = |d: &DeployRecord| {
        (
            d.state,
            d.queued.services.join(","),
            d.queued.sha.clone().unwrap_or_default(),
        )
    };
    assert_eq!(
        deploys.iter().map(shown).skip(2).collect::<Vec<_>>(),
        [
            (DeployState::Succeeded, "web".to_owned(), sha(9)),
            (DeployState::Succeeded, "worker,web".to_owned(), sha(3)),
            (DeployState::Cancelled, "web".to_owned(), sha(1)),
        ],
        "{deploys:#?}"
    );
    assert_eq!(deploys[4].superseded_by, Some(deploys[3].id));
    world.assert_env(
        "shop",
        deploys[3].id,
        &[
            ("REDEPLOY_SERVICES", "worker,web"),
            ("REDEPLOY_SHA", &sha(3)),
        ],
    );
    server.terminate();
}

/// The commit order is each service's: `main` fast-forwarded to a commit
/// `develop` already deployed to `worker` deploys `web` at it (the stack as
/// a whole had seen the commit, and called it older).
#[test]
fn a_commit_another_services_branch_deployed_still_deploys_this_ones() {
    let shop = web_and_worker("shop", ("acme/web", "main"), ("acme/web", "develop"));
    let (world, server) = World::serving("serve-merged-branch", "", &[shop]);
    let push = |branch: &str, before: usize, after: usize, delivery: &str| {
        let git_ref = format!("refs/heads/{branch}");
        push_accepted(&server, &git_ref, (&sha(before), &sha(after)), delivery);
    };
    push("develop", 10, 11, "f-1");
    push("develop", 11, 12, "f-2");
    world.settle(30);
    push("main", 1, 11, "f-3");
    let deploys = world.settle(30);
    let shown = |d: &DeployRecord| {
        (
            d.state,
            d.queued.services.join(","),
            d.queued.sha.clone().unwrap_or_default(),
        )
    };
    assert_eq!(
        deploys.iter().map(shown).skip(2).collect::<Vec<_>>(),
        [(DeployState::Succeeded, "web".to_owned(), sha(11))],
        "{deploys:#?}"
    );
    world.assert_env(
        "shop",
        deploys[2].id,
        &[("REDEPLOY_SERVICES", "web"), ("REDEPLOY_SHA", &sha(11))],
    );
    server.terminate();
}

/// Two services of one stack on the same branch name of two repositories
/// (the README's `shop`): a push of one repository's `main` never cancels
/// the other's waiting deploy, nor hands it its service to run at a commit
/// of another repository; each repository's newest push runs, in the order
/// they were admitted, with its own services, repository and commit.
#[test]
fn a_push_of_one_repositorys_branch_never_supersedes_another_repositorys_of_the_same_name() {
    let shop = web_and_worker(
        "shop",
        ("acme/shop-web", "main"),
        ("acme/shop-worker", "main"),
    );
    let (world, server) = World::serving("serve-two-repositories", "", &[shop]);
    let push = |repository: &str, n: usize, delivery: &str| {
        let mut body = push_json("refs/heads/main", &sha(n - 1), &sha(n));
        body["repository"] = serde_json::json!({
            "full_name": repository,
            "clone_url": format!("https://github.com/{repository}.git"),
        });
        signed_github(
            &server,
            &hook(1),
            WEB_SECRET,
            ("push", delivery),
            body.to_string().as_bytes(),
        )
        .assert_status(202);
    };
    push("acme/shop-web", 1, "r-1");
    world.wait_ran_more_than("shop", 0, 10);
    // While web's first deploy runs: worker, web, worker again.
    push("acme/shop-worker", 11, "r-2");
    push("acme/shop-web", 2, "r-3");
    push("acme/shop-worker", 12, "r-4");
    let deploys = world.settle(30);
    let shown = |d: &DeployRecord| {
        (
            d.state,
            d.queued.repository.clone().unwrap_or_default(),
            d.queued.services.join(","),
        )
    };
    let (web, worker) = ("acme/shop-web".to_owned(), "acme/shop-worker".to_owned());
    assert_eq!(
        deploys.iter().map(shown).collect::<Vec<_>>(),
        [
            (DeployState::Succeeded, web.clone(), "web".to_owned()),
            (DeployState::Cancelled, worker.clone(), "worker".to_owned()),
            (DeployState::Succeeded, web.clone(), "web".to_owned()),
            (DeployState::Succeeded, worker.clone(), "worker".to_owned()),
        ]
    );
    let ids: Vec<i64> = deploys.iter().map(|d| d.id).collect();
    assert_eq!(
        deploys[1].superseded_by,
        Some(ids[3]),
        "the worker's by the worker's"
    );
    // In the order they were admitted.
    let started = |at: usize| deploys[at].started_at_ms.unwrap();
    assert!(started(2) < started(3), "{deploys:#?}");
    for (at, services, repository, n) in [(2, "web", &web, 2), (3, "worker", &worker, 12)] {
        world.assert_env(
            "shop",
            ids[at],
            &[
                ("REDEPLOY_SERVICES", services),
                ("REDEPLOY_REPOSITORY", repository),
                ("REDEPLOY_REF", "refs/heads/main"),
                ("REDEPLOY_SHA", &sha(n)),
            ],
        );
    }
    server.terminate();
}

#[test]
fn a_sigkilled_server_marks_the_running_deploy_interrupted_and_runs_the_queued_one() {
    let (world, server) = World::serving("serve-restart", "", &[web_stack(1, "web", "3")]);
    one_running_one_queued(&world, &server);
    server.kill();
    let before = world.deploys();
    assert_eq!(
        before.iter().map(|d| d.state).collect::<Vec<_>>(),
        vec![DeployState::Started, DeployState::Queued]
    );

    // The killed server's deploy command dies with it (SIGTERM on its
    // runner's death) before it can free the stand-in's overlap lock; the
    // restart stops what is left of its process group.
    let _ = std::fs::remove_dir(world.record("web").join("running.lock"));
    let server = world.start(&[]);
    let after = world.settle(30);
    assert_eq!(after[0].state, DeployState::Interrupted);
    assert_eq!(after[1].state, DeployState::Succeeded);
    assert_eq!(after[1].queued.sha.as_deref(), Some(sha(2).as_str()));
    let history = world.redeploy(&["history", "--json"]);
    assert!(history.status.success());
    let h: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 2);
    assert_eq!(h[1]["state"], "interrupted");
    server.terminate();
}

#[test]
fn hook_url_prints_a_stable_generated_url_that_works() {
    let stacks = Stack::new("gen").key("image", "acme/web").standin();
    let world = World::new(
        "serve-hook-url",
        "public_url = \"https://deploy.example.com/\"",
        &stacks.toml(),
    );
    let url = |w: &World| {
        let out = w.redeploy(&["hook-url", "gen"]);
        assert_success(&out);
        stdout(&out).trim().to_string()
    };
    let first = url(&world);
    assert_eq!(first, url(&world), "the token is generated once and kept");
    let path = first
        .strip_prefix("https://deploy.example.com")
        .unwrap()
        .to_string();
    let token = path.strip_prefix("/hooks/").unwrap();
    assert!(
        token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    let server = world.start(&[]);
    server
        .post(&format!("{path}?services=gen"), &[], b"")
        .assert_status(202);
    let r = server.post(&format!("{path}?services=nope"), &[], b"");
    assert_eq!(r.status, 400);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .contains("has no service \"nope\""));
    world.settle(20);
    server.terminate();
}

#[test]
fn deploy_timeouts_kill_the_process_group_and_failures_are_recorded() {
    let stacks = [
        Stack::new("slow")
            .key("image", "acme/slow")
            .token(1)
            .line(r#"command = ["sh", "-c", "sleep 29.173 & sleep 29.173; echo never"]"#)
            .timeout("1s"),
        Stack::image("failing", "acme/failing", 2).env("EXIT_CODE", "3"),
    ];
    let (world, server) = World::serving("serve-timeouts", "", &stacks);
    assert_eq!(server.post(&hook(1), &[], b"").status, 202);
    assert_eq!(server.post(&hook(2), &[], b"").status, 202);
    let deploys = world.settle(30);
    let slow = deploys.iter().find(|d| d.queued.stack == "slow").unwrap();
    assert_eq!(slow.state, DeployState::Failed);
    assert!(
        slow.detail
            .as_deref()
            .unwrap()
            .contains("timed out after 1s"),
        "{slow:?}"
    );
    let failing = deploys
        .iter()
        .find(|d| d.queued.stack == "failing")
        .unwrap();
    assert_eq!(failing.state, DeployState::Failed);
    assert_eq!(failing.exit_code, Some(3));
    // The background sleep of the slow command was killed with its group
    // (a duration no other test uses: tests run side by side).
    let survivors = std::process::Command::new("pgrep")
        .args(["-f", "sleep 29[.]173"])
        .output()
        .unwrap();
    assert!(
        survivors.stdout.is_empty(),
        "the deploy's process group outlived its timeout"
    );
    server.terminate();
}

#[test]
fn sigterm_lets_the_running_deploy_finish_and_keeps_the_queued_one() {
    let (world, server) = World::serving(
        "serve-sigterm",
        "shutdown_grace = \"20s\"",
        &[web_stack(1, "web", "2")],
    );
    one_running_one_queued(&world, &server);
    let status = server.terminate();
    assert!(
        status.success(),
        "redeploy serve exits 0 on SIGTERM: {status:?}"
    );
    let deploys = world.deploys();
    assert_eq!(
        deploys[0].state,
        DeployState::Succeeded,
        "the running deploy finished within the grace period"
    );
    assert_eq!(
        deploys[1].state,
        DeployState::Queued,
        "the queued deploy stays queued for the next start"
    );
    // ...and runs on the next start.
    let server = world.start(&[]);
    let after = world.settle(30);
    assert_eq!(after[1].state, DeployState::Succeeded);
    server.terminate();
}

#[test]
fn an_http_action_receives_the_deploy_event_as_json() {
    let (port, receiver) =
        serve_once("HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n".to_string());
    let url = format!("http://127.0.0.1:{port}/deploy");
    let stacks = [Stack::http_action(
        "api",
        1,
        &url,
        ("Authorization", "Bearer xyz"),
    )];
    let (world, server) = World::serving("serve-http-action", "", &stacks);
    assert_eq!(server.post(&hook(1), &[], b"").status, 202);
    let Received { head, body } = receiver.join().unwrap();
    assert!(head[0].starts_with("POST /deploy "), "{head:?}");
    assert!(
        head.iter()
            .any(|h| h.eq_ignore_ascii_case("authorization: Bearer xyz\r\n")),
        "{head:?}"
    );
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(event["stack"], "api");
    assert_eq!(event["provider"], "manual");
    let deploys = world.settle(20);
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    server.terminate();
}

#[test]
fn the_readme_manual_trigger_works_against_the_example_config() {
    let config = example_config();
    let log = TempDir::new("example-config");
    let server = example_server(&log);
    // `curl -X POST -d "" "$(redeploy hook-url registry --config examples/redeploy.toml)"`
    let out = crate::support::cli::redeploy(&[
        "hook-url",
        "registry",
        "--config",
        config.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let url = stdout(&out);
    let path = &url.trim()[url.find("/hooks/").unwrap()..];
    let curl = std::process::Command::new("curl")
        .args(["-s", "-X", "POST", "-d", ""])
        .arg(format!("{}{path}", server.url()))
        .output()
        .expect("curl is needed for this test (apt-get install curl)");
    let answer: serde_json::Value = serde_json::from_slice(&curl.stdout).unwrap();
    assert_eq!(answer["decisions"][0]["action"], "deploy", "{answer}");
    let id = answer["decisions"][0]["deploy_id"].as_i64().unwrap();
    let state = crate::support::workspace().join("target/example-state");
    let journal = Journal::open_read_only(&Journal::path_in(&state)).unwrap();
    let done = wait_for(20, "the example deploy", || {
        journal.deploy(id).unwrap().filter(|d| d.state.is_final())
    });
    assert_eq!(done.state, DeployState::Succeeded, "{done:?}");
    let logged = std::fs::read_to_string(done.log_path.unwrap()).unwrap();
    assert!(logged.contains("deploying stack registry"), "{logged}");
    server.terminate();
}

#[test]
fn trigger_queues_a_manual_deploy_through_the_running_server() {
    let shop = Stack::new("shop")
        .line("command = [\"@STANDIN@\"]")
        .token(1);
    let shop = shop.env("RECORD_DIR", "@RECORD:shop@").table(
        "[stacks.profiles.fast]\nenv = { FAST = \"1\" }\n\n\
         [[stacks.services]]\nname = \"web\"\nrepository = \"acme/web\"\nbranch = \"main\"\n\n\
         [[stacks.services]]\nname = \"proxy\"\nimage = \"nginx\"",
    );
    let (world, server) = World::serving("serve-trigger", "", &[shop]);
    let url = server.url();
    let out = world.redeploy(&[
        "trigger",
        "shop",
        "--services",
        "proxy",
        "--profile",
        "fast",
        "--server",
        &url,
    ]);
    assert_success(&out);
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = answer["decisions"][0]["deploy_id"].as_i64().unwrap();
    world.settle(20);
    world.assert_env(
        "shop",
        id,
        &[("REDEPLOY_SERVICES", "proxy"), ("REDEPLOY_PROFILE", "fast")],
    );
    let env = world.recorded_env("shop", id);
    assert_eq!(
        env.get("FAST").map(String::as_str),
        Some("1"),
        "the profile's env reaches the command"
    );
    world.assert_env("shop", id, &[("REDEPLOY_PROVIDER", "manual")]);
    // An unknown profile is refused with the server's 400.
    let out = world.redeploy(&["trigger", "shop", "--profile", "slow", "--server", &url]);
    assert_fails_saying(&out, "has no deploy profile \\\"slow\\\" (profiles: fast)");
    server.terminate();
}

#[test]
fn a_client_that_never_finishes_its_headers_is_dropped() {
    use std::io::{Read, Write};
    let stacks = [Stack::new("web")
        .key("image", "acme/web")
        .token(1)
        .line("command = [\"true\"]")];
    let (_world, server) = World::serving("serve-slow-client", "header_timeout = \"1s\"", &stacks);
    let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"POST /hooks/x HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 512];
    // The server closes the connection (possibly after a 408) once the timeout passes.
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => continue,
        }
    }
    let waited = started.elapsed();
    assert!(
        waited >= std::time::Duration::from_millis(900)
            && waited < std::time::Duration::from_secs(9),
        "{waited:?}"
    );
    // The server still serves others.
    assert_eq!(server.get("/healthz").status, 200);
    server.terminate();
}

#[test]
fn a_second_serve_on_the_same_state_directory_refuses_to_start() {
    let world = World::new("two-serves", "", &web_stack(1, "web", "0").toml());
    let first = world.start(&[]);
    // Without the lock it would serve on: given the time a start takes.
    let (status, stderr) = world.serve_refused(std::time::Duration::from_secs(30));
    assert!(!status.success(), "the second serve exited 0: {stderr}");
    assert!(
        stderr.contains(&format!(
            "another `redeploy serve` (pid {}) is using state directory {}",
            first.child.id(),
            world.dir.join("state").display()
        )),
        "{stderr}"
    );
    // The first one is untouched and still deploys.
    assert_eq!(push(&first, 1, "d-1"), 202);
    assert_all_succeeded(&world.settle(30));
    first.terminate();
    // Once it has stopped, the state directory is free again.
    let again = world.start(&[]);
    again.terminate();
}

#[test]
fn a_server_with_no_stacks_says_so_in_its_log() {
    let world = World::new("serve-no-stacks", "", "");
    let server = world.start(&[]);
    let log = server.log_text();
    server.terminate();
    assert!(log.contains("no stacks in the config"), "{log}");
}

#[test]
fn a_listing_whose_reader_stops_early_ends_quietly_without_a_panic() {
    let world = World::new(
        "listing-closed-pipe",
        "",
        &crate::support::stacks::toml(&[Stack::new("web").key("image", "acme/web").standin()]),
    );
    assert_success(&world.redeploy(&["hook-url", "web"]));
    let config = world.config.to_str().unwrap();
    for args in [
        &["history", "web", "--config", config][..],
        &["deliveries", "--json", "--config", config],
        &["config", "check", "--config", config],
        &["hook-url", "web", "--config", config],
        &["completions", "bash"],
        &["man"],
    ] {
        // The pipe's reader is gone before the command writes its first line,
        // as `| head -0` leaves it.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(crate::support::redeploy_bin())
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn history_of_a_stack_that_is_neither_configured_nor_journaled_lists_the_stacks() {
    let stacks = [
        Stack::new("web").key("image", "acme/web").standin(),
        Stack::new("api").key("image", "acme/api").standin(),
    ];
    let world = World::new(
        "history-unknown",
        "",
        &crate::support::stacks::toml(&stacks),
    );
    // `hook-url` creates the journal `history` reads.
    assert_success(&world.redeploy(&["hook-url", "web"]));
    let out = world.redeploy(&["history", "wbe"]);
    assert!(!out.status.success());
    let config = world.config.display();
    assert_eq!(
        stderr(&out),
        format!("redeploy: no stack named \"wbe\" in {config} (its stacks: web, api)\n")
    );
    // A configured stack without deploys yet is an empty table, not an error.
    let out = world.redeploy(&["history", "api"]);
    assert_success(&out);
    assert!(
        stdout(&out).starts_with("    ID  STACK"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn deliveries_lists_each_delivery_with_each_stacks_decision_and_refusals() {
    // go-scm's GitHub push: refs/heads/master of Codertocat/Hello-World,
    // delivery f2467dea-70d6-11e8-8955-3c83993e0aef, signed with "topsecret".
    let hello = "Codertocat/Hello-World";
    let stacks = [
        Stack::repo("hello", hello, "master", 1).secret("topsecret"),
        Stack::repo("hello-dev", hello, "develop", 2).secret("topsecret"),
    ];
    let (world, server) = World::serving("serve-deliveries", "", &stacks);
    post_fixture(&server, &hook(1), "github/goscm-push").assert_status(202);
    post_fixture(&server, &hook(2), "github/goscm-push").assert_status(200);
    post_fixture_with(&server, &hook(1), "github/goscm-push", |body| body[10] ^= 1)
        .assert_error(401, "bad-signature");
    world.settle(30);

    let out = world.redeploy(&["deliveries"]);
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    // Most recent first: the refusal (no provider or event: the plugin
    // refused it), the skip, the deploy.
    assert!(
        lines[0].starts_with("#3 ") && lines[0].ends_with(" hello - - 401 -"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("    refused (bad-signature): "),
        "{text}"
    );
    assert!(
        lines[2].contains(" hello-dev github push 200 f2467dea-70d6-11e8-8955-3c83993e0aef"),
        "{text}"
    );
    assert_eq!(
        lines[3],
        "    hello-dev: skip [branch-mismatch]: push to \"master\" does not match branch \"develop\"",
        "{text}"
    );
    assert!(lines[4].contains(" hello github push 202 "), "{text}");
    // The README shows this output (times aside).
    let printed = crate::readme::any_time(&text);
    for line in crate::readme::block_containing("hello-dev: skip [branch-mismatch]").lines() {
        let line = crate::readme::any_time(line);
        assert!(
            printed.contains(&line),
            "the README shows {line:?}, the command printed:\n{text}"
        );
    }
    assert!(
        lines[5].starts_with("    hello: deploy (queued, deploy #1): push to \"master\" of Codertocat/Hello-World matches branch \"master\""),
        "{text}"
    );

    // One stack's, as JSON: RFC 3339 times and the answer as an object.
    let out = world.redeploy(&["deliveries", "hello-dev", "--json"]);
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let all = json.as_array().unwrap();
    assert_eq!(all.len(), 1, "{json}");
    assert_eq!(all[0]["status"], 200);
    assert!(
        all[0]["received_at"].as_str().unwrap().ends_with('Z'),
        "{json}"
    );
    assert_eq!(all[0]["answer"]["decisions"][0]["skip"], "branch-mismatch");

    // A stack that is not there is a typo: the error lists the stacks.
    let out = world.redeploy(&["deliveries", "helo"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("its stacks: hello, hello-dev"),
        "{}",
        stderr(&out)
    );
    server.terminate();
}

#[test]
fn logs_prints_a_deploys_log_and_follows_it_until_the_deploy_ends() {
    // The command prints, sleeps 2 s, and prints again: `logs --follow`
    // started while it sleeps shows both halves and returns at its end.
    let stack = Stack::new("web")
        .follows("acme/web", "main")
        .token(1)
        .secret(WEB_SECRET)
        .line(r#"command = ["sh", "-c", "echo before; sleep 2; echo after"]"#);
    let (world, server) = World::serving("serve-logs", "", &[stack]);
    assert_eq!(push(&server, 1, "logs-1"), 202);
    let id = 1;
    wait_for(20, "the deploy to start", || {
        world
            .deploys()
            .into_iter()
            .find(|d| d.state == DeployState::Started)
    });
    let out = world.redeploy(&["logs", "1", "--follow"]);
    assert_success(&out);
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["before", "after"], "{text}");
    assert!(
        lines[2].starts_with(&format!(
            "-- redeploy: deploy #{id} succeeded (exit code 0) after "
        )),
        "{text}"
    );
    assert_eq!(lines.len(), 3, "{text}");
    // Without --follow, once it has ended: the same log.
    let again = world.redeploy(&["logs", "1"]);
    assert_eq!(stdout(&again), text);
    let missing = world.redeploy(&["logs", "99"]);
    assert!(
        stderr(&missing).contains("no deploy #99 in the journal"),
        "{}",
        stderr(&missing)
    );
    // Its file removed (by hand, or an import that brought no logs): said
    // so, not an empty log and success.
    let file = world
        .dir
        .join("state")
        .join("logs")
        .join("web")
        .join("1.log");
    std::fs::remove_file(&file).unwrap();
    let gone = world.redeploy(&["logs", "1"]);
    assert_eq!(gone.status.code(), Some(2), "{gone:?}");
    assert!(
        stderr(&gone).contains("deploy #1's log file ")
            && stderr(&gone).contains("/logs/web/1.log is not there: never written"),
        "{}",
        stderr(&gone)
    );
    server.terminate();
}

/// Sends `signal` to the server process.
fn send_signal(server: &ServerProcess, signal: libc::c_int) {
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(server.child.id() as i32, signal) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

#[test]
fn sighup_and_reload_apply_a_new_config_and_keep_the_running_deploy() {
    let (world, server) = World::serving(
        "serve-reload",
        "shutdown_grace = \"20s\"",
        &[web_stack(1, "web", "2")],
    );
    assert_eq!(push(&server, 1, "d-1"), 202);
    world.wait_ran_more_than("web", 0, 30);
    // SIGHUP (and a stray SIGUSR1) while the deploy runs: the server
    // reloads, the deploy runs on under its supervision and succeeds.
    send_signal(&server, libc::SIGHUP);
    send_signal(&server, libc::SIGUSR1);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1);
    assert_all_succeeded(&deploys);
    assert_eq!(server.get("/healthz").status, 200);
    wait_for(10, "the SIGHUP reload in the log", || {
        world
            .server_log()
            .contains("configuration reloaded: 1 stack")
            .then_some(())
    });
    assert!(
        world.server_log().contains("SIGUSR1") && world.server_log().contains("ignored"),
        "{}",
        world.server_log()
    );

    // A new stack and a new listen address: `redeploy reload` applies the
    // stack at once and names the setting that waits for a restart.
    let original = std::fs::read_to_string(&world.config).unwrap();
    let docs = Stack::new("docs")
        .follows("acme/web", "main")
        .token(2)
        .secret(WEB_SECRET)
        .line("command = [\"true\"]");
    let grown = original.replacen("[server]\n", "[server]\nlisten = \"127.0.0.1:1\"\n", 1)
        + "\n"
        + &docs.toml();
    std::fs::write(&world.config, &grown).unwrap();
    assert_eq!(
        server.post(&hook(2), &[], b"").status,
        404,
        "not yet configured"
    );
    let out = world.redeploy(&["reload"]);
    assert_success(&out);
    assert!(
        stdout(&out).contains("2 stacks; added: docs; restart to apply server.listen"),
        "{}",
        stdout(&out)
    );
    let signed = signed_push(&server, &hook(2), WEB_SECRET, &sha(2), "d-2");
    assert_eq!(signed.status, 202, "{}", signed.text());
    let deploys = world.settle(30);
    assert_eq!(
        deploys
            .iter()
            .map(|d| d.queued.stack.as_str())
            .collect::<Vec<_>>(),
        ["web", "docs"]
    );
    assert_all_succeeded(&deploys);

    // A file the server cannot use (a secrets file that is not there) is
    // refused whole: `redeploy reload` says why and exits non-zero, and the
    // server keeps both stacks.
    let missing = world.dir.join("no-such-secrets");
    std::fs::write(
        &world.config,
        format!("{grown}secrets_file = {:?}\n", missing.to_str().unwrap()),
    )
    .unwrap();
    let out = world.redeploy(&["reload"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_contains_all(
        &stderr(&out),
        &[
            "refused",
            "the running configuration stays",
            "no-such-secrets",
        ],
    );
    // A file that does not parse, by SIGHUP: logged, and nothing changes.
    std::fs::write(&world.config, "[[stacks]\n").unwrap();
    send_signal(&server, libc::SIGHUP);
    wait_for(10, "the refused SIGHUP reload in the log", || {
        (world
            .server_log()
            .matches("configuration reload refused")
            .count()
            == 2)
            .then_some(())
    });
    assert_eq!(push(&server, 3, "d-3"), 202);
    assert_eq!(
        signed_push(&server, &hook(2), WEB_SECRET, &sha(4), "d-4").status,
        202
    );
    assert_eq!(world.settle(30).len(), 4);
    let metrics = server.get("/metrics").text();
    assert_contains_all(
        &metrics,
        &[
            "redeploy_config_reloads_total{result=\"applied\"} 2",
            "redeploy_config_reloads_total{result=\"refused\"} 2",
        ],
    );
    // Limits apply to what comes next: a smaller max_body_bytes refuses
    // the same push whole, and the concurrency limits resize in place.
    let limited = grown.replacen(
        "[server]\n",
        "[server]\nmax_body_bytes = 64\nmax_concurrent_deploys = 2\nmax_connections = 8\n",
        1,
    );
    std::fs::write(&world.config, &limited).unwrap();
    assert_success(&world.redeploy(&["reload"]));
    let big = signed_push(&server, &hook(1), WEB_SECRET, &sha(5), "d-5");
    assert_eq!(big.status, 413, "{}", big.text());
    assert_eq!(world.deploys().len(), 4);
    assert!(server.terminate().success());
    // With no server running, `reload` says so.
    std::fs::write(&world.config, &grown).unwrap();
    let out = world.redeploy(&["reload"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no `redeploy serve` is running"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn history_shows_each_deploys_image_and_duration_and_its_json_the_event_as_an_object() {
    let stack = Stack::image("app", "svendowideit/testhook", 1).env("SLEEP", "1");
    let (world, server) = World::serving("history-columns", "callback_hosts = []", &[stack]);
    let body = crate::support::deliveries::fresh_docker_hub_push().to_string();
    let answer = server.post(
        &hook(1),
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    assert_eq!(answer.status, 202, "{}", answer.text());
    assert_all_succeeded(&world.settle(30));
    // Docker Hub's example pushed tag "latest" of svendowideit/testhook,
    // named in full (registry/repository:tag) by the component.
    let image = "docker.io/svendowideit/testhook:latest";

    let out = world.redeploy(&["history"]);
    assert_success(&out);
    let text = stdout(&out);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "STACK", "STATE", "CREATED", "TOOK", "SHA", "REF", "IMAGE", "DETAIL"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["1", "app", "succeeded"]);
    let took: f64 = row[4].strip_suffix('s').unwrap().parse().unwrap();
    assert!((1.0..30.0).contains(&took), "TOOK {}", row[4]);
    assert_eq!(row[5..8], ["-", "-", image], "{text}");

    let out = world.redeploy(&["history", "--json"]);
    assert_success(&out);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let d = &json[0];
    assert_eq!(d["image"], image);
    // `tag` is a git tag pushed; an image's tag is part of its reference.
    assert!(d["event"]["tag"].is_null(), "{d:#}");
    assert!(d["event"].is_object(), "{d:#}");
    assert_eq!(d["event"]["image"], image);
    assert_eq!(d["event"]["stack"], "app");
    assert!(d.get("event_json").is_none() && d.get("created_at_ms").is_none());
    for key in ["created_at", "started_at", "finished_at"] {
        let at = d[key].as_str().unwrap();
        assert!(
            at.len() == 24 && at.ends_with('Z') && at.as_bytes()[10] == b'T',
            "{key}: {at}"
        );
    }
    let took = d["duration_seconds"].as_f64().unwrap();
    assert!((1.0..30.0).contains(&took), "{took}");
    server.terminate();
}

/// Issue 14: a compiled-component cache that cannot be written (here
/// `<state>/cache` is a file, which fails for root too) costs a compile
/// per start; the server says so once and counts it.
#[test]
fn a_compiled_component_cache_that_cannot_be_written_is_logged_once_and_counted() {
    let world = World::new("cache-unwritable", "", &web_stack(1, "web", "0").toml());
    crate::support::create_state_dir(&world.dir.join("state"));
    std::fs::write(world.dir.join("state/cache"), "not a directory").unwrap();
    let server = world.start(&[]);
    assert_eq!(push(&server, 1, "d-1"), 202);
    assert_all_succeeded(&world.settle(30));
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains("\nredeploy_component_cache_unwritable_total 1\n"),
        "{metrics}"
    );
    let log = server.log_text();
    assert_eq!(
        log.matches("compiled-component cache not written").count(),
        1,
        "{log}"
    );
    server.terminate();
}

/// Issue 19: a server on a fresh state directory has the component compiled
/// by a child process (no warning that it fell back to compiling it
/// itself), writes the compiled artifact to its cache, and maps it from
/// there rather than holding a copy; and so does a restart, which compiles
/// nothing.
#[test]
fn a_fresh_server_compiles_the_component_in_a_child_and_maps_the_cached_artifact() {
    let world = World::new("compile-child", "", &web_stack(1, "web", "0").toml());
    // A state directory the test makes is not primed with the tests' warm
    // cache (`support/warm.rs`), so the first start compiles.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(world.dir.join("state"))
        .unwrap();
    for (n, start) in ["fresh", "restart"].into_iter().enumerate() {
        let server = world.start(&[]);
        assert_eq!(push(&server, n + 1, &format!("d-{start}")), 202, "{start}");
        let cached: Vec<_> = std::fs::read_dir(world.dir.join("state/cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("plugin-") && n.ends_with(".cwasm"))
            .collect();
        assert_eq!(cached.len(), 1, "{start}: {cached:?}");
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", server.child.id())).unwrap();
        assert!(
            maps.lines()
                .any(|l| l.ends_with(&cached[0]) && l.split_whitespace().nth(1) == Some("r-xp")),
            "{start}: the artifact's code is not mapped from its file:\n{maps}"
        );
        let log = server.log_text();
        assert!(!log.contains("child process"), "{start}: {log}");
        assert!(!log.contains("cache file ignored"), "{start}: {log}");
        server.terminate();
    }
}

/// Issue 14: a one-shot command (here `trigger` signing a manual trigger
/// through the component, as the git hook loads it) has no log of its
/// own: the cache it cannot write is one line on stderr.
#[test]
fn a_one_shot_command_that_cannot_write_the_compiled_component_cache_says_so_on_stderr() {
    let stack = web_stack(1, "web", "0").key("manual", "signed");
    let world = World::new(
        "cache-unwritable-one-shot",
        &format!("listen = \"127.0.0.1:{}\"", crate::support::free_port()),
        &stack.toml(),
    );
    crate::support::create_state_dir(&world.dir.join("state"));
    std::fs::write(world.dir.join("state/cache"), "not a directory").unwrap();
    // No server listens at `listen`: the trigger fails after signing.
    let out = world.redeploy(&["trigger", "web"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let warnings: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("compiled-component cache not written"))
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(
        warnings[0].starts_with("redeploy: warning: compiled-component cache not written (")
            && warnings[0].ends_with("); every run compiles the component again"),
        "{err}"
    );
}

#[test]
fn reload_does_not_signal_a_pid_that_is_not_a_serve() {
    // A lock held with a pid that is, here, another program (what a server
    // in another pid namespace leaves): `reload` refuses and signals nothing.
    let world = World::new("reload-foreign-pid", "", &web_stack(1, "web", "0").toml());
    let state = world.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let lock = std::fs::File::create(state.join("serve.lock")).unwrap();
    // SAFETY: flock(2) on a descriptor this test owns and keeps open.
    let rc = unsafe {
        libc::flock(
            std::os::fd::AsRawFd::as_raw_fd(&lock),
            libc::LOCK_EX | libc::LOCK_NB,
        )
    };
    assert_eq!(rc, 0);
    std::fs::write(state.join("serve.lock"), format!("{}\n", other.id())).unwrap();
    let out = world.redeploy(&["reload"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "wrote pid {}, which here is not a `redeploy serve`",
            other.id()
        )),
        "{}",
        stderr(&out)
    );
    assert!(
        other.try_wait().unwrap().is_none(),
        "the other program was signalled"
    );
    other.kill().unwrap();
    other.wait().unwrap();
    drop(lock);
}

/// Deploy commands start with posix_spawn (runner/command.rs), and still
/// start as execvp(3) would start them: a bare name found on the stack's
/// own PATH, and an executable script without a `#!` line run by the shell.
#[test]
fn a_bare_name_on_the_stacks_path_and_a_script_without_a_shebang_both_deploy() {
    let found = Stack::new("found")
        .key("image", "acme/found")
        .token(1)
        .line("command = [\"found-tool\", \"first\"]")
        .env("PATH", "@DIR@/bin:/usr/bin:/bin");
    let bare = Stack::new("bare")
        .key("image", "acme/bare")
        .token(2)
        .line("command = [\"@DIR@/no-shebang\", \"second\"]");
    let world = World::new(
        "serve-spawn",
        "",
        &crate::support::stacks::toml(&[found, bare]),
    );
    std::fs::create_dir_all(world.dir.join("bin")).unwrap();
    crate::support::deploy::write_executable(
        &world.dir.join("bin").join("found-tool"),
        "#!/bin/sh\necho \"found-tool ran with $1\"\n",
    );
    crate::support::deploy::write_executable(
        &world.dir.join("no-shebang"),
        "echo \"the shell ran $0 with $1\"\n",
    );
    let server = world.start(&[]);
    assert_eq!(server.post(&hook(1), &[], b"").status, 202);
    assert_eq!(server.post(&hook(2), &[], b"").status, 202);
    let deploys = world.settle(30);
    assert_all_succeeded(&deploys);
    let log = |stack: &str| {
        let d = deploys.iter().find(|d| d.queued.stack == stack).unwrap();
        std::fs::read_to_string(d.log_path.as_deref().unwrap()).unwrap()
    };
    assert!(
        log("found").contains("found-tool ran with first"),
        "{}",
        log("found")
    );
    let script = world.dir.join("no-shebang");
    assert!(
        log("bare").contains(&format!("the shell ran {} with second", script.display())),
        "{}",
        log("bare")
    );
    server.terminate();
}
