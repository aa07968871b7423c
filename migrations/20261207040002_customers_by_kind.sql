-- no-transaction
-- ListCustomers filtered by kind: corporate customers are the rare kind, and
-- the list walked the primary key past the individuals to fill a page.
CREATE INDEX CONCURRENTLY IF NOT EXISTS customers_by_kind
    ON customers (kind, id) WHERE delete_time IS NULL;
