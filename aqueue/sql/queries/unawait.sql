-- unawait: the caller waiting as $1 (await_job.sql) stopped waiting.
DELETE FROM {schema}.awaited AS a WHERE a.waiter_id = $1::bigint
