-- worker_gone: worker $1 stopped; it serves nothing any more.
DELETE FROM {schema}.workers WHERE worker_id = $1::text
