"""Introspection beside a big queue and a long history: ``python -m benchmarks.stats_scale
[--queued 1000000] [--finished 5000000] [--dsn DSN]``.

Fills a fresh schema with ``--queued`` waiting jobs (9 in 10 due, spread over 4 job types and
2 queues, 1 in 10 delayed) and ``--finished`` finished ones (completed, failed and cancelled
rows in the retention rings), straight with INSERT ... SELECT, lets autovacuum and ANALYZE see
them, then times (median of 5, ms) ``app.stats()``, ``app.get_job()`` of a queued and of a
finished job, and ``app.list_jobs()`` pages: the first page of waiting jobs, a page of failed
jobs from a cursor deep in history, and a page of one job type's pending jobs. Without
``--dsn`` it runs on a throwaway cluster from the embedded binaries with autovacuum at
PostgreSQL's defaults (the one the cost curves use).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import asyncpg
from google.protobuf.empty_pb2 import Empty

import aqueue

from .cluster import Cluster
from .curves import CONFIG

SCHEMA = "stats_scale"
TYPES = ["mail", "resize", "report", "sync"]
CHUNK = 250_000


async def fill(conn: asyncpg.Connection, queued: int, finished: int) -> None:
    s = SCHEMA
    types = "ARRAY['mail','resize','report','sync']"
    for start in range(0, queued, CHUNK):
        n = min(CHUNK, queued - start)
        await conn.execute(
            f"""
            WITH j AS (
                SELECT nextval('{s}.job_id_seq') AS id, g,
                       ({types})[1 + g % 4] AS job_type,
                       CASE WHEN g % 3 = 0 THEN 'bulk' ELSE 'default' END AS queue
                FROM generate_series(1, $1) AS g
            )
            INSERT INTO {s}.jobs_ready (id, job_type, queue, state, queued, next_attempt_after,
                try_count, max_tries, priority, payload, lane_id)
            SELECT j.id, j.job_type, j.queue, 'pending', now() - interval '1 minute',
                   now() - make_interval(secs => g % 60), 0, 5, 10, '\\x'::bytea,
                   {s}.lane(j.job_type, j.queue, 10)
            FROM j WHERE g % 10 <> 0
            """,
            n,
        )
        await conn.execute(
            f"""
            INSERT INTO {s}.jobs_delayed (id, job_type, queue, state, queued,
                next_attempt_after, try_count, max_tries, priority, payload)
            SELECT nextval('{s}.job_id_seq'), ({types})[1 + g % 4], 'default', 'pending',
                   now(), now() + interval '1 hour', 0, 5, 10, '\\x'::bytea
            FROM generate_series(1, $1 / 10) AS g
            """,
            n,
        )
    for start in range(0, finished, CHUNK):
        n = min(CHUNK, finished - start)
        await conn.execute(
            f"""
            INSERT INTO {s}.jobs_done
            SELECT nextval('{s}.job_id_seq'), ({types})[1 + g % 4], 'default',
                   CASE WHEN g % 50 = 0 THEN 'cancelled' ELSE 'completed' END::{s}.job_state,
                   now(), now(), 1, 5, 10, '\\x'::bytea, NULL, 'w', now(), 0, now(), NULL
            FROM generate_series(1, $1 - $1 / 20) AS g
            """,
            n,
        )
        await conn.execute(
            f"""
            INSERT INTO {s}.jobs_failed
            SELECT nextval('{s}.job_id_seq'), ({types})[1 + g % 4], 'default', 'failed',
                   now(), now(), 5, 5, 10, '\\x'::bytea, 'boom', 'w', now(), 0, now(), NULL
            FROM generate_series(1, $1 / 20) AS g
            """,
            n,
        )
    await conn.execute("ANALYZE")


async def median_ms(call: Callable[[], Awaitable[object]], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await call()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


async def run(dsn: str, queued: int, finished: int) -> None:
    conn = await asyncpg.connect(dsn)
    app = aqueue.App(dsn, schema=SCHEMA)
    for name in TYPES:
        app.job(payload=Empty, name=name)(_nothing)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await app.migrate()
        t0 = time.perf_counter()
        await fill(conn, queued, finished)
        took = time.perf_counter() - t0
        print(f"filled {queued:,} queued and {finished:,} finished in {took:.0f} s")
        first_queued = await conn.fetchval(f"SELECT min(id) FROM {SCHEMA}.jobs_ready")
        deep = await conn.fetchval(f"SELECT min(id) FROM {SCHEMA}.jobs_done") + finished // 2
        stats = await app.stats()
        print(
            f"stats: {sum(r.count for r in stats.rows):,} waiting (exact), finished estimate "
            f"{stats.finished_estimate}, oldest due wait {stats.oldest_due_wait_s:.0f} s"
        )
        rows = {
            "app.stats()": await median_ms(app.stats),
            "app.get_job(a queued job)": await median_ms(lambda: app.get_job(first_queued)),
            "app.get_job(a finished job)": await median_ms(lambda: app.get_job(deep)),
            "app.list_jobs(state='pending') first page of 100": await median_ms(
                lambda: app.list_jobs(state="pending")
            ),
            "app.list_jobs(state='failed', after_id=deep) page of 100": await median_ms(
                lambda: app.list_jobs(state="failed", after_id=deep)
            ),
            "app.list_jobs(job_type='report', state='pending') page of 100": await median_ms(
                lambda: app.list_jobs(job_type="report", state="pending")
            ),
            "app.list_jobs() (any state) page of 100": await median_ms(app.list_jobs),
        }
        print(f"\n| call, beside {queued:,} queued and {finished:,} finished | median ms |")
        print("|---|---|")
        for name, ms in rows.items():
            print(f"| `{name}` | {ms} |")
    finally:
        await app.close()
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()


async def _nothing(payload: Empty) -> None: ...


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queued", type=int, default=1_000_000)
    parser.add_argument("--finished", type=int, default=5_000_000)
    parser.add_argument("--dsn", help="an existing server (default: a throwaway cluster)")
    args = parser.parse_args()
    if args.dsn:
        anyio.run(run, args.dsn, args.queued, args.finished)
        return
    folder = Path(tempfile.mkdtemp(prefix="aqueue-stats-"))
    folder.chmod(0o755)  # the server runs as an unprivileged user when we are root
    try:
        cluster = Cluster(folder, CONFIG, log_name="stats.log")
        try:
            anyio.run(run, cluster.dsn(), args.queued, args.finished)
        finally:
            cluster.destroy()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
