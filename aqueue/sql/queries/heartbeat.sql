-- heartbeat: extend the leases worker $3 holds to now() + $4 seconds, never waiting on a row
-- lock held elsewhere. Returns one row per attempt given that it did not extend:
--   (id, attempt, state, locked_elsewhere)
-- locked_elsewhere false: the attempt is lost. Its row was locked and read as it is now, and
--   is no longer this worker's running attempt: state is the job's state now ('cancelled'
--   after app.cancel, another after a rescue), NULL if the row is gone. The worker cancels it.
-- locked_elsewhere true: another transaction holds the row's lock (a completion, cancel or
--   rescue in flight, or someone's open transaction), so it was skipped: unknown this time, not
--   lost (state NULL). The next beat looks again; a rescue that was in flight is seen then.
-- $1 ids bigint[], $2 attempts int[], $3 worker_id, $4 lease_s.
WITH held AS (
    SELECT * FROM unnest($1::bigint[], $2::int[]) AS h(id, attempt)
),
locked AS MATERIALIZED (
    -- Read committed: a row changed since this statement's snapshot is locked and returned
    -- as it is now, so these columns are current (the snapshot's may not be).
    SELECT j.id, j.try_count, j.worker_id, j.state
    FROM {schema}.background_jobs AS j
    WHERE j.id = ANY($1::bigint[])  -- primary-key lookups whatever the statistics say
    FOR UPDATE SKIP LOCKED
),
kept AS (
    UPDATE {schema}.background_jobs AS j
    SET lease_expires_at = now() + make_interval(secs => $4::float8)
    FROM held JOIN locked ON locked.id = held.id  -- only rows locked above: no lock waits
    WHERE j.id = held.id
      AND j.id = ANY($1::bigint[])
      AND locked.try_count = held.attempt
      AND locked.worker_id = $3::text
      AND locked.state = 'running'
    RETURNING j.id
)
SELECT held.id, held.attempt, locked.state::text,
       locked.id IS NULL
       AND EXISTS (SELECT FROM {schema}.background_jobs AS j WHERE j.id = held.id)
       AS locked_elsewhere
FROM held LEFT JOIN locked ON locked.id = held.id
WHERE held.id NOT IN (SELECT id FROM kept)
