-- Schema version 14: the commit-order query's "newest commit pushed on top
-- of this one" (`journal/admission.rs`, `known_commits`: stack_commits
-- WHERE stack AND before_sha, ORDER BY deploy_id DESC LIMIT 1) answered
-- from one index, as SQLite's journal does since its version 20 (SQLite
-- walked the stack's every commit by its (stack, deploy_id) index; a
-- planner here may choose the same, and the table is never pruned).
CREATE INDEX IF NOT EXISTS stack_commits_before_newest
    ON stack_commits (stack, before_sha, deploy_id);
DROP INDEX IF EXISTS stack_commits_before;
