-- schema_version: the latest migration applied to this schema (NULL when the history is
-- empty). Fails with undefined_table (42P01) when the schema or its history does not exist;
-- Store.schema_version reads that as "not migrated".
SELECT max(version) FROM {schema}.aqueue_migrations
