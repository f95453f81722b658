-- cancel: withdraw job $1 if it is pending, error or running; it is never run (again). A
-- running attempt's worker is told through NOTIFY ('!cancel <id>', which no queue name can
-- be) and also finds out from the table at its next heartbeat; its later writes change nothing
-- because they require state = 'running'. Returns the state the job had, or no row.
WITH target AS (
    SELECT id, state
    FROM {schema}.background_jobs
    WHERE id = $1::bigint AND state IN ('pending', 'error', 'running')
    FOR UPDATE
),
cancelled AS (
    UPDATE {schema}.background_jobs AS j
    SET state = 'cancelled',
        failure_info = CASE WHEN target.state = 'running'
            THEN 'Cancelled: cancelled while attempt ' || j.try_count || ' was running on '
                 || coalesce(j.worker_id, '?')
            ELSE j.failure_info END,
        worker_id = NULL,
        lease_expires_at = NULL
    FROM target
    WHERE j.id = target.id
    RETURNING j.id, target.state::text AS was
)
SELECT cancelled.was,
       (SELECT count(*) FROM (SELECT pg_notify('{channel}', '!cancel ' || cancelled.id)
                              WHERE cancelled.was = 'running') AS s) AS notified
FROM cancelled
