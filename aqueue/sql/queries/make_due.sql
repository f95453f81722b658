-- make_due: move every delayed job of job types $1 to jobs_ready, due now (App.drain with
-- include_delayed: tests that run backed-off and scheduled jobs at once), announced like
-- every insert into jobs_ready. Returns how many moved.
WITH gone AS (
    DELETE FROM {schema}.jobs_delayed AS d WHERE d.job_type = ANY($1::text[]) RETURNING d.*
),
back AS (
    INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued, next_attempt_after,
        try_count, max_tries, priority, payload, failure_info, worker_id, lane_id, snoozes,
        unique_key)
    SELECT g.id, g.job_type, g.queue, g.state, g.queued, now(), g.try_count, g.max_tries,
           g.priority, g.payload, g.failure_info, g.worker_id,
           {schema}.lane(g.job_type, g.queue, g.priority), g.snoozes, g.unique_key
    FROM gone AS g ORDER BY g.next_attempt_after, g.id
    RETURNING jobs_ready.id, jobs_ready.queue, jobs_ready.lane_id, jobs_ready.seq
)
SELECT count(*) FROM (
    SELECT pg_notify('{channel}', back.queue || ' ' || back.lane_id || ' '
                     || min(back.seq) OVER (PARTITION BY back.lane_id))
    FROM back
) AS announced
