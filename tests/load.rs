//! Faults under load, crashes and a failing journal, on loopback.
//!
//! - Thousands of deliveries for ten stacks over 64 keep-alive connections,
//!   mixing valid pushes, redeliveries, bad signatures and malformed bodies,
//!   while deploy commands succeed, fail and hang past their timeout; then
//!   the journal is checked (every accepted deploy final, never two running
//!   for one stack, the newest commit last, nothing from a rejected
//!   delivery) and the server's memory stayed bounded.
//! - The same load with SIGKILLs of the server at seeded random moments and
//!   restarts on the same state directory: nothing accepted is lost.
//! - An unwritable or full state directory fails at start with a clear
//!   error; a journal that cannot be written answers 503.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redeploy_host::journal::{DeployRecord, DeployState, Journal};
use serde_json::json;

use crate::support::{hmac_sha256_hex, wait_for, ServerProcess, World};

mod client;
use client::{send_all, Answer, Conn};

/// Stacks under load.
const STACKS: usize = 10;
/// Concurrent keep-alive connections.
const CONNECTIONS: usize = 64;

/// The stand-in deploy command of these tests. Like the one in `serve.rs`
/// it detects overlapping runs of one stack with an atomic `mkdir` lock,
/// and it picks its fate from the commit's last hex digit: 1, 5, 9, d fail;
/// 3, 7, b, f hang until the deploy timeout kills them (unless `NO_HANG`);
/// the others succeed.
const STAND_IN: &str = r#"#!/bin/sh
set -u
dir="$RECORD_DIR"
id="$REDEPLOY_DEPLOY_ID"
if ! mkdir "$dir/running.lock" 2>/dev/null; then echo "$id" >> "$dir/overlaps"; fi
echo $$ > "$dir/running.lock/pid"
trap 'echo "killed $id" >> "$dir/timeline"; rm -rf "$dir/running.lock"; exit 143' TERM
echo "start $id $REDEPLOY_SHA" >> "$dir/timeline"
cat > /dev/null
code=0
case "$REDEPLOY_SHA" in
  *1|*5|*9|*d) code=1 ;;
  *3|*7|*b|*f) if [ -z "${NO_HANG:-}" ]; then sleep 30 & wait $!; fi ;;
esac
sleep 0.05
echo "end $id" >> "$dir/timeline"
rm -rf "$dir/running.lock"
exit $code
"#;

fn secret(stack: usize) -> String {
    format!("load-secret-{stack}-Hq3Zm8Xc")
}

fn token(stack: usize) -> String {
    format!("load-hook-token-{stack:02}-abcdefghijklmnopqrstu")
}

/// The commit of `stack` pushed in `round`: its last hex digit is the
/// round's, which decides the stand-in's fate.
fn commit(stack: usize, round: usize) -> String {
    format!("{:02x}{round:038x}", stack + 1)
}

/// Ten stacks on acme/web `main`, each with its own secret, token and
/// record dir, deploying with [`STAND_IN`] under a 1 s timeout.
fn world(name: &str, server_toml: &str, no_hang: bool) -> World {
    let mut stacks = String::new();
    for i in 0..STACKS {
        let hang = if no_hang { ", NO_HANG = \"1\"" } else { "" };
        stacks.push_str(&format!(
            r#"
[[stacks]]
name = "s{i}"
repository = "acme/web"
branch = "main"
secrets = ["{secret}"]
hook_token = "{token}"
command = ["@DIR@/load-standin.sh"]
timeout = "1s"
env = {{ RECORD_DIR = "@RECORD:s{i}@"{hang} }}
"#,
            secret = secret(i),
            token = token(i),
        ));
    }
    let world = World::new(name, server_toml, &stacks);
    let path = world.dir.join("load-standin.sh");
    std::fs::write(&path, STAND_IN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    world
}

/// What a delivery of the load is.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    /// A signed push with a fresh delivery id.
    Valid,
    /// The same request as a `Valid` one, delivery id included.
    Redelivery,
    /// Signed with another stack's secret.
    BadSignature,
    /// Signed garbage.
    Malformed,
}

#[derive(Clone, Debug)]
struct Job {
    stack: usize,
    round: usize,
    kind: Kind,
    delivery: String,
}

