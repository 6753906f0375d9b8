//! The pure core of polling: what `git ls-remote` printed, what moved
//! since the tips seen last, and when to look again. No I/O, no clock, no
//! randomness: the caller passes them in.

use std::collections::BTreeMap;
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

/// Whether `id` is a git object id: 40 (SHA-1) or 64 (SHA-256) lowercase
/// hex digits.
pub fn is_object_id(id: &str) -> bool {
    matches!(id.len(), 40 | 64) && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The tips in `git ls-remote --heads --tags --refs` output: one
/// `<object id>\t<ref>` line per ref. Anything else (another ref
/// namespace, a malformed line, more than [`MAX_POLLED_REFS`]) refuses the
/// whole answer, with why.
pub fn parse_ls_remote(out: &str) -> Result<Tips, String> {
    let mut tips = Tips::new();
    for (n, line) in out.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let Some((id, name)) = line.split_once('\t') else {
            return Err(format!(
                "line {} of git ls-remote's answer has no tab",
                n + 1
            ));
        };
        let namespace = name.starts_with("refs/heads/") || name.starts_with("refs/tags/");
        if !is_object_id(id)
            || !namespace
            || name.ends_with('/')
            || name.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "line {} of git ls-remote's answer is not \"<object id>\\t<branch or tag>\"",
                n + 1
            ));
        }
        if tips.len() == MAX_POLLED_REFS {
            return Err(format!(
                "the repository has more than {MAX_POLLED_REFS} branches and tags"
            ));
        }
        tips.insert(name.to_owned(), id.to_owned());
    }
    Ok(tips)
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

    #[test]
    fn ls_remote_output_is_read_whole_or_refused() {
        let out = format!("{A}\trefs/heads/main\n{B}\trefs/tags/v1.0\n");
        assert_eq!(
            parse_ls_remote(&out).unwrap(),
            tips(&[("refs/heads/main", A), ("refs/tags/v1.0", B)])
        );
        let sha256 = "a".repeat(64);
        assert!(parse_ls_remote(&format!("{sha256}\trefs/heads/main\n")).is_ok());
        assert_eq!(parse_ls_remote("").unwrap(), Tips::new());
        for bad in [
            format!("{A} refs/heads/main"),
            format!("{A}\tHEAD"),
            format!("{A}\trefs/pull/1/head"),
            format!("{A}\trefs/tags/v1^{{}}x y"),
            format!("{}\trefs/heads/main", &A[..39]),
            format!("{}\trefs/heads/main", A.to_uppercase().replace('1', "A")),
            format!("{A}\trefs/heads/"),
        ] {
            assert!(parse_ls_remote(&bad).is_err(), "{bad:?}");
        }
        let many: String = (0..=MAX_POLLED_REFS)
            .map(|n| format!("{A}\trefs/tags/t{n}\n"))
            .collect();
        let refused = parse_ls_remote(&many).unwrap_err();
        assert!(refused.contains("more than 20000"), "{refused}");
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
