-- rescue: return the running jobs of workers whose lease expired (they died or stalled) to
-- the queue; the attempt counts, so a job out of tries ends failed. Then forget those
-- workers. Any worker may run this ($1, never rescued by itself: its own heartbeat renews its
-- lease after an outage); workers another rescuer holds are skipped. Only the expired
-- workers' rows of jobs_running are read, never the others', and none when no lease has
-- expired. Returns (id, new state).
WITH dead AS (
    SELECT wk.worker_id, wk.expires_at
    FROM {schema}.workers AS wk
    WHERE wk.expires_at < now() AND wk.worker_id <> $1::text
    FOR UPDATE SKIP LOCKED
),
gone AS (
    DELETE FROM {schema}.jobs_running AS r
    USING dead
    -- Gates the join (a one-time filter): with no expired worker jobs_running is not read at
    -- all. A hash join would otherwise fetch its first outer row before finding the expired
    -- side empty, walking every dead row jobs left in jobs_running while the horizon is held.
    WHERE r.worker_id = dead.worker_id AND EXISTS (SELECT FROM dead)
    RETURNING r.*,
        'WorkerLost: worker ' || r.worker_id || ' stopped renewing its lease during attempt '
        || r.try_count || '; the lease expired at ' || dead.expires_at::text
        || '; rescued at ' || now()::text AS why
),
forgotten AS (
    DELETE FROM {schema}.workers AS wk USING dead WHERE wk.worker_id = dead.worker_id
),
failed AS (
    INSERT INTO {schema}.jobs_failed
    SELECT g.id, g.job_type, g.queue, 'failed', g.queued, g.next_attempt_after, g.try_count,
           g.max_tries, g.priority, g.payload, g.why, NULL, now(),
           (SELECT rg.slot FROM {schema}.rings AS rg WHERE rg.ring = 'failed'), g.claimed_at
    FROM gone AS g WHERE g.try_count >= g.max_tries
    RETURNING jobs_failed.id, 'failed'::text AS state
),
-- A job failed for good frees its unique key (migration 0007).
freed AS (
    DELETE FROM {schema}.unique_keys AS u USING gone AS g
    WHERE g.try_count >= g.max_tries AND g.unique_key IS NOT NULL
      AND u.job_type = g.job_type AND u.key = g.unique_key AND u.job_id = g.id
),
back AS (
    INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued, next_attempt_after,
        try_count, max_tries, priority, payload, failure_info, worker_id, lane_id, unique_key)
    SELECT g.id, g.job_type, g.queue, 'error', g.queued, least(g.next_attempt_after, now()),
           g.try_count, g.max_tries, g.priority, g.payload, g.why, NULL,
           {schema}.lane(g.job_type, g.queue, g.priority), g.unique_key
    FROM gone AS g WHERE g.try_count < g.max_tries
    ORDER BY g.id
    RETURNING jobs_ready.id, jobs_ready.queue, jobs_ready.lane_id, jobs_ready.seq
)
-- Waiters on the jobs failed for good are told (migration 0008); a one-time filter runs it.
SELECT id, state FROM failed
WHERE (SELECT {schema}.ended(array_agg(failed.id)) FROM failed) >= 0
UNION ALL
-- Each row's lane announced with the lane's lowest seq (migration 0006): the same payload
-- repeated within a transaction is delivered once.
SELECT b.id, 'error' FROM (
    SELECT back.id, pg_notify('{channel}', back.queue || ' ' || back.lane_id || ' '
                              || min(back.seq) OVER (PARTITION BY back.lane_id)) AS announced
    FROM back
) AS b
