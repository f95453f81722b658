-- Lifecycle: results and start times kept with finished jobs, waiters told when a job ends,
-- and periodic entries (one job per tick across the fleet).

-- started_at: when the attempt that finished the job started (jobs_running.claimed_at);
-- NULL for a job cancelled before it ran. result: what the handler returned (a protobuf
-- message, encoded), for a completed job of a type declared with result=. Both after slot:
-- the statements of earlier migrations that insert by position leave them NULL.
ALTER TABLE {schema}.jobs_done ADD COLUMN started_at timestamptz, ADD COLUMN result bytea;
ALTER TABLE {schema}.jobs_failed ADD COLUMN started_at timestamptz, ADD COLUMN result bytea;

-- The backend that holds the leader's lock (lead.sql), on the leader's workers row: a leader
-- whose lease expired (stopped, or its loop blocked past the limit) while its connection,
-- and so the lock, stayed up is found through it, and its backend ended by the next worker
-- that tries to lead.
ALTER TABLE {schema}.workers ADD COLUMN leader_pid int;

-- Jobs someone waits on (App.result): a statement that ends one of them NOTIFYs
-- '<channel>_ended' with their ids. One row per waiting call, deleted when it returns; the
-- leader removes rows a killed waiter left behind, a day later.
CREATE TABLE {schema}.awaited (
    waiter_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id bigint NOT NULL,
    since timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX awaited_job_idx ON {schema}.awaited (job_id);

-- Tell the waiters of any of ids (jobs that just ended) that they ended: one NOTIFY with the
-- awaited ids ('*' when they do not fit a payload). An index probe on a table that is
-- empty but for waiting calls, so statements that end jobs call it on every batch. Returns
-- how many of ids are awaited. (A waiter registered after this read, while the ending
-- transaction is still in flight, gets no NOTIFY from it: job_end below waits for that
-- transaction instead.)
CREATE FUNCTION {schema}.ended(ids bigint[])
RETURNS int
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    found_ids text;
    n int;
BEGIN
    -- Nobody waits (the usual case): one probe, not one per id.
    IF coalesce(cardinality(ids), 0) = 0 OR NOT EXISTS (SELECT FROM {schema}.awaited) THEN
        RETURN 0;
    END IF;
    SELECT string_agg(DISTINCT a.job_id::text, ' '), count(DISTINCT a.job_id)
    INTO found_ids, n
    FROM {schema}.awaited AS a WHERE a.job_id = ANY(ids);
    IF n > 0 THEN
        PERFORM pg_notify(left('{channel}', 57) || '_ended',
                          CASE WHEN length(found_ids) > 7000 THEN '*' ELSE found_ids END);
    END IF;
    RETURN n;
END
$$;

-- How job job_id stands, for a waiter (App.result) that has registered in awaited: its
-- state, job type, result and failure_info (no row: no such job). First it waits for any
-- transaction moving the job right now (a key-share lock on its row, in whichever table of
-- waiting and running jobs holds it): such a transaction may have looked at awaited before
-- the waiter registered, so its NOTIFY would not come; once it has committed, the read below
-- (a statement of its own, with a fresh snapshot) sees where it put the job. Ending
-- statements pay nothing for this.
CREATE FUNCTION {schema}.job_end(job_id bigint)
RETURNS TABLE (state text, job_type text, result bytea, failure_info text)
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM FROM {schema}.jobs_ready AS r WHERE r.id = job_end.job_id FOR KEY SHARE;
    PERFORM FROM {schema}.jobs_delayed AS d WHERE d.id = job_end.job_id FOR KEY SHARE;
    PERFORM FROM {schema}.jobs_running AS u WHERE u.id = job_end.job_id FOR KEY SHARE;
    RETURN QUERY
    SELECT j.state::text, j.job_type, j.result, j.failure_info
    FROM {schema}.background_jobs AS j WHERE j.id = job_end.job_id;
END
$$;

-- complete, with results: as in migration 0007, and stores each attempt's start and result
-- (results[i], NULL for none; results itself may be NULL), and tells waiters.
CREATE FUNCTION {schema}.complete(ids bigint[], attempts int[], w text, results bytea[])
RETURNS SETOF bigint
LANGUAGE plpgsql
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
        USING unnest(ids, attempts, results) AS d(id, attempt, result)
        WHERE r.id = d.id AND r.id = ANY(ids) AND r.try_count = d.attempt
          AND r.worker_id IS NOT DISTINCT FROM w
        RETURNING r.*, d.result AS new_result
    ),
    added AS (
        INSERT INTO {schema}.jobs_done
        SELECT g.id, g.job_type, g.queue, 'completed', g.queued, g.next_attempt_after,
               g.try_count, g.max_tries, g.priority, g.payload, g.failure_info, g.worker_id,
               now(), (SELECT rg.slot FROM {schema}.rings AS rg WHERE rg.ring = 'done'),
               g.claimed_at, g.new_result
        FROM gone AS g
        RETURNING jobs_done.id
    ),
    freed AS (
        DELETE FROM {schema}.unique_keys AS u USING gone AS g
        WHERE g.unique_key IS NOT NULL
          AND u.job_type = g.job_type AND u.key = g.unique_key AND u.job_id = g.id
    )
    SELECT coalesce(array_agg(added.id), '{}') INTO moved FROM added;
    IF EXISTS (SELECT FROM {schema}.awaited) THEN  -- the usual case: nobody waits
        PERFORM {schema}.ended(moved);
    END IF;
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

