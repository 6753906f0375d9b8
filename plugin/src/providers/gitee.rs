//! Gitee (gitee.com, 码云) webhook payloads.
//!
//! Follows Gitee's WebHook push data format ("Push / Tag Push 钩子"), which
//! mixes GitHub's and GitLab's shapes: `ref`, `before`, `after`, `created`,
//! `deleted`, `commits`, `head_commit`, `total_commits_count`,
//! `commits_more_than_ten`, `repository` / `project` (`full_name`,
//! `path_with_namespace`, `clone_url`, `git_http_url`, `ssh_url`,
//! `git_ssh_url`, `html_url`...), `pusher`, `user`, `sender`:
//! - `Push Hook` and `Tag Push Hook` → [`Event::Push`]. Gitee lists at most
//!   ten commits (`commits_more_than_ten`) and may leave the list empty for a
//!   new branch; it has no `forced` flag, so a push is never reported as forced.
//! - Every other event (`Merge Request Hook`, `Issue Hook`, `Note Hook`...) →
//!   [`Event::Ignored`].

use std::borrow::Cow;

use serde::Deserialize;

use super::common::push_url;
use crate::error::{malformed, PluginError};
use crate::model::{ChangedFiles, Event, Push, Repository};
use crate::providers::common::{changed_files, is_zero_sha, real_sha};

/// A string that borrows from the input unless it holds escapes.
#[derive(Deserialize, Debug, Clone)]
#[serde(transparent)]
struct Str<'a>(#[serde(borrow)] Cow<'a, str>);

impl Str<'_> {
    fn as_str(&self) -> &str {
        &self.0
    }
}

/// `Some(&str)` for a present, non-empty string.
fn non_empty<'s>(s: &'s Option<Str<'_>>) -> Option<&'s str> {
    s.as_ref().map(Str::as_str).filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
struct User<'a> {
    #[serde(borrow)]
    username: Option<Str<'a>>,
    #[serde(borrow)]
    user_name: Option<Str<'a>>,
    #[serde(borrow)]
    login: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
}

impl User<'_> {
    fn display(&self) -> Option<&str> {
        non_empty(&self.username)
            .or(non_empty(&self.user_name))
            .or(non_empty(&self.login))
            .or(non_empty(&self.name))
    }
}

#[derive(Deserialize)]
struct Repo<'a> {
    #[serde(borrow)]
    full_name: Option<Str<'a>>,
    #[serde(borrow)]
    path_with_namespace: Option<Str<'a>>,
    #[serde(borrow)]
    clone_url: Option<Str<'a>>,
    #[serde(borrow)]
    git_http_url: Option<Str<'a>>,
    #[serde(borrow)]
    ssh_url: Option<Str<'a>>,
    #[serde(borrow)]
    git_ssh_url: Option<Str<'a>>,
    #[serde(borrow)]
    git_url: Option<Str<'a>>,
    #[serde(borrow)]
    html_url: Option<Str<'a>>,
    #[serde(borrow)]
    url: Option<Str<'a>>,
    #[serde(borrow)]
    homepage: Option<Str<'a>>,
}

impl Repo<'_> {
    fn full_name(&self) -> Option<&str> {
        non_empty(&self.full_name).or(non_empty(&self.path_with_namespace))
    }

    fn urls(&self) -> [&Option<Str<'_>>; 8] {
        [
            &self.clone_url,
            &self.git_http_url,
            &self.ssh_url,
            &self.git_ssh_url,
            &self.git_url,
            &self.html_url,
            &self.url,
            &self.homepage,
        ]
    }
}

#[derive(Deserialize)]
struct Commit<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    message: Option<Str<'a>>,
    #[serde(borrow)]
    added: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    removed: Option<Vec<Str<'a>>>,
    #[serde(borrow)]
    modified: Option<Vec<Str<'a>>>,
}

impl Commit<'_> {
    fn has_file_lists(&self) -> bool {
        self.added.is_some() && self.removed.is_some() && self.modified.is_some()
    }

    fn files(&self) -> impl Iterator<Item = &str> {
        [&self.added, &self.removed, &self.modified]
            .into_iter()
            .flatten()
            .flatten()
            .map(Str::as_str)
    }
}

