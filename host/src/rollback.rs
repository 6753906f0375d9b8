//! Redeploying an earlier deploy from `history`: the operator's rollback.
//!
//! `redeploy trigger STACK --redeploy ID` posts to
//! `/hooks/{token}/redeploy/{id}`; the server queues a new deploy of the
//! same commit, ref, services and profile as deploy `ID` of that stack. It
//! names its commit on purpose, so the commit-order rule lets it through
//! ([`crate::commit_order::Candidate::requested`]) and makes it the stack's
//! head: a late delivery of the newer commit does not undo the rollback.
//!
//! Because it chooses a commit, the hook URL alone does not authorize it on
//! a stack with secrets: the request is then signed ([`sign`]) over the
//! stack, the deploy id and a timestamp, fresh within [`MAX_SKEW`], and
//! each signature deploys once. A stack without secrets takes the URL
//! alone, as it does for every delivery. A stack that refuses manual
//! triggers refuses this too.

use std::time::Duration;

use hmac::{Hmac, Mac as _};
use serde_json::Value;
use sha2::Sha256;

use crate::journal::{DeployRecord, NewDeploy};

/// How far a redeploy request's timestamp may be from the server's clock,
/// the same window a forwarded post-receive push has (the server's
/// `POST_RECEIVE_MAX_SKEW` is this constant).
pub const MAX_SKEW: Duration = Duration::from_secs(5 * 60);

/// Whether a signed request's `timestamp` (a redeploy, or a forwarded
/// post-receive push) is within [`MAX_SKEW`] of `now_secs`, either way.
pub fn is_fresh(timestamp: u64, now_secs: u64) -> bool {
    timestamp.abs_diff(now_secs) <= MAX_SKEW.as_secs()
}

/// The provider recorded for a redeploy (`REDEPLOY_PROVIDER`): an
/// operator's action, as a manual trigger is.
pub const PROVIDER: &str = "manual";

/// What a redeploy request signs: `redeploy:<stack>:<id>:<timestamp>`.
/// A stack name holds no `:`, and the other parts are digits.
pub fn signed_text(stack: &str, deploy_id: i64, timestamp: &str) -> String {
    format!("redeploy:{stack}:{deploy_id}:{timestamp}")
}

fn mac(secret: &str, stack: &str, deploy_id: i64, timestamp: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac-sha256 takes keys of any length"));
    mac.update(signed_text(stack, deploy_id, timestamp).as_bytes());
    mac
}

/// The `X-Redeploy-Signature-256` value of a redeploy of deploy
/// `deploy_id` of `stack` at `timestamp` (Unix seconds): `sha256=` and the
/// hex HMAC-SHA256 of [`signed_text`], keyed with a stack secret.
pub fn sign(secret: &str, stack: &str, deploy_id: i64, timestamp: &str) -> String {
    format!(
        "sha256={}",
        hex::encode(
            mac(secret, stack, deploy_id, timestamp)
                .finalize()
                .into_bytes()
        )
    )
}

/// Whether `presented` is [`sign`]'s value for one of `secrets` (constant
/// time per secret).
pub fn verify<'a>(
    secrets: impl IntoIterator<Item = &'a str>,
    stack: &str,
    deploy_id: i64,
    timestamp: &str,
    presented: &str,
) -> bool {
    let Some(sig) = presented
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    secrets.into_iter().any(|s| {
        mac(s, stack, deploy_id, timestamp)
            .verify_slice(&sig)
            .is_ok()
    })
}

