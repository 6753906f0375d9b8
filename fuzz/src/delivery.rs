//! The `delivery` fuzz target's input format and checks. A kept crash
//! input is replayed through these same checks by `tests/fuzz_regressions.rs`
//! (`tests/main.rs` includes this file once the target has one).
//!
//! Input format (text up to the first empty line, then the raw body):
//!
//! ```text
//! METHOD SELECTOR [QUERY]
//! Header-Name: value
//! ...
//!
//! BODY
//! ```
//!
//! `SELECTOR` is `*` (every stack without services) or the name of one
//! stack of [`stacks`]. In header values, `{sha256}` is replaced by the
//! HMAC-SHA256 hex of the raw body under [`SECRET`], `{sha256-json}` by the
//! same over the form's `payload` field (or the raw body), `{sha1}` by the
//! HMAC-SHA1 hex of the raw body, and `{secret}` by [`SECRET`].

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use redeploy_plugin::error::PluginError;
use redeploy_plugin::evaluate::{evaluate, Context, Delivery, HttpRequest};
use redeploy_plugin::json_api::evaluate_json;
use redeploy_plugin::model::{
    GithubDeployments, Headers, ManualPolicy, PingAction, Provider, Service, Stack,
};
use redeploy_plugin::outcome::{Outcome, SignatureScheme};
use redeploy_plugin::report::outcome_json;
use serde_json::{json, Value};

/// The webhook secret of the signed evaluation.
pub const SECRET: &str = "fuzz-secret";

/// A rotated-out secret listed before [`SECRET`], so rotation is exercised.
pub const OLD_SECRET: &str = "old-fuzz-secret";

/// One fuzz input, parsed.
#[derive(Debug)]
pub struct FuzzDelivery {
    /// The HTTP method.
    pub method: String,
    /// `*` or a stack name.
    pub selector: String,
    /// The raw query.
    pub query: String,
    /// Header names and values, placeholders not yet replaced.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl FuzzDelivery {
    /// Parses the input format; `None` when there is no first line.
    pub fn parse(data: &[u8]) -> Option<FuzzDelivery> {
        let head_end = find(data, b"\n\n");
        let (head, body) = match head_end {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (data, &[][..]),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines = head.split('\n');
        let mut first = lines.next()?.splitn(3, ' ');
        let method = first.next()?.to_string();
        let selector = first.next().unwrap_or("*").to_string();
        let query = first.next().unwrap_or("").to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(FuzzDelivery {
            method,
            selector,
            query,
            headers,
            body: body.to_vec(),
        })
    }

    /// The headers with the placeholders replaced.
    fn signed_headers(&self) -> Vec<(String, String)> {
        let payload = form_payload(&self.body).unwrap_or_else(|| self.body.clone());
        self.headers
            .iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                if v.contains('{') {
                    v = v
                        .replace("{sha256-json}", &hmac_sha256(&payload))
                        .replace("{sha256}", &hmac_sha256(&self.body))
                        .replace("{sha1}", &hmac_sha1(&self.body))
                        .replace("{secret}", SECRET);
                }
                (k.clone(), v)
            })
            .collect()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn form_payload(body: &[u8]) -> Option<Vec<u8>> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned().into_bytes())
}

fn hmac_sha256(data: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(data);
    hex_string(&mac.finalize().into_bytes())
}

