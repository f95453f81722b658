-- Every statement that adds rows to jobs_ready announces them itself: one NOTIFY per lane it
-- added to, '<queue> <lane_id> <lowest seq added>', delivered at commit (as migration 0004's
-- statement trigger did). The trigger cost every enqueue about 15% of its throughput (a
-- plpgsql call with a transition table), and fired for the claim's promote and rescue on
-- every call, adding nothing. The statements that announce: enqueue.sql (one plain INSERT),
-- the functions enqueue (enqueue_many.sql, the view's INSERT), promote and claim (the
-- lost-claims hand-back) and the view's UPDATE below, and fail.sql, release.sql and rescue.sql.
-- jobs_delayed keeps its trigger: nothing hot inserts there.
DROP TRIGGER jobs_ready_inserted ON {schema}.jobs_ready;
DROP FUNCTION {schema}.ready_inserted();

CREATE OR REPLACE FUNCTION {schema}.enqueue(
    job_type text, queue text, priority int, max_tries int, payloads bytea[],
    due timestamptz, ids bigint[] DEFAULT NULL
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    new_ids bigint[];
    lane_no int;
    first_seq bigint;
BEGIN
    new_ids := coalesce(ids, ARRAY(
        SELECT nextval('{schema}.job_id_seq') FROM generate_series(1, cardinality(payloads))));
    IF due <= now() THEN
        lane_no := {schema}.lane(enqueue.job_type, enqueue.queue, enqueue.priority);  -- once
        WITH added AS (
            INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued,
                next_attempt_after, try_count, max_tries, priority, payload, lane_id)
            SELECT j.id, enqueue.job_type, enqueue.queue, 'pending', now(), due, 0,
                   enqueue.max_tries, enqueue.priority, j.payload, lane_no
            FROM unnest(new_ids, payloads) WITH ORDINALITY AS j(id, payload, n)
            ORDER BY j.n
            RETURNING jobs_ready.seq
        )
        SELECT min(added.seq) INTO first_seq FROM added;
        IF first_seq IS NOT NULL THEN
            PERFORM pg_notify('{channel}', enqueue.queue || ' ' || lane_no || ' ' || first_seq);
        END IF;
    ELSE
        INSERT INTO {schema}.jobs_delayed (id, job_type, queue, state, queued,
            next_attempt_after, try_count, max_tries, priority, payload)
        SELECT j.id, enqueue.job_type, enqueue.queue, 'pending', now(), due, 0,
               enqueue.max_tries, enqueue.priority, j.payload
        FROM unnest(new_ids, payloads) AS j(id, payload);
    END IF;
    RETURN QUERY SELECT unnest(new_ids);
END
$$;

CREATE OR REPLACE FUNCTION {schema}.promote(lim int, since timestamptz)
RETURNS int
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off SET jit = off
AS $$
DECLARE
    moved int;
    announced text[];
BEGIN
    WITH due AS (
        SELECT d.id FROM {schema}.jobs_delayed AS d
        WHERE d.next_attempt_after <= now()
          AND (since IS NULL OR d.next_attempt_after > since)
        ORDER BY d.next_attempt_after
        LIMIT lim
        FOR UPDATE SKIP LOCKED
    ),
    gone AS (
        DELETE FROM {schema}.jobs_delayed AS d
        WHERE d.id = ANY(ARRAY(SELECT due.id FROM due))
        RETURNING d.*
    ),
    added AS (
        INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued,
            next_attempt_after, try_count, max_tries, priority, payload, failure_info,
            worker_id, lane_id)
        SELECT g.id, g.job_type, g.queue, g.state, g.queued, g.next_attempt_after,
               g.try_count, g.max_tries, g.priority, g.payload, g.failure_info, g.worker_id,
               {schema}.lane(g.job_type, g.queue, g.priority)
        FROM gone AS g
        ORDER BY g.next_attempt_after, g.id
        RETURNING jobs_ready.queue, jobs_ready.lane_id, jobs_ready.seq
    )
    SELECT coalesce(sum(b.n), 0), array_agg(b.queue || ' ' || b.lane_id || ' ' || b.seq)
    INTO moved, announced
    FROM (SELECT added.queue, added.lane_id, min(added.seq) AS seq, count(*) AS n FROM added
          GROUP BY added.queue, added.lane_id) AS b;
    PERFORM pg_notify('{channel}', a) FROM unnest(announced) AS a;
    RETURN moved;
