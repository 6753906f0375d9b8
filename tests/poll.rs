//! Polling git repositories (`[stacks.poll]`, issue 17): a real
//! `redeploy serve` asks real bare repositories for their refs, over
//! `file://` and over `git://` from `git daemon` on loopback, while the
//! test pushes to them between looks. A repository that cannot be reached,
//! a restart, the webhook and the poll seeing the same push, and
//! `redeploy poll` as an administrator runs it, and an HTTPS token sent to
//! `git http-backend` behind HTTP Basic (`tests/support/git_http.py`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use redeploy_host::journal::DeployState;
use redeploy_host::poll::tips::{next_wait, MAX_BACKOFF_DOUBLINGS};
use redeploy_host::poll::POLL_TICK;

use crate::support::cli::{stderr, stdout};
use crate::support::deliveries::{decision, polled, signed_push};
use crate::support::git::git;
use crate::support::stacks::toml;
use crate::support::{free_port, hook, wait_for, Stack, World};

const SECRET: &str = "poll-s3cret";

/// What a test allows, beyond a look's own time limit, for a look to be
/// recorded in the journal on a machine loaded by the rest of the suite.
const LOOK_MARGIN: Duration = Duration::from_secs(20);

/// `[stacks.poll]` asking `url` every second.
fn polling(url: &str) -> String {
    format!("[stacks.poll]\nevery = \"1s\"\ntimeout = \"5s\"\nurl = {url:?}\n")
}

