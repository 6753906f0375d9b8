//! Azure DevOps (and Azure DevOps Server / TFS) service hook deliveries of
//! the "Web Hooks" consumer, identified by the body's `eventType`.
//!
//! Follows Microsoft's "Service hook events" reference. Only `git.push`
//! ("Code pushed") deploys: its `resource` has `refUpdates[]` (one per ref:
//! `name`, `oldObjectId`, `newObjectId`, zero ids for creation and
//! deletion), `commits[]` (newest first, `commitId` and `comment`), the
//! `repository` (`name`, `project.name`, `remoteUrl`, and in newer payloads
//! `sshUrl` / `webUrl`) and `pushedBy` (`uniqueName`, `displayName`). Each
//! ref update becomes one [`Push`]. Every other event type
//! (`git.pullrequest.*`, `build.complete`, `tfvc.checkin`,
//! `workitem.*`, `ms.vss-code.git-pullrequest-comment-event`...) is ignored.
//!
//! The payload has no force flag and no file lists, and Azure DevOps does not
//! say whether `commits` holds the whole push, so commit lists never count as
//! complete and changed files are always [`ChangedFiles::Unknown`].

use std::borrow::Cow;

use serde::Deserialize;

use super::common::{first_trimmed, real_sha, repository, unlisted_push, RefChange};
use crate::error::{malformed, PluginError};
use crate::model::Event;
use crate::model::Provider;
use crate::providers::{BodyShape, Detected, Sender};

/// Names this provider in error messages.
const PROVIDER: &str = "azure-devops";

#[derive(Deserialize)]
struct Notification<'a> {
    #[serde(borrow)]
    resource: GitPush<'a>,
}

#[derive(Deserialize)]
struct GitPush<'a> {
    #[serde(borrow, default, rename = "refUpdates")]
    ref_updates: Option<Vec<RefUpdate<'a>>>,
    #[serde(borrow, default)]
    commits: Option<Vec<Commit<'a>>>,
    #[serde(borrow)]
    repository: GitRepository<'a>,
    #[serde(borrow, default, rename = "pushedBy")]
    pushed_by: Option<Identity<'a>>,
}

#[derive(Deserialize)]
struct RefUpdate<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "oldObjectId")]
    old_object_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "newObjectId")]
    new_object_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Commit<'a> {
    #[serde(borrow, default, rename = "commitId")]
    commit_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    comment: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct GitRepository<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    project: TeamProject<'a>,
    #[serde(borrow, default, rename = "remoteUrl")]
    remote_url: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "sshUrl")]
    ssh_url: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "webUrl")]
    web_url: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TeamProject<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Identity<'a> {
    #[serde(borrow, default, rename = "uniqueName")]
    unique_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "displayName")]
    display_name: Option<Cow<'a, str>>,
}

/// Normalizes one Azure DevOps service hook delivery; `event` is the body's
/// `eventType`.
///
/// `git.push` becomes [`Event::Push`] with one [`Push`] per ref update; every
/// other event type becomes [`Event::Ignored`].
///
/// # Errors
///
/// [`PluginError::MalformedPayload`] when a `git.push` body is not JSON, lacks
/// `resource.repository` (with its name and project name), or has a ref
/// update without a name.
pub fn parse(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    if event != "git.push" {
        return Ok(Event::Ignored {
            reason: format!("azure devops {event} events never deploy"),
        });
    }
    let what = format!("{PROVIDER} {event}");
    let payload: Notification = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;
    let push = payload.resource;

    let repo = &push.repository;
    if repo.name.is_empty() || repo.project.name.is_empty() {
        return Err(PluginError::MalformedPayload(format!(
            "{what}: resource.repository.name or resource.repository.project.name is empty"
        )));
    }
    let urls = [&repo.remote_url, &repo.ssh_url, &repo.web_url];
    let repository = repository(
        &format!("{}/{}", repo.project.name, repo.name),
        urls.into_iter().flatten().map(|u| u.as_ref()),
    );
    let pusher = push
        .pushed_by
        .as_ref()
        .and_then(|p| first_trimmed([&p.unique_name, &p.display_name]));

    let ref_updates = push.ref_updates.unwrap_or_default();
    if ref_updates.is_empty() {
        return Ok(Event::Ignored {
            reason: "azure devops git.push lists no ref updates".into(),
        });
    }
    let single = ref_updates.len() == 1;
    let commits = push.commits.unwrap_or_default();

    let mut pushes = Vec::with_capacity(ref_updates.len());
    for (i, update) in ref_updates.iter().enumerate() {
        let git_ref = update
            .name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                PluginError::MalformedPayload(format!(
                    "{what}: resource.refUpdates[{i}] has no name"
                ))
            })?;
        let before = real_sha(update.old_object_id.as_deref());
        let after = real_sha(update.new_object_id.as_deref());
        let deleted = after.is_none();
        // `commits` belongs to the whole push: the head commit is found by
        // id, the list is only attributed to a ref when it is the only one.
        let head_message = after.as_deref().and_then(|id| {
            commits
                .iter()
                .find(|c| c.commit_id.as_deref() == Some(id))
                .and_then(|c| c.comment.as_deref())
                .map(str::to_string)
        });
        let commit_messages = if single && !deleted {
            commits
                .iter()
                .filter_map(|c| c.comment.as_deref())
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        let change = RefChange {
            created: before.is_none() && !deleted,
            deleted,
            before,
            after,
        };
        pushes.push(unlisted_push(
            &repository,
            git_ref.to_string(),
            change,
            &pusher,
            head_message,
            commit_messages,
        ));
    }
    Ok(Event::Push(pushes))
}

