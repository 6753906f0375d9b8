//! The journal's record of GitHub continuous deployment: each deployment
//! redeploy asked GitHub to create (and what GitHub answered), each status
//! and callback it reported, and the server's own keys. What is still to
//! be sent is the outbox's ([`super::outbox`]).

use serde::Serialize;

use super::request_fallback::{RequestFallback, RequestedDeploy};
use super::sql::{args, DbError, Rec, Sql};
use super::{Inserted, Journal, JournalError};

/// What became of a request to create a GitHub deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Not sent yet, or being sent: its outbox row waits for the sender.
    Pending,
    /// GitHub created the deployment (`deployment_id`).
    Created,
    /// 202: GitHub merged the default branch into the ref; no deployment.
    Merged,
    /// 409: merge conflict or failed required status checks; no deployment.
    Conflict,
    /// 422: GitHub refused the request as invalid; no deployment.
    Invalid,
    /// 401/403/404: the token cannot create deployments in the repository.
    Denied,
    /// GitHub could not be reached, or stayed rate limited, after retries.
    Failed,
}

impl RequestState {
    /// The name stored in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Created => "created",
            RequestState::Merged => "merged",
            RequestState::Conflict => "conflict",
            RequestState::Invalid => "invalid",
            RequestState::Denied => "denied",
            RequestState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Option<RequestState> {
        Some(match s {
            "pending" => RequestState::Pending,
            "created" => RequestState::Created,
            "merged" => RequestState::Merged,
            "conflict" => RequestState::Conflict,
            "invalid" => RequestState::Invalid,
            "denied" => RequestState::Denied,
            "failed" => RequestState::Failed,
            _ => return None,
        })
    }
}

/// A deployment request to record (and, in a [`DeploymentRequest`], what
/// was recorded).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewDeploymentRequest {
    /// The stack.
    pub stack: String,
    /// The delivery that caused it (redeliveries are recorded once).
    pub delivery_id: Option<String>,
    /// The deploy that runs directly and reports to the deployment
    /// (`wait_for_event = false`); `None` when the `deployment` event deploys.
    pub deploy_id: Option<i64>,
    /// The ref pushed.
    pub git_ref: Option<String>,
    /// The repository of the ref pushed, as the push named it: with the
    /// ref, the lane whose later pushes supersede the request
    /// ([`crate::queue::Lane`]).
    pub repository: Option<String>,
    /// The commit pushed.
    pub sha: Option<String>,
    /// The request body the plugin generated.
    pub request_json: String,
    /// When (ms since the epoch).
    pub created_at_ms: i64,
}

/// A recorded deployment request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeploymentRequest {
    /// Row id.
    pub id: i64,
    /// What was recorded (stack, delivery, deploy, ref, commit, body, time).
    #[serde(flatten)]
    pub asked: NewDeploymentRequest,
    /// Where it stands.
    pub state: RequestState,
    /// GitHub's deployment id, once created.
    pub deployment_id: Option<u64>,
    /// GitHub's last HTTP status, when it answered.
    pub http_status: Option<u16>,
    /// GitHub's message or the failure.
    pub detail: Option<String>,
    /// When it last changed.
    pub updated_at_ms: i64,
    /// What redeploy did once GitHub refused the request, never took it,
    /// or never sent the created deployment's event; `None` while nothing
    /// was done (or nothing needs doing).
    pub fallback: Option<RequestFallback>,
    /// The deploy redeploy ran then, if it ran one.
    pub fallback_deploy_id: Option<i64>,
}

pub(super) const REQUEST_COLUMNS: &str = "id, stack, delivery_id, deploy_id, git_ref, sha, \
     request_json, state, deployment_id, http_status, detail, created_at_ms, updated_at_ms, \
     fallback, fallback_deploy_id, repository";

/// How many columns [`REQUEST_COLUMNS`] names: a query that selects more
/// after them reads those from this index on.
pub(super) const REQUEST_COLUMN_COUNT: usize = 16;

