-- enqueue: insert one job (see the function enqueue, migration 0004); workers are told at
-- commit, so only if the enclosing transaction commits.
-- $1 job_type, $2 queue, $3 priority, $4 max_tries, $5 payload,
-- $6 delay_s (NULL: none), $7 run_at (NULL: none); due at run_at, else now() + delay_s.
SELECT {schema}.enqueue(
    $1::text, $2::text, $3::int, $4::int, ARRAY[$5::bytea],
    coalesce($7::timestamptz, now() + make_interval(secs => coalesce($6::float8, 0)))
)
