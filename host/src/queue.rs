//! The runner's queue policy, as a plain state machine with no I/O: one
//! deploy at a time per stack and, behind it, at most one pending per
//! lane, a ref (branch or tag) of a repository or the images an image
//! push's services follow ([`Lane`]; deploys that name neither, manual
//! triggers, share one), the newest of that lane winning.
//!
//! A stack's queue holds the deploy running and the ones pending. A deploy
//! handed to it ([`StackQueue::admit`]) is:
//! - cancelled at once when it is older than the one running of its lane,
//!   or names the commit already running for its lane with nothing of
//!   that lane pending;
//! - cancelled at once when it is older than the one pending of its lane,
//!   or names that deploy's commit;
//! - otherwise pending, and the deploy of its lane pending before it (if
//!   any) is superseded.
//!
//! The pending deploys run in the order they were admitted, oldest first
//! ([`StackQueue::next`]), whatever their lanes: a newer deploy of a lane
//! goes behind every deploy admitted before it, not into the place in line
//! of the one it supersedes. A service may follow several lanes (a branch
//! and tags, or one repository named two ways, as a forge and a poll name
//! it), and a deploy admitted later is the newer one: run before one of
//! another lane admitted earlier, it would be undone by it. No lane waits
//! for long: each has at most one deploy pending, so a deploy waits for at
//! most one of each other lane.
//!
//! A deploy only ever gives way to one of its own lane ([`Slot::lane`]).
//! Services of one stack may follow different branches, or the same
//! branch of different repositories: a push of `main` for `web` must not
//! cancel the pending `develop` deploy of `worker`, nor the pending `main`
//! deploy of `worker` when `worker` follows another repository's `main`,
//! nor run `worker` at `web`'s commit by taking its services.
//!
//! A deploy cancelled for another one never takes a service with it: the
//! other one must redeploy every service it names ([`covers`]). The same
//! commit running with other services is no duplicate; a deploy that
//! supersedes a pending one, or is cancelled for one pending, leaves that
//! deploy with both's services ([`union`]; the journal widens the row the
//! same way as it cancels, `Journal::cancel_queued`, but for a service the
//! deploy's commit is older for by the commit order, which this queue does
//! not know).
//!
//! "Older" is the journal's judgment, carried by deploy ids: the journal
//! admits deploys newest last ([`crate::commit_order`]), so a larger id is
//! newer. The caller ([`crate::runner::Runner`]) journals what the machine
//! decides, runs the deploys, and bounds how many stacks run at once with
//! a semaphore (`server.max_concurrent_deploys`). The journal's claim
//! applies the same rule to what every process queued
//! (`crate::journal::Journal::claim_and_start`).

/// A deploy in a stack's queue. Its id is its place in the order of
/// newness: the journal admits deploys newest last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The journal's deploy id.
    pub id: i64,
    /// The commit it deploys, when it names one.
    pub sha: Option<String>,
    /// The services it redeploys; empty means all.
    pub services: Vec<String>,
    /// Its compose profile: services are only merged, and a deploy only a
    /// duplicate of another, within one profile.
    pub profile: Option<String>,
    /// Its ref and repository: a deploy gives way only to deploys of the
    /// same lane.
    pub lane: Lane,
}

/// The deploys a deploy may give way to (be superseded by, be cancelled
/// for, take services from): those of its ref of its repository. Both are
/// compared as the senders wrote them, so the same repository named two
/// ways (a forge's `owner/name` and a polled clone URL) makes two lanes,
/// whose deploys both run, in turn; never one lane of two repositories.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lane {
    /// The ref (`refs/heads/main`), or `None` when the deploy names none.
    pub git_ref: Option<String>,
    /// The repository the ref is of, as its sender named it; for an image
    /// push, which names no ref, the images its services follow, as
    /// configured; `None` when the deploy names neither.
    pub repository: Option<String>,
}

impl Slot {
    /// Whether this deploy redeploys everything `other` would: the same
    /// profile, and every one of its services.
    fn covers(&self, other: &Slot) -> bool {
        self.profile == other.profile && covers(&self.services, &other.services)
    }

    /// Widens this deploy's services to cover `other`'s, when both are of
    /// one profile ([`union`]).
    fn take_services_of(&mut self, other: &Slot) {
        if self.profile != other.profile {
            return;
        }
        if let Some(widened) = union(&self.services, [other.services.as_slice()]) {
            self.services = widened;
        }
    }
}

/// Whether a deploy of `services` redeploys every one of `other`'s
/// (empty means all).
pub fn covers(services: &[String], other: &[String]) -> bool {
    services.is_empty() || (!other.is_empty() && other.iter().all(|s| services.contains(s)))
}