pub(super) fn request_from_row(row: &Rec) -> Result<DeploymentRequest, DbError> {
    let state: String = row.get(7)?;
    let fallback: Option<String> = row.get(13)?;
    Ok(DeploymentRequest {
        id: row.get(0)?,
        asked: NewDeploymentRequest {
            stack: row.get(1)?,
            delivery_id: row.get(2)?,
            deploy_id: row.get(3)?,
            git_ref: row.get(4)?,
            repository: row.get(15)?,
            sha: row.get(5)?,
            request_json: row.get(6)?,
            created_at_ms: row.get(11)?,
        },
        state: RequestState::parse(&state).ok_or_else(|| DbError::Decode {
            column: 7,
            problem: format!("unknown request state {state:?}"),
        })?,
        deployment_id: row.get::<Option<i64>>(8)?.map(|v| v as u64),
        http_status: row.get(9)?,
        detail: row.get(10)?,
        updated_at_ms: row.get(12)?,
        fallback: fallback
            .map(|f| {
                RequestFallback::parse(&f).ok_or_else(|| DbError::Decode {
                    column: 13,
                    problem: format!("unknown request fallback {f:?}"),
                })
            })
            .transpose()?,
        fallback_deploy_id: row.get(14)?,
    })
}

/// A deployment request to record with the deploy that reports to it
/// ([`super::Admission::deployment_request`], GitHub continuous deployment
/// with `wait_for_event = false`): a [`NewDeploymentRequest`] but for the
/// stack and the deploy id, which are the deploy's, known only inside the
/// transaction that inserts it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentRequestClaim {
    /// The delivery that caused it (redeliveries are recorded once).
    pub delivery_id: Option<String>,
    /// The ref pushed.
    pub git_ref: Option<String>,
    /// The repository of the ref pushed.
    pub repository: Option<String>,
    /// The commit pushed.
    pub sha: Option<String>,
    /// The request body the plugin generated.
    pub request_json: String,
    /// When (ms since the epoch).
    pub created_at_ms: i64,
}

impl DeploymentRequestClaim {
    /// The request for deploy `deploy_id` of `stack`.
    pub fn for_deploy(&self, stack: &str, deploy_id: i64) -> NewDeploymentRequest {
        NewDeploymentRequest {
            stack: stack.to_string(),
            delivery_id: self.delivery_id.clone(),
            deploy_id: Some(deploy_id),
            git_ref: self.git_ref.clone(),
            repository: self.repository.clone(),
            sha: self.sha.clone(),
            request_json: self.request_json.clone(),
            created_at_ms: self.created_at_ms,
        }
    }
}

/// [`Journal::insert_deployment_request`] inside the caller's transaction
/// (also [`Journal::admit_deploy`]'s, for a deploy that reports to it).
pub(super) fn insert_request_in(
    sql: &mut dyn Sql,
    r: &NewDeploymentRequest,
) -> Result<Inserted, DbError> {
    if let Some(delivery) = &r.delivery_id {
        let existing = sql.query_opt(
            "SELECT id FROM github_deployment_requests
             WHERE stack = ?1 AND delivery_id = ?2",
            args![r.stack, delivery],
        )?;
        if let Some(row) = existing {
            return Ok(Inserted::Duplicate(row.get(0)?));
        }
    }
    let id = sql.insert_one_id(
        "INSERT INTO github_deployment_requests
             (stack, delivery_id, deploy_id, git_ref, sha, request_json, state,
              created_at_ms, updated_at_ms, repository)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7, ?8)",
        args![
            r.stack,
            r.delivery_id,
            r.deploy_id,
            r.git_ref,
            r.sha,
            r.request_json,
            r.created_at_ms,
            r.repository
        ],
    )?;
    super::outbox::queue_for_request(sql, id, r)?;
    Ok(Inserted::New(id))
}

