//! GitLab webhook payloads.
//!
//! Follows GitLab's "Webhook events" reference (push and tag events) and
//! "System hooks" (whose `push` and `tag_push` events carry the same body):
//! - `Push Hook`, `Tag Push Hook`, and `System Hook` / `Service Hook` whose
//!   body has `object_kind` (or `event_name`) `push` or `tag_push` →
//!   [`Event::Push`]. The body decides, not the header: go-scm and others
//!   send tag deletions with the `Push Hook` header.
//! - GitLab lists at most 20 commits (`commits`) and gives the real count in
//!   `total_commits_count`; the list is whole only when the two agree.
//!   GitLab has no `created` / `deleted` / `forced` flags: creation and
//!   deletion come from the zero ids, and a push is never reported as forced.
//! - Other system hook events (`repository_update`, `project_create`...) and
//!   every other event (`Merge Request Hook`, `Pipeline Hook`, `Release Hook`,
//!   `Job Hook`, `Note Hook`...) → [`Event::Ignored`].

use serde::Deserialize;

use super::common::{
    first_non_empty, message_of, missing, non_empty, pushed_after, real_sha, repository, required,
    ForgePush, PushPayload, RefChange, Str,
};
use crate::error::{malformed, PluginError};
use crate::model::{Event, Provider, Repository};
use crate::providers::{any_event, HeaderSender};
use crate::signature::plain_token;

/// Just the fields that say what a body is.
#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
struct Kind<'a> {
    object_kind: Option<Str<'a>>,
    event_name: Option<Str<'a>>,
}

impl Kind<'_> {
    fn kind(&self) -> Option<&str> {
        first_non_empty(&[&self.object_kind, &self.event_name])
    }
}

/// Normalizes one GitLab delivery; `event` is the `X-Gitlab-Event` value.
pub fn parse(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    match event {
        "Push Hook" | "Tag Push Hook" => parse_push(event, json),
        "System Hook" | "Service Hook" => {
            let what = format!("gitlab {}", event.to_ascii_lowercase());
            let k: Kind = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;
            match k.kind() {
                Some("push" | "tag_push") => parse_push(event, json),
                Some(kind) => Ok(Event::Ignored {
                    reason: format!("{} {kind} events never deploy", event.to_ascii_lowercase()),
                }),
                None => Err(PluginError::MalformedPayload(format!(
                    "{what}: missing object_kind and event_name"
                ))),
            }
        }
        other => Ok(Event::Ignored {
            reason: format!("{other} events never deploy"),
        }),
    }
}

/// The path of an `http(s)://host/path` URL, without slashes around it.
fn url_path(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1.trim_matches('/');
    (!path.is_empty()).then_some(path)
}

fn push_repository(p: &PushPayload, what: &str) -> Result<Repository, PluginError> {
    let project = p.project.as_ref();
    let repo = p.repository.as_ref();
    // Payloads older than GitLab 8.5 have no `project`; their homepage is the web URL.
    let full_name = project
        .and_then(|pr| non_empty(&pr.path_with_namespace))
        .or_else(|| {
            project
                .and_then(|pr| non_empty(&pr.web_url))
                .and_then(url_path)
        })
        .or_else(|| repo.and_then(|r| non_empty(&r.homepage)).and_then(url_path))
        .ok_or_else(|| missing(what, "project.path_with_namespace"))?;
    let mut candidates: Vec<&Option<Str>> = Vec::new();
    if let Some(pr) = project {
        candidates.extend([
            &pr.git_http_url,
            &pr.git_ssh_url,
            &pr.web_url,
            &pr.homepage,
            &pr.url,
            &pr.ssh_url,
            &pr.http_url,
        ]);
    }
    if let Some(r) = repo {
        candidates.extend([&r.git_http_url, &r.git_ssh_url, &r.homepage, &r.url]);
    }
    Ok(repository(
        full_name,
        candidates.into_iter().filter_map(non_empty),
    ))
}

