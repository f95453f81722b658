-- claim: move up to $1 due jobs to running for worker $4 (see the function claim, migration
-- 0004), completing on the way the attempts ($6 ids, $7 attempts) that finished since the
-- last claim: one round trip instead of two on the hot path. Only job types in $2 and queues
-- in $3 (NULL: every queue). $5 lease_s, $8 this claim's number, $9/$10 the lanes' cursors,
-- $11 promote_since, $12 the numbers of earlier claims whose reply was lost.
-- Rows: kind 'j' a claimed job, 'c' a lane's new cursor, 's' the summary (see claim); the
-- summary row also carries, in payload-less column completed, the ids of $6 now completed.
WITH completed AS MATERIALIZED (
    SELECT {schema}.complete($6::bigint[], $7::int[], $4::text) AS id
)
SELECT c.kind::text, c.id, c.job_type, c.queue, c.priority, c.next_attempt_after, c.try_count,
       c.max_tries, c.payload, c.lane_id, c.seq, c.next_due_s,
       CASE WHEN c.kind = 's' THEN ARRAY(SELECT id FROM completed) END AS completed
FROM {schema}.claim($1::int, $2::text[], $3::text[], $4::text, $5::float8, $8::bigint,
                    $9::int[], $10::bigint[], $11::timestamptz, $12::bigint[]) AS c
