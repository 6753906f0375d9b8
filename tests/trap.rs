//! A deliberately broken component (the plugin built with its test-only
//! `chaos` feature) must not take the server down: a guest that loops
//! forever is cut off by the deadline, one that exhausts memory by the cap,
//! one that panics traps; each delivery gets 500 and the next is served.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{hook, workspace, Stack, World};

#[path = "../host/component_build.rs"]
mod component_build;

/// Builds the chaos component once per test run: as the shipped one is
/// built (`host/component_build.rs`), with the `chaos` feature, in a
/// target directory of its own (the shipped component's path is what the
/// host embeds). That directory starts as a copy of the shipped
/// component's (`host/build.rs` built it before any test ran), so only
/// the plugin itself compiles, not its dependencies; later runs keep it,
/// and cargo rebuilds what is stale.
pub fn chaos_component() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let target = workspace().join("target");
        let shipped = target.join("plugin-wasm");
        let target_dir = target.join("plugin-chaos");
        if !target_dir.exists() && shipped.is_dir() {
            // Times kept, so that cargo finds the dependencies up to date;
            // into a name of its own first, so that an interrupted copy is
            // never taken for a build.
            let copying = target.join(format!("plugin-chaos.copying-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&copying);
            let copied = Command::new("cp")
                .arg("-a")
                .arg(&shipped)
                .arg(&copying)
                .status()
                .expect("running cp");
            assert!(copied.success(), "copying {}", shipped.display());
            if std::fs::rename(&copying, &target_dir).is_err() {
                // Another test process made it first: its copy is as good.
                assert!(target_dir.is_dir(), "{}", target_dir.display());
                let _ = std::fs::remove_dir_all(&copying);
            }
        }
        let status =
            component_build::component_build(env!("CARGO"), &workspace(), &target_dir, &["chaos"])
                .status()
                .expect("running cargo to build the chaos component");
        assert!(status.success(), "building the chaos component failed");
        component_build::component_path(&target_dir)
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
