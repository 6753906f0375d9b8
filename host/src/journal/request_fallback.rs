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
use super::github::{request_from_row, DeploymentRequest, REQUEST_COLUMNS, REQUEST_COLUMN_COUNT};
use super::outbox::queue_statuses_so_far;
use super::sql::{args, DbError, Sql};
use super::{Admission, Admitted, CommitClaim, Inserted, Journal, JournalError, NewDeploy};

/// The most open requests one look reads (the rest are read by the next).
pub const OPEN_REQUESTS_BATCH: usize = 64;

/// The journal's dedupe key of a deploy run by GitHub deployment
/// `deployment_id`: one deploy per deployment, whether its `deployment`
/// event ran it or the journal did.
pub fn deployment_delivery_key(deployment_id: u64) -> String {
    format!("{DEPLOYMENT_KEY_PREFIX}{deployment_id}")
}

/// What [`deployment_delivery_key`] puts before the deployment's id. The
/// contract reserves it: the component takes no sender's delivery id
/// starting with it (`outcome.delivery`), so no push can take a
/// deployment's key.
pub const DEPLOYMENT_KEY_PREFIX: &str = "github-deployment-";

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
                image: None,
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
    /// How often its outbox row was claimed to be sent (each claim one
    /// try of the GitHub client, with its quick retries); `None` when the
    /// journal keeps no row of it (one imported from an export, or
    /// pruned), so whether it was ever sent is unknown.
    pub attempts: Option<i64>,
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
            "SELECT {REQUEST_COLUMNS}, deploy_json,
                    (SELECT MAX(o.attempts) FROM outbox o
                     WHERE o.kind = 'deployment' AND o.request_id = r.id)
             FROM github_deployment_requests r
             WHERE deploy_json IS NOT NULL AND fallback IS NULL AND id > ?3 AND {condition}
             ORDER BY id LIMIT ?2"
        ),
        args![bound, OPEN_REQUESTS_BATCH, after_id],
    )?;
    let mut open = Vec::with_capacity(rows.len());
    for row in &rows {
        let json: String = row.get(REQUEST_COLUMN_COUNT)?;
        let deploy = serde_json::from_str(&json).map_err(|e| DbError::Decode {
            column: REQUEST_COLUMN_COUNT,
            problem: format!("the kept deploy: {e}"),
        })?;
        open.push(OpenRequest {
            request: request_from_row(row)?,
            deploy,
            attempts: row.get(REQUEST_COLUMN_COUNT + 1)?,
        });
    }
    Ok(open)
}

