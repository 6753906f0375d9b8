-- The dashboard's sessions (`[ui]`): a signed-in user's session, by the
-- SHA-256 of its cookie's value (a copy of the journal signs nobody in),
-- until it expires or its user signs out; `credential` is the SHA-256 of
-- the password hash it signed in with, so a changed password (or a removed
-- user added again) ends it.
CREATE TABLE ui_sessions (
    id_hash       TEXT PRIMARY KEY,
    user_name     TEXT NOT NULL,
    credential    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at_ms);
