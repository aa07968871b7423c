-- no-transaction
-- ListFollowUps filtered by assignee, in any state: follow_ups_assignee holds
-- only SCHEDULED tasks, so an assignee's full list read the whole table.
CREATE INDEX CONCURRENTLY IF NOT EXISTS follow_ups_by_assignee
    ON follow_ups (assignee, due_time, customer_id, id);