fn parse_push(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    let mut what = format!("gitlab {}", event.to_ascii_lowercase());
    let p: PushPayload = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;
    let kind = first_non_empty(&[&p.object_kind, &p.event_name]);
    match kind {
        Some("push" | "tag_push") | None => {}
        Some(kind) => {
            return Ok(Event::Ignored {
                reason: format!("gitlab {kind} events never deploy"),
            })
        }
    }
    if let Some(kind) = kind {
        what = format!("gitlab {kind}");
    }
    let repository = push_repository(&p, &what)?;
    let git_ref = required(&p.git_ref, &what, "ref")?;
    // GitLab sends no `created` / `deleted` / `forced` flags.
    let after = pushed_after(&p.after, &what)?;
    let mut change = RefChange::new(non_empty(&p.before), Some(after), None, None);
    let pusher = first_non_empty(&[&p.user_username, &p.user_name]).map(str::to_string);

    let commits = p.commits();
    let checkout = real_sha(non_empty(&p.checkout_sha));
    // Listed oldest first; for an annotated tag `after` is the tag object and
    // `checkout_sha` the commit.
    let head = commits
        .iter()
        .find(|c| {
            let id = c.id();
            id.is_some() && (id == change.after.as_deref() || id == checkout.as_deref())
        })
        .or_else(|| if change.deleted { None } else { commits.last() });
    let commits_complete = match p.total_commits_count {
        Some(total) => commits.len() as u64 >= total,
        None => change.deleted && commits.is_empty(),
    };
    // `after` names the commit: for an annotated tag GitLab's `after` is the
    // tag object, and `checkout_sha` the commit it points at.
    change.after = if change.deleted {
        None
    } else {
        checkout.or(change.after)
    };
    let push = ForgePush {
        pusher,
        head_message: message_of(head),
        commits_complete,
        ..ForgePush::new(repository, git_ref, change, commits)
    };
    Ok(Event::Push(vec![push.into_push()]))
}

