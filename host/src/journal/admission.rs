//! The journal's side of admitting a deploy (schema 3): which commits each
//! stack has seen, so an older commit never deploys after a newer one even
//! across restarts, and the replay keys of deliveries that carry no
//! delivery id, so a captured request does not deploy again and again.
//!
//! [`Journal::admit_deploy`] checks both and inserts the deploy in one
//! transaction, so two deliveries racing each other are judged one after
//! the other, and a deploy is never inserted without its replay key (or the
//! key kept without its deploy), nor without the GitHub deployment request
//! it reports to (a stack with `wait_for_event = false`), so a deploy that
//! runs is always reported.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

use super::batch::RowsInOrder;
use super::claim::{cancel_for, cancel_one, Superseded};
use super::commits::{follows_lane, head, known_commits, lane_start, lane_waiting, older_for};
use super::github::{insert_request_in, DeploymentRequestClaim};
use super::images::ImageClaim;
use super::sql::{args, Commit, DbError, Sql, ToValue, Value};
use super::{insert_deploy_in, Backend, Inserted, Journal, JournalError};
use super::{select_deploy, DeployRecord, DeployState, NewDeploy, TransitionDetail};
use crate::commit_order::{self, Candidate, Head, Scopes, Verdict};
use crate::queue::{Admit, Placement};

/// A delivery's replay key, to claim with its deploy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayClaim {
    /// The key: hex SHA-256 of what identifies the delivery.
    pub key: String,
    /// Now, in milliseconds since the epoch (keys expired by then are
    /// pruned).
    pub now_ms: i64,
    /// When the key stops deduplicating.
    pub expires_at_ms: i64,
}

impl ReplayClaim {
    /// A claim of `key` at `now_ms` that deduplicates for `window`.
    pub fn new(key: String, now_ms: i64, window: std::time::Duration) -> ReplayClaim {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        ReplayClaim {
            key,
            now_ms,
            expires_at_ms: now_ms.saturating_add(window_ms),
        }
    }
}

/// The commit a deploy deploys and what its push says about order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitClaim {
    /// The commit.
    pub sha: String,
    /// The push's `before`, when the sender gives it.
    pub before: Option<String>,
    /// The sender says the push was forced.
    pub forced: bool,
    /// The sender reports forced pushes at all.
    pub sender_reports_forced: bool,
    /// An operator asked for this commit (a redeploy from `history`).
    pub requested: bool,
    /// A push brought the commit (a forge's, git's, or a poll's): the
    /// stack's head commit arriving again for the same ref, services and
    /// profile is the same push seen again (under another delivery id, by a
    /// second webhook, by the poll of a stack that is also pushed to, or
    /// replayed), and deploys nothing ([`Admitted::SameCommit`]).
    pub once: bool,
}

/// What [`Journal::admit_deploy`] checks besides the delivery id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Deduplicate on this key (deliveries without a delivery id).
    pub replay: Option<ReplayClaim>,
    /// Refuse the deploy if this commit is older than the stack's head.
    pub commit: Option<CommitClaim>,
    /// Record this GitHub deployment request for the deploy, when it is
    /// new and not cancelled as older ([`Admitted::Requested`]).
    pub deployment_request: Option<DeploymentRequestClaim>,
    /// Deploy this image digest once ([`ImageClaim`]).
    pub image: Option<ImageClaim>,
}

/// The outcome of [`Journal::admit_deploy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// A new queued deploy, or the existing deploy of the same delivery id.
    /// A new deploy whose admission carried a deployment request is
    /// [`Admitted::Requested`] instead.
    Inserted(Inserted),
    /// A new queued deploy and the GitHub deployment request it reports to:
    /// a new request, or the one its (stack, delivery id) recorded before
    /// ([`Inserted::Duplicate`], which nothing was added to).
    Requested {
        /// The new deploy.
        deploy_id: i64,
        /// Its deployment request.
        request: Inserted,
    },
    /// The replay key was claimed at `first_seen_ms` (by deploy
    /// `deploy_id`); nothing was inserted.
    Replayed {
        /// When the same delivery was first accepted.
        first_seen_ms: i64,
        /// The deploy it made.
        deploy_id: Option<i64>,
    },
    /// The commit is already the stack's head (deploy `deploy_id`) and
    /// the claim was [`CommitClaim::once`], or the image digest is already
    /// the image's claim ([`ImageClaim`]): nothing was inserted.
    SameCommit {
        /// The head's deploy.
        deploy_id: i64,
    },
    /// The commit is older than one the stack already deployed or
    /// superseded: the deploy was recorded and `cancelled` at once.
    Older {
        /// The cancelled deploy.
        deploy_id: i64,
        /// Why.
        reason: String,
    },
}

