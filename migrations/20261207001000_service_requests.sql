-- Service requests: the life cycle a SERVICE_REQUEST interaction opens
-- (RECEIVED → CONFIRMED → SOLUTION_PROPOSED → IN_PROGRESS → RESOLVED →
-- SATISFACTION_CHECKED, or CANCELLED from any open state), with its SLA due
-- times fixed at receipt from the priority and the customer's tier, and the
-- history of its state changes (who, when). A table of its own rather than
-- more interaction columns: the timeline reads stay as wide as they are, and
-- the history has one row per change.
CREATE TABLE service_requests (
    customer_id             text COLLATE "C" NOT NULL,
    interaction_id          text COLLATE "C" NOT NULL,
    state                   text NOT NULL CHECK (state IN ('RECEIVED', 'CONFIRMED',
                                'SOLUTION_PROPOSED', 'IN_PROGRESS', 'RESOLVED',
                                'SATISFACTION_CHECKED', 'CANCELLED')),
    priority                text NOT NULL CHECK (priority IN ('LOW', 'MEDIUM', 'HIGH', 'URGENT')),
    -- The customer was VIP or MAJOR at receipt: the key-customer SLA applies.
    key_customer            boolean NOT NULL,
    assignee                text NOT NULL DEFAULT '',
    receive_time            timestamptz NOT NULL,
    response_due_time       timestamptz NOT NULL,
    resolution_due_time     timestamptz NOT NULL,
    first_response_time     timestamptz,
    resolve_time            timestamptz,
    satisfaction_check_time timestamptz,
    cancel_time             timestamptz,
    satisfaction            smallint CHECK (satisfaction BETWEEN 1 AND 5),
    -- Free text, erased with the customer.
    need                    text NOT NULL DEFAULT '',
    solution                text NOT NULL DEFAULT '',
    resolution              text NOT NULL DEFAULT '',
    feedback                text NOT NULL DEFAULT '',
    cancel_reason           text NOT NULL DEFAULT '',
    version                 bigint NOT NULL DEFAULT 1,
    create_time             timestamptz NOT NULL DEFAULT now(),
    update_time             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, interaction_id),
    FOREIGN KEY (customer_id, interaction_id) REFERENCES interactions (customer_id, id)
);

-- ListServiceRequests: the most urgent (earliest resolution due) first.
CREATE INDEX service_requests_due
    ON service_requests (resolution_due_time, customer_id, interaction_id);
-- An employee's open requests.
CREATE INDEX service_requests_assignee ON service_requests (assignee, resolution_due_time)
    WHERE state NOT IN ('RESOLVED', 'SATISFACTION_CHECKED', 'CANCELLED');
-- GetServiceMetrics reads the requests received in a period.
CREATE INDEX service_requests_received ON service_requests (receive_time);

-- Every state change of a service request: the state it left (NULL for the
-- receipt), the state it reached, who made it and when.
CREATE TABLE service_request_events (
    customer_id    text COLLATE "C" NOT NULL,
    interaction_id text COLLATE "C" NOT NULL,
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    from_state     text,
    to_state       text NOT NULL,
    actor          text NOT NULL,
    change_time    timestamptz NOT NULL,
    PRIMARY KEY (customer_id, interaction_id, seq),
    FOREIGN KEY (customer_id, interaction_id)
        REFERENCES service_requests (customer_id, interaction_id)
);
