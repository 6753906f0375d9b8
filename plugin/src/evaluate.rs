//! The evaluation pipeline: method → body decoding → provider detection →
//! signature → modifiers → normalization → one decision per stack.

use std::borrow::Cow;

use crate::error::PluginError;
use crate::github;
use crate::matching::{
    image_reference, path_matches, repository_matches, Glob, ImageKey, ImageMismatch, RepoKey,
};
use crate::model::{
    ref_kind, Deployment, Event, Headers, ImagePush, ManualPolicy, Normalized, PingAction,
    Provider, Push, RefKind, Repository, Service, Stack,
};
use crate::outcome::{Decision, DeployEvent, Outcome, SignatureScheme};
use crate::providers::{self, common::is_zero_sha, Detected};
use crate::signature;

/// The longest hook-URL query the plugin parses. Real modifiers are a few
/// dozen bytes; anything longer is a mistake or an attack.
pub const MAX_QUERY_BYTES: usize = 4096;

/// The most ref updates one post-receive delivery may carry. Git itself has
/// no limit, but a push of more refs than this is a mirror, not a deploy.
pub const MAX_POST_RECEIVE_UPDATES: usize = 10_000;

/// The default `max-event-age-ms`: ten minutes. Registries send their
/// webhooks within seconds of the push and retry for a few minutes; an event
/// older than this is a replay or hopelessly late.
pub const DEFAULT_MAX_EVENT_AGE_MS: u64 = 10 * 60 * 1000;

/// How far in the future a sender's event time may be: two minutes of clock
/// difference between the registry and this server. Further is refused, so a
/// made-up future time cannot keep a body fresh beyond the window.
pub const MAX_EVENT_CLOCK_SKEW_MS: u64 = 2 * 60 * 1000;

/// What the host knows when it evaluates a delivery (the WIT
/// `evaluation-context`): the plugin has no clock and no keys of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// The current Unix time in milliseconds, when known.
    pub now_ms: Option<u64>,
    /// The server's key for the GitHub deployments redeploy creates.
    pub deployment_key: Option<String>,
    /// The oldest sender event time accepted when `now_ms` is known.
    pub max_event_age_ms: u64,
}

impl Default for Context {
    /// No time, no key, the default maximum event age.
    fn default() -> Self {
        Context {
            now_ms: None,
            deployment_key: None,
            max_event_age_ms: DEFAULT_MAX_EVENT_AGE_MS,
        }
    }
}

/// An HTTP request to a hook URL.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// The method.
    pub method: String,
    /// The path (informational; the host already routed it).
    pub path: String,
    /// The raw query without `?`.
    pub query: String,
    /// The headers.
    pub headers: Headers,
    /// The raw body.
    pub body: Vec<u8>,
}

/// One post-receive input line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefUpdate {
    /// Old object id.
    pub old: String,
    /// New object id.
    pub new: String,
    /// Full ref name.
    pub name: String,
}

/// A delivery to evaluate.
#[derive(Clone, Debug)]
pub enum Delivery {
    /// A webhook request.
    Http(HttpRequest),
    /// git post-receive input.
    PostReceive {
        /// Repository path or mapped forge name.
        repository: String,
        /// The ref updates.
        updates: Vec<RefUpdate>,
        /// Who pushed.
        pusher: Option<String>,
        /// Modifiers.
        query: String,
    },
    /// A manual trigger of one stack.
    Manual {
        /// The stack.
        stack: String,
        /// Modifiers.
        query: String,
    },
}

/// Turns a stack's top-level `repository`/`branch`/`tags`/`image` into its
/// one service, or checks that a stack with `services` has no top-level source.
pub fn stack_services(
    name: &str,
    top: Service,
    services: Vec<Service>,
) -> Result<Vec<Service>, PluginError> {
    let has_top = top.repository.is_some()
        || top.branch.is_some()
        || top.tags.is_some()
        || top.image.is_some();
    match (has_top, services.is_empty()) {
        (true, false) => Err(PluginError::InvalidStack(format!(
            "stack \"{name}\": set repository/branch/image either at the top level or in services, not both"
        ))),
        (_, true) => Ok(vec![Service { name: name.to_string(), ..top }]),
        (false, false) => Ok(services),
    }
}

/// A service with its patterns compiled.
struct PreparedService<'s> {
    service: &'s Service,
    repository: Option<RepoKey>,
    branch: Option<Glob>,
    tags: Option<Glob>,
    image: Option<ImageKey>,
}

/// A stack with its patterns compiled and its modifiers applied.
struct PreparedStack<'s> {
    stack: &'s Stack,
    services: Vec<PreparedService<'s>>,
    paths: Vec<Glob>,
    profile: Option<String>,
    ctx: &'s Context,
}

