-- no-transaction
-- ListCustomers ordered by update_time for a caller bound to a branch (every
-- RM): customers_by_update_time serves the whole bank, so a branch's page
-- sorted every customer of the branch. This one reads the branch's range in
-- order.
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_branch_by_update_time
    ON customers (home_branch, update_time, id) WHERE delete_time IS NULL;