/// A bare repository `<name>.git` in `dir` and a clone of it to commit
/// from (`<name>-work`), with `main` holding one commit.
fn repository(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let bare = dir.join(format!("{name}.git"));
    let work = dir.join(format!("{name}-work"));
    git(
        dir,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    git(
        dir,
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    git(&work, &["checkout", "-q", "-b", "main"]);
    commit(&work, "main", "first");
    (bare, work)
}

/// Commits `what` on `branch` of the clone `work` and pushes it; the new
/// commit's id.
fn commit(work: &Path, branch: &str, what: &str) -> String {
    git(work, &["checkout", "-q", "-B", branch]);
    std::fs::write(work.join("file"), what).unwrap();
    git(work, &["add", "file"]);
    git(work, &["commit", "-q", "-m", what]);
    git(work, &["push", "-q", "origin", branch]);
    git(work, &["rev-parse", "HEAD"]).trim().to_owned()
}

/// Waits until the journal remembers a successful look at `source` of
/// `stack` that saw `sha` somewhere.
fn seen(world: &World, stack: &str, source: &str, sha: &str) {
    seen_within(world, stack, source, sha, 30);
}

/// [`seen`], waiting up to `secs` seconds.
fn seen_within(world: &World, stack: &str, source: &str, sha: &str, secs: u64) {
    wait_for(secs, &format!("a poll of {source} seeing {sha}"), || {
        let s = world.journal().poll_source(stack, source).unwrap()?;
        s.tips_json.filter(|t| t.contains(sha)).map(|_| ())
    });
}

/// A loopback server the test runs (`git daemon`, `git_http.py`), killed
/// on drop.
struct Listening(Child);

impl Listening {
    /// Starts `command` and waits until `port` of the loopback accepts.
    fn start(mut command: Command, port: u16, what: &str) -> Listening {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        // Killed on drop even when the wait below fails.
        let listening = Listening(child);
        wait_for(20, &format!("{what} to listen"), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        listening
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `git daemon` (Debian's git ships it) serving the repositories in `base`
/// read-only on `port` of the loopback.
fn git_daemon(base: &Path, port: u16) -> Listening {
    let mut daemon = Command::new("git");
    daemon
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", base.display()),
            base.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Listening::start(daemon, port, "git daemon")
}

/// `tests/support/git_http.py`: git's smart HTTP on loopback for the
/// repositories in `root`, behind HTTP Basic credentials `user:password`,
/// logging each Authorization header it is sent into `seen`.
fn git_http(root: &Path, port: u16, credentials: &str, seen: &Path) -> Listening {
    let mut server = Command::new("python3");
    server
        .arg(crate::support::workspace().join("tests/support/git_http.py"))
        .args([&port.to_string(), root.to_str().unwrap(), credentials])
        .arg(seen);
    Listening::start(server, port, "the git HTTP server")
}

#[test]
fn polling_deploys_each_new_tip_of_the_branch_once_and_nothing_at_start() {
    let port = free_port();
    let git_url = format!("git://127.0.0.1:{port}/served.git");
    let stacks = [
        Stack::repo("web", "acme/web", "main", 1).table(&polling("file://@DIR@/app.git")),
        Stack::repo("api", &git_url, "main", 2).table("[stacks.poll]\nevery = \"1s\"\n"),
    ];
    let world = World::new("poll-git", "", &toml(&stacks));
    let (bare, work) = repository(&world.dir.0, "app");
    let (_, daemon_work) = repository(&world.dir.0, "served");
    let _daemon = git_daemon(&world.dir.0, port);
    let file_url = format!("file://{}", bare.display());
    let first = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();
    let served_first = git(&daemon_work, &["rev-parse", "HEAD"]).trim().to_owned();
    let server = world.start(&[]);

    // The first look only records what is there.
    seen(&world, "web", &file_url, &first);
    seen(&world, "api", &git_url, &served_first);
    assert_eq!(world.deploys().len(), 0, "nothing deploys at start");
    assert_eq!(polled(&world).len(), 0, "no delivery at start");

    // A new tip of main deploys, once; a push to another branch is never
    // asked for.
    let feature = commit(&work, "feature/x", "feature");
    let second = commit(&work, "main", "second");
    let served_second = commit(&daemon_work, "main", "second");
    seen(&world, "web", &file_url, &second);
    seen(&world, "api", &git_url, &served_second);
    let deploys = world.settle(30);
    let by = |stack: &str| -> Vec<(String, DeployState)> {
        deploys
            .iter()
            .filter(|d| d.queued.stack == stack)
            .map(|d| (d.queued.sha.clone().unwrap(), d.state))
            .collect()
    };
    assert_eq!(by("web"), [(second.clone(), DeployState::Succeeded)]);
    assert_eq!(by("api"), [(served_second.clone(), DeployState::Succeeded)]);
    let web = world.recorded_env(
        "web",
        deploys.iter().find(|d| d.queued.stack == "web").unwrap().id,
    );
    assert_eq!(web["REDEPLOY_SHA"], second);
    assert_eq!(web["REDEPLOY_REF"], "refs/heads/main");
    let deliveries = polled(&world);
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    let tips = world
        .journal()
        .poll_source("web", &file_url)
        .unwrap()
        .unwrap()
        .tips_json
        .unwrap();
    assert_eq!(tips, format!(r#"{{"refs/heads/main":"{second}"}}"#));
    assert!(!tips.contains(&feature));

    // Looks that see nothing new make nothing.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(polled(&world).len(), 2);
    server.terminate();

    // Pushed while the server was down: seen at the first look after the
    // restart, and only that.
    let third = commit(&work, "main", "third");
    let server = world.start(&[]);
    seen(&world, "web", &file_url, &third);
    let deploys = world.settle(30);
    let web: Vec<String> = deploys
        .iter()
        .filter(|d| d.queued.stack == "web")
        .map(|d| d.queued.sha.clone().unwrap())
        .collect();
    assert_eq!(web, [second, third]);
    crate::support::world::assert_all_succeeded(&deploys);
    server.terminate();
}

/// Fills the bare repository `bare` with `count` branches
/// `refs/heads/noise/<n>/refs/heads/release/x` at `commit` (which git's
/// `ls-remote` prints for a pattern `refs/heads/release/*`: it matches the
/// tail of a name), and two such names no answer may hold (a no-break
/// space, a byte that is not UTF-8), written as git packs refs (one
/// `packed-refs` file): what whoever may push to a repository can create.
fn noise_branches(bare: &Path, commit: &str, count: usize) {
    let mut names: Vec<Vec<u8>> = (0..count)
        .map(|n| format!("refs/heads/noise/{n}/refs/heads/release/x").into_bytes())
        .chain([
            "refs/heads/a\u{a0}b/refs/heads/release/x"
                .as_bytes()
                .to_vec(),
            b"refs/heads/\xff/refs/heads/release/x".to_vec(),
        ])
        .collect();
    names.sort();
    let mut packed = b"# pack-refs with: peeled fully-peeled sorted \n".to_vec();
    for name in names {
        packed.extend_from_slice(format!("{commit} ").as_bytes());
        packed.extend_from_slice(&name);
        packed.push(b'\n');
    }
    std::fs::write(bare.join("packed-refs"), packed).unwrap();
}

/// A repository of 300,000 other branches (more than polling lists, and
/// more than 16 MiB of `git ls-remote` even for the stack's pattern, whose
/// tail they match), two of them with names no answer may hold, is polled
/// for the refs the stack follows alone: a push to them deploys, and one to a ref the patterns'
/// literal start takes but the glob does not is journaled as a skip. A
/// change of the patterns deploys nothing by itself: the refs newly
/// followed are taken as they are, and one created after deploys.
#[test]
fn a_repository_of_many_other_branches_is_polled_for_the_refs_followed() {
    let stacks =
        [Stack::repo("web", "acme/web", "release/*", 1).table(&polling("file://@DIR@/app.git"))];
    let world = World::new("poll-many-refs", "", &toml(&stacks));
    let (bare, work) = repository(&world.dir.0, "app");
    let url = format!("file://{}", bare.display());
    let first = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();
    git(&work, &["tag", "v1"]);
    git(&work, &["push", "-q", "origin", "v1"]);
    noise_branches(&bare, &first, 300_000);
    // What git prints for the stack's pattern: more than 16 MiB.
    let printed = std::process::Command::new("git")
        .args(["ls-remote", "--heads", "--", &url, "refs/heads/release/*"])
        .output()
        .unwrap();
    assert!(printed.status.success());
    assert!(
        printed.stdout.len() > 16 * 1024 * 1024,
        "{} bytes",
        printed.stdout.len()
    );
    let release = commit(&work, "release/1.0", "release");
    let server = world.start(&[]);
    seen(&world, "web", &url, &release);
    assert_eq!(
        world.deploys().len(),
        0,
        "nothing deploys at the first look"
    );

    let second = commit(&work, "release/1.0", "second");
    let nested = commit(&work, "release/next/hotfix", "nested");
    seen(&world, "web", &url, &nested);
    let deploys = world.settle(30);
    assert_eq!(
        deploys
            .iter()
            .map(|d| d.queued.sha.clone().unwrap())
            .collect::<Vec<_>>(),
        std::slice::from_ref(&second)
    );
    let skipped = polled(&world)
        .into_iter()
        .find(|d| decision(d)["action"] == "skip")
        .unwrap_or_else(|| panic!("no skipped delivery"));
    let reason = decision(&skipped)["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("release/next/hotfix"), "{reason}");
    let source = world.journal().poll_source("web", &url).unwrap().unwrap();
    assert_eq!(
        source.ref_filter.as_deref(),
        Some(r#"["refs/heads/release/*"]"#)
    );
    assert!(!source.tips_json.unwrap().contains("noise"));
    server.terminate();

    // Tags followed too, from the next start: v1, there all along, does
    // not deploy; v2, pushed after, does.
    let text = std::fs::read_to_string(&world.config).unwrap();
    let tags = text.replace(
        "branch = \"release/*\"",
        "branch = \"release/*\"\ntags = \"v*\"",
    );
    assert_ne!(tags, text);
    std::fs::write(&world.config, tags).unwrap();
    let server = world.start(&[]);
    seen(&world, "web", &url, "refs/tags/v1");
    let third = commit(&work, "main", "third");
    git(&work, &["tag", "v2"]);
    git(&work, &["push", "-q", "origin", "v2"]);
    seen(&world, "web", &url, &third);
    let deploys = world.settle(30);
    let shown: Vec<(String, String)> = deploys
        .iter()
        .map(|d| {
            (
                d.queued.git_ref.clone().unwrap(),
                d.queued.sha.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("refs/heads/release/1.0".to_owned(), second),
            ("refs/tags/v2".to_owned(), third),
        ]
    );
    crate::support::world::assert_all_succeeded(&deploys);
    server.terminate();
}

#[test]
fn a_push_seen_by_the_webhook_and_by_polling_deploys_once() {
    let stacks = [Stack::repo("web", "acme/web", "main", 1)
        .secret(SECRET)
        .table(&polling("file://@DIR@/app.git"))];
    let world = World::new("poll-and-hook", "", &toml(&stacks));
    let (bare, work) = repository(&world.dir.0, "app");
    let url = format!("file://{}", bare.display());
    let first = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();
    let server = world.start(&[]);
    seen(&world, "web", &url, &first);

    // The push, and GitHub's webhook for it.
    let second = commit(&work, "main", "second");
    let r = signed_push(&server, &hook(1), SECRET, &second, "push-2");
    assert_eq!(r.status, 202, "{}", r.text());
    seen(&world, "web", &url, &second);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0].queued.sha.as_deref(), Some(second.as_str()));
    let polled = polled(&world);
    assert_eq!(polled.len(), 1);
    let decision = decision(&polled[0]);
    assert_eq!(decision["state"], "duplicate", "{decision}");
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("is already deploy #{}", deploys[0].id)),
        "{decision}"
    );
    server.terminate();
}

#[test]
fn an_unreachable_repository_is_logged_once_counted_and_polled_again_once_it_answers() {
    let port = free_port();
    let url = format!("git://127.0.0.1:{port}/app.git");
    let (every, timeout) = (Duration::from_secs(1), Duration::from_secs(30));
    let stacks = [Stack::repo("web", &url, "main", 1).table(&format!(
        "[stacks.poll]\nevery = \"{}s\"\ntimeout = \"{}s\"\n",
        every.as_secs(),
        timeout.as_secs()
    ))];
    let (world, server) = World::serving("poll-unreachable", "", &stacks);
    wait_for(30, "three failed looks", || {
        let s = world.journal().poll_source("web", &url).unwrap()?;
        (s.failures >= 3).then_some(())
    });
    let log = server.log_text();
    assert_eq!(log.matches("polling failed").count(), 1, "{log}");
    let metrics = server.get("/metrics").text();
    assert!(
        metrics.contains(&format!(
            "redeploy_poll_failures_in_a_row{{stack=\"web\",source=\"{url}\"}} "
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("redeploy_polls_total{stack=\"web\",outcome=\"failed\"}"),
        "{metrics}"
    );
    let source = world.journal().poll_source("web", &url).unwrap().unwrap();
    assert!(source.error.unwrap().contains("git ls-remote failed"));
    assert_eq!(source.tips_json, None);
    let history = crate::support::cli::stdout(&world.redeploy(&["history", "web"]));
    assert!(history.contains("Polled repositories:"), "{history}");
    let row = history
        .lines()
        .find(|l| l.contains(&url))
        .unwrap_or_else(|| panic!("{history}"));
    assert!(row.contains("git ls-remote failed"), "{row}");

    // The repository answers: the next look (after the back-off) records
    // its tips, deploys nothing, and says polling works again.
    let (_bare, work) = repository(&world.dir.0, "app");
    let first = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();
    let _daemon = git_daemon(&world.dir.0, port);
    // By now the server may have failed again and backed off as far as it
    // goes. The next look comes within that longest back-off (jittered
    // up) and the poller's tick, and ends within its own time limit.
    let bound = next_wait(every, MAX_BACKOFF_DOUBLINGS, 1.0) + POLL_TICK + timeout + LOOK_MARGIN;
    seen_within(
        &world,
        "web",
        &url,
        &first,
        bound.as_secs_f64().ceil() as u64,
    );
    wait_for(10, "the log saying polling works again", || {
        server
            .log_text()
            .contains("polling works again")
            .then_some(())
    });
    assert_eq!(world.deploys().len(), 0);
    assert_eq!(server.log_text().matches("polling failed").count(), 1);
    server.terminate();
}

#[test]
fn redeploy_poll_prints_what_moved_and_what_the_component_decides() {
    let stacks = [
        Stack::repo("web", "acme/web", "main", 1).table(&polling("file://@DIR@/app.git")),
        Stack::repo("gone", "acme/gone", "main", 2).table(&polling("file://@DIR@/gone.git")),
    ];
    let world = World::new("poll-cli", "", &toml(&stacks));
    let (bare, work) = repository(&world.dir.0, "app");
    let url = format!("file://{}", bare.display());

    // Never polled: what it would record.
    let out = world.redeploy(&["poll", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(&format!("{url} (acme/web)")), "{text}");
    assert!(
        text.contains("1 branches and tags followed (asked for: refs/heads/main)"),
        "{text}"
    );
    assert!(text.contains("never polled"), "{text}");

    // After the server's first look, a push: what would deploy.
    let first = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();
    let server = world.start(&[]);
    seen(&world, "web", &url, &first);
    server.terminate();
    let second = commit(&work, "main", "second");
    let feature = commit(&work, "feature/x", "feature");
    let out = world.redeploy(&["poll", "web"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("last poll "), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name}: {text}"))
            .to_owned()
    };
    assert!(
        line("refs/heads/main ").contains(&format!(
            "{} -> {}: deploy",
            &first[..12],
            &second[..12]
        )),
        "{text}"
    );
    // Another branch is not asked for.
    assert!(
        !text.contains("feature/x") && !text.contains(&feature[..12]),
        "{text}"
    );
    // A dry run: nothing deployed, nothing recorded.
    assert_eq!(world.deploys().len(), 0);
    let source = world.journal().poll_source("web", &url).unwrap().unwrap();
    assert!(!source.tips_json.unwrap().contains(&second));

    // A repository that cannot be asked: exit 2, and why.
    let out = world.redeploy(&["poll", "gone"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("cannot poll: git ls-remote failed"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("1 of 1 repositories could not be polled"),
        "{}",
        stderr(&out)
    );
    let out = world.redeploy(&["poll", "nosuch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no stack named \"nosuch\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_https_token_reaches_git_and_nothing_else_and_a_wrong_one_deploys_nothing() {
    const TOKEN: &str = "glpat-poll-t0ken-5ecret";
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/app.git");
    let with_token = |file: &str| {
        format!(
            "[stacks.poll]\nevery = \"1s\"\nurl = {url:?}\nusername = \"alice\"\ntoken_file = \"@DIR@/{file}\"\n"
        )
    };
    let stacks = [
        Stack::repo("web", "acme/web", "main", 1).table(&with_token("git-token")),
        Stack::repo("denied", "acme/web", "main", 2).table(&with_token("wrong-token")),
        // The right token, but for other hosts: git is asked without it.
        Stack::repo("elsewhere", "acme/web", "main", 3).table(&format!(
            "{}token_hosts = [\"github.com\", \"127.0.0.1\"]\n",
            with_token("git-token")
        )),
    ];
    let world = World::new("poll-token", "", &toml(&stacks));
    std::fs::write(world.dir.join("git-token"), format!("{TOKEN}\n")).unwrap();
    std::fs::write(world.dir.join("wrong-token"), "not-the-token\n").unwrap();
    let (_bare, work) = repository(&world.dir.0, "app");
    let seen_file = world.dir.join("authorization-seen");
    let _git = git_http(&world.dir.0, port, &format!("alice:{TOKEN}"), &seen_file);
    let first = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();
    let server = world.start(&[]);

    seen(&world, "web", &url, &first);
    let second = commit(&work, "main", "second");
    seen(&world, "web", &url, &second);
    wait_for(30, "the wrong token failing three times", || {
        let s = world.journal().poll_source("denied", &url).unwrap()?;
        (s.failures >= 3).then_some(())
    });
    wait_for(
        30,
        "the token kept from an unlisted host failing twice",
        || {
            let s = world.journal().poll_source("elsewhere", &url).unwrap()?;
            (s.failures >= 2).then_some(())
        },
    );
    let deploys = world.settle(30);
    let stacks: Vec<&str> = deploys.iter().map(|d| d.queued.stack.as_str()).collect();
    assert_eq!(stacks, ["web"], "only the stack whose token works deploys");
    for (stack, why) in [
        ("denied", "the server refused the credentials"),
        (
            "elsewhere",
            "the server asks for credentials and none were sent",
        ),
    ] {
        let refused = world.journal().poll_source(stack, &url).unwrap().unwrap();
        assert_eq!(refused.tips_json, None, "{stack}");
        let error = refused.error.unwrap_or_default();
        assert!(error.contains(why), "{stack}: {error}");
    }
    let log = server.log_text();
    assert_eq!(
        log.matches("polling failed").count(),
        2,
        "once per failing stack: {log}"
    );

    // git sent the token as HTTP Basic credentials...
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("alice:{TOKEN}"))
    };
    let sent = std::fs::read_to_string(&seen_file).unwrap();
    assert!(
        sent.lines().any(|l| l == format!("Basic {basic}")),
        "{sent}"
    );
    // ...and nothing else ever holds it.
    let history = stdout(&world.redeploy(&["history"]));
    let dry_run = world.redeploy(&["poll", "web"]);
    let metrics = server.get("/metrics").text();
    server.terminate();
    let mut places = vec![
        (
            "the server's log",
            std::fs::read(world.dir.join("server.log")).unwrap(),
        ),
        ("history", history.into_bytes()),
        ("redeploy poll", [dry_run.stdout, dry_run.stderr].concat()),
        ("/metrics", metrics.into_bytes()),
    ];
    for entry in std::fs::read_dir(world.dir.join("state")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            places.push(("the state directory", std::fs::read(&path).unwrap()));
        }
    }
    for (place, bytes) in places {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(TOKEN) && !text.contains(&basic),
            "the token in {place}: {text}"
        );
    }
}

#[test]
fn a_continuous_deployment_stack_that_polls_asks_github_once_per_commit() {
    const TOKEN: &str = "ghp_standin_token_0123456789";
    let standin = crate::github_standin::GithubStandin::start(TOKEN);
    let stacks = [Stack::repo("web", "acme/web", "main", 1)
        .secret(SECRET)
        .github(&standin.base_url(), "web-env", "")
        .table(&polling("file://@DIR@/app.git"))];
    let port = free_port();
    let public = format!("http://127.0.0.1:{port}");
    let world = World::new(
        "poll-cd",
        &format!("public_url = \"{public}\""),
        &toml(&stacks),
    );
    world.write_gh_token(&format!("{TOKEN}\n"));
    let (bare, work) = repository(&world.dir.0, "app");
    let url = format!("file://{}", bare.display());
    let first = git(&work, &["rev-parse", "HEAD"]).trim().to_owned();
    let server = world.start_on(port, &[], &[]);
    standin.forward_deployments_to(&format!("{public}{}", hook(1)), SECRET);
    seen(&world, "web", &url, &first);

    // The push, and its webhook: whichever comes first asks GitHub.
    let second = commit(&work, "main", "second");
    let r = signed_push(&server, &hook(1), SECRET, &second, "push-2");
    assert_eq!(r.status, 202, "{}", r.text());
    seen(&world, "web", &url, &second);
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 1, "{deploys:?}");
    assert_eq!(deploys[0].state, DeployState::Succeeded);
    assert_eq!(deploys[0].queued.sha.as_deref(), Some(second.as_str()));
    let requests = world
        .journal()
        .deployment_requests(Some("web"), 10)
        .unwrap();
    assert_eq!(
        requests.len(),
        1,
        "one deployment for the commit: {requests:?}"
    );
    let asked = standin
        .requests()
        .into_iter()
        .filter(|q| q.operation == "POST /repos/{owner}/{repo}/deployments")
        .count();
    assert_eq!(asked, 1);
    // The second sighting says why it asked nothing.
    let duplicate = world
        .journal()
        .deliveries(100)
        .unwrap()
        .into_iter()
        .map(|d| decision(&d))
        .find(|d| d["state"] == "duplicate")
        .expect("the second sighting's decision");
    let reason = duplicate["reason"].as_str().unwrap();
    assert!(reason.contains("each commit is asked for once"), "{reason}");

    // The branch moves on, then is forced back to the second commit: the
    // poll sees it move back from the deployed head, and asks again.
    let third = commit(&work, "main", "third");
    seen(&world, "web", &url, &third);
    let deploys = wait_for(30, "the third commit deployed", || {
        let d = world.settle(30);
        (d.len() == 2).then_some(d)
    });
    assert_eq!(deploys[1].queued.sha.as_deref(), Some(third.as_str()));
    git(
        &work,
        &["push", "-q", "-f", "origin", &format!("{second}:main")],
    );
    let deploys = wait_for(30, "the second commit deployed again", || {
        let d = world.settle(30);
        (d.len() == 3).then_some(d)
    });
    assert_eq!(deploys[2].state, DeployState::Succeeded, "{deploys:?}");
    assert_eq!(deploys[2].queued.sha.as_deref(), Some(second.as_str()));
    let requests = world
        .journal()
        .deployment_requests(Some("web"), 10)
        .unwrap();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(standin.violations(), Vec::<String>::new());
    server.terminate();
}
