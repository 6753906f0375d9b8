//! `redeploy serve` end to end: a real server on a loopback port, real
//! signed deliveries built from the fixtures, and a stand-in deploy program
//! that records its environment and stdin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redeploy_host::journal::{DeployRecord, DeployState, Journal};
use serde_json::json;

use crate::support::{fixtures, free_port, hmac_sha256_hex, wait_for, ServerProcess, TempDir};

/// The stand-in deploy program: records env and stdin, detects overlapping
/// runs of one stack with an atomic `mkdir` lock, sleeps `$SLEEP`, exits `$EXIT_CODE`.
const STAND_IN: &str = r#"#!/bin/sh
set -u
dir="$RECORD_DIR"
id="$REDEPLOY_DEPLOY_ID"
if ! mkdir "$dir/running.lock" 2>/dev/null; then echo "$id" >> "$dir/overlaps"; fi
env | grep -E '^(REDEPLOY_|APP_|FAST|HOME|PATH)' | sort > "$dir/$id.env"
cat > "$dir/$id.stdin"
echo "start $id ${REDEPLOY_SHA:-}" >> "$dir/timeline"
sleep "${SLEEP:-0}"
echo "end $id" >> "$dir/timeline"
rmdir "$dir/running.lock" 2>/dev/null
exit "${EXIT_CODE:-0}"
"#;

/// A test's world: a temp dir with the stand-in, a config, record dirs.
pub struct World {
    pub dir: TempDir,
    pub config: PathBuf,
}

impl World {
    /// Writes the stand-in and a config made of `[server]` settings plus `stacks_toml`.
    /// In `stacks_toml`, `@RECORD:<name>@` becomes a record dir and `@STANDIN@` the program.
    pub fn new(name: &str, server_toml: &str, stacks_toml: &str) -> World {
        let dir = TempDir::new(name);
        let standin = dir.join("standin.sh");
        std::fs::write(&standin, STAND_IN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&standin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut stacks = stacks_toml
            .replace("@STANDIN@", standin.to_str().unwrap())
            .replace("@DIR@", dir.0.to_str().unwrap());
        while let Some(start) = stacks.find("@RECORD:") {
            let end = start + stacks[start..].find("@").unwrap() + 1;
            let end = end + stacks[end..].find('@').unwrap() + 1;
            let label = &stacks[start + 8..end - 1];
            let rec = dir.join(&format!("record-{label}"));
            std::fs::create_dir_all(&rec).unwrap();
            stacks.replace_range(start..end, rec.to_str().unwrap());
        }
        let config = dir.join("redeploy.toml");
        std::fs::write(
            &config,
            format!("[server]\nstate_dir = \"state\"\n{server_toml}\n\n{stacks}"),
        )
        .unwrap();
        World { dir, config }
    }

    /// The record dir of a stack label.
    pub fn record(&self, label: &str) -> PathBuf {
        self.dir.join(&format!("record-{label}"))
    }

    /// Starts the server on a free port.
    pub fn start(&self, extra: &[&str]) -> ServerProcess {
        ServerProcess::start(
            &self.config,
            free_port(),
            extra,
            self.dir.join("server.log"),
        )
    }

    /// Starts the server on a free port with extra environment variables.
    pub fn start_env(&self, extra: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::start_env(
            &self.config,
            free_port(),
            extra,
            self.dir.join("server.log"),
            env,
        )
    }

    /// The journal, read-only.
    pub fn journal(&self) -> Journal {
        Journal::open_read_only(&Journal::path_in(&self.dir.join("state"))).unwrap()
    }

    /// Every deploy, oldest first.
    pub fn deploys(&self) -> Vec<DeployRecord> {
        let mut d = self.journal().deploys(None, 100_000).unwrap();
        d.reverse();
        d
    }

    /// Waits until no deploy is queued or started.
    pub fn settle(&self, secs: u64) -> Vec<DeployRecord> {
        wait_for(secs, "deploys to finish", || {
            let d = self.deploys();
            d.iter().all(|r| r.state.is_final()).then_some(d)
        })
    }

    /// The env a recorded deploy saw.
    pub fn recorded_env(&self, label: &str, id: i64) -> BTreeMap<String, String> {
        std::fs::read_to_string(self.record(label).join(format!("{id}.env")))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The deploy ids a stand-in ran, in order.
    pub fn ran(&self, label: &str) -> Vec<String> {
        std::fs::read_to_string(self.record(label).join("timeline"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("start "))
            .map(|l| l.to_string())
            .collect()
    }
}

pub fn token(n: u32) -> String {
    format!("test-token-{n:04}-abcdefghijklmnopqrstuvwxyz")
}

pub fn hook(n: u32) -> String {
    format!("/hooks/{}", token(n))
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(path)).unwrap()
}

fn fixture_headers(path: &str) -> Vec<(String, String)> {
    redeploy_host::headers::read_headers(&fixtures().join(path)).unwrap()
}

fn post_fixture(server: &ServerProcess, hook: &str, name: &str) -> crate::support::http::Response {
    let body = fixture(&format!("{name}.json"));
    let headers = fixture_headers(&format!("{name}.headers"));
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    server.post(hook, &h, &body)
}

#[test]
fn serve_deploys_exactly_what_it_should() {
    let stacks = format!(
        r#"
[[stacks]]
name = "hello"
repository = "Codertocat/Hello-World"
branch = "master"
secrets = ["topsecret"]
hook_token = "{t1}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:hello@", APP_ENV = "production" }}

[[stacks]]
name = "hello-dev"
repository = "Codertocat/Hello-World"
branch = "develop"
secrets = ["topsecret"]
hook_token = "{t2}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:hello-dev@" }}