/// `services` widened to cover each of `others` (empty means all): `None`
/// when it covers them already, else `services` with the others' missing
/// ones after them, in order (empty if any of them is all).
pub fn union<'a>(
    services: &[String],
    others: impl IntoIterator<Item = &'a [String]>,
) -> Option<Vec<String>> {
    let mut widened = services.to_vec();
    let mut changed = false;
    for other in others {
        if covers(&widened, other) {
            continue;
        }
        changed = true;
        if other.is_empty() {
            widened.clear();
            break;
        }
        for service in other {
            if !widened.contains(service) {
                widened.push(service.clone());
            }
        }
    }
    changed.then_some(widened)
}

/// What [`StackQueue::admit`] decided for a deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// The queue already holds this deploy (running or pending): it was
    /// handed over twice, and nothing changes.
    Known,
    /// The deploy never runs: cancel it, because of deploy `because_of`.
    Cancel {
        /// Why, for the journal and the answer.
        reason: String,
        /// The running or pending deploy that makes it moot.
        because_of: i64,
    },
    /// The deploy is now pending.
    Pending {
        /// The deploy it replaced as pending, to be cancelled, with the
        /// reason to record.
        superseded: Option<(i64, String)>,
        /// True when no worker serves the stack yet: start one.
        start_worker: bool,
    },
}

/// A deploy admitted to its stack's queue inside the journal transaction
/// that queues it (`crate::journal::Placer`), so that what the queue
/// decides is journaled in that transaction: the decision, and the queue
/// just before and after it, to undo it should the transaction not commit
/// ([`StackQueue::undo`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The deploy's stack.
    pub stack: String,
    /// The deploy.
    pub id: i64,
    /// What the queue decided.
    pub admit: Admit,
    before: StackQueue,
    after: StackQueue,
}

/// One stack's queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StackQueue {
    running: Option<Slot>,
    /// At most one per lane ([`Slot::lane`]), in the order of their ids:
    /// the next to run first.
    pending: Vec<Slot>,
    worker_active: bool,
}

impl StackQueue {
    /// The deploy pending for `lane`, if any.
    fn pending_of(&mut self, lane: &Lane) -> Option<&mut Slot> {
        self.pending.iter_mut().find(|p| &p.lane == lane)
    }

    /// Hands a deploy (already journaled as queued) to the queue.
    pub fn admit(&mut self, slot: Slot) -> Admit {
        let running = self.running.as_ref();
        if running.is_some_and(|r| r.id == slot.id) || self.pending.iter().any(|p| p.id == slot.id)
        {
            return Admit::Known;
        }
        let lane_pending = self.pending.iter().any(|p| p.lane == slot.lane);
        if let (Some(sha), Some(running)) = (&slot.sha, running.filter(|r| r.lane == slot.lane)) {
            if running.id > slot.id {
                return Admit::Cancel {
                    reason: format!(
                        "commit {sha} is older than the deploy running (#{})",
                        running.id
                    ),
                    because_of: running.id,
                };
            }
            if running.sha.as_ref() == Some(sha) && !lane_pending && running.covers(&slot) {
                return Admit::Cancel {
                    reason: format!("commit {sha} is already deploying (#{})", running.id),
                    because_of: running.id,
                };
            }
        }
        let mut slot = slot;
        let superseded = match self.pending_of(&slot.lane) {
            // Cancelled for the pending deploy, which takes its services.
            Some(pending) if pending.sha.is_some() && pending.sha == slot.sha => {
                pending.take_services_of(&slot);
                return Admit::Cancel {
                    reason: format!("the same commit is already queued (#{})", pending.id),
                    because_of: pending.id,
                };
            }
            Some(pending) if pending.id > slot.id => {
                pending.take_services_of(&slot);
                return Admit::Cancel {
                    reason: format!("a newer commit is already queued (#{})", pending.id),
                    because_of: pending.id,
                };
            }
            Some(pending) => {
                slot.take_services_of(pending);
                let what = slot.sha.as_deref().map_or_else(
                    || format!("deploy #{}", slot.id),
                    |s| format!("commit {s} (#{})", slot.id),
                );
                Some((pending.id, format!("superseded by {what}")))
            }
            None => None,
        };
        if let Some((id, _)) = &superseded {
            self.pending.retain(|p| p.id != *id);
        }
        self.wait(slot);
        let start_worker = !self.worker_active;
        self.worker_active = true;
        Admit::Pending {
            superseded,
            start_worker,
        }
    }

    /// `slot` pending, in the order of ids.
    fn wait(&mut self, slot: Slot) {
        let at = self.pending.partition_point(|p| p.id < slot.id);
        self.pending.insert(at, slot);
    }