/// The new deploy that redeploys `earlier`: the same stack, commit, ref,
/// repository, services and profile, no delivery id, and an event without what belonged
/// to the earlier delivery alone (its GitHub deployment, its registry
/// callback), so no status goes to a deployment or callback of the past.
pub fn new_deploy(earlier: &DeployRecord, now_ms: i64) -> NewDeploy {
    let reason = format!("redeploy of deploy #{} (an operator's request)", earlier.id);
    let mut event: Value = serde_json::from_str(&earlier.queued.event_json)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| Value::Object(serde_json::Map::new()));
    for (key, value) in [
        ("provider", Value::from(PROVIDER)),
        ("reason", Value::from(reason.as_str())),
        ("delivery", Value::Null),
        ("github_deployment_request", Value::Null),
        ("github_deployment_id", Value::Null),
        ("callback_url", Value::Null),
        ("redeploy_of", Value::from(earlier.id)),
    ] {
        event[key] = value;
    }
    NewDeploy {
        stack: earlier.queued.stack.clone(),
        delivery_id: None,
        provider: PROVIDER.to_string(),
        git_ref: earlier.queued.git_ref.clone(),
        sha: earlier.queued.sha.clone(),
        services: earlier.queued.services.clone(),
        profile: earlier.queued.profile.clone(),
        reason,
        event_json: event.to_string(),
        created_at_ms: now_ms,
        // The operator asked for it; nobody pushed.
        pusher: None,
        repository: earlier.queued.repository.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::DeployState;

    fn record(event_json: &str) -> DeployRecord {
        DeployRecord {
            queued: NewDeploy {
                stack: "web".into(),
                delivery_id: Some("d-1".into()),
                provider: "github".into(),
                git_ref: Some("refs/heads/main".into()),
                sha: Some("a".repeat(40)),
                services: vec!["api".into()],
                profile: Some("fast".into()),
                reason: "push to main".into(),
                event_json: event_json.into(),
                created_at_ms: 1,
                pusher: Some("alice".into()),
                repository: None,
            },
            id: 7,
            state: DeployState::Succeeded,
            started_at_ms: Some(2),
            finished_at_ms: Some(3),
            exit_code: Some(0),
            log_path: None,
            detail: None,
            superseded_by: None,
        }
    }

    #[test]
    fn a_redeploy_copies_the_commit_and_drops_what_belonged_to_the_delivery() {
        let earlier = record(
            r#"{"stack":"web","branch":"main","provider":"github","delivery":"d-1",
                "github_deployment_id":5,"callback_url":"https://x/cb","repository":"o/r"}"#,
        );
        let d = new_deploy(&earlier, 99);
        assert_eq!(d.sha, earlier.queued.sha);
        assert_eq!(d.git_ref, earlier.queued.git_ref);
        assert_eq!(d.services, earlier.queued.services);
        assert_eq!(d.profile, earlier.queued.profile);
        assert_eq!(d.delivery_id, None);
        assert_eq!(d.provider, "manual");
        assert_eq!(d.created_at_ms, 99);
        let event: Value = serde_json::from_str(&d.event_json).unwrap();
        assert_eq!(event["branch"], "main");
        assert_eq!(event["repository"], "o/r");
        assert_eq!(event["redeploy_of"], 7);
        assert_eq!(event["delivery"], Value::Null);
        assert_eq!(event["github_deployment_id"], Value::Null);
        assert_eq!(event["callback_url"], Value::Null);
        assert_eq!(event["reason"], d.reason);
        // An event that is not an object (a journal row from elsewhere)
        // still gives a well-formed one.
        let d = new_deploy(&record("[1]"), 99);
        let event: Value = serde_json::from_str(&d.event_json).unwrap();
        assert_eq!(event["redeploy_of"], 7);
    }

    #[test]
    fn a_signature_covers_stack_deploy_and_time() {
        let sig = sign("s3cret-key", "web", 7, "1700000000");
        assert!(verify(
            ["other-key", "s3cret-key"],
            "web",
            7,
            "1700000000",
            &sig
        ));
        assert!(!verify(["s3cret-key"], "api", 7, "1700000000", &sig));
        assert!(!verify(["s3cret-key"], "web", 8, "1700000000", &sig));
        assert!(!verify(["s3cret-key"], "web", 7, "1700000001", &sig));
        assert!(!verify(["other-key"], "web", 7, "1700000000", &sig));
        assert!(!verify(["s3cret-key"], "web", 7, "1700000000", "sha256=zz"));
        assert!(!verify(["s3cret-key"], "web", 7, "1700000000", &sig[7..]));
    }
}