-- The three-argument complete of migration 0007 stays for workers of the previous release
-- during a rolling deploy: no results.
CREATE OR REPLACE FUNCTION {schema}.complete(ids bigint[], attempts int[], w text)
RETURNS SETOF bigint
LANGUAGE sql
AS $$
    SELECT {schema}.complete(ids, attempts, w, NULL::bytea[])
$$;

-- cancel: as in migration 0007, and keeps a running attempt's start, and tells waiters.
CREATE OR REPLACE FUNCTION {schema}.cancel(job_id bigint)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    j record;
    was text;
    started timestamptz;
BEGIN
    FOR attempt IN 1..3 LOOP
        DELETE FROM {schema}.jobs_ready AS r WHERE r.id = job_id RETURNING r.* INTO j;
        IF FOUND THEN was := j.state::text; EXIT; END IF;
        DELETE FROM {schema}.jobs_delayed AS d WHERE d.id = job_id RETURNING d.* INTO j;
        IF FOUND THEN was := j.state::text; EXIT; END IF;
        DELETE FROM {schema}.jobs_running AS r WHERE r.id = job_id RETURNING r.* INTO j;
        IF FOUND THEN was := 'running'; started := j.claimed_at; EXIT; END IF;
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
            now(), (SELECT rg.slot FROM {schema}.rings AS rg WHERE rg.ring = 'done'),
            started, NULL);
    IF j.unique_key IS NOT NULL THEN
        DELETE FROM {schema}.unique_keys AS u
        WHERE u.job_type = j.job_type AND u.key = j.unique_key AND u.job_id = j.id;
    END IF;
    IF was = 'running' THEN
        PERFORM pg_notify('{channel}', '!cancel ' || job_id);
    END IF;
    PERFORM {schema}.ended(ARRAY[job_id]);
    RETURN was;
END
$$;

-- The user's view: as in migration 0004, with started_at (the latest attempt's start, for
-- running and finished jobs), finished_at and result appended.
CREATE OR REPLACE VIEW {schema}.background_jobs AS
SELECT id, job_type, queue, state, queued, next_attempt_after, try_count, max_tries, priority,
       payload, failure_info, worker_id, NULL::timestamptz AS lease_expires_at,
       NULL::timestamptz AS started_at, NULL::timestamptz AS finished_at, NULL::bytea AS result
FROM {schema}.jobs_ready
UNION ALL
SELECT id, job_type, queue, state, queued, next_attempt_after, try_count, max_tries, priority,
       payload, failure_info, worker_id, NULL::timestamptz, NULL, NULL, NULL
