-- fill_completed: $1 finished jobs, as a long-running system keeps them (before retention
-- removes them): rows of the done ring's current slot, their ids taken from job_id_seq.
WITH r AS (SELECT nextval('{schema}.job_id_seq') AS first),
bumped AS (SELECT setval('{schema}.job_id_seq', r.first + $1::int) FROM r)
INSERT INTO {schema}.jobs_done
SELECT g, 'noop', 'default', 'completed', now() - interval '1 day', now() - interval '1 day',
       1, 5, 10, '', NULL, 'old', now(), (SELECT slot FROM {schema}.rings WHERE ring = 'done')
FROM r, bumped, generate_series(r.first, r.first + $1::int - 1) AS g
