//! The `redeploy` binary's commands other than `serve`, run as a user runs
//! them, and their output.

use std::process::{Command, Output};

use super::{redeploy_bin, World};

/// Runs `redeploy ARGS...`.
pub fn redeploy(args: &[&str]) -> Output {
    Command::new(redeploy_bin()).args(args).output().unwrap()
}

impl World {
    /// Runs `redeploy ARGS... --config <this world's config>`.
    pub fn redeploy(&self, args: &[&str]) -> Output {
        Command::new(redeploy_bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }
}

/// Standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts that the command succeeded, showing both its outputs if not.
#[track_caller]
pub fn assert_success(out: &Output) {
    assert!(out.status.success(), "{}{}", stdout(out), stderr(out));
}

/// Asserts that the command failed and its standard output says `what`.
#[track_caller]
pub fn assert_fails_saying(out: &Output, what: &str) {
    assert!(!out.status.success());
    assert!(stdout(out).contains(what), "{}", stdout(out));
}
