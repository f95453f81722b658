-- claim: move up to $1 due jobs to running for worker $4, with a lease of $5 seconds, and say
-- when the next job not taken here is due (so the scheduler needs no second round trip).
-- Only job types in $2 and queues in $3 (NULL: every queue). SKIP LOCKED lets many workers
-- claim at once without waiting on each other; due-ness and the lease use the database clock.
-- The same statement completes the attempts ($6 ids, $7 attempts) that finished since the
-- last claim, as complete.sql does: one round trip instead of two on the hot path.
-- Returns one row per claimed job, or a single row of NULL job columns when none was claimed.
-- next_due_s (the same on every row) is seconds until that next job is due, <= 0 when one is
-- due but locked by another claimer, NULL when there is none, or when all $1 were claimed
-- (the caller claims again then; it is not looked up). completed lists the ids of $6 now
-- completed, including those an earlier try of this write completed (on the first row).
WITH done AS (
    SELECT * FROM unnest($6::bigint[], $7::int[]) AS d(id, attempt)
),
completed AS (
    UPDATE {schema}.background_jobs AS j
    SET state = 'completed', lease_expires_at = NULL
    FROM done
    WHERE j.id = done.id
      AND j.id = ANY($6::bigint[])  -- as an index condition: primary-key lookups whatever the statistics say
      AND j.try_count = done.attempt
      AND j.worker_id = $4::text
      AND j.state = 'running'
    RETURNING j.id
),
due AS (
    SELECT id FROM {schema}.due_jobs($1::int, $2::text[], $3::text[]) AS id
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
    SELECT CASE WHEN (SELECT count(*) FROM due) < $1::int
                THEN {schema}.next_due_s($2::text[], $3::text[], ARRAY(SELECT id FROM due))
           END AS next_due_s,
           ARRAY(
               SELECT id FROM completed
               UNION ALL
               -- This statement's snapshot still shows its own updates as running.
               SELECT j.id
               FROM {schema}.background_jobs AS j JOIN done ON j.id = done.id
               WHERE j.id = ANY($6::bigint[]) AND j.try_count = done.attempt AND j.worker_id = $4::text
                 AND j.state = 'completed'
           ) AS completed
)
SELECT claimed.id, claimed.job_type, claimed.queue, claimed.priority,
       claimed.next_attempt_after, claimed.try_count, claimed.max_tries, claimed.payload,
       later.next_due_s, later.completed
FROM later LEFT JOIN claimed ON true
