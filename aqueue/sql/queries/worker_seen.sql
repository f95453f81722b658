-- worker_seen: worker $1 serves job types $2 in queues $3 (NULL: every queue); its lease runs
-- for at least $4 seconds from now (heartbeats renew it). Rows of workers whose lease ran
-- out are deleted by rescue, after their jobs went back to the queue.
INSERT INTO {schema}.workers AS wk (worker_id, job_types, queues, seen_at, expires_at)
VALUES ($1::text, $2::text[], $3::text[], now(), now() + make_interval(secs => $4::float8))
ON CONFLICT (worker_id) DO UPDATE
SET job_types = excluded.job_types,
    queues = excluded.queues,
    seen_at = excluded.seen_at,
    expires_at = greatest(wk.expires_at, excluded.expires_at)
