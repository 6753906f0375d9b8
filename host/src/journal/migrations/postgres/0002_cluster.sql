-- Version 2: what several replicas need to share deploys.
--
-- * `deploys.runner` names the replica that started a deploy (its host
--   name and process id) and `deploys.pgid_host` the machine its process
--   group `pgid` lives on (that machine's boot id), so recovery only ever
--   signals a process group on its own machine.
-- * `leases`: who holds what, until when. `name` is `stack:<stack>` for the
--   right to run a stack's deploys; `holder` is one replica process's
--   unique id; `expires_at_ms` is read on the database's clock, so replicas'
--   clocks never decide who holds a lease.
ALTER TABLE deploys ADD COLUMN runner TEXT;
ALTER TABLE deploys ADD COLUMN pgid_host TEXT;

CREATE TABLE leases (
    name          TEXT PRIMARY KEY NOT NULL,
    holder        TEXT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
