//! The journal's records: a deploy's state and its legal transitions, and
//! the rows written and read back (deliveries, deploys, recovery).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of a deploy: the contract's `deploy-phase` (one definition,
/// in the WIT), which the journal stores by name. See
/// [`DeployState::can_transition_to`] for the legal transitions. Queued
/// deploys survive restarts and run after the server starts again; a deploy
/// that was running when `redeploy` stopped is marked `interrupted` by
/// [`super::Journal::recover`].
pub use crate::plugin::wit::DeployPhase as DeployState;

impl DeployState {
    /// Every state, in declaration order.
    pub const ALL: [DeployState; 6] = [
        DeployState::Queued,
        DeployState::Started,
        DeployState::Succeeded,
        DeployState::Failed,
        DeployState::Cancelled,
        DeployState::Interrupted,
    ];

    /// The state's name as stored in the journal: `"queued"`, `"started"`,
    /// `"succeeded"`, `"failed"`, `"cancelled"` or `"interrupted"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployState::Queued => "queued",
            DeployState::Started => "started",
            DeployState::Succeeded => "succeeded",
            DeployState::Failed => "failed",
            DeployState::Cancelled => "cancelled",
            DeployState::Interrupted => "interrupted",
        }
    }

    /// Whether the state is final (no transition leaves it): succeeded,
    /// failed, cancelled or interrupted.
    pub fn is_final(self) -> bool {
        !matches!(self, DeployState::Queued | DeployState::Started)
    }

    /// Whether `self -> to` is a legal transition. The legal ones are
    /// queued -> started | cancelled and
    /// started -> succeeded | failed | cancelled | interrupted.
    /// (queued -> interrupted is not legal: queued deploys survive restarts
    /// and run.)
    pub fn can_transition_to(self, to: DeployState) -> bool {
        use DeployState::*;
        matches!(
            (self, to),
            (Queued, Started)
                | (Queued, Cancelled)
                | (Started, Succeeded)
                | (Started, Failed)
                | (Started, Cancelled)
                | (Started, Interrupted)
        )
    }
}

impl DeployState {
    /// The state's place in [`DeployState::ALL`], which orders states.
    fn position(self) -> usize {
        DeployState::ALL
            .iter()
            .position(|s| *s == self)
            .unwrap_or(DeployState::ALL.len())
    }
}

impl PartialOrd for DeployState {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DeployState {
    /// In the order of [`DeployState::ALL`]: queued first, interrupted last.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.position().cmp(&other.position())
    }
}

impl std::hash::Hash for DeployState {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.position().hash(state);
    }
}

impl Serialize for DeployState {
    /// As its name, [`DeployState::as_str`].
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DeployState {
    /// From its name, [`DeployState::as_str`].
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for DeployState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`DeployState`] from a string that names none.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown deploy state {0:?} (expected one of queued, started, succeeded, failed, cancelled, interrupted)")]
pub struct UnknownDeployState(pub String);

impl FromStr for DeployState {
    type Err = UnknownDeployState;

    /// Parses the names [`DeployState::as_str`] returns (exactly, lowercase).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeployState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownDeployState(s.to_owned()))
    }
}

/// A webhook delivery to record, whatever its outcome (and, in a
/// [`DeliveryRecord`], what was recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDelivery {
    /// When it was received, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// The stack its URL named, if any.
    pub stack: Option<String>,
    /// The provider it came from (e.g. `"github"`), if recognised.
    pub provider: Option<String>,
    /// The provider's event name (e.g. `"push"`), if any.
    pub event: Option<String>,
    /// The provider's delivery id (e.g. `X-GitHub-Delivery`), if any.
    pub delivery_id: Option<String>,
    /// The HTTP status the server answered with.
    pub status: u16,
    /// A one-line human summary of what happened.
    pub summary: String,
}

/// A recorded delivery, as read back from the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The journal's id for it (increasing with time of recording).
    pub id: i64,
    /// What was recorded.
    #[serde(flatten)]
    pub recorded: NewDelivery,
}

/// A recorded delivery with what its request looked like
/// ([`Journal::delivery`](super::Journal::delivery)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDelivery {
    /// The row.
    pub record: DeliveryRecord,
    /// Its request, redacted; `None` for a delivery that was not a request
    /// (a manual trigger, a local post-receive push) or was recorded
    /// without one.
    pub request: Option<crate::received::Received>,
    /// The request as sent, where `server.keep_delivery_bodies` kept it.
    pub kept: Option<crate::received::KeptRequest>,
}

/// A deploy to queue (and, in a [`DeployRecord`], what was queued).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDeploy {
    /// The stack to deploy.
    pub stack: String,
    /// The delivery that caused it (e.g. `X-GitHub-Delivery`), if any; at
    /// most one deploy per (stack, delivery id) is ever recorded.
    pub delivery_id: Option<String>,
    /// The provider the delivery came from (or e.g. `"manual"`).
    pub provider: String,
    /// The git ref the event named, if any.
    pub git_ref: Option<String>,
    /// The commit the event named, if any.
    pub sha: Option<String>,
    /// The services to redeploy; empty means all.
    pub services: Vec<String>,
    /// The compose profile, if any.
    pub profile: Option<String>,
    /// Why the plugin decided to deploy.
    pub reason: String,
    /// The normalised event, as JSON (no secrets).
    pub event_json: String,
    /// When it was queued, in milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Who pushed, when the delivery says (schema 6; absent before).
    #[serde(default)]
    pub pusher: Option<String>,
    /// The repository `git_ref` is of, as its sender named it (the event's
    /// `repository`; for a `deployment` event redeploy asked for, the
    /// push's that asked), if any; for an image push, the images its
    /// services follow, as configured (`dispatch::plan`'s
    /// `images_followed`): with the ref, the deploy's lane
    /// ([`crate::queue::Lane`]). SQLite schema 21, PostgreSQL 15; absent
    /// before.
    #[serde(default)]
    pub repository: Option<String>,
}

