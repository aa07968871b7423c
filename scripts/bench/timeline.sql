-- pgbench (-M prepared): one timeline page as ListInteractions reads it
-- (src/store/interactions.rs TIMELINE_SQL without its optional filters),
-- for a uniformly drawn customer `<prefix>-<7 digits>` of :customers.
-- BENCHMARKS.md "Partitioned history" runs it at 1x and 10x history.
\set i random(0, :customers - 1)
SELECT i.customer_id, i.id, i.channel, i.kind, i.occur_time, i.summary, i.notes, i.products
  FROM interactions i JOIN customers c ON c.id = i.customer_id
 WHERE i.customer_id = format('%s-%s', :prefix::text, lpad(:i::text, 7, '0'))
   AND i.void_time IS NULL
 ORDER BY i.occur_time DESC, i.id DESC
 LIMIT 50;
