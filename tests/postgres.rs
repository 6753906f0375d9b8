//! `redeploy serve` and the CLI on a PostgreSQL journal: a real server on a
//! loopback port, a throwaway PostgreSQL cluster (tests/support/postgres.rs)
//! and real signed deliveries.

use redeploy_host::journal::DeployState;

use crate::support::deliveries::{sha, signed_push};
use crate::support::postgres::Cluster;
use crate::support::world::assert_all_succeeded;
use crate::support::{hook, wait_for, ServerProcess, Stack, World};

/// The secret of [`web`].
const SECRET: &str = "s3cret-s3cret";

/// A signed stack following `main` of acme/web (hook token 1) whose
/// stand-in sleeps `sleep` seconds.
fn web(sleep: &str) -> String {
    Stack::repo("web", "acme/web", "main", 1)
        .secret(SECRET)
        .timeout("1m")
        .env("SLEEP", sleep)
        .toml()
}

fn push(server: &ServerProcess, n: usize, delivery: &str) -> u16 {
    signed_push(server, &hook(1), SECRET, &sha(n), delivery).status
}

#[test]
fn serve_on_postgres_deploys_dedupes_and_recovers_after_a_sigkill() {
    let world = World::on_postgres("pg-serve", "", &web("3"));
    let server = world.start(&[]);
    assert_eq!(server.get("/healthz").status, 200);

    assert_eq!(push(&server, 1, "d1"), 202);
    // GitHub redelivers with the same delivery id: deployed once.
    assert_eq!(push(&server, 1, "d1"), 200);
    world.wait_ran_more_than("web", 0, 10);
    assert_eq!(push(&server, 2, "d2"), 202);
    server.kill();
    let states: Vec<DeployState> = world.deploys().iter().map(|d| d.state).collect();
    assert_eq!(states, [DeployState::Started, DeployState::Queued]);

    // The killed server's command died with it before freeing the
    // stand-in's overlap lock.
    let _ = std::fs::remove_dir(world.record("web").join("running.lock"));
    let server = world.start(&[]);
    let after = world.settle(30);
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].state, DeployState::Interrupted);
    assert_eq!(after[1].state, DeployState::Succeeded);
    assert_eq!(after[1].queued.sha.as_deref(), Some(sha(2).as_str()));

    // The CLI reads the same database.
    let history = world.redeploy(&["history", "--json"]);
    assert!(history.status.success(), "{history:?}");
    let h: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 2);
    assert_eq!(h[1]["state"], "interrupted");
    let deliveries = world.redeploy(&["deliveries", "web"]);
    assert!(deliveries.status.success(), "{deliveries:?}");
    server.terminate();
}

#[test]
fn a_second_serve_on_the_same_postgres_journal_refuses_to_start() {
    let first = World::on_postgres("pg-two-serves-a", "", &web("0"));
    let url = first.journal_url.clone().unwrap();
    // Another machine: its own state directory, the same database.
    let second = World::with_journal("pg-two-serves-b", "", &web("0"), Some(url));
    let running = first.start(&[]);
    let out = std::process::Command::new(crate::support::redeploy_bin())
        .args(["serve", "--config", second.config.to_str().unwrap()])
        .args([
            "--listen",
            &format!("127.0.0.1:{}", crate::support::free_port()),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("another `redeploy serve` is using this database"),
        "{stderr}"
    );
    assert_eq!(push(&running, 1, "d-1"), 202);
    assert_all_succeeded(&first.settle(30));
    running.terminate();
    // Once the first has stopped, the other may serve.
    let again = second.start(&[]);
    assert_eq!(again.get("/healthz").status, 200);
    again.terminate();
}

#[test]
fn while_the_database_is_down_deliveries_get_503_and_nothing_accepted_is_lost() {
    let cluster = Cluster::start("down");
    let url = cluster.database("down");
    let world = World::with_journal("pg-down", "", &web("0"), Some(url));
    let server = world.start(&[]);
    assert_eq!(push(&server, 1, "before"), 202);
    assert_all_succeeded(&world.settle(30));

    cluster.pg_ctl_stop();
    assert_eq!(server.get("/healthz").status, 503);
    let refused = signed_push(&server, &hook(1), SECRET, &sha(2), "while-down");
    let body = String::from_utf8_lossy(&refused.body);
    assert_eq!(refused.status, 503, "{body}");
    assert!(
        !body.contains("postgres://"),
        "the answer names no database: {body}"
    );

    cluster.pg_ctl_start();
    wait_for(30, "the server to reach the database again", || {
        (server.get("/healthz").status == 200).then_some(())
    });
    // The sender retries the refused delivery: it deploys now, once.
    assert_eq!(push(&server, 2, "while-down"), 202);
    let deploys = world.settle(30);
    assert_all_succeeded(&deploys);
    let shas: Vec<&str> = deploys
        .iter()
        .filter_map(|d| d.queued.sha.as_deref())
        .collect();
    assert_eq!(shas, [sha(1), sha(2)]);
    server.terminate();
}
