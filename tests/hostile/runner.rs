//! Hostile cases of issue 12 for the hook's input, its forwarding client,
//! the deploy runners (locks, process groups, recovery) and the smaller
//! points (log forging, HTTP action redirects): each case its own test.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redeploy_host::journal::DeployState;

use crate::support::deliveries::sha;
use crate::support::deploy::write_executable;
use crate::support::http::serve_once;
use crate::support::world::assert_all_succeeded;
use crate::support::{hook, redeploy_bin, wait_for, Stack, World};

/// A world of one stack "web" fed by post-receive for the bare repository
/// path `@DIR@/app.git`, its state directory warmed (the hook loads the
/// compiled component, as after a first run).
fn hook_world(name: &str) -> World {
    let world = World::new(name, "", &Stack::bare_repo("web", "main").toml());
    world.warm();
    world
}

/// Runs `redeploy post-receive` with `input` on stdin; returns (exit ok,
/// stdout, stderr).
fn post_receive(world: &World, input: &[u8], extra: &[&str]) -> (bool, String, String) {
    let repo = world.dir.join("app.git");
    let mut child = Command::new(redeploy_bin())
        .args(["post-receive", "--config", world.config.to_str().unwrap()])
        .args(["--repository", repo.to_str().unwrap()])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // The hook may refuse before reading everything: write from a thread.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn journal_deploys(world: &World) -> usize {
    let path = redeploy_host::journal::Journal::path_in(&world.dir.join("state"));
    if !path.exists() {
        return 0;
    }
    world.deploys().len()
}

const ZERO: &str = "0000000000000000000000000000000000000000";
const NEW: &str = "1111111111111111111111111111111111111111";

/// Issue 12, point 1: ~8,300 updates of 420-byte feature-branch ref names,
/// laid out so that a cut at `MAX_INPUT_BYTES` lands right after
/// `refs/heads/main` inside the last ref name. Refused whole: nothing
/// deploys, non-zero exit, a message git shows the pusher.
#[test]
fn post_receive_refuses_an_oversized_push_whose_cut_would_read_main() {
    let limit = redeploy_host::commands::post_receive::MAX_INPUT_BYTES as usize;
    let world = hook_world("hostile-runner-oversized");
    let line = |name: &str| format!("{ZERO} {NEW} {name}\n");
    let feature = |n: usize| {
        let name = format!("refs/heads/feature/{n:06}-");
        format!("{name}{}", "x".repeat(420 - name.len()))
    };
    let mut input = String::new();
    let mut n = 0;
    // Fill with feature branches until the last line can straddle the limit.
    while input.len() + line(&feature(n)).len() + 200 < limit {
        input.push_str(&line(&feature(n)));
        n += 1;
    }
    // Pad one more ref so that `refs/heads/main` ends exactly at the limit.
    let prefix = format!("{ZERO} {NEW} ");
    let main = "refs/heads/main";
    let pad = limit - input.len() - 2 * prefix.len() - 1 - main.len() - "refs/heads/pad-".len();
    input.push_str(&line(&format!("refs/heads/pad-{}", "y".repeat(pad))));
    input.push_str(&format!(
        "{prefix}{main}-feature-only-pushers-may-push-this\n"
    ));
    assert_eq!(
        &input[limit - main.len()..limit],
        main,
        "the cut lands after main"
    );
    assert!(n > 8_000, "{n} refs");

    let (ok, stdout, stderr) = post_receive(&world, input.as_bytes(), &[]);
    assert!(
        !ok,
        "an oversized push must fail the hook: {stdout}{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "redeploy: push refused: the post-receive input is over {limit} bytes"
        )),
        "stderr: {stderr}"
    );
    assert!(
        !stdout.contains("deploying"),
        "an oversized push deployed: {stdout}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(journal_deploys(&world), 0, "a deploy was journaled");
    assert!(world.ran("web").is_empty(), "the deploy command ran");
}

/// The same limit taken exactly (a push of exactly `MAX_INPUT_BYTES`) is
/// evaluated: the refusal is for input over the limit only.
#[test]
fn post_receive_evaluates_a_push_of_exactly_the_input_limit() {
    let limit = redeploy_host::commands::post_receive::MAX_INPUT_BYTES as usize;
    let world = hook_world("hostile-runner-at-limit");
    let mut input = format!("{ZERO} {NEW} refs/heads/main\n");
    // Blank lines are skipped by the parser: pad to exactly the limit.
    input.push_str(&"\n".repeat(limit - input.len()));
    let (ok, stdout, stderr) = post_receive(&world, input.as_bytes(), &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("redeploy: web: deploying"), "{stdout}");
    world.settle(30);
}

