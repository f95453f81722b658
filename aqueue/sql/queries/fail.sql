-- fail: record failed attempts. A job goes back to waiting (error), due again after delay_s,
-- unless it is out of tries or the failure is final (retrying cannot help): then failed, never
-- run again. Guarded by worker and attempt like complete, and like complete it reports rows
-- an earlier try of this same write already failed.
-- $1 ids bigint[], $2 attempts int[], $3 delays_s float8[], $4 failure_infos text[],
-- $5 finals bool[], $6 worker_id. Returns each job's new state. Jobs due again now are
-- announced per lane, as every insert into jobs_ready is.
WITH f AS (
    SELECT *
    FROM unnest($1::bigint[], $2::int[], $3::float8[], $4::text[], $5::bool[])
         AS f(id, attempt, delay_s, failure_info, final)
),
gone AS (
    DELETE FROM {schema}.jobs_running AS r
    USING f
    WHERE r.id = f.id
      AND r.id = ANY($1::bigint[])  -- as an index condition: primary-key lookups whatever the statistics say
      AND r.try_count = f.attempt
      -- not an index condition: the worker's index holds an entry for each job it ever ran
      AND r.worker_id IS NOT DISTINCT FROM $6::text
    RETURNING r.*, f.delay_s, f.failure_info AS new_failure_info,
              f.final OR r.try_count >= r.max_tries AS ended
),
failed AS (
    INSERT INTO {schema}.jobs_failed
    SELECT g.id, g.job_type, g.queue, 'failed', g.queued, g.next_attempt_after, g.try_count,
           g.max_tries, g.priority, g.payload, g.new_failure_info, g.worker_id, now(),
           (SELECT rg.slot FROM {schema}.rings AS rg WHERE rg.ring = 'failed'), g.claimed_at
    FROM gone AS g WHERE g.ended
    RETURNING jobs_failed.id, 'failed'::text AS state
),
-- A job failed for good frees its unique key (migration 0007).
freed AS (
    DELETE FROM {schema}.unique_keys AS u USING gone AS g
    WHERE g.ended AND g.unique_key IS NOT NULL
      AND u.job_type = g.job_type AND u.key = g.unique_key AND u.job_id = g.id
),
due_now AS (
    INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued, next_attempt_after,
        try_count, max_tries, priority, payload, failure_info, worker_id, lane_id, unique_key)
    SELECT g.id, g.job_type, g.queue, 'error', g.queued, now(), g.try_count, g.max_tries,
           g.priority, g.payload, g.new_failure_info, g.worker_id,
           {schema}.lane(g.job_type, g.queue, g.priority), g.unique_key
    FROM gone AS g WHERE NOT g.ended AND g.delay_s <= 0
    RETURNING jobs_ready.id, jobs_ready.queue, jobs_ready.lane_id, jobs_ready.seq
),
due_later AS (
    INSERT INTO {schema}.jobs_delayed (id, job_type, queue, state, queued, next_attempt_after,
        try_count, max_tries, priority, payload, failure_info, worker_id, unique_key)
    SELECT g.id, g.job_type, g.queue, 'error', g.queued,
           now() + make_interval(secs => g.delay_s), g.try_count, g.max_tries, g.priority,
           g.payload, g.new_failure_info, g.worker_id, g.unique_key
    FROM gone AS g WHERE NOT g.ended AND g.delay_s > 0
    RETURNING jobs_delayed.id, 'error'::text AS state
)
-- Waiters on the jobs failed for good are told (migration 0008); a one-time filter runs it.
SELECT id, state FROM failed
WHERE (SELECT {schema}.ended(array_agg(failed.id)) FROM failed) >= 0
UNION ALL
-- Each row's lane announced with the lane's lowest seq (migration 0006): the same payload
-- repeated within a transaction is delivered once.
SELECT d.id, 'error' FROM (
    SELECT due_now.id, pg_notify('{channel}', due_now.queue || ' ' || due_now.lane_id || ' '
                                 || min(due_now.seq) OVER (PARTITION BY due_now.lane_id))
               AS announced
    FROM due_now
) AS d
UNION ALL SELECT id, state FROM due_later
UNION ALL
-- Written by an earlier try of this same write (this statement's snapshot does not show its
-- own inserts, so nothing is counted twice).
SELECT j.id, j.state::text
FROM {schema}.background_jobs AS j JOIN f ON j.id = f.id
WHERE j.id = ANY($1::bigint[]) AND j.try_count = f.attempt AND j.worker_id = $6::text
  AND j.state IN ('error', 'failed')
