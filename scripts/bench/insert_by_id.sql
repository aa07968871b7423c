-- pgbench (-M prepared): the row LogInteraction appends, as one plain INSERT
-- for a customer of the generated data set (ids `<prefix>-<7 digits>`, see
-- src/datagen): no gRPC, no outbox, no lock, no NOTIFY. The floor
-- scripts/bench-all.sh compares LogInteraction with.
\set i random(0, :customers - 1)
INSERT INTO interactions (customer_id, id, channel, kind, occur_time, summary, products,
                          amount_currency, amount_units, amount_nanos, source_system, external_ref)
VALUES (format('%s-%s', :prefix::text, lpad(:i::text, 7, '0')), gen_random_uuid()::text,
        'ONLINE_BANKING', 'TRANSACTION', now(), 'Card payment', '{DEBIT-CARD}', 'CNY', 42, 0,
        'CORE', 'PGB-' || gen_random_uuid());
