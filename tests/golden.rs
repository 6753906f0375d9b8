//! Golden tests: every folder under `tests/golden/cases/` is one delivery
//! (a real third-party payload from `tests/fixtures`, its headers, the
//! stacks to evaluate; or a poll observation, which has no payload) and the
//! outcome we expect, written after reading the payload. Each case runs through three drivers that must all agree with
//! `expected.json`:
//! 1. the plugin crate, natively;
//! 2. the built component in wasmtime, through the host's typed calls;
//! 3. the built component's `evaluate-json` export.
//!
//! `REDEPLOY_BLESS=1` rewrites `expected.json` from the native driver; a
//! person then reads every rewritten file against its payload before committing.

use std::path::{Path, PathBuf};

use redeploy_host::plugin::wit;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::support::{fixtures, hmac_sha256_hex, runtime, workspace};

/// A case's `case.json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// Why this case exists, in a sentence.
    #[allow(dead_code)]
    note: String,
    /// The payload, relative to `tests/fixtures`.
    fixture: Option<String>,
    /// An inline body instead of a fixture.
    body: Option<String>,
    /// A derived payload: each `[from, to]` replaces the one occurrence of
    /// `from` in the fixture's text (where no third-party payload shows a
    /// case, the note says which field of which payload was changed).
    #[serde(default)]
    replace: Vec<(String, String)>,
    /// The headers file, relative to the fixtures; default: the fixture's `.headers`.
    headers: Option<String>,
    /// Use no headers file even if the fixture has one.
    #[serde(default)]
    no_headers_file: bool,
    /// Headers added after the file's.
    #[serde(default)]
    extra_headers: Vec<(String, String)>,
    #[serde(default = "post")]
    method: String,
    #[serde(default)]
    query: String,
    /// Send the payload form-encoded as `payload=<json>`.
    #[serde(default)]
    form: bool,
    /// Sign the body (HMAC-SHA256).
    sign: Option<Sign>,
    /// The stacks, in `evaluate-json`'s format.
    stacks: Vec<Value>,
    /// The evaluation context, in `evaluate-json`'s format (default: no
    /// time, no deployment key).
    #[serde(default)]
    context: Option<Value>,
    /// A poll observation, in `evaluate-json`'s format (`{"stack",
    /// "change", "query"}`), delivered instead of an HTTP request: the case
    /// then has no payload, headers or request fields.
    poll: Option<Value>,
}

