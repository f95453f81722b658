-- snooze: put running attempts back without counting them (the handler raised
-- aqueue.Snooze): try_count back to what it was, state pending (or error after a failed
-- attempt), failure_info untouched, due after delay_s; snoozes counts them. A job snoozed
-- more than 100 times with no counted attempt between them is failed instead. Guarded by
-- worker and attempt like complete; jobs due now are announced per lane (migration 0006).
-- $1 ids bigint[], $2 attempts int[], $3 delays_s float8[], $4 worker_id.
-- Returns each job's new state.
WITH s AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $3::float8[]) AS s(id, attempt, delay_s)
),
gone AS (
    DELETE FROM {schema}.jobs_running AS r
    USING s
    WHERE r.id = s.id
      AND r.id = ANY($1::bigint[])  -- as an index condition: primary-key lookups whatever the statistics say
      AND r.try_count = s.attempt
      AND r.worker_id IS NOT DISTINCT FROM $4::text
    RETURNING r.*, s.delay_s, r.snoozes >= 100 AS ended,
              CASE WHEN r.try_count > 1 THEN 'error' ELSE 'pending' END::{schema}.job_state
                  AS back_state
),
failed AS (
    INSERT INTO {schema}.jobs_failed
    SELECT g.id, g.job_type, g.queue, 'failed', g.queued, g.next_attempt_after,
           g.try_count - 1, g.max_tries, g.priority, g.payload,
           'SnoozedTooOften: the job was snoozed ' || g.snoozes + 1 || ' times with no '
           || 'counted attempt between them (at most 100); failed so that it cannot loop for '
           || 'ever' || coalesce(E'\nEarlier failure_info:\n' || g.failure_info, ''),
           g.worker_id, now(), (SELECT rg.slot FROM {schema}.rings AS rg WHERE rg.ring = 'failed'),
           g.claimed_at
    FROM gone AS g WHERE g.ended
    RETURNING jobs_failed.id, 'failed'::text AS state
),
freed AS (
    DELETE FROM {schema}.unique_keys AS u USING gone AS g
    WHERE g.ended AND g.unique_key IS NOT NULL
      AND u.job_type = g.job_type AND u.key = g.unique_key AND u.job_id = g.id
),
due_now AS (
    INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued, next_attempt_after,
        try_count, max_tries, priority, payload, failure_info, worker_id, lane_id, snoozes,
        unique_key)
    SELECT g.id, g.job_type, g.queue, g.back_state, g.queued, now(), g.try_count - 1,
           g.max_tries, g.priority, g.payload, g.failure_info, NULL,
           {schema}.lane(g.job_type, g.queue, g.priority), g.snoozes + 1, g.unique_key
    FROM gone AS g WHERE NOT g.ended AND g.delay_s <= 0
    RETURNING jobs_ready.id, jobs_ready.state::text, jobs_ready.queue, jobs_ready.lane_id,
              jobs_ready.seq
),
due_later AS (
    INSERT INTO {schema}.jobs_delayed (id, job_type, queue, state, queued, next_attempt_after,
        try_count, max_tries, priority, payload, failure_info, worker_id, snoozes, unique_key)
    SELECT g.id, g.job_type, g.queue, g.back_state, g.queued,
           now() + make_interval(secs => g.delay_s), g.try_count - 1, g.max_tries, g.priority,
           g.payload, g.failure_info, NULL, g.snoozes + 1, g.unique_key
    FROM gone AS g WHERE NOT g.ended AND g.delay_s > 0
    RETURNING jobs_delayed.id, jobs_delayed.state::text AS state
)
-- Waiters on the jobs failed for good are told (migration 0008); a one-time filter runs it.
SELECT id, state FROM failed
WHERE (SELECT {schema}.ended(array_agg(failed.id)) FROM failed) >= 0
UNION ALL
SELECT d.id, d.state FROM (
    SELECT due_now.id, due_now.state,
           pg_notify('{channel}', due_now.queue || ' ' || due_now.lane_id || ' '
                     || min(due_now.seq) OVER (PARTITION BY due_now.lane_id)) AS announced
    FROM due_now
) AS d
UNION ALL SELECT id, state FROM due_later
