//! GitHub `deployment` events whose `redeploy-mac` is valid but whose
//! deployment no request of redeploy's made.
//!
//! The MAC redeploy puts in a deployment's payload covers the stack, ref,
//! environment, services and profile it asks for, never the id GitHub
//! then gives the deployment: anyone who may create deployments on the
//! repository (and read one of redeploy's payloads) can copy the payload
//! onto a deployment of their own, which GitHub signs and sends like any
//! other. Such a deployment is judged as one made elsewhere: the delivery
//! is evaluated again without the deployment key (no MAC verifies), so a
//! stack that does not accept foreign deployments skips it, and one that
//! does deploys only a ref it follows, by the component's own rules.

use crate::config::Config;
use crate::journal::{Journal, JournalError};
use crate::plugin::{wit, PluginRuntime};

/// Replaces, in `outcome` of `delivery` for `stacks`, the decision of each
/// stack whose deploy is of a GitHub deployment none of its requests made
/// ([`Journal::deployment_requested`]) by the component's decision without
/// the deployment key, saying why; returns those stacks. (Such an event is
/// not noted as its deployment's: should a request's answer name that
/// deployment after all, recorded meanwhile, the journal runs it once
/// `event_wait` has passed.)
pub(super) fn judge_unrequested(
    runtime: &PluginRuntime,
    journal: &Journal,
    config: &Config,
    stacks: &[wit::Stack],
    delivery: &wit::Delivery,
    outcome: &mut wit::Outcome,
) -> Result<Vec<String>, JournalError> {
    if outcome.provider != wit::Provider::Github || outcome.event != "deployment" {
        return Ok(Vec::new());
    }
    let mut unrequested: Vec<(usize, u64)> = Vec::new();
    for (at, decision) in outcome.decisions.iter().enumerate() {
        let wit::Action::Deploy(event) = &decision.action else {
            continue;
        };
        let Some(id) = event.github_deployment_id else {
            continue;
        };
        if !journal.deployment_requested(&decision.stack, id, event.sha.as_deref())? {
            unrequested.push((at, id));
        }
    }
    if unrequested.is_empty() {
        return Ok(Vec::new());
    }
    let context = crate::stacks::evaluation_context(config, None);
    let again = match runtime.evaluate(stacks, delivery, &context) {
        Ok(Ok(again)) if again.decisions.len() == outcome.decisions.len() => Some(again),
        _ => None,
    };
    let mut judged_foreign = Vec::with_capacity(unrequested.len());
    for (at, id) in unrequested {
        let said = format!(
            "redeploy never asked GitHub for deployment {id}, whose redeploy-mac is copied \
             from one it did: judged as a deployment created elsewhere"
        );
        let decision = &mut outcome.decisions[at];
        judged_foreign.push(decision.stack.clone());
        *decision = match &again {
            // Made elsewhere, and judged so already (no MAC): as it was.
            Some(again) if again.decisions[at].reason == decision.reason => continue,
            Some(again) => {
                let mut judged = again.decisions[at].clone();
                judged.reason = format!("{said}: {}", judged.reason);
                judged
            }
            None => wit::Decision {
                stack: decision.stack.clone(),
                action: wit::Action::Skip(wit::SkipCode::ForeignDeployment),
                services: Vec::new(),
                reason: said,
            },
        };
    }
    Ok(judged_foreign)
}