[[stacks]]
name = "drone"
repository = "bradrydzewski/drone-test-go"
branch = "**"
hook_token = "{t3}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:drone@" }}

[[stacks]]
name = "pinged"
repository = "Octocoders/Hello-World"
branch = "main"
hook_token = "{t4}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:pinged@" }}

[[stacks]]
name = "ping-ack"
repository = "Octocoders/Hello-World"
branch = "main"
ping = "acknowledge"
hook_token = "{t5}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:ping-ack@" }}
"#,
        t1 = token(1),
        t2 = token(2),
        t3 = token(3),
        t4 = token(4),
        t5 = token(5)
    );
    let world = World::new("serve-deploys", "max_body_bytes = 65536", &stacks);
    let server = world.start(&[]);

    // A matching, signed push: 202, deployed once.
    let r = post_fixture(&server, &hook(1), "github/goscm-push");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let j = r.json();
    assert_eq!(j["decisions"][0]["action"], "deploy");
    let hello_id = j["decisions"][0]["deploy_id"].as_i64().unwrap();
    // GitHub redelivers with the same X-GitHub-Delivery: deployed once.
    let again = post_fixture(&server, &hook(1), "github/goscm-push");
    assert_eq!(again.status, 200);
    assert_eq!(again.json()["decisions"][0]["state"], "duplicate");

    // The same push to a stack on another branch: 200, nothing.
    let r = post_fixture(&server, &hook(2), "github/goscm-push");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["decisions"][0]["reason"],
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
        assert_eq!(
            r.status,
            200,
            "{name}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["decisions"][0]["action"], "skip", "{name}");
        assert_eq!(r.json()["decisions"][0]["reason"], reason, "{name}");
    }

    // The seed's manual trigger: curl -X POST -d "" URL.
    let r = server.post(
        &hook(3),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"",
    );
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let manual_id = r.json()["decisions"][0]["deploy_id"].as_i64().unwrap();

    // A ping deploys by default, or is only acknowledged.
    let ping = fixture("github/octokit-ping-default.json");
    let r = server.post(&hook(4), &[("X-GitHub-Event", "ping")], &ping);
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let ping_id = r.json()["decisions"][0]["deploy_id"].as_i64().unwrap();
    let r = server.post(&hook(5), &[("X-GitHub-Event", "ping")], &ping);
    assert_eq!(r.status, 200);

    // Rejections deploy nothing.
    let mut tampered = fixture("github/goscm-push.json");
    tampered[10] ^= 1;
    let headers = fixture_headers("github/goscm-push.headers");
    let h: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = server.post(&hook(1), &h, &tampered);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "bad-signature");
    let r = server.post(
        &hook(1),
        &[("X-GitHub-Event", "push")],
        &fixture("github/goscm-push.json"),
    );
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"], "missing-signature");
    let r = server.post(&format!("/hooks/{}", token(99)), &[], b"");
    assert_eq!(r.status, 404);
    let r = server.post(
        &hook(3),
        &[("X-GitHub-Event", "push")],
        &vec![b' '; 100 * 1024],
    );
    assert_eq!(r.status, 413);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = server.post(
        &hook(3),
        &[("X-GitHub-Event", "push")],
        b"{\"ref\": \"refs/heads/main\", ",
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "malformed-payload");
    let r = crate::support::http::request(&server.addr, "GET", &hook(3), &[], b"");
    assert_eq!(r.status, 405);

    let deploys = world.settle(30);
    let ids: Vec<i64> = deploys.iter().map(|d| d.id).collect();
    assert_eq!(
        ids,
        vec![hello_id, manual_id, ping_id],
        "exactly three deploys: {deploys:#?}"
    );
    assert!(
        deploys.iter().all(|d| d.state == DeployState::Succeeded),
        "{deploys:#?}"
    );
    assert_eq!(world.ran("hello").len(), 1);
    assert_eq!(world.ran("hello-dev").len(), 0);
    assert_eq!(world.ran("ping-ack").len(), 0);

    let env = world.recorded_env("hello", hello_id);
    for (k, v) in [
        ("REDEPLOY_STACK", "hello"),
        ("REDEPLOY_SERVICES", "hello"),
        ("REDEPLOY_REF", "refs/heads/master"),
        ("REDEPLOY_BRANCH", "master"),
        ("REDEPLOY_SHA", "199eddf46df50de8d02e99bf1c5fdb4101338224"),
        ("REDEPLOY_PROVIDER", "github"),
        ("REDEPLOY_DELIVERY", "f2467dea-70d6-11e8-8955-3c83993e0aef"),
        ("REDEPLOY_REPOSITORY", "Codertocat/Hello-World"),
        ("APP_ENV", "production"),
    ] {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:#?}");
    }
    let stdin: serde_json::Value = serde_json::from_slice(
        &std::fs::read(world.record("hello").join(format!("{hello_id}.stdin"))).unwrap(),
    )
    .unwrap();
    assert_eq!(stdin["sha"], "199eddf46df50de8d02e99bf1c5fdb4101338224");
    assert_eq!(stdin["stack"], "hello");
    let manual_env = world.recorded_env("drone", manual_id);
    assert_eq!(
        manual_env.get("REDEPLOY_PROVIDER").map(String::as_str),
        Some("manual")
    );
    // The log of each deploy is kept in the state directory.
    assert!(Path::new(deploys[0].log_path.as_deref().unwrap()).exists());
    server.terminate();
}

