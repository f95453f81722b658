-- resign: give leadership up (a worker stopping, before its LISTEN connection goes back to
-- the pool). $1 the schema.
SELECT pg_advisory_unlock(hashtext('aqueue.leader'), hashtext($1::text))