#[derive(Deserialize)]
struct PushPayload<'a> {
    #[serde(borrow, rename = "ref")]
    git_ref: Option<Str<'a>>,
    #[serde(borrow)]
    before: Option<Str<'a>>,
    #[serde(borrow)]
    after: Option<Str<'a>>,
    created: Option<bool>,
    deleted: Option<bool>,
    #[serde(borrow)]
    commits: Option<Vec<Commit<'a>>>,
    #[serde(borrow)]
    head_commit: Option<Commit<'a>>,
    total_commits_count: Option<u64>,
    commits_more_than_ten: Option<bool>,
    #[serde(borrow)]
    repository: Option<Repo<'a>>,
    #[serde(borrow)]
    project: Option<Repo<'a>>,
    #[serde(borrow)]
    pusher: Option<User<'a>>,
    #[serde(borrow)]
    user: Option<User<'a>>,
    #[serde(borrow)]
    sender: Option<User<'a>>,
    #[serde(borrow)]
    user_name: Option<Str<'a>>,
}

/// Normalizes one Gitee delivery; `event` is the `X-Gitee-Event` value.
pub fn parse(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    match event {
        "Push Hook" | "Tag Push Hook" => parse_push(event, json),
        other => Ok(Event::Ignored {
            reason: format!("{other} events never deploy"),
        }),
    }
}