impl NewDeploy {
    /// The deploys it may give way to: those of its ref of its repository.
    pub fn lane(&self) -> crate::queue::Lane {
        crate::queue::Lane {
            git_ref: self.git_ref.clone(),
            repository: self.repository.clone(),
        }
    }
}

#[cfg(test)]
impl NewDeploy {
    /// A manual deploy of `stack` queued at 1 ms, with nothing else set:
    /// for unit tests that need a deploy row.
    pub(crate) fn manual(stack: &str) -> NewDeploy {
        NewDeploy {
            stack: stack.into(),
            delivery_id: None,
            provider: "manual".into(),
            git_ref: None,
            sha: None,
            services: vec![],
            profile: None,
            reason: "test".into(),
            event_json: "{}".into(),
            created_at_ms: 1,
            pusher: None,
            repository: None,
        }
    }
}

#[cfg(test)]
impl super::Journal {
    /// Queues [`NewDeploy::manual`] for `stack`; its id. For unit tests.
    pub(crate) fn insert_manual_deploy(&self, stack: &str) -> i64 {
        match self.insert_deploy(&NewDeploy::manual(stack)).unwrap() {
            Inserted::New(id) => id,
            Inserted::Duplicate(id) => panic!("a manual deploy is never a duplicate (#{id})"),
        }
    }
}

/// The outcome of [`Journal::insert_deploy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Inserted {
    /// A new queued deploy with this id.
    New(i64),
    /// A deploy for the same (stack, delivery id) already existed, with this
    /// id; nothing was inserted.
    Duplicate(i64),
}

impl Inserted {
    /// The deploy's id, new or existing.
    pub fn id(self) -> i64 {
        match self {
            Inserted::New(id) | Inserted::Duplicate(id) => id,
        }
    }
}

/// What a transition records besides the new state. Fields left `None` keep
/// the deploy's previous value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransitionDetail {
    /// The deploy command's exit code.
    pub exit_code: Option<i32>,
    /// A human explanation (stored as the deploy's `detail` and on the
    /// transition's history row).
    pub reason: Option<String>,
    /// Where the deploy's log is.
    pub log_path: Option<String>,
    /// The deploy that superseded this one (when cancelling); must exist.
    pub superseded_by: Option<i64>,
    /// The runner that started it (when starting): a process's name,
    /// [`crate::cluster::Replica::name`].
    pub runner: Option<String>,
}

/// A deploy left `started`, as recovery finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedDeploy {
    /// The deploy.
    pub id: i64,
    /// Its command's process group, once recorded.
    pub pgid: Option<i64>,
    /// The machine that process group lives on
    /// ([`crate::cluster::host_id`]); `None` before schema 7, or when the
    /// group was never recorded.
    pub pgid_host: Option<String>,
    /// Its log, as recorded when it started: the command's environment
    /// names the event file beside it (`REDEPLOY_EVENT_FILE`), which finds
    /// its processes when the group was never recorded.
    pub log_path: Option<String>,
}

/// What [`crate::journal::Journal::claim_next`] (or
/// [`crate::journal::Journal::claim_and_start`]) did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claimed {
    /// The deploy to run now, if one is left.
    pub next: Option<DeployRecord>,
    /// The queued deploys it cancelled (superseded), newest first, each
    /// with the reason recorded.
    pub cancelled: Vec<(i64, String)>,
    /// The claimer's lease was no longer its own: nothing was claimed.
    pub lease_lost: bool,
}

/// A deploy, as read back from the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployRecord {
    /// The journal's id for it (increasing with time of queueing).
    pub id: i64,
    /// What was queued (stack, delivery, provider, ref, commit, services,
    /// profile, reason, event, time).
    #[serde(flatten)]
    pub queued: NewDeploy,
    /// The current state.
    pub state: DeployState,
    /// When it started, if it did.
    pub started_at_ms: Option<i64>,
    /// When it reached a final state, if it did.
    pub finished_at_ms: Option<i64>,
    /// The deploy command's exit code, if recorded.
    pub exit_code: Option<i32>,
    /// Where its log is, if recorded.
    pub log_path: Option<String>,
    /// The latest transition reason, if any.
    pub detail: Option<String>,
    /// The deploy that superseded it, if any.
    pub superseded_by: Option<i64>,
}

impl DeployRecord {
    /// The runner's queue's view of it ([`crate::queue`]).
    pub fn slot(&self) -> crate::queue::Slot {
        crate::queue::Slot {
            id: self.id,
            sha: self.queued.sha.clone(),
            services: self.queued.services.clone(),
            profile: self.queued.profile.clone(),
            lane: self.queued.lane(),
        }
    }
}

/// The result of [`Journal::recover`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// Deploys that were `started` and are now `interrupted`, oldest first.
    pub interrupted: Vec<DeployRecord>,
    /// Deploys still `queued`, oldest first; the server should run them.
    pub queued: Vec<DeployRecord>,
}
