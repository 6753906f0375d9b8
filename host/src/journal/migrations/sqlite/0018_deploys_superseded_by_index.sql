-- Schema version 18: `deploys.superseded_by` indexed, as every other
-- foreign key is. Deleting a deploy makes SQLite look for
-- the deploys that name it as their `superseded_by`; without an index that
-- is a scan of the whole table per deleted deploy, so a prune of a few
-- thousand cancelled deploys held the journal's write lock for seconds
-- (7.8 s for 7,278 at a server's start, during which no delivery was
-- answered; with the index the server started and answered in 0.26 s).
-- Partial: a deploy gets a `superseded_by` only when it is cancelled for
-- another (at its admission or later), so only those have an entry.
-- (PostgreSQL's journal has had a full one since its first version.)
CREATE INDEX IF NOT EXISTS deploys_superseded_by ON deploys (superseded_by)
    WHERE superseded_by IS NOT NULL;
