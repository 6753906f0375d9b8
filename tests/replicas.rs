//! Replicas on one PostgreSQL journal, in the corners an adversarial review
//! found: each test failed before its fix (a waiting replica holding a
//! deploy slot, a replica cancelling a stack it lacks, a replica cut off
//! from the database while recording its process group never fencing).

use std::time::{Duration, Instant};

use redeploy_host::journal::{DeployState, Journal, PostgresOptions};

use crate::support::replicas::{replica, started, try_push};
use crate::support::{free_port, wait_for, TempDir};

fn push(addr: &str, token_n: u32, n: usize, delivery: &str) -> u16 {
    try_push(addr, token_n, n, delivery).expect("the replica answers")
}

fn journal(url: &str) -> Journal {
    Journal::open_postgres_for_reading(&PostgresOptions::new(url)).unwrap()
}

/// Was a defect: a replica's worker takes one of its `max_concurrent_deploys`
/// permits *before* it waits for the stack's lease, so a replica that only
/// waits for a stack another replica is deploying runs nothing else.
#[test]
fn a_replica_waiting_for_a_lease_does_not_hold_a_deploy_slot() {
    let dir = TempDir::new("replicas-permit");
    let url = crate::support::postgres::shared().database("replicas-permit");
    let stacks = [("s0", 1, "25"), ("s1", 2, "0.05")];
    let server = "max_concurrent_deploys = 1";
    let a = replica(&dir, "a", &url, server, "lease = \"2s\"", &stacks);
    let b = replica(&dir, "b", &url, server, "lease = \"2s\"", &stacks);
    let (pa, pb) = (a.start(), b.start());
    let record = dir.join("record");
    assert_eq!(push(&a.addr(), 1, 1, "p-1"), 202);
    wait_for(10, "s0 #1 to start", || {
        (!started(&record, "s0").is_empty()).then_some(())
    });
    // A newer push of s0 while #1 runs (25 s): both replicas hear of it.
    assert_eq!(push(&a.addr(), 1, 2, "p-2"), 202);
    std::thread::sleep(Duration::from_secs(2));
    // An unrelated stack: one replica is busy, the other runs nothing.
    let sent = Instant::now();
    assert_eq!(push(&b.addr(), 2, 3, "p-3"), 202);
    let ran = (0..100).find_map(|_| {
        if !started(&record, "s1").is_empty() {
            return Some(sent.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
        None
    });
    pa.terminate();
    pb.terminate();
    assert!(
        ran.is_some(),
        "s1 did not start within 10 s although one replica was idle (its only slot waits for s0's lease)"
    );
}

/// Was a defect: a replica adopts every queued deploy of the journal, also of a
/// stack it does not know (a rolling config reload, runner replicas with
/// their own stacks), and cancels it as "no longer configured" although
/// another replica would run it.
#[test]
fn a_replica_never_cancels_deploys_of_a_stack_it_does_not_know() {
    let dir = TempDir::new("replicas-unknown");
    let url = crate::support::postgres::shared().database("replicas-unknown");
    let server = "max_concurrent_deploys = 1";
    let a = replica(
        &dir,
        "a",
        &url,
        server,
        "lease = \"2s\"",
        &[("s0", 1, "20"), ("s1", 2, "0.05")],
    );
    let b = replica(
        &dir,
        "b",
        &url,
        server,
        "lease = \"2s\"",
        &[("s0", 1, "20")],
    );
    let pa = a.start();
    let record = dir.join("record");
    assert_eq!(push(&a.addr(), 1, 1, "u-1"), 202);
    wait_for(10, "s0 #1 to start on a", || {
        (!started(&record, "s0").is_empty()).then_some(())
    });
    let pb = b.start();
    // `a` (which has s1) is busy; `b` does not know s1.
    assert_eq!(push(&a.addr(), 2, 2, "u-2"), 202);
    std::thread::sleep(Duration::from_secs(8));
    let deploys = journal(&url).deploys(Some("s1"), 10).unwrap();
    pa.terminate();
    pb.terminate();
    assert_ne!(
        deploys[0].state,
        DeployState::Cancelled,
        "s1's deploy was cancelled by the replica that lacks s1: {:?}",
        deploys[0].detail
    );
}

/// Was a defect: the deploy task records the command's process group
/// (`set_pgid`, a synchronous journal write) after spawning it and before
/// it watches `stop`; a replica cut off from the database exactly then
/// never gets to kill its command when its lease is lost, while another
/// replica takes the lease once it runs out and starts the next deploy.
#[test]
fn a_replica_cut_off_while_recording_the_process_group_still_fences() {
    let dir = TempDir::new("replicas-fence");
    let cluster = crate::support::postgres::shared();
    let url = cluster.database("replicas-fence");
    // The cluster's port and database name from the URL.
    let (hostport, name) = url
        .strip_prefix("postgres://postgres@")
        .unwrap()
        .split_once('/')
        .unwrap();
    let pg_port: u16 = hostport.rsplit(':').next().unwrap().parse().unwrap();
    let proxy_port = free_port();
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let needle: String = boot_id.trim().bytes().map(|b| format!("{b:02x}")).collect();
    let flag = dir.join("frozen");
    // Stopped when dropped, so a failing assertion leaves no proxy behind
    // (it would hold the test run's output open).
    let mut proxy = KillOnDrop(
        std::process::Command::new("python3")
            .arg(crate::support::workspace().join("tests/support/pg_cutoff.py"))
            .args([proxy_port.to_string(), pg_port.to_string(), needle])
            .arg(&flag)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The proxy says when it listens (a fixed sleep lost that race on a
    // loaded machine: the replica found nothing listening).
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(proxy.0.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "listening");
    let via_proxy = format!("postgres://postgres@127.0.0.1:{proxy_port}/{name}");
    let stacks = [("s0", 1, "30")];
    let a = replica(&dir, "a", &via_proxy, "", "lease = \"2s\"", &stacks);
    let b = replica(&dir, "b", &url, "", "lease = \"2s\"", &stacks);
    let pa = a.start();
    assert_eq!(push(&a.addr(), 1, 1, "f-1"), 202);
    wait_for(
        15,
        "a to be cut off while recording the process group",
        || flag.exists().then_some(()),
    );
    // The other replica, on the database directly; a newer push.
    let pb = b.start();
    assert_eq!(push(&b.addr(), 1, 2, "f-2"), 202);
    let record = dir.join("record");
    let both = (0..200).find_map(|_| {
        let s = started(&record, "s0");
        if s.len() >= 2 {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
        None
    });
    std::thread::sleep(Duration::from_millis(500));
    let overlaps = std::fs::read_to_string(record.join("s0/overlaps")).unwrap_or_default();
    let deploys = journal(&url).deploys(Some("s0"), 10).unwrap();
    pa.kill();
    pb.kill();
    drop(proxy);
    eprintln!(
        "started: {both:?}; deploys: {:?}",
        deploys
            .iter()
            .map(|d| (d.id, d.state, d.detail.clone()))
            .collect::<Vec<_>>()
    );
    assert!(
        overlaps.is_empty(),
        "two deploys of s0 ran at once: {overlaps}"
    );
}

/// The database stops while deliveries keep arriving at two replicas:
/// they answer `503` (nothing accepted that was not recorded), reconnect
/// when it is back, and every delivery accepted before, during or after
/// was deployed, superseded or (running when the database went)
/// interrupted; the newest push of each stack runs.
#[test]
fn replicas_answer_503_while_the_database_is_down_and_lose_nothing_accepted() {
    let cluster = crate::support::postgres::Cluster::start("replicas-down");
    let url = cluster.database("down");
    let dir = TempDir::new("replicas-down");
    let stacks = [("s0", 1, "0.05"), ("s1", 2, "0.05")];
    let replicas: Vec<_> = (0..2)
        .map(|r| replica(&dir, &format!("r{r}"), &url, "", "lease = \"2s\"", &stacks))
        .collect();
    let servers: Vec<_> = replicas.iter().map(|r| r.start()).collect();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answers = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                let (r, stack) = (n % 2, (n / 2) % 2);
                let delivery = format!("down-{n}");
                let status = try_push(&replicas[r].addr(), stack as u32 + 1, n, &delivery);
                answers
                    .lock()
                    .unwrap()
                    .push((delivery, status, Instant::now()));
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        std::thread::sleep(Duration::from_secs(1));
        cluster.pg_ctl_stop();
        std::thread::sleep(Duration::from_secs(4));
        cluster.pg_ctl_start();
        std::thread::sleep(Duration::from_secs(8));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let answers = answers.into_inner().unwrap();
    let count = |status: u16| answers.iter().filter(|a| a.1 == Some(status)).count();
    assert!(
        count(503) > 0,
        "no delivery was refused while the database was down"
    );
    for (delivery, status, _) in &answers {
        assert!(matches!(status, Some(202 | 503)), "{delivery}: {status:?}");
    }
    // Accepted after the database came back: the replicas reconnected.
    let last_refused = answers
        .iter()
        .filter(|a| a.1 == Some(503))
        .map(|a| a.2)
        .max()
        .unwrap();
    assert!(
        answers
            .iter()
            .any(|a| a.1 == Some(202) && a.2 > last_refused),
        "nothing was accepted after the database came back"
    );
    // One more push per stack, then everything settles.
    for stack in 0..2u32 {
        let status = try_push(
            &replicas[0].addr(),
            stack + 1,
            10_000 + stack as usize,
            &format!("after-{stack}"),
        );
        assert_eq!(status, Some(202));
    }
    let journal = Journal::open_postgres_for_reading(&PostgresOptions::new(url.clone())).unwrap();
    let deploys = wait_for(60, "every deploy to end", || {
        let all = journal.deploys(None, 10_000).unwrap();
        all.iter().all(|d| d.state.is_final()).then_some(all)
    });
    for (delivery, status, _) in &answers {
        if *status != Some(202) {
            continue;
        }
        let d = deploys
            .iter()
            .find(|d| d.queued.delivery_id.as_deref() == Some(delivery.as_str()))
            .unwrap_or_else(|| panic!("{delivery} was accepted but has no deploy"));
        assert!(
            // Interrupted: it ran when the database went, and its runner,
            // unable to renew its lease, stopped it.
            matches!(
                d.state,
                DeployState::Succeeded | DeployState::Cancelled | DeployState::Interrupted
            ),
            "{delivery}: #{} {} {:?}",
            d.id,
            d.state,
            d.detail
        );
    }
    for stack in 0..2 {
        let after = deploys
            .iter()
            .find(|d| d.queued.delivery_id.as_deref() == Some(format!("after-{stack}").as_str()))
            .unwrap();
        assert_eq!(after.state, DeployState::Succeeded, "{:?}", after.detail);
    }
    let record = dir.join("record");
    for stack in ["s0", "s1"] {
        assert!(
            !record.join(stack).join("overlaps").exists(),
            "{stack} overlapped"
        );
    }
    eprintln!(
        "{} deliveries: {} accepted, {} refused while the database was down",
        answers.len(),
        count(202),
        count(503)
    );
    for server in servers {
        assert!(server.terminate().success());
    }
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Was a defect: the runner ran the newest queued deploy of a stack as any
/// replica had decided it, so a replica whose file said another branch (a
/// rolling change, a mistake) decided what every runner deployed. The
/// runner now checks the deploy's ref against its own configuration.
#[test]
fn a_deploy_queued_by_a_replica_following_another_branch_is_not_run_by_one_that_does_not() {
    let dir = TempDir::new("replicas-branch");
    let url = crate::support::postgres::shared().database("replicas-branch");
    let stacks = [("s0", 1, "0.05")];
    let runner = replica(&dir, "runner", &url, "", "lease = \"2s\"", &stacks);
    let queuer = replica(
        &dir,
        "queuer",
        &url,
        "",
        "runner = false\nlease = \"2s\"",
        &stacks,
    );
    // The runner's file follows `release`; the queuer's, `main`.
    let text = std::fs::read_to_string(&runner.config).unwrap();
    let moved = text.replace("branch = \"main\"", "branch = \"release\"");
    assert_ne!(moved, text);
    std::fs::write(&runner.config, moved).unwrap();
    let (pr, pq) = (runner.start(), queuer.start());
    assert_eq!(
        push(&queuer.addr(), 1, 1, "b-1"),
        202,
        "main, as the queuer follows it"
    );
    let journal = journal(&url);
    let deploy = wait_for(20, "the deploy to end", || {
        journal
            .deploys(Some("s0"), 10)
            .unwrap()
            .into_iter()
            .find(|d| d.state.is_final())
    });
    pr.terminate();
    pq.terminate();
    assert_eq!(deploy.state, DeployState::Cancelled);
    assert_eq!(
        deploy.detail.as_deref(),
        Some("not run: stack \"s0\" as configured here does not follow refs/heads/main: push to \"main\" does not match branch \"release\"")
    );
    assert_eq!(deploy.started_at_ms, None);
    assert!(
        started(&dir.join("record"), "s0").is_empty(),
        "the command never ran"
    );
}
