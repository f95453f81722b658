-- migrate_lock: serialize migrations of schema $1 across processes until the transaction ends.
SELECT pg_advisory_xact_lock(hashtext('aqueue.migrate'), hashtext($1::text))
