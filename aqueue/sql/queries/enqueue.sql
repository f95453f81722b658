-- enqueue: insert one job; NOTIFY wakes listening workers when (and only if) the enclosing
-- transaction commits.
-- $1 job_type, $2 queue, $3 priority, $4 max_tries, $5 payload,
-- $6 delay_s (NULL: none), $7 run_at (NULL: none); due at run_at, else now() + delay_s.
WITH inserted AS (
    INSERT INTO {schema}.background_jobs
        (job_type, queue, priority, max_tries, payload, next_attempt_after)
    VALUES (
        $1::text, $2::text, $3::int, $4::int, $5::bytea,
        coalesce($7::timestamptz, now() + make_interval(secs => coalesce($6::float8, 0)))
    )
    RETURNING id, queue
)
SELECT inserted.id
FROM inserted, LATERAL (SELECT pg_notify('{channel}', inserted.queue)) AS notified
