//! The evaluation pipeline: method → body decoding → provider detection →
//! signature → modifiers → normalization → decisions (one per stack, or
//! per ref or image it follows of a push moving several).
//!
//! The steps live in submodules: delivery routing and the HTTP checks here,
//! stack preparation in `prepare`, each stack's decisions in `decide`,
//! GitHub deployment events in `deployment`, and poll deliveries, turned
//! into the pushes they stand for, in `poll`.

use std::borrow::Cow;

use crate::error::PluginError;
use crate::forwarding;
use crate::model::{Event, Headers, ManualPolicy, Normalized, Provider, Push, Repository, Stack};
use crate::outcome::{Outcome, SignatureScheme, SkipCode};
use crate::providers::{self, common::is_zero_sha, Detected};
use crate::signature;

mod decide;
mod deployment;
mod poll;
mod prepare;

use decide::{decide, skip};
pub use poll::{GitPoll, ImagePoll, PollChange};
pub use prepare::{parse_modifiers, stack_services, validate_stacks, Modifiers};
use prepare::{prepare, PreparedStack};

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
    /// MACs of an HTTP delivery's body the host computed natively.
    pub body_macs: Vec<signature::BodyMac>,
}

impl Default for Context {
    /// No time, no key, the default maximum event age, no MACs.
    fn default() -> Self {
        Context {
            now_ms: None,
            deployment_key: None,
            max_event_age_ms: DEFAULT_MAX_EVENT_AGE_MS,
            body_macs: Vec::new(),
        }
    }
}

/// An HTTP request to a hook URL.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// The method.
    pub method: String,
    /// The raw query without `?`.
    pub query: String,
    /// The headers.
    pub headers: Headers,
    /// The raw body.
    pub body: Vec<u8>,
}

/// One post-receive input line (also an update of a forwarded push's body).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// A post-receive push forwarded over HTTP by a git server's hook
    /// ([`crate::forwarding`]).
    ForwardedPostReceive(HttpRequest),
    /// A manual trigger of one stack.
    Manual {
        /// The stack.
        stack: String,
        /// Modifiers.
        query: String,
    },
    /// A change the host found by polling one stack's source: evaluated
    /// for that stack alone, as the push or image push it stands for.
    Poll {
        /// The stack polled.
        stack: String,
        /// What changed.
        change: PollChange,
        /// Modifiers, for the polled stack.
        query: String,
    },
}

impl Delivery {
    /// The one stack a delivery is meant for (a manual trigger, a poll), and
    /// the reason every other stack skips it.
    fn target(&self) -> Option<(&str, &'static str)> {
        match self {
            Delivery::Manual { stack, .. } => Some((stack, "manual trigger of another stack")),
            Delivery::Poll { stack, .. } => Some((stack, "poll of another stack's source")),
            _ => None,
        }
    }
}

/// Refuses a delivery for a stack that is not among `stacks`.
fn require_stack(stacks: &[Stack], stack: &str) -> Result<(), PluginError> {
    if stacks.iter().any(|s| s.name == stack) {
        return Ok(());
    }
    Err(PluginError::BadRequest(format!(
        "no stack named \"{stack}\""
    )))
}

/// Decodes the body: the `payload` field of a form-encoded body, else the body.
///
/// A form must be that one field and nothing else, as every sender of one
/// writes it (`payload=` and the JSON percent-encoded, so with no `&` of
/// its own). The content type is not signed: were a `payload` field found
/// anywhere among others, a JSON body signed as sent, whose strings hold
/// `&payload=...&` (a commit message, a branch name), could be sent again
/// as a form and be read as the JSON the attacker put there.
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
    let mut fields = form_urlencoded::parse(body);
    match (fields.next(), fields.next()) {
        (Some((key, value)), None) if key == "payload" => {
            Ok(Cow::Owned(value.into_owned().into_bytes()))
        }
        (Some(_), Some(_)) => Err(PluginError::MalformedPayload(
            "a form-encoded body must be one payload field, and this one has more fields".into(),
        )),
        _ => Err(PluginError::MalformedPayload(
            "form-encoded body has no payload field".into(),
        )),
    }
}

