-- no-transaction
-- ListCustomers ordered by update_time (a cache following changes since a
-- point: filter update_time > "…", order_by "update_time") reads this index
-- instead of sorting every customer. Built CONCURRENTLY so a deploy onto a
-- large customers table does not block writes while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_by_update_time
    ON customers (update_time, id) WHERE delete_time IS NULL;
