-- enqueue_many: insert jobs of one type in one statement (see the function enqueue, migrations
-- 0004 and 0006): many at once, or one due later. $1 job_type, $2 queue, $3 priority,
-- $4 max_tries, $5 payloads bytea[], $6 delay_s (NULL: none), $7 run_at (NULL: none); due at
-- run_at, else now() + delay_s. Returns the ids in payload order.
SELECT {schema}.enqueue(
    $1::text, $2::text, $3::int, $4::int, $5::bytea[],
    coalesce($7::timestamptz, now() + make_interval(secs => coalesce($6::float8, 0)))
)
