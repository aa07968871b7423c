-- ListAccessEvents filtered by trace_id (what one request touched): the
-- filter read the whole audit table. Not CONCURRENTLY: access_events is being
-- range-partitioned (see 20261207040006).
CREATE INDEX IF NOT EXISTS access_events_by_trace ON access_events (trace_id);
