"""The optional comparison: PgQueuer and procrastinate, through their public APIs, on the same
server, each in a database of its own that is created afresh for every run. Their packages
are installed by ``nox -s bench`` only; aqueue never depends on them.

Their workers run in this process, in their own drain mode (they exit when nothing is left),
timed from the call to its return; aqueue's drain figures are timed from the commit to the
last completion with the worker process already idle, which favours neither side by more
than the peers' start-up (a few ms)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from .harness import Bench
from .workloads import ENQUEUE_CHUNK, Figures

PEER_DATABASE = "aqueue_bench_peer"


def available() -> list[str]:
    """The peers whose packages are installed."""
    found = []
    for name in ("pgqueuer", "procrastinate"):
        try:
            __import__(name)
        except ImportError:
            continue
        found.append(name)
    return found


@contextlib.asynccontextmanager
async def _fresh_database(bench: Bench) -> AsyncIterator[str]:
    """A new, empty database on the bench's server; its DSN."""
    await bench.pg.execute(f"DROP DATABASE IF EXISTS {PEER_DATABASE} WITH (FORCE)")
    await bench.pg.execute(f"CREATE DATABASE {PEER_DATABASE}")
    parts = urlsplit(bench.dsn)
    yield urlunsplit(parts._replace(path="/" + PEER_DATABASE))


# -- PgQueuer ----------------------------------------------------------------------------


async def _pgqueuer(
    bench: Bench, body: Callable[[Any, asyncpg.Connection, str], Awaitable[Figures]]
) -> Figures:
    from pgqueuer import AsyncpgDriver, Queries

    async with _fresh_database(bench) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            queries = Queries(AsyncpgDriver(conn))
            await queries.install()
            return await body(queries, conn, dsn)
        finally:
            await conn.close()


async def pgqueuer_enqueue_single(bench: Bench, n: int) -> Figures:
    async def body(queries: Any, _conn: asyncpg.Connection, _dsn: str) -> Figures:
        start = time.perf_counter()
        for _ in range(n):
            await queries.enqueue("noop", None, 0)
        return {"jobs_per_s": n / (time.perf_counter() - start)}

    return await _pgqueuer(bench, body)


async def pgqueuer_enqueue_bulk(bench: Bench, n: int) -> Figures:
    async def body(queries: Any, _conn: asyncpg.Connection, _dsn: str) -> Figures:
        calls = max(1, n // ENQUEUE_CHUNK)
        start = time.perf_counter()
        for _ in range(calls):
            await queries.enqueue(
                ["noop"] * ENQUEUE_CHUNK, [None] * ENQUEUE_CHUNK, [0] * ENQUEUE_CHUNK
            )
        return {"jobs_per_s": calls * ENQUEUE_CHUNK / (time.perf_counter() - start)}

    return await _pgqueuer(bench, body)


async def _pgqueuer_drain(bench: Bench, n: int, concurrency: int) -> Figures:
    from pgqueuer import AsyncpgDriver, Queries, QueueManager
    from pgqueuer.types import QueueExecutionMode

    async def body(queries: Any, _conn: asyncpg.Connection, dsn: str) -> Figures:
        left = n
        while left > 0:
            size = min(left, ENQUEUE_CHUNK)
            await queries.enqueue(["noop"] * size, [None] * size, [0] * size)
            left -= size
        worker_conn = await asyncpg.connect(dsn)
        try:
            qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))
            done = 0

            @qm.entrypoint("noop")
            async def noop(_job: Any) -> None:
                nonlocal done
                done += 1

            start = time.perf_counter()
            # Its rule: max_concurrent_tasks >= 2 * batch_size.
            await qm.run(
                batch_size=concurrency // 2,
                max_concurrent_tasks=concurrency,
                mode=QueueExecutionMode.drain,
            )
            elapsed = time.perf_counter() - start
        finally:
            await worker_conn.close()
        if done != n:
            raise RuntimeError(f"pgqueuer ran {done} of {n} jobs")
        return {"jobs_per_s": n / elapsed}

    return await _pgqueuer(bench, body)


async def pgqueuer_drain_c16(bench: Bench, n: int) -> Figures:
    return await _pgqueuer_drain(bench, n, 16)


async def pgqueuer_drain_c64(bench: Bench, n: int) -> Figures:
    return await _pgqueuer_drain(bench, n, 64)


# -- procrastinate -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _procrastinate(bench: Bench) -> AsyncIterator[tuple[Any, Any, list[int]]]:
    import procrastinate

    async with _fresh_database(bench) as dsn:
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
        ran: list[int] = []

        @app.task(name="noop")
        async def noop() -> None:
            ran.append(1)

        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            yield app, noop, ran


async def procrastinate_enqueue_single(bench: Bench, n: int) -> Figures:
    async with _procrastinate(bench) as (_app, noop, _ran):
        start = time.perf_counter()
        for _ in range(n):
            await noop.defer_async()
        return {"jobs_per_s": n / (time.perf_counter() - start)}


async def procrastinate_enqueue_bulk(bench: Bench, n: int) -> Figures:
    async with _procrastinate(bench) as (_app, noop, _ran):
        calls = max(1, n // ENQUEUE_CHUNK)
        start = time.perf_counter()
        for _ in range(calls):
            await noop.batch_defer_async(*([{}] * ENQUEUE_CHUNK))
        return {"jobs_per_s": calls * ENQUEUE_CHUNK / (time.perf_counter() - start)}


async def _procrastinate_drain(bench: Bench, n: int, concurrency: int) -> Figures:
    async with _procrastinate(bench) as (app, noop, ran):
        left = n
        while left > 0:
            size = min(left, ENQUEUE_CHUNK)
            await noop.batch_defer_async(*([{}] * size))
            left -= size
        start = time.perf_counter()
        await app.run_worker_async(
            concurrency=concurrency, wait=False, install_signal_handlers=False
        )
        elapsed = time.perf_counter() - start
        if len(ran) != n:
            raise RuntimeError(f"procrastinate ran {len(ran)} of {n} jobs")
        return {"jobs_per_s": n / elapsed}


async def procrastinate_drain_c16(bench: Bench, n: int) -> Figures:
    return await _procrastinate_drain(bench, n, 16)


async def procrastinate_drain_c64(bench: Bench, n: int) -> Figures:
    return await _procrastinate_drain(bench, n, 64)
