//! The deploy runner: one deploy at a time per stack, stacks in parallel up
//! to a global cap, and the newest commit of each ref wins.
//!
//! Per stack there is at most one running deploy and, per ref, one pending
//! deploy. A newer deploy of a ref replaces its pending one, which is
//! recorded `cancelled` and never runs; a deploy older than its ref's
//! pending or running one is cancelled at once, so an older commit never
//! runs after a newer one. That policy is
//! a pure state machine of its own ([`crate::queue`]); this module journals
//! what it decides and runs the deploys: a command ([`command`]) or an
//! HTTP request ([`http_action`]).
//!
//! Which commit is newer is the journal's judgment, not the runner's: the
//! journal admits a deploy only if its commit is not older than every commit
//! the stack already deployed or superseded ([`crate::commit_order`]), across
//! restarts, so deploys are newer in the order the journal admitted them, and
//! the runner orders them by deploy id. It keeps no record of commits of
//! its own.
//!
//! Every state change goes to the journal first; the in-memory queues are
//! only a cache of it, rebuilt by [`Runner::recover`] at start. A deploy a
//! delivery queues is placed in its stack's queue inside the journal
//! transaction that queues it, on SQLite ([`place`]), so that what the
//! queue cancels is journaled in that transaction; the placement is undone
//! if it does not commit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;

use crate::capacity::Capacity;
use crate::config::{DeployAction, LiveConfig, StackConfig};
use crate::journal::{
    now_ms, DeployObserver, DeployRecord, DeployState, Journal, TransitionDetail,
};
use crate::metrics::Metrics;
use crate::queue::{Admit, Slot, StackQueue};

mod command;
pub mod reaper;
pub use command::{
    deploy_env, event_file, event_file_env, CommandSpec, INHERITED_ENV, LEASE_LOST_REASON,
};
mod follow;
pub mod follows;
mod stop;
pub use stop::{Stop, CANCELLED_REASON, CANCEL_POLL, SHUTDOWN_REASON};
mod http_action;
pub use http_action::HTTP_ACTION_CONNECT_TIMEOUT;
mod claim;
mod end;
mod place;
mod retry;
pub use retry::{JOURNAL_RETRY_FIRST_WAIT, JOURNAL_RETRY_FOR, JOURNAL_RETRY_MAX_WAIT};

/// The parts of a journaled deploy event that the journal's own columns do
/// not hold (stack, ref, sha, services... are columns of the deploy row).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeployEventJson {
    /// The branch, when the ref is one.
    pub branch: Option<String>,
    /// The tag, when the ref is one.
    pub tag: Option<String>,
    /// The repository, when known.
    pub repository: Option<String>,
    /// `registry/repository:tag` for registry pushes.
    pub image: Option<String>,
}

/// How a worker's turn at a deploy ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The deploy ran, or was not there to run.
    Done,
    /// Shutdown closed the permits before it could start: it stays queued.
    Abandoned,
}

/// What happened to a deploy handed to [`Runner::enqueue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// It will run (it is pending or about to start).
    Queued,
    /// It was cancelled at once, with the reason.
    Cancelled(String),
}

struct Inner {
    /// The configuration now: a deploy reads its stack from it when it
    /// starts, so a reload applies to the next deploy.
    config: LiveConfig,
    journal: Arc<Journal>,
    metrics: Arc<Metrics>,
    queues: Mutex<BTreeMap<String, StackQueue>>,
    /// `max_concurrent_deploys`, resized by a reload.
    global: Arc<Capacity>,
    /// Set at shutdown: workers start nothing new.
    stopping: std::sync::atomic::AtomicBool,
    /// Sent at the end of the grace period: running commands are killed.
    kill: watch::Sender<bool>,
    workers: tokio::sync::Mutex<tokio::task::JoinSet<()>>,
    http: reqwest::Client,
    observer: std::sync::OnceLock<Arc<dyn DeployObserver>>,
    /// False when the caller holds every stack lock itself (`run_queued`).
    takes_stack_locks: std::sync::atomic::AtomicBool,
    /// When the caller holds the locks: turns true when they may be lost.
    callers_lock_lost: std::sync::OnceLock<watch::Receiver<bool>>,
    /// When the caller holds a lease: its `(name, holder)`, for the claim's
    /// check on the database.
    callers_lease: std::sync::OnceLock<(String, String)>,
    /// Where stack locks live: set by [`Runner::use_locks`], else files in
    /// the state directory.
    locks: std::sync::OnceLock<crate::supervise::Locks>,
    /// False on a replica that only queues deploys (`server.runner = false`).
    runs_deploys: std::sync::atomic::AtomicBool,
    /// The component, which checks each deploy against this process's
    /// configuration before it runs ([`follows`]).
    runtime: Arc<crate::plugin::PluginRuntime>,
}