fn parse_push(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    let what = format!("gitee {}", event.to_ascii_lowercase());
    let p: PushPayload = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;
    let repos = [p.repository.as_ref(), p.project.as_ref()];
    let full_name = repos
        .iter()
        .flatten()
        .find_map(|r| r.full_name())
        .ok_or_else(|| {
            PluginError::MalformedPayload(format!("{what}: missing repository.full_name"))
        })?
        .to_string();
    let mut urls: Vec<String> = Vec::new();
    for u in repos
        .iter()
        .flatten()
        .flat_map(|r| r.urls())
        .filter_map(non_empty)
    {
        push_url(&mut urls, u);
    }
    let repository = Repository { full_name, urls };
    let git_ref = non_empty(&p.git_ref)
        .ok_or_else(|| PluginError::MalformedPayload(format!("{what}: missing ref")))?
        .to_string();

    let after_raw = non_empty(&p.after);
    let before = real_sha(non_empty(&p.before));
    let after = real_sha(after_raw);
    let created = p.created.unwrap_or(false) || before.is_none();
    let deleted = p.deleted.unwrap_or(false) || after_raw.is_some_and(is_zero_sha);
    let forced = false;
    let pusher = [p.pusher.as_ref(), p.user.as_ref()]
        .into_iter()
        .flatten()
        .find_map(User::display)
        .or(non_empty(&p.user_name))
        .or_else(|| p.sender.as_ref().and_then(User::display))
        .map(str::to_string);

    let commits: &[Commit] = p.commits.as_deref().unwrap_or(&[]);
    let head_message = p
        .head_commit
        .as_ref()
        .or_else(|| {
            commits
                .iter()
                .find(|c| c.id.as_ref().map(Str::as_str) == after.as_deref())
        })
        .or_else(|| if deleted { None } else { commits.last() })
        .and_then(|c| c.message.as_ref())
        .map(|m| m.as_str().to_string());
    let commit_messages: Vec<String> = commits
        .iter()
        .filter_map(|c| c.message.as_ref().map(|m| m.as_str().to_string()))
        .collect();
    let commits_complete = p.commits_more_than_ten != Some(true)
        && p.total_commits_count
            .is_none_or(|total| commits.len() as u64 >= total);

    let changed = if deleted {
        ChangedFiles::Complete(Vec::new())
    } else {
        let trusted =
            commits_complete && !created && !forced && commits.iter().all(Commit::has_file_lists);
        changed_files(commits.iter().flat_map(Commit::files), trusted)
    };

    Ok(Event::Push(vec![Push {
        repository,
        git_ref,
        before,
        after,
        created,
        deleted,
        forced,
        pusher,
        head_message,
        commit_messages,
        commits_complete,
        changed_files: changed,
    }]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/../tests/fixtures/gitee/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
    }

    fn push(event: &str, name: &str) -> Push {
        match parse(event, &fixture(name)) {
            Ok(Event::Push(mut v)) if v.len() == 1 => v.remove(0),
            other => panic!("{name}: expected one push, got {other:?}"),
        }
    }

    const REPO: &str = "kit101/drone-yml-test";

    #[test]
    fn push_branch_update() {
        let p = push("Push Hook", "goscm-push.json");
        assert_eq!(p.repository.full_name, REPO);
        assert_eq!(
            p.repository.urls,
            vec![
                "https://gitee.com/kit101/drone-yml-test.git",
                "git@gitee.com:kit101/drone-yml-test.git",
                "git://gitee.com/kit101/drone-yml-test.git",
                "https://gitee.com/kit101/drone-yml-test",
            ]
        );
        assert_eq!(p.git_ref, "refs/heads/feat-2-1");
        assert_eq!(
            p.before.as_deref(),
            Some("6168d9dae737b47f00c59fafca10c913a6850c3a")
        );
        assert_eq!(
            p.after.as_deref(),
            Some("9921e45e570db8e57e544650baf837932fb2100f")
        );
        assert!(!p.created && !p.deleted && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("kit101"));
        assert_eq!(p.head_message.as_deref(), Some("feat-2-1\n"));
        assert_eq!(p.commit_messages, vec!["feat-2-1\n"]);
        assert!(p.commits_complete);
        assert_eq!(
            p.changed_files,
            ChangedFiles::Complete(vec!["modify.txt".into()])
        );
    }

    #[test]
    fn push_branch_create() {
        // 13 commits, none listed (commits_more_than_ten).
        let p = push("Push Hook", "goscm-push_branch_create.json");
        assert_eq!(p.repository.full_name, REPO);
        assert_eq!(p.git_ref, "refs/heads/feat-2-1");
        assert_eq!(p.before, None);
        assert_eq!(
            p.after.as_deref(),
            Some("6168d9dae737b47f00c59fafca10c913a6850c3a")
        );
        assert!(p.created && !p.deleted && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("kit101"));
        assert_eq!(p.head_message.as_deref(), Some("feat-2\n"));
        assert!(p.commit_messages.is_empty());
        assert!(!p.commits_complete);
        assert_eq!(p.changed_files, ChangedFiles::Unknown);
    }

    #[test]
    fn push_branch_delete() {
        let p = push("Push Hook", "goscm-push_branch_delete.json");
        assert_eq!(p.repository.full_name, REPO);
        assert_eq!(p.git_ref, "refs/heads/feat-3");
        assert_eq!(
            p.before.as_deref(),
            Some("dc8fa2ebe050d63f639c5b834311e96bc2303523")
        );
        assert_eq!(p.after, None);
        assert!(p.deleted && !p.created && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("kit101"));
        assert_eq!(p.head_message, None);
        assert!(p.commit_messages.is_empty());
        assert_eq!(p.changed_files, ChangedFiles::Complete(vec![]));
    }

    #[test]
    fn tags() {
        let p = push("Tag Push Hook", "goscm-tag_create.json");
        assert_eq!(p.repository.full_name, REPO);
        assert_eq!(p.git_ref, "refs/tags/1.3");
        assert_eq!(p.before, None);
        assert_eq!(
            p.after.as_deref(),
            Some("aa9d11518a64dcd0d591a2a4eb35dfb4d91d49d5")
        );
        assert!(p.created && !p.deleted);
        assert_eq!(p.pusher.as_deref(), Some("kit101"));
        assert_eq!(p.head_message.as_deref(), Some("update .drone.yml.\n"));
        assert!(p.commit_messages.is_empty());
        assert_eq!(p.changed_files, ChangedFiles::Unknown);

        let p = push("Tag Push Hook", "goscm-tag_delete.json");
        assert_eq!(p.git_ref, "refs/tags/1.3");
        assert_eq!(
            p.before.as_deref(),
            Some("aa9d11518a64dcd0d591a2a4eb35dfb4d91d49d5")
        );
        assert_eq!(p.after, None);
        assert!(p.deleted && !p.created);
        assert_eq!(p.head_message, None);
        assert_eq!(p.changed_files, ChangedFiles::Complete(vec![]));
    }

    #[test]
    fn malformed_and_ignored() {
        let err = parse("Push Hook", b"{").unwrap_err();
        assert!(
            matches!(err, PluginError::MalformedPayload(ref m) if m.starts_with("gitee push hook: "))
        );
        let err = parse("Push Hook", br#"{"ref":"refs/heads/x"}"#).unwrap_err();
        assert_eq!(
            err,
            PluginError::MalformedPayload("gitee push hook: missing repository.full_name".into())
        );
        // project.path_with_namespace is enough.
        let body = br#"{"ref":"refs/heads/x","before":"1111111111111111111111111111111111111111",
            "after":"2222222222222222222222222222222222222222","project":{"path_with_namespace":"a/b"},
            "user_name":"u"}"#;
        let Ok(Event::Push(v)) = parse("Push Hook", body) else {
            panic!("not a push")
        };
        assert_eq!(v[0].repository.full_name, "a/b");
        assert_eq!(v[0].pusher.as_deref(), Some("u"));
        assert_eq!(
            parse("Merge Request Hook", &fixture("goscm-pr_open.json")),
            Ok(Event::Ignored {
                reason: "Merge Request Hook events never deploy".into()
            })
        );
        assert_eq!(
            parse("Note Hook", b"{}"),
            Ok(Event::Ignored {
                reason: "Note Hook events never deploy".into()
            })
        );
    }
}
