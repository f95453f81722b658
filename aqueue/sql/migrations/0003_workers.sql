-- The running workers, as each says itself: which job types and queues it serves, so that
-- any worker can tell which due jobs no worker serves. A worker upserts its row at start and
-- every few maintenance ticks and deletes it when it stops; a row past expires_at (its worker
-- died) counts as gone, and the next worker to upsert deletes it. Database clock only.
CREATE TABLE {schema}.workers (
    worker_id text PRIMARY KEY,
    job_types text[] NOT NULL,
    queues text[],  -- NULL: every queue
    seen_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