/// The runner's queue policy ([`crate::queue`]), asked inside the
/// transaction of [`Journal::admit_deploy_to_run`] (on SQLite only) what
/// becomes of the deploy it just queued, so that a cancellation the policy
/// decides (the deploy itself, a duplicate of one pending or running; or
/// the deploy pending before it, which it supersedes) is journaled with the
/// admission, in one commit that waits for the disk once, rather than in a
/// second transaction of its own after it. It runs with the journal's
/// write lock held: it may lock the runner's queues, which no code holds
/// while it calls the journal, and nothing else.
pub trait Placer: Send + Sync {
    /// Admits `record` (just queued) to its stack's queue, and returns
    /// what the queue decided; `None` when this placer does not place it
    /// here (the caller hands it over after the commit, as any deploy:
    /// [`crate::runner::Runner::enqueue`]), and then the queue is as it
    /// was. `cancelled(id)`: whether deploy `id` is no reason to cancel
    /// another for, as the transaction sees the journal: cancelled, being
    /// cancelled, or not there at all ([`Journal::gone_or_cancelling`]).
    fn place(
        &self,
        record: &DeployRecord,
        cancelled: &mut dyn FnMut(i64) -> bool,
    ) -> Option<Placement>;

    /// Undoes `placement`, whose transaction did not commit
    /// ([`crate::queue::StackQueue::undo`]); called with the journal's
    /// connection still held, maybe while a panic unwinds.
    fn unplace(&self, placement: Placement);
}

/// What [`Journal::admit_deploy_to_run`] returns.
pub type AdmissionOutcome = Result<(Admitted, Option<ToRun>), JournalError>;

/// An admission waiting to be written with others
/// ([`Journal::admit_deploy_to_run`] on SQLite).
pub(super) struct AdmissionRow {
    pub(super) deploy: NewDeploy,
    pub(super) admission: Admission,
    pub(super) placer: Option<Arc<dyn Placer>>,
}

/// A deploy [`Journal::admit_deploy_to_run`] queued, for the runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToRun {
    /// The deploy as the admission's transaction left it (before what
    /// [`ToRun::placed`] cancelled).
    pub record: DeployRecord,
    /// What its stack's queue decided in that transaction, if a
    /// [`Placer`] placed it.
    pub placed: Option<Placed>,
}

/// What a [`Placer`] decided in an admission's transaction, and what the
/// journal did of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The queue's decision ([`Admit::Cancel`]: the deploy is journaled
    /// `cancelled`).
    pub placement: Placement,
    /// With [`Admit::Pending`], whether the deploy it superseded was still
    /// queued, and is now journaled `cancelled` (an operator may have
    /// cancelled it first).
    pub superseded_cancelled: bool,
}

impl Journal {
    /// Inserts a queued deploy unless its delivery was seen before (same
    /// delivery id, or same replay key within its window) or its commit is
    /// older than one the stack already deployed or superseded
    /// ([`commit_order::judge_each`]); an older commit is recorded as a deploy
    /// `cancelled` at once with the reason, so the journal says why it did
    /// not run. A queued deploy is recorded with the admission's deployment
    /// request, if any, and its outbox rows. One transaction: on an error
    /// nothing is recorded.
    pub fn admit_deploy(
        &self,
        d: &NewDeploy,
        admission: &Admission,
    ) -> Result<Admitted, JournalError> {
        self.write("admit deploy", |sql| admit(sql, d, admission))
    }

