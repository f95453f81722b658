-- Storage for sustained load (docs/design/storage.md). Jobs no longer live in one mutable
-- table whose every state change leaves dead index entries for the claim to walk. Each state
-- has its own table and a job moves between them by DELETE + INSERT:
--   jobs_ready    due jobs, append-only per lane; the claim reads a lane from a cursor (seq)
--   jobs_delayed  jobs due later (delays, retries); promoted to jobs_ready when due
--   jobs_running  claimed attempts; their lease is their worker's (workers.expires_at)
--   jobs_done     completed and cancelled jobs, in a ring of partitions emptied by TRUNCATE
--   jobs_failed   failed jobs, likewise, kept longer
-- background_jobs is a view over all five with the seed's columns; INSTEAD OF triggers keep
-- SQL inserts (enqueue) and an operator's update of a waiting job working.

ALTER TABLE {schema}.background_jobs RENAME TO background_jobs_0003;
DROP FUNCTION {schema}.due_jobs(int, text[], text[]);
DROP FUNCTION {schema}.next_due_s(text[], text[], bigint[]);
DROP FUNCTION {schema}.longest_due(int);

CREATE SEQUENCE {schema}.job_id_seq;
SELECT setval('{schema}.job_id_seq', coalesce(max(id), 0) + 1, false)
FROM {schema}.background_jobs_0003;
-- Order within a lane. A sequence is no MVCC row: advancing it leaves nothing to vacuum.
CREATE SEQUENCE {schema}.ready_seq;

-- One row per (job_type, queue, priority) ever enqueued; never updated. The claim reads the
-- lanes of the types and queues it serves, so rows of other types and queues cost it nothing.
CREATE TABLE {schema}.lanes (
    lane_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_type text NOT NULL,
    queue text NOT NULL,
    priority integer NOT NULL,
    UNIQUE (job_type, queue, priority)
);

-- The columns every job table shares, in the view's order.
CREATE TABLE {schema}.jobs_ready (
    id bigint PRIMARY KEY,
    job_type text NOT NULL,
    queue text NOT NULL,
    state {schema}.job_state NOT NULL,
    queued timestamptz NOT NULL,
    next_attempt_after timestamptz NOT NULL,
    try_count integer NOT NULL,
    max_tries integer NOT NULL,
    priority integer NOT NULL,
    payload bytea NOT NULL,
    failure_info text,
    worker_id text,
    lane_id integer NOT NULL,
    seq bigint NOT NULL DEFAULT nextval('{schema}.ready_seq'),
    CHECK (state IN ('pending', 'error'))
);
-- The claim's cursor scan: seq > the lane's cursor, in order, never behind it.
CREATE INDEX jobs_ready_lane_idx ON {schema}.jobs_ready (lane_id, seq);

CREATE TABLE {schema}.jobs_delayed (
    id bigint PRIMARY KEY,
    job_type text NOT NULL,
    queue text NOT NULL,
    state {schema}.job_state NOT NULL,
    queued timestamptz NOT NULL,
    next_attempt_after timestamptz NOT NULL,
    try_count integer NOT NULL,
    max_tries integer NOT NULL,
    priority integer NOT NULL,
    payload bytea NOT NULL,
    failure_info text,
    worker_id text,
    CHECK (state IN ('pending', 'error'))
);
CREATE INDEX jobs_delayed_due_idx ON {schema}.jobs_delayed (next_attempt_after);
CREATE INDEX jobs_delayed_type_due_idx ON {schema}.jobs_delayed (job_type, next_attempt_after);

CREATE TABLE {schema}.jobs_running (
    id bigint PRIMARY KEY,
    job_type text NOT NULL,
    queue text NOT NULL,
    queued timestamptz NOT NULL,
    next_attempt_after timestamptz NOT NULL,
    try_count integer NOT NULL,
    max_tries integer NOT NULL,
    priority integer NOT NULL,
    payload bytea NOT NULL,
    failure_info text,
    worker_id text NOT NULL,
    claim_no bigint NOT NULL,  -- the worker's claim that took it: a lost reply is handed back
    claimed_at timestamptz NOT NULL
);
CREATE INDEX jobs_running_worker_idx ON {schema}.jobs_running (worker_id, claim_no);