/// Azure DevOps service hooks: no header, a body with `eventType` and
/// `publisherId`; they sign nothing.
pub struct AzureDevops;

impl Sender for AzureDevops {
    fn id(&self) -> Provider {
        Provider::AzureDevops
    }

    fn detect_by_body(&self, shape: &BodyShape) -> Option<Detected> {
        let event = shape.event_type.as_deref()?;
        shape.publisher_id.as_ref()?;
        Some(Detected::new(Provider::AzureDevops, event, shape.id()))
    }

    fn parse(&self, detected: &mut Detected, json: &[u8]) -> Result<Event, PluginError> {
        parse(&detected.event_name, json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangedFiles, Push, Repository};
    use crate::providers::test_support::Fixtures;

    const AZURE_DEVOPS: Fixtures = Fixtures::new("azure-devops", parse);

    #[test]
    fn goscm_push() {
        assert_eq!(
            AZURE_DEVOPS.parse("git.push", "goscm-push.json"),
            Ok(Event::Push(vec![Push {
                repository: Repository {
                    full_name: "Fabrikam-Fiber-Git/Fabrikam-Fiber-Git".into(),
                    urls: vec![
                        "https://dev.azure.com/fabrikam-fiber-inc/DefaultCollection/_git/Fabrikam-Fiber-Git"
                            .into()
                    ],
                },
                git_ref: "refs/heads/master".into(),
                before: Some("aad331d8d3b131fa9ae03cf5e53965b51942618a".into()),
                after: Some("33b55f7cb7e7e245323987634f960cf4a6e6bc74".into()),
                created: false,
                deleted: false,
                forced: false,
                pusher: Some("Windows Live ID\\fabrikamfiber4@hotmail.com".into()),
                head_message: Some("Fixed bug in web.config file".into()),
                commit_messages: vec!["Fixed bug in web.config file".into()],
                commits_complete: false,
                changed_files: ChangedFiles::Unknown,
            }]))
        );
    }

    #[test]
    fn several_ref_updates_create_and_delete() {
        let json = br#"{"eventType": "git.push", "publisherId": "tfs", "resource": {
            "commits": [{"commitId": "2222222222222222222222222222222222222222", "comment": "tagged"}],
            "refUpdates": [
                {"name": "refs/tags/v1", "oldObjectId": "0000000000000000000000000000000000000000",
                 "newObjectId": "2222222222222222222222222222222222222222"},
                {"name": "refs/heads/old", "oldObjectId": "1111111111111111111111111111111111111111",
                 "newObjectId": "0000000000000000000000000000000000000000"}
            ],
            "repository": {"name": "web", "project": {"name": "Shop"},
                "remoteUrl": "https://dev.azure.com/org/Shop/_git/web",
                "sshUrl": "git@ssh.dev.azure.com:v3/org/Shop/web",
                "webUrl": "https://dev.azure.com/org/Shop/_git/web"},
            "pushedBy": {"displayName": "Ann Lee", "uniqueName": null}
        }}"#;
        let Ok(Event::Push(p)) = parse("git.push", json) else {
            panic!("expected a push");
        };
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].repository.full_name, "Shop/web");
        assert_eq!(
            p[0].repository.urls,
            [
                "https://dev.azure.com/org/Shop/_git/web",
                "git@ssh.dev.azure.com:v3/org/Shop/web"
            ]
        );
        assert_eq!(p[0].git_ref, "refs/tags/v1");
        assert!(p[0].created && !p[0].deleted);
        assert_eq!(p[0].before, None);
        assert_eq!(p[0].head_message.as_deref(), Some("tagged"));
        assert!(p[0].commit_messages.is_empty());
        assert_eq!(p[0].pusher.as_deref(), Some("Ann Lee"));
        assert_eq!(p[1].git_ref, "refs/heads/old");
        assert!(p[1].deleted && !p[1].created);
        assert_eq!(p[1].after, None);
        assert_eq!(p[1].head_message, None);
    }

    #[test]
    fn other_event_types_are_ignored() {
        match parse(
            "git.pullrequest.created",
            &AZURE_DEVOPS.read("goscm-pr_created.json"),
        ) {
            Ok(Event::Ignored { reason }) => {
                assert!(reason.contains("git.pullrequest.created"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        for event in [
            "build.complete",
            "ms.vss-code.git-pullrequest-comment-event",
            "tfvc.checkin",
        ] {
            assert!(matches!(parse(event, b"{}"), Ok(Event::Ignored { .. })));
        }
    }

    #[test]
    fn malformed_push_is_an_error() {
        for body in [&b"{"[..], b"{}", br#"{"resource": {"refUpdates": []}}"#] {
            match parse("git.push", body) {
                Err(PluginError::MalformedPayload(m)) => {
                    assert!(m.starts_with("azure-devops git.push: "), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
        let nameless = br#"{"resource": {"refUpdates": [{"oldObjectId": "a", "newObjectId": "b"}],
            "repository": {"name": "r", "project": {"name": "p"}}}}"#;
        assert!(matches!(
            parse("git.push", nameless),
            Err(PluginError::MalformedPayload(_))
        ));
    }
}
