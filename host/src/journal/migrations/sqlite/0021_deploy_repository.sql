-- Schema version 21: the repository of each deploy's ref, so that a deploy
-- gives way only to deploys of its own ref *of its own repository*
-- (`queue::Lane`). Services of one stack may follow the same branch name of
-- different repositories (`web` on acme/shop-web `main`, `worker` on
-- acme/shop-worker `main`): by the ref alone, a push of one superseded the
-- other's waiting deploy and ran both services at its own commit.
--
-- * `deploys.repository`: the repository the deploy's ref is of, as its
--   sender named it (the event's `repository`; for the `deployment` event
--   of a deployment redeploy asked for, the repository of the push that
--   asked); null for a deploy naming none (an image push, a manual
--   trigger).
-- * `github_deployment_requests.repository`: the same, of the push that
--   asked, so that a request gives way only to a later push of its lane.
--
-- Existing rows take it from the event each journaled (every deploy's
-- `event_json` is the component's document, whose `repository` it is; a
-- request's from its deploy, else from the push it keeps, `deploy_json`).
ALTER TABLE deploys ADD COLUMN repository TEXT;
UPDATE deploys SET repository = json_extract(event_json, '$.repository')
    WHERE json_valid(event_json);
ALTER TABLE github_deployment_requests ADD COLUMN repository TEXT;
UPDATE github_deployment_requests SET repository = COALESCE(
    (SELECT d.repository FROM deploys d
         WHERE d.id = github_deployment_requests.deploy_id),
    CASE WHEN json_valid(deploy_json)
              AND json_valid(json_extract(deploy_json, '$.deploy.event_json'))
         THEN json_extract(json_extract(deploy_json, '$.deploy.event_json'), '$.repository')
    END);
