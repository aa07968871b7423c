-- Churn risk moves from a 0–1 fraction to 0–100 points (the scale the bank's
-- worklists use). Stored runs are rescaled so that old and new runs compare:
-- each score and each weight kept with a run's rules is multiplied by 100
-- (in numeric, so 0.3 becomes 30, not 30.000000000000004).
UPDATE customer_segments SET churn_score = round((churn_score * 100)::numeric, 6)::float8;

UPDATE segment_runs
   SET model = model || (
       SELECT jsonb_object_agg(key, to_jsonb(round((value #>> '{}')::numeric * 100, 6)::float8))
         FROM jsonb_each(model)
        WHERE key LIKE 'weight\_%')
 WHERE EXISTS (SELECT 1 FROM jsonb_object_keys(model) k WHERE k LIKE 'weight\_%');
