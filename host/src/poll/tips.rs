//! The pure core of polling: what `git ls-remote` printed, what moved
//! since the tips seen last, and when to look again. No I/O, no clock, no
//! randomness: the caller passes them in.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Refs a repository may have for polling to follow it (branches and
/// tags): more is refused whole, not cut.
pub const MAX_POLLED_REFS: usize = 20_000;

/// Failures in a row after which the wait stops doubling: a failing
/// source is asked at most every `every` × 2^this.
pub const MAX_BACKOFF_DOUBLINGS: u32 = 4;

/// The longest wait after failures, when `every` is shorter.
pub const MAX_POLL_BACKOFF: Duration = Duration::from_secs(60 * 60);

/// How far a wait is jittered either way, as a fraction of it: pollers of
/// many stacks started together spread out.
pub const POLL_JITTER: f64 = 0.1;

/// Each ref polled (branches and tags, full names) and its object id.
pub type Tips = BTreeMap<String, String>;

/// A ref that moved between two looks: `old` is all zeros for a new ref,
/// `new` for a ref that is gone (as a post-receive hook reads them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefChange {
    /// The full ref name, `refs/heads/main`.
    pub name: String,
    /// Its object id at the earlier look.
    pub old: String,
    /// Its object id now.
    pub new: String,
}

/// The refs a look at a git repository keeps: those the stack's `branch`
/// and `tags` patterns could match, written as `git ls-remote` patterns.
/// Each is a full ref name (`refs/heads/main`), matched exactly, or the
/// literal start of a glob followed by `*` (`refs/heads/release/*` for
/// `release/**`, `refs/tags/v*` for `v[0-9]*`), matched as a prefix. That
/// is never less than the component's globs match: a ref name holds none
/// of `*`, `?`, `[` and `\`, so what a matching ref shares with a glob is
/// its literal start. The component still judges each ref it is shown.
///
/// Refs the stack does not follow are not asked for, kept or counted
/// against [`MAX_POLLED_REFS`]: whoever may create branches in a polled
/// repository cannot stop its poll by creating many.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefFilter(BTreeSet<String>);

/// Characters no ref name holds (`git check-ref-format`), besides control
/// characters: a glob's literal start stops at the first of them (the
/// glob's own `*`, `?` and `[` among them), and a literal holding one
/// could match no ref.
const NOT_IN_REF_NAMES: &[char] = &[' ', '~', '^', ':', '?', '*', '[', '\\'];

impl RefFilter {
    /// The filter of a stack whose services follow `branches` and `tags`
    /// (the globs as configured).
    pub fn of<'a>(
        branches: impl IntoIterator<Item = &'a str>,
        tags: impl IntoIterator<Item = &'a str>,
    ) -> RefFilter {
        let namespaced = |namespace: &'static str| {
            move |glob: &'a str| {
                let literal = glob
                    .find(|c: char| NOT_IN_REF_NAMES.contains(&c) || c.is_control())
                    .map_or(glob, |at| &glob[..at]);
                if literal.len() == glob.len() {
                    Some(format!("{namespace}{glob}"))
                } else if matches!(glob[literal.len()..].chars().next(), Some('*' | '?' | '[')) {
                    Some(format!("{namespace}{literal}*"))
                } else {
                    // A character no ref holds, outside any glob syntax: it
                    // matches nothing.
                    None
                }
            }
        };
        RefFilter(
            branches
                .into_iter()
                .filter_map(namespaced("refs/heads/"))
                .chain(tags.into_iter().filter_map(namespaced("refs/tags/")))
                .collect(),
        )
    }

    /// Whether the ref `name` (`refs/heads/main`) is kept.
    pub fn covers(&self, name: &str) -> bool {
        self.covers_bytes(name.as_bytes())
    }

    /// [`RefFilter::covers`] of a name as git printed it, which need not
    /// be UTF-8.
    fn covers_bytes(&self, name: &[u8]) -> bool {
        self.0
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix.as_bytes()),
                None => name == pattern.as_bytes(),
            })
    }

    /// Whether `line` of `git ls-remote`'s answer (`<object id>\t<ref>`,
    /// or the start of a longer line) is of a ref this filter keeps. git
    /// matches its patterns against the tail of each name, so it also
    /// prints refs that only end like a kept one
    /// (`refs/heads/x/refs/heads/main`); those lines are dropped unread,
    /// whatever they hold, so that no ref the stack does not follow can
    /// make the answer unreadable. A line without a tab is kept, for
    /// [`parse_ls_remote`] to refuse.
    pub fn keeps_line(&self, line: &[u8]) -> bool {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        match line.iter().position(|b| *b == b'\t') {
            Some(tab) => self.covers_bytes(&line[tab + 1..]),
            None => true,
        }
    }

    /// The patterns, for `git ls-remote` (which matches each against the
    /// tail of a ref name, `*` crossing `/`: never less than [`covers`]).
    ///
    /// [`covers`]: RefFilter::covers
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The filter as the journal keeps it: a JSON array of the patterns.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("strings serialize")
    }

    /// A filter the journal kept ([`RefFilter::to_json`]); `None` when it
    /// is not one.
    pub fn from_json(json: &str) -> Option<RefFilter> {
        let patterns: BTreeSet<String> = serde_json::from_str(json).ok()?;
        Some(RefFilter(patterns))
    }
}

