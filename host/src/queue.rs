//! The runner's queue policy, as a plain state machine with no I/O: one
//! deploy at a time per stack and, behind it, at most one pending per
//! lane, a ref (branch or tag) of a repository ([`Lane`]; deploys that name
//! none, manual triggers and image pushes, share one), the newest of that
//! lane winning.
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
//! The pending deploys run in the order their lanes began to wait
//! ([`StackQueue::next`]): a newer deploy of a lane takes the place in
//! line of the one it supersedes, so a ref pushed again and again neither
//! keeps another lane's deploy from running nor is kept from running by
//! the others.
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
//! same way as it cancels, `Journal::cancel_queued`).
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
    /// The repository the ref is of, as its sender named it, or `None`
    /// when the deploy names none.
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
    /// At most one per lane ([`Slot::lane`]), in the order their lanes
    /// began to wait: the next to run first.
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
        match superseded
            .as_ref()
            .and_then(|(id, _)| self.pending.iter().position(|p| p.id == *id))
        {
            // In the superseded one's place in line.
            Some(at) => self.pending[at] = slot,
            None => self.pending.push(slot),
        }
        let start_worker = !self.worker_active;
        self.worker_active = true;
        Admit::Pending {
            superseded,
            start_worker,
        }
    }

    /// The worker asks for the next deploy: the first pending one (whose
    /// lane waits longest), which becomes the running one. `None` when
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

    /// The journal's claim started `slot`, for the deploy the worker took
    /// ([`StackQueue::next`]): another one when a newer deploy of its lane
    /// was queued elsewhere (by a replica) or the taken one was cancelled.
    /// It is the running one, with the services and commit the journal
    /// gave it, and no longer pending.
    pub fn started(&mut self, slot: Slot) {
        self.pending.retain(|p| p.id != slot.id);
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
mod tests {
    use super::*;

    fn slot(id: i64, sha: Option<&str>) -> Slot {
        Slot {
            id,
            sha: sha.map(str::to_string),
            services: vec![],
            profile: None,
            lane: Lane::default(),
        }
    }

    fn of(id: i64, sha: Option<&str>, services: &[&str]) -> Slot {
        Slot {
            services: services.iter().map(|s| s.to_string()).collect(),
            ..slot(id, sha)
        }
    }

    fn names(services: &[&str]) -> Vec<String> {
        services.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_union_covers_each_service_and_all_covers_everything() {
        let (a, b, ab) = (names(&["a"]), names(&["b"]), names(&["a", "b"]));
        assert!(covers(&[], &a));
        assert!(covers(&ab, &a));
        assert!(!covers(&a, &b));
        assert!(!covers(&a, &[]), "some services never cover all");
        assert_eq!(union(&a, [b.as_slice()]), Some(ab.clone()));
        assert_eq!(union(&ab, [a.as_slice(), b.as_slice()]), None);
        assert_eq!(union(&a, [b.as_slice(), &[]]), Some(vec![]));
        assert_eq!(union(&[], [a.as_slice()]), None);
    }

    #[test]
    fn a_deploy_superseded_or_cancelled_for_another_leaves_it_its_services() {
        let mut q = StackQueue::default();
        assert_eq!(q.admit(of(1, Some("x"), &["a"])), pending(None, true));
        assert_eq!(q.next(false), Some(of(1, Some("x"), &["a"])));
        // The commit running, other services: no duplicate.
        assert_eq!(q.admit(of(2, Some("x"), &["b"])), pending(None, false));
        // Superseding the pending deploy takes its services.
        assert_eq!(
            q.admit(of(3, None, &["c"])),
            pending(Some((2, "superseded by deploy #3")), false)
        );
        // Cancelled for the pending one (the same commit), which takes its
        // services.
        assert_eq!(
            q.admit(of(5, Some("y"), &["d"])),
            pending(Some((3, "superseded by commit y (#5)")), false)
        );
        assert_eq!(
            q.admit(of(4, Some("y"), &["e"])),
            cancel("the same commit is already queued (#5)", 5)
        );
        q.finished();
        assert_eq!(q.next(false), Some(of(5, Some("y"), &["d", "c", "b", "e"])));
        // The commit running with the same services (or fewer): a
        // duplicate.
        assert_eq!(
            q.admit(of(6, Some("y"), &["b"])),
            cancel("commit y is already deploying (#5)", 5)
        );
    }

    fn pending(superseded: Option<(i64, &str)>, start_worker: bool) -> Admit {
        Admit::Pending {
            superseded: superseded.map(|(id, r)| (id, r.to_string())),
            start_worker,
        }
    }

    fn cancel(reason: &str, because_of: i64) -> Admit {
        Admit::Cancel {
            reason: reason.to_string(),
            because_of,
        }
    }

    fn on(git_ref: &str, slot: Slot) -> Slot {
        Slot {
            lane: Lane {
                git_ref: Some(git_ref.to_string()),
                repository: None,
            },
            ..slot
        }
    }

    fn of_repository(repository: &str, slot: Slot) -> Slot {
        Slot {
            lane: Lane {
                repository: Some(repository.to_string()),
                ..slot.lane
            },
            ..slot
        }
    }

    #[test]
    fn a_deploy_gives_way_only_to_deploys_of_its_own_ref_and_refs_run_oldest_first() {
        let (main, develop) = ("refs/heads/main", "refs/heads/develop");
        let mut q = StackQueue::default();
        assert_eq!(
            q.admit(on(main, of(1, Some("m1"), &["web"]))),
            pending(None, true)
        );
        assert_eq!(q.next(false), Some(on(main, of(1, Some("m1"), &["web"]))));
        // develop's deploy of worker waits behind main's running one: older
        // or not, another ref's deploy is no reason to cancel it.
        let worker = on(develop, of(2, Some("d1"), &["worker"]));
        assert_eq!(q.admit(worker.clone()), pending(None, false));
        // A newer push of main supersedes nothing of develop's, and takes
        // none of its services.
        assert_eq!(
            q.admit(on(main, of(3, Some("m2"), &["web"]))),
            pending(None, false)
        );
        assert_eq!(
            q.admit(on(main, of(4, Some("m3"), &["web"]))),
            pending(Some((3, "superseded by commit m3 (#4)")), false)
        );
        q.finished();
        assert_eq!(q.next(false), Some(worker), "the ref waiting longest first");
        assert_eq!(
            q.admit(on(main, of(5, Some("m3"), &["web"]))),
            cancel("the same commit is already queued (#4)", 4)
        );
        // The commit running on develop, pushed to develop again: a
        // duplicate.
        assert_eq!(
            q.admit(on(develop, of(6, Some("d1"), &["worker"]))),
            cancel("commit d1 is already deploying (#2)", 2)
        );
        q.finished();
        assert_eq!(q.next(false), Some(on(main, of(4, Some("m3"), &["web"]))));
        // Deploys naming no ref share a lane of their own.
        assert_eq!(q.admit(of(7, None, &["proxy"])), pending(None, false));
        assert_eq!(
            q.admit(of(8, None, &["web"])),
            pending(Some((7, "superseded by deploy #8")), false)
        );
        assert_eq!(
            q.admit(on(develop, of(9, Some("d2"), &["worker"]))),
            pending(None, false)
        );
        q.finished();
        assert_eq!(q.next(false), Some(of(8, None, &["web", "proxy"])));
        q.finished();
        assert_eq!(
            q.next(false),
            Some(on(develop, of(9, Some("d2"), &["worker"])))
        );
        q.finished();
        assert_eq!(q.next(false), None);
        assert!(q.is_idle());
    }

    #[test]
    fn a_ref_pushed_again_and_again_keeps_its_place_in_line() {
        let (main, develop) = ("refs/heads/main", "refs/heads/develop");
        let mut q = StackQueue::default();
        q.admit(on(develop, slot(1, Some("d0"))));
        q.next(false);
        q.admit(on(main, slot(2, Some("m1"))));
        q.admit(on(develop, slot(3, Some("d1"))));
        for n in 4..10 {
            let sha = format!("m{n}");
            assert!(matches!(
                q.admit(on(main, slot(n, Some(&sha)))),
                Admit::Pending {
                    superseded: Some(_),
                    ..
                }
            ));
        }
        q.finished();
        assert_eq!(
            q.next(false),
            Some(on(main, slot(9, Some("m9")))),
            "main waited first"
        );
        q.admit(on(main, slot(10, Some("m10"))));
        q.finished();
        assert_eq!(q.next(false), Some(on(develop, slot(3, Some("d1")))));
        q.finished();
        assert_eq!(q.next(false), Some(on(main, slot(10, Some("m10")))));
    }

    #[test]
    fn a_placement_undone_with_several_refs_pending_restores_its_own_ref_alone() {
        let (main, develop) = ("refs/heads/main", "refs/heads/develop");
        let mut q = StackQueue::default();
        q.admit(on(main, slot(1, Some("m1"))));
        q.next(false);
        q.admit(on(develop, slot(2, Some("d1"))));
        q.admit(on(main, slot(3, Some("m2"))));
        let before = q.clone();
        let placed = q.place("s", on(main, slot(4, Some("m3"))));
        assert_eq!(
            placed.admit,
            pending(Some((3, "superseded by commit m3 (#4)")), false)
        );
        assert!(!q.undo(&placed));
        assert_eq!(q, before, "undone at once: as it was");
        // Undone after the worker took develop's: main's superseded deploy
        // is pending again, in line after develop's.
        let placed = q.place("s", on(main, slot(5, Some("m4"))));
        q.finished();
        assert_eq!(q.next(false), Some(on(develop, slot(2, Some("d1")))));
        assert!(!q.undo(&placed));
        q.finished();
        assert_eq!(q.next(false), Some(on(main, slot(3, Some("m2")))));
        q.finished();
        assert_eq!(q.next(false), None);
    }

    #[test]
    fn what_the_claim_started_is_the_running_deploy() {
        let main = "refs/heads/main";
        let mut q = StackQueue::default();
        q.admit(on(main, of(1, Some("a"), &["web"])));
        assert_eq!(q.next(false).map(|s| s.id), Some(1));
        // A replica queued #2, newer, which the claim started instead.
        q.admit(on("refs/heads/develop", of(3, Some("d"), &["worker"])));
        q.started(on(main, of(2, Some("b"), &["web"])));
        // The commit it runs with other services is no duplicate of it.
        assert_eq!(
            q.admit(on(main, of(4, Some("b"), &["cron"]))),
            pending(None, false)
        );
        assert_eq!(
            q.admit(on(main, of(5, Some("b"), &["web"]))),
            cancel("the same commit is already queued (#4)", 4)
        );
        q.finished();
        assert_eq!(q.next(false).map(|s| s.id), Some(3));
    }

    #[test]
    fn an_older_deploy_of_a_ref_than_its_running_one_is_cancelled_not_of_another_ref() {
        let mut q = StackQueue::default();
        q.admit(on("refs/heads/main", slot(5, Some("new"))));
        q.next(false);
        assert_eq!(
            q.admit(on("refs/heads/main", slot(4, Some("old")))),
            cancel("commit old is older than the deploy running (#5)", 5)
        );
        assert_eq!(
            q.admit(on("refs/tags/v1", slot(3, Some("old")))),
            pending(None, false)
        );
    }

    #[test]
    fn the_same_branch_of_two_repositories_makes_two_lanes() {
        let main = "refs/heads/main";
        let web = |id, sha| of_repository("acme/shop-web", on(main, of(id, Some(sha), &["web"])));
        let worker =
            |id, sha| of_repository("acme/shop-worker", on(main, of(id, Some(sha), &["worker"])));
        let mut q = StackQueue::default();
        q.admit(web(1, "w1"));
        q.next(false);
        // The worker's push waits; web's next push neither supersedes it
        // nor takes its service; web's push after supersedes web's own.
        assert_eq!(q.admit(worker(2, "k1")), pending(None, false));
        assert_eq!(q.admit(web(3, "w2")), pending(None, false));
        assert_eq!(
            q.admit(web(4, "w3")),
            pending(Some((3, "superseded by commit w3 (#4)")), false)
        );
        // The same commit running in web's lane is no duplicate for the
        // worker's lane, and an older worker deploy is only older than the
        // worker's.
        assert_eq!(
            q.admit(worker(5, "w1")),
            pending(Some((2, "superseded by commit w1 (#5)")), false)
        );
        q.finished();
        assert_eq!(
            q.next(false),
            Some(worker(5, "w1")),
            "the lane waiting longest"
        );
        q.finished();
        assert_eq!(q.next(false), Some(web(4, "w3")), "web's services alone");
    }

    #[test]
    fn the_first_deploy_is_pending_and_starts_a_worker() {
        let mut q = StackQueue::default();
        assert_eq!(q.admit(slot(1, Some("a"))), pending(None, true));
        assert_eq!(q.next(false), Some(slot(1, Some("a"))));
        assert_eq!(q.next(false), None, "nothing else is pending");
        assert!(!q.worker_active, "the worker ends when nothing is pending");
        q.finished();
        assert!(q.is_idle());
    }

    #[test]
    fn a_newer_deploy_supersedes_the_pending_one_without_a_second_worker() {
        let mut q = StackQueue::default();
        q.admit(slot(1, Some("a")));
        assert_eq!(q.next(false), Some(slot(1, Some("a"))));
        assert_eq!(q.admit(slot(2, Some("b"))), pending(None, false));
        assert_eq!(
            q.admit(slot(3, Some("c"))),
            pending(Some((2, "superseded by commit c (#3)")), false)
        );
        assert_eq!(
            q.admit(slot(4, None)),
            pending(Some((3, "superseded by deploy #4")), false)
        );
        q.finished();
        assert_eq!(q.next(false), Some(slot(4, None)), "the newest runs next");
    }

    #[test]
    fn a_deploy_handed_over_twice_changes_nothing() {
        let mut q = StackQueue::default();
        assert_eq!(q.admit(slot(1, Some("a"))), pending(None, true));
        assert_eq!(q.admit(slot(1, Some("a"))), Admit::Known, "pending twice");
        assert_eq!(q.next(false), Some(slot(1, Some("a"))));
        assert_eq!(q.admit(slot(1, Some("a"))), Admit::Known, "running twice");
        assert_eq!(q.admit(slot(2, Some("b"))), pending(None, false));
        assert_eq!(q.admit(slot(2, Some("b"))), Admit::Known);
        assert_eq!(q.admit(slot(1, Some("a"))), Admit::Known, "still running");
    }

    #[test]
    fn an_older_deploy_than_the_running_one_is_cancelled() {
        let mut q = StackQueue::default();
        q.admit(slot(5, Some("new")));
        q.next(false);
        assert_eq!(
            q.admit(slot(4, Some("old"))),
            cancel("commit old is older than the deploy running (#5)", 5)
        );
        assert_eq!(q.next(false), None, "the cancelled deploy never runs");
    }

    #[test]
    fn the_commit_already_running_is_not_queued_again_unless_something_is_pending() {
        let mut q = StackQueue::default();
        q.admit(slot(1, Some("a")));
        q.next(false);
        assert_eq!(
            q.admit(slot(2, Some("a"))),
            cancel("commit a is already deploying (#1)", 1)
        );
        // With b pending, a second deploy of a is newer than b: a rollback
        // to a after b must run, so it supersedes b.
        q.admit(slot(3, Some("b")));
        assert_eq!(
            q.admit(slot(4, Some("a"))),
            pending(Some((3, "superseded by commit a (#4)")), false)
        );
    }

    #[test]
    fn an_older_or_identical_deploy_than_the_pending_one_is_cancelled() {
        let mut q = StackQueue::default();
        q.admit(slot(1, Some("a")));
        q.next(false);
        q.admit(slot(3, Some("c")));
        assert_eq!(
            q.admit(slot(2, Some("b"))),
            cancel("a newer commit is already queued (#3)", 3)
        );
        assert_eq!(
            q.admit(slot(4, Some("c"))),
            cancel("the same commit is already queued (#3)", 3)
        );
        q.finished();
        assert_eq!(q.next(false), Some(slot(3, Some("c"))));
    }

    #[test]
    fn deploys_without_a_commit_never_count_as_the_same_commit() {
        let mut q = StackQueue::default();
        q.admit(slot(1, None));
        q.next(false);
        assert_eq!(q.admit(slot(2, None)), pending(None, false));
        assert_eq!(
            q.admit(slot(3, None)),
            pending(Some((2, "superseded by deploy #3")), false)
        );
    }

    #[test]
    fn stopping_leaves_the_pending_deploy_queued_and_ends_the_worker() {
        let mut q = StackQueue::default();
        q.admit(slot(1, Some("a")));
        assert_eq!(q.next(true), None);
        assert!(!q.worker_active);
        // It is still pending: a deploy admitted after starts a worker again.
        assert_eq!(
            q.admit(slot(2, Some("b"))),
            pending(Some((1, "superseded by commit b (#2)")), true)
        );
    }

    #[test]
    fn an_abandoned_deploy_frees_the_stack_for_a_new_worker() {
        let mut q = StackQueue::default();
        q.admit(slot(1, Some("a")));
        assert_eq!(q.next(false), Some(slot(1, Some("a"))));
        q.abandon();
        assert!(q.is_idle());
        assert_eq!(q.admit(slot(2, Some("b"))), pending(None, true));
    }

    #[test]
    fn a_placement_undone_at_once_leaves_the_queue_as_it_was() {
        let mut q = StackQueue::default();
        q.admit(slot(1, Some("a")));
        q.next(false);
        q.admit(slot(2, Some("b")));
        let before = q.clone();
        let superseding = q.place("s", slot(3, Some("c")));
        assert_eq!(
            superseding.admit,
            pending(Some((2, "superseded by commit c (#3)")), false)
        );
        assert!(!q.undo(&superseding), "the worker runs already");
        assert_eq!(q, before);
        // A duplicate of the pending commit widens its services: undone too.
        let duplicate = q.place("s", of(4, Some("b"), &["x"]));
        assert_eq!(
            duplicate.admit,
            cancel("the same commit is already queued (#2)", 2)
        );
        assert!(!q.undo(&duplicate));
        assert_eq!(q, before);
        // The first deploy of an idle stack starts no worker once undone.
        let mut idle = StackQueue::default();
        let first = idle.place("s", slot(1, Some("a")));
        assert!(!idle.undo(&first));
        assert!(idle.is_idle());
    }

    #[test]
    fn a_placement_undone_after_the_queue_moved_keeps_the_superseded_deploy() {
        // The worker took the deploy before its transaction failed: it is
        // forgotten, and the one it superseded is pending again.
        let mut q = StackQueue::default();
        q.admit(slot(1, Some("a")));
        q.next(false);
        q.admit(slot(2, Some("b")));
        let placed = q.place("s", slot(3, Some("c")));
        q.finished();
        assert_eq!(q.next(false), Some(slot(3, Some("c"))));
        assert!(!q.undo(&placed), "the worker is still serving the stack");
        q.finished();
        assert_eq!(q.next(false), Some(slot(2, Some("b"))));
        // A placement that was to start the stack's worker, undone after
        // another deploy was admitted behind it (which started none): the
        // caller starts the worker.
        let mut q = StackQueue::default();
        let first = q.place("s", slot(1, Some("a")));
        assert_eq!(first.admit, pending(None, true));
        assert_eq!(
            q.admit(slot(2, Some("b"))),
            pending(Some((1, "superseded by commit b (#2)")), false)
        );
        assert!(q.undo(&first));
        assert_eq!(q.next(false), Some(slot(2, Some("b"))));
        // A superseded deploy admitted again to a queue whose worker ended
        // starts one.
        let mut q = StackQueue::default();
        q.admit(slot(1, Some("a")));
        let placed = q.place("s", slot(2, Some("b")));
        assert_eq!(q.next(false), Some(slot(2, Some("b"))));
        q.finished();
        assert_eq!(q.next(false), None);
        assert!(q.undo(&placed));
        assert_eq!(q.next(false), Some(slot(1, Some("a"))));
    }

    #[test]
    fn a_duplicate_undone_after_the_queue_moved_takes_back_its_services() {
        let mut q = StackQueue::default();
        q.admit(slot(1, Some("a")));
        q.next(false);
        q.admit(of(2, Some("b"), &["web"]));
        let duplicate = q.place("s", of(3, Some("b"), &["cron"]));
        assert_eq!(
            duplicate.admit,
            cancel("the same commit is already queued (#2)", 2)
        );
        // The worker takes #2, widened, before the transaction fails.
        q.finished();
        assert_eq!(q.next(false), Some(of(2, Some("b"), &["web", "cron"])));
        assert!(!q.undo(&duplicate));
        // #2 no longer counts as deploying "cron": that commit again, for
        // it, is no duplicate.
        assert_eq!(q.admit(of(4, Some("b"), &["cron"])), pending(None, false));
    }

    #[test]
    fn a_cancelled_deploy_is_no_reason_to_cancel_its_commit_again() {
        let mut q = StackQueue::default();
        assert_eq!(q.admit(slot(1, Some("a"))), pending(None, true));
        assert_eq!(q.next(false), Some(slot(1, Some("a"))));
        assert_eq!(q.admit(slot(2, Some("b"))), pending(None, false));
        // The pending one cancelled: the same commit queued again waits.
        q.forget(2);
        assert_eq!(q.admit(slot(3, Some("b"))), pending(None, false));
        // The running one cancelled: its commit again is not "deploying".
        q.forget(3);
        q.forget(1);
        assert_eq!(q.admit(slot(4, Some("a"))), pending(None, false));
        assert_eq!(q.next(false), Some(slot(4, Some("a"))));
    }
}