fn prepare<'s>(
    stack: &'s Stack,
    modifiers: &Modifiers,
    ctx: &'s Context,
) -> Result<PreparedStack<'s>, PluginError> {
    let name = &stack.name;
    if stack.services.is_empty() {
        return Err(PluginError::InvalidStack(format!(
            "stack \"{name}\" has no services"
        )));
    }
    let mut services = Vec::with_capacity(stack.services.len());
    for service in &stack.services {
        // A stack of one service written at the top level is named alone.
        // Formatted on demand (for a glob's name and for errors), not once
        // per service of every delivery `prepare` runs on.
        let label = || {
            if stack.services.len() == 1 && service.name == *name {
                format!("stack \"{name}\"")
            } else {
                format!("stack \"{name}\" service \"{}\"", service.name)
            }
        };
        let what = |key: &str| format!("{}: {key} pattern", label());
        let invalid =
            |message: String| PluginError::InvalidStack(format!("{}: {message}", label()));
        let repository = match &service.repository {
            Some(r) => Some(RepoKey::setting(r).ok_or_else(|| {
                invalid(format!(
                    "repository \"{r}\" is not a repository: write owner/name, a clone URL or an absolute path"
                ))
            })?),
            None => None,
        };
        if repository.is_none() && service.image.is_none() {
            return Err(invalid("set repository or image".into()));
        }
        if repository.is_none() && service.branch.is_some() {
            return Err(invalid("branch needs repository".into()));
        }
        if repository.is_some() && service.branch.is_none() && service.tags.is_none() {
            return Err(invalid(
                "repository needs a branch (or tags) pattern".into(),
            ));
        }
        let image = match &service.image {
            Some(i) => Some(ImageKey::parse(i).ok_or_else(|| {
                invalid(format!(
                    "image \"{i}\" is not an image reference: write name, owner/name or registry/path, \
                     with an optional :tag and @digest"
                ))
            })?),
            None => None,
        };
        services.push(PreparedService {
            service,
            repository,
            branch: service
                .branch
                .as_deref()
                .map(|b| Glob::new(b, &what("branch")))
                .transpose()?,
            tags: service
                .tags
                .as_deref()
                .map(|t| Glob::new(t, &what("tags")))
                .transpose()?,
            image,
        });
    }
    let paths = stack
        .paths
        .iter()
        .map(|p| Glob::new(p, &format!("stack \"{name}\": paths")))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(wanted) = &modifiers.services {
        // No forge signs the query: whoever replays one signed delivery
        // chooses it. A stack may keep its service set out of its reach.
        if stack.refuse_query_services {
            return Err(PluginError::BadRequest(format!(
                "stack \"{name}\" does not allow services= in the query (query_services = false)"
            )));
        }
        for w in wanted {
            if !stack.services.iter().any(|s| &s.name == w) {
                let known: Vec<&str> = stack.services.iter().map(|s| s.name.as_str()).collect();
                return Err(PluginError::BadRequest(format!(
                    "stack \"{name}\" has no service \"{w}\" (services: {})",
                    known.join(", ")
                )));
            }
        }
        if let Some(w) = wanted
            .iter()
            .find(|w| stack.unselectable_services.contains(w))
        {
            return Err(PluginError::BadRequest(format!(
                "stack \"{name}\": service \"{w}\" cannot be chosen with services= (selectable = false)"
            )));
        }
        services.retain(|s| wanted.iter().any(|w| w == &s.service.name));
    }
    if let Some(profile) = &modifiers.profile {
        if !stack.profiles.iter().any(|p| p == profile) {
            return Err(PluginError::BadRequest(format!(
                "stack \"{name}\" has no deploy profile \"{profile}\""
            )));
        }
        if stack.unselectable_profiles.contains(profile) {
            return Err(PluginError::BadRequest(format!(
                "stack \"{name}\": deploy profile \"{profile}\" cannot be chosen with deployment_profile= (selectable = false)"
            )));
        }
    }
    Ok(PreparedStack {
        stack,
        services,
        paths,
        profile: modifiers.profile.clone(),
        ctx,
    })
}

/// Checks every stack by the rules [`evaluate`] applies when it prepares
/// one (see [`prepare`]), without a delivery: what the host's configuration
/// loader calls, so a configuration it accepts never fails a delivery with
/// [`PluginError::InvalidStack`].
pub fn validate_stacks(stacks: &[Stack]) -> Result<(), PluginError> {
    let ctx = Context::default();
    for stack in stacks {
        prepare(stack, &Modifiers::default(), &ctx)?;
    }
    Ok(())
}

/// The hook URL's modifiers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Modifiers {
    /// `services=web,api`: restrict to these services.
    pub services: Option<Vec<String>>,
    /// `deployment_profile=NAME`.
    pub profile: Option<String>,
}

/// Parses `services=web,api&deployment_profile=fast`. Other keys are ignored
/// (users add cache-busters; forges add nothing).
pub fn parse_modifiers(query: &str) -> Result<Modifiers, PluginError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(PluginError::BadRequest(format!(
            "query is longer than {MAX_QUERY_BYTES} bytes"
        )));
    }
    let mut m = Modifiers::default();
    for (key, value) in form_urlencoded::parse(query.trim_start_matches('?').as_bytes()) {
        match key.as_ref() {
            "services" => {
                let list = m.services.get_or_insert_with(Vec::new);
                for s in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    if !list.iter().any(|x| x == s) {
                        list.push(s.to_string());
                    }
                }
                if list.is_empty() {
                    return Err(PluginError::BadRequest("services= names no service".into()));
                }
            }
            "deployment_profile" => {
                let v = value.trim();
                if v.is_empty() {
                    return Err(PluginError::BadRequest(
                        "deployment_profile= names no profile".into(),
                    ));
                }
                if m.profile.as_deref().is_some_and(|p| p != v) {
                    return Err(PluginError::BadRequest(
                        "deployment_profile= is given twice".into(),
                    ));
                }
                m.profile = Some(v.to_string());
            }
            _ => {}
        }
    }
    Ok(m)
}