impl Journal {
    /// Records a deployment request as pending, with its outbox row (and,
    /// for a deploy that reports to it, the status rows of the states that
    /// deploy was in), in one transaction. A request for the same (stack,
    /// delivery id) is recorded once: [`Inserted::Duplicate`].
    pub fn insert_deployment_request(
        &self,
        r: &NewDeploymentRequest,
    ) -> Result<Inserted, JournalError> {
        self.insert_deployment_request_for(r, false)
    }

    /// [`Journal::insert_deployment_request`], and with `once_per_commit`
    /// (a stack that polls and is pushed to, which sees each push twice) a
    /// request for the commit the stack last asked about for the same ref
    /// is also [`Inserted::Duplicate`] (of that request), whichever
    /// repository it names (a poll names the repository as the stack does,
    /// a forge's push as the forge does). A commit asked about before
    /// another one of the ref is asked about again: the ref moved back to
    /// it (a forced push), and the commit order judges its deploy.
    pub fn insert_deployment_request_for(
        &self,
        r: &NewDeploymentRequest,
        once_per_commit: bool,
    ) -> Result<Inserted, JournalError> {
        self.insert_deployment_request_keeping(r, once_per_commit, None)
    }

    /// [`Journal::insert_deployment_request_for`], keeping with a new
    /// request the deploy its push stands for (`deploy`, a stack that waits
    /// for the `deployment` event), which the journal runs itself should
    /// the request fail or its event never come
    /// ([`Journal::fall_back`]).
    pub fn insert_deployment_request_keeping(
        &self,
        r: &NewDeploymentRequest,
        once_per_commit: bool,
        deploy: Option<&RequestedDeploy>,
    ) -> Result<Inserted, JournalError> {
        self.write("insert deployment request", |sql| {
            let deploy_json =
                deploy
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| DbError::Decode {
                        column: 0,
                        problem: format!("the deploy to keep: {e}"),
                    })?;
            let inserted = insert_once(sql, r, once_per_commit)?;
            if let (Inserted::New(id), Some(json)) = (inserted, &deploy_json) {
                sql.execute(
                    "UPDATE github_deployment_requests SET deploy_json = ?2 WHERE id = ?1",
                    args![id, json],
                )?;
            }
            Ok(inserted)
        })
    }
}

/// [`Journal::insert_deployment_request_for`] inside its transaction.
fn insert_once(
    sql: &mut dyn Sql,
    r: &NewDeploymentRequest,
    once_per_commit: bool,
) -> Result<Inserted, DbError> {
    if let (true, Some(sha)) = (once_per_commit, &r.sha) {
        let last = sql.query_opt(
            "SELECT id, sha FROM github_deployment_requests
             WHERE stack = ?1 AND git_ref IS NOT DISTINCT FROM ?2
             ORDER BY id DESC LIMIT 1",
            args![r.stack, r.git_ref],
        )?;
        if let Some(row) = last {
            if row.get::<Option<String>>(1)?.as_deref() == Some(sha.as_str()) {
                return Ok(Inserted::Duplicate(row.get(0)?));
            }
        }
    }
    insert_request_in(sql, r)
}

impl Journal {
    /// One deployment request.
    pub fn deployment_request(&self, id: i64) -> Result<Option<DeploymentRequest>, JournalError> {
        self.read("read deployment request", |sql| {
            sql.query_opt(
                &format!("SELECT {REQUEST_COLUMNS} FROM github_deployment_requests WHERE id = ?1"),
                args![id],
            )?
            .as_ref()
            .map(request_from_row)
            .transpose()
        })
    }

    /// Records GitHub's answer to a deployment request.
    pub fn settle_deployment_request(
        &self,
        id: i64,
        state: RequestState,
        deployment_id: Option<u64>,
        http_status: Option<u16>,
        detail: Option<&str>,
        at_ms: i64,
    ) -> Result<(), JournalError> {
        self.write("settle deployment request", |sql| {
            sql.execute(
                "UPDATE github_deployment_requests
                 SET state = ?2, deployment_id = ?3, http_status = ?4, detail = ?5,
                     updated_at_ms = ?6
                 WHERE id = ?1",
                args![
                    id,
                    state.as_str(),
                    deployment_id,
                    http_status,
                    detail,
                    at_ms
                ],
            )?;
            Ok(())
        })
    }

