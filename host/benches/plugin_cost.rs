//! Plugin cost per delivery: the plugin crate linked natively against the
//! component in wasmtime, as `redeploy serve` runs it (the host's
//! [`PluginRuntime`] with the pooling allocator: a fresh instance per
//! delivery from the pre-instance).
//!
//! Run with `cargo bench -p redeploy-host --bench plugin_cost`; see
//! `BENCHMARKS.md` for the figures and how to read them. Three parts:
//! 1. `fixture/*`: real payloads from `tests/fixtures`, native and component;
//! 2. `size/*`: a GitHub push grown from 1 KB to 25 MiB by adding commits,
//!    native and component, to check that the cost grows linearly;
//! 3. a side-by-side pass (only under `cargo bench`, not in test mode) that
//!    alternates native and component batches and prints the median of the
//!    per-round ratio, which is the figure the budget is stated in.
//!
//! Every input is evaluated through the component once before anything is
//! timed (`check_agreement`), the 25 MiB push included, on this one thread
//! and so in the same pooled slot: each small delivery is timed in a slot a
//! large one has used, whose reset then zeroes every page the large one
//! wrote in the initial memory (`LINEAR_MEMORY_KEEP_RESIDENT`). That is the
//! case a long-running server reaches, and the worse one; the side-by-side
//! pass also times each delivery on a runtime that has evaluated nothing
//! else, the better one.
//!
//! Under `cargo test --benches` criterion runs every benchmark once, so the
//! test suite checks that the harness builds and runs without timing anything.
//!
//! With [`LOOP_VAR`] set it times none of that: it builds and checks every
//! input as above (so the shared runtime's slot has seen them all), then
//! runs a loop, one input evaluated over and over on one side, the time per
//! evaluation printed, for a profiler to attach to (BENCHMARKS.md part 5,
//! the tenth to thirteenth passes). [`COMPONENT_FILE_VAR`] loads another
//! build of the component for everything the binary runs, loop or
//! benchmarks, so that two builds are compared under one benchmark binary:
//!
//! ```text
//! PLUGIN_COST_LOOP=github-push-small PLUGIN_COST_SIDE=own-slot \
//!     cargo bench -p redeploy-host --bench plugin_cost
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use redeploy_host::plugin::body_macs::body_macs;
use redeploy_host::plugin::{wit, Allocation, ComponentSource, PluginRuntime, RuntimeOptions};
use redeploy_plugin::evaluate::{self as native, Delivery, HttpRequest};
use redeploy_plugin::model::{Headers, PingAction, Service, Stack};
use serde_json::{json, Value};
use sha2::Sha256;

/// The secret every benchmark stack verifies signatures with.
const SECRET: &str = "topsecret";

/// Payload sizes of the cost curve, in bytes (1 KB to 25 MiB, the server's
/// default `max_body_bytes`).
const CURVE_SIZES: &[usize] = &[
    1024,
    16 * 1024,
    256 * 1024,
    4 * 1024 * 1024,
    25 * 1024 * 1024,
];

/// Rounds of the side-by-side pass; each round times one native batch and
/// one component batch of the same delivery.
const SIDE_BY_SIDE_ROUNDS: usize = 41;

/// How long each batch of the side-by-side pass runs, at least.
const SIDE_BY_SIDE_BATCH: Duration = Duration::from_millis(40);

/// Environment variable that runs the loop instead of the benchmarks:
/// `NAME` or `NAME,COUNT`, an input's name (`github-push-small`,
/// `github-push-1024`, ...) and how many evaluations each timed loop makes
/// (default [`LOOP_DEFAULT_COUNT`]).
const LOOP_VAR: &str = "PLUGIN_COST_LOOP";

/// Environment variable naming what the loop times ([`LoopSide`]):
/// `component` (the default), `own-slot`, `native`, `guest-macs`,
/// `host-macs` or `version`.
const LOOP_SIDE_VAR: &str = "PLUGIN_COST_SIDE";

/// Environment variable naming a component file to load instead of the
/// embedded one (`--plugin` of `redeploy serve`).
const COMPONENT_FILE_VAR: &str = "PLUGIN_COST_COMPONENT";

