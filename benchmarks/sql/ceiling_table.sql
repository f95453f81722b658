-- ceiling_table: the ceiling's own table, the seed's single-table layout (one row per job,
-- its state updated in place, a partial claim index): the cheapest SQL runs against it.
CREATE TABLE {schema}.ceiling_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_type text NOT NULL,
    queue text NOT NULL DEFAULT 'default',
    state {schema}.job_state NOT NULL DEFAULT 'pending',
    queued timestamptz NOT NULL DEFAULT now(),
    next_attempt_after timestamptz NOT NULL DEFAULT now(),
    try_count integer NOT NULL DEFAULT 0,
    max_tries integer NOT NULL DEFAULT 5,
    priority integer NOT NULL DEFAULT 10,
    payload bytea NOT NULL,
    failure_info text,
    worker_id text,
    lease_expires_at timestamptz
);
CREATE INDEX ceiling_jobs_claim_idx ON {schema}.ceiling_jobs
    (priority DESC, next_attempt_after, id)
    WHERE state IN ('pending', 'error');
