-- Schema version 7: which runner started a deploy (`runner`, a replica's
-- name: its host name and process id) and on which machine its process
-- group `pgid` lives (`pgid_host`, that machine's boot id), so recovery
-- only ever signals a process group on its own machine. Null for deploys
-- started before version 7.
ALTER TABLE deploys ADD COLUMN runner TEXT;
ALTER TABLE deploys ADD COLUMN pgid_host TEXT;