/// A GitHub push body for `sha` on `main` of acme/web. Its `before` is a
/// commit no test deploys (the journal orders commits by that chain).
pub fn push_body(sha: &str) -> Vec<u8> {
    json!({
        "ref": "refs/heads/main",
        "before": "beef".repeat(10),
        "after": sha,
        "created": false, "deleted": false, "forced": false,
        "repository": {"full_name": "acme/web", "clone_url": "https://github.com/acme/web.git"},
        "pusher": {"name": "alice"},
        "commits": [{"id": sha, "message": "change", "added": [], "removed": [], "modified": ["app.py"]}],
        "head_commit": {"id": sha, "message": "change"},
    })
    .to_string()
    .into_bytes()
}

pub fn sha(n: usize) -> String {
    format!("{n:040x}")
}

pub fn signed_push(
    server: &ServerProcess,
    hook: &str,
    secret: &str,
    sha: &str,
    delivery: &str,
) -> crate::support::http::Response {
    let body = push_body(sha);
    let sig = format!("sha256={}", hmac_sha256_hex(secret, &body));
    server.post(
        hook,
        &[
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &sig),
            ("Content-Type", "application/json"),
        ],
        &body,
    )
}

fn web_stack(n: u32, label: &str, sleep: &str) -> String {
    format!(
        r#"
[[stacks]]
name = "{label}"
repository = "acme/web"
branch = "main"
secrets = ["s3cret-s3cret"]
hook_token = "{t}"
command = ["@STANDIN@"]
timeout = "1m"
env = {{ RECORD_DIR = "@RECORD:{label}@", SLEEP = "{sleep}" }}
"#,
        t = token(n)
    )
}

