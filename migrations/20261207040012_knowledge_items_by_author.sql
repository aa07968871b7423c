-- no-transaction
-- ListKnowledgeItems filtered by author, in id order: knowledge_items_author
-- (author alone) gave the author's items unordered, so the planner walked
-- the primary key instead and read past everyone else's items (an author of
-- a fifth of the items: five pages read for one). This one reads the
-- author's range in order; 20261207040013 drops the old one it covers.
CREATE INDEX CONCURRENTLY IF NOT EXISTS knowledge_items_by_author
    ON knowledge_items (author, id);
