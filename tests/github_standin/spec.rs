//! The published description (`tests/github-api/`), compiled once.

use super::*;

/// One operation of `operations.json`.
pub(super) struct Operation {
    pub(super) key: String,
    pub(super) method: String,
    /// Path segments; `None` for a `{parameter}`.
    pub(super) segments: Vec<Option<String>>,
    /// `(required, validator, declared top-level properties)`.
    pub(super) request: Option<(bool, jsonschema::Validator, Vec<String>)>,
    /// Validators of the documented 2xx response schemas, by status.
    pub(super) responses: HashMap<u16, jsonschema::Validator>,
    /// Declared query parameters and their schema types.
    pub(super) query: Vec<(String, String)>,
    /// The documentation page.
    pub(super) docs: String,
}

/// The compiled description.
pub(super) struct Spec {
    pub(super) ops: Vec<Operation>,
    /// The `deployment` event fixture from GitHub's own webhook examples.
    pub(super) deployment_event: Value,
}

/// `tests/github-api/`: GitHub's REST description of the operations the
/// stand-in serves, vendored byte for byte (its origin in `SOURCE.md`).
pub(super) fn github_api() -> std::path::PathBuf {
    crate::support::workspace().join("tests").join("github-api")
}

pub(super) fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let mut doc = serde_json::Map::new();
        for file in [
            "operations.json",
            "operations-extra.json",
            "operations-catchup.json",
        ] {
            let path = github_api().join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let part: Value = serde_json::from_str(&text).expect("the description is JSON");
            doc.extend(part.as_object().expect("an object of operations").clone());
        }
        let mut ops = Vec::new();
        for (key, op) in &doc {
            if key.starts_with('_') {
                continue;
            }
            let (method, path) = key.split_once(' ').unwrap();
            let segments = path
                .split('/')
                .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
                .collect();
            let request = op.get("requestBody").filter(|b| !b.is_null()).map(|b| {
                let schema = b["schema"].clone();
                let props = schema["properties"]
                    .as_object()
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                (
                    b["required"].as_bool().unwrap_or(false),
                    compile(&schema, true),
                    props,
                )
            });
            let responses = op["responses"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(code, r)| code.starts_with('2') && r.get("schema").is_some())
                .map(|(code, r)| (code.parse().unwrap(), compile(&r["schema"], false)))
                .collect();
            let query = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .filter(|p| p["in"] == "query")
                        .map(|p| {
                            let name = p["name"].as_str().unwrap().to_string();
                            let kind = p["schema"]["type"].as_str().unwrap_or("string");
                            (name, kind.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
            ops.push(Operation {
                key: key.clone(),
                method: method.to_string(),
                segments,
                request,
                responses,
                query,
                docs: op["externalDocs"]["url"]
                    .as_str()
                    .unwrap_or(DOCS_URL)
                    .to_string(),
            });
        }
        let fixture = crate::support::fixtures()
            .join("github")
            .join("octokit-deployment-default.json");
        let deployment_event =
            serde_json::from_slice(&std::fs::read(&fixture).expect("deployment fixture"))
                .expect("deployment fixture is JSON");
        Spec {
            ops,
            deployment_event,
        }
    })
}

/// Compiles an OpenAPI 3.0 schema as JSON Schema. Formats are asserted on
/// requests (GitHub rejects a hook `url` that is not a URI) but not on
/// responses: GitHub itself answers `""` for an unset `target_url`, which is
/// documented with `format: uri`.
pub(super) fn compile(schema: &Value, formats: bool) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(formats)
        .build(&openapi_to_json_schema(schema.clone()))
        .expect("a valid schema")
}

/// OpenAPI 3.0's `nullable: true` is not JSON Schema: `{type: T, nullable:
/// true}` becomes `{type: [T, "null"]}`, and a nullable schema without a
/// `type` becomes `{anyOf: [schema, {type: "null"}]}`.
pub(super) fn openapi_to_json_schema(v: Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.into_iter().map(openapi_to_json_schema).collect()),
        Value::Object(m) => {
            let mut m: serde_json::Map<String, Value> = m
                .into_iter()
                .map(|(k, v)| (k, openapi_to_json_schema(v)))
                .collect();
            match m.remove("nullable") {
                Some(Value::Bool(true)) => match m.get("type").cloned() {
                    Some(Value::String(t)) => {
                        m.insert("type".into(), json!([t, "null"]));
                        Value::Object(m)
                    }
                    _ => json!({"anyOf": [Value::Object(m), {"type": "null"}]}),
                },
                Some(other) if !other.is_boolean() => {
                    // A property named "nullable", not the keyword.
                    m.insert("nullable".into(), other);
                    Value::Object(m)
                }
                _ => Value::Object(m),
            }
        }
        other => other,
    }
}

pub(super) fn find_op(method: &str, path: &str) -> Option<&'static Operation> {
    let segs: Vec<&str> = path.split('/').collect();
    spec().ops.iter().find(|op| {
        op.method == method
            && op.segments.len() == segs.len()
            && op.segments.iter().zip(&segs).all(|(t, s)| match t {
                Some(lit) => lit == s,
                None => !s.is_empty(),
            })
    })
}
