//! The journal's record of GitHub continuous deployment: each deployment
//! redeploy asked GitHub to create (and what GitHub answered), each status
//! and callback it reported, and the server's own keys.

use rusqlite::{params, OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;

use super::{sql_limit, Inserted, Journal, JournalError};

/// Schema version 2: GitHub deployment requests, reports, server keys.
pub(super) const SCHEMA_V2: &str = "
CREATE TABLE github_deployment_requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    stack         TEXT NOT NULL,
    delivery_id   TEXT,
    deploy_id     INTEGER REFERENCES deploys(id),
    git_ref       TEXT,
    sha           TEXT,
    request_json  TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN
                      ('pending','created','merged','conflict','invalid','denied','failed')),
    deployment_id INTEGER,
    http_status   INTEGER,
    detail        TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX github_requests_stack_delivery
    ON github_deployment_requests (stack, delivery_id) WHERE delivery_id IS NOT NULL;
CREATE INDEX github_requests_state ON github_deployment_requests (state, id);
CREATE INDEX github_requests_deploy ON github_deployment_requests (deploy_id);
CREATE TABLE reports (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    deploy_id INTEGER NOT NULL REFERENCES deploys(id) ON DELETE CASCADE,
    target    TEXT NOT NULL,
    state     TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);
CREATE INDEX reports_deploy ON reports (deploy_id, id);
CREATE TABLE server_keys (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
";

/// What became of a request to create a GitHub deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestState {
    /// Not sent yet, or sending (retried at start).
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
}

const REQUEST_COLUMNS: &str = "id, stack, delivery_id, deploy_id, git_ref, sha, request_json, \
     state, deployment_id, http_status, detail, created_at_ms, updated_at_ms";

fn request_from_row(row: &Row<'_>) -> rusqlite::Result<DeploymentRequest> {
    let state: String = row.get(7)?;
    Ok(DeploymentRequest {
        id: row.get(0)?,
        asked: NewDeploymentRequest {
            stack: row.get(1)?,
            delivery_id: row.get(2)?,
            deploy_id: row.get(3)?,
            git_ref: row.get(4)?,
            sha: row.get(5)?,
            request_json: row.get(6)?,
            created_at_ms: row.get(11)?,
        },
        state: RequestState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                7,
                rusqlite::types::Type::Text,
                format!("unknown request state {state:?}").into(),
            )
        })?,
        deployment_id: row.get::<_, Option<i64>>(8)?.map(|v| v as u64),
        http_status: row.get(9)?,
        detail: row.get(10)?,
        updated_at_ms: row.get(12)?,
    })
}

impl Journal {
    /// Records a deployment request as pending. A request for the same
    /// (stack, delivery id) is recorded once: [`Inserted::Duplicate`].
    pub fn insert_deployment_request(
        &self,
        r: &NewDeploymentRequest,
    ) -> Result<Inserted, JournalError> {
        let mut conn = self.lock();
        (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(delivery) = &r.delivery_id {
                let existing: Option<i64> = tx
                    .prepare_cached(
                        "SELECT id FROM github_deployment_requests
                         WHERE stack = ?1 AND delivery_id = ?2",
                    )?
                    .query_row(params![r.stack, delivery], |row| row.get(0))
                    .optional()?;
                if let Some(id) = existing {
                    return Ok(Inserted::Duplicate(id));
                }
            }
            tx.prepare_cached(
                "INSERT INTO github_deployment_requests
                     (stack, delivery_id, deploy_id, git_ref, sha, request_json, state,
                      created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
            )?
            .execute(params![
                r.stack,
                r.delivery_id,
                r.deploy_id,
                r.git_ref,
                r.sha,
                r.request_json,
                r.created_at_ms
            ])?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(Inserted::New(id))
        })()
        .map_err(self.err("insert deployment request"))
    }

