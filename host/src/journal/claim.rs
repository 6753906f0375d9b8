//! Claiming a stack's next deploy: with the stack's lock held, a runner
//! takes the newest queued deploy of one of the stack's lanes (whichever
//! process queued it), cancels the older ones of that lane as superseded by
//! it and, in the same transaction, records it started
//! ([`Journal::claim_and_start`]), after checking on the database that it
//! still holds the stack's lease.
//!
//! As in the runner's queue ([`crate::queue`]), a deploy gives way only to
//! deploys of its own lane, its ref of its repository (`git_ref` and
//! `repository`, [`crate::queue::Lane`]; those naming none share one), and
//! the deploys run in the order they were admitted: the lane's newest
//! queued deploy runs, of the lane whose newest is the oldest
//! ([`NEXT_TO_CLAIM`]). Every claimer, on every replica, takes the same one,
//! so the deploys a stack starts have ever larger ids: one admitted later
//! (the newer, [`crate::commit_order`]) never runs before one of another
//! lane admitted earlier, which would then undo it for the services both
//! redeploy. (Save where the claimer refuses a lane's newest deploy,
//! [`Start::refusal`], and that lane's next newest, older than a deploy of
//! another lane that already started, runs: the "newer already ran" check
//! is within a lane.)
//!
//! It is on every deploy's path, under the journal's write lock, so it
//! costs few statements whatever the queue holds: the older deploys are
//! cancelled by one `UPDATE`, and their history rows added a chunk of
//! [`ROWS_PER_INSERT`] per statement; the services the claimed deploy
//! takes over are judged once each (a few statements per service of the
//! stack, [`widen_services`]), however many deploys it supersedes.

use super::leases::clock;
use super::outbox::{self, Change};
use super::sql::{args, DbError, Sql, ToValue, Value};
use super::{
    apply_transition, select_deploy, Backend, Claimed, DeployRecord, DeployState, Journal,
    JournalError, TransitionDetail,
};
use crate::commit_order::{Candidate, Scopes};

/// History rows one `INSERT` adds at most (one statement per chunk).
pub const ROWS_PER_INSERT: usize = 32;

/// How [`Journal::claim_and_start`] starts the deploy it claims.
pub struct Start<'a> {
    /// The stack's lease, `(name, holder)`, which must still be the
    /// holder's on the database's clock; `None` for a journal whose stack
    /// locks are files (SQLite, one machine).
    pub lease: Option<(&'a str, &'a str)>,
    /// True once the claimer's own keeper counts the lease as lost (it
    /// does so well before the database's clock runs it out: see
    /// [`crate::cluster`]); asked once the transaction holds the journal's
    /// write lock, after any wait for it.
    pub lost: &'a (dyn Fn() -> bool + Sync),
    /// The `started` transition's detail, given the deploy's id.
    pub detail: &'a (dyn Fn(i64) -> TransitionDetail + Sync),
    /// Why a queued deploy must not run after all (the claimer's own
    /// configuration does not follow its ref: `crate::runner::follows`),
    /// or `None` to run it. Asked of the newest queued deploy before it
    /// supersedes the older ones: one it refuses is cancelled with that
    /// reason, and the next newest is asked, so a refused deploy never
    /// takes an older one with it.
    pub refusal: &'a (dyn Fn(&DeployRecord) -> Option<String> + Sync),
}

impl Journal {
    /// With `stack`'s lock held: the deploy to run next, the newest queued
    /// of its lane (of the lane whose newest is the oldest), after
    /// cancelling (superseded by it) every older one of its lane still
    /// queued, whichever process queued them, in one transaction. A queued
    /// deploy older than a deploy of its lane that already started is
    /// cancelled instead, so that an older commit never runs after a newer
    /// one, and the next lane's is taken. Returns the deploy to run (if any) and the ids cancelled,
    /// each with its reason. The deploy stays `queued`
    /// ([`Journal::claim_and_start`] starts it in the same transaction).
    pub fn claim_next(&self, stack: &str, at_ms: i64) -> Result<Claimed, JournalError> {
        self.write("claim the next deploy", |sql| {
            claim(sql, stack, at_ms, None, &|_| None)
        })
    }