/// Evaluations per timed loop unless [`LOOP_VAR`] says otherwise: about
/// two thirds of a second for a small push in the component. A large
/// input needs a count of its own (`github-push-26214400,10`): at this
/// count its loop would take over twenty minutes.
const LOOP_DEFAULT_COUNT: usize = 20_000;

/// Timed loops per run; the first also warms the caches up.
const LOOP_REPEATS: usize = 3;

/// The exit status when the loop's settings, or the component file
/// [`COMPONENT_FILE_VAR`] names, are wrong.
const USAGE_EXIT_STATUS: i32 = 2;

/// What the loop of [`LOOP_VAR`] times, per evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoopSide {
    /// The component on the shared runtime, whose pooled slot has seen every
    /// input (the `component` column).
    Component,
    /// The component on a runtime that evaluates only this input (the
    /// `slot of its own` column).
    OwnSlot,
    /// The plugin crate linked natively (the `native` column).
    Native,
    /// The component computing the body's MACs itself (the `MACs in the
    /// guest` column).
    GuestMacs,
    /// Only the body's MACs, as the host computes them for the component.
    HostMacs,
    /// An instance made and dropped around one call of `version`, which
    /// returns a constant: what a fresh instance and one call cost, without
    /// an evaluation.
    Version,
}

impl LoopSide {
    /// The side named `name`, the value of [`LOOP_SIDE_VAR`].
    fn parse(name: &str) -> Option<LoopSide> {
        Some(match name {
            "component" => LoopSide::Component,
            "own-slot" => LoopSide::OwnSlot,
            "native" => LoopSide::Native,
            "guest-macs" => LoopSide::GuestMacs,
            "host-macs" => LoopSide::HostMacs,
            "version" => LoopSide::Version,
            _ => return None,
        })
    }
}

