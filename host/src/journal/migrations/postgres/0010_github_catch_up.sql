-- Schema version 10 (PostgreSQL): catching up on GitHub webhook deliveries.
-- `github_hooks`: the repository webhook `redeploy github connect` created
-- or found for a stack (one per stack): on which API and repository, its
-- id, when it was recorded, and how far catch-up has looked: `cursor_id`
-- is the newest delivery id (GitHub's, increasing) every older one of
-- which was settled; null until a look succeeded, when deliveries since
-- `connected_at_ms` are looked at. `checked_at_ms`, `ok_at_ms`, `error`
-- and `failures` say how the last looks went.
-- `github_redeliveries`: each delivery (by its GUID, which a redelivery
-- keeps) catch-up asked GitHub to redeliver, so none is asked for twice.
-- The index on `deliveries.delivery_id` answers "did this GUID arrive".
CREATE TABLE github_hooks (
    stack           TEXT PRIMARY KEY NOT NULL,
    api_url         TEXT NOT NULL,
    repository      TEXT NOT NULL,
    hook_id         BIGINT NOT NULL,
    connected_at_ms BIGINT NOT NULL,
    cursor_id       BIGINT,
    checked_at_ms   BIGINT,
    ok_at_ms        BIGINT,
    error           TEXT,
    failures        BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE github_redeliveries (
    stack          TEXT NOT NULL,
    guid           TEXT NOT NULL,
    hook_id        BIGINT NOT NULL,
    github_delivery_id BIGINT NOT NULL,
    event          TEXT NOT NULL,
    http_status    BIGINT NOT NULL,
    asked_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (stack, guid)
);
CREATE INDEX IF NOT EXISTS deliveries_delivery_id ON deliveries (delivery_id);