    /// [`Journal::claim_next`], and the deploy it returns recorded
    /// `started` with `start.detail`, in one transaction. With a lease,
    /// first checks that it is still the holder's on the database's clock,
    /// and keeps it from changing hands until the transaction ends
    /// (PostgreSQL locks its row): if it is not, nothing changes and
    /// [`Claimed::lease_lost`] is set.
    pub fn claim_and_start(
        &self,
        stack: &str,
        at_ms: i64,
        start: &Start<'_>,
    ) -> Result<Claimed, JournalError> {
        let lock_row = match self.backend {
            Backend::Sqlite(_) => "",
            Backend::Postgres(_) => " FOR UPDATE",
        };
        let held = format!(
            "SELECT holder FROM leases WHERE name = ?1 AND holder = ?2 AND expires_at_ms >= {}{lock_row}",
            clock(&self.backend)
        );
        self.write("claim and start the next deploy", |sql| {
            if let Some((name, holder)) = start.lease {
                if sql.query_opt(&held, args![name, holder])?.is_none() || (start.lost)() {
                    return Ok(Claimed {
                        lease_lost: true,
                        ..Claimed::default()
                    });
                }
            }
            claim(sql, stack, at_ms, Some(start.detail), start.refusal)
        })
    }

    /// The deploy of `stack` that `runner` recorded `started` at `at_ms`:
    /// what a [`Journal::claim_and_start`] at `at_ms` that returned an
    /// error started all the same (its commit went through, its answer was
    /// lost). Asked in a write transaction, so that the try's own, which
    /// holds the journal's write lock from before its commit is sent, has
    /// ended one way or the other: the answer is final.
    pub fn started_by(
        &self,
        stack: &str,
        runner: &str,
        at_ms: i64,
    ) -> Result<Option<DeployRecord>, JournalError> {
        self.write("find a claim whose answer was lost", |sql| {
            let found: Option<i64> = sql
                .query_opt(
                    "SELECT id FROM deploys WHERE stack = ?1 AND state = ?2 AND runner = ?3
                     AND started_at_ms = ?4",
                    args![stack, DeployState::Started, runner, at_ms],
                )?
                .map(|row| row.get(0))
                .transpose()?;
            match found {
                Some(id) => select_deploy(sql, id),
                None => Ok(None),
            }
        })
    }
}

/// [`Journal::claim_next`] inside its transaction, starting the deploy it
/// claims with `started` if given; a queued deploy `refusal` gives a
/// reason for is cancelled with it, newest first, before any supersedes
/// the older ones ([`Start::refusal`]); one older than a started deploy of
/// its lane is cancelled; either way the claim goes on to the next.
fn claim(
    sql: &mut dyn Sql,
    stack: &str,
    at_ms: i64,
    started: Option<&(dyn Fn(i64) -> TransitionDetail + Sync)>,
    refusal: &(dyn Fn(&DeployRecord) -> Option<String> + Sync),
) -> Result<Claimed, DbError> {
    let mut cancelled = Vec::new();
    loop {
        let newest: Option<i64> = sql
            .query_one(NEXT_TO_CLAIM, args![stack, DeployState::Queued])?
            .get(0)?;
        let record = match newest {
            Some(newest) => select_deploy(sql, newest)?,
            None => None,
        };
        let Some(record) = record else {
            return Ok(Claimed {
                cancelled,
                ..Claimed::default()
            });
        };
        let newest = record.id;
        let lane = record.queued.lane();
        if let Some(reason) = refusal(&record) {
            let refused = TransitionDetail {
                reason: Some(reason.clone()),
                ..TransitionDetail::default()
            };
            apply_transition(sql, newest, DeployState::Cancelled, at_ms, &refused)?;
            cancelled.push((newest, reason));
            continue;
        }
        cancelled.extend(cancel_older(sql, stack, newest, &lane, at_ms)?);
        // Only deploys of its lane newer than the claimed one: a range of
        // the (stack, id) index, holding the stack's other lanes' newer
        // deploys too. Unbounded, the search reads back through every
        // deploy of the stack since the last one that started (the
        // cancelled ones), with the write lock held.
        let latest_started: Option<i64> = sql
            .query_one(
                "SELECT MAX(id) FROM deploys WHERE stack = ?1 AND id > ?2
                 AND started_at_ms IS NOT NULL AND git_ref IS NOT DISTINCT FROM ?3
                 AND repository IS NOT DISTINCT FROM ?4",
                args![stack, newest, lane.git_ref, lane.repository],
            )?
            .get(0)?;
        if let Some(latest) = latest_started {
            let reason = format!(
                "deploy #{latest}, newer, already ran: an older commit never runs after it"
            );
            let older_than_run = TransitionDetail {
                reason: Some(reason.clone()),
                superseded_by: Some(latest),
                ..TransitionDetail::default()
            };
            apply_transition(sql, newest, DeployState::Cancelled, at_ms, &older_than_run)?;
            cancelled.push((newest, reason));
            // Another lane's deploy may still run.
            continue;
        }
        if let Some(detail) = started {
            apply_transition(sql, newest, DeployState::Started, at_ms, &detail(newest))?;
        }
        return Ok(Claimed {
            next: select_deploy(sql, newest)?,
            cancelled,
            lease_lost: false,
        });
    }
}

