-- release: hand running attempts back to the queue, due now, without counting them (the worker
-- stopped before they could finish; snoozes and unique_key are kept), announcing them per
-- lane as every insert into jobs_ready does (migration 0006). Guarded by worker and attempt
-- like complete.
-- $1 ids bigint[], $2 attempts int[], $3 worker_id.
WITH gone AS (
    DELETE FROM {schema}.jobs_running AS r
    USING unnest($1::bigint[], $2::int[]) AS h(id, attempt)
    WHERE r.id = h.id
      AND r.id = ANY($1::bigint[])  -- as an index condition: primary-key lookups whatever the statistics say
      AND r.try_count = h.attempt
      -- not an index condition: the worker's index holds an entry for each job it ever ran
      AND r.worker_id IS NOT DISTINCT FROM $3::text
    RETURNING r.*
),
back AS (
    INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued, next_attempt_after,
        try_count, max_tries, priority, payload, failure_info, worker_id, lane_id, snoozes,
        unique_key)
    SELECT g.id, g.job_type, g.queue,
           CASE WHEN g.try_count > 1 THEN 'error' ELSE 'pending' END::{schema}.job_state,
           g.queued, now(), g.try_count - 1, g.max_tries, g.priority, g.payload, g.failure_info,
           NULL, {schema}.lane(g.job_type, g.queue, g.priority), g.snoozes, g.unique_key
    FROM gone AS g
    RETURNING jobs_ready.id, jobs_ready.queue, jobs_ready.lane_id, jobs_ready.seq
)
-- Each row's lane announced with the lane's lowest seq: the same payload repeated within a
-- transaction is delivered once.
SELECT b.id
FROM (SELECT back.id, pg_notify('{channel}', back.queue || ' ' || back.lane_id || ' '
                               || min(back.seq) OVER (PARTITION BY back.lane_id)) AS announced
      FROM back) AS b
