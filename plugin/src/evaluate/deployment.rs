//! GitHub deployment events: redeploy's own (created for a push it decided)
//! and those created elsewhere, whose ref and payload choices are checked.

use super::decide::{deploy, quote_list, skip, skip_services, DeployTarget};
use super::is_object_id;
use super::prepare::{PreparedService, PreparedStack};
use crate::github;
use crate::matching::{repository_matches, Glob};
use crate::model::{is_git_ref_name, ref_kind, Deployment, Normalized, RefKind, Stack};
use crate::outcome::{Action, Decision, Skip, SkipCode};

pub(super) fn decide_deployment(
    stack: &PreparedStack<'_>,
    n: &Normalized,
    d: &Deployment,
) -> Decision {
    let Some(gh) = &stack.stack.github else {
        return skip(
            stack.stack,
            SkipCode::NotFollowed,
            "deployment events deploy only stacks with GitHub continuous deployment",
        );
    };
    if !gh.repository.eq_ignore_ascii_case(&d.repository.full_name) {
        return skip(
            stack.stack,
            SkipCode::OtherRepository,
            format!(
                "deployment for repository \"{}\", not \"{}\"",
                d.repository.full_name, gh.repository
            ),
        );
    }
    if d.environment != gh.environment {
        return skip(
            stack.stack,
            SkipCode::OtherEnvironment,
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
                SkipCode::OtherStack,
                format!("deployment created for stack \"{owner}\""),
            );
        }
    }
    if !gh.wait_for_event {
        return skip(stack.stack, SkipCode::DeployedOnPush, "this stack deploys on the push itself (wait_for_event = false); the deployment event is only acknowledged");
    }
    // Only the `deploy` task deploys: other tasks (`deploy:migrations`, a
    // bot's own) name work the stack's command was never told about.
    if d.task != github::DEPLOYMENT_TASK {
        return skip(
            stack.stack,
            SkipCode::OtherTask,
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
    // redeploy asks for a pushed commit by its id: the deployment GitHub
    // made of it names that commit. The MAC covers the ref asked for, so a
    // deployment that carries it with another commit was not made from it.
    if created_here && is_object_id(&d.git_ref) && !d.git_ref.eq_ignore_ascii_case(&d.sha) {
        return skip(
            stack.stack,
            SkipCode::ForeignDeployment,
            format!(
                "deployment {} is of commit {}, but redeploy asked for commit {}",
                d.id, d.sha, d.git_ref
            ),
        );
    }
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
        // The services a push chose are in the payload, under the MAC:
        // chosen from every service, whichever repository each follows (a
        // push of one service's repository may make a deployment of its
        // commit in the repository continuous deployment names). A
        // deployment of a branch (a manual trigger's) is of that
        // repository's commit: only its services.
        let of_a_push = is_object_id(&d.git_ref) && !d.payload_services.is_empty();
        if in_repo.is_empty() || of_a_push {
            stack.services.iter().collect()
        } else {
            in_repo
        }
    } else {
        // Anyone who can create deployments on the repository (a workflow
        // on a feature branch, a bot) could send this one: it deploys only
        // where the stack opted in, and then only a ref the stack follows.
        if !gh.accept_foreign_deployments {
            return skip(stack.stack, SkipCode::ForeignDeployment, format!(
                        "deployment {} was not created by redeploy for this stack (no valid redeploy-mac); set accept_foreign_deployments = true to deploy deployments created elsewhere",
                        d.id
                    ));
        }
        match foreign_deployment_services(&in_repo, d) {
            Ok(matched) => matched,
            Err(why) => return skip_services(stack.stack, vec![], why),
        }
    };
    // The push that created the deployment may have chosen services and a
    // profile (`services=`, `deployment_profile=`); its payload carries them.
    // redeploy's MAC covers them; a foreign deployment's payload may only
    // choose what the query could.
    if !created_here {
        if let Some(reason) = foreign_payload_refusal(stack.stack, d) {
            return skip(stack.stack, SkipCode::ForeignDeployment, reason);
        }
    }
    if !d.payload_services.is_empty() {
        services.retain(|s| d.payload_services.contains(&s.service.name));
        // Services redeploy chose that this stack no longer has, or that a
        // deployment made elsewhere chose off its ref: never every service
        // instead.
        if services.is_empty() {
            let code = match created_here {
                true => SkipCode::OtherStack,
                false => SkipCode::ForeignDeployment,
            };
            return skip(
                stack.stack,
                code,
                format!(
                    "deployment {} chooses services {:?}, none of which this stack deploys from it",
                    d.id, d.payload_services
                ),
            );
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
    if let Action::Deploy(event) = &mut decision.action {
        if event.profile.is_some() {
            return decision;
        }
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
pub(super) fn foreign_deployment_services<'a, 's>(
    in_repo: &[&'a PreparedService<'s>],
    d: &Deployment,
) -> Result<Vec<&'a PreparedService<'s>>, Skip> {
    if in_repo.is_empty() {
        return Err(Skip::new(
            SkipCode::OtherRepository,
            format!(
                "deployment {} is for repository \"{}\", which no service of this stack follows",
                d.id, d.repository.full_name
            ),
        ));
    }
    let (kind, short) = ref_kind(&d.git_ref);
    let (kind, short) = match kind {
        _ if d.git_ref.eq_ignore_ascii_case(&d.sha) || is_object_id(&d.git_ref) => {
            return Err(Skip::new(
                SkipCode::NotABranchOrTag,
                format!(
                    "deployment {} names the bare commit \"{}\", not a branch or tag this stack follows",
                    d.id, d.git_ref
                ),
            ))
        }
        RefKind::Other => (RefKind::Branch, short),
        other => (other, short),
    };
    let full = match kind {
        RefKind::Branch if short == d.git_ref => format!("refs/heads/{short}"),
        _ => d.git_ref.clone(),
    };
    if !is_git_ref_name(&full) {
        return Err(Skip::new(
            SkipCode::NotABranchOrTag,
            format!(
                "deployment {} names the ref {:?}, not a name git allows for a branch or tag",
                d.id, d.git_ref
            ),
        ));
    }
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
        let (code, what) = if kind == RefKind::Tag {
            (SkipCode::TagMismatch, "tags")
        } else {
            (SkipCode::BranchMismatch, "branch")
        };
        return Err(Skip::new(
            code,
            format!(
                "deployment {} of \"{short}\" does not match {what} {}",
                d.id,
                quote_list(&pats)
            ),
        ));
    }
    Ok(matched)
}

/// Why a foreign deployment's payload choice is refused: it may name only
/// services and a profile the hook URL's query could choose.
pub(super) fn foreign_payload_refusal(stack: &Stack, d: &Deployment) -> Option<String> {
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
