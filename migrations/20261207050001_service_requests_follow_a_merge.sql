-- MergeCustomers moves the duplicate's interactions, and their keys in
-- interaction_keys, under the survivor. A service request and its history
-- are keyed by (customer_id, interaction_id) and must follow: without
-- ON UPDATE CASCADE the move of the keys was refused and the merge failed.
ALTER TABLE service_requests
    DROP CONSTRAINT service_requests_customer_id_interaction_id_fkey,
    ADD CONSTRAINT service_requests_customer_id_interaction_id_fkey
        FOREIGN KEY (customer_id, interaction_id)
        REFERENCES interaction_keys (customer_id, id) ON UPDATE CASCADE;
ALTER TABLE service_request_events
    DROP CONSTRAINT service_request_events_customer_id_interaction_id_fkey,
    ADD CONSTRAINT service_request_events_customer_id_interaction_id_fkey
        FOREIGN KEY (customer_id, interaction_id)
        REFERENCES service_requests (customer_id, interaction_id) ON UPDATE CASCADE;
