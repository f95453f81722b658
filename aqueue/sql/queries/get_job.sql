-- get_job: every column of job $1 (no row when there is none). Each table of the view is
-- read by its id index.
SELECT j.id, j.job_type, j.queue, j.state::text, j.queued, j.next_attempt_after, j.try_count,
       j.max_tries, j.priority, j.payload, j.failure_info, j.worker_id, j.lease_expires_at,
       j.started_at, j.finished_at, j.result
FROM {schema}.background_jobs AS j
WHERE j.id = $1::bigint
