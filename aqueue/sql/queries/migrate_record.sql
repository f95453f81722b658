-- migrate_record: record migration $1 named $2 as applied.
INSERT INTO {schema}.aqueue_migrations (version, name) VALUES ($1::int, $2::text)
