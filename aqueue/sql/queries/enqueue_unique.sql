-- enqueue_unique: insert jobs of one type, each with its unique key or NULL (see the function
-- enqueue_unique, migration 0007): a key a waiting or running job of the type holds inserts
-- nothing and returns that job's id. $1 job_type, $2 queue, $3 priority, $4 max_tries,
-- $5 payloads bytea[], $6 delay_s (NULL: none), $7 run_at (NULL: none), $8 keys text[].
-- Returns one column in payload order: the new job's id, or minus the id of the job that
-- holds the key (one column, as every way of running it on a caller's connection returns).
SELECT CASE WHEN u.duplicate THEN -u.id ELSE u.id END
FROM {schema}.enqueue_unique(
    $1::text, $2::text, $3::int, $4::int, $5::bytea[],
    coalesce($7::timestamptz, now() + make_interval(secs => coalesce($6::float8, 0))),
    $8::text[]
) AS u
