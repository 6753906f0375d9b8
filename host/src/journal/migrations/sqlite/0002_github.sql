-- Schema version 2: GitHub deployment requests, reports, server keys.
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