/// Whether `id` is a git object id: 40 (SHA-1) or 64 (SHA-256) lowercase
/// hex digits.
pub fn is_object_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The tips in `git ls-remote --heads --tags --refs` output that `filter`
/// keeps ([`RefFilter::covers`]): one `<object id>\t<ref>` line per ref.
/// A kept name that is not UTF-8 is no ref a delivery can name (git allows
/// any bytes but a few; the contract's strings are UTF-8), so its line is
/// left out; other characters git allows (a no-break space) are taken.
/// Anything git never prints (another ref namespace, a malformed line, a
/// name with ASCII whitespace or a control character) or more than
/// [`MAX_POLLED_REFS`] kept refuses the whole answer, with why.
pub fn parse_ls_remote(out: &[u8], filter: &RefFilter) -> Result<Tips, String> {
    let mut tips = Tips::new();
    for (n, line) in out.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() || !filter.keeps_line(line) {
            continue;
        }
        let Some(tab) = line.iter().position(|b| *b == b'\t') else {
            return Err(format!(
                "line {} of git ls-remote's answer has no tab",
                n + 1
            ));
        };
        let (id, name) = (&line[..tab], &line[tab + 1..]);
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let namespace = name.starts_with("refs/heads/") || name.starts_with("refs/tags/");
        let id = std::str::from_utf8(id).ok().filter(|id| is_object_id(id));
        let (Some(id), true) = (id, namespace) else {
            return Err(not_a_ref_line(n));
        };
        if name.ends_with('/')
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(not_a_ref_line(n));
        }
        if tips.len() == MAX_POLLED_REFS {
            return Err(format!(
                "the repository has more than {MAX_POLLED_REFS} branches and tags the stack follows"
            ));
        }
        tips.insert(name.to_owned(), id.to_owned());
    }
    Ok(tips)
}

/// The refusal of line `n` (from 0) of `git ls-remote`'s answer.
fn not_a_ref_line(n: usize) -> String {
    format!(
        "line {} of git ls-remote's answer is not \"<object id>\\t<branch or tag>\"",
        n + 1
    )
}

/// What moved from `seen` to `now`, by ref name: new refs, refs that
/// point elsewhere, and refs that are gone.
pub fn changes(seen: &Tips, now: &Tips) -> Vec<RefChange> {
    let zeros = |like: &str| "0".repeat(like.len());
    let mut moved: Vec<RefChange> = now
        .iter()
        .filter(|(name, id)| seen.get(*name) != Some(id))
        .map(|(name, id)| RefChange {
            name: name.clone(),
            old: seen.get(name).cloned().unwrap_or_else(|| zeros(id)),
            new: id.clone(),
        })
        .collect();
    moved.extend(
        seen.iter()
            .filter(|(name, _)| !now.contains_key(*name))
            .map(|(name, id)| RefChange {
                name: name.clone(),
                old: id.clone(),
                new: zeros(id),
            }),
    );
    moved.sort_by(|a, b| a.name.cmp(&b.name));
    moved
}

