-- prune_waiters: forget awaited rows (App.result calls) older than a day: left by a caller
-- killed while it waited. Returns how many.
WITH gone AS (
    DELETE FROM {schema}.awaited AS a WHERE a.since < now() - interval '1 day' RETURNING 1
)
SELECT count(*) FROM gone
