-- unserved_jobs: due jobs no live worker serves (no unexpired workers row lists their job
-- type, and their queue or every queue), counted by (job_type, queue), most first, at most $1
-- per lane; capped: some lane of it had $1 or more. Jobs no worker serves are never claimed;
-- only their lanes are read, so this stays cheap beside a heavy load.
WITH live AS (
    SELECT job_types, queues FROM {schema}.workers WHERE expires_at >= now()
),
unserved AS (
    SELECT l.lane_id, l.job_type, l.queue
    FROM {schema}.lanes AS l
    WHERE NOT EXISTS (
        SELECT FROM live
        WHERE l.job_type = ANY(live.job_types)
          AND (live.queues IS NULL OR l.queue = ANY(live.queues))
    )
),
counted AS (
    SELECT u.job_type, u.queue,
           (SELECT count(*) FROM (SELECT FROM {schema}.jobs_ready AS r
                                  WHERE r.lane_id = u.lane_id LIMIT $1::int) AS s)::int AS n
    FROM unserved AS u
),
totals AS (
    SELECT job_type, queue, sum(n)::int AS n, bool_or(n >= $1::int) AS capped
    FROM counted GROUP BY job_type, queue
)
SELECT job_type, queue, n, capped
FROM totals
WHERE n > 0
ORDER BY n DESC, job_type, queue
