//! A GitHub deployment request that cannot lose its push (SQLite schema
//! 15, PostgreSQL 11).
//!
//! A stack that waits for GitHub's `deployment` event keeps, with each
//! request, the deploy its push stands for ([`RequestedDeploy`]). Two
//! things can then keep that deploy from ever running, and the journal
//! runs it itself ([`Journal::fall_back`]):
//!
//! - the request failed for good (refused, or GitHub unreachable for the
//!   stack's `retry_request_for`): the push deploys directly, or not at
//!   all, as the stack says; GitHub's own decisions about the commit (409,
//!   202 merged) are recorded as not overridden;
//! - GitHub created the deployment and its event never came: the created
//!   deployment runs from the journal, as the event would have run it.
//!
//! Each request falls back once: the claim is a conditional update of the
//! request row (`fallback IS NULL`) in the transaction that admits the
//! deploy, and the deploy of a created deployment carries the same
//! delivery key ([`deployment_delivery_key`]) as the deploy its event
//! runs, so the unique (stack, delivery id) of `deploys` lets exactly one
//! of the two in, whichever comes first, on any replica.

use serde::{Deserialize, Serialize};

use super::admission::admit;
use super::github::{request_from_row, DeploymentRequest, REQUEST_COLUMNS};
use super::outbox::queue_statuses_so_far;
use super::sql::{args, DbError, Sql};
use super::{Admission, Admitted, CommitClaim, Inserted, Journal, JournalError, NewDeploy};

/// The most open requests one look reads (the rest are read by the next).
pub const OPEN_REQUESTS_BATCH: usize = 64;

/// The journal's dedupe key of a deploy run by GitHub deployment
/// `deployment_id`: one deploy per deployment, whether its `deployment`
/// event ran it or the journal did.
pub fn deployment_delivery_key(deployment_id: u64) -> String {
    format!("github-deployment-{deployment_id}")
}

/// The deploy a push stands for, kept with its deployment request: what
/// the journal needs to queue it (the row) and to admit it in commit order
/// (what the push said of the commit before it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestedDeploy {
    /// The deploy as the push's decision made it.
    pub deploy: NewDeploy,
    /// The push's `before`, when the sender gave it.
    pub before: Option<String>,
    /// The sender said the push was forced.
    pub forced: bool,
    /// The sender reports forced pushes at all.
    pub sender_reports_forced: bool,
}

impl RequestedDeploy {
    /// The deploy to queue at `at_ms` under `delivery_id` for `reason`, and
    /// its admission (commit order; no replay key, no request).
    pub fn to_run(
        &self,
        delivery_id: Option<String>,
        reason: String,
        at_ms: i64,
    ) -> (NewDeploy, Admission) {
        let deploy = NewDeploy {
            delivery_id,
            reason,
            created_at_ms: at_ms,
            ..self.deploy.clone()
        };
        let commit = deploy.sha.clone().map(|sha| CommitClaim {
            sha,
            before: self.before.clone(),
            forced: self.forced,
            sender_reports_forced: self.sender_reports_forced,
            requested: false,
            once: false,
        });
        (
            deploy,
            Admission {
                replay: None,
                commit,
                deployment_request: None,
            },
        )
    }
}

/// What redeploy did about a request GitHub refused or never took, or a
/// created deployment whose event never came.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RequestFallback {
    /// The push deployed directly, without a GitHub deployment.
    DeployedDirectly,
    /// Nothing deployed (`on_request_failure = "give-up"`).
    GaveUp,
    /// GitHub decided about the commit (409, 202 merged): nothing deployed.
    NotOverridden,
    /// The created deployment ran from the journal: its event never came.
    RanWithoutEvent,
    /// Nothing deployed: a later push of the stack deployed or is queued
    /// (running this older one would roll production back).
    Superseded,
}

