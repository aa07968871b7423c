-- ListInteractions filtered by channel: on a long history a rare channel
-- (a phone call among years of branch and app contacts) read the timeline
-- index past every other channel. Not CONCURRENTLY: interactions is being
-- range-partitioned, and Postgres cannot build an index on a partitioned table
-- concurrently; on a large unpartitioned table, build it by hand CONCURRENTLY
-- first (IF NOT EXISTS then skips it).
CREATE INDEX IF NOT EXISTS interactions_by_channel
    ON interactions (customer_id, channel, occur_time DESC, id DESC);
