//! `redeploy serve` and the CLI on a PostgreSQL journal: a real server on a
//! loopback port, a throwaway PostgreSQL cluster (tests/support/postgres.rs)
//! and real signed deliveries.

use std::time::Duration;

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
    // Whatever the log level, no statement parameter reaches the log.
    let server = world.start_env(&[], &[("RUST_LOG", "trace")]);
    assert_eq!(server.get("/healthz").status, 200);

    assert_eq!(push(&server, 1, "d1"), 202);
    // GitHub redelivers with the same delivery id: deployed once.
    assert_eq!(push(&server, 1, "d1"), 200);
    world.wait_ran_more_than("web", 0, 10);
    assert_eq!(push(&server, 2, "d2"), 202);
    let metrics = String::from_utf8(server.get("/metrics").body).unwrap();
    crate::support::assert_contains_all(
        &metrics,
        &[
            "redeploy_queued_deploys{stack=\"web\"} 1\n",
            "redeploy_journal_seconds_count{backend=\"postgres\",kind=\"write\"}",
            "redeploy_journal_seconds_count{backend=\"postgres\",kind=\"read\"}",
        ],
    );
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
    // Every delivery has its row, with what its request looked like (each
    // row's insert was sent with its transaction's `COMMIT`).
    let journal = world.journal();
    let rows = journal.deliveries(10).unwrap();
    let seen: Vec<(u16, Option<&str>)> = rows
        .iter()
        .rev()
        .map(|d| (d.recorded.status, d.recorded.delivery_id.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [(202, Some("d1")), (200, Some("d1")), (202, Some("d2"))]
    );
    for row in &rows {
        let stored = journal.delivery(row.id).unwrap().unwrap();
        assert!(stored.request.is_some(), "{row:?}");
    }
    server.terminate();
    // The log-link key the server stored: never in its log.
    let key = world
        .journal()
        .ensure_server_key(redeploy_host::notify::LOG_KEY_NAME, "unused")
        .unwrap();
    assert_ne!(key, "unused");
    let log = world.server_log();
    assert!(log.contains("TRACE"), "the log is at trace level");
    assert!(!log.contains(&key), "the server key is in the log");
}

/// A world whose journal is `url`, with `[journal]` settings `extra`.
fn replica(name: &str, url: &str, extra: &str, stacks: &str) -> World {
    let world = World::with_journal(name, "", stacks, None);
    let config = std::fs::read_to_string(&world.config).unwrap();
    let config = config.replacen(
        "\n\n",
        &format!("\n\n[journal]\nurl = {url:?}\n{extra}\n\n"),
        1,
    );
    std::fs::write(&world.config, config).unwrap();
    World {
        journal_url: Some(url.to_owned()),
        ..world
    }
}

#[test]
fn two_replicas_on_one_journal_share_its_deploys_one_at_a_time() {
    let url = crate::support::postgres::shared().database("pg-two-replicas");
    let a = replica("pg-two-a", &url, "lease = \"2s\"", &web("2"));
    // The second replica's stand-in records into the first one's directory,
    // so that an overlap across replicas is seen.
    let b_stacks = web("2").replace("@RECORD:web@", a.record("web").to_str().unwrap());
    let b = replica("pg-two-b", &url, "lease = \"2s\"", &b_stacks);
    let (first, second) = (a.start(&[]), b.start(&[]));
    // Both serve the same hook URL (the token is in the shared journal).
    assert_eq!(push(&first, 1, "r-1"), 202);
    a.wait_ran_more_than("web", 0, 10);
    // The same delivery sent to the other replica: deployed once.
    assert_eq!(push(&second, 1, "r-1"), 200);
    // While #1 runs on one replica, two newer pushes reach the other: the
    // newest runs after #1, the one between is superseded.
    assert_eq!(push(&second, 2, "r-2"), 202);
    assert_eq!(push(&second, 3, "r-3"), 202);
    let deploys = a.settle(40);
    let states: Vec<DeployState> = deploys.iter().map(|d| d.state).collect();
    assert_eq!(
        states,
        [
            DeployState::Succeeded,
            DeployState::Cancelled,
            DeployState::Succeeded
        ]
    );
    assert_eq!(deploys[1].superseded_by, Some(deploys[2].id));
    assert!(
        !a.record("web").join("overlaps").exists(),
        "two deploys of the stack ran at once"
    );
    assert_eq!(a.ran("web").len(), 2, "{:?}", a.ran("web"));
    // Each deploy records which replica ran it.
    let runners: Vec<String> = deploys
        .iter()
        .filter(|d| d.state == DeployState::Succeeded)
        .map(|d| {
            let name = url.rsplit('/').next().unwrap();
            crate::support::postgres::shared().psql(
                name,
                &format!("SELECT runner FROM deploys WHERE id = {}", d.id),
            )
        })
        .collect();
    for runner in &runners {
        assert!(runner.contains(" pid "), "{runners:?}");
    }
    first.terminate();
    second.terminate();
}

