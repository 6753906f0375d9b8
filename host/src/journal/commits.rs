//! The journal's reads of a stack's commit order (`stack_commits`, per
//! scope), for [`crate::commit_order`]'s pure rule: what the journal knows
//! of a commit in some scopes, the head, whether a commit is older for one
//! service, whether a push follows its lane, and the services of a lane's
//! waiting deploys that a deploy takes over. Used by the admission
//! (`super::admission`) and the claim's widening (`super::claim`).

use super::admission::CommitClaim;
use super::sql::{args, DbError, Sql, ToValue};
use super::{DeployState, NewDeploy};
use crate::commit_order::{self, Candidate, Head, Known, Scopes, Verdict};

/// Why `candidate` is older for `service` (`None`: the whole stack), if
/// it is: judged by that service's commits and the whole stack's alone
/// ([`commit_order::judge`]), neither its lane's nor another service's,
/// whose newest commit is no head of this one's.
pub(super) fn older_for(
    sql: &mut dyn Sql,
    stack: &str,
    candidate: &Candidate<'_>,
    service: Option<&str>,
) -> Result<Option<String>, DbError> {
    let scope = commit_order::service_scope(service);
    let group: Vec<&str> = match service {
        Some(_) => vec![scope.as_str(), commit_order::WHOLE_STACK],
        None => vec![commit_order::WHOLE_STACK],
    };
    let known = known_commits(sql, stack, candidate.sha, Some(&group))?;
    Ok(match commit_order::judge(candidate, &known) {
        Verdict::Older { reason, .. } => Some(match service {
            Some(service) => format!("{reason} (judged for service {service})"),
            None => format!("{reason} (judged for the whole stack)"),
        }),
        _ => None,
    })
}

/// Whether `d`'s push (of `commit`) starts from its lane's newest commit:
/// the latest move of its ref, and no late delivery.
pub(super) fn follows_lane(
    sql: &mut dyn Sql,
    d: &NewDeploy,
    scopes: &Scopes,
    commit: &CommitClaim,
) -> Result<bool, DbError> {
    let Some(lane) = scopes.lane() else {
        return Ok(false);
    };
    let lane = known_commits(sql, &d.stack, &commit.sha, Some(&[lane]))?;
    Ok(lane
        .head
        .is_some_and(|head| commit.before.as_deref() == Some(&head.sha)))
}

/// What [`commit_order::started_behind`] asks of `d`'s lane (`scopes`'s)
/// about `before`, the commit its push started from: that commit's newest
/// deploy of the lane, or of the commits found behind the lane's head,
/// and the lane's head: where its ref last moved to, so an operator's
/// redeploy of an earlier commit (provider [`crate::rollback::PROVIDER`],
/// the only deploys of that provider that name a commit), which moves no
/// ref, is none. `None` when `d` names no ref.
pub(super) fn lane_start(
    sql: &mut dyn Sql,
    stack: &str,
    before: &str,
    scopes: &Scopes,
) -> Result<Option<LaneStart>, DbError> {
    let (Some(lane), Some(behind)) = (scopes.lane(), scopes.behind()) else {
        return Ok(None);
    };
    let row = sql.query_one(
        "SELECT
             (SELECT MAX(+deploy_id) FROM stack_commits
                  WHERE stack = ?1 AND sha = ?2 AND scope IN (?3, ?4)),
             h.sha, h.deploy_id
         FROM (SELECT 1) AS one
         LEFT JOIN (SELECT sha, deploy_id FROM stack_commits c WHERE stack = ?1 AND scope = ?3
                    AND NOT EXISTS (SELECT 1 FROM deploys d
                                    WHERE d.id = c.deploy_id AND d.provider = ?5)
                    ORDER BY deploy_id DESC LIMIT 1) AS h ON TRUE",
        args![stack, before, lane, behind, crate::rollback::PROVIDER],
    )?;
    let head_sha: Option<String> = row.get(1)?;
    let head_deploy: Option<i64> = row.get(2)?;
    Ok(Some(LaneStart {
        before_seen: row.get(0)?,
        head: head_sha
            .zip(head_deploy)
            .map(|(sha, deploy_id)| Head { sha, deploy_id }),
    }))
}

/// What [`lane_start`] read of a lane.
pub(super) struct LaneStart {
    /// The newest deploy of the push's `before` in the lane (or found
    /// behind its head).
    pub before_seen: Option<i64>,
    /// Where the lane's ref last moved to.
    pub head: Option<Head>,
}

/// The services deploy `id` (`d`, of some services) deploys once it takes
/// over those of the deploys of its lane and profile waiting before it
/// ([`super::claim::widen_services`]), with the newest of those deploys;
/// `None` when it names them all already.
pub(super) fn lane_waiting(
    sql: &mut dyn Sql,
    d: &NewDeploy,
    id: i64,
) -> Result<Option<(Vec<String>, i64)>, DbError> {
    let lane = d.lane();
    let rows = sql.query(
        "SELECT services, id FROM deploys WHERE stack = ?1 AND state = ?2 AND id < ?3
         AND git_ref IS NOT DISTINCT FROM ?4 AND repository IS NOT DISTINCT FROM ?5
         AND profile IS NOT DISTINCT FROM ?6",
        args![
            d.stack,
            DeployState::Queued,
            id,
            lane.git_ref,
            lane.repository,
            d.profile
        ],
    )?;
    let mut waiting = Vec::with_capacity(rows.len());
    let mut newest = 0;
    for row in &rows {
        waiting.push(super::claim::services_of(&row.get::<String>(0)?)?);
        newest = newest.max(row.get::<i64>(1)?);
    }
    let widened = crate::queue::union(&d.services, waiting.iter().map(Vec::as_slice));
    Ok(widened.map(|services| (services, newest)))
}

