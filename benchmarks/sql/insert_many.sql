-- insert_many: the cheapest bulk enqueue: one INSERT ... SELECT FROM unnest(array).
INSERT INTO {schema}.ceiling_jobs (job_type, payload)
SELECT $1::text, p FROM unnest($2::bytea[]) AS p
