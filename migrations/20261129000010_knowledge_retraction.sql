-- Lifecycle ends of knowledge (contract v1 freeze): an item can be retracted
-- (kept for lineage and the record, hidden from every read), and a grant can
-- be revoked before it lapses (the share row stays, with who ended it when).
ALTER TABLE knowledge_items ADD COLUMN retract_time timestamptz;
ALTER TABLE knowledge_items ADD COLUMN retract_reason text NOT NULL DEFAULT '';
ALTER TABLE knowledge_items ADD COLUMN retracted_by text NOT NULL DEFAULT '';

ALTER TABLE knowledge_shares ADD COLUMN revoke_time timestamptz;
ALTER TABLE knowledge_shares ADD COLUMN revoked_by text NOT NULL DEFAULT '';

ALTER TABLE knowledge_events DROP CONSTRAINT knowledge_events_change_check;
ALTER TABLE knowledge_events ADD CONSTRAINT knowledge_events_change_check
    CHECK (change IN ('CREATED', 'SHARED', 'VERIFIED', 'RETRACTED'));