-- Finished jobs in rings of partitions: rows go to the ring's current slot; retention moves
-- the ring on and empties the next slot with TRUNCATE (no dead rows, no VACUUM needed).
CREATE TABLE {schema}.jobs_done (
    id bigint NOT NULL,
    job_type text NOT NULL,
    queue text NOT NULL,
    state {schema}.job_state NOT NULL,
    queued timestamptz NOT NULL,
    next_attempt_after timestamptz NOT NULL,
    try_count integer NOT NULL,
    max_tries integer NOT NULL,
    priority integer NOT NULL,
    payload bytea NOT NULL,
    failure_info text,
    worker_id text,
    finished_at timestamptz NOT NULL,
    slot smallint NOT NULL,
    CHECK (state IN ('completed', 'cancelled'))
) PARTITION BY LIST (slot);
CREATE INDEX jobs_done_id_idx ON {schema}.jobs_done (id);

CREATE TABLE {schema}.jobs_failed (LIKE {schema}.jobs_done INCLUDING DEFAULTS,
    CHECK (state = 'failed')) PARTITION BY LIST (slot);
CREATE INDEX jobs_failed_id_idx ON {schema}.jobs_failed (id);

DO $$
BEGIN
    FOR i IN 0..7 LOOP
        EXECUTE format('CREATE TABLE {schema}.jobs_done_%s PARTITION OF {schema}.jobs_done '
                       'FOR VALUES IN (%s)', i, i);
        EXECUTE format('CREATE TABLE {schema}.jobs_failed_%s PARTITION OF {schema}.jobs_failed '
                       'FOR VALUES IN (%s)', i, i);
    END LOOP;
END
$$;

-- The state of each ring: its current slot and when each slot stopped taking rows. Updated
-- once per rotation (hours apart by default), never per job.
CREATE TABLE {schema}.rings (
    ring text PRIMARY KEY CHECK (ring IN ('done', 'failed')),
    slot smallint NOT NULL,
    started_at timestamptz NOT NULL,
    ended_at timestamptz[] NOT NULL  -- per slot; NULL: never used
);
INSERT INTO {schema}.rings VALUES
    ('done', 0, now(), array_fill(NULL::timestamptz, ARRAY[8])),
    ('failed', 0, now(), array_fill(NULL::timestamptz, ARRAY[8]));

-- The process lease: a worker renews expires_at at every heartbeat; once it has passed, any
-- other worker's rescue returns that worker's running jobs to the queue.
COMMENT ON COLUMN {schema}.workers.expires_at IS
    'the worker''s lease: its running jobs are rescued once this has passed';

-- The lane of (job_type, queue, priority), created on first use.
CREATE FUNCTION {schema}.lane(job_type text, queue text, priority int)
RETURNS int
LANGUAGE plpgsql
AS $$
DECLARE
    found_id int;
BEGIN
    SELECT l.lane_id INTO found_id FROM {schema}.lanes AS l
    WHERE l.job_type = lane.job_type AND l.queue = lane.queue AND l.priority = lane.priority;
    IF found_id IS NULL THEN
        INSERT INTO {schema}.lanes (job_type, queue, priority)
        VALUES (lane.job_type, lane.queue, lane.priority)
        ON CONFLICT DO NOTHING
        RETURNING lanes.lane_id INTO found_id;
        IF found_id IS NULL THEN  -- another transaction inserted it meanwhile
            SELECT l.lane_id INTO found_id FROM {schema}.lanes AS l
            WHERE l.job_type = lane.job_type AND l.queue = lane.queue
              AND l.priority = lane.priority;
        END IF;
    END IF;
    RETURN found_id;
END
$$;

-- Every insert into jobs_ready tells the workers, at commit, the lowest seq it added per lane:
-- a worker whose cursor has passed that seq (the row committed after rows behind it) moves its
-- cursor back. NOTIFY payload: '<queue> <lane_id> <seq>'.
CREATE FUNCTION {schema}.ready_inserted() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('{channel}', n.queue || ' ' || n.lane_id || ' ' || min(n.seq))
    FROM added AS n GROUP BY n.queue, n.lane_id;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_ready_inserted AFTER INSERT ON {schema}.jobs_ready
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION {schema}.ready_inserted();

-- A job due later wakes the workers of its queue, so they sleep until the new due time.
CREATE FUNCTION {schema}.delayed_inserted() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('{channel}', q.queue) FROM (SELECT DISTINCT queue FROM added) AS q;
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_delayed_inserted AFTER INSERT ON {schema}.jobs_delayed
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION {schema}.delayed_inserted();

