-- job_end: how job $1 stands, for App.result, once any transaction moving it right now has
-- committed (see the function job_end, migration 0008): state, job type, result and
-- failure_info; no row when there is no such job, or it was pruned.
SELECT e.state, e.job_type, e.result, e.failure_info FROM {schema}.job_end($1::bigint) AS e
