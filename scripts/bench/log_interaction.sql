-- pgbench: the SQL of one LogInteraction (without request_id) as pgbench can
-- send it: share-lock the customer, insert the row and its outbox row, wake
-- the watch feed, commit. The service's extra cost over this is gRPC,
-- validation, protobuf and the read-back.
\set c random(0, :customers - 1)
BEGIN;
SELECT id FROM customers ORDER BY id OFFSET :c LIMIT 1 FOR SHARE;
WITH i AS (
    INSERT INTO interactions (customer_id, id, channel, kind, occur_time, summary, products,
                              amount_currency, amount_units, amount_nanos, source_system,
                              external_ref)
    SELECT id, gen_random_uuid()::text, 'ONLINE_BANKING', 'TRANSACTION', now(), 'Card payment',
           '{DEBIT-CARD}', 'CNY', 42, 0, 'CORE', 'PGB-' || gen_random_uuid()
    FROM customers ORDER BY id OFFSET :c LIMIT 1
    RETURNING customer_id, id)
INSERT INTO outbox (aggregate_type, aggregate_id, event_type, payload)
SELECT 'interaction', 'customers/' || customer_id || '/interactions/' || id, 'interaction.logged', '{}'
FROM i;
SELECT pg_notify('ck_interactions', '');
COMMIT;
