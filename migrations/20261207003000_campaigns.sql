-- Campaigns as resources (CampaignService): the plan with its budget and
-- target, the activities with their costs, and one row per consenting target
-- customer once the campaign is executed, contacted or held back in the
-- control group. Rows hold ids, codes and numbers only (no PII).

CREATE TABLE campaigns (
    id                     text COLLATE "C" PRIMARY KEY,
    display_name           text NOT NULL,
    objective              text NOT NULL DEFAULT '',
    products               text[] NOT NULL,
    budget_currency        text NOT NULL,
    budget_units           bigint NOT NULL CHECK (budget_units >= 0),
    budget_nanos           integer NOT NULL CHECK (budget_nanos >= 0),
    start_time             timestamptz NOT NULL,
    end_time               timestamptz NOT NULL CHECK (end_time > start_time),
    -- The target segment; '' / NULL / 0 / '{}' do not narrow it.
    target_branch          text NOT NULL DEFAULT '',
    target_tiers           text[] NOT NULL DEFAULT '{}',
    min_recency_score      smallint NOT NULL DEFAULT 0,
    min_frequency_score    smallint NOT NULL DEFAULT 0,
    min_monetary_score     smallint NOT NULL DEFAULT 0,
    target_tags            text[] NOT NULL DEFAULT '{}',
    control_group_percent  smallint NOT NULL CHECK (control_group_percent BETWEEN 0 AND 50),
    conversion_window_days integer NOT NULL CHECK (conversion_window_days BETWEEN 1 AND 365),
    -- Draws the control group: the same seed over the same target draws the
    -- same customers.
    seed                   bigint NOT NULL,
    state                  text NOT NULL CHECK (state IN ('PLANNED', 'EXECUTING')),
    created_by             text NOT NULL,
    execute_time           timestamptz,
    -- What the execution found: customers matching the target, and those of
    -- them left out for want of MARKETING consent.
    target_count           bigint,
    without_consent_count  bigint,
    create_time            timestamptz NOT NULL DEFAULT now(),
    update_time            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_branch ON campaigns (target_branch, create_time DESC, id DESC);
CREATE INDEX campaigns_newest ON campaigns (create_time DESC, id DESC);

CREATE TABLE campaign_activities (
    campaign_id   text COLLATE "C" NOT NULL REFERENCES campaigns (id),
    position      integer NOT NULL,
    title         text NOT NULL,
    channel       text NOT NULL,
    cost_units    bigint NOT NULL CHECK (cost_units >= 0),
    cost_nanos    integer NOT NULL CHECK (cost_nanos >= 0),
    schedule_time timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, position)
);

CREATE TABLE campaign_contacts (
    campaign_id      text COLLATE "C" NOT NULL REFERENCES campaigns (id),
    customer_id      text COLLATE "C" NOT NULL REFERENCES customers (id),
    -- Held back: never contacted, measured for the uplift.
    in_control       boolean NOT NULL,
    -- The customer's tier and home branch when contacted, for the results.
    tier             text,
    branch           text NOT NULL,
    contact_time     timestamptz NOT NULL,
    -- The PROMOTION interaction of a contacted customer; NULL in control.
    interaction_id   text COLLATE "C",
    response_outcome text CHECK (response_outcome IN ('INTERESTED', 'ACCEPTED', 'DECLINED', 'OPTED_OUT')),
    response_time    timestamptz,
    PRIMARY KEY (campaign_id, customer_id),
    CHECK (in_control = (interaction_id IS NULL))
);
CREATE INDEX campaign_contacts_customer ON campaign_contacts (customer_id);
