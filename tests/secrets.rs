//! Secrets never leak: every file a server run leaves behind (its log, the
//! deploy logs and event files, the journal with its WAL, what the deploy
//! command recorded of its environment and stdin) and every HTTP response it
//! gave is searched for each configured webhook secret and hook token.
//!
//! [`assert_no_leak`] is called at the end of the hostile-input matrix and
//! the load tests, over everything they produced; the test here adds the
//! deliveries where a secret travels in clear (GitLab's and Gitee's token
//! headers) to a server logging at `trace` level.

use std::path::{Path, PathBuf};

use crate::support::stacks::toml;
use crate::support::{fixture, Stack, World};

/// Every file under `dir`, recursively, except the configuration (which
/// holds the secrets by definition).
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if path.file_name().is_some_and(|n| n != "redeploy.toml") {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails if any of `secrets` occurs in any file under `dir` (the config
/// excepted) or in any of `responses`. Returns how many files and bytes were
/// searched, so callers can check the search saw something.
pub fn assert_no_leak(dir: &Path, responses: &[Vec<u8>], secrets: &[&str]) -> (usize, usize) {
    let mut files = Vec::new();
    files_under(dir, &mut files);
    let mut bytes = 0;
    let mut leaks = Vec::new();
    for file in &files {
        let Ok(content) = std::fs::read(file) else {
            continue;
        };
        bytes += content.len();
        for secret in secrets {
            if contains(&content, secret.as_bytes()) {
                leaks.push(format!("{} holds a secret", file.display()));
            }
        }
    }
    for (i, body) in responses.iter().enumerate() {
        bytes += body.len();
        for secret in secrets {
            if contains(body, secret.as_bytes()) {
                leaks.push(format!(
                    "response #{i} holds a secret: {}",
                    String::from_utf8_lossy(body)
                ));
            }
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    (files.len(), bytes)
}

/// The headers of a JSON push hook carrying `token` in clear: the event
/// header and the token header named in `names`.
fn token_headers<'a>(names: (&'a str, &'a str), token: &'a str) -> [(&'a str, &'a str); 3] {
    let (event, header) = names;
    [
        (event, "Push Hook"),
        (header, token),
        ("Content-Type", "application/json"),
    ]
}

#[test]
fn secrets_sent_in_clear_reach_no_log_journal_response_or_deploy() {
    const GITLAB_SECRET: &str = "gitlab-plain-token-7Qx9RkLm2Vb";
    const GITEE_SECRET: &str = "gitee-plain-token-Zp4Wn8Tc1Hs";
    const TOKENS: [&str; 2] = [
        "secrets-hook-token-gitlab-0000000000",
        "secrets-hook-token-gitee-11111111111",
    ];
    let stack = |name: &str, (repository, branch): (&str, &str), secret: &str, token: &str| {
        let stack = Stack::new(name).follows(repository, branch).secret(secret);
        stack.key("hook_token", token).standin()
    };
    let stacks = toml(&[
        stack(
            "gl",
            ("gitlab-org/hello-world", "master"),
            GITLAB_SECRET,
            TOKENS[0],
        ),
        stack(
            "ge",
            ("kit101/drone-yml-test", "feat-*"),
            GITEE_SECRET,
            TOKENS[1],
        ),
    ]);
    let world = World::new("secrets-clear", "", &stacks);
    // The most talkative server there is: every crate at trace level, but
    // for the compiler of the component, whose millions of lines carry no
    // request data.
    let server = world.start_env(
        &[],
        &[("RUST_LOG", "trace,cranelift=off,wasmtime=off,regalloc2=off")],
    );
    let gitlab = fixture("gitlab/goscm-push.json");
    let gitee = fixture("gitee/goscm-push.json");
    let mut responses = Vec::new();
    let mut send = |token: &str, headers: &[(&str, &str)], body: &[u8]| {
        let r = server.post(&format!("/hooks/{token}"), headers, body);
        responses.push(r.body.clone());
        (r.status, String::from_utf8_lossy(&r.body).into_owned())
    };
    // The right token in clear deploys; a wrong one is refused. Either way
    // the server repeats neither.
    let gitlab_headers = |token| token_headers(("X-Gitlab-Event", "X-Gitlab-Token"), token);
    let (status, body) = send(TOKENS[0], &gitlab_headers(GITLAB_SECRET), &gitlab);
    assert_eq!(status, 202, "{body}");
    let wrong = format!("{GITLAB_SECRET}x");
    let (status, body) = send(TOKENS[0], &gitlab_headers(&wrong), &gitlab);
    assert_eq!(status, 401, "{body}");
    let gitee_headers = |token| token_headers(("X-Gitee-Event", "X-Gitee-Token"), token);
    let (status, body) = send(TOKENS[1], &gitee_headers(GITEE_SECRET), &gitee);
    assert_eq!(status, 202, "{body}");
    let (status, body) = send(TOKENS[1], &gitee_headers(GITLAB_SECRET), &gitee);
    assert_eq!(status, 401, "{body}");
    // A token of one stack on the other's URL is refused too.
    let (status, body) = send(TOKENS[1], &gitlab_headers(GITLAB_SECRET), &gitlab);
    assert_eq!(status, 401, "{body}");
    let deploys = world.settle(30);
    assert_eq!(deploys.len(), 2, "{deploys:#?}");
    server.terminate();

    let mut all = TOKENS.to_vec();
    all.extend([GITLAB_SECRET, GITEE_SECRET]);
    let (files, bytes) = assert_no_leak(&world.dir.0, &responses, &all);
    // The search covered the server log, the journal, two deploy logs and
    // event files, and what the two commands recorded.
    assert!(files >= 8 && bytes > 10_000, "{files} files, {bytes} bytes");
}
