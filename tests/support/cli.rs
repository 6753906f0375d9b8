//! The `redeploy` binary's commands other than `serve`, run as a user runs
//! them, and their output.

use std::process::{Command, Output};

use super::{redeploy_bin, World};

/// Runs `redeploy ARGS...`.
pub fn redeploy(args: &[&str]) -> Output {
    Command::new(redeploy_bin()).args(args).output().unwrap()
}

impl World {
    /// Starts `redeploy serve` on this world (on a free loopback port) where
    /// it must refuse to start: its exit status and standard error. One
    /// still running after `within` is killed, and the test fails, so that
    /// a failure leaves no server behind.
    pub fn serve_refused(&self, within: std::time::Duration) -> (std::process::ExitStatus, String) {
        let mut serve = Command::new(redeploy_bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .args(["--listen", &format!("127.0.0.1:{}", super::free_port())])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + within;
        let status = loop {
            if let Some(status) = serve.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = serve.kill();
                panic!("serve kept running for {within:?} where it should have refused to start");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut err).unwrap();
        (status, err)
    }

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
