-- Schema version 8 (PostgreSQL): an operator's request to cancel a running deploy
-- (the dashboard's "Cancel"), with its reason. The runner running the
-- deploy, on whichever replica, reads it while the deploy runs, stops the
-- deploy's processes and records it `cancelled`.
ALTER TABLE deploys ADD COLUMN cancel_requested TEXT;