    /// One deployment request.
    pub fn deployment_request(&self, id: i64) -> Result<Option<DeploymentRequest>, JournalError> {
        let conn = self.lock();
        conn.prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM github_deployment_requests WHERE id = ?1"
        ))
        .and_then(|mut s| s.query_row([id], request_from_row).optional())
        .map_err(self.err("read deployment request"))
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
        let conn = self.lock();
        conn.prepare_cached(
            "UPDATE github_deployment_requests
             SET state = ?2, deployment_id = ?3, http_status = ?4, detail = ?5, updated_at_ms = ?6
             WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.execute(params![
                id,
                state.as_str(),
                deployment_id.map(|v| v as i64),
                http_status,
                detail,
                at_ms
            ])
        })
        .map(|_| ())
        .map_err(self.err("settle deployment request"))
    }

    /// Requests of `stack` (or all) most recent first, at most `limit`.
    pub fn deployment_requests(
        &self,
        stack: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeploymentRequest>, JournalError> {
        let conn = self.lock();
        (|| {
            let mut s = conn.prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM github_deployment_requests
                 WHERE ?1 IS NULL OR stack = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = s.query_map(params![stack, sql_limit(limit)], request_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(self.err("read deployment requests"))
    }

    /// Pending requests of `stack` (or all), oldest first.
    pub fn pending_deployment_requests(
        &self,
        stack: Option<&str>,
    ) -> Result<Vec<DeploymentRequest>, JournalError> {
        let conn = self.lock();
        (|| {
            let mut s = conn.prepare_cached(&format!(
                "SELECT {REQUEST_COLUMNS} FROM github_deployment_requests
                 WHERE state = 'pending' AND (?1 IS NULL OR stack = ?1) ORDER BY id"
            ))?;
            let rows = s.query_map(params![stack], request_from_row)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(self.err("read pending deployment requests"))
    }

    /// The request that a directly-run deploy reports to, if any.
    pub fn request_of_deploy(
        &self,
        deploy_id: i64,
    ) -> Result<Option<DeploymentRequest>, JournalError> {
        let conn = self.lock();
        conn.prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM github_deployment_requests
             WHERE deploy_id = ?1 ORDER BY id DESC LIMIT 1"
        ))
        .and_then(|mut s| s.query_row([deploy_id], request_from_row).optional())
        .map_err(self.err("read deployment request of a deploy"))
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
        let conn = self.lock();
        conn.prepare_cached(
            "INSERT INTO reports (deploy_id, target, state, outcome, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .and_then(|mut s| s.execute(params![deploy_id, target, state, outcome, at_ms]))
        .map(|_| ())
        .map_err(self.err("record report"))
    }

    /// The reports of a deploy, oldest first: (target, state, outcome).
    pub fn reports(&self, deploy_id: i64) -> Result<Vec<(String, String, String)>, JournalError> {
        let conn = self.lock();
        (|| {
            let mut s = conn.prepare_cached(
                "SELECT target, state, outcome FROM reports WHERE deploy_id = ?1 ORDER BY id",
            )?;
            let rows = s.query_map([deploy_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })()
        .map_err(self.err("read reports"))
    }

    /// The server key `name`, storing `candidate` first if there is none.
    /// The journal file is mode 0600: keys are as private as hook tokens.
    pub fn ensure_server_key(&self, name: &str, candidate: &str) -> Result<String, JournalError> {
        let mut conn = self.lock();
        (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached("INSERT OR IGNORE INTO server_keys (name, value) VALUES (?1, ?2)")?
                .execute(params![name, candidate])?;
            let value: String = tx
                .prepare_cached("SELECT value FROM server_keys WHERE name = ?1")?
                .query_row([name], |r| r.get(0))?;
            tx.commit()?;
            Ok(value)
        })()
        .map_err(self.err("read or store a server key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> (tempdir::Dir, Journal) {
        let dir = tempdir::Dir::new();
        let j = Journal::open(&dir.0.join("j.sqlite3")).unwrap();
        (dir, j)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let p = std::env::temp_dir().join(format!(
                    "redeploy-journal-github-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn request(delivery: Option<&str>) -> NewDeploymentRequest {
        NewDeploymentRequest {
            stack: "web".into(),
            delivery_id: delivery.map(str::to_string),
            deploy_id: None,
            git_ref: Some("refs/heads/main".into()),
            sha: Some("a".repeat(40)),
            request_json: "{}".into(),
            created_at_ms: 5,
        }
    }

    #[test]
    fn requests_are_recorded_once_per_delivery_and_settled() {
        let (_d, j) = journal();
        let Inserted::New(id) = j.insert_deployment_request(&request(Some("d1"))).unwrap() else {
            panic!("expected a new request")
        };
        assert_eq!(
            j.insert_deployment_request(&request(Some("d1"))).unwrap(),
            Inserted::Duplicate(id)
        );
        assert!(matches!(
            j.insert_deployment_request(&request(None)).unwrap(),
            Inserted::New(_)
        ));
        assert_eq!(j.pending_deployment_requests(Some("web")).unwrap().len(), 2);
        j.settle_deployment_request(
            id,
            RequestState::Conflict,
            None,
            Some(409),
            Some("Conflict"),
            9,
        )
        .unwrap();
        let r = j.deployment_request(id).unwrap().unwrap();
        assert_eq!(
            (r.state, r.http_status, r.detail.as_deref(), r.updated_at_ms),
            (RequestState::Conflict, Some(409), Some("Conflict"), 9)
        );
        assert_eq!(j.pending_deployment_requests(None).unwrap().len(), 1);
        assert_eq!(
            j.pending_deployment_requests(Some("other")).unwrap().len(),
            0
        );
    }

    #[test]
    fn server_keys_are_kept_once_stored() {
        let (_d, j) = journal();
        assert_eq!(j.ensure_server_key("log", "first").unwrap(), "first");
        assert_eq!(j.ensure_server_key("log", "second").unwrap(), "first");
    }
}
