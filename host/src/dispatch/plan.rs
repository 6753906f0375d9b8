//! Dispatch's pure half: what each decision of an outcome does (skip,
//! deploy, or ask GitHub for a deployment), with the journal row and what
//! the journal checks before it admits it, decided before any I/O.

use serde_json::{json, Value};

use super::{deployment_delivery_key, replay_key, ReplayIdentity, SENDERS_REPORTING_FORCED};
use crate::config::StackConfig;
use crate::journal::{
    Admission, CommitClaim, DeploymentRequestClaim, NewDeploy, ReplayClaim, RequestedDeploy,
};
use crate::plugin::wit;

/// What one decision of an outcome does, before any of it is done.
#[derive(Debug)]
pub(super) enum Step<'o> {
    /// Nothing: the stack skips the delivery.
    Skip,
    /// Ask GitHub for a deployment (the stack waits for the `deployment`
    /// event, which runs the deploy).
    RequestDeployment {
        /// The deploy the deployment stands for.
        event: &'o wit::DeployEvent,
        /// The request's JSON body, as the component wrote it.
        body: &'o str,
        /// The deploy the push stands for, kept with the request so the
        /// journal can run it should the request fail or its event never
        /// come.
        deploy: Box<RequestedDeploy>,
    },
    /// Journal and queue a deploy, if the journal admits it.
    Deploy {
        /// What deploys.
        event: &'o wit::DeployEvent,
        /// The journal row.
        new: Box<NewDeploy>,
        /// What the journal checks first (replay, commit order), and the
        /// GitHub deployment to create whose statuses report this deploy
        /// (GitHub continuous deployment on, not waiting for the event).
        admission: Box<Admission>,
    },
}

/// A decision's answer entry so far, and its step.
#[derive(Debug)]
pub(super) struct Planned<'o> {
    pub(super) entry: Value,
    pub(super) step: Step<'o>,
}

/// What each of `outcome`'s decisions does: pure, from the outcome (whose
/// actions the component decided), the `stacks` it was decided for, the
/// delivery's replay identity and the time.
/// [`Dispatcher::dispatch_identified`] then applies the steps.
pub(super) fn plan<'o>(
    outcome: &'o wit::Outcome,
    stacks: &[&StackConfig],
    identity: Option<ReplayIdentity<'_>>,
    now_ms: i64,
) -> Vec<Planned<'o>> {
    outcome
        .decisions
        .iter()
        .map(|d| {
            let mut entry = json!({
                "stack": d.stack,
                "action": d.action.name(),
                "skip": d.action.skip_code().map(wit::SkipCode::as_str),
                "services": d.services,
                "reason": d.reason,
            });
            // Which ref (image) deploys, when one does: a push moving
            // several refs its services follow has one decision per ref.
            if let Some(event) = d.action.event() {
                if let Some(git_ref) = &event.ref_ {
                    entry["ref"] = json!(git_ref);
                }
                if let Some(image) = &event.image {
                    entry["image"] = json!(image);
                }
            }
            let step = match &d.action {
                wit::Action::Skip(_) => Step::Skip,
                // The component asks for a deployment only with its request
                // (the contract's `request-deployment`); without one there
                // is nothing to send.
                wit::Action::RequestDeployment(event) => {
                    match event.github_deployment_request.as_deref() {
                        Some(body) => {
                            let push = pushed_by(event, outcome);
                            Step::RequestDeployment {
                                event,
                                body,
                                deploy: Box::new(RequestedDeploy {
                                    deploy: new_deploy(event, outcome, stacks, now_ms),
                                    before: push.and_then(|p| p.before.clone()),
                                    forced: push.is_some_and(|p| p.forced),
                                    sender_reports_forced: SENDERS_REPORTING_FORCED
                                        .contains(&outcome.provider),
                                }),
                            }
                        }
                        None => Step::Skip,
                    }
                }
                wit::Action::Deploy(event) => Step::Deploy {
                    event,
                    new: Box::new(new_deploy(event, outcome, stacks, now_ms)),
                    admission: Box::new(admission(event, outcome, identity, now_ms)),
                },
            };
            Planned { entry, step }
        })
        .collect()
}

