-- Schema version 13: what polling each stack's sources saw ([stacks.poll]).
-- One row per (stack, source): `source` names what is polled (a git
-- repository's URL, without credentials). `tips_json` is what the last
-- successful poll saw (a JSON object: ref name -> object id), null until
-- one succeeded; `polled_at_ms` when the last poll ended, `ok_at_ms` when
-- the last successful one did, `error` why the last poll failed (null
-- after a success) and `failures` how many failed in a row.
CREATE TABLE poll_sources (
    stack        TEXT NOT NULL,
    source       TEXT NOT NULL,
    tips_json    TEXT,
    polled_at_ms INTEGER NOT NULL,
    ok_at_ms     INTEGER,
    error        TEXT,
    failures     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (stack, source)
);
