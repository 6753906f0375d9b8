//! The WIT bindings: converts WIT types to domain types and back.

use crate::{error, evaluate, forwarding, github, json_api, model, outcome, report, signature};

mod bindings {
    wit_bindgen::generate!({ world: "redeployer", path: "../wit" });
}

use bindings::exports::redeploy::plugin::types as wit;
use bindings::exports::redeploy::plugin::{
    evaluator, forwarding as forwarding_wit, github as github_wit, json,
};

struct Component;

impl From<error::PluginError> for wit::Error {
    fn from(e: error::PluginError) -> Self {
        use error::PluginError as E;
        match e {
            E::UnknownProvider(m) => wit::Error::UnknownProvider(m),
            E::MalformedPayload(m) => wit::Error::MalformedPayload(m),
            E::MissingSignature(m) => wit::Error::MissingSignature(m),
            E::BadSignature(m) => wit::Error::BadSignature(m),
            E::UnsupportedMethod(m) => wit::Error::UnsupportedMethod(m),
            E::BadRequest(m) => wit::Error::BadRequest(m),
            E::InvalidStack(m) => wit::Error::InvalidStack(m),
            E::StaleEvent(m) => wit::Error::StaleEvent(m),
            E::Refused(m) => wit::Error::Refused(m),
            E::StaleSignature(m) => wit::Error::StaleSignature(m),
        }
    }
}

fn service_from_wit(s: wit::Service) -> model::Service {
    model::Service {
        name: s.name,
        repository: s.repository,
        branch: s.branch,
        tags: s.tags,
        image: s.image,
    }
}

fn stack_from_wit(s: wit::Stack) -> Result<model::Stack, error::PluginError> {
    let top = model::Service {
        name: String::new(),
        repository: s.repository,
        branch: s.branch,
        tags: s.tags,
        image: s.image,
    };
    let services = s.services.into_iter().map(service_from_wit).collect();
    Ok(model::Stack {
        services: evaluate::stack_services(&s.name, top, services)?,
        name: s.name,
        secrets: s.secrets,
        ping: match s.ping {
            wit::PingAction::Deploy => model::PingAction::Deploy,
            wit::PingAction::Acknowledge => model::PingAction::Acknowledge,
        },
        paths: s.paths,
        skip_markers: s.skip_markers,
        profiles: s.profiles,
        unselectable_profiles: s.unselectable_profiles,
        unselectable_services: s.unselectable_services,
        refuse_query_services: s.refuse_query_services,
        manual: match s.manual {
            wit::ManualPolicy::Allow => model::ManualPolicy::Allow,
            wit::ManualPolicy::Signed => model::ManualPolicy::Signed,
            wit::ManualPolicy::Refuse => model::ManualPolicy::Refuse,
        },
        github: s.github.map(|g| model::GithubDeployments {
            repository: g.repository,
            environment: g.environment,
            auto_merge: g.auto_merge,
            accept_foreign_deployments: g.accept_foreign_deployments,
            required_contexts: g.required_contexts,
            transient_environment: g.transient_environment,
            production_environment: g.production_environment,
            wait_for_event: g.wait_for_event,
        }),
    })
}

fn request_from_wit(r: wit::HttpRequest) -> evaluate::HttpRequest {
    evaluate::HttpRequest {
        method: r.method,
        query: r.query,
        headers: model::Headers::new(r.headers),
        body: r.body,
    }
}

fn updates_from_wit(updates: Vec<wit::RefUpdate>) -> Vec<evaluate::RefUpdate> {
    updates
        .into_iter()
        .map(|u| evaluate::RefUpdate {
            old: u.old,
            new: u.new,
            name: u.name,
        })
        .collect()
}

