"""aqueue's benchmark suite: ``python -m benchmarks`` (or ``nox -s bench``).

It measures what users ask first (jobs a second, and how fast a job starts) on the embedded
PostgreSQL or any DSN, beside the raw-SQL ceiling of the same database and, optionally,
PgQueuer and procrastinate through their public APIs. Never part of the test suite's
pass/fail; ``--smoke`` is the one-minute run the tests use to keep the suite working.
"""
