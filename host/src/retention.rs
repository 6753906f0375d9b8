//! Retention: what the journal and the logs directory keep, so neither
//! grows without bound.
//!
//! [`prune`] deletes old delivery rows (refused ones first, after a shorter
//! time), old finished deploys beyond each stack's newest few, and the log
//! and event files of the deploys it deleted. `serve` prunes at start and
//! every [`PRUNE_INTERVAL`]; `run-queued` prunes when it starts.
//! [`RefusedLimiter`] keeps refused deliveries cheap: beyond a number per
//! stack and minute they are counted, and summed up in one row.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::{Config, Retention};
use crate::journal::{Journal, JournalError, NewDelivery, PrunePolicy, Pruned};

/// How often `serve` prunes: the retention times are days, so an hour's
/// lateness does not matter, and one prune an hour costs nothing.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// The window [`RefusedLimiter`] counts refused deliveries in.
pub const REFUSED_WINDOW_MS: i64 = 60_000;

/// The `event` of a row that sums up refused deliveries not recorded one
/// by one.
pub const REFUSED_SUMMARY_EVENT: &str = "refused-unrecorded";

/// The journal's cut-offs for `retention` at `now_ms`.
pub fn policy(retention: &Retention, now_ms: i64) -> PrunePolicy {
    let before =
        |d: Duration| now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    PrunePolicy {
        deliveries_before_ms: before(retention.deliveries),
        refused_before_ms: before(retention.refused_deliveries),
        deploys_before_ms: before(retention.deploys),
        keep_deploys_min: retention.deploys_min,
        keep_deploys_max: retention.deploys_max,
    }
}

/// Prunes the journal by `config`'s retention at `now_ms`, then deletes the
/// log and event files of the deploys it deleted: where this machine's
/// runner wrote them ([`crate::deploy_log::file_path`]), whatever path a
/// row says.
pub fn prune(config: &Config, journal: &Journal, now_ms: i64) -> Result<Pruned, JournalError> {
    let policy = policy(&config.server.retention, now_ms);
    let pruned = journal.prune(&policy)?;
    // Notices whose notifications are all settled, as old as the
    // deliveries pruned (a pruned deploy's went with it).
    journal.prune_notices(policy.deliveries_before_ms)?;
    let state_dir = &config.server.state_dir;
    for deploy in &pruned.logged {
        if !crate::config::is_stack_name(&deploy.stack) {
            continue;
        }
        let log = crate::deploy_log::file_path(state_dir, &deploy.stack, deploy.id);
        for file in [crate::runner::event_file(&log), log] {
            if let Err(e) = std::fs::remove_file(&file) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %file.display(), error = %e, "retention: cannot delete a pruned deploy's file");
                }
            }
        }
    }
    let logs = state_dir.join("logs");
    // Another machine on a shared journal may have pruned this one's deploys.
    if journal.keeps_deploy_logs() {
        crate::deploy_log::remove_orphan_files(journal, &logs)?;
    }
    if pruned.deliveries > 0 || pruned.deploys > 0 {
        tracing::info!(
            deliveries = pruned.deliveries,
            deploys = pruned.deploys,
            "retention: pruned the journal"
        );
    }
    Ok(pruned)
}

/// [`prune`], logging a failure instead of returning it (pruning only saves
/// space; a failure must not stop the server).
pub fn prune_logged(config: &Config, journal: &Journal, now_ms: i64) {
    if let Err(e) = prune(config, journal, now_ms) {
        tracing::warn!(error = %e, "retention: pruning failed");
    }
}

/// Prunes every [`PRUNE_INTERVAL`] (the first time after one interval) and
/// writes the summaries `refused` has ready, on blocking threads.
pub fn spawn_periodic(
    config: crate::config::LiveConfig,
    journal: Arc<Journal>,
    refused: Arc<RefusedLimiter>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (config, journal, refused) = (config.current(), journal.clone(), refused.clone());
            let _ = tokio::task::spawn_blocking(move || {
                let now = crate::journal::now_ms();
                refused.flush(&journal, now);
                prune_logged(&config, &journal, now);
            })
            .await;
        }
    })
}

/// Rate-limits the journal rows of refused deliveries (answered 400 and
/// up): per stack, the first `per_minute` of each minute get a row each;
/// the rest are counted, and summed up in one row when the minute is over
/// (at the stack's next refused delivery, the periodic prune, or a stop).
pub struct RefusedLimiter {
    per_minute: u32,
    windows: Mutex<HashMap<String, Window>>,
}

#[derive(Clone, Copy, Debug)]
struct Window {
    start_ms: i64,
    recorded: u32,
    unrecorded: u64,
}

/// Refused deliveries of one stack that got no row of their own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedSummary {
    /// The stack (`None` for deliveries not tied to one stack).
    pub stack: Option<String>,
    /// How many.
    pub count: u64,
    /// The window they arrived in.
    pub from_ms: i64,
    /// Its end.
    pub to_ms: i64,
}