/// Decodes the body: the `payload` field of a form-encoded body, else the body.
fn decode_body<'b>(headers: &Headers, body: &'b [u8]) -> Result<Cow<'b, [u8]>, PluginError> {
    let content_type = headers
        .get("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let form = content_type.starts_with("application/x-www-form-urlencoded")
        || (content_type.is_empty() && body.starts_with(b"payload="));
    // `curl -X POST -d "" URL` sends an empty form: that is a manual trigger.
    if !form || body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Cow::Borrowed(body));
    }
    form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| Cow::Owned(v.into_owned().into_bytes()))
        .ok_or_else(|| {
            PluginError::MalformedPayload("form-encoded body has no payload field".into())
        })
}

/// Evaluates one delivery against `stacks`, with what the host knows (`ctx`).
pub fn evaluate(
    stacks: &[Stack],
    delivery: &Delivery,
    ctx: &Context,
) -> Result<Outcome, PluginError> {
    let (normalized, signature, query) = match delivery {
        Delivery::Http(req) => {
            let (n, scheme) = evaluate_http(stacks, req, ctx)?;
            (n, scheme, req.query.as_str())
        }
        Delivery::PostReceive {
            repository,
            updates,
            pusher,
            query,
        } => {
            let pushes = post_receive_pushes(repository, updates, pusher.as_deref())?;
            let n = Normalized {
                provider: Provider::PostReceive,
                event_name: "post-receive".into(),
                delivery: None,
                event: Event::Push(pushes),
            };
            (n, SignatureScheme::NotRequired, query.as_str())
        }
        Delivery::Manual { stack, query } => {
            if !stacks.iter().any(|s| &s.name == stack) {
                return Err(PluginError::BadRequest(format!(
                    "no stack named \"{stack}\""
                )));
            }
            let n = Normalized {
                provider: Provider::Manual,
                event_name: "manual".into(),
                delivery: None,
                event: Event::Manual,
            };
            (n, SignatureScheme::NotRequired, query.as_str())
        }
    };
    let sent_at_ms = match &normalized.event {
        Event::ImagePush(images) => images.iter().filter_map(|i| i.sent_at_ms).max(),
        _ => None,
    };
    check_event_age(&normalized, sent_at_ms, ctx)?;
    let modifiers = parse_modifiers(query)?;
    let manual_target = match delivery {
        Delivery::Manual { stack, .. } => Some(stack.as_str()),
        _ => None,
    };
    let mut decisions = Vec::with_capacity(stacks.len());
    for stack in stacks {
        let prepared = prepare(stack, &modifiers, ctx)?;
        if manual_target.is_some_and(|t| t != stack.name) {
            decisions.push(skip(
                stack,
                vec![],
                "manual trigger of another stack".into(),
            ));
            continue;
        }
        decisions.push(decide(&prepared, &normalized));
    }
    let (pushes, images) = match normalized.event {
        Event::Push(p) => (p, vec![]),
        Event::ImagePush(i) => (vec![], i),
        _ => (vec![], vec![]),
    };
    Ok(Outcome {
        provider: normalized.provider,
        event: normalized.event_name,
        delivery: normalized.delivery,
        signature,
        sent_at_ms,
        pushes,
        images,
        decisions,
    })
}

/// Refuses an event whose sender's time is older than the context's maximum
/// age, or further in the future than [`MAX_EVENT_CLOCK_SKEW_MS`]: a
/// captured registry delivery replayed later, or a made-up time meant to keep
/// a body fresh. Without `now` (a dry run) nothing is refused.
fn check_event_age(
    n: &Normalized,
    sent_at_ms: Option<u64>,
    ctx: &Context,
) -> Result<(), PluginError> {
    let (Some(now), Some(sent)) = (ctx.now_ms, sent_at_ms) else {
        return Ok(());
    };
    let provider = n.provider.as_str();
    if now > sent && now - sent > ctx.max_event_age_ms {
        return Err(PluginError::StaleEvent(format!(
            "{provider} event is {} s old, older than the {} s accepted (server.max_event_age)",
            (now - sent) / 1000,
            ctx.max_event_age_ms / 1000
        )));
    }
    if sent > now && sent - now > MAX_EVENT_CLOCK_SKEW_MS {
        return Err(PluginError::StaleEvent(format!(
            "{provider} event time is {} s in the future, more than the {} s of clock skew accepted",
            (sent - now) / 1000,
            MAX_EVENT_CLOCK_SKEW_MS / 1000
        )));
    }
    Ok(())
}