impl Job {
    fn request(&self) -> (String, Vec<(String, String)>, Vec<u8>) {
        let sha = commit(self.stack, self.round);
        let body = match self.kind {
            Kind::Malformed => format!("{{\"ref\": \"refs/heads/main\", \"after\": \"{sha}\", ")
                .into_bytes(),
            _ => json!({
                "ref": "refs/heads/main",
                "before": "1".repeat(40),
                "after": sha,
                "repository": {"full_name": "acme/web"},
                "pusher": {"name": "load"},
                "commits": [{"id": sha, "message": "change", "added": [], "removed": [], "modified": ["a"]}],
                "head_commit": {"id": sha, "message": "change"},
            })
            .to_string()
            .into_bytes(),
        };
        let key = match self.kind {
            Kind::BadSignature => secret((self.stack + 1) % STACKS),
            _ => secret(self.stack),
        };
        let headers = vec![
            ("X-GitHub-Event".into(), "push".into()),
            ("X-GitHub-Delivery".into(), self.delivery.clone()),
            (
                "X-Hub-Signature-256".into(),
                format!("sha256={}", hmac_sha256_hex(&key, &body)),
            ),
            ("Content-Type".into(), "application/json".into()),
        ];
        (format!("/hooks/{}", token(self.stack)), headers, body)
    }
}

/// `per_stack` deliveries of each kind mix per stack and round: mostly
/// valid pushes and redeliveries, some bad signatures and malformed bodies.
fn round_jobs(round: usize, per_stack: usize, tag: &str, rng: &mut Rng) -> Vec<Job> {
    let mut jobs = Vec::new();
    for stack in 0..STACKS {
        let mut valid: Vec<String> = Vec::new();
        for k in 0..per_stack {
            let kind = match k % 5 {
                0 | 1 => Kind::Valid,
                2 => Kind::Redelivery,
                3 => Kind::BadSignature,
                _ => Kind::Malformed,
            };
            let delivery = match kind {
                Kind::Redelivery if !valid.is_empty() => {
                    let i = rng.below(valid.len() as u64) as usize;
                    valid[i].clone()
                }
                Kind::Redelivery | Kind::Valid => format!("{tag}-ok-{stack}-{round}-{k}"),
                Kind::BadSignature => format!("{tag}-badsig-{stack}-{round}-{k}"),
                Kind::Malformed => format!("{tag}-malformed-{stack}-{round}-{k}"),
            };
            let kind = if kind == Kind::Redelivery && valid.is_empty() {
                Kind::Valid
            } else {
                kind
            };
            if kind == Kind::Valid {
                valid.push(delivery.clone());
            }
            jobs.push(Job {
                stack,
                round,
                kind,
                delivery,
            });
        }
    }
    rng.shuffle(&mut jobs);
    jobs
}

/// A small deterministic generator (xorshift64*), so a failing run can be
/// repeated from its printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// The resident set size of `pid`, in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Checks every answer against its kind: rejected deliveries get their
/// status, accepted ones 202 (or 200 when superseded or a duplicate).
fn check_answers(answers: &[Answer], allow_unknown: bool) -> Vec<String> {
    let mut problems = Vec::new();
    for a in answers {
        let ok = match (&a.job.kind, a.status) {
            (_, None) => allow_unknown,
            // The server was killed while it read or evaluated: a 5xx is not
            // possible from a kill, only a broken connection.
            (Kind::BadSignature, Some(s)) => s == 401,
            (Kind::Malformed, Some(s)) => s == 400,
            (Kind::Valid | Kind::Redelivery, Some(202)) => a.decision()["state"] == "queued",
            (Kind::Valid | Kind::Redelivery, Some(200)) => {
                matches!(
                    a.decision()["state"].as_str(),
                    Some("duplicate" | "cancelled")
                )
            }
            _ => false,
        };
        if !ok {
            problems.push(format!(
                "{:?} {} got {:?}: {}",
                a.job.kind,
                a.job.delivery,
                a.status,
                String::from_utf8_lossy(&a.body)
            ));
        }
    }
    problems
}