/// Issue 12, point 11: the forwarding client gives up on a server that
/// accepts the connection and never answers, and the push goes on.
///
/// What is timed is how long the hook held the silent server's connection,
/// from the server's side (accepted until the hook closed it): the hook's
/// own start, however slow a loaded machine makes it, is no part of the
/// forwarding timeout.
#[test]
fn post_receive_forwarding_gives_up_on_a_server_that_never_answers() {
    use std::io::Read as _;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept connections, read what the hook sends and never answer; report
    // how long each stayed open until the hook closed it.
    let (held_tx, held_rx) = std::sync::mpsc::channel::<Duration>();
    let _holder = std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let held_tx = held_tx.clone();
            std::thread::spawn(move || {
                let accepted = Instant::now();
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                let _ = held_tx.send(accepted.elapsed());
            });
        }
    });
    let world = hook_world("hostile-runner-forward-timeout");
    let input = format!("{ZERO} {NEW} refs/heads/main\n");
    let server = format!("http://{addr}");
    let hook = std::thread::spawn(move || {
        let out = post_receive(&world, input.as_bytes(), &["--server", &server]);
        (world, out)
    });
    let limit = redeploy_host::commands::post_receive::FORWARD_TIMEOUT;
    // Generous against a loaded machine's start of the hook; a hook that
    // never gave up would hold the connection for ever.
    let held = held_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the hook never closed the connection of a server that never answers");
    assert!(
        held < limit + Duration::from_secs(5),
        "the hook held a silent server's connection for {held:?} (its limit is {limit:?})"
    );
    let (_world, (_, stdout, stderr)) = hook.join().unwrap();
    assert!(
        stdout.contains("redeploy: web: NOT deployed: cannot reach"),
        "{stdout}{stderr}"
    );
    assert!(
        held_rx.try_recv().is_err(),
        "the hook connected more than once for one stack"
    );
}

/// Issue 12, point 11: a newline in a query value cannot forge a line of
/// the server's log.
#[test]
fn a_query_value_with_a_newline_does_not_forge_a_server_log_line() {
    let multi = Stack::new("multi").token(1).standin();
    let multi = multi.table("[[stacks.services]]\nname = \"web\"\nimage = \"acme/web\"");
    let (world, server) = World::serving("hostile-runner-log-forging", "", &[multi]);
    let forged = "2026-01-01T00:00:00.000000Z%20%20INFO%20redeploy:%20deploy%20succeeded%20FORGED";
    let r = server.post(&format!("{}?services=web%0A{forged}", hook(1)), &[], b"");
    assert_eq!(r.status, 400, "{}", r.text());
    server.terminate();
    let log = world.server_log();
    assert!(log.contains("FORGED"), "the rejection is logged: {log}");
    for line in log.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00"),
            "a forged log line: {line:?}\n{log}"
        );
    }
}

/// Issue 12, point 11: post-receive `remote:` lines escape control
/// characters a ref name carries (git refuses them, a hook fed by other
/// means may not).
#[test]
fn post_receive_remote_lines_escape_control_characters_of_ref_names() {
    let world = hook_world("hostile-runner-remote-lines");
    // Not whitespace (that would split the line): an erase-line sequence
    // and backspaces, which rewrite what the pusher's terminal shows.
    let input = format!("{ZERO} {NEW} refs/heads/x\u{1b}[2K\u{8}\u{8}remote:-forged\n");
    let (_, stdout, stderr) = post_receive(&world, input.as_bytes(), &[]);
    let all = format!("{stdout}{stderr}");
    assert!(
        stdout.contains(
            "redeploy: web: not deploying: ref \"refs/heads/x\\u{1b}[2K\\u{8}\\u{8}remote:-forged\" \
             is not a name git allows for a branch or tag"
        ),
        "{all:?}"
    );
    assert!(
        !all.contains('\u{1b}'),
        "an escape sequence reached the pusher: {all:?}"
    );
    assert!(
        !all.contains('\u{8}'),
        "a backspace reached the pusher: {all:?}"
    );
}