impl RefusedSummary {
    /// The journal row that records this summary.
    pub fn row(&self) -> NewDelivery {
        NewDelivery {
            received_at_ms: self.to_ms,
            stack: self.stack.clone(),
            provider: None,
            event: Some(REFUSED_SUMMARY_EVENT.to_string()),
            delivery_id: None,
            status: 429,
            summary: serde_json::json!({
                "refused_unrecorded": self.count,
                "from_ms": self.from_ms,
                "to_ms": self.to_ms,
            })
            .to_string(),
        }
    }
}

impl RefusedLimiter {
    /// A limiter recording `per_minute` refused deliveries per stack and minute.
    pub fn new(per_minute: u32) -> RefusedLimiter {
        RefusedLimiter {
            per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a refused delivery of `stack` at `now_ms` gets a row of its
    /// own, and the summary of the stack's previous minute if it is over
    /// and had deliveries without a row.
    pub fn admit(&self, stack: Option<&str>, now_ms: i64) -> (bool, Option<RefusedSummary>) {
        let key = stack.unwrap_or("").to_string();
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let window = windows.entry(key).or_insert(Window {
            start_ms: now_ms,
            recorded: 0,
            unrecorded: 0,
        });
        let mut summary = None;
        if now_ms >= window.start_ms + REFUSED_WINDOW_MS || now_ms < window.start_ms {
            summary = summarize(stack, window, now_ms);
            *window = Window {
                start_ms: now_ms,
                recorded: 0,
                unrecorded: 0,
            };
        }
        if window.recorded < self.per_minute {
            window.recorded += 1;
            (true, summary)
        } else {
            window.unrecorded += 1;
            (false, summary)
        }
    }

    /// Takes the summaries of windows over at `now_ms` (all of them when
    /// `now_ms` is `i64::MAX`, at a stop).
    pub fn take_finished(&self, now_ms: i64) -> Vec<RefusedSummary> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        windows.retain(|key, window| {
            if now_ms < window.start_ms + REFUSED_WINDOW_MS {
                return true;
            }
            let stack = (!key.is_empty()).then_some(key.as_str());
            out.extend(summarize(stack, window, now_ms));
            false
        });
        out
    }

    /// Writes the summaries of windows over at `now_ms` to the journal.
    pub fn flush(&self, journal: &Arc<Journal>, now_ms: i64) {
        for summary in self.take_finished(now_ms) {
            if let Err(e) = journal.record_delivery_relaxed(&summary.row()) {
                tracing::error!(error = %e, "journal: cannot record refused deliveries' summary");
            }
        }
    }
}

fn summarize(stack: Option<&str>, window: &Window, now_ms: i64) -> Option<RefusedSummary> {
    (window.unrecorded > 0).then(|| RefusedSummary {
        stack: stack.map(str::to_string),
        count: window.unrecorded,
        from_ms: window.start_ms,
        to_ms: now_ms.min(window.start_ms + REFUSED_WINDOW_MS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_deliveries_beyond_the_rate_are_counted_then_summed_up() {
        let limiter = RefusedLimiter::new(2);
        assert_eq!(limiter.admit(Some("web"), 0), (true, None));
        assert_eq!(limiter.admit(Some("web"), 1), (true, None));
        assert_eq!(limiter.admit(Some("web"), 2), (false, None));
        assert_eq!(limiter.admit(Some("web"), 3), (false, None));
        // Another stack has its own budget.
        assert_eq!(limiter.admit(Some("api"), 3), (true, None));
        // The next minute starts afresh and brings the summary.
        let (recorded, summary) = limiter.admit(Some("web"), REFUSED_WINDOW_MS + 5);
        assert!(recorded);
        assert_eq!(
            summary,
            Some(RefusedSummary {
                stack: Some("web".into()),
                count: 2,
                from_ms: 0,
                to_ms: REFUSED_WINDOW_MS,
            })
        );
        assert_eq!(
            limiter.take_finished(REFUSED_WINDOW_MS + 6),
            Vec::new(),
            "api had none unrecorded"
        );
    }

    #[test]
    fn policy_cuts_off_by_age() {
        let retention = Retention {
            deploys: Duration::from_secs(10),
            deploys_min: 1,
            deploys_max: 5,
            deliveries: Duration::from_secs(20),
            refused_deliveries: Duration::from_secs(5),
            refused_per_minute: 1,
            delivery_bodies: 0,
        };
        let p = policy(&retention, 100_000);
        assert_eq!(p.deploys_before_ms, 90_000);
        assert_eq!(p.deliveries_before_ms, 80_000);
        assert_eq!(p.refused_before_ms, 95_000);
        assert_eq!((p.keep_deploys_min, p.keep_deploys_max), (1, 5));
    }
}
