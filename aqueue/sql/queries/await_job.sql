-- await_job: record that a caller waits for job $1 to end (App.result): statements that end
-- it then NOTIFY '<channel>_ended'. (One ending it while this commits is waited for by the
-- function job_end, migration 0008.) Returns the waiter's id, for unawait.sql.
INSERT INTO {schema}.awaited (job_id) VALUES ($1::bigint) RETURNING waiter_id