/// [`claim`]'s choice (`?1` the stack, `?2` `queued`): of the newest queued
/// deploy of each lane (ref and repository, [`crate::queue::Lane`]; `GROUP
/// BY` takes `NULL`s as equal), the oldest. It reads every queued deploy
/// of the stack (one range of the (stack, state, id) index): a few, since
/// an admission cancels its lane's pending one, or many only when deploys
/// were queued without a runner's queue (a git hook's, a replica's) while
/// one ran, and this claim cancels them.
const NEXT_TO_CLAIM: &str = "SELECT MIN(newest) FROM (SELECT MAX(id) AS newest FROM deploys
     WHERE stack = ?1 AND state = ?2 GROUP BY git_ref, repository) AS lanes";

/// Cancels every queued deploy of `stack` and `lane` (`git_ref` and
/// `repository`) older than `newest`, superseded by it, with their history and outbox
/// rows: the ids, newest first, each with its reason.
pub(super) fn cancel_older(
    sql: &mut dyn Sql,
    stack: &str,
    newest: i64,
    lane: &crate::queue::Lane,
    at_ms: i64,
) -> Result<Vec<(i64, String)>, DbError> {
    let reason = format!("superseded by deploy #{newest}");
    let mut rows = sql.query(
        "UPDATE deploys SET state = ?3, finished_at_ms = ?4, detail = ?5, superseded_by = ?6
         WHERE stack = ?1 AND state = ?2 AND id < ?6 AND git_ref IS NOT DISTINCT FROM ?7
             AND repository IS NOT DISTINCT FROM ?8
         RETURNING id, event_json,
             (SELECT COUNT(*) FROM github_deployment_requests r WHERE r.deploy_id = deploys.id),
             services, profile, git_ref, repository",
        args![
            stack,
            DeployState::Queued,
            DeployState::Cancelled,
            at_ms,
            reason,
            newest,
            lane.git_ref,
            lane.repository
        ],
    )?;
    rows.sort_by_key(|row| std::cmp::Reverse(row.get::<i64>(0).unwrap_or_default()));
    let mut ids = Vec::with_capacity(rows.len());
    let mut services = Vec::with_capacity(rows.len());
    for row in &rows {
        services.push(Superseded {
            services: services_of(&row.get::<String>(3)?)?,
            profile: row.get(4)?,
            lane: crate::queue::Lane {
                git_ref: row.get(5)?,
                repository: row.get(6)?,
            },
        });
        let id: i64 = row.get(0)?;
        let event_json: String = row.get(1)?;
        let requests: i64 = row.get(2)?;
        let change = Change {
            stack,
            deploy_id: id,
            state: DeployState::Cancelled,
            at_ms,
            reason: Some(&reason),
        };
        outbox::queue_reports(sql, &change, &event_json, requests > 0)?;
        ids.push(id);
    }
    for chunk in ids.chunks(ROWS_PER_INSERT) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| format!("(?{}, ?1, ?2, ?3)", i + 4))
            .collect();
        let mut params: Vec<Value> = vec![
            DeployState::Cancelled.to_value(),
            at_ms.to_value(),
            reason.to_value(),
        ];
        params.extend(chunk.iter().map(ToValue::to_value));
        sql.execute_pipelined(
            &format!(
                "INSERT INTO deploy_transitions (deploy_id, state, at_ms, detail) VALUES {}",
                values.join(", ")
            ),
            &params,
        )?;
    }
    widen_services(sql, newest, &services)?;
    Ok(ids.into_iter().map(|id| (id, reason.clone())).collect())
}

