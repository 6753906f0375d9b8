//! Issue 15: the GitHub outbox sent once, in order per deployment, by one
//! sender per journal. A real `redeploy serve` killed with SIGKILL while
//! statuses wait and restarted; and two notifiers (two replicas' senders)
//! on one PostgreSQL journal, both writing rows, handing the lease over.
//! The GitHub stand-in checks every request against GitHub's schemas and
//! counts every status it accepted.
//!
//! A row in doubt (its sender was killed after claiming it) is checked on
//! GitHub before it is sent again: a status or a deployment GitHub took
//! while its answer never reached the killed server is not made twice; one
//! GitHub never took is sent after the check; a check that fails sends
//! nothing blind.

use std::sync::Arc;
use std::time::Duration;

use redeploy_host::journal::{
    DeployObserver, DeployState, Inserted, Journal, NewDeploy, NewDeploymentRequest, OutboxOutcome,
    PostgresOptions, TransitionDetail, OUTBOX_LEASE,
};
use redeploy_host::notify::Notifier;
use redeploy_host::plugin::{ComponentSource, PluginRuntime, RuntimeOptions};
use serde_json::json;

use crate::github_standin::{Canned, GithubStandin};
use crate::support::deliveries::{sha, signed_push};
use crate::support::stacks::toml;
use crate::support::{free_port, hook, wait_for, ServerProcess, Stack, World};

const TOKEN: &str = "ghp_standin_token_0123456789";
const SECRET: &str = "s3cret-s3cret";
const STATUSES: &str = "POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses";
const DEPLOYMENTS: &str = "POST /repos/{owner}/{repo}/deployments";
const LIST_STATUSES: &str = "GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses";
const LIST_DEPLOYMENTS: &str = "GET /repos/{owner}/{repo}/deployments";

/// How long the stand-in holds back its answer to the request a test
/// leaves in doubt: longer than the test takes to kill the server, shorter
/// than the client's own timeout (20 s), which would try it again.
const HOLD: Duration = Duration::from_secs(15);

/// How long a stuck status send waits for GitHub's rate limit to reset:
/// the longest redeploy waits, so the sender is still waiting when the
/// test kills it.
const RATE_LIMIT_SECS: &str = "60";

/// Deploys each notifier's journal writes in the two-replica test.
const DEPLOYS_PER_REPLICA: usize = 4;

/// Generous bound on anything the sender does (the outbox lease of a
/// killed holder runs out in 10 s first).
const SETTLE_SECS: u64 = 60;

/// A stack "web" that deploys on the push and reports to the deployment
/// its push asks GitHub for.
fn direct_stack(api_url: &str) -> Stack {
    Stack::repo("web", "acme/web", "main", 1)
        .secret(SECRET)
        .timeout("1m")
        .github(api_url, "web-env", "wait_for_event = false")
}

/// A server (named `name`, `[server]` lines `server`) with the stack of
/// [`direct_stack`] reporting to `standin`, and its first push, accepted.
fn serve_and_push(standin: &GithubStandin, name: &str, server: &str) -> (World, ServerProcess) {
    let world = World::new(name, server, &toml(&[direct_stack(&standin.base_url())]));
    world.write_gh_token(TOKEN);
    let process = world.start_on(free_port(), &[], &[]);
    let r = signed_push(&process, &hook(1), SECRET, &sha(1), "push-1");
    assert_eq!(r.status, 202, "{}", r.text());
    (world, process)
}

/// The operations the stand-in received, in order.
fn operations(standin: &GithubStandin) -> Vec<String> {
    standin
        .requests()
        .into_iter()
        .map(|r| r.operation)
        .collect()
}

/// The unsettled outbox rows: (state, attempts); `None` for the
/// deployment row.
fn waiting(world: &World) -> Vec<(Option<DeployState>, i64)> {
    let rows = world.journal().outbox_unsettled(10).unwrap();
    rows.iter().map(|r| (r.state, r.attempts)).collect()
}

/// Waits until the outbox of `world` is settled; every row's (outcome,
/// attempts), in id order.
fn settled(world: &World) -> Vec<(Option<OutboxOutcome>, i64)> {
    let journal = world.journal();
    wait_for(SETTLE_SECS, "the outbox settled", || {
        journal
            .outbox_unsettled(10)
            .unwrap()
            .is_empty()
            .then_some(())
    });
    let rows = journal.outbox_rows(0, 10).unwrap();
    rows.iter().map(|r| (r.outcome, r.attempts)).collect()
}