    /// [`Journal::admit_deploy`], and the deploy it queued as the journal
    /// then holds it, read in the same transaction: what the runner is
    /// handed. `None` with anything but a new queued deploy
    /// ([`Admitted::Inserted`] with [`Inserted::New`], or
    /// [`Admitted::Requested`]). On SQLite, reading it back afterwards
    /// would take the journal's one connection once more per deploy, behind
    /// every writer waiting for it; on PostgreSQL the read is one more round
    /// trip inside the write lock instead of one on a pooled connection
    /// after it (the deploy path measured the same either way: BENCHMARKS.md,
    /// part 5, fourteenth pass).
    ///
    /// With a `placer`, on SQLite, the deploy is also placed in its stack's
    /// queue in that transaction, and what the queue cancels is journaled
    /// there ([`Placer`]); should the transaction not commit, the placement
    /// is undone before the journal's connection is released. On
    /// PostgreSQL nothing is placed.
    ///
    /// On SQLite the admissions of concurrent callers are written together
    /// ([`super::batch`]), in order
    /// ([`Journal::admit_rows`]): the transaction, its log frames and its
    /// wait for the disk are shared, and each admission is judged as if it
    /// had been written alone, after the ones before it. On PostgreSQL each
    /// is a transaction of its own, on the pool's connections side by side.
    pub fn admit_deploy_to_run(
        &self,
        d: &NewDeploy,
        admission: &Admission,
        placer: Option<Arc<dyn Placer>>,
    ) -> AdmissionOutcome {
        // Placed only where a reader of the journal shares the writer's one
        // connection, so that a worker that takes the deploy from its queue
        // before the commit cannot look for it in the journal until the
        // transaction has ended, and then finds it queued (or, if it rolled
        // back, absent, its placement undone before anything else was
        // written, or another stack's deploy given its id since, which it
        // leaves: `Runner::run_one`).
        if !matches!(self.backend, Backend::Sqlite(_)) {
            return self.write("admit deploy", |sql| {
                admit_to_run(sql, d, admission, None, &|_| {})
            });
        }
        let row = AdmissionRow {
            deploy: d.clone(),
            admission: admission.clone(),
            placer,
        };
        // A caller may wait here for another's batch, and then for the
        // disk: off an async worker thread, as any durable write.
        super::sqlite::off_worker(|| {
            self.admissions.write(
                row,
                |rows| self.admit_rows(&rows),
                || {
                    Err(JournalError::database(
                        &self.location,
                        "admit deploy",
                        DbError::Unavailable(
                            "admitting a batch of deploys failed unexpectedly".to_owned(),
                        ),
                    ))
                },
            )
        })
    }

    /// Admits `rows` in one transaction that waits for the disk once, in
    /// order: each sees the journal, and its stack's queue, as the rows
    /// before it left them, as if admitted alone one after the other. A
    /// row whose admission fails is refused alone ([`Journal::write_rows`]):
    /// every placement made in its transaction is undone, the latest first,
    /// before the journal's connection is released. One outcome per row,
    /// in order.
    pub(super) fn admit_rows(&self, rows: &[AdmissionRow]) -> Vec<AdmissionOutcome> {
        self.write_rows("admit deploy", rows, &|rows| self.admit_together(rows))
    }

    /// [`Journal::admit_rows`]'s transaction: every row or none.
    fn admit_together(
        &self,
        rows: RowsInOrder<'_, AdmissionRow>,
    ) -> Result<Vec<(Admitted, Option<ToRun>)>, JournalError> {
        // Every placement, kept as soon as it is made, with its placer: to
        // undo should the transaction not commit (or a panic unwind it).
        let placed: Mutex<Vec<(Arc<dyn Placer>, Placement)>> = Mutex::new(Vec::new());
        let placed_now = || placed.lock().unwrap_or_else(|e| e.into_inner());
        // Each placement undone even if another's undo panics (a panic
        // out of the undo while one unwinds would abort the process).
        let undo = || {
            let undone = std::mem::take(&mut *placed_now());
            for (placer, placement) in undone.into_iter().rev() {
                let id = placement.id;
                if catch_unwind(AssertUnwindSafe(|| placer.unplace(placement))).is_err() {
                    tracing::error!(
                        deploy = id,
                        "journal: undoing a deploy's place in its queue failed unexpectedly"
                    );
                }
            }
        };
        self.commit_or_undo(
            Commit::Exclusive,
            "admit deploy",
            |sql| {
                rows.each(|row| {
                    let keep = |placement| {
                        if let Some(placer) = &row.placer {
                            placed_now().push((placer.clone(), placement));
                        }
                    };
                    admit_to_run(
                        sql,
                        &row.deploy,
                        &row.admission,
                        row.placer.as_deref(),
                        &keep,
                    )
                })
            },
            undo,
        )
    }