#[test]
fn a_web_only_replica_queues_what_a_runner_replica_runs_even_after_the_runner_died() {
    let url = crate::support::postgres::shared().database("pg-web-only");
    let runner = replica("pg-runner", &url, "lease = \"2s\"", &web("3"));
    let stacks = web("0").replace("@RECORD:web@", runner.record("web").to_str().unwrap());
    let web_only = replica("pg-web-only", &url, "runner = false", &stacks);
    let front = web_only.start(&[]);
    let back = runner.start(&[]);
    assert_eq!(push(&front, 1, "w-1"), 202);
    // The runner hears of it at once (NOTIFY), without a push of its own.
    runner.wait_ran_more_than("web", 0, 10);
    // The runner dies mid-deploy (its command gets SIGTERM with it); a
    // newer push is accepted meanwhile by the web-only replica.
    back.kill();
    assert_eq!(push(&front, 2, "w-2"), 202);
    let _ = std::fs::remove_dir(runner.record("web").join("running.lock"));
    // A runner replica starts again: once the dead one's lease has run
    // out, its deploy is recorded interrupted and the newer one runs.
    let back = runner.start(&[]);
    let deploys = runner.settle(40);
    let states: Vec<DeployState> = deploys.iter().map(|d| d.state).collect();
    assert_eq!(states, [DeployState::Interrupted, DeployState::Succeeded]);
    assert!(front.log_text().contains("runner = false"));
    front.terminate();
    back.terminate();
}

