-- migrate_history: create the table that records applied migrations if it is missing.
CREATE TABLE IF NOT EXISTS {schema}.aqueue_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
