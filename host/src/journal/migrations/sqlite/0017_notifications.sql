-- Schema version 17: the notifications outbox ([[notifications]] channels).
-- `notices`: one row per thing people may be told of, written in the
-- transaction that causes it: every deploy transition (`event` is its
-- state, or `timed_out` for a deploy its timeout killed) and, opt-in,
-- a stack's refused deliveries (`refused`, with how many in which
-- window). The holder of the lease `notifications` fans each notice out
-- once (`fanned_out_at_ms`) into one `notifications` row per channel
-- that wants it, and sends those in id order per (channel, stack):
-- `attempts` counts the claims, `not_before_ms` holds a retry back,
-- `outcome` stays null until the row is settled (`sent`, `failed`:
-- refused for good or retried for the channel's `give_up_after`,
-- `skipped`: the channel is gone from the config).
CREATE TABLE notices (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    stack             TEXT NOT NULL,
    event             TEXT NOT NULL CHECK (event IN ('queued','started','succeeded','failed',
                          'cancelled','interrupted','timed_out','refused')),
    deploy_id         INTEGER REFERENCES deploys(id) ON DELETE CASCADE,
    detail            TEXT,
    refused_count     INTEGER,
    refused_window_ms INTEGER,
    created_at_ms     INTEGER NOT NULL,
    fanned_out_at_ms  INTEGER,
    CHECK ((event = 'refused') = (deploy_id IS NULL)),
    CHECK ((event = 'refused') = (refused_count IS NOT NULL))
);
CREATE INDEX notices_pending ON notices (id) WHERE fanned_out_at_ms IS NULL;
CREATE INDEX notices_deploy ON notices (deploy_id);
CREATE TABLE notifications (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    notice_id      INTEGER NOT NULL REFERENCES notices(id) ON DELETE CASCADE,
    channel        TEXT NOT NULL,
    stack          TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    not_before_ms  INTEGER,
    tried_at_ms    INTEGER,
    outcome        TEXT CHECK (outcome IN ('sent','failed','skipped')),
    outcome_detail TEXT,
    settled_at_ms  INTEGER
);
CREATE INDEX notifications_unsettled ON notifications (channel, stack, id) WHERE outcome IS NULL;
CREATE INDEX notifications_notice ON notifications (notice_id);
CREATE INDEX notifications_settled ON notifications (settled_at_ms) WHERE outcome IS NOT NULL;
