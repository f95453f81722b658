-- stats: exact counts of the waiting and running jobs by queue, job type and state, and for
-- each group the earliest due time; then one row per ring of finished jobs (queue and job
-- type NULL, state 'done' for completed and cancelled, 'failed'): the rows the planner's
-- statistics say it holds (pg_class.reltuples of its partitions, as of the last VACUUM or
-- ANALYZE), an estimate that reads no finished row. kind: 'exact' or 'estimate'.
SELECT 'exact' AS kind, r.queue, r.job_type, r.state::text, count(*)::bigint,
       min(r.next_attempt_after) AS first_due
FROM {schema}.jobs_ready AS r GROUP BY r.queue, r.job_type, r.state
UNION ALL
SELECT 'exact', d.queue, d.job_type, d.state::text, count(*)::bigint,
       min(d.next_attempt_after)
FROM {schema}.jobs_delayed AS d GROUP BY d.queue, d.job_type, d.state
UNION ALL
SELECT 'exact', u.queue, u.job_type, 'running', count(*)::bigint, NULL
FROM {schema}.jobs_running AS u GROUP BY u.queue, u.job_type
UNION ALL
SELECT 'estimate', NULL, NULL, ring.state,
       coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint, NULL
FROM (VALUES ('done', 'jobs_done_'), ('failed', 'jobs_failed_')) AS ring(state, prefix)
JOIN pg_class AS c ON c.relname LIKE ring.prefix || '%'
    AND c.relnamespace = '{schema}'::regnamespace AND c.relkind = 'r'
GROUP BY ring.state
UNION ALL
SELECT 'now', NULL, NULL, NULL, 0, now()
