-- Schema version 22: the commit order per service and per lane.
-- `stack_commits` kept one row per (stack, commit): a commit one service
-- deployed was "seen" for the whole stack, so a stack whose services
-- follow different branches refused a push of `main` to a commit
-- `develop`'s service had deployed (a merge by fast-forward) as older, and
-- `web` never got it.
--
-- * `scope`: whose commit it is (`commit_order::Scopes`): `service NAME`,
--   one row for each of a deploy's services; `''` for a deploy of the
--   whole stack (one that names no service), which counts for every
--   service; and `ref REF REPOSITORY`, the deploy's lane, so that within a
--   lane (whose deploys the queue orders by id) a commit admitted later is
--   never an older one. A deploy of some services is judged by their
--   rows, the whole stack's and its lane's (`journal/admission.rs`); one of
--   the whole stack by every row.
-- * The primary key becomes (stack, sha, scope); the head of each scope is
--   read from (stack, scope, deploy_id).
--
-- The rows kept so far become the whole stack's: what was older for the
-- stack stays older for each of its services.
CREATE TABLE stack_commits_per_scope (
    stack       TEXT NOT NULL,
    sha         TEXT NOT NULL,
    before_sha  TEXT,
    deploy_id   INTEGER NOT NULL,
    seen_at_ms  INTEGER NOT NULL,
    scope       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (stack, sha, scope)
);
INSERT INTO stack_commits_per_scope (stack, sha, before_sha, deploy_id, seen_at_ms, scope)
    SELECT stack, sha, before_sha, deploy_id, seen_at_ms, '' FROM stack_commits;
DROP TABLE stack_commits;
ALTER TABLE stack_commits_per_scope RENAME TO stack_commits;
CREATE INDEX stack_commits_head ON stack_commits (stack, deploy_id);
CREATE INDEX stack_commits_scope_head ON stack_commits (stack, scope, deploy_id);
CREATE INDEX stack_commits_before_newest ON stack_commits (stack, before_sha, deploy_id);
