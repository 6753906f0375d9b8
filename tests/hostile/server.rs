//! Issue 12, points 5, 6, 7 and 10: the server under resource attacks
//! (memory, connections, clients that never read), pruning, private and
//! expiring deploy logs, and the compiled-component cache treated as the
//! native code it is.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redeploy_host::journal::{DeployState, Journal};
use redeploy_host::notify::LogLinks;
use redeploy_host::plugin::cache::CacheStatus;
use redeploy_host::plugin::{wit, PluginRuntime, RuntimeOptions};

use crate::support::{hook, http, wait_for, ServerProcess, Stack, TempDir, World};

/// A stack without secrets whose hook URL alone triggers a deploy of
/// `command` (argv as TOML).
fn manual_stack(n: u32, label: &str, command: &str) -> String {
    let stack = Stack::new(label)
        .key("image", &format!("acme/{label}"))
        .token(n);
    stack
        .line(&format!("command = {command}"))
        .timeout("1m")
        .toml()
}

/// A world of [`manual_stack`] 1 "web" running `true`, with `[server]`
/// settings `server_toml`, and its server.
fn true_world(name: &str, server_toml: &str) -> (World, ServerProcess) {
    let world = World::new(name, server_toml, &manual_stack(1, "web", r#"["true"]"#));
    let server = world.start(&[]);
    (world, server)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The server's peak resident memory in KiB (`VmHWM`).
fn peak_rss_kib(server: &ServerProcess) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The `.cwasm` artifacts in a cache directory.
fn artifacts(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .collect()
}

/// A manual trigger of a stack without secrets, evaluated by `runtime`.
fn evaluates_correctly(runtime: &PluginRuntime) {
    let config =
        redeploy_host::config::parse(&manual_stack(1, "web", r#"["true"]"#), Path::new("/"))
            .unwrap();
    let delivery = wit::Delivery::Http(wit::HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: vec![],
        body: vec![],
    });
    let outcome = runtime
        .evaluate(
            &redeploy_host::stacks::wit_stacks(&config),
            &delivery,
            &redeploy_host::stacks::evaluation_context(&config, None),
        )
        .expect("no trap")
        .expect("a manual trigger evaluates");
    assert_eq!(outcome.decisions.len(), 1);
    assert!(matches!(
        outcome.decisions[0].action,
        wit::Action::Deploy(_)
    ));
}

// ---------------------------------------------------------------- point 10

#[test]
fn cache_tampered_artifact_is_not_loaded_and_the_hook_still_evaluates() {
    let dir = TempDir::new("cache-tamper");
    let cache = dir.join("cache");
    let first = PluginRuntime::cached(&cache, RuntimeOptions::default()).unwrap();
    assert_eq!(first.cache_status(), Some(&CacheStatus::Compiled));
    drop(first);
    let second = PluginRuntime::cached(&cache, RuntimeOptions::default()).unwrap();
    assert_eq!(second.cache_status(), Some(&CacheStatus::Loaded));
    drop(second);
    // Flip one byte in the middle of the compiled code.
    let artifact = artifacts(&cache).pop().expect("an artifact");
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&artifact, &bytes).unwrap();
    let third = PluginRuntime::cached(&cache, RuntimeOptions::default()).unwrap();
    match third.cache_status() {
        Some(CacheStatus::Refused(reason)) => assert!(reason.contains("valid tag"), "{reason}"),
        other => panic!("a tampered artifact was not refused: {other:?}"),
    }
    evaluates_correctly(&third);
    drop(third);
    // It was replaced by a good one.
    let fourth = PluginRuntime::cached(&cache, RuntimeOptions::default()).unwrap();
    assert_eq!(fourth.cache_status(), Some(&CacheStatus::Loaded));
}

#[test]
fn cache_group_writable_artifact_is_ignored() {
    let dir = TempDir::new("cache-group-writable");
    let cache = dir.join("cache");
    drop(PluginRuntime::cached(&cache, RuntimeOptions::default()).unwrap());
    let artifact = artifacts(&cache).pop().expect("an artifact");
    std::fs::set_permissions(&artifact, std::fs::Permissions::from_mode(0o664)).unwrap();
    let runtime = PluginRuntime::cached(&cache, RuntimeOptions::default()).unwrap();
    match runtime.cache_status() {
        Some(CacheStatus::Refused(reason)) => {
            assert!(reason.contains("group or others"), "{reason}")
        }
        other => panic!("a group-writable artifact was not refused: {other:?}"),
    }
    evaluates_correctly(&runtime);
    // The replacement is private.
    assert_eq!(mode(&artifacts(&cache).pop().unwrap()), 0o600);
}

#[test]
fn cache_directory_is_0700_and_its_key_0600() {
    let dir = TempDir::new("cache-modes");
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    drop(PluginRuntime::cached(&cache, RuntimeOptions::default()).unwrap());
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(&dir.join("cache.key")), 0o600);
    assert_eq!(mode(&artifacts(&cache).pop().unwrap()), 0o600);
}

// ----------------------------------------------------------------- point 7

/// A world with one manual stack running `true`, one deploy done; returns
/// the server, the deploy id and log links keyed like the server's.
fn one_deploy(name: &str, server_toml: &str) -> (World, ServerProcess, i64, LogLinks) {
    let world = World::new(
        name,
        server_toml,
        &manual_stack(1, "web", r#"["sh", "-c", "echo deployed"]"#),
    );
    let server = world.start(&[]);
    let r = server.post(&hook(1), &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    let deploys = world.settle(20);
    assert_eq!(deploys.len(), 1);
    let mut config = redeploy_host::config::load(&world.config).unwrap();
    // Links computed as a server with links on would, with the same key.
    config.server.log_links = Some(Duration::from_secs(3600));
    let journal =
        redeploy_host::journal::Journal::open(&world.dir.join("state").join("journal.sqlite3"))
            .unwrap();
    let links = LogLinks::new(&config, &journal).unwrap();
    (world, server, deploys[0].id, links)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn log_link_valid_serves_the_log_and_an_expired_one_is_404() {
    let (_world, server, id, links) = one_deploy("log-link-expired", "");
    let valid = format!("/logs/{id}/{}", links.key_for(id, now_secs() + 600));
    let r = http::request(&server.addr, "GET", &valid, &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("deployed"));
    let expired = format!("/logs/{id}/{}", links.key_for(id, now_secs() - 1));
    assert_eq!(
        http::request(&server.addr, "GET", &expired, &[], b"").status,
        404
    );
    server.terminate();
}

#[test]
fn log_link_with_a_changed_expiry_is_404() {
    let (_world, server, id, links) = one_deploy("log-link-changed", "");
    let expires = now_secs() + 60;
    let key = links.key_for(id, expires);
    let later = key.replacen(
        &expires.to_string(),
        &(expires + 86_400 * 365).to_string(),
        1,
    );
    assert_ne!(key, later);
    let r = http::request(
        &server.addr,
        "GET",
        &format!("/logs/{id}/{later}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 404);
    server.terminate();
}

#[test]
fn log_links_off_serve_nothing() {
    let (_world, server, id, links) = one_deploy(
        "log-links-off",
        "public_url = \"http://127.0.0.1:1\"\nlog_links = \"off\"",
    );
    let key = links.key_for(id, now_secs() + 600);
    let r = http::request(&server.addr, "GET", &format!("/logs/{id}/{key}"), &[], b"");
    assert_eq!(r.status, 404, "{}", r.text());
    // And the notifier issues no link (no log_url, no target_url).
    let config = redeploy_host::config::load(&_world.config).unwrap();
    let journal =
        redeploy_host::journal::Journal::open(&_world.dir.join("state").join("journal.sqlite3"))
            .unwrap();
    assert_eq!(LogLinks::new(&config, &journal).unwrap().url(id), None);
    server.terminate();
}

#[test]
fn deploy_log_and_event_files_are_0600_in_0700_directories() {
    let (world, server, id, _) = one_deploy("log-modes", "");
    let logs = world.dir.join("state").join("logs");
    assert_eq!(mode(&logs), 0o700);
    assert_eq!(mode(&logs.join("web")), 0o700);
    assert_eq!(mode(&logs.join("web").join(format!("{id}.log"))), 0o600);
    assert_eq!(
        mode(&logs.join("web").join(format!("{id}.event.json"))),
        0o600
    );
    assert_eq!(mode(&world.dir.join("state")), 0o700);
    server.terminate();
}

// ----------------------------------------------------------------- point 5

/// Sends `n` deliveries at once, each from its own thread.
fn at_once(
    addr: &str,
    n: usize,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Vec<http::Response> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (addr, headers, body, barrier) = (
                addr.to_string(),
                headers.clone(),
                body.clone(),
                barrier.clone(),
            );
            std::thread::spawn(move || {
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                barrier.wait();
                http::request(&addr, "POST", &hook(1), &h, &body)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn more_than_64_evaluations_held_at_once_are_all_answered() {
    let component = crate::trap::chaos_component();
    let world = World::new("instances-wait", "", &manual_stack(1, "web", r#"["true"]"#));
    let server = world.start(&["--plugin", component.to_str().unwrap()]);
    // Each evaluation spins a while, so all 100 overlap; the pool has 64
    // slots, and the other 36 must wait for one rather than fail.
    let answers = at_once(
        &server.addr,
        100,
        vec![("X-Redeploy-Chaos".into(), "spin:20000000".into())],
        Vec::new(),
    );
    // Every one is evaluated and decided: 202 when it queued a deploy, 200
    // when the same manual deploy was already queued (newest wins); never
    // a 500 for want of an instance.
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    let decided = |r: &http::Response| {
        matches!(r.status, 200 | 202) && r.json()["decisions"][0]["action"] == "deploy"
    };
    assert!(
        answers.iter().all(decided),
        "{statuses:?}\n{}",
        answers
            .iter()
            .find(|r| !decided(r))
            .map(|r| r.text())
            .unwrap_or_default()
    );
    assert!(statuses.contains(&202), "{statuses:?}");
    world.settle(60);
    server.terminate();
}

#[test]
fn many_large_bodies_at_once_stay_within_the_body_budget_and_excess_get_429() {
    const MIB: usize = 1024 * 1024;
    let component = crate::trap::chaos_component();
    let world = World::new(
        "body-budget",
        &format!(
            "max_body_bytes = {}\nmax_body_bytes_in_flight = {}",
            8 * MIB,
            32 * MIB
        ),
        &manual_stack(1, "web", r#"["true"]"#),
    );
    let server = world.start(&["--plugin", component.to_str().unwrap()]);
    let baseline = peak_rss_kib(&server);
    // Each evaluation loops until the 5 s deadline, holding its body: four
    // fit the budget, the others wait BODY_BUDGET_WAIT and get 429.
    let answers = at_once(
        &server.addr,
        24,
        vec![("X-Redeploy-Chaos".into(), "loop".into())],
        vec![b'x'; 8 * MIB],
    );
    let statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    let busy = answers.iter().filter(|r| r.status == 429).count();
    assert!(busy >= 8, "{statuses:?}");
    for r in answers.iter().filter(|r| r.status == 429) {
        assert_eq!(r.header("retry-after"), Some("5"));
        assert_eq!(r.json()["error"], "too-many-requests");
    }
    assert!(
        statuses.iter().all(|s| [429, 500].contains(s)),
        "{statuses:?}"
    );
    let peak = peak_rss_kib(&server);
    // 24 bodies of 8 MiB, each also copied into the component, would be
    // about 400 MiB; the budget holds four at a time.
    assert!(
        peak < baseline + 200 * 1024,
        "peak RSS {peak} KiB, baseline {baseline} KiB"
    );
    eprintln!("body budget: baseline {baseline} KiB, peak {peak} KiB, statuses {statuses:?}");
    // Still serving.
    assert_eq!(
        http::request(&server.addr, "GET", "/healthz", &[], b"").status,
        200
    );
    server.terminate();
}

/// Asserts that less than `secs` seconds passed since `started`.
#[track_caller]
fn assert_within(started: Instant, secs: u64) {
    let took = started.elapsed();
    assert!(took < Duration::from_secs(secs), "{took:?}");
}

/// Pipelines `GET /healthz` requests on one connection without reading any
/// answer, until the server stops reading (its writes are blocked) or the
/// connection fails. Returns the stream and the write error, if any.
fn never_read(addr: &str) -> std::thread::JoinHandle<std::io::Error> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
    let one = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").repeat(1000);
    std::thread::spawn(move || loop {
        if let Err(e) = s.write_all(one.as_bytes()) {
            return e;
        }
    })
}

#[test]
fn a_client_that_never_reads_is_dropped_after_the_write_timeout() {
    let (_world, server) = true_world("write-timeout", "write_timeout = \"1s\"");
    let writer = never_read(&server.addr);
    let started = Instant::now();
    let err = writer.join().unwrap();
    // The server closed the connection (reset or broken pipe), long before
    // the client's own 60 s write timeout.
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "{err:?} after {:?}",
        started.elapsed()
    );
    assert_within(started, 30);
    server.terminate();
}

#[test]
fn a_client_that_never_reads_does_not_stall_sigterm_beyond_shutdown_grace() {
    let (world, mut server) = true_world(
        "never-reads-shutdown",
        "shutdown_grace = \"2s\"\nwrite_timeout = \"10m\"",
    );
    let _writer = never_read(&server.addr);
    // Let the server fill its send buffer and block writing.
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGTERM) };
    let exited = wait_for(30, "the server to stop after SIGTERM", || {
        server.child.try_wait().unwrap()
    });
    assert!(exited.success(), "{exited:?}");
    assert_within(started, 15);
    let log = std::fs::read_to_string(world.dir.join("server.log")).unwrap();
    assert!(
        log.contains("connections still open after the shutdown grace"),
        "{log}"
    );
}

#[test]
fn connections_beyond_the_cap_wait_for_a_free_one() {
    let (_world, server) = true_world(
        "connection-cap",
        "max_connections = 2\nheader_timeout = \"60s\"",
    );
    // The start-up health check's connection is closed; hold both slots.
    std::thread::sleep(Duration::from_millis(300));
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(&server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut third = TcpStream::connect(&server.addr).unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 256];
    let early = third.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "a third connection was served while two were open: {early:?}"
    );
    drop(held);
    third
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = third.read_to_end(&mut answer);
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    server.terminate();
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_its_timeout() {
    let (_world, server) = true_world("idle-keep-alive", "header_timeout = \"1s\"");
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let started = Instant::now();
    // Reads the answer, then EOF when the server closes the idle connection.
    let mut all = Vec::new();
    let read = s.read_to_end(&mut all);
    assert!(read.is_ok(), "{read:?}: the idle connection was not closed");
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    assert_within(started, 10);
    server.terminate();
}

// ----------------------------------------------------------------- point 6

#[test]
fn old_deploys_and_deliveries_are_pruned_with_their_files_at_start() {
    let world = World::new(
        "prune",
        "keep_deploys = \"1s\"\nkeep_deploys_min = 1\nkeep_deliveries = \"1s\"",
        &manual_stack(1, "web", r#"["sh", "-c", "echo deployed"]"#),
    );
    let server = world.start(&[]);
    for _ in 0..3 {
        assert_eq!(server.post(&hook(1), &[], b"").status, 202);
        world.settle(20);
    }
    server.terminate();
    let deploys = world.deploys();
    assert_eq!(deploys.len(), 3);
    let logs = world.dir.join("state").join("logs").join("web");
    for d in &deploys {
        assert!(logs.join(format!("{}.log", d.id)).exists());
    }
    assert!(!world.journal().deliveries(100).unwrap().is_empty());
    // A row naming another deploy's log (an imported export, a writer of
    // the database) deletes its own deploy's files, never the one named.
    let kept_log = logs.join(format!("{}.log", deploys[2].id));
    let db = rusqlite::Connection::open(Journal::path_in(&world.dir.join("state"))).unwrap();
    let forged = db
        .execute(
            "UPDATE deploys SET log_path = ?1 WHERE id = ?2",
            rusqlite::params![kept_log.display().to_string(), deploys[0].id],
        )
        .unwrap();
    assert_eq!(forged, 1);
    drop(db);
    std::thread::sleep(Duration::from_millis(1100));
    let server = world.start(&[]);
    let kept = world.deploys();
    assert_eq!(
        kept.iter().map(|d| d.id).collect::<Vec<_>>(),
        [deploys[2].id]
    );
    for d in &deploys[..2] {
        assert!(!logs.join(format!("{}.log", d.id)).exists());
        assert!(!logs.join(format!("{}.event.json", d.id)).exists());
    }
    assert!(logs.join(format!("{}.log", deploys[2].id)).exists());
    assert!(world.journal().deliveries(100).unwrap().is_empty());
    server.terminate();
}

#[test]
fn refused_deliveries_beyond_the_rate_are_counted_not_recorded() {
    let stack = Stack::new("web")
        .follows("acme/web", "main")
        .secret("s3cret-s3cret");
    let stack = stack.token(1).line("command = [\"true\"]").toml();
    let world = World::new(
        "refused-rate",
        "max_refused_deliveries_per_minute = 3",
        &stack,
    );
    let server = world.start(&[]);
    let body = crate::support::deliveries::push_body(&crate::support::deliveries::sha(1));
    for i in 0..10 {
        let r = server.post(
            &hook(1),
            &[
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", &format!("bad-{i}")),
                ("X-Hub-Signature-256", "sha256=00"),
                ("Content-Type", "application/json"),
            ],
            &body,
        );
        assert_eq!(r.status, 401, "{}", r.text());
    }
    let metrics = http::request(&server.addr, "GET", "/metrics", &[], b"").text();
    assert!(
        metrics.contains("redeploy_refused_unrecorded_total 7"),
        "{metrics}"
    );
    let rows = world.journal().deliveries(100).unwrap();
    assert_eq!(
        rows.iter().filter(|d| d.recorded.status == 401).count(),
        3,
        "{rows:?}"
    );
    server.terminate();
    // A stop writes the summary of the minute.
    let rows = world.journal().deliveries(100).unwrap();
    let summary = rows
        .iter()
        .find(|d| {
            d.recorded.event.as_deref() == Some(redeploy_host::retention::REFUSED_SUMMARY_EVENT)
        })
        .unwrap_or_else(|| panic!("no summary row: {rows:?}"));
    assert!(
        summary
            .recorded
            .summary
            .contains("\"refused_unrecorded\":7"),
        "{}",
        summary.recorded.summary
    );
}

/// A deploy log's output and its last line, the trailer redeploy writes.
fn split_trailer(log: &str) -> (&str, &str) {
    let body = log.strip_suffix('\n').unwrap_or(log);
    let cut = body.rfind('\n').map_or(0, |i| i + 1);
    (&log[..cut], &body[cut..])
}

/// The log of deploy `id` of stack `stack`.
fn deploy_log(world: &World, stack: &str, id: i64) -> String {
    let path = world.dir.join("state").join("logs").join(stack);
    std::fs::read_to_string(path.join(format!("{id}.log"))).unwrap()
}

#[test]
fn a_deploy_log_keeps_stdout_and_stderr_in_the_order_written() {
    // Lines alternate between stdout and stderr, many times over: two pipes
    // read by two tasks would reorder some of them under load.
    let world = World::new(
        "log-order",
        "",
        &manual_stack(
            1,
            "web",
            r#"["sh", "-c", "i=0; while [ $i -lt 300 ]; do echo out $i; echo err $i >&2; i=$((i+1)); done"]"#,
        ),
    );
    let server = world.start(&[]);
    assert_eq!(server.post(&hook(1), &[], b"").status, 202);
    let deploys = world.settle(30);
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    let log = deploy_log(&world, "web", deploys[0].id);
    let (output, trailer) = split_trailer(&log);
    let expected: String = (0..300).map(|i| format!("out {i}\nerr {i}\n")).collect();
    assert_eq!(output, expected);
    let id = deploys[0].id;
    assert!(
        trailer.starts_with(&format!(
            "-- redeploy: deploy #{id} succeeded (exit code 0) after "
        )),
        "{trailer}"
    );
    server.terminate();
}

#[test]
fn a_deploy_log_over_its_cap_is_cut_with_one_marker_and_the_deploy_goes_on() {
    let world = World::new(
        "log-cap",
        "max_deploy_log_bytes = 1000",
        &manual_stack(
            1,
            "web",
            r#"["sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done; echo on stderr >&2"]"#,
        ),
    );
    let server = world.start(&[]);
    assert_eq!(server.post(&hook(1), &[], b"").status, 202);
    let deploys = world.settle(30);
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    let log = deploy_log(&world, "web", deploys[0].id);
    let (output, trailer) = split_trailer(&log);
    let marker = "[... output truncated at 1000 bytes ...]";
    assert_eq!(output.matches(marker).count(), 1, "{log}");
    assert!(output.len() <= 1000 + marker.len() + 2, "{}", output.len());
    assert!(output.starts_with("line 0\n"));
    // The cap is on the command's output; the trailer still ends the log.
    assert!(trailer.contains("succeeded (exit code 0)"), "{trailer}");
    server.terminate();
}

#[test]
fn a_deploy_log_ends_with_how_the_deploy_ended() {
    // A command that fails, one killed by a signal, one that times out.
    let stacks = [
        manual_stack(1, "exits", r#"["sh", "-c", "echo trying; exit 3"]"#),
        manual_stack(2, "signalled", r#"["sh", "-c", "kill -TERM $$"]"#),
        Stack::new("slow")
            .key("image", "acme/slow")
            .token(3)
            .line(r#"command = ["sleep", "30"]"#)
            .timeout("1s")
            .toml(),
    ]
    .concat();
    let world = World::new("log-trailer", "", &stacks);
    let server = world.start(&[]);
    for n in 1..=3 {
        assert_eq!(server.post(&hook(n), &[], b"").status, 202);
    }
    let deploys = world.settle(30);
    let trailer = |stack: &str| {
        let d = deploys.iter().find(|d| d.queued.stack == stack).unwrap();
        assert_eq!(d.state, DeployState::Failed, "{d:?}");
        let log = deploy_log(&world, stack, d.id);
        (d.id, split_trailer(&log).1.to_string(), log)
    };
    let (id, last, log) = trailer("exits");
    assert!(log.starts_with("trying\n"), "{log}");
    assert!(
        last.starts_with(&format!(
            "-- redeploy: deploy #{id} failed (exit code 3) after "
        )),
        "{last}"
    );
    let (id, last, _) = trailer("signalled");
    assert!(
        last.starts_with(&format!(
            "-- redeploy: deploy #{id} failed (killed by signal 15) after "
        )),
        "{last}"
    );
    let (id, last, _) = trailer("slow");
    assert!(
        last.starts_with(&format!(
            "-- redeploy: deploy #{id} failed (timed out after 1s) after 1."
        )),
        "{last}"
    );
    server.terminate();
}
