//! Bitbucket Cloud's legacy "POST service" (POST hook), the predecessor of
//! Bitbucket webhooks: a form-encoded body whose `payload` field holds the
//! JSON document (decoded before it gets here).
//!
//! Follows Atlassian's "POST hook management" / "POST Payload" pages: the
//! document has `canon_url` (`https://bitbucket.org`), `repository`
//! (`absolute_url` such as `/marcus/project-x/`, `owner`, `slug`...), `user`
//! (who pushed) and `commits[]`, oldest first, each with `branch`, `node`
//! (short id), `raw_node` (full id), `message` and `files[] {file, type}`.
//! Real payloads also carry a top-level `truncated` flag, and commits that
//! landed on several branches may give `branch: null` with a `branches`
//! list; both are honoured.
//!
//! The service only ever reports pushes, and says nothing about the ref's
//! previous commit, creation, deletion or forcing: commits are grouped by
//! branch into one [`Push`] per branch whose `after` is the last commit listed
//! on it. A payload without commits (Bitbucket sends one for a force push or
//! a push of only existing commits) names no branch and is ignored.

use std::borrow::Cow;

use serde::Deserialize;

use crate::error::{malformed, PluginError};
use crate::model::Provider;
use crate::model::{Event, Push, Repository};
use crate::providers::common::{changed_files, real_sha};
use crate::providers::{BodyShape, Detected, Sender};

/// Names this provider and its only event in error messages.
const WHAT: &str = "bitbucket-legacy push";

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(borrow, default)]
    canon_url: Option<Cow<'a, str>>,
    #[serde(borrow)]
    repository: LegacyRepository<'a>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    commits: Option<Vec<Commit<'a>>>,
    #[serde(default)]
    truncated: Option<bool>,
}

#[derive(Deserialize)]
struct LegacyRepository<'a> {
    #[serde(borrow, default)]
    absolute_url: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    owner: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    slug: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Commit<'a> {
    #[serde(borrow, default)]
    branch: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    branches: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    raw_node: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    node: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    files: Option<Vec<File<'a>>>,
}

#[derive(Deserialize)]
struct File<'a> {
    #[serde(borrow, default)]
    file: Option<Cow<'a, str>>,
}

impl Commit<'_> {
    /// The branches this commit is listed on.
    fn on_branches(&self) -> impl Iterator<Item = &str> {
        self.branch
            .as_deref()
            .into_iter()
            .chain(self.branches.iter().flatten().map(|b| b.as_ref()))
            .filter(|b| !b.is_empty())
    }

    fn id(&self) -> Option<&str> {
        self.raw_node
            .as_deref()
            .filter(|s| !s.is_empty())
            .or(self.node.as_deref())
    }
}

