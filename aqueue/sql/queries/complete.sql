-- complete: record successful attempts. Each row must still be running under worker $3 at the
-- same attempt: a late write from an attempt that lost its lease changes nothing. worker_id
-- stays, naming who ran the last attempt. Returns the ids completed, including those an
-- earlier try of this same write completed already (its reply was lost with the connection).
-- $1 ids bigint[], $2 attempts int[], $3 worker_id.
WITH done AS (
    SELECT * FROM unnest($1::bigint[], $2::int[]) AS d(id, attempt)
),
completed AS (
    UPDATE {schema}.background_jobs AS j
    SET state = 'completed', lease_expires_at = NULL
    FROM done
    WHERE j.id = done.id
      AND j.id = ANY($1::bigint[])  -- as an index condition: primary-key lookups whatever the statistics say
      AND j.try_count = done.attempt
      AND j.worker_id = $3::text
      AND j.state = 'running'
    RETURNING j.id
)
SELECT id FROM completed
UNION ALL
-- This statement's snapshot still shows its own updates as running: no double count.
SELECT j.id
FROM {schema}.background_jobs AS j JOIN done ON j.id = done.id
WHERE j.id = ANY($1::bigint[]) AND j.try_count = done.attempt AND j.worker_id = $3::text AND j.state = 'completed'
