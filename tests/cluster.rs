//! Several `redeploy serve` replicas on one PostgreSQL journal: deliveries
//! spread over all of them (the same delivery sent to two), replicas killed
//! with SIGKILL and restarted, and afterwards every promise of the single
//! server checked cluster-wide from what the deploy commands recorded and
//! what the journal holds; every stack reports to GitHub deployments
//! through the GitHub stand-in, whose record shows each deployment created
//! and each status posted once, in order (issue 15).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redeploy_host::journal::{
    DeployRecord, DeployState, Journal, OutboxKind, OutboxOutcome, OutboxRow, PostgresOptions,
};
use redeploy_plugin::outcome::DeployPhase;

use crate::github_standin::GithubStandin;
use crate::support::replicas::{github_table, replica_with_tables, try_push, Replica};
use crate::support::{wait_for, ServerProcess, TempDir};

/// The token the replicas' stacks send to the GitHub stand-in.
const GITHUB_TOKEN: &str = "ghp_cluster_standin_token_0123456789";
const DEPLOYMENTS: &str = "POST /repos/{owner}/{repo}/deployments";
const STATUSES: &str = "POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses";

/// Generous bound on the outbox's settling after the last deploy ended: a
/// SIGKILLed sender's lease runs out first (10 s), then one sender posts
/// every status the others left, one request at a time.
const OUTBOX_SETTLE_SECS: u64 = 180;

/// A small seeded generator (xorshift64*), so a failing run can be
/// repeated.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// One deploy as its command recorded it.
#[derive(Debug, Default)]
struct Run {
    starts: Vec<u128>,
    ends: Vec<(u128, String)>,
}

/// Each stack's runs by deploy id, and the deploys that saw another
/// running.
fn recorded(record: &Path, stacks: usize) -> (BTreeMap<(usize, i64), Run>, Vec<String>) {
    let mut runs: BTreeMap<(usize, i64), Run> = BTreeMap::new();
    let mut overlaps = Vec::new();
    for s in 0..stacks {
        let dir = record.join(format!("s{s}"));
        if let Ok(text) = std::fs::read_to_string(dir.join("overlaps")) {
            overlaps.extend(text.lines().map(|id| format!("s{s} #{id}")));
        }
        let timeline = std::fs::read_to_string(dir.join("timeline")).unwrap_or_default();
        for line in timeline.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            let id: i64 = words[1].parse().unwrap();
            let at: u128 = words[2].parse().unwrap();
            let run = runs.entry((s, id)).or_default();
            match words[0] {
                "start" => run.starts.push(at),
                _ => run.ends.push((at, words[3].to_owned())),
            }
        }
    }
    (runs, overlaps)
}

/// For each overlap (`s1 #7 overlaps deploy 5 (pid 123)`), both deploys'
/// recorded runs and every line each replica logged of them: what a
/// failure needs to be explained.
fn said_of_overlaps(
    overlaps: &[String],
    runs: &BTreeMap<(usize, i64), Run>,
    replicas: &[Replica],
) -> Vec<String> {
    let mut said = Vec::new();
    for overlap in overlaps {
        let words: Vec<&str> = overlap.split_whitespace().collect();
        let stack: usize = words[0].trim_start_matches('s').parse().unwrap_or(0);
        let ids: Vec<i64> = [words.get(1), words.get(4)]
            .into_iter()
            .flatten()
            .filter_map(|w| w.trim_start_matches('#').parse().ok())
            .collect();
        for id in ids {
            said.push(format!("s{stack} #{id}: {:?}", runs.get(&(stack, id))));
            for (r, replica) in replicas.iter().enumerate() {
                let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
                said.extend(
                    log.lines()
                        .filter(|l| {
                            l.split(|c: char| c.is_whitespace() || ",:)".contains(c))
                                .any(|w| w == format!("deploy={id}") || w == format!("#{id}"))
                        })
                        .map(|l| format!("replica-{r}: {l}")),
                );
            }
        }
    }
    said
}