#[test]
fn fifty_deliveries_over_ten_commits_run_one_at_a_time_and_the_newest_last() {
    let world = World::new("serve-concurrency", "", &web_stack(1, "web", "0.3"));
    let server = world.start(&[]);
    // A slow deploy is running...
    let r = signed_push(&server, &hook(1), "s3cret-s3cret", &sha(1000), "first");
    assert_eq!(r.status, 202);
    wait_for(10, "the first deploy to start", || {
        (!world.ran("web").is_empty()).then_some(())
    });
    // ...while 50 deliveries for 10 commits arrive, 5 per commit, concurrently.
    std::thread::scope(|scope| {
        for commit in 1..=10 {
            let handles: Vec<_> = (0..5)
                .map(|k| {
                    let server = &server;
                    scope.spawn(move || {
                        signed_push(
                            server,
                            &hook(1),
                            "s3cret-s3cret",
                            &sha(commit),
                            &format!("c{commit}-d{k}"),
                        )
                        .status
                    })
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
        deploys.len(),
        51,
        "every accepted delivery is in the journal"
    );
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
    assert_eq!(succeeded.len() + cancelled, 51, "{deploys:#?}");
    assert_eq!(succeeded.len(), ran.len());
    // Commits only ever move forward: the first deploy was commit 1000, then 1..=10 in order.
    let index = |s: &str| match usize::from_str_radix(s, 16).unwrap() {
        1000 => 0,
        n => n,
    };
    let order: Vec<usize> = succeeded
        .iter()
        .map(|d| index(d.sha.as_deref().unwrap()))
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "an older commit ran after a newer one: {order:?}"
    );
    server.terminate();
}

#[test]
fn a_sigkilled_server_marks_the_running_deploy_interrupted_and_runs_the_queued_one() {
    let world = World::new("serve-restart", "", &web_stack(1, "web", "3"));
    let server = world.start(&[]);
    assert_eq!(
        signed_push(&server, &hook(1), "s3cret-s3cret", &sha(1), "d1").status,
        202
    );
    wait_for(10, "the deploy to start", || {
        (!world.ran("web").is_empty()).then_some(())
    });
    assert_eq!(
        signed_push(&server, &hook(1), "s3cret-s3cret", &sha(2), "d2").status,
        202
    );
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
    assert_eq!(after[1].sha.as_deref(), Some(sha(2).as_str()));
    let history = std::process::Command::new(crate::support::redeploy_bin())
        .args([
            "history",
            "--config",
            world.config.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(history.status.success());
    let h: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(h.as_array().unwrap().len(), 2);
    assert_eq!(h[1]["state"], "interrupted");
    server.terminate();
}

#[test]
fn hook_url_prints_a_stable_generated_url_that_works() {
    let stacks = r#"
[[stacks]]
name = "gen"
image = "acme/web"
command = ["@STANDIN@"]
env = { RECORD_DIR = "@RECORD:gen@" }
"#;
    let world = World::new(
        "serve-hook-url",
        "public_url = \"https://deploy.example.com/\"",
        stacks,
    );
    let url = |w: &World| {
        let out = std::process::Command::new(crate::support::redeploy_bin())
            .args(["hook-url", "gen", "--config", w.config.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
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
    let r = server.post(&format!("{path}?services=gen"), &[], b"");
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
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
    let stacks = format!(
        r#"
[[stacks]]
name = "slow"
image = "acme/slow"
hook_token = "{t1}"
command = ["sh", "-c", "sleep 29.173 & sleep 29.173; echo never"]
timeout = "1s"

[[stacks]]
name = "failing"
image = "acme/failing"
hook_token = "{t2}"
command = ["@STANDIN@"]
env = {{ RECORD_DIR = "@RECORD:failing@", EXIT_CODE = "3" }}
"#,
        t1 = token(1),
        t2 = token(2)
    );
    let world = World::new("serve-timeouts", "", &stacks);
    let server = world.start(&[]);
    assert_eq!(server.post(&hook(1), &[], b"").status, 202);
    assert_eq!(server.post(&hook(2), &[], b"").status, 202);
    let deploys = world.settle(30);
    let slow = deploys.iter().find(|d| d.stack == "slow").unwrap();
    assert_eq!(slow.state, DeployState::Failed);
    assert!(
        slow.detail
            .as_deref()
            .unwrap()
            .contains("timed out after 1s"),
        "{slow:?}"
    );
    let failing = deploys.iter().find(|d| d.stack == "failing").unwrap();
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
    let world = World::new(
        "serve-sigterm",
        "shutdown_grace = \"20s\"",
        &web_stack(1, "web", "2"),
    );
    let server = world.start(&[]);
    assert_eq!(
        signed_push(&server, &hook(1), "s3cret-s3cret", &sha(1), "d1").status,
        202
    );
    wait_for(10, "the deploy to start", || {
        (!world.ran("web").is_empty()).then_some(())
    });
    assert_eq!(
        signed_push(&server, &hook(1), "s3cret-s3cret", &sha(2), "d2").status,
        202
    );
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
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let receiver = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut head = Vec::new();
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            head.push(line);
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        reader
            .get_mut()
            .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
            .unwrap();
        (head, body)
    });
    let stacks = format!(
        r#"
[[stacks]]
name = "api"
image = "acme/api"
hook_token = "{t}"
http = {{ url = "http://127.0.0.1:{port}/deploy", headers = {{ Authorization = "Bearer xyz" }} }}
"#,
        t = token(1)
    );
    let world = World::new("serve-http-action", "", &stacks);
    let server = world.start(&[]);
    assert_eq!(server.post(&hook(1), &[], b"").status, 202);
    let (head, body) = receiver.join().unwrap();
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
    let config = crate::support::workspace().join("examples/redeploy.toml");
    let log = TempDir::new("example-config");
    let server = ServerProcess::start(&config, free_port(), &[], log.join("server.log"));
    // `curl -X POST -d "" "$(redeploy hook-url registry --config examples/redeploy.toml)"`
    let out = std::process::Command::new(crate::support::redeploy_bin())
        .args(["hook-url", "registry", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let url = String::from_utf8(out.stdout).unwrap();
    let path = &url.trim()[url.find("/hooks/").unwrap()..];
    let curl = std::process::Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-d",
            "",
            &format!("http://{}{path}", server.addr),
        ])
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
    let stacks = format!(
        r#"
[[stacks]]
name = "shop"
command = ["@STANDIN@"]
hook_token = "{t}"
env = {{ RECORD_DIR = "@RECORD:shop@" }}

[stacks.profiles.fast]
env = {{ FAST = "1" }}

[[stacks.services]]
name = "web"
repository = "acme/web"
branch = "main"

[[stacks.services]]
name = "proxy"
image = "nginx"
"#,
        t = token(1)
    );
    let world = World::new("serve-trigger", "", &stacks);
    let server = world.start(&[]);
    let out = std::process::Command::new(crate::support::redeploy_bin())
        .args([
            "trigger",
            "shop",
            "--config",
            world.config.to_str().unwrap(),
            "--services",
            "proxy",
            "--profile",
            "fast",
        ])
        .args(["--server", &format!("http://{}", server.addr)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = answer["decisions"][0]["deploy_id"].as_i64().unwrap();
    world.settle(20);
    let env = world.recorded_env("shop", id);
    assert_eq!(
        env.get("REDEPLOY_SERVICES").map(String::as_str),
        Some("proxy")
    );
    assert_eq!(
        env.get("REDEPLOY_PROFILE").map(String::as_str),
        Some("fast")
    );
    assert_eq!(
        env.get("FAST").map(String::as_str),
        Some("1"),
        "the profile's env reaches the command"
    );
    assert_eq!(
        env.get("REDEPLOY_PROVIDER").map(String::as_str),
        Some("manual")
    );
    // An unknown profile is refused with the server's 400.
    let out = std::process::Command::new(crate::support::redeploy_bin())
        .args([
            "trigger",
            "shop",
            "--config",
            world.config.to_str().unwrap(),
            "--profile",
            "slow",
        ])
        .args(["--server", &format!("http://{}", server.addr)])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("has no deploy profile \\\"slow\\\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    server.terminate();
}

#[test]
fn a_client_that_never_finishes_its_headers_is_dropped() {
    use std::io::{Read, Write};
    let stacks = format!("[[stacks]]\nname = \"web\"\nimage = \"acme/web\"\nhook_token = \"{}\"\ncommand = [\"true\"]\n", token(1));
    let world = World::new("serve-slow-client", "header_timeout = \"1s\"", &stacks);
    let server = world.start(&[]);
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
    assert_eq!(
        crate::support::http::request(&server.addr, "GET", "/healthz", &[], b"").status,
        200
    );
    server.terminate();
}
