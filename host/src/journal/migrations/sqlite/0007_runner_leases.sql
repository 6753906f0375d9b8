-- Schema version 7: which runner started a deploy (`runner`, a process's
-- name: its host name and process id) and on which machine its process
-- group `pgid` lives (`pgid_host`, that machine's boot id), so recovery
-- only ever signals a process group on its own machine. Null for deploys
-- started before version 7. And `leases`, as in the PostgreSQL journal:
-- who holds what (the report outbox's sender), until when.
ALTER TABLE deploys ADD COLUMN runner TEXT;
ALTER TABLE deploys ADD COLUMN pgid_host TEXT;

CREATE TABLE leases (
    name          TEXT PRIMARY KEY NOT NULL,
    holder        TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
