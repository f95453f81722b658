-- prune: move the ring $1 ('done' or 'failed') on once its current slot is older than $2 / 6
-- seconds, emptying the next slot with TRUNCATE if everything in it finished more than $2
-- seconds ago (see the function prune, migration 0004). Returns the rows removed (an
-- estimate), 0 when nothing was due, NULL when another transaction held the slot.
SELECT {schema}.prune($1::text, $2::float8)
