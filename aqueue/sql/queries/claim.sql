-- claim: move up to $1 due jobs to running for worker $4, with a lease of $5 seconds, and say
-- when the next job not taken here is due (so the scheduler needs no second round trip).
-- Only job types in $2 and queues in $3 (NULL: every queue). SKIP LOCKED lets many workers
-- claim at once without waiting on each other; due-ness and the lease use the database clock.
-- Returns one row per claimed job, or a single row of NULL job columns when none was claimed;
-- next_due_s (the same on every row) is seconds until that next job is due, <= 0 when one is
-- due but locked by another claimer, NULL when there is none.
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
),
claimed AS (
    UPDATE {schema}.background_jobs AS j
    SET state = 'running',
        try_count = j.try_count + 1,
        worker_id = $4::text,
        lease_expires_at = now() + make_interval(secs => $5::float8)
    FROM due
    WHERE j.id = due.id
    RETURNING j.id, j.job_type, j.queue, j.priority, j.next_attempt_after, j.try_count,
              j.max_tries, j.payload
),
later AS (
    SELECT extract(epoch FROM min(next_attempt_after) - now())::float8 AS next_due_s
    FROM {schema}.background_jobs
    WHERE state IN ('pending', 'error')
      AND job_type = ANY($2::text[])
      AND ($3::text[] IS NULL OR queue = ANY($3::text[]))
      AND id NOT IN (SELECT id FROM due)
)
SELECT claimed.id, claimed.job_type, claimed.queue, claimed.priority,
       claimed.next_attempt_after, claimed.try_count, claimed.max_tries, claimed.payload,
       later.next_due_s
FROM later LEFT JOIN claimed ON true