#[test]
fn a_runner_that_cannot_renew_its_lease_stops_its_deploy_before_the_lease_runs_out() {
    let cluster = Cluster::start("fence");
    let url = cluster.database("fence");
    // A command that says who it is, then sleeps far longer than the test.
    let stack = Stack::new("web")
        .follows("acme/web", "main")
        .token(1)
        .secret(SECRET)
        .timeout("5m")
        .line(r#"command = ["sh", "-c", "echo $$ > @DIR@/pid.tmp && mv @DIR@/pid.tmp @DIR@/pid && exec sleep 300"]"#);
    let world = replica("pg-fence", &url, "lease = \"2s\"", &stack.toml());
    let server = world.start(&[]);
    assert_eq!(push(&server, 1, "f-1"), 202);
    let pid = world.dir.join("pid");
    let pid: u32 = wait_for(10, "the deploy to start", || {
        std::fs::read_to_string(&pid).ok()?.trim().parse().ok()
    });
    let alive = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    assert!(alive());
    cluster.pg_ctl_stop();
    // No renewal gets through: within half the lease (1 s) of the last
    // one, the runner kills the command, which would sleep for 5 minutes.
    wait_for(15, "the deploy's command to be killed", || {
        (!alive()).then_some(())
    });
    assert!(
        server.log_text().contains("stopping what it covers"),
        "{}",
        server.log_text()
    );
    cluster.pg_ctl_start();
    let deploys = world.settle(30);
    assert_eq!(
        deploys[0].state,
        DeployState::Interrupted,
        "{:?}",
        deploys[0].detail
    );
    server.terminate();
}

#[test]
fn a_deploy_that_ends_while_the_database_is_down_is_recorded_as_it_ended() {
    let cluster = Cluster::start("end-retry");
    let url = cluster.database("end_retry");
    // A command that starts, then ends when the test says.
    let stack = Stack::new("web")
        .follows("acme/web", "main")
        .token(1)
        .secret(SECRET)
        .timeout("5m")
        .line(r#"command = ["sh", "-c", "touch @DIR@/started; while [ ! -e @DIR@/go ]; do sleep 0.05; done; echo ended"]"#);
    let world = replica("pg-end-retry", &url, "lease = \"15s\"", &stack.toml());
    let server = world.start(&[]);
    assert_eq!(push(&server, 1, "e-1"), 202);
    wait_for(10, "the deploy to start", || {
        world.dir.join("started").exists().then_some(())
    });
    cluster.pg_ctl_stop();
    std::fs::write(world.dir.join("go"), "").unwrap();
    wait_for(15, "a try to record the deploy's end", || {
        server
            .log_text()
            .contains("cannot record the end of a deploy yet; retrying")
            .then_some(())
    });
    cluster.pg_ctl_start();
    let deploys = world.settle(30);
    assert_eq!(
        deploys[0].state,
        DeployState::Succeeded,
        "{:?}",
        deploys[0].detail
    );
    assert_eq!(deploys[0].exit_code, Some(0));
    server.terminate();
}

/// A TCP relay to a local port that can be frozen: it then forwards
/// nothing either way and closes nothing, as a stalled network does. It
/// can also lose one transaction's answers from its `COMMIT` on
/// ([`Relay::lose_commit_answer`]).
struct Relay {
    port: u16,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    trap: std::sync::Arc<std::sync::Mutex<Option<&'static [u8]>>>,
}

/// Whether `needle` is in `haystack`.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        use std::io::{Read as _, Write as _};
        use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = Arc::new(AtomicBool::new(false));
        let trap: Arc<std::sync::Mutex<Option<&'static [u8]>>> = Arc::default();
        let (shared, traps) = (frozen.clone(), trap.clone());
        std::thread::spawn(move || {
            for down in listener.incoming().flatten() {
                let Ok(up) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                // Set once this connection's client sent the trap's marker
                // and then `COMMIT`: nothing more comes back to it.
                let deaf = Arc::new(AtomicBool::new(false));
                let ways = [
                    (down.try_clone().unwrap(), up.try_clone().unwrap(), true),
                    (up, down, false),
                ];
                for (mut from, mut to, asks) in ways {
                    let (frozen, deaf, traps) = (shared.clone(), deaf.clone(), traps.clone());
                    let thaw = move || {
                        while frozen.load(SeqCst) {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    };
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        // The last bytes asked, so a word split across two
                        // reads is seen; and whether the marker was.
                        let (mut tail, mut marked) = (Vec::new(), false);
                        loop {
                            thaw();
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if asks {
                                tail.extend_from_slice(&buf[..n]);
                                if !marked {
                                    let mut trap = traps.lock().unwrap();
                                    if trap.is_some_and(|marker| holds(&tail, marker)) {
                                        *trap = None;
                                        marked = true;
                                        tail.clear();
                                    }
                                } else if holds(&tail, b"COMMIT") {
                                    deaf.store(true, SeqCst);
                                }
                                let keep = tail.len().saturating_sub(256);
                                tail.drain(..keep);
                            } else if deaf.load(SeqCst) {
                                continue;
                            }
                            // What was read as the relay froze waits too.
                            thaw();
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Relay { port, frozen, trap }
    }

    fn freeze(&self, frozen: bool) {
        self.frozen
            .store(frozen, std::sync::atomic::Ordering::SeqCst);
    }

    /// The first connection to ask something holding `marker` gets no
    /// answer from the `COMMIT` that follows on: the transaction commits
    /// and its client never hears so.
    fn lose_commit_answer(&self, marker: &'static [u8]) {
        *self.trap.lock().unwrap() = Some(marker);
    }
}

/// A replica of [`web`] whose journal is `cluster`'s database `name`
/// through a [`Relay`], which answers within 2 s or not at all.
fn relayed(cluster: &Cluster, name: &str) -> (Relay, World) {
    let url = cluster.database(name);
    let (head, tail) = url.split_once("127.0.0.1:").unwrap();
    let (port, database) = tail.split_once('/').unwrap();
    let relay = Relay::start(port.parse().unwrap());
    let relayed = format!("{head}127.0.0.1:{}/{database}", relay.port);
    let world = replica(
        &format!("pg-{name}"),
        &relayed,
        "answer_timeout = \"2s\"\nacquire_timeout = \"1s\"\nconnect_timeout = \"2s\"",
        &web("0"),
    );
    (relay, world)
}

#[test]
fn a_database_that_stops_answering_gets_a_webhook_503_not_a_hang() {
    let cluster = Cluster::start("stall");
    let (relay, world) = relayed(&cluster, "stall");
    let server = world.start(&[]);
    assert_eq!(push(&server, 1, "s-1"), 202);
    assert_all_succeeded(&world.settle(30));

    // The network stalls: connections stay open, nothing comes back.
    relay.freeze(true);
    let asked = std::time::Instant::now();
    let refused = signed_push(&server, &hook(1), SECRET, &sha(2), "s-2");
    let took = asked.elapsed();
    assert_eq!(refused.status, 503, "{}", refused.text());
    // A few tries of 2 s each, not the stall's length (or http's 30 s).
    assert!(took < Duration::from_secs(20), "answered after {took:?}");
    assert!(
        server.log_text().contains("did not answer within 2s"),
        "{}",
        server.log_text()
    );

    relay.freeze(false);
    wait_for(30, "the server to reach the database again", || {
        (server.get("/healthz").status == 200).then_some(())
    });
    assert_eq!(push(&server, 2, "s-2"), 202);
    let deploys = world.settle(30);
    assert_all_succeeded(&deploys);
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    server.terminate();
}

/// A writing statement the server gave up on (past `answer_timeout`) is
/// stopped by the database too: its locks do not outlive the call. The
/// statement is made slow by a trigger that sleeps far longer than the
/// answer timeout, as a disk or a lock behind another session would.
#[test]
fn a_statement_the_server_gave_up_on_is_stopped_by_the_database_too() {
    let cluster = Cluster::start("statement-timeout");
    let url = cluster.database("slow");
    let name = url.rsplit('/').next().unwrap().to_owned();
    let world = replica(
        "pg-statement-timeout",
        &url,
        "answer_timeout = \"2s\"\nacquire_timeout = \"1s\"",
        &web("0"),
    );
    let server = world.start(&[]);
    assert_eq!(push(&server, 1, "t-1"), 202);
    assert_all_succeeded(&world.settle(30));
    cluster.psql(
        &name,
        "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$;
         CREATE TRIGGER slow_insert BEFORE INSERT ON deploys
             FOR EACH ROW EXECUTE FUNCTION slow_insert();",
    );
    let refused = signed_push(&server, &hook(1), SECRET, &sha(2), "t-2");
    assert_eq!(refused.status, 503, "{}", refused.text());
    let sleeping = "SELECT count(*) FROM pg_stat_activity
                    WHERE datname = current_database() AND state = 'active'
                      AND pid <> pg_backend_pid() AND query LIKE '%INSERT INTO deploys%'";
    wait_for(5, "the database to stop the statements given up on", || {
        (cluster.psql(&name, sleeping) == "0").then_some(())
    });
    cluster.psql(&name, "DROP TRIGGER slow_insert ON deploys");
    assert_eq!(push(&server, 2, "t-2"), 202);
    let deploys = world.settle(30);
    assert_all_succeeded(&deploys);
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    server.terminate();
}

#[test]
fn a_claim_whose_commit_answer_is_lost_runs_the_deploy_it_started() {
    let cluster = Cluster::start("lost-claim");
    let (relay, world) = relayed(&cluster, "lost_claim");
    // The claim of the first deploy (the only statement that reads the
    // stack's lease by holder and locks it) commits, and its answer is lost.
    relay.lose_commit_answer(b"SELECT holder FROM leases WHERE name = $1 AND holder = $2");
    let server = world.start(&[]);
    assert_eq!(push(&server, 1, "c-1"), 202);
    wait_for(30, "the claim's lost commit to be found", || {
        server
            .log_text()
            .contains("the claim's commit went through, its answer lost")
            .then_some(())
    });
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(
        deploys[0].state,
        DeployState::Succeeded,
        "{:?}",
        deploys[0].detail
    );
    assert_eq!(world.ran("web").len(), 1, "the command ran once");
    assert!(
        server.log_text().contains("did not answer within 2s"),
        "the answer was lost: {}",
        server.log_text()
    );
    server.terminate();
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
    // /healthz may answer what it read up to PROBE_REUSE ago.
    wait_for(10, "/healthz to say the journal is unreachable", || {
        (server.get("/healthz").status == 503).then_some(())
    });
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

/// Runs `redeploy ARGS... --config CONFIG`.
fn redeploy_with(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(crate::support::redeploy_bin())
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn a_sqlite_journal_moves_to_postgres_with_its_history_and_hook_urls() {
    let world = World::new("pg-move", "", &web("1"));
    let server = world.start(&[]);
    // One deploy runs while two more arrive: the older of those two is
    // superseded by the newer (a deploy naming a later one).
    assert_eq!(push(&server, 1, "m1"), 202);
    world.wait_ran_more_than("web", 0, 10);
    assert_eq!(push(&server, 2, "m2"), 202);
    assert_eq!(push(&server, 3, "m3"), 202);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 3);
    assert_eq!(deploys[1].state, DeployState::Cancelled);
    assert_eq!(deploys[1].superseded_by, Some(deploys[2].id));
    server.terminate();
    let json = |config: &std::path::Path, args: &[&str]| {
        let out = redeploy_with(config, args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        out.stdout
    };
    let history = json(&world.config, &["history", "--json"]);
    let deliveries = json(&world.config, &["deliveries", "--json"]);
    let hook_url = json(&world.config, &["hook-url", "web"]);
    let migrate = json(&world.config, &["journal", "migrate"]);
    assert!(
        String::from_utf8_lossy(&migrate).ends_with(&format!(
            ": schema version {}\n",
            redeploy_host::journal::SCHEMA_VERSION
        )),
        "{}",
        String::from_utf8_lossy(&migrate)
    );

    let export = world.dir.join("journal.jsonl");
    json(
        &world.config,
        &["journal", "export", "--output", export.to_str().unwrap()],
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&export).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the export holds the hook tokens");
    let text = std::fs::read_to_string(&export).unwrap();
    assert_eq!(
        text.lines().next().unwrap(),
        r#"{"format":"redeploy-journal-export","version":2}"#
    );
    // The last line counts the rows between: an export cut short is known.
    let rows = text.lines().count() - 2;
    assert_eq!(
        text.lines().last().unwrap(),
        format!(r#"{{"rows":{rows}}}"#)
    );
    // An existing file is never overwritten.
    let again = redeploy_with(
        &world.config,
        &["journal", "export", "--output", export.to_str().unwrap()],
    );
    assert!(!again.status.success());

    // The same configuration, with its journal in PostgreSQL.
    let url = crate::support::postgres::shared().database("pg_move");
    let pg_config = world.dir.join("redeploy-pg.toml");
    let original = std::fs::read_to_string(&world.config).unwrap();
    std::fs::write(
        &pg_config,
        original.replacen(
            "[[stacks]]",
            &format!("[journal]\nurl = \"{url}\"\n\n[[stacks]]"),
            1,
        ),
    )
    .unwrap();
    let imported = json(&pg_config, &["journal", "import", export.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&imported).starts_with("imported "));
    assert_eq!(json(&pg_config, &["history", "--json"]), history);
    assert_eq!(json(&pg_config, &["deliveries", "--json"]), deliveries);
    assert_eq!(json(&pg_config, &["hook-url", "web"]), hook_url);
    // Importing twice would merge two journals: refused, nothing changed.
    let twice = redeploy_with(&pg_config, &["journal", "import", export.to_str().unwrap()]);
    assert!(!twice.status.success());
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("is not empty"),
        "{twice:?}"
    );
    assert_eq!(json(&pg_config, &["history", "--json"]), history);

    // Served from PostgreSQL, new deploys continue after the imported ids.
    let pg_world = World {
        dir: crate::support::TempDir(world.dir.0.clone()),
        config: pg_config.clone(),
        journal_url: Some(url),
    };
    let server = pg_world.start(&[]);
    assert_eq!(push(&server, 4, "m4"), 202);
    let after = pg_world.settle(30);
    assert_eq!(after.len(), 4);
    assert!(after[3].id > deploys[2].id);
    assert_eq!(after[3].state, DeployState::Succeeded);
    server.terminate();
    // Both worlds share the directory; only one may remove it.
    std::mem::forget(pg_world.dir);
}

#[test]
fn a_damaged_export_imports_nothing_and_says_which_line() {
    let url = crate::support::postgres::shared().database("pg_damaged");
    let world = World::with_journal("pg-damaged", "", &web("0"), Some(url));
    let export = world.dir.join("bad.jsonl");
    let header = r#"{"format":"redeploy-journal-export","version":1}"#;
    let v2 = r#"{"format":"redeploy-journal-export","version":2}"#;
    let token = r#"{"table":"hook_tokens","row":{"stack":"web","token":"abcdefghijklmnopqrstuvwxyz012345"}}"#;
    for (body, problem) in [
        (
            format!("{header}\n{token}\nnot json\n"),
            "line 3: is not JSON",
        ),
        (
            format!("{header}\n{token}\n{{\"table\":\"pg_authid\",\"row\":{{}}}}\n"),
            "line 3: names no table redeploy exports",
        ),
        (
            format!(
                "{header}\n{}\n",
                token.replace("\"token\"", "\"token; DROP TABLE deploys\"")
            ),
            "line 2: hook_tokens has no column",
        ),
        (
            "{\"format\":\"other\"}\n".to_owned(),
            "line 1: is not a redeploy journal export",
        ),
        // An empty file (/dev/null) is no export.
        (String::new(), "line 1: is missing"),
        // Version 2 ends with its row count: cut before it, or counting
        // other rows, or with more after it, it is refused whole.
        (
            format!("{v2}\n{token}\n"),
            "line 3: is missing: the export's last line is {\"rows\": N}",
        ),
        (
            format!("{v2}\n{token}\n{{\"rows\":2}}\n"),
            "line 3: says the export has 2 rows, and 1 came before it",
        ),
        (
            format!("{v2}\n{token}\n{{\"rows\":1}}\n{token}\n"),
            "line 4: follows the export's last line",
        ),
    ] {
        std::fs::write(&export, body).unwrap();
        let out = world.redeploy(&["journal", "import", export.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(problem), "{stderr}");
        assert!(stderr.contains("nothing was imported"), "{stderr}");
        assert_eq!(
            world.journal().hook_token("web").unwrap(),
            None,
            "rolled back"
        );
    }
}

/// Makes a CA and a certificate it signs for `names` (subjectAltName
/// entries like `DNS:localhost`) in `dir`: `<tag>-ca.pem`, `<tag>.pem`,
/// `<tag>.key`.
fn certificate(dir: &std::path::Path, tag: &str, names: &str) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let (ca_key, ca) = (format!("{tag}-ca.key"), format!("{tag}-ca.pem"));
    let (key, csr, cert) = (
        format!("{tag}.key"),
        format!("{tag}.csr"),
        format!("{tag}.pem"),
    );
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={tag} test CA"),
        "-keyout",
        &ca_key,
        "-out",
        &ca,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=postgres",
        "-keyout",
        &key,
        "-out",
        &csr,
    ]);
    let ext = dir.join(format!("{tag}.ext"));
    std::fs::write(
        &ext,
        format!("subjectAltName={names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"),
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        &cert,
        "-extfile",
        ext.to_str().unwrap(),
    ]);
}

#[test]
fn tls_to_the_database_is_used_and_checked_as_sslmode_says() {
    let certs = crate::support::TempDir::new("pg-tls");
    // The server's certificate names localhost only; another CA signs
    // nothing the server shows.
    certificate(&certs.0, "server", "DNS:localhost");
    certificate(&certs.0, "stranger", "DNS:localhost");
    let cluster = Cluster::start_configured("tls", |data| {
        for (from, to) in [("server.pem", "server.crt"), ("server.key", "server.key")] {
            std::fs::copy(certs.0.join(from), data.join(to)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            data.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        "-c ssl=on".to_owned()
    });
    let url = cluster.database("tls");
    let ca = certs.0.join("server-ca.pem");
    let stranger = certs.0.join("stranger-ca.pem");
    let open = |url: &str| {
        redeploy_host::journal::Journal::open_postgres(
            &redeploy_host::journal::PostgresOptions::new(url),
        )
    };
    let encrypted = || {
        cluster.psql(
            "postgres",
            "SELECT COUNT(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'redeploy' AND ssl",
        )
    };
    let localhost = url.replace("127.0.0.1", "localhost");

    // verify-full: the chain and the name are checked.
    let journal = open(&format!(
        "{localhost}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))
    .unwrap();
    journal.ensure_hook_token("web", "t").unwrap();
    assert_ne!(encrypted(), "0", "the journal's connections use TLS");
    drop(journal);
    let err = open(&format!(
        "{url}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("certificate"),
        "127.0.0.1 is not a name in it: {err}"
    );
    let err = open(&format!(
        "{localhost}?sslmode=verify-full&sslrootcert={}",
        stranger.display()
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("certificate"), "another CA signed it: {err}");
    // verify-ca: the chain only.
    open(&format!(
        "{url}?sslmode=verify-ca&sslrootcert={}",
        ca.display()
    ))
    .unwrap();
    // require: encrypted, any certificate (as libpq), unless a root is given.
    let required = open(&format!("{url}?sslmode=require&application_name=required")).unwrap();
    required.ensure_hook_token("api", "t").unwrap();
    assert_ne!(
        cluster.psql(
            "postgres",
            "SELECT COUNT(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'required' AND ssl",
        ),
        "0",
        "sslmode=require encrypts"
    );
    let err = open(&format!(
        "{url}?sslmode=require&sslrootcert={}",
        stranger.display()
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("certificate"), "{err}");
}

#[test]
fn a_wrong_database_password_is_refused_and_never_shown() {
    let cluster = Cluster::start_configured("password", |data| {
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        String::new()
    });
    cluster.psql("postgres", "ALTER USER postgres PASSWORD 'Right-pa55word'");
    let url = cluster.database("password");
    let with = |password: &str| url.replace("postgres@", &format!("postgres:{password}@"));

    let err = redeploy_host::journal::Journal::open_postgres(
        &redeploy_host::journal::PostgresOptions::new(with("Wrong-pa55word")),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("Wrong-pa55word"), "{err}");

    // The CLI, with the URL in a file: the same, on stderr.
    let world = World::with_journal("pg-password", "", &web("0"), None);
    let url_file = world.dir.join("journal-url");
    std::fs::write(&url_file, with("Wrong-pa55word")).unwrap();
    let config = std::fs::read_to_string(&world.config).unwrap().replacen(
        "[[stacks]]",
        &format!(
            "[journal]\nurl_file = \"{}\"\n\n[[stacks]]",
            url_file.display()
        ),
        1,
    );
    std::fs::write(&world.config, config).unwrap();
    for args in [
        &["journal", "migrate"][..],
        &["history"],
        &["hook-url", "web"],
    ] {
        let out = world.redeploy(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("password authentication failed"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("Wrong-pa55word"), "{args:?}: {stderr}");
    }
    std::fs::write(&url_file, with("Right-pa55word")).unwrap();
    let out = world.redeploy(&["journal", "migrate"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Right-pa55word"));
}

#[test]
fn a_write_waits_for_the_journal_lock_no_longer_than_the_acquire_timeout() {
    let url = crate::support::postgres::shared().database("lock_timeout");
    let mut options = redeploy_host::journal::PostgresOptions::new(&url);
    options.acquire_timeout = std::time::Duration::from_millis(500);
    let journal = redeploy_host::journal::Journal::open_postgres(&options).unwrap();
    // Another session holds the journal's write lock for 10 s.
    let name = url.rsplit('/').next().unwrap().to_owned();
    let holder = std::thread::spawn(move || {
        crate::support::postgres::shared().psql(
            &name,
            &format!(
                "SELECT pg_advisory_lock({}); SELECT pg_sleep(10)",
                redeploy_host::journal::postgres::WRITE_LOCK
            ),
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let started = std::time::Instant::now();
    let err = journal
        .ensure_hook_token("web", "t")
        .unwrap_err()
        .to_string();
    let waited = started.elapsed();
    assert!(err.contains("lock timeout"), "{err}");
    assert!(
        waited < std::time::Duration::from_secs(5),
        "waited {waited:?}"
    );
    holder.join().unwrap();
    // Free again: the write goes through.
    journal.ensure_hook_token("web", "t").unwrap();
}

#[test]
fn a_write_under_the_journal_lock_is_durable_when_it_returns() {
    // Such a write commits without waiting for the disk (so the lock is
    // not held across a flush), and is then made durable before it returns.
    // A server stopped at once right after it (`-m immediate`: whatever the
    // server had not yet written is lost) must still have it, every time.
    const ROUNDS: usize = 5;
    let cluster = Cluster::start("durable");
    let url = cluster.database("durable");
    let name = url.rsplit('/').next().unwrap().to_owned();
    let options = redeploy_host::journal::PostgresOptions::new(&url);
    for round in 0..ROUNDS {
        let journal = redeploy_host::journal::Journal::open_postgres(&options).unwrap();
        let token = format!("token-{round}");
        assert_eq!(
            journal
                .ensure_hook_token(&format!("stack-{round}"), &token)
                .unwrap(),
            token
        );
        cluster.pg_ctl_stop();
        cluster.pg_ctl_start();
        assert_eq!(
            cluster.psql(
                &name,
                &format!("SELECT token FROM hook_tokens WHERE stack = 'stack-{round}'")
            ),
            token,
            "round {round}: the write was lost in the crash"
        );
    }
}

/// Text arguments of a statement.
fn texts(values: &[&str]) -> Vec<redeploy_host::journal::sql::Value> {
    values
        .iter()
        .map(|v| redeploy_host::journal::sql::Value::Text((*v).to_owned()))
        .collect()
}

/// A journal database of its own, opened (and migrated) directly, for
/// statements written by the test.
fn database_for(name: &str) -> redeploy_host::journal::postgres::Db {
    let url = crate::support::postgres::shared().database(name);
    let options = redeploy_host::journal::PostgresOptions::new(&url);
    redeploy_host::journal::postgres::Db::open(&options, true).unwrap()
}

/// The value of server key `name`, read after every transaction ended.
fn server_key(db: &redeploy_host::journal::postgres::Db, name: &str) -> Option<String> {
    db.read(|sql| {
        sql.query_opt(
            "SELECT value FROM server_keys WHERE name = ?1",
            &texts(&[name]),
        )?
        .map(|row| row.get::<String>(0))
        .transpose()
    })
    .unwrap()
}

#[test]
fn statements_sent_ahead_run_in_order_before_the_next_and_commit_with_their_transaction() {
    use redeploy_host::journal::sql::Commit;
    let db = database_for("ahead_in_order");
    let read_back = db
        .write(Commit::Exclusive, |sql| {
            // Sent with the query below, in one round trip, in this order:
            // the query sees both, the update after the insert.
            sql.execute_pipelined(
                "INSERT INTO server_keys (name, value) VALUES (?1, ?2)",
                &texts(&["first", "inserted"]),
            )?;
            sql.execute_pipelined(
                "UPDATE server_keys SET value = ?2 WHERE name = ?1",
                &texts(&["first", "updated"]),
            )?;
            let seen: String = sql
                .query_one(
                    "SELECT value FROM server_keys WHERE name = ?1",
                    &texts(&["first"]),
                )?
                .get(0)?;
            // The transaction's last statement: sent with its end.
            sql.execute_pipelined(
                "INSERT INTO server_keys (name, value) VALUES (?1, ?2)",
                &texts(&["last", "sent with the commit"]),
            )?;
            Ok(seen)
        })
        .unwrap();
    assert_eq!(read_back, "updated");
    assert_eq!(server_key(&db, "first").as_deref(), Some("updated"));
    assert_eq!(
        server_key(&db, "last").as_deref(),
        Some("sent with the commit")
    );
}

#[test]
fn a_statement_sent_ahead_that_fails_fails_its_transaction_with_its_own_error() {
    use redeploy_host::journal::sql::Commit;
    let db = database_for("ahead_fails");
    let insert = "INSERT INTO server_keys (name, value) VALUES (?1, ?2)";
    // Failing before a query: the query's call returns the insert's error
    // (not the "transaction is aborted" of the query itself), and nothing
    // of the transaction is kept.
    let err = db
        .write(Commit::Exclusive, |sql| {
            sql.execute_pipelined(insert, &texts(&["kept?", "no"]))?;
            sql.execute_pipelined(insert, &texts(&["twice", "1"]))?;
            // Not sent yet: no error here.
            sql.execute_pipelined(insert, &texts(&["twice", "2"]))?;
            sql.query_one("SELECT COUNT(*) FROM server_keys", &[])?;
            Ok(())
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("duplicate key"), "{err}");
    assert!(!err.contains("aborted"), "{err}");
    assert_eq!(server_key(&db, "kept?"), None);
    assert_eq!(server_key(&db, "twice"), None);
    // Failing as the last statement, sent with the commit: the commit
    // reports it, and nothing is kept either.
    let kinds = [
        Commit::Exclusive,
        Commit::ExclusiveRelaxed,
        Commit::Snapshot,
        Commit::Append,
        Commit::Relaxed,
    ];
    for commit in kinds {
        let err = db
            .write(commit, |sql| {
                sql.execute_pipelined(insert, &texts(&["kept?", "no"]))?;
                sql.execute_pipelined(insert, &texts(&["again", "1"]))?;
                sql.announce("redeploy_test", "announced")?;
                sql.execute_pipelined(insert, &texts(&["again", "2"]))
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate key"), "{commit:?}: {err}");
        assert_eq!(server_key(&db, "kept?"), None, "{commit:?}");
        assert_eq!(server_key(&db, "again"), None, "{commit:?}");
    }
    // Refused before it was sent (one argument for two parameters): the
    // commit is not sent after it either, and nothing is kept.
    for commit in kinds {
        let err = db
            .write(commit, |sql| {
                sql.execute_pipelined(insert, &texts(&["kept?", "no"]))?;
                sql.execute_pipelined(insert, &texts(&["one argument"]))
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("parameters"), "{commit:?}: {err}");
        assert_eq!(server_key(&db, "kept?"), None, "{commit:?}");
        // The same before a query.
        let err = db
            .write(commit, |sql| {
                sql.execute_pipelined(insert, &texts(&["kept?", "no"]))?;
                sql.execute_pipelined(insert, &texts(&["one argument"]))?;
                sql.query_one("SELECT COUNT(*) FROM server_keys", &[])?;
                Ok(())
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("parameters"), "{commit:?}: {err}");
        assert_eq!(server_key(&db, "kept?"), None, "{commit:?}");
    }
}
