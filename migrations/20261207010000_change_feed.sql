-- The change feed callers build caches on (issue 13, item 5).
--
-- WatchInteractions streams a row again whenever it changes: UPDATED when a
-- watcher may hold it and it changed (a complaint or service request moved
-- on), ERASED when DeleteCustomer erased its customer (streamed with its name
-- only, so a cache drops it).
ALTER TABLE interactions DROP CONSTRAINT interactions_last_change_check;
ALTER TABLE interactions ADD CONSTRAINT interactions_last_change_check
    CHECK (last_change IN ('LOGGED', 'VOIDED', 'SUPERSEDED', 'MOVED', 'UPDATED', 'ERASED'));

-- WatchKnowledge streams UPDATED (the item was edited or narrowed) and
-- ERASED (a subject customer was erased and the item stripped).
ALTER TABLE knowledge_events DROP CONSTRAINT knowledge_events_change_check;
ALTER TABLE knowledge_events ADD CONSTRAINT knowledge_events_change_check
    CHECK (change IN ('CREATED', 'SHARED', 'VERIFIED', 'RETRACTED', 'UPDATED', 'ERASED'));
-- Who could see the item before the change: its subjects and visibility
-- then, when the change narrowed them (NULL: as now). A watcher who saw it
-- then and may not now still gets the event, with the item's name only.
ALTER TABLE knowledge_events
    ADD COLUMN prior_subjects   text[],
    ADD COLUMN prior_visibility text;
