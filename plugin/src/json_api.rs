//! `evaluate-json`: the evaluator with JSON text in and out, for runtimes
//! where building typed WIT arguments is awkward (the wasmtime CLI).

use serde::Deserialize;

use crate::error::PluginError;
use crate::evaluate::{
    evaluate, stack_services, Context, Delivery, HttpRequest, PollChange, RefUpdate,
    DEFAULT_MAX_EVENT_AGE_MS,
};
use crate::model::{GithubDeployments, Headers, ManualPolicy, PingAction, Service, Stack};
use crate::report::outcome_json;
use crate::signature::{BodyMac, MacAlgorithm};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Input {
    stacks: Vec<StackIn>,
    delivery: DeliveryIn,
    #[serde(default)]
    context: ContextIn,
}

/// The WIT `evaluation-context`; every field optional.
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ContextIn {
    now_ms: Option<u64>,
    deployment_key: Option<String>,
    max_event_age_ms: Option<u64>,
    body_macs: Option<Vec<BodyMacIn>>,
}

/// The WIT `body-mac`, with the MAC in hex.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct BodyMacIn {
    algorithm: MacAlgorithmIn,
    secret: String,
    mac: String,
}

/// The WIT `mac-algorithm`.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum MacAlgorithmIn {
    HmacSha256,
    HmacSha1,
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
    services: Vec<Service>,
    #[serde(default)]
    secrets: Vec<String>,
    #[serde(default)]
    ping: PingAction,
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
    #[serde(default)]
    manual: ManualPolicy,
    github: Option<GithubDeployments>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct HttpIn {
    #[serde(default = "post")]
    method: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    body: String,
}

impl HttpIn {
    fn into_request(self) -> HttpRequest {
        HttpRequest {
            method: self.method,
            query: self.query,
            headers: Headers::new(self.headers),
            body: self.body.into_bytes(),
        }
    }
}

fn post() -> String {
    "POST".into()
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
enum DeliveryIn {
    Http(HttpIn),
    PostReceive {
        repository: String,
        updates: Vec<RefUpdate>,
        #[serde(default)]
        pusher: Option<String>,
        #[serde(default)]
        query: String,
    },
    ForwardedPostReceive(HttpIn),
    Manual {
        stack: String,
        #[serde(default)]
        query: String,
    },
    /// `{"poll": {"stack": "api", "change": {"git": {"repository": ...,
    /// "update": {"old": ..., "new": ..., "name": ...}}} | {"image":
    /// {"repository": ..., "tag": ..., "digest": ...}}, "query": ""}}`.
    Poll {
        stack: String,
        change: PollChange,
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
        Ok(Stack {
            services: stack_services(&self.name, top, self.services)?,
            name: self.name,
            secrets: self.secrets,
            ping: self.ping,
            paths: self.paths,
            skip_markers: self.skip_markers,
            profiles: self.profiles,
            unselectable_profiles: self.unselectable_profiles,
            unselectable_services: self.unselectable_services,
            refuse_query_services: self.refuse_query_services,
            manual: self.manual,
            github: self.github,
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
        DeliveryIn::Http(h) => Delivery::Http(h.into_request()),
        DeliveryIn::ForwardedPostReceive(h) => Delivery::ForwardedPostReceive(h.into_request()),
        DeliveryIn::PostReceive {
            repository,
            updates,
            pusher,
            query,
        } => Delivery::PostReceive {
            repository,
            updates,
            pusher,
            query,
        },
        DeliveryIn::Manual { stack, query } => Delivery::Manual { stack, query },
        DeliveryIn::Poll {
            stack,
            change,
            query,
        } => Delivery::Poll {
            stack,
            change,
            query,
        },
    };
    let ctx = Context {
        now_ms: input.context.now_ms,
        deployment_key: input.context.deployment_key,
        max_event_age_ms: input
            .context
            .max_event_age_ms
            .unwrap_or(DEFAULT_MAX_EVENT_AGE_MS),
        body_macs: input
            .context
            .body_macs
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                Ok(BodyMac {
                    algorithm: match m.algorithm {
                        MacAlgorithmIn::HmacSha256 => MacAlgorithm::HmacSha256,
                        MacAlgorithmIn::HmacSha1 => MacAlgorithm::HmacSha1,
                    },
                    secret: m.secret,
                    mac: hex::decode(&m.mac).map_err(|_| {
                        PluginError::BadRequest(
                            "context.body-macs: a mac is not hexadecimal".into(),
                        )
                    })?,
                })
            })
            .collect::<Result<_, PluginError>>()?,
    };
    let outcome = evaluate(&stacks, &delivery, &ctx)?;
    Ok(outcome_json(&outcome).to_string())
}
