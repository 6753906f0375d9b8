//! Real git, run as a test's user would: with a fixed author, without the
//! machine's system or global configuration.

use std::path::Path;
use std::process::Command;

/// Runs `git ARGS...` in `dir` with `env`, asserting success unless
/// `may_fail`; whether it succeeded, and its stdout and stderr together.
pub fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)], may_fail: bool) -> (bool, String) {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Tester",
            "-c",
            "user.email=tester@example.com",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .envs(env.iter().copied())
        .output()
        .expect("git is missing: apt-get install git");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        may_fail || out.status.success(),
        "git {args:?} failed:\n{text}"
    );
    (out.status.success(), text)
}

/// Runs `git ARGS...` in `dir`, asserting success; its output.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[], false).1
}