/// The deploy runner. Cheap to clone.
#[derive(Clone)]
pub struct Runner {
    inner: Arc<Inner>,
}

impl Runner {
    /// A runner for `config`'s stacks, writing to `journal`, checking each
    /// deploy with `runtime` before it runs ([`follows`]).
    pub fn new(
        config: impl Into<LiveConfig>,
        journal: Arc<Journal>,
        metrics: Arc<Metrics>,
        runtime: Arc<crate::plugin::PluginRuntime>,
    ) -> anyhow::Result<Runner> {
        let config = config.into();
        let (kill, _) = watch::channel(false);
        let http = http_action::client()?;
        Ok(Runner {
            inner: Arc::new(Inner {
                global: Capacity::new(config.current().server.max_concurrent_deploys),
                config,
                journal,
                metrics,
                queues: Mutex::new(BTreeMap::new()),
                stopping: std::sync::atomic::AtomicBool::new(false),
                kill,
                workers: tokio::sync::Mutex::new(tokio::task::JoinSet::new()),
                http,
                observer: std::sync::OnceLock::new(),
                takes_stack_locks: std::sync::atomic::AtomicBool::new(true),
                callers_lock_lost: std::sync::OnceLock::new(),
                callers_lease: std::sync::OnceLock::new(),
                locks: std::sync::OnceLock::new(),
                runs_deploys: std::sync::atomic::AtomicBool::new(true),
                runtime,
            }),
        })
    }

    /// The limit on deploys running at once (`max_concurrent_deploys`),
    /// for a reload to resize.
    pub fn capacity(&self) -> &Arc<Capacity> {
        &self.inner.global
    }

    /// Sets the observer told of every state change (once; later calls are
    /// ignored).
    pub fn observe(&self, observer: Arc<dyn DeployObserver>) {
        let _ = self.inner.observer.set(observer);
    }

    /// Tells the runner its caller holds `lock`, the lock of the one stack
    /// it will run ([`crate::supervise`]), so it takes none itself; when
    /// the lock is a lease, the claim checks it on the database, and the
    /// running deploy stops at once if it may be lost.
    pub fn caller_holds_stack_locks(&self, lock: &crate::supervise::StackLock) {
        self.inner
            .takes_stack_locks
            .store(false, std::sync::atomic::Ordering::SeqCst);
        if let Some(lost) = lock.lost() {
            let _ = self.inner.callers_lock_lost.set(lost);
        }
        if let Some((name, holder)) = lock.lease() {
            let _ = self
                .inner
                .callers_lease
                .set((name.to_owned(), holder.to_owned()));
        }
    }

    /// Takes stack locks from `locks` (once; later calls are ignored).
    pub fn use_locks(&self, locks: crate::supervise::Locks) {
        let _ = self.inner.locks.set(locks);
    }

