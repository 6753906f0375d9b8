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
    // A struct of strings, numbers and `Value`s always serializes.
    serde_json::to_value(DeployDocument::of(e)).unwrap_or(Value::Null)
}

/// [`deploy_json`] as the text deploy commands read: the same document,
/// written from the event's fields without building the map first.
pub fn deploy_document(e: &DeployEvent) -> String {
    // A struct of strings, numbers and `Value`s always serializes.
    serde_json::to_string(&DeployDocument::of(e)).unwrap_or_default()
}

/// A deploy event's document. The fields are declared in the order a
/// `serde_json` map (a `BTreeMap`) writes its keys, alphabetical, so that
/// the text is the same whether written from this struct or from the map
/// [`deploy_json`] gives.
#[derive(serde::Serialize)]
struct DeployDocument<'a> {
    branch: &'a Option<String>,
    callback_url: &'a Option<String>,
    delivery: &'a Option<String>,
    github_deployment_id: Option<u64>,
    /// The request body, parsed back into JSON (`null` if it is not).
    github_deployment_request: Option<Value>,
    image: &'a Option<String>,
    profile: &'a Option<String>,
    provider: &'a str,
    reason: &'a str,
    #[serde(rename = "ref")]
    git_ref: &'a Option<String>,
    repository: &'a Option<String>,
    services: &'a [String],
    sha: &'a Option<String>,
    stack: &'a str,
    tag: &'a Option<String>,
}

impl<'a> DeployDocument<'a> {
    fn of(e: &'a DeployEvent) -> Self {
        DeployDocument {
            branch: &e.branch,
            callback_url: &e.callback_url,
            delivery: &e.delivery,
            github_deployment_id: e.github_deployment_id,
            github_deployment_request: e
                .github_deployment_request
                .as_deref()
                .and_then(|s| serde_json::from_str::<Value>(s).ok()),
            image: &e.image,
            profile: &e.profile,
            provider: e.provider.as_str(),
            reason: &e.reason,
            git_ref: &e.git_ref,
            repository: &e.repository,
            services: &e.services,
            sha: &e.sha,
            stack: &e.stack,
            tag: &e.tag,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{deploy_document, deploy_json};
    use crate::model::Provider;
    use crate::outcome::DeployEvent;

    fn event(github: bool) -> DeployEvent {
        DeployEvent {
            stack: "web".into(),
            services: vec!["api".into(), "worker \"2\"".into()],
            profile: github.then(|| "staging".into()),
            git_ref: Some("refs/heads/main".into()),
            branch: Some("main".into()),
            tag: None,
            sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
            repository: Some("octo/web".into()),
            image: None,
            provider: Provider::Github,
            delivery: Some("d-1".into()),
            reason: "push to \"main\"".into(),
            github_deployment_request: github
                .then(|| r#"{"ref":"main","auto_merge":false}"#.into()),
            github_deployment_id: github.then_some(42),
            callback_url: None,
        }
    }

    #[test]
    fn the_deploy_document_is_the_map_it_replaced_key_for_key() {
        for github in [false, true] {
            let e = event(github);
            let text = deploy_document(&e);
            // A map's text, keys sorted: the struct's field order must be.
            assert_eq!(text, deploy_json(&e).to_string());
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(parsed["ref"], "refs/heads/main");
            assert_eq!(parsed["provider"], "github");
            assert_eq!(parsed["services"][1], "worker \"2\"");
            let keys: Vec<_> = parsed.as_object().unwrap().keys().cloned().collect();
            assert_eq!(keys.len(), 15);
        }
        let with_request: serde_json::Value =
            serde_json::from_str(&deploy_document(&event(true))).unwrap();
        assert_eq!(
            with_request["github_deployment_request"]["auto_merge"],
            false
        );
        assert_eq!(with_request["github_deployment_id"], 42);
        let without: serde_json::Value =
            serde_json::from_str(&deploy_document(&event(false))).unwrap();
        assert!(without["github_deployment_request"].is_null());
    }

    /// The text the `json!` map wrote before the struct, key for key, read
    /// off the event: every field named as deploy commands read it.
    #[test]
    fn the_deploy_document_names_every_field_as_before() {
        assert_eq!(
            deploy_document(&event(false)),
            concat!(
                r#"{"branch":"main","callback_url":null,"delivery":"d-1","#,
                r#""github_deployment_id":null,"github_deployment_request":null,"#,
                r#""image":null,"profile":null,"provider":"github","#,
                r#""reason":"push to \"main\"","ref":"refs/heads/main","#,
                r#""repository":"octo/web","services":["api","worker \"2\""],"#,
                r#""sha":"0123456789abcdef0123456789abcdef01234567","stack":"web","tag":null}"#
            )
        );
        let image = DeployEvent {
            stack: "app".into(),
            services: Vec::new(),
            profile: None,
            git_ref: None,
            branch: None,
            tag: Some("v2".into()),
            sha: None,
            repository: None,
            image: Some("docker.io/acme/app:v2".into()),
            provider: Provider::DockerHub,
            delivery: None,
            reason: "image pushed".into(),
            // Not JSON: written as null, as the map did.
            github_deployment_request: Some("{not json".into()),
            github_deployment_id: None,
            callback_url: Some("https://registry.hub.docker.com/u/acme/app/hook/1/".into()),
        };
        assert_eq!(
            deploy_document(&image),
            concat!(
                r#"{"branch":null,"callback_url":"https://registry.hub.docker.com/u/acme/app/hook/1/","#,
                r#""delivery":null,"github_deployment_id":null,"github_deployment_request":null,"#,
                r#""image":"docker.io/acme/app:v2","profile":null,"provider":"docker-hub","#,
                r#""reason":"image pushed","ref":null,"repository":null,"services":[],"#,
                r#""sha":null,"stack":"app","tag":"v2"}"#
            )
        );
    }
}
