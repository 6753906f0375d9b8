//! Bitbucket Server / Data Center webhooks, told apart by their `X-Event-Key`
//! header.
//!
//! Follows Atlassian's Bitbucket Data Center and Server "Event payload" page:
//!
//! - `repo:refs_changed` (a push) and `mirror:repo_synchronized` (a mirror
//!   finished syncing) carry the same `changes[]` list: one entry per ref
//!   with `ref {id, displayId, type}`, `refId`, `fromHash`, `toHash` and a
//!   change `type` of `ADD`, `UPDATE` or `DELETE`. Each change becomes one
//!   [`Push`]. The 5.x payload has the same shape without links.
//! - `diagnostics:ping` ("Test connection") becomes [`Event::Ping`]; its body
//!   is not looked at (it is a tiny `{"test": true}`).
//! - Every other key (`pr:*`, `repo:modified`, `repo:forked`,
//!   `repo:comment:*`, `project:*`...) is ignored.
//!
//! Payloads from 7.x/8.x on may also carry `toCommit` and up to five of the
//! newest `commits` (newest first, the limit is configurable). They are used
//! for the head message and the commit messages when the push changed a
//! single ref, but never count as the whole push: Bitbucket gives no way to
//! tell a short list from a cut one. Files are never listed.

use std::borrow::Cow;

use serde::Deserialize;

use super::common::{first_trimmed, real_sha, repository, unlisted_push, RefChange};
use crate::error::{malformed, PluginError};
use crate::model::Event;
use crate::model::{Headers, Provider};
use crate::outcome::SignatureScheme;
use crate::providers::HeaderSender;
use crate::signature::{prefixed_sha256, FoundProof, Signed};

/// Names this provider in error messages.
const PROVIDER: &str = "bitbucket-server";

#[derive(Deserialize)]
struct RefsChanged<'a> {
    #[serde(borrow, default)]
    actor: Option<User<'a>>,
    #[serde(borrow)]
    repository: ServerRepository<'a>,
    #[serde(borrow, default)]
    changes: Option<Vec<Change<'a>>>,
    #[serde(borrow, default, rename = "toCommit")]
    to_commit: Option<Commit<'a>>,
    #[serde(borrow, default)]
    commits: Option<Vec<Commit<'a>>>,
    /// `mirror:repo_synchronized` only: the change list was left empty.
    #[serde(default, rename = "refLimitExceeded")]
    ref_limit_exceeded: Option<bool>,
}

#[derive(Deserialize)]
struct User<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    slug: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "displayName")]
    display_name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ServerRepository<'a> {
    #[serde(borrow)]
    slug: Cow<'a, str>,
    #[serde(borrow)]
    project: Project<'a>,
    #[serde(borrow, default)]
    links: Option<RepositoryLinks<'a>>,
}

#[derive(Deserialize)]
struct Project<'a> {
    #[serde(borrow)]
    key: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RepositoryLinks<'a> {
    #[serde(borrow, default)]
    clone: Option<Vec<Link<'a>>>,
    #[serde(borrow, default, rename = "self")]
    web: Option<Vec<Link<'a>>>,
}

#[derive(Deserialize)]
struct Link<'a> {
    #[serde(borrow, default)]
    href: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Change<'a> {
    #[serde(borrow, default, rename = "ref")]
    git_ref: Option<Ref<'a>>,
    #[serde(borrow, default, rename = "refId")]
    ref_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "fromHash")]
    from_hash: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "toHash")]
    to_hash: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Ref<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "displayId")]
    display_id: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Commit<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// Normalizes one Bitbucket Server delivery; `event` is its `X-Event-Key`.
