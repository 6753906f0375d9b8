//! Harness Code (Gitness) webhooks: `X-Harness-Trigger` names the trigger.
//!
//! `branch_created`, `branch_updated`, `branch_deleted`, `tag_created`,
//! `tag_updated` and `tag_deleted` are ref updates with the same body:
//! `repo` (`path`, `git_url`), `ref.name` (full ref), `old_sha`, `sha`,
//! `forced`, `principal`, `head_commit`, and on updates `commits` with
//! `total_commits_count`. `pullreq_*` and other triggers never deploy.

use std::borrow::Cow;

use serde::Deserialize;

use super::common::{changed_files, is_zero_sha, real_sha};
use crate::error::{malformed, PluginError};
use crate::model::{ChangedFiles, Event, Provider, Push, Repository};
use crate::providers::{any_event, no_proof, HeaderSender};

#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(borrow)]
    repo: Option<Repo<'a>>,
    #[serde(borrow, rename = "ref")]
    git_ref: Option<Ref<'a>>,
    #[serde(borrow)]
    sha: Option<Cow<'a, str>>,
    #[serde(borrow)]
    old_sha: Option<Cow<'a, str>>,
    #[serde(default)]
    forced: Option<bool>,
    #[serde(borrow)]
    principal: Option<Principal<'a>>,
    #[serde(borrow)]
    head_commit: Option<Commit<'a>>,
    #[serde(borrow, default)]
    commits: Option<Vec<Commit<'a>>>,
    total_commits_count: Option<u64>,
}

#[derive(Deserialize)]
struct Repo<'a> {
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    git_url: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Ref<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Principal<'a> {
    #[serde(borrow)]
    uid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    display_name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Commit<'a> {
    #[serde(borrow)]
    sha: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(borrow)]
    added: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    removed: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    modified: Option<Vec<Cow<'a, str>>>,
}

const REF_TRIGGERS: &[&str] = &[
    "branch_created",
    "branch_updated",
    "branch_deleted",
    "tag_created",
    "tag_updated",
    "tag_deleted",
];

/// Normalizes one Harness Code delivery.
pub fn parse(trigger: &str, json: &[u8]) -> Result<Event, PluginError> {
    if !REF_TRIGGERS.contains(&trigger) {
        return Ok(Event::Ignored {
            reason: format!("harness {trigger} events never deploy"),
        });
    }
    let p: Payload =
        serde_json::from_slice(json).map_err(|e| malformed(&format!("harness {trigger}"), e))?;
    let repo = p
        .repo
        .ok_or_else(|| PluginError::MalformedPayload(format!("harness {trigger}: missing repo")))?;
    let full_name = repo.path.filter(|s| !s.is_empty()).ok_or_else(|| {
        PluginError::MalformedPayload(format!("harness {trigger}: missing repo.path"))
    })?;
    let git_ref = p
        .git_ref
        .and_then(|r| r.name)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            PluginError::MalformedPayload(format!("harness {trigger}: missing ref.name"))
        })?;
    let before = real_sha(p.old_sha.as_deref());
    // `after` names the commit: for an annotated tag `sha` is the tag
    // object and `head_commit.sha` the commit it points at.
    let head_sha = p
        .head_commit
        .as_ref()
        .and_then(|c| real_sha(c.sha.as_deref()));
    let after = real_sha(p.sha.as_deref()).map(|sha| head_sha.clone().unwrap_or(sha));
    let created = trigger.ends_with("_created") || p.old_sha.as_deref().is_some_and(is_zero_sha);
    let deleted = trigger.ends_with("_deleted") || p.sha.as_deref().is_some_and(is_zero_sha);
    let forced = p.forced.unwrap_or(false);
    let commits = p.commits.unwrap_or_default();
    let commits_complete =
        !commits.is_empty() && p.total_commits_count == Some(commits.len() as u64);
    let all_lists = commits
        .iter()
        .all(|c| c.added.is_some() && c.removed.is_some() && c.modified.is_some());
    let files = if deleted {
        ChangedFiles::Complete(vec![])
    } else {
        changed_files(
            commits.iter().flat_map(|c| {
                [&c.added, &c.removed, &c.modified]
                    .into_iter()
                    .flatten()
                    .flat_map(|l| l.iter().map(|s| s.as_ref()))
            }),
            commits_complete && all_lists && !created && !forced,
        )
    };
    Ok(Event::Push(vec![Push {
        repository: Repository {
            full_name: full_name.into_owned(),
            urls: repo.git_url.into_iter().map(Cow::into_owned).collect(),
        },
        git_ref: git_ref.into_owned(),
        before,
        after,
        created,
        deleted,
        forced,
        pusher: p
            .principal
            .and_then(|pr| pr.display_name.or(pr.uid))
            .map(Cow::into_owned),
        head_message: p.head_commit.and_then(|c| c.message).map(Cow::into_owned),
        commit_messages: commits
            .iter()
            .filter_map(|c| c.message.as_deref().map(str::to_string))
            .collect(),
        commits_complete,
        changed_files: files,
    }]))
}