/// What `event` deploys of its delivery, when the delivery moved several
/// refs or named several images: its ref, or its image. A stack may then
/// deploy several of them (the component decides per ref it follows), each
/// its own deploy, journaled under its own delivery key
/// ([`delivery_key`]) and replay key. None for a delivery of one ref or
/// image, or of none: whatever the configuration, the same delivery
/// always gets the same keys, so a redelivery after a reload is still
/// known.
fn lane_in_delivery<'o>(event: &'o wit::DeployEvent, outcome: &wit::Outcome) -> Option<&'o str> {
    if outcome.pushes.len() > 1 || outcome.images.len() > 1 {
        event.ref_.as_deref().or(event.image.as_deref())
    } else {
        None
    }
}

/// The journal's key of `event`'s delivery, which deduplicates it (one
/// deploy per stack and key): the GitHub deployment's key for the deploy
/// of a deployment; otherwise the provider's delivery id, followed by a
/// space and the ref or image deployed when the delivery moved several
/// ([`lane_in_delivery`]). No bare id can read as such a key: the
/// component takes no id holding whitespace, and a delivery is of one
/// repository, so its ref (image) names the lane. The deploy's command
/// reads it as `REDEPLOY_DELIVERY`; its event document keeps the
/// provider's id alone.
pub(super) fn delivery_key(event: &wit::DeployEvent, outcome: &wit::Outcome) -> Option<String> {
    if let Some(id) = event.github_deployment_id {
        return Some(deployment_delivery_key(id));
    }
    let delivery = event.delivery.as_deref()?;
    Some(match lane_in_delivery(event, outcome) {
        Some(lane) => format!("{delivery} {lane}"),
        None => delivery.to_string(),
    })
}

/// The journal row of `event`'s deploy, decided for `stacks`, queued at
/// `now_ms`.
fn new_deploy(
    event: &wit::DeployEvent,
    outcome: &wit::Outcome,
    stacks: &[&StackConfig],
    now_ms: i64,
) -> NewDeploy {
    NewDeploy {
        stack: event.stack.clone(),
        delivery_id: delivery_key(event, outcome),
        provider: event.provider.as_str().to_string(),
        git_ref: event.ref_.clone(),
        sha: event.sha.clone(),
        services: event.services.clone(),
        profile: event.profile.clone(),
        reason: event.reason.clone(),
        event_json: event.document.clone(),
        created_at_ms: now_ms,
        pusher: pushed_by(event, outcome).and_then(|p| p.pusher.clone()),
        repository: lane_repository(event, stacks),
    }
}

/// The repository of `event`'s lane ([`crate::queue::Lane`]): the
/// repository its ref is of; for an image push, which names no ref, the
/// images its services follow as `stacks` configure them
/// ([`images_followed`]), or, for a stack not among them, the pushed
/// image's repository, without its tag or digest
/// ([`super::image::repository_of`]).
fn lane_repository(event: &wit::DeployEvent, stacks: &[&StackConfig]) -> Option<String> {
    match (&event.repository, &event.image) {
        (Some(repository), _) => Some(repository.clone()),
        (None, Some(image)) => Some(
            images_followed(stacks, event).unwrap_or_else(|| super::image::repository_of(image)),
        ),
        (None, None) => None,
    }
}

/// The images the services of `event`, an image push, follow, as its
/// stack configures them (`acme/app`, `ghcr.io/acme/app:stable`), each
/// once, sorted, joined by spaces: the lane of its deploy. Deploys of
/// services following one image (`acme/app`, any tag) give way to each
/// other, the newest winning, whatever tag or registry each push named (a
/// registry pushed a tag per build keeps one deploy waiting, not one per
/// tag); services following two tags of one repository, or two
/// repositories, are two lanes, and neither deploy takes the other's
/// services. Bounded by the configuration, never by what senders name.
/// `None` when the stack is not in `stacks` or its services follow none.
fn images_followed(stacks: &[&StackConfig], event: &wit::DeployEvent) -> Option<String> {
    let stack = stacks.iter().find(|s| s.name == event.stack)?;
    let named =
        |service: &str| event.services.is_empty() || event.services.iter().any(|s| s == service);
    let mut images: Vec<&str> = if stack.services.is_empty() {
        stack.image.as_deref().into_iter().collect()
    } else {
        stack
            .services
            .iter()
            .filter(|s| named(&s.name))
            .filter_map(|s| s.image.as_deref())
            .collect()
    };
    images.sort_unstable();
    images.dedup();
    (!images.is_empty()).then(|| images.join(" "))
}

