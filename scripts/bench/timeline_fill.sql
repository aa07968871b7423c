-- psql -v tag=a -v count=100 -f timeline_fill.sql: 200 customers bench-<7 digits>
-- with :count interactions each (ids <tag>-<customer>-<k>) spread evenly over the two
-- years before now; BENCHMARKS.md "Partitioned history" (1x: a/100, then 10x: b/900).
INSERT INTO customers (id, display_name, kind, home_branch)
SELECT format('bench-%s', lpad(g::text, 7, '0')), 'x', 'INDIVIDUAL', 'B01'
  FROM generate_series(0, 199) g ON CONFLICT DO NOTHING;
INSERT INTO interactions (customer_id, id, channel, kind, occur_time, summary, notes, products)
SELECT format('bench-%s', lpad(c::text, 7, '0')), format('%s-%s-%s', :'tag', c, k), 'BRANCH', 'INQUIRY',
       now() - (k * 730.0 / :count) * interval '1 day' - c * interval '1 second',
       'Branch visit about a deposit', 'Notes of the visit, a line of text.', '{DEP-01}'
  FROM generate_series(0, 199) c, generate_series(0, :count - 1) k;
ANALYZE;
