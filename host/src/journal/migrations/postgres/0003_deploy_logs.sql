-- Version 3: deploy logs kept in the database, so any replica can serve
-- the log of a deploy another one ran.
--
-- * `content` is the log as text: the bytes the deploy command wrote, with
--   invalid UTF-8 and NUL bytes (which PostgreSQL text refuses) each
--   replaced by U+FFFD, at most `server.max_deploy_log_bytes` bytes of it.
-- * `size_bytes` is `octet_length(content)`, kept so a replica appending
--   to the log checks it appends where it left off, and a reader following
--   the log asks only for what it has not printed.
-- * `truncated` says the stored log is not all of the file: the output went
--   past the cap, and what is kept is its beginning, a marker line and
--   the line that says how the deploy ended.
-- * The row goes with its deploy (retention deletes the deploy).
CREATE TABLE deploy_logs (
    deploy_id     BIGINT PRIMARY KEY NOT NULL REFERENCES deploys(id) ON DELETE CASCADE,
    content       TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    truncated     BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at_ms BIGINT NOT NULL
);
