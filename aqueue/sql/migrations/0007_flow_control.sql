-- Flow control (issue 11): snoozes, unique jobs, per-queue slots and fleet-wide limits.
--
-- snoozes: how many times in a row a job was snoozed with no counted attempt between them
-- (aqueue.Snooze); carried by every move that does not count an attempt (claim, promote,
-- release, the claim's lost-claims hand-back, snooze), reset to 0 by one that does (fail,
-- rescue). More than 100 and snooze.sql fails the job.
ALTER TABLE {schema}.jobs_ready ADD COLUMN snoozes integer NOT NULL DEFAULT 0;
ALTER TABLE {schema}.jobs_delayed ADD COLUMN snoozes integer NOT NULL DEFAULT 0;
ALTER TABLE {schema}.jobs_running ADD COLUMN snoozes integer NOT NULL DEFAULT 0;

-- unique_key: the job's key in unique_keys (NULL: none), carried by every move, so that the
-- statement that ends a job frees its key only when it has one. limited: the attempt was
-- claimed under a fleet-wide limit of its type; only those are in jobs_running_type_idx,
-- which a claim of the type counts (an index range scan over that type's entries), so the
-- attempts of other types cost no index entry.
ALTER TABLE {schema}.jobs_ready ADD COLUMN unique_key text;
ALTER TABLE {schema}.jobs_delayed ADD COLUMN unique_key text;
ALTER TABLE {schema}.jobs_running ADD COLUMN unique_key text;
ALTER TABLE {schema}.jobs_running ADD COLUMN limited boolean NOT NULL DEFAULT false;
CREATE INDEX jobs_running_type_idx ON {schema}.jobs_running (job_type) WHERE limited;

-- Unique jobs: (job_type, key) -> the job holding the key while it is pending, error or
-- running. The primary key is what makes concurrent enqueues of one key agree on one job.
-- A job that ends (complete, fail for good, cancel, rescue out of tries, snoozed too often)
-- deletes its row, found by the job's unique_key column; a row whose job ended some other
-- way (a DELETE through the view, an UPDATE through it, which drops the column) is taken over
-- by the next enqueue of its key (see enqueue_unique).
CREATE TABLE {schema}.unique_keys (
    job_type text NOT NULL,
    key text NOT NULL,
    job_id bigint NOT NULL,
    PRIMARY KEY (job_type, key)
);

-- One row per job type with a fleet-wide limit, made by the first claim that meets one. A
-- claim locks it (FOR UPDATE SKIP LOCKED) while it counts and starts attempts of the type, so
-- two claimers never both take the last place. The limits themselves travel with each claim
-- (the claiming worker's @app.job options). starts: the start times of the
-- type's attempts inside the latest rate window, for the sliding-window rate limit. A start
-- is the claim's clock_timestamp() read once it holds its rows' locks (its jobs'
-- claimed_at), which grows from one holder of a row to the next: so no window of period_s
-- on that clock holds more than count starts of the type.
CREATE TABLE {schema}.job_limits (
    job_type text PRIMARY KEY,
    starts timestamptz[] NOT NULL DEFAULT '{}'
);

-- Enqueue jobs of one type, each with a unique key (NULL: none). A key held by a pending,
-- error or running job of the type inserts nothing: that job's id comes back, duplicate.
-- Keys repeated within the call go to the first payload that has them. Otherwise as enqueue()
-- (one NOTIFY per lane). Under READ COMMITTED a concurrent enqueue of the same key waits for
-- the other transaction, then sees its job; under REPEATABLE READ or SERIALIZABLE it raises
-- a serialization failure instead (the caller retries its transaction).
CREATE FUNCTION {schema}.enqueue_unique(
    job_type text, queue text, priority int, max_tries int, payloads bytea[],
    due timestamptz, keys text[]
)
RETURNS TABLE (id bigint, duplicate boolean)
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    res_keys text[] := '{}';
    res_ids bigint[] := '{}';
    res_dup boolean[] := '{}';
    ids bigint[];
    dup boolean[];
    k text;
    holder bigint;
    fresh bigint;
    taken boolean;
    lane_no int;
    first_seq bigint;
BEGIN
    -- Each distinct key once, in sorted order: two calls with the same keys in other orders
    -- take them in the same order, so neither waits on the other's uncommitted row while
    -- holding one the other waits for.
    FOR k IN SELECT DISTINCT x FROM unnest(keys) AS x WHERE x IS NOT NULL ORDER BY x LOOP
        fresh := nextval('{schema}.job_id_seq');
        LOOP
            INSERT INTO {schema}.unique_keys AS u (job_type, key, job_id)
            VALUES (enqueue_unique.job_type, k, fresh)
            ON CONFLICT DO NOTHING;
            IF FOUND THEN
                holder := fresh;
                taken := false;
                EXIT;
            END IF;
            SELECT u.job_id INTO holder FROM {schema}.unique_keys AS u
            WHERE u.job_type = enqueue_unique.job_type AND u.key = k;
            CONTINUE WHEN NOT FOUND;  -- freed meanwhile: try the insert again
            IF EXISTS (SELECT FROM {schema}.jobs_ready AS r WHERE r.id = holder)
               OR EXISTS (SELECT FROM {schema}.jobs_delayed AS d WHERE d.id = holder)
               OR EXISTS (SELECT FROM {schema}.jobs_running AS r WHERE r.id = holder) THEN
                taken := true;
                EXIT;
            END IF;
            -- Held by a job that ended without freeing it: take it over.
            UPDATE {schema}.unique_keys AS u SET job_id = fresh
            WHERE u.job_type = enqueue_unique.job_type AND u.key = k AND u.job_id = holder;
            IF FOUND THEN
                holder := fresh;
                taken := false;
                EXIT;
            END IF;
        END LOOP;
        res_keys := res_keys || k;
        res_ids := res_ids || holder;
        res_dup := res_dup || taken;
    END LOOP;
    -- Per payload: its key's job (a duplicate unless it is the key's first payload and the
    -- key was free), or a new id when it has no key.
    SELECT array_agg(CASE WHEN p.key IS NULL THEN nextval('{schema}.job_id_seq') ELSE r.id END
                     ORDER BY p.n),
           array_agg(CASE WHEN p.key IS NULL THEN false ELSE r.dup OR p.n > p.first END
                     ORDER BY p.n)
    INTO ids, dup
    FROM (SELECT u.key, u.n, min(u.n) OVER (PARTITION BY u.key) AS first
          FROM unnest(keys) WITH ORDINALITY AS u(key, n)) AS p
    LEFT JOIN unnest(res_keys, res_ids, res_dup) AS r(key, id, dup) ON r.key = p.key;
    IF NOT true = ALL(dup) THEN
        IF due <= now() THEN
            -- As enqueue() (migration 0006), with the keys.
            lane_no := {schema}.lane(enqueue_unique.job_type, enqueue_unique.queue,
                                     enqueue_unique.priority);
            WITH added AS (
                INSERT INTO {schema}.jobs_ready (id, job_type, queue, state, queued,
                    next_attempt_after, try_count, max_tries, priority, payload, lane_id,
                    unique_key)
                SELECT j.id, enqueue_unique.job_type, enqueue_unique.queue, 'pending', now(),
                       due, 0, enqueue_unique.max_tries, enqueue_unique.priority, j.payload,
                       lane_no, j.key
                FROM unnest(ids, dup, payloads, keys) WITH ORDINALITY
                     AS j(id, dup, payload, key, n)
                WHERE NOT j.dup
                ORDER BY j.n
                RETURNING jobs_ready.seq
            )
            SELECT min(added.seq) INTO first_seq FROM added;
            PERFORM pg_notify('{channel}',
                              enqueue_unique.queue || ' ' || lane_no || ' ' || first_seq);
        ELSE
            INSERT INTO {schema}.jobs_delayed (id, job_type, queue, state, queued,
                next_attempt_after, try_count, max_tries, priority, payload, unique_key)
            SELECT j.id, enqueue_unique.job_type, enqueue_unique.queue, 'pending', now(),
                   due, 0, enqueue_unique.max_tries, enqueue_unique.priority, j.payload, j.key
            FROM unnest(ids, dup, payloads, keys) AS j(id, dup, payload, key)
            WHERE NOT j.dup;
        END IF;
    END IF;
    RETURN QUERY SELECT u.id, u.duplicate FROM unnest(ids, dup) AS u(id, duplicate);
END
$$;

-- complete: as in migration 0005, and frees the unique keys of the jobs it completes (a
-- join on nothing for jobs without one).
CREATE OR REPLACE FUNCTION {schema}.complete(ids bigint[], attempts int[], w text)
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
    ),
    freed AS (
        DELETE FROM {schema}.unique_keys AS u USING gone AS g
        WHERE g.unique_key IS NOT NULL
          AND u.job_type = g.job_type AND u.key = g.unique_key AND u.job_id = g.id
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

-- cancel: as in migration 0004, and frees the job's unique key.
CREATE OR REPLACE FUNCTION {schema}.cancel(job_id bigint)
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
    IF j.unique_key IS NOT NULL THEN
        DELETE FROM {schema}.unique_keys AS u
        WHERE u.job_type = j.job_type AND u.key = j.unique_key AND u.job_id = j.id;
    END IF;
    IF was = 'running' THEN
        PERFORM pg_notify('{channel}', '!cancel ' || job_id);
    END IF;
    RETURN was;
END
$$;

-- promote: as in migration 0006, carrying snoozes and unique_key.
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
            worker_id, lane_id, snoozes, unique_key)
        SELECT g.id, g.job_type, g.queue, g.state, g.queued, g.next_attempt_after,
               g.try_count, g.max_tries, g.priority, g.payload, g.failure_info, g.worker_id,
               {schema}.lane(g.job_type, g.queue, g.priority), g.snoozes, g.unique_key
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

