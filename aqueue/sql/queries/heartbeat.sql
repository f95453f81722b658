-- heartbeat: extend the leases worker $3 holds to now() + $4 seconds. Returns the ids still
-- held; a running attempt missing from the result has lost its lease.
-- $1 ids bigint[], $2 attempts int[], $3 worker_id, $4 lease_s.
UPDATE {schema}.background_jobs AS j
SET lease_expires_at = now() + make_interval(secs => $4::float8)
FROM unnest($1::bigint[], $2::int[]) AS h(id, attempt)
WHERE j.id = h.id
  AND j.try_count = h.attempt
  AND j.worker_id = $3::text
  AND j.state = 'running'
RETURNING j.id