///
/// `repo:refs_changed` and `mirror:repo_synchronized` become [`Event::Push`]
/// (one [`Push`] per ref change), `diagnostics:ping` becomes [`Event::Ping`],
/// anything else [`Event::Ignored`].
///
/// # Errors
///
/// [`PluginError::MalformedPayload`] when a push body is not JSON, lacks
/// `repository.slug` or `repository.project.key`, or has a change naming no ref.
pub fn parse(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    match event {
        "repo:refs_changed" | "mirror:repo_synchronized" => parse_refs_changed(event, json),
        "diagnostics:ping" => Ok(Event::Ping { repository: None }),
        _ => Ok(Event::Ignored {
            reason: format!("bitbucket server {event} events never deploy"),
        }),
    }
}

fn parse_refs_changed(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    let what = format!("{PROVIDER} {event}");
    let payload: RefsChanged = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;

    let repo = &payload.repository;
    if repo.project.key.is_empty() || repo.slug.is_empty() {
        return Err(PluginError::MalformedPayload(format!(
            "{what}: repository.project.key or repository.slug is empty"
        )));
    }
    let links = repo.links.as_ref();
    let clone = links.and_then(|l| l.clone.as_ref()).into_iter().flatten();
    let web = links.and_then(|l| l.web.as_ref()).into_iter().flatten();
    let repository = repository(
        &format!("{}/{}", repo.project.key, repo.slug),
        clone.chain(web).filter_map(|l| l.href.as_deref()),
    );
    let pusher = payload
        .actor
        .as_ref()
        .and_then(|a| first_trimmed([&a.name, &a.slug, &a.display_name]));

    let changes = payload.changes.unwrap_or_default();
    if changes.is_empty() {
        let reason = if payload.ref_limit_exceeded == Some(true) {
            format!("bitbucket server {event} left out its ref changes (ref limit exceeded)")
        } else {
            format!("bitbucket server {event} lists no ref changes")
        };
        return Ok(Event::Ignored { reason });
    }
    let single = changes.len() == 1;
    let commits = payload.commits.unwrap_or_default();

    let mut pushes = Vec::with_capacity(changes.len());
    for (i, change) in changes.iter().enumerate() {
        let git_ref = full_ref(change).ok_or_else(|| {
            PluginError::MalformedPayload(format!("{what}: changes[{i}] names no ref"))
        })?;
        let kind = change.kind.as_deref().unwrap_or_default();
        let before = real_sha(change.from_hash.as_deref());
        let after = real_sha(change.to_hash.as_deref());
        let created = kind.eq_ignore_ascii_case("ADD") || (before.is_none() && after.is_some());
        let deleted = kind.eq_ignore_ascii_case("DELETE") || (after.is_none() && before.is_some());
        // `toCommit` and `commits` belong to the whole event; they can only be
        // attributed to a ref when it is the only one, or by matching ids.
        let head_message = payload
            .to_commit
            .as_ref()
            .filter(|c| !deleted && c.id.is_some() && c.id.as_deref() == after.as_deref())
            .and_then(|c| c.message.as_deref())
            .map(str::to_string);
        let commit_messages = if single && !deleted {
            commits
                .iter()
                .filter_map(|c| c.message.as_deref())
                .map(str::to_string)
                .collect()
        } else {
            Vec::new()
        };
        let change = RefChange {
            before,
            after,
            created,
            deleted,
        };
        pushes.push(unlisted_push(
            &repository,
            git_ref,
            change,
            &pusher,
            head_message,
            commit_messages,
        ));
    }
    Ok(Event::Push(pushes))
}

/// The change's full ref: `ref.id`, else `refId`, else built from
/// `ref.displayId` and `ref.type`.
fn full_ref(change: &Change<'_>) -> Option<String> {
    let r = change.git_ref.as_ref();
    let id = r
        .and_then(|r| r.id.as_deref())
        .or(change.ref_id.as_deref())
        .filter(|s| !s.is_empty());
    if let Some(id) = id {
        if id.starts_with("refs/") {
            return Some(id.to_string());
        }
    }
    let name = r
        .and_then(|r| r.display_id.as_deref())
        .filter(|s| !s.is_empty())
        .or(id)?;
    Some(match r.and_then(|r| r.kind.as_deref()) {
        Some(k) if k.eq_ignore_ascii_case("BRANCH") => format!("refs/heads/{name}"),
        Some(k) if k.eq_ignore_ascii_case("TAG") => format!("refs/tags/{name}"),
        kind => super::common::untyped_ref(kind, name),
    })
}

