//! Several processes running deploys on one journal: leases, fencing and
//! wake-ups.
//!
//! On a PostgreSQL journal any number of `redeploy serve` replicas (and a
//! git hook's `run-queued`, or `trigger --local`) may run deploys. The
//! right to run a stack's deploys is a lease in the journal
//! ([`crate::journal::Journal::take_lease`]), named `stack:<stack>`, held by
//! one process at a time until a time the database's clock reads:
//!
//! - A process takes a stack's lease before it starts a deploy of the
//!   stack and gives it back once the deploy's end is journaled. Holding
//!   it, it first recovers what a runner that lost the lease left
//!   ([`crate::supervise::recover_stack`]), then claims the newest queued
//!   deploy of one of the stack's refs, whichever replica queued it,
//!   cancelling that ref's older ones
//!   ([`crate::journal::Journal::claim_next`]).
//! - The holder renews the lease every [`renew_every`] of its time to live.
//!   If it has not renewed it for [`fence_after`] (half the time to live) by
//!   its own clock, counted from before its last successful renewal was
//!   sent, it takes the lease for lost and kills the deploy's process group
//!   at once: by then no other process can have taken the lease yet, which
//!   only happens once the whole time to live has passed on the database's
//!   clock. So two deploys of one stack never overlap, even when a replica
//!   is cut off from the database but keeps running. (A replica whose
//!   whole process is stopped, `SIGSTOP` or a debugger, fences nothing
//!   until it runs again; its deploy command keeps running meanwhile.)
//! - A replica that dies stops renewing; its lease runs out and the next
//!   process to take it marks the dead replica's deploy `interrupted` (the
//!   single server's rule: never re-run automatically). Each deploy records
//!   the machine its process group lives on (`pgid_host`, [`host_id`]), so
//!   recovery only signals process groups on its own machine.
//! - Idle replicas do not poll hot: a new queued deploy and a released lease
//!   are announced with PostgreSQL's `NOTIFY`
//!   ([`crate::journal::QUEUED_CHANNEL`], [`crate::journal::RELEASED_CHANNEL`]),
//!   which each replica `LISTEN`s to on a connection of its own
//!   ([`Cluster::listen`]); a slow poll ([`SWEEP_EVERY`]) catches what a lost
//!   connection missed, and recovers the deploys of replicas that died.
//!
//! A SQLite journal is one machine's: there the stack lock is a file lock
//! (`flock(2)`, [`crate::supervise`]), released by the kernel when its
//! holder dies, and none of this is needed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::journal::{Journal, JournalError};

/// How long a lease lives unless renewed (`[journal] lease`).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// The shortest lease a configuration may set: a renewal must fit well
/// inside it.
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(1);

/// How often a holder renews its lease, as a fraction of its time to
/// live: several renewals fit before the holder fences itself.
const RENEWALS_PER_TTL: u32 = 6;

/// How often a process waiting for a lease another holds tries again, at
/// most (a release announced by `NOTIFY` wakes it earlier).
pub const LEASE_POLL: Duration = Duration::from_secs(1);

/// How often each replica looks for queued deploys and for deploys of dead
/// replicas without being told (the safety net under `NOTIFY`).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// How many wake-ups may wait for a slow subscriber before it is told to
/// re-read everything instead.
const WAKE_BACKLOG: usize = 1024;

/// When a holder renews: every `ttl / 6`.
pub fn renew_every(ttl: Duration) -> Duration {
    ttl / RENEWALS_PER_TTL
}

/// How long after its last successful renewal was sent a holder takes its
/// lease for lost and stops what it covers: half the time to live, so it
/// has stopped before any other process can take the lease.
pub fn fence_after(ttl: Duration) -> Duration {
    ttl / 2
}

/// The lease that gives the right to run `stack`'s deploys.
pub fn stack_lease(stack: &str) -> String {
    format!("stack:{stack}")
}

/// This machine, as deploys record where their process group lives: the
/// kernel's boot id (a new one at each boot, so a process group of a
/// previous boot is never signalled), or the host name where there is none.
pub fn host_id() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|id| id.trim().to_owned())
            .ok()
            .filter(|id| !id.is_empty())
            .unwrap_or_else(host_name)
    })
}

pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most `buf.len()` bytes into `buf`.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// This process as the cluster knows it.
#[derive(Debug)]
pub struct Replica {
    /// What deploys record as their runner: host name and process id.
    pub name: String,
    /// Unique to this process, never reused: the stem of its lease holder
    /// names (a restarted replica does not hold its predecessor's leases).
    stem: String,
    /// Numbers this process's lease acquisitions.
    taken: AtomicU64,
}

impl Replica {
    /// This process.
    pub fn this_process() -> &'static Replica {
        static REPLICA: OnceLock<Replica> = OnceLock::new();
        REPLICA.get_or_init(|| {
            let name = format!("{} pid {}", host_name(), std::process::id());
            let mut nonce = [0u8; 8];
            // The process id and the clock already tell processes apart;
            // the random part only guards against a reused pid.
            let _ = getrandom::fill(&mut nonce);
            let stem = format!("{name} {} {}", crate::journal::now_ms(), hex::encode(nonce));
            Replica {
                name,
                stem,
                taken: AtomicU64::new(0),
            }
        })
    }

    /// A holder name for one acquisition: a late release of an earlier
    /// acquisition can never give up a later one.
    fn holder(&self) -> String {
        let n = self.taken.fetch_add(1, Ordering::Relaxed);
        format!("{} #{n}", self.stem)
    }
}

/// Something a replica is told by the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wake {
    /// A deploy of this stack was queued.
    Queued(String),
    /// This lease was given up.
    Released(String),
    /// Anything may have been missed (the listening connection was lost,
    /// or this process fell behind): read again.
    Resync,
}

/// The processes sharing one journal, as seen from this one.
pub struct Cluster {
    journal: Arc<Journal>,
    ttl: Duration,
    wakes: broadcast::Sender<Wake>,
}

impl Cluster {
    /// The cluster on `journal`, with leases living `ttl`.
    pub fn new(journal: Arc<Journal>, ttl: Duration) -> Arc<Cluster> {
        let (wakes, _) = broadcast::channel(WAKE_BACKLOG);
        Arc::new(Cluster {
            journal,
            ttl: ttl.max(MIN_LEASE_TTL),
            wakes,
        })
    }

    /// The journal.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Listens for the other replicas' announcements (PostgreSQL only;
    /// `None` for SQLite) until the returned task is aborted.
    pub fn listen(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let wakes = self.wakes.clone();
        self.journal.listen(
            &[
                crate::journal::QUEUED_CHANNEL,
                crate::journal::RELEASED_CHANNEL,
            ],
            move |notice| {
                let wake = match notice {
                    None => Wake::Resync,
                    Some((channel, payload)) if channel == crate::journal::QUEUED_CHANNEL => {
                        Wake::Queued(payload)
                    }
                    Some((_, payload)) => Wake::Released(payload),
                };
                let _ = wakes.send(wake);
            },
        )
    }

    /// Wake-ups from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Wake> {
        self.wakes.subscribe()
    }

    /// Takes lease `name` if no other process holds it.
    pub async fn try_lease(&self, name: &str) -> Result<Option<Lease>, JournalError> {
        let holder = Replica::this_process().holder();
        let journal = self.journal.clone();
        let (lease_name, lease_holder, ttl) = (name.to_owned(), holder.clone(), self.ttl);
        let sent = Instant::now();
        let taken = tokio::task::spawn_blocking(move || {
            journal.take_lease(&lease_name, &lease_holder, ttl)
        })
        .await
        .unwrap_or(Ok(false))?;
        Ok(taken.then(|| Lease::keep(self.journal.clone(), name, holder, self.ttl, sent)))
    }

    /// Takes lease `name`, waiting while another process holds it (woken
    /// by its release, or every [`LEASE_POLL`]); `None` once `give_up`
    /// says to stop waiting. A journal error is returned at once.
    pub async fn lease(
        &self,
        name: &str,
        give_up: impl Fn() -> bool,
    ) -> Result<Option<Lease>, JournalError> {
        let mut wakes = self.subscribe();
        loop {
            if let Some(lease) = self.try_lease(name).await? {
                return Ok(Some(lease));
            }
            if give_up() {
                return Ok(None);
            }
            let deadline = Instant::now() + LEASE_POLL;
            loop {
                match tokio::time::timeout_at(deadline, wakes.recv()).await {
                    Ok(Ok(Wake::Released(released))) if released != name => continue,
                    // New work changes nothing about who holds this lease.
                    Ok(Ok(Wake::Queued(_))) => continue,
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                    _ => break,
                }
            }
        }
    }
}