/// The tips to compare a look kept through `filter` with, from `seen`,
/// kept through `seen_filter` (`None`: every ref, as looks recorded them
/// before filters): `seen`'s refs that `filter` keeps, and the refs of
/// `now` that only `filter` keeps, which `seen` could not hold, as they
/// are now. A ref `filter` no longer keeps is forgotten, not gone; a ref
/// newly kept is taken as it is, as a new source's refs are at its first
/// look (a change of `branch` or `tags` deploys nothing by itself), not
/// as new.
pub fn rebased(
    seen: &Tips,
    seen_filter: Option<&RefFilter>,
    now: &Tips,
    filter: &RefFilter,
) -> Tips {
    let mut base: Tips = seen
        .iter()
        .filter(|(name, _)| filter.covers(name))
        .map(|(name, id)| (name.clone(), id.clone()))
        .collect();
    for (name, id) in now {
        let newly_kept = filter.covers(name) && seen_filter.is_some_and(|f| !f.covers(name));
        if newly_kept && !base.contains_key(name) {
            base.insert(name.clone(), id.clone());
        }
    }
    base
}

/// How long to wait before the next look at a source polled `every`,
/// after `failures` failures in a row: `every`, doubled for each failure
/// up to [`MAX_BACKOFF_DOUBLINGS`] (never past [`MAX_POLL_BACKOFF`] unless
/// `every` itself is longer), jittered by `jitter` (in -1..=1) times
/// [`POLL_JITTER`].
pub fn next_wait(every: Duration, failures: u32, jitter: f64) -> Duration {
    let doubled = every.saturating_mul(1 << failures.min(MAX_BACKOFF_DOUBLINGS));
    let base = if failures == 0 {
        every
    } else {
        doubled.min(MAX_POLL_BACKOFF.max(every))
    };
    base.mul_f64(1.0 + POLL_JITTER * jitter.clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn tips(pairs: &[(&str, &str)]) -> Tips {
        pairs
            .iter()
            .map(|(r, id)| (r.to_string(), id.to_string()))
            .collect()
    }

    /// A filter following every branch and tag.
    fn every_ref() -> RefFilter {
        RefFilter::of(["**"], ["**"])
    }

    #[test]
    fn ls_remote_output_is_read_whole_or_refused() {
        let out = format!("{A}\trefs/heads/main\n{B}\trefs/tags/v1.0\n");
        assert_eq!(
            parse_ls_remote(out.as_bytes(), &every_ref()).unwrap(),
            tips(&[("refs/heads/main", A), ("refs/tags/v1.0", B)])
        );
        let sha256 = "a".repeat(64);
        assert!(parse_ls_remote(
            format!("{sha256}\trefs/heads/main\n").as_bytes(),
            &every_ref()
        )
        .is_ok());
        assert_eq!(parse_ls_remote(b"", &every_ref()).unwrap(), Tips::new());
        for bad in [
            format!("{A} refs/heads/main"),
            format!("{A}\trefs/tags/v1^{{}}x y"),
            format!("{}\trefs/heads/main", &A[..39]),
            format!("{}\trefs/heads/main", A.to_uppercase().replace('1', "A")),
            format!("{A}\trefs/heads/"),
        ] {
            assert!(
                parse_ls_remote(bad.as_bytes(), &every_ref()).is_err(),
                "{bad:?}"
            );
        }
        // Refs outside the patterns are dropped unread; a kept name git
        // allows is taken, one no delivery can name (not UTF-8) left out.
        let odd = [
            format!("{A}\tHEAD\n{A}\trefs/pull/1/head\n").into_bytes(),
            format!("{A}\trefs/heads/a\u{a0}b\n").into_bytes(),
            [format!("{B}\trefs/heads/").as_bytes(), b"\xff\n"].concat(),
        ]
        .concat();
        assert_eq!(
            parse_ls_remote(&odd, &every_ref()).unwrap(),
            tips(&[("refs/heads/a\u{a0}b", A)])
        );
        let many: String = (0..=MAX_POLLED_REFS)
            .map(|n| format!("{A}\trefs/tags/t{n}\n"))
            .collect();
        let refused = parse_ls_remote(many.as_bytes(), &every_ref()).unwrap_err();
        assert!(refused.contains("more than 20000"), "{refused}");
        // Refs the stack does not follow are neither kept nor counted.
        let main = RefFilter::of(["main"], []);
        let others = format!("{many}{B}\trefs/heads/main\n");
        assert_eq!(
            parse_ls_remote(others.as_bytes(), &main).unwrap(),
            tips(&[("refs/heads/main", B)])
        );
    }

    #[test]
    fn a_filter_keeps_every_ref_a_branch_or_tag_glob_could_match() {
        let filter = RefFilter::of(
            [
                "main",
                "release/**",
                "hotfix-[0-9]*",
                "feature/?x",
                "bad name",
                "x~1*",
            ],
            ["v*", "**"],
        );
        assert_eq!(
            filter.patterns().collect::<Vec<_>>(),
            [
                "refs/heads/feature/*",
                "refs/heads/hotfix-*",
                "refs/heads/main",
                "refs/heads/release/*",
                "refs/tags/*",
                "refs/tags/v*",
            ]
        );
        for kept in [
            "refs/heads/main",
            "refs/heads/release/1.0",
            "refs/heads/release/a/b",
            "refs/heads/hotfix-1",
            "refs/heads/hotfix-x",
            "refs/heads/feature/ax",
            "refs/tags/anything",
        ] {
            assert!(filter.covers(kept), "{kept}");
        }
        for dropped in [
            "refs/heads/mainline",
            "refs/heads/develop",
            "refs/heads/release",
            "refs/heads/bad name",
        ] {
            assert!(!filter.covers(dropped), "{dropped}");
        }
        assert!(!RefFilter::of(["main"], ["v*"]).covers("refs/tags/main"));
        assert_eq!(RefFilter::from_json(&filter.to_json()), Some(filter));
        assert_eq!(RefFilter::from_json("{}"), None);
        assert!(RefFilter::of(["a b"], []).patterns().next().is_none());
    }

    /// What moved from `seen` (kept through `seen_filter`) to `now` (kept
    /// through `filter`): [`changes`] from the [`rebased`] tips, less what
    /// only the filters made differ.
    fn changes_through(
        seen: &Tips,
        seen_filter: Option<&RefFilter>,
        now: &Tips,
        filter: &RefFilter,
    ) -> Vec<RefChange> {
        let kept: Tips = now
            .iter()
            .filter(|(name, _)| filter.covers(name))
            .map(|(name, id)| (name.clone(), id.clone()))
            .collect();
        changes(&rebased(seen, seen_filter, now, filter), &kept)
    }

    #[test]
    fn lines_of_refs_not_followed_are_dropped_unread() {
        let main = RefFilter::of(["main"], ["v*"]);
        for (line, kept) in [
            (format!("{A}\trefs/heads/main\n").into_bytes(), true),
            (format!("{A}\trefs/tags/v1").into_bytes(), true),
            // What git's tail match also prints.
            (
                format!("{A}\trefs/heads/x/refs/heads/main\n").into_bytes(),
                false,
            ),
            (
                format!("{A}\trefs/heads/a\u{a0}b/refs/heads/main\n").into_bytes(),
                false,
            ),
            (
                [
                    format!("{A}\trefs/heads/").as_bytes(),
                    b"\xff/refs/heads/main\n",
                ]
                .concat(),
                false,
            ),
            (format!("{A}\trefs/heads/mainline\n").into_bytes(), false),
            // No tab: kept, for the parse to refuse.
            (b"garbage\n".to_vec(), true),
        ] {
            assert_eq!(
                main.keeps_line(&line),
                kept,
                "{}",
                String::from_utf8_lossy(&line)
            );
        }
    }

    #[test]
    fn a_change_of_the_refs_followed_is_no_push() {
        let main_only = RefFilter::of(["main"], []);
        let main_and_tags = RefFilter::of(["main"], ["v*"]);
        let seen = tips(&[("refs/heads/main", A)]);
        let now = tips(&[
            ("refs/heads/main", A),
            ("refs/tags/v1", A),
            ("refs/tags/v2", B),
        ]);
        // Tags newly followed are taken as they are.
        assert_eq!(
            changes_through(&seen, Some(&main_only), &now, &main_and_tags),
            []
        );
        // Once followed, a new tag is new.
        let later = tips(&[
            ("refs/heads/main", B),
            ("refs/tags/v1", A),
            ("refs/tags/v2", B),
            ("refs/tags/v3", B),
        ]);
        let change = |name: &str, old: &str, new: &str| RefChange {
            name: name.into(),
            old: old.into(),
            new: new.into(),
        };
        assert_eq!(
            changes_through(&now, Some(&main_and_tags), &later, &main_and_tags),
            [
                change("refs/heads/main", A, B),
                change("refs/tags/v3", ZERO, B)
            ]
        );
        // Tags no longer followed are forgotten, not gone.
        assert_eq!(
            changes_through(
                &later,
                Some(&main_and_tags),
                &tips(&[("refs/heads/main", B)]),
                &main_only
            ),
            []
        );
        // Tips recorded of every ref, before filters: compared where kept.
        let all = tips(&[("refs/heads/main", A), ("refs/heads/develop", A)]);
        assert_eq!(
            changes_through(
                &all,
                None,
                &tips(&[("refs/heads/main", B), ("refs/tags/v1", A)]),
                &main_and_tags
            ),
            [
                change("refs/heads/main", A, B),
                change("refs/tags/v1", ZERO, A)
            ]
        );
        // A followed branch deleted is gone.
        assert_eq!(
            changes_through(&seen, Some(&main_only), &Tips::new(), &main_only),
            [change("refs/heads/main", A, ZERO)]
        );
    }

    #[test]
    fn changes_are_new_moved_and_gone_refs_in_name_order() {
        let seen = tips(&[
            ("refs/heads/main", A),
            ("refs/heads/old", A),
            ("refs/tags/v1", A),
        ]);
        let now = tips(&[
            ("refs/heads/main", B),
            ("refs/heads/new", B),
            ("refs/tags/v1", A),
        ]);
        let change = |name: &str, old: &str, new: &str| RefChange {
            name: name.into(),
            old: old.into(),
            new: new.into(),
        };
        assert_eq!(
            changes(&seen, &now),
            [
                change("refs/heads/main", A, B),
                change("refs/heads/new", ZERO, B),
                change("refs/heads/old", A, ZERO),
            ]
        );
        assert_eq!(changes(&now, &now), []);
    }

    #[test]
    fn failures_double_the_wait_up_to_a_bound_and_jitter_spreads_it() {
        let five = Duration::from_secs(300);
        assert_eq!(next_wait(five, 0, 0.0), five);
        assert_eq!(next_wait(five, 1, 0.0), five * 2);
        assert_eq!(next_wait(five, 4, 0.0), five * 12); // capped at an hour
        assert_eq!(next_wait(five, 40, 0.0), Duration::from_secs(3600));
        let day = Duration::from_secs(86_400);
        assert_eq!(next_wait(day, 3, 0.0), day, "never shorter than every");
        let ten = Duration::from_secs(10);
        assert_eq!(next_wait(ten, 4, 0.0), ten * 16);
        assert_eq!(next_wait(five, 0, 1.0), Duration::from_secs(330));
        assert_eq!(next_wait(five, 0, -7.0), Duration::from_secs(270));
    }
}