/// An HTTP delivery: the sender is detected from headers alone and its
/// signature checked against every stack before any of the body is parsed,
/// so a sender without the secret reaches no parser and learns nothing but
/// 401. Only senders without a provider header are detected from the body,
/// and only for stacks without secrets; an empty body is a manual trigger,
/// judged by each stack's manual policy.
fn evaluate_http(
    stacks: &[Stack],
    req: &HttpRequest,
    ctx: &Context,
) -> Result<(Normalized, SignatureScheme), PluginError> {
    if !req.method.eq_ignore_ascii_case("POST") {
        return Err(PluginError::UnsupportedMethod(format!(
            "{} cannot deliver a webhook; use POST",
            req.method
        )));
    }
    let (mut detected, json, scheme) = match providers::detect_by_headers(&req.headers) {
        Some(detected) => {
            // The form is decoded first (a plain split, no JSON parsing):
            // Gitea, Forgejo and Gogs sign the JSON inside a form body's
            // `payload` field (`Signed::DecodedJson`). A body that does not
            // decode is checked as it is, and refused only once its
            // signature is known good.
            let decoded = decode_body(&req.headers, &req.body);
            let signed: &[u8] = match &decoded {
                Ok(json) => json,
                Err(_) => &req.body,
            };
            let mut scheme = SignatureScheme::NotRequired;
            for stack in stacks {
                let s = signature::verify(
                    &stack.name,
                    &stack.secrets,
                    detected.provider,
                    &req.headers,
                    &req.body,
                    signed,
                )?;
                if scheme == SignatureScheme::NotRequired {
                    scheme = s;
                }
            }
            (detected, decoded?, scheme)
        }
        None if req.body.iter().all(u8::is_ascii_whitespace) => {
            let scheme = manual_authorization(stacks, &req.headers, ctx)?;
            let detected = Detected::new(Provider::Manual, "manual", None);
            (detected, Cow::Borrowed(&req.body[..0]), scheme)
        }
        None => {
            // Registries, Azure DevOps and the legacy Bitbucket service sign
            // nothing: a stack with secrets accepts none of them, and says so
            // before their body is parsed.
            if let Some(stack) = stacks.iter().find(|s| !s.secrets.is_empty()) {
                return Err(PluginError::MissingSignature(format!(
                    "stack \"{}\" has secrets and this delivery has no signing sender's headers (X-GitHub-Event, X-Gitlab-Event, X-Gitea-Event, X-Event-Key...)",
                    stack.name
                )));
            }
            let json = decode_body(&req.headers, &req.body)?;
            let detected = providers::detect_by_body(&req.headers, &json)?;
            (detected, json, SignatureScheme::NotRequired)
        }
    };
    let modifiers = parse_modifiers(&req.query)?;
    // Check modifiers against every stack before parsing the payload,
    // so a bad modifier is a 400 whatever the event is.
    for stack in stacks {
        prepare(stack, &modifiers, ctx)?;
    }
    let event = providers::parse(&mut detected, &json)?;
    Ok((normalize(detected, event), scheme))
}

/// Whether each stack takes a manual trigger over HTTP: by default the hook
/// URL alone authorizes it (it names no commit, so it can only redeploy what
/// the stack follows); a stack may refuse it or require it signed.
fn manual_authorization(
    stacks: &[Stack],
    headers: &Headers,
    ctx: &Context,
) -> Result<SignatureScheme, PluginError> {
    let mut scheme = SignatureScheme::NotRequired;
    for stack in stacks {
        match stack.manual {
            ManualPolicy::Allow => {}
            ManualPolicy::Refuse => {
                return Err(PluginError::Refused(format!(
                    "stack \"{}\" refuses manual triggers (manual = \"refuse\")",
                    stack.name
                )))
            }
            ManualPolicy::Signed => {
                scheme =
                    signature::verify_manual(&stack.name, &stack.secrets, headers, ctx.now_ms)?;
            }
        }
    }
    Ok(scheme)
}

