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

use super::common::{
    first_non_empty, message_of, missing, non_empty, pushed_after, repository, required, ForgePush,
    ForgeRepo, PushPayload, RefChange, Str, User,
};
use crate::error::{malformed, PluginError};
use crate::model::{Event, Provider};
use crate::providers::{any_event, HeaderSender};
use crate::signature::plain_token;

/// Normalizes one Gitee delivery; `event` is the `X-Gitee-Event` value.
pub fn parse(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    match event {
        "Push Hook" | "Tag Push Hook" => parse_push(event, json),
        other => Ok(Event::Ignored {
            reason: format!("{other} events never deploy"),
        }),
    }
}

/// A user's name as Gitee gives it.
fn user_name<'u>(user: &'u User<'_>) -> Option<&'u str> {
    first_non_empty(&[&user.username, &user.user_name, &user.login, &user.name])
}

/// A repository's URLs as Gitee gives them, in the order they are trusted:
/// those Gitee derives from its path. Not `homepage`, the website its owner
/// types in, which may name any repository.
fn urls<'r, 'a>(repo: &'r ForgeRepo<'a>) -> [&'r Option<Str<'a>>; 7] {
    [
        &repo.clone_url,
        &repo.git_http_url,
        &repo.ssh_url,
        &repo.git_ssh_url,
        &repo.git_url,
        &repo.html_url,
        &repo.url,
    ]
}

fn parse_push(event: &str, json: &[u8]) -> Result<Event, PluginError> {
    let what = format!("gitee {}", event.to_ascii_lowercase());
    let p: PushPayload = serde_json::from_slice(json).map_err(|e| malformed(&what, e))?;
    let repos = [p.repository.as_ref(), p.project.as_ref()];
    let full_name = repos
        .iter()
        .flatten()
        .find_map(|r| first_non_empty(&[&r.full_name, &r.path_with_namespace]))
        .ok_or_else(|| missing(&what, "repository.full_name"))?;
    let urls = repos.iter().flatten().flat_map(|r| urls(r));
    let repository = repository(full_name, urls.filter_map(non_empty));
    let git_ref = required(&p.git_ref, &what, "ref")?;
    // Gitee sends `created` and `deleted`, but no `forced`.
    let change = RefChange::new(
        non_empty(&p.before),
        Some(pushed_after(&p.after, &what)?),
        p.created,
        p.deleted,
    );
    let pusher = [p.pusher.as_ref(), p.user.as_ref()]
        .into_iter()
        .flatten()
        .find_map(user_name)
        .or(non_empty(&p.user_name))
        .or_else(|| p.sender.as_ref().and_then(user_name))
        .map(str::to_string);

    let commits = p.commits();
    let newest = if change.deleted { None } else { commits.last() };
    let head = p.head(change.after.as_deref(), newest);
    let commits_complete = p.commits_more_than_ten != Some(true)
        && p.total_commits_count
            .is_none_or(|total| commits.len() as u64 >= total);
    let push = ForgePush {
        pusher,
        head_message: message_of(head),
        commits_complete,
        ..ForgePush::new(repository, git_ref, change, commits)
    };
    Ok(Event::Push(vec![push.into_push()]))
}

/// Gitee: `X-Gitee-Event`, and the secret itself in `X-Gitee-Token`.
pub static GITEE: HeaderSender = HeaderSender {
    id: Provider::Gitee,
    also_serves: &[],
    event_header: "x-gitee-event",
    claims: any_event,
    delivery_headers: &["x-gitee-delivery", "x-gitee-timestamp"],
    proof: |headers| Ok(plain_token(headers, "X-Gitee-Token")),
    parse,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangedFiles;
    use crate::providers::test_support::{assert_ref, Fixtures};

    const GITEE: Fixtures = Fixtures::new("gitee", parse);

    const REPO: &str = "kit101/drone-yml-test";

    /// The real push with every field of its repository renamed to
    /// another but `homepage`, the website its owner may set to anything:
    /// the push is of the other repository, and no URL of it names this one.
    #[test]
    fn a_homepage_naming_another_repository_is_not_one_of_its_urls() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&GITEE.read("goscm-push.json")).unwrap();
        for part in ["repository", "project"] {
            for (key, value) in v[part].as_object_mut().unwrap() {
                if let (false, Some(text)) = (key == "homepage", value.as_str()) {
                    *value = text.replace(REPO, "attacker/other").into();
                }
            }
            assert_eq!(
                v[part]["homepage"],
                "https://gitee.com/kit101/drone-yml-test"
            );
        }
        let p = crate::providers::test_support::one_push(
            "renamed",
            parse("Push Hook", &serde_json::to_vec(&v).unwrap()),
        );
        assert_eq!(p.repository.full_name, "attacker/other");
        assert!(
            p.repository.urls.iter().all(|u| !u.contains(REPO)),
            "{:?}",
            p.repository.urls
        );
    }

    #[test]
    fn push_branch_update() {
        let p = GITEE.push("Push Hook", "goscm-push.json");
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
        assert_ref(
            &p,
            "refs/heads/feat-2-1",
            Some("6168d9dae737b47f00c59fafca10c913a6850c3a"),
            Some("9921e45e570db8e57e544650baf837932fb2100f"),
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
        let p = GITEE.push("Push Hook", "goscm-push_branch_create.json");
        assert_eq!(p.repository.full_name, REPO);
        assert_ref(
            &p,
            "refs/heads/feat-2-1",
            None,
            Some("6168d9dae737b47f00c59fafca10c913a6850c3a"),
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
        let p = GITEE.push("Push Hook", "goscm-push_branch_delete.json");
        assert_eq!(p.repository.full_name, REPO);
        assert_ref(
            &p,
            "refs/heads/feat-3",
            Some("dc8fa2ebe050d63f639c5b834311e96bc2303523"),
            None,
        );
        assert!(p.deleted && !p.created && !p.forced);
        assert_eq!(p.pusher.as_deref(), Some("kit101"));
        assert_eq!(p.head_message, None);
        assert!(p.commit_messages.is_empty());
        assert_eq!(p.changed_files, ChangedFiles::Complete(vec![]));
    }

    #[test]
    fn tags() {
        let p = GITEE.push("Tag Push Hook", "goscm-tag_create.json");
        assert_eq!(p.repository.full_name, REPO);
        assert_ref(
            &p,
            "refs/tags/1.3",
            None,
            Some("aa9d11518a64dcd0d591a2a4eb35dfb4d91d49d5"),
        );
        assert!(p.created && !p.deleted);
        assert_eq!(p.pusher.as_deref(), Some("kit101"));
        assert_eq!(p.head_message.as_deref(), Some("update .drone.yml.\n"));
        assert!(p.commit_messages.is_empty());
        assert_eq!(p.changed_files, ChangedFiles::Unknown);

        let p = GITEE.push("Tag Push Hook", "goscm-tag_delete.json");
        assert_ref(
            &p,
            "refs/tags/1.3",
            Some("aa9d11518a64dcd0d591a2a4eb35dfb4d91d49d5"),
            None,
        );
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
            GITEE.parse("Merge Request Hook", "goscm-pr_open.json"),
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
