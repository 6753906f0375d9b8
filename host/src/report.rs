//! The outcome as the stable JSON document `redeploy check` prints and the
//! server answers with. Field for field the same as the plugin's own
//! `report` module; the golden tests check that the two agree.

use serde_json::{json, Value};

use crate::plugin::wit;

/// The JSON document for an outcome.
pub fn outcome_json(o: &wit::Outcome) -> Value {
    json!({
        "provider": o.provider,
        "event": o.event,
        "delivery": o.delivery,
        "signature": signature_name(o.signature),
        "sent_at_ms": o.sent_at_ms,
        "pushes": o.pushes.iter().map(push_json).collect::<Vec<_>>(),
        "images": o.images.iter().map(image_json).collect::<Vec<_>>(),
        "decisions": o.decisions.iter().map(decision_json).collect::<Vec<_>>(),
    })
}

/// The kebab-case name of a signature scheme.
pub fn signature_name(s: wit::SignatureScheme) -> &'static str {
    match s {
        wit::SignatureScheme::NotRequired => "not-required",
        wit::SignatureScheme::GithubSha256 => "github-sha256",
        wit::SignatureScheme::GithubSha1 => "github-sha1",
        wit::SignatureScheme::GiteaSha256 => "gitea-sha256",
        wit::SignatureScheme::PlainToken => "plain-token",
        wit::SignatureScheme::BitbucketSha256 => "bitbucket-sha256",
        wit::SignatureScheme::RedeploySha256 => "redeploy-sha256",
    }
}

fn push_json(p: &wit::Push) -> Value {
    json!({
        "repository": p.repository.full_name,
        "urls": p.repository.urls,
        "ref": p.ref_,
        "branch": p.branch,
        "tag": p.tag,
        "before": p.before,
        "after": p.after,
        "created": p.created,
        "deleted": p.deleted,
        "forced": p.forced,
        "pusher": p.pusher,
        "head_message": p.head_message,
        "changed_files": match &p.changed_files {
            wit::ChangedFiles::Complete(f) => json!(f),
            wit::ChangedFiles::Unknown => Value::Null,
        },
    })
}

fn image_json(i: &wit::ImagePush) -> Value {
    json!({
        "registry": i.registry,
        "repository": i.repository,
        "tag": i.tag,
        "digest": i.digest,
        "pusher": i.pusher,
        "callback_url": i.callback_url,
    })
}

fn decision_json(d: &wit::Decision) -> Value {
    let deploy = match &d.action {
        wit::Action::Deploy(e) => Some(deploy_json(e)),
        wit::Action::Skip => None,
    };
    json!({
        "stack": d.stack,
        "action": if deploy.is_some() { "deploy" } else { "skip" },
        "services": d.services,
        "reason": d.reason,
        "deploy": deploy,
    })
}

/// The JSON for a deploy event (what deploy commands receive on stdin).
pub fn deploy_json(e: &wit::DeployEvent) -> Value {
    json!({
        "stack": e.stack,
        "services": e.services,
        "profile": e.profile,
        "ref": e.ref_,
        "branch": e.branch,
        "tag": e.tag,
        "sha": e.sha,
        "repository": e.repository,
        "image": e.image,
        "provider": e.provider,
        "delivery": e.delivery,
        "reason": e.reason,
        "github_deployment_request": e.github_deployment_request.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()),
        "github_deployment_id": e.github_deployment_id,
        "callback_url": e.callback_url,
    })
}
