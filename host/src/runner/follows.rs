//! The runner's last check before a queued deploy runs: that its stack,
//! as this process's configuration has it now, still follows the deploy's
//! ref.
//!
//! A deploy was decided by the configuration of the process that queued
//! it, at that moment. It may run later, elsewhere: after a reload or a
//! restart changed the stack's branch, or on another replica of a shared
//! journal whose file says something else (a rolling change, a mistake).
//! The branch promise is the running process's to keep, so the claim asks
//! the component, by the same rules a push is decided with, whether the
//! stack follows the deploy's branch or tag here; a deploy it does not
//! follow is cancelled, saying why, and never runs
//! ([`crate::journal::Start::refusal`]).
//!
//! Only the ref is checked, as a push to each git repository of the
//! deploy's services (of the stack, when it names none): one of them must
//! follow it. Which repository a forge's push was of is settled at
//! admission, in the forge's own words (a full name and URLs, of which the
//! journal keeps the full name alone: a check by it could refuse a deploy
//! its admission matched by URL). A deploy naming no branch or tag (an
//! image push, a GitHub deployment of a bare commit redeploy did not ask
//! for, a manual trigger of a stack whose services follow several
//! branches) has nothing to check here; a deployment redeploy asked for
//! names the branch or tag of the push that asked (`dispatch::plan`).

use std::collections::BTreeSet;

use crate::config::{Config, StackConfig};
use crate::journal::DeployRecord;
use crate::plugin::{wit, PluginRuntime};

/// How the reason of a deploy this check refused begins: the journal tells
/// such a deploy (cancelled, never run) from the others by it
/// (`journal::admission`'s once-per-push rule does not count it).
pub const REFUSED_PREFIX: &str = "not run: ";

/// The commit a checked deploy is shown as pushing when it names none (a
/// manual trigger's branch): the decision reads the ref, not the commit,
/// and a push must name one.
const UNNAMED_COMMIT: &str = "1111111111111111111111111111111111111111";

/// Why `record` must not run as `stack` of `config` is now, or `None` when
/// the stack follows its ref (or it names no branch or tag). An evaluation
/// the component cannot finish (no instance free in time, a trap) is no
/// answer: the deploy, which a component's decision admitted, runs, and the
/// failure is logged; cancelling it would lose it for good.
pub fn refusal(
    runtime: &PluginRuntime,
    config: &Config,
    stack: &StackConfig,
    record: &DeployRecord,
) -> Option<String> {
    let git_ref = record
        .queued
        .git_ref
        .as_deref()
        .filter(|r| r.starts_with("refs/heads/") || r.starts_with("refs/tags/"))?;
    let commit = record
        .queued
        .sha
        .as_deref()
        .filter(|sha| crate::poll::tips::is_object_id(sha))
        .unwrap_or(UNNAMED_COMMIT);
    let update = wit::RefUpdate {
        old: "0".repeat(commit.len()),
        new: commit.to_owned(),
        name: git_ref.to_owned(),
    };
    let mut wit_stack = crate::stacks::wit_stack(stack);
    // The deploy's own services: one of them must follow the ref (a
    // service that follows another branch now does not carry it).
    let named = &record.queued.services;
    if !wit_stack.services.is_empty() && !named.is_empty() {
        wit_stack.services.retain(|s| named.contains(&s.name));
        if wit_stack.services.is_empty() {
            let reason = format!(
                "{REFUSED_PREFIX}stack \"{}\" as configured here has none of the services {}",
                stack.name,
                named.join(", ")
            );
            return Some(crate::text::one_line(&reason).into_owned());
        }
    }
    // Resolved as the component compares them (`stacks::wit_stack`).
    let repositories: BTreeSet<&String> = wit_stack
        .repository
        .iter()
        .chain(
            wit_stack
                .services
                .iter()
                .filter_map(|s| s.repository.as_ref()),
        )
        .collect();
    let context = crate::stacks::dry_run_context(config);
    let stacks = [wit_stack.clone()];
    let mut why = Vec::new();
    for repository in &repositories {
        let delivery = wit::Delivery::PostReceive(wit::PostReceive {
            repository: (*repository).clone(),
            updates: vec![update.clone()],
            pusher: None,
            query: String::new(),
        });
        match runtime.evaluate(&stacks, &delivery, &context) {
            Ok(Ok(outcome)) => match outcome.decisions.into_iter().next() {
                Some(d) if !matches!(d.action, wit::Action::Skip(_)) => return None,
                Some(d) => why.push(d.reason),
                None => why.push("no decision".to_owned()),
            },
            Ok(Err(e)) => why.push(e.describe()),
            Err(trap) => {
                tracing::warn!(deploy = record.id, stack = %stack.name, error = %trap.0, "the component could not check that the configuration follows the deploy's ref; running it as admitted");
                return None;
            }
        }
    }
    if repositories.is_empty() {
        why.push("it follows no git repository".to_owned());
    }
    let reason = format!(
        "{REFUSED_PREFIX}stack \"{}\" as configured here does not follow {}: {}",
        stack.name,
        crate::config::shown_setting(git_ref),
        why.join("; ")
    );
    Some(crate::text::one_line(&reason).into_owned())
}
