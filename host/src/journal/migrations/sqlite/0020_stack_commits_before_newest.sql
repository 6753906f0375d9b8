-- Schema version 20: the commit-order query's "newest commit pushed on top
-- of this one" (`journal/admission.rs`, `known_commits`: stack_commits
-- WHERE stack AND before_sha, ORDER BY deploy_id DESC LIMIT 1) answered
-- from one index. With only (stack, before_sha) SQLite took the
-- (stack, deploy_id) index for the order and walked the stack's every
-- commit looking for the before_sha, usually absent: every push's
-- admission, under the journal's write lock, cost a scan of all the
-- commits the stack ever deployed, which the table keeps (1.4 ms at 9,431
-- rows, against 12 µs with this index; a deploy-path load fell from
-- thousands of requests a second to hundreds as the table grew).
CREATE INDEX IF NOT EXISTS stack_commits_before_newest
    ON stack_commits (stack, before_sha, deploy_id);
DROP INDEX IF EXISTS stack_commits_before;
