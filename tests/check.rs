//! `redeploy check` as a user runs it: real binary, real files, exit codes.

use std::process::Command;

use serde::Deserialize;

use crate::support::cli::{assert_success, redeploy, stderr};
use crate::support::{fixtures, redeploy_bin, workspace, TempDir};

/// The documented, stable part of `check`'s JSON, read strictly.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct CheckOutput {
    provider: String,
    event: String,
    delivery: Option<String>,
    signature: String,
    #[allow(dead_code)]
    sent_at_ms: Option<u64>,
    pushes: Vec<PushOut>,
    images: Vec<serde_json::Value>,
    decisions: Vec<DecisionOut>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PushOut {
    repository: String,
    urls: Vec<String>,
    #[serde(rename = "ref")]
    git_ref: String,
    branch: Option<String>,
    tag: Option<String>,
    before: Option<String>,
    after: Option<String>,
    created: bool,
    deleted: bool,
    forced: bool,
    pusher: Option<String>,
    head_message: Option<String>,
    changed_files: Option<Vec<String>>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct DecisionOut {
    stack: String,
    action: String,
    /// The skip code, for a skip (the WIT `skip-code`).
    skip: Option<String>,
    services: Vec<String>,
    reason: String,
    deploy: Option<serde_json::Value>,
}

fn check(args: &[&str]) -> std::process::Output {
    Command::new(redeploy_bin())
        .arg("check")
        .args([
            "--config",
            workspace().join("examples/redeploy.toml").to_str().unwrap(),
        ])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn check_prints_the_documented_json_for_a_signed_github_push() {
    let body = fixtures().join("github/goscm-push.json");
    let headers = fixtures().join("github/goscm-push.headers");
    let out = check(&[
        "--body",
        body.to_str().unwrap(),
        "--headers",
        headers.to_str().unwrap(),
    ]);
    assert_success(&out);
    let o: CheckOutput = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((o.provider.as_str(), o.event.as_str()), ("github", "push"));
    assert_eq!(
        o.delivery.as_deref(),
        Some("f2467dea-70d6-11e8-8955-3c83993e0aef")
    );
    assert_eq!(o.signature, "github-sha256");
    assert!(o.images.is_empty());
    assert_eq!(o.pushes.len(), 1);
    assert_eq!(o.pushes[0].repository, "Codertocat/Hello-World");
    assert_eq!(o.pushes[0].git_ref, "refs/heads/master");
    assert_eq!(
        o.pushes[0].after.as_deref(),
        Some("199eddf46df50de8d02e99bf1c5fdb4101338224")
    );
    assert!(!o.pushes[0].deleted);
    let hello = &o.decisions[0];
    assert_eq!(
        (hello.stack.as_str(), hello.action.as_str()),
        ("hello", "deploy")
    );
    assert_eq!(hello.skip, None);
    assert_eq!(hello.services, vec!["hello"]);
    assert_eq!(
        hello.deploy.as_ref().unwrap()["sha"],
        "199eddf46df50de8d02e99bf1c5fdb4101338224"
    );
    assert_eq!(o.decisions[1].action, "skip");
    assert_eq!(o.decisions[1].skip.as_deref(), Some("other-repository"));
    assert!(
        o.decisions[1].reason.contains("does not match repository"),
        "{}",
        o.decisions[1].reason
    );
}

#[test]
fn check_rejects_a_tampered_body_with_exit_1_and_one_line() {
    let dir = TempDir::new("check-tampered");
    let mut body = std::fs::read(fixtures().join("github/goscm-push.json")).unwrap();
    body.extend_from_slice(b" ");
    std::fs::write(dir.join("body.json"), body).unwrap();
    let headers = fixtures().join("github/goscm-push.headers");
    let out = check(&[
        "--body",
        dir.join("body.json").to_str().unwrap(),
        "--headers",
        headers.to_str().unwrap(),
        "--stack",
        "hello",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(
            "bad signature: X-Hub-Signature-256 does not match any secret of stack \"hello\""
        ),
        "{err}"
    );
    assert!(!err.contains("topsecret"));
}

#[test]
fn check_query_selects_services_and_profile() {
    let dir = TempDir::new("check-manual");
    std::fs::write(dir.join("empty"), b"").unwrap();
    let empty = dir.join("empty");
    // An empty body to the stack "shop", with `query`: a manual trigger.
    let manual = |query: &str| {
        let body = ["--body", empty.to_str().unwrap()];
        check(&[&body[..], &["--stack", "shop", "--query", query]].concat())
    };
    let out = manual("services=web,proxy");
    assert_success(&out);
    let o: CheckOutput = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(o.provider, "manual");
    assert_eq!(o.decisions[0].services, vec!["web", "proxy"]);
    let out = manual("services=db");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("stack \"shop\" has no service \"db\""));
}

#[test]
fn check_with_a_missing_config_exits_2() {
    let out = redeploy(&[
        "check",
        "--config",
        "/nonexistent.toml",
        "--body",
        "/dev/null",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent.toml"));
}

/// What a stack follows is the component's rule (`validate-stacks`): `serve`
/// and `check` refuse, at start and naming the file, a stack the component
/// would refuse at every delivery.
/// (The host once kept its own copy of the image rule, which accepted
/// `name@` and then failed every delivery; the `config` fuzz target found it.)
#[test]
fn serve_and_check_refuse_at_start_a_stack_the_component_refuses() {
    let dir = TempDir::new("component-refuses-stack");
    let state = dir.join("state");
    let config = dir.join("redeploy.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nstate_dir = {state:?}\n\n[[stacks]]\nname = \"web\"\nimage = \"acme/web@\"\ncommand = [\"true\"]\n"
        ),
    )
    .unwrap();
    let expected = format!(
        "{}: stack \"web\": image \"acme/web@\" is not an image reference",
        config.display()
    );
    let serve = Command::new(redeploy_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .args([
            "--listen",
            &format!("127.0.0.1:{}", crate::support::free_port()),
        ])
        .output()
        .unwrap();
    assert_eq!(serve.status.code(), Some(2), "{serve:?}");
    assert!(
        String::from_utf8_lossy(&serve.stderr).contains(&expected),
        "{serve:?}"
    );
    let check = || {
        Command::new(redeploy_bin())
            .args(["check", "--config", config.to_str().unwrap()])
            .args(["--body", "/dev/null"])
            .output()
            .unwrap()
    };
    let refused = check();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains(&expected),
        "{refused:?}"
    );

    // A Bitbucket Server personal repository (project key `~user`) is a
    // repository the component accepts, so the configuration takes it.
    std::fs::write(
        &config,
        format!(
            "[server]\nstate_dir = {state:?}\n\n[[stacks]]\nname = \"web\"\nrepository = \"~gopher/webhook-test\"\nbranch = \"main\"\ncommand = [\"true\"]\n"
        ),
    )
    .unwrap();
    let accepted = check();
    assert_eq!(accepted.status.code(), Some(0), "{accepted:?}");
}
