-- worker_gone: worker $1 stopped; it serves nothing any more. Its row goes, unless jobs still
-- run under it (handed back they were not: the database was out): then its lease ends now and
-- the next rescue returns them.
WITH still AS (
    SELECT EXISTS (SELECT FROM {schema}.jobs_running AS r WHERE r.worker_id = $1::text) AS busy
),
ended AS (
    UPDATE {schema}.workers SET expires_at = now() - interval '1 microsecond'
    WHERE worker_id = $1::text AND (SELECT busy FROM still)
)
DELETE FROM {schema}.workers WHERE worker_id = $1::text AND NOT (SELECT busy FROM still)