/// Normalizes one legacy POST service delivery (the decoded `payload` JSON).
///
/// Becomes [`Event::Push`] with one [`Push`] per branch named by its commits,
/// or [`Event::Ignored`] when no commit names a branch.
///
/// # Errors
///
/// [`PluginError::MalformedPayload`] when the document is not JSON or its
/// `repository` has neither `absolute_url` nor `owner` and `slug`.
pub fn parse(json: &[u8]) -> Result<Event, PluginError> {
    let payload: Payload = serde_json::from_slice(json).map_err(|e| malformed(WHAT, e))?;

    let absolute = payload
        .repository
        .absolute_url
        .as_deref()
        .map(|u| u.trim().trim_matches('/'))
        .filter(|u| !u.is_empty());
    let full_name = match (
        absolute,
        &payload.repository.owner,
        &payload.repository.slug,
    ) {
        (Some(path), _, _) => path.to_string(),
        (None, Some(owner), Some(slug)) if !owner.is_empty() && !slug.is_empty() => {
            format!("{owner}/{slug}")
        }
        _ => {
            return Err(PluginError::MalformedPayload(format!(
                "{WHAT}: repository has no absolute_url"
            )))
        }
    };
    let mut urls = Vec::new();
    let canon = payload
        .canon_url
        .as_deref()
        .map(|c| c.trim().trim_end_matches('/'))
        .filter(|c| !c.is_empty());
    if let Some(canon) = canon {
        urls.push(format!("{canon}/{full_name}"));
    }
    let repository = Repository { full_name, urls };
    let pusher = payload
        .user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    let listed_whole = !payload.truncated.unwrap_or(false);

    let commits = payload.commits.unwrap_or_default();
    // Branches in the order they first appear.
    let mut branches: Vec<&str> = Vec::new();
    for branch in commits.iter().flat_map(Commit::on_branches) {
        if !branches.contains(&branch) {
            branches.push(branch);
        }
    }
    if branches.is_empty() {
        return Ok(Event::Ignored {
            reason: "legacy bitbucket post with no commits names no branch".into(),
        });
    }

    let mut pushes = Vec::with_capacity(branches.len());
    for branch in branches {
        let on_branch: Vec<&Commit> = commits
            .iter()
            .filter(|c| c.on_branches().any(|b| b == branch))
            .collect();
        let last = on_branch.last().copied();
        let files_listed = on_branch.iter().all(|c| c.files.is_some());
        let files = on_branch
            .iter()
            .flat_map(|c| c.files.iter().flatten())
            .filter_map(|f| f.file.as_deref())
            .filter(|f| !f.is_empty());
        pushes.push(Push {
            repository: repository.clone(),
            git_ref: format!("refs/heads/{branch}"),
            before: None,
            after: real_sha(last.and_then(Commit::id)),
            created: false,
            deleted: false,
            forced: false,
            pusher: pusher.clone(),
            head_message: last.and_then(|c| c.message.as_deref()).map(str::to_string),
            commit_messages: on_branch
                .iter()
                .filter_map(|c| c.message.as_deref())
                .map(str::to_string)
                .collect(),
            commits_complete: listed_whole,
            changed_files: changed_files(files, listed_whole && files_listed),
        });
    }
    Ok(Event::Push(pushes))
}

/// The legacy Bitbucket POST service: no header, a body with `canon_url`,
/// `repository` and `commits`; it signs nothing.
pub struct BitbucketLegacy;

impl Sender for BitbucketLegacy {
    fn id(&self) -> Provider {
        Provider::BitbucketLegacy
    }

    fn detect_by_body(&self, shape: &BodyShape) -> Option<Detected> {
        let fits = shape.canon_url.is_some() && shape.repository.is_some();
        (fits && shape.commits.is_some())
            .then(|| Detected::new(Provider::BitbucketLegacy, "push", None))
    }

