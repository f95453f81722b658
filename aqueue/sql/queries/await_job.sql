-- await_job: record that a caller waits for job $1 to end (App.result): statements that end
-- it then NOTIFY '<channel>_ended'. Under the exclusive lock the function ended() takes
-- shared (migration 0008): transactions ending jobs right now commit first, so the caller's
-- next look at the job sees their ends. Returns the waiter's id, for unawait.sql.
INSERT INTO {schema}.awaited (job_id)
SELECT $1::bigint
FROM (SELECT pg_advisory_xact_lock(hashtext('aqueue.ended'), hashtext('{schema}'))) AS l
RETURNING waiter_id