impl RequestFallback {
    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestFallback::DeployedDirectly => "deployed-directly",
            RequestFallback::GaveUp => "gave-up",
            RequestFallback::NotOverridden => "not-overridden",
            RequestFallback::RanWithoutEvent => "ran-without-event",
            RequestFallback::Superseded => "superseded",
        }
    }

    pub(super) fn parse(s: &str) -> Option<RequestFallback> {
        Some(match s {
            "deployed-directly" => RequestFallback::DeployedDirectly,
            "gave-up" => RequestFallback::GaveUp,
            "not-overridden" => RequestFallback::NotOverridden,
            "ran-without-event" => RequestFallback::RanWithoutEvent,
            "superseded" => RequestFallback::Superseded,
            _ => return None,
        })
    }

    /// What it was, in words, for `history` and the dashboard; `deploy`
    /// is the deploy it ran, if any.
    pub fn describe(self, deploy: Option<i64>) -> String {
        let run = deploy.map_or_else(String::new, |id| format!(" as deploy #{id}"));
        match self {
            RequestFallback::DeployedDirectly => format!("deployed directly{run}"),
            RequestFallback::GaveUp => {
                "gave up: nothing deployed (on_request_failure = \"give-up\", or the stack \
                 has no [stacks.github])"
                    .to_owned()
            }
            RequestFallback::NotOverridden => {
                "not deployed: GitHub's decision about the commit is not overridden".to_owned()
            }
            RequestFallback::RanWithoutEvent => {
                format!("its deployment event never came: run from the journal{run}")
            }
            RequestFallback::Superseded => {
                "not deployed: a later push of the stack deployed first".to_owned()
            }
        }
    }

    /// The `action` label of `redeploy_github_request_fallbacks_total`.
    pub fn action(self) -> &'static str {
        match self {
            RequestFallback::DeployedDirectly => "deploy",
            RequestFallback::GaveUp => "give-up",
            RequestFallback::NotOverridden => "not-overridden",
            RequestFallback::RanWithoutEvent => "event-missing",
            RequestFallback::Superseded => "superseded",
        }
    }
}

/// A request the journal may have to act on, with the deploy it keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRequest {
    /// The request.
    pub request: DeploymentRequest,
    /// The deploy its push stands for.
    pub deploy: RequestedDeploy,
}

/// What [`Journal::fall_back`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FellBack {
    /// Recorded, with what the admission of the deploy did, if one was run
    /// ([`Admitted::Inserted`] with a new id: queue it).
    Recorded(Option<Admitted>),
    /// The created deployment's event got there first (its deploy): it is
    /// linked to the request and nothing else was done.
    EventArrived(i64),
    /// The request fell back already (another process, or a second look),
    /// or no longer needs it: nothing was written.
    AlreadyDone,
}

/// What a fallback runs: the deploy and its admission, and whether the
/// deploy reports to the request's (created) deployment.
pub struct FallbackRun<'a> {
    /// The deploy.
    pub deploy: &'a NewDeploy,
    /// Its admission.
    pub admission: &'a Admission,
    /// Link it to the request (its statuses go to the created deployment).
    pub link: bool,
}

fn open_requests(
    sql: &mut dyn Sql,
    condition: &str,
    bound: i64,
    after_id: i64,
) -> Result<Vec<OpenRequest>, DbError> {
    let rows = sql.query(
        &format!(
            "SELECT {REQUEST_COLUMNS}, deploy_json FROM github_deployment_requests r
             WHERE deploy_json IS NOT NULL AND fallback IS NULL AND id > ?3 AND {condition}
             ORDER BY id LIMIT ?2"
        ),
        args![bound, OPEN_REQUESTS_BATCH, after_id],
    )?;
    let mut open = Vec::with_capacity(rows.len());
    for row in &rows {
        let json: String = row.get(15)?;
        let deploy = serde_json::from_str(&json).map_err(|e| DbError::Decode {
            column: 15,
            problem: format!("the kept deploy: {e}"),
        })?;
        open.push(OpenRequest {
            request: request_from_row(row)?,
            deploy,
        });
    }
    Ok(open)
}

