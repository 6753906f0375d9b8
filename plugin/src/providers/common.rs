//! The toolkit every provider parser shares: borrowed strings, "missing
//! field" errors, the repository identity, a ref update's before/after and
//! created/deleted, the forge commit and its file lists, the head commit
//! message, and the assembly of a [`Push`] with its changed-file list (and
//! when that list is incomplete).
//!
//! Each parser keeps what is its own (its payload's field names, which of
//! them it trusts, in which order); the steps below are written once.

use std::borrow::Cow;
use std::collections::BTreeSet;

use serde::Deserialize;

use crate::error::PluginError;
use crate::model::{ChangedFiles, Push, Repository};

/// A string that borrows from the input unless it holds escapes.
///
/// A payload struct made of them says once that it borrows from the input,
/// `#[serde(bound(deserialize = "'de: 'a"))]`, rather than
/// `#[serde(borrow)]` on every field.
#[derive(Deserialize, Debug, Clone)]
#[serde(transparent)]
pub struct Str<'a>(#[serde(borrow)] pub Cow<'a, str>);

impl Str<'_> {
    /// The string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `Some(&str)` for a present, non-empty string.
pub fn non_empty<'s>(s: &'s Option<Str<'_>>) -> Option<&'s str> {
    s.as_ref().map(Str::as_str).filter(|v| !v.is_empty())
}

/// The first present, non-empty string of `fields`, in order.
pub fn first_non_empty<'s>(fields: &[&'s Option<Str<'_>>]) -> Option<&'s str> {
    fields.iter().find_map(|f| non_empty(f))
}

/// The first of `fields` that is non-empty once trimmed, trimmed and owned:
/// how the Bitbucket and Azure DevOps parsers name a pusher.
pub fn first_trimmed<'s, I>(fields: I) -> Option<String>
where
    I: IntoIterator<Item = &'s Option<Cow<'s, str>>>,
{
    fields
        .into_iter()
        .flatten()
        .map(|s| s.trim())
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

/// The error of a payload without a field it needs: `"{what}: missing {field}"`.
pub fn missing(what: &str, field: &str) -> PluginError {
    PluginError::MalformedPayload(format!("{what}: missing {field}"))
}

/// `field` as a non-empty string, or the [`missing`] error.
pub fn required(s: &Option<Str<'_>>, what: &str, field: &str) -> Result<String, PluginError> {
    non_empty(s)
        .map(str::to_string)
        .ok_or_else(|| missing(what, field))
}

/// The commit a forge's push moved its ref to (`after`: the zero id for a
/// deletion), which every forge's push names. Required: the event header is
/// not signed, and a create or delete event, which names a ref but no
/// `after`, sent again under the `push` event must not read as a push of
/// that ref naming no commit.
pub fn pushed_after<'s>(after: &'s Option<Str<'_>>, what: &str) -> Result<&'s str, PluginError> {
    non_empty(after).ok_or_else(|| missing(what, "after"))
}

/// Whether `sha` is git's zero object id (40 or 64 zeros), which forges use
/// for "no commit" on creation and deletion.
pub fn is_zero_sha(sha: &str) -> bool {
    !sha.is_empty() && sha.bytes().all(|b| b == b'0')
}

/// `Some(sha)` unless it is empty or the zero id.
pub fn real_sha(sha: Option<&str>) -> Option<String> {
    sha.filter(|s| !s.is_empty() && !is_zero_sha(s))
        .map(str::to_string)
}

/// Unions the added/modified/removed lists of every commit into one sorted,
/// de-duplicated list; `complete` says whether the commit list was whole.
pub fn changed_files<'a, I>(files: I, complete: bool) -> ChangedFiles
where
    I: IntoIterator<Item = &'a str>,
{
    if !complete {
        return ChangedFiles::Unknown;
    }
    let set: BTreeSet<&str> = files.into_iter().collect();
    ChangedFiles::Complete(set.into_iter().map(str::to_string).collect())
}

/// Appends `url` (trimmed) unless it is empty or already listed.
pub fn push_url(urls: &mut Vec<String>, url: &str) {
    let url = url.trim();
    if !url.is_empty() && !urls.iter().any(|u| u == url) {
        urls.push(url.to_string());
    }
}

/// A ref a sender names by a `type` that is neither a branch nor a tag
/// (`kind`, when it gives one): its bare name, which no branch or tag
/// pattern matches, since those match `refs/heads/...` and `refs/tags/...`.
/// A name that itself reads `refs/...` (a name git allows) is kept behind
/// its type, `KIND:refs/...`, so that it cannot pass for a full ref.
pub fn untyped_ref(kind: Option<&str>, name: &str) -> String {
    if name.starts_with("refs/") {
        format!("{}:{name}", kind.unwrap_or("untyped"))
    } else {
        name.to_string()
    }
}

/// A repository named `full_name`, with every non-empty URL of `urls`
/// (trimmed, in order, each once).
pub fn repository<'s, I>(full_name: &str, urls: I) -> Repository
where
    I: IntoIterator<Item = &'s str>,
{
    let mut list = Vec::new();
    for url in urls {
        push_url(&mut list, url);
    }
    Repository {
        full_name: full_name.to_string(),
        urls: list,
    }
}

/// A ref update as its two object ids (and the sender's own flags, when it
/// sends them) describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefChange {
    /// The ref's previous commit; `None` when created.
    pub before: Option<String>,
    /// The ref's new commit; `None` when deleted.
    pub after: Option<String>,
    /// The sender's `created` flag, or no previous commit.
    pub created: bool,
    /// The sender's `deleted` flag, or the zero id as the new commit.
    pub deleted: bool,
}

