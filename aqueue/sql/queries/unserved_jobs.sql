-- unserved_jobs: of the $1 due jobs that have waited longest, those no live worker serves (no
-- unexpired workers row lists their job type, and their queue or every queue), counted by
-- (job_type, queue), most first; with how many due jobs were looked at. Jobs no worker serves
-- are never claimed, so they are the ones that wait longest; reading at most $1 entries of
-- background_jobs_next_due_idx (longest_due, migration 0003) keeps this cheap beside a heavy
-- load, whatever the table's statistics say.
WITH due AS (
    SELECT job_type, queue FROM {schema}.longest_due($1::int)
),
live AS (
    SELECT job_types, queues FROM {schema}.workers WHERE expires_at >= now()
),
unserved AS (
    SELECT due.job_type, due.queue, count(*)::int AS n
    FROM due
    WHERE NOT EXISTS (
        SELECT FROM live
        WHERE due.job_type = ANY(live.job_types)
          AND (live.queues IS NULL OR due.queue = ANY(live.queues))
    )
    GROUP BY due.job_type, due.queue
)
SELECT job_type, queue, n, (SELECT count(*)::int FROM due) AS looked_at
FROM unserved
ORDER BY n DESC, job_type, queue
