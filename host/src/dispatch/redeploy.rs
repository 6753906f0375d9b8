//! An operator's redeploy of an earlier deploy ([`crate::rollback`]),
//! admitted like any deploy: recorded as a delivery of its own, judged by
//! the journal with the commit order's `requested` flag, and handed to the
//! runner.

use std::time::Duration;

use serde_json::{json, Value};

use super::{error_body, log_unrecorded, replay_key, Dispatched, Dispatcher};
use crate::config::StackConfig;
use crate::journal::{now_ms, Admission, Admitted, CommitClaim, Inserted, ReplayClaim};

impl Dispatcher {
    /// Queues a redeploy of deploy `deploy_id` of `stack` (an operator's
    /// rollback, [`crate::rollback`]). A signed request deploys once per
    /// `signed` (what it signed) within `window`; an unsigned one (a stack
    /// without secrets) each time, as a manual trigger does. The caller has authorized it.
    /// Blocking: call it off the runtime's workers (a blocking thread, or
    /// inside `block_in_place`).
    pub fn redeploy(
        &self,
        stack: &StackConfig,
        deploy_id: i64,
        signed: Option<&[u8]>,
        window: Duration,
    ) -> Dispatched {
        let label = Some(stack.name.as_str());
        let provider = crate::rollback::PROVIDER;
        // A redeploy is recorded as a delivery of its own, with no request,
        // before its answer.
        let record = |status: u16, body: &Value| {
            log_unrecorded(
                self.record(
                    label,
                    Some(provider),
                    Some("redeploy"),
                    None,
                    status,
                    body,
                    None,
                )
                .wait(),
            )
        };
        let refuse = |status: u16, kind: &str, message: String| {
            let body = error_body(kind, &message);
            record(status, &body);
            Dispatched::unrecorded(status, body)
        };
        let earlier = match self.journal.deploy(deploy_id) {
            Ok(Some(d)) if d.queued.stack == stack.name => d,
            Ok(_) => {
                return refuse(
                    404,
                    "not-found",
                    format!(
                        "stack \"{}\" has no deploy #{deploy_id} in the journal (never, or pruned)",
                        stack.name
                    ),
                )
            }
            Err(e) => {
                tracing::error!(stack = %stack.name, error = %e, "journal: cannot read a deploy");
                return refuse(
                    503,
                    "journal-unavailable",
                    "the journal cannot be read; retry later".into(),
                );
            }
        };
        let now = now_ms();
        let new = crate::rollback::new_deploy(&earlier, now);
        let admission = Admission {
            replay: signed.map(|signed| {
                ReplayClaim::new(
                    replay_key(&stack.name, None, "redeploy", signed),
                    now,
                    window,
                )
            }),
            commit: new.sha.clone().map(|sha| CommitClaim {
                sha,
                before: None,
                forced: false,
                sender_reports_forced: false,
                requested: true,
                once: false,
            }),
            deployment_request: None,
            image: None,
        };
        let mut entry = json!({
            "stack": stack.name,
            "action": "deploy",
            "skip": null,
            "services": new.services,
            "reason": new.reason,
            "redeploy_of": deploy_id,
        });
        let mut accepted = false;
        match self
            .journal
            .admit_deploy_to_run(&new, &admission, self.sink.placer())
        {
            // A redeploy asks GitHub for no deployment: never `Requested`.
            Ok((
                Admitted::Inserted(Inserted::New(id)) | Admitted::Requested { deploy_id: id, .. },
                queued,
            )) => match self.queue_new(id, queued, &mut entry) {
                Some(queued) => accepted = queued,
                None => {
                    return refuse(
                        503,
                        "journal-unavailable",
                        "the journal cannot record this deploy; retry later".into(),
                    )
                }
            },
            Ok((
                Admitted::Replayed {
                    deploy_id: first, ..
                },
                _,
            )) => {
                entry["state"] = json!("duplicate");
                entry["deploy_id"] = json!(first);
                entry["reason"] = json!(format!(
                    "this signed redeploy request was already accepted{}; each one deploys once",
                    first.map_or_else(String::new, |id| format!(" as deploy #{id}"))
                ));
            }
            // A requested commit is never judged older, and a deploy
            // without a delivery id is never a duplicate; should either
            // happen, the answer says what the journal did.
            Ok((
                Admitted::Older {
                    deploy_id: id,
                    reason,
                    ..
                },
                _,
            )) => {
                entry["deploy_id"] = json!(id);
                entry["state"] = json!("cancelled");
                entry["reason"] = json!(reason);
            }
            Ok((
                Admitted::Inserted(Inserted::Duplicate(id))
                | Admitted::SameCommit { deploy_id: id },
                _,
            )) => {
                entry["deploy_id"] = json!(id);
                entry["state"] = json!("duplicate");
            }
            Err(e) => {
                tracing::error!(stack = %stack.name, error = %e, "journal: cannot record a deploy");
                return refuse(
                    503,
                    "journal-unavailable",
                    "the journal cannot record this deploy; retry later".into(),
                );
            }
        }
        let status = if accepted { 202 } else { 200 };
        let body = json!({
            "provider": provider,
            "event": "redeploy",
            "delivery": null,
            "decisions": [entry],
        });
        self.metrics
            .delivery(provider, if accepted { "deploy" } else { "skip" });
        record(status, &body);
        Dispatched::unrecorded(status, body)
    }
}
