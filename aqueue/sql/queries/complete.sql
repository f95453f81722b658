-- complete: record successful attempts. Each row must still be running under worker $3 at the
-- same attempt: a late write from an attempt that lost its lease changes nothing.
-- $1 ids bigint[], $2 attempts int[], $3 worker_id.
UPDATE {schema}.background_jobs AS j
SET state = 'completed', worker_id = NULL, lease_expires_at = NULL
FROM unnest($1::bigint[], $2::int[]) AS done(id, attempt)
WHERE j.id = done.id
  AND j.try_count = done.attempt
  AND j.worker_id = $3::text
  AND j.state = 'running'
RETURNING j.id
