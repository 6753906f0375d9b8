//! The metrics of notifications ([`crate::notifications`]): what each
//! channel was sent, and whether it is failing now.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels: name and value pairs.
type Labels = Vec<(String, String)>;

/// Notifications' series, registered in the server's registry.
#[derive(Clone, Debug, Default)]
pub struct NotificationMetrics {
    sends: Family<Labels, Counter>,
    failing: Family<Labels, Gauge>,
}

impl NotificationMetrics {
    /// Registers the series in `registry`.
    pub fn register(registry: &mut Registry) -> NotificationMetrics {
        let m = NotificationMetrics::default();
        registry.register(
            "notifications",
            "Notification attempts by channel and outcome: sent, retried (not taken, tried again later), failed (refused for good or given up), skipped (channel gone)",
            m.sends.clone(),
        );
        registry.register(
            "notification_channel_failing",
            "1 while a notification channel's last attempt failed, 0 once one is taken, by channel",
            m.failing.clone(),
        );
        m
    }

    /// Counts `count` notifications of `channel` given up unsent (their
    /// events older than its `give_up_after`), without calling the
    /// channel failing.
    pub fn given_up(&self, channel: &str, count: u64) {
        self.sends
            .get_or_create(&vec![
                ("channel".into(), channel.into()),
                ("outcome".into(), "failed".into()),
            ])
            .inc_by(count);
    }

    /// Forgets `channel`'s failing gauge (it left the config).
    pub fn forget(&self, channel: &str) {
        self.failing
            .remove(&vec![("channel".into(), channel.into())]);
    }

    /// Counts one attempt at `channel` that ended as `outcome`, and
    /// whether the channel is failing now.
    pub fn attempt(&self, channel: &str, outcome: &str, failing: bool) {
        self.sends
            .get_or_create(&vec![
                ("channel".into(), channel.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
        if outcome != "skipped" {
            self.failing
                .get_or_create(&vec![("channel".into(), channel.into())])
                .set(i64::from(failing));
        }
    }
}
