//! Counters of failures that happen outside any server's registry: the
//! compiled-component cache is loaded before `serve` builds its
//! [`super::Metrics`], and the notifier that calls registries back is
//! started apart from it. They count for the whole process, and every
//! [`super::Metrics`] registry serves them. A leaf module (it imports only
//! `prometheus_client`), so the plugin runtime and the notifier can count
//! without importing the journal through `metrics`, and so can the journal
//! itself (how long its calls take).

use std::sync::LazyLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

/// Histogram buckets for journal calls: 50 µs doubling up to ~1.6 s.
const JOURNAL_SECONDS_BUCKETS: (f64, f64, u16) = (0.000_05, 2.0, 16);

/// A family of journal-time histograms, by backend and kind.
pub(super) type JournalSeconds = Family<Vec<(String, String)>, Histogram, fn() -> Histogram>;

/// How long journal calls take, by backend (`sqlite`, `postgres`) and kind
/// (`read`, `write`), failures included: the database's latency as the
/// server sees it.
pub(super) static JOURNAL_SECONDS: LazyLock<JournalSeconds> = LazyLock::new(|| {
    Family::new_with_constructor(|| {
        let (start, factor, count) = JOURNAL_SECONDS_BUCKETS;
        Histogram::new(exponential_buckets(start, factor, count))
    })
});

/// The journal's backends and call kinds, the labels of
/// `redeploy_journal_seconds`.
const JOURNAL_BACKENDS: [&str; 2] = ["sqlite", "postgres"];
const JOURNAL_KINDS: [&str; 2] = ["read", "write"];

/// Records one journal call of `kind` (`read`, `write`) on `backend`
/// (`sqlite`, `postgres`) that took `seconds`. The four series are looked
/// up once: a journal call pays no label allocation.
pub fn journal_call(backend: &'static str, kind: &'static str, seconds: f64) {
    static SERIES: LazyLock<Vec<Histogram>> = LazyLock::new(|| {
        JOURNAL_BACKENDS
            .iter()
            .flat_map(|backend| {
                JOURNAL_KINDS.iter().map(move |kind| {
                    JOURNAL_SECONDS
                        .get_or_create(&vec![
                            ("backend".into(), (*backend).into()),
                            ("kind".into(), (*kind).into()),
                        ])
                        .clone()
                })
            })
            .collect()
    });
    let index = |names: &[&str], name| names.iter().position(|n| *n == name);
    if let (Some(b), Some(k)) = (
        index(&JOURNAL_BACKENDS, backend),
        index(&JOURNAL_KINDS, kind),
    ) {
        SERIES[b * JOURNAL_KINDS.len() + k].observe(seconds);
    }
}

/// Loads of the compiled-component cache that could not write it.
pub(super) static COMPONENT_CACHE_UNWRITABLE: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Registry callbacks (Docker Hub's `callback_url`) not delivered, by reason.
pub(super) static CALLBACK_FAILURES: LazyLock<Family<Vec<(String, String)>, Counter>> =
    LazyLock::new(Family::default);

/// Counts one load of the compiled-component cache that could not write
/// it (the component was compiled in memory instead).
pub fn component_cache_unwritable() {
    COMPONENT_CACHE_UNWRITABLE.inc();
}

/// Why a registry callback was not delivered, the `reason` label of
/// `redeploy_callback_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackFailure {
    /// Its host is not in `server.callback_hosts` (or not https): not sent.
    HostNotAllowed,
    /// It was sent and answered with a status other than 2xx.
    Status,
    /// It could not be sent (connection, TLS, timeout).
    Unreachable,
}

impl CallbackFailure {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackFailure::HostNotAllowed => "host-not-allowed",
            CallbackFailure::Status => "status",
            CallbackFailure::Unreachable => "unreachable",
        }
    }
}

/// Counts one registry callback not delivered.
pub fn callback_failed(reason: CallbackFailure) {
    CALLBACK_FAILURES
        .get_or_create(&vec![("reason".into(), reason.as_str().into())])
        .inc();
}
