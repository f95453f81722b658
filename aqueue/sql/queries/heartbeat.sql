-- heartbeat: renew worker $3's lease (its workers row) to now() + $4 seconds, never waiting
-- on a row lock held elsewhere, and report the attempts given that it no longer runs.
-- Returns one row per attempt given that is not running under $3 any more, or unknown:
--   (id, attempt, state, locked_elsewhere)
-- locked_elsewhere false: the attempt is lost (cancelled, or rescued after the lease ran
--   out); state is the job's state now, NULL if the job is gone. The worker cancels it.
-- locked_elsewhere true: a rescue of this worker holds its row right now, so the lease was
--   not renewed and the attempts still running are unknown this time (state NULL); the
--   next beat sees what the rescue did.
-- $1 ids bigint[], $2 attempts int[], $3 worker_id, $4 lease_s.
WITH held AS (
    SELECT * FROM unnest($1::bigint[], $2::int[]) AS h(id, attempt)
),
me AS MATERIALIZED (
    SELECT wk.worker_id FROM {schema}.workers AS wk
    WHERE wk.worker_id = $3::text
    FOR NO KEY UPDATE SKIP LOCKED
),
renewed AS (
    UPDATE {schema}.workers AS wk
    SET expires_at = now() + make_interval(secs => $4::float8)
    FROM me
    WHERE wk.worker_id = me.worker_id
),
blocked AS MATERIALIZED (
    SELECT NOT EXISTS (SELECT FROM me)
           AND EXISTS (SELECT FROM {schema}.workers AS wk WHERE wk.worker_id = $3::text) AS b
),
running AS MATERIALIZED (
    SELECT r.id FROM {schema}.jobs_running AS r JOIN held ON r.id = held.id
    -- by id: the worker's index holds an entry for each job it ever ran (IS NOT DISTINCT FROM:
    -- no index serves it)
    WHERE r.id = ANY($1::bigint[]) AND r.try_count = held.attempt
      AND r.worker_id IS NOT DISTINCT FROM $3::text
)
SELECT held.id, held.attempt, now_state.state::text, false AS locked_elsewhere
FROM held
LEFT JOIN LATERAL (
    SELECT j.state FROM {schema}.background_jobs AS j WHERE j.id = held.id LIMIT 1
) AS now_state ON true
WHERE held.id NOT IN (SELECT id FROM running)
UNION ALL
SELECT held.id, held.attempt, NULL, true
FROM held
WHERE held.id IN (SELECT id FROM running) AND (SELECT b FROM blocked)