/// One benchmark input, in both the native and the WIT form.
struct Input {
    name: String,
    native_stacks: Vec<Stack>,
    native_delivery: Delivery,
    wit_stacks: Vec<wit::Stack>,
    wit_delivery: wit::Delivery,
    body_len: usize,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn hmac_hex(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// A stack following one repository's branch (or one image), with a secret
/// when the sender signs.
struct StackSpec {
    name: &'static str,
    repository: Option<&'static str>,
    branch: Option<&'static str>,
    image: Option<&'static str>,
    secret: bool,
}

fn native_stack(s: &StackSpec) -> Stack {
    Stack {
        name: s.name.into(),
        services: vec![Service {
            name: s.name.into(),
            repository: s.repository.map(Into::into),
            branch: s.branch.map(Into::into),
            tags: None,
            image: s.image.map(Into::into),
        }],
        secrets: if s.secret {
            vec![SECRET.into()]
        } else {
            vec![]
        },
        ping: PingAction::Deploy,
        paths: vec![],
        skip_markers: vec![],
        profiles: vec![],
        github: None,
        ..Stack::default()
    }
}

fn wit_stack(s: &StackSpec) -> wit::Stack {
    wit::Stack {
        name: s.name.into(),
        repository: s.repository.map(Into::into),
        branch: s.branch.map(Into::into),
        tags: None,
        image: s.image.map(Into::into),
        services: vec![],
        secrets: if s.secret {
            vec![SECRET.into()]
        } else {
            vec![]
        },
        ping: wit::PingAction::Deploy,
        paths: vec![],
        skip_markers: vec![],
        profiles: vec![],
        unselectable_profiles: vec![],
        unselectable_services: vec![],
        refuse_query_services: false,
        manual: wit::ManualPolicy::Allow,
        github: None,
    }
}

/// No clock: the fixtures' registry events are years old.
fn wit_context() -> wit::EvaluationContext {
    wit::EvaluationContext {
        now_ms: None,
        deployment_key: None,
        max_event_age_ms: redeploy_plugin::evaluate::DEFAULT_MAX_EVENT_AGE_MS,
        // `PluginRuntime::evaluate` computes the body's MACs natively, as
        // `redeploy serve` does, and the measurement includes that.
        body_macs: None,
    }
}

fn input(name: &str, stacks: &[StackSpec], headers: Vec<(String, String)>, body: Vec<u8>) -> Input {
    let native_stacks: Vec<Stack> = stacks.iter().map(native_stack).collect();
    let wit_stacks: Vec<wit::Stack> = stacks.iter().map(wit_stack).collect();
    let native_delivery = Delivery::Http(HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers: Headers::new(headers.clone()),
        body: body.clone(),
    });
    let wit_delivery = wit::Delivery::Http(wit::HttpRequest {
        method: "POST".into(),
        query: String::new(),
        headers,
        body: body.clone(),
    });
    let input = Input {
        name: name.into(),
        native_stacks,
        native_delivery,
        wit_stacks,
        wit_delivery,
        body_len: body.len(),
    };
    check_agreement(&input);
    input
}

/// Both paths must reach the same decisions, or the comparison is void.
fn check_agreement(input: &Input) {
    let native = native::evaluate(
        &input.native_stacks,
        &input.native_delivery,
        &Default::default(),
    )
    .unwrap_or_else(|e| panic!("{}: native evaluation failed: {e:?}", input.name));
    let component = runtime()
        .evaluate(&input.wit_stacks, &input.wit_delivery, &wit_context())
        .expect("component trapped")
        .unwrap_or_else(|e| panic!("{}: component evaluation failed: {e:?}", input.name));
    let guest_macs = runtime()
        .evaluate(
            &input.wit_stacks,
            &input.wit_delivery,
            &guest_macs_context(),
        )
        .expect("component trapped")
        .unwrap_or_else(|e| panic!("{}: component evaluation failed: {e:?}", input.name));
    assert_eq!(
        format!("{component:?}"),
        format!("{guest_macs:?}"),
        "{}: the host's MACs changed the outcome",
        input.name
    );
    let native_actions: Vec<bool> = native
        .decisions
        .iter()
        .map(|d| d.deploy().is_some())
        .collect();
    let component_actions: Vec<bool> = component
        .decisions
        .iter()
        .map(|d| d.action.event().is_some())
        .collect();
    assert_eq!(
        native_actions, component_actions,
        "{}: native and component disagree",
        input.name
    );
}

/// Reads a fixture and its `.headers` file (if any).
fn fixture(path: &str) -> (Vec<(String, String)>, Vec<u8>) {
    let file = fixtures().join(path);
    let body = std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let headers_file = file.with_extension("headers");
    let headers = if headers_file.exists() {
        redeploy_host::headers::read_headers(&headers_file).expect("fixture headers")
    } else {
        vec![]
    };
    (headers, body)
}

/// Replaces any signature headers with ones computed over `body`.
fn signed_github(mut headers: Vec<(String, String)>, body: &[u8]) -> Vec<(String, String)> {
    headers.retain(|(k, _)| !k.to_ascii_lowercase().starts_with("x-hub-signature"));
    headers.push((
        "X-Hub-Signature-256".into(),
        format!("sha256={}", hmac_hex(body)),
    ));
    headers
}

fn fixture_inputs() -> Vec<Input> {
    let hello = |secret| StackSpec {
        name: "hello",
        repository: Some("Codertocat/Hello-World"),
        branch: Some("master"),
        image: None,
        secret,
    };
    let mut inputs = Vec::new();

    let (h, b) = fixture("github/goscm-push.json");
    inputs.push(input(
        "github-push-small",
        &[hello(true)],
        signed_github(h, &b),
        b,
    ));

    let (h, b) = fixture("github/woodpecker-HookPush.json");
    let woodpecker = StackSpec {
        name: "woodpecker",
        repository: Some("woodpecker-ci/woodpecker"),
        branch: Some("main"),
        image: None,
        secret: true,
    };
    inputs.push(input(
        "github-push-largest-fixture",
        &[woodpecker],
        signed_github(h, &b),
        b,
    ));

    let (h, b) = grown_github_push(1024 * 1024);
    inputs.push(input("github-push-1mib", &[hello(true)], h, b));

    let (h, b) = fixture("gitlab/goscm-push.json");
    let gitlab = StackSpec {
        name: "gitlab",
        repository: Some("gitlab-org/hello-world"),
        branch: Some("master"),
        image: None,
        secret: false,
    };
    inputs.push(input("gitlab-push", &[gitlab], h, b));

    let (h, b) = fixture("bitbucket-cloud/goscm-push.json");
    let bitbucket = StackSpec {
        name: "bitbucket",
        repository: Some("brydzewski/foo"),
        branch: Some("master"),
        image: None,
        secret: false,
    };
    inputs.push(input("bitbucket-cloud-push", &[bitbucket], h, b));

    let (h, b) = fixture("dockerhub/dockerdocs-webhook-example.json");
    let registry = StackSpec {
        name: "registry",
        repository: None,
        branch: None,
        image: Some("svendowideit/testhook"),
        secret: false,
    };
    inputs.push(input("dockerhub-push", &[registry], h, b));
    inputs
}

/// A signed GitHub push of about `size` bytes: the small push fixture with
/// its commit repeated (each copy with its own id and changed file) until
/// the body reaches `size`. Below the fixture's own size, the commits, the
/// head commit and the optional fields are dropped instead.
fn grown_github_push(size: usize) -> (Vec<(String, String)>, Vec<u8>) {
    let (headers, body) = fixture("github/goscm-push.json");
    let mut payload: Value = serde_json::from_slice(&body).expect("fixture is JSON");
    let commit = payload["commits"][0].clone();
    let body = if size < body.len() {
        let repo = &payload["repository"];
        serde_json::to_vec(&json!({
            "ref": payload["ref"], "before": payload["before"], "after": payload["after"],
            "created": false, "deleted": false, "forced": false,
            "commits": [], "head_commit": null,
            "repository": {
                "full_name": repo["full_name"], "clone_url": repo["clone_url"],
                "ssh_url": repo["ssh_url"], "git_url": repo["git_url"],
                "html_url": repo["html_url"], "name": repo["name"],
                "description": "padding ".repeat(size.saturating_sub(700) / 8),
            },
            "pusher": payload["pusher"],
        }))
        .expect("serializable")
    } else {
        let one = serde_json::to_vec(&commit).expect("serializable").len() + 1;
        let count = (size - body.len()) / one + 1;
        let commits: Vec<Value> = (0..count)
            .map(|i| {
                let mut c = commit.clone();
                c["id"] = json!(format!("{:040x}", i + 1));
                c["modified"] = json!([format!("src/file{i}.rs")]);
                c
            })
            .collect();
        payload["commits"] = Value::Array(commits);
        serde_json::to_vec(&payload).expect("serializable")
    };
    (signed_github(headers, &body), body)
}

/// A runtime as `redeploy serve` loads it: the embedded component (or the
/// file [`COMPONENT_FILE_VAR`] names), the pooling allocator.
fn new_runtime() -> PluginRuntime {
    let options = RuntimeOptions {
        allocation: Allocation::Pooling,
        ..RuntimeOptions::default()
    };
    match std::env::var_os(COMPONENT_FILE_VAR) {
        Some(file) => PluginRuntime::new(&ComponentSource::File(PathBuf::from(file)), options)
            .unwrap_or_else(|e| exit_usage(&format!("{COMPONENT_FILE_VAR}: {e:#}"))),
        None => PluginRuntime::new(&ComponentSource::Embedded, options)
            .expect("loading the embedded component"),
    }
}

/// The runtime every input goes through.
fn runtime() -> &'static PluginRuntime {
    static RUNTIME: std::sync::OnceLock<PluginRuntime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(new_runtime)
}