-- Enqueue jobs of one type: due ones to jobs_ready, others to jobs_delayed. Returns the ids
-- in payload order. Used by enqueue.sql, enqueue_many.sql and the view's INSERT trigger.
CREATE FUNCTION {schema}.enqueue(
    job_type text, queue text, priority int, max_tries int, payloads bytea[],
    due timestamptz, ids bigint[] DEFAULT NULL
)
RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    new_ids bigint[];
    lane_no int;
BEGIN
    new_ids := coalesce(ids, ARRAY(
        SELECT nextval('{schema}.job_id_seq') FROM generate_series(1, cardinality(payloads))));
    IF due <= now() THEN
        lane_no := {schema}.lane(enqueue.job_type, enqueue.queue, enqueue.priority);  -- once
        INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued, next_attempt_after,
            try_count, max_tries, priority, payload, lane_id)
        SELECT j.id, enqueue.job_type, enqueue.queue, 'pending', now(), due, 0,
               enqueue.max_tries, enqueue.priority, j.payload, lane_no
        FROM unnest(new_ids, payloads) WITH ORDINALITY AS j(id, payload, n)
        ORDER BY j.n;
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

-- Move due jobs from jobs_delayed to jobs_ready (any job type), at most lim, those due
-- longest first; only those due after since (the caller's last look, so the entries of rows
-- moved earlier are not walked again; NULL: all). Returns how many moved.
-- The hot functions pin index-ordered plans (as 0002 does) and turn JIT off: every plan
-- type disabled here costs 1e10, far over jit_above_cost, and JIT then took ~250 ms a call.
CREATE FUNCTION {schema}.promote(lim int, since timestamptz)
RETURNS int
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off SET jit = off
AS $$
DECLARE
    moved int;
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
    )
    INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued, next_attempt_after,
        try_count, max_tries, priority, payload, failure_info, worker_id, lane_id)
    SELECT g.id, g.job_type, g.queue, g.state, g.queued, g.next_attempt_after, g.try_count,
           g.max_tries, g.priority, g.payload, g.failure_info, g.worker_id,
           {schema}.lane(g.job_type, g.queue, g.priority)
    FROM gone AS g
    ORDER BY g.next_attempt_after, g.id;
    GET DIAGNOSTICS moved = ROW_COUNT;
    RETURN moved;
END
$$;