impl RefChange {
    /// Reads `before` / `after` (an empty or zero id is no commit) and the
    /// sender's `created` / `deleted` flags (absent: not sent).
    pub fn new(
        before: Option<&str>,
        after: Option<&str>,
        created: Option<bool>,
        deleted: Option<bool>,
    ) -> Self {
        let before_sha = real_sha(before);
        RefChange {
            created: created.unwrap_or(false) || before_sha.is_none(),
            deleted: deleted.unwrap_or(false) || after.is_some_and(is_zero_sha),
            before: before_sha,
            after: real_sha(after),
        }
    }
}

/// A commit as GitHub, GitLab, Gitea, Forgejo, Gogs and Gitee list it: its
/// id, message and the files it added, removed and modified.
#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct Commit<'a> {
    id: Option<Str<'a>>,
    message: Option<Str<'a>>,
    added: Option<Vec<Str<'a>>>,
    removed: Option<Vec<Str<'a>>>,
    modified: Option<Vec<Str<'a>>>,
}

impl Commit<'_> {
    /// The commit id, when given.
    pub fn id(&self) -> Option<&str> {
        self.id.as_ref().map(Str::as_str)
    }

    /// The commit message, when given.
    pub fn message(&self) -> Option<&str> {
        self.message.as_ref().map(Str::as_str)
    }

    /// Whether the commit carries all three file lists.
    pub fn has_file_lists(&self) -> bool {
        self.added.is_some() && self.removed.is_some() && self.modified.is_some()
    }

    /// How many files its three lists name together.
    pub fn file_count(&self) -> usize {
        [&self.added, &self.removed, &self.modified]
            .into_iter()
            .flatten()
            .map(Vec::len)
            .sum()
    }

    /// Every file its lists name.
    pub fn files(&self) -> impl Iterator<Item = &str> {
        [&self.added, &self.removed, &self.modified]
            .into_iter()
            .flatten()
            .flatten()
            .map(Str::as_str)
    }
}

/// A user as the GitHub-style forges (GitHub, Gitea, Forgejo, Gogs, Gitee)
/// name one; each forge reads the names it sends, in its own order.
#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct User<'a> {
    /// The account name (GitHub, Gitea, Gitee).
    pub login: Option<Str<'a>>,
    /// The account name (Gogs, Gitea, Gitee, GitHub's `pusher`).
    pub username: Option<Str<'a>>,
    /// Gitee's account name.
    pub user_name: Option<Str<'a>>,
    /// The display name (GitHub's `pusher`, Gitee).
    pub name: Option<Str<'a>>,
    /// Gitea's display name.
    pub full_name: Option<Str<'a>>,
}