    /// The worker asks for the next deploy: the first pending one (the
    /// oldest), which becomes the running one. `None` when
    /// nothing is pending or the server is `stopping` (what is pending then
    /// stays queued in the journal); the worker then ends and the next
    /// admitted deploy starts a new one.
    pub fn next(&mut self, stopping: bool) -> Option<Slot> {
        let next = (!stopping && !self.pending.is_empty()).then(|| self.pending.remove(0));
        match &next {
            Some(slot) => self.running = Some(slot.clone()),
            None => self.worker_active = false,
        }
        next
    }

    /// The journal's claim started `slot`, for `taken`, the deploy the
    /// worker took ([`StackQueue::next`]): another one when a newer deploy
    /// of its lane, or an older one of another lane, was queued elsewhere
    /// (by a replica), or the taken one was cancelled. It is the running
    /// one, with the services and commit the journal gave it, and no
    /// longer pending. `taken`, of another lane, is pending again (unless
    /// its lane has a newer one pending), so that the worker asks the
    /// journal for it next: a worker that took a deploy never ends while
    /// it may still be queued.
    pub fn started(&mut self, slot: Slot, taken: Slot) {
        self.pending.retain(|p| p.id != slot.id);
        if taken.id != slot.id && taken.lane != slot.lane && self.pending_of(&taken.lane).is_none()
        {
            self.wait(taken);
        }
        self.running = Some(slot);
    }

    /// The running deploy ended (or never started: the server stopped
    /// while it waited for a free slot under the global cap).
    pub fn finished(&mut self) {
        self.running = None;
    }

    /// The worker stops without running what it took: shutdown closed the
    /// global cap while the deploy waited for it (it stays queued in the
    /// journal, and runs after the next start).
    pub fn abandon(&mut self) {
        self.running = None;
        self.worker_active = false;
    }

    /// An operator cancelled deploy `id`: pending, it is dropped (it will
    /// not run, and a later deploy of its commit is no duplicate of it);
    /// running, it is being stopped, and its commit no longer counts as
    /// deploying. It stays the running one until it ends: one at a time.
    pub fn forget(&mut self, id: i64) {
        self.pending.retain(|p| p.id != id);
        if let Some(running) = self.running.as_mut().filter(|r| r.id == id) {
            running.sha = None;
        }
    }

    /// Whether nothing runs, waits or is being served.
    pub fn is_idle(&self) -> bool {
        self.running.is_none() && self.pending.is_empty() && !self.worker_active
    }

    /// [`StackQueue::admit`] for `stack`'s deploy `slot`, keeping the
    /// queue as it was before and after, to undo it
    /// ([`StackQueue::undo`]).
    pub fn place(&mut self, stack: &str, slot: Slot) -> Placement {
        let before = self.clone();
        let id = slot.id;
        let admit = self.admit(slot);
        Placement {
            stack: stack.to_owned(),
            id,
            admit,
            before,
            after: self.clone(),
        }
    }

    /// Undoes `placement`, whose deploy the journal does not hold after
    /// all (its transaction did not commit). Unchanged since, the queue is
    /// as it was before. Changed since (a worker took the deploy, or
    /// another was admitted behind it), the deploy is dropped, pending or
    /// running (a worker that took it finds nothing to run); the deploy it
    /// was cancelled for gets back the services it had before; and the
    /// deploy it superseded is admitted again, so that it runs unless the
    /// queue now holds a newer one (whose claim then cancels it in the
    /// journal). True when the caller must start a worker for the stack:
    /// this placement was to start one, or the superseded deploy's
    /// admission is.
    pub fn undo(&mut self, placement: &Placement) -> bool {
        if *self == placement.after {
            *self = placement.before.clone();
            return false;
        }
        self.pending.retain(|p| p.id != placement.id);
        if self.running.as_ref().is_some_and(|r| r.id == placement.id) {
            self.running = None;
        }
        let (superseded, start_worker) = match &placement.admit {
            Admit::Pending {
                superseded,
                start_worker,
            } => (superseded, *start_worker),
            Admit::Cancel { because_of, .. } => {
                let find = |q: &StackQueue| {
                    q.running
                        .iter()
                        .chain(&q.pending)
                        .find(|slot| slot.id == *because_of)
                        .map(|slot| slot.services.clone())
                };
                let widened = self
                    .running
                    .iter_mut()
                    .chain(&mut self.pending)
                    .find(|slot| slot.id == *because_of);
                if let (Some(slot), Some(services)) = (widened, find(&placement.before)) {
                    slot.services = services;
                }
                return false;
            }
            Admit::Known => return false,
        };
        let superseded = superseded.as_ref().and_then(|(id, _)| {
            placement
                .before
                .pending
                .iter()
                .find(|slot| slot.id == *id)
                .cloned()
        });
        let again = superseded.map(|slot| self.admit(slot));
        start_worker
            || matches!(
                again,
                Some(Admit::Pending {
                    start_worker: true,
                    ..
                })
            )
    }
}

#[cfg(test)]
mod tests;