const SENT_ONCE: (Option<OutboxOutcome>, i64) = (Some(OutboxOutcome::Sent), 1);
const SENT_IN_DOUBT: (Option<OutboxOutcome>, i64) = (Some(OutboxOutcome::Sent), 2);

#[test]
fn github_a_status_github_took_from_a_killed_server_is_not_posted_again() {
    let standin = GithubStandin::start(TOKEN);
    // GitHub takes the second status (`in_progress`) and its answer never
    // leaves: the server is killed first. The check must follow pages.
    standin.hold_response(STATUSES, 1, HOLD);
    standin.cap_page_size(1);
    let (world, server) = serve_and_push(
        &standin,
        "github-outbox-status-in-doubt",
        "public_url = \"https://deploy.example.com\"",
    );
    wait_for(SETTLE_SECS, "GitHub to take in_progress", || {
        (standin.statuses(1000).len() == 2).then_some(())
    });
    let deploys = world.settle(SETTLE_SECS);
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    assert_eq!(
        waiting(&world),
        [
            (Some(DeployState::Started), 1),
            (Some(DeployState::Succeeded), 0)
        ]
    );
    server.kill();
    assert_eq!(standin.statuses(1000), ["queued", "in_progress"]);

    let restarted = world.start_on(free_port(), &[], &[]);
    let outcomes = settled(&world);
    assert_eq!(outcomes, [SENT_ONCE, SENT_ONCE, SENT_IN_DOUBT, SENT_ONCE]);
    assert_eq!(standin.statuses(1000), ["queued", "in_progress", "success"]);
    // The restarted server listed both pages of statuses, found its
    // in_progress there and posted only success.
    assert_eq!(
        operations(&standin),
        [
            DEPLOYMENTS,
            STATUSES,
            STATUSES,
            LIST_STATUSES,
            LIST_STATUSES,
            STATUSES
        ]
    );
    let lists: Vec<String> = standin
        .requests()
        .into_iter()
        .filter(|r| r.operation == LIST_STATUSES)
        .map(|r| r.query)
        .collect();
    assert_eq!(lists, ["per_page=100", "per_page=1&page=2"]);
    let reports = world.journal().reports(deploys[0].id).unwrap();
    let words: Vec<&str> = reports.iter().map(|(_, _, o)| o.as_str()).collect();
    assert_eq!(
        words,
        [
            "deployment 1000: sent",
            "deployment 1000: sent (found on GitHub after an unanswered attempt)",
            "deployment 1000: sent"
        ]
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
    restarted.terminate();
}

#[test]
fn github_a_deployment_github_created_for_a_killed_server_is_adopted_not_created_again() {
    let standin = GithubStandin::start(TOKEN);
    standin.hold_response(DEPLOYMENTS, 0, HOLD);
    let (world, server) = serve_and_push(&standin, "github-outbox-deployment-in-doubt", "");
    wait_for(SETTLE_SECS, "GitHub to create the deployment", || {
        (standin.count(DEPLOYMENTS) == 1).then_some(())
    });
    let deploys = world.settle(SETTLE_SECS);
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    // The deployment row is claimed; the statuses wait for its answer.
    assert_eq!(
        waiting(&world),
        [
            (None, 1),
            (Some(DeployState::Queued), 0),
            (Some(DeployState::Started), 0),
            (Some(DeployState::Succeeded), 0)
        ]
    );
    server.kill();

    let restarted = world.start_on(free_port(), &[], &[]);
    let outcomes = settled(&world);
    assert_eq!(outcomes, [SENT_IN_DOUBT, SENT_ONCE, SENT_ONCE, SENT_ONCE]);
    assert_eq!(
        operations(&standin),
        [DEPLOYMENTS, LIST_DEPLOYMENTS, STATUSES, STATUSES, STATUSES]
    );
    let list = &standin.requests()[1];
    assert_eq!(
        list.query,
        format!(
            "sha={}&task=deploy&environment=web-env&per_page=100",
            sha(1)
        )
    );
    // One deployment, adopted; its statuses went to it.
    assert_eq!(standin.statuses(1000), ["queued", "in_progress", "success"]);
    let request = world
        .journal()
        .request_of_deploy(deploys[0].id)
        .unwrap()
        .unwrap();
    assert_eq!(request.deployment_id, Some(1000));
    assert_eq!(
        request.detail.as_deref(),
        Some("created (found on GitHub after an unanswered attempt)")
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
    restarted.terminate();
}

/// A world whose server was killed while the first status (`queued`) was
/// rate limited, so its row is in doubt though GitHub never took it; the
/// server restarted. `list_failures` answers to the restarted server's
/// status list are 503s first.
fn rate_limited_then_killed(
    name: &str,
    list_failures: usize,
) -> (GithubStandin, World, crate::support::ServerProcess) {
    let standin = GithubStandin::start(TOKEN);
    standin.push_response(
        STATUSES,
        Canned {
            status: 429,
            headers: vec![("retry-after".into(), RATE_LIMIT_SECS.into())],
            body: json!({"message": "You have exceeded a secondary rate limit.", "documentation_url": "https://docs.github.com/rest"}),
        },
    );
    for _ in 0..list_failures {
        standin.push_response(
            LIST_STATUSES,
            Canned {
                status: 503,
                headers: vec![],
                body: json!({"message": "Service Unavailable", "documentation_url": "https://docs.github.com/rest"}),
            },
        );
    }
    let (world, server) = serve_and_push(&standin, name, "");
    wait_for(SETTLE_SECS, "the rate-limited status", || {
        (standin.count(STATUSES) == 1).then_some(())
    });
    world.settle(SETTLE_SECS);
    assert_eq!(waiting(&world)[0], (Some(DeployState::Queued), 1));
    server.kill();
    let restarted = world.start_on(free_port(), &[], &[]);
    (standin, world, restarted)
}

#[test]
fn github_a_status_list_that_fails_sends_nothing_blind_and_a_retried_list_sends_it() {
    let (standin, world, restarted) = rate_limited_then_killed("github-outbox-list-retried", 2);
    let outcomes = settled(&world);
    assert_eq!(outcomes, [SENT_ONCE, SENT_IN_DOUBT, SENT_ONCE, SENT_ONCE]);
    // Two failed lists, no post between them; the third list shows
    // nothing of queued, which is then posted.
    assert_eq!(
        operations(&standin),
        [
            DEPLOYMENTS,
            STATUSES,
            LIST_STATUSES,
            LIST_STATUSES,
            LIST_STATUSES,
            STATUSES,
            STATUSES,
            STATUSES
        ]
    );
    assert_eq!(standin.statuses(1000), ["queued", "in_progress", "success"]);
    assert_eq!(standin.violations(), Vec::<String>::new());
    restarted.terminate();
}

#[test]
fn github_a_status_list_that_keeps_failing_fails_the_row_without_posting_it() {
    let attempts = redeploy_host::github::MAX_ATTEMPTS as usize;
    let (standin, world, restarted) = rate_limited_then_killed("github-outbox-list-down", attempts);
    let outcomes = settled(&world);
    assert_eq!(
        outcomes,
        [
            SENT_ONCE,
            (Some(OutboxOutcome::Failed), 2),
            SENT_ONCE,
            SENT_ONCE
        ]
    );
    let mut expected = vec![DEPLOYMENTS, STATUSES];
    expected.extend(std::iter::repeat_n(LIST_STATUSES, attempts));
    expected.extend([STATUSES, STATUSES]);
    assert_eq!(operations(&standin), expected);
    // queued was never posted: neither blind nor later.
    assert_eq!(standin.statuses(1000), ["in_progress", "success"]);
    let deploy = world.deploys()[0].id;
    let reports = world.journal().reports(deploy).unwrap();
    assert!(
        reports[0]
            .2
            .starts_with("deployment 1000: cannot check whether an earlier attempt arrived: GitHub API unreachable after 4 tries: 503"),
        "{reports:?}"
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
    restarted.terminate();
}

/// Issue 15: an in-doubt status GitHub never took (rate limited when its
/// server was killed) is checked on GitHub, not found, and sent.
#[test]
fn github_statuses_a_killed_server_left_are_sent_once_after_its_restart() {
    let standin = GithubStandin::start(TOKEN);
    // The first status GitHub is asked for is rate limited for a minute:
    // the sender waits, and the deploy's later statuses queue behind it.
    standin.push_response(
        STATUSES,
        Canned {
            status: 429,
            headers: vec![("retry-after".into(), RATE_LIMIT_SECS.into())],
            body: json!({"message": "You have exceeded a secondary rate limit.", "documentation_url": "https://docs.github.com/rest"}),
        },
    );
    let (world, server) = serve_and_push(&standin, "github-outbox-killed", "");
    wait_for(SETTLE_SECS, "the rate-limited status", || {
        (standin.count(STATUSES) == 1).then_some(())
    });
    let deploys = world.settle(SETTLE_SECS);
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    // Three statuses wait in the outbox, the first one being sent.
    let waiting = world.journal().outbox_unsettled(10).unwrap();
    let states: Vec<_> = waiting.iter().map(|r| (r.state, r.attempts)).collect();
    assert_eq!(
        states,
        [
            (Some(DeployState::Queued), 1),
            (Some(DeployState::Started), 0),
            (Some(DeployState::Succeeded), 0),
        ]
    );
    server.kill();
    assert!(standin.statuses(1000).is_empty());

    let restarted = world.start_on(free_port(), &[], &[]);
    let sent = wait_for(SETTLE_SECS, "the three statuses", || {
        let s = standin.statuses(1000);
        (s.len() >= 3).then_some(s)
    });
    assert_eq!(sent, ["queued", "in_progress", "success"]);
    let journal = world.journal();
    wait_for(SETTLE_SECS, "the outbox settled", || {
        journal
            .outbox_unsettled(10)
            .unwrap()
            .is_empty()
            .then_some(())
    });
    // Sent once each: the stuck one was tried again (GitHub never took
    // it), the others once; one deployment was created.
    let rows = journal.outbox_rows(0, 10).unwrap();
    let outcomes: Vec<_> = rows.iter().map(|r| (r.outcome, r.attempts)).collect();
    let sent_once = (Some(OutboxOutcome::Sent), 1);
    assert_eq!(
        outcomes,
        [
            sent_once,
            (Some(OutboxOutcome::Sent), 2),
            sent_once,
            sent_once
        ]
    );
    assert_eq!(standin.count(DEPLOYMENTS), 1);
    assert_eq!(standin.count(STATUSES), 4, "one rate-limited, three sent");
    assert_eq!(
        operations(&standin),
        [
            DEPLOYMENTS,
            STATUSES,
            LIST_STATUSES,
            STATUSES,
            STATUSES,
            STATUSES
        ],
        "the queued status in doubt was looked for, then sent"
    );
    let reports = journal.reports(deploys[0].id).unwrap();
    assert_eq!(reports.len(), 3, "{reports:?}");
    assert!(reports
        .iter()
        .all(|(target, _, outcome)| target == "github" && outcome == "deployment 1000: sent"));
    assert_eq!(standin.violations(), Vec::<String>::new());
    restarted.terminate();
    assert_eq!(journal.lease_holder(OUTBOX_LEASE).unwrap(), None);
}

/// One replica: its journal handle and its notifier.
struct Replica {
    journal: Arc<Journal>,
    notifier: Arc<Notifier>,
}

/// Writes what a replica's dispatcher and runner would for one push: the
/// deploy, its deployment request, its run; each change tells the
/// replica's notifier, as the runner's observer does.
fn deploy_on(replica: &Replica, n: usize) -> i64 {
    let j = &replica.journal;
    let id = j
        .insert_deploy(&NewDeploy {
            stack: "web".into(),
            delivery_id: Some(format!("push-{n}")),
            provider: "github".into(),
            git_ref: Some("refs/heads/main".into()),
            sha: Some(sha(n)),
            services: vec![],
            profile: None,
            reason: "push to main".into(),
            event_json: r#"{"kind":"push"}"#.into(),
            created_at_ms: 1,
            pusher: None,
            repository: None,
        })
        .unwrap()
        .id();
    let body = json!({
        "ref": sha(n), "task": "deploy", "environment": "web-env",
        "auto_merge": false, "required_contexts": [], "payload": {"stack": "web"},
    });
    let request = j
        .insert_deployment_request(&NewDeploymentRequest {
            stack: "web".into(),
            delivery_id: Some(format!("push-{n}")),
            deploy_id: Some(id),
            git_ref: Some("refs/heads/main".into()),
            sha: Some(sha(n)),
            request_json: body.to_string(),
            created_at_ms: 1,
            repository: None,
        })
        .unwrap();
    assert!(matches!(request, Inserted::New(_)));
    replica.notifier.create_deployment(request.id());
    for state in [DeployState::Started, DeployState::Succeeded] {
        j.transition(id, state, 2, &TransitionDetail::default())
            .unwrap();
        replica.notifier.changed(id, state, None);
    }
    id
}

#[test]
fn github_two_notifiers_on_one_postgres_journal_post_each_status_once_in_order() {
    let standin = GithubStandin::start(TOKEN);
    let world = World::on_postgres(
        "github_outbox_replicas",
        "",
        &toml(&[direct_stack(&standin.base_url())]),
    );
    world.write_gh_token(TOKEN);
    let url = world.journal_url.clone().unwrap();
    let config = Arc::new(redeploy_host::config::load(&world.config).unwrap());
    let runtime = Arc::new(
        PluginRuntime::new(&ComponentSource::Embedded, RuntimeOptions::default()).unwrap(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let replica = || {
        let journal = Arc::new(Journal::open_postgres(&PostgresOptions::new(&url)).unwrap());
        let notifier = rt.block_on(async {
            Notifier::start(config.clone(), journal.clone(), runtime.clone(), None).unwrap()
        });
        Replica { journal, notifier }
    };
    let (a, b) = (replica(), replica());
    assert_ne!(a.notifier.holder(), b.notifier.holder());
    // Both replicas write, interleaved; one of them sends.
    let mut deploys = Vec::new();
    for n in 0..DEPLOYS_PER_REPLICA {
        deploys.push(deploy_on(&a, 2 * n));
        deploys.push(deploy_on(&b, 2 * n + 1));
    }
    let holder = wait_for(SETTLE_SECS, "a holder of the outbox lease", || {
        a.journal.lease_holder(OUTBOX_LEASE).unwrap()
    });
    assert!(
        holder == a.notifier.holder() || holder == b.notifier.holder(),
        "{holder}"
    );
    // The holder stops (sending what it can, then releasing the lease);
    // the other takes over and sends the rest, old rows and new.
    let (gone, stays) = if holder == a.notifier.holder() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    rt.block_on(gone.notifier.finish(Duration::from_secs(SETTLE_SECS)));
    for n in 2 * DEPLOYS_PER_REPLICA..3 * DEPLOYS_PER_REPLICA {
        deploys.push(deploy_on(stays, n));
    }
    wait_for(SETTLE_SECS, "the outbox settled", || {
        stays
            .journal
            .outbox_unsettled(1)
            .unwrap()
            .is_empty()
            .then_some(())
    });
    assert_eq!(
        stays.journal.lease_holder(OUTBOX_LEASE).unwrap().as_deref(),
        Some(stays.notifier.holder())
    );
    rt.block_on(stays.notifier.finish(Duration::from_secs(SETTLE_SECS)));
    assert_eq!(a.journal.lease_holder(OUTBOX_LEASE).unwrap(), None);

    // Each deployment created once, each of its statuses posted once, in
    // order.
    assert_eq!(standin.count(DEPLOYMENTS), deploys.len());
    assert_eq!(standin.count(STATUSES), 3 * deploys.len());
    for (i, deploy) in deploys.iter().enumerate() {
        let request = a.journal.request_of_deploy(*deploy).unwrap().unwrap();
        let deployment = request.deployment_id.unwrap();
        assert_eq!(
            standin.statuses(deployment),
            ["queued", "in_progress", "success"],
            "deploy {i}"
        );
    }
    let rows = a.journal.outbox_rows(0, 1000).unwrap();
    assert_eq!(rows.len(), 4 * deploys.len());
    assert!(
        rows.iter()
            .all(|r| r.outcome == Some(OutboxOutcome::Sent) && r.attempts == 1),
        "{rows:#?}"
    );
    assert_eq!(standin.violations(), Vec::<String>::new());
}
