-- Schema version 17: the refs a poll of a git repository keeps, as
-- SQLite's journal does since its version 23 (which says why, and what the
-- column holds).
ALTER TABLE poll_sources ADD COLUMN ref_filter TEXT;
