-- complete looks for an earlier call's work only when this call did not move every attempt:
-- finding it means probing the primary key of each of the done ring's 8 partitions for every
-- id, which took about a fifth of each claim round trip although a write is almost never
-- repeated. Same signature and result as migration 0004's.
CREATE OR REPLACE FUNCTION {schema}.complete(ids bigint[], attempts int[], w text)
RETURNS SETOF bigint
LANGUAGE plpgsql
-- Primary-key lookups, whatever the statistics say: jobs_running holds a few live rows and,
-- while the vacuum horizon is held, a heap of dead ones that a sequential scan would read.
SET enable_seqscan = off SET jit = off
AS $$
DECLARE
    moved bigint[];
BEGIN
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    WITH gone AS (
        DELETE FROM {schema}.jobs_running AS r
        USING unnest(ids, attempts) AS d(id, attempt)
        WHERE r.id = d.id AND r.id = ANY(ids) AND r.try_count = d.attempt AND r.worker_id = w
        RETURNING r.*
    ),
    added AS (
        INSERT INTO {schema}.jobs_done
        SELECT g.id, g.job_type, g.queue, 'completed', g.queued, g.next_attempt_after,
               g.try_count, g.max_tries, g.priority, g.payload, g.failure_info, g.worker_id,
               now(), (SELECT rg.slot FROM {schema}.rings AS rg WHERE rg.ring = 'done')
        FROM gone AS g
        RETURNING jobs_done.id
    )
    SELECT coalesce(array_agg(added.id), '{}') INTO moved FROM added;
    RETURN QUERY SELECT unnest(moved);
    IF cardinality(moved) < cardinality(ids) THEN
        -- A reply lost with its connection: the attempts it completed are in the ring.
        RETURN QUERY
        SELECT dn.id FROM {schema}.jobs_done AS dn JOIN unnest(ids, attempts) AS d(id, attempt)
            ON dn.id = d.id AND dn.try_count = d.attempt
        WHERE dn.id = ANY(ids) AND NOT dn.id = ANY(moved) AND dn.worker_id = w
          AND dn.state = 'completed';
    END IF;
END
$$;
