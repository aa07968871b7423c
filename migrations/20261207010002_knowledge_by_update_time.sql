-- no-transaction
-- ListKnowledgeItems ordered by update_time (order_by "update_time", with an
-- update_time filter: every item changed since a point) reads this index.
-- Built CONCURRENTLY, like the other update_time indexes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS knowledge_items_by_update_time
    ON knowledge_items (update_time, id);
