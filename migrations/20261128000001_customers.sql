-- Customers, their external ids, consents and links; idempotency keys and the
-- outbox shared by every mutating call.

CREATE TABLE customers (
    id                   text COLLATE "C" PRIMARY KEY,
    display_name         text NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('INDIVIDUAL', 'CORPORATE')),
    home_branch          text NOT NULL,
    relationship_manager text NOT NULL DEFAULT '',
    national_id          text NOT NULL DEFAULT '',
    phone                text NOT NULL DEFAULT '',
    email                text NOT NULL DEFAULT '',
    birth_date           date,
    address              text NOT NULL DEFAULT '',
    tags                 text[] NOT NULL DEFAULT '{}',
    preferences          jsonb NOT NULL DEFAULT '{}',
    tier                 text CHECK (tier IN ('VIP', 'MAJOR', 'ORDINARY', 'SMALL')),
    recency_score        smallint,
    frequency_score      smallint,
    monetary_score       smallint,
    -- Lexemes of the name (weight A) and external ids (weight B), built in
    -- Rust so Chinese names are searchable without a segmenter extension.
    search_document      tsvector NOT NULL DEFAULT ''::tsvector,
    version              bigint NOT NULL DEFAULT 1,
    create_time          timestamptz NOT NULL DEFAULT now(),
    update_time          timestamptz NOT NULL DEFAULT now(),
    -- Set by erasure: the row stays as a tombstone without PII.
    delete_time          timestamptz
);

-- Keyset pagination within a branch, and in id order overall (the primary key).
CREATE INDEX customers_branch_id ON customers (home_branch, id) WHERE delete_time IS NULL;
CREATE INDEX customers_tags ON customers USING gin (tags) WHERE delete_time IS NULL;
CREATE INDEX customers_search ON customers USING gin (search_document) WHERE delete_time IS NULL;

CREATE TABLE customer_external_ids (
    system      text NOT NULL,
    value       text NOT NULL,
    customer_id text COLLATE "C" NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    CONSTRAINT customer_external_ids_pkey PRIMARY KEY (system, value)
);
CREATE INDEX customer_external_ids_customer ON customer_external_ids (customer_id);

CREATE TABLE customer_consents (
    customer_id text COLLATE "C" NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    purpose     text NOT NULL CHECK (purpose IN ('MARKETING', 'CROSS_SELL', 'ANALYTICS', 'KNOWLEDGE_SHARING')),
    granted     boolean NOT NULL,
    update_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, purpose)
);

-- (customer_id, linked_customer_id, relationship): linked_customer_id stands in
-- `relationship` to customer_id. Symmetric relationships are stored once with
-- the smaller id first, so a duplicate in either direction is caught here.
CREATE TABLE customer_links (
    customer_id        text COLLATE "C" NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    linked_customer_id text COLLATE "C" NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    relationship       text NOT NULL CHECK (relationship IN ('HOUSEHOLD', 'SPOUSE', 'GUARANTOR', 'DIRECTOR')),
    create_time        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT customer_links_pkey PRIMARY KEY (customer_id, linked_customer_id, relationship),
    CHECK (customer_id <> linked_customer_id)
);
CREATE INDEX customer_links_linked ON customer_links (linked_customer_id);

-- One row per (caller, method, request_id): written in the transaction of the
-- change it guards, so a retry finds either nothing or the committed response.
CREATE TABLE idempotency_keys (
    principal   text NOT NULL,
    method      text NOT NULL,
    request_id  uuid NOT NULL,
    fingerprint bytea NOT NULL,
    response    bytea,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (principal, method, request_id)
);
CREATE INDEX idempotency_keys_create_time ON idempotency_keys (create_time);

-- Changes for a relay (Debezium, Kafka) to publish; ids only, never PII.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    event_type     text NOT NULL,
    payload        jsonb NOT NULL DEFAULT '{}',
    create_time    timestamptz NOT NULL DEFAULT now()
);
