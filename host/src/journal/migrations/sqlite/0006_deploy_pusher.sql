-- Schema version 6: who pushed the commit a deploy deploys, when the
-- sender says (`GL_USER` under gitolite, a forge's pusher), handed to the
-- deploy command as `REDEPLOY_PUSHER`. Null for deploys queued before
-- version 6 and for deliveries that name no pusher.
ALTER TABLE deploys ADD COLUMN pusher TEXT;