    /// Requests of `stack` (or all) most recent first, at most `limit`.
    pub fn deployment_requests(
        &self,
        stack: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeploymentRequest>, JournalError> {
        self.read("read deployment requests", |sql| {
            sql.query(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM github_deployment_requests
                     WHERE CAST(?1 AS TEXT) IS NULL OR stack = ?1 ORDER BY id DESC LIMIT ?2"
                ),
                args![stack, limit],
            )?
            .iter()
            .map(request_from_row)
            .collect()
        })
    }

    /// Pending requests of `stack` (or all), oldest first.
    pub fn pending_deployment_requests(
        &self,
        stack: Option<&str>,
    ) -> Result<Vec<DeploymentRequest>, JournalError> {
        self.read("read pending deployment requests", |sql| {
            sql.query(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM github_deployment_requests
                     WHERE state = 'pending' AND (CAST(?1 AS TEXT) IS NULL OR stack = ?1) ORDER BY id"
                ),
                args![stack],
            )?
            .iter()
            .map(request_from_row)
            .collect()
        })
    }

    /// The request that a directly-run deploy reports to, if any.
    pub fn request_of_deploy(
        &self,
        deploy_id: i64,
    ) -> Result<Option<DeploymentRequest>, JournalError> {
        self.read("read deployment request of a deploy", |sql| {
            sql.query_opt(
                &format!(
                    "SELECT {REQUEST_COLUMNS} FROM github_deployment_requests
                     WHERE deploy_id = ?1 ORDER BY id DESC LIMIT 1"
                ),
                args![deploy_id],
            )?
            .as_ref()
            .map(request_from_row)
            .transpose()
        })
    }

    /// The request GitHub deployment `deployment_id` is recorded on (the
    /// oldest, should there be several), if any.
    pub fn request_of_deployment(&self, deployment_id: u64) -> Result<Option<i64>, JournalError> {
        self.read("read the request of a GitHub deployment", |sql| {
            sql.query_opt(
                "SELECT id FROM github_deployment_requests
                 WHERE deployment_id = ?1 ORDER BY id LIMIT 1",
                args![deployment_id],
            )?
            .map(|row| row.get(0))
            .transpose()
        })
    }

    /// Records one report of a deploy's state to `target` (`github` or
    /// `docker-hub`) and how it went.
    pub fn record_report(
        &self,
        deploy_id: i64,
        target: &str,
        state: &str,
        outcome: &str,
        at_ms: i64,
    ) -> Result<(), JournalError> {
        self.append("record report", |sql| {
            sql.execute(
                "INSERT INTO reports (deploy_id, target, state, outcome, at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                args![deploy_id, target, state, outcome, at_ms],
            )?;
            Ok(())
        })
    }

    /// The reports of a deploy, oldest first: (target, state, outcome).
    pub fn reports(&self, deploy_id: i64) -> Result<Vec<(String, String, String)>, JournalError> {
        self.read("read reports", |sql| {
            sql.query(
                "SELECT target, state, outcome FROM reports WHERE deploy_id = ?1 ORDER BY id",
                args![deploy_id],
            )?
            .iter()
            .map(|r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .collect()
        })
    }

    /// The server key `name`, storing `candidate` first if there is none.
    /// Keys are as private as hook tokens (a SQLite journal is mode 0600).
    pub fn ensure_server_key(&self, name: &str, candidate: &str) -> Result<String, JournalError> {
        self.write("read or store a server key", |sql| {
            sql.execute(
                "INSERT INTO server_keys (name, value) VALUES (?1, ?2)
                 ON CONFLICT (name) DO NOTHING",
                args![name, candidate],
            )?;
            sql.query_one("SELECT value FROM server_keys WHERE name = ?1", args![name])?
                .get(0)
        })
    }
}