    fn parse(&self, _detected: &mut Detected, json: &[u8]) -> Result<Event, PluginError> {
        parse(json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangedFiles;
    use crate::providers::test_support::Fixtures;

    const LEGACY: Fixtures = Fixtures::new("bitbucket-legacy-post", |_, json| parse(json));

    #[test]
    fn zulip_push() {
        assert_eq!(
            parse(&LEGACY.read("zulip-bitbucket_push.json")),
            Ok(Event::Push(vec![Push {
                repository: Repository {
                    full_name: "kolaszek/repository-name".into(),
                    urls: vec!["https://bitbucket.org/kolaszek/repository-name".into()],
                },
                git_ref: "refs/heads/master".into(),
                before: None,
                after: Some("25f93d22b719e2d678a7ad5ee0ef0d1fcdf39c12".into()),
                created: false,
                deleted: false,
                forced: false,
                pusher: Some("kolaszek".into()),
                head_message: Some("c\n".into()),
                commit_messages: vec!["c\n".into()],
                commits_complete: true,
                // Zulip trimmed `files` away, so the list is not known.
                changed_files: ChangedFiles::Unknown,
            }]))
        );
    }

    #[test]
    fn push_without_commits_is_ignored() {
        match parse(&LEGACY.read("zulip-force_push.json")) {
            Ok(Event::Ignored { reason }) => assert!(reason.contains("no branch"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    /// Atlassian's documented git example, extended with a second commit on
    /// another branch and one on both.
    #[test]
    fn groups_commits_by_branch_with_files() {
        let json = br#"{
            "canon_url": "https://bitbucket.org",
            "commits": [
                {"author": "marcus", "branch": "master",
                 "files": [{"file": "somefile.py", "type": "modified"}],
                 "message": "Added some more things to somefile.py\n", "node": "620ade18607a",
                 "parents": ["702c70160afc"], "raw_author": "Marcus Bertrand <marcus@somedomain.com>",
                 "raw_node": "620ade18607ac42d872b568bb92acaa9a28620e9", "revision": null, "size": -1,
                 "timestamp": "2012-05-30 05:58:56", "utctimestamp": "2012-05-30 03:58:56+00:00"},
                {"branch": "feature", "files": [{"file": "b.txt", "type": "added"}],
                 "message": "feature work", "node": "1234567890ab"},
                {"branch": null, "branches": ["master", "feature"],
                 "files": [{"file": "a.txt", "type": "removed"}, {"file": "somefile.py", "type": "modified"}],
                 "message": "merge", "raw_node": "abcdefabcdefabcdefabcdefabcdefabcdefabcd"}
            ],
            "repository": {"absolute_url": "/marcus/project-x/", "fork": false, "is_private": true,
                "name": "Project X", "owner": "marcus", "scm": "git", "slug": "project-x", "website": ""},
            "user": "marcus"
        }"#;
        let Ok(Event::Push(p)) = parse(json) else {
            panic!("expected a push");
        };
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].repository.full_name, "marcus/project-x");
        assert_eq!(
            p[0].repository.urls,
            ["https://bitbucket.org/marcus/project-x"]
        );
        assert_eq!(p[0].git_ref, "refs/heads/master");
        assert_eq!(
            p[0].after.as_deref(),
            Some("abcdefabcdefabcdefabcdefabcdefabcdefabcd")
        );
        assert_eq!(p[0].head_message.as_deref(), Some("merge"));
        assert_eq!(
            p[0].commit_messages,
            ["Added some more things to somefile.py\n", "merge"]
        );
        assert!(p[0].commits_complete);
        assert_eq!(
            p[0].changed_files,
            ChangedFiles::Complete(vec!["a.txt".into(), "somefile.py".into()])
        );
        assert_eq!(p[1].git_ref, "refs/heads/feature");
        assert_eq!(p[1].commit_messages, ["feature work", "merge"]);
        assert_eq!(
            p[1].changed_files,
            ChangedFiles::Complete(vec!["a.txt".into(), "b.txt".into(), "somefile.py".into()])
        );
        assert_eq!(p[1].pusher.as_deref(), Some("marcus"));
    }

    #[test]
    fn short_node_and_truncation() {
        let json = br#"{"canon_url": "", "user": "u", "truncated": true,
            "repository": {"absolute_url": "/g/r/"},
            "commits": [{"branch": "develop", "node": "727a3b3c6b37", "message": "m", "files": []}]}"#;
        let Ok(Event::Push(p)) = parse(json) else {
            panic!("expected a push");
        };
        assert_eq!(p[0].after.as_deref(), Some("727a3b3c6b37"));
        assert!(p[0].repository.urls.is_empty());
        assert!(!p[0].commits_complete);
        assert_eq!(p[0].changed_files, ChangedFiles::Unknown);
    }

    #[test]
    fn malformed_payload_is_an_error() {
        for body in [
            &b"payload="[..],
            b"{}",
            br#"{"repository": {}, "commits": []}"#,
        ] {
            match parse(body) {
                Err(PluginError::MalformedPayload(m)) => {
                    assert!(m.starts_with("bitbucket-legacy push: "), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
