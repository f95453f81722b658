-- list_jobs: a page of jobs in id order: ids after $4 (the keyset cursor), at most $5, in
-- states $1 (NULL: any), of job type $2 and queue $3 (NULL: any). Each table is read apart,
-- in id order from the cursor, at most $5 rows, and only when one of the states asked for
-- lives there (a one-time filter), so a page of waiting jobs never reads finished ones.
-- (Filters on job type or queue are checked on the rows read: a rare type among many
-- finished jobs walks the ring in id order; retention bounds the ring.)
WITH page AS (
    (SELECT j.id, j.job_type, j.queue, j.state::text AS state, j.queued, j.next_attempt_after,
            j.try_count, j.max_tries, j.priority, j.payload, j.failure_info, j.worker_id,
            NULL::timestamptz AS lease_expires_at, NULL::timestamptz AS started_at,
            NULL::timestamptz AS finished_at, NULL::bytea AS result
     FROM {schema}.jobs_ready AS j
     WHERE ($1::text[] IS NULL OR $1::text[] && ARRAY['pending', 'error'])
       AND j.id > $4::bigint AND ($1::text[] IS NULL OR j.state::text = ANY($1::text[]))
       AND ($2::text IS NULL OR j.job_type = $2::text) AND ($3::text IS NULL OR j.queue = $3::text)
     ORDER BY j.id LIMIT $5::int)
    UNION ALL
    (SELECT j.id, j.job_type, j.queue, j.state::text, j.queued, j.next_attempt_after,
            j.try_count, j.max_tries, j.priority, j.payload, j.failure_info, j.worker_id,
            NULL, NULL, NULL, NULL
     FROM {schema}.jobs_delayed AS j
     WHERE ($1::text[] IS NULL OR $1::text[] && ARRAY['pending', 'error'])
       AND j.id > $4::bigint AND ($1::text[] IS NULL OR j.state::text = ANY($1::text[]))
       AND ($2::text IS NULL OR j.job_type = $2::text) AND ($3::text IS NULL OR j.queue = $3::text)
     ORDER BY j.id LIMIT $5::int)
    UNION ALL
    (SELECT j.id, j.job_type, j.queue, 'running', j.queued, j.next_attempt_after, j.try_count,
            j.max_tries, j.priority, j.payload, j.failure_info, j.worker_id,
            (SELECT wk.expires_at FROM {schema}.workers AS wk WHERE wk.worker_id = j.worker_id),
            j.claimed_at, NULL, NULL
     FROM {schema}.jobs_running AS j
     WHERE ($1::text[] IS NULL OR 'running' = ANY($1::text[]))
       AND j.id > $4::bigint
       AND ($2::text IS NULL OR j.job_type = $2::text) AND ($3::text IS NULL OR j.queue = $3::text)
     ORDER BY j.id LIMIT $5::int)
    UNION ALL
    (SELECT j.id, j.job_type, j.queue, j.state::text, j.queued, j.next_attempt_after,
            j.try_count, j.max_tries, j.priority, j.payload, j.failure_info, j.worker_id,
            NULL, j.started_at, j.finished_at, j.result
     FROM {schema}.jobs_done AS j
     WHERE ($1::text[] IS NULL OR $1::text[] && ARRAY['completed', 'cancelled'])
       AND j.id > $4::bigint AND ($1::text[] IS NULL OR j.state::text = ANY($1::text[]))
       AND ($2::text IS NULL OR j.job_type = $2::text) AND ($3::text IS NULL OR j.queue = $3::text)
     ORDER BY j.id LIMIT $5::int)
    UNION ALL
    (SELECT j.id, j.job_type, j.queue, j.state::text, j.queued, j.next_attempt_after,
            j.try_count, j.max_tries, j.priority, j.payload, j.failure_info, j.worker_id,
            NULL, j.started_at, j.finished_at, j.result
     FROM {schema}.jobs_failed AS j
     WHERE ($1::text[] IS NULL OR 'failed' = ANY($1::text[]))
       AND j.id > $4::bigint
       AND ($2::text IS NULL OR j.job_type = $2::text) AND ($3::text IS NULL OR j.queue = $3::text)
     ORDER BY j.id LIMIT $5::int)
)
SELECT * FROM page ORDER BY id LIMIT $5::int