fn delivery_from_wit(d: wit::Delivery) -> evaluate::Delivery {
    match d {
        wit::Delivery::Http(r) => evaluate::Delivery::Http(request_from_wit(r)),
        wit::Delivery::PostReceive(p) => evaluate::Delivery::PostReceive {
            repository: p.repository,
            updates: updates_from_wit(p.updates),
            pusher: p.pusher,
            query: p.query,
        },
        wit::Delivery::ForwardedPostReceive(r) => {
            evaluate::Delivery::ForwardedPostReceive(request_from_wit(r))
        }
        wit::Delivery::Manual(m) => evaluate::Delivery::Manual {
            stack: m.stack,
            query: m.query,
        },
        wit::Delivery::Poll(p) => evaluate::Delivery::Poll {
            stack: p.stack,
            change: match p.change {
                wit::PollChange::Git(g) => evaluate::PollChange::Git(evaluate::GitPoll {
                    repository: g.repository,
                    update: evaluate::RefUpdate {
                        old: g.update.old,
                        new: g.update.new,
                        name: g.update.name,
                    },
                }),
                wit::PollChange::Image(i) => evaluate::PollChange::Image(evaluate::ImagePoll {
                    repository: i.repository,
                    tag: i.tag,
                    digest: i.digest,
                }),
            },
            query: p.query,
        },
    }
}

fn signature_to_wit(s: outcome::SignatureScheme) -> wit::SignatureScheme {
    use outcome::SignatureScheme as S;
    match s {
        S::NotRequired => wit::SignatureScheme::NotRequired,
        S::GithubSha256 => wit::SignatureScheme::GithubSha256,
        S::GithubSha1 => wit::SignatureScheme::GithubSha1,
        S::GiteaSha256 => wit::SignatureScheme::GiteaSha256,
        S::PlainToken => wit::SignatureScheme::PlainToken,
        S::BitbucketSha256 => wit::SignatureScheme::BitbucketSha256,
        S::RedeploySha256 => wit::SignatureScheme::RedeploySha256,
    }
}

fn provider_to_wit(p: model::Provider) -> wit::Provider {
    use model::Provider as P;
    match p {
        P::Github => wit::Provider::Github,
        P::Gitlab => wit::Provider::Gitlab,
        P::Gitea => wit::Provider::Gitea,
        P::Forgejo => wit::Provider::Forgejo,
        P::Gogs => wit::Provider::Gogs,
        P::Gitee => wit::Provider::Gitee,
        P::Harness => wit::Provider::Harness,
        P::BitbucketCloud => wit::Provider::BitbucketCloud,
        P::BitbucketServer => wit::Provider::BitbucketServer,
        P::BitbucketLegacy => wit::Provider::BitbucketLegacy,
        P::AzureDevops => wit::Provider::AzureDevops,
        P::DockerHub => wit::Provider::DockerHub,
        P::Harbor => wit::Provider::Harbor,
        P::Quay => wit::Provider::Quay,
        P::Ghcr => wit::Provider::Ghcr,
        P::Acr => wit::Provider::Acr,
        P::Distribution => wit::Provider::Distribution,
        P::Manual => wit::Provider::Manual,
        P::PostReceive => wit::Provider::PostReceive,
        P::Poll => wit::Provider::Poll,
    }
}

fn skip_to_wit(c: outcome::SkipCode) -> wit::SkipCode {
    use outcome::SkipCode as C;
    match c {
        C::NotADeployEvent => wit::SkipCode::NotADeployEvent,
        C::NotFollowed => wit::SkipCode::NotFollowed,
        C::NoRef => wit::SkipCode::NoRef,
        C::OtherRepository => wit::SkipCode::OtherRepository,
        C::RefDeleted => wit::SkipCode::RefDeleted,
        C::NotABranchOrTag => wit::SkipCode::NotABranchOrTag,
        C::BranchMismatch => wit::SkipCode::BranchMismatch,
        C::TagMismatch => wit::SkipCode::TagMismatch,
        C::SkipMarker => wit::SkipCode::SkipMarker,
        C::PathsUnmatched => wit::SkipCode::PathsUnmatched,
        C::ImageMismatch => wit::SkipCode::ImageMismatch,
        C::ImageUntagged => wit::SkipCode::ImageUntagged,
        C::PingAcknowledged => wit::SkipCode::PingAcknowledged,
        C::OtherStack => wit::SkipCode::OtherStack,
        C::OtherEnvironment => wit::SkipCode::OtherEnvironment,
        C::OtherTask => wit::SkipCode::OtherTask,
        C::ForeignDeployment => wit::SkipCode::ForeignDeployment,
        C::DeployedOnPush => wit::SkipCode::DeployedOnPush,
    }
}

