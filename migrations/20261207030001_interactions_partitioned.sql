-- The timeline grows with every transaction a bank logs: range-partition
-- `interactions` by occur_time, one partition per UTC year
-- (interactions_YYYY), so appends land in the current year's partition and
-- a timeline page (ORDER BY occur_time DESC, id DESC LIMIT n per customer)
-- is an ordered Append over the partitions, newest first, that stops after
-- one page: the older years' index scans are never executed.
--
-- Years, not months: a page of a customer's timeline usually spans months,
-- and every partition costs planning, a lock and an index descent on each
-- lookup by id; a year keeps the partition count at a few per decade while
-- the current partition stays a small fraction of the history.
--
-- No DEFAULT partition: Postgres cannot scan partitions in bound order when
-- a DEFAULT partition is in the plan (its rows could belong anywhere), and
-- the timeline would become a Merge Append that reads at least one row from
-- every partition. Instead two catch-all partitions cover the rest of time,
-- so no write can fail for lack of a partition: interactions_past (MINVALUE
-- up to the first year) and interactions_future (after the last year, up to
-- MAXVALUE). ck_ensure_partitions creates the current and next years,
-- splitting them off interactions_future (normally empty) when needed.
--
-- Keys: a partitioned table's unique indexes must contain the partition key,
-- so (customer_id, id) and the external_ref dedupe key move to a small
-- unpartitioned table, interaction_keys, written in the same statement as
-- each interaction. Its primary key keeps interaction ids unique per
-- customer, its partial unique index keeps (customer_id, source_system,
-- external_ref) unique across all years, and service_requests references it
-- instead of the interactions themselves.

CREATE TABLE interaction_keys (
    customer_id   text COLLATE "C" NOT NULL REFERENCES customers (id),
    id            text COLLATE "C" NOT NULL,
    source_system text NOT NULL DEFAULT '',
    external_ref  text NOT NULL DEFAULT '',
    PRIMARY KEY (customer_id, id)
);
CREATE UNIQUE INDEX interaction_keys_external_ref
    ON interaction_keys (customer_id, source_system, external_ref) WHERE external_ref <> '';

ALTER TABLE service_requests
    DROP CONSTRAINT service_requests_customer_id_interaction_id_fkey;

ALTER TABLE interactions RENAME TO interactions_unpartitioned;
ALTER TABLE interactions_unpartitioned RENAME CONSTRAINT interactions_pkey
    TO interactions_unpartitioned_pkey;
ALTER INDEX interactions_answers RENAME TO interactions_unpartitioned_answers;
ALTER INDEX interactions_by_update_time RENAME TO interactions_unpartitioned_by_update_time;
ALTER INDEX interactions_complaints RENAME TO interactions_unpartitioned_complaints;
ALTER INDEX interactions_complaints_received
    RENAME TO interactions_unpartitioned_complaints_received;
ALTER INDEX interactions_external_ref RENAME TO interactions_unpartitioned_external_ref;
ALTER INDEX interactions_open_complaints RENAME TO interactions_unpartitioned_open_complaints;
ALTER INDEX interactions_rated RENAME TO interactions_unpartitioned_rated;
ALTER INDEX interactions_stream RENAME TO interactions_unpartitioned_stream;
ALTER INDEX interactions_timeline RENAME TO interactions_unpartitioned_timeline;
ALTER INDEX complaints_by_update_time RENAME TO interactions_unpartitioned_complaints_by_update_time;

-- The same columns, defaults, CHECKs and identity (seq) as before.
CREATE TABLE interactions (
    LIKE interactions_unpartitioned INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY,
    PRIMARY KEY (customer_id, id, occur_time),
    CONSTRAINT interactions_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id)
) PARTITION BY RANGE (occur_time);

CREATE INDEX interactions_timeline ON interactions (customer_id, occur_time DESC, id DESC);
CREATE INDEX interactions_stream ON interactions (txid, seq);
CREATE INDEX interactions_open_complaints ON interactions (complaint_due_time)
    WHERE complaint_state IN ('OPEN', 'IN_PROGRESS');
CREATE INDEX interactions_complaints ON interactions (complaint_due_time, customer_id, id)
    WHERE complaint_state IS NOT NULL;
CREATE INDEX interactions_complaints_received ON interactions (occur_time)
    WHERE complaint_state IS NOT NULL;
CREATE INDEX interactions_answers ON interactions (customer_id, occur_time)
    WHERE satisfaction IS NOT NULL OR nps IS NOT NULL;
