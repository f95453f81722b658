-- schema_version: the latest migration applied to this schema; NULL when the schema or its
-- migration history does not exist, 0 when the history is empty. Never errors: the history
-- is read through query_to_xml only once to_regclass found it, so a missing table is never
-- named in this statement's own text.
SELECT CASE WHEN to_regclass('{schema}.aqueue_migrations') IS NOT NULL THEN coalesce(
    (xpath('/row/v/text()', query_to_xml(
        'SELECT max(version) AS v FROM {schema}.aqueue_migrations', false, true, ''
    )))[1]::text::int,
    0
) END
