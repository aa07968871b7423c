-- no-transaction
-- ListCustomers filtered by relationship_manager (an RM's book): without it
-- the list walked the primary key and dropped every other RM's customers
-- (200 RMs: about 4,000 rows read for one page). Built CONCURRENTLY so a
-- deploy does not block writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_by_manager
    ON customers (relationship_manager, id) WHERE delete_time IS NULL;
