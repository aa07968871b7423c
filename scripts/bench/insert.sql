-- pgbench: the row LogInteraction appends, as one plain INSERT (no outbox,
-- no idempotency, no gRPC): the floor the service is compared against.
\set c random(0, :customers - 1)
INSERT INTO interactions (customer_id, id, channel, kind, occur_time, summary, products,
                          amount_currency, amount_units, amount_nanos, source_system, external_ref)
SELECT id, gen_random_uuid()::text, 'ONLINE_BANKING', 'TRANSACTION', now(), 'Card payment',
       '{DEBIT-CARD}', 'CNY', 42, 0, 'CORE', 'PGB-' || gen_random_uuid()
FROM customers ORDER BY id OFFSET :c LIMIT 1;
