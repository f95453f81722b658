-- drop_schema: remove the schema and everything in it: aqueue.testing's throwaway schemas,
-- at the end of a test. Never run by a worker.
DROP SCHEMA IF EXISTS {schema} CASCADE
