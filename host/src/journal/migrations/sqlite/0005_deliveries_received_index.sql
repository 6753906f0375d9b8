-- Schema version 5: an index to find old deliveries without a full scan.
CREATE INDEX IF NOT EXISTS deliveries_received ON deliveries (received_at_ms);
