-- Long-running operations (AIP-151). RecomputeSegments answers at once with
-- an operation that a task of the server completes. The database session
-- running that task holds the advisory lock (0x434B4F50, lock_key) from
-- before the row exists until the row is done, so an operation left not done
-- without that lock has lost its runner (the server stopped or its
-- connection broke); readers then end it as ABORTED.
CREATE SEQUENCE operation_lock_keys AS integer CYCLE;

CREATE TABLE operations (
    id               uuid PRIMARY KEY,
    -- The method that started it, e.g. 'RecomputeSegments'.
    kind             text NOT NULL,
    -- The caller that started it (employee id or system name); only it and
    -- admins see the operation.
    created_by       text NOT NULL,
    -- The request as it runs (defaults filled in), encoded protobuf.
    request          bytea NOT NULL,
    lock_key         integer NOT NULL,
    runner_pid       integer NOT NULL,
    create_time      timestamptz NOT NULL DEFAULT now(),
    end_time         timestamptz,
    done             boolean NOT NULL DEFAULT false,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- The response (encoded protobuf) of an operation that succeeded…
    response         bytea,
    -- …or the google.rpc.Status (encoded) of one that failed.
    error            bytea,
    CHECK (done = (end_time IS NOT NULL)),
    CHECK (response IS NULL OR error IS NULL),
    CHECK (NOT done OR response IS NOT NULL OR error IS NOT NULL)
);

CREATE INDEX operations_by_time ON operations (create_time DESC, id DESC);
CREATE INDEX operations_by_creator ON operations (created_by, create_time DESC, id DESC);
CREATE INDEX operations_running ON operations (id) WHERE NOT done;
