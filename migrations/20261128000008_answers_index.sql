-- no-transaction
-- Satisfaction answers of one customer by time: the 360 view reads them
-- without walking the rest of a long history. Built CONCURRENTLY (outside a
-- transaction) so that a deploy onto a large interactions table does not
-- block the appends while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS interactions_answers ON interactions (customer_id, occur_time)
    WHERE satisfaction IS NOT NULL OR nps IS NOT NULL;
