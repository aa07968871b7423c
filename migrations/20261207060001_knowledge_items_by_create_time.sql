-- no-transaction
-- GetKnowledgeSharingMetrics counts the items created in its period (five
-- statements over the same period's items): without an index on create_time
-- each read every knowledge item of the bank. This one reads the period's.
CREATE INDEX CONCURRENTLY IF NOT EXISTS knowledge_items_by_create_time
    ON knowledge_items (create_time);
