//! Builds the plugin component (`plugin/`, target `wasm32-unknown-unknown`,
//! linked as a component by `wasm-component-ld`) so the host can embed it.
//!
//! The nested cargo is `component_build.rs`'s (shared with the tests'
//! chaos component). A missing wasm target is installed with rustup, so a
//! fresh machine needs no manual step.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "component_build.rs"]
mod component_build;
use component_build::WASM_TARGET;

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
    // `plugin::POOLED_INSTANCES` reads it at compile time: say so loudly,
    // it is meant for bench/hot_functions.py's traced binary only.
    println!("cargo:rerun-if-env-changed=REDEPLOY_POOLED_INSTANCES");
    if let Ok(n) = env::var("REDEPLOY_POOLED_INSTANCES") {
        println!("cargo:warning=REDEPLOY_POOLED_INSTANCES={n}: this build's server pools {n} instances instead of 64");
    }

    golden_case_tests(&workspace);
    ensure_wasm_target();

    let target_dir = workspace.join("target").join("plugin-wasm");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = component_build::component_build(&cargo, &workspace, &target_dir, &[])
        .status()
        .expect("failed to run cargo for the plugin component");
    if !status.success() {
        panic!("building the plugin component failed: {status}");
    }
    let wasm = component_build::component_path(&target_dir);
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
/// started server then touches about 80 of the code's 64 KiB fault-around
/// windows instead of 220, 4-5 MiB of resident code instead of 13
/// (BENCHMARKS.md part 5, fifth pass). Says what it did to the crate's
/// targets in `REDEPLOY_HOT_FUNCTIONS` (`applied`, or why not), which
/// `tests/layout.rs` checks against the binary.
fn hot_functions_first(workspace: &Path) {
    let list = workspace.join("host").join("hot-functions.txt");
    println!("cargo:rerun-if-changed={}", list.display());
    // Cargo reruns this script when the flags or the compiler change, not
    // when the linker does: the environment's choice of it is watched
    // here, a config file's is not (after changing the linker there,
    // `cargo clean -p redeploy-host`).
    let target = env::var("TARGET").unwrap();
    println!(
        "cargo:rerun-if-env-changed=CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    let outcome = match ordering_refusal(&list, &target) {
        None => {
            // Two arguments, not `-Wl,...`, which would split the path at
            // its commas.
            println!("cargo:rustc-link-arg-bins=-Xlinker");
            println!(
                "cargo:rustc-link-arg-bins=--symbol-ordering-file={}",
                list.display()
            );
            println!("cargo:rustc-link-arg-bins=-Xlinker");
            println!("cargo:rustc-link-arg-bins=--no-warn-symbol-ordering");
            "applied".to_owned()
        }
        Some(why) => why,
    };
    println!("cargo:rustc-env=REDEPLOY_HOT_FUNCTIONS={outcome}");
}

/// Why the list is not handed to the linker, if it is not: not a release
/// build (whose names the list holds); a list another compiler wrote (the
/// names carry hashes of the compiler's version, so almost none would
/// match: a warning says to write it again); or a linker that does not
/// take `--symbol-ordering-file`. That is LLD's option, and a rustup
/// toolchain links `x86_64-unknown-linux-gnu` with LLD by default, but
/// another target, a configured linker or flags, or a compiler built
/// without LLD may use GNU ld: so a trivial program is linked first with
/// the very flags, linker and list, and the list is used only if that
/// works. A name the binary lacks is skipped in silence: the list goes
/// stale by degrees as the code changes, never breaks the link.
fn ordering_refusal(list: &Path, target: &str) -> Option<String> {
    if env::var("PROFILE").as_deref() != Ok("release") {
        return Some("not a release build".to_owned());
    }
    // The names also carry hashes of the profile's settings, the features
    // and the dependencies' versions: a build that changes those (a
    // profile of one's own, `--target` given, `cargo install` without
    // `--locked`) gets the list applied to the names that still match.
    let Ok(text) = std::fs::read_to_string(list) else {
        return Some("host/hot-functions.txt cannot be read".to_owned());
    };
    let rustc = rustc();
    let current = Command::new(&rustc)
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let written_by = text
        .lines()
        .find_map(|l| l.strip_prefix("# rustc "))
        .map(|v| format!("rustc {}", v.trim()));
    if written_by.as_deref() != Some(current.as_str()) {
        let why = format!(
            "host/hot-functions.txt was written by {}, this is {current}: run bench/hot_functions.py",
            written_by.as_deref().unwrap_or("an unnamed compiler")
        );
        println!("cargo:warning={why}");
        return Some(why);
    }
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let probe = out.join("ordering_probe.rs");
    std::fs::write(&probe, "fn main() {}\n").expect("writing the link probe");
    let linked = out.join("ordering_probe");
    let _ = std::fs::remove_file(&linked);
    let mut cmd = Command::new(&rustc);
    cmd.arg(&probe)
        .args([
            "--crate-type",
            "bin",
            "--edition",
            "2021",
            "--target",
            target,
        ])
        .args(["-C", "link-arg=-Xlinker", "-C"])
        .arg(format!(
            "link-arg=--symbol-ordering-file={}",
            list.display()
        ))
        .args(["-C", "link-arg=-Xlinker", "-C"])
        .arg("link-arg=--no-warn-symbol-ordering");
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        cmd.arg("-C").arg({
            let mut arg = std::ffi::OsString::from("linker=");
            arg.push(linker);
            arg
        });
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    // Last, so the flags cannot turn the link off.
    cmd.arg("--emit=link").arg("-o").arg(&linked);
    match cmd.output() {
        Ok(o) if o.status.success() && linked.exists() => None,
        Ok(o) => Some(format!(
            "a trivial program does not link with --symbol-ordering-file (an LLD option): {}",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .find(|l| l.contains("error") || l.contains("unrecognized"))
                .unwrap_or("no error shown")
                .trim()
        )),
        Err(e) => Some(format!("cannot run {rustc} for the link probe: {e}")),
    }
}

/// The compiler cargo builds with.
fn rustc() -> String {
    env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

/// Installs the wasm target with rustup when the toolchain lacks it.
fn ensure_wasm_target() {
    let sysroot = Command::new(rustc())
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
