-- job_end: how job $1 stands, for App.result: its state, job type, result and failure_info
-- (no row when there is no such job, or it was pruned). Each table of the view is read by
-- its id index.
SELECT j.state::text, j.job_type, j.result, j.failure_info
FROM {schema}.background_jobs AS j
WHERE j.id = $1::bigint
