-- The running workers, as each says itself: which job types and queues it serves, so that
-- any worker can tell which due jobs no worker serves. A worker upserts its row at start and
-- every few maintenance ticks and deletes it when it stops; a row past expires_at (its worker
-- died) counts as gone, and the next worker to upsert deletes it. Database clock only.
CREATE TABLE {schema}.workers (
    worker_id text PRIMARY KEY,
    job_types text[] NOT NULL,
    queues text[],  -- NULL: every queue
    seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

-- Up to lim due jobs, those that have waited longest first, for counting the ones no worker
-- serves (unserved_jobs.sql). Pins the index-ordered plan as 0002 does for the claim: with
-- stale statistics the planner would read and sort every due row instead of stopping at lim.
CREATE FUNCTION {schema}.longest_due(lim int)
RETURNS TABLE (job_type text, queue text)
LANGUAGE plpgsql STABLE
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off
AS $$
BEGIN
    RETURN QUERY
    SELECT j.job_type, j.queue
    FROM {schema}.background_jobs AS j
    WHERE j.state IN ('pending', 'error') AND j.next_attempt_after <= now()
    ORDER BY j.next_attempt_after
    LIMIT lim;
END
$$;