fn push_to_wit(p: model::Push) -> wit::Push {
    let (kind, short) = p.ref_kind();
    let (branch, tag) = match kind {
        model::RefKind::Branch => (Some(short.to_string()), None),
        model::RefKind::Tag => (None, Some(short.to_string())),
        model::RefKind::Other => (None, None),
    };
    wit::Push {
        repository: wit::Repository {
            full_name: p.repository.full_name,
            urls: p.repository.urls,
        },
        ref_: p.git_ref,
        branch,
        tag,
        before: p.before,
        after: p.after,
        created: p.created,
        deleted: p.deleted,
        forced: p.forced,
        pusher: p.pusher,
        head_message: p.head_message,
        changed_files: match p.changed_files {
            model::ChangedFiles::Complete(f) => wit::ChangedFiles::Complete(f),
            model::ChangedFiles::Unknown => wit::ChangedFiles::Unknown,
        },
    }
}

fn image_to_wit(i: model::ImagePush) -> wit::ImagePush {
    wit::ImagePush {
        registry: i.registry,
        repository: i.repository,
        tag: i.tag,
        digest: i.digest,
        pusher: i.pusher,
        callback_url: i.callback_url,
    }
}

fn deploy_to_wit(e: outcome::DeployEvent) -> wit::DeployEvent {
    let document = report::deploy_document(&e);
    wit::DeployEvent {
        stack: e.stack,
        services: e.services,
        profile: e.profile,
        ref_: e.git_ref,
        branch: e.branch,
        tag: e.tag,
        sha: e.sha,
        repository: e.repository,
        image: e.image,
        provider: provider_to_wit(e.provider),
        delivery: e.delivery,
        reason: e.reason,
        github_deployment_request: e.github_deployment_request,
        github_deployment_id: e.github_deployment_id,
        callback_url: e.callback_url,
        document,
    }
}

fn outcome_to_wit(o: outcome::Outcome) -> wit::Outcome {
    wit::Outcome {
        provider: provider_to_wit(o.provider),
        event: o.event,
        delivery: o.delivery,
        signature: signature_to_wit(o.signature),
        sent_at_ms: o.sent_at_ms,
        pushes: o.pushes.into_iter().map(push_to_wit).collect(),
        images: o.images.into_iter().map(image_to_wit).collect(),
        decisions: o
            .decisions
            .into_iter()
            .map(|d| wit::Decision {
                stack: d.stack,
                action: match d.action {
                    outcome::Action::Deploy(e) => wit::Action::Deploy(deploy_to_wit(e)),
                    outcome::Action::RequestDeployment(e) => {
                        wit::Action::RequestDeployment(deploy_to_wit(e))
                    }
                    outcome::Action::Skip(code) => wit::Action::Skip(skip_to_wit(code)),
                },
                services: d.services,
                reason: d.reason,
            })
            .collect(),
    }
}

/// The stacks and delivery as the evaluator's domain types.
fn inputs_from_wit(
    stacks: Vec<wit::Stack>,
    delivery: wit::Delivery,
    context: wit::EvaluationContext,
) -> Result<(Vec<model::Stack>, evaluate::Delivery, evaluate::Context), error::PluginError> {
    let stacks = stacks
        .into_iter()
        .map(stack_from_wit)
        .collect::<Result<Vec<_>, _>>()?;
    let context = evaluate::Context {
        now_ms: context.now_ms,
        deployment_key: context.deployment_key,
        max_event_age_ms: context.max_event_age_ms,
        body_macs: context
            .body_macs
            .unwrap_or_default()
            .into_iter()
            .map(|m| signature::BodyMac {
                algorithm: match m.algorithm {
                    wit::MacAlgorithm::HmacSha256 => signature::MacAlgorithm::HmacSha256,
                    wit::MacAlgorithm::HmacSha1 => signature::MacAlgorithm::HmacSha1,
                },
                secret: m.secret,
                mac: m.mac,
            })
            .collect(),
    };
    Ok((stacks, delivery_from_wit(delivery), context))
}

