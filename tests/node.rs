//! The golden corpus in Node.js: the same component, transpiled by jco
//! (pinned in `tests/node/package.json` and its lockfile), must give the same
//! outcome for every case. Without `node` (`.ci/run` installs Node.js) or
//! when jco cannot be installed, the test fails; it never skips.

use std::process::Command;

use crate::support::{fixtures, workspace, TempDir};

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}

#[test]
fn golden_cases_agree_in_node_via_jco() {
    // No Node.js is a failure, not a skip: `.ci/run` installs it.
    run(
        Command::new("node").arg("--version"),
        "node (Node.js 20 or later)",
    );
    let harness = workspace().join("tests").join("node");
    if !harness
        .join("node_modules")
        .join(".package-lock.json")
        .exists()
    {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&harness),
            "npm ci (installing jco)",
        );
    }
    let tmp = TempDir::new("jco");
    let wasm = tmp.join("plugin.wasm");
    std::fs::write(&wasm, redeploy_host::plugin::EMBEDDED_COMPONENT).unwrap();
    let out = tmp.join("out");
    let jco = harness.join("node_modules").join(".bin").join("jco");
    run(
        Command::new(&jco)
            .arg("transpile")
            .arg(&wasm)
            .arg("-o")
            .arg(&out)
            .args(["--name", "plugin"])
            .current_dir(&harness),
        "jco transpile",
    );
    // jco emits ES modules.
    std::fs::write(out.join("package.json"), "{\"type\":\"module\"}\n").unwrap();
    let report = run(
        Command::new("node")
            .arg(harness.join("golden.mjs"))
            .arg(out.join("plugin.js"))
            .arg(workspace().join("tests/golden/cases"))
            .arg(fixtures())
            .current_dir(&harness),
        "node golden.mjs",
    );
    let last = report.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("node golden: ") && last.ends_with(" passed, 0 failed"),
        "{report}"
    );
    let passed: usize = last["node golden: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(passed >= 100, "{report}");
}
