//! Helpers shared by the test modules, by topic:
//!
//! - this file: paths (the workspace, the vendored fixtures), temporary
//!   directories, polling, free ports, HMAC signatures, the embedded plugin
//!   runtime;
//! - [`tools`]: third-party tools a test runs (the wasmtime CLI, PyPI installs);
//! - [`http`]: a minimal HTTP/1.1 client, and a one-request receiver standing
//!   in for an endpoint a deploy or a callback calls;
//! - [`receiver`]: a scripted loopback HTTP endpoint that records every
//!   request and can go down and come back (notification channels);
//! - [`smtp`]: a real SMTP server (aiosmtpd) recording each message, and a
//!   throwaway CA and certificate for its STARTTLS;
//! - [`server`]: a running `redeploy serve` process;
//! - [`warm`]: the compiled-component cache a server's fresh state
//!   directory gets before its first start, compiled once per test process;
//! - [`stacks`]: `[[stacks]]` tables of a test configuration, built key by key,
//!   and the hook tokens and URLs of numbered stacks;
//! - [`deploy`]: the stand-in deploy program and other executable scripts;
//! - [`world`]: a test's world (temp dir, stand-in, config) and what the
//!   server journaled and the stand-in recorded in it;
//! - [`deliveries`]: webhook bodies and signed deliveries (GitHub pushes,
//!   fixtures with their recorded headers, Docker Hub pushes);
//! - [`cli`]: the `redeploy` binary's other commands, run as a user runs them;
//! - [`git`]: real git with a fixed author and no machine configuration;
//! - [`users`]: throwaway system users, for running as another user than root;
//! - [`browser`]: headless Chromium through chromedriver, and what a page
//!   shows.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redeploy_host::plugin::{PluginRuntime, RuntimeOptions};

pub mod browser;
pub mod cli;
pub mod deliveries;
pub mod deploy;
pub mod git;
pub mod http;
pub mod postgres;
pub mod receiver;
pub mod replicas;
pub mod server;
pub mod smtp;
pub mod stacks;
pub mod tools;
pub mod users;
pub mod warm;
pub mod world;

pub use server::ServerProcess;
pub use stacks::{hook, token, Stack};
pub use tools::{pip_install, wasmtime_cli};
pub use world::World;

/// How often [`wait_for`] polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The workspace root.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `tests/fixtures`: the third-party payloads the tests read, vendored
/// byte for byte (their origins in `tests/fixtures/SOURCES.md`).
pub fn fixtures() -> PathBuf {
    workspace().join("tests").join("fixtures")
}

/// The bytes of the fixture at `path` (relative to [`fixtures`]).
pub fn fixture(path: &str) -> Vec<u8> {
    let file = fixtures().join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// One plugin runtime for the whole test binary (the embedded component).
pub fn runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<PluginRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        PluginRuntime::new(
            &redeploy_host::plugin::ComponentSource::Embedded,
            RuntimeOptions::default(),
        )
        .expect("loading the embedded component")
    })
}

/// The `redeploy` binary Cargo built for these tests.
pub fn redeploy_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_redeploy"))
}

/// HMAC-SHA256 of `body` with `secret`, hex.
pub fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// `sha256=` + hex HMAC-SHA256 of `body` with `secret`: GitHub's
/// `X-Hub-Signature-256` header.
pub fn sig(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret, body))
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh temporary directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates `target/test-tmp/<name>-<pid>-<n>`.
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = workspace().join("target").join("test-tmp").join(format!(
            "{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // As under umask 022 whatever this one is: a state directory its
        // group or others may write is refused, and other users the tests
        // run as may still enter.
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        TempDir(dir)
    }

    /// A path inside.
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

/// Creates the state directory `path` as a command would (`0700`, whatever
/// the umask: one its group or others may write is refused).
pub fn create_state_dir(path: &Path) {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().mode(0o700).create(path).unwrap();
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Asserts that `text` contains each of `needles`, showing `text` if not.
#[track_caller]
pub fn assert_contains_all(text: &str, needles: &[&str]) {
    for needle in needles {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}

/// Polls `f` every [`POLL_INTERVAL`] until it returns `Some`, or panics
/// after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(POLL_INTERVAL);
    }
}