/// Whether a later push of request `request_id`'s stack deployed or is
/// queued: a deploy of the stack queued after the request was recorded,
/// other than the one its own deployment's event queued and those of older
/// requests (their event's deploy or their fallback's). Running the
/// request's push then could roll production back to an older commit.
fn superseded(sql: &mut dyn Sql, request_id: i64) -> Result<bool, DbError> {
    Ok(sql
        .query_opt(
            "SELECT 1 FROM github_deployment_requests r JOIN deploys d
                 ON d.stack = r.stack AND d.created_at_ms > r.created_at_ms
             WHERE r.id = ?1
               AND (d.delivery_id IS NULL OR r.deployment_id IS NULL
                    OR d.delivery_id <> 'github-deployment-' || CAST(r.deployment_id AS TEXT))
               AND NOT EXISTS (SELECT 1 FROM github_deployment_requests o
                   WHERE o.stack = r.stack AND o.id < r.id
                     AND (o.deploy_id = d.id OR o.fallback_deploy_id = d.id
                          OR d.delivery_id = 'github-deployment-' || CAST(o.deployment_id AS TEXT)))
             LIMIT 1",
            args![request_id],
        )?
        .is_some())
}

impl Journal {
    /// The request whose fallback ran deploy `deploy_id` directly (the push
    /// of a request that failed), if any.
    pub fn request_fallen_back_to(
        &self,
        deploy_id: i64,
    ) -> Result<Option<DeploymentRequest>, JournalError> {
        self.read("read the request a deploy fell back from", |sql| {
            sql.query_opt(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM github_deployment_requests
                     WHERE fallback_deploy_id = ?1 ORDER BY id LIMIT 1"
                ),
                args![deploy_id],
            )?
            .as_ref()
            .map(request_from_row)
            .transpose()
        })
    }

    /// Requests GitHub answered for good without a deployment, or that
    /// failed, whose push is kept and nothing was done about yet, oldest
    /// first, after request `after_id` (a page of at most
    /// [`OPEN_REQUESTS_BATCH`]). A `pending` request whose outbox row is
    /// settled (or gone) and that is older than `pending_by_ms` failed too:
    /// nothing will ever answer it.
    pub fn requests_to_fall_back(
        &self,
        after_id: i64,
        pending_by_ms: i64,
    ) -> Result<Vec<OpenRequest>, JournalError> {
        self.read("read failed deployment requests", |sql| {
            open_requests(
                sql,
                "(state IN ('failed','invalid','denied','conflict','merged')
                  OR (state = 'pending' AND created_at_ms <= ?1
                      AND NOT EXISTS (SELECT 1 FROM outbox o
                          WHERE o.kind = 'deployment' AND o.request_id = r.id
                          AND o.outcome IS NULL)))",
                pending_by_ms,
                after_id,
            )
        })
    }

    /// Created deployments whose push is kept, created at or before
    /// `created_by_ms`, that no deploy runs yet and whose `deployment`
    /// event never reached the dispatcher (nor did the journal run them),
    /// oldest first, after request `after_id` (a page of at most
    /// [`OPEN_REQUESTS_BATCH`]).
    pub fn requests_awaiting_event(
        &self,
        created_by_ms: i64,
        after_id: i64,
    ) -> Result<Vec<OpenRequest>, JournalError> {
        self.read("read deployments awaiting their event", |sql| {
            open_requests(
                sql,
                "state = 'created' AND deploy_id IS NULL AND deployment_id IS NOT NULL
                 AND event_seen_at_ms IS NULL AND updated_at_ms <= ?1
                 AND NOT EXISTS (SELECT 1 FROM deploys d WHERE d.stack = r.stack
                     AND d.delivery_id = 'github-deployment-' || CAST(r.deployment_id AS TEXT))",
                created_by_ms,
                after_id,
            )
        })
    }

    /// The push kept with the request of `stack` that created GitHub
    /// deployment `deployment_id`, if one is kept: what its `deployment`
    /// event's deploy is admitted in commit order by.
    pub fn kept_push_of_deployment(
        &self,
        stack: &str,
        deployment_id: u64,
    ) -> Result<Option<RequestedDeploy>, JournalError> {
        let deployment = i64::try_from(deployment_id).unwrap_or(i64::MAX);
        self.read("read the push of a deployment", |sql| {
            let Some(row) = sql.query_opt(
                "SELECT deploy_json FROM github_deployment_requests
                 WHERE stack = ?1 AND deployment_id = ?2 AND deploy_json IS NOT NULL
                 ORDER BY id LIMIT 1",
                args![stack, deployment],
            )?
            else {
                return Ok(None);
            };
            let json: String = row.get(0)?;
            serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| DbError::Decode {
                    column: 0,
                    problem: format!("the kept deploy: {e}"),
                })
        })
    }

    /// Records that a `deployment` event of GitHub deployment
    /// `deployment_id` of `stack` reached the dispatcher at `at_ms`,
    /// whatever the component decided: `event_wait` never runs it then.
    pub fn note_deployment_event(
        &self,
        stack: &str,
        deployment_id: u64,
        at_ms: i64,
    ) -> Result<(), JournalError> {
        let deployment = i64::try_from(deployment_id).unwrap_or(i64::MAX);
        self.write("note a deployment event", |sql| {
            sql.execute(
                "UPDATE github_deployment_requests SET event_seen_at_ms = ?3
                 WHERE stack = ?1 AND deployment_id = ?2 AND event_seen_at_ms IS NULL",
                args![stack, deployment, at_ms],
            )?;
            Ok(())
        })
    }

    /// Records `fallback` on request `request_id` and, with `run`, admits
    /// its deploy, in one transaction, once: a request that fell back
    /// already is [`FellBack::AlreadyDone`]. A run that links its deploy
    /// (a created deployment whose event never came) claims a request
    /// still `created` and unlinked; should the deployment's event have
    /// queued its deploy first, that deploy is linked instead and nothing
    /// else is done ([`FellBack::EventArrived`]). A linked deploy reports
    /// its states to the request's deployment.
    pub fn fall_back(
        &self,
        request_id: i64,
        fallback: RequestFallback,
        run: Option<FallbackRun<'_>>,
        at_ms: i64,
    ) -> Result<FellBack, JournalError> {
        self.write("fall back on a deployment request", |sql| {
            let Some(row) = sql.query_opt(
                "SELECT state, fallback, deploy_id FROM github_deployment_requests WHERE id = ?1",
                args![request_id],
            )?
            else {
                return Ok(FellBack::AlreadyDone);
            };
            let state: String = row.get(0)?;
            let done: Option<String> = row.get(1)?;
            let linked: Option<i64> = row.get(2)?;
            let link = run.as_ref().is_some_and(|r| r.link);
            if done.is_some() || (link && (state != "created" || linked.is_some())) {
                return Ok(FellBack::AlreadyDone);
            }
            let (fallback, run) = if run.is_some() && superseded(sql, request_id)? {
                (RequestFallback::Superseded, None)
            } else {
                (fallback, run)
            };
            let link = link && run.is_some();
            let admitted = match &run {
                Some(r) => Some(admit(sql, r.deploy, r.admission)?),
                None => None,
            };
            let deploy_id = match &admitted {
                Some(
                    Admitted::Inserted(Inserted::New(id) | Inserted::Duplicate(id))
                    | Admitted::Requested { deploy_id: id, .. }
                    | Admitted::SameCommit { deploy_id: id }
                    | Admitted::Older { deploy_id: id, .. },
                ) => Some(*id),
                Some(Admitted::Replayed { deploy_id, .. }) => *deploy_id,
                None => None,
            };
            if let (true, Some(Admitted::Inserted(Inserted::Duplicate(id)))) = (link, &admitted) {
                sql.execute(
                    "UPDATE github_deployment_requests SET deploy_id = ?2
                     WHERE id = ?1 AND deploy_id IS NULL",
                    args![request_id, id],
                )?;
                return Ok(FellBack::EventArrived(*id));
            }
            let claimed = sql.execute(
                "UPDATE github_deployment_requests
                 SET fallback = ?2, fallback_deploy_id = ?3, fallback_at_ms = ?4,
                     updated_at_ms = ?4
                 WHERE id = ?1 AND fallback IS NULL",
                args![request_id, fallback.as_str(), deploy_id, at_ms],
            )?;
            if claimed != 1 {
                // Serialized with every writer, so never; should it happen,
                // the transaction's deploy goes with it.
                return Err(DbError::Decode {
                    column: 0,
                    problem: format!("deployment request {request_id} fell back twice"),
                });
            }
            if let (true, Some(id)) = (link, deploy_id) {
                sql.execute(
                    "UPDATE github_deployment_requests SET deploy_id = ?2 WHERE id = ?1",
                    args![request_id, id],
                )?;
                queue_statuses_so_far(sql, id)?;
            }
            Ok(FellBack::Recorded(admitted))
        })
    }
}
