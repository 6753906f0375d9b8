//! Small helpers shared by the provider parsers.

use std::collections::BTreeSet;

use crate::model::ChangedFiles;

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
