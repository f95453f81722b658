-- db_now: the database's clock, which every worker's schedule follows (no host's own).
SELECT now()
