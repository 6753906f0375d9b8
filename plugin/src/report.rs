//! The outcome as the stable JSON document `redeploy check` prints (the
//! WIT `json.report` and `json.evaluate-json` return it), and a deploy
//! event as the document deploy commands read (the WIT deploy event's
//! `document`). The field names are a documented interface: change them
//! only with a new WIT version.

use serde_json::{json, Value};

use crate::model::{ChangedFiles, ImagePush, Push};
use crate::outcome::{Decision, DeployEvent, Outcome, SkipCode};

/// The JSON document for an outcome.
pub fn outcome_json(o: &Outcome) -> Value {
    json!({
        "provider": o.provider.as_str(),
        "event": o.event,
        "delivery": o.delivery,
        "signature": o.signature.as_str(),
        "sent_at_ms": o.sent_at_ms,
        "pushes": o.pushes.iter().map(push_json).collect::<Vec<_>>(),
        "images": o.images.iter().map(image_json).collect::<Vec<_>>(),
        "decisions": o.decisions.iter().map(decision_json).collect::<Vec<_>>(),
    })
}

fn push_json(p: &Push) -> Value {
    let (kind, short) = p.ref_kind();
    json!({
        "repository": p.repository.full_name,
        "urls": p.repository.urls,
        "ref": p.git_ref,
        "branch": (kind == crate::model::RefKind::Branch).then_some(short),
        "tag": (kind == crate::model::RefKind::Tag).then_some(short),
        "before": p.before,
        "after": p.after,
        "created": p.created,
        "deleted": p.deleted,
        "forced": p.forced,
        "pusher": p.pusher,
        "head_message": p.head_message,
        "changed_files": match &p.changed_files {
            ChangedFiles::Complete(f) => json!(f),
            ChangedFiles::Unknown => Value::Null,
        },
    })
}

fn image_json(i: &ImagePush) -> Value {
    json!({
        "registry": i.registry,
        "repository": i.repository,
        "tag": i.tag,
        "digest": i.digest,
        "pusher": i.pusher,
        "callback_url": i.callback_url,
    })
}

fn decision_json(d: &Decision) -> Value {
    json!({
        "stack": d.stack,
        "action": d.action.as_str(),
        "skip": d.skip().map(SkipCode::as_str),
        "services": d.services,
        "reason": d.reason,
        "deploy": d.deploy().map(deploy_json),
    })
}

/// The JSON for a deploy event (also what deploy commands receive on stdin).
pub fn deploy_json(e: &DeployEvent) -> Value {
    json!({
        "stack": e.stack,
        "services": e.services,
        "profile": e.profile,
        "ref": e.git_ref,
        "branch": e.branch,
        "tag": e.tag,
        "sha": e.sha,
        "repository": e.repository,
        "image": e.image,
        "provider": e.provider.as_str(),
        "delivery": e.delivery,
        "reason": e.reason,
        "github_deployment_request": e.github_deployment_request.as_deref().and_then(|s| serde_json::from_str::<Value>(s).ok()),
        "github_deployment_id": e.github_deployment_id,
        "callback_url": e.callback_url,
    })
}
