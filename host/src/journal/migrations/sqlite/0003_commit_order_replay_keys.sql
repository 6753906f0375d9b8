-- Schema version 3: the commits each stack has seen, and replay keys.
--
-- * `stack_commits` has one row per (stack, commit) the stack accepted a
--   deploy of, whether it ran or was superseded: `deploy_id` is the newest
--   such deploy (the stack's head is the row with the greatest), and
--   `before_sha` the `before` of the first push that brought the commit.
--   No foreign key: the rows outlive pruned deploys, which is the point.
-- * `replay_keys` holds the SHA-256 (hex) of each accepted delivery that
--   had no delivery id, until `expires_at_ms`.
--
-- Existing deploys seed `stack_commits`, so a journal migrated from
-- version 2 already knows the commits it deployed.
CREATE TABLE stack_commits (
    stack       TEXT NOT NULL,
    sha         TEXT NOT NULL,
    before_sha  TEXT,
    deploy_id   INTEGER NOT NULL,
    seen_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (stack, sha)
);
CREATE INDEX stack_commits_head ON stack_commits (stack, deploy_id);
CREATE INDEX stack_commits_before ON stack_commits (stack, before_sha);
INSERT INTO stack_commits (stack, sha, before_sha, deploy_id, seen_at_ms)
    SELECT stack, sha, NULL,
           COALESCE(MAX(CASE WHEN state <> 'cancelled' THEN id END), MIN(id)),
           MIN(created_at_ms)
    FROM deploys WHERE sha IS NOT NULL GROUP BY stack, sha;
CREATE TABLE replay_keys (
    key           TEXT PRIMARY KEY NOT NULL,
    stack         TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    deploy_id     INTEGER
);
CREATE INDEX replay_keys_expiry ON replay_keys (expires_at_ms);
