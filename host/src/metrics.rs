//! Prometheus metrics: deliveries by provider and outcome, deploys by state,
//! and the plugin's evaluation time. Served as text at `GET /metrics`.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::journal::DeployState;

/// Histogram buckets for plugin time: 50 µs doubling up to ~0.8 s.
const PLUGIN_SECONDS_BUCKETS: (f64, f64, u16) = (0.000_05, 2.0, 15);

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    deliveries: Family<Vec<(String, String)>, Counter>,
    deploys: Family<Vec<(String, String)>, Counter>,
    plugin_seconds: Histogram,
    refused_unrecorded: Counter,
    // Encoding needs exclusive access to nothing but the registry; the lock
    // keeps concurrent scrapes from interleaving output.
    scrape: Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("redeploy");
        let deliveries = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "deliveries",
            "Deliveries received, by provider and outcome",
            deliveries.clone(),
        );
        let deploys = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "deploys",
            "Deploy state transitions, by state",
            deploys.clone(),
        );
        let (start, factor, count) = PLUGIN_SECONDS_BUCKETS;
        let plugin_seconds = Histogram::new(exponential_buckets(start, factor, count));
        registry.register(
            "plugin_seconds",
            "Time spent evaluating a delivery in the plugin component",
            plugin_seconds.clone(),
        );
        let refused_unrecorded = Counter::default();
        registry.register(
            "refused_unrecorded",
            "Refused deliveries beyond server.max_refused_deliveries_per_minute, counted without a journal row of their own",
            refused_unrecorded.clone(),
        );
        Metrics {
            refused_unrecorded,
            registry,
            deliveries,
            deploys,
            plugin_seconds,
            scrape: Mutex::new(()),
        }
    }

    /// Counts one delivery.
    pub fn delivery(&self, provider: &str, outcome: &str) {
        self.deliveries
            .get_or_create(&vec![
                ("provider".into(), provider.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }

    /// Counts one deploy state transition.
    pub fn deploy_state(&self, state: DeployState) {
        self.deploys
            .get_or_create(&vec![("state".into(), state.as_str().into())])
            .inc();
    }

    /// Counts one refused delivery that got no journal row of its own.
    pub fn refused_unrecorded(&self) {
        self.refused_unrecorded.inc();
    }

    /// Records one plugin evaluation's duration.
    pub fn plugin_time(&self, seconds: f64) {
        self.plugin_seconds.observe(seconds);
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let _guard = self.scrape.lock().unwrap();
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
