//! Bitbucket Cloud webhooks, told apart by their `X-Event-Key` header.
//!
//! Follows Atlassian's "Event payloads" page for Bitbucket Cloud. Only
//! `repo:push` deploys: its `push.changes[]` holds one entry per ref the push
//! touched, each with the ref before (`old`) and after (`new`), the
//! `created` / `closed` / `forced` flags, and up to five of the newest
//! `commits` (newest first) with `truncated` set when there were more. Each
//! change becomes one [`Push`]. `old` is `null` when the ref was created and
//! `new` is `null` when it was deleted. Every other event key
//! (`pullrequest:*`, `repo:commit_status_*`, `issue:*`...) is ignored.
//!
//! Bitbucket Cloud never lists the files a commit changed, so changed files
//! are always [`ChangedFiles::Unknown`].

use std::borrow::Cow;

use serde::Deserialize;

use super::bitbucket_server::{bitbucket_proof, is_server_key};
use super::common::{first_trimmed, push_url, real_sha};
use crate::error::{malformed, PluginError};
use crate::model::Provider;
use crate::model::{ChangedFiles, Event, Push, Repository};
use crate::providers::HeaderSender;

/// Names this provider in error messages.
const PROVIDER: &str = "bitbucket-cloud";

#[derive(Deserialize)]
struct PushPayload<'a> {
    #[serde(borrow)]
    push: PushBody<'a>,
    #[serde(borrow)]
    repository: CloudRepository<'a>,
    #[serde(borrow, default)]
    actor: Option<Account<'a>>,
}

#[derive(Deserialize)]
struct PushBody<'a> {
    #[serde(borrow, default)]
    changes: Option<Vec<Change<'a>>>,
}

#[derive(Deserialize)]
struct CloudRepository<'a> {
    #[serde(borrow)]
    full_name: Cow<'a, str>,
    #[serde(borrow, default)]
    links: Option<RepositoryLinks<'a>>,
}

#[derive(Deserialize)]
struct RepositoryLinks<'a> {
    #[serde(borrow, default)]
    html: Option<Link<'a>>,
}

#[derive(Deserialize)]
struct Link<'a> {
    #[serde(borrow, default)]
    href: Option<Cow<'a, str>>,
}

/// Bitbucket's account entity. `username` was removed from Cloud payloads in
/// 2019 in favour of `nickname`; older payloads still carry it.
#[derive(Deserialize)]
struct Account<'a> {
    #[serde(borrow, default)]
    nickname: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    username: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    display_name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Change<'a> {
    #[serde(borrow, default)]
    old: Option<RefState<'a>>,
    #[serde(borrow, default)]
    new: Option<RefState<'a>>,
    #[serde(default)]
    created: Option<bool>,
    #[serde(default)]
    closed: Option<bool>,
    #[serde(default)]
    forced: Option<bool>,
    #[serde(default)]
    truncated: Option<bool>,
    #[serde(borrow, default)]
    commits: Option<Vec<Commit<'a>>>,
}

/// A ref at one side of a change: `type` is `branch` or `tag` for git
/// (`named_branch` / `bookmark` were Mercurial's).
#[derive(Deserialize)]
struct RefState<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    target: Option<Commit<'a>>,
}

#[derive(Deserialize)]
struct Commit<'a> {
    #[serde(borrow, default)]
    hash: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// Normalizes one Bitbucket Cloud delivery; `event` is its `X-Event-Key`.
