//! A deliberately broken component (the plugin built with its test-only
//! `chaos` feature) must not take the server down: a guest that loops
//! forever is cut off by the deadline, one that exhausts memory by the cap,
//! one that panics traps; each delivery gets 500 and the next is served.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{hook, workspace, Stack, World};

/// The target the component is built for.
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Builds the chaos component once per test run.
pub fn chaos_component() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let target_dir = workspace().join("target").join("plugin-chaos");
        let status = Command::new(env!("CARGO"))
            .current_dir(workspace())
            .args(["build", "--release", "--features", "chaos"])
            .args(["-p", "redeploy-plugin", "--target", WASM_TARGET])
            .arg("--target-dir")
            .arg(&target_dir)
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("RUSTFLAGS")
            // CI lints the test build through clippy-driver (.ci/run); the
            // component is built by plain rustc, as host/build.rs builds the
            // shipped one (without its LTO: nothing measures this one).
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CLIPPY_ARGS")
            .status()
            .expect("running cargo to build the chaos component");
        assert!(status.success(), "building the chaos component failed");
        target_dir
            .join(WASM_TARGET)
            .join("release/redeploy_plugin.wasm")
    })
    .clone()
}

#[test]
fn a_looping_or_exhausting_plugin_gets_500_and_the_server_keeps_serving() {
    let component = chaos_component();
    let stack = Stack::new("web").key("image", "acme/web").token(1);
    let world = World::new("trap", "", &stack.line("command = [\"true\"]").toml());
    let server = world.start(&["--plugin", component.to_str().unwrap()]);
    for how in ["loop", "oom", "panic"] {
        let started = std::time::Instant::now();
        let r = server.post(&hook(1), &[("X-Redeploy-Chaos", how)], b"");
        assert_eq!(r.status, 500, "{how}: {}", r.text());
        assert_eq!(r.json()["error"], "plugin-failure");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{how} took {:?}",
            started.elapsed()
        );
        // The next delivery is served normally.
        let r = server.post(&hook(1), &[], b"");
        assert_eq!(r.status, 202, "after {how}: {}", r.text());
    }
    let log = world.server_log();
    assert!(log.contains("plugin failed on a delivery"), "{log}");
    world.settle(20);
    server.terminate();
}
