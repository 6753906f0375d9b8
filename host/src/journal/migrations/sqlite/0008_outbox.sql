-- Schema version 8: the outbox. One row per thing to tell the outside
-- world, in the order it arose: `deployment` (create the GitHub deployment
-- of request `request_id`), `status` (report deploy `deploy_id`'s `state`
-- to its GitHub deployment) or `callback` (report its final `state` to a
-- registry's callback URL). Rows are written in the transaction that
-- causes them (the request's insert, the deploy's transition) and sent, in
-- id order, by the one process holding the lease `outbox`. `attempts`
-- counts the claims (a row claimed but never settled was being sent when
-- its sender stopped); `outcome` stays null until the row is settled:
-- `sent`, `failed` (tried, or could not be; `outcome_detail` says why) or
-- `skipped` (nothing to send any more: the stack lost its settings).
CREATE TABLE outbox (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind           TEXT NOT NULL CHECK (kind IN ('deployment','status','callback')),
    stack          TEXT NOT NULL,
    request_id     INTEGER REFERENCES github_deployment_requests(id) ON DELETE CASCADE,
    deploy_id      INTEGER REFERENCES deploys(id) ON DELETE CASCADE,
    state          TEXT,
    detail         TEXT,
    created_at_ms  INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    tried_at_ms    INTEGER,
    outcome        TEXT CHECK (outcome IN ('sent','failed','skipped')),
    outcome_detail TEXT,
    settled_at_ms  INTEGER,
    CHECK ((kind = 'deployment') = (request_id IS NOT NULL)),
    CHECK ((kind = 'deployment') = (deploy_id IS NULL)),
    CHECK ((kind = 'deployment') = (state IS NULL))
);
CREATE INDEX outbox_unsettled ON outbox (id) WHERE outcome IS NULL;
CREATE INDEX outbox_request ON outbox (request_id);
CREATE INDEX outbox_deploy ON outbox (deploy_id, id);

-- Requests a server left pending are the outbox's first rows.
INSERT INTO outbox (kind, stack, request_id, created_at_ms)
SELECT 'deployment', stack, id, created_at_ms
  FROM github_deployment_requests WHERE state = 'pending' ORDER BY id;
