-- Schema version 1. Applied in one transaction by [`migrate`].
--
-- * `services` is a JSON array of strings.
-- * `state` columns hold [`DeployState::as_str`] names (checked).
-- * `AUTOINCREMENT` so ids are never reused, even after rows are deleted
--   by hand: log files and history output refer to them.
CREATE TABLE deliveries (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at_ms INTEGER NOT NULL,
    stack          TEXT,
    provider       TEXT,
    event          TEXT,
    delivery_id    TEXT,
    status         INTEGER NOT NULL CHECK (status BETWEEN 0 AND 65535),
    summary        TEXT NOT NULL
);
CREATE TABLE deploys (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    stack          TEXT NOT NULL,
    delivery_id    TEXT,
    provider       TEXT NOT NULL,
    git_ref        TEXT,
    sha            TEXT,
    services       TEXT NOT NULL DEFAULT '[]',
    profile        TEXT,
    reason         TEXT NOT NULL,
    event_json     TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN
                       ('queued','started','succeeded','failed','cancelled','interrupted')),
    created_at_ms  INTEGER NOT NULL,
    started_at_ms  INTEGER,
    finished_at_ms INTEGER,
    exit_code      INTEGER,
    log_path       TEXT,
    detail         TEXT,
    superseded_by  INTEGER REFERENCES deploys(id)
);
CREATE INDEX deploys_stack_id ON deploys (stack, id);
CREATE UNIQUE INDEX deploys_stack_delivery ON deploys (stack, delivery_id)
    WHERE delivery_id IS NOT NULL;
CREATE INDEX deploys_state_id ON deploys (state, id);
CREATE TABLE deploy_transitions (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    deploy_id INTEGER NOT NULL REFERENCES deploys(id) ON DELETE CASCADE,
    state     TEXT NOT NULL CHECK (state IN
                  ('queued','started','succeeded','failed','cancelled','interrupted')),
    at_ms     INTEGER NOT NULL,
    detail    TEXT
);
CREATE INDEX deploy_transitions_deploy ON deploy_transitions (deploy_id, id);
CREATE TABLE hook_tokens (
    stack TEXT PRIMARY KEY NOT NULL,
    token TEXT NOT NULL
);
