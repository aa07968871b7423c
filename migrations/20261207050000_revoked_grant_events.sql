-- A revoked grant is news to its grantee: RevokeKnowledgeGrant records an
-- UPDATED event naming the team or branch that held the grant, so that a
-- watcher who could see the item only through it is told (with the item's
-- name only) to drop it. NULL on every other event.
ALTER TABLE knowledge_events
    ADD COLUMN revoked_grantee_type text,
    ADD COLUMN revoked_grantee_id   text;
