-- Interactions (the customer timeline), complaints carried on them, and
-- follow-up tasks.

CREATE TABLE interactions (
    customer_id          text COLLATE "C" NOT NULL REFERENCES customers (id),
    id                   text COLLATE "C" NOT NULL,
    channel              text NOT NULL,
    kind                 text NOT NULL,
    occur_time           timestamptz NOT NULL,
    recorded_by_employee text NOT NULL DEFAULT '',
    recorded_by_team     text NOT NULL DEFAULT '',
    recorded_by_branch   text NOT NULL DEFAULT '',
    summary              text NOT NULL DEFAULT '',
    notes                text NOT NULL DEFAULT '',
    products             text[] NOT NULL DEFAULT '{}',
    amount_currency      text,
    amount_units         bigint,
    amount_nanos         integer,
    campaign             text NOT NULL DEFAULT '',
    outcome              text NOT NULL DEFAULT '',
    sentiment            text,
    satisfaction         smallint CHECK (satisfaction BETWEEN 1 AND 5),
    nps                  smallint CHECK (nps BETWEEN 0 AND 10),
    source_system        text NOT NULL DEFAULT '',
    external_ref         text NOT NULL DEFAULT '',
    complaint_state      text,
    complaint_severity   text,
    complaint_due_time   timestamptz,
    complaint_resolution text NOT NULL DEFAULT '',
    complaint_resolve_time timestamptz,
    complaint_close_time timestamptz,
    version              bigint NOT NULL DEFAULT 1,
    create_time          timestamptz NOT NULL DEFAULT now(),
    update_time          timestamptz NOT NULL DEFAULT now(),
    -- Commit-order cursor for WatchInteractions: the writing transaction's id
    -- and a sequence. Rows are only streamed once every transaction with a
    -- smaller id has ended, so a resumed stream cannot miss a late commit.
    txid                 bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    seq                  bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (customer_id, id)
);

-- The timeline: newest first, one index range per customer, so reading a page
-- costs the same however long the history is.
CREATE INDEX interactions_timeline ON interactions (customer_id, occur_time DESC, id DESC);
-- Core banking may re-send a transaction: one row per (source system, reference).
CREATE UNIQUE INDEX interactions_external_ref
    ON interactions (customer_id, source_system, external_ref) WHERE external_ref <> '';
CREATE INDEX interactions_stream ON interactions (txid, seq);
CREATE INDEX interactions_open_complaints ON interactions (complaint_due_time)
    WHERE complaint_state IN ('OPEN', 'IN_PROGRESS');
CREATE INDEX interactions_complaints ON interactions (complaint_due_time, customer_id, id)
    WHERE complaint_state IS NOT NULL;

CREATE TABLE follow_ups (
    customer_id            text COLLATE "C" NOT NULL REFERENCES customers (id),
    id                     text COLLATE "C" NOT NULL,
    assignee               text NOT NULL,
    branch                 text NOT NULL,
    due_time               timestamptz NOT NULL,
    state                  text NOT NULL CHECK (state IN ('SCHEDULED', 'COMPLETED')),
    purpose                text NOT NULL DEFAULT '',
    channel                text,
    source_interaction     text NOT NULL DEFAULT '',
    completion_interaction text NOT NULL DEFAULT '',
    complete_time          timestamptz,
    created_by             text NOT NULL,
    version                bigint NOT NULL DEFAULT 1,
    create_time            timestamptz NOT NULL DEFAULT now(),
    update_time            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, id)
);
CREATE INDEX follow_ups_due ON follow_ups (due_time, customer_id, id);
CREATE INDEX follow_ups_assignee ON follow_ups (assignee, due_time) WHERE state = 'SCHEDULED';