-- The claim (claim.sql calls it). Up to lim jobs of types in job_types and queues in queues
-- (NULL: all) move from jobs_ready to jobs_running for worker w, in priority order, then
-- lane order. Each lane is read from the caller's cursor (cursor_lanes/cursor_seqs: rows
-- with seq <= the cursor are known gone), so rows claimed earlier, dead or not yet vacuumed,
-- are never walked. Returns the claimed jobs (kind 'j'), each lane's new cursor (kind 'c',
-- in seq), and one row of kind 's': next_due_s (seconds until the next job due later,
-- <= 0 when due jobs were skipped as locked by another claimer; NULL when none or when lim
-- were claimed), promoted in try_count, and in seq the database clock as epoch µs.
-- Rows of the jobs running under w from claims lost_claims (replies lost with a connection)
-- go back to jobs_ready first, uncounted.
CREATE FUNCTION {schema}.claim(
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
           coalesce(array_agg(x.id ORDER BY x.rank) FILTER (WHERE x.rank <= lim), '{}')
    INTO cand_lanes, cand_seqs, picked
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

    RETURN QUERY
    WITH locked AS (
        SELECT r.id FROM {schema}.jobs_ready AS r
        WHERE r.id = ANY(picked)
        FOR UPDATE SKIP LOCKED
    ),
    gone AS (
        -- id = ANY(array), not a join with locked: the planner once joined a full scan of
        -- the primary key (every dead entry, under a held horizon) to the locked ids.
        DELETE FROM {schema}.jobs_ready AS r
        WHERE r.id = ANY(ARRAY(SELECT locked.id FROM locked))
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

    -- New cursors: a lane read to its end moves to seq_now (a row behind it that commits
    -- later says so through NOTIFY); else to just before its first candidate not picked, or
    -- to its last one when all were picked.
    RETURN QUERY
    SELECT 'c'::"char", NULL::bigint, NULL, NULL, NULL::int, NULL::timestamptz, NULL::int,
           NULL::int, NULL::bytea, l.lane_id,
           CASE
               WHEN min(c.seq) FILTER (WHERE c.rank > lim) IS NOT NULL
                   THEN min(c.seq) FILTER (WHERE c.rank > lim) - 1
               WHEN count(c.seq) >= lim THEN max(c.seq)
               ELSE seq_now
           END,
           NULL::float8
    FROM {schema}.lanes AS l
    LEFT JOIN unnest(cand_lanes, cand_seqs) WITH ORDINALITY AS c(lane_id, seq, rank)
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

-- Complete attempts (ids[i] at attempts[i]) still running under worker w: they move to the
-- done ring. Returns the ids completed, including those an earlier call completed already
-- (a reply lost with its connection is written again); a late write from an attempt that
-- lost its lease changes nothing. claim.sql and complete.sql call it.
CREATE FUNCTION {schema}.complete(ids bigint[], attempts int[], w text)
RETURNS SETOF bigint
LANGUAGE plpgsql
-- Primary-key lookups, whatever the statistics say: jobs_running holds a few live rows and,
-- while the vacuum horizon is held, a heap of dead ones that a sequential scan would read.
SET enable_seqscan = off SET jit = off
AS $$
BEGIN
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    RETURN QUERY
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
    SELECT added.id FROM added
    UNION ALL
    -- This statement's snapshot does not show its own inserts: no double count.
    SELECT dn.id FROM {schema}.jobs_done AS dn JOIN unnest(ids, attempts) AS d(id, attempt)
        ON dn.id = d.id AND dn.try_count = d.attempt
    WHERE dn.id = ANY(ids) AND dn.worker_id = w AND dn.state = 'completed';
END
$$;

-- Cancel job job_id if it is waiting or running: it moves to the done ring as cancelled and
-- is never run (again). Returns the state it had, or NULL when it was not cancellable. A
-- running attempt's worker is told through NOTIFY ('!cancel <id>', which no queue name can
-- be) and also finds out at its next heartbeat; its later writes change nothing, as they need
-- the jobs_running row. A job moving between tables meanwhile (claimed, promoted) is found
-- where it went: each try is a statement of its own, with a fresh snapshot.
CREATE FUNCTION {schema}.cancel(job_id bigint)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    j record;
    was text;
BEGIN
    FOR attempt IN 1..3 LOOP
        DELETE FROM {schema}.jobs_ready AS r WHERE r.id = job_id RETURNING r.* INTO j;
        IF FOUND THEN was := j.state::text; EXIT; END IF;
        DELETE FROM {schema}.jobs_delayed AS d WHERE d.id = job_id RETURNING d.* INTO j;
        IF FOUND THEN was := j.state::text; EXIT; END IF;
        DELETE FROM {schema}.jobs_running AS r WHERE r.id = job_id RETURNING r.* INTO j;
        IF FOUND THEN was := 'running'; EXIT; END IF;
    END LOOP;
    IF was IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO {schema}.jobs_done
    VALUES (j.id, j.job_type, j.queue, 'cancelled', j.queued, j.next_attempt_after,
            j.try_count, j.max_tries, j.priority, j.payload,
            CASE WHEN was = 'running'
                 THEN 'Cancelled: cancelled while attempt ' || j.try_count || ' was running on '
                      || j.worker_id
                 ELSE j.failure_info END,
            CASE WHEN was = 'running' THEN NULL ELSE j.worker_id END,
            now(), (SELECT rg.slot FROM {schema}.rings AS rg WHERE rg.ring = 'done'));
    IF was = 'running' THEN
        PERFORM pg_notify('{channel}', '!cancel ' || job_id);
    END IF;
    RETURN was;
END
$$;

-- Retention. Ring ring ('done' or 'failed') moves on once its current slot is older than
-- retention_s / 6: the next of its 8 slots is emptied with TRUNCATE, if every row in it
-- finished more than retention_s ago, and takes the new rows. So finished jobs are kept for
-- retention_s to 7/6 of it, and removed without DELETE, dead rows or VACUUM. TRUNCATE waits at
-- most 50 ms for its lock (a reader of background_jobs holds one until its transaction ends)
-- and gives up: the next call tries again. One caller at a time; others return NULL at once.
-- Returns the rows removed (from the statistics: an estimate), 0 when nothing was due, NULL
-- when the ring or the slot was busy.
CREATE FUNCTION {schema}.prune(ring text, retention_s float8)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    rg record;
    nxt int;
    removed bigint;
BEGIN
    SELECT * INTO rg FROM {schema}.rings AS r WHERE r.ring = prune.ring FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF now() - rg.started_at < make_interval(secs => retention_s / 6) THEN
        RETURN 0;
    END IF;
    nxt := (rg.slot + 1) % 8;
    IF rg.ended_at[nxt + 1] > now() - make_interval(secs => retention_s) THEN
        RETURN 0;  -- its rows are not old enough yet (retention_s grew)
    END IF;
    SELECT coalesce(n_live_tup, 0) INTO removed FROM pg_stat_user_tables
    WHERE schemaname = '{schema}' AND relname = 'jobs_' || prune.ring || '_' || nxt;
    BEGIN
        SET LOCAL lock_timeout = '50ms';
        EXECUTE format('TRUNCATE {schema}.%I', 'jobs_' || prune.ring || '_' || nxt);
    EXCEPTION WHEN lock_not_available THEN
        RETURN NULL;
    END;
    UPDATE {schema}.rings AS r
    SET slot = nxt, started_at = now(), ended_at[rg.slot + 1] = now()
    WHERE r.ring = prune.ring;
    RETURN coalesce(removed, 0);
END
$$;

-- The user's view: every job, with the seed's columns and states. A running job's lease is
-- its worker's.
CREATE VIEW {schema}.background_jobs AS
SELECT id, job_type, queue, state, queued, next_attempt_after, try_count, max_tries, priority,
       payload, failure_info, worker_id, NULL::timestamptz AS lease_expires_at
FROM {schema}.jobs_ready
UNION ALL
SELECT id, job_type, queue, state, queued, next_attempt_after, try_count, max_tries, priority,
       payload, failure_info, worker_id, NULL::timestamptz
FROM {schema}.jobs_delayed
UNION ALL
SELECT r.id, r.job_type, r.queue, 'running'::{schema}.job_state, r.queued,
       r.next_attempt_after, r.try_count, r.max_tries, r.priority, r.payload, r.failure_info,
       r.worker_id, (SELECT wk.expires_at FROM {schema}.workers AS wk
                     WHERE wk.worker_id = r.worker_id)
FROM {schema}.jobs_running AS r
UNION ALL
SELECT id, job_type, queue, state, queued, next_attempt_after, try_count, max_tries, priority,
       payload, failure_info, worker_id, NULL::timestamptz
FROM {schema}.jobs_done
UNION ALL
SELECT id, job_type, queue, state, queued, next_attempt_after, try_count, max_tries, priority,
       payload, failure_info, worker_id, NULL::timestamptz
FROM {schema}.jobs_failed;

ALTER VIEW {schema}.background_jobs ALTER COLUMN id SET DEFAULT nextval('{schema}.job_id_seq');
ALTER VIEW {schema}.background_jobs ALTER COLUMN queue SET DEFAULT 'default';
ALTER VIEW {schema}.background_jobs ALTER COLUMN state SET DEFAULT 'pending';
ALTER VIEW {schema}.background_jobs ALTER COLUMN queued SET DEFAULT now();
ALTER VIEW {schema}.background_jobs ALTER COLUMN next_attempt_after SET DEFAULT now();
ALTER VIEW {schema}.background_jobs ALTER COLUMN try_count SET DEFAULT 0;
ALTER VIEW {schema}.background_jobs ALTER COLUMN max_tries SET DEFAULT 5;
ALTER VIEW {schema}.background_jobs ALTER COLUMN priority SET DEFAULT 10;

-- INSERT INTO background_jobs (job_type, payload[, queue, priority, max_tries,
-- next_attempt_after]) enqueues, from SQL, a trigger or another language; workers wake at
-- commit. Other columns are not taken from the insert: a new job is pending, untried.
CREATE FUNCTION {schema}.background_jobs_insert() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF NEW.job_type IS NULL OR NEW.payload IS NULL THEN
        RAISE EXCEPTION 'background_jobs: an enqueued job needs job_type and payload'
            USING ERRCODE = 'not_null_violation';
    END IF;
    PERFORM {schema}.enqueue(NEW.job_type, NEW.queue, NEW.priority, NEW.max_tries,
                             ARRAY[NEW.payload], NEW.next_attempt_after, ARRAY[NEW.id]);
    NEW.state := 'pending';
    NEW.try_count := 0;
    NEW.failure_info := NULL;
    NEW.worker_id := NULL;
    NEW.lease_expires_at := NULL;
    RETURN NEW;
END
$$;
CREATE TRIGGER background_jobs_insert INSTEAD OF INSERT ON {schema}.background_jobs
    FOR EACH ROW EXECUTE FUNCTION {schema}.background_jobs_insert();

-- UPDATE of a waiting (pending or error) job: any of next_attempt_after, priority, queue,
-- max_tries, payload, failure_info may change; the job moves to jobs_ready (due) or
-- jobs_delayed (later) with its new values, at the end of its lane. SET state = 'cancelled'
-- cancels a waiting or running job. Running and finished jobs cannot be updated otherwise.
CREATE FUNCTION {schema}.background_jobs_update() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    old_row record;
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
            NEW.worker_id, {schema}.lane(NEW.job_type, NEW.queue, NEW.priority));
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
CREATE TRIGGER background_jobs_update INSTEAD OF UPDATE ON {schema}.background_jobs
    FOR EACH ROW EXECUTE FUNCTION {schema}.background_jobs_update();