/// The journal's own consistency: SQLite's integrity check, every deploy
/// final, every transition legal, never two deploys of a stack running at
/// once, commits only moving forward per stack, the newest last, and no
/// deploy that no accepted delivery accounts for.
fn check_journal(world: &World, answers: &[Answer], newest_round: usize) -> Vec<String> {
    let mut problems = Vec::new();
    let path = Journal::path_in(&world.dir.join("state"));
    let conn =
        rusqlite::Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    if integrity != "ok" {
        problems.push(format!("integrity_check: {integrity}"));
    }
    let journal = world.journal();
    let deploys = world.deploys();

    // Every deploy final, with legal transitions.
    for d in &deploys {
        if !d.state.is_final() {
            problems.push(format!("deploy {} is still {:?}", d.id, d.state));
        }
        let states: Vec<DeployState> = journal
            .transitions(d.id)
            .unwrap()
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let legal = states.first() == Some(&DeployState::Queued)
            && states.windows(2).all(|w| w[0].can_transition_to(w[1]))
            && states.last() == Some(&d.state);
        if !legal {
            problems.push(format!("deploy {}: transitions {states:?}", d.id));
        }
    }

    // One deploy per delivery id, each from a valid delivery, and the
    // deploys created by answered deliveries all there.
    let mut by_delivery: HashMap<&str, Vec<i64>> = HashMap::new();
    for d in &deploys {
        let id = d.queued.delivery_id.as_deref().unwrap_or("");
        by_delivery.entry(id).or_default().push(d.id);
        if !id.contains("-ok-") {
            problems.push(format!("deploy {} came from delivery {id:?}", d.id));
        }
    }
    for (id, ds) in &by_delivery {
        if ds.len() > 1 {
            problems.push(format!("delivery {id} made deploys {ds:?}"));
        }
    }
    let known: BTreeSet<i64> = deploys.iter().map(|d| d.id).collect();
    for a in answers {
        if let Some(id) = a.created() {
            if !known.contains(&id) {
                problems.push(format!(
                    "deploy {id} accepted for {} is not in the journal",
                    a.job.delivery
                ));
            }
        }
        if a.status.is_some_and(|s| s >= 400) && by_delivery.contains_key(a.job.delivery.as_str()) {
            problems.push(format!("rejected delivery {} deployed", a.job.delivery));
        }
    }
    // With every answer known, every deploy is accounted for by one.
    if answers.iter().all(|a| a.status.is_some()) {
        let created: BTreeSet<i64> = answers.iter().filter_map(Answer::created).collect();
        if created != known {
            problems.push(format!(
                "deploys without an accepting answer: {:?}",
                known.difference(&created).collect::<Vec<_>>()
            ));
        }
    }

    // Per stack: runs never overlap, commits move forward, newest last.
    let mut per_stack: BTreeMap<&str, Vec<&DeployRecord>> = BTreeMap::new();
    for d in deploys.iter().filter(|d| d.started_at_ms.is_some()) {
        per_stack
            .entry(d.queued.stack.as_str())
            .or_default()
            .push(d);
    }
    for i in 0..STACKS {
        let name = format!("s{i}");
        let Some(runs) = per_stack.get_mut(name.as_str()) else {
            problems.push(format!("stack {name} never deployed"));
            continue;
        };
        runs.sort_by_key(|d| (d.started_at_ms, d.id));
        for w in runs.windows(2) {
            if w[0]
                .finished_at_ms
                .is_none_or(|f| f > w[1].started_at_ms.unwrap())
            {
                problems.push(format!(
                    "stack {name}: deploy {} started before {} finished",
                    w[1].id, w[0].id
                ));
            }
            // The same commit may run again once its deploy has finished (a
            // new delivery of it is a new request); an older one never.
            if w[0].queued.sha > w[1].queued.sha {
                problems.push(format!(
                    "stack {name}: commit {:?} ran after {:?}",
                    w[1].queued.sha, w[0].queued.sha
                ));
            }
        }
        let last = runs.last().unwrap();
        if last.queued.sha.as_deref() != Some(commit(i, newest_round).as_str()) {
            let history: Vec<String> = deploys
                .iter()
                .filter(|d| d.queued.stack == name)
                .map(|d| format!("#{} {:?} {} {:?}", d.id, d.queued.sha, d.state, d.detail))
                .collect();
            problems.push(format!(
                "stack {name}: the last deploy is {:?}, not the newest commit; its deploys:\n{}",
                last.queued.sha,
                history.join("\n")
            ));
        }
        if let Ok(overlaps) = std::fs::read_to_string(world.record(&name).join("overlaps")) {
            let timeline =
                std::fs::read_to_string(world.record(&name).join("timeline")).unwrap_or_default();
            let history: Vec<String> = deploys
                .iter()
                .filter(|d| d.queued.stack == name)
                .map(|d| {
                    format!(
                        "#{} {} {:?}..{:?} {:?}",
                        d.id, d.state, d.started_at_ms, d.finished_at_ms, d.detail
                    )
                })
                .collect();
            problems.push(format!(
                "stack {name}: the deploy command saw an overlap when deploys {:?} started; \
                 its timeline:\n{timeline}its deploys:\n{}",
                overlaps.split_whitespace().collect::<Vec<_>>(),
                history.join("\n")
            ));
        }
    }
    problems
}

