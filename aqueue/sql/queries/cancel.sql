-- cancel: withdraw job $1 if it is pending, error or running (see the function cancel,
-- migration 0004). Returns the state the job had, or no row.
SELECT was FROM {schema}.cancel($1::bigint) AS was WHERE was IS NOT NULL