/// Whether a later push of request `request_id`'s stack and lane (its ref
/// of its repository) deployed or is queued (another lane's deploys never
/// supersede it, as in the queue, [`crate::queue::Lane`]): a deploy of the
/// stack and lane queued after the request was recorded,
/// other than the one its own deployment's event queued and those of older
/// requests (their event's deploy or their fallback's), and those recorded
/// cancelled at once as an older commit (cancelled for an earlier deploy:
/// a late delivery of an older push is no later push). Running the
/// request's push then could roll production back to an older commit.
fn superseded(sql: &mut dyn Sql, request_id: i64) -> Result<bool, DbError> {
    Ok(sql
        .query_opt(
            "SELECT 1 FROM github_deployment_requests r JOIN deploys d
                 ON d.stack = r.stack AND d.created_at_ms > r.created_at_ms
                    AND d.git_ref IS NOT DISTINCT FROM r.git_ref
                    AND d.repository IS NOT DISTINCT FROM r.repository
             WHERE r.id = ?1
               AND NOT (d.superseded_by IS NOT NULL AND d.superseded_by < d.id)
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
    /// event's deploy (`deploy`) is admitted in commit order by, and takes
    /// its ref from. The event may come before GitHub's answer to the
    /// request is recorded (it is sent as the deployment is made): then the
    /// push kept with a request not yet answered, of the deploy's commit,
    /// services and profile, when every such request is of one lane (ref
    /// and repository).
    pub fn kept_push_of_deployment(
        &self,
        stack: &str,
        deployment_id: u64,
        deploy: &NewDeploy,
    ) -> Result<Option<RequestedDeploy>, JournalError> {
        let deployment = i64::try_from(deployment_id).unwrap_or(i64::MAX);
        self.read("read the push of a deployment", |sql| {
            let decode = |json: String| -> Result<RequestedDeploy, DbError> {
                serde_json::from_str(&json).map_err(|e| DbError::Decode {
                    column: 0,
                    problem: format!("the kept deploy: {e}"),
                })
            };
            if let Some(row) = sql.query_opt(
                "SELECT deploy_json FROM github_deployment_requests
                 WHERE stack = ?1 AND deployment_id = ?2 AND deploy_json IS NOT NULL
                 ORDER BY id LIMIT 1",
                args![stack, deployment],
            )? {
                return decode(row.get(0)?).map(Some);
            }
            let Some(sha) = &deploy.sha else {
                return Ok(None);
            };
            let rows = sql.query(
                "SELECT deploy_json FROM github_deployment_requests
                 WHERE stack = ?1 AND sha = ?2 AND deployment_id IS NULL
                   AND state = 'pending' AND deploy_json IS NOT NULL
                 ORDER BY id",
                args![stack, sha],
            )?;
            let mut found: Option<RequestedDeploy> = None;
            for row in &rows {
                let kept = decode(row.get(0)?)?;
                let same = kept.deploy.services == deploy.services
                    && kept.deploy.profile == deploy.profile;
                match &found {
                    _ if !same => {}
                    None => found = Some(kept),
                    Some(first) if first.deploy.lane() == kept.deploy.lane() => {}
                    // Two lanes pushed the commit: which one is not known.
                    Some(_) => return Ok(None),
                }
            }
            Ok(found)
        })
    }

    /// Records that request `request_id`, which failed (or is still
    /// `pending` with nothing left to answer it), did create GitHub
    /// deployment `deployment_id` after all: its last try reached GitHub
    /// and the answer was lost. The request becomes `created` with that
    /// deployment (no HTTP status: GitHub's answer is the one that was
    /// lost) and `detail`, as if the answer had come at `at_ms`: its
    /// `deployment` event runs it, or the journal once its stack's
    /// `event_wait` has passed from then. Only a request nothing was done
    /// about yet (no fallback, no deployment) is changed; false if
    /// request `request_id` is not such a request (any more).
    pub fn adopt_deployment(
        &self,
        request_id: i64,
        deployment_id: u64,
        detail: &str,
        at_ms: i64,
    ) -> Result<bool, JournalError> {
        self.write("adopt a GitHub deployment", |sql| {
            let adopted = sql.execute(
                "UPDATE github_deployment_requests
                 SET state = 'created', deployment_id = ?2, http_status = NULL, detail = ?3,
                     updated_at_ms = ?4
                 WHERE id = ?1 AND fallback IS NULL AND deployment_id IS NULL
                   AND state IN ('pending', 'failed')",
                args![request_id, deployment_id, detail, at_ms],
            )?;
            Ok(adopted == 1)
        })
    }

    /// Whether a request of `stack` made GitHub deployment
    /// `deployment_id`: one GitHub answered with it, or, should its event
    /// come before the answer is recorded, one of its commit `sha` not
    /// answered yet (nor fallen back). A manual trigger asks for a branch,
    /// whose commit the request does not know: an event of its deployment
    /// that comes before the answer is judged as foreign, and the answer's
    /// deployment is run by the journal once `event_wait` has passed. A
    /// `deployment` event's MAC cannot cover the id GitHub gives the
    /// deployment, so a copy of a payload redeploy made, onto a deployment
    /// someone else creates, carries a valid MAC: only this says the
    /// deployment is redeploy's own.
    pub fn deployment_requested(
        &self,
        stack: &str,
        deployment_id: u64,
        sha: Option<&str>,
    ) -> Result<bool, JournalError> {
        let deployment = i64::try_from(deployment_id).unwrap_or(i64::MAX);
        self.read("read whether a deployment was requested", |sql| {
            sql.query_one(
                "SELECT EXISTS (SELECT 1 FROM github_deployment_requests
                     WHERE stack = ?1 AND deployment_id = ?2)
                 OR EXISTS (SELECT 1 FROM github_deployment_requests
                     WHERE stack = ?1 AND deployment_id IS NULL AND state = 'pending'
                     AND fallback IS NULL AND sha = ?3)",
                args![stack, deployment, sha],
            )?
            .get(0)
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::journal::{
        Claim, NewDeploymentRequest, OutboxOutcome, RequestAnswer, RequestState, Settlement,
        OUTBOX_LEASE,
    };

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "redeploy-request-fallback-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            // Private whatever the umask: a state directory its group or
            // others may write is refused.
            std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn kept() -> RequestedDeploy {
        RequestedDeploy {
            deploy: NewDeploy {
                stack: "web".into(),
                delivery_id: Some("push-1".into()),
                provider: "github".into(),
                git_ref: Some("refs/heads/main".into()),
                sha: Some("1".repeat(40)),
                services: vec![],
                profile: None,
                reason: "push".into(),
                event_json: "{}".into(),
                created_at_ms: 5,
                pusher: None,
                repository: None,
            },
            before: None,
            forced: false,
            sender_reports_forced: true,
        }
    }

    #[test]
    fn a_failed_request_that_was_sent_is_adopted_once() {
        let dir = TempDir::new();
        let j = Journal::open(&Journal::path_in(&dir.0)).unwrap();
        let asked = NewDeploymentRequest {
            stack: "web".into(),
            delivery_id: Some("push-1".into()),
            deploy_id: None,
            git_ref: Some("refs/heads/main".into()),
            sha: Some("1".repeat(40)),
            request_json: "{}".into(),
            created_at_ms: 5,
            repository: None,
        };
        let Inserted::New(id) = j
            .insert_deployment_request_keeping(&asked, false, Some(&kept()))
            .unwrap()
        else {
            panic!("a new request")
        };
        // Sent once, and failed without an answer.
        assert!(j
            .take_lease(OUTBOX_LEASE, "me", std::time::Duration::from_secs(10))
            .unwrap());
        let row = j.outbox_due(0, i64::MAX / 4, 10).unwrap().remove(0);
        let claimed = j
            .claim_outbox_row(row.id, "me", std::time::Duration::from_secs(10), 6)
            .unwrap();
        assert_eq!(claimed, Claim::Claimed);
        let failed = Settlement {
            outcome: OutboxOutcome::Failed,
            detail: "unreachable".into(),
            answer: Some((
                id,
                RequestAnswer {
                    state: RequestState::Failed,
                    deployment_id: None,
                    http_status: None,
                    detail: "unreachable".into(),
                },
            )),
            report: None,
            at_ms: 7,
        };
        assert!(j.settle_outbox_row(row.id, &failed).unwrap());
        let open = j.requests_to_fall_back(0, 8).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].attempts, Some(1));

        assert!(j.adopt_deployment(id, 1000, "created (found)", 9).unwrap());
        let adopted = j.deployment_request(id).unwrap().unwrap();
        assert_eq!(
            (
                adopted.state,
                adopted.deployment_id,
                adopted.http_status,
                adopted.detail.as_deref(),
                adopted.updated_at_ms,
                adopted.fallback
            ),
            (
                RequestState::Created,
                Some(1000),
                None,
                Some("created (found)"),
                9,
                None
            )
        );
        // Once: not again, and no longer a request to fall back on, but a
        // created deployment awaiting its event from the adoption on.
        assert!(!j.adopt_deployment(id, 1001, "again", 10).unwrap());
        assert_eq!(
            j.deployment_request(id).unwrap().unwrap().deployment_id,
            Some(1000)
        );
        assert!(j.requests_to_fall_back(0, 11).unwrap().is_empty());
        assert!(j.requests_awaiting_event(8, 0).unwrap().is_empty());
        let awaiting = j.requests_awaiting_event(9, 0).unwrap();
        assert_eq!(awaiting.len(), 1);
        assert_eq!(awaiting[0].request.id, id);
        assert_eq!(j.request_of_deployment(1000).unwrap(), Some(id));
    }

    #[test]
    fn the_deployment_key_prefix_is_the_one_the_component_refuses_as_a_delivery_id() {
        assert_eq!(
            DEPLOYMENT_KEY_PREFIX,
            redeploy_plugin::evaluate::DEPLOYMENT_KEY_PREFIX
        );
    }
}