/// How far the server's resident memory may grow above what it uses once
/// started: a few MiB of buffers per connection and the journal's page
/// cache, not a leak per delivery.
const RSS_GROWTH_LIMIT: u64 = 128 * 1024 * 1024;

#[test]
fn thousands_of_deliveries_with_failing_and_hanging_deploys_lose_nothing() {
    const ROUNDS: usize = 13;
    const PER_STACK: usize = 25;
    let started = Instant::now();
    let world = world("load", "", false);
    let server = world.start(&[]);
    let pid = server.child.id();
    let rss_start = rss(pid).unwrap();
    let conns: Vec<Mutex<Conn>> = (0..CONNECTIONS)
        .map(|_| Mutex::new(Conn::new(&server.addr, Duration::from_secs(5))))
        .collect();
    let mut rng = Rng(0x5eed_0001);
    let peak = std::sync::atomic::AtomicU64::new(rss_start);
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut answers = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Some(now) = rss(pid) {
                    peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        for round in 0..ROUNDS {
            answers.extend(send_all(
                &conns,
                round_jobs(round, PER_STACK, "load", &mut rng),
            ));
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let sent = answers.len();
    assert_eq!(sent, ROUNDS * STACKS * PER_STACK);
    let load_time = started.elapsed();
    let problems = check_answers(&answers, false);
    assert!(
        problems.is_empty(),
        "{} bad answers:\n{}",
        problems.len(),
        problems.join("\n")
    );

    world.settle(90);
    let problems = check_journal(&world, &answers, ROUNDS - 1);
    assert!(problems.is_empty(), "journal:\n{}", problems.join("\n"));
    let deploys = world.deploys();
    let count = |s: DeployState| deploys.iter().filter(|d| d.state == s).count();
    // The mix really happened: deploys succeeded, failed, timed out, and
    // were superseded.
    let timed_out = deploys
        .iter()
        .filter(|d| d.detail.as_deref().is_some_and(|r| r.contains("timed out")))
        .count();
    assert!(
        count(DeployState::Succeeded) >= STACKS
            && count(DeployState::Failed) > timed_out
            && timed_out >= 1
            && count(DeployState::Cancelled) > STACKS,
        "{:?}",
        DeployState::ALL.map(|s| (s, count(s)))
    );
    let peak = peak.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        peak < rss_start + RSS_GROWTH_LIMIT,
        "RSS grew from {} MiB to {} MiB",
        rss_start >> 20,
        peak >> 20
    );
    server.terminate();
    let responses: Vec<Vec<u8>> = answers.into_iter().map(|a| a.body).collect();
    let mut secrets: Vec<String> = (0..STACKS).map(secret).collect();
    secrets.extend((0..STACKS).map(token));
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    crate::secrets::assert_no_leak(&world.dir.0, &responses, &secrets);
    eprintln!(
        "load: {sent} deliveries in {load_time:?}, {} deploys, RSS {} -> {} MiB",
        deploys.len(),
        rss_start >> 20,
        peak >> 20
    );
}

/// Waits until no process of the killed server's deploy commands still
/// runs, then clears the stand-in's locks they left. A command dies with
/// the server (SIGTERM), usually through its trap, which frees the lock;
/// but one killed before its trap was set leaves the lock behind, and a
/// child it had started (the stand-in's `mkdir` is one) outlives it and
/// may take the lock after the server died. So the wait is for every
/// process that carries this world's `RECORD_DIR` (children inherit it),
/// not only for the lock's holder.
fn wait_for_orphans(world: &World) {
    let marker = format!("RECORD_DIR={}", world.record("").display());
    let orphan_alive = || {
        let entries = std::fs::read_dir("/proc").unwrap();
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .any(|pid| {
                // A zombie's environment reads empty: it runs nothing.
                std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                    env.split(|b| *b == 0)
                        .any(|var| var.starts_with(marker.as_bytes()))
                })
            })
    };
    wait_for(30, "orphaned deploy commands to end", || {
        (!orphan_alive()).then_some(())
    });
    for i in 0..STACKS {
        let lock = world.record(&format!("s{i}")).join("running.lock");
        let _ = std::fs::remove_dir_all(&lock);
    }
}

