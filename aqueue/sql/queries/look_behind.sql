-- look_behind: a worker's safety net for its lane cursors, run by its maintenance, never on
-- the claim path. First promote delayed jobs that came due before any claim's window (a
-- transaction that committed long after its jobs' due time); then, for each lane $1[i] whose
-- cursor is $2[i], the lowest seq of a row still in jobs_ready at or behind that cursor: a
-- row whose NOTIFY never arrived. Lanes with none are left out. Returns (lane_id, seq), or
-- one row (NULL, NULL) when there is nothing behind any cursor.
WITH promoted AS MATERIALIZED (
    SELECT {schema}.promote(1000, NULL) AS n
)
SELECT c.lane_id, b.seq
FROM promoted
CROSS JOIN unnest($1::int[], $2::bigint[]) AS c(lane_id, cursor_seq)
CROSS JOIN LATERAL (
    SELECT r.seq FROM {schema}.jobs_ready AS r
    WHERE r.lane_id = c.lane_id AND r.seq <= c.cursor_seq
    ORDER BY r.seq
    LIMIT 1
) AS b
UNION ALL
SELECT NULL::int, NULL::bigint FROM promoted
