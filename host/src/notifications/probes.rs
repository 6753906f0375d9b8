//! Refused deliveries on a stack's hook URL (a bad, missing or stale
//! signature): someone who knows the URL is probing it. Channels that opt
//! in to `refused` hear of the first at once, and of the rest in one
//! summary per [`PROBE_WINDOW`], so a flood sends two messages per window
//! and stack, not one per request. The policy is pure; the caller writes
//! the notices it returns.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The window refused deliveries are summed up in, per stack.
pub const PROBE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// A notice to write of refused deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeNotice {
    /// The stack whose hook URL they came to.
    pub stack: String,
    /// How many.
    pub count: u64,
    /// In how long a window.
    pub window: Duration,
    /// What was refused (the first one's reason), or a summary's words.
    pub detail: String,
}

#[derive(Clone, Debug)]
struct Window {
    start_ms: i64,
    /// Refused after the first, not yet told of.
    more: u64,
}

/// Each stack's current window of refused deliveries.
#[derive(Debug, Default)]
pub struct Probes {
    windows: Mutex<HashMap<String, Window>>,
}

fn window_ms() -> i64 {
    i64::try_from(PROBE_WINDOW.as_millis()).unwrap_or(i64::MAX / 4)
}

fn summary(stack: &str, window: &Window, now_ms: i64) -> Option<ProbeNotice> {
    (window.more > 0).then(|| ProbeNotice {
        stack: stack.to_owned(),
        count: window.more,
        window: Duration::from_millis(
            u64::try_from(now_ms.min(window.start_ms + window_ms()) - window.start_ms).unwrap_or(0),
        ),
        detail: format!(
            "{} more deliveries refused after the first one told of",
            window.more
        ),
    })
}

impl Probes {
    /// A delivery to `stack`'s hook URL was refused at `now_ms` for
    /// `reason`: the notices to write now (the first of a window; the
    /// summary of the previous window if it is over).
    pub fn refused(&self, stack: &str, reason: &str, now_ms: i64) -> Vec<ProbeNotice> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        if let Some(w) = windows.get_mut(stack) {
            let over = now_ms >= w.start_ms + window_ms() || now_ms < w.start_ms;
            if !over {
                w.more += 1;
                return out;
            }
            out.extend(summary(stack, w, now_ms));
        }
        windows.insert(
            stack.to_owned(),
            Window {
                start_ms: now_ms,
                more: 0,
            },
        );
        out.push(ProbeNotice {
            stack: stack.to_owned(),
            count: 1,
            window: Duration::ZERO,
            detail: reason.to_owned(),
        });
        out
    }

    /// Every window's summary at `now_ms`, over or not (at a stop), each
    /// window as long as it lasted; all are forgotten.
    pub fn take_all(&self, now_ms: i64) -> Vec<ProbeNotice> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows
            .drain()
            .filter_map(|(stack, w)| summary(&stack, &w, now_ms))
            .collect()
    }

    /// The summaries of the windows over at `now_ms`, which are forgotten.
    pub fn take_finished(&self, now_ms: i64) -> Vec<ProbeNotice> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        windows.retain(|stack, w| {
            if now_ms < w.start_ms.saturating_add(window_ms()) {
                return true;
            }
            out.extend(summary(stack, w, now_ms));
            false
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_told_of_once_then_summed_up_per_window() {
        let probes = Probes::default();
        let first = probes.refused("web", "bad-signature", 0);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].count, 1);
        for t in 1..1000 {
            assert!(probes.refused("web", "bad-signature", t).is_empty());
        }
        // Another stack is told of on its own.
        assert_eq!(probes.refused("api", "bad-signature", 5).len(), 1);
        assert!(probes.take_finished(window_ms() - 1).is_empty());
        let done = probes.take_finished(window_ms());
        assert_eq!(done.len(), 1, "{done:?}");
        assert_eq!(done[0].stack, "web");
        assert_eq!(done[0].count, 999);
        assert_eq!(done[0].window, PROBE_WINDOW);
        // At a stop, a window cut short says how long it lasted.
        probes.refused("api", "bad-signature", 7);
        let cut = probes.take_all(65_000);
        assert_eq!(cut.len(), 1, "{cut:?}");
        assert_eq!(
            (cut[0].stack.as_str(), cut[0].count, cut[0].window),
            ("api", 1, Duration::from_millis(65_000 - 5))
        );
        // The next refusal starts a new window, told of at once.
        assert_eq!(
            probes
                .refused("web", "bad-signature", window_ms() + 1)
                .len(),
            1
        );
    }

    #[test]
    fn a_refusal_after_the_window_brings_its_summary_and_a_new_first() {
        let probes = Probes::default();
        probes.refused("web", "bad-signature", 0);
        probes.refused("web", "bad-signature", 1);
        let next = probes.refused("web", "stale-signature", window_ms() + 7);
        assert_eq!(next.len(), 2, "{next:?}");
        assert_eq!((next[0].count, next[0].window), (1, PROBE_WINDOW));
        assert_eq!(
            (next[1].count, next[1].detail.as_str()),
            (1, "stale-signature")
        );
    }
}