    /// Whether `d`'s delivery was admitted before (its delivery id has a
    /// deploy of the stack, or its replay key is claimed and unexpired), so
    /// [`Journal::admit_deploy`] would answer it as a duplicate: read
    /// before asking a registry about it (`dispatch/image.rs`). Only a
    /// hint: the admission decides.
    pub fn admitted_before(
        &self,
        d: &NewDeploy,
        admission: &Admission,
    ) -> Result<bool, JournalError> {
        self.read("read whether a delivery was admitted", |sql| {
            if let Some(delivery) = &d.delivery_id {
                let seen = sql.query_opt(
                    "SELECT 1 FROM deploys WHERE stack = ?1 AND delivery_id = ?2",
                    args![d.stack, delivery],
                )?;
                if seen.is_some() {
                    return Ok(true);
                }
            }
            match &admission.replay {
                Some(claim) => Ok(sql
                    .query_opt(
                        "SELECT 1 FROM replay_keys WHERE key = ?1 AND expires_at_ms > ?2",
                        args![claim.key, claim.now_ms],
                    )?
                    .is_some()),
                None => Ok(false),
            }
        })
    }

    /// The stack's head commit (of any of its services), if it ever
    /// deployed one.
    pub fn head_commit(&self, stack: &str) -> Result<Option<Head>, JournalError> {
        self.read("read head commit", |sql| head(sql, stack))
    }
}

/// [`admit`], then, for a new queued deploy, the deploy as the journal
/// holds it and, with a `placer`, its placement ([`place`]).
fn admit_to_run(
    sql: &mut dyn Sql,
    d: &NewDeploy,
    admission: &Admission,
    placer: Option<&dyn Placer>,
    keep: &dyn Fn(Placement),
) -> Result<(Admitted, Option<ToRun>), DbError> {
    let admitted = admit(sql, d, admission)?;
    let record = match admitted {
        Admitted::Inserted(Inserted::New(id)) | Admitted::Requested { deploy_id: id, .. } => {
            select_deploy(sql, id)?
        }
        _ => None,
    };
    let Some(record) = record else {
        return Ok((admitted, None));
    };
    let placed = match placer {
        Some(placer) => place(sql, placer, &record, keep)?,
        None => None,
    };
    Ok((admitted, Some(ToRun { record, placed })))
}