#[test]
fn sigkill_at_random_points_under_load_loses_nothing_accepted() {
    // At least this many rounds, and more until every kill happened (a
    // fast machine sends eight rounds before the first kill).
    const ROUNDS: usize = 8;
    const PER_STACK: usize = 10;
    const KILLS: usize = 4;
    let seed: u64 = std::env::var("REDEPLOY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0c0f_fee5);
    let world = world("crash", "", true);
    let port = crate::support::free_port();
    let start = |w: &World| ServerProcess::start(&w.config, port, &[], w.dir.join("server.log"));
    let server = Mutex::new(Some(start(&world)));
    let addr = server.lock().unwrap().as_ref().unwrap().addr.clone();
    let conns: Vec<Mutex<Conn>> = (0..CONNECTIONS)
        .map(|_| Mutex::new(Conn::new(&addr, Duration::from_secs(60))))
        .collect();
    let mut rng = Rng(seed);
    let kill_after: Vec<u64> = (0..KILLS).map(|_| 100 + rng.below(900)).collect();
    let mut answers = Vec::new();
    let killer_done = std::sync::atomic::AtomicBool::new(false);
    let mut rounds = 0;
    std::thread::scope(|scope| {
        // The killer: SIGKILL at a random moment, wait for orphans, restart.
        scope.spawn(|| {
            // Set however the killer ends (a panic too): the load stops
            // rather than going on against a server nobody restarts.
            struct Finished<'a>(&'a std::sync::atomic::AtomicBool);
            impl Drop for Finished<'_> {
                fn drop(&mut self) {
                    self.0.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let _finished = Finished(&killer_done);
            for ms in &kill_after {
                std::thread::sleep(Duration::from_millis(*ms));
                let mut slot = server.lock().unwrap();
                slot.take().unwrap().kill();
                wait_for_orphans(&world);
                *slot = Some(start(&world));
            }
        });
        while rounds < ROUNDS || !killer_done.load(std::sync::atomic::Ordering::SeqCst) {
            answers.extend(send_all(
                &conns,
                round_jobs(rounds, PER_STACK, "crash", &mut rng),
            ));
            rounds += 1;
        }
    });
    // One last round after the kills: the newest commit, on a live server.
    answers.extend(send_all(
        &conns,
        round_jobs(rounds, PER_STACK, "final", &mut rng),
    ));
    let unknown = answers.iter().filter(|a| a.status.is_none()).count();
    let context = format!(
        "seed {seed:#x} (REDEPLOY_CRASH_SEED), kills after {kill_after:?} ms, {rounds} rounds"
    );
    let problems = check_answers(&answers, true);
    assert!(problems.is_empty(), "{context}:\n{}", problems.join("\n"));
    world.settle(60);
    let server = server.lock().unwrap().take().unwrap();
    let log = std::fs::read_to_string(world.dir.join("server.log")).unwrap();
    let restarts = log.matches("redeploy listening").count();
    assert_eq!(
        restarts,
        KILLS + 1,
        "{context}: the server was not killed and restarted {KILLS} times"
    );
    let problems = check_journal(&world, &answers, rounds);
    assert!(problems.is_empty(), "{context}:\n{}", problems.join("\n"));
    server.terminate();
    let responses: Vec<Vec<u8>> = answers.iter().map(|a| a.body.clone()).collect();
    let mut secrets: Vec<String> = (0..STACKS).map(secret).collect();
    secrets.extend((0..STACKS).map(token));
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    crate::secrets::assert_no_leak(&world.dir.0, &responses, &secrets);
    eprintln!(
        "crash: {} deliveries, {unknown} cut off by a kill, {restarts} starts, {context}",
        answers.len()
    );
}

/// Starts `redeploy serve` for `world` and expects it to fail at start;
/// returns its stderr.
fn fails_to_start(world: &World, configure: impl FnOnce(&mut std::process::Command)) -> String {
    let mut cmd = std::process::Command::new(crate::support::redeploy_bin());
    cmd.args(["serve", "--config", world.config.to_str().unwrap()])
        .args([
            "--listen",
            &format!("127.0.0.1:{}", crate::support::free_port()),
        ]);
    configure(&mut cmd);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Ignores SIGXFSZ and limits the size of every file the process writes,
/// which is how a full disk looks to it (`EFBIG` on the write that crosses
/// the limit), without needing a real full file system.
fn limit_file_size(cmd: &mut std::process::Command, bytes: u64) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: setrlimit(2) and signal(2) are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn an_unwritable_or_full_state_dir_fails_at_start_with_a_clear_error() {
    // The state directory's place is taken by a file.
    let world = World::new(
        "state-not-dir",
        "",
        "[[stacks]]\nname = \"web\"\nimage = \"acme/web\"\ncommand = [\"true\"]\n",
    );
    std::fs::write(world.dir.join("state"), "not a directory").unwrap();
    let err = fails_to_start(&world, |_| {});
    assert!(
        err.contains("state directory") && err.contains("cannot be created"),
        "{err}"
    );

    // A state directory the server may not write: read-only to it (the
    // server runs as `nobody`, the directory's owner, when the test runs as
    // root, who writes anywhere).
    let world = World::new(
        "state-read-only",
        "",
        "[[stacks]]\nname = \"web\"\nimage = \"acme/web\"\ncommand = [\"true\"]\n",
    );
    let state = world.dir.join("state");
    std::fs::create_dir(&state).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o555)).unwrap();
    // SAFETY: geteuid(2) is always safe.
    let as_root = unsafe { libc::geteuid() } == 0;
    if as_root {
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
    }
    let err = fails_to_start(&world, |cmd| {
        if as_root {
            use std::os::unix::process::CommandExt as _;
            cmd.uid(65534).gid(65534);
        }
    });
    assert!(
        err.contains("journal.sqlite3")
            && err.contains(&format!(
                "permission denied: {} is owned by ",
                state.display()
            ))
            && err.contains("(mode 0555), running as "),
        "{err}"
    );
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();

    // A full disk: no file may grow past zero bytes.
    let world = World::new(
        "state-full",
        "",
        "[[stacks]]\nname = \"web\"\nimage = \"acme/web\"\ncommand = [\"true\"]\n",
    );
    let err = fails_to_start(&world, |cmd| limit_file_size(cmd, 0));
    assert!(err.contains("journal.sqlite3"), "{err}");
    assert!(
        err.contains("disk") || err.contains("full") || err.contains("too large"),
        "{err}"
    );
}

