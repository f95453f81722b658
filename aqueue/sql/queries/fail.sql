-- fail: record failed attempts. A job goes to error, due again after delay_s, unless it is out
-- of tries or the failure is final (retrying cannot help): then failed, never run again.
-- Guarded by worker and attempt like complete, and like complete it keeps worker_id and
-- reports rows an earlier try of this same write already failed.
-- $1 ids bigint[], $2 attempts int[], $3 delays_s float8[], $4 failure_infos text[],
-- $5 finals bool[], $6 worker_id. Returns each job's new state.
WITH f AS (
    SELECT *
    FROM unnest($1::bigint[], $2::int[], $3::float8[], $4::text[], $5::bool[])
         AS f(id, attempt, delay_s, failure_info, final)
),
failed AS (
    UPDATE {schema}.background_jobs AS j
    SET state = CASE WHEN f.final OR j.try_count >= j.max_tries
                     THEN 'failed' ELSE 'error' END::{schema}.job_state,
        next_attempt_after = CASE WHEN f.final OR j.try_count >= j.max_tries
                                  THEN j.next_attempt_after
                                  ELSE now() + make_interval(secs => f.delay_s) END,
        failure_info = f.failure_info,
        lease_expires_at = NULL
    FROM f
    WHERE j.id = f.id
      AND j.id = ANY($1::bigint[])  -- as an index condition: primary-key lookups whatever the statistics say
      AND j.try_count = f.attempt
      AND j.worker_id = $6::text
      AND j.state = 'running'
    RETURNING j.id, j.state::text
)
SELECT id, state FROM failed
UNION ALL
SELECT j.id, j.state::text
FROM {schema}.background_jobs AS j JOIN f ON j.id = f.id
WHERE j.id = ANY($1::bigint[]) AND j.try_count = f.attempt AND j.worker_id = $6::text AND j.state IN ('error', 'failed')
