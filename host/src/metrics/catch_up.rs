//! The metrics of GitHub catch-up ([`crate::catch_up`]): what it
//! redelivered, and how its looks at each stack's webhook went.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels: name and value pairs.
type Labels = Vec<(String, String)>;

/// Catch-up's series, registered in the server's registry.
#[derive(Clone, Debug, Default)]
pub struct CatchUpMetrics {
    redeliveries: Family<Labels, Counter>,
    redeliveries_failed: Family<Labels, Counter>,
    failures: Family<Labels, Gauge>,
    last_success: Family<Labels, Gauge>,
}

impl CatchUpMetrics {
    /// Registers the series in `registry`.
    pub fn register(registry: &mut Registry) -> CatchUpMetrics {
        let m = CatchUpMetrics::default();
        registry.register(
            "github_redeliveries",
            "Webhook deliveries catch-up asked GitHub to redeliver, by stack and event",
            m.redeliveries.clone(),
        );
        registry.register(
            "github_redeliveries_failed",
            "Missed webhook deliveries catch-up could not recover: GitHub refused to redeliver them, or their redelivery was not answered with a 2xx either; by stack and event",
            m.redeliveries_failed.clone(),
        );
        registry.register(
            "github_catch_up_failures_in_a_row",
            "Looks at each stack's GitHub webhook deliveries that failed in a row (0 once one works), by stack",
            m.failures.clone(),
        );
        registry.register(
            "github_catch_up_last_success_timestamp_seconds",
            "When each stack's GitHub webhook deliveries were last looked at successfully (Unix seconds), by stack",
            m.last_success.clone(),
        );
        m
    }

    /// Counts one redelivery of an `event` delivery of `stack`'s webhook.
    pub fn redelivered(&self, stack: &str, event: &str) {
        self.redeliveries
            .get_or_create(&vec![
                ("stack".into(), stack.into()),
                ("event".into(), event.into()),
            ])
            .inc();
    }

    /// Counts one missed delivery catch-up could not recover.
    pub fn redelivery_failed(&self, stack: &str, event: &str) {
        self.redeliveries_failed
            .get_or_create(&vec![
                ("stack".into(), stack.into()),
                ("event".into(), event.into()),
            ])
            .inc();
    }

    /// Records a look at `stack`'s webhook at `at_ms`, after which looks
    /// have failed `failures` times in a row (0: it worked).
    pub fn looked(&self, stack: &str, failures: i64, at_ms: i64) {
        let labels = vec![("stack".into(), stack.into())];
        self.failures.get_or_create(&labels).set(failures);
        if failures == 0 {
            self.last_success.get_or_create(&labels).set(at_ms / 1000);
        }
    }
}
