-- migrate_schema: create aqueue's schema if it is missing.
CREATE SCHEMA IF NOT EXISTS {schema}
