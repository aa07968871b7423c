-- ListInteractions filtered by kind (a customer's complaints): like the
-- channel filter, it read the timeline index past every other kind. Not
-- CONCURRENTLY, for the reason in 20261207040006.
CREATE INDEX IF NOT EXISTS interactions_by_kind
    ON interactions (customer_id, kind, occur_time DESC, id DESC);
