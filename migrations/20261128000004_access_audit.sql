-- The access audit: one row per call of the customer-facing services,
-- append-only and hash-chained (README "Access audit" specifies the
-- canonical encoding and the chain). Customers appear only as keyed
-- pseudonyms, so erasing a customer never rewrites this table.

CREATE TABLE access_events (
    -- Position in the chain, from 1, without gaps. Assigned by the writer
    -- under a transaction-level advisory lock, never by a sequence (a
    -- sequence leaves gaps on rollback, and gaps mean deletion here).
    sequence       bigint PRIMARY KEY CHECK (sequence > 0),
    -- Microsecond precision, as hashed (integer microseconds since the epoch).
    event_time     timestamptz NOT NULL,
    principal      text COLLATE "C" NOT NULL,
    roles          text[] NOT NULL,
    calling_system text COLLATE "C" NOT NULL,
    -- Keyed pseudonym of the end customer a calling system acted for.
    on_behalf_of   text COLLATE "C" NOT NULL,
    method         text COLLATE "C" NOT NULL,
    action         text NOT NULL CHECK (action IN ('READ', 'WRITE')),
    -- gRPC status code name: OK, PERMISSION_DENIED, ...
    outcome        text COLLATE "C" NOT NULL,
    -- Keyed pseudonyms (lowercase hex HMAC-SHA256) of the customers touched.
    customers      text[] COLLATE "C" NOT NULL,
    purpose        text NOT NULL,
    trace_id       text COLLATE "C" NOT NULL,
    -- SHA-256(hash of the previous event || canonical encoding of this one).
    hash           bytea NOT NULL CHECK (length(hash) = 32)
);
CREATE INDEX access_events_customers ON access_events USING gin (customers);
CREATE INDEX access_events_principal ON access_events (principal, sequence);
-- Events arrive in time order, so a BRIN index serves time ranges at a
-- fraction of a B-tree's cost on every append.
CREATE INDEX access_events_time ON access_events USING brin (event_time);

-- Append-only, whoever asks: the trigger refuses UPDATE, DELETE and TRUNCATE
-- even for the table's owner (the service's role runs the migrations, and an
-- owner can always grant itself privileges back). Only a superuser can get
-- past it (session_replication_role = replica, or dropping the trigger), and
-- VerifyAuditChain then shows what they did.
CREATE FUNCTION access_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'access_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER access_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON access_events
    FOR EACH ROW EXECUTE FUNCTION access_events_append_only();

CREATE TRIGGER access_events_no_truncate
    BEFORE TRUNCATE ON access_events
    FOR EACH STATEMENT EXECUTE FUNCTION access_events_append_only();

-- Privileges as a second fence: nobody is granted more than reading and
-- appending. Revoking from the owner (the role that runs this migration)
-- makes an accidental UPDATE fail on privileges before the trigger; it does
-- not bind a superuser.
REVOKE ALL ON access_events FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON access_events FROM CURRENT_USER;
