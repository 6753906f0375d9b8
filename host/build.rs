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

    // The binary's relative relocations, packed (DT_RELR): the 1.3 MB of
    // `.rela.dyn` the dynamic loader reads, and keeps resident, at every
    // start shrink to a few KB (BENCHMARKS.md, idle memory). The loader
    // must know DT_RELR (glibc 2.36, Debian 12): the linker records that
    // requirement in the binary (`GLIBC_ABI_DT_RELR`), and the package
    // states it (`package.metadata.deb`, which dpkg-shlibdeps would miss).
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    hot_functions_first(&workspace);

    golden_case_tests(&workspace);
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
        // `cargo clippy` lints the plugin as a workspace member; the
        // component itself is built by plain rustc.
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
    ] {
        cmd.env_remove(var);
    }
    // The component is small, so whole-program (fat) LTO costs seconds and
    // makes it smaller and faster; the workspace's release profile (the
    // host's) goes without LTO.
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "fat");
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

/// Has the linker put the functions a server runs (`host/hot-functions.txt`,
/// written by `bench/hot_functions.py`) first in `.text`, together: a
/// started server then touches about 100 of the code's 64 KiB fault-around
/// windows instead of 220, 6 MiB of resident code instead of 13
/// (BENCHMARKS.md, idle memory). Symbol ordering is an LLD option, and LLD
/// is Rust's default linker on `x86_64-unknown-linux-gnu` (from 1.90; the
/// workspace needs 1.95); elsewhere, or with a linker of one's own
/// (Cargo's `target.<triple>.linker`, or `linker` in the flags), the binary
/// links as before. A name the binary lacks is skipped in silence: the file
/// goes stale by degrees as the code changes, never breaks the link.
fn hot_functions_first(workspace: &Path) {
    let list = workspace.join("host").join("hot-functions.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    let lld_default = env::var("TARGET").as_deref() == Ok("x86_64-unknown-linux-gnu");
    // Cargo names the target's configured linker to build scripts.
    let own_linker = env::var_os("RUSTC_LINKER").is_some()
        || env::var("CARGO_ENCODED_RUSTFLAGS")
            .unwrap_or_default()
            .split('\x1f')
            .any(|flag| flag.contains("linker"));
    if lld_default && !own_linker && list.exists() {
        println!(
            "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
            list.display()
        );
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
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

/// Writes `$OUT_DIR/golden_cases.rs`: one `#[test]` per folder of
/// `tests/golden/cases/` holding a `case.json`, named after the folder
/// (lower case, `_` for anything else), so `cargo test <case>` runs one
/// case. The integration tests `include!` it (`tests/golden.rs`).
fn golden_case_tests(workspace: &Path) {
    let cases = workspace.join("tests").join("golden").join("cases");
    println!("cargo:rerun-if-changed={}", cases.display());
    let mut names: Vec<String> = std::fs::read_dir(&cases)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .filter(|e| e.path().join("case.json").exists())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from("// Generated by host/build.rs from tests/golden/cases/.\n");
    let mut seen = std::collections::BTreeSet::new();
    for name in &names {
        let mut ident: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        if !ident.starts_with(|c: char| c.is_ascii_alphabetic()) {
            ident.insert_str(0, "case_");
        }
        assert!(
            seen.insert(ident.clone()),
            "two golden cases make the same test name {ident}: rename one folder"
        );
        out.push_str(&format!(
            "#[test]\nfn {ident}() {{\n    run_case({name:?});\n}}\n"
        ));
    }
    out.push_str(&format!(
        "\n/// Every case folder, as at build time.\nconst CASE_NAMES: &[&str] = &{names:?};\n"
    ));
    let dest = PathBuf::from(env::var("OUT_DIR").unwrap()).join("golden_cases.rs");
    std::fs::write(dest, out).expect("writing golden_cases.rs");
}
