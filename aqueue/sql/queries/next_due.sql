-- next_due: seconds until the earliest claimable job of types $1 in queues $2 (NULL: every
-- queue) is due, by the database clock; <= 0 when one is due now, NULL when there is none.
SELECT extract(epoch FROM min(next_attempt_after) - now())::float8
FROM {schema}.background_jobs
WHERE state IN ('pending', 'error')
  AND job_type = ANY($1::text[])
  AND ($2::text[] IS NULL OR queue = ANY($2::text[]))
