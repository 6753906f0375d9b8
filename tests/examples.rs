//! Every file in `examples/` is exercised here, so examples cannot rot.

use std::process::{Command, Stdio};

use crate::support::cli::{assert_success, stdout};
use crate::support::server::example_server;
use crate::support::{assert_contains_all, fixtures, redeploy_bin, workspace, TempDir};

/// The path of `examples/<name>`.
fn example(name: &str) -> std::path::PathBuf {
    workspace().join("examples").join(name)
}

/// The examples and the test that covers each; a new example needs a test.
const COVERED: &[&str] = &[
    "bitbucket-post.sh",
    "deploy.sh",
    "dockerhub-push.sh",
    "github-push.sh",
    "manual-trigger.sh",
    "post-receive-demo.sh",
    "redeploy.service",
    "redeploy.toml",
    "wasmtime-cli.sh",
];

#[test]
fn every_example_file_is_covered_by_a_test() {
    let mut files: Vec<String> = std::fs::read_dir(workspace().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files, COVERED,
        "examples/ changed: cover the new file in tests/examples.rs"
    );
}

#[test]
fn each_example_says_how_to_run_it_in_its_first_lines() {
    for f in COVERED {
        let text = std::fs::read_to_string(example(f)).unwrap();
        let head: String = text.lines().take(12).collect::<Vec<_>>().join("\n");
        assert!(
            head.contains("Run with") || head.contains("Run by"),
            "{f} does not say how to run it"
        );
    }
}

#[test]
fn the_example_config_is_valid() {
    let config = redeploy_host::config::load(&example("redeploy.toml")).unwrap();
    let names: Vec<&str> = config.stacks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["hello", "shop", "registry", "legacy"]);
}

#[test]
fn the_example_deploy_script_logs_what_it_would_deploy() {
    use std::io::Write;
    let mut child = Command::new(example("deploy.sh"))
        .env("REDEPLOY_STACK", "web")
        .env("REDEPLOY_SERVICES", "web,worker")
        .env("REDEPLOY_SHA", "199eddf46df50de8d02e99bf1c5fdb4101338224")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"stack\":\"web\"}")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_contains_all(
        &text,
        &[
            "deploying stack web (services: web,worker)",
            "sha=199eddf46df50de8d02e99bf1c5fdb4101338224",
            "{\"stack\":\"web\"}",
        ],
    );
}

#[test]
fn the_wasmtime_cli_example_evaluates_a_signed_push() {
    let script = example("wasmtime-cli.sh");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success(), "examples/wasmtime-cli.sh does not parse");
    assert!(
        fixtures().join("github/goscm-push.json").exists()
            && fixtures().join("github/goscm-push.headers").exists()
    );
    let wasmtime = crate::support::wasmtime_cli();
    let tmp = TempDir::new("wasmtime-cli");
    let wasm = tmp.join("plugin.wasm");
    std::fs::write(&wasm, redeploy_host::plugin::EMBEDDED_COMPONENT).unwrap();
    let out = Command::new(&script)
        .arg(&wasm)
        .env("FIXTURES", fixtures())
        .env("WASMTIME", &wasmtime)
        .output()
        .unwrap();
    assert_success(&out);
    let text = stdout(&out);
    assert!(text.starts_with("ok(\""), "{text}");
    assert!(
        text.contains(r#"\"action\":\"deploy\""#)
            && text.contains(r#"\"signature\":\"github-sha256\""#),
        "{text}"
    );
}

#[test]
fn the_post_receive_demo_deploys_main_and_not_another_branch() {
    let out = Command::new(example("post-receive-demo.sh"))
        .env("REDEPLOY", redeploy_bin())
        .output()
        .unwrap();
    assert_success(&out);
    assert_contains_all(
        &stdout(&out),
        &[
            "remote: redeploy: app: | deploying stack app",
            "remote: redeploy: app: deploy #1 succeeded",
            "remote: redeploy: app: not deploying: push to \"feature\" does not match branch \"main\"",
        ],
    );
}

#[test]
fn the_sender_examples_deploy_against_the_example_config() {
    let log = TempDir::new("example-senders");
    let server = example_server(&log);
    let base = server.url();
    for (script, stack, args) in [
        ("github-push.sh", "hello", vec![base.clone()]),
        (
            "manual-trigger.sh",
            "shop",
            vec!["shop".to_string(), base.clone()],
        ),
        ("dockerhub-push.sh", "registry", vec![base.clone()]),
        ("bitbucket-post.sh", "legacy", vec![base.clone()]),
    ] {
        let out = Command::new(example(script))
            .args(&args)
            .env("REDEPLOY", redeploy_bin())
            .env("FIXTURES", fixtures())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{script}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: serde_json::Value =
            serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{script}: {e}: {text}"));
        let decision = &answer["decisions"][0];
        assert_eq!(decision["stack"], stack, "{script}: {answer}");
        assert_eq!(decision["action"], "deploy", "{script}: {answer}");
    }
    server.terminate();
}

#[test]
fn the_systemd_unit_runs_serve_and_stops_gracefully() {
    let unit = std::fs::read_to_string(example("redeploy.service")).unwrap();
    for needle in [
        "[Unit]",
        "[Service]",
        "[Install]",
        "ExecStart=redeploy serve --config /etc/redeploy/redeploy.toml",
        "TimeoutStopSec=90",
        "StateDirectoryMode=0750",
        "KillMode=mixed",
    ] {
        assert!(
            unit.lines()
                .any(|l| l.trim() == needle || l.starts_with(needle)),
            "missing {needle:?}"
        );
    }
    // The flags it uses are the CLI's.
    let help = crate::support::cli::redeploy(&["serve", "--help"]);
    assert!(stdout(&help).contains("--config"));
}
