-- claim: move due jobs to running for worker $5 (see the function claim, migrations 0004 and
-- 0007), completing first the attempts ($7 ids, $8 attempts) that finished since the last
-- claim: one round trip instead of two on the hot path, and their places under a fleet-wide
-- limit are free for this claim. $1 the free slots per slot group; job types $2; queues $3
-- (NULL: every queue) in the groups $4; $6 lease_s; $9 this claim's number; $10/$11 the
-- lanes' cursors; $12 promote_since; $13 the numbers of earlier claims whose reply was lost;
-- $14-$17 the limited types and their global_concurrency, rate count and rate period;
-- $18 the results of $7 (bytea[], NULL: none; migration 0008).
-- Rows: kind 'j' a claimed job, 'c' a lane's new cursor, 's' the summary (see claim); the
-- summary row also carries, in payload-less column completed, the ids of $7 now completed.
WITH completed AS MATERIALIZED (
    SELECT {schema}.complete($7::bigint[], $8::int[], $5::text, $18::bytea[]) AS id
)
SELECT c.kind::text, c.id, c.job_type, c.queue, c.priority, c.next_attempt_after, c.try_count,
       c.max_tries, c.payload, c.lane_id, c.seq, c.next_due_s,
       CASE WHEN c.kind = 's' THEN ARRAY(SELECT id FROM completed) END AS completed
FROM {schema}.claim($1::int[], $2::text[], $3::text[], $4::int[], $5::text, $6::float8,
                    $9::bigint, $10::int[], $11::bigint[], $12::timestamptz, $13::bigint[],
                    $14::text[], $15::int[], $16::int[], $17::float8[]) AS c
-- A one-time filter, run before the claim: the completions land first.
WHERE (SELECT count(*) FROM completed) >= 0
