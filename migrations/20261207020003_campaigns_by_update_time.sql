-- no-transaction
-- ListCampaigns ordered by update_time (a cache following the campaigns it
-- may read: filter update_time > "…", order_by "update_time") reads this
-- index instead of sorting every campaign. Built CONCURRENTLY, like the
-- other update_time indexes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS campaigns_by_update_time
    ON campaigns (update_time, id);