END
$$;

-- The claim announces the rows its lost-claims hand-back returns to jobs_ready; otherwise as
-- in migration 0005.
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
    announced text[];
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
        ),
        back AS (
            INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued,
                next_attempt_after, try_count, max_tries, priority, payload, failure_info,
                worker_id, lane_id)
            SELECT g.id, g.job_type, g.queue,
                   CASE WHEN g.try_count > 1 THEN 'error' ELSE 'pending' END::{schema}.job_state,
                   g.queued, g.next_attempt_after, g.try_count - 1, g.max_tries, g.priority,
                   g.payload, g.failure_info, NULL,
                   {schema}.lane(g.job_type, g.queue, g.priority)
            FROM gone AS g ORDER BY g.id
            RETURNING jobs_ready.queue, jobs_ready.lane_id, jobs_ready.seq
        )
        SELECT array_agg(b.queue || ' ' || b.lane_id || ' ' || b.seq) INTO announced
        FROM (SELECT back.queue, back.lane_id, min(back.seq) AS seq FROM back
              GROUP BY back.queue, back.lane_id) AS b;
        PERFORM pg_notify('{channel}', a) FROM unnest(announced) AS a;
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

-- The view's UPDATE announces a waiting job it moves to jobs_ready; otherwise as in
-- migration 0004.
CREATE OR REPLACE FUNCTION {schema}.background_jobs_update() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    old_row record;
    moved_lane int;
    moved_seq bigint;
BEGIN
    -- SET state = 'cancelled' is a cancel (as app.cancel: a running job's worker is told).
    IF NEW.state = 'cancelled' AND OLD.state <> 'cancelled' THEN
        IF OLD.state NOT IN ('pending', 'error', 'running') THEN
            RAISE EXCEPTION 'background_jobs: job % is %; only waiting or running jobs can be '
                'cancelled', OLD.id, OLD.state
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        RETURN CASE WHEN {schema}.cancel(OLD.id) IS NOT NULL THEN NEW END;
    END IF;
    IF NEW.id <> OLD.id OR NEW.job_type <> OLD.job_type OR NEW.state <> OLD.state
       OR NEW.try_count <> OLD.try_count OR NEW.queued <> OLD.queued THEN
        RAISE EXCEPTION 'background_jobs: id, job_type, state, try_count and queued cannot be '
            'updated (job %)', OLD.id USING ERRCODE = 'feature_not_supported';
    END IF;
    IF OLD.state NOT IN ('pending', 'error') THEN
        RAISE EXCEPTION 'background_jobs: job % is %; only waiting (pending or error) jobs '
            'can be updated', OLD.id, OLD.state USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM {schema}.jobs_ready WHERE id = OLD.id RETURNING * INTO old_row;
    IF NOT FOUND THEN
        DELETE FROM {schema}.jobs_delayed WHERE id = OLD.id RETURNING * INTO old_row;
    END IF;
    IF NOT FOUND THEN
        RETURN NULL;  -- claimed or changed meanwhile: nothing updated
    END IF;
    IF NEW.next_attempt_after <= now() THEN
        INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued,
            next_attempt_after, try_count, max_tries, priority, payload, failure_info,
            worker_id, lane_id)
        VALUES (NEW.id, NEW.job_type, NEW.queue, NEW.state, NEW.queued, NEW.next_attempt_after,
            NEW.try_count, NEW.max_tries, NEW.priority, NEW.payload, NEW.failure_info,
            NEW.worker_id, {schema}.lane(NEW.job_type, NEW.queue, NEW.priority))
        RETURNING lane_id, seq INTO moved_lane, moved_seq;
        PERFORM pg_notify('{channel}', NEW.queue || ' ' || moved_lane || ' ' || moved_seq);
    ELSE
        INSERT INTO {schema}.jobs_delayed (id, job_type, queue, state, queued,
            next_attempt_after, try_count, max_tries, priority, payload, failure_info,
            worker_id)
        VALUES (NEW.id, NEW.job_type, NEW.queue, NEW.state, NEW.queued, NEW.next_attempt_after,
            NEW.try_count, NEW.max_tries, NEW.priority, NEW.payload, NEW.failure_info,
            NEW.worker_id);
    END IF;
    RETURN NEW;
END
$$;