-- DELETE removes a job that is waiting or finished (a running one: cancel it first).
CREATE FUNCTION {schema}.background_jobs_delete() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF OLD.state = 'running' THEN
        RAISE EXCEPTION 'background_jobs: job % is running; cancel it before deleting it',
            OLD.id USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM {schema}.jobs_ready WHERE id = OLD.id;
    IF NOT FOUND THEN DELETE FROM {schema}.jobs_delayed WHERE id = OLD.id; END IF;
    IF NOT FOUND THEN DELETE FROM {schema}.jobs_done WHERE id = OLD.id; END IF;
    IF NOT FOUND THEN DELETE FROM {schema}.jobs_failed WHERE id = OLD.id; END IF;
    RETURN CASE WHEN FOUND THEN OLD END;
END
$$;
CREATE TRIGGER background_jobs_delete INSTEAD OF DELETE ON {schema}.background_jobs
    FOR EACH ROW EXECUTE FUNCTION {schema}.background_jobs_delete();

-- Move the existing jobs over, states and all.
INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued, next_attempt_after,
    try_count, max_tries, priority, payload, failure_info, worker_id, lane_id)
SELECT j.id, j.job_type, j.queue, j.state, j.queued, j.next_attempt_after, j.try_count,
       j.max_tries, j.priority, j.payload, j.failure_info, j.worker_id,
       {schema}.lane(j.job_type, j.queue, j.priority)
