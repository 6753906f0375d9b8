-- Schema version 15: the repository of each deploy's ref, so that a deploy
-- gives way only to deploys of its own ref *of its own repository*
-- (`queue::Lane`), as SQLite's journal does since its version 21 (which
-- says why, and what the columns hold).
--
-- Existing rows take it from the event each journaled (the component's
-- document, always JSON; a row of another writer that is not is left
-- null rather than failing the upgrade).
CREATE OR REPLACE FUNCTION pg_temp.redeploy_json_field(doc TEXT, field TEXT) RETURNS TEXT
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN doc::jsonb ->> field;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;
ALTER TABLE deploys ADD COLUMN repository TEXT;
UPDATE deploys SET repository = pg_temp.redeploy_json_field(event_json, 'repository');
ALTER TABLE github_deployment_requests ADD COLUMN repository TEXT;
UPDATE github_deployment_requests r SET repository = COALESCE(
    (SELECT d.repository FROM deploys d WHERE d.id = r.deploy_id),
    pg_temp.redeploy_json_field(
        pg_temp.redeploy_json_field(pg_temp.redeploy_json_field(r.deploy_json, 'deploy'), 'event_json'), 'repository'));
DROP FUNCTION pg_temp.redeploy_json_field(TEXT, TEXT);
