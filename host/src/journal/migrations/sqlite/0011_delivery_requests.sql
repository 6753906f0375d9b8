-- Schema version 11: what a delivery's request looked like, for the
-- dashboard's delivery page. `request_json` is the redacted view (headers
-- with every secret-bearing value replaced, the query likewise, the body's
-- size: crate::received::Received); `kept_json` the request exactly as
-- sent (crate::received::KeptRequest), only where
-- `server.keep_delivery_bodies` keeps it. Both go with their row.
ALTER TABLE deliveries ADD COLUMN request_json TEXT;
ALTER TABLE deliveries ADD COLUMN kept_json TEXT;
