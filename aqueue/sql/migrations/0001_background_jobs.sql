-- The jobs table: the single source of truth for every job.
CREATE TYPE {schema}.job_state AS ENUM
    ('pending', 'running', 'completed', 'error', 'failed', 'cancelled');

CREATE TABLE {schema}.background_jobs (
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

CREATE INDEX background_jobs_claim_idx ON {schema}.background_jobs
    (priority DESC, next_attempt_after, id)
    WHERE state IN ('pending', 'error');

CREATE INDEX background_jobs_next_due_idx ON {schema}.background_jobs
    (next_attempt_after)
    WHERE state IN ('pending', 'error');

CREATE INDEX background_jobs_lease_idx ON {schema}.background_jobs
    (lease_expires_at)
    WHERE state = 'running';
