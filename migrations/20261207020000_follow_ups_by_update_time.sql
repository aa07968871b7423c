-- no-transaction
-- ListFollowUps ordered by update_time (a cache following the follow-ups it
-- may read: filter update_time > "…", order_by "update_time") reads this
-- index instead of sorting every follow-up. Every change to a follow-up
-- (schedule, reassign, complete, cancel, a merge moving it, erasure) stamps
-- update_time. Built CONCURRENTLY, like the other update_time indexes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS follow_ups_by_update_time
    ON follow_ups (update_time, customer_id, id);
