-- no-transaction
-- knowledge_items_by_author (20261207040012) serves every lookup this did.
DROP INDEX CONCURRENTLY IF EXISTS knowledge_items_author;