impl evaluator::Guest for Component {
    fn evaluate(
        stacks: Vec<wit::Stack>,
        delivery: wit::Delivery,
        context: wit::EvaluationContext,
    ) -> Result<wit::Outcome, wit::Error> {
        #[cfg(feature = "chaos")]
        chaos(&delivery);
        let (stacks, delivery, context) = inputs_from_wit(stacks, delivery, context)?;
        Ok(outcome_to_wit(evaluate::evaluate(
            &stacks, &delivery, &context,
        )?))
    }

    fn validate_stacks(stacks: Vec<wit::Stack>) -> Result<(), wit::Error> {
        let stacks = stacks
            .into_iter()
            .map(stack_from_wit)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(evaluate::validate_stacks(&stacks)?)
    }

    fn version() -> String {
        env!("CARGO_PKG_VERSION").to_string()
    }
}

impl json::Guest for Component {
    fn evaluate_json(input: String) -> Result<String, wit::Error> {
        Ok(json_api::evaluate_json(&input)?)
    }

    fn report(
        stacks: Vec<wit::Stack>,
        delivery: wit::Delivery,
        context: wit::EvaluationContext,
    ) -> Result<String, wit::Error> {
        let (stacks, delivery, context) = inputs_from_wit(stacks, delivery, context)?;
        let outcome = evaluate::evaluate(&stacks, &delivery, &context)?;
        Ok(report::outcome_json(&outcome).to_string())
    }
}

impl github_wit::Guest for Component {
    fn deployment_status(input: wit::StatusInput) -> String {
        use outcome::DeployPhase as P;
        let phase = match input.phase {
            wit::DeployPhase::Queued => P::Queued,
            wit::DeployPhase::Started => P::Started,
            wit::DeployPhase::Succeeded => P::Succeeded,
            wit::DeployPhase::Failed => P::Failed,
            wit::DeployPhase::Cancelled => P::Cancelled,
            wit::DeployPhase::Interrupted => P::Interrupted,
        };
        github::deployment_status(&outcome::StatusInput {
            phase,
            environment: input.environment,
            log_url: input.log_url,
            environment_url: input.environment_url,
            detail: input.detail,
        })
    }
}

impl forwarding_wit::Guest for Component {
    fn forward_push(
        stack: String,
        push: wit::PostReceive,
        timestamp: u64,
        secret: Option<String>,
    ) -> wit::HttpRequest {
        let push = forwarding::ForwardedPush {
            repository: push.repository,
            updates: updates_from_wit(push.updates),
            pusher: push.pusher,
        };
        let (headers, body) = forwarding::forward_push(&stack, &push, timestamp, secret.as_deref());
        wit::HttpRequest {
            method: "POST".into(),
            query: String::new(),
            headers,
            body,
        }
    }

    fn sign_manual_trigger(stack: String, timestamp: u64, secret: String) -> String {
        crate::signature::sign_manual(&secret, &stack, &timestamp.to_string())
    }
}

bindings::export!(Component with_types_in bindings);

/// The `chaos` feature's misbehaviour (test builds only).
#[cfg(feature = "chaos")]
fn chaos(delivery: &wit::Delivery) {
    let wit::Delivery::Http(r) = delivery else {
        return;
    };
    let Some((_, how)) = r
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-redeploy-chaos"))
    else {
        return;
    };
    match how.as_str() {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "panic" => panic!("chaos: deliberate panic"),
        // `spin:N`: busy for N iterations, then evaluate normally (holds an
        // instance for a while without trapping).
        spin if spin.starts_with("spin:") => {
            let n: u64 = spin[5..].parse().unwrap_or(0);
            let mut acc: u64 = 0;
            for i in 0..n {
                acc = std::hint::black_box(acc.wrapping_add(i));
            }
            std::hint::black_box(acc);
        }
        _ => {}
    }
}
