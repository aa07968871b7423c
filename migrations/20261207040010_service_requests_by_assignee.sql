-- no-transaction
-- ListServiceRequests filtered by assignee, in any state:
-- service_requests_assignee holds only open requests, so the list read the
-- whole table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS service_requests_by_assignee
    ON service_requests (assignee, resolution_due_time, customer_id, interaction_id);
