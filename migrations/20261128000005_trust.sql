-- Idempotency keys keep the names of what a write produced, never the
-- response: a stored response held PII beyond erasure and replayed it without
-- an access check. Keys written before this change are dropped with it.
DELETE FROM idempotency_keys;
ALTER TABLE idempotency_keys DROP COLUMN response;
ALTER TABLE idempotency_keys ADD COLUMN resources text[];

-- A hash of an interaction's content, so a re-sent external_ref with the same
-- payload is told apart from a different one under the same reference.
ALTER TABLE interactions ADD COLUMN fingerprint bytea;

-- Every grant and withdrawal of consent, with how it was given and what
-- proves it. customer_consents keeps the current state per purpose.
CREATE TABLE consent_events (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id    text COLLATE "C" NOT NULL REFERENCES customers (id),
    purpose        text NOT NULL CHECK (purpose IN ('MARKETING', 'CROSS_SELL', 'ANALYTICS', 'KNOWLEDGE_SHARING')),
    granted        boolean NOT NULL,
    channel        text NOT NULL,
    evidence_ref   text NOT NULL DEFAULT '',
    policy_version text NOT NULL DEFAULT '',
    recorded_by    text NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_events_customer ON consent_events (customer_id, id DESC);
