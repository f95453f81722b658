-- rescue: return running jobs whose lease expired (their worker died or stalled) to the queue,
-- keeping its place in line (it was due already); the attempt counts, so a job out of tries
-- ends failed. Any worker may run this.
WITH expired AS (
    SELECT id
    FROM {schema}.background_jobs
    WHERE state = 'running' AND lease_expires_at < now()
    FOR UPDATE SKIP LOCKED
),
rescued AS (
    UPDATE {schema}.background_jobs AS j
    SET state = CASE WHEN j.try_count >= j.max_tries
                     THEN 'failed' ELSE 'error' END::{schema}.job_state,
        next_attempt_after = least(j.next_attempt_after, now()),
        failure_info = 'WorkerLost: worker ' || coalesce(j.worker_id, '?')
            || ' stopped renewing its lease during attempt ' || j.try_count
            || '; the lease expired at ' || j.lease_expires_at::text,
        worker_id = NULL,
        lease_expires_at = NULL
    FROM expired
    WHERE j.id = expired.id
    RETURNING j.id, j.state::text AS state, j.queue
)
SELECT rescued.id, rescued.state
FROM rescued, LATERAL (SELECT pg_notify('{channel}', rescued.queue)) AS notified
