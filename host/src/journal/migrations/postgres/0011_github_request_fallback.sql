-- Schema version 11 (PostgreSQL): a GitHub deployment request that cannot
-- lose its push (SQLite's 15, which says what each column is for).
ALTER TABLE outbox ADD COLUMN not_before_ms BIGINT;
ALTER TABLE github_deployment_requests ADD COLUMN deploy_json TEXT;
ALTER TABLE github_deployment_requests ADD COLUMN fallback TEXT
    CHECK (fallback IN ('deployed-directly','gave-up','not-overridden','ran-without-event','superseded'));
ALTER TABLE github_deployment_requests ADD COLUMN fallback_deploy_id BIGINT;
ALTER TABLE github_deployment_requests ADD COLUMN fallback_at_ms BIGINT;
ALTER TABLE github_deployment_requests ADD COLUMN event_seen_at_ms BIGINT;
CREATE INDEX github_requests_open ON github_deployment_requests (state)
    WHERE deploy_json IS NOT NULL AND fallback IS NULL;
