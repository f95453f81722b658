-- claim_complete: the cheapest drain step: complete the previous batch ($1 ids) and claim
-- the next $2 jobs in one statement, with no lease, worker or attempt checks.
WITH done AS (
    UPDATE {schema}.ceiling_jobs SET state = 'completed' WHERE id = ANY($1::bigint[])
),
due AS (
    SELECT id
    FROM {schema}.ceiling_jobs
    WHERE state = 'pending'
    ORDER BY priority DESC, next_attempt_after, id
    LIMIT $2::int
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.ceiling_jobs AS j
SET state = 'running', try_count = j.try_count + 1
FROM due
WHERE j.id = due.id
RETURNING j.id, j.payload