/// The head of `stack`: the commit of its newest accepted deploy, of any
/// scope (but the commits found behind a lane's head, [`commit_order::BEHIND`]).
pub(super) fn head(sql: &mut dyn Sql, stack: &str) -> Result<Option<Head>, DbError> {
    sql.query_opt(
        "SELECT sha, deploy_id FROM stack_commits WHERE stack = ?1
         AND scope NOT LIKE 'behind %'
         ORDER BY deploy_id DESC LIMIT 1",
        args![stack],
    )?
    .map(|row| {
        Ok(Head {
            sha: row.get(0)?,
            deploy_id: row.get(1)?,
        })
    })
    .transpose()
}

/// A derived table (`AS heads`) of the newest commit of each of `count`
/// scopes of stack `?1`, the scopes bound from `?{first}` on: one search of
/// the (stack, scope, deploy_id) index each, where one search of them all
/// would read every commit they ever deployed to sort them.
fn newest_of_each(count: usize, first: usize) -> String {
    let each: Vec<String> = (first..first + count)
        .map(|at| {
            format!(
                "SELECT sha, deploy_id FROM (SELECT sha, deploy_id FROM stack_commits
                     WHERE stack = ?1 AND scope = ?{at}
                     ORDER BY deploy_id DESC LIMIT 1) AS k{at}"
            )
        })
        .collect();
    format!("({}) AS heads", each.join(" UNION ALL "))
}

/// [`known_commits`]'s statement (`?1` the stack, `?2` the commit): one
/// statement (one round trip to a database server) for the candidate's
/// newest deploy, the newest commit pushed on top of it, and the head,
/// each read from an index (`stack_commits_before_newest`, schema 20, for
/// the second: the table keeps every commit a stack ever deployed). Of
/// every scope's commits (but those found behind a lane's head, which say
/// only that a commit is older: [`commit_order::BEHIND`]), for a deploy of
/// the whole stack. (`+deploy_id`:
/// the candidate's rows are found by (stack, sha), not by walking the
/// stack's commits newest first for them.)
pub(super) const KNOWN_COMMITS: &str = "SELECT
         (SELECT MAX(+deploy_id) FROM stack_commits WHERE stack = ?1 AND sha = ?2),
         p.sha, p.deploy_id, h.sha, h.deploy_id
     FROM (SELECT 1) AS one
     LEFT JOIN (SELECT sha, deploy_id FROM stack_commits
                WHERE stack = ?1 AND before_sha = ?2 AND scope NOT LIKE 'behind %'
                ORDER BY deploy_id DESC LIMIT 1) AS p ON TRUE
     LEFT JOIN (SELECT sha, deploy_id FROM stack_commits
                WHERE stack = ?1 AND scope NOT LIKE 'behind %'
                ORDER BY deploy_id DESC LIMIT 1) AS h ON TRUE";

/// [`KNOWN_COMMITS`] of the commits of `count` scopes (bound from `?3` on,
/// [`Scopes::judged_by`]), for a deploy of some services.
pub(super) fn known_commits_of(count: usize) -> String {
    let scopes: Vec<String> = (3..3 + count).map(|at| format!("?{at}")).collect();
    let scopes = scopes.join(", ");
    format!(
        "SELECT
             (SELECT MAX(+deploy_id) FROM stack_commits
                  WHERE stack = ?1 AND sha = ?2 AND scope IN ({scopes})),
             p.sha, p.deploy_id, h.sha, h.deploy_id
         FROM (SELECT 1) AS one
         LEFT JOIN (SELECT sha, deploy_id FROM stack_commits
                    WHERE stack = ?1 AND before_sha = ?2 AND scope IN ({scopes})
                    ORDER BY deploy_id DESC LIMIT 1) AS p ON TRUE
         LEFT JOIN (SELECT sha, deploy_id FROM {}
                    ORDER BY deploy_id DESC LIMIT 1) AS h ON TRUE",
        newest_of_each(count, 3)
    )
}

/// What the journal knows of `stack`'s commits as far as `sha` goes, of
/// the scopes `judged_by` ([`Scopes::judged_by`]; `None`: every scope's).
pub(super) fn known_commits(
    sql: &mut dyn Sql,
    stack: &str,
    sha: &str,
    judged_by: Option<&[&str]>,
) -> Result<Known, DbError> {
    let row = match judged_by {
        None => sql.query_one(KNOWN_COMMITS, args![stack, sha])?,
        Some(scopes) => {
            let mut params = args![stack, sha].to_vec();
            params.extend(scopes.iter().map(ToValue::to_value));
            sql.query_one(&known_commits_of(scopes.len()), &params)?
        }
    };
    let pair = |at: usize| -> Result<Option<(String, i64)>, DbError> {
        let sha: Option<String> = row.get(at)?;
        let deploy: Option<i64> = row.get(at + 1)?;
        Ok(sha.zip(deploy))
    };
    Ok(Known {
        seen: row.get(0)?,
        precedes: pair(1)?,
        head: pair(3)?.map(|(sha, deploy_id)| Head { sha, deploy_id }),
    })
}