/// Issue 12, point 11: an HTTP deploy action does not follow a redirect,
/// so its credential headers never reach the host the redirect names.
#[test]
fn an_http_action_does_not_follow_a_redirect_with_its_credentials() {
    let thief = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let thief_port = thief.local_addr().unwrap().port();
    thief.set_nonblocking(true).unwrap();
    let (port, redirector) = serve_once(format!(
        "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:{thief_port}/steal\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ));
    let url = format!("http://127.0.0.1:{port}/deploy");
    let key = ("X-Api-Key", "key-that-must-stay-home");
    let stacks = [Stack::http_action("api", 1, &url, key)];
    let (world, server) = World::serving("hostile-runner-http-redirect", "", &stacks);
    assert_eq!(server.post(&hook(1), &[], b"").status, 202);
    redirector.join().unwrap();
    let deploys = world.settle(20);
    assert_eq!(deploys[0].state, DeployState::Failed, "{deploys:?}");
    assert!(
        deploys[0].detail.as_deref().unwrap_or("").contains("307"),
        "{deploys:?}"
    );
    assert!(
        thief.accept().is_err(),
        "the redirect was followed to another host"
    );
    server.terminate();
}

// ---------------------------------------------------------------------------
// Point 9: locks, process groups, recovery.
// ---------------------------------------------------------------------------

/// A deploy command whose commit ending in `1` starts a background child
/// that outlives it (`orphan.pid`) and runs long (its own pid in
/// `command.pid`); every deploy records, when
/// it starts, whether that child is still alive (`overlaps`), and whether
/// another deploy of the stack is running (the `running.lock` directory).
const ORPHANING: &str = r#"#!/bin/sh
dir="$RECORD_DIR"
id="$REDEPLOY_DEPLOY_ID"
if [ -f "$dir/orphan.pid" ]; then
  pid=$(cat "$dir/orphan.pid")
  if [ -r "/proc/$pid/stat" ] && ! grep -q ') Z' "/proc/$pid/stat"; then
    echo "$id started while $pid of an earlier deploy ran" >> "$dir/overlaps"
  fi
fi
if ! mkdir "$dir/running.lock" 2>/dev/null; then echo "$id overlapped a running deploy" >> "$dir/overlaps"; fi
echo "start $id ${REDEPLOY_SHA:-}" >> "$dir/timeline"
case "${REDEPLOY_SHA:-}" in
  *1) sleep 300 & echo $! > "$dir/orphan.pid"; echo $$ > "$dir/command.pid"; sleep 60 ;;
  *) sleep "${SLEEP:-0}" ;;
esac
echo "end $id" >> "$dir/timeline"
rmdir "$dir/running.lock"
"#;

/// A world whose stack "web" is fed by post-receive and deploys with
/// [`ORPHANING`].
fn orphaning_world(name: &str) -> World {
    let stack = Stack::new("web").follows("@DIR@/app.git", "main").token(1);
    let stack = stack
        .line("command = [\"@DIR@/orphaning.sh\"]")
        .timeout("5m");
    let world = World::new(name, "", &stack.env("RECORD_DIR", "@RECORD:web@").toml());
    write_executable(&world.dir.join("orphaning.sh"), ORPHANING);
    world
}

