-- no-transaction
-- ListInteractions ordered by update_time (a cache following a customer's
-- changes since a point: filter update_time > "…", order_by "update_time")
-- reads this index instead of sorting the customer's timeline. Built
-- CONCURRENTLY so a deploy onto a large interactions table does not block
-- writes while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS interactions_by_update_time
    ON interactions (customer_id, update_time, id);
