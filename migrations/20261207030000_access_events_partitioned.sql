-- The access audit grows by one row per call for as long as the service
-- runs: range-partition it by month of event_time, so that a month's events
-- are one table (time-range reads scan only their months, and old months can
-- later be archived whole) while appends always land in the current, small
-- partition. A DEFAULT partition catches any row no monthly partition takes,
-- so no append can ever fail for lack of a partition; ck_ensure_partitions
-- (called by `migrate` and by the service at startup and every hour) creates
-- the current and next months ahead of time.
--
-- The primary key must include the partition key: (sequence, event_time).
-- The chain stays gap-free and unique by sequence because its single writer
-- path numbers events under the chain's advisory lock (store::audit).

-- Creates the monthly partition of `parent` that holds `month` (UTC),
-- named <parent>_YYYYMM, unless it exists. Returns false, creating nothing,
-- when the DEFAULT partition already holds rows of that month (creating the
-- partition would then fail; those rows stay where they are, readable). The
-- partition gets the parent's append-only fences that Postgres does not
-- copy to partitions: the TRUNCATE trigger and the revoked privileges.
CREATE FUNCTION ck_ensure_month_partition(parent text, month timestamptz)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := date_trunc('month', month AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    hi timestamptz := (date_trunc('month', month AT TIME ZONE 'UTC') + interval '1 month')
                         AT TIME ZONE 'UTC';
    part_name text := parent || '_' || to_char(month AT TIME ZONE 'UTC', 'YYYYMM');
    key_column text;
    crowded boolean;
BEGIN
    -- One upkeep at a time across processes ("ckparts" as an integer).
    PERFORM pg_advisory_xact_lock(x'636b7061727473'::bigint);
    IF to_regclass(quote_ident(part_name)) IS NOT NULL THEN
        RETURN true;
    END IF;
    SELECT a.attname INTO key_column
      FROM pg_partitioned_table p
      JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
     WHERE p.partrelid = parent::regclass;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I >= $1 AND %I < $2)',
                   parent || '_default', key_column, key_column)
        INTO crowded USING lo, hi;
    IF crowded THEN
        RAISE NOTICE '% has rows of %: partition % not created', parent || '_default',
            to_char(lo, 'YYYY-MM'), part_name;
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                   part_name, parent, lo, hi);
    IF parent = 'access_events' THEN
        PERFORM ck_fence_access_events_partition(part_name);
    END IF;
    RETURN true;
END;
$$;

-- The append-only fences of one access_events partition: row triggers are
-- cloned from the parent, but a TRUNCATE of the partition itself fires only
-- the partition's own statement triggers, and privileges are per table.
CREATE FUNCTION ck_fence_access_events_partition(name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE TRIGGER access_events_no_truncate BEFORE TRUNCATE ON %I
                    FOR EACH STATEMENT EXECUTE FUNCTION access_events_append_only()', name);
    EXECUTE format('REVOKE ALL ON %I FROM PUBLIC', name);
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %I FROM CURRENT_USER',
                   name);
END;
$$;

-- The partitions every time-partitioned table needs now: the current month
-- and the next (UTC), so that the turn of a month never sends appends to
-- the DEFAULT partition while the service runs its upkeep.
CREATE FUNCTION ck_ensure_partitions(at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ck_ensure_month_partition('access_events', at);
    PERFORM ck_ensure_month_partition('access_events', at + interval '1 month');
END;
$$;

-- Move the existing chain: rename the old table out of the way, create the
-- partitioned one, copy the rows, drop the old table (sqlx runs the whole
-- migration in one transaction).
ALTER TABLE access_events RENAME TO access_events_unpartitioned;
ALTER INDEX access_events_pkey RENAME TO access_events_unpartitioned_pkey;
ALTER INDEX access_events_customers RENAME TO access_events_unpartitioned_customers;
ALTER INDEX access_events_principal RENAME TO access_events_unpartitioned_principal;
ALTER INDEX access_events_time RENAME TO access_events_unpartitioned_time;

CREATE TABLE access_events (
    -- Position in the chain, from 1, without gaps (see 20261128000004).
    sequence       bigint NOT NULL CHECK (sequence > 0),
    -- Microsecond precision, as hashed; the partition key.
    event_time     timestamptz NOT NULL,
    principal      text COLLATE "C" NOT NULL,
    roles          text[] NOT NULL,
    calling_system text COLLATE "C" NOT NULL,
    on_behalf_of   text COLLATE "C" NOT NULL,
    method         text COLLATE "C" NOT NULL,
    action         text NOT NULL CHECK (action IN ('READ', 'WRITE')),
    outcome        text COLLATE "C" NOT NULL,
    customers      text[] COLLATE "C" NOT NULL,
    purpose        text NOT NULL,
    trace_id       text COLLATE "C" NOT NULL,
    hash           bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (sequence, event_time)
) PARTITION BY RANGE (event_time);
CREATE INDEX access_events_customers ON access_events USING gin (customers);
CREATE INDEX access_events_principal ON access_events (principal, sequence);
CREATE INDEX access_events_time ON access_events USING brin (event_time);

CREATE TRIGGER access_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON access_events
    FOR EACH ROW EXECUTE FUNCTION access_events_append_only();
CREATE TRIGGER access_events_no_truncate
    BEFORE TRUNCATE ON access_events
    FOR EACH STATEMENT EXECUTE FUNCTION access_events_append_only();

CREATE TABLE access_events_default PARTITION OF access_events DEFAULT;
SELECT ck_fence_access_events_partition('access_events_default');

-- A partition for every month that already has events, then now's.
SELECT ck_ensure_month_partition('access_events', month)
  FROM (SELECT DISTINCT date_trunc('month', event_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                        AS month
          FROM access_events_unpartitioned) AS months;
SELECT ck_ensure_partitions(now());

INSERT INTO access_events SELECT * FROM access_events_unpartitioned;
DROP TABLE access_events_unpartitioned;

REVOKE ALL ON access_events FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON access_events FROM CURRENT_USER;
