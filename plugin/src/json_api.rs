//! `evaluate-json`: the evaluator with JSON text in and out, for runtimes
//! where building typed WIT arguments is awkward (the wasmtime CLI).

use serde::Deserialize;

use crate::error::PluginError;
use crate::evaluate::{evaluate, stack_services, Delivery, HttpRequest, RefUpdate};
use crate::model::{GithubDeployments, Headers, PingAction, Service, Stack};
use crate::report::outcome_json;

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Input {
    stacks: Vec<StackIn>,
    delivery: DeliveryIn,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ServiceIn {
    #[serde(default)]
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
    required_contexts: Vec<String>,
    #[serde(default)]
    transient_environment: bool,
    #[serde(default)]
    production_environment: bool,
    #[serde(default = "yes")]
    wait_for_event: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum PingIn {
    Deploy,
    Acknowledge,
}

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
    ping: Option<PingIn>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    skip_markers: Vec<String>,
    #[serde(default)]
    profiles: Vec<String>,
    github: Option<GithubIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct HttpIn {
    #[serde(default = "post")]
    method: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

fn post() -> String {
    "POST".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct RefUpdateIn {
    old: String,
    new: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum DeliveryIn {
    Http(HttpIn),
    PostReceive {
        repository: String,
        updates: Vec<RefUpdateIn>,
        #[serde(default)]
        pusher: Option<String>,
        #[serde(default)]
        query: String,
    },
    Manual {
        stack: String,
        #[serde(default)]
        query: String,
    },
}

impl StackIn {
    fn into_stack(self) -> Result<Stack, PluginError> {
        let top = Service {
            name: String::new(),
            repository: self.repository,
            branch: self.branch,
            tags: self.tags,
            image: self.image,
        };
        let services = self
            .services
            .into_iter()
            .map(|s| Service {
                name: s.name,
                repository: s.repository,
                branch: s.branch,
                tags: s.tags,
                image: s.image,
            })
            .collect();
        Ok(Stack {
            services: stack_services(&self.name, top, services)?,
            name: self.name,
            secrets: self.secrets,
            ping: match self.ping {
                Some(PingIn::Acknowledge) => PingAction::Acknowledge,
                _ => PingAction::Deploy,
            },
            paths: self.paths,
            skip_markers: self.skip_markers,
            profiles: self.profiles,
            github: self.github.map(|g| GithubDeployments {
                repository: g.repository,
                environment: g.environment,
                auto_merge: g.auto_merge,
                required_contexts: g.required_contexts,
                transient_environment: g.transient_environment,
                production_environment: g.production_environment,
                wait_for_event: g.wait_for_event,
            }),
        })
    }
}

/// Evaluates a JSON-encoded `{"stacks": [...], "delivery": {...}}` and
/// returns the outcome JSON (the `redeploy check` document).
pub fn evaluate_json(input: &str) -> Result<String, PluginError> {
    let input: Input = serde_json::from_str(input)
        .map_err(|e| PluginError::BadRequest(format!("evaluate-json input: {e}")))?;
    let stacks = input
        .stacks
        .into_iter()
        .map(StackIn::into_stack)
        .collect::<Result<Vec<_>, _>>()?;
    let delivery = match input.delivery {
        DeliveryIn::Http(h) => Delivery::Http(HttpRequest {
            method: h.method,
            path: h.path,
            query: h.query,
            headers: Headers::new(h.headers),
            body: h.body.into_bytes(),
        }),
        DeliveryIn::PostReceive {
            repository,
            updates,
            pusher,
            query,
        } => Delivery::PostReceive {
            repository,
            updates: updates
                .into_iter()
                .map(|u| RefUpdate {
                    old: u.old,
                    new: u.new,
                    name: u.name,
                })
                .collect(),
            pusher,
            query,
        },
        DeliveryIn::Manual { stack, query } => Delivery::Manual { stack, query },
    };
    let outcome = evaluate(&stacks, &delivery)?;
    Ok(outcome_json(&outcome).to_string())
}
