-- periodic_enqueue: take the given tick of each periodic entry (see the function
-- periodic_enqueue, migration 0008): at most one job per entry and tick across the fleet.
-- $1 names, $2 ticks, $3 job types, $4 queues, $5 priorities, $6 max_tries, $7 payloads,
-- $8 overlap allowed. Returns (entry, outcome, job).
SELECT p.entry, p.outcome, p.job
FROM {schema}.periodic_enqueue($1::text[], $2::timestamptz[], $3::text[], $4::text[],
                               $5::int[], $6::int[], $7::bytea[], $8::bool[]) AS p