/// Bitbucket Server / Data Center event keys (prefixes). Every other
/// `X-Event-Key` is Bitbucket Cloud's.
const SERVER_KEYS: &[&str] = &[
    "repo:refs_changed",
    "repo:modified",
    "repo:forked",
    "repo:comment:",
    "repo:secret_detected",
    "pr:",
    "mirror:",
    "project:",
    "diagnostics:ping",
];

/// Whether an `X-Event-Key` is one of Bitbucket Server's.
pub fn is_server_key(key: &str) -> bool {
    SERVER_KEYS.iter().any(|p| key.starts_with(p))
}

/// The signature of both Bitbucket Cloud and Server: `X-Hub-Signature:
/// sha256=<hex>` over the raw body.
pub fn bitbucket_proof(headers: &Headers) -> Result<FoundProof<'_>, PluginError> {
    let scheme = SignatureScheme::BitbucketSha256;
    prefixed_sha256(headers, "X-Hub-Signature", scheme, Signed::RawBody)
}

/// Bitbucket Server / Data Center: an `X-Event-Key` of its own.
pub static BITBUCKET_SERVER: HeaderSender = HeaderSender {
    id: Provider::BitbucketServer,
    also_serves: &[],
    event_header: "x-event-key",
    claims: is_server_key,
    delivery_headers: &["x-request-id"],
    proof: bitbucket_proof,
    parse,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangedFiles, Push, Repository};
    use crate::providers::test_support::{assert_ref, Fixtures};

    const SERVER: Fixtures = Fixtures::new("bitbucket-server", parse);

    fn pushes(name: &str) -> Vec<Push> {
        SERVER.pushes("repo:refs_changed", name)
    }

    /// The goscm `webhooks/` fixtures: PRJ/my-repo, no links, actor jcitizen.
    fn my_repo() -> Repository {
        Repository {
            full_name: "PRJ/my-repo".into(),
            urls: vec![],
        }
    }

    fn bare(git_ref: &str, before: Option<&str>, after: Option<&str>) -> Push {
        Push {
            repository: my_repo(),
            git_ref: git_ref.into(),
            before: before.map(Into::into),
            after: after.map(Into::into),
            created: before.is_none(),
            deleted: after.is_none(),
            forced: false,
            pusher: Some("jcitizen".into()),
            head_message: None,
            commit_messages: vec![],
            commits_complete: false,
            changed_files: ChangedFiles::Unknown,
        }
    }

    #[test]
    fn goscm_branch_and_tag_changes() {
        assert_eq!(
            pushes("goscm-push.json"),
            vec![bare(
                "refs/heads/master",
                Some("5c64a07cd6c0f21b753bf261ef059c7e7633c50a"),
                Some("823b2230a56056231c9425d63758fa87078a66b4"),
            )]
        );
        assert_eq!(
            pushes("goscm-push_branch_create.json"),
            vec![bare(
                "refs/heads/develop",
                None,
                Some("208b0a5c05eddadad01f2aed8802fe0c3b3eaf5e")
            )]
        );
        assert_eq!(
            pushes("goscm-push_branch_delete.json"),
            vec![bare(
                "refs/heads/develop",
                Some("208b0a5c05eddadad01f2aed8802fe0c3b3eaf5e"),
                None
            )]
        );
        assert_eq!(
            pushes("goscm-push_tag_create.json"),
            vec![bare(
                "refs/tags/v1.1.0",
                None,
                Some("823b2230a56056231c9425d63758fa87078a66b4")
            )]
        );
        assert_eq!(
            pushes("goscm-push_tag_delete.json"),
            vec![bare(
                "refs/tags/v1.1.0",
                Some("823b2230a56056231c9425d63758fa87078a66b4"),
                None
            )]
        );
    }

    #[test]
    fn version_5_payload() {
        let p = pushes("goscm-push_v5.json");
        assert_eq!(
            p,
            vec![Push {
                repository: Repository {
                    full_name: "ISCLOUD/transamerica.cloud.individual.tftest".into(),
                    urls: vec![],
                },
                git_ref: "refs/heads/trangineni/devtfvars-1685475548410".into(),
                before: Some("b2b710209761a3fab9fc867aad7b7725fd0fd028".into()),
                after: Some("51a33664b6d7fb5aa15063064eb230362cd02e9e".into()),
                created: false,
                deleted: false,
                forced: false,
                pusher: Some("trangineni".into()),
                head_message: None,
                commit_messages: vec![],
                commits_complete: false,
                changed_files: ChangedFiles::Unknown,
            }]
        );
    }

    #[test]
    fn its_http_clone_url_under_scm_names_the_repository_with_or_without_it() {
        // A stack's `prj/repo`, host or not, is the delivery's repository.
        let p = &pushes("woodpecker-HookPush.json")[0];
        for wanted in [
            "dev/deployment-automation",
            "https://bitbucket.example.com/dev/deployment-automation",
            "https://bitbucket.example.com/scm/dev/deployment-automation.git",
        ] {
            let key = crate::matching::RepoKey::setting(wanted).unwrap();
            assert!(
                crate::matching::repository_matches(&key, &p.repository),
                "{wanted}"
            );
        }
    }

    #[test]
    fn data_center_payload_with_commits() {
        let p = pushes("woodpecker-HookPush.json");
        assert_eq!(
            p,
            vec![Push {
                repository: Repository {
                    full_name: "DEV/deployment-automation".into(),
                    urls: vec![
                        "https://bitbucket.example.com/scm/dev/deployment-automation.git".into(),
                        "ssh://git@bitbucket.example.com:7999/dev/deployment-automation.git".into(),
                        "https://bitbucket.example.com/projects/DEV/repos/deployment-automation/browse"
                            .into(),
                    ],
                },
                git_ref: "refs/heads/renovate-all".into(),
                before: Some("e0e15221b987fd8296141c0faa6a79f7c86ca4ce".into()),
                after: Some("76797d54bca87db6d1e3e82ee40622c7908aa514".into()),
                created: false,
                deleted: false,
                forced: false,
                pusher: Some("renovatebot".into()),
                head_message: Some("chore(deps): update all".into()),
                commit_messages: vec!["chore(deps): update all".into()],
                commits_complete: false,
                changed_files: ChangedFiles::Unknown,
            }]
        );
    }

    #[test]
    fn data_center_10_branch_create_and_update() {
        let c = pushes("goscm-fnb_push_branch_create.json");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].repository.full_name, "TSG/nova-ui");
        assert_eq!(
            c[0].repository.urls,
            [
                "https://gts-it.fnb.co.za/stash/scm/tsg/nova-ui.git",
                "ssh://git@gts-it.fnb.co.za:7999/tsg/nova-ui.git",
                "https://gts-it.fnb.co.za/stash/projects/TSG/repos/nova-ui/browse",
            ]
        );
        assert_ref(
            &c[0],
            "refs/heads/idpdocs",
            None,
            Some("b8ba6d6045f85379a2dc5b556d8a9ea23a69ac13"),
        );
        assert!(c[0].created && !c[0].deleted);
        assert_eq!(c[0].pusher.as_deref(), Some("F4651405"));
        assert_eq!(
            c[0].head_message.as_deref(),
            Some("Add IDP docs scaffolding")
        );
        assert_eq!(c[0].commit_messages, ["Add IDP docs scaffolding"]);
        assert!(!c[0].commits_complete);

        let u = pushes("goscm-fnb_push_update.json");
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].repository.full_name, "PENGINE/product-engine");
        assert_ref(
            &u[0],
            "refs/heads/develop",
            Some("c112673b9efd82794bf73a1ff6ff8ad6708e9df5"),
            Some("d29fa17bbe9979c3f603e0f11574735da88bf27f"),
        );
        assert!(!u[0].created && !u[0].deleted);
        assert_eq!(u[0].pusher.as_deref(), Some("F3238660"));
        let head = u[0].head_message.as_deref().unwrap_or_default();
        assert!(
            head.starts_with("Pull request #69: Dockerfile edited online"),
            "{head}"
        );
        assert_eq!(u[0].commit_messages.len(), 2);
        assert_eq!(u[0].commit_messages[0], head);
        assert_eq!(
            u[0].commit_messages[1],
            "Dockerfile edited online with Bitbucket"
        );
        assert_eq!(u[0].changed_files, ChangedFiles::Unknown);
    }

    #[test]
    fn mirror_synchronized_is_a_push() {
        let json = br#"{"eventKey": "mirror:repo_synchronized",
            "mirrorServer": {"id": "B7", "name": "Mirror"}, "syncType": "incremental",
            "refLimitExceeded": false,
            "repository": {"slug": "repo", "project": {"key": "PROJ"},
                "links": {"clone": [{"href": "ssh://git@mirror/proj/repo.git", "name": "ssh"}, {"href": "", "name": "http"}]}},
            "changes": [
                {"ref": {"id": "refs/heads/main", "displayId": "main", "type": "BRANCH"}, "refId": "refs/heads/main",
                 "fromHash": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "toHash": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "type": "UPDATE"},
                {"ref": {"displayId": "v2", "type": "TAG"},
                 "fromHash": "0000000000000000000000000000000000000000", "toHash": "cccccccccccccccccccccccccccccccccccccccc", "type": "ADD"}
            ]}"#;
        let Ok(Event::Push(p)) = parse("mirror:repo_synchronized", json) else {
            panic!("expected a push");
        };
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].repository.full_name, "PROJ/repo");
        assert_eq!(p[0].repository.urls, ["ssh://git@mirror/proj/repo.git"]);
        assert_eq!(p[0].git_ref, "refs/heads/main");
        assert_eq!(p[0].pusher, None);
        assert_eq!(p[1].git_ref, "refs/tags/v2");
        assert!(p[1].created);

        let exceeded = br#"{"refLimitExceeded": true, "changes": [],
            "repository": {"slug": "repo", "project": {"key": "PROJ"}}}"#;
        match parse("mirror:repo_synchronized", exceeded) {
            Ok(Event::Ignored { reason }) => assert!(reason.contains("ref limit"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ping_accepts_any_body() {
        for body in [&br#"{"test": true}"#[..], b"{}", b""] {
            assert_eq!(
                parse("diagnostics:ping", body),
                Ok(Event::Ping { repository: None })
            );
        }
    }

    #[test]
    fn other_events_are_ignored() {
        match SERVER.parse("pr:opened", "goscm-pr_open.json") {
            Ok(Event::Ignored { reason }) => assert!(reason.contains("pr:opened"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse("repo:modified", b"{}"),
            Ok(Event::Ignored { .. })
        ));
    }

    #[test]
    fn malformed_push_is_an_error() {
        for body in [
            &b"["[..],
            b"{}",
            br#"{"repository": {"slug": "r"}, "changes": []}"#,
        ] {
            match parse("repo:refs_changed", body) {
                Err(PluginError::MalformedPayload(m)) => {
                    assert!(m.starts_with("bitbucket-server repo:refs_changed: "), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
        let no_ref = br#"{"repository": {"slug": "r", "project": {"key": "P"}},
            "changes": [{"fromHash": "a", "toHash": "b", "type": "UPDATE"}]}"#;
        assert!(matches!(
            parse("repo:refs_changed", no_ref),
            Err(PluginError::MalformedPayload(_))
        ));
    }
}
