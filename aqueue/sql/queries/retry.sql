-- retry: run job $1 again if it failed or was cancelled: due now, with a fresh budget of
-- tries (max_tries grows by its max_tries), failure_info kept (the history of why it ended),
-- a fresh lane seq, announced like every insert into jobs_ready (migration 0006). Attempt
-- numbers keep counting (state error once it has been tried, pending if it never was): a
-- job cancelled while running may still have that attempt running somewhere, and every
-- write that ends an attempt is guarded by its number, so a number must never come twice.
-- Returns its id, or no row when the job is in no such state (or does not exist). Two
-- concurrent calls: the second finds the row gone. Its unique key, if it had one, is not
-- taken again (finished jobs do not keep it).
WITH gone AS (
    DELETE FROM {schema}.jobs_failed AS f WHERE f.id = $1::bigint
    RETURNING f.id, f.job_type, f.queue, f.queued, f.try_count, f.max_tries, f.priority,
              f.payload, f.failure_info
),
gone_cancelled AS (
    DELETE FROM {schema}.jobs_done AS d WHERE d.id = $1::bigint AND d.state = 'cancelled'
    RETURNING d.id, d.job_type, d.queue, d.queued, d.try_count, d.max_tries, d.priority,
              d.payload, d.failure_info
),
back AS (
    INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued, next_attempt_after,
        try_count, max_tries, priority, payload, failure_info, worker_id, lane_id)
    SELECT g.id, g.job_type, g.queue,
           CASE WHEN g.try_count > 0 THEN 'error' ELSE 'pending' END::{schema}.job_state,
           g.queued, now(), g.try_count, g.try_count + g.max_tries, g.priority, g.payload,
           g.failure_info, NULL, {schema}.lane(g.job_type, g.queue, g.priority)
    FROM (SELECT * FROM gone UNION ALL SELECT * FROM gone_cancelled) AS g
    RETURNING jobs_ready.id, jobs_ready.queue, jobs_ready.lane_id, jobs_ready.seq
)
SELECT b.id
FROM back AS b,
     LATERAL (SELECT pg_notify('{channel}', b.queue || ' ' || b.lane_id || ' ' || b.seq))
         AS announced
