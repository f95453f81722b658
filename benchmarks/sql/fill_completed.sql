-- fill_completed: $1 finished jobs, as a long-running system keeps them (before pruning).
INSERT INTO {schema}.background_jobs
    (job_type, state, queued, next_attempt_after, try_count, payload, worker_id)
SELECT 'noop', 'completed', now() - interval '1 day', now() - interval '1 day', 1, '', 'old'
FROM generate_series(1, $1::int)
