-- migrate_applied: the versions already applied.
SELECT version FROM {schema}.aqueue_migrations ORDER BY version