/// GitLab: `X-Gitlab-Event`, and the secret itself in `X-Gitlab-Token`.
pub static GITLAB: HeaderSender = HeaderSender {
    id: Provider::Gitlab,
    also_serves: &[],
    event_header: "x-gitlab-event",
    claims: any_event,
    delivery_headers: &[
        "x-gitlab-event-uuid",
        "x-gitlab-webhook-uuid",
        "x-request-id",
    ],
    proof: |headers| Ok(plain_token(headers, "X-Gitlab-Token")),
    parse,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangedFiles;
    use crate::providers::test_support::{assert_ref, Fixtures};

    const GITLAB: Fixtures = Fixtures::new("gitlab", parse);

    const HELLO: &str = "gitlab-org/hello-world";
    const SUBGROUP: &str = "group1/group2/group3/grp2repo";

    #[test]
    fn push_branch_update() {
        for (event, name, full_name) in [
            ("Push Hook", "goscm-push.json", HELLO),
            ("System Hook", "goscm-push.json", HELLO),
            ("Push Hook", "goscm-push_subgroup.json", SUBGROUP),
        ] {
            let p = GITLAB.push(event, name);
            assert_eq!(p.repository.full_name, full_name);
            assert_eq!(
                p.repository.urls,
                vec![
                    format!("https://gitlab.com/{full_name}.git"),
                    format!("git@gitlab.com:{full_name}.git"),
                    format!("https://gitlab.com/{full_name}"),
                ]
            );
            assert_ref(
                &p,
                "refs/heads/master",
                Some("9217710ce8c7e1eae7a5d1c45f6e43e1c769f866"),
                Some("2adc9465c4edfc33834e173fe89436a7cb899a1d"),
            );
            assert!(!p.created && !p.deleted && !p.forced);
            assert_eq!(p.pusher.as_deref(), Some("sytses"));
            assert_eq!(p.head_message.as_deref(), Some("added readme\n"));
            assert_eq!(p.commit_messages, vec!["added readme\n"]);
            assert!(p.commits_complete);
            assert_eq!(
                p.changed_files,
                ChangedFiles::Complete(vec!["README.md".into()])
            );
        }
    }

    #[test]
    fn push_merge_two_commits() {
        let p = GITLAB.push("Push Hook", "goscm-push_merge.json");
        assert_eq!(p.repository.full_name, HELLO);
        assert_eq!(
            p.before.as_deref(),
            Some("2adc9465c4edfc33834e173fe89436a7cb899a1d")
        );
        assert_eq!(
            p.after.as_deref(),
            Some("78a76ee6b4992a6baf64c59fc4c44c7323d60438")
        );
        assert_eq!(
            p.head_message.as_deref(),
            Some("Merge branch 'feature' into 'master'\n\nupdate readme\n\nSee merge request gitlab-org/hello-world!1")
        );
        assert_eq!(p.commit_messages.len(), 2);
        assert_eq!(p.commit_messages[0], "update readme\n");
        assert!(p.commits_complete);
        assert_eq!(
            p.changed_files,
            ChangedFiles::Complete(vec!["README.md".into()])
        );
    }

    #[test]
    fn service_hook_push_and_tag() {
        let p = GITLAB.push("Service Hook", "woodpecker-HookPush.json");
        assert_eq!(p.repository.full_name, "test/woodpecker");
        assert_ref(
            &p,
            "refs/heads/main",
            Some("ffe8eb4f91d1fe6bc49f1e610e50e4b5767f0104"),
            Some("16862e368d8ab812e48833b741dad720d6e2cb7f"),
        );
        assert!(!p.created && !p.deleted && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("test"));
        assert_eq!(p.head_message.as_deref(), Some("Update main.go"));
        assert_eq!(p.commit_messages.len(), 1);
        assert_eq!(
            p.changed_files,
            ChangedFiles::Complete(vec!["cmd/cli/main.go".into()])
        );

        // Annotated tag: the payload's `after` (fabed3d9...) is the tag
        // object; `checkout_sha` is the commit, which is what deploys.
        let p = GITLAB.push("Service Hook", "woodpecker-HookTag.json");
        assert_eq!(p.repository.full_name, "test/woodpecker");
        assert_ref(
            &p,
            "refs/tags/v22",
            None,
            Some("16862e368d8ab812e48833b741dad720d6e2cb7f"),
        );
        assert!(p.created && !p.deleted);
        assert_eq!(p.head_message.as_deref(), Some("Update main.go"));
        assert_eq!(p.changed_files, ChangedFiles::Unknown);
    }

    #[test]
    fn branch_create_and_delete() {
        let p = GITLAB.push("Push Hook", "goscm-branch_create.json");
        assert_eq!(p.repository.full_name, HELLO);
        assert_ref(
            &p,
            "refs/heads/feature",
            None,
            Some("c4c79227ed610f1151f05bbc5be33b4f340d39c8"),
        );
        assert!(p.created && !p.deleted && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("sytses"));
        assert_eq!(p.head_message.as_deref(), Some("update readme\n"));
        assert_eq!(p.commit_messages.len(), 1);
        assert!(p.commits_complete);
        assert_eq!(p.changed_files, ChangedFiles::Unknown);

        for (name, full_name) in [
            ("goscm-branch_delete.json", HELLO),
            ("goscm-branch_delete_subgroup.json", SUBGROUP),
        ] {
            let p = GITLAB.push("Push Hook", name);
            assert_eq!(p.repository.full_name, full_name);
            assert_ref(
                &p,
                "refs/heads/feature",
                Some("c4c79227ed610f1151f05bbc5be33b4f340d39c8"),
                None,
            );
            assert!(p.deleted && !p.created);
            assert_eq!(p.pusher.as_deref(), Some("sytses"));
            assert_eq!(p.head_message, None);
            assert!(p.commit_messages.is_empty());
            assert_eq!(p.changed_files, ChangedFiles::Complete(vec![]));
        }
    }

    #[test]
    fn tags() {
        let p = GITLAB.push("Tag Push Hook", "goscm-tag_create.json");
        assert_eq!(p.repository.full_name, HELLO);
        assert_ref(
            &p,
            "refs/tags/v1.0.0",
            None,
            Some("2adc9465c4edfc33834e173fe89436a7cb899a1d"),
        );
        assert!(p.created && !p.deleted);
        assert_eq!(p.head_message.as_deref(), Some("added readme\n"));
        assert_eq!(p.commit_messages.len(), 1);
        assert_eq!(p.changed_files, ChangedFiles::Unknown);

        // go-scm sends these tag deletions with the `Push Hook` header.
        for (name, full_name) in [
            ("goscm-tag_delete.json", HELLO),
            ("goscm-tag_delete_subgroup.json", SUBGROUP),
        ] {
            let p = GITLAB.push("Push Hook", name);
            assert_eq!(p.repository.full_name, full_name);
            assert_ref(
                &p,
                "refs/tags/v1.0.0",
                Some("2adc9465c4edfc33834e173fe89436a7cb899a1d"),
                None,
            );
            assert!(p.deleted && !p.created);
            assert_eq!(p.head_message, None);
            assert_eq!(p.changed_files, ChangedFiles::Complete(vec![]));
        }
    }

    #[test]
    fn truncated_commit_list() {
        let body = br#"{"object_kind":"push","ref":"refs/heads/main",
            "before":"1111111111111111111111111111111111111111","after":"2222222222222222222222222222222222222222",
            "user_name":"Jo","total_commits_count":25,"project":{"path_with_namespace":"a/b/c"},
            "commits":[{"id":"2222222222222222222222222222222222222222","message":"last","added":[],"modified":["x"],"removed":[]}]}"#;
        let Ok(Event::Push(v)) = parse("Push Hook", body) else {
            panic!("not a push")
        };
        assert_eq!(v[0].repository.full_name, "a/b/c");
        assert_eq!(v[0].pusher.as_deref(), Some("Jo"));
        assert!(!v[0].commits_complete);
        assert_eq!(v[0].changed_files, ChangedFiles::Unknown);
    }

    #[test]
    fn system_hook_events() {
        let body = br#"{"event_name":"repository_update","user_id":1,"project_id":1,
            "project":{"path_with_namespace":"a/b"},"changes":[],"refs":["refs/heads/main"]}"#;
        assert_eq!(
            parse("System Hook", body),
            Ok(Event::Ignored {
                reason: "system hook repository_update events never deploy".into()
            })
        );
        let body = br#"{"event_name":"tag_push","object_kind":"tag_push","ref":"refs/tags/v1",
            "before":"0000000000000000000000000000000000000000","after":"2222222222222222222222222222222222222222",
            "user_username":"jo","total_commits_count":0,"commits":[],
            "project":{"path_with_namespace":"a/b","web_url":"https://gl.example/a/b"}}"#;
        let Ok(Event::Push(v)) = parse("System Hook", body) else {
            panic!("not a push")
        };
        assert_eq!(v[0].git_ref, "refs/tags/v1");
        assert!(v[0].created);
        assert_eq!(v[0].repository.urls, vec!["https://gl.example/a/b"]);
        assert!(matches!(
            parse("System Hook", b"{}"),
            Err(PluginError::MalformedPayload(_))
        ));
    }

    #[test]
    fn malformed() {
        let err = parse("Push Hook", b"nope").unwrap_err();
        assert!(
            matches!(err, PluginError::MalformedPayload(ref m) if m.starts_with("gitlab push hook: "))
        );
        let err = parse(
            "Push Hook",
            br#"{"object_kind":"push","ref":"refs/heads/x"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            PluginError::MalformedPayload(
                "gitlab push: missing project.path_with_namespace".into()
            )
        );
        let err = parse(
            "Tag Push Hook",
            br#"{"object_kind":"tag_push","project":{"path_with_namespace":"a/b"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            PluginError::MalformedPayload("gitlab tag_push: missing ref".into())
        );
    }

    #[test]
    fn ignored_events() {
        assert_eq!(
            GITLAB.ignored_reason("Pipeline Hook", "goscm-pipeline_hook.json"),
            "Pipeline Hook events never deploy"
        );
        assert_eq!(
            GITLAB.ignored_reason("Merge Request Hook", "goscm-pull_request_create.json"),
            "Merge Request Hook events never deploy"
        );
        assert_eq!(
            GITLAB.ignored_reason("Release Hook", "woodpecker-WebhookReleaseBody.json"),
            "Release Hook events never deploy"
        );
        // The body decides for integration deliveries too.
        assert_eq!(
            GITLAB.ignored_reason("Service Hook", "goscm-pull_request_create.json"),
            "service hook merge_request events never deploy"
        );
    }
}
