//! A prepared stack's decisions: what a push, an image push, a ping or a
//! manual trigger deploys of it, or why nothing. One decision per stack,
//! save that a push moving several refs followed by different services of
//! it (or a registry event naming several images they follow) gives one
//! per ref (image) some service takes, each deploying it alone: a deploy
//! is of one ref (`DeployEvent::git_ref`), and the host queues each ref's
//! deploys in a lane of their own. A service takes the last ref (image) it
//! follows, so a stack never has more decisions than services.

use std::collections::BTreeMap;

use super::deployment::decide_deployment;
use super::prepare::{PreparedService, PreparedStack};
use crate::github;
use crate::matching::{
    image_reference, path_matches, repository_matches, shown_setting, Glob, ImageMismatch,
};
use crate::model::{
    is_git_ref_name, ref_kind, Deployment, Event, ImagePush, ManualPolicy, Normalized, PingAction,
    Provider, Push, RefKind, Repository, Stack,
};
use crate::outcome::{Action, Decision, DeployEvent, Skip, SkipCode};

/// `stack` skips, concerning no service, with the code and sentence.
pub(super) fn skip(stack: &Stack, code: SkipCode, reason: impl Into<String>) -> Decision {
    skip_services(stack, vec![], Skip::new(code, reason))
}

/// `stack` skips a source no service of it follows (`what`: "an image").
fn not_followed(stack: &PreparedStack<'_>, what: &str) -> Decision {
    skip(
        stack.stack,
        SkipCode::NotFollowed,
        format!("no service of this stack follows {what}"),
    )
}

/// `stack` skips, naming the services concerned.
pub(super) fn skip_services(stack: &Stack, services: Vec<String>, why: Skip) -> Decision {
    Decision {
        stack: stack.name.clone(),
        action: Action::Skip(why.code),
        services,
        reason: why.reason,
    }
}

/// How a ref update or image reached the plugin, for the words of its
/// reasons: sent by a forge, registry or git hook, or found by the host's
/// polling of the source (which decides by the same rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    Pushed,
    Polled,
}

impl Seen {
    fn of(n: &Normalized) -> Seen {
        if n.provider == Provider::Poll {
            Seen::Polled
        } else {
            Seen::Pushed
        }
    }

    /// `push to "main"`, or `polled branch "main"`.
    fn branch(self, short: &str) -> String {
        match self {
            Seen::Pushed => format!("push to \"{short}\""),
            Seen::Polled => format!("polled branch \"{short}\""),
        }
    }

    /// `pushed` or `polled`.
    fn verb(self) -> &'static str {
        match self {
            Seen::Pushed => "pushed",
            Seen::Polled => "polled",
        }
    }
}

/// The first seven characters of an object id, as git abbreviates one.
fn short_id(id: &str) -> &str {
    id.get(..7).unwrap_or(id)
}

pub(super) fn service_names(services: &[&PreparedService<'_>]) -> Vec<String> {
    services.iter().map(|s| s.service.name.clone()).collect()
}

/// Adds `stack`'s decisions on `n` to `out`: one, or one per ref (image)
/// of `n` the stack follows (the module's doc).
pub(super) fn decide(stack: &PreparedStack<'_>, n: &Normalized, out: &mut Vec<Decision>) {
    let one = match &n.event {
        Event::Push(pushes) => return decide_push(stack, n, pushes, out),
        Event::ImagePush(images) => return decide_image(stack, n, images, out),
        Event::Ping { repository } => decide_ping(stack, n, repository.as_ref()),
        Event::Deployment(d) => decide_deployment(stack, n, d),
        Event::Manual => {
            let services: Vec<&PreparedService> = stack.services.iter().collect();
            // `services=` in the query narrowed them (`prepare`).
            let chosen = services.len() < stack.stack.services.len();
            let names = service_names(&services);
            deploy_without_push(stack, n, &services, |_| match chosen {
                true => format!(
                    "manual trigger deploys the services chosen: {}",
                    names.join(", ")
                ),
                false => "manual trigger deploys every service".to_string(),
            })
        }
        Event::Ignored { reason } => skip(stack.stack, SkipCode::NotADeployEvent, reason.clone()),
    };
    out.push(one);
}

/// What a deploy is of, for the deploy event.
#[derive(Default)]
pub(super) struct DeployTarget<'a> {
    pub(super) push: Option<&'a Push>,
    pub(super) branch: Option<String>,
    pub(super) image: Option<&'a ImagePush>,
    pub(super) deployment: Option<&'a Deployment>,
}