fn normalize(detected: Detected, event: Event) -> Normalized {
    // GitHub's package events are GHCR image pushes.
    let provider = match (&event, detected.provider) {
        (Event::ImagePush(_), Provider::Github) => Provider::Ghcr,
        (_, p) => p,
    };
    Normalized {
        provider,
        event_name: detected.event_name,
        delivery: detected.delivery,
        event,
    }
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Turns post-receive lines into pushes. Both SHA-1 (40) and SHA-256 (64)
/// object ids are accepted; the zero id marks creation and deletion.
pub fn post_receive_pushes(
    repository: &str,
    updates: &[RefUpdate],
    pusher: Option<&str>,
) -> Result<Vec<Push>, PluginError> {
    if repository.trim().is_empty() {
        return Err(PluginError::MalformedPayload(
            "post-receive: repository is empty".into(),
        ));
    }
    if updates.len() > MAX_POST_RECEIVE_UPDATES {
        return Err(PluginError::MalformedPayload(format!(
            "post-receive: {} ref updates, more than {MAX_POST_RECEIVE_UPDATES}",
            updates.len()
        )));
    }
    updates
        .iter()
        .map(|u| {
            if !is_object_id(&u.old) || !is_object_id(&u.new) || u.old.len() != u.new.len() {
                return Err(PluginError::MalformedPayload(format!(
                    "post-receive: \"{} {} {}\" is not an \"<old> <new> <ref>\" line",
                    u.old, u.new, u.name
                )));
            }
            if u.name.is_empty() || u.name.contains(char::is_whitespace) {
                return Err(PluginError::MalformedPayload(format!(
                    "post-receive: bad ref name \"{}\"",
                    u.name
                )));
            }
            let created = is_zero_sha(&u.old);
            let deleted = is_zero_sha(&u.new);
            Ok(Push {
                repository: Repository {
                    full_name: repository.to_string(),
                    urls: vec![],
                },
                git_ref: u.name.clone(),
                before: (!created).then(|| u.old.to_ascii_lowercase()),
                after: (!deleted).then(|| u.new.to_ascii_lowercase()),
                created,
                deleted,
                forced: false,
                pusher: pusher.map(str::to_string),
                head_message: None,
                commit_messages: vec![],
                commits_complete: false,
                changed_files: crate::model::ChangedFiles::Unknown,
            })
        })
        .collect()
}

fn skip(stack: &Stack, services: Vec<String>, reason: String) -> Decision {
    Decision {
        stack: stack.name.clone(),
        deploy: None,
        services,
        reason,
    }
}

fn service_names(services: &[&PreparedService<'_>]) -> Vec<String> {
    services.iter().map(|s| s.service.name.clone()).collect()
}

fn decide(stack: &PreparedStack<'_>, n: &Normalized) -> Decision {
    match &n.event {
        Event::Push(pushes) => decide_push(stack, n, pushes),
        Event::ImagePush(images) => decide_image(stack, n, images),
        Event::Ping { repository } => decide_ping(stack, n, repository.as_ref()),
        Event::Deployment(d) => decide_deployment(stack, n, d),
        Event::Manual => {
            let services: Vec<&PreparedService> = stack.services.iter().collect();
            let branch = single_literal_branch(&services);
            let reason = "manual trigger deploys every service".to_string();
            deploy(
                stack,
                n,
                &services,
                DeployTarget {
                    branch,
                    ..Default::default()
                },
                reason,
            )
        }
        Event::Ignored { reason } => skip(stack.stack, vec![], reason.clone()),
    }
}

/// What a deploy is of, for the deploy event.
#[derive(Default)]
struct DeployTarget<'a> {
    push: Option<&'a Push>,
    branch: Option<String>,
    image: Option<&'a ImagePush>,
    deployment: Option<&'a Deployment>,
}

/// The one branch every git service follows, when it is a plain name, so
/// that a ping or manual trigger can say which branch it deploys.
fn single_literal_branch(services: &[&PreparedService<'_>]) -> Option<String> {
    let mut branches = services.iter().filter_map(|s| s.branch.as_ref());
    let first = branches.next()?.literal()?;
    branches
        .all(|b| b.literal() == Some(first))
        .then(|| first.to_string())
}

fn deploy(
    stack: &PreparedStack<'_>,
    n: &Normalized,
    services: &[&PreparedService<'_>],
    target: DeployTarget<'_>,
    reason: String,
) -> Decision {
    let names = service_names(services);
    let mut event = DeployEvent {
        stack: stack.stack.name.clone(),
        services: names.clone(),
        profile: stack.profile.clone(),
        provider: n.provider.as_str().to_string(),
        delivery: n.delivery.clone(),
        reason: reason.clone(),
        ..Default::default()
    };
    if let Some(push) = target.push {
        let (kind, short) = push.ref_kind();
        event.git_ref = Some(push.git_ref.clone());
        match kind {
            RefKind::Branch => event.branch = Some(short.to_string()),
            RefKind::Tag => event.tag = Some(short.to_string()),
            RefKind::Other => {}
        }
        event.sha = push.after.clone();
        event.repository = Some(push.repository.full_name.clone());
    } else if let Some(branch) = target.branch {
        event.git_ref = Some(format!("refs/heads/{branch}"));
        event.branch = Some(branch);
    }
    if let Some(image) = target.image {
        event.image = Some(image_reference(image));
        event.callback_url = image.callback_url.clone();
    }
    match target.deployment {
        Some(d) => {
            event.github_deployment_id = Some(d.id);
            event.sha = Some(d.sha.clone());
            event.repository = Some(d.repository.full_name.clone());
            let (kind, short) = ref_kind(&d.git_ref);
            match kind {
                RefKind::Branch => {
                    event.git_ref = Some(d.git_ref.clone());
                    event.branch = Some(short.to_string());
                }
                RefKind::Tag => {
                    event.git_ref = Some(d.git_ref.clone());
                    event.tag = Some(short.to_string());
                }
                // A deployment's ref is often a bare branch name or a SHA.
                RefKind::Other if d.git_ref != d.sha => {
                    event.git_ref = Some(format!("refs/heads/{}", d.git_ref));
                    event.branch = Some(d.git_ref.clone());
                }
                RefKind::Other => {}
            }
        }
        None => {
            if let Some(gh) = &stack.stack.github {
                event.github_deployment_request =
                    github::deployment_request(gh, &event, stack.ctx.deployment_key.as_deref());
            }
        }
    }
    Decision {
        stack: stack.stack.name.clone(),
        deploy: Some(event),
        services: names,
        reason,
    }
}

fn decide_push(stack: &PreparedStack<'_>, n: &Normalized, pushes: &[Push]) -> Decision {
    let git_services: Vec<&PreparedService> = stack
        .services
        .iter()
        .filter(|s| s.repository.is_some())
        .collect();
    if git_services.is_empty() {
        return skip(
            stack.stack,
            vec![],
            "no service of this stack follows a git repository".into(),
        );
    }
    if pushes.is_empty() {
        return skip(stack.stack, vec![], "the push names no ref".into());
    }
    // The last push that matches wins: forges and git list ref updates in order.
    let mut chosen: Option<(&Push, Vec<&PreparedService>)> = None;
    let mut first_reason: Option<String> = None;
    for push in pushes {
        match match_push(&git_services, push) {
            Ok(services) => chosen = Some((push, services)),
            Err(reason) => {
                first_reason.get_or_insert(reason);
            }
        }
    }
    let Some((push, services)) = chosen else {
        return skip(
            stack.stack,
            vec![],
            first_reason.unwrap_or_else(|| "no push matches".into()),
        );
    };
    let names = service_names(&services);
    let (kind, short) = push.ref_kind();
    let what = match kind {
        RefKind::Tag => format!("tag \"{short}\""),
        _ => format!("push to \"{short}\""),
    };
    if !stack.stack.skip_markers.is_empty()
        && push.commits_complete
        && !push.commit_messages.is_empty()
    {
        let all_marked = push.commit_messages.iter().all(|m| {
            stack
                .stack
                .skip_markers
                .iter()
                .any(|marker| m.contains(marker.as_str()))
        });
        if all_marked {
            return skip(
                stack.stack,
                names,
                format!("{what}: every commit carries a skip marker"),
            );
        }
    }
    if !stack.paths.is_empty() {
        if let crate::model::ChangedFiles::Complete(files) = &push.changed_files {
            let hit = files
                .iter()
                .any(|f| stack.paths.iter().any(|p| path_matches(p, f)));
            if !hit {
                let pats: Vec<&str> = stack.paths.iter().map(Glob::as_str).collect();
                return skip(
                    stack.stack,
                    names,
                    format!(
                        "{what}: no changed file matches paths {}",
                        quote_list(&pats)
                    ),
                );
            }
        }
    }
    let reason = match kind {
        RefKind::Tag => {
            let pat = services
                .first()
                .and_then(|s| s.tags.as_ref())
                .map(Glob::as_str)
                .unwrap_or("");
            format!(
                "tag \"{short}\" of {} matches tags \"{pat}\"",
                push.repository.full_name
            )
        }
        _ => {
            let pat = services
                .first()
                .and_then(|s| s.branch.as_ref())
                .map(Glob::as_str)
                .unwrap_or("");
            format!(
                "push to \"{short}\" of {} matches branch \"{pat}\"",
                push.repository.full_name
            )
        }
    };
    deploy(
        stack,
        n,
        &services,
        DeployTarget {
            push: Some(push),
            ..Default::default()
        },
        reason,
    )
}

fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The services one push deploys, or why none.
fn match_push<'a, 's>(
    services: &[&'a PreparedService<'s>],
    push: &Push,
) -> Result<Vec<&'a PreparedService<'s>>, String> {
    let in_repo: Vec<&PreparedService> = services
        .iter()
        .copied()
        .filter(|s| {
            s.repository
                .as_ref()
                .is_some_and(|r| repository_matches(r, &push.repository))
        })
        .collect();
    if in_repo.is_empty() {
        let wanted: Vec<&str> = services
            .iter()
            .filter_map(|s| s.service.repository.as_deref())
            .collect();
        return Err(format!(
            "push to repository \"{}\" does not match repository {}",
            push.repository.full_name,
            quote_list(&wanted)
        ));
    }
    let (kind, short) = push.ref_kind();
    if push.deleted {
        let what = match kind {
            RefKind::Tag => "tag",
            RefKind::Branch => "branch",
            RefKind::Other => "ref",
        };
        return Err(format!(
            "{what} \"{short}\" was deleted; deletions never deploy"
        ));
    }
    let matched: Vec<&PreparedService> = match kind {
        RefKind::Branch => in_repo
            .iter()
            .copied()
            .filter(|s| s.branch.as_ref().is_some_and(|b| b.matches(short)))
            .collect(),
        RefKind::Tag => in_repo
            .iter()
            .copied()
            .filter(|s| s.tags.as_ref().is_some_and(|t| t.matches(short)))
            .collect(),
        RefKind::Other => return Err(format!("ref \"{short}\" is neither a branch nor a tag")),
    };
    if !matched.is_empty() {
        return Ok(matched);
    }
    Err(match kind {
        RefKind::Branch => {
            let pats: Vec<&str> = in_repo
                .iter()
                .filter_map(|s| s.branch.as_ref())
                .map(Glob::as_str)
                .collect();
            if pats.len() == 1 {
                format!("push to \"{short}\" does not match branch \"{}\"", pats[0])
            } else {
                format!(
                    "push to \"{short}\" does not match branches {}",
                    quote_list(&pats)
                )
            }
        }
        _ => {
            let pats: Vec<&str> = in_repo
                .iter()
                .filter_map(|s| s.tags.as_ref())
                .map(Glob::as_str)
                .collect();
            if pats.is_empty() {
                format!("tag \"{short}\" pushed; this stack deploys no tags (no tags pattern)")
            } else {
                format!("tag \"{short}\" does not match tags {}", quote_list(&pats))
            }
        }
    })
}

fn decide_image(stack: &PreparedStack<'_>, n: &Normalized, images: &[ImagePush]) -> Decision {
    let image_services: Vec<&PreparedService> = stack
        .services
        .iter()
        .filter(|s| s.image.is_some())
        .collect();
    if image_services.is_empty() {
        return skip(
            stack.stack,
            vec![],
            "no service of this stack follows an image".into(),
        );
    }
    for image in images {
        let matched: Vec<&PreparedService> = image_services
            .iter()
            .copied()
            .filter(|s| s.image.as_ref().is_some_and(|k| k.matches(image)))
            .collect();
        if !matched.is_empty() {
            let reason = format!(
                "image {} pushed; followed by {}",
                image_reference(image),
                quote_list(
                    &matched
                        .iter()
                        .map(|s| s.service.name.as_str())
                        .collect::<Vec<_>>()
                )
            );
            return deploy(
                stack,
                n,
                &matched,
                DeployTarget {
                    image: Some(image),
                    ..Default::default()
                },
                reason,
            );
        }
    }
    // A push by digest alone (no tag) of a followed image cannot show it is
    // the followed tag: say so, rather than that the images differ.
    for image in images.iter().filter(|i| i.tag.is_none()) {
        let untagged = image_services.iter().find_map(|s| {
            let key = s.image.as_ref()?;
            (key.compare(image) == Err(ImageMismatch::Untagged))
                .then(|| (s.service.image.as_deref().unwrap_or(""), key.tag()))
        });
        if let Some((wanted, Some(tag))) = untagged {
            return skip(
                stack.stack,
                vec![],
                format!(
                    "image \"{}\" was pushed without a tag (by digest only); image \"{wanted}\" follows tag \"{tag}\", and a digest alone does not say which tag points at it",
                    image_reference(image)
                ),
            );
        }
    }
    let pushed: Vec<String> = images.iter().map(image_reference).collect();
    let wanted: Vec<&str> = image_services
        .iter()
        .filter_map(|s| s.service.image.as_deref())
        .collect();
    skip(
        stack.stack,
        vec![],
        format!(
            "image {} does not match image {}",
            quote_list(&pushed.iter().map(String::as_str).collect::<Vec<_>>()),
            quote_list(&wanted)
        ),
    )
}

fn decide_ping(
    stack: &PreparedStack<'_>,
    n: &Normalized,
    repository: Option<&Repository>,
) -> Decision {
    if stack.stack.ping == PingAction::Acknowledge {
        return skip(
            stack.stack,
            vec![],
            "ping acknowledged; this stack does not deploy on pings (ping = \"acknowledge\")"
                .into(),
        );
    }
    let git_services: Vec<&PreparedService> = stack
        .services
        .iter()
        .filter(|s| s.repository.is_some())
        .collect();
    let services: Vec<&PreparedService> = match repository {
        Some(repo) if !git_services.is_empty() => {
            let m: Vec<&PreparedService> = git_services
                .iter()
                .copied()
                .filter(|s| {
                    s.repository
                        .as_ref()
                        .is_some_and(|r| repository_matches(r, repo))
                })
                .collect();
            if m.is_empty() {
                let wanted: Vec<&str> = git_services
                    .iter()
                    .filter_map(|s| s.service.repository.as_deref())
                    .collect();
                return skip(
                    stack.stack,
                    vec![],
                    format!(
                        "ping from repository \"{}\" does not match repository {}",
                        repo.full_name,
                        quote_list(&wanted)
                    ),
                );
            }
            m
        }
        _ if !git_services.is_empty() => git_services,
        _ => stack.services.iter().collect(),
    };
    let branch = single_literal_branch(&services);
    let reason = match &branch {
        Some(b) => format!("ping deploys branch \"{b}\" (ping = \"deploy\")"),
        None => "ping deploys the stack (ping = \"deploy\")".to_string(),
    };
    let mut decision = deploy(
        stack,
        n,
        &services,
        DeployTarget {
            branch,
            ..Default::default()
        },
        reason,
    );
    if let (Some(event), Some(repo)) = (decision.deploy.as_mut(), repository) {
        event.repository = Some(repo.full_name.clone());
    }
    decision
}

fn decide_deployment(stack: &PreparedStack<'_>, n: &Normalized, d: &Deployment) -> Decision {
    let Some(gh) = &stack.stack.github else {
        return skip(
            stack.stack,
            vec![],
            "deployment events deploy only stacks with GitHub continuous deployment".into(),
        );
    };
    if !gh.repository.eq_ignore_ascii_case(&d.repository.full_name) {
        return skip(
            stack.stack,
            vec![],
            format!(
                "deployment for repository \"{}\", not \"{}\"",
                d.repository.full_name, gh.repository
            ),
        );
    }
    if d.environment != gh.environment {
        return skip(
            stack.stack,
            vec![],
            format!(
                "deployment to environment \"{}\", not \"{}\"",
                d.environment, gh.environment
            ),
        );
    }
    if let Some(owner) = &d.payload_stack {
        if owner != &stack.stack.name {
            return skip(
                stack.stack,
                vec![],
                format!("deployment created for stack \"{owner}\""),
            );
        }
    }
    if !gh.wait_for_event {
        return skip(
            stack.stack,
            vec![],
            "this stack deploys on the push itself (wait_for_event = false); the deployment event is only acknowledged".into(),
        );
    }
    // Only the `deploy` task deploys: other tasks (`deploy:migrations`, a
    // bot's own) name work the stack's command was never told about.
    if d.task != github::DEPLOYMENT_TASK {
        return skip(
            stack.stack,
            vec![],
            format!(
                "deployment {} has task \"{}\"; only \"{}\" deploys",
                d.id,
                d.task,
                github::DEPLOYMENT_TASK
            ),
        );
    }
    let created_here = stack
        .ctx
        .deployment_key
        .as_deref()
        .is_some_and(|key| github::deployment_mac_valid(key, &stack.stack.name, d));
    let in_repo: Vec<&PreparedService> = stack
        .services
        .iter()
        .filter(|s| {
            s.repository
                .as_ref()
                .is_some_and(|r| repository_matches(r, &d.repository))
        })
        .collect();
    let mut services: Vec<&PreparedService> = if created_here {
        if in_repo.is_empty() {
            stack.services.iter().collect()
        } else {
            in_repo
        }
    } else {
        // Anyone who can create deployments on the repository (a workflow
        // on a feature branch, a bot) could send this one: it deploys only
        // where the stack opted in, and then only a ref the stack follows.
        if !gh.accept_foreign_deployments {
            return skip(
                stack.stack,
                vec![],
                format!(
                    "deployment {} was not created by redeploy for this stack (no valid redeploy-mac); set accept_foreign_deployments = true to deploy deployments created elsewhere",
                    d.id
                ),
            );
        }
        match foreign_deployment_services(&in_repo, d) {
            Ok(matched) => matched,
            Err(reason) => return skip(stack.stack, vec![], reason),
        }
    };
    // The push that created the deployment may have chosen services and a
    // profile (`services=`, `deployment_profile=`); its payload carries them.
    // redeploy's MAC covers them; a foreign deployment's payload may only
    // choose what the query could.
    if !created_here {
        if let Some(reason) = foreign_payload_refusal(stack.stack, d) {
            return skip(stack.stack, vec![], reason);
        }
    }
    if !d.payload_services.is_empty() {
        let chosen: Vec<&PreparedService> = services
            .iter()
            .copied()
            .filter(|s| d.payload_services.contains(&s.service.name))
            .collect();
        if !chosen.is_empty() {
            services = chosen;
        }
    }
    let reason = if created_here {
        format!(
            "github deployment {} to environment \"{}\"",
            d.id, d.environment
        )
    } else {
        format!(
            "github deployment {} of \"{}\" to environment \"{}\" (created elsewhere; accept_foreign_deployments = true)",
            d.id, d.git_ref, d.environment
        )
    };
    let mut decision = deploy(
        stack,
        n,
        &services,
        DeployTarget {
            deployment: Some(d),
            ..Default::default()
        },
        reason,
    );
    if let Some(event) = decision.deploy.as_mut().filter(|e| e.profile.is_none()) {
        event.profile = d
            .payload_profile
            .clone()
            .filter(|p| stack.stack.profiles.contains(p));
    }
    decision
}

/// The services a deployment created elsewhere deploys: its `ref` must be a
/// branch or tag the services follow. A bare commit SHA names no branch, so
/// it cannot show the commit is one the stack follows.
fn foreign_deployment_services<'a, 's>(
    in_repo: &[&'a PreparedService<'s>],
    d: &Deployment,
) -> Result<Vec<&'a PreparedService<'s>>, String> {
    if in_repo.is_empty() {
        return Err(format!(
            "deployment {} is for repository \"{}\", which no service of this stack follows",
            d.id, d.repository.full_name
        ));
    }
    let (kind, short) = ref_kind(&d.git_ref);
    let (kind, short) = match kind {
        _ if d.git_ref.eq_ignore_ascii_case(&d.sha) || is_object_id(&d.git_ref) => {
            return Err(format!(
                "deployment {} names the bare commit \"{}\", not a branch or tag this stack follows",
                d.id, d.git_ref
            ))
        }
        RefKind::Other => (RefKind::Branch, short),
        other => (other, short),
    };
    let matched: Vec<&PreparedService> = in_repo
        .iter()
        .copied()
        .filter(|s| match kind {
            RefKind::Tag => s.tags.as_ref().is_some_and(|t| t.matches(short)),
            _ => s.branch.as_ref().is_some_and(|b| b.matches(short)),
        })
        .collect();
    if matched.is_empty() {
        let pats: Vec<&str> = in_repo
            .iter()
            .filter_map(|s| match kind {
                RefKind::Tag => s.tags.as_ref(),
                _ => s.branch.as_ref(),
            })
            .map(Glob::as_str)
            .collect();
        let what = if kind == RefKind::Tag {
            "tags"
        } else {
            "branch"
        };
        return Err(format!(
            "deployment {} of \"{short}\" does not match {what} {}",
            d.id,
            quote_list(&pats)
        ));
    }
    Ok(matched)
}

/// Why a foreign deployment's payload choice is refused: it may name only
/// services and a profile the hook URL's query could choose.
fn foreign_payload_refusal(stack: &Stack, d: &Deployment) -> Option<String> {
    if !d.payload_services.is_empty() {
        if stack.refuse_query_services {
            return Some(format!(
                "deployment {} chooses services, which this stack does not allow (query_services = false)",
                d.id
            ));
        }
        if let Some(s) = d
            .payload_services
            .iter()
            .find(|s| stack.unselectable_services.contains(s))
        {
            return Some(format!(
                "deployment {} chooses service \"{s}\", which cannot be chosen (selectable = false)",
                d.id
            ));
        }
    }
    let profile = d.payload_profile.as_ref()?;
    if !stack.profiles.contains(profile) {
        return Some(format!(
            "deployment {} chooses deploy profile \"{profile}\", which this stack does not have",
            d.id
        ));
    }
    stack.unselectable_profiles.contains(profile).then(|| {
        format!(
            "deployment {} chooses deploy profile \"{profile}\", which cannot be chosen (selectable = false)",
            d.id
        )
    })
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