///
/// `repo:push` becomes [`Event::Push`] with one [`Push`] per change; every
/// other key becomes [`Event::Ignored`].
///
/// # Errors
///
/// [`PluginError::MalformedPayload`] when a `repo:push` body is not JSON, lacks
/// `push` or `repository.full_name`, or has a change naming no ref.
pub fn parse(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    if event != "repo:push" {
        return Ok(Event::Ignored {
            reason: format!("bitbucket cloud {event} events never deploy"),
        });
    }
    let what = format!("{PROVIDER} {event}");
    let payload: PushPayload = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;

    let mut urls = Vec::new();
    if let Some(href) = payload
        .repository
        .links
        .as_ref()
        .and_then(|l| l.html.as_ref())
        .and_then(|h| h.href.as_deref())
    {
        push_url(&mut urls, href);
    }
    let repository = Repository {
        full_name: payload.repository.full_name.trim_matches('/').to_string(),
        urls,
    };
    if repository.full_name.is_empty() {
        return Err(PluginError::MalformedPayload(format!(
            "{what}: repository.full_name is empty"
        )));
    }
    let pusher = payload
        .actor
        .as_ref()
        .and_then(|a| first_trimmed([&a.nickname, &a.username, &a.display_name]));

    let changes = payload.push.changes.unwrap_or_default();
    if changes.is_empty() {
        return Ok(Event::Ignored {
            reason: "bitbucket cloud repo:push lists no ref changes".into(),
        });
    }
    let mut pushes = Vec::with_capacity(changes.len());
    for (i, change) in changes.into_iter().enumerate() {
        // The ref's identity is the same on both sides; `new` is null on
        // deletion and `old` on creation.
        let named = change
            .new
            .as_ref()
            .filter(|r| r.name.as_deref().is_some_and(|n| !n.is_empty()))
            .or(change.old.as_ref())
            .filter(|r| r.name.as_deref().is_some_and(|n| !n.is_empty()))
            .ok_or_else(|| {
                PluginError::MalformedPayload(format!(
                    "{what}: push.changes[{i}] names no ref in old or new"
                ))
            })?;
        let git_ref = full_ref(
            named.kind.as_deref(),
            named.name.as_deref().unwrap_or_default(),
        );
        let before = real_sha(change.old.as_ref().and_then(|r| target_hash(r)));
        let after = real_sha(change.new.as_ref().and_then(|r| target_hash(r)));
        let commits = change.commits.unwrap_or_default();
        pushes.push(Push {
            repository: repository.clone(),
            git_ref,
            before,
            after,
            created: change.created.unwrap_or(false) || change.old.is_none(),
            deleted: change.closed.unwrap_or(false) || change.new.is_none(),
            forced: change.forced.unwrap_or(false),
            pusher: pusher.clone(),
            head_message: change
                .new
                .as_ref()
                .and_then(|r| r.target.as_ref())
                .and_then(|t| t.message.as_deref())
                .map(str::to_string),
            commit_messages: commits
                .iter()
                .filter_map(|c| c.message.as_deref())
                .map(str::to_string)
                .collect(),
            commits_complete: !change.truncated.unwrap_or(false),
            changed_files: ChangedFiles::Unknown,
        });
    }
    Ok(Event::Push(pushes))
}

fn target_hash<'r>(state: &'r RefState<'_>) -> Option<&'r str> {
    state.target.as_ref().and_then(|t| t.hash.as_deref())
}

/// Builds the full ref from Bitbucket's `type` and short `name`, always
/// under the namespace `type` names: a tag (or branch) whose own name is
/// `refs/heads/main`, which git allows, is `refs/tags/refs/heads/main`, not
/// the branch `main`. Other types keep the bare name, which no branch or tag
/// matches ([`super::common::untyped_ref`]).
fn full_ref(kind: Option<&str>, name: &str) -> String {
    match kind {
        Some("branch" | "named_branch" | "bookmark") => format!("refs/heads/{name}"),
        Some("tag" | "annotated_tag") => format!("refs/tags/{name}"),
        _ => super::common::untyped_ref(kind, name),
    }
}

