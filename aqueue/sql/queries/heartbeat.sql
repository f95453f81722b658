-- heartbeat: extend the leases worker $3 holds to now() + $4 seconds. Returns the attempts it
-- no longer holds (id, attempt), with their job's state now: 'cancelled' (app.cancel), or another state
-- after a rescue (NULL if the row is gone). The worker cancels those attempts.
-- $1 ids bigint[], $2 attempts int[], $3 worker_id, $4 lease_s.
WITH held AS (
    SELECT * FROM unnest($1::bigint[], $2::int[]) AS h(id, attempt)
),
kept AS (
    UPDATE {schema}.background_jobs AS j
    SET lease_expires_at = now() + make_interval(secs => $4::float8)
    FROM held
    WHERE j.id = held.id
      AND j.id = ANY($1::bigint[])  -- as an index condition: primary-key lookups whatever the statistics say
      AND j.try_count = held.attempt
      AND j.worker_id = $3::text
      AND j.state = 'running'
    RETURNING j.id
)
SELECT held.id, held.attempt, j.state::text
FROM held LEFT JOIN {schema}.background_jobs AS j ON j.id = held.id
WHERE held.id NOT IN (SELECT id FROM kept)
