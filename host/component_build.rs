//! How the plugin component is built, defined once for its two builders:
//! `host/build.rs` (the shipped component, which the host embeds) and
//! `tests/trap.rs` (the test-only `chaos` component, built the same way
//! with that feature on). Each includes this file as a module.
//!
//! The nested cargo uses a target directory of its own, so it never waits
//! on the lock of the outer build, and drops the outer build's flags (the
//! pattern of wasmtime's `crates/test-programs/artifacts/build.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target the component is built for.
pub const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// The variables of the outer build that the nested one must not inherit:
/// its flags (the wasm target's own come from `.cargo/config.toml`), its
/// target, and the lint wrapper (`cargo clippy` lints the plugin as a
/// workspace member; the component itself is built by plain rustc).
const OUTER_BUILD_VARIABLES: [&str; 9] = [
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CLIPPY_ARGS",
    "CLIPPY_CONF_DIR",
];

/// The nested `cargo` (the program `cargo`) that builds the plugin
/// component of `workspace` into `target_dir` with `features`. Two builds
/// that differ only in `features` share every dependency, so a copy of one
/// build's target directory leaves the other only the plugin to compile.
pub fn component_build(
    cargo: &str,
    workspace: &Path,
    target_dir: &Path,
    features: &[&str],
) -> Command {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "rustc",
            "--release",
            "-p",
            "redeploy-plugin",
            "--target",
            WASM_TARGET,
            // The plugin is also an `rlib` (the host's tests and benchmark
            // call it natively), and cargo applies no LTO to a package that
            // builds an `rlib` beside its `cdylib`: the component alone is
            // asked for, so the LTO below applies.
            "--lib",
            "--crate-type",
            "cdylib",
        ])
        .arg("--target-dir")
        .arg(target_dir);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    for var in OUTER_BUILD_VARIABLES {
        cmd.env_remove(var);
    }
    // The component is small, so whole-program (fat) LTO into one codegen
    // unit costs seconds, and it evaluates a small push about 10% faster
    // and a 1 MiB push about 7% (BENCHMARKS.md part 5, twelfth pass); the
    // workspace's release profile (the host's) goes without LTO.
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "fat");
    cmd.env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    cmd
}

/// The component [`component_build`] leaves in `target_dir`.
pub fn component_path(target_dir: &Path) -> PathBuf {
    target_dir
        .join(WASM_TARGET)
        .join("release")
        .join("redeploy_plugin.wasm")
}
