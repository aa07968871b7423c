-- Value segmentation (RFM and the customer pyramid) kept per `as_of`, so that
-- history stays and tier migrations can be reported. Rows hold numbers only
-- (no PII); customers.tier and the *_score columns mirror the latest run.

CREATE TABLE segment_runs (
    as_of              timestamptz PRIMARY KEY,
    window_months      integer NOT NULL CHECK (window_months BETWEEN 1 AND 60),
    window_start       timestamptz NOT NULL,
    reporting_currency text NOT NULL,
    vip_share          numeric NOT NULL,
    major_share        numeric NOT NULL,
    ordinary_share     numeric NOT NULL,
    -- The churn and relationship rules' parameters (weights, thresholds)
    -- the rows below were computed with, for explaining them later.
    model              jsonb NOT NULL,
    customer_count     bigint NOT NULL,
    tier_changed_count bigint NOT NULL,
    compute_time       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customer_segments (
    as_of            timestamptz NOT NULL REFERENCES segment_runs (as_of) ON DELETE CASCADE,
    customer_id      text COLLATE "C" NOT NULL REFERENCES customers (id),
    -- R, F and M of the window, raw (NULL / 0 without transactions).
    last_transaction timestamptz,
    transaction_count bigint NOT NULL,
    monetary         numeric NOT NULL,
    -- Every transaction before as_of: the customer's usual rhythm and tenure.
    lifetime_transactions bigint NOT NULL,
    first_ever_transaction timestamptz,
    last_ever_transaction timestamptz,
    product_count    integer NOT NULL,
    contact_months   integer NOT NULL,
    linked           boolean NOT NULL,
    relationship     text CHECK (relationship IN ('ONE_TIME', 'TRANSACTIONAL', 'RELATIONAL', 'PARTNER')),
    recency_score    smallint,
    frequency_score  smallint,
    monetary_score   smallint,
    tier             text NOT NULL CHECK (tier IN ('VIP', 'MAJOR', 'ORDINARY', 'SMALL')),
    value_rank       bigint NOT NULL,
    -- Churn inputs at as_of, and the score they give.
    recent_count     bigint NOT NULL,
    previous_count   bigint NOT NULL,
    open_complaints  bigint NOT NULL,
    recent_complaints bigint NOT NULL,
    csat_sum         bigint NOT NULL,
    csat_count       bigint NOT NULL,
    promoters        bigint NOT NULL,
    detractors       bigint NOT NULL,
    nps_count        bigint NOT NULL,
    withdrawn_consents bigint NOT NULL,
    churn_score      double precision NOT NULL,
    -- The codes of the churn signals found, strongest first.
    churn_signals    text[] NOT NULL,
    PRIMARY KEY (as_of, customer_id)
);
-- The worklist: highest churn risk × value first, within one run.
CREATE INDEX customer_segments_priority
    ON customer_segments (as_of, (churn_score * monetary::double precision) DESC, customer_id DESC);
CREATE INDEX customer_segments_customer ON customer_segments (customer_id, as_of DESC);

-- Products held per peer group (tier and RFM cell) in a run: what next-best
-- actions offer, ranked by lift, without scanning history at read time.
CREATE TABLE segment_products (
    as_of       timestamptz NOT NULL REFERENCES segment_runs (as_of) ON DELETE CASCADE,
    tier        text NOT NULL,
    frequency_score smallint NOT NULL,
    monetary_score  smallint NOT NULL,
    product     text NOT NULL,
    holders     bigint NOT NULL,
    group_size  bigint NOT NULL,
    -- Holders and customers across the whole bank, for the lift.
    bank_holders bigint NOT NULL,
    bank_size   bigint NOT NULL,
    PRIMARY KEY (as_of, tier, frequency_score, monetary_score, product)
);

-- The products each customer held in a run's window (to leave out of offers).
CREATE TABLE customer_products (
    as_of       timestamptz NOT NULL REFERENCES segment_runs (as_of) ON DELETE CASCADE,
    customer_id text COLLATE "C" NOT NULL,
    products    text[] NOT NULL,
    PRIMARY KEY (as_of, customer_id)
);
