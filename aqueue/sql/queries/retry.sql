-- retry: hand running attempts back to the queue, due now, without counting them (the worker
-- stopped before they could finish). Guarded by worker and attempt like complete.
-- $1 ids bigint[], $2 attempts int[], $3 worker_id.
WITH returned AS (
    UPDATE {schema}.background_jobs AS j
    SET state = CASE WHEN j.try_count > 1 THEN 'error' ELSE 'pending' END::{schema}.job_state,
        try_count = j.try_count - 1,
        next_attempt_after = now(),
        worker_id = NULL,
        lease_expires_at = NULL
    FROM unnest($1::bigint[], $2::int[]) AS r(id, attempt)
    WHERE j.id = r.id
      AND j.id = ANY($1::bigint[])  -- as an index condition: primary-key lookups whatever the statistics say
      AND j.try_count = r.attempt
      AND j.worker_id = $3::text
      AND j.state = 'running'
    RETURNING j.id, j.queue
)
SELECT returned.id
FROM returned, LATERAL (SELECT pg_notify('{channel}', returned.queue)) AS notified