/// The push of `outcome` that brought `event`'s commit to its ref, if one did.
fn pushed_by<'o>(event: &wit::DeployEvent, outcome: &'o wit::Outcome) -> Option<&'o wit::Push> {
    let sha = event.sha.as_deref()?;
    outcome
        .pushes
        .iter()
        .find(|p| p.after.as_deref() == Some(sha) && event.ref_.as_deref() == Some(p.ref_.as_str()))
}

/// What the journal checks before it admits `event`'s deploy: the replay
/// key of a delivery without a delivery id, and the order of its commit,
/// from the push that brought it (its `before`, and whether it was forced);
/// and the deployment request the journal records with it, when the
/// component wrote one for a deploy that runs at once.
fn admission(
    event: &wit::DeployEvent,
    outcome: &wit::Outcome,
    identity: Option<ReplayIdentity<'_>>,
    now: i64,
) -> Admission {
    let replay = identity.map(|i| {
        ReplayClaim::new(
            replay_key(
                &event.stack,
                lane_in_delivery(event, outcome),
                outcome.provider.as_str(),
                i.bytes,
            ),
            now,
            i.window,
        )
    });
    let commit = event.sha.as_ref().map(|sha| {
        let push = pushed_by(event, outcome);
        CommitClaim {
            sha: sha.clone(),
            before: push.and_then(|p| p.before.clone()),
            forced: push.is_some_and(|p| p.forced),
            sender_reports_forced: SENDERS_REPORTING_FORCED.contains(&outcome.provider),
            requested: false,
            // A push brought it: the same push seen again (another delivery
            // id, a second webhook, a replay) deploys nothing. Not git's own
            // post-receive, which no one can replay (run in place by git; a
            // forwarded one is signed over its time and seen once), and
            // where a ref deleted and pushed again is a push to retry.
            once: push.is_some() && outcome.provider != wit::Provider::PostReceive,
        }
    });
    let deployment_request =
        event
            .github_deployment_request
            .as_ref()
            .map(|body| DeploymentRequestClaim {
                delivery_id: delivery_key(event, outcome),
                git_ref: event.ref_.clone(),
                repository: event.repository.clone(),
                sha: event.sha.clone(),
                request_json: body.clone(),
                created_at_ms: now,
            });
    Admission {
        replay,
        commit,
        deployment_request,
        image: None,
    }
}