/// A repository as the GitHub-style forges describe one, and GitLab's
/// `project` and legacy `repository`, which use the same names: its name
/// and its clone and web URLs. Each forge reads the fields it sends, in its
/// own order.
#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct ForgeRepo<'a> {
    /// `owner/name` (GitHub, Gitea, Gitee).
    pub full_name: Option<Str<'a>>,
    /// `group/subgroup/name` (GitLab, Gitee).
    pub path_with_namespace: Option<Str<'a>>,
    /// The HTTPS clone URL (GitHub, Gitea, Gitee).
    pub clone_url: Option<Str<'a>>,
    /// The HTTPS clone URL (GitLab, Gitee).
    pub git_http_url: Option<Str<'a>>,
    /// The SSH clone URL (GitHub, Gitea, Gitee, older GitLab).
    pub ssh_url: Option<Str<'a>>,
    /// The SSH clone URL (GitLab, Gitee).
    pub git_ssh_url: Option<Str<'a>>,
    /// The `git://` URL (GitHub, Gitee).
    pub git_url: Option<Str<'a>>,
    /// The web page (GitHub, Gitea, Gitee).
    pub html_url: Option<Str<'a>>,
    /// The web page (GitLab).
    pub web_url: Option<Str<'a>>,
    /// The HTTPS clone URL (older GitLab).
    pub http_url: Option<Str<'a>>,
    /// A URL (Gitee; GitLab's SSH URL).
    pub url: Option<Str<'a>>,
    /// The web page (GitLab, Gitee).
    pub homepage: Option<Str<'a>>,
}

/// The repository `full_name` names (else the [`missing`]
/// `repository.full_name` error), with the non-empty of `urls`.
pub fn named_repository<'s>(
    full_name: &Option<Str<'_>>,
    what: &str,
    urls: impl IntoIterator<Item = &'s Option<Str<'s>>>,
) -> Result<Repository, PluginError> {
    let full_name = required(full_name, what, "repository.full_name")?;
    Ok(repository(
        &full_name,
        urls.into_iter().filter_map(non_empty),
    ))
}

/// A push body of the forges that follow GitHub's field names (GitHub,
/// Gitea, Forgejo, Gogs, Gitee, GitLab): the union of what they send. Each
/// parser reads only the fields its forge documents.
#[derive(Deserialize)]
#[serde(bound(deserialize = "'de: 'a"))]
pub struct PushPayload<'a> {
    /// GitLab's event kind (`push`, `tag_push`).
    pub object_kind: Option<Str<'a>>,
    /// GitLab's system hook event name.
    pub event_name: Option<Str<'a>>,
    /// The full ref.
    #[serde(rename = "ref")]
    pub git_ref: Option<Str<'a>>,
    /// The ref's previous commit (or the zero id).
    pub before: Option<Str<'a>>,
    /// The ref's new commit (or the zero id).
    pub after: Option<Str<'a>>,
    /// GitLab's commit for an annotated tag's `after`.
    pub checkout_sha: Option<Str<'a>>,
    /// The ref was created (GitHub, Gitee).
    pub created: Option<bool>,
    /// The ref was deleted (GitHub, Gitee).
    pub deleted: Option<bool>,
    /// The push was forced (GitHub).
    pub forced: Option<bool>,
    /// The commits listed.
    pub commits: Option<Vec<Commit<'a>>>,
    /// The head commit.
    pub head_commit: Option<Commit<'a>>,
    /// How many commits the push had (Gitea ≥ 1.18, Forgejo).
    pub total_commits: Option<u64>,
    /// How many commits the push had (GitLab, Gitee).
    pub total_commits_count: Option<u64>,
    /// Gitee cut the commit list at ten.
    pub commits_more_than_ten: Option<bool>,
    /// The repository (GitLab: the legacy one).
    pub repository: Option<ForgeRepo<'a>>,
    /// GitLab's and Gitee's project.
    pub project: Option<ForgeRepo<'a>>,
    /// Who pushed.
    pub pusher: Option<User<'a>>,
    /// Gitee's pushing user.
    pub user: Option<User<'a>>,
    /// Who sent the event.
    pub sender: Option<User<'a>>,
    /// GitLab's pusher's account name.
    pub user_username: Option<Str<'a>>,
    /// The pusher's name (GitLab, Gitee).
    pub user_name: Option<Str<'a>>,
}