FROM {schema}.background_jobs_0003 AS j
WHERE j.state IN ('pending', 'error') AND j.next_attempt_after <= now()
ORDER BY j.priority DESC, j.next_attempt_after, j.id;

INSERT INTO {schema}.jobs_delayed (id, job_type, queue, state, queued, next_attempt_after,
    try_count, max_tries, priority, payload, failure_info, worker_id)
SELECT j.id, j.job_type, j.queue, j.state, j.queued, j.next_attempt_after, j.try_count,
       j.max_tries, j.priority, j.payload, j.failure_info, j.worker_id
FROM {schema}.background_jobs_0003 AS j
WHERE j.state IN ('pending', 'error') AND j.next_attempt_after > now();

-- Running jobs keep running under their worker, whose lease is the latest of theirs: an
-- older worker still running them has its lease until then, and rescue follows it.
INSERT INTO {schema}.workers AS wk (worker_id, job_types, queues, seen_at, expires_at)
SELECT coalesce(j.worker_id, '?'), '{}', NULL, now(),
       coalesce(max(j.lease_expires_at), now())
FROM {schema}.background_jobs_0003 AS j
WHERE j.state = 'running'
GROUP BY 1
ON CONFLICT (worker_id) DO UPDATE SET expires_at = excluded.expires_at;

INSERT INTO {schema}.jobs_running (id, job_type, queue, queued, next_attempt_after,
    try_count, max_tries, priority, payload, failure_info, worker_id, claim_no, claimed_at)
SELECT j.id, j.job_type, j.queue, j.queued, j.next_attempt_after, j.try_count, j.max_tries,
       j.priority, j.payload, j.failure_info, coalesce(j.worker_id, '?'), 0, now()
FROM {schema}.background_jobs_0003 AS j
WHERE j.state = 'running';

INSERT INTO {schema}.jobs_done
SELECT j.id, j.job_type, j.queue, j.state, j.queued, j.next_attempt_after, j.try_count,
       j.max_tries, j.priority, j.payload, j.failure_info, j.worker_id, now(), 0
FROM {schema}.background_jobs_0003 AS j
WHERE j.state IN ('completed', 'cancelled');

INSERT INTO {schema}.jobs_failed
SELECT j.id, j.job_type, j.queue, j.state, j.queued, j.next_attempt_after, j.try_count,
       j.max_tries, j.priority, j.payload, j.failure_info, j.worker_id, now(), 0
FROM {schema}.background_jobs_0003 AS j
WHERE j.state = 'failed';

DROP TABLE {schema}.background_jobs_0003;