/// Harness Code: `X-Harness-Trigger`; it signs nothing redeploy can check.
pub static HARNESS: HeaderSender = HeaderSender {
    id: Provider::Harness,
    also_serves: &[],
    event_header: "x-harness-trigger",
    claims: any_event,
    delivery_headers: &["x-harness-webhook-id"],
    proof: no_proof,
    parse,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_support::{assert_ref, Fixtures};

    const HARNESS_CODE: Fixtures = Fixtures::new("harness-code", parse);

    #[test]
    fn branch_updated() {
        let p = HARNESS_CODE.push("branch_updated", "goscm-branch_updated.json");
        assert_eq!(
            p.repository.full_name,
            "vpCkHKsDSxK9_KYfjCTMKA/default/Repo_With_PR_checks/abhinav-git-sync"
        );
        assert_ref(
            &p,
            "refs/heads/master",
            Some("a273c385628167932e10caaa58e12550c491f241"),
            Some("92e21bfcddc1418079cddbb518ad6fd72917798a"),
        );
        assert!(!p.created && !p.deleted && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("abhinav.singh@harness.io"));
        assert_eq!(p.head_message.as_deref(), Some("Create asdsad (#2)"));
        assert_eq!(p.changed_files, ChangedFiles::Unknown);
    }

    #[test]
    fn branch_created_and_deleted() {
        let p = HARNESS_CODE.push("branch_created", "goscm-branch_create.json");
        assert_eq!(p.git_ref, "refs/heads/new2");
        assert!(p.created && p.before.is_none());
        let p = HARNESS_CODE.push("branch_deleted", "goscm-branch_delete.json");
        assert_eq!(p.git_ref, "refs/heads/das");
        assert!(p.deleted && p.after.is_none());
        assert_eq!(
            p.before.as_deref(),
            Some("0f1835abe08473e07863540712d8389984b72dad")
        );
    }

    #[test]
    fn tags() {
        let p = HARNESS_CODE.push("tag_created", "goscm-tag_create.json");
        assert_eq!(p.git_ref, "refs/tags/asd");
        assert!(p.created);
        // `sha` 3e4da2d6... is the annotated tag object; head_commit is the commit.
        assert_eq!(
            p.after.as_deref(),
            Some("0f1835abe08473e07863540712d8389984b72dad")
        );
        let p = HARNESS_CODE.push("tag_updated", "goscm-tag_update.json");
        assert_eq!(p.git_ref, "refs/tags/ddxas");
        assert!(p.forced);
        assert_eq!(p.commit_messages, vec!["Asd"]);
        assert!(p.commits_complete);
        // A forced update's commit list does not describe the whole change.
        assert_eq!(p.changed_files, ChangedFiles::Unknown);
        assert!(
            HARNESS_CODE
                .push("tag_deleted", "goscm-tag_delete.json")
                .deleted
        );
    }

    #[test]
    fn pull_requests_are_ignored() {
        assert!(matches!(
            parse(
                "pullreq_created",
                &HARNESS_CODE.read("goscm-pull_request_opened.json")
            ),
            Ok(Event::Ignored { .. })
        ));
    }

    #[test]
    fn malformed() {
        assert!(matches!(
            parse("branch_updated", b"{\"repo\":{}}"),
            Err(PluginError::MalformedPayload(_))
        ));
        assert!(matches!(
            parse("branch_updated", b"[1"),
            Err(PluginError::MalformedPayload(_))
        ));
    }
}