fn hmac_sha1(data: &[u8]) -> String {
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(data);
    hex_string(&mac.finalize().into_bytes())
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Repositories of every provider's fixtures (from the golden cases), each
/// followed by one stack on every branch and tag.
const REPOSITORIES: &[&str] = &[
    "6543/oxiduct",
    "6543/test_ci_tmp",
    "Codertocat/Hello-World",
    "Codertocat/hello-world-npm",
    "DEV/deployment-automation",
    "Fabrikam-Fiber-Git/Fabrikam-Fiber-Git",
    "Fabrikam/Fabrikam",
    "ISCLOUD/transamerica.cloud.individual.tftest",
    "Octocoders/Hello-World",
    "PENGINE/product-engine",
    "PRJ/my-repo",
    "TSG/nova-ui",
    "Test-CI/multi-line-secrets",
    "anbraten/demo",
    "anbratens-test/ci",
    "automationtestharness/testrepo",
    "baxterthehacker/public-repo",
    "bradrydzewski/drone-test-go",
    "brydzewski/foo",
    "gitlab-org/gitlab-test",
    "gitlab-org/hello-world",
    "gogits/hello-world",
    "gordon/hello-world",
    "group1/group2/group3/grp2repo",
    "https://github.com/CODERTOCAT/Hello-World",
    "git@github.com:codertocat/hello-world.git",
    "jcitizen/my-repo",
    "kit101/drone-yml-test",
    "kmpySmUISimoRrJL6NL73w/harness-core",
    "kmpySmUISimoRrJL6NL73w/myOrg/myProject/aba",
    "kolaszek/repository-name",
    "martinherren1984/publictestrepo",
    "meisam/woodpecktester",
    "octo-org/octo-repo",
    "octocat/Hello-World",
    "shivamnegi94/testrepo",
    "test/woodpecker",
    "vcalasansh/harness-ngtriggers-test",
    "vpCkHKsDSxK9_KYfjCTMKA/default/Repo_With_PR_checks/abhinav-git-sync",
    "woodpecker-ci/woodpecker",
];

/// Images of the registry fixtures.
const IMAGES: &[&str] = &[
    "svendowideit/testhook",
    "ghcr.io/Codertocat/hello-world",
    "ghcr.io/codertocat/hello-world-npm",
    "quay.io/mynamespace/repository",
    "myregistry.azurecr.io/hello-world",
    "hub.harbor.com/test-webhook/debian",
];

/// The fixed stacks, in `evaluate-json`'s format: one per fixture
/// repository and image, and a few that exercise the other rules (paths,
/// skip markers, ping, GitHub deployments, services and profiles).
pub fn stacks() -> Vec<Value> {
    let mut stacks = Vec::new();
    for (i, repo) in REPOSITORIES.iter().enumerate() {
        stacks.push(
            json!({"name": format!("repo-{i}"), "repository": repo, "branch": "**", "tags": "**"}),
        );
    }
    for (i, image) in IMAGES.iter().enumerate() {
        stacks.push(json!({"name": format!("image-{i}"), "image": image}));
    }
    stacks.push(json!({
        "name": "main-paths", "repository": "Codertocat/Hello-World", "branch": "ma*",
        "paths": ["src/**", "*.md"], "skip-markers": ["[skip deploy]"],
    }));
    stacks.push(json!({
        "name": "ping-ack", "repository": "octocat/Hello-World", "branch": "master",
        "tags": "v*", "ping": "acknowledge",
    }));
    for (name, wait) in [("github-cd-event", true), ("github-cd-push", false)] {
        stacks.push(json!({
            "name": name, "repository": "Codertocat/Hello-World", "branch": "**",
            "github": {"repository": "Codertocat/Hello-World", "environment": "production",
                       "required-contexts": ["ci"], "wait-for-event": wait},
        }));
    }
    stacks.push(json!({
        "name": "services", "profiles": ["fast", "slow"],
        "services": [
            {"name": "web", "repository": "Codertocat/Hello-World", "branch": "**"},
            {"name": "worker", "image": "svendowideit/testhook"},
            {"name": "db", "repository": "gogits/hello-world", "branch": "master", "tags": "v*"},
        ],
    }));
    stacks
}

/// The stacks the selector picks: the named one, else every stack without
/// services (a `services=` modifier is an error for a stack without them).
pub fn select(all: &[Value], selector: &str) -> Vec<Value> {
    let named: Vec<Value> = all
        .iter()
        .filter(|s| s["name"] == selector)
        .cloned()
        .collect();
    if !named.is_empty() {
        return named;
    }
    all.iter()
        .filter(|s| s.get("services").is_none())
        .cloned()
        .collect()
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn texts(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn service(v: &Value, name: String) -> Service {
    Service {
        name,
        repository: text(v, "repository"),
        branch: text(v, "branch"),
        tags: text(v, "tags"),
        image: text(v, "image"),
    }
}

/// A stack in `evaluate-json`'s format as the plugin's native type.
pub fn native_stack(v: &Value, secrets: &[String]) -> Stack {
    let name = text(v, "name").unwrap_or_default();
    let services = match v.get("services").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .map(|s| service(s, text(s, "name").unwrap_or_default()))
            .collect(),
        None => vec![service(v, name.clone())],
    };
    Stack {
        services,
        secrets: secrets.to_vec(),
        ping: match v.get("ping").and_then(Value::as_str) {
            Some("acknowledge") => PingAction::Acknowledge,
            _ => PingAction::Deploy,
        },
        paths: texts(v, "paths"),
        skip_markers: texts(v, "skip-markers"),
        profiles: texts(v, "profiles"),
        unselectable_profiles: texts(v, "unselectable-profiles"),
        unselectable_services: texts(v, "unselectable-services"),
        refuse_query_services: v["refuse-query-services"].as_bool().unwrap_or(false),
        manual: ManualPolicy::default(),
        github: v.get("github").map(|g| GithubDeployments {
            repository: text(g, "repository").unwrap_or_default(),
            environment: text(g, "environment").unwrap_or_default(),
            auto_merge: false,
            required_contexts: texts(g, "required-contexts"),
            transient_environment: false,
            production_environment: false,
            wait_for_event: g["wait-for-event"].as_bool().unwrap_or(true),
            accept_foreign_deployments: false,
        }),
        name,
    }
}

/// Checks the invariants of one outcome against the stacks it was for.
fn check_outcome(outcome: &Outcome, stacks: &[Stack]) {
    // One decision per stack, in stack order; or one per ref (image) its
    // services take of a push moving several: never more than it has
    // services, no service in two of them, each deploy of another ref.
    let mut of_stack = Vec::with_capacity(outcome.decisions.len());
    let mut at = 0;
    for stack in stacks {
        let first = at;
        while outcome
            .decisions
            .get(at)
            .is_some_and(|d| d.stack == stack.name)
        {
            of_stack.push(stack);
            at += 1;
        }
        let n = at - first;
        assert!(n >= 1, "a decision for every stack, in stack order");
        if n == 1 {
            continue;
        }
        assert!(
            n <= stack.services.len(),
            "at most one decision per service"
        );
        // What a host keys each one's deploy by: the delivery moved several
        // refs (images), and each deploy is of another ref alone (image).
        assert!(
            outcome.pushes.len() > 1 || outcome.images.len() > 1,
            "several decisions only for a delivery of several refs or images"
        );
        let mut services: Vec<&str> = outcome.decisions[first..at]
            .iter()
            .flat_map(|d| d.services.iter().map(String::as_str))
            .collect();
        let named = services.len();
        services.sort_unstable();
        services.dedup();
        assert_eq!(services.len(), named, "a service in one decision only");
        let mut lanes: Vec<Option<&str>> = outcome.decisions[first..at]
            .iter()
            .filter_map(|d| d.deploy())
            .map(|e| e.git_ref.as_deref().or(e.image.as_deref()))
            .collect();
        let deploys = lanes.len();
        lanes.sort_unstable();
        lanes.dedup();
        assert_eq!(
            lanes.len(),
            deploys,
            "one deploy per ref or image of a stack"
        );
    }
    assert_eq!(
        at,
        outcome.decisions.len(),
        "decisions only for the stacks given"
    );
    for (decision, stack) in outcome.decisions.iter().zip(of_stack) {
        for s in &decision.services {
            assert!(
                stack.services.iter().any(|x| &x.name == s),
                "decision of {} names unknown service {s}",
                stack.name
            );
        }
        if let redeploy_plugin::outcome::Action::RequestDeployment(e) = &decision.action {
            assert!(
                e.github_deployment_request.is_some()
                    && stack.github.as_ref().is_some_and(|g| g.wait_for_event),
                "only a stack waiting for GitHub's deployment event asks for one"
            );
        }
        if let Some(deploy) = decision.deploy() {
            assert_eq!(deploy.stack, stack.name, "a deploy names its stack");
            assert!(!deploy.services.is_empty(), "a deploy deploys some service");
            for s in &deploy.services {
                assert!(
                    stack.services.iter().any(|x| &x.name == s),
                    "deploy of {} names unknown service {s}",
                    stack.name
                );
            }
            assert_eq!(deploy.provider, outcome.provider);
            if let Some(profile) = &deploy.profile {
                assert!(
                    stack.profiles.contains(profile),
                    "unknown profile {profile}"
                );
            }
        }
    }
}

fn is_signature_error(e: &PluginError) -> bool {
    matches!(
        e,
        PluginError::MissingSignature(_) | PluginError::BadSignature(_)
    )
}

/// Evaluates one fuzz input without and with secrets and checks the
/// invariants (panics on a violation, as the fuzzer wants).
pub fn check_delivery(d: &FuzzDelivery) {
    let chosen = select(&stacks(), &d.selector);
    let headers = d.signed_headers();
    let request = |secrets: &[String]| {
        let stacks: Vec<Stack> = chosen.iter().map(|s| native_stack(s, secrets)).collect();
        let delivery = Delivery::Http(HttpRequest {
            method: d.method.clone(),
            query: d.query.clone(),
            headers: Headers::new(headers.iter().map(|(k, v)| (k, v))),
            body: d.body.clone(),
        });
        (stacks, delivery)
    };

    // Without secrets: every payload reaches its parser.
    let (plain_stacks, delivery) = request(&[]);
    let plain = evaluate(&plain_stacks, &delivery, &Context::default());
    if let Ok(outcome) = &plain {
        check_outcome(outcome, &plain_stacks);
        assert_eq!(outcome.signature, SignatureScheme::NotRequired);
    }
    if !d.method.eq_ignore_ascii_case("POST") {
        assert!(matches!(plain, Err(PluginError::UnsupportedMethod(_))));
    }

    // evaluate_json agrees, when the body is text (its body is a string).
    if let Ok(body) = std::str::from_utf8(&d.body) {
        let input = json!({
            "stacks": chosen,
            "delivery": {"http": {
                "method": d.method, "query": d.query,
                "headers": headers, "body": body,
            }},
        });
        let via_json = evaluate_json(&input.to_string());
        match (&plain, via_json) {
            (Ok(outcome), Ok(text)) => {
                let from_json: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(outcome_json(outcome), from_json, "evaluate_json disagrees");
            }
            (Err(a), Err(b)) => assert_eq!(a, &b, "evaluate_json fails differently"),
            (a, b) => panic!("evaluate and evaluate_json disagree: {a:?} vs {b:?}"),
        }
    }

    // With secrets: only the signature may change the answer.
    let secrets = [OLD_SECRET.to_string(), SECRET.to_string()];
    let (signed_stacks, delivery) = request(&secrets);
    match (
        evaluate(&signed_stacks, &delivery, &Context::default()),
        &plain,
    ) {
        (Ok(signed), Ok(plain)) => {
            check_outcome(&signed, &signed_stacks);
            // A manual trigger (an empty body) names no commit: the stacks'
            // default `manual = "allow"` takes the hook URL alone, secrets
            // or not (issue 12, point 13). Anything else must be signed.
            if signed.provider != Provider::Manual {
                assert_ne!(signed.signature, SignatureScheme::NotRequired);
            }
            assert_eq!(
                signed.decisions, plain.decisions,
                "secrets changed a decision"
            );
            assert_eq!(signed.pushes, plain.pushes);
            assert_eq!(signed.images, plain.images);
        }
        (Ok(signed), Err(e)) => panic!("accepted only with secrets: {signed:?} / {e:?}"),
        (Err(e), _) if is_signature_error(&e) => {}
        (Err(e), Err(p)) => assert_eq!(&e, p, "secrets changed the error"),
        (Err(e), Ok(_)) => panic!("secrets caused a non-signature error: {e:?}"),
    }
}
