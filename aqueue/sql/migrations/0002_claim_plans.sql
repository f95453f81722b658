-- Planner-proof lookups for claim. Right after a bulk enqueue, the table's statistics still
-- say that (almost) nothing is queued until autovacuum analyzes it, up to a minute later.
-- The planner then picks a bitmap scan of every queued row and a sort, on every claim (24 ms
-- with 30,000 queued instead of 0.3 ms), and throughput collapses just when the queue is
-- longest. These functions pin the index-ordered plans with SET clauses that hold only while
-- they run; claim.sql calls them.

-- Up to lim due job ids in claim order (priority, then due time, then id), locked; rows
-- another claimer holds are skipped. Walks background_jobs_claim_idx and stops at lim.
CREATE FUNCTION {schema}.due_jobs(lim int, job_types text[], queues text[])
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE
ROWS 16  -- not the default 1000: the caller's join must stay a primary-key lookup per id
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
AS $$
BEGIN
    RETURN QUERY
    SELECT id
    FROM {schema}.background_jobs
    WHERE state IN ('pending', 'error')
      AND next_attempt_after <= now()
      AND job_type = ANY(job_types)
      AND (queues IS NULL OR queue = ANY(queues))
    ORDER BY priority DESC, next_attempt_after, id
    LIMIT lim
    FOR UPDATE SKIP LOCKED;
END
$$;

-- Seconds until the next queued job other than those in taken is due (<= 0: due already,
-- so locked by another claimer); NULL when there is none. Reads background_jobs_next_due_idx
-- from its start.
CREATE FUNCTION {schema}.next_due_s(job_types text[], queues text[], taken bigint[])
RETURNS float8
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
AS $$
BEGIN
    RETURN (SELECT extract(epoch FROM next_attempt_after - now())::float8
    FROM {schema}.background_jobs
    WHERE state IN ('pending', 'error')
      AND job_type = ANY(job_types)
      AND (queues IS NULL OR queue = ANY(queues))
      AND id <> ALL(taken)
    ORDER BY next_attempt_after
    LIMIT 1);
END
$$;