fn push_line(sha: &str) -> Vec<u8> {
    format!("{ZERO} {sha} refs/heads/main\n").into_bytes()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

fn orphan_pid(world: &World) -> i32 {
    wait_for(30, "the background child to start", || {
        std::fs::read_to_string(world.record("web").join("orphan.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
}

/// The pid of the running [`ORPHANING`] command of a commit ending in `1`.
fn command_pid(world: &World) -> i32 {
    wait_for(30, "the deploy command to start", || {
        std::fs::read_to_string(world.record("web").join("command.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
}

/// Waits up to 10 s for `pid` (`what`) to be gone (or a zombie).
fn assert_dies(pid: i32, what: &str) {
    wait_for(10, &format!("{what} ({pid}) to die"), || {
        (!alive(pid)).then_some(())
    });
}

fn assert_no_overlap(world: &World) {
    let overlaps =
        std::fs::read_to_string(world.record("web").join("overlaps")).unwrap_or_default();
    assert!(
        overlaps.is_empty(),
        "deploys of one stack overlapped:\n{overlaps}"
    );
}

/// The pids of `redeploy run-queued` processes for this world's config.
fn run_queued_pids(world: &World) -> Vec<i32> {
    let config = world.config.to_str().unwrap().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("run-queued") && c.contains(&config)
            })
        })
        .collect()
}

fn sigkill(pid: i32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Pushes commit `n` through the hook (`extra`: its options) and asserts
/// that it deploys.
#[track_caller]
fn hook_push(world: &World, n: usize, extra: &[&str]) {
    let (ok, out, err) = post_receive(world, &push_line(&sha(n)), extra);
    assert!(ok && out.contains("deploying"), "{out}{err}");
}

/// Asserts that the first deploy was interrupted and the second succeeded,
/// that the first's background child is gone and that no two deploys
/// overlapped.
#[track_caller]
fn assert_recovered(world: &World, orphan: i32) {
    let deploys = world.settle(60);
    assert_eq!(deploys[0].state, DeployState::Interrupted, "{deploys:#?}");
    assert_eq!(deploys[1].state, DeployState::Succeeded, "{deploys:#?}");
    assert!(
        !alive(orphan),
        "the interrupted deploy's background child still runs"
    );
    assert_no_overlap(world);
}

/// Issue 12, point 9: `serve` is SIGKILLed while a deploy whose command left
/// a background child runs; after the restart that child is gone before the
/// stack's next deploy starts, and no two deploys of the stack overlap.
#[test]
fn a_sigkilled_serve_leaves_no_orphan_running_when_the_next_deploy_starts() {
    let world = orphaning_world("hostile-runner-serve-orphan");
    let server = world.start(&[]);
    // Pushes forwarded by the hook carry commits: the first one's command
    // leaves a background child.
    let forward = ["--server", &server.url()];
    hook_push(&world, 1, &forward);
    let orphan = orphan_pid(&world);
    hook_push(&world, 2, &forward);
    let command = command_pid(&world);
    server.kill();
    // The deploy command dies with the server (the reaper's SIGTERM), long
    // before its 60 s; its background child is left over (the process
    // group outlives its leader).
    assert_dies(command, "the deploy command, with the server");
    assert!(
        alive(orphan),
        "the background child should outlive the server"
    );
    // The killed command could not clean up after itself.
    let _ = std::fs::remove_dir(world.record("web").join("running.lock"));

    let server = world.start(&[]);
    assert_recovered(&world, orphan);
    assert_eq!(world.deploys().len(), 2);
    server.terminate();
}

/// Issue 12, point 9: the same for the hook's detached runner: a SIGKILLed
/// `run-queued` leaves its deploy `started`; the next runner stops what is
/// left of it, marks it interrupted, then deploys, without overlap.
#[test]
fn a_sigkilled_run_queued_is_recovered_by_the_next_runner_without_overlap() {
    let world = orphaning_world("hostile-runner-run-queued-orphan");
    hook_push(&world, 1, &[]);
    let orphan = orphan_pid(&world);
    let runners = run_queued_pids(&world);
    assert_eq!(runners.len(), 1, "{runners:?}");
    let command = command_pid(&world);
    sigkill(runners[0]);
    wait_for(10, "the runner to die", || {
        run_queued_pids(&world).is_empty().then_some(())
    });
    assert_dies(command, "the deploy command, with its runner");
    let _ = std::fs::remove_dir(world.record("web").join("running.lock"));
    assert_eq!(world.deploys()[0].state, DeployState::Started);

    hook_push(&world, 2, &[]);
    assert_recovered(&world, orphan);
}

/// Issue 12, point 9: `serve` and a local hook runner on one state
/// directory take turns on a stack: a deploy through either waits for the
/// other's to end.
#[test]
fn serve_and_a_hook_runner_on_one_state_directory_never_overlap() {
    let stack = Stack::bare_repo("web", "main").token(1).env("SLEEP", "1");
    let (world, server) = World::serving("hostile-runner-serve-and-hook", "", &[stack]);
    for round in 0..3 {
        // A manual deploy through the server, then a push through the hook
        // (its own detached runner) while the server's deploy runs.
        assert_eq!(server.post(&hook(1), &[], b"").status, 202);
        world.wait_ran_more_than("web", round * 2, 10);
        hook_push(&world, 10 + round, &[]);
        world.wait_ran_more_than("web", round * 2 + 1, 30);
    }
    let deploys = world.settle(60);
    assert_eq!(deploys.len(), 6, "{deploys:#?}");
    assert_all_succeeded(&deploys);
    assert!(
        !world.record("web").join("overlaps").exists(),
        "a deploy of the hook's runner overlapped one of the server's"
    );
    server.terminate();
}