fn post() -> String {
    "POST".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sign {
    secret: String,
    header: String,
    #[serde(default)]
    prefix: String,
    /// `raw` (the body as sent) or `json` (the decoded payload).
    #[serde(default = "raw")]
    over: String,
}

fn raw() -> String {
    "raw".into()
}

struct Request {
    method: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// `payload` with each `[from, to]` of `replace` applied; `from` must occur
/// exactly once, so a fixture that changes cannot silently skip a change.
fn derive(payload: Vec<u8>, replace: &[(String, String)]) -> Vec<u8> {
    if replace.is_empty() {
        return payload;
    }
    let mut text = String::from_utf8(payload).expect("a derived payload is UTF-8");
    for (from, to) in replace {
        assert_eq!(text.matches(from.as_str()).count(), 1, "replace {from:?}");
        text = text.replacen(from.as_str(), to, 1);
    }
    text.into_bytes()
}

fn build_request(case: &Case) -> Request {
    if case.poll.is_some() {
        // A poll carries its own query; nothing of a request applies.
        assert!(
            case.fixture.is_none()
                && case.body.is_none()
                && case.headers.is_none()
                && case.extra_headers.is_empty()
                && case.sign.is_none()
                && case.query.is_empty()
                && !case.form,
            "a poll case has no request fields"
        );
    }
    let json_bytes: Vec<u8> = match (&case.fixture, &case.body) {
        (Some(f), None) => {
            std::fs::read(fixtures().join(f)).unwrap_or_else(|e| panic!("reading fixture {f}: {e}"))
        }
        (None, Some(b)) => b.clone().into_bytes(),
        (None, None) => Vec::new(),
        (Some(_), Some(_)) => panic!("a case has a fixture or a body, not both"),
    };
    let json_bytes = derive(json_bytes, &case.replace);
    let mut headers = Vec::new();
    let headers_file = match (&case.headers, &case.fixture) {
        (Some(h), _) => Some(fixtures().join(h)),
        (None, Some(f)) if !case.no_headers_file => {
            let p = fixtures().join(f).with_extension("headers");
            p.exists().then_some(p)
        }
        _ => None,
    };
    if let Some(p) = headers_file {
        headers.extend(redeploy_host::headers::read_headers(&p).unwrap());
    }
    headers.extend(case.extra_headers.iter().cloned());
    let body = if case.form {
        headers.push((
            "Content-Type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
        form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", std::str::from_utf8(&json_bytes).unwrap())
            .finish()
            .into_bytes()
    } else {
        json_bytes.clone()
    };
    if let Some(sign) = &case.sign {
        let over = if sign.over == "json" {
            &json_bytes
        } else {
            &body
        };
        headers.push((
            sign.header.clone(),
            format!("{}{}", sign.prefix, hmac_sha256_hex(&sign.secret, over)),
        ));
    }
    Request {
        method: case.method.clone(),
        query: case.query.clone(),
        headers,
        body,
    }
}

fn error_json(kind: &str, message: &str) -> Value {
    json!({ "error": { "kind": kind, "message": message } })
}

/// The `evaluate-json` input for a case. The body must be UTF-8 there.
fn json_input(case: &Case, req: &Request) -> Option<String> {
    let delivery = match &case.poll {
        Some(poll) => json!({ "poll": poll }),
        None => {
            let body = std::str::from_utf8(&req.body).ok()?;
            json!({ "http": {
                "method": req.method, "query": req.query,
                "headers": req.headers, "body": body,
            }})
        }
    };
    Some(
        json!({
            "stacks": case.stacks,
            "delivery": delivery,
            "context": case.context.clone().unwrap_or_else(|| json!({})),
        })
        .to_string(),
    )
}

fn run_native(input: &str) -> Value {
    match redeploy_plugin::json_api::evaluate_json(input) {
        Ok(s) => serde_json::from_str(&s).unwrap(),
        Err(e) => error_json(e.kind(), e.message()),
    }
}

fn run_component_json(input: &str) -> Value {
    match runtime().evaluate_json(input).expect("component trapped") {
        Ok(s) => serde_json::from_str(&s).unwrap(),
        Err(e) => error_json(e.kind(), e.message()),
    }
}

/// A stack in `evaluate-json`'s format, read back for the typed driver.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct StackIn {
    name: String,
    repository: Option<String>,
    branch: Option<String>,
    tags: Option<String>,
    image: Option<String>,
    #[serde(default)]
    services: Vec<ServiceIn>,
    #[serde(default)]
    secrets: Vec<String>,
    ping: Option<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    skip_markers: Vec<String>,
    #[serde(default)]
    profiles: Vec<String>,
    #[serde(default)]
    unselectable_profiles: Vec<String>,
    #[serde(default)]
    unselectable_services: Vec<String>,
    #[serde(default)]
    refuse_query_services: bool,
    manual: Option<String>,
    github: Option<GithubIn>,
}

/// The evaluation context in `evaluate-json`'s format.
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ContextIn {
    now_ms: Option<u64>,
    deployment_key: Option<String>,
    max_event_age_ms: Option<u64>,
}

fn wit_context(v: Option<&Value>) -> wit::EvaluationContext {
    let c: ContextIn = v
        .map(|v| serde_json::from_value(v.clone()).expect("case context"))
        .unwrap_or_default();
    wit::EvaluationContext {
        now_ms: c.now_ms,
        deployment_key: c.deployment_key,
        max_event_age_ms: c
            .max_event_age_ms
            .unwrap_or(redeploy_plugin::evaluate::DEFAULT_MAX_EVENT_AGE_MS),
        body_macs: None,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ServiceIn {
    name: String,
    repository: Option<String>,
    branch: Option<String>,
    tags: Option<String>,
    image: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct GithubIn {
    repository: String,
    environment: String,
    #[serde(default)]
    auto_merge: bool,
    #[serde(default)]
    accept_foreign_deployments: bool,
    #[serde(default)]
    required_contexts: Vec<String>,
    #[serde(default)]
    transient_environment: bool,
    #[serde(default)]
    production_environment: bool,
    wait_for_event: Option<bool>,
}

/// A stack in `evaluate-json`'s format, as the WIT type.
pub(crate) fn wit_stack(v: &Value) -> wit::Stack {
    let s: StackIn = serde_json::from_value(v.clone()).expect("case stack");
    wit::Stack {
        name: s.name,
        repository: s.repository,
        branch: s.branch,
        tags: s.tags,
        image: s.image,
        services: s
            .services
            .into_iter()
            .map(|x| wit::Service {
                name: x.name,
                repository: x.repository,
                branch: x.branch,
                tags: x.tags,
                image: x.image,
            })
            .collect(),
        secrets: s.secrets,
        ping: match s.ping.as_deref() {
            Some("acknowledge") => wit::PingAction::Acknowledge,
            _ => wit::PingAction::Deploy,
        },
        paths: s.paths,
        skip_markers: s.skip_markers,
        profiles: s.profiles,
        unselectable_profiles: s.unselectable_profiles,
        unselectable_services: s.unselectable_services,
        refuse_query_services: s.refuse_query_services,
        manual: match s.manual.as_deref() {
            Some("signed") => wit::ManualPolicy::Signed,
            Some("refuse") => wit::ManualPolicy::Refuse,
            _ => wit::ManualPolicy::Allow,
        },
        github: s.github.map(|g| wit::GithubDeployments {
            repository: g.repository,
            environment: g.environment,
            auto_merge: g.auto_merge,
            accept_foreign_deployments: g.accept_foreign_deployments,
            required_contexts: g.required_contexts,
            transient_environment: g.transient_environment,
            production_environment: g.production_environment,
            wait_for_event: g.wait_for_event.unwrap_or(true),
        }),
    }
}

/// A poll observation in `evaluate-json`'s format, read back for the typed driver.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollIn {
    stack: String,
    change: PollChangeIn,
    #[serde(default)]
    query: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum PollChangeIn {
    Git {
        repository: String,
        update: RefUpdateIn,
    },
    Image {
        repository: String,
        tag: String,
        digest: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefUpdateIn {
    old: String,
    new: String,
    name: String,
}

fn wit_poll(v: &Value) -> wit::PollObservation {
    let p: PollIn = serde_json::from_value(v.clone()).expect("case poll");
    wit::PollObservation {
        stack: p.stack,
        change: match p.change {
            PollChangeIn::Git { repository, update } => wit::PollChange::Git(wit::GitPoll {
                repository,
                update: wit::RefUpdate {
                    old: update.old,
                    new: update.new,
                    name: update.name,
                },
            }),
            PollChangeIn::Image {
                repository,
                tag,
                digest,
            } => wit::PollChange::Image(wit::ImagePoll {
                repository,
                tag,
                digest,
            }),
        },
        query: p.query,
    }
}

fn run_component_typed(case: &Case, req: &Request) -> Value {
    let stacks: Vec<wit::Stack> = case.stacks.iter().map(wit_stack).collect();
    let delivery = match &case.poll {
        Some(poll) => wit::Delivery::Poll(wit_poll(poll)),
        None => wit::Delivery::Http(wit::HttpRequest {
            method: req.method.clone(),
            query: req.query.clone(),
            headers: req.headers.clone(),
            body: req.body.clone(),
        }),
    };
    let context = wit_context(case.context.as_ref());
    match runtime()
        .report(&stacks, &delivery, &context)
        .expect("component trapped")
    {
        Ok(document) => {
            // The typed outcome agrees with the document: the same actions.
            let outcome = runtime()
                .evaluate(&stacks, &delivery, &context)
                .expect("component trapped")
                .expect("report evaluated it");
            let document: Value = serde_json::from_str(&document).unwrap();
            for (d, typed) in document["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .zip(&outcome.decisions)
            {
                assert_eq!(d["action"], typed.action.name());
                assert_eq!(
                    d["skip"].as_str(),
                    typed.action.skip_code().map(wit::SkipCode::as_str)
                );
            }
            document
        }
        Err(e) => error_json(e.kind(), e.message()),
    }
}

fn cases_dir() -> PathBuf {
    workspace().join("tests").join("golden").join("cases")
}

fn diff(expected: &Value, actual: &Value) -> String {
    let e = serde_json::to_string_pretty(expected).unwrap();
    let a = serde_json::to_string_pretty(actual).unwrap();
    similar::TextDiff::from_lines(&e, &a)
        .unified_diff()
        .header("expected", "actual")
        .to_string()
}

fn check_case(dir: &Path, bless: bool) -> Result<(), String> {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let case: Case = serde_json::from_slice(
        &std::fs::read(dir.join("case.json")).map_err(|e| format!("{name}: {e}"))?,
    )
    .map_err(|e| format!("{name}: case.json: {e}"))?;
    let req = build_request(&case);
    let input = json_input(&case, &req).ok_or_else(|| format!("{name}: body is not UTF-8"))?;
    let native = run_native(&input);
    let expected_path = dir.join("expected.json");
    if bless {
        std::fs::write(
            &expected_path,
            serde_json::to_string_pretty(&native).unwrap() + "\n",
        )
        .unwrap();
    }
    let expected: Value = serde_json::from_slice(&std::fs::read(&expected_path).map_err(|e| {
        format!("{name}: expected.json: {e} (run with REDEPLOY_BLESS=1, then read it)")
    })?)
    .map_err(|e| format!("{name}: expected.json: {e}"))?;
    let mut problems = String::new();
    for (driver, actual) in [
        ("native", native),
        ("component (typed)", run_component_typed(&case, &req)),
        ("component (evaluate-json)", run_component_json(&input)),
    ] {
        if actual != expected {
            problems.push_str(&format!(
                "{name}: {driver} differs:\n{}\n",
                diff(&expected, &actual)
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Runs one case (a test `host/build.rs` generated per case folder).
fn run_case(name: &str) {
    let bless = std::env::var_os("REDEPLOY_BLESS").is_some();
    if let Err(problems) = check_case(&cases_dir().join(name), bless) {
        panic!("{problems}");
    }
}

/// One test per case folder, named after it: `cargo test golden::cases::NAME`.
mod cases {
    use super::run_case;
    include!(concat!(env!("OUT_DIR"), "/golden_cases.rs"));

    #[test]
    fn every_case_folder_has_its_test() {
        let mut on_disk: Vec<String> = std::fs::read_dir(super::cases_dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("case.json").exists())
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        assert_eq!(
            on_disk, CASE_NAMES,
            "the case folders changed since the tests were generated: rebuild"
        );
        assert!(
            CASE_NAMES.len() >= 100,
            "expected the whole corpus, found {} cases",
            CASE_NAMES.len()
        );
    }
}