-- The claim of migration 0006 with per-queue slots and fleet-wide limits; a new signature,
-- so the old one goes.
--   lims[g]       free slots of slot group g (1-based); queues[i] belongs to group
--                 queue_groups[i]; with queues NULL (every queue) there is one group, lims[1]
--   limit_types   the claimer's job types with a limit; limit_concurrency (NULL: none),
--                 limit_counts and limit_periods (NULL: no rate limit) hold the limits
-- Candidates are read per lane as before (at most the group's free slots from each lane). A
-- limited type with candidates has its job_limits row locked, SKIP LOCKED: held by another
-- claimer, the type is left out of this claim (and the summary says to look again soon).
-- Under the lock its allowance is global_concurrency minus its running attempts, and at most
-- the starts left in its rate window; its candidates beyond the allowance are left out,
-- without holding up any other type. Then the best candidates per group, by priority and
-- seq, up to the group's free slots, are locked and moved to jobs_running.
DROP FUNCTION {schema}.claim(int, text[], text[], text, float8, bigint, int[], bigint[],
                             timestamptz, bigint[]);
CREATE FUNCTION {schema}.claim(
    lims int[], job_types text[], queues text[], queue_groups int[], w text, lease_s float8,
    claim_no bigint, cursor_lanes int[], cursor_seqs bigint[], promote_since timestamptz,
    lost_claims bigint[], limit_types text[], limit_concurrency int[], limit_counts int[],
    limit_periods float8[]
)
RETURNS TABLE (kind "char", id bigint, job_type text, queue text, priority int,
               next_attempt_after timestamptz, try_count int, max_tries int, payload bytea,
               lane_id int, seq bigint, next_due_s float8)
LANGUAGE plpgsql
-- Generic plans, planned once per connection: a custom plan for each call of the candidate
-- lookup (whose LIMIT is each group's free slots) cost more than the claim's whole work.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off SET enable_bitmapscan = off SET enable_sort = off SET jit = off
AS $$
DECLARE
    seq_now bigint;
    promoted int := 0;
    limited boolean := cardinality(limit_types) > 0;
    picked bigint[];
    taken bigint[];
    cand_ids bigint[];
    cand_lanes int[];
    cand_seqs bigint[];
    cand_types text[];
    cand_groups int[];
    cand_prios int[];
    allow_types text[] := '{}';
    allow_n int[] := '{}';
    locked_types text[] := '{}';
    claim_ts timestamptz;
    held_back boolean := false;
    got int;
    locked_out boolean := false;
    rate_wait float8;
    announced text[];
    t text;
    li int;
    allowance int;
    recent timestamptz[];
    started_n int;
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
                0, NULL::int, NULL::bytea, 1,
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
                worker_id, lane_id, snoozes, unique_key)
            SELECT g.id, g.job_type, g.queue,
                   CASE WHEN g.try_count > 1 THEN 'error' ELSE 'pending' END::{schema}.job_state,
                   g.queued, g.next_attempt_after, g.try_count - 1, g.max_tries, g.priority,
                   g.payload, g.failure_info, NULL,
                   {schema}.lane(g.job_type, g.queue, g.priority), g.snoozes, g.unique_key
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

    -- Candidates: per served lane whose group has free slots, up to that many rows past its
    -- cursor, read without locks; picked: the best of each group, up to its free slots.
    SELECT coalesce(array_agg(x.lane_id), '{}'), coalesce(array_agg(x.seq), '{}'),
           coalesce(array_agg(x.id), '{}'), coalesce(array_agg(x.job_type), '{}'),
           coalesce(array_agg(x.id) FILTER (WHERE x.grank <= lims[x.grp]), '{}'),
           array_agg(x.grp) FILTER (WHERE limited), array_agg(x.priority) FILTER (WHERE limited)
    INTO cand_lanes, cand_seqs, cand_ids, cand_types, picked, cand_groups, cand_prios
    FROM (
        SELECT l.lane_id, l.job_type, l.priority, g.grp, c.id, c.seq,
               row_number() OVER (PARTITION BY g.grp ORDER BY l.priority DESC, c.seq) AS grank
        FROM {schema}.lanes AS l
        CROSS JOIN LATERAL (
            SELECT CASE WHEN queues IS NULL THEN 1
                        ELSE queue_groups[array_position(queues, l.queue)] END AS grp
        ) AS g
        LEFT JOIN unnest(cursor_lanes, cursor_seqs) AS cur(lane_id, seq)
               ON cur.lane_id = l.lane_id
        CROSS JOIN LATERAL (
            SELECT r.id, r.seq FROM {schema}.jobs_ready AS r
            WHERE r.lane_id = l.lane_id AND r.seq > coalesce(cur.seq, 0)
            ORDER BY r.seq
            LIMIT lims[g.grp]
        ) AS c
        WHERE l.job_type = ANY(job_types) AND (queues IS NULL OR l.queue = ANY(queues))
          AND lims[g.grp] > 0
    ) AS x;

    -- Fleet-wide limits of the limited types among the picked candidates (a limited type
    -- none of whose candidates made the pick is not locked: it would not be claimed now).
    -- First the types' job_limits rows are locked, in name order (two claimers never wait
    -- on each other in opposite orders); a row another claimer holds leaves its type out.
    -- A missing row is created only when a plain read finds none: an INSERT ... ON CONFLICT
    -- would wait for a holder that has updated the row.
    IF limited THEN
        FOREACH t IN ARRAY ARRAY(SELECT DISTINCT c.job_type
                                 FROM unnest(cand_ids, cand_types) AS c(id, job_type)
                                 WHERE c.job_type = ANY(limit_types) AND c.id = ANY(picked)
                                 ORDER BY 1) LOOP
            PERFORM FROM {schema}.job_limits AS jl WHERE jl.job_type = t
            FOR UPDATE SKIP LOCKED;
            IF NOT FOUND AND NOT EXISTS (SELECT FROM {schema}.job_limits AS jl
                                         WHERE jl.job_type = t) THEN
                INSERT INTO {schema}.job_limits (job_type) VALUES (t) ON CONFLICT DO NOTHING;
                PERFORM FROM {schema}.job_limits AS jl WHERE jl.job_type = t
                FOR UPDATE SKIP LOCKED;
            END IF;
            IF FOUND THEN
                locked_types := locked_types || t;
            ELSE
                allow_types := allow_types || t;  -- another claimer is starting it now
                allow_n := allow_n || 0;
                locked_out := true;
            END IF;
        END LOOP;
        -- The claim's clock for its limited types, read once every lock is held: the
        -- previous holder of each row read its own before committing, so per type these
        -- times only grow. The rate windows count by it, the starts are recorded at it,
        -- and it is the claimed_at of the attempts started.
        IF cardinality(locked_types) > 0 THEN
            claim_ts := clock_timestamp();
        END IF;
        FOREACH t IN ARRAY locked_types LOOP
            li := array_position(limit_types, t);
            allowance := 2147483647;
            IF limit_concurrency[li] IS NOT NULL THEN
                allowance := limit_concurrency[li] - (
                    SELECT count(*) FROM {schema}.jobs_running AS r
                    WHERE r.job_type = t AND r.limited);
            END IF;
            IF limit_counts[li] IS NOT NULL THEN
                recent := ARRAY(SELECT s FROM {schema}.job_limits AS jl, unnest(jl.starts) AS s
                                WHERE jl.job_type = t
                                  AND s > claim_ts - make_interval(secs => limit_periods[li])
                                ORDER BY s);
                IF cardinality(recent) >= limit_counts[li] THEN
                    -- Full: the next place frees when the window passes its oldest start
                    -- that keeps it full.
                    rate_wait := least(rate_wait, extract(epoch FROM
                        recent[cardinality(recent) - limit_counts[li] + 1]
                        + make_interval(secs => limit_periods[li]) - claim_ts));
                END IF;
                allowance := least(allowance, limit_counts[li] - cardinality(recent));
            END IF;
            allowance := greatest(allowance, 0);
            -- Candidates of the type beyond its allowance wait: a drain must wait for them.
            IF allowance < (SELECT count(*) FROM unnest(cand_types) AS ct WHERE ct = t) THEN
                held_back := true;
            END IF;
            allow_types := allow_types || t;
            allow_n := allow_n || allowance;
        END LOOP;
    END IF;

    -- With a limited type among them, picked again: within its type's allowance first (so
    -- no other type waits behind it), then the best of each group. The other limited types
    -- (not locked) are left out: the places this frees would otherwise go to them.
    IF cardinality(allow_types) > 0 THEN
        SELECT allow_types || coalesce(array_agg(DISTINCT ct), '{}'),
               allow_n || array_fill(0, ARRAY[count(DISTINCT ct)::int])
        INTO allow_types, allow_n
        FROM unnest(cand_types) AS ct
        WHERE ct = ANY(limit_types) AND NOT ct = ANY(allow_types);
        SELECT coalesce(array_agg(y.id) FILTER (WHERE y.grank <= lims[y.grp]), '{}')
        INTO picked
        FROM (
            SELECT x.id, x.grp,
                   row_number() OVER (PARTITION BY x.grp ORDER BY x.priority DESC, x.seq)
                       AS grank
            FROM (
                SELECT c.id, c.grp, c.priority, c.seq, c.job_type,
                       row_number() OVER (PARTITION BY c.job_type
                                          ORDER BY c.priority DESC, c.seq) AS trank
                FROM unnest(cand_ids, cand_seqs, cand_types, cand_groups, cand_prios)
                     AS c(id, seq, job_type, grp, priority)
            ) AS x
            LEFT JOIN unnest(allow_types, allow_n) AS a(job_type, n) ON a.job_type = x.job_type
            WHERE a.n IS NULL OR x.trank <= a.n
        ) AS y;
    END IF;

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
            claimed_at, snoozes, unique_key, limited)
        SELECT g.id, g.job_type, g.queue, g.queued, g.next_attempt_after, g.try_count + 1,
               g.max_tries, g.priority, g.payload, g.failure_info, w, claim_no,
               coalesce(claim_ts, now()), g.snoozes, g.unique_key,
               limited AND g.job_type = ANY(limit_types)
        FROM gone AS g
        RETURNING jobs_running.*
    )
    SELECT 'j'::"char", s.id, s.job_type, s.queue, s.priority, s.next_attempt_after,
           s.try_count, s.max_tries, s.payload, NULL::int, NULL::bigint, NULL::float8
    FROM started AS s;
    GET DIAGNOSTICS got = ROW_COUNT;
    locked_out := locked_out OR got < cardinality(picked);

    -- Rate-limited types record their starts (the locks taken above are still held).
    IF cardinality(allow_types) > 0 THEN
        FOREACH t IN ARRAY allow_types LOOP
            li := array_position(limit_types, t);
            CONTINUE WHEN limit_counts[li] IS NULL;
            started_n := (SELECT count(*) FROM unnest(cand_ids, cand_types) AS c(id, job_type)
                          WHERE c.job_type = t AND c.id = ANY(taken));
            UPDATE {schema}.job_limits AS jl
            SET starts = ARRAY(SELECT s FROM unnest(jl.starts) AS s
                               WHERE s > claim_ts - make_interval(secs => limit_periods[li])
                               UNION ALL
                               SELECT claim_ts FROM generate_series(1, started_n))
            WHERE jl.job_type = t AND started_n > 0;
        END LOOP;
    END IF;

    -- New cursors: just before a lane's first candidate not claimed (picked rows another
    -- claimer held locked, rows beyond the group's free slots or their type's allowance);
    -- else a lane read to its end moves to seq_now (a row behind it that commits later says
    -- so through NOTIFY); else to its last candidate.
    RETURN QUERY
    SELECT 'c'::"char", NULL::bigint, NULL, NULL, NULL::int, NULL::timestamptz, NULL::int,
           NULL::int, NULL::bytea, l.lane_id,
           CASE
               WHEN min(c.seq) FILTER (WHERE NOT c.id = ANY(taken)) IS NOT NULL
                   THEN min(c.seq) FILTER (WHERE NOT c.id = ANY(taken)) - 1
               WHEN count(c.seq) >= lims[g.grp] THEN max(c.seq)
               ELSE seq_now
           END,
           NULL::float8
    FROM {schema}.lanes AS l
    CROSS JOIN LATERAL (
        SELECT CASE WHEN queues IS NULL THEN 1
                    ELSE queue_groups[array_position(queues, l.queue)] END AS grp
    ) AS g
    LEFT JOIN unnest(cand_lanes, cand_seqs, cand_ids) AS c(lane_id, seq, id)
           ON c.lane_id = l.lane_id
    WHERE l.job_type = ANY(job_types) AND (queues IS NULL OR l.queue = ANY(queues))
      AND lims[g.grp] > 0
    GROUP BY l.lane_id, g.grp;

    RETURN QUERY
    -- The summary: lane_id is 1 when due jobs were held back (locked by another claimer,
    -- or beyond their type's limits), so a drain waits for them rather than stop.
    SELECT 's'::"char", NULL::bigint, NULL, NULL, NULL::int, NULL::timestamptz, promoted,
           NULL::int, NULL::bytea,
           CASE WHEN locked_out OR held_back OR rate_wait IS NOT NULL THEN 1 END,
           (extract(epoch FROM now()) * 1e6)::bigint,
           CASE
               WHEN locked_out THEN 0::float8
               WHEN got >= (SELECT sum(f) FROM unnest(lims) AS f) THEN NULL  -- claims again
               ELSE least(CASE WHEN rate_wait IS NOT NULL THEN greatest(rate_wait, 0.001) END,
                          (SELECT extract(epoch FROM min(d.due) - now())::float8
                           FROM unnest(job_types) AS t(job_type)
                           CROSS JOIN LATERAL (
                               SELECT dl.next_attempt_after AS due
                               FROM {schema}.jobs_delayed AS dl
                               WHERE dl.job_type = t.job_type
                                 AND (promote_since IS NULL
                                      OR dl.next_attempt_after > promote_since)
                                 AND (queues IS NULL OR dl.queue = ANY(queues))
                               ORDER BY dl.next_attempt_after
                               LIMIT 1
                           ) AS d))
           END;
END
$$;
