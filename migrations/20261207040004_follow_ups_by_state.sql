-- no-transaction
-- ListFollowUps filtered by state (the SCHEDULED worklist): follow_ups_due
-- starts with the long-done ones, so a page read past every completed task.
CREATE INDEX CONCURRENTLY IF NOT EXISTS follow_ups_by_state
    ON follow_ups (state, due_time, customer_id, id);
