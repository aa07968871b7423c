-- Customer knowledge: items (tacit or explicit, with their carrier), the
-- conversions and shares that move them (the lineage graph and the flow
-- matrix), internalization records, and the change log WatchKnowledge reads.

CREATE TABLE knowledge_items (
    id                 text COLLATE "C" PRIMARY KEY,
    title              text NOT NULL,
    body               text NOT NULL DEFAULT '',
    nature             text NOT NULL CHECK (nature IN ('TACIT', 'EXPLICIT')),
    kind               text NOT NULL,
    -- Customer ids the item is about; empty for general know-how.
    subjects           text[] NOT NULL DEFAULT '{}',
    carrier_type       text NOT NULL CHECK (carrier_type IN ('CUSTOMER', 'EMPLOYEE', 'TEAM', 'BRANCH', 'BANK')),
    carrier_id         text NOT NULL DEFAULT '',
    author             text NOT NULL,
    -- The team and branch TEAM and BRANCH visibility refer to: the carrier's
    -- when it is a team or branch, else the author's at creation.
    scope_team         text NOT NULL DEFAULT '',
    scope_branch       text NOT NULL DEFAULT '',
    visibility         text NOT NULL CHECK (visibility IN ('PRIVATE', 'TEAM', 'BRANCH', 'BANK')),
    sensitivity        text NOT NULL CHECK (sensitivity IN ('INTERNAL', 'CONFIDENTIAL', 'RESTRICTED')),
    tags               text[] NOT NULL DEFAULT '{}',
    sources            text[] NOT NULL DEFAULT '{}',
    verification_state text NOT NULL DEFAULT 'UNVERIFIED' CHECK (verification_state IN ('UNVERIFIED', 'VERIFIED')),
    verifier           text NOT NULL DEFAULT '',
    verify_time        timestamptz,
    next_review_time   timestamptz,
    -- English stems of title (A) and body (B), CJK characters and bigrams
    -- (same weights), tags (C).
    search_document    tsvector NOT NULL DEFAULT ''::tsvector,
    version            bigint NOT NULL DEFAULT 1,
    create_time        timestamptz NOT NULL DEFAULT now(),
    update_time        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_items_subjects ON knowledge_items USING gin (subjects);
CREATE INDEX knowledge_items_tags ON knowledge_items USING gin (tags);
CREATE INDEX knowledge_items_search ON knowledge_items USING gin (search_document);
CREATE INDEX knowledge_items_author ON knowledge_items (author);

-- Lineage: `source` became (part of) `target` by `conversion`. Targets are
-- always created after their sources, so the graph has no cycles.
CREATE TABLE knowledge_edges (
    source_item text COLLATE "C" NOT NULL REFERENCES knowledge_items (id),
    target_item text COLLATE "C" NOT NULL REFERENCES knowledge_items (id),
    conversion  text NOT NULL CHECK (conversion IN ('SOCIALIZATION', 'EXTERNALIZATION', 'COMBINATION', 'INTERNALIZATION')),
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_item, target_item)
);
CREATE INDEX knowledge_edges_target ON knowledge_edges (target_item);

-- One row per conversion performed, for the flow matrix: who did it (and
-- their branch and team at the time), the carrier types it moved between.
CREATE TABLE knowledge_conversions (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversion        text NOT NULL,
    target_item       text COLLATE "C" NOT NULL REFERENCES knowledge_items (id),
    from_carrier_type text NOT NULL,
    to_carrier_type   text NOT NULL,
    actor             text NOT NULL,
    actor_branch      text NOT NULL DEFAULT '',
    actor_team        text NOT NULL DEFAULT '',
    create_time       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_conversions_time ON knowledge_conversions (create_time);

CREATE TABLE knowledge_shares (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id           text COLLATE "C" NOT NULL REFERENCES knowledge_items (id),
    from_carrier_type text NOT NULL,
    from_carrier_id   text NOT NULL DEFAULT '',
    to_carrier_type   text NOT NULL,
    to_carrier_id     text NOT NULL DEFAULT '',
    is_grant          boolean NOT NULL,
    visibility        text,
    purpose           text NOT NULL,
    expire_time       timestamptz,
    shared_by         text NOT NULL,
    actor_branch      text NOT NULL DEFAULT '',
    actor_team        text NOT NULL DEFAULT '',
    create_time       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_shares_item ON knowledge_shares (item_id);
CREATE INDEX knowledge_shares_grants ON knowledge_shares (to_carrier_type, to_carrier_id) WHERE is_grant;

CREATE TABLE knowledge_internalizations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    item_id     text COLLATE "C" NOT NULL REFERENCES knowledge_items (id),
    employee    text NOT NULL,
    tacit_item  text COLLATE "C" REFERENCES knowledge_items (id),
    create_time timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_internalizations_item ON knowledge_internalizations (item_id);

-- What WatchKnowledge streams, in the commit-safe order of interactions:
-- (writing transaction, sequence), read only below the snapshot horizon.
CREATE TABLE knowledge_events (
    item_id     text COLLATE "C" NOT NULL REFERENCES knowledge_items (id),
    change      text NOT NULL CHECK (change IN ('CREATED', 'SHARED', 'VERIFIED')),
    create_time timestamptz NOT NULL DEFAULT now(),
    txid        bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (txid, seq)
);