/// Three replicas, four stacks, 1,600 deliveries (one in five sent again,
/// to another replica, with the same delivery id) from four threads, and a
/// replica SIGKILLed and restarted every few hundred milliseconds.
/// Afterwards: each delivery id was accepted (202) at most once and has one
/// deploy; each accepted deploy ran once, or was cancelled as superseded,
/// or was interrupted by a kill (and then never ran again); no two deploys
/// of a stack overlapped; the newest push of each stack, sent after the
/// kills, ran; and every GitHub deployment and status was sent once
/// ([`check_github_reports`]).
#[test]
fn three_replicas_with_sigkills_keep_every_promise_of_one_server() {
    const REPLICAS: usize = 3;
    const STACKS: usize = 4;
    const DELIVERIES: usize = 1_600;
    const SENDERS: usize = 4;
    let seed: u64 = std::env::var("CLUSTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe);
    eprintln!("cluster test seed {seed} (CLUSTER_SEED={seed} repeats this run)");
    let dir = TempDir::new("cluster");
    let standin = GithubStandin::start(GITHUB_TOKEN);
    let token_file = dir.join("gh-token");
    std::fs::write(&token_file, GITHUB_TOKEN).unwrap();
    let github = github_table(&standin.base_url(), &token_file);
    let url = crate::support::postgres::shared().database("cluster");
    let names: Vec<String> = (0..STACKS).map(|s| format!("s{s}")).collect();
    let stacks: Vec<(&str, u32, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, name)| (name.as_str(), i as u32 + 1, "0.05"))
        .collect();
    let replicas: Arc<Vec<Replica>> = Arc::new(
        (0..REPLICAS)
            .map(|r| {
                replica_with_tables(
                    &dir,
                    &format!("replica-{r}"),
                    &url,
                    "",
                    "lease = \"2s\"",
                    &stacks,
                    &github,
                )
            })
            .collect(),
    );
    let servers: Arc<Vec<RwLock<Option<ServerProcess>>>> = Arc::new(
        replicas
            .iter()
            .map(|r| RwLock::new(Some(r.start())))
            .collect(),
    );

    // Deliveries: (delivery id, stack, commit) in the order they are made;
    // every answer is kept by delivery id.
    let answers: Arc<Mutex<BTreeMap<String, Vec<u16>>>> = Arc::default();
    let next = Arc::new(Mutex::new(0usize));
    let started = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|t| {
            let (answers, next, replicas) = (answers.clone(), next.clone(), replicas.clone());
            let mut rng = Rng(seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            std::thread::spawn(move || loop {
                let n = {
                    let mut next = next.lock().unwrap();
                    if *next == DELIVERIES {
                        return;
                    }
                    *next += 1;
                    *next
                };
                let stack = n % STACKS;
                let delivery = format!("delivery-{n}");
                let first = rng.below(REPLICAS);
                let mut targets = vec![first];
                if rng.below(5) == 0 {
                    targets.push((first + 1 + rng.below(REPLICAS - 1)) % REPLICAS);
                }
                for r in targets {
                    // A load balancer retries a replica that is down on the next.
                    let status = (0..REPLICAS).find_map(|i| {
                        try_push(
                            &replicas[(r + i) % REPLICAS].addr(),
                            stack as u32 + 1,
                            n,
                            &delivery,
                        )
                    });
                    if let Some(status) = status {
                        answers
                            .lock()
                            .unwrap()
                            .entry(delivery.clone())
                            .or_default()
                            .push(status);
                    }
                }
            })
        })
        .collect();

    // The killer: a random replica SIGKILLed and restarted, until the
    // deliveries are sent.
    let mut rng = Rng(seed);
    let mut kills = 0;
    while senders.iter().any(|s| !s.is_finished()) {
        std::thread::sleep(Duration::from_millis(300 + rng.below(400) as u64));
        let victim = rng.below(REPLICAS);
        let server = servers[victim].write().unwrap().take();
        if let Some(server) = server {
            server.kill();
            kills += 1;
        }
        std::thread::sleep(Duration::from_millis(100 + rng.below(300) as u64));
        *servers[victim].write().unwrap() = Some(replicas[victim].start());
    }
    for s in senders {
        s.join().unwrap();
    }
    let sent_in = started.elapsed();
    assert!(
        kills >= 3,
        "only {kills} replicas were killed during the load"
    );

    // After the kills: one more push per stack, to a live replica, which
    // must run (newest wins, nothing is stuck behind a dead replica's lease).
    let mut last = BTreeMap::new();
    for stack in 0..STACKS {
        let n = DELIVERIES + 1 + stack;
        let delivery = format!("final-{stack}");
        let status = try_push(
            &replicas[stack % REPLICAS].addr(),
            stack as u32 + 1,
            n,
            &delivery,
        );
        assert_eq!(status, Some(202), "the final push of s{stack}");
        answers.lock().unwrap().insert(delivery.clone(), vec![202]);
        last.insert(stack, delivery);
    }

    let journal = Journal::open_postgres_for_reading(&PostgresOptions::new(url.clone())).unwrap();
    let deploys: Vec<DeployRecord> = wait_for(120, "every deploy to end", || {
        let all = journal.deploys(None, usize::MAX >> 1).unwrap();
        all.iter().all(|d| d.state.is_final()).then_some(all)
    });
    eprintln!(
        "{} deliveries sent in {:.1}s with {kills} kills; {} deploys",
        answers.lock().unwrap().len(),
        sent_in.as_secs_f64(),
        deploys.len()
    );

    let answers = answers.lock().unwrap();
    let by_delivery: BTreeMap<&str, &DeployRecord> = deploys
        .iter()
        .map(|d| (d.queued.delivery_id.as_deref().unwrap(), d))
        .collect();
    assert_eq!(
        by_delivery.len(),
        deploys.len(),
        "a delivery id has two deploys"
    );
    let (runs, overlaps) = recorded(&dir.join("record"), STACKS);
    let logged = |what: &str| -> Vec<String> {
        replicas
            .iter()
            .flat_map(|r| {
                std::fs::read_to_string(&r.log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(what))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let fenced = logged("stopping what it covers");
    eprintln!("{} fenced deploys: {fenced:#?}", fenced.len());
    assert!(
        overlaps.is_empty(),
        "deploys overlapped: {overlaps:?}\nerrors: {:#?}\nwhat the replicas said of them: {:#?}",
        logged("ERROR"),
        said_of_overlaps(&overlaps, &runs, &replicas[..])
    );

    let mut states: BTreeMap<DeployState, usize> = BTreeMap::new();
    for (delivery, statuses) in answers.iter() {
        let accepted = statuses.iter().filter(|&&s| s == 202).count();
        assert!(
            accepted <= 1,
            "{delivery} was accepted {accepted} times: {statuses:?}"
        );
        for s in statuses {
            assert!(
                matches!(s, 200 | 202 | 503),
                "{delivery}: unexpected {s} in {statuses:?}"
            );
        }
        if accepted == 0 {
            continue;
        }
        let d = by_delivery
            .get(delivery.as_str())
            .unwrap_or_else(|| panic!("{delivery} was accepted but has no deploy"));
        let stack: usize = d.queued.stack[1..].parse().unwrap();
        let run = runs.get(&(stack, d.id));
        let starts = run.map_or(0, |r| r.starts.len());
        *states.entry(d.state).or_default() += 1;
        match d.state {
            DeployState::Succeeded => {
                let run = run.unwrap();
                assert_eq!(starts, 1, "#{} succeeded but started {starts} times", d.id);
                assert_eq!(run.ends.len(), 1, "#{}: {run:?}", d.id);
                assert_eq!(run.ends[0].1, "ok", "#{}: {run:?}", d.id);
            }
            DeployState::Cancelled => {
                assert_eq!(starts, 0, "#{} was cancelled but ran", d.id);
                assert!(
                    d.superseded_by.is_some(),
                    "#{} cancelled but not superseded: {:?}",
                    d.id,
                    d.detail
                );
            }
            DeployState::Interrupted => {
                assert!(starts <= 1, "#{} started {starts} times", d.id);
            }
            other => panic!("#{} ({delivery}) ended {other}: {:?}", d.id, d.detail),
        }
    }
    // Every deploy that ran ran once, ended, and no two of a stack
    // overlapped in time.
    let state_of: BTreeMap<i64, DeployState> = deploys.iter().map(|d| (d.id, d.state)).collect();
    let mut intervals: BTreeMap<usize, Vec<(u128, u128, i64)>> = BTreeMap::new();
    for ((stack, id), run) in &runs {
        assert_eq!(
            run.starts.len(),
            1,
            "s{stack} #{id} started {} times",
            run.starts.len()
        );
        match run.ends.as_slice() {
            [(end, _)] => intervals
                .entry(*stack)
                .or_default()
                .push((run.starts[0], *end, *id)),
            // SIGKILLed (fenced, or by recovery after SIGTERM went
            // unheeded): no end line; its lock link, naming a dead process,
            // told the next deploy it was gone.
            [] => assert_eq!(
                state_of.get(id),
                Some(&DeployState::Interrupted),
                "s{stack} #{id} started and never ended; the journal says {:?}",
                deploys
                    .iter()
                    .find(|d| d.id == *id)
                    .map(|d| (d.state, &d.detail))
            ),
            ends => panic!("s{stack} #{id} ended {} times: {ends:?}", ends.len()),
        }
    }
    for (stack, mut spans) in intervals {
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[1].0 >= pair[0].1,
                "s{stack}: #{} started before #{} ended",
                pair[1].2,
                pair[0].2
            );
        }
        // Newest wins: a newer deploy never runs before an older one.
        let ids: Vec<i64> = spans.iter().map(|s| s.2).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "s{stack} ran out of order");
    }
    for (stack, delivery) in &last {
        let d = by_delivery[delivery.as_str()];
        assert_eq!(
            d.state,
            DeployState::Succeeded,
            "the final push of s{stack}: {:?}",
            d.detail
        );
    }
    let interrupted: BTreeSet<i64> = deploys
        .iter()
        .filter(|d| d.state == DeployState::Interrupted)
        .map(|d| d.id)
        .collect();
    eprintln!("accepted deploys by state: {states:?}; interrupted: {interrupted:?}");
    assert!(states.get(&DeployState::Succeeded).copied().unwrap_or(0) >= STACKS);

    let settling = Instant::now();
    let rows = wait_for(OUTBOX_SETTLE_SECS, "the outbox settled", || {
        let rows = journal.outbox_rows(0, usize::MAX >> 1).unwrap();
        rows.iter().all(|r| r.outcome.is_some()).then_some(rows)
    });
    eprintln!(
        "outbox settled {:.1}s after the last deploy ended ({:.1}s after the first push)",
        settling.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let accepted: BTreeSet<&str> = answers
        .iter()
        .filter(|(_, statuses)| statuses.contains(&202))
        .map(|(delivery, _)| delivery.as_str())
        .collect();
    check_github_reports(&journal, &standin, &deploys, &accepted, &rows);
    for server in servers.iter() {
        if let Some(server) = server.write().unwrap().take() {
            assert!(server.terminate().success());
        }
    }
}

/// The GitHub state a deploy's `state` is reported as: the plugin's own
/// mapping (`plugin/src/github.rs`, `phase_state`).
fn github_state(state: DeployState) -> &'static str {
    let phase = match state {
        DeployState::Queued => DeployPhase::Queued,
        DeployState::Started => DeployPhase::Started,
        DeployState::Succeeded => DeployPhase::Succeeded,
        DeployState::Failed => DeployPhase::Failed,
        DeployState::Cancelled => DeployPhase::Cancelled,
        DeployState::Interrupted => DeployPhase::Interrupted,
    };
    redeploy_plugin::github::phase_state(phase).0
}