CREATE INDEX interactions_rated ON interactions (occur_time)
    WHERE satisfaction IS NOT NULL OR nps IS NOT NULL;
CREATE INDEX interactions_by_update_time ON interactions (customer_id, update_time, id);
-- ListComplaints ordered by update_time (20261207020002).
CREATE INDEX complaints_by_update_time ON interactions (update_time, customer_id, id)
    WHERE complaint_state IS NOT NULL;
-- Reads by external ref (the stored row behind a dedupe hit, merge checks).
CREATE INDEX interactions_external_ref ON interactions (customer_id, source_system, external_ref)
    WHERE external_ref <> '';

-- Creates the yearly partitions of interactions from the end of the last
-- one through the UTC year holding `at`, splitting them off
-- interactions_future: detach it, create the years and a new
-- interactions_future after them, move its rows back in through the parent
-- (each lands in its year or the new tail, keeping its txid and seq so the
-- feed does not stream it again), drop the old one. Returns false when that
-- year is already covered (a yearly partition or interactions_past).
CREATE FUNCTION ck_ensure_interactions_year(at timestamptz) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    wanted timestamptz := (date_trunc('year', at AT TIME ZONE 'UTC') + interval '1 year')
                          AT TIME ZONE 'UTC';
    tail   timestamptz;
    y      timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(x'636b7061727473'::bigint);
    SELECT substring(pg_get_expr(c.relpartbound, c.oid) FROM $re$FROM \('([^']*)'\)$re$)::timestamptz
      INTO tail
      FROM pg_class c WHERE c.oid = 'interactions_future'::regclass;
    IF wanted <= tail THEN
        RETURN false;
    END IF;
    ALTER TABLE interactions DETACH PARTITION interactions_future;
    ALTER TABLE interactions_future RENAME TO interactions_future_split;
    y := tail;
    WHILE y < wanted LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF interactions FOR VALUES FROM (%L) TO (%L)',
                       'interactions_' || to_char(y AT TIME ZONE 'UTC', 'YYYY'), y,
                       (y AT TIME ZONE 'UTC' + interval '1 year') AT TIME ZONE 'UTC');
        y := (y AT TIME ZONE 'UTC' + interval '1 year') AT TIME ZONE 'UTC';
    END LOOP;
    EXECUTE format('CREATE TABLE interactions_future PARTITION OF interactions
                    FOR VALUES FROM (%L) TO (MAXVALUE)', wanted);
    INSERT INTO interactions OVERRIDING SYSTEM VALUE SELECT * FROM interactions_future_split;
    DROP TABLE interactions_future_split;
    RETURN true;
END;
$$;

CREATE OR REPLACE FUNCTION ck_ensure_partitions(at timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ck_ensure_month_partition('access_events', at);
    PERFORM ck_ensure_month_partition('access_events', at + interval '1 month');
    PERFORM ck_ensure_interactions_year(at + interval '1 year');
END;
$$;

-- Years: from the first year with interactions (or two years back, so a
-- history loaded into a fresh database lands in yearly partitions too)
-- through next year.
DO $$
DECLARE
    first_year timestamptz := date_trunc('year', least(
        (SELECT min(occur_time) FROM interactions_unpartitioned),
        now() - interval '2 years') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
BEGIN
    EXECUTE format('CREATE TABLE interactions_past PARTITION OF interactions
                    FOR VALUES FROM (MINVALUE) TO (%L)', first_year);
    EXECUTE format('CREATE TABLE interactions_future PARTITION OF interactions
                    FOR VALUES FROM (%L) TO (MAXVALUE)', first_year);
END;
$$;
SELECT ck_ensure_interactions_year(now() + interval '1 year');

INSERT INTO interactions OVERRIDING SYSTEM VALUE SELECT * FROM interactions_unpartitioned;
INSERT INTO interaction_keys (customer_id, id, source_system, external_ref)
SELECT customer_id, id, source_system, external_ref FROM interactions_unpartitioned;
SELECT setval(pg_get_serial_sequence('interactions', 'seq'),
              coalesce((SELECT max(seq) FROM interactions_unpartitioned), 0) + 1, false);
DROP TABLE interactions_unpartitioned;

ALTER TABLE service_requests
    ADD CONSTRAINT service_requests_customer_id_interaction_id_fkey
    FOREIGN KEY (customer_id, interaction_id) REFERENCES interaction_keys (customer_id, id);