/// Evaluates one delivery against `stacks`, with what the host knows (`ctx`).
pub fn evaluate(
    stacks: &[Stack],
    delivery: &Delivery,
    ctx: &Context,
) -> Result<Outcome, PluginError> {
    // An HTTP delivery's stacks are prepared, with its modifiers, before
    // its payload is parsed, and decide as prepared then.
    let (normalized, signature, query, prepared) = match delivery {
        Delivery::Http(req) => {
            let (n, scheme, prepared) = evaluate_http(stacks, req, ctx)?;
            (n, scheme, req.query.as_str(), Some(prepared))
        }
        Delivery::PostReceive {
            repository,
            updates,
            pusher,
            query,
        } => {
            let pushes = post_receive_pushes(repository, updates, pusher.as_deref())?;
            (
                post_receive_event(pushes),
                SignatureScheme::NotRequired,
                query.as_str(),
                None,
            )
        }
        Delivery::ForwardedPostReceive(req) => {
            require_post(req, "forward a push")?;
            let scheme = forwarding::authorize(stacks, &req.headers, &req.body, ctx.now_ms)?;
            let push = forwarding::parse(&req.body)?;
            let pushes =
                post_receive_pushes(&push.repository, &push.updates, push.pusher.as_deref())?;
            (post_receive_event(pushes), scheme, req.query.as_str(), None)
        }
        Delivery::Manual { stack, query } => {
            require_stack(stacks, stack)?;
            let n = Normalized {
                provider: Provider::Manual,
                event_name: "manual".into(),
                delivery: None,
                event: Event::Manual,
            };
            (n, SignatureScheme::NotRequired, query.as_str(), None)
        }
        Delivery::Poll {
            stack,
            change,
            query,
        } => {
            require_stack(stacks, stack)?;
            let n = poll::normalize(change)?;
            (n, SignatureScheme::NotRequired, query.as_str(), None)
        }
    };
    // A delivery id is a token: one holding whitespace or a control
    // character, one too long, or one taking the key of a GitHub
    // deployment's deploy (no sender makes one; the header is unsigned) is
    // not taken as one, and the delivery is deduplicated as one without an
    // id. So no id can be made to read as another's with a ref after it (a
    // host keys each ref's deploy of a push of several as `<id> <ref>`).
    let mut normalized = normalized;
    normalized.delivery = normalized.delivery.filter(|d| is_delivery_id(d));
    let sent_at_ms = match &normalized.event {
        Event::ImagePush(images) => images.iter().filter_map(|i| i.sent_at_ms).max(),
        _ => None,
    };
    check_event_age(&normalized, sent_at_ms, ctx)?;
    let mut decisions = Vec::with_capacity(stacks.len());
    match prepared {
        Some(prepared) => {
            for p in &prepared {
                decide(p, &normalized, &mut decisions);
            }
        }
        None => {
            let modifiers = parse_modifiers(query)?;
            let target = delivery.target();
            // A poll's modifiers are the polled stack's own: another stack,
            // which skips it, is checked without them.
            let others_modifiers = match delivery {
                Delivery::Poll { .. } => Modifiers::default(),
                _ => modifiers.clone(),
            };
            for stack in stacks {
                match target {
                    Some((name, why)) if name != stack.name => {
                        prepare(stack, &others_modifiers, ctx)?;
                        decisions.push(skip(stack, SkipCode::OtherStack, why));
                    }
                    _ => decide(
                        &prepare(stack, &modifiers, ctx)?,
                        &normalized,
                        &mut decisions,
                    ),
                }
            }
        }
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
fn evaluate_http<'s>(
    stacks: &'s [Stack],
    req: &HttpRequest,
    ctx: &'s Context,
) -> Result<(Normalized, SignatureScheme, Vec<PreparedStack<'s>>), PluginError> {
    require_post(req, "deliver a webhook")?;
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
                    &ctx.body_macs,
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
            if json.iter().all(u8::is_ascii_whitespace) {
                // A form whose payload is empty names nothing either: a
                // manual trigger, under the stacks' policy like any other.
                let scheme = manual_authorization(stacks, &req.headers, ctx)?;
                let detected = Detected::new(Provider::Manual, "manual", None);
                (detected, json, scheme)
            } else {
                let detected = providers::detect_by_body(&req.headers, &json)?;
                (detected, json, SignatureScheme::NotRequired)
            }
        }
    };
    let modifiers = parse_modifiers(&req.query)?;
    // Check modifiers against every stack before parsing the payload,
    // so a bad modifier is a 400 whatever the event is.
    let prepared = stacks
        .iter()
        .map(|stack| prepare(stack, &modifiers, ctx))
        .collect::<Result<Vec<_>, _>>()?;
    let event = providers::parse(&mut detected, &json)?;
    check_names(&event)?;
    Ok((normalize(detected, event), scheme, prepared))
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

/// Refuses a request whose method cannot `what` (only POST carries a body).
fn require_post(req: &HttpRequest, what: &str) -> Result<(), PluginError> {
    if req.method.eq_ignore_ascii_case("POST") {
        return Ok(());
    }
    Err(PluginError::UnsupportedMethod(format!(
        "{} cannot {what}; use POST",
        req.method
    )))
}

/// A post-receive push, run in place or forwarded: it names no delivery.
fn post_receive_event(pushes: Vec<Push>) -> Normalized {
    Normalized {
        provider: Provider::PostReceive,
        event_name: "post-receive".into(),
        delivery: None,
        event: Event::Push(pushes),
    }
}

fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The fewest hex digits a sender abbreviates a commit id to (git's
/// `core.abbrev` default; the legacy Bitbucket service's `node` is 12).
const MIN_ABBREVIATED_ID: usize = 7;

/// Whether `s` is a commit id, whole (40 or 64 hex digits) or abbreviated
/// to at least [`MIN_ABBREVIATED_ID`].
fn is_commit_id(s: &str) -> bool {
    (MIN_ABBREVIATED_ID..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Refuses an event whose commit ids, image registries, tags or digests are not what
/// git and registries make: they reach the deploy command's environment
/// (`REDEPLOY_SHA`, `REDEPLOY_IMAGE`), where a value such as `--orphan=x`
/// would be an option to the `git` or `docker` it is handed to. A stack
/// without secrets takes a push from whoever has its URL, so its fields
/// are anyone's.
fn check_names(event: &Event) -> Result<(), PluginError> {
    let refuse = |what: &str, value: &str, want: &str| {
        let shown: String = value.chars().take(80).collect();
        Err(PluginError::MalformedPayload(format!(
            "{what} {shown:?} is not {want}"
        )))
    };
    const COMMIT: &str = "a commit id (7 to 64 hex digits)";
    match event {
        Event::Push(pushes) => {
            for push in pushes {
                for (what, id) in [("before", &push.before), ("after", &push.after)] {
                    if let Some(id) = id.as_deref().filter(|id| !is_commit_id(id)) {
                        return refuse(&format!("the push's {what}"), id, COMMIT);
                    }
                }
            }
        }
        Event::ImagePush(images) => {
            for image in images {
                if let Some(host) = image
                    .registry
                    .as_deref()
                    .filter(|h| !crate::matching::is_registry_host(h))
                {
                    return refuse(
                        "the image's registry",
                        host,
                        "a registry host (a domain or address, then an optional :port)",
                    );
                }
                if let Some(tag) = image.tag.as_deref().filter(|t| !crate::matching::is_tag(t)) {
                    return refuse(
                        "the image's tag",
                        tag,
                        "an image tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})",
                    );
                }
                if let Some(digest) = image
                    .digest
                    .as_deref()
                    .filter(|d| !crate::matching::is_digest(d))
                {
                    return refuse("the image's digest", digest, "a digest (algorithm:hex)");
                }
            }
        }
        Event::Deployment(d) if !is_commit_id(&d.sha) => {
            return refuse("the deployment's sha", &d.sha, COMMIT);
        }
        _ => {}
    }
    Ok(())
}

/// Turns post-receive lines into pushes. Both SHA-1 (40) and SHA-256 (64)
/// object ids are accepted; the zero id marks creation and deletion.
pub fn post_receive_pushes(
    repository: &str,
    updates: &[RefUpdate],
    pusher: Option<&str>,
) -> Result<Vec<Push>, PluginError> {
    require_repository("post-receive", repository)?;
    if updates.len() > MAX_POST_RECEIVE_UPDATES {
        return Err(PluginError::MalformedPayload(format!(
            "post-receive: {} ref updates, more than {MAX_POST_RECEIVE_UPDATES}",
            updates.len()
        )));
    }
    updates
        .iter()
        .map(|u| ref_update_push("post-receive", repository, u, pusher))
        .collect()
}

/// Refuses an empty repository name; `source` names the delivery kind.
fn require_repository(source: &str, repository: &str) -> Result<(), PluginError> {
    if repository.trim().is_empty() {
        return Err(PluginError::MalformedPayload(format!(
            "{source}: repository is empty"
        )));
    }
    Ok(())
}

/// One ref update (a post-receive line, a polled ref) as a push of
/// `repository`: object ids of 40 or 64 hex digits, both of one length, and
/// a ref name without ASCII whitespace; `source` names the delivery kind in errors.
fn ref_update_push(
    source: &str,
    repository: &str,
    u: &RefUpdate,
    pusher: Option<&str>,
) -> Result<Push, PluginError> {
    if !is_object_id(&u.old) || !is_object_id(&u.new) || u.old.len() != u.new.len() {
        return Err(PluginError::MalformedPayload(format!(
            "{source}: \"{} {} {}\" is not an \"<old> <new> <ref>\" line",
            u.old, u.new, u.name
        )));
    }
    // ASCII whitespace, which git refuses in a ref name and which separates
    // the fields of its lines. Other Unicode whitespace (a no-break space)
    // is a name git takes: one pushed is evaluated, not refused.
    if u.name.is_empty() || u.name.contains(|c: char| c.is_ascii_whitespace()) {
        return Err(PluginError::MalformedPayload(format!(
            "{source}: bad ref name \"{}\"",
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
}

/// The longest delivery id taken, in bytes: senders' ids are UUIDs, GUIDs
/// and counters, far shorter; a longer one would not fit a deploy
/// command's environment (`REDEPLOY_DELIVERY`) once a host adds a ref.
pub const MAX_DELIVERY_ID_BYTES: usize = 256;

/// The start of the journal key hosts give the deploy of a GitHub
/// deployment (`github-deployment-<id>`): no sender's id may take it.
pub const DEPLOYMENT_KEY_PREFIX: &str = "github-deployment-";

/// Whether `id`, a sender's delivery id, is taken as one: a token (not
/// empty, no whitespace or control character) of at most
/// [`MAX_DELIVERY_ID_BYTES`], not starting with [`DEPLOYMENT_KEY_PREFIX`].
fn is_delivery_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_DELIVERY_ID_BYTES
        && !id.starts_with(DEPLOYMENT_KEY_PREFIX)
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
#[path = "../evaluate_tests.rs"]
mod tests;