/// A deploy row's `services` column (JSON).
pub(super) fn services_of(json: &str) -> Result<Vec<String>, DbError> {
    serde_json::from_str(json).map_err(|e| DbError::Decode {
        column: 6,
        problem: e.to_string(),
    })
}

/// What a deploy cancelled for another one redeployed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Superseded {
    /// Its services; empty means all.
    pub services: Vec<String>,
    /// Its compose profile.
    pub profile: Option<String>,
    /// Its ref and repository.
    pub lane: crate::queue::Lane,
}

/// Widens queued deploy `into`'s services to cover each of `superseded`
/// (deploys cancelled for it) of the same profile and lane, so a service
/// only a superseded deploy named still deploys ([`crate::queue::union`]):
/// its `services` column and the event the deploy is handed
/// (`event_json`'s `services`), as one. Nothing changes when `into` is not
/// queued any more (it started, or ended), nor for a deploy of another
/// profile or lane: a service never deploys another branch's commit because
/// a deploy of its own branch was cancelled for it (an older commit by the
/// stack's commit order, `super::admission`), nor with a service `into`'s
/// commit is older for by that order ([`takes`]): that service keeps the
/// newer commit it has. The services it takes have its commit recorded as
/// theirs too, in the commit order per service.
pub(super) fn widen_services(
    sql: &mut dyn Sql,
    into: i64,
    superseded: &[Superseded],
) -> Result<(), DbError> {
    if superseded.is_empty() {
        return Ok(());
    }
    let Some(row) = sql.query_opt(
        "SELECT services, profile, event_json, git_ref, repository, stack, sha
         FROM deploys WHERE id = ?1 AND state = ?2",
        args![into, DeployState::Queued],
    )?
    else {
        return Ok(());
    };
    let mine = services_of(&row.get::<String>(0)?)?;
    let profile: Option<String> = row.get(1)?;
    let lane = crate::queue::Lane {
        git_ref: row.get(3)?,
        repository: row.get(4)?,
    };
    let stack: String = row.get(5)?;
    let others: Vec<&[String]> = superseded
        .iter()
        .filter(|s| s.profile == profile && s.lane == lane)
        .map(|s| s.services.as_slice())
        .collect();
    if crate::queue::union(&mine, others.iter().copied()).is_none() {
        return Ok(());
    }
    // Of the services it would take, those for which its commit is older
    // than one they already have stay out: each judged once, however many
    // deploys it supersedes.
    let sha: Option<String> = row.get(6)?;
    let mut judged: Vec<(&[String], bool)> = Vec::new();
    let mut taken = Vec::with_capacity(others.len());
    for services in others {
        let services: Vec<&[String]> = match services.is_empty() {
            true => vec![services],
            false => services
                .chunks(1)
                .filter(|s| !mine.contains(&s[0]))
                .collect(),
        };
        for service in services {
            let yes = match judged.iter().find(|(s, _)| *s == service) {
                Some((_, yes)) => *yes,
                None => {
                    let yes = takes(sql, &stack, sha.as_deref(), service)?;
                    judged.push((service, yes));
                    yes
                }
            };
            if yes {
                taken.push(service);
            }
        }
    }
    let Some(widened) = crate::queue::union(&mine, taken) else {
        return Ok(());
    };
    let decode = |e: serde_json::Error| DbError::Decode {
        column: 6,
        problem: e.to_string(),
    };
    let mut event: serde_json::Value =
        serde_json::from_str(&row.get::<String>(2)?).map_err(decode)?;
    if let Some(event) = event.as_object_mut() {
        event.insert("services".to_owned(), serde_json::json!(widened));
    }
    sql.execute_pipelined(
        "UPDATE deploys SET services = ?2, event_json = ?3 WHERE id = ?1",
        args![
            into,
            serde_json::to_string(&widened).map_err(decode)?,
            event.to_string()
        ],
    )?;
    // Its commit is now deployed to the services it took too: in their
    // commit order (`commit_order::Scopes`) a commit older than it is
    // older, and its own commit, pushed again later, is no head of theirs
    // to deploy again. Copied from its own row of the commit.
    let had = Scopes::of(&mine, &lane);
    let had = had.recorded_as();
    for scope in Scopes::of(&widened, &lane).recorded_as() {
        if had.contains(&scope) {
            continue;
        }
        sql.execute_pipelined(
            "INSERT INTO stack_commits (stack, sha, before_sha, deploy_id, seen_at_ms, scope)
             SELECT stack, sha, before_sha, deploy_id, seen_at_ms, ?3 FROM stack_commits
             WHERE stack = ?1 AND deploy_id = ?2 LIMIT 1
             ON CONFLICT (stack, sha, scope) DO UPDATE SET deploy_id = excluded.deploy_id
             WHERE excluded.deploy_id > stack_commits.deploy_id",
            args![stack, into, scope],
        )?;
    }
    Ok(())
}