/// A lease this process holds, renewed until it is released or dropped.
/// [`Lease::lost`] turns true the moment it may be lost.
pub struct Lease {
    name: String,
    holder: String,
    journal: Arc<Journal>,
    lost: watch::Receiver<bool>,
    keeper: tokio::task::JoinHandle<()>,
    released: bool,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("name", &self.name).finish()
    }
}

impl Lease {
    /// Starts renewing a lease taken at `taken` (before the request went).
    fn keep(
        journal: Arc<Journal>,
        name: &str,
        holder: String,
        ttl: Duration,
        taken: Instant,
    ) -> Lease {
        let (lost_tx, lost) = watch::channel(false);
        let keeper = tokio::spawn(keep_renewing(
            journal.clone(),
            name.to_owned(),
            holder.clone(),
            ttl,
            taken,
            lost_tx,
        ));
        Lease {
            name: name.to_owned(),
            holder,
            journal,
            lost,
            keeper,
            released: false,
        }
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who holds it: this acquisition's holder name, unique to it.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Turns true once the lease may be lost: whatever it covers must stop
    /// now.
    pub fn lost(&self) -> watch::Receiver<bool> {
        self.lost.clone()
    }

    /// Gives the lease up now (and tells waiting replicas).
    pub async fn release(mut self) {
        self.keeper.abort();
        self.released = true;
        let (journal, name, holder) =
            (self.journal.clone(), self.name.clone(), self.holder.clone());
        let released =
            tokio::task::spawn_blocking(move || journal.release_lease(&name, &holder)).await;
        if let Ok(Err(e)) = released {
            tracing::warn!(lease = %self.name, error = %e, "cannot give the lease back; it runs out by itself");
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.keeper.abort();
        if self.released {
            return;
        }
        // Dropped without `release` (an early return): give it back in the
        // background. The holder name is this acquisition's own, so a late
        // release never gives up a later acquisition.
        let (journal, name, holder) =
            (self.journal.clone(), self.name.clone(), self.holder.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn_blocking(move || {
                let _ = journal.release_lease(&name, &holder);
            });
        }
    }
}

/// Renews the lease every [`renew_every`]; sets `lost` (and ends) when a
/// renewal is refused, or when none succeeded for [`fence_after`] since the
/// last successful one was sent.
async fn keep_renewing(
    journal: Arc<Journal>,
    name: String,
    holder: String,
    ttl: Duration,
    taken: Instant,
    lost: watch::Sender<bool>,
) {
    let mut renewed = taken;
    let mut next = taken + renew_every(ttl);
    loop {
        let fence = renewed + fence_after(ttl);
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = tokio::time::sleep_until(fence) => {
                tracing::error!(lease = %name, "no renewal of the lease got through in time: stopping what it covers");
                let _ = lost.send(true);
                return;
            }
        }
        let sent = Instant::now();
        let (j, n, h) = (journal.clone(), name.clone(), holder.clone());
        let renewal = tokio::task::spawn_blocking(move || j.renew_lease(&n, &h, ttl));
        let outcome = tokio::select! {
            outcome = renewal => outcome,
            () = tokio::time::sleep_until(fence) => {
                tracing::error!(lease = %name, "the lease's renewal did not answer in time: stopping what it covers");
                let _ = lost.send(true);
                return;
            }
        };
        match outcome {
            Ok(Ok(true)) => renewed = sent,
            Ok(Ok(false)) => {
                tracing::error!(lease = %name, "the lease was taken by another process: stopping what it covers");
                let _ = lost.send(true);
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = %name, error = %e, "cannot renew the lease; trying again")
            }
            Err(_) => {}
        }
        next = Instant::now() + renew_every(ttl);
    }
}
