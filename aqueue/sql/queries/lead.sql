-- lead: try to become the leader of this schema's workers (rescue, retention and periodic
-- jobs run on the leader alone): a session advisory lock, taken on the worker's LISTEN
-- connection, which it keeps for its whole life; the lock goes with that connection, so a
-- killed leader's is released by its backend's exit. $1 the schema, $2 this worker's id.
-- Never waits. Returns whether this session holds the lock.
-- The winner records its backend on its workers row. A loser checks the holder: when the
-- holder is the backend of a leader whose lease expired (a stopped process, a loop blocked
-- past its limit, a host cut off: the connection, and the lock, outlive its work), that
-- backend is ended (only one of this session's own role), and the next try takes the lock.
-- The session's TCP keepalives are shortened too: a host that died or was cut off sends no
-- FIN, and its backend would otherwise linger for the kernel's default (two hours).
WITH keepalives AS MATERIALIZED (
    SELECT set_config('tcp_keepalives_idle', '10', false),
           set_config('tcp_keepalives_interval', '5', false),
           set_config('tcp_keepalives_count', '3', false)
),
attempt AS MATERIALIZED (
    SELECT pg_try_advisory_lock(hashtext('aqueue.leader'), hashtext($1::text)) AS got
    FROM keepalives
),
recorded AS (
    UPDATE {schema}.workers AS wk SET leader_pid = pg_backend_pid()
    WHERE wk.worker_id = $2::text AND (SELECT got FROM attempt)
    RETURNING 1
),
stale AS MATERIALIZED (
    SELECT pg_terminate_backend(l.pid) AS ended
    FROM pg_locks AS l JOIN pg_stat_activity AS a ON a.pid = l.pid
    WHERE NOT (SELECT got FROM attempt)
      AND l.locktype = 'advisory' AND l.granted
      AND l.classid = hashtext('aqueue.leader')::oid AND l.objid = hashtext($1::text)::oid
      AND l.objsubid = 2
      AND a.usename = current_user
      AND EXISTS (SELECT FROM {schema}.workers AS wk
                  WHERE wk.leader_pid = l.pid AND wk.expires_at < now())
)
SELECT (SELECT got FROM attempt), (SELECT count(*) FROM recorded), (SELECT count(*) FROM stale)