/// The one branch every git service follows, when it is a plain name, so
/// that a ping or manual trigger can say which branch it deploys.
pub(super) fn single_literal_branch(services: &[&PreparedService<'_>]) -> Option<String> {
    let mut branches = services.iter().filter_map(|s| s.branch.as_ref());
    let first = branches.next()?.literal()?;
    branches
        .all(|b| b.literal() == Some(first))
        .then(|| first.to_string())
}

/// Deploys `services` without a push (a manual trigger, a ping): the
/// event names the branch when every git service follows the same plain
/// one, and `reason` says why given that branch.
fn deploy_without_push(
    stack: &PreparedStack<'_>,
    n: &Normalized,
    services: &[&PreparedService<'_>],
    reason: impl FnOnce(Option<&str>) -> String,
) -> Decision {
    let branch = single_literal_branch(services);
    let reason = reason(branch.as_deref());
    deploy(
        stack,
        n,
        services,
        DeployTarget {
            branch,
            ..Default::default()
        },
        reason,
    )
}

pub(super) fn deploy(
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
        git_ref: None,
        branch: None,
        tag: None,
        sha: None,
        repository: None,
        image: None,
        provider: n.provider,
        delivery: n.delivery.clone(),
        reason: reason.clone(),
        github_deployment_request: None,
        github_deployment_id: None,
        callback_url: None,
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
    // With continuous deployment waiting for GitHub's `deployment` event,
    // the push only asks for the deployment; the event deploys.
    let waits = stack
        .stack
        .github
        .as_ref()
        .is_some_and(|g| g.wait_for_event);
    let action = if waits && event.github_deployment_request.is_some() {
        Action::RequestDeployment(event)
    } else {
        Action::Deploy(event)
    };
    Decision {
        stack: stack.stack.name.clone(),
        action,
        services: names,
        reason,
    }
}

/// Adds `stack`'s decisions on the ref updates `pushes` to `out`. Each
/// service deploys the last ref it follows that the push moved (forges and
/// git list updates in order; a ref listed twice is judged by its last
/// entry, so one updated and then deleted deploys nothing), and the
/// services taking one ref deploy it together: one decision per ref that
/// some service takes, in the push's order, deploying or skipping that ref
/// alone. So a push of `main` and
/// `develop` deploys `web` (on `main`) and `worker` (on `develop`) each,
/// while a service following both, or every tag of `git push --tags`,
/// deploys once, at the last: never more decisions than services. A stack
/// following none of the refs has one skip, with the first ref's reason.
pub(super) fn decide_push(
    stack: &PreparedStack<'_>,
    n: &Normalized,
    pushes: &[Push],
    out: &mut Vec<Decision>,
) {
    let git_services = stack.git_services();
    if git_services.is_empty() {
        return out.push(not_followed(stack, "a git repository"));
    }
    if pushes.is_empty() {
        return out.push(skip(stack.stack, SkipCode::NoRef, "the push names no ref"));
    }
    let seen = Seen::of(n);
    // For each git service, the index in `pushes` of the last ref it follows.
    // A ref listed more than once is where its last entry leaves it: an
    // update followed by the ref's deletion deploys nothing.
    let last_entry: BTreeMap<(&str, &str), usize> = pushes
        .iter()
        .enumerate()
        .map(|(at, p)| ((p.repository.full_name.as_str(), p.git_ref.as_str()), at))
        .collect();
    let mut taken: Vec<Option<usize>> = vec![None; git_services.len()];
    let mut first_skip: Option<Skip> = None;
    for (at, push) in pushes.iter().enumerate() {
        let key = (push.repository.full_name.as_str(), push.git_ref.as_str());
        if last_entry.get(&key) != Some(&at) {
            continue;
        }
        match match_push(&git_services, push, seen) {
            Ok(services) => {
                for (slot, service) in taken.iter_mut().zip(&git_services) {
                    if services.iter().any(|s| std::ptr::eq(*s, *service)) {
                        *slot = Some(at);
                    }
                }
            }
            Err(why) => {
                first_skip.get_or_insert(why);
            }
        }
    }
    let groups = taken_together(&git_services, &taken);
    if groups.is_empty() {
        // `pushes` is not empty, so a push that did not match left its reason.
        let mut why = first_skip.unwrap_or_else(|| Skip::new(SkipCode::NoRef, "no push matches"));
        // The first ref's reason stands for all: say there were others.
        if let Some(others) = pushes.len().checked_sub(1).filter(|&n| n > 0) {
            let refs = if others == 1 {
                "ref deploys"
            } else {
                "refs deploy"
            };
            why.reason.push_str(&format!(
                " (the push's {others} other {refs} nothing either)"
            ));
        }
        return out.push(skip_services(stack.stack, vec![], why));
    }
    for (at, services) in groups {
        out.push(decide_ref(stack, n, &pushes[at], &services, seen));
    }
}

/// The services taking each entry of a delivery (a ref update, an image),
/// by `taken`, each service's entry (`taken[i]` of `services[i]`): one
/// group per entry some service takes, in the delivery's order.
fn taken_together<'a, 's>(
    services: &[&'a PreparedService<'s>],
    taken: &[Option<usize>],
) -> Vec<(usize, Vec<&'a PreparedService<'s>>)> {
    let mut entries: Vec<usize> = taken.iter().flatten().copied().collect();
    entries.sort_unstable();
    entries.dedup();
    entries
        .into_iter()
        .map(|at| {
            let together = services
                .iter()
                .zip(taken)
                .filter(|(_, slot)| **slot == Some(at))
                .map(|(service, _)| *service)
                .collect();
            (at, together)
        })
        .collect()
}

/// `stack`'s decision on `push`, a ref update `services` follow: it
/// deploys them, unless every commit carries a skip marker or no changed
/// file matches the stack's `paths`.
fn decide_ref(
    stack: &PreparedStack<'_>,
    n: &Normalized,
    push: &Push,
    services: &[&PreparedService<'_>],
    seen: Seen,
) -> Decision {
    let names = service_names(services);
    let (kind, short) = push.ref_kind();
    let what = match kind {
        RefKind::Tag => format!("tag \"{short}\""),
        _ => seen.branch(short),
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
            return skip_services(
                stack.stack,
                names,
                Skip::new(
                    SkipCode::SkipMarker,
                    format!("{what}: every commit carries a skip marker"),
                ),
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
                return skip_services(
                    stack.stack,
                    names,
                    Skip::new(
                        SkipCode::PathsUnmatched,
                        format!(
                            "{what}: no changed file matches paths {}",
                            quote_list(&pats)
                        ),
                    ),
                );
            }
        }
    }
    let (followed, pat) = match kind {
        RefKind::Tag => ("tags", services.first().and_then(|s| s.tags.as_ref())),
        _ => ("branch", services.first().and_then(|s| s.branch.as_ref())),
    };
    let pat = pat.map(Glob::as_str).unwrap_or("");
    // The name a post-receive push or a poll gives is a setting, which may
    // be a URL holding credentials.
    let repository = shown_setting(&push.repository.full_name);
    let reason = match (seen, kind) {
        (Seen::Polled, _) => {
            let after = short_id(push.after.as_deref().unwrap_or(""));
            let moved = match &push.before {
                Some(before) => format!("move from {} to {after}", short_id(before)),
                None => format!("appear at {after}"),
            };
            format!(
                "poll saw {} of {repository} {moved}, matching {followed} \"{pat}\"",
                push.git_ref
            )
        }
        (Seen::Pushed, RefKind::Tag) => {
            format!("tag \"{short}\" of {repository} matches tags \"{pat}\"")
        }
        (Seen::Pushed, _) => {
            format!("push to \"{short}\" of {repository} matches branch \"{pat}\"")
        }
    };
    deploy(
        stack,
        n,
        services,
        DeployTarget {
            push: Some(push),
            ..Default::default()
        },
        reason,
    )
}

pub(super) fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("\"{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `repository` settings of `services`, quoted for a reason, without
/// the credentials a URL may hold ([`shown_setting`]).
fn wanted_repositories(services: &[&PreparedService<'_>]) -> String {
    let shown: Vec<_> = services
        .iter()
        .filter_map(|s| s.service.repository.as_deref())
        .map(shown_setting)
        .collect();
    quote_list(&shown.iter().map(AsRef::as_ref).collect::<Vec<_>>())
}

/// The services one push deploys, or why none.
pub(super) fn match_push<'a, 's>(
    services: &[&'a PreparedService<'s>],
    push: &Push,
    seen: Seen,
) -> Result<Vec<&'a PreparedService<'s>>, Skip> {
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
        return Err(Skip::new(
            SkipCode::OtherRepository,
            format!(
                "{} repository \"{}\" does not match repository {}",
                match seen {
                    Seen::Pushed => "push to",
                    Seen::Polled => "polled",
                },
                shown_setting(&push.repository.full_name),
                wanted_repositories(services)
            ),
        ));
    }
    let (kind, short) = push.ref_kind();
    if push.deleted {
        let what = match kind {
            RefKind::Tag => "tag",
            RefKind::Branch => "branch",
            RefKind::Other => "ref",
        };
        return Err(Skip::new(
            SkipCode::RefDeleted,
            format!("{what} \"{short}\" was deleted; deletions never deploy"),
        ));
    }
    if kind != RefKind::Other && !is_git_ref_name(&push.git_ref) {
        return Err(Skip::new(
            SkipCode::NotABranchOrTag,
            format!(
                "ref {:?} is not a name git allows for a branch or tag",
                push.git_ref
            ),
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
        RefKind::Other => {
            return Err(Skip::new(
                SkipCode::NotABranchOrTag,
                format!("ref \"{short}\" is neither a branch nor a tag"),
            ))
        }
    };
    if !matched.is_empty() {
        return Ok(matched);
    }
    Err(match kind {
        RefKind::Branch => Skip::new(SkipCode::BranchMismatch, {
            let pats: Vec<&str> = in_repo
                .iter()
                .filter_map(|s| s.branch.as_ref())
                .map(Glob::as_str)
                .collect();
            let what = seen.branch(short);
            if pats.len() == 1 {
                format!("{what} does not match branch \"{}\"", pats[0])
            } else {
                format!("{what} does not match branches {}", quote_list(&pats))
            }
        }),
        _ => Skip::new(SkipCode::TagMismatch, {
            let pats: Vec<&str> = in_repo
                .iter()
                .filter_map(|s| s.tags.as_ref())
                .map(Glob::as_str)
                .collect();
            if pats.is_empty() {
                format!(
                    "tag \"{short}\" {}; this stack deploys no tags (no tags pattern)",
                    seen.verb()
                )
            } else {
                format!("tag \"{short}\" does not match tags {}", quote_list(&pats))
            }
        }),
    })
}

/// Adds `stack`'s decisions on the pushed `images` to `out`: each image
/// service deploys the last image of the event it follows, and the
/// services taking one image deploy it together, in the event's order; or
/// one skip says why none.
pub(super) fn decide_image(
    stack: &PreparedStack<'_>,
    n: &Normalized,
    images: &[ImagePush],
    out: &mut Vec<Decision>,
) {
    let image_services: Vec<&PreparedService> = stack
        .services
        .iter()
        .filter(|s| s.image.is_some())
        .collect();
    if image_services.is_empty() {
        return out.push(not_followed(stack, "an image"));
    }
    // For each image service, the index in `images` of the last it follows.
    let mut taken: Vec<Option<usize>> = vec![None; image_services.len()];
    for (at, image) in images.iter().enumerate() {
        for (slot, service) in taken.iter_mut().zip(&image_services) {
            if service.image.as_ref().is_some_and(|k| k.matches(image)) {
                *slot = Some(at);
            }
        }
    }
    let groups = taken_together(&image_services, &taken);
    if !groups.is_empty() {
        for (at, matched) in groups {
            let image = &images[at];
            let followers = quote_list(
                &matched
                    .iter()
                    .map(|s| s.service.name.as_str())
                    .collect::<Vec<_>>(),
            );
            let reference = image_reference(image);
            let reason = match (Seen::of(n), &image.digest) {
                // The deploy event names the image by its tag: the reason
                // keeps the digest the poll saw.
                (Seen::Polled, Some(digest)) => {
                    format!("poll saw image {reference} now at {digest}; followed by {followers}")
                }
                _ => format!("image {reference} pushed; followed by {followers}"),
            };
            out.push(deploy(
                stack,
                n,
                &matched,
                DeployTarget {
                    image: Some(image),
                    ..Default::default()
                },
                reason,
            ));
        }
        return;
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
            return out.push(skip(stack.stack, SkipCode::ImageUntagged, format!(
                        "image \"{}\" was pushed without a tag (by digest only); image \"{wanted}\" follows tag \"{tag}\", and a digest alone does not say which tag points at it",
                        image_reference(image)
                    )));
        }
    }
    let pushed: Vec<String> = images.iter().map(image_reference).collect();
    let wanted: Vec<&str> = image_services
        .iter()
        .filter_map(|s| s.service.image.as_deref())
        .collect();
    out.push(skip(
        stack.stack,
        SkipCode::ImageMismatch,
        format!(
            "image {} does not match image {}",
            quote_list(&pushed.iter().map(String::as_str).collect::<Vec<_>>()),
            quote_list(&wanted)
        ),
    ));
}

pub(super) fn decide_ping(
    stack: &PreparedStack<'_>,
    n: &Normalized,
    repository: Option<&Repository>,
) -> Decision {
    if stack.stack.ping == PingAction::Acknowledge {
        return skip(
            stack.stack,
            SkipCode::PingAcknowledged,
            "ping acknowledged; this stack does not deploy on pings (ping = \"acknowledge\")",
        );
    }
    // A ping names no commit: deploying on one is a manual trigger. Its
    // event header is not signed (a signature covers the body alone), so
    // any signed body sent again as a `ping` would be one, and a stack
    // that takes no manual trigger from the hook URL alone takes none
    // this way either.
    let policy = match stack.stack.manual {
        ManualPolicy::Allow => None,
        ManualPolicy::Refuse => Some("refuse"),
        ManualPolicy::Signed => Some("signed"),
    };
    if let Some(policy) = policy {
        return skip(
            stack.stack,
            SkipCode::PingAcknowledged,
            format!(
                "ping acknowledged; a ping names no commit, and this stack takes no manual trigger from its hook URL alone (manual = \"{policy}\")"
            ),
        );
    }
    let git_services = stack.git_services();
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
                return skip(
                    stack.stack,
                    SkipCode::OtherRepository,
                    format!(
                        "ping from repository \"{}\" does not match repository {}",
                        shown_setting(&repo.full_name),
                        wanted_repositories(&git_services)
                    ),
                );
            }
            m
        }
        _ if !git_services.is_empty() => git_services,
        _ => stack.services.iter().collect(),
    };
    let mut decision = deploy_without_push(stack, n, &services, |branch| match branch {
        Some(b) => format!("ping deploys branch \"{b}\" (ping = \"deploy\")"),
        None => "ping deploys the stack (ping = \"deploy\")".to_string(),
    });
    if let (Action::Deploy(event) | Action::RequestDeployment(event), Some(repo)) =
        (&mut decision.action, repository)
    {
        event.repository = Some(repo.full_name.clone());
    }
    decision
}
