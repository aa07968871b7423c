-- no-transaction
-- ListServiceRequests ordered by update_time (a cache following the requests
-- it may read: filter update_time > "…", order_by "update_time") reads this
-- index instead of sorting every request. Built CONCURRENTLY, like the other
-- update_time indexes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS service_requests_by_update_time
    ON service_requests (update_time, customer_id, interaction_id);
