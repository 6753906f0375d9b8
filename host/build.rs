//! Builds the plugin component (`plugin/`, target `wasm32-unknown-unknown`,
//! linked as a component by `wasm-component-ld`) so the host can embed it.
//!
//! The nested cargo uses its own target directory, so it never waits on the
//! lock of the outer build, and drops the outer build's flags (the pattern
//! of wasmtime's `crates/test-programs/artifacts/build.rs`). A missing wasm
//! target is installed with rustup, so a fresh machine needs no manual step.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    for watched in [
        "plugin/src",
        "plugin/Cargo.toml",
        "wit",
        "Cargo.lock",
        ".cargo/config.toml",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    ensure_wasm_target();

    let target_dir = workspace.join("target").join("plugin-wasm");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--release",
            "-p",
            "redeploy-plugin",
            "--target",
            WASM_TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "CARGO_PROFILE_RELEASE_LTO",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("failed to run cargo for the plugin component");
    if !status.success() {
        panic!("building the plugin component failed: {status}");
    }
    let wasm = target_dir
        .join(WASM_TARGET)
        .join("release")
        .join("redeploy_plugin.wasm");
    assert!(
        wasm.exists(),
        "plugin component not found at {}",
        wasm.display()
    );
    println!("cargo:rustc-env=REDEPLOY_PLUGIN_WASM={}", wasm.display());
    // The component's digest keys the post-receive hook's compiled cache,
    // so a changed component never loads a stale artifact.
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(std::fs::read(&wasm).expect("reading the plugin component"));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    println!("cargo:rustc-env=REDEPLOY_PLUGIN_SHA256={hex}");
}

/// Installs the wasm target with rustup when the toolchain lacks it.
fn ensure_wasm_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(sysroot) = sysroot {
        if Path::new(&sysroot)
            .join("lib/rustlib")
            .join(WASM_TARGET)
            .exists()
        {
            return;
        }
    }
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!(
            "the {WASM_TARGET} target is missing and `rustup target add {WASM_TARGET}` failed ({other:?}); run it by hand"
        ),
    }
}
