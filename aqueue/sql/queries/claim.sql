-- claim: move up to $1 due jobs to running for worker $4, with a lease of $5 seconds.
-- Only job types in $2 and queues in $3 (NULL: every queue). SKIP LOCKED lets many workers
-- claim at once without waiting on each other; due-ness and the lease use the database clock.
WITH due AS (
    SELECT id
    FROM {schema}.background_jobs
    WHERE state IN ('pending', 'error')
      AND next_attempt_after <= now()
      AND job_type = ANY($2::text[])
      AND ($3::text[] IS NULL OR queue = ANY($3::text[]))
    ORDER BY priority DESC, next_attempt_after, id
    LIMIT $1::int
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.background_jobs AS j
SET state = 'running',
    try_count = j.try_count + 1,
    worker_id = $4::text,
    lease_expires_at = now() + make_interval(secs => $5::float8)
FROM due
WHERE j.id = due.id
RETURNING j.id, j.job_type, j.queue, j.priority, j.next_attempt_after, j.try_count,
          j.max_tries, j.payload
