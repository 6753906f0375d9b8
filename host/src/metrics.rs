//! Prometheus metrics: deliveries by provider and outcome, deploys by state,
//! each stack's finished deploys by outcome and its last success, and the
//! plugin's evaluation time, each stack's queued deploys, and the
//! process-wide metrics of [`process`] (compiled-component cache, registry
//! callbacks, journal call times). Served as
//! text at `GET /metrics`.

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::journal::DeployState;

pub mod catch_up;
pub mod notifications;
pub mod process;

/// Histogram buckets for plugin time: 50 µs doubling up to ~0.8 s.
const PLUGIN_SECONDS_BUCKETS: (f64, f64, u16) = (0.000_05, 2.0, 15);

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    deliveries: Family<Vec<(String, String)>, Counter>,
    deploys: Family<Vec<(String, String)>, Counter>,
    stack_deploys: Family<Vec<(String, String)>, Counter>,
    stack_last_success: Family<Vec<(String, String)>, Gauge>,
    plugin_seconds: Histogram,
    refused_unrecorded: Counter,
    config_reloads: Family<Vec<(String, String)>, Counter>,
    queued: Family<Vec<(String, String)>, Gauge>,
    polls: Family<Vec<(String, String)>, Counter>,
    poll_failures: Family<Vec<(String, String)>, Gauge>,
    poll_last_success: Family<Vec<(String, String)>, Gauge>,
    github_request_fallbacks: Family<Vec<(String, String)>, Counter>,
    /// GitHub catch-up's series.
    pub catch_up: catch_up::CatchUpMetrics,
    /// Notifications' series.
    pub notifications: notifications::NotificationMetrics,
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
        let stack_deploys = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "stack_deploys",
            "Deploys that ran to an end, by stack and final state (succeeded, failed, interrupted)",
            stack_deploys.clone(),
        );
        let stack_last_success = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "stack_last_success_timestamp_seconds",
            "When each stack's latest successful deploy finished (Unix seconds)",
            stack_last_success.clone(),
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
        let config_reloads = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads (SIGHUP, redeploy reload), by result (applied, refused)",
            config_reloads.clone(),
        );
        let queued = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "queued_deploys",
            "Deploys queued in the journal, by stack (read from the journal at each scrape)",
            queued.clone(),
        );
        registry.register(
            "journal_seconds",
            "Time journal calls take, by backend (sqlite, postgres) and kind (read, write)",
            process::JOURNAL_SECONDS.clone(),
        );
        registry.register(
            "component_cache_unwritable",
            "Loads of the compiled-component cache that could not write it, so the component was compiled again",
            process::COMPONENT_CACHE_UNWRITABLE.clone(),
        );
        registry.register(
            "callback_failures",
            "Registry callbacks (Docker Hub callback_url) not delivered, by reason (host-not-allowed, status, unreachable)",
            process::CALLBACK_FAILURES.clone(),
        );
        let polls = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "polls",
            "Looks at polled sources ([stacks.poll]), by stack and outcome (ok, failed)",
            polls.clone(),
        );
        let poll_failures = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "poll_failures_in_a_row",
            "Looks at each polled source that failed in a row (0 once one works), by stack and source",
            poll_failures.clone(),
        );
        let poll_last_success = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "poll_last_success_timestamp_seconds",
            "When each polled source was last looked at successfully (Unix seconds), by stack and source",
            poll_last_success.clone(),
        );
        let catch_up = catch_up::CatchUpMetrics::register(&mut registry);
        let notifications = notifications::NotificationMetrics::register(&mut registry);
        let github_request_fallbacks = Family::<Vec<(String, String)>, Counter>::default();
        registry.register(
            "github_request_fallbacks",
            "GitHub deployment requests redeploy acted on itself, by stack and action (deploy: the push deployed directly; give-up; not-overridden: GitHub refused the commit; event-missing: a created deployment ran without its event; superseded: a later push deployed first, nothing ran; adopted: the deployment a failed request's last try created was found on GitHub, and its event deploys)",
            github_request_fallbacks.clone(),
        );
        Metrics {
            github_request_fallbacks,
            catch_up,
            notifications,
            polls,
            poll_failures,
            poll_last_success,
            queued,
            refused_unrecorded,
            config_reloads,
            registry,
            deliveries,
            deploys,
            stack_deploys,
            stack_last_success,
            plugin_seconds,
            scrape: Mutex::new(()),
        }
    }

    /// Counts a look at `source` of `stack` at `at_ms`, after which it has
    /// failed `failures` times in a row (0: it worked).
    pub fn poll(&self, stack: &str, source: &str, failures: i64, at_ms: i64) {
        let outcome = if failures == 0 { "ok" } else { "failed" };
        self.polls
            .get_or_create(&vec![
                ("stack".into(), stack.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
        let labels = vec![
            ("stack".into(), stack.into()),
            ("source".into(), source.into()),
        ];
        self.poll_failures.get_or_create(&labels).set(failures);
        if failures == 0 {
            self.poll_last_success
                .get_or_create(&labels)
                .set(at_ms / 1000);
        }
    }

    /// Counts one GitHub deployment request of `stack` redeploy acted on
    /// itself (`action`: deploy, give-up, not-overridden, event-missing,
    /// superseded, adopted).
    pub fn github_request_fallback(&self, stack: &str, action: &str) {
        self.github_request_fallbacks
            .get_or_create(&vec![
                ("stack".into(), stack.into()),
                ("action".into(), action.into()),
            ])
            .inc();
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

    /// Counts one of `stack`'s deploys reaching its final `state` at
    /// `at_ms`, and counts the transition ([`Metrics::deploy_state`]).
    pub fn deploy_finished(&self, stack: &str, state: DeployState, at_ms: i64) {
        self.deploy_state(state);
        self.stack_deploys
            .get_or_create(&vec![
                ("stack".into(), stack.into()),
                ("state".into(), state.as_str().into()),
            ])
            .inc();
        if state == DeployState::Succeeded {
            self.stack_last_success
                .get_or_create(&vec![("stack".into(), stack.into())])
                .set(at_ms / 1000);
        }
    }

    /// Counts one refused delivery that got no journal row of its own.
    pub fn refused_unrecorded(&self) {
        self.refused_unrecorded.inc();
    }

    /// Counts one configuration reload, applied or refused.
    pub fn config_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "refused" };
        self.config_reloads
            .get_or_create(&vec![("result".into(), result.into())])
            .inc();
    }

    /// Sets the queue depth of each stack to `counts`; a stack left out has
    /// nothing queued any more and leaves the family.
    pub fn set_queued(&self, counts: &std::collections::BTreeMap<String, u64>) {
        self.queued.clear();
        for (stack, n) in counts {
            self.queued
                .get_or_create(&vec![("stack".into(), stack.clone())])
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
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
