-- rescue: return running jobs whose lease expired (their worker died or stalled) to the queue,
-- keeping its place in line (it was due already); the attempt counts, so a job out of tries
-- ends failed. Any worker may run this. $1 is its id and $2 the jobs it is running: those it
-- leaves to its own heartbeat (after an outage they may have lapsed for a moment), but not
-- rows it claimed and never heard back about (the claim's reply lost with its connection).
WITH expired AS (
    SELECT id
    FROM {schema}.background_jobs
    WHERE state = 'running' AND lease_expires_at < now()
      AND (worker_id IS DISTINCT FROM $1::text OR id <> ALL($2::bigint[]))
    FOR UPDATE SKIP LOCKED
),
rescued AS (
    UPDATE {schema}.background_jobs AS j
    SET state = CASE WHEN j.try_count >= j.max_tries
                     THEN 'failed' ELSE 'error' END::{schema}.job_state,
        next_attempt_after = least(j.next_attempt_after, now()),
        failure_info = 'WorkerLost: worker ' || coalesce(j.worker_id, '?')
            || ' stopped renewing its lease during attempt ' || j.try_count
            || '; the lease expired at ' || j.lease_expires_at::text
            || '; rescued at ' || now()::text,
        worker_id = NULL,
        lease_expires_at = NULL
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.id, j.state::text AS state, j.queue
)
SELECT rescued.id, rescued.state
FROM rescued, LATERAL (SELECT pg_notify('{channel}', rescued.queue)) AS notified
