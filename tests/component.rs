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
            "redeploy:plugin/evaluator@0.1.0",
            "redeploy:plugin/types@0.1.0"
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
