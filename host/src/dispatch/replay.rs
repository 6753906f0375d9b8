//! What a delivery is deduplicated on when it has no delivery id of its
//! own: its exact body for a window that depends on whether the body names
//! its own time ([`replay_window`]), a signed manual trigger's signed time
//! ([`signed_trigger_identity`]), or what a caller passes (a forwarded
//! post-receive push's signed time and body); and the journal's key for it
//! ([`replay_key`]).

use std::time::Duration;

use crate::config::Config;
use crate::plugin::wit;

/// How long a delivery whose body names no time of its own (Quay sends the
/// same body for two pushes of one tag) is remembered for deduplication.
/// Such a body cannot tell a replay from a real second push, so the window
/// only stops immediate resends and replays: a real push of the same tag a
/// minute later still deploys, and for these senders the hook URL is the
/// only credential.
pub const TIMELESS_REPLAY_WINDOW: Duration = Duration::from_secs(60);

/// Senders that may come without a delivery id (ACR and Azure DevOps give
/// their event's `id` when the body has one) whose bodies carry a time of their own, so
/// that two real pushes never send the same bytes: Docker Hub
/// (`push_data.pushed_at`), Harbor (`occur_at`), ACR (`timestamp`), Azure
/// DevOps (`createdDate`) and the legacy Bitbucket POST service (commit
/// timestamps and ids).
pub const SENDERS_WITH_EVENT_TIME: &[wit::Provider] = &[
    wit::Provider::DockerHub,
    wit::Provider::Harbor,
    wit::Provider::Acr,
    wit::Provider::AzureDevops,
    wit::Provider::BitbucketLegacy,
];

/// How long an event time may lie in the future before the component
/// refuses it (the plugin's `MAX_EVENT_CLOCK_SKEW_MS`): a body with a time
/// is accepted from that much before its time until `max_event_age` after.
pub const EVENT_CLOCK_SKEW: Duration = Duration::from_secs(2 * 60);

/// How long a delivery without a delivery id is remembered so that a replay
/// of its exact body deploys once. A body that names its own time (the
/// component reports it as `sent-at-ms`, or the sender is one of
/// [`SENDERS_WITH_EVENT_TIME`]) is remembered `server.replay_window`, and at
/// least as long as the component would accept it (`max_event_age` plus
/// [`EVENT_CLOCK_SKEW`]), so a replay never outlives its key; one that does
/// not, at most [`TIMELESS_REPLAY_WINDOW`].
pub fn replay_window(config: &Config, outcome: &wit::Outcome) -> Duration {
    if outcome.sent_at_ms.is_some() {
        config
            .server
            .replay_window
            .max(config.server.max_event_age + EVENT_CLOCK_SKEW)
    } else if SENDERS_WITH_EVENT_TIME.contains(&outcome.provider) {
        config.server.replay_window
    } else {
        config.server.replay_window.min(TIMELESS_REPLAY_WINDOW)
    }
}

/// What a signed manual trigger is deduplicated on: the timestamp its
/// signature covers with its stack
/// ([`crate::manual::MANUAL_TIMESTAMP_HEADER`]), as the component reads it
/// (trimmed of whitespace, Unicode's included), so that no spelling of one
/// signed time is a new trigger. The query is not part of it: no sender
/// signs a query, and the component ignores keys it does not know, so a
/// replay could make new queries without end. Two signed triggers of one
/// stack in the same second are therefore one.
pub(super) fn signed_trigger_identity(http: &wit::HttpRequest) -> Option<Vec<u8>> {
    let (_, time) = http
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(crate::manual::MANUAL_TIMESTAMP_HEADER))?;
    Some(time.trim().as_bytes().to_vec())
}

/// What identifies a delivery that has no delivery id, for replay
/// deduplication: its bytes (hashed with the stack and provider into the
/// journal's replay key) and how long it is remembered.
#[derive(Clone, Copy, Debug)]
pub struct ReplayIdentity<'a> {
    /// The exact bytes: the body, or what a forwarded push signed.
    pub bytes: &'a [u8],
    /// How long a replay is refused.
    pub window: Duration,
    /// What the bytes are, for the answer to a replay ("its body").
    pub on: &'static str,
}

/// The journal's replay key: hex SHA-256 over the stack, the provider and
/// the delivery's bytes, each length-prefixed so no two triples collide;
/// and, for one of several deploys of one delivery, the ref or image it
/// deploys (`lane`, after them, so the key of a delivery of one ref is the
/// same as before lanes had one).
pub fn replay_key(stack: &str, lane: Option<&str>, provider: &str, bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for part in [stack.as_bytes(), provider.as_bytes(), bytes]
        .into_iter()
        .chain(lane.map(str::as_bytes))
    {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(h.finalize())
}
