-- no-transaction
-- ListCustomers filtered by tier: VIPs are a few percent of a bank, and the
-- list walked the primary key past every other customer to fill a page.
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_by_tier
    ON customers (tier, id) WHERE delete_time IS NULL;