/// Gives `new`, a deploy run by the `deployment` event of a deployment
/// redeploy asked for, the branch or tag of the push that asked (`kept`,
/// journaled with the request): redeploy names the pushed commit in its
/// request, so that GitHub deploys exactly it, and the event names no ref.
/// Taken only when `new` names none and is of the kept push's commit; its
/// document's `ref`, `branch` and `tag` with it (and who pushed, which the
/// event does not say), so the command's `REDEPLOY_REF`, `REDEPLOY_BRANCH`
/// and `REDEPLOY_PUSHER` say them, the runner's last check
/// (`crate::runner::follows`) asks about it, and it gives way only to
/// deploys of its lane ([`crate::queue::Lane`]). The push's repository
/// too (`REDEPLOY_REPOSITORY`): the deployment is made in the stack's
/// GitHub repository whichever repository the push was of, and a push of
/// another repository's branch of the same name is another lane. True
/// when it took them.
pub(super) fn take_ref_of_push(new: &mut NewDeploy, kept: &NewDeploy) -> bool {
    if new.git_ref.is_some() || kept.git_ref.is_none() || new.sha.is_none() || new.sha != kept.sha {
        return false;
    }
    let (Ok(mut document), Ok(pushed)) = (
        serde_json::from_str::<Value>(&new.event_json),
        serde_json::from_str::<Value>(&kept.event_json),
    ) else {
        return false;
    };
    let Some(fields) = document.as_object_mut() else {
        return false;
    };
    for key in ["ref", "branch", "tag"] {
        let named = fields.get(key).is_some_and(|v| !v.is_null());
        if let (false, Some(value)) = (named, pushed.get(key)) {
            fields.insert(key.to_owned(), value.clone());
        }
    }
    if let (Some(repository), Some(value)) = (&kept.repository, pushed.get("repository")) {
        fields.insert("repository".to_owned(), value.clone());
        new.repository = Some(repository.clone());
    }
    new.git_ref = kept.git_ref.clone();
    new.event_json = document.to_string();
    if new.pusher.is_none() {
        new.pusher = kept.pusher.clone();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::embedded_for_tests;
    use std::path::Path;
    use std::time::Duration;

    /// The time the plans are made at.
    const NOW: i64 = 1_700_000_000_000;

    /// A vendored third-party payload.
    fn fixture(name: &str) -> (Vec<(String, String)>, Vec<u8>) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/github");
        let body = std::fs::read(dir.join(format!("{name}.json"))).unwrap();
        let headers = std::fs::read_to_string(dir.join(format!("{name}.headers")))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(": "))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        (headers, body)
    }

    /// `stacks` (TOML, each with a command) parsed, and the delivery of
    /// `fixture` evaluated for them by the embedded component.
    fn evaluate(stacks: &str, fixture_name: &str) -> (wit::Outcome, Vec<u8>) {
        let token_env = "REDEPLOY_DISPATCH_PLAN_TEST_GITHUB_TOKEN";
        // Edition 2021: set_var is safe; no other test reads this name.
        #[allow(unused_unsafe)]
        unsafe {
            std::env::set_var(token_env, "not-a-real-token")
        };
        let text = stacks.replace("TOKEN_ENV", token_env);
        let config = crate::config::parse(&text, Path::new("/etc/redeploy")).unwrap();
        let (headers, body) = fixture(fixture_name);
        let delivery = wit::Delivery::Http(wit::HttpRequest {
            method: "POST".into(),
            query: String::new(),
            headers,
            body: body.clone(),
        });
        let context = crate::stacks::evaluation_context(&config, Some("key"));
        let outcome = embedded_for_tests()
            .evaluate(&crate::stacks::wit_stacks(&config), &delivery, &context)
            .unwrap()
            .unwrap();
        (outcome, body)
    }

    /// One stack following `branch` of `repository`, with `more` TOML after.
    fn stack(name: &str, repository: &str, branch: &str, more: &str) -> String {
        format!(
            "[[stacks]]\nname = \"{name}\"\nrepository = \"{repository}\"\n\
             branch = \"{branch}\"\ncommand = [\"true\"]\n{more}\n"
        )
    }

    #[test]
    fn each_decision_becomes_a_skip_a_deploy_or_a_deployment_request() {
        // go-scm's GitHub push: refs/heads/master of Codertocat/Hello-World,
        // a10867b1 -> 199eddf4, delivery f2467dea-70d6-11e8-8955-3c83993e0aef.
        let github =
            "[stacks.github]\nrepository = \"Codertocat/Hello-World\"\ntoken_env = \"TOKEN_ENV\"";
        let stacks = [
            stack("web", "Codertocat/Hello-World", "master", ""),
            stack("other", "Codertocat/Hello-World", "main", ""),
            stack("waits", "Codertocat/Hello-World", "master", github),
            stack(
                "now",
                "Codertocat/Hello-World",
                "master",
                &format!("{github}\nwait_for_event = false"),
            ),
        ]
        .concat();
        let (outcome, _) = evaluate(&stacks, "goscm-push");
        let planned = plan(&outcome, &[], None, NOW);
        assert_eq!(planned.len(), 4, "one step per stack");

        let Step::Deploy {
            event,
            new,
            admission,
        } = &planned[0].step
        else {
            panic!("web deploys: {:?}", planned[0]);
        };
        assert_eq!(event.stack, "web");
        assert_eq!(
            new.delivery_id.as_deref(),
            Some("f2467dea-70d6-11e8-8955-3c83993e0aef")
        );
        assert_eq!(
            new.sha.as_deref(),
            Some("199eddf46df50de8d02e99bf1c5fdb4101338224")
        );
        assert_eq!(new.git_ref.as_deref(), Some("refs/heads/master"));
        assert_eq!(new.created_at_ms, NOW);
        assert!(admission.deployment_request.is_none());
        assert!(admission.replay.is_none(), "a delivery id dedupes it");
        let commit = admission.commit.as_ref().unwrap();
        assert_eq!(
            commit.before.as_deref(),
            Some("a10867b14bb761a232cd80139fbd4c0d33264240")
        );
        assert!(!commit.forced && commit.sender_reports_forced && !commit.requested);
        assert_eq!(planned[0].entry["action"], "deploy");
        assert_eq!(planned[0].entry["skip"], Value::Null);
        // The journal keeps the component's document of the event, which
        // the deploy command reads.
        let document: Value = serde_json::from_str(&new.event_json).unwrap();
        assert_eq!(document["provider"], "github");
        assert_eq!(document["sha"], "199eddf46df50de8d02e99bf1c5fdb4101338224");

        assert!(matches!(planned[1].step, Step::Skip), "{:?}", planned[1]);
        assert_eq!(planned[1].entry["stack"], "other");
        assert_eq!(planned[1].entry["action"], "skip");
        assert_eq!(planned[1].entry["skip"], "branch-mismatch");

        let Step::RequestDeployment {
            event,
            body,
            deploy,
        } = &planned[2].step
        else {
            panic!("waits asks GitHub for a deployment: {:?}", planned[2]);
        };
        assert_eq!(event.stack, "waits");
        assert_eq!(planned[2].entry["action"], "request-deployment");
        let request: Value = serde_json::from_str(body).unwrap();
        assert_eq!(request["ref"], "199eddf46df50de8d02e99bf1c5fdb4101338224");
        // The push's deploy is kept with the request, as it would deploy.
        assert_eq!(deploy.deploy.stack, "waits");
        assert_eq!(deploy.deploy.event_json, event.document);
        assert_eq!(deploy.deploy.delivery_id, event.delivery);
        assert_eq!(deploy.deploy.sha, event.sha);
        assert!(deploy.sender_reports_forced);

        let Step::Deploy {
            event, admission, ..
        } = &planned[3].step
        else {
            panic!("now deploys at once: {:?}", planned[3]);
        };
        assert_eq!(event.stack, "now");
        let request = admission
            .deployment_request
            .as_ref()
            .expect("and creates a deployment its statuses go to");
        assert_eq!(
            Some(&request.request_json),
            event.github_deployment_request.as_ref()
        );
        assert_eq!(request.delivery_id, event.delivery);
        assert_eq!(
            (request.sha.as_deref(), request.created_at_ms),
            (Some("199eddf46df50de8d02e99bf1c5fdb4101338224"), NOW)
        );
    }

    #[test]
    fn a_deployment_of_a_bare_commit_takes_the_branch_of_the_push_that_asked_for_it() {
        // go-scm's GitHub push of refs/heads/master, 199eddf4, for a stack
        // that waits for the deployment event: the push's deploy is kept.
        let github =
            "[stacks.github]\nrepository = \"Codertocat/Hello-World\"\ntoken_env = \"TOKEN_ENV\"";
        let (outcome, _) = evaluate(
            &stack("waits", "Codertocat/Hello-World", "master", github),
            "goscm-push",
        );
        let planned = plan(&outcome, &[], None, NOW);
        let Step::RequestDeployment { deploy, .. } = &planned[0].step else {
            panic!("waits asks GitHub for a deployment: {:?}", planned[0]);
        };
        let kept = &deploy.deploy;
        // The deployment's event names the commit alone, as the request did.
        let mut document: Value = serde_json::from_str(&kept.event_json).unwrap();
        for key in ["ref", "branch", "tag"] {
            document[key] = Value::Null;
        }
        document["github_deployment_id"] = json!(42);
        // And the repository the deployment was made in, which may be
        // another than the push's (one stack, two repositories).
        document["repository"] = json!("acme/deployments");
        let bare = NewDeploy {
            git_ref: None,
            event_json: document.to_string(),
            pusher: None,
            repository: Some("acme/deployments".into()),
            ..kept.clone()
        };
        let mut new = bare.clone();
        assert!(take_ref_of_push(&mut new, kept));
        assert_eq!(new.git_ref.as_deref(), Some("refs/heads/master"));
        // go-scm's push names its pusher, Codertocat.
        assert_eq!(new.pusher.as_deref(), Some("Codertocat"));
        let taken: Value = serde_json::from_str(&new.event_json).unwrap();
        assert_eq!(taken["ref"], "refs/heads/master");
        assert_eq!(taken["branch"], "master");
        assert_eq!(taken["tag"], Value::Null);
        assert_eq!(taken["github_deployment_id"], 42);
        assert_eq!(taken["sha"], "199eddf46df50de8d02e99bf1c5fdb4101338224");
        // Its lane is the push's: go-scm's push is of Codertocat/Hello-World.
        assert_eq!(new.repository.as_deref(), Some("Codertocat/Hello-World"));
        assert_eq!(taken["repository"], "Codertocat/Hello-World");
        // Another commit's push, or a deployment that names its ref (one
        // not redeploy's), takes nothing.
        let mut other = NewDeploy {
            sha: Some("a10867b14bb761a232cd80139fbd4c0d33264240".into()),
            ..bare.clone()
        };
        assert!(!take_ref_of_push(&mut other, kept));
        assert_eq!(other.git_ref, None);
        let mut named = NewDeploy {
            git_ref: Some("refs/heads/release".into()),
            ..bare
        };
        assert!(!take_ref_of_push(&mut named, kept));
        assert_eq!(named.git_ref.as_deref(), Some("refs/heads/release"));
    }

    #[test]
    fn a_delivery_without_an_id_is_deduplicated_on_its_bytes_and_a_forced_push_says_so() {
        // Woodpecker's forced GitHub push: refs/heads/main of 6543/oxiduct,
        // 5ea73729 -> f7220f1f, `"forced": true`, no delivery id header.
        let stacks = stack("web", "6543/oxiduct", "main", "");
        let (outcome, body) = evaluate(&stacks, "woodpecker-HookPushForced");
        let identity = ReplayIdentity {
            bytes: &body,
            window: Duration::from_secs(60),
            on: "its body",
        };
        let planned = plan(&outcome, &[], Some(identity), NOW);
        let Step::Deploy { new, admission, .. } = &planned[0].step else {
            panic!("web deploys: {:?}", planned[0]);
        };
        assert_eq!(new.delivery_id, None);
        let replay = admission.replay.as_ref().unwrap();
        assert_eq!(replay.key, replay_key("web", None, "github", &body));
        assert_eq!(replay.now_ms, NOW);
        assert_eq!(replay.expires_at_ms, NOW + 60_000);
        let commit = admission.commit.as_ref().unwrap();
        assert_eq!(commit.sha, "f7220f1f753260bf6f1c533357c70213e9fd4abe");
        assert_eq!(
            commit.before.as_deref(),
            Some("5ea737297f2e2e88f4cdf796e72cbcb12d40fd9c")
        );
        assert!(commit.forced && commit.sender_reports_forced);
    }

    #[test]
    fn an_image_deploys_lane_is_its_repository_without_tag_or_digest() {
        // As deploy events name images: Distribution's push by digest,
        // Docker Hub's and a poll's by tag, a loopback registry's.
        for (image, lane) in [
            (
                "registrycluster.local/library/test@sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf",
                "registrycluster.local/library/test",
            ),
            ("registrycluster.local/library/test:v2", "registrycluster.local/library/test"),
            ("docker.io/svendowideit/testhook:latest", "registry-1.docker.io/svendowideit/testhook"),
            ("svendowideit/testhook:1.0", "registry-1.docker.io/svendowideit/testhook"),
            ("nginx", "registry-1.docker.io/library/nginx"),
            ("127.0.0.1:5000/Acme/App:v1", "127.0.0.1:5000/acme/app"),
            // Not read by polling's rules (a tag past the grammar's 128
            // characters): as written, less the tag.
            (&format!("ghcr.io/acme/api:{}", "t".repeat(129)), "ghcr.io/acme/api"),
            (&format!("localhost:5000/api:{}", "t".repeat(129)), "localhost:5000/api"),
        ] {
            assert_eq!(super::super::image::repository_of(image), lane, "{image}");
        }
    }
}