/// Asks `placer` to place `record` (just queued) in its stack's queue, and
/// journals what the queue cancels, in the caller's transaction; the
/// placement is handed to `keep` as soon as it is made, for the caller to
/// undo should the transaction not commit.
fn place(
    sql: &mut dyn Sql,
    placer: &dyn Placer,
    record: &DeployRecord,
    keep: &dyn Fn(Placement),
) -> Result<Option<Placed>, DbError> {
    let mut failed = None;
    let placement = placer.place(record, &mut |id| {
        // A read that fails counts as cancelled: the queue then places
        // nothing, and the error fails the transaction.
        super::cancel::gone_or_cancelling(sql, id).unwrap_or_else(|e| {
            failed.get_or_insert(e);
            true
        })
    });
    // Kept first, so that whatever fails after is undone.
    if let Some(placement) = &placement {
        keep(placement.clone());
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let Some(placement) = placement else {
        return Ok(None);
    };
    let at_ms = super::now_ms();
    let superseded_cancelled = match &placement.admit {
        Admit::Cancel { reason, because_of } => {
            let detail = TransitionDetail {
                reason: Some(reason.clone()),
                superseded_by: Some(*because_of),
                ..TransitionDetail::default()
            };
            // Queued by this very transaction, as `record` says: the deploy
            // it is cancelled for, still queued, redeploys its services.
            let superseded = Superseded {
                services: record.queued.services.clone(),
                profile: record.queued.profile.clone(),
                lane: record.queued.lane(),
            };
            cancel_for(sql, record.id, superseded, at_ms, &detail)?;
            false
        }
        Admit::Pending {
            superseded: Some((pending, reason)),
            ..
        } => {
            let detail = TransitionDetail {
                reason: Some(reason.clone()),
                superseded_by: Some(record.id),
                ..TransitionDetail::default()
            };
            cancel_one(sql, *pending, at_ms, &detail)?
        }
        Admit::Pending {
            superseded: None, ..
        }
        | Admit::Known => false,
    };
    Ok(Some(Placed {
        placement,
        superseded_cancelled,
    }))
}

/// [`Journal::admit_deploy`] inside its transaction.
pub(super) fn admit(
    sql: &mut dyn Sql,
    d: &NewDeploy,
    admission: &Admission,
) -> Result<Admitted, DbError> {
    if let Some(claim) = &admission.replay {
        sql.execute_pipelined(
            "DELETE FROM replay_keys WHERE expires_at_ms <= ?1",
            args![claim.now_ms],
        )?;
        let seen = sql.query_opt(
            "SELECT first_seen_ms, deploy_id FROM replay_keys WHERE key = ?1",
            args![claim.key],
        )?;
        if let Some(row) = seen {
            return Ok(Admitted::Replayed {
                first_seen_ms: row.get(0)?,
                deploy_id: row.get(1)?,
            });
        }
    }
    // What the journal knows of the commit, in the deploy's scopes (the
    // deploy inserted below changes nothing of it): for the same-push
    // search first, then for the commit order.
    let scopes = Scopes::of(&d.services, &d.lane());
    let known = match &admission.commit {
        Some(commit) => Some(known_commits(
            sql,
            &d.stack,
            &commit.sha,
            scopes.judged_by().as_deref(),
        )?),
        None => None,
    };
    if let Some(commit) = admission.commit.as_ref().filter(|c| c.once && !c.requested) {
        let is_head = known
            .as_ref()
            .and_then(|k| k.head.as_ref())
            .is_some_and(|h| h.sha == commit.sha);
        // A delivery seen before is answered as that below.
        if is_head && !delivery_seen(sql, d)? {
            if let Some(deploy_id) = same_push_deployed(sql, &commit.sha, d)? {
                return Ok(Admitted::SameCommit { deploy_id });
            }
        }
    }
    if let Some(image) = &admission.image {
        if let Some(deploy_id) = super::images::repeated(sql, d, image)? {
            return Ok(Admitted::SameCommit { deploy_id });
        }
    }
    let id = match insert_deploy_in(sql, d)? {
        Inserted::New(id) => id,
        duplicate @ Inserted::Duplicate(_) => return Ok(Admitted::Inserted(duplicate)),
    };
    let mut admitted = Admitted::Inserted(Inserted::New(id));
    if let (Some(commit), Some(known)) = (&admission.commit, &known) {
        let candidate = Candidate {
            sha: &commit.sha,
            before: commit.before.as_deref(),
            forced: commit.forced,
            sender_reports_forced: commit.sender_reports_forced,
            requested: commit.requested,
        };
        let each = scopes.each();
        let older_too = !d.services.is_empty();
        let mut verdict = commit_order::judge_each(&candidate, known, &each, older_too, |group| {
            known_commits(sql, &d.stack, &commit.sha, Some(group))
        })?;
        // A commit none of its scopes knows may still come from behind its
        // lane's head: a push the catch-up asked GitHub to deliver again
        // (missed in an outage, so it arrives after the live pushes that
        // followed it) that started from an earlier commit of the lane,
        // not forced (`commit_order::started_behind`). Asked only of such a
        // redelivery that does not start from the head: never of a live
        // push, whose order GitHub keeps but for a rare race, and which a
        // wrong "older" would leave undeployed.
        let mut behind = false;
        let asks = verdict == Verdict::Newer
            && commit.sender_reports_forced
            && !commit.forced
            && !commit.requested;
        if let (true, Some(before)) = (asks, commit.before.as_deref()) {
            let from_head = known.head.as_ref().is_some_and(|h| h.sha == before);
            let lane = match !from_head && redelivered(sql, d)? {
                true => lane_start(sql, &d.stack, before, &scopes)?,
                false => None,
            };
            if let Some(lane) = lane {
                if let Some(older) =
                    commit_order::started_behind(&candidate, lane.before_seen, lane.head.as_ref())
                {
                    verdict = older;
                    behind = true;
                }
            }
        }
        // It will take over the services of its lane's waiting deploys, each
        // one its commit is not older for (`claim::widen_services`). Each is
        // judged here with the push's own `before` and flags, by that
        // service's commits alone: its commit is recorded as theirs where
        // it is not older. Where it is older, a push that does not start
        // from its lane's newest commit (late, or another sender's) is
        // cancelled for the newest waiting deploy, which takes its services
        // over; one that does is the lane's latest move, as is an
        // operator's redeploy, and the claim leaves that service out.
        let mut taken_over: Vec<String> = Vec::new();
        let waiting = match verdict.deploys() && !d.services.is_empty() {
            true => lane_waiting(sql, d, id)?,
            false => None,
        };
        if let Some((services, newest)) = &waiting {
            let added: Vec<Option<&str>> = match services.is_empty() {
                true => vec![None],
                false => services
                    .iter()
                    .filter(|s| !d.services.contains(s))
                    .map(|s| Some(s.as_str()))
                    .collect(),
            };
            let mut follows = None;
            // An operator's redeploy rolls back only the services it names:
            // for the others it is judged as a push, and never cancelled.
            let as_push = Candidate {
                requested: false,
                ..candidate
            };
            for service in added {
                match older_for(sql, &d.stack, &as_push, service)? {
                    None => taken_over.push(commit_order::service_scope(service)),
                    Some(reason) => {
                        let follows = match follows {
                            Some(follows) => follows,
                            None => *follows
                                .insert(commit.requested || follows_lane(sql, d, &scopes, commit)?),
                        };
                        if !follows {
                            verdict = Verdict::Older {
                                reason: format!(
                                    "{reason}; deploy #{newest}, waiting in the same branch or \
                                     tag, deploys that service, and this push would have taken \
                                     it over"
                                ),
                                newer_deploy: *newest,
                            };
                            break;
                        }
                    }
                }
            }
        }
        match verdict {
            Verdict::Older {
                reason,
                newer_deploy,
            } => {
                let exists: bool = sql
                    .query_one(
                        "SELECT EXISTS (SELECT 1 FROM deploys WHERE id = ?1)",
                        args![newer_deploy],
                    )?
                    .get(0)?;
                let detail = TransitionDetail {
                    reason: Some(reason.clone()),
                    superseded_by: exists.then_some(newer_deploy),
                    ..TransitionDetail::default()
                };
                // The newer deploy, still queued, redeploys its services.
                let superseded = Superseded {
                    services: d.services.clone(),
                    profile: d.profile.clone(),
                    lane: d.lane(),
                };
                cancel_for(sql, id, superseded, d.created_at_ms, &detail)?;
                // Found behind its lane's head: so is a push from it.
                if let (true, Some(scope)) = (behind, scopes.behind()) {
                    sql.execute_pipelined(
                        "INSERT INTO stack_commits
                             (stack, sha, before_sha, deploy_id, seen_at_ms, scope)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT (stack, sha, scope) DO NOTHING",
                        args![
                            d.stack,
                            commit.sha,
                            commit.before,
                            id,
                            d.created_at_ms,
                            scope
                        ],
                    )?;
                }
                admitted = Admitted::Older {
                    deploy_id: id,
                    reason,
                };
            }
            Verdict::Newer | Verdict::Head | Verdict::Rollback => {
                let mut recorded = scopes.recorded_as();
                for scope in &taken_over {
                    if !recorded.contains(&scope.as_str()) {
                        recorded.push(scope);
                    }
                }
                let rows: Vec<String> = (0..recorded.len())
                    .map(|i| format!("(?1, ?2, ?3, ?4, ?5, ?{})", i + 6))
                    .collect();
                let mut params: Vec<Value> =
                    args![d.stack, commit.sha, commit.before, id, d.created_at_ms].to_vec();
                params.extend(recorded.iter().map(ToValue::to_value));
                sql.execute_pipelined(
                    &format!(
                        "INSERT INTO stack_commits
                             (stack, sha, before_sha, deploy_id, seen_at_ms, scope)
                         VALUES {}
                         ON CONFLICT (stack, sha, scope) DO UPDATE SET
                             deploy_id  = excluded.deploy_id,
                             before_sha = COALESCE(stack_commits.before_sha, excluded.before_sha)",
                        rows.join(", ")
                    ),
                    &params,
                )?;
            }
        }
    }
    if let (Some(image), false) = (&admission.image, matches!(admitted, Admitted::Older { .. })) {
        super::images::record(sql, d, image, id)?;
    }
    if let Some(claim) = &admission.replay {
        sql.execute_pipelined(
            "INSERT INTO replay_keys (key, stack, first_seen_ms, expires_at_ms, deploy_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            args![claim.key, d.stack, claim.now_ms, claim.expires_at_ms, id],
        )?;
    }
    if let (Admitted::Inserted(Inserted::New(_)), Some(request)) =
        (&admitted, &admission.deployment_request)
    {
        // After the deploy's `queued` transition, so the request's outbox
        // rows include that status (as for a request recorded later).
        let request = insert_request_in(sql, &request.for_deploy(&d.stack, id))?;
        admitted = Admitted::Requested {
            deploy_id: id,
            request,
        };
    }
    Ok(admitted)
}

/// Whether `d`'s delivery is one the catch-up asked GitHub to deliver again
/// (`github_redeliveries`, `crate::catch_up`): missed when it was sent. For
/// the deploy of a GitHub deployment, whose delivery is the deployment's,
/// the push's delivery kept with the request that made it (or, its answer
/// not recorded yet, with the one unanswered request of its commit).
fn redelivered(sql: &mut dyn Sql, d: &NewDeploy) -> Result<bool, DbError> {
    let Some(guid) = &d.delivery_id else {
        return Ok(false);
    };
    let deployment = guid
        .strip_prefix(super::request_fallback::DEPLOYMENT_KEY_PREFIX)
        .and_then(|id| id.parse::<i64>().ok());
    let found = match deployment {
        None => sql.query_opt(
            "SELECT 1 FROM github_redeliveries WHERE stack = ?1 AND guid = ?2",
            args![d.stack, guid],
        )?,
        Some(deployment) => sql.query_opt(
            "SELECT 1 FROM github_redeliveries WHERE stack = ?1 AND guid IN
                 (SELECT delivery_id FROM github_deployment_requests
                  WHERE stack = ?1 AND delivery_id IS NOT NULL
                  AND (deployment_id = ?2
                       OR (deployment_id IS NULL AND state = 'pending' AND sha = ?3)))",
            args![d.stack, deployment, d.sha],
        )?,
    };
    Ok(found.is_some())
}

/// The deploys that are `d`'s push, in SQL (`?1` its ref, `?2` its
/// profile): the same ref and profile. [`is_same_push`] adds the services.
const SAME_REF_AND_PROFILE: &str =
    "git_ref IS NOT DISTINCT FROM ?1 AND profile IS NOT DISTINCT FROM ?2";

/// The deploys the configuration running them did not refuse, in SQL, with
/// `cancelled` and [`refused_pattern`] as its parameters 5 and 6: a deploy
/// refused (`crate::runner::follows`, cancelled with a reason beginning
/// [`crate::runner::follows::REFUSED_PREFIX`]) never ran.
const NOT_REFUSED_5_6: &str = "NOT (state = ?5 AND superseded_by IS NULL AND detail LIKE ?6)";

/// The `LIKE` pattern of a refused deploy's reason.
fn refused_pattern() -> String {
    format!("{}%", crate::runner::follows::REFUSED_PREFIX)
}

/// Whether a deploy of [`SAME_REF_AND_PROFILE`], whose `services` column
/// is `services`, is `d`'s push: it redeploys every service `d` names (it
/// may name more: a deploy that superseded another took its services,
/// [`super::claim::widen_services`]).
fn is_same_push(services: &str, d: &NewDeploy) -> Result<bool, DbError> {
    let services = super::claim::services_of(services)?;
    Ok(crate::queue::covers(&services, &d.services))
}

/// Whether deploy `deploy_id` of `d`'s stack is `d`'s push, not refused
/// ([`newest_same_push`]).
pub(super) fn same_push(sql: &mut dyn Sql, deploy_id: i64, d: &NewDeploy) -> Result<bool, DbError> {
    Ok(newest_same_push(sql, d, "id = ?4", &deploy_id)?.is_some())
}

/// The newest deploy of commit `sha` that was `d`'s push ([`is_same_push`]),
/// any one of them, not only the newest (a push sent again with the
/// unsigned query changed back and forth is the same push each time). A
/// deploy the configuration running it refused (`crate::runner::follows`,
/// cancelled with a reason beginning
/// [`crate::runner::follows::REFUSED_PREFIX`]) never ran, and is not one; a
/// deploy an operator cancelled is. One statement (one round trip to a
/// database server), whatever the number of the commit's deploys.
fn same_push_deployed(sql: &mut dyn Sql, sha: &str, d: &NewDeploy) -> Result<Option<i64>, DbError> {
    newest_same_push(sql, d, "sha = ?4", &sha)
}

/// The newest of `d`'s stack's deploys that `condition` (SQL of `?4`,
/// bound to `value`) selects that was `d`'s push ([`is_same_push`]) and
/// was not refused by the configuration running it: one statement.
pub(super) fn newest_same_push(
    sql: &mut dyn Sql,
    d: &NewDeploy,
    condition: &str,
    value: &dyn ToValue,
) -> Result<Option<i64>, DbError> {
    newest_same_push_of(sql, d, condition, value, None)
}

/// [`newest_same_push`], of the deploys whose event names an image pinned
/// to `digest` (`registry/repository@digest`, the command's
/// `REDEPLOY_IMAGE`; however the sender spelled the image) when one is
/// given: an event the journal cannot read names none.
pub(super) fn newest_same_push_of(
    sql: &mut dyn Sql,
    d: &NewDeploy,
    condition: &str,
    value: &dyn ToValue,
    digest: Option<&str>,
) -> Result<Option<i64>, DbError> {
    let event = if digest.is_some() { ", event_json" } else { "" };
    let rows = sql.query(
        &format!(
            "SELECT id, services, superseded_by{event} FROM deploys WHERE {SAME_REF_AND_PROFILE}
                 AND stack = ?3 AND {condition} AND {NOT_REFUSED_5_6}
             ORDER BY id DESC"
        ),
        args![
            d.git_ref,
            d.profile,
            d.stack,
            value,
            DeployState::Cancelled,
            refused_pattern()
        ],
    )?;
    for row in &rows {
        let ran_digest = || -> Result<bool, DbError> {
            let Some(digest) = digest else {
                return Ok(true);
            };
            let event: Option<crate::runner::DeployEventJson> =
                serde_json::from_str(&row.get::<String>(3)?).ok();
            let image = event.and_then(|e| e.image);
            Ok(image
                .as_deref()
                .and_then(|i| i.rsplit_once('@'))
                .map(|(_, pinned)| pinned)
                == Some(digest))
        };
        if !is_same_push(&row.get::<String>(1)?, d)? || !ran_digest()? {
            continue;
        }
        let superseded_by: Option<i64> = row.get(2)?;
        let ran = match superseded_by {
            None => true,
            Some(by) => superseded_within_profile(sql, by, d)?,
        };
        if ran {
            return Ok(Some(row.get(0)?));
        }
    }
    Ok(None)
}

/// Whether the deploys that superseded a deploy of `d`'s profile, from
/// `superseded_by` on (each superseded by the next, if it was), are all of
/// that profile: only such a deploy takes a superseded one's services over
/// ([`super::claim::widen_services`]). A deploy superseded by one of
/// another profile never ran its push with its profile. One statement
/// (`UNION`: a chain that came back on itself, as an import could make
/// one, ends).
fn superseded_within_profile(
    sql: &mut dyn Sql,
    superseded_by: i64,
    d: &NewDeploy,
) -> Result<bool, DbError> {
    let other = sql.query_opt(
        "WITH RECURSIVE chain (id, profile, next) AS (
             SELECT id, profile, superseded_by FROM deploys WHERE id = ?1
             UNION
             SELECT s.id, s.profile, s.superseded_by FROM deploys s
                 JOIN chain ON s.id = chain.next
         )
         SELECT 1 FROM chain WHERE profile IS DISTINCT FROM ?2 LIMIT 1",
        args![superseded_by, d.profile],
    )?;
    Ok(other.is_none())
}

/// Whether `d`'s stack already has a deploy of `d`'s delivery id.
pub(super) fn delivery_seen(sql: &mut dyn Sql, d: &NewDeploy) -> Result<bool, DbError> {
    let Some(delivery) = &d.delivery_id else {
        return Ok(false);
    };
    Ok(sql
        .query_opt(
            "SELECT 1 FROM deploys WHERE stack = ?1 AND delivery_id = ?2",
            args![d.stack, delivery],
        )?
        .is_some())
}
