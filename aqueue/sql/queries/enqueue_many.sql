-- enqueue_many: insert many jobs of one type in one statement (see the function enqueue,
-- migration 0004). $1 job_type, $2 queue, $3 priority, $4 max_tries, $5 payloads bytea[],
-- $6 delay_s (NULL: none), $7 run_at (NULL: none). Returns the ids in payload order.
SELECT {schema}.enqueue(
    $1::text, $2::text, $3::int, $4::int, $5::bytea[],
    coalesce($7::timestamptz, now() + make_interval(secs => coalesce($6::float8, 0)))
)