/// Whether a deploy of commit `sha` may take over `services` (one, or all
/// when empty): it names no commit the stack's commit order knows, or its
/// commit is not older for them by their own commits
/// ([`super::commits::older_for`], as a push that is no rollback: its
/// admission judged it for its lane's waiting deploys' services with the
/// push's own `before` and flags, and recorded its commit as theirs where
/// it was not older, their head then).
fn takes(
    sql: &mut dyn Sql,
    stack: &str,
    sha: Option<&str>,
    services: &[String],
) -> Result<bool, DbError> {
    let Some(sha) = sha else {
        return Ok(true);
    };
    let known = sql.query_opt(
        "SELECT 1 FROM stack_commits WHERE stack = ?1 AND sha = ?2 LIMIT 1",
        args![stack, sha],
    )?;
    if known.is_none() {
        return Ok(true);
    }
    let candidate = Candidate {
        sha,
        before: None,
        forced: false,
        sender_reports_forced: true,
        requested: false,
    };
    let service = services.first().map(String::as_str);
    Ok(super::commits::older_for(sql, stack, &candidate, service)?.is_none())
}

/// Cancels queued deploy `id` with `detail`, in the caller's transaction:
/// true if it was queued. A deploy it is cancelled for
/// (`detail.superseded_by`) that is still queued takes its services
/// ([`widen_services`]).
pub(super) fn cancel_one(
    sql: &mut dyn Sql,
    id: i64,
    at_ms: i64,
    detail: &TransitionDetail,
) -> Result<bool, DbError> {
    let Some(row) = sql.query_opt(
        "SELECT services, profile, git_ref, repository FROM deploys WHERE id = ?1 AND state = ?2",
        args![id, DeployState::Queued],
    )?
    else {
        return Ok(false);
    };
    let superseded = Superseded {
        services: services_of(&row.get::<String>(0)?)?,
        profile: row.get(1)?,
        lane: crate::queue::Lane {
            git_ref: row.get(2)?,
            repository: row.get(3)?,
        },
    };
    cancel_for(sql, id, superseded, at_ms, detail)?;
    Ok(true)
}

/// Cancels deploy `id`, queued (which redeployed what `superseded` says),
/// with `detail`, in the caller's transaction: the deploy it is cancelled
/// for (`detail.superseded_by`), if still queued, takes its services
/// ([`widen_services`]).
pub(super) fn cancel_for(
    sql: &mut dyn Sql,
    id: i64,
    superseded: Superseded,
    at_ms: i64,
    detail: &TransitionDetail,
) -> Result<(), DbError> {
    apply_transition(sql, id, DeployState::Cancelled, at_ms, detail)?;
    if let Some(into) = detail.superseded_by {
        widen_services(sql, into, &[superseded])?;
    }
    Ok(())
}