    /// Makes this runner queue deploys without running them: another
    /// replica on the same journal runs them (`server.runner = false`).
    pub fn only_queue(&self) {
        self.inner
            .runs_deploys
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether this runner runs deploys.
    pub fn runs_deploys(&self) -> bool {
        self.inner
            .runs_deploys
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether other processes (replicas) run this journal's deploys too,
    /// maybe with other stacks: stack locks are leases.
    fn shares_journal(&self) -> bool {
        matches!(
            self.inner.locks.get(),
            Some(crate::supervise::Locks::Leases(_))
        )
    }

    /// Where this runner's stack locks live.
    pub fn locks(&self) -> crate::supervise::Locks {
        self.inner.locks.get().cloned().unwrap_or_else(|| {
            crate::supervise::Locks::Files(self.inner.config.current().server.state_dir.clone())
        })
    }

    /// Takes the stack's lock, then recovers what a dead runner left of the
    /// stack's deploys. `None` (nothing may start) at shutdown or on error.
    /// With `wait` false, only if no other runner holds the lock now.
    async fn lock_and_recover(
        &self,
        stack: &str,
        wait: bool,
    ) -> Option<crate::supervise::StackLock> {
        let inner = &self.inner;
        let locks = self.locks();
        let lock = if wait {
            locks
                .lock(stack, || {
                    inner.stopping.load(std::sync::atomic::Ordering::SeqCst)
                })
                .await
        } else {
            locks.try_lock(stack).await
        };
        let lock = match lock {
            Ok(Some(lock)) => lock,
            Ok(None) => return None,
            Err(e) => {
                tracing::error!(
                    stack,
                    error = format!("{e:#}"),
                    "cannot take the stack's lock; its deploy stays queued"
                );
                return None;
            }
        };
        let observer = inner.observer.get().map(|o| o.as_ref());
        match crate::supervise::recover_stack(&inner.journal, stack, &lock, observer).await {
            Ok(ids) => {
                for _ in ids {
                    inner
                        .metrics
                        .deploy_finished(stack, DeployState::Interrupted, now_ms());
                }
                Some(lock)
            }
            Err(e) => {
                tracing::error!(stack, error = %e, "cannot recover the stack; its deploy stays queued");
                lock.release().await;
                None
            }
        }
    }

    /// An operator cancelled deploy `id` (through the dispatcher): the
    /// stack's queue forgets it ([`StackQueue::forget`]), and the observer
    /// hears of a queued one's end (a running one's comes when it stops).
    pub fn cancelled_by_operator(&self, id: i64, reason: &str, queued: bool) {
        for queue in self.queues().values_mut() {
            queue.forget(id);
        }
        if queued {
            self.notify(id, DeployState::Cancelled, Some(reason));
        }
    }

    /// Locks the stacks' queues. A poisoned lock is taken anyway (a panic
    /// while one was held, maybe placing a deploy in an admission's
    /// transaction): the queues are plain data, each change made whole
    /// under the lock.
    fn queues(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, StackQueue>> {
        self.inner.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn notify(&self, id: i64, state: DeployState, detail: Option<&str>) {
        if let Some(o) = self.inner.observer.get() {
            o.changed(id, state, detail);
        }
    }

    /// Cancels queued deploy `id`; false if another runner started,
    /// cancelled or finished it first (or the journal failed), and it was
    /// left as it is.
    fn cancel(&self, id: i64, reason: String, superseded_by: Option<i64>) -> bool {
        let detail = TransitionDetail {
            reason: Some(reason),
            superseded_by,
            ..Default::default()
        };
        match self.inner.journal.cancel_queued(id, now_ms(), &detail) {
            Ok(true) => {
                self.report_cancel(id, detail.reason.as_deref());
                true
            }
            Ok(false) => {
                tracing::debug!(deploy = id, "not cancelled: another runner moved it first");
                false
            }
            Err(e) => {
                tracing::error!(deploy = id, error = %e, "journal: cannot record a cancelled deploy");
                false
            }
        }
    }

    /// Hands a queued deploy (already in the journal) to its stack's queue,
    /// and journals what the queue policy ([`crate::queue`]) decides.
    /// The same deploy handed over twice (a replica's announcement of one
    /// this runner already has) changes nothing.
    pub fn enqueue(&self, record: &DeployRecord) -> Enqueued {
        let elsewhere = self.shares_journal()
            && self
                .inner
                .config
                .current()
                .stack(&record.queued.stack)
                .is_none();
        // A replica that does not run deploys, or does not have the stack,
        // leaves the deploy queued for one that does.
        if !self.runs_deploys() || elsewhere {
            self.notify(record.id, DeployState::Queued, None);
            return Enqueued::Queued;
        }
        let slot = record.slot();
        let admit = |slot: Slot| {
            let mut queues = self.queues();
            queues
                .entry(record.queued.stack.clone())
                .or_default()
                .admit(slot)
        };
        let mut admitted = admit(slot.clone());
        // The deploy this one would be cancelled for may have been
        // cancelled meanwhile (by an operator, maybe through another
        // replica, whose queue forgot it while this one's did not), or
        // be one whose admission did not commit (placed in the queue inside
        // that transaction, `place`, and not yet undone when this queue
        // was asked): then it is no reason. Both the pending and the
        // running one may be.
        for _ in 0..2 {
            let Admit::Cancel { because_of, .. } = admitted else {
                break;
            };
            let left_to_claim = self.shares_journal() && because_of > record.id;
            let journal = &self.inner.journal;
            if left_to_claim || !journal.gone_or_cancelling(because_of).unwrap_or(false) {
                break;
            }
            for queue in self.queues().values_mut() {
                queue.forget(because_of);
            }
            admitted = admit(slot.clone());
        }
        match admitted {
            // Handed over before (a replica's announcement of a deploy this
            // runner already has): nothing changes.
            Admit::Known => Enqueued::Queued,
            // On a journal replicas share, a deploy handed over again (a
            // replica's announcement) that is older than one this queue
            // holds is left to the stack's next claim, which cancels it
            // with every other older one: no transaction of its own.
            Admit::Cancel { because_of, .. } if self.shares_journal() && because_of > record.id => {
                Enqueued::Queued
            }
            Admit::Cancel { reason, because_of } => {
                if self.cancel(record.id, reason.clone(), Some(because_of)) {
                    Enqueued::Cancelled(reason)
                } else {
                    // Another replica's runner took it first.
                    Enqueued::Queued
                }
            }
            Admit::Pending {
                superseded,
                start_worker,
            } => {
                self.notify(record.id, DeployState::Queued, None);
                // On a journal replicas share, the stack's next claim
                // cancels the superseded deploy, with every other older one
                // whichever replica queued it, in the transaction that
                // starts the newest ([`Journal::claim_and_start`]):
                // cancelling it here as well would cost every push one more
                // transaction under the journal's write lock.
                if let Some((pending, reason)) = superseded.filter(|_| !self.shares_journal()) {
                    self.cancel(pending, reason, Some(record.id));
                }
                if start_worker {
                    self.spawn_worker(record.queued.stack.clone());
                }
                Enqueued::Queued
            }
        }
    }

    fn spawn_worker(&self, stack: String) {
        let runner = self.clone();
        let fut = async move { runner.work(stack).await };
        // The JoinSet lock is only held to add the task.
        match self.inner.workers.try_lock() {
            Ok(mut set) => {
                set.spawn(fut);
            }
            Err(_) => {
                let inner = self.inner.clone();
                tokio::spawn(async move {
                    inner.workers.lock().await.spawn(fut);
                });
            }
        }
    }

    async fn work(&self, stack: String) {
        loop {
            let stopping = self
                .inner
                .stopping
                .load(std::sync::atomic::Ordering::SeqCst);
            let next = {
                let mut queues = self.queues();
                queues.entry(stack.clone()).or_default().next(stopping)
            };
            let Some(slot) = next else { return };
            let outcome = self.run_one(&stack, slot).await;
            if let Some(q) = self.queues().get_mut(&stack) {
                match outcome {
                    Outcome::Done => q.finished(),
                    Outcome::Abandoned => {
                        q.abandon();
                        return;
                    }
                }
            }
        }
    }

    /// Runs the journal's next deploy of `stack` for the slot `taken`,
    /// which this worker took (`taken` itself unless another was queued
    /// that runs first, maybe by another replica), under the stack's lock
    /// and one of the `max_concurrent_deploys` permits; nothing unless
    /// `taken` is a queued deploy of `stack`.
    async fn run_one(&self, stack: &str, taken: Slot) -> Outcome {
        let journal = &self.inner.journal;
        let id = taken.id;
        match journal.deploy(id) {
            // Of this worker's stack only: a deploy whose admission did not
            // commit, taken before its placement was undone, may have left
            // its id to another stack's deploy admitted since.
            Ok(Some(r)) if r.state == DeployState::Queued && r.queued.stack == stack => {}
            Ok(_) => return Outcome::Done,
            Err(e) => {
                tracing::error!(deploy = id, error = %e, "journal: cannot read a queued deploy");
                return Outcome::Done;
            }
        }
        let semaphore = self.inner.global.semaphore();
        // One deploy per stack across every runner on the journal: the lock
        // is held until the deploy's end is journaled.
        if !self
            .inner
            .takes_stack_locks
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // The semaphore is closed at shutdown: the deploy stays queued.
            let Ok(_permit) = semaphore.acquire().await else {
                return Outcome::Abandoned;
            };
            let lost = self.inner.callers_lock_lost.get().cloned();
            let lease = self.inner.callers_lease.get();
            let lease = lease.map(|(name, holder)| (name.as_str(), holder.as_str()));
            self.run_claimed(stack, taken, lease, lost).await;
            return Outcome::Done;
        }
        // A runner never holds a permit while it waits for a stack's lock
        // (another runner, maybe on another replica, may hold it for an
        // hour), nor the lock while it waits for a permit (other replicas
        // could run the stack meanwhile). It waits for the lock, then takes
        // a permit if one is free; if none is, it gives the lock back, waits
        // for a permit and, holding it, takes the lock only if it is free
        // at once, else gives the permit back and starts over.
        loop {
            let Some(lock) = self.lock_and_recover(stack, true).await else {
                return Outcome::Done;
            };
            let (lock, permit) = match semaphore.clone().try_acquire_owned() {
                Ok(permit) => (lock, permit),
                Err(tokio::sync::TryAcquireError::Closed) => {
                    lock.release().await;
                    return Outcome::Abandoned;
                }
                Err(tokio::sync::TryAcquireError::NoPermits) => {
                    lock.release().await;
                    let Ok(permit) = semaphore.clone().acquire_owned().await else {
                        return Outcome::Abandoned;
                    };
                    match self.lock_and_recover(stack, false).await {
                        Some(lock) => (lock, permit),
                        None => {
                            drop(permit);
                            continue;
                        }
                    }
                }
            };
            self.run_claimed(stack, taken.clone(), lock.lease(), lock.lost())
                .await;
            drop(permit);
            lock.release().await;
            return Outcome::Done;
        }
    }

    /// With the stack's lock held: claims the journal's next deploy of the
    /// stack, for `taken`, the one this runner's queue handed it (another
    /// runner may have run or cancelled it meanwhile, or queued a newer one
    /// of its lane, or an older one of another), tells the queue which one
    /// started, and runs it; `lease` is the lock's lease, which the journal
    /// checks as it records the deploy started, and `lost` turns true when
    /// the lock may be lost.
    async fn run_claimed(
        &self,
        stack_name: &str,
        taken: Slot,
        lease: Option<(&str, &str)>,
        lost: Option<watch::Receiver<bool>>,
    ) {
        let journal = &self.inner.journal;
        let is_lost = || lost.as_ref().is_some_and(|l| *l.borrow());
        if is_lost() {
            return;
        }
        let config = self.inner.config.current();
        let Some(stack) = config.stack(stack_name).cloned() else {
            self.claim_unconfigured(stack_name);
            return;
        };
        let log_path = |id: i64| self.log_path(stack_name, id);
        let runner = &crate::cluster::Replica::this_process().name;
        let detail = |id: i64| TransitionDetail {
            log_path: Some(log_path(id).display().to_string()),
            runner: Some(runner.clone()),
            ..Default::default()
        };
        let refusal =
            |record: &DeployRecord| follows::refusal(&self.inner.runtime, &config, &stack, record);
        let start = crate::journal::Start {
            lease,
            lost: &is_lost,
            detail: &detail,
            refusal: &refusal,
        };
        let Some(claimed) = self
            .claim_retried(stack_name, runner, &start, &is_lost)
            .await
        else {
            return;
        };
        if claimed.lease_lost {
            tracing::warn!(
                stack = stack_name,
                "the stack's lease is no longer this runner's: not starting its next deploy"
            );
        }
        self.report_cancelled(&claimed.cancelled);
        let Some(record) = claimed.next else { return };
        // What runs is what later deliveries are compared with: its commit
        // and services, even if not the deploy this worker took.
        if let Some(queue) = self.queues().get_mut(stack_name) {
            queue.started(record.slot(), taken);
        }
        let id = record.id;
        let log_path = log_path(id);
        self.inner.metrics.deploy_state(DeployState::Started);
        self.notify(id, DeployState::Started, None);
        tracing::info!(deploy = id, stack = %record.queued.stack, sha = ?record.queued.sha, "deploy started");
        let mirror = crate::deploy_log::Mirror::start(journal, id, &log_path, &self.inner.config);
        let began = std::time::Instant::now();
        // A lease lost since the claim committed: the command never starts
        // (rather than starting, to be killed at once by the stop signal).
        let result = if is_lost() {
            Err(Failure {
                exit_code: None,
                reason: LEASE_LOST_REASON.to_owned(),
                ends_as: DeployState::Interrupted,
            })
        } else {
            let (stop, watcher) = self.stop_signal(id, lost.clone());
            let result = self.execute(&stack, &record, &log_path, stop).await;
            watcher.abort();
            result
        };
        let took = began.elapsed();
        let (state, detail) = match result {
            Ok(()) => (
                DeployState::Succeeded,
                TransitionDetail {
                    exit_code: Some(0),
                    ..Default::default()
                },
            ),
            Err(Failure {
                exit_code,
                reason,
                ends_as,
            }) => {
                // A cancelled deploy says who cancelled it and why.
                let reason = match ends_as {
                    DeployState::Cancelled => journal
                        .cancel_requested(id)
                        .ok()
                        .flatten()
                        .unwrap_or(reason),
                    _ => reason,
                };
                (
                    ends_as,
                    TransitionDetail {
                        exit_code,
                        reason: Some(reason),
                        ..Default::default()
                    },
                )
            }
        };
        // Every log ends saying how the deploy ended and how long it took.
        let trailer = log_trailer(id, state, detail.reason.as_deref(), took);
        if let Err(e) = crate::logfiles::append_line(&log_path, &trailer) {
            tracing::warn!(deploy = id, error = %e, "cannot write the deploy log's last line");
        }
        mirror.finish().await;
        self.record_end(&record, state, &detail, &is_lost).await;
        tracing::info!(deploy = id, stack = %record.queued.stack, state = state.as_str(), reason = ?detail.reason, "deploy finished");
    }

    fn log_path(&self, stack: &str, id: i64) -> PathBuf {
        let config = self.inner.config.current();
        crate::deploy_log::file_path(&config.server.state_dir, stack, id)
    }

    /// Tells of deploys a claim cancelled.
    fn report_cancelled(&self, cancelled: &[(i64, String)]) {
        for (id, reason) in cancelled {
            self.report_cancel(*id, Some(reason));
        }
    }

    /// Tells of queued deploy `id`, journaled `cancelled` for `reason`.
    fn report_cancel(&self, id: i64, reason: Option<&str>) {
        self.inner.metrics.deploy_state(DeployState::Cancelled);
        self.notify(id, DeployState::Cancelled, reason);
    }

    /// A stack this runner is handed that its configuration no longer has:
    /// on a journal other replicas share, one of them may have it, and its
    /// deploys stay queued for it; otherwise the newest is claimed and
    /// cancelled (and the older ones with it, superseded).
    fn claim_unconfigured(&self, stack: &str) {
        if self.shares_journal() {
            tracing::warn!(
                stack,
                "not configured on this replica; its deploys are left queued for a replica that has it"
            );
            return;
        }
        match self.inner.journal.claim_next(stack, now_ms()) {
            Ok(claimed) => {
                self.report_cancelled(&claimed.cancelled);
                if let Some(record) = claimed.next {
                    self.cancel(
                        record.id,
                        format!("stack \"{stack}\" is no longer configured"),
                        None,
                    );
                }
            }
            Err(e) => {
                tracing::error!(stack, error = %e, "journal: cannot claim the stack's next deploy")
            }
        }
    }

    async fn execute(
        &self,
        stack: &StackConfig,
        record: &DeployRecord,
        log_path: &Path,
        stop: watch::Receiver<Stop>,
    ) -> Result<(), Failure> {
        if let Some(dir) = log_path.parent() {
            // `logs/` too: it may predate private log directories.
            let created = crate::logfiles::create_private_dir(dir)
                .and_then(|()| dir.parent().map_or(Ok(()), crate::logfiles::tighten_dir));
            created.map_err(|e| {
                Failure::failed(format!(
                    "cannot create log directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let event: DeployEventJson =
            serde_json::from_str(&record.queued.event_json).unwrap_or_default();
        match &stack.action {
            DeployAction::Command { argv, workdir, env } => {
                let profile = record
                    .queued
                    .profile
                    .as_ref()
                    .and_then(|p| stack.profiles.get(p));
                let argv = profile
                    .and_then(|p| p.command.clone())
                    .unwrap_or_else(|| argv.clone());
                let mut env = env.clone();
                if let Some(p) = profile {
                    env.extend(p.env.clone());
                }
                let spec = CommandSpec {
                    argv: &argv,
                    workdir,
                    env: &env,
                    timeout: stack.timeout,
                    log_path,
                    max_log_bytes: self.inner.config.current().server.max_deploy_log_bytes,
                };
                // Recorded off this task: a database that stops answering
                // now must not keep the deploy from watching its stop
                // signal (a lost lease kills the command).
                let started = |pgid: u32| {
                    let (journal, id) = (self.inner.journal.clone(), record.id);
                    tokio::task::spawn_blocking(move || {
                        let host = crate::cluster::host_id();
                        if let Err(e) = journal.set_pgid(id, pgid, host) {
                            tracing::error!(deploy = id, error = %e, "journal: cannot record the deploy's process group");
                        }
                    });
                };
                command::run(record, &event, &spec, started, stop).await
            }
            DeployAction::Http { url, headers } => {
                let mut stop = stop;
                let post = http_action::post_event(
                    &self.inner.http,
                    record,
                    url,
                    headers,
                    stack.timeout,
                    log_path,
                );
                // A stop abandons the request: what the receiver does with
                // it is its own.
                tokio::select! {
                    result = post => result,
                    why = stop.wait_for(|s| *s != Stop::Run) => Err(match why.map_or(Stop::Shutdown, |s| *s) {
                        Stop::Cancelled => Failure {
                            exit_code: None,
                            reason: CANCELLED_REASON.into(),
                            ends_as: DeployState::Cancelled,
                        },
                        Stop::LeaseLost => Failure {
                            exit_code: None,
                            reason: LEASE_LOST_REASON.into(),
                            ends_as: DeployState::Interrupted,
                        },
                        _ => Failure {
                            exit_code: None,
                            reason: SHUTDOWN_REASON.into(),
                            ends_as: DeployState::Interrupted,
                        },
                    }),
                }
            }
        }
    }

    /// Re-queues deploys the journal holds as queued (after a restart).
    pub fn recover(&self, queued: &[DeployRecord]) {
        for record in queued {
            self.enqueue(record);
        }
    }

    /// Stops starting deploys, lets running ones finish within `grace`,
    /// then kills what is left (recorded `interrupted`). Queued deploys stay
    /// queued in the journal and run on the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.inner.global.semaphore().close();
        let mut set = std::mem::take(&mut *self.inner.workers.lock().await);
        let drained =
            tokio::time::timeout(grace, async { while set.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("shutdown grace period over; stopping running deploys");
            let _ = self.inner.kill.send(true);
            let _ = tokio::time::timeout(crate::supervise::KILL_GRACE * 2, async {
                while set.join_next().await.is_some() {}
            })
            .await;
        }
    }
}

/// The last line of deploy `id`'s log: its final state, what ended it
/// (`why`: the exit code, signal, timeout or shutdown; a success exits 0)
/// and how long it ran.
fn log_trailer(
    id: i64,
    state: DeployState,
    why: Option<&str>,
    took: std::time::Duration,
) -> String {
    format!(
        "-- redeploy: deploy #{id} {} ({}) after {:.1}s",
        state.as_str(),
        why.unwrap_or("exit code 0"),
        took.as_secs_f64()
    )
}

/// Why a deploy did not succeed.
pub struct Failure {
    /// The command's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Why, in a sentence.
    pub reason: String,
    /// How it is recorded: `failed`; `interrupted` when shutdown or a lost
    /// lease stopped it; `cancelled` when an operator did.
    pub ends_as: DeployState,
}

impl Failure {
    /// A failure without an exit code.
    pub fn failed(reason: String) -> Failure {
        Failure {
            exit_code: None,
            reason,
            ends_as: DeployState::Failed,
        }
    }
}

impl Runner {
    /// Waits until no deploy is pending or running.
    pub async fn idle(&self) {
        loop {
            let busy = {
                let queues = self.queues();
                queues.values().any(|q| !q.is_idle())
            };
            if !busy {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