fn run_native(input: &Input) {
    let outcome = native::evaluate(
        &input.native_stacks,
        &input.native_delivery,
        &Default::default(),
    );
    std::hint::black_box(outcome.expect("native evaluation"));
}

fn run_component(input: &Input) {
    run_component_on(runtime(), input);
}

fn run_component_on(runtime: &PluginRuntime, input: &Input) {
    let outcome = runtime.evaluate(&input.wit_stacks, &input.wit_delivery, &wit_context());
    std::hint::black_box(
        outcome
            .expect("component trapped")
            .expect("component evaluation"),
    );
}

/// The component computing every MAC itself, as before the host passed
/// them in (an empty `body-macs`: the host computes none).
fn guest_macs_context() -> wit::EvaluationContext {
    wit::EvaluationContext {
        body_macs: Some(Vec::new()),
        ..wit_context()
    }
}

fn run_component_guest_macs(input: &Input) {
    let outcome = runtime().evaluate(
        &input.wit_stacks,
        &input.wit_delivery,
        &guest_macs_context(),
    );
    std::hint::black_box(
        outcome
            .expect("component trapped")
            .expect("component evaluation"),
    );
}

fn bench_fixtures(c: &mut Criterion, inputs: &[Input]) {
    let mut group = c.benchmark_group("fixture");
    for input in inputs {
        group.throughput(Throughput::Bytes(input.body_len as u64));
        group.bench_with_input(BenchmarkId::new("native", &input.name), input, |b, i| {
            b.iter(|| run_native(i))
        });
        group.bench_with_input(BenchmarkId::new("component", &input.name), input, |b, i| {
            b.iter(|| run_component(i))
        });
    }
    group.finish();
}

