-- enqueue_many: insert many jobs of one type in one statement, one NOTIFY per queue.
-- $1 job_type, $2 queue, $3 priority, $4 max_tries, $5 payloads bytea[],
-- $6 delay_s (NULL: none), $7 run_at (NULL: none). Returns the ids in payload order.
WITH inserted AS (
    INSERT INTO {schema}.background_jobs
        (job_type, queue, priority, max_tries, payload, next_attempt_after)
    SELECT
        $1::text, $2::text, $3::int, $4::int, p.payload,
        coalesce($7::timestamptz, now() + make_interval(secs => coalesce($6::float8, 0)))
    FROM unnest($5::bytea[]) WITH ORDINALITY AS p(payload, n)
    ORDER BY p.n
    RETURNING id
),
notified AS (
    SELECT count(*) AS n FROM (SELECT pg_notify('{channel}', $2::text)) AS s
)
SELECT inserted.id FROM inserted, notified ORDER BY inserted.id
