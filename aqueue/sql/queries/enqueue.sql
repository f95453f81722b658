-- enqueue: insert one job due now, in one plain INSERT into jobs_ready that announces its
-- lane and seq (NOTIFY, delivered at commit: workers hear of it only if the enclosing
-- transaction commits). Jobs due later, and many at once, go through enqueue_many.sql.
-- $1 job_type, $2 queue, $3 priority, $4 max_tries, $5 payload. Returns the id.
WITH added AS (
    INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued, next_attempt_after,
        try_count, max_tries, priority, payload, lane_id)
    VALUES (
        nextval('{schema}.job_id_seq'), $1::text, $2::text, 'pending', now(), now(), 0,
        $4::int, $3::int, $5::bytea,
        -- The lane's row is read here; lane() (plpgsql) only creates it, on first use.
        coalesce((SELECT l.lane_id FROM {schema}.lanes AS l
                  WHERE l.job_type = $1::text AND l.queue = $2::text AND l.priority = $3::int),
                 {schema}.lane($1::text, $2::text, $3::int))
    )
    RETURNING jobs_ready.id, jobs_ready.lane_id, jobs_ready.seq
)
SELECT added.id
FROM added,
     LATERAL (SELECT pg_notify('{channel}', $2::text || ' ' || added.lane_id || ' ' || added.seq))
         AS announced