fn bench_curve(c: &mut Criterion, inputs: &[Input]) {
    let mut group = c.benchmark_group("size");
    group.sample_size(10);
    for input in inputs {
        group.throughput(Throughput::Bytes(input.body_len as u64));
        group.bench_with_input(BenchmarkId::new("native", input.body_len), input, |b, i| {
            b.iter(|| run_native(i))
        });
        group.bench_with_input(
            BenchmarkId::new("component", input.body_len),
            input,
            |b, i| b.iter(|| run_component(i)),
        );
    }
    group.finish();
}

/// Times `f` over a batch of at least [`SIDE_BY_SIDE_BATCH`]; returns the
/// mean time per call.
fn batch(f: impl Fn()) -> Duration {
    let started = Instant::now();
    let mut calls = 0u32;
    while started.elapsed() < SIDE_BY_SIDE_BATCH || calls == 0 {
        f();
        calls += 1;
    }
    started.elapsed() / calls
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternates native and component batches of the same delivery, so both
/// see the same machine noise, and prints the medians and the median of the
/// per-round ratio; a third batch of the component computing the body's
/// MACs itself (the host's native MACs are the difference); and a fourth
/// on a runtime of its own that evaluates only this delivery, so its pooled
/// slot has seen no larger one (the shared runtime's slot has seen them
/// all: the module's doc).
fn side_by_side(inputs: &[Input]) {
    println!();
    println!("side by side ({SIDE_BY_SIDE_ROUNDS} rounds, alternating batches):");
    println!(
        "| delivery | body bytes | native median | component median | component / native (median of ratio) \
         | component, MACs in the guest | that / native \
         | component, slot of its own | that / native |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for input in inputs {
        let own = new_runtime();
        let (mut native, mut component, mut ratio) = (vec![], vec![], vec![]);
        let (mut guest, mut guest_ratio) = (vec![], vec![]);
        let (mut alone, mut alone_ratio) = (vec![], vec![]);
        for _ in 0..SIDE_BY_SIDE_ROUNDS {
            let n = batch(|| run_native(input)).as_secs_f64();
            let w = batch(|| run_component(input)).as_secs_f64();
            let g = batch(|| run_component_guest_macs(input)).as_secs_f64();
            let a = batch(|| run_component_on(&own, input)).as_secs_f64();
            native.push(n);
            component.push(w);
            ratio.push(w / n);
            guest.push(g);
            guest_ratio.push(g / n);
            alone.push(a);
            alone_ratio.push(a / n);
        }
        println!(
            "| {} | {} | {} | {} | {:.2}x | {} | {:.2}x | {} | {:.2}x |",
            input.name,
            input.body_len,
            human(median(native)),
            human(median(component)),
            median(ratio),
            human(median(guest)),
            median(guest_ratio),
            human(median(alone)),
            median(alone_ratio)
        );
    }
}

fn human(seconds: f64) -> String {
    if seconds < 1e-3 {
        format!("{:.1} µs", seconds * 1e6)
    } else {
        format!("{:.2} ms", seconds * 1e3)
    }
}

/// The loop of [`LOOP_VAR`] (`spec`): the input it names, among
/// `inputs`, evaluated [`LOOP_REPEATS`] times over on the side
/// [`LOOP_SIDE_VAR`] names, the mean time of each pass printed.
fn run_loop(spec: &str, inputs: &[Input]) {
    let (name, count) = match spec.split_once(',') {
        Some((name, count)) => match count.parse::<usize>() {
            Ok(count) if count > 0 => (name, count),
            _ => exit_usage(&format!("{LOOP_VAR}: {count:?} is not a positive count")),
        },
        None => (spec, LOOP_DEFAULT_COUNT),
    };
    let Some(input) = inputs.iter().find(|i| i.name == name) else {
        let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
        exit_usage(&format!(
            "{LOOP_VAR}: no input {name:?}; the inputs are {}",
            names.join(", ")
        ));
    };
    let side_name = match std::env::var(LOOP_SIDE_VAR) {
        Ok(name) => name,
        Err(std::env::VarError::NotPresent) => "component".into(),
        Err(std::env::VarError::NotUnicode(_)) => {
            exit_usage(&format!("{LOOP_SIDE_VAR} is not UTF-8"))
        }
    };
    let side = LoopSide::parse(&side_name)
        .unwrap_or_else(|| exit_usage(&format!("{LOOP_SIDE_VAR}: no side {side_name:?}")));
    let own = (side == LoopSide::OwnSlot).then(new_runtime);
    let once = || match side {
        LoopSide::Component => run_component(input),
        LoopSide::OwnSlot => run_component_on(own.as_ref().expect("made above"), input),
        LoopSide::Native => run_native(input),
        LoopSide::GuestMacs => run_component_guest_macs(input),
        LoopSide::HostMacs => {
            std::hint::black_box(body_macs(&input.wit_stacks, &input.wit_delivery));
        }
        LoopSide::Version => {
            std::hint::black_box(runtime().version().expect("component trapped"));
        }
    };
    for _ in 0..LOOP_REPEATS {
        let started = Instant::now();
        for _ in 0..count {
            once();
        }
        let each = started.elapsed().as_secs_f64() / count as f64;
        println!("{name} {side_name}: {} per evaluation", human(each));
    }
}

/// The inputs of the cost curve: a signed GitHub push grown to each of
/// [`CURVE_SIZES`].
fn curve_inputs() -> Vec<Input> {
    CURVE_SIZES
        .iter()
        .map(|&size| {
            let (h, b) = grown_github_push(size);
            let hello = StackSpec {
                name: "hello",
                repository: Some("Codertocat/Hello-World"),
                branch: Some("master"),
                image: None,
                secret: true,
            };
            input(&format!("github-push-{size}"), &[hello], h, b)
        })
        .collect()
}

/// Says what is wrong with the loop's settings (or the component file's),
/// and exits with [`USAGE_EXIT_STATUS`].
fn exit_usage(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(USAGE_EXIT_STATUS)
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    let fixtures = fixture_inputs();
    match std::env::var(LOOP_VAR) {
        Ok(spec) => {
            let mut inputs = fixtures;
            inputs.extend(curve_inputs());
            run_loop(&spec, &inputs);
            return;
        }
        Err(std::env::VarError::NotUnicode(_)) => exit_usage(&format!("{LOOP_VAR} is not UTF-8")),
        Err(std::env::VarError::NotPresent) => {}
    }
    let curve = curve_inputs();
    bench_fixtures(&mut c, &fixtures);
    bench_curve(&mut c, &curve);
    c.final_summary();
    if benching {
        side_by_side(&fixtures);
        side_by_side(&curve);
    }
}