FROM {schema}.jobs_delayed
UNION ALL
SELECT r.id, r.job_type, r.queue, 'running'::{schema}.job_state, r.queued,
       r.next_attempt_after, r.try_count, r.max_tries, r.priority, r.payload, r.failure_info,
       r.worker_id, (SELECT wk.expires_at FROM {schema}.workers AS wk
                     WHERE wk.worker_id = r.worker_id),
       r.claimed_at, NULL, NULL
FROM {schema}.jobs_running AS r
UNION ALL
SELECT id, job_type, queue, state, queued, next_attempt_after, try_count, max_tries, priority,
       payload, failure_info, worker_id, NULL::timestamptz, started_at, finished_at, result
FROM {schema}.jobs_done
UNION ALL
SELECT id, job_type, queue, state, queued, next_attempt_after, try_count, max_tries, priority,
       payload, failure_info, worker_id, NULL::timestamptz, started_at, finished_at, result
FROM {schema}.jobs_failed;

-- Periodic entries: the latest tick each has taken, and the job it enqueued then. A tick is
-- taken by moving last_tick forward under the row's lock, so across any number of workers
-- (leaders overlapping during a failover included) each tick of an entry is taken once.
CREATE TABLE {schema}.periodic (
    name text PRIMARY KEY,
    job_type text NOT NULL,
    last_tick timestamptz NOT NULL,
    last_job_id bigint,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Take tick ticks[i] of periodic entry names[i] (its job type, queue, priority, max_tries,
-- payload; overlap_ok[i]: enqueue even while the entry's previous job waits or runs). Only the
-- latest tick is ever asked for, so ticks missed while no worker ran make one job, not one
-- each. Returns per entry: 'early' (the database clock has not reached the tick), 'first'
-- (an entry never seen: recorded, its first job comes at its next tick), 'taken' (this tick
-- or a later one was taken already), 'skipped' (its previous job, job, still waits or runs)
-- or 'enqueued' (job is the new job).
CREATE FUNCTION {schema}.periodic_enqueue(
    names text[], ticks timestamptz[], job_types text[], queues text[], priorities int[],
    max_tries int[], payloads bytea[], overlap_ok bool[]
)
RETURNS TABLE (entry text, outcome text, job bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    e record;
    p record;
BEGIN
    -- Entries in name order: two callers lock their rows in the same order.
    FOR e IN
        SELECT * FROM unnest(names, ticks, job_types, queues, priorities, max_tries, payloads,
                             overlap_ok) AS u(name, tick, job_type, queue, priority, max_tries,
                                            payload, overlap)
        ORDER BY u.name
    LOOP
        entry := e.name;
        job := NULL;
        IF e.tick > now() THEN
            outcome := 'early';
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT * INTO p FROM {schema}.periodic AS pe WHERE pe.name = e.name FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO {schema}.periodic (name, job_type, last_tick)
            VALUES (e.name, e.job_type, e.tick) ON CONFLICT DO NOTHING;
            outcome := CASE WHEN FOUND THEN 'first' ELSE 'taken' END;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF p.last_tick >= e.tick THEN
            outcome := 'taken';
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF NOT e.overlap AND p.last_job_id IS NOT NULL AND (
            EXISTS (SELECT FROM {schema}.jobs_ready AS r WHERE r.id = p.last_job_id)
            OR EXISTS (SELECT FROM {schema}.jobs_delayed AS d WHERE d.id = p.last_job_id)
            OR EXISTS (SELECT FROM {schema}.jobs_running AS r WHERE r.id = p.last_job_id)
        ) THEN
            outcome := 'skipped';
            job := p.last_job_id;
        ELSE
            outcome := 'enqueued';
            SELECT q INTO job
            FROM {schema}.enqueue(e.job_type, e.queue, e.priority, e.max_tries,
                                  ARRAY[e.payload], now()) AS q;
        END IF;
        UPDATE {schema}.periodic AS pe
        SET last_tick = e.tick, job_type = e.job_type, updated_at = now(),
            last_job_id = CASE WHEN outcome = 'enqueued' THEN job ELSE pe.last_job_id END
        WHERE pe.name = e.name;
        RETURN NEXT;
    END LOOP;
END
$$;
