-- Two functions of migration 0004 again, with the same signatures and results.
--
-- complete: looks for an earlier call's work only when this call did not move every attempt:
-- finding it means probing the primary key of each of the done ring's 8 partitions for every
-- id, which took about a fifth of each claim round trip although a write is almost never
-- repeated. And it finds the attempts by id only: the worker is compared with IS NOT DISTINCT
-- FROM, which no index serves, because the generic plan plpgsql settles on read the worker's
-- entries in jobs_running_worker_idx, one for every job the worker ever ran until a VACUUM
-- removes them (87,000 a call in the soak's first minute at 3,000 jobs/s).
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
        WHERE r.id = d.id AND r.id = ANY(ids) AND r.try_count = d.attempt
          AND r.worker_id IS NOT DISTINCT FROM w
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

-- claim: a lane's cursor stops short of a row another claimer held locked. Before, it moved
-- past every picked row, taken or not: a row locked by a claim that then rolled back (an
-- error, a dropped connection) stayed behind every cursor with no NOTIFY to say so, until
-- the maintenance's look-behind found it (up to 10 s). Otherwise as in migration 0004.
CREATE OR REPLACE FUNCTION {schema}.claim(
    lim int, job_types text[], queues text[], w text, lease_s float8, claim_no bigint,
    cursor_lanes int[], cursor_seqs bigint[], promote_since timestamptz, lost_claims bigint[]
)
RETURNS TABLE (kind "char", id bigint, job_type text, queue text, priority int,
               next_attempt_after timestamptz, try_count int, max_tries int, payload bytea,
               lane_id int, seq bigint, next_due_s float8)
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off SET jit = off
AS $$
DECLARE
    seq_now bigint;
    promoted int := 0;
    picked bigint[];
    taken bigint[];
    cand_ids bigint[];
    cand_lanes int[];
    cand_seqs bigint[];
    got int;
    locked_out boolean;
BEGIN
    -- The claim holds its worker's row (FOR KEY SHARE) so no rescue can take the worker's
    -- jobs while it adds to them; a worker whose row is missing or expired registers again.
    PERFORM FROM {schema}.workers AS wk
    WHERE wk.worker_id = w AND wk.expires_at > now() FOR KEY SHARE SKIP LOCKED;
    IF NOT FOUND THEN
        INSERT INTO {schema}.workers AS wk (worker_id, job_types, queues, seen_at, expires_at)
        VALUES (w, job_types, queues, now(), now() + make_interval(secs => lease_s))
        ON CONFLICT (worker_id) DO UPDATE
        SET job_types = excluded.job_types, queues = excluded.queues,
            seen_at = excluded.seen_at, expires_at = excluded.expires_at;
        PERFORM FROM {schema}.workers AS wk
        WHERE wk.worker_id = w AND wk.expires_at > now() FOR KEY SHARE SKIP LOCKED;
        IF NOT FOUND THEN  -- a rescue holds it right now: try again at the next claim
            RETURN QUERY SELECT 's'::"char", NULL::bigint, NULL, NULL, NULL::int, NULL::timestamptz,
                0, NULL::int, NULL::bytea, NULL::int,
                (extract(epoch FROM now()) * 1e6)::bigint, 0::float8;
            RETURN;
        END IF;
    END IF;

    IF cardinality(lost_claims) > 0 THEN
        WITH gone AS (
            DELETE FROM {schema}.jobs_running AS r
            WHERE r.worker_id = w AND r.claim_no = ANY(lost_claims)
            RETURNING r.*
        )
        INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued,
            next_attempt_after, try_count, max_tries, priority, payload, failure_info,
            worker_id, lane_id)
        SELECT g.id, g.job_type, g.queue,
               CASE WHEN g.try_count > 1 THEN 'error' ELSE 'pending' END::{schema}.job_state,
               g.queued, g.next_attempt_after, g.try_count - 1, g.max_tries, g.priority,
               g.payload, g.failure_info, NULL, {schema}.lane(g.job_type, g.queue, g.priority)
        FROM gone AS g ORDER BY g.id;
    END IF;

    promoted := {schema}.promote(1000, promote_since);

    SELECT CASE WHEN s.is_called THEN s.last_value ELSE 0 END INTO seq_now
    FROM {schema}.ready_seq AS s;

    -- Candidates: per served lane, up to lim rows past its cursor, read without locks;
    -- then the best lim of them are locked (rows another claimer holds are skipped).
    SELECT coalesce(array_agg(x.lane_id ORDER BY x.rank), '{}'),
           coalesce(array_agg(x.seq ORDER BY x.rank), '{}'),
           coalesce(array_agg(x.id ORDER BY x.rank), '{}'),
           coalesce(array_agg(x.id ORDER BY x.rank) FILTER (WHERE x.rank <= lim), '{}')
    INTO cand_lanes, cand_seqs, cand_ids, picked
    FROM (
        SELECT l.lane_id, c.id, c.seq,
               row_number() OVER (ORDER BY l.priority DESC, c.seq) AS rank
        FROM {schema}.lanes AS l
        LEFT JOIN unnest(cursor_lanes, cursor_seqs) AS cur(lane_id, seq)
               ON cur.lane_id = l.lane_id
        CROSS JOIN LATERAL (
            SELECT r.id, r.seq FROM {schema}.jobs_ready AS r
            WHERE r.lane_id = l.lane_id AND r.seq > coalesce(cur.seq, 0)
            ORDER BY r.seq
            LIMIT lim
        ) AS c
        WHERE l.job_type = ANY(job_types) AND (queues IS NULL OR l.queue = ANY(queues))
    ) AS x;

    SELECT coalesce(array_agg(lk.id), '{}') INTO taken
    FROM (
        SELECT r.id FROM {schema}.jobs_ready AS r
        WHERE r.id = ANY(picked)
        FOR UPDATE SKIP LOCKED
    ) AS lk;

    RETURN QUERY
    WITH gone AS (
        -- id = ANY(array), not a join: the planner once joined a full scan of the primary
        -- key (every dead entry, under a held horizon) to the locked ids.
        DELETE FROM {schema}.jobs_ready AS r
        WHERE r.id = ANY(taken)
        RETURNING r.*
    ),
    started AS (
        INSERT INTO {schema}.jobs_running (id, job_type, queue, queued, next_attempt_after,
            try_count, max_tries, priority, payload, failure_info, worker_id, claim_no,
            claimed_at)
        SELECT g.id, g.job_type, g.queue, g.queued, g.next_attempt_after, g.try_count + 1,
               g.max_tries, g.priority, g.payload, g.failure_info, w, claim_no, now()
        FROM gone AS g
        RETURNING jobs_running.*
    )
    SELECT 'j'::"char", s.id, s.job_type, s.queue, s.priority, s.next_attempt_after,
           s.try_count, s.max_tries, s.payload, NULL::int, NULL::bigint, NULL::float8
    FROM started AS s;
    GET DIAGNOSTICS got = ROW_COUNT;
    locked_out := got < cardinality(picked);

    -- New cursors: just before a lane's first picked row that another claimer held locked
    -- (if that claimer rolls back, the row is still there, and no NOTIFY says so); else a
    -- lane read to its end moves to seq_now (a row behind it that commits later says so
    -- through NOTIFY); else to just before its first candidate not picked, or to its last
    -- one when all were picked.
    RETURN QUERY
    SELECT 'c'::"char", NULL::bigint, NULL, NULL, NULL::int, NULL::timestamptz, NULL::int,
           NULL::int, NULL::bytea, l.lane_id,
           CASE
               WHEN min(c.seq) FILTER (WHERE c.rank <= lim AND NOT c.id = ANY(taken)) IS NOT NULL
                   THEN min(c.seq) FILTER (WHERE c.rank <= lim AND NOT c.id = ANY(taken)) - 1
               WHEN min(c.seq) FILTER (WHERE c.rank > lim) IS NOT NULL
                   THEN min(c.seq) FILTER (WHERE c.rank > lim) - 1
               WHEN count(c.seq) >= lim THEN max(c.seq)
               ELSE seq_now
           END,
           NULL::float8
    FROM {schema}.lanes AS l
    LEFT JOIN unnest(cand_lanes, cand_seqs, cand_ids) WITH ORDINALITY AS c(lane_id, seq, id, rank)
           ON c.lane_id = l.lane_id
    WHERE l.job_type = ANY(job_types) AND (queues IS NULL OR l.queue = ANY(queues))
    GROUP BY l.lane_id;

    RETURN QUERY
    SELECT 's'::"char", NULL::bigint, NULL, NULL, NULL::int, NULL::timestamptz, promoted,
           NULL::int, NULL::bytea, NULL::int, (extract(epoch FROM now()) * 1e6)::bigint,
           CASE
               WHEN got >= lim THEN NULL
               WHEN locked_out THEN 0::float8
               ELSE (SELECT extract(epoch FROM min(d.due) - now())::float8
                     FROM unnest(job_types) AS t(job_type)
                     CROSS JOIN LATERAL (
                         SELECT dl.next_attempt_after AS due
                         FROM {schema}.jobs_delayed AS dl
                         WHERE dl.job_type = t.job_type
                           AND (promote_since IS NULL OR dl.next_attempt_after > promote_since)
                           AND (queues IS NULL OR dl.queue = ANY(queues))
                         ORDER BY dl.next_attempt_after
                         LIMIT 1
                     ) AS d)
           END;
END
$$;