#[test]
fn a_journal_that_cannot_be_written_answers_503_and_loses_nothing() {
    let world = world("journal-full", "", true);
    // Room for the schema and a few hundred deliveries, then a "full disk"
    // (the schema's migration alone writes about 200 KiB to the log: a
    // fresh journal of schema 15 is 192 KiB).
    let port = crate::support::free_port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(world.dir.join("server.log")).unwrap();
    let mut cmd = std::process::Command::new(crate::support::redeploy_bin());
    cmd.args([
        "serve",
        "--config",
        world.config.to_str().unwrap(),
        "--listen",
        &addr,
    ])
    .stdout(log.try_clone().unwrap())
    .stderr(log);
    limit_file_size(&mut cmd, 512 * 1024);
    let child = cmd.spawn().unwrap();
    let server = ServerProcess {
        child,
        addr: addr.clone(),
        log: world.dir.join("server.log"),
    };
    wait_for(30, "the server to listen", || {
        std::net::TcpStream::connect(&addr).ok().map(|_| ())
    });
    let mut conn = Conn::new(&addr, Duration::from_secs(5));
    let mut answers = Vec::new();
    let mut first_503 = None;
    for n in 0..2000 {
        let job = Job {
            stack: n % STACKS,
            round: n / STACKS,
            kind: Kind::Valid,
            delivery: format!("full-ok-{n}"),
        };
        let (path, headers, body) = job.request();
        let (status, body) = conn
            .send(&path, &headers, &body)
            .expect("the server answers every delivery");
        if status == 503 {
            let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(j["error"], "journal-unavailable", "{j}");
            first_503.get_or_insert(n);
        }
        answers.push(Answer {
            job,
            status: Some(status),
            body,
        });
        if first_503.is_some_and(|f| n >= f + 20) {
            break;
        }
    }
    let first_503 = first_503.expect("the journal never filled up");
    assert!(
        answers[..first_503].iter().any(|a| a.status == Some(202)),
        "503 from the start"
    );
    for a in &answers {
        assert!(
            matches!(a.status, Some(200 | 202 | 503)),
            "{:?}: {}",
            a.status,
            String::from_utf8_lossy(&a.body)
        );
    }
    let log = std::fs::read_to_string(world.dir.join("server.log")).unwrap();
    assert!(log.contains("journal: cannot record a deploy"), "{log}");
    drop(server);
    wait_for_orphans(&world);

    // With room again, everything that got a 202 is there and runs; what
    // got a 503 was never recorded (the sender retries it).
    let server = world.start(&[]);
    world.settle(60);
    let deploys = world.deploys();
    let known: BTreeSet<i64> = deploys.iter().map(|d| d.id).collect();
    for a in &answers {
        match a.status {
            Some(202) => {
                let id = a.created().unwrap();
                assert!(known.contains(&id), "accepted deploy {id} was lost");
            }
            Some(503) => assert!(
                !deploys
                    .iter()
                    .any(|d| d.queued.delivery_id.as_deref() == Some(a.job.delivery.as_str())),
                "{} got 503 and was recorded anyway",
                a.job.delivery
            ),
            _ => {}
        }
    }
    let integrity: String = world.query_journal("PRAGMA integrity_check");
    assert_eq!(integrity, "ok");
    // A retry of a delivery that got 503 is accepted now.
    let retried = answers.iter().find(|a| a.status == Some(503)).unwrap();
    let (path, headers, body) = retried.job.request();
    let (status, body) = Conn::new(&server.addr, Duration::from_secs(5))
        .send(&path, &headers, &body)
        .unwrap();
    assert!(
        status == 202 || status == 200,
        "{status}: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(Path::new(&world.dir.join("state")).is_dir());
    server.terminate();
}

#[test]
fn more_simultaneous_deliveries_than_plugin_instances_all_get_their_answer() {
    // Twice the pooling allocator's instance slots, each with a body large
    // enough (1 MiB) that its evaluation takes a while, all at once.
    const SENDERS: usize = 2 * redeploy_host::plugin::POOLED_INSTANCES as usize;
    let world = world("pool", "", true);
    let server = world.start(&[]);
    let filler: Vec<String> = (0..20_000).map(|i| format!("file-{i:08}.txt")).collect();
    let body = json!({
        "ref": "refs/heads/feature", "before": "1".repeat(40), "after": "2".repeat(40),
        "repository": {"full_name": "acme/web"}, "pusher": {"name": "load"},
        "commits": [{"id": "2".repeat(40), "message": "x", "added": filler, "removed": [], "modified": []}],
        "head_commit": {"id": "2".repeat(40), "message": "x"},
    })
    .to_string()
    .into_bytes();
    assert!(body.len() > 300_000, "{}", body.len());
    let barrier = std::sync::Barrier::new(SENDERS);
    let statuses: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..SENDERS)
            .map(|n| {
                let (barrier, body, addr) = (&barrier, &body, &server.addr);
                scope.spawn(move || {
                    let headers = [
                        ("X-GitHub-Event".to_string(), "push".to_string()),
                        ("X-GitHub-Delivery".to_string(), format!("pool-{n}")),
                        (
                            "X-Hub-Signature-256".to_string(),
                            format!("sha256={}", hmac_sha256_hex(&secret(n % STACKS), body)),
                        ),
                    ];
                    let mut conn = Conn::new(addr, Duration::from_secs(5));
                    conn.connect().unwrap();
                    barrier.wait();
                    let (status, answer) = conn
                        .send(&format!("/hooks/{}", token(n % STACKS)), &headers, body)
                        .unwrap();
                    (status, String::from_utf8_lossy(&answer).into_owned())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let bad: Vec<&(u16, String)> = statuses.iter().filter(|(s, _)| *s != 200).collect();
    assert!(bad.is_empty(), "{} of {SENDERS}: {bad:?}", bad.len());
    server.terminate();
}
