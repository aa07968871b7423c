-- Follow-ups can be cancelled (with a reason kept for the record, erased with
-- the customer) as well as completed.
ALTER TABLE follow_ups DROP CONSTRAINT follow_ups_state_check;
ALTER TABLE follow_ups ADD CONSTRAINT follow_ups_state_check
    CHECK (state IN ('SCHEDULED', 'COMPLETED', 'CANCELLED'));
ALTER TABLE follow_ups ADD COLUMN cancel_reason text NOT NULL DEFAULT '';
ALTER TABLE follow_ups ADD COLUMN cancel_time timestamptz;
