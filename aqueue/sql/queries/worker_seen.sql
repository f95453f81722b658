-- worker_seen: worker $1 serves job types $2 in queues $3 (NULL: every queue); its row counts
-- for $4 seconds. Also deletes the rows of workers that stopped renewing theirs (rows another
-- worker is deleting right now are skipped, so concurrent callers never wait on each other).
WITH gone AS (
    DELETE FROM {schema}.workers
    WHERE worker_id IN (
        SELECT worker_id FROM {schema}.workers
        WHERE expires_at < now() AND worker_id <> $1::text
        FOR UPDATE SKIP LOCKED
    )
)
INSERT INTO {schema}.workers (worker_id, job_types, queues, seen_at, expires_at)
VALUES ($1::text, $2::text[], $3::text[], now(), now() + make_interval(secs => $4::float8))
ON CONFLICT (worker_id) DO UPDATE
SET job_types = excluded.job_types,
    queues = excluded.queues,
    seen_at = excluded.seen_at,
    expires_at = excluded.expires_at