/// Bitbucket Cloud: any `X-Event-Key` that is not Bitbucket Server's.
pub static BITBUCKET_CLOUD: HeaderSender = HeaderSender {
    id: Provider::BitbucketCloud,
    also_serves: &[],
    event_header: "x-event-key",
    claims: |key| !is_server_key(key),
    delivery_headers: &["x-request-uuid", "x-hook-uuid"],
    proof: bitbucket_proof,
    parse,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_support::{assert_ref, Fixtures};

    const CLOUD: Fixtures = Fixtures::new("bitbucket-cloud", parse);

    fn pushes(name: &str) -> Vec<Push> {
        CLOUD.pushes("repo:push", name)
    }

    fn foo_repo() -> Repository {
        Repository {
            full_name: "brydzewski/foo".into(),
            urls: vec!["https://bitbucket.org/brydzewski/foo".into()],
        }
    }

    #[test]
    fn branch_update() {
        let p = pushes("goscm-push.json");
        assert_eq!(
            p,
            vec![Push {
                repository: foo_repo(),
                git_ref: "refs/heads/master".into(),
                before: Some("40e7580cf11311d84a6e5e97e2cbba6df1675750".into()),
                after: Some("141977fedf5cf35aa290ac87d4b5177ac4cd9de1".into()),
                created: false,
                deleted: false,
                forced: false,
                pusher: Some("brydzewski".into()),
                head_message: Some("Update README\n".into()),
                commit_messages: vec!["Update README\n".into()],
                commits_complete: true,
                changed_files: ChangedFiles::Unknown,
            }]
        );
    }

    /// `goscm-push.json` with its change's `new` ref given `kind` and
    /// `name`.
    fn push_renamed(kind: &str, name: &str) -> Vec<Push> {
        let mut body: serde_json::Value =
            serde_json::from_slice(&CLOUD.read("goscm-push.json")).unwrap();
        let new = &mut body["push"]["changes"][0]["new"];
        assert_eq!(new["type"], "branch");
        assert_eq!(new["name"], "master");
        new["type"] = kind.into();
        new["name"] = name.into();
        let body = serde_json::to_vec(&body).unwrap();
        crate::providers::test_support::pushes("renamed", parse("repo:push", &body))
    }

    #[test]
    fn a_ref_named_like_a_full_ref_stays_in_the_namespace_its_type_names() {
        // git allows a tag, or a branch, whose own name is `refs/heads/...`.
        assert_eq!(
            push_renamed("tag", "refs/heads/master")[0].git_ref,
            "refs/tags/refs/heads/master"
        );
        assert_eq!(
            push_renamed("branch", "refs/heads/master")[0].git_ref,
            "refs/heads/refs/heads/master"
        );
        // A type it does not know names no branch, whatever the name says.
        let unknown = push_renamed("pull-request", "refs/heads/master");
        assert!(!unknown[0].git_ref.starts_with("refs/"), "{unknown:?}");
        assert_eq!(push_renamed("tag", "master")[0].git_ref, "refs/tags/master");
    }

    #[test]
    fn branch_create_has_no_before() {
        let p = pushes("goscm-push_branch_create.json");
        assert_eq!(p.len(), 1);
        assert_ref(
            &p[0],
            "refs/heads/develop",
            None,
            Some("141977fedf5cf35aa290ac87d4b5177ac4cd9de1"),
        );
        assert!(p[0].created && !p[0].deleted && !p[0].forced);
        assert_eq!(
            p[0].commit_messages,
            ["Update README\n", "initial commit\n"]
        );
        assert!(p[0].commits_complete);
        assert_eq!(p[0].head_message.as_deref(), Some("Update README\n"));
    }

    #[test]
    fn branch_delete_has_no_after() {
        let p = pushes("goscm-push_branch_delete.json");
        assert_eq!(p.len(), 1);
        assert_ref(
            &p[0],
            "refs/heads/develop",
            Some("141977fedf5cf35aa290ac87d4b5177ac4cd9de1"),
            None,
        );
        assert!(p[0].deleted && !p[0].created);
        assert_eq!(p[0].head_message, None);
        assert!(p[0].commit_messages.is_empty());
        assert_eq!(p[0].pusher.as_deref(), Some("brydzewski"));
    }

    #[test]
    fn tag_create_and_delete() {
        let c = pushes("goscm-push_tag_create.json");
        assert_eq!(c.len(), 1);
        assert_ref(
            &c[0],
            "refs/tags/feature/x",
            None,
            Some("141977fedf5cf35aa290ac87d4b5177ac4cd9de1"),
        );
        assert!(c[0].created && !c[0].deleted);
        assert_eq!(c[0].repository, foo_repo());

        let d = pushes("goscm-push_tag_delete.json");
        assert_eq!(d.len(), 1);
        assert_ref(
            &d[0],
            "refs/tags/feature/x",
            Some("141977fedf5cf35aa290ac87d4b5177ac4cd9de1"),
            None,
        );
        assert!(d[0].deleted && !d[0].created);
    }

    #[test]
    fn woodpecker_push_uses_nickname() {
        let p = pushes("woodpecker-HookPush.json");
        assert_eq!(
            p,
            vec![Push {
                repository: Repository {
                    full_name: "martinherren1984/publictestrepo".into(),
                    urls: vec!["https://bitbucket.org/martinherren1984/publictestrepo".into()],
                },
                git_ref: "refs/heads/main".into(),
                before: Some("a51241ae1f00cbe728930db48e890b18fd527f99".into()),
                after: Some("c14c1bb05dfb1fdcdf06b31485fff61b0ea44277".into()),
                created: false,
                deleted: false,
                forced: false,
                pusher: Some("Martin Herren".into()),
                head_message: Some("a\n".into()),
                commit_messages: vec!["a\n".into()],
                commits_complete: true,
                changed_files: ChangedFiles::Unknown,
            }]
        );
    }

    #[test]
    fn several_changes_forced_and_truncated() {
        let json = br#"{
            "actor": {"display_name": "Ann", "nickname": null},
            "repository": {"full_name": "team/app", "links": {"html": {"href": "https://bitbucket.org/team/app"}}},
            "push": {"changes": [
                {"old": {"type": "branch", "name": "main", "target": {"hash": "1111111111111111111111111111111111111111"}},
                 "new": {"type": "branch", "name": "main", "target": {"hash": "2222222222222222222222222222222222222222", "message": "fix\n"}},
                 "created": false, "closed": false, "forced": true, "truncated": true,
                 "commits": [{"hash": "2222222222222222222222222222222222222222", "message": "fix\n"}]},
                {"old": null,
                 "new": {"type": "tag", "name": "v1", "target": {"hash": "2222222222222222222222222222222222222222"}},
                 "created": true, "closed": false, "forced": false, "truncated": false, "commits": null}
            ]}
        }"#;
        let Ok(Event::Push(p)) = parse("repo:push", json) else {
            panic!("expected a push");
        };
        assert_eq!(p.len(), 2);
        assert!(p[0].forced && !p[0].commits_complete);
        assert_eq!(p[0].pusher.as_deref(), Some("Ann"));
        assert_eq!(p[1].git_ref, "refs/tags/v1");
        assert!(p[1].created && p[1].commit_messages.is_empty());
    }

    #[test]
    fn other_events_are_ignored() {
        for (event, file) in [
            ("pullrequest:created", "goscm-pr_created.json"),
            (
                "repo:commit_status_created",
                "goscm-pipeline_hook_created.json",
            ),
        ] {
            match CLOUD.parse(event, file) {
                Ok(Event::Ignored { reason }) => assert!(reason.contains(event), "{reason}"),
                other => panic!("{event}: {other:?}"),
            }
        }
        assert!(matches!(
            parse("repo:fork", b"{}"),
            Ok(Event::Ignored { .. })
        ));
    }

    #[test]
    fn malformed_push_is_an_error() {
        for body in [&b"not json"[..], b"{}", br#"{"push": {"changes": []}}"#] {
            match parse("repo:push", body) {
                Err(PluginError::MalformedPayload(m)) => {
                    assert!(m.starts_with("bitbucket-cloud repo:push: "), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
        let no_ref = br#"{"repository": {"full_name": "a/b"}, "push": {"changes": [{"old": null, "new": null}]}}"#;
        assert!(matches!(
            parse("repo:push", no_ref),
            Err(PluginError::MalformedPayload(_))
        ));
    }
}
