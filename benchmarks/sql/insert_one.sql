-- insert_one: the cheapest single enqueue: one prepared INSERT, autocommit, no NOTIFY.
INSERT INTO {schema}.ceiling_jobs (job_type, payload) VALUES ($1::text, $2::bytea)
