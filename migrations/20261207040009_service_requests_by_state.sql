-- no-transaction
-- ListServiceRequests filtered by state: service_requests_due also holds every
-- request ever resolved, so the open ones' page read past all of them, more
-- each month. Built CONCURRENTLY so a deploy does not block writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS service_requests_by_state
    ON service_requests (state, resolution_due_time, customer_id, interaction_id);
