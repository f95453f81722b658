-- complete: record successful attempts (see the function complete, migration 0004): each
-- must still be running under worker $3 at the same attempt. Returns the ids completed,
-- including those an earlier try of this same write completed already.
-- $1 ids bigint[], $2 attempts int[], $3 worker_id, $4 results bytea[] (NULL: none; what each
-- handler returned, migration 0008).
SELECT {schema}.complete($1::bigint[], $2::int[], $3::text, $4::bytea[])
