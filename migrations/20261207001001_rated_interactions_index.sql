-- no-transaction
-- GetServiceMetrics reads the CSAT and NPS answers given in a period over
-- every branch; interactions_answers (customer_id, occur_time) serves one
-- branch's customers, this one a period across all of them. Built
-- CONCURRENTLY, like interactions_answers, so a deploy onto a large
-- interactions table does not block the appends while it builds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS interactions_rated ON interactions (occur_time)
    WHERE satisfaction IS NOT NULL OR nps IS NOT NULL;
