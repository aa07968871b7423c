-- pgbench (-M prepared): a primary-key SELECT of one customer of the
-- generated data set: what scripts/bench-all.sh compares GetCustomer with.
\set i random(0, :customers - 1)
SELECT * FROM customers WHERE id = format('%s-%s', :prefix::text, lpad(:i::text, 7, '0'));
