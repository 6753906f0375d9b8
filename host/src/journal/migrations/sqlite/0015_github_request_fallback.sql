-- Schema version 15: a GitHub deployment request that cannot lose its push.
-- `outbox.not_before_ms`: a row that waits until then (a deployment request
-- GitHub could not take, retried with back-off) without holding back the
-- rows after it. On `github_deployment_requests`: `deploy_json`, the deploy
-- the push stands for (kept for a stack that waits for the `deployment`
-- event, so the journal can run it itself); `fallback`, what redeploy did
-- once GitHub refused or never answered the request, or never sent the
-- created deployment's event (`deployed-directly`, `gave-up`,
-- `not-overridden`, `ran-without-event`, `superseded`: a later push of the
-- stack deployed or is queued, so this older one never runs; null while
-- nothing was done); `fallback_deploy_id`, the deploy it ran then;
-- `fallback_at_ms`, when; `event_seen_at_ms`, when a `deployment` event of
-- the created deployment reached the dispatcher, whatever the component
-- decided (such a deployment is never run by `event_wait`).
ALTER TABLE outbox ADD COLUMN not_before_ms INTEGER;
ALTER TABLE github_deployment_requests ADD COLUMN deploy_json TEXT;
ALTER TABLE github_deployment_requests ADD COLUMN fallback TEXT
    CHECK (fallback IN ('deployed-directly','gave-up','not-overridden','ran-without-event','superseded'));
ALTER TABLE github_deployment_requests ADD COLUMN fallback_deploy_id INTEGER;
ALTER TABLE github_deployment_requests ADD COLUMN fallback_at_ms INTEGER;
ALTER TABLE github_deployment_requests ADD COLUMN event_seen_at_ms INTEGER;
CREATE INDEX github_requests_open ON github_deployment_requests (state)
    WHERE deploy_json IS NOT NULL AND fallback IS NULL;