impl<'a> PushPayload<'a> {
    /// The commits listed (none when the list is absent).
    pub fn commits(&self) -> &[Commit<'a>] {
        self.commits.as_deref().unwrap_or(&[])
    }

    /// The head commit: `head_commit`, else the listed commit whose id is
    /// `after`, else `fallback` (where the forge lists its newest commit).
    pub fn head<'c>(
        &'c self,
        after: Option<&str>,
        fallback: Option<&'c Commit<'a>>,
    ) -> Option<&'c Commit<'a>> {
        self.head_commit
            .as_ref()
            .or_else(|| commit_with_id(self.commits(), after))
            .or(fallback)
    }
}

/// The first commit of `commits` whose id is `id` (a commit without an id
/// matches `None`).
pub fn commit_with_id<'c, 'a>(
    commits: &'c [Commit<'a>],
    id: Option<&str>,
) -> Option<&'c Commit<'a>> {
    commits.iter().find(|c| c.id() == id)
}

/// The message of `commit`, owned.
pub fn message_of(commit: Option<&Commit<'_>>) -> Option<String> {
    commit.and_then(Commit::message).map(str::to_string)
}

/// A forge push read from its payload, before the parts every forge
/// derives the same way ([`ForgePush::into_push`]).
pub struct ForgePush<'c, 'a> {
    /// The repository pushed to.
    pub repository: Repository,
    /// The full ref.
    pub git_ref: String,
    /// Before, after, created, deleted.
    pub change: RefChange,
    /// Whether the sender says the push was forced.
    pub forced: bool,
    /// Who pushed.
    pub pusher: Option<String>,
    /// The head commit's message.
    pub head_message: Option<String>,
    /// The commits listed.
    pub commits: &'c [Commit<'a>],
    /// Whether `commits` is the whole push.
    pub commits_complete: bool,
    /// Whether every listed commit's file lists are whole.
    pub files_listed: bool,
}

impl<'c, 'a> ForgePush<'c, 'a> {
    /// A push of `commits` that its sender does not report forced, nor says
    /// who made or which commit heads, and whose commit list is not known
    /// whole; its files are listed when every commit carries its three lists.
    pub fn new(
        repository: Repository,
        git_ref: String,
        change: RefChange,
        commits: &'c [Commit<'a>],
    ) -> Self {
        ForgePush {
            repository,
            git_ref,
            change,
            forced: false,
            pusher: None,
            head_message: None,
            commits,
            commits_complete: false,
            files_listed: commits.iter().all(Commit::has_file_lists),
        }
    }

    /// The normalized push: every listed commit's message, and the changed
    /// files, which are trusted only for an update (not a creation, nor a
    /// forced push) whose commits and file lists are all whole; a deletion
    /// changes no file.
    pub fn into_push(self) -> Push {
        let ForgePush {
            repository,
            git_ref,
            change,
            forced,
            pusher,
            head_message,
            commits,
            commits_complete,
            files_listed,
        } = self;
        let changed_files = if change.deleted {
            ChangedFiles::Complete(Vec::new())
        } else {
            let trusted = commits_complete && !change.created && !forced && files_listed;
            changed_files(commits.iter().flat_map(Commit::files), trusted)
        };
        Push {
            repository,
            git_ref,
            before: change.before,
            after: change.after,
            created: change.created,
            deleted: change.deleted,
            forced,
            pusher,
            head_message,
            commit_messages: commits
                .iter()
                .filter_map(Commit::message)
                .map(str::to_string)
                .collect(),
            commits_complete,
            changed_files,
        }
    }
}

/// One ref update of a sender that lists neither files nor whether its
/// commits are the whole push (Bitbucket Server, Azure DevOps): the push is
/// never forced, its commits never complete and its files unknown.
pub fn unlisted_push(
    repository: &Repository,
    git_ref: String,
    change: RefChange,
    pusher: &Option<String>,
    head_message: Option<String>,
    commit_messages: Vec<String>,
) -> Push {
    Push {
        repository: repository.clone(),
        git_ref,
        before: change.before,
        after: change.after,
        created: change.created,
        deleted: change.deleted,
        forced: false,
        pusher: pusher.clone(),
        head_message,
        commit_messages,
        commits_complete: false,
        changed_files: ChangedFiles::Unknown,
    }
}
