-- no-transaction
-- ListComplaints ordered by update_time (a cache following the complaints it
-- may read: filter update_time > "…", order_by "update_time") reads this
-- index; partial like interactions_complaints, so it holds the complaints
-- only, not every interaction. Built CONCURRENTLY so a deploy onto a large
-- interactions table does not block writes while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS complaints_by_update_time
    ON interactions (update_time, customer_id, id)
    WHERE complaint_state IS NOT NULL;
