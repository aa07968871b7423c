-- no-transaction
-- GetKnowledgeFlow counts the shares made in its period: without an index on
-- create_time each call read every share ever made (conversions have had
-- knowledge_conversions_time from the start). This one reads the period's.
CREATE INDEX CONCURRENTLY IF NOT EXISTS knowledge_shares_by_create_time
    ON knowledge_shares (create_time);