/// One outbox row in a line: what it sent, how many times it was claimed.
fn row_line(r: &OutboxRow) -> String {
    let about = match r.kind {
        OutboxKind::Deployment => format!("request #{}", r.request_id.unwrap_or(0)),
        _ => format!(
            "deploy #{} {}",
            r.deploy_id.unwrap_or(0),
            r.state.map_or("", DeployState::as_str)
        ),
    };
    format!(
        "row {} ({} {}, {about}): {} attempts, {:?}",
        r.id,
        r.kind.as_str(),
        r.stack,
        r.attempts,
        r.outcome_detail.as_deref().unwrap_or("unsettled")
    )
}

/// Issue 15, cluster-wide: every outbox row was sent and settled; GitHub
/// created one deployment per deployment request the journal holds (none
/// twice, none the journal does not know); each deployment's statuses are
/// its deploy's transitions in order, each state once, its final state
/// included; the journal's `reports` say so; every request had GitHub's
/// documented shape; and every deploy has exactly one deployment request,
/// recorded with it in one transaction, even when its replica was killed
/// before it answered. Every broken promise is listed (with the outbox
/// rows behind it and their attempts) before the test fails.
fn check_github_reports(
    journal: &Journal,
    standin: &GithubStandin,
    deploys: &[DeployRecord],
    accepted: &BTreeSet<&str>,
    rows: &[OutboxRow],
) {
    let mut broken: Vec<String> = Vec::new();
    let retried: Vec<String> = rows
        .iter()
        .filter(|r| r.attempts > 1)
        .map(row_line)
        .collect();
    eprintln!(
        "{} outbox rows, {} of them claimed more than once: {retried:#?}",
        rows.len(),
        retried.len()
    );
    broken.extend(
        rows.iter()
            .filter(|r| r.outcome != Some(OutboxOutcome::Sent))
            .map(|r| format!("not sent: {}", row_line(r))),
    );
    let row_of_request = |request: i64| -> String {
        rows.iter()
            .filter(|r| r.kind == OutboxKind::Deployment && r.request_id == Some(request))
            .map(row_line)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let rows_of_deploy = |deploy: i64| -> Vec<String> {
        rows.iter()
            .filter(|r| r.kind == OutboxKind::Status && r.deploy_id == Some(deploy))
            .map(row_line)
            .collect()
    };

    // Deployments: one per journaled request, keyed by (stack, delivery id).
    let requests = journal.deployment_requests(None, usize::MAX >> 1).unwrap();
    let recorded = standin.requests();
    let mut created: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in recorded.iter().filter(|r| r.operation == DEPLOYMENTS) {
        let payload = &r.body.as_ref().unwrap()["payload"];
        let key = (
            payload["stack"].as_str().unwrap().to_owned(),
            payload["delivery"].as_str().unwrap().to_owned(),
        );
        *created.entry(key).or_default() += 1;
    }
    let mut deployment_of_deploy: BTreeMap<i64, u64> = BTreeMap::new();
    let mut requests_of_deploy: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for request in &requests {
        let Some(deploy) = request.asked.deploy_id else {
            broken.push(format!("request #{} is for no deploy", request.id));
            continue;
        };
        requests_of_deploy
            .entry(deploy)
            .or_default()
            .push(request.id);
        let key = (
            request.asked.stack.clone(),
            request.asked.delivery_id.clone().unwrap(),
        );
        let times = created.get(&key).copied().unwrap_or(0);
        if times != 1 {
            broken.push(format!(
                "GitHub created the deployment of request #{} {key:?} {times} times; {}",
                request.id,
                row_of_request(request.id)
            ));
        }
        let Some(deployment) = request.deployment_id else {
            broken.push(format!(
                "request #{} has no deployment: {request:?}",
                request.id
            ));
            continue;
        };
        deployment_of_deploy.insert(deploy, deployment);
    }
    let unknown: Vec<_> = created
        .keys()
        .filter(|(stack, delivery)| {
            !requests.iter().any(|r| {
                &r.asked.stack == stack && r.asked.delivery_id.as_deref() == Some(delivery)
            })
        })
        .collect();
    if !unknown.is_empty() {
        broken.push(format!(
            "GitHub created deployments no request asked for: {unknown:?}"
        ));
    }

    // Statuses: only to those deployments; per deploy, its transitions in
    // order, each once, its final one included.
    let known: BTreeSet<u64> = deployment_of_deploy.values().copied().collect();
    let mut posted_to: BTreeMap<u64, usize> = BTreeMap::new();
    for r in recorded.iter().filter(|r| r.operation == STATUSES) {
        let id: u64 = r.path.split('/').nth(5).unwrap().parse().unwrap();
        *posted_to.entry(id).or_default() += 1;
    }
    let strays: Vec<_> = posted_to.keys().filter(|id| !known.contains(id)).collect();
    if !strays.is_empty() {
        broken.push(format!(
            "statuses posted to deployments no request has: {strays:?}"
        ));
    }
    let mut statuses = 0;
    let mut without_request = Vec::new();
    for d in deploys {
        let what = format!("deploy #{} ({} {})", d.id, d.queued.stack, d.state);
        // Every stack reports directly (`wait_for_event = false`): the
        // journal records each deploy with its request in one transaction,
        // so every deploy has exactly one, whenever its replica was killed.
        let of_deploy = requests_of_deploy.get(&d.id).map_or(&[][..], Vec::as_slice);
        if of_deploy.len() != 1 {
            let delivery = d.queued.delivery_id.as_deref().unwrap_or("");
            let answered = if accepted.contains(delivery) {
                "was accepted"
            } else {
                "was not answered 202"
            };
            broken.push(format!(
                "{what}: {delivery} {answered} and has {} deployment requests {of_deploy:?}; {:?}",
                of_deploy.len(),
                rows_of_deploy(d.id)
            ));
        }
        if of_deploy.is_empty() {
            without_request.push(d.id);
        }
        // A request GitHub created no deployment for is listed above.
        let Some(&deployment) = deployment_of_deploy.get(&d.id) else {
            continue;
        };
        let expected: Vec<&str> = journal
            .transitions(d.id)
            .unwrap()
            .into_iter()
            .map(|(state, _)| github_state(state))
            .collect();
        let sent = standin.statuses(deployment);
        statuses += sent.len();
        let twice: BTreeSet<&String> = sent
            .iter()
            .filter(|s| sent.iter().filter(|t| t == s).count() > 1)
            .collect();
        let last = github_state(d.state);
        if !twice.is_empty() {
            broken.push(format!(
                "{what}: GitHub got {twice:?} more than once on deployment {deployment}: \
                 {sent:?}; {:?}",
                rows_of_deploy(d.id)
            ));
        } else if !sent.iter().any(|s| s == last) {
            broken.push(format!(
                "{what}: deployment {deployment} never got its final {last:?}: {sent:?}; {:?}",
                rows_of_deploy(d.id)
            ));
        } else if sent != expected {
            broken.push(format!(
                "{what}: deployment {deployment} got {sent:?}, its transitions are {expected:?}"
            ));
        }
        if posted_to.get(&deployment).copied().unwrap_or(0) != sent.len() {
            broken.push(format!(
                "{what}: a status to deployment {deployment} was refused"
            ));
        }
        // Sent, or found on GitHub when its row was in doubt (GitHub got
        // it once: checked above).
        let reports = journal.reports(d.id).unwrap();
        let sent_outcome = format!("deployment {deployment}: sent");
        let found_outcome = format!("{sent_outcome} (found on GitHub after an unanswered attempt)");
        if reports.len() != expected.len()
            || !reports.iter().all(|(target, _, o)| {
                target == "github" && (*o == sent_outcome || *o == found_outcome)
            })
        {
            broken.push(format!("{what}: reports {reports:?}"));
        }
    }
    eprintln!(
        "GitHub: {} requests, {} deployments created for {} requests, {statuses} statuses \
         posted; {} deploys without a deployment request: {without_request:?}",
        recorded.len(),
        created.values().sum::<usize>(),
        requests.len(),
        without_request.len()
    );
    broken.extend(standin.violations());
    assert!(
        broken.is_empty(),
        "{} GitHub promises broken:\n{}",
        broken.len(),
        broken.join("\n")
    );
}
